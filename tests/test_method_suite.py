"""rankopt.testing.MethodTestSuite run for every registered method."""

from __future__ import annotations

from typing import Any

from rankopt.spaces import list_methods
from rankopt.testing import MethodTestSuite

# CP-ALS is a local method: its error may rise a little between two ranks.
_SETTINGS: dict[str, dict[str, Any]] = {"cp": {"error_slack": 1e-3}}

for _name in list_methods():
    _cls = type(
        f"TestMethod_{_name}",
        (MethodTestSuite,),
        {"method": _name, "__module__": __name__, **_SETTINGS.get(_name, {})},
    )
    globals()[_cls.__name__] = _cls
