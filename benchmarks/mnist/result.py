"""What one MNIST benchmark run measured: shared by run, goals and markdown (no import circle)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["BenchResult"]


@dataclass
class BenchResult:
    """Everything a run measured (also written to BENCHMARKS.md).

    Attributes:
        seed_row: The seed recipe (Kim et al., unbudgeted) row.
        budget_rows: One dict per (budget, method, seed) with its ``plan`` (None for the
            peer library) and ``macs_ratio`` (fvcore count / dense fvcore count).
        hypervolumes: One dict per (budget, sampler, seed).
        spearman: One dict per sampled study: proxy vs final accuracies and rho.
        latency_rows: Per-method uniform plans at ~50 % MACs with latency ratios.
        peer_notes: What happened with each peer library.
        expectation: Lines saying where the goals held and where they did not.
        split_sizes: Images in the validation and test splits (for the noise line).
        dense_val_accuracy: Validation accuracy of the dense model (the hypervolume bound).
        wall_time_s: Wall time of the run.
        files: Paths written.
    """

    seed_row: dict[str, Any] = field(default_factory=dict)
    budget_rows: list[dict[str, Any]] = field(default_factory=list)
    hypervolumes: list[dict[str, Any]] = field(default_factory=list)
    spearman: list[dict[str, Any]] = field(default_factory=list)
    latency_rows: list[dict[str, Any]] = field(default_factory=list)
    peer_notes: list[str] = field(default_factory=list)
    expectation: list[str] = field(default_factory=list)
    split_sizes: dict[str, int] = field(default_factory=dict)
    dense_val_accuracy: float = math.nan
    wall_time_s: float = math.nan
    files: list[Path] = field(default_factory=list)
