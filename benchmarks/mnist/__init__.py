"""The MNIST benchmark: rankopt's search against the seed recipe, baselines and peers.

Run from the repository root::

    python -m benchmarks.mnist --quick

Modules: :mod:`.run` (every section measured, the files written), :mod:`.rows` (the
model and one row's measurement), :mod:`.spearman` (proxy vs final), :mod:`.goals` (the
issue's goals, measurement noise), :mod:`.markdown` (BENCHMARKS.md), :mod:`.peers` (peer
notes) and :mod:`.__main__` (the command line). The final fine-tune, the recipes and the
searches are :mod:`benchmarks.common`'s.
"""
