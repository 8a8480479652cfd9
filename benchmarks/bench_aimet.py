"""AIMET's spatial-SVD greedy compression of the benchmark model, run in aimet's own venv.

aimet-torch pins its own stack, so it lives in a separate virtual environment::

    python -m venv /tmp/aimet && /tmp/aimet/bin/pip install aimet-torch
    /tmp/aimet/bin/python benchmarks/bench_aimet.py --out /tmp/aimet_models 0.1 0.07 0.05
    python benchmarks/run.py --quick --aimet-dir /tmp/aimet_models

For each target MACs ratio it runs ``aimet_torch.compress.ModelCompressor.compress_model``
with ``CompressionScheme.spatial_svd``, ``CostMetric.mac`` and auto mode (greedy
compression-ratio selection over 10 candidates per layer, scored by validation accuracy;
the input conv ignored, as for rankopt's seed recipe) and saves the compressed module as
``aimet_<ratio>.pt`` (``torch.save`` of the whole module; the venvs share the torch
version). ``run.py --aimet-dir`` gives each one BatchNorm calibration and the same final
fine-tune as every other row. rankopt and its dependencies are imported from the main
interpreter's site-packages (appended to ``sys.path``) to load the model and data.
"""

from __future__ import annotations

import argparse
import sys
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    """Command line: ``bench_aimet.py [--main-site DIR] --out DIR RATIO [RATIO ...]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ratios", nargs="+", type=float, help="target MACs ratios")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--model", default="resnet8")
    parser.add_argument(
        "--main-site",
        default=None,
        help="site-packages of the interpreter that has rankopt's dependencies",
    )
    args = parser.parse_args()
    if args.main_site:
        sys.path.append(args.main_site)
    sys.path.insert(0, str(ROOT))
    import torch
    from aimet_common.defs import CompressionScheme, CostMetric
    from aimet_torch.compress import ModelCompressor
    from aimet_torch.defs import GreedySelectionParameters, SpatialSvdParameters

    from rankopt.data import load_data
    from rankopt.models import get_pretrained

    torch.set_num_threads(1)
    splits = load_data("mnist5k")
    val_x, val_y = splits.val
    args.out.mkdir(parents=True, exist_ok=True)
    for ratio in args.ratios:
        model, _ = get_pretrained(args.model, "mnist5k")
        model.eval()

        def evaluate(m: torch.nn.Module, iterations: int, use_cuda: bool = False) -> float:
            with torch.no_grad():
                return float((m(val_x).argmax(1) == val_y).float().mean())

        first_conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
        greedy = GreedySelectionParameters(
            target_comp_ratio=Decimal(str(ratio)), num_comp_ratio_candidates=10
        )
        params = SpatialSvdParameters(
            SpatialSvdParameters.Mode.auto,
            SpatialSvdParameters.AutoModeParams(greedy, modules_to_ignore=[first_conv]),
        )
        t0 = time.perf_counter()
        compressed, stats = ModelCompressor.compress_model(
            model,
            eval_callback=evaluate,
            eval_iterations=1,
            input_shape=(1, *val_x.shape[1:]),
            compress_scheme=CompressionScheme.spatial_svd,
            cost_metric=CostMetric.mac,
            parameters=params,
        )
        torch.save(compressed, args.out / f"aimet_{ratio:g}.pt")
        print(f"ratio {ratio:g}: {time.perf_counter() - t0:.0f}s\n{stats}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
