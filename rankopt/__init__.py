"""rankopt: search per-layer low-rank decompositions of a trained CNN under a budget.

Public API (everything else is private)::

    import rankopt
    prof = rankopt.profile(model, (1, 28, 28))
    study = rankopt.search(model, train, val, max_macs="50%", n_trials=20)
    front = rankopt.pareto_front(study)
    best = front[front.kind == "trial"].sort_values("accuracy").iloc[-1]
    plan = rankopt.export_plan(study, trial=int(best.trial))
    small = rankopt.apply_plan(model, plan)
"""

__version__ = "0.1.0"

from rankopt.errors import (
    BudgetError,
    DataError,
    DecompositionError,
    InvalidPlanError,
    ModelError,
    RankoptError,
    SelectionError,
    StorageError,
    TrialFailedError,
    UnknownNameError,
    UnsupportedLayerError,
)
from rankopt.evaluators import Cost, ModelProfile, calibrate_bn, cost, count_macs, profile
from rankopt.plan import CompressionPlan, LayerPlan, apply_plan, model_fingerprint
from rankopt.search import parse_budget, search
from rankopt.spaces import (
    DecompositionMethod,
    LayerInfo,
    estimate_rank,
    get_method,
    list_methods,
    register_method,
    vbmf_ranks,
)
from rankopt.studies import export_plan, load_study, pareto_front, report

__all__ = [
    "BudgetError",
    "CompressionPlan",
    "Cost",
    "DataError",
    "DecompositionError",
    "DecompositionMethod",
    "InvalidPlanError",
    "LayerInfo",
    "LayerPlan",
    "ModelError",
    "ModelProfile",
    "RankoptError",
    "SelectionError",
    "StorageError",
    "TrialFailedError",
    "UnknownNameError",
    "UnsupportedLayerError",
    "__version__",
    "apply_plan",
    "calibrate_bn",
    "cost",
    "count_macs",
    "estimate_rank",
    "export_plan",
    "get_method",
    "list_methods",
    "load_study",
    "model_fingerprint",
    "pareto_front",
    "parse_budget",
    "profile",
    "register_method",
    "report",
    "search",
    "vbmf_ranks",
]
