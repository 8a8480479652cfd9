"""What the benchmarks share, written once.

:mod:`.harness` (the final fine-tune every row gets, one row's candidate model),
:mod:`.report` (machine facts, markdown tables, plots), :mod:`.recipes` (seed recipe,
uniform ranks, greedy), :mod:`.searches` (rankopt's searches and what is read from their
studies) and :mod:`.peers` (peer libraries in rankopt's interpreter).
"""
