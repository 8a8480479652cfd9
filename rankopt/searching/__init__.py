"""Search: the Optuna study loop over per-layer methods and rank allocations.

Sub-rooms, in the order of the flow (each imports only those below it; the import-linter
contract in pyproject.toml says so): :mod:`.loop` (settings, sampler, data checks, progress,
``search()``) -> :mod:`.seeding` (the seed trials, enqueued once) and :mod:`.objective` (one
trial; the sensitivity profile's measurement) -> :mod:`.space` (space, allocation, reach).

Names load on first use, so that the command line reads ``rankopt.searching.loop``'s defaults
without torch or optuna.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rankopt._lazy import lazy_names

if TYPE_CHECKING:
    from rankopt.budget import Budget, parse_budget
    from rankopt.searching.loop._run import search
    from rankopt.searching.loop._sampler import SAMPLERS, make_sampler, worker_sampler_seed
    from rankopt.searching.loop._settings import SearchSettings, setting_defaults
    from rankopt.searching.space._space import SearchSpace
    from rankopt.storage import mask_url, open_storage

_LAZY: dict[str, str] = {
    "setting_defaults": "rankopt.searching.loop._settings",
    "Budget": "rankopt.budget",
    "parse_budget": "rankopt.budget",
    "search": "rankopt.searching.loop._run",
    "SAMPLERS": "rankopt.searching.loop._sampler",
    "make_sampler": "rankopt.searching.loop._sampler",
    "worker_sampler_seed": "rankopt.searching.loop._sampler",
    "SearchSettings": "rankopt.searching.loop._settings",
    "SearchSpace": "rankopt.searching.space._space",
    "mask_url": "rankopt.storage",
    "open_storage": "rankopt.storage",
}


__getattr__, __dir__ = lazy_names(__name__, _LAZY)


__all__ = [
    "SAMPLERS",
    "Budget",
    "SearchSettings",
    "SearchSpace",
    "make_sampler",
    "mask_url",
    "open_storage",
    "parse_budget",
    "search",
    "setting_defaults",
    "worker_sampler_seed",
]
