"""One trial: sample, repair, decompose, score before / after a proxy fine-tune."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import optuna
import torch
from optuna.trial import FrozenTrial
from torch import nn

from rankopt.budget import Budget
from rankopt.errors import DecompositionError, TrialFailedError
from rankopt.evaluators import (
    accuracy_and_loss,
    calibrate_bn,
    compute_logits,
    on_device,
    proxy_finetune,
)
from rankopt.latency import measure_latency_ms
from rankopt.plan import apply_plan
from rankopt.searching.objective._duplicates import earlier_evaluation, plan_key
from rankopt.searching.objective._memory import release_free_memory
from rankopt.searching.space._profile import SensitivityProfile
from rankopt.searching.space._proposal import Proposal, Realised
from rankopt.searching.space._space import SearchSpace
from rankopt.storage import DUPLICATE_ATTR, PLAN_KEY_ATTR, VAL_LOSS_ATTR

__all__ = ["FinetuneSettings", "Objective", "TrialData"]

OBJECTIVE_DIRECTIONS: dict[str, Literal["minimize", "maximize"]] = {
    "accuracy": "maximize",
    "macs": "minimize",
    "n_params": "minimize",
    "latency_ms": "minimize",
}


@dataclass(frozen=True)
class FinetuneSettings:
    """Proxy fine-tune settings (stored in the study's ``settings``).

    Attributes:
        steps: Optimiser steps per trial.
        batch_size: Images per step.
        lr: Learning rate (SGD with momentum 0.9).
        temperature: Distillation temperature.
        distill_weight: Weight of the distillation term (the rest is cross-entropy).
        report_every: Steps between intermediate validation reports (pruning); 0 = none.

    No defaults here: :meth:`SearchSettings.finetune` builds it from the search's settings,
    whose fields hold the defaults.
    """

    steps: int
    batch_size: int
    lr: float
    temperature: float
    distill_weight: float
    report_every: int


@dataclass(frozen=True)
class TrialData:
    """Tensors every trial uses, prepared once per study and process.

    Attributes:
        train_images: Fine-tune subset.
        train_labels: Its labels.
        teacher_logits: Dense model's logits on the fine-tune subset.
        val_images: Validation images (never used for training): a tensor, or re-iterable
            ``(images, labels)`` batches streamed at every evaluation.
        val_labels: Their labels.
        val_teacher_logits: Dense model's logits on the validation images.
        calibration_images: Training images that re-estimate BatchNorm statistics after
            each decomposition (a prefix of ``train_images``).
    """

    train_images: torch.Tensor
    train_labels: torch.Tensor
    teacher_logits: torch.Tensor
    val_images: torch.Tensor | Iterable[Any]
    val_labels: torch.Tensor
    val_teacher_logits: torch.Tensor
    calibration_images: torch.Tensor


class Objective:
    """The Optuna objective of a rankopt study.

    Args:
        model: The dense model (left untouched).
        space: The search space.
        budget: Absolute budget.
        data: Tensors prepared once per study.
        objectives: Names of the objectives, ``"accuracy"`` first.
        sensitivity: The study's per-layer sensitivity profile (the allocation's scores).
        repair: ``"repair"`` (the allocation meets the budget) or ``"constraint"`` (the
            allocation meets a sampled ``target``; the budget is an Optuna constraint).
        finetune: Proxy fine-tune settings.
        seed: Seed of every trial's proxy fine-tune, the same for all (common random
            numbers: every plan sees the same batches and augmentation, so the difference
            between two plans' scores is their difference, not two draws of the data order;
            on resnet8 / mnist5k at 7 % of the MACs the recommended plan ended at 0.957 /
            0.947 / 0.947 after the final fine-tune over 3 study seeds, 0.943 / 0.947 /
            0.947 with one seed per trial).
        model_name: Stored in plans.
        study_name: Stored in plans' provenance.
        measure_latency: Also measure batch-1 CPU latency of every trial end to end
            (``measured_latency_ms``); without it, ``latency_ms`` is the latency table's
            prediction.
        latency_runtime: The runtime ``measure_latency`` measures on (None: no measuring).
        latency_threads: Threads ``measure_latency`` times at (None: torch's current count).
    """

    def __init__(
        self,
        model: nn.Module,
        space: SearchSpace,
        budget: Budget,
        data: TrialData,
        sensitivity: SensitivityProfile,
        *,
        objectives: Sequence[str],
        repair: str,
        finetune: FinetuneSettings,
        seed: int,
        model_name: str,
        study_name: str,
        measure_latency: bool = False,
        latency_runtime: str | None = "torch",
        latency_threads: int | None = None,
    ) -> None:
        self.model = model
        self.space = space
        self.budget = budget
        self.data = data
        self.sensitivity = sensitivity
        self.objectives = tuple(objectives)
        self.repair = repair
        self.with_target = space.needs_target(budget, repair)
        self.finetune = finetune
        self.seed = seed
        self.model_name = model_name
        self.study_name = study_name
        self.measure_latency = measure_latency or (
            "latency_ms" in self.objectives and space.latency is None
        )
        self.latency_runtime = latency_runtime
        self.latency_threads = latency_threads
        self.dense_macs = space.profile.macs
        self.dense_params = space.profile.n_params

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, ...]:
        """Evaluate one trial (see the module docstring).

        Ctrl-C (KeyboardInterrupt) during a trial records ``fail_reason`` and propagates:
        Optuna marks the trial FAIL and the study stops; running the same search again
        resumes it.
        """
        try:
            return self._evaluate(trial)
        except KeyboardInterrupt:
            trial.set_user_attr("fail_reason", "interrupted (Ctrl-C / SIGINT)")
            raise
        finally:
            release_free_memory()  # the trial's freed activations go back to the system

    def _evaluate(self, trial: optuna.Trial) -> float | tuple[float, ...]:
        started = time.perf_counter()
        proposal = self.space.suggest(trial, with_target=self.with_target, budget=self.budget)
        realised = self._realise(trial, proposal)
        layers, macs, n_params = list(realised.layers), realised.macs, realised.n_params
        predicted = dict(realised.latency_ms)
        dense_ms = self.space.latency.model_ms if self.space.latency is not None else {}
        for batch_size, ms in predicted.items():
            trial.set_user_attr(f"latency_ms_batch{batch_size}", ms)
            if dense_ms.get(batch_size):
                trial.set_user_attr(f"latency_ratio_batch{batch_size}", ms / dense_ms[batch_size])
        violation = self.budget.violation(macs, n_params, predicted or None)
        if self.repair == "constraint":
            trial.set_user_attr("constraint", [violation])
        feasible = violation <= 0
        provenance = {"study": self.study_name, "trial": trial.number}
        pruning = realised.pruning
        plan = self.space.plan(
            layers, model_name=self.model_name, provenance=provenance, pruning=pruning
        )
        trial.set_user_attr("plan", plan.to_dict())
        trial.set_user_attr("macs", macs)
        trial.set_user_attr("n_params", n_params)
        trial.set_user_attr("macs_ratio", macs / self.dense_macs)
        trial.set_user_attr("params_ratio", n_params / self.dense_params)
        trial.set_user_attr("feasible", feasible)
        key = plan_key(layers, pruning)
        trial.set_user_attr(PLAN_KEY_ATTR, key)
        earlier = earlier_evaluation(trial.study, key, trial.number)
        if earlier is not None:
            return self._reuse(trial, earlier, started)

        try:
            student = apply_plan(self.model, plan)
        except DecompositionError as exc:
            trial.set_user_attr("fail_reason", f"decomposition failed: {exc}")
            raise
        decomposed_s = time.perf_counter() - started

        acc_before, val_loss = self._score_before_finetune(trial, student)
        accuracy, finetune_s = acc_before, 0.0
        if feasible and self.finetune.steps > 0:
            accuracy, val_loss, finetune_s = self._finetune(trial, student)
        trial.set_user_attr("accuracy", accuracy)
        trial.set_user_attr(VAL_LOSS_ATTR, val_loss)
        trial.set_user_attr("finetune_time_s", finetune_s)
        trial.set_user_attr("decompose_time_s", decomposed_s)

        latency_ms = self._latency_ms(trial, student, predicted)
        metrics: dict[str, Any] = {
            "accuracy": accuracy,
            "accuracy_before_finetune": acc_before,
            "macs": macs,
            "n_params": n_params,
            "macs_ratio": macs / self.dense_macs,
            "params_ratio": n_params / self.dense_params,
        }
        if latency_ms is not None:
            metrics["latency_ms"] = latency_ms
        final = self.space.plan(
            layers,
            model_name=self.model_name,
            metrics=metrics,
            provenance=provenance,
            pruning=pruning,
        )
        trial.set_user_attr("plan", final.to_dict())
        trial.set_user_attr("wall_time_s", time.perf_counter() - started)
        values = {"accuracy": accuracy, "macs": float(macs), "n_params": float(n_params)}
        if latency_ms is not None:
            values["latency_ms"] = latency_ms
        out = tuple(values[name] for name in self.objectives)
        return out[0] if len(out) == 1 else out

    def _realise(self, trial: optuna.Trial, proposal: Proposal) -> Realised:
        """The proposal's plan, or the trial pruned / failed with its reason recorded."""
        try:
            realised = self.space.realise(proposal, self.budget, self.sensitivity)
        except TrialFailedError as exc:  # a pruned model that cannot run
            trial.set_user_attr("fail_reason", str(exc))
            raise
        if realised is None:  # the budget below min_cost (checked up front), or with the cap
            reason = "no allocation fits the budget"
            if self.budget.latency_cap_ms:
                reason += (
                    " and the latency cap (no plan slower than dense): raise the budget, or "
                    "allow slower plans (allow_slower=True, --allow-slower)"
                )
            trial.set_user_attr("fail_reason", reason)
            raise optuna.TrialPruned(reason)
        return realised

    def _score_before_finetune(
        self, trial: optuna.Trial, student: nn.Module
    ) -> tuple[float, float]:
        """BatchNorm calibrated, the decomposed model's validation accuracy and loss, and its
        reconstruction error (relative distance of its logits from the dense model's).

        Raises:
            TrialFailedError: the logits are not finite.
        """
        calibrate_bn(student, self.data.calibration_images)
        logits = compute_logits(student, self.data.val_images)
        acc_before, val_loss = accuracy_and_loss(logits, self.data.val_labels)
        teacher = self.data.val_teacher_logits
        recon = float(
            torch.linalg.vector_norm(logits - teacher) / torch.linalg.vector_norm(teacher)
        )
        trial.set_user_attr("accuracy_before_finetune", acc_before)
        trial.set_user_attr("reconstruction_error", recon)
        if not math.isfinite(recon):
            reason = "decomposed model produces non-finite logits"
            trial.set_user_attr("fail_reason", reason)
            raise TrialFailedError(reason)
        return acc_before, val_loss

    def _finetune(self, trial: optuna.Trial, student: nn.Module) -> tuple[float, float, float]:
        """The proxy fine-tune: (validation accuracy, validation loss, seconds).

        Raises:
            TrialFailedError: the loss went non-finite (recorded as the trial's reason).
        """
        report = self._reporter(trial) if self.finetune.report_every > 0 else None
        try:
            result_ft = proxy_finetune(
                student,
                self.data.train_images,
                self.data.train_labels,
                self.data.teacher_logits,
                steps=self.finetune.steps,
                batch_size=self.finetune.batch_size,
                lr=self.finetune.lr,
                temperature=self.finetune.temperature,
                distill_weight=self.finetune.distill_weight,
                seed=self.seed,
                val_images=self.data.val_images,
                val_labels=self.data.val_labels,
                report_every=self.finetune.report_every,
                report=report,
            )
        except TrialFailedError as exc:
            trial.set_user_attr("fail_reason", str(exc))
            raise
        return result_ft.accuracy, result_ft.val_loss, result_ft.wall_time_s

    def _latency_ms(
        self, trial: optuna.Trial, student: nn.Module, predicted: dict[int, float]
    ) -> float | None:
        """The trial's batch-1 latency in ms: predicted by the table, else measured when
        ``measure_latency`` (also stored as ``measured_latency_ms``); None without either."""
        latency_ms = predicted.get(1)
        if self.measure_latency and self.latency_runtime is not None:
            cpu_student = on_device(student, torch.device("cpu"))  # CPU latency on any device
            measured = measure_latency_ms(
                cpu_student,
                tuple(self.space.profile.input_shape),
                runtime=self.latency_runtime,
                n_threads=self.latency_threads,
            )
            trial.set_user_attr("measured_latency_ms", measured)
            latency_ms = measured if latency_ms is None else latency_ms
        if latency_ms is not None:
            trial.set_user_attr("latency_ms", latency_ms)
        return latency_ms

    def _reuse(
        self, trial: optuna.Trial, earlier: FrozenTrial, started: float
    ) -> float | tuple[float, ...]:
        """Take the results of ``earlier``, which evaluated the same plan (see
        :mod:`rankopt.searching.objective._duplicates`)."""
        for name in _REUSED_ATTRS:
            if name in earlier.user_attrs:
                trial.set_user_attr(name, earlier.user_attrs[name])
        plan = dict(earlier.user_attrs["plan"])
        plan["provenance"] = {**plan.get("provenance", {}), "trial": trial.number}
        trial.set_user_attr("plan", plan)
        trial.set_user_attr(DUPLICATE_ATTR, earlier.number)
        trial.set_user_attr("finetune_time_s", 0.0)
        trial.set_user_attr("decompose_time_s", 0.0)
        trial.set_user_attr("wall_time_s", time.perf_counter() - started)
        values = tuple(float(v) for v in earlier.values)
        return values[0] if len(values) == 1 else values

    def _reporter(self, trial: optuna.Trial) -> Any:
        def report(step: int, accuracy: float) -> None:
            trial.report(accuracy, step)
            if len(self.objectives) == 1 and trial.should_prune():
                trial.set_user_attr("accuracy", accuracy)
                raise optuna.TrialPruned(f"pruned at step {step} (accuracy {accuracy:.4f})")

        return report


_REUSED_ATTRS = (
    "accuracy",
    VAL_LOSS_ATTR,
    "accuracy_before_finetune",
    "reconstruction_error",
    "latency_ms",
    "measured_latency_ms",
)
"""Results a trial takes from the earlier trial that evaluated the same plan."""


def settings_dict(finetune: FinetuneSettings) -> dict[str, Any]:
    """JSON-ready form of the fine-tune settings."""
    return asdict(finetune)
