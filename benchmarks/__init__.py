"""rankopt's benchmarks: scripts and packages that compare methods side by side.

Run from the repository root as modules: ``python -m benchmarks.mnist`` (the MNIST
benchmark), ``python -m benchmarks.fashion``,
``python -m benchmarks.bench_ceiling`` and the other ``bench_*`` scripts. What the
benchmarks share (the final fine-tune, recipes, searches, peers, report helpers) is
:mod:`benchmarks.common`. ``bench_aimet.py`` and ``peer_musco_worker.py`` run in their
peers' own venvs and stay standalone scripts.
"""
