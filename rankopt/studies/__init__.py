"""Reading finished studies: Pareto front table, plotly figures, HTML report, plan export.

Compute first, then render: :func:`pareto_front` and :func:`all_trials_table` build
:class:`pandas.DataFrame` tables from a study's trials and user_attrs (see the Contracts
in DEVELOPERS.md); the figures and the report are drawn from those tables.
"""

from rankopt.storage import load_study

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
from ._profile_figure import plot_sensitivity, sensitivity_table
from ._report import report
from ._summary import PlanSummary, next_commands, plan_summary

__all__ = [
    "FRONT_COLUMNS",
    "FRONT_TRACE_NAME",
    "PlanSummary",
    "all_trials_table",
    "export_plan",
    "layer_summary",
    "load_study",
    "next_commands",
    "pareto_front",
    "plan_summary",
    "plot_history",
    "plot_layer_map",
    "plot_pareto_front",
    "plot_sensitivity",
    "queued_trials_line",
    "report",
    "select_trial",
    "sensitivity_table",
    "write_html",
    "write_png",
]
