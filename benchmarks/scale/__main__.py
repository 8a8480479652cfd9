"""Command line: ``python -m benchmarks.scale [--models resnet18,resnet50@64] ...``.

Each case (``model@size``) runs in its own subprocess (:mod:`benchmarks.scale.child`); its
peak RSS is the child's ``ru_maxrss`` from ``os.wait4``. Rows are merged into
``<out>/scale_rows.json`` by case and mode (``--fresh`` starts a new file), and
``<out>/BENCHMARKS_SCALE.md`` is rendered from every row in it, so models may be run one
invocation at a time.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.scale.markdown import render

HERE = Path(__file__).resolve().parent.parent
ROOT = HERE.parent
DEFAULT_CASES = ("resnet18@32", "resnet50@32", "resnet50@64", "vgg16_bn@32", "mobilenet_v2@32")
ROWS_FILE = "scale_rows.json"
REPORT_FILE = "BENCHMARKS_SCALE.md"


def expand_models(text: str) -> list[str]:
    """``"resnet18,resnet50"`` -> cases; a name without ``@`` takes its default sizes."""
    cases: list[str] = []
    for item in (x.strip() for x in text.split(",")):
        if not item:
            continue
        if "@" in item:
            cases.append(item)
        else:
            cases += [c for c in DEFAULT_CASES if c.partition("@")[0] == item] or [f"{item}@32"]
    return cases


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The options (see ``--help``)."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__)
    p.add_argument(
        "--models",
        type=expand_models,
        default=list(DEFAULT_CASES),
        help="comma-separated model[@size] (torchvision names or package.module:callable); "
        "a name without @size takes its default sizes (resnet50: 32 and 64, others 32)",
    )
    p.add_argument("--profile-only", action="store_true", help="stop after the profile")
    p.add_argument("--n-trials", type=int, default=16, help="trials of each search")
    p.add_argument("--threads", type=int, default=2, help="torch threads of each child")
    p.add_argument("--out", type=Path, default=HERE, help="folder of the report and rows")
    p.add_argument("--n-train", type=int, default=2048, help="random training images")
    p.add_argument("--n-val", type=int, default=512, help="random validation images")
    p.add_argument("--finetune-steps", type=int, default=120, help="proxy fine-tune steps")
    p.add_argument("--methods", default=None, help="comma-separated methods (default: all)")
    p.add_argument(
        "--latency-runtime",
        choices=("default", "onnxruntime", "torch", "none"),
        default="default",
        help="the search's latency table: rankopt's default, a runtime, or none (no table)",
    )
    p.add_argument(
        "--limit-min", type=float, default=120.0, help="kill a child after this many minutes"
    )
    p.add_argument("--fresh", action="store_true", help="drop the rows of earlier runs")
    return p.parse_args(argv)


def run_child(case: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run one case in a subprocess; its row plus the child's peak RSS and exit status."""
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "row.json"
        cmd = [
            sys.executable,
            "-m",
            "benchmarks.scale.child",
            f"--case={case}",
            f"--result={result}",
            f"--n-trials={args.n_trials}",
            f"--threads={args.threads}",
            f"--n-train={args.n_train}",
            f"--n-val={args.n_val}",
            f"--finetune-steps={args.finetune_steps}",
            *(["--profile-only"] if args.profile_only else []),
            *([f"--methods={args.methods}"] if args.methods else []),
            f"--latency-runtime={args.latency_runtime}",
        ]
        print(f"[scale] {shlex.join(cmd)}", file=sys.stderr, flush=True)
        started = time.perf_counter()
        # a fresh cache: the latency table is measured, not read from an earlier run
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "RANKOPT_CACHE_DIR": tmp}
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env)
        status, usage, killed = _wait(proc, args.limit_min * 60)
        wall_s = time.perf_counter() - started
        row: dict[str, Any] = (
            json.loads(result.read_text(encoding="utf-8")) if result.exists() else {"case": case}
        )
    for key, value in (("n_trials", args.n_trials), ("threads", args.threads)):
        row.setdefault(key, value)
    row.setdefault("methods", args.methods.split(",") if args.methods else None)
    row.update(
        peak_rss_mb=usage.ru_maxrss / 1024,  # KiB on Linux
        child_wall_s=wall_s,
        exit_status=os.waitstatus_to_exitcode(status),
        profile_only=args.profile_only,
    )
    if killed:
        row["error"] = f"killed after {args.limit_min:g} min (--limit-min)"
    elif row["exit_status"] != 0:
        row["error"] = f"child exited with status {row['exit_status']}"
    return row


def _wait(proc: subprocess.Popen[bytes], limit_s: float) -> tuple[int, Any, bool]:
    """``os.wait4`` the child (its own rusage), killing it after ``limit_s`` seconds."""
    deadline = time.monotonic() + limit_s
    killed = False
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return status, usage, killed
        if not killed and time.monotonic() > deadline:
            proc.kill()
            killed = True
        time.sleep(0.2)


def merge_rows(path: Path, new: Sequence[dict[str, Any]], fresh: bool) -> list[dict[str, Any]]:
    """Earlier rows of ``path`` (unless ``fresh``); ``new`` replaces same case, mode, methods."""
    old: list[dict[str, Any]] = []
    if path.exists() and not fresh:
        old = list(json.loads(path.read_text(encoding="utf-8")).get("rows", []))
    keys = {_key(r) for r in new}
    return [*(r for r in old if _key(r) not in keys), *new]


def _key(row: dict[str, Any]) -> tuple[str, bool, tuple[str, ...]]:
    """A row replaces an earlier one of the same case, mode and methods."""
    return row["case"], bool(row.get("profile_only")), tuple(row.get("methods") or ())


def main(argv: Sequence[str] | None = None) -> int:
    """Run the cases, merge the rows, write the JSON and the report."""
    from benchmarks.common.report import machine_facts

    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rows_path = args.out / ROWS_FILE
    new = []
    for case in args.models:
        row = run_child(case, args)
        row["machine"] = machine_facts()
        new.append(row)
        rows = merge_rows(rows_path, new, args.fresh)
        payload = {"schema_version": 1, "rows": rows}
        rows_path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", "utf-8")
        (args.out / REPORT_FILE).write_text(render(rows), encoding="utf-8")
        print(f"[scale] {case}: wrote {rows_path} and {args.out / REPORT_FILE}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
