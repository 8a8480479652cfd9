"""Search: space, budget repair, VBMF seeding, objective, and the Optuna study loop."""

from rankopt._storage import mask_url, open_storage
from rankopt.search._budget import Budget, parse_budget
from rankopt.search._run import search
from rankopt.search._sampler import SAMPLERS, make_sampler, worker_sampler_seed
from rankopt.search._settings import SearchSettings
from rankopt.search._space import SearchSpace

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
    "worker_sampler_seed",
]
