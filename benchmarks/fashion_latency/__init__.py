"""Fashion-MNIST resnet8 at equal measured latency (issue 37, item 4).

``python -m benchmarks.fashion_latency`` compares, at latency budgets of 75 / 50 / 35 % of
the dense model's ONNX Runtime latency (1 thread, batch 1 and 64):

- ``rankopt``: :func:`rankopt.search` with ``max_latency`` = the budget on ONNX Runtime,
  channel pruning mixed with decomposition (``prune=True``);
- ``rankopt (decomposition only)``: the same search with ``prune=False``;
- ``torch-pruning``: L2 group-magnitude channel pruning (:mod:`benchmarks.peer_pruning`),
  its MACs target bisected until its *measured* ONNX Runtime latency meets the budget at
  batch 1 and 64;
- ``tensorly-torch``, ``musco`` and ``AIMET``: each at the largest MACs fraction of a small
  grid whose measured latency meets the budget (or a row saying they cannot reach it).

Every row gets the same final fine-tune (:class:`benchmarks.common.harness.FinalFinetune`)
and its latency ratios measured side by side with dense
(:func:`benchmarks.fashion.harness.latency_ratios`). The modules: :mod:`.peers` (the
latency-matched peer models), :mod:`.searches` (the rankopt rows and the lowest reachable
latency), :mod:`.report` (goals and markdown) and ``__main__`` (the command line).
"""
