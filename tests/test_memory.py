"""A search's peak memory does not grow with the ImageFolder it streams (issue 16)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import bench_memory


@pytest.mark.slow
def test_search_peak_memory_over_8000_images_is_within_150_mb_of_2000(tmp_path: Path) -> None:
    rows = bench_memory.measure(
        (2000, 8000), model="tiny", n_trials=3, finetune_steps=10, root=tmp_path
    )
    small, large = rows
    print(
        f"peak RSS: {small['peak_mb']:.0f} MB over 2,000 images, "
        f"{large['peak_mb']:.0f} MB over 8,000"
    )
    assert small["sizes"] == {"train": 1400, "val": 200, "test": 400}
    assert large["sizes"] == {"train": 5600, "val": 800, "test": 1600}
    for row in rows:  # every trial evaluated the whole validation split
        values = row["values"]
        # this tiny CNN at 50 % of its MACs offers only 2-3 distinct plans; repeats of a plan
        # reuse its result and are not listed
        assert isinstance(values, list) and 1 <= len(values) <= 3
        assert all(v is not None and math.isfinite(v[0]) for v in values)
    difference = float(large["peak_mb"]) - float(small["peak_mb"])  # type: ignore[arg-type]
    assert difference <= bench_memory.GOAL_MB
