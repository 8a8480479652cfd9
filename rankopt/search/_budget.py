"""Budgets: parsing (absolute or relative to dense) and repair by global rank scaling."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from rankopt.errors import BudgetError

__all__ = ["Budget", "parse_budget"]

_SUFFIXES = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9}
_NUMBER = re.compile(r"^(?P<num>[0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)(?P<suffix>[kmg]?)$")
_PERCENT = re.compile(r"^(?P<num>[0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)%$")


def parse_budget(value: float | int | str | None, dense: int, *, what: str = "macs") -> int | None:
    """Turn a budget into an absolute count.

    Rules: ``None`` means no budget. A number in (0, 1] or a percentage string (``"50%"``)
    is a fraction of the dense model's count; a number above 1, or a string such as
    ``"12e6"``, ``"12M"``, ``"800k"`` is an absolute count (multiply-accumulates per image
    for ``macs``, parameters for ``n_params``). Fractions above 1 (``"150%"``) are allowed:
    the dense model then fits.

    Args:
        value: The budget as given by the user.
        dense: The dense model's count, for relative budgets.
        what: ``"macs"`` or ``"n_params"``, used in messages.

    Returns:
        The absolute budget (rounded down), or None.

    Raises:
        BudgetError: the value is not a positive number, fraction or percentage.
    """
    if value is None:
        return None
    allowed = (
        "allowed: a fraction of dense in (0, 1] like 0.5, a percentage like '50%', "
        "or an absolute count > 1 like 12e6 or '12M'"
    )
    fraction: float | None = None
    absolute: float | None = None
    if isinstance(value, bool):
        raise BudgetError(f"max_{what} = {value!r} is not a number; {allowed}")
    if isinstance(value, int | float):
        number = float(value)
        if not math.isfinite(number) or number <= 0:
            raise BudgetError(f"max_{what} = {value!r} must be positive and finite; {allowed}")
        if number <= 1:
            fraction = number
        else:
            absolute = number
    elif isinstance(value, str):
        text = value.strip().lower()
        percent = _PERCENT.match(text)
        number_match = _NUMBER.match(text)
        if percent:
            fraction = float(percent.group("num")) / 100.0
        elif number_match:
            number = float(number_match.group("num")) * _SUFFIXES[number_match.group("suffix")]
            if number_match.group("suffix") == "" and number <= 1:
                fraction = number
            else:
                absolute = number
        else:
            raise BudgetError(f"max_{what} = {value!r} is not a budget; {allowed}")
        if (fraction is not None and not fraction > 0) or (absolute is not None and absolute < 1):
            raise BudgetError(f"max_{what} = {value!r} must be positive; {allowed}")
        if (fraction is not None and not math.isfinite(fraction)) or (
            absolute is not None and not math.isfinite(absolute)
        ):
            raise BudgetError(f"max_{what} = {value!r} must be finite; {allowed}")
    else:
        raise BudgetError(f"max_{what} = {value!r} has type {type(value).__name__}; {allowed}")
    if fraction is not None:
        return max(1, math.floor(fraction * dense))
    assert absolute is not None
    return math.floor(absolute)


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
