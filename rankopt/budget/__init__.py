"""Budgets: the one budget grammar and the absolute budget a search holds its plans to.

The grammar (``0.5``, ``"50%"``, ``4e6``, ``"4M"``, ``"800k"``; :func:`parse_budget`, public
as :func:`rankopt.parse_budget`, and :func:`parse_amount`) is read by ``search --max-macs``
and ``export --max-macs`` alike; :class:`Budget` (MACs, parameters, latency at batch sizes)
is what the search space allocates under. Light: no torch, no optuna.
"""

from rankopt.budget._budget import Budget, latency_cap, parse_latency_budget
from rankopt.budget._grammar import BudgetAmount, parse_amount, parse_budget

__all__ = [
    "Budget",
    "BudgetAmount",
    "latency_cap",
    "parse_amount",
    "parse_budget",
    "parse_latency_budget",
]
