"""The budget grammar shared by every command: ``0.5``, ``"50%"``, ``4e6``, ``"4M"``.

Neutral ground: ``search`` (which turns a budget into absolute counts before a study) and
``studies`` (which selects trials under a budget) both read budgets here, so
``search --max-macs 4M`` and ``export --max-macs 4M`` mean the same.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from rankopt.errors import BudgetError

__all__ = ["BudgetAmount", "parse_amount", "parse_budget"]

_SUFFIXES = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9}
_NUMBER = re.compile(r"^(?P<num>[0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)(?P<suffix>[kmg]?)$")
_PERCENT = re.compile(r"^(?P<num>[0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)%$")


@dataclass(frozen=True)
class BudgetAmount:
    """A parsed budget: exactly one of a fraction of dense or an absolute count.

    Attributes:
        fraction: Share of the dense model's count (``0.5`` for ``"50%"``), or None.
        absolute: Count (multiply-accumulates per image, or parameters), or None.
    """

    fraction: float | None = None
    absolute: float | None = None

    def count(self, dense: int) -> int:
        """The absolute budget (rounded down; at least 1 for a fraction)."""
        if self.fraction is not None:
            return max(1, math.floor(self.fraction * dense))
        assert self.absolute is not None
        return math.floor(self.absolute)


def parse_amount(value: float | int | str, *, what: str = "macs") -> BudgetAmount:
    """Read a budget as a fraction of dense or an absolute count (rules: :func:`parse_budget`).

    Raises:
        BudgetError: the value is not a positive number, fraction or percentage.
    """
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
    return BudgetAmount(fraction=fraction, absolute=absolute)


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
    return parse_amount(value, what=what).count(dense)
