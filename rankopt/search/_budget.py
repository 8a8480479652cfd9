"""Budgets of a search: absolute counts; the grammar lives in :mod:`rankopt._budget`."""

from __future__ import annotations

from dataclasses import dataclass

from rankopt._budget import parse_budget

__all__ = ["Budget", "parse_budget"]


@dataclass(frozen=True)
class Budget:
    """Absolute budget of a search; None means unconstrained.

    Attributes:
        max_macs: Multiply-accumulates per image.
        max_params: Parameter count.
    """

    max_macs: int | None = None
    max_params: int | None = None

    def fits(self, macs: int, n_params: int) -> bool:
        """Whether a cost is within the budget."""
        return (self.max_macs is None or macs <= self.max_macs) and (
            self.max_params is None or n_params <= self.max_params
        )

    def violation(self, macs: int, n_params: int) -> float:
        """Largest relative overshoot (``cost / budget - 1``); <= 0 when it fits."""
        parts = [-1.0]
        if self.max_macs is not None:
            parts.append(macs / self.max_macs - 1.0)
        if self.max_params is not None:
            parts.append(n_params / self.max_params - 1.0)
        return max(parts)

    def describe(self, dense_macs: int, dense_params: int) -> str:
        """Human-readable form such as ``macs <= 4.5M (50.0% of dense)``."""
        parts = []
        if self.max_macs is not None:
            parts.append(f"macs <= {_si(self.max_macs)} ({100 * self.max_macs / dense_macs:.1f}%)")
        if self.max_params is not None:
            parts.append(
                f"params <= {_si(self.max_params)} ({100 * self.max_params / dense_params:.1f}%)"
            )
        return ", ".join(parts) or "no budget"


def _si(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return f"{n:.0f}"
