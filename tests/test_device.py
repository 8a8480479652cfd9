"""device=: the dense model, trials and fine-tunes run there; decompositions on the CPU."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
from optuna.trial import TrialState
from torch import nn

from rankopt.errors import SettingsError
from rankopt.evaluators import compute_logits, evaluate_accuracy, full_finetune
from rankopt.evaluators._device import model_device, on_device, resolve_device
from rankopt.searching import search
from rankopt.searching.objective._duplicates import n_distinct_finished

FAST: dict[str, Any] = {"finetune_steps": 10, "finetune_samples": 128, "batch_size": 32}
NO_GPU = "no CUDA GPU on this machine (torch.cuda.is_available() is False)"
needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_GPU)


def test_resolve_device(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(SettingsError, match="'tpu' is not a device; choose one of auto, cpu"):
        resolve_device("tpu")
    with pytest.raises(SettingsError, match="runs on the CPU or CUDA"):
        resolve_device("meta")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device(None) == torch.device("cpu")
    with pytest.raises(SettingsError, match="CUDA is not available on this machine"):
        resolve_device("cuda")
    with pytest.raises(SettingsError, match="CUDA is not available"):
        resolve_device("cuda:1")


def test_on_device_leaves_the_callers_model_alone(tiny_resnet: nn.Module) -> None:
    assert on_device(tiny_resnet, torch.device("cpu")) is tiny_resnet
    double = copy.deepcopy(tiny_resnet).double()
    assert model_device(double).type == "cpu"


def test_cpu_search_records_its_device_and_matches_the_default(
    trained_digits_net: nn.Module, digits_data: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # auto -> cpu everywhere
    before = {k: v.clone() for k, v in trained_digits_net.state_dict().items()}
    runs = {}
    for device in ("cpu", "auto"):
        study = search(
            trained_digits_net,
            digits_data["train"],
            digits_data["val"],
            max_macs=0.5,
            n_trials=3,
            device=device,
            **FAST,
        )
        assert study.user_attrs["settings"]["device"] == "cpu"
        runs[device] = [t.values for t in study.get_trials(states=(TrialState.COMPLETE,))]
        assert n_distinct_finished(study) == 3
    assert runs["cpu"] == runs["auto"]
    after = trained_digits_net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_search_on_missing_cuda_fails_before_the_study(
    trained_digits_net: nn.Module, digits_data: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SettingsError, match="device = 'cuda' but CUDA is not available"):
        search(trained_digits_net, digits_data["train"], digits_data["val"], device="cuda")


def test_cli_device_errors_are_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from rankopt.cli import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for device, fragment in (("cuda", "CUDA is not available"), ("tpu", "is not a device")):
        rc = main(["search", "--model", "x:y", "--device", device, "--run-dir", str(tmp_path)])
        err = capsys.readouterr().err
        assert rc == 2 and "Traceback" not in err
        assert err.strip().splitlines()[-1].startswith("rankopt: error: ")
        assert fragment in err, err


@needs_gpu
def test_cuda_evaluators_match_cpu(
    trained_digits_net: nn.Module, digits_data: dict[str, Any]
) -> None:
    x, y = digits_data["val"]
    cpu_logits = compute_logits(trained_digits_net, x)
    gpu_logits = compute_logits(trained_digits_net, x, device="cuda")
    assert model_device(trained_digits_net).type == "cpu"  # a copy ran on the GPU
    torch.testing.assert_close(gpu_logits, cpu_logits, rtol=1e-3, atol=1e-3)
    assert evaluate_accuracy(trained_digits_net, x, y, device="cuda") == pytest.approx(
        evaluate_accuracy(trained_digits_net, x, y), abs=1 / len(y)
    )
    student = copy.deepcopy(trained_digits_net)
    tuned = full_finetune(
        student, trained_digits_net, digits_data["train"], epochs=1, device="cuda"
    )
    assert model_device(tuned).type == "cuda"
    assert evaluate_accuracy(tuned, x, y) > 0.8


@needs_gpu
def test_cuda_search_runs_trials_on_the_gpu(
    trained_digits_net: nn.Module, digits_data: dict[str, Any]
) -> None:
    study = search(
        trained_digits_net,
        digits_data["train"],
        digits_data["val"],
        max_macs=0.5,
        n_trials=3,
        device="cuda",
        measure_latency=True,
        **FAST,
    )
    assert study.user_attrs["settings"]["device"].startswith("cuda")
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(trials) == 3
    for t in trials:
        assert 0.5 < t.user_attrs["accuracy"] <= 1.0
        assert t.user_attrs["latency_ms"] > 0
    assert model_device(trained_digits_net).type == "cpu"
