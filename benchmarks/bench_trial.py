"""Seconds per trial of the default search, split into fine-tune and everything else.

Usage: ``python benchmarks/bench_trial.py [--n-trials 12] [--model resnet8] [--data mnist5k]``.

Runs the default search (budget 50 % of dense MACs, SQLite storage in a temporary
directory) and, per completed trial, takes its duration from Optuna's own timestamps
(sampling, budget repair, decomposition, analytic counting, evaluation, fine-tune and
storage writes) and the fine-tune's own wall time. "Everything else" is the difference;
the goal is a share under 5 %.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import optuna
import torch
from optuna.trial import TrialState

from rankopt import search
from rankopt.data import load_data
from rankopt.models import get_pretrained


def main() -> None:
    """Run the benchmark and print a table and the totals."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-trials", type=int, default=12)
    parser.add_argument("--model", default="resnet8")
    parser.add_argument("--data", default="mnist5k")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    data = load_data(args.data)
    model, _ = get_pretrained(args.model, args.data)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        study = search(
            model,
            data.train,
            data.val,
            max_macs="50%",
            n_trials=args.n_trials,
            storage=f"sqlite:///{tmp}/study.db",
            study_name="bench",
            model_name=args.model,
            data_name=args.data,
        )
        total_s = time.perf_counter() - started
        trials = study.get_trials(states=(TrialState.COMPLETE,))
    print(
        f"{'trial':>5} {'seed':<20} {'trial_s':>8} {'finetune_s':>10} {'other_s':>8} {'other%':>7}"
    )
    sum_trial = sum_ft = 0.0
    shares = []
    for t in trials:
        assert t.datetime_start is not None and t.datetime_complete is not None
        trial_s = (t.datetime_complete - t.datetime_start).total_seconds()
        ft_s = float(t.user_attrs["finetune_time_s"])
        other = trial_s - ft_s
        shares.append(other / trial_s)
        sum_trial += trial_s
        sum_ft += ft_s
        print(
            f"{t.number:>5} {t.user_attrs.get('seed', '-'):<20} {trial_s:>8.2f} {ft_s:>10.2f} "
            f"{other:>8.2f} {100 * other / trial_s:>6.1f}%"
        )
    print(
        f"\n{len(trials)} trials, {sum_trial / len(trials):.2f} s per trial on average; "
        f"fine-tune {sum_ft:.1f} s, everything else {sum_trial - sum_ft:.1f} s = "
        f"{100 * (sum_trial - sum_ft) / sum_trial:.1f}% (median per trial "
        f"{100 * statistics.median(shares):.1f}%, goal < 5%)"
    )
    print(
        f"whole search incl. set-up (profile, teacher logits, seeding): {total_s:.1f} s; "
        f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.2f}"
    )


if __name__ == "__main__":
    main()
