"""Names a package loads on first use (PEP 562 module ``__getattr__`` / ``__dir__``).

Light (standard library only): the packages that use it keep ``rankopt --help`` free of
torch, optuna, pandas and plotly.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_names"]


def lazy_names(
    package: str, names: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module ``__getattr__`` and ``__dir__`` of ``package`` for its lazy ``names``.

    Args:
        package: The package's ``__name__``.
        names: Public name -> the module that defines it, imported when the name is first
            read; the value is then bound in the package, so later reads cost nothing.

    Returns:
        ``(__getattr__, __dir__)``; assign both at module level.
    """

    def getattr_(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    def dir_() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(names))

    return getattr_, dir_
