"""Exceptions raised by rankopt.

Every error rankopt raises on purpose derives from :class:`RankoptError`. Messages state
what was wrong, the offending value and what is allowed, so that the command line can print
them as one line (exit code 2) without a traceback.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "BudgetError",
    "DataError",
    "DecompositionError",
    "InvalidPlanError",
    "ModelError",
    "RankoptError",
    "SelectionError",
    "SettingsError",
    "StorageError",
    "TrialFailedError",
    "UnknownNameError",
    "UnsupportedLayerError",
]


class RankoptError(Exception):
    """Base class of every error rankopt raises on purpose."""


class UnknownNameError(RankoptError, KeyError):
    """A name (method, model, data set, sampler, ...) is not registered.

    Args:
        kind: What kind of name was looked up, e.g. ``"method"``.
        name: The name that was asked for.
        choices: The names that are registered.
    """

    def __init__(self, kind: str, name: object, choices: Iterable[str]) -> None:
        self.kind = kind
        self.name = name
        self.choices = sorted(choices)
        super().__init__(
            f"unknown {kind} {name!r}; choose one of: {', '.join(self.choices) or '(none)'}"
        )

    def __str__(self) -> str:  # KeyError would quote the message otherwise
        return str(self.args[0])


class UnsupportedLayerError(RankoptError):
    """A decomposition method cannot be applied to a layer (the message says why)."""


class DecompositionError(RankoptError):
    """A decomposition failed numerically (e.g. CP-ALS diverged); fails a trial, not a study."""


class InvalidPlanError(RankoptError, ValueError):
    """A compression plan is malformed or does not fit the model it is applied to."""


class BudgetError(RankoptError, ValueError):
    """A budget is malformed or cannot be met by any configuration."""


class ModelError(RankoptError):
    """A model cannot be built, loaded or run as asked."""


class DataError(RankoptError):
    """A data set cannot be loaded or does not fit the model."""


class SettingsError(RankoptError, ValueError):
    """An option is outside its allowed range (``n_trials = 0``, ``lr = -0.1``, ...)."""


class StorageError(RankoptError):
    """A study storage cannot be opened, written or found."""


class TrialFailedError(RankoptError):
    """One trial failed for a stated reason (NaN loss, diverged decomposition, ...)."""


class SelectionError(RankoptError, ValueError):
    """A trial cannot be selected from a study as asked (missing, not complete, no plan)."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
