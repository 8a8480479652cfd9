"""Reading finished studies: Pareto front table, plotly figures, HTML report, plan export.

Compute first, then render: :func:`pareto_front` and :func:`all_trials_table` build
:class:`pandas.DataFrame` tables from a study's trials and user_attrs (see the Contracts
in DEVELOPERS.md); the figures and the report are drawn from those tables.
"""

from rankopt.storage._open import load_study

from ._export import export_plan, select_trial
from ._figures import (
    FRONT_TRACE_NAME,
    plot_history,
    plot_layer_map,
    plot_pareto_front,
)
from ._front import (
    FRONT_COLUMNS,
    all_trials_table,
    layer_summary,
    pareto_front,
    queued_trials_line,
)
from ._html import write_html, write_png
from ._report import report

__all__ = [
    "FRONT_COLUMNS",
    "FRONT_TRACE_NAME",
    "all_trials_table",
    "export_plan",
    "layer_summary",
    "load_study",
    "pareto_front",
    "plot_history",
    "plot_layer_map",
    "plot_pareto_front",
    "queued_trials_line",
    "report",
    "select_trial",
    "write_html",
    "write_png",
]
