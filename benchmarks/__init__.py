"""rankopt's benchmarks: scripts and packages that compare methods side by side.

Flat scripts (``python benchmarks/run.py``) and packages run as modules from the
repository root (``python -m benchmarks.fashion``).
"""
