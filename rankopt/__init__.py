"""rankopt: search per-layer low-rank decompositions of a trained CNN under a budget.

Public API (everything else is private)::

    import rankopt
    prof = rankopt.profile(model, (1, 28, 28))
    study = rankopt.search(model, train, val, max_macs="50%")
    front = rankopt.pareto_front(study)  # front rows, then dense and recommended references
    plan = rankopt.export_plan(study)  # the recommended plan (or trial=N)
    small = rankopt.apply_plan(model, plan)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rankopt._lazy import lazy_names
from rankopt._version import __version__
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

if TYPE_CHECKING:
    from rankopt.budget import parse_budget
    from rankopt.evaluators import Cost, ModelProfile, calibrate_bn, cost, count_macs, profile
    from rankopt.latency import export_onnx
    from rankopt.plan import CompressionPlan, LayerPlan, apply_plan, model_fingerprint
    from rankopt.searching import search
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

# Heavy parts (torch, optuna, pandas, plotly) load on first use, so that ``import rankopt``
# and ``rankopt --help`` stay fast (PEP 562 module ``__getattr__``).
_LAZY: dict[str, str] = {
    "parse_budget": "rankopt.budget",
    "export_onnx": "rankopt.latency",
    "Cost": "rankopt.evaluators",
    "calibrate_bn": "rankopt.evaluators",
    "ModelProfile": "rankopt.evaluators",
    "cost": "rankopt.evaluators",
    "count_macs": "rankopt.evaluators",
    "profile": "rankopt.evaluators",
    "CompressionPlan": "rankopt.plan",
    "LayerPlan": "rankopt.plan",
    "apply_plan": "rankopt.plan",
    "model_fingerprint": "rankopt.plan",
    "search": "rankopt.searching",
    "DecompositionMethod": "rankopt.spaces",
    "LayerInfo": "rankopt.spaces",
    "estimate_rank": "rankopt.spaces",
    "get_method": "rankopt.spaces",
    "list_methods": "rankopt.spaces",
    "register_method": "rankopt.spaces",
    "vbmf_ranks": "rankopt.spaces",
    "export_plan": "rankopt.studies",
    "load_study": "rankopt.studies",
    "pareto_front": "rankopt.studies",
    "report": "rankopt.studies",
}


__getattr__, __dir__ = lazy_names(__name__, _LAZY)


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
    "export_onnx",
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
