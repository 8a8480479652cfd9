"""``BENCHMARKS_SCALE.md`` from the scale benchmark's rows, with the issue's goals checked."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common.report import md_table

NOT_RECORDED = "not recorded"
TRIED_FILE = Path(__file__).resolve().parent / "tried.md"
"""What was tried where a goal is missed (written by hand; included when present)."""
SECTION_FILES = (
    Path(__file__).resolve().parent / "profile_score.md",
    Path(__file__).resolve().parent / "workers.md",
)
"""Sections written by ``benchmarks/bench_profile_score.py`` and
``benchmarks/bench_profile_workers.py`` (``> file``); included when present."""


@dataclass(frozen=True)
class Goal:
    """One goal of issue 36 on one case.

    Attributes:
        case: ``model@size``.
        key: Row key of the measured value (``profile_s``, ``search_s``, ``peak_rss_mb``).
        limit: Largest allowed value, in the key's unit.
        unit: ``"s"`` or ``"MB"``.
        full_search: Whether only a full search's row can meet it (not ``--profile-only``).
    """

    case: str
    key: str
    limit: float
    unit: str
    full_search: bool

    @property
    def text(self) -> str:
        """The goal in words."""
        what = {"profile_s": "profile", "search_s": "16-trial search", "peak_rss_mb": "peak RSS"}
        limit = f"{self.limit / 60:g} min" if self.unit == "s" else f"{self.limit / 1024:g} GB"
        return f"{self.case}: {what[self.key]} <= {limit}"


GB = 1024.0
GOALS = (
    Goal("resnet18@32", "profile_s", 5 * 60, "s", False),
    Goal("resnet18@32", "search_s", 20 * 60, "s", True),
    Goal("resnet18@32", "peak_rss_mb", 3 * GB, "MB", True),
    Goal("resnet50@64", "profile_s", 15 * 60, "s", False),
    Goal("vgg16_bn@32", "profile_s", 10 * 60, "s", False),
    Goal("mobilenet_v2@32", "profile_s", 10 * 60, "s", False),
    *(
        Goal(case, "peak_rss_mb", 4 * GB, "MB", True)
        for case in ("resnet50@32", "resnet50@64", "vgg16_bn@32", "mobilenet_v2@32")
    ),
)


def _num(value: Any, digits: int = 1) -> str:
    return NOT_RECORDED if value is None else f"{float(value):.{digits}f}"


def _scaled(value: Any, unit: float) -> float | None:
    return None if value is None else float(value) / unit


def _latency(row: Mapping[str, Any]) -> str:
    if "latency_runtime" not in row:
        return "n/a"  # the run ended before the study said
    if row["latency_runtime"] is None:
        return "none"
    return f"{_num(row.get('latency_table_s'))} ({row['latency_runtime']})"


def _case(row: Mapping[str, Any]) -> str:
    """``model@size``, plus the methods when the run offered only some."""
    methods = row.get("methods")
    return row["case"] + (f" (only {', '.join(methods)})" if methods else "")


def _ratio(num: Any, den: Any) -> str:
    return "n/a" if num is None or not den else f"{float(num) / float(den):.1f}x"


def floor_of(row: Mapping[str, Any]) -> tuple[float | None, str]:
    """The profile's floor: recorded by the profile if it was, else the benchmark's own."""
    if row.get("recorded_floor_s") is not None:
        return float(row["recorded_floor_s"]), "recorded"
    if row.get("measured_floor_s") is not None:
        return float(row["measured_floor_s"]), "benchmark"
    return None, NOT_RECORDED


def _decompose(row: Mapping[str, Any]) -> str:
    per = row.get("decompose_s")
    if not per:
        return NOT_RECORDED
    return ", ".join(f"{m} {s:.1f}" for m, s in sorted(per.items(), key=lambda kv: -kv[1]))


def profile_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """One line per case: the profile's size and where its time went."""
    header = [
        "model @ input",
        "params (M)",
        "MACs (M)",
        "layers searched",
        "pairs (failed)",
        "points",
        "profile s",
        "forward s (of which capture)",
        "decompositions s, per method",
        "floor s (by)",
        "profile / floor",
        "threads",
    ]
    body = []
    for r in rows:
        floor, by = floor_of(r)
        body.append(
            [
                _case(r),
                _num(_scaled(r.get("dense_n_params"), 1e6), 2),
                _num(_scaled(r.get("dense_macs"), 1e6), 0),
                r.get("n_layers_searched", "n/a"),
                f"{r.get('n_pairs', 'n/a')} ({r.get('n_failed_pairs', 'n/a')})",
                r.get("n_points", "n/a"),
                _num(r.get("profile_s")),
                _num(r.get("forward_s"))
                + (f" ({r['capture_s']:.1f} capture)" if r.get("capture_s") else ""),
                _decompose(r),
                f"{_num(floor, 3)} ({by})",
                _ratio(r.get("profile_s"), floor),
                r.get("threads", "n/a"),
            ]
        )
    return md_table(header, body)


def search_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """One line per case: the trials, the whole run and its peak memory."""
    header = [
        "model @ input",
        "run",
        "trials done (failed)",
        "latency table s (runtime)",
        "mean trial s",
        "search s",
        "peak RSS (GB)",
        "RSS after imports (GB)",
        "status",
    ]
    body = []
    for r in rows:
        run = "profile only" if r.get("profile_only") else f"{r.get('n_trials')}-trial search"
        body.append(
            [
                _case(r),
                run,
                f"{r.get('n_trials_done', 'n/a')} ({r.get('n_trials_failed', 'n/a')})"
                + (f", {r['n_repeats']} repeats" if r.get("n_repeats") else ""),
                _latency(r),
                "n/a" if r.get("mean_trial_s") is None else f"{r['mean_trial_s']:.1f}",
                _num(r.get("search_s")),
                _num(_scaled(r.get("peak_rss_mb"), GB), 2),
                _num(_scaled(r.get("import_rss_mb"), GB), 2),
                r.get("error", "ok"),
            ]
        )
    return md_table(header, body)


def check_goal(goal: Goal, rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """``[goal, value, verdict]``: met, missed by how much, or not measured (and why)."""
    full = [r for r in rows if r["case"] == goal.case and not r.get("profile_only")]
    any_run = [r for r in rows if r["case"] == goal.case]
    candidates = full if goal.full_search else full + any_run
    row = next((r for r in candidates if r.get(goal.key) is not None), None)
    if row is None:
        failed = next((r for r in candidates if r.get("error")), None)
        if failed is not None:
            return [goal.text, "n/a", f"missed: {failed['error']}"]
        why = "needs a full search run" if goal.full_search and any_run else "not run"
        return [goal.text, "n/a", f"not measured ({why})"]
    value = float(row[goal.key])
    shown = f"{value:.0f} s" if goal.unit == "s" else f"{value / GB:.2f} GB"
    if row.get("error") and goal.full_search:
        return [goal.text, shown, f"missed: {row['error']}"]
    only = f"; only {', '.join(row['methods'])} offered" if row.get("methods") else ""
    if value <= goal.limit:
        return [goal.text, shown, f"met ({value / goal.limit:.2f} of the limit{only})"]
    over = value - goal.limit
    by = f"{over:.0f} s" if goal.unit == "s" else f"{over / GB:.2f} GB"
    return [goal.text, shown, f"**missed** by {by} ({value / goal.limit:.2f}x the limit{only})"]


def failed_lines(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """One line per pair the profile left out (its reason's first line)."""
    lines = []
    for r in rows:
        for pair, why in sorted((r.get("failed") or {}).items()):
            lines.append(f"- {r['case']}: `{pair}`: {str(why).splitlines()[0][:200]}")
    return lines


def render(rows: Sequence[Mapping[str, Any]]) -> str:
    """The whole report."""
    order = {c: i for i, c in enumerate(g.case for g in GOALS)}
    rows = sorted(rows, key=lambda r: (order.get(r["case"], 99), bool(r.get("profile_only"))))
    machine: Mapping[str, Any] = next((r["machine"] for r in reversed(rows) if "machine" in r), {})
    facts = ", ".join(f"{k} {v}" for k, v in machine.items() if k != "torch_threads")
    parts = [
        "# Scale benchmark: real-size models (issue 36)",
        "",
        "Written by `python -m benchmarks.scale` (options: `--models`, `--profile-only`, "
        "`--n-trials`, `--threads`, `--out`; rows in `scale_rows.json`). torchvision models "
        "with random weights, 10 classes, random normal images with random labels (cost only, "
        'not accuracy); the default search: `rankopt.search(max_macs="50%")`, all methods, '
        "120 proxy fine-tune steps, its default latency table (measured afresh: each case "
        "gets an empty cache; `--latency-runtime none` skips it), SQLite storage. Each case "
        "runs in its own process; its peak RSS is that process's `ru_maxrss`.",
        "",
        f"Machine (last run): {facts or 'n/a'}.",
        "",
        "## The sensitivity profile",
        "",
        "Floor: one dense no-grad forward over the profile's images (the profile's own record "
        "when it has one, else timed by the benchmark after the search, best of 3). "
        f'Seconds per method and in forward passes are "{NOT_RECORDED}" when the stored '
        "profile has no `timing`.",
        "",
        profile_table(rows),
        "",
        "## The search",
        "",
        search_table(rows),
        "",
        "## Goals",
        "",
        md_table(["goal", "value", "verdict"], [check_goal(g, rows) for g in GOALS]),
        "",
        "One decomposition's own time and memory (<= 10 s, <= 1 GB) is measured for every "
        "distinct layer and method of these models in `BENCHMARKS_SCALE_DECOMPOSE.md` "
        "(`python -m benchmarks.bench_decompose_bound`).",
    ]
    for section in SECTION_FILES:
        if section.exists():
            parts += ["", section.read_text(encoding="utf-8").strip()]
    failed = failed_lines(rows)
    if failed:
        parts += ["", "## Pairs the profile left out", "", *failed]
    bounds = [f"- {r['case']}: {line}" for r in rows for line in r.get("bound_lines") or []]
    if bounds:
        parts += ["", "## What the profile said it bounded", "", *bounds]
    if TRIED_FILE.exists():
        parts += ["", "## What was tried", "", TRIED_FILE.read_text(encoding="utf-8").strip()]
    return "\n".join(parts) + "\n"
