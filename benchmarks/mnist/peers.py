"""The MNIST benchmark's peer notes: AIMET's (its own venv) and musco's install check."""

from __future__ import annotations

import shlex
import subprocess
import sys

AIMET_NOTE = (
    "**aimet-torch** 2.42.0: installs into its own venv (`python -m venv /tmp/aimet && "
    "/tmp/aimet/bin/pip install aimet-torch`; it pulls its own torch stack) and its "
    "spatial-SVD greedy (`ModelCompressor.compress_model`, `CompressionScheme.spatial_svd`, "
    "`CostMetric.mac`, auto mode, 10 ratio candidates per layer, input conv ignored) runs on "
    "resnet8 in 40-65 s per budget: `benchmarks/bench_aimet.py` writes the compressed "
    "models, and `run.py --aimet-dir DIR` adds them as `aimet_spatial_svd (peer)` rows "
    "(calibration + the same final fine-tune). Its models (kx1 then 1xk convs, the stride "
    "split (2,1) / (1,2), rank-1 1x1 shortcuts) crash torch 2.14.1's CPU oneDNN convolution "
    "backward ('malloc(): unaligned tcache chunk detected' / segfault in the first fine-tune "
    "step, also after rebuilding them as fresh Conv2d modules; every conv alone is fine), so "
    "these rows are evaluated with `torch.backends.mkldnn` off (their latency ratios too). "
    "A run without `--aimet-dir` has no aimet row."
)


def peer_check(package: str) -> str:
    """``pip install --dry-run package``: 'installs' or the error lines pip printed."""
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--no-input", package]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`{shlex.join(cmd[2:])}` did not finish: {exc}"
    text = proc.stdout + proc.stderr
    if proc.returncode == 0:
        would = [line for line in text.splitlines() if line.startswith("Would install")]
        return f"`pip {shlex.join(cmd[3:])}` succeeds ({'; '.join(would) or 'nothing to do'})"
    keep = [
        line.strip()
        for line in text.splitlines()
        if line.strip()
        and not line.startswith("WARNING: Location")
        and any(
            key in line
            for key in ("Collecting", "error", "Error", "NameError", "╰─>", "from ccompiler")
        )
    ]
    return (
        f"`pip {shlex.join(cmd[3:])}` fails (exit {proc.returncode}):\n\n```\n"
        + "\n".join(keep[-14:])
        + "\n```"
    )
