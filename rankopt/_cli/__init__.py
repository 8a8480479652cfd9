"""The commands behind :mod:`rankopt.cli` (which holds only the parser and ``main``)."""

from rankopt._cli._common import (
    add_calibration_arg,
    add_device_arg,
    add_latency_threads_arg,
    add_model_args,
    add_study_args,
    add_worker_args,
)
from rankopt._cli._models import cmd_apply, cmd_finetune, cmd_models, cmd_profile
from rankopt._cli._search import add_search_parser, cmd_workers
from rankopt._cli._studies import cmd_export, cmd_front, cmd_plot, cmd_report

__all__ = [
    "add_calibration_arg",
    "add_device_arg",
    "add_latency_threads_arg",
    "add_model_args",
    "add_search_parser",
    "add_study_args",
    "add_worker_args",
    "cmd_apply",
    "cmd_export",
    "cmd_finetune",
    "cmd_front",
    "cmd_models",
    "cmd_plot",
    "cmd_profile",
    "cmd_report",
    "cmd_workers",
]
