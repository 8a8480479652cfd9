"""Real-size models (issue 36): what the sensitivity profile and the default search cost.

``python -m benchmarks.scale`` runs, for each of torchvision ``resnet18``, ``resnet50``
(32x32 and 64x64), ``vgg16_bn`` and ``mobilenet_v2`` (10 classes, random weights, random
images with random labels: enough for cost, not for accuracy), one default search
(``rankopt.search(max_macs="50%")``, 16 trials, SQLite storage) in its own subprocess, and
writes ``BENCHMARKS_SCALE.md`` plus ``scale_rows.json`` (one row per model and input size).

Per model: the layers searched, the profile's (layer, method) pairs and points, the seconds
in decompositions per method and in forward passes (from the stored profile's ``timing``
when the profile records it, else "not recorded"), the profile's wall time, the floor (one
dense no-grad forward over the profile images) and the profile as a multiple of it, the mean
trial time, the whole search's time and the child's peak RSS (``ru_maxrss`` from
``os.wait4``). The issue's goals are checked: met, or missed by how much.

Modules: :mod:`.child` (one model, in the subprocess), :mod:`.markdown` (the report) and
``__main__`` (the command line, the subprocesses and the rows file).
"""
