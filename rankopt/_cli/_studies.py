"""``rankopt front``, ``plot``, ``report`` and ``export``: reading a stored study.

Heavy modules are imported inside the functions, so ``rankopt --help`` stays fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rankopt._cli._common import check_out, format_table, open_study


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
    path = report(open_study(args), args.out)
    print(f"wrote {path}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Write a chosen trial's CompressionPlan as JSON."""
    from rankopt.studies import export_plan

    check_out(args.out)
    if args.trial is None and args.max_macs is None:
        from rankopt.errors import RankoptError

        raise RankoptError("export needs --trial N or --max-macs X (the best trial under X)")
    plan = export_plan(open_study(args), trial=args.trial, max_macs=args.max_macs)
    plan.save(args.out)
    m = plan.metrics
    print(
        f"wrote {args.out}: trial {plan.provenance.get('trial')}, accuracy "
        f"{m.get('accuracy', float('nan')):.4f}, macs {m.get('macs')}, params {m.get('n_params')}"
    )
    return 0
