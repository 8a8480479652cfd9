"""``python benchmarks/run.py``: the MNIST benchmark, :mod:`benchmarks.mnist`.

Kept so the README's and BENCHMARKS.md's older reproduce lines still work; the entry point
is ``python -m benchmarks.mnist`` (same arguments).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.mnist.__main__ import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
