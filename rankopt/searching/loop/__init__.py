"""The study loop: settings, sampler, data checks, progress, and ``search()`` itself.

This package's ``__init__`` is light (no torch, no optuna): the command line reads
:data:`DEFAULT_N_TRIALS` (through :class:`SearchSettings`) for ``rankopt --help``. The
command line's model and data defaults are :mod:`rankopt._defaults`.
"""

from __future__ import annotations

__all__ = ["DEFAULT_N_TRIALS"]

DEFAULT_N_TRIALS = 16
"""Trials of a search unless told (``rankopt.search(n_trials=...)``, ``--n-trials``).

Seeds take at most a quarter (4), the sampler the rest. Measured on resnet8 / mnist5k at 7 %
of the MACs, one machine, study seeds 0 / 1 / 2, the recommended plan's test accuracy after
the benchmark's final fine-tune (before the ``capacity`` seed): 32 trials 0.942 / 0.943 /
0.942, 16 trials 0.943 / 0.947 / 0.947; random search picked the same plans with 32 trials as
with 16. The default stays at the shorter search (about 2 minutes on 2 CPU cores).
"""
