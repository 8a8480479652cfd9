"""Budgets of a search: absolute counts; the grammar lives in :mod:`rankopt.budget._grammar`."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from rankopt.budget._grammar import parse_budget
from rankopt.errors import BudgetError

__all__ = ["NOT_SLOWER", "Budget", "latency_cap", "parse_budget", "parse_latency_budget"]

NOT_SLOWER = 1.0
"""The default latency cap of a search with a deployment runtime, a fraction of the dense
model's predicted time at every measured batch size: plans never slower than dense
(issue 37), unless the user allows it (``allow_slower``)."""


@dataclass(frozen=True)
class Budget:
    """Absolute budget of a search; None / empty means unconstrained.

    Attributes:
        max_macs: Multiply-accumulates per image.
        max_params: Parameter count.
        max_latency_ms: ``((batch_size, latency_ms), ...)``: the whole model's predicted
            CPU latency at each batch size (from the latency table).
        latency_cap_ms: ``((batch_size, latency_ms), ...)``: a limit that holds with any
            budget and with none (a target sampled in MACs too): by default the dense
            model's predicted time (:func:`latency_cap`), so no plan is slower than dense.
            Not a budget of its own (:attr:`is_set` ignores it).
    """

    max_macs: int | None = None
    max_params: int | None = None
    max_latency_ms: tuple[tuple[int, float], ...] = ()
    latency_cap_ms: tuple[tuple[int, float], ...] = ()

    @property
    def is_set(self) -> bool:
        """Whether any limit is set (the latency cap does not count)."""
        return self.max_macs is not None or self.max_params is not None or bool(self.max_latency_ms)

    def leading(self) -> str | None:
        """The resource a sampled ``target`` fraction scales: MACs first, then params, then
        latency (``"macs"``, ``"n_params"``, ``"latency_ms"``); None when nothing is limited.

        The one place this precedence is written: the search space's target range and
        target budget and the seeds' target follow it.
        """
        if self.max_macs is not None:
            return "macs"
        if self.max_params is not None:
            return "n_params"
        if self.max_latency_ms:
            return "latency_ms"
        return None

    def scaled(self, fraction: float, dense: Mapping[str, float]) -> Budget:
        """The budget at ``fraction`` of the dense model on the :meth:`leading` resource
        (MACs when nothing is limited).

        Args:
            fraction: Share of the dense cost, e.g. 0.5.
            dense: The dense model's cost per resource name (``macs``, ``n_params``,
                ``latency_ms@<batch>`` for each limited batch size).
        """
        lead = self.leading()
        cap = self.latency_cap_ms  # the cap holds whatever the target
        if lead == "n_params":
            return Budget(max_params=int(fraction * dense["n_params"]), latency_cap_ms=cap)
        if lead == "latency_ms":
            return Budget(
                max_latency_ms=tuple(
                    (b, fraction * dense[f"latency_ms@{b}"]) for b, _ in self.max_latency_ms
                ),
                latency_cap_ms=cap,
            )
        return Budget(max_macs=int(fraction * dense["macs"]), latency_cap_ms=cap)

    def latency_limits_ms(self) -> dict[int, float]:
        """``batch_size -> latency_ms``: the tighter of the budget and the cap per batch size."""
        out: dict[int, float] = {}
        for batch_size, ms in (*self.max_latency_ms, *self.latency_cap_ms):
            out[batch_size] = min(float(ms), out.get(batch_size, float(ms)))
        return out

    def limits(self) -> dict[str, float]:
        """Limit per resource name (``macs``, ``n_params``, ``latency_ms@<batch>``)."""
        out: dict[str, float] = {}
        if self.max_macs is not None:
            out["macs"] = float(self.max_macs)
        if self.max_params is not None:
            out["n_params"] = float(self.max_params)
        for batch_size, ms in sorted(self.latency_limits_ms().items()):
            out[f"latency_ms@{batch_size}"] = ms
        return out

    def latency_attrs(self) -> dict[str, list[list[float]]]:
        """The latency limits as the study's ``budget`` attribute stores them (JSON)."""
        out = {"max_latency_ms": [[b, ms] for b, ms in self.max_latency_ms]}
        if self.latency_cap_ms:
            out["latency_cap_ms"] = [[b, ms] for b, ms in self.latency_cap_ms]
        return out

    def fits(self, macs: int, n_params: int, latency_ms: Mapping[int, float] | None = None) -> bool:
        """Whether a cost is within the budget (latency only checked when given)."""
        return self.violation(macs, n_params, latency_ms) <= 0

    def violation(
        self, macs: int, n_params: int, latency_ms: Mapping[int, float] | None = None
    ) -> float:
        """Largest relative overshoot (``cost / budget - 1``); <= 0 when it fits."""
        parts = [-1.0]
        if self.max_macs is not None:
            parts.append(macs / self.max_macs - 1.0)
        if self.max_params is not None:
            parts.append(n_params / self.max_params - 1.0)
        if latency_ms is not None:
            for batch_size, ms in self.latency_limits_ms().items():
                parts.append(latency_ms[batch_size] / ms - 1.0)
        return max(parts)

    def describe(
        self,
        dense_macs: int,
        dense_params: int,
        dense_latency_ms: Mapping[int, float] | None = None,
    ) -> str:
        """Human-readable form such as ``macs <= 4.5M (50.0% of dense)``."""
        parts = []
        if self.max_macs is not None:
            parts.append(f"macs <= {_si(self.max_macs)} ({100 * self.max_macs / dense_macs:.1f}%)")
        if self.max_params is not None:
            parts.append(
                f"params <= {_si(self.max_params)} ({100 * self.max_params / dense_params:.1f}%)"
            )
        for batch_size, ms in self.max_latency_ms:
            share = (
                f" ({100 * ms / dense_latency_ms[batch_size]:.1f}%)"
                if dense_latency_ms and batch_size in dense_latency_ms
                else ""
            )
            parts.append(f"latency at batch {batch_size} <= {ms:.3g} ms{share}")
        if self.latency_cap_ms:
            cap = ", ".join(f"{ms:.3g} ms at batch {b}" for b, ms in self.latency_cap_ms)
            parts.append(f"never slower than dense ({cap})")
        return ", ".join(parts) or "no budget"


def parse_latency_budget(
    value: float | str | None, dense_latency_ms: Mapping[int, float]
) -> tuple[tuple[int, float], ...]:
    """Turn ``max_latency`` into ``((batch_size, latency_ms), ...)``.

    Rules: a fraction in (0, 1] or a percentage (``"50%"``) of the dense model's measured
    latency applies at every measured batch size; milliseconds (``"2.5ms"``, or a number
    above 1) apply at batch size 1.

    Raises:
        BudgetError: anything else (the value and the allowed forms are named).
    """
    if value is None:
        return ()
    allowed = "allowed: a fraction of dense like 0.5, a percentage like '50%', or '2.5ms'"
    text = str(value).strip().lower()
    try:
        if isinstance(value, bool):
            raise ValueError
        if text.endswith("%"):
            fraction: float | None = float(text[:-1]) / 100.0
            absolute = None
        elif text.endswith("ms"):
            fraction, absolute = None, float(text[:-2])
        else:
            number = float(text)
            fraction, absolute = (number, None) if number <= 1 else (None, number)
    except ValueError:
        raise BudgetError(f"max_latency = {value!r} is not a latency budget; {allowed}") from None
    if fraction is not None:
        if not 0 < fraction < math.inf:
            raise BudgetError(f"max_latency = {value!r} must be positive; {allowed}")
        return tuple((b, fraction * ms) for b, ms in sorted(dense_latency_ms.items()))
    assert absolute is not None
    if not 0 < absolute < math.inf:
        raise BudgetError(f"max_latency = {value!r} must be positive; {allowed}")
    return ((1, absolute),)


def latency_cap(
    limits: tuple[tuple[int, float], ...],
    dense_latency_ms: Mapping[int, float],
    *,
    allow_slower: bool,
    given: float | str | None = None,
    margin: Mapping[int, float] | None = None,
) -> tuple[tuple[int, float], ...]:
    """The latency cap a search adds to its budget: :data:`NOT_SLOWER` times the dense
    model's time at every measured batch size, less ``margin``; none with ``allow_slower``.

    Args:
        limits: The parsed ``max_latency`` (:func:`parse_latency_budget`).
        dense_latency_ms: ``batch_size -> latency_ms`` of the dense model (the table's).
        allow_slower: The user accepts plans slower than dense.
        given: ``max_latency`` as the user wrote it (for the message).
        margin: ``batch_size -> fraction`` taken off the cap: how far the table's
            predictions of whole plans erred (a plan predicted at the cap then still
            measures no slower than dense).

    Raises:
        BudgetError: ``limits`` allows a plan slower than dense at some batch size while
            ``allow_slower`` is False (the message names the value, the rule and the flag).
    """
    if allow_slower:
        return ()
    for batch_size, ms in limits:
        dense = dense_latency_ms.get(batch_size)
        if dense is not None and ms > NOT_SLOWER * dense * (1 + 1e-9):
            raise BudgetError(
                f"max_latency = {given!r} allows {ms:.3g} ms at batch size {batch_size}, "
                f"slower than the dense model's {dense:.3g} ms ({100 * ms / dense:.0f}%); "
                "give at most 100%, or allow plans slower than dense with allow_slower=True "
                "(--allow-slower)"
            )
    margin = margin or {}
    return tuple(
        (b, NOT_SLOWER * (1.0 - margin.get(b, 0.0)) * ms)
        for b, ms in sorted(dense_latency_ms.items())
    )


def _si(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return f"{n:.0f}"
