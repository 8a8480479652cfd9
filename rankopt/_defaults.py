"""Defaults shared by the Python API (:func:`rankopt.search`) and the command line.

Neutral ground (imports no rankopt subpackage), so ``rankopt --help`` stays fast.
"""

from __future__ import annotations

__all__ = ["DEFAULT_N_TRIALS"]

DEFAULT_N_TRIALS = 16
"""Trials of a search unless told (``rankopt.search(n_trials=...)``, ``--n-trials``).

Seeds take at most a quarter (4), the sampler the rest. Measured on resnet8 / mnist5k at 7 %
of the MACs, one machine, 3 seeds, the recommended plan's test accuracy after the benchmark's
final fine-tune: 32 trials did not beat 16 (see the session-10 note of issue 13), so the
default stays at the shorter search (about 2 minutes on 2 CPU cores).
"""
