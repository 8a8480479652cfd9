"""``rankopt front``, ``plot``, ``report`` and ``export``: reading a stored study.

Heavy modules are imported inside the functions, so ``rankopt --help`` stays fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rankopt._cli._common import (
    add_study_args,
    check_out,
    format_table,
    given_study_args,
    open_study,
)


def cmd_front(args: argparse.Namespace) -> int:
    """Print the Pareto front."""
    import sys

    from rankopt.studies import pareto_front, queued_trials_line

    study = open_study(args)
    df = pareto_front(study, include_reference=not args.no_reference)
    queued = queued_trials_line(study)
    if args.format == "csv":
        print(df.to_csv(index=False), end="")
    elif args.format == "json":
        print(df.to_json(orient="records", indent=2))
    else:
        print(format_table(df))
    if queued and args.format == "table":
        print(f"\n{queued}")
    elif queued:  # on stderr, so that the csv / json on stdout stays machine-readable
        print(queued, file=sys.stderr)
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    """Write the Pareto / layer-map / history figures as standalone HTML (and PNG)."""
    from rankopt.studies import (
        plot_history,
        plot_layer_map,
        plot_pareto_front,
        write_html,
        write_png,
    )

    check_out(args.out)
    study = open_study(args)
    figs = [plot_pareto_front(study), plot_layer_map(study), plot_history(study)]
    out = Path(args.out)
    write_html(figs, out, title=f"rankopt: {study.study_name}")
    print(f"wrote {out}")
    if args.png:
        png = out.with_suffix(".png")
        write_png(figs[0], png)
        print(f"wrote {png}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Write one HTML report of the study."""
    from rankopt.studies import report

    check_out(args.out)
    path = report(open_study(args), args.out, study_args=given_study_args(args))
    print(f"wrote {path}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Write a chosen trial's CompressionPlan as JSON (the recommended one unless told)."""
    from rankopt.studies import export_plan

    check_out(args.out)
    plan = export_plan(open_study(args), trial=args.trial, max_macs=args.max_macs)
    plan.save(args.out)
    m = plan.metrics
    nan = float("nan")
    if args.trial is not None:
        which = f"trial {plan.provenance.get('trial')}"
    elif args.max_macs is not None:
        which = (
            f"trial {plan.provenance.get('trial')}, the best with macs <= {args.max_macs} "
            "(lowest validation loss)"
        )
    else:
        which = (
            f"the recommended plan, trial {plan.provenance.get('trial')} (lowest validation "
            "loss within the study's budget)"
        )
    print(
        f"wrote {args.out}: {which}: accuracy {m.get('accuracy', nan):.4f}, MACs "
        f"{100 * m.get('macs_ratio', nan):.1f} % of dense ({m.get('macs')}), params "
        f"{100 * m.get('params_ratio', nan):.1f} % ({m.get('n_params')})"
    )
    return 0


def add_study_parsers(sub: Any) -> None:
    """Register ``rankopt front``, ``plot``, ``report`` and ``export``."""
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
