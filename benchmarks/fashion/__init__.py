"""The Fashion-MNIST benchmark: rankopt's search against recipes, peers and pruning.

Run from the repository root::

    python -m benchmarks.fashion --quick

Modules: :mod:`.harness` (the task, the final fine-tune every row gets, one row's
measurement), :mod:`.rows` (the candidates of one budget: recipes, greedy, peers,
pruning), :mod:`.searches` (the two searches, their best-so-far curves and timings),
:mod:`.report` (goals, markdown, plots) and :mod:`.__main__` (the command line).
"""
