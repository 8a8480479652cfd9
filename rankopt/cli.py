"""The ``rankopt`` command line: a thin layer over the public API.

Each ``rankopt._cli`` module registers its own subcommands; this module assembles them.

Bad input prints one line ``rankopt: error: ...`` and exits with code 2; heavy imports
happen inside the commands so ``rankopt --help`` is instant.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from rankopt._cli import (
    add_model_parsers,
    add_search_parser,
    add_study_parsers,
    add_workers_parser,
)

__all__ = ["build_parser", "main"]


# --------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``rankopt``."""
    parser = argparse.ArgumentParser(
        prog="rankopt",
        description="Search per-layer low-rank decompositions of a trained CNN under a budget.",
    )
    from rankopt._version import __version__

    parser.add_argument("--version", action="version", version=f"rankopt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    add_search_parser(sub)
    add_workers_parser(sub)
    add_study_parsers(sub)
    add_model_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rankopt`` console script."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error argparse printed
        return exc.code if isinstance(exc.code, int) else 2
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    func: Callable[[argparse.Namespace], int] = args.func
    from rankopt._signals import ctrl_c_interrupts
    from rankopt.errors import RankoptError

    try:
        with ctrl_c_interrupts():  # even when the parent process ignored SIGINT
            return func(args)
    except RankoptError as exc:
        message = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        print(f"rankopt: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rankopt: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
