"""The ``rankopt`` command line: a thin layer over the public API.

Bad input prints one line ``rankopt: error: ...`` and exits with code 2; heavy imports
happen inside the commands so ``rankopt --help`` is instant.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from rankopt._cli import (
    add_calibration_arg,
    add_device_arg,
    add_latency_threads_arg,
    add_model_args,
    add_study_args,
    add_worker_args,
    cmd_apply,
    cmd_export,
    cmd_finetune,
    cmd_front,
    cmd_models,
    cmd_plot,
    cmd_profile,
    cmd_report,
    cmd_search,
    cmd_workers,
)
from rankopt._defaults import DEFAULT_LATENCY_RUNTIME
from rankopt.latency._runtimes import RUNTIMES
from rankopt.search.loop import DEFAULT_N_TRIALS

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

    p = sub.add_parser("search", help="run or resume a budget-constrained search")
    add_model_args(p)
    add_study_args(p)
    p.add_argument(
        "--max-macs",
        help="MACs budget: fraction (0.5), percent ('50%%') or absolute (4e6, 4M); default 50%%",
    )
    p.add_argument("--max-params", help="parameter budget, same forms")
    p.add_argument(
        "--max-latency",
        help="latency budget from this machine's per-layer latency table: '50%%' of dense at "
        "batch 1 and 64, or '2.5ms' at batch 1",
    )
    p.add_argument(
        "--rank-multiple",
        type=int,
        default=None,
        help="round ranks to multiples of this, for hardware-friendly shapes (default: with "
        "--latency-runtime onnxruntime its convolution channel block on this CPU, 16 with "
        "AVX-512, 8 with AVX2; else 1)",
    )
    p.add_argument(
        "--min-layer-share",
        type=float,
        default=0.005,
        help="layers below this share of the model's MACs and params stay dense "
        "(default: %(default)s; 0 searches every layer)",
    )
    p.add_argument(
        "--objectives",
        default="accuracy,macs",
        help="comma list, accuracy first (default: %(default)s)",
    )
    p.add_argument("--methods", help="comma list of methods to offer (default: all)")
    p.add_argument(
        "--n-trials",
        type=int,
        default=DEFAULT_N_TRIALS,
        help="total trials in the study (default: %(default)s)",
    )
    p.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")
    p.add_argument("--sampler", default="tpe", help="tpe, nsga2 or random (default: %(default)s)")
    p.add_argument(
        "--repair",
        default="repair",
        choices=("repair", "constraint"),
        help="budget handling (default: %(default)s)",
    )
    p.add_argument(
        "--finetune-steps",
        type=int,
        default=120,
        help="proxy fine-tune steps per trial (default: %(default)s)",
    )
    p.add_argument(
        "--finetune-samples",
        type=int,
        default=2048,
        help="training images for proxy fine-tunes (default: %(default)s)",
    )
    p.add_argument(
        "--batch-size", type=int, default=64, help="fine-tune batch size (default: %(default)s)"
    )
    p.add_argument(
        "--lr", type=float, default=0.01, help="fine-tune learning rate (default: %(default)s)"
    )
    p.add_argument(
        "--measure-latency", action="store_true", help="store batch-1 CPU latency per trial"
    )
    p.add_argument(
        "--latency-runtime",
        default=DEFAULT_LATENCY_RUNTIME,
        choices=[*sorted(RUNTIMES), "none"],
        help="where the plans will run: ONNX Runtime on the model as `rankopt apply --out "
        "x.onnx` exports it, or eager PyTorch; its per-layer latency table (measured once, "
        "cached) predicts every plan's latency for --max-latency, the latency_ms objective "
        "and the cap that keeps plans no slower than dense; none: no latency "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--allow-slower",
        action="store_true",
        help="let plans be slower than dense on the latency runtime (by default every plan's "
        "predicted latency at batch 1 and 64 is at most dense's)",
    )
    add_latency_threads_arg(p)
    p.add_argument(
        "--latency-tolerance",
        type=float,
        default=0.15,
        help="the latency table times a few whole plans to check its predictions; a search "
        "with a latency budget or objective refuses to start when they err by more than this "
        "fraction (default: %(default)s)",
    )
    add_worker_args(p)
    add_device_arg(p)
    p.set_defaults(func=cmd_search)

    p = sub.add_parser(
        "workers",
        help="run N local search workers on one study (PostgreSQL storage)",
        usage="rankopt workers N [search options]",
        description="Start N `rankopt search` processes with the given search options on one "
        "storage and study (each with its own --worker-index and max(1, cores // N) torch "
        "threads), wait for them, forward Ctrl-C, and print the Pareto front.",
    )
    p.add_argument("n_workers", type=int, metavar="N", help="number of worker processes")
    p.add_argument(
        "search_args",
        nargs=argparse.REMAINDER,
        metavar="...",
        help="options of `rankopt search` (see rankopt search --help)",
    )
    p.set_defaults(func=cmd_workers, parse_search=parse_search_args)

    p = sub.add_parser("front", help="print the Pareto front")
    add_study_args(p)
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.add_argument("--no-reference", action="store_true", help="omit the dense and VBMF rows")
    p.set_defaults(func=cmd_front)

    p = sub.add_parser("plot", help="write the figures as a standalone HTML file")
    add_study_args(p)
    p.add_argument("--out", default="pareto.html", help="output HTML (default: %(default)s)")
    p.add_argument("--png", action="store_true", help="also write a PNG of the Pareto front")
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("report", help="write one HTML report of the study")
    add_study_args(p)
    p.add_argument("--out", default="report.html", help="output HTML (default: %(default)s)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("export", help="write a trial's plan as JSON")
    add_study_args(p)
    p.add_argument("--trial", type=int, help="trial number")
    p.add_argument(
        "--max-macs",
        help="the best trial (lowest validation loss) with macs <= X: fraction (0.5), "
        "percent ('50%%') or absolute (4e6, 4M), as in search",
    )
    p.add_argument("--out", default="plan.json", help="output JSON (default: %(default)s)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("apply", help="apply a plan and save the compressed model")
    p.add_argument("plan", help="plan JSON")
    add_model_args(p)
    p.add_argument(
        "--out",
        default="model.pt",
        help="output file: .onnx exports ONNX (checked with onnxruntime), else torch.save "
        "(default: %(default)s)",
    )
    add_calibration_arg(p)
    p.set_defaults(func=cmd_apply)

    p = sub.add_parser("finetune", help="fully fine-tune a plan and compare with the dense model")
    p.add_argument("plan", help="plan JSON")
    add_model_args(p)
    p.add_argument("--epochs", type=int, default=5, help="epochs (default: %(default)s)")
    add_device_arg(p)
    add_calibration_arg(p)
    p.add_argument("--out", help="save the fine-tuned model here (.onnx: ONNX, else torch.save)")
    p.add_argument(
        "--latency-runtime",
        choices=sorted(RUNTIMES),
        help="where the latency against dense is measured (batch 1 and 64, side by side): "
        "eager PyTorch or ONNX Runtime (default: onnxruntime when --out is .onnx, else the "
        "runtime of the plan's study, else onnxruntime)",
    )
    add_latency_threads_arg(p)
    p.set_defaults(func=cmd_finetune)

    p = sub.add_parser("profile", help="list layers, costs and eligibility")
    add_model_args(p)
    p.set_defaults(func=cmd_profile)

    p = sub.add_parser("models", help="list built-in models, data sets and methods")
    p.set_defaults(func=cmd_models)
    return parser


def parse_search_args(search_argv: Sequence[str]) -> argparse.Namespace:
    """``search_argv`` parsed as the options of ``rankopt search`` (``rankopt workers``
    checks its workers' options with it; the command gets it from the parser, so that
    ``rankopt._cli`` never imports this module)."""
    return build_parser().parse_args(["search", *search_argv])


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
    from rankopt.errors import RankoptError

    try:
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
