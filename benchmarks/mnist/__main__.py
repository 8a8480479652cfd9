"""MNIST benchmark side by side: rankopt's search vs the seed recipe, the usual baselines, a peer.

Usage::

    python -m benchmarks.mnist --quick   # 3 seeds x 16 trials, 3-epoch final FT (~50 min)
    python -m benchmarks.mnist --quick --seeds 0,1,2 --trials 16 --epochs 5   # closer to full
    python -m benchmarks.mnist           # full: 40 trials, 5 epochs

(An older reproduce line's ``python benchmarks/run.py`` is this command.) Modules:
:mod:`.run` (the sections measured), :mod:`.result`, :mod:`.rows` (one row),
:mod:`.spearman`, :mod:`.goals`, :mod:`.markdown`, :mod:`.peers`; the shared harness is
:mod:`benchmarks.common`.

Both modes run resnet8 on mnist5k at budgets 10 / 7 / 5 % of dense MACs (``--budgets``): budgets
where the best baseline loses at least 2 points from dense (at 20 % it lost 0.4, so a +1 point
goal there would have asked for more than dense).

Writes ``BENCHMARKS.md``, ``bench_accuracy.html``, ``bench_latency.html`` and
``plotly.min.js`` into ``--out`` (default: ``benchmarks/``). See :func:`run` for what is
measured; BENCHMARKS.md states the settings of the run that wrote it.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from benchmarks.mnist.run import OUT_DIR, SEARCH_DEFAULTS, run


def _floats(text: str) -> list[float]:
    return [float(x.rstrip("%")) / (100 if x.endswith("%") else 1) for x in text.split(",")]


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m benchmarks.mnist [--quick] [--trials N] [--epochs N] ...``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small settings (~50 min, 2 cores)")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="output directory")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--trials", type=int, default=None, help="trials per search")
    parser.add_argument("--epochs", type=int, default=None, help="final fine-tune epochs")
    parser.add_argument("--budgets", type=str, default=None, help="e.g. 0.1,0.07,0.05")
    parser.add_argument("--seeds", type=str, default=None, help="e.g. 0,1,2")
    parser.add_argument(
        "--proxy-steps", type=int, default=None, help="proxy fine-tune steps (search default)"
    )
    parser.add_argument(
        "--proxy-samples", type=int, default=None, help="proxy fine-tune images (search default)"
    )
    parser.add_argument(
        "--aimet-dir", type=Path, default=None, help="models written by bench_aimet.py"
    )
    parser.add_argument("--spearman", type=int, default=None, help="trials sampled per study")
    parser.add_argument(
        "--model",
        default="resnet8",
        help="built-in model trained on mnist5k (rankopt.models; default resnet8)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    given = sys.argv[1:] if argv is None else list(argv)
    command = shlex.join(["python", "-m", "benchmarks.mnist", *given])
    quick = args.quick
    budgets = _floats(args.budgets) if args.budgets else [0.1, 0.07, 0.05]
    seeds = [int(x) for x in args.seeds.split(",")] if args.seeds else [0, 1, 2]
    run(
        args.model,
        budgets=budgets,
        n_trials=args.trials or (16 if quick else 40),
        finetune_epochs=args.epochs or (3 if quick else 5),
        out_dir=args.out,
        seeds=seeds,
        proxy_steps=args.proxy_steps or SEARCH_DEFAULTS.finetune_steps,
        proxy_samples=args.proxy_samples or SEARCH_DEFAULTS.finetune_samples,
        spearman_trials=args.spearman or (4 if quick else 8),
        latency_rounds=5 if quick else 15,
        aimet_dir=args.aimet_dir,
        command=command,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
