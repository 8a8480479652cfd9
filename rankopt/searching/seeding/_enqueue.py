"""Seed trials enqueued once across workers, and seed trials a Ctrl-C failed requeued.

Seeding is idempotent and safe for any worker: whoever finds the study without its seeds
(the ``seeded`` user attr) enqueues them, under a database-level claim
(:mod:`rankopt.storage._claim`), so that they are enqueued exactly once even when the
study's creator died before seeding and several workers then start together.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import optuna
from optuna.trial import TrialState

from rankopt.searching.seeding._seeding import Seed
from rankopt.storage import SEED_ATTR, claim

__all__ = ["SEED_LEASE_S", "enqueue_seeds_once", "requeue_interrupted_seeds"]

SEED_LEASE_S = 60.0
"""Seconds after which a seed claim whose seeds never arrived is taken over (the claimer
died between claiming and marking the study ``seeded``; enqueuing takes well under 1 s)."""
_SEED_POLL_S = 0.2


def enqueue_seeds_once(
    study: optuna.Study,
    make_seeds: Callable[[], Sequence[Seed]],
    worker: str,
    say: Callable[[str], None],
    *,
    lease_s: float = SEED_LEASE_S,
    pause: Callable[[float], None] = time.sleep,
) -> bool:
    """Enqueue the study's seed trials unless they are (being) enqueued already.

    The study's ``seeded`` user attr (the seed names) marks them done. Without it, this
    worker computes the seeds (they need the study's sensitivity profile, so call this once
    the profile is there), claims the seeding in the database, enqueues them and sets
    ``seeded``. A worker that loses the claim waits for ``seeded`` (the winner enqueues in
    well under a second), so that the seeds run before sampled trials; a claim older than
    ``lease_s`` without ``seeded`` is taken over, enqueuing only the seeds still missing.
    A study already seeded gets its interrupted seeds re-queued instead
    (:func:`requeue_interrupted_seeds`).

    Returns:
        True when this worker enqueued the seeds.
    """
    if "seeded" in study.user_attrs:
        requeue_interrupted_seeds(study, say, worker)
        return False
    seeds = list(make_seeds())
    deadline = time.monotonic() + 2 * lease_s
    waited = False
    while not claim(study, "seeds", worker, lease_s=lease_s):
        if "seeded" in _fresh_user_attrs(study):
            return False
        if not waited:
            say("another worker is enqueuing the seed trials; waiting for them")
            waited = True
        if time.monotonic() > deadline:  # pragma: no cover - the claimer's clock runs late
            return False
        pause(_SEED_POLL_S)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for one in seeds:
            # skip_if_exists: a claim taken over may find some seeds of the lost claimer.
            study.enqueue_trial(
                dict(one.params), user_attrs={SEED_ATTR: one.name}, skip_if_exists=True
            )
    study.set_user_attr("seeded", [one.name for one in seeds])
    say(f"enqueued {len(seeds)} seed trials: {', '.join(one.name for one in seeds)}")
    return True


def _fresh_user_attrs(study: optuna.Study) -> dict[str, Any]:
    """The study's user attrs read from the storage (not a cached copy)."""
    return dict(study._storage.get_study_user_attrs(study._study_id))


def requeue_interrupted_seeds(
    study: optuna.Study, say: Callable[[str], None], worker: str = ""
) -> None:
    """Enqueue again the seed trials a Ctrl-C failed, so a resumed study loses no seed.

    Each failed seed trial is re-queued once across workers (a claim per trial number).
    """
    trials = study.get_trials(deepcopy=False)
    alive = {t.user_attrs.get(SEED_ATTR) for t in trials if t.state != TrialState.FAIL}
    again = []
    for t in trials:
        seed_name = t.user_attrs.get(SEED_ATTR)
        reason = str(t.user_attrs.get("fail_reason", ""))
        if t.state != TrialState.FAIL or not seed_name or seed_name in alive:
            continue
        if not reason.startswith("interrupted"):
            continue
        if not claim(study, f"requeue:{t.number}", worker):
            continue
        params = dict(t.system_attrs.get("fixed_params", t.params))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            study.enqueue_trial(params, user_attrs={SEED_ATTR: seed_name})
        alive.add(seed_name)
        again.append(str(seed_name))
    if again:
        say(f"enqueued again the seed trials interrupted before: {', '.join(again)}")
