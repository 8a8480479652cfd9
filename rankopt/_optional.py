"""Optional dependencies, loaded one way (in the spirit of Optuna's ``try_import``; light).

:func:`try_import` imports a module that only some features need, or raises a
:class:`~rankopt.errors.RankoptError` naming the package, what needs it and the extra that
installs it; :func:`installed` asks without importing.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from rankopt.errors import RankoptError

__all__ = ["installed", "try_import"]


def try_import(module: str, *, extra: str, needed_for: str) -> ModuleType:
    """Import ``module``, an optional dependency.

    Args:
        module: The module to import, e.g. ``"onnxruntime"``.
        extra: The ``rankopt`` extra that installs it, e.g. ``"onnx"``.
        needed_for: What needs it, for the message, e.g. ``"ONNX export"``.

    Raises:
        RankoptError: the module is not installed (one line: the package, what needs it,
            the ``pip install 'rankopt[extra]'`` that installs it).
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        raise RankoptError(
            f"{needed_for} needs the {module!r} package, which is not installed; "
            f"install it with: pip install 'rankopt[{extra}]'"
        ) from None


def installed(module: str) -> bool:
    """Whether ``module`` can be imported (found on the path; nothing is imported)."""
    return importlib.util.find_spec(module) is not None
