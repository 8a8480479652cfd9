"""The non-search rows: the seed recipe, uniform recipes, the greedy allocator and peers.

Plans come from :mod:`benchmarks.common.recipes` (the same code as the MNIST benchmark):
``uniform_<method>`` (one rank fraction everywhere, the largest that fits), ``greedy``
(AIMET-style greedy ratio selection by single-layer validation accuracy) and the
tensorly-torch peer. The other peers build their models in their own modules:
``torch_pruning`` (:mod:`benchmarks.peer_pruning`), AIMET's spatial-SVD greedy
(:mod:`benchmarks.bench_aimet`, in its own venv) and musco (:mod:`benchmarks.peer_musco`,
in its own venv); a peer that is not installed gives a row with a note, not a crash.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any

import torch

import rankopt
from benchmarks.common.harness import Candidate
from benchmarks.common.peers import tltorch_model
from benchmarks.common.recipes import (
    GreedyScores,
    bench_space,
    greedy_plan,
    greedy_scores,
    n_outputs_of,
    seed_recipe_plan,
    uniform_plan,
)
from benchmarks.fashion.harness import Task
from rankopt.searching import Budget, SearchSpace


class Rows:
    """Builds the candidates of every budget for one task (greedy scored once).

    Args:
        task: The model and data.
        uniform_methods: Methods of the ``uniform_<method>`` rows.
        peer_dirs: Folders holding the peers' compressed models written by their own
            venvs: ``{"aimet": dir, "musco": dir}`` (a missing folder: a row with a note).
        progress: Progress lines.
    """

    def __init__(
        self,
        task: Task,
        *,
        uniform_methods: Sequence[str],
        peer_dirs: dict[str, Path | None],
        progress: Callable[[str], None],
    ) -> None:
        self.task = task
        self.space: SearchSpace = bench_space(
            task.model, task.input_shape, n_outputs_of(task.model, task.train[0])
        )
        self.uniform_methods = tuple(uniform_methods)
        self.peer_dirs = peer_dirs
        self.say = progress
        self._greedy: GreedyScores | None = None

    def seed_recipe(self) -> Candidate:
        """Kim et al.: Tucker-2 / SVD at the VBMF ranks, input conv dense, no budget."""
        plan = seed_recipe_plan(self.task.model, self.space, model_name=self.task.model_name)
        detail = ", ".join(
            f"{lp.layer}:{lp.method}{dict(lp.ranks)}" for lp in plan.layers if lp.method != "keep"
        )
        return Candidate(
            "seed_recipe",
            plan,
            None,
            "Kim et al., VBMF ranks",
            {
                "detail": detail,
                "layers_decomposed": sum(lp.method != "keep" for lp in plan.layers),
                "layers_searchable": len(self.space.layer_names),
            },
        )

    def greedy_scores(self, calibration: torch.Tensor) -> GreedyScores:
        """Score every layer alone at the greedy ratios (once per run)."""
        if self._greedy is None:
            self.say(f"[greedy] scoring {len(self.space.layer_names)} layers alone")
            self._greedy = greedy_scores(
                self.task.model,
                self.space,
                self.task.val,
                calibration[:256],
                model_name=self.task.model_name,
            )
        return self._greedy

    def for_budget(
        self, fraction: float, calibration: torch.Tensor, only: Collection[str] | None = None
    ) -> list[Candidate]:
        """The in-process candidates at ``fraction`` of dense MACs (all but the file peers);
        ``only``: just the rows of these labels (``uniform_tucker2``, ``greedy``,
        ``tltorch_tucker``, ``torch_pruning``), the others are not built."""
        task = self.task
        budget = Budget(max_macs=rankopt.parse_budget(fraction, task.dense_macs))

        def wanted(label: str) -> bool:
            return only is None or label in only

        out: list[Candidate] = []
        for method in self.uniform_methods:
            if wanted(f"uniform_{method}"):
                plan, note = uniform_plan(self.space, method, budget, model_name=task.model_name)
                out.append(Candidate(f"uniform_{method}", plan, None, note))
        if wanted("greedy"):
            plan, note = greedy_plan(
                self.space, self.greedy_scores(calibration), budget, model_name=task.model_name
            )
            out.append(Candidate("greedy", plan, None, f"AIMET-style allocator; {note}"))
        if wanted("tltorch_tucker"):
            out.append(self._tltorch(budget))
        if wanted("torch_pruning"):
            out.append(self._pruning(fraction))
        return out

    def file_peers(self, fraction: float) -> list[Candidate]:
        """The peers whose models their own venvs wrote (see :func:`make_peer_models`)."""
        return [
            self._from_file("musco (peer)", "musco", fraction),
            self._from_file("aimet_spatial_svd (peer)", "aimet", fraction),
        ]

    def _tltorch(self, budget: Budget) -> Candidate:
        label = "tltorch_tucker (peer)"
        try:
            model, note = tltorch_model(self.task.model, self.space, budget, self.task.input_shape)
        except ImportError as exc:
            return Candidate(label, None, None, f"tensorly-torch not importable: {exc}")
        except rankopt.RankoptError as exc:
            return Candidate(label, None, None, str(exc))
        return Candidate(label, None, model, note)

    def _pruning(self, fraction: float) -> Candidate:
        label = "torch_pruning (peer)"
        try:
            from benchmarks.peer_pruning import pruned_model
        except ImportError as exc:
            return Candidate(label, None, None, f"torch-pruning not importable: {exc}")
        model, info = pruned_model(self.task.model, self.task.input_shape, fraction)
        return Candidate(label, None, model, _describe(info))

    def _from_file(self, label: str, peer: str, fraction: float) -> Candidate:
        folder = self.peer_dirs.get(peer)
        path = Path(folder) / f"{peer}_{fraction:g}.pt" if folder else None
        if path is None or not path.exists():
            where = path or f"no --{peer}-dir"
            return Candidate(label, None, None, f"no model file ({where})")
        info_path = path.with_suffix(".json")
        info = json.loads(info_path.read_text()) if info_path.exists() else {}
        made_for = (info.get("model"), info.get("data"))
        if made_for != (self.task.model_name, self.task.data_name):
            return Candidate(label, None, None, f"{path} was made for {made_for}, not this task")
        model = torch.load(path, weights_only=False).eval()
        note = str(info.get("note") or f"{peer} model {path.name}")
        return Candidate(label, None, model, note, mkldnn_off=peer == "aimet")


def _describe(info: dict[str, Any]) -> str:
    if "note" in info:
        return str(info["note"])
    return "; ".join(f"{k} {v}" for k, v in info.items())


AIMET_PYTHON = Path("/tmp/aimet/bin/python")
"""The venv :mod:`benchmarks.bench_aimet` documents (aimet-torch pins its own stack)."""


def make_peer_models(
    task: Task, budgets: Sequence[float], folder: Path, progress: Callable[[str], None]
) -> list[str]:
    """Write the musco and AIMET models of every budget into ``folder`` where missing.

    musco: :func:`benchmarks.peer_musco.musco_models` (it creates its venv when missing).
    AIMET: ``benchmarks/bench_aimet.py`` run by the venv's interpreter
    (:data:`AIMET_PYTHON`); without that venv the AIMET rows say so.

    Returns:
        One line per peer saying what was made or why not.
    """
    import site
    import subprocess

    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    missing = [b for b in budgets if not (folder / f"musco_{b:g}.pt").exists()]
    if missing:
        progress(f"[musco] compressing at {missing} in its venv")
        try:
            from benchmarks.peer_musco import musco_models

            musco_models(task.model_name, task.data_name, missing, folder)
            lines.append(f"musco: made {len(missing)} model(s) with peer_musco.musco_models")
        except Exception as exc:  # the venv cannot be built here, say
            lines.append(f"musco: not made: {type(exc).__name__}: {str(exc)[:300]}")
    missing = [b for b in budgets if not (folder / f"aimet_{b:g}.pt").exists()]
    if missing and AIMET_PYTHON.exists():
        progress(f"[aimet] compressing at {missing} in its venv")
        script = Path(__file__).resolve().parent.parent / "bench_aimet.py"
        cmd = [str(AIMET_PYTHON), str(script), "--model", task.model_name]
        cmd += ["--data", task.data_name, "--out", str(folder)]
        cmd += ["--main-site", site.getsitepackages()[0], *[f"{b:g}" for b in missing]]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        lines.append(
            f"aimet: bench_aimet.py exit {proc.returncode}"
            + ("" if proc.returncode == 0 else f": {proc.stderr[-300:]}")
        )
    elif missing:
        lines.append(f"aimet: no venv at {AIMET_PYTHON} (see benchmarks/bench_aimet.py)")
    return lines
