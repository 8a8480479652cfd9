"""The commands behind :mod:`rankopt.cli`: each module registers its own subcommands
(``add_*_parser(s)``) and runs them (``cmd_*``); ``rankopt.cli`` assembles the parser."""

from rankopt._cli._models import add_model_parsers
from rankopt._cli._search import add_search_parser, add_workers_parser
from rankopt._cli._studies import add_study_parsers

__all__ = ["add_model_parsers", "add_search_parser", "add_study_parsers", "add_workers_parser"]
