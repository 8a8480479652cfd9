"""The non-search rows: the seed recipe, uniform recipes, the greedy allocator and peers.

Plans come from :mod:`benchmarks.bench_plans` (the same code as the MNIST benchmark):
``uniform_<method>`` (one rank fraction everywhere, the largest that fits), ``greedy``
(AIMET-style greedy ratio selection by single-layer validation accuracy) and the
tensorly-torch peer. The other peers build their models in their own modules:
``torch_pruning`` (:mod:`benchmarks.peer_pruning`), AIMET's spatial-SVD greedy
(:mod:`benchmarks.bench_aimet`, in its own venv) and musco (:mod:`benchmarks.peer_musco`,
in its own venv); a peer that is not installed gives a row with a note, not a crash.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

import rankopt
from benchmarks.bench_plans import (
    GreedyScores,
    bench_space,
    greedy_plan,
    greedy_scores,
    n_outputs_of,
    seed_recipe_plan,
    tltorch_model,
    uniform_plan,
)
from benchmarks.fashion.harness import Candidate, Task
from rankopt.search import Budget, SearchSpace


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

    def for_budget(self, fraction: float, calibration: torch.Tensor) -> list[Candidate]:
        """Every non-search candidate at ``fraction`` of dense MACs."""
        task = self.task
        budget = Budget(max_macs=rankopt.parse_budget(fraction, task.dense_macs))
        out: list[Candidate] = []
        for method in self.uniform_methods:
            plan, note = uniform_plan(self.space, method, budget, model_name=task.model_name)
            out.append(Candidate(f"uniform_{method}", plan, None, note))
        plan, note = greedy_plan(
            self.space, self.greedy_scores(calibration), budget, model_name=task.model_name
        )
        out.append(Candidate("greedy", plan, None, f"AIMET-style allocator; {note}"))
        out.append(self._tltorch(budget))
        out.append(self._pruning(fraction))
        out.append(self._from_file("aimet_spatial_svd (peer)", "aimet", fraction))
        out.append(self._from_file("musco (peer)", "musco", fraction))
        return out

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
        model = torch.load(path, weights_only=False).eval()
        note = f"{peer} model {path.name}"
        return Candidate(label, None, model, note, mkldnn_off=peer == "aimet")


def _describe(info: dict[str, Any]) -> str:
    return "; ".join(f"{k} {v}" for k, v in info.items())
