"""Per-layer latency table (rankopt.latency.latency_table) on a tiny model."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch
from rankopt_testmodels import small_net

from rankopt.errors import SettingsError
from rankopt.latency import LATENCY_SCHEMA_VERSION, latency_table, rank_grid
from rankopt.latency._grid import method_module
from rankopt.plan import LayerPlan
from rankopt.spaces import get_method

INPUT = (1, 8, 8)


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def test_table_measures_predicts_and_is_reused(tmp_path: Path) -> None:
    model = small_net()
    calls: list[tuple[int, int, str]] = []
    kwargs = dict(
        batch_sizes=(1, 4), n_grid=3, n_warmup=1, n_runs=3, cache_dir=tmp_path, min_timed_s=0.0
    )
    table = latency_table(
        model,
        INPUT,
        ["svd", "tucker2", "cp", "linear_svd"],
        progress=lambda *a: calls.append(a),
        **kwargs,  # type: ignore[arg-type]
    )
    assert calls and calls[-1][0] == calls[-1][1]  # progress reached its total
    assert table.cache_path is not None and table.cache_path.is_file()
    saved = json.loads(table.cache_path.read_text())
    assert saved["schema_version"] == LATENCY_SCHEMA_VERSION
    assert saved["key"]["threads"] == 1 and saved["key"]["dtype"] == "float32"

    layer = table.layers["conv2"]
    dense = table.dense_layer_ms("conv2", 4)
    assert dense > 0 and table.predict_layer_ms("conv2", "keep", {}, None, 4) == dense
    grid = rank_grid("svd", layer, 3)
    assert len(grid) == 3 and grid[0] == {"r": 1}
    impl = get_method("svd")
    assert all(impl.macs(layer, r) < layer.macs for r in grid)
    # At the grid points the prediction is the measured change (ratio - 1 of the dense
    # time) times the table's whole-plan scale, fitted on a few timed plans.
    scale = table.plan_scale[4]
    assert set(table.plan_scale) == {1, 4} and 0.5 <= scale <= 1.5
    for (macs, ratio), ranks in zip(table.curves[("conv2", "svd", 4)], grid, strict=True):
        assert macs == impl.macs(layer, ranks)
        assert table.predict_layer_ms("conv2", "svd", ranks, None, 4) == pytest.approx(
            dense + scale * (ratio - 1) * dense
        )
    # Between grid points it interpolates.
    lo, hi = grid[1]["r"], grid[2]["r"]
    mid = table.predict_layer_ms("conv2", "svd", {"r": (lo + hi) // 2}, None, 4)
    ends = [table.predict_layer_ms("conv2", "svd", g, None, 4) for g in grid[1:]]
    assert min(ends) - 1e-9 <= mid <= max(ends) + 1e-9

    plan = [
        LayerPlan("conv2", "svd", {"r": grid[1]["r"]}, {}, (16, 8, 3, 3)),
        LayerPlan("conv1", "keep", {}, {}, (8, 1, 3, 3)),
    ]
    whole = table.predict_model_ms(plan, 4)
    expected = table.model_ms[4] + table.predict_layer_ms("conv2", "svd", plan[0].ranks, None, 4)
    assert whole == pytest.approx(expected - dense)
    with pytest.raises(SettingsError, match="batch_size=7"):
        table.dense_layer_ms("conv2", 7)
    with pytest.raises(SettingsError, match="gkpd"):
        table.predict_layer_ms("conv2", "gkpd", {"r": 1}, None, 1)

    # Second run: everything comes from disk (no progress calls, same numbers).
    again: list[tuple[int, int, str]] = []
    table2 = latency_table(
        model,
        INPUT,
        ["svd", "tucker2", "cp", "linear_svd"],
        progress=lambda *a: again.append(a),
        **kwargs,  # type: ignore[arg-type]
    )
    assert again == []
    assert table2.dense_ms == table.dense_ms and table2.curves == table.curves
    assert table2.model_ms == table.model_ms and table2.plan_scale == table.plan_scale
    # A new method measures only that method.
    more: list[tuple[int, int, str]] = []
    table3 = latency_table(
        model,
        INPUT,
        ["svd", "spatial_svd"],
        progress=lambda *a: more.append(a),
        **kwargs,  # type: ignore[arg-type]
    )
    assert more and ("conv2", "spatial_svd", 1) in table3.curves
    # svd is not measured again: its points come from disk. Its ratios go through the
    # table's dense time, which the merge recomputes over more rounds; that time cancels
    # in the ratio, but not in floating point (seen: 1 ulp apart).
    reused, first = table3.curves[("conv2", "svd", 1)], table.curves[("conv2", "svd", 1)]
    assert [m for m, _ in reused] == [m for m, _ in first]
    assert [r for _, r in reused] == pytest.approx([r for _, r in first], rel=1e-12)


def test_measured_ratios_are_made_monotone_in_macs() -> None:
    from rankopt.latency._grid import monotone_ratios as _monotone

    # a dip (0.5 between 0.8 and 0.9) is noise: more rank never runs faster
    fitted = _monotone([(10, 0.8), (20, 0.5), (30, 0.9), (40, 1.2)])
    assert [m for m, _ in fitted] == [10, 20, 30, 40]
    assert [round(r, 6) for _, r in fitted] == [0.65, 0.65, 0.9, 1.2]
    assert _monotone([(1, 0.1), (2, 0.2)]) == ((1, 0.1), (2, 0.2))


# ---------------------------------------------------------------- runtimes
def test_onnxruntime_table_has_its_own_cache_entry_and_is_reused(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime (the 'onnx' extra) is missing")
    model = small_net()
    kwargs = dict(
        batch_sizes=(1, 4), n_grid=2, n_warmup=1, n_runs=3, cache_dir=tmp_path, min_timed_s=0.0
    )
    calls: list[tuple[int, int, str]] = []
    table = latency_table(
        model,
        INPUT,
        ["svd"],
        runtime="onnxruntime",
        progress=lambda *a: calls.append(a),
        **kwargs,  # type: ignore[arg-type]
    )
    assert calls and table.runtime == "onnxruntime"
    assert table.cache_path is not None
    key = json.loads(table.cache_path.read_text())["key"]
    assert key["runtime"] == "onnxruntime" and key["runtime_version"] == ort.__version__
    assert all(ms > 0 for ms in table.model_ms.values())
    assert ("conv2", "svd", 4) in table.curves
    torch_table = latency_table(model, INPUT, ["svd"], **kwargs)  # type: ignore[arg-type]
    assert torch_table.runtime == "torch" and torch_table.cache_path != table.cache_path
    again: list[tuple[int, int, str]] = []
    table2 = latency_table(
        model,
        INPUT,
        ["svd"],
        runtime="onnxruntime",
        progress=lambda *a: again.append(a),
        **kwargs,  # type: ignore[arg-type]
    )
    assert again == [] and table2.curves == table.curves and table2.model_ms == table.model_ms


def test_each_runtime_runs_the_swapped_model_it_is_asked_to_time() -> None:
    pytest.importorskip("onnxruntime", reason="onnxruntime (the 'onnx' extra) is missing")
    from rankopt.latency._runtimes import RUNTIMES, _swapped
    from rankopt.spaces._build import build_module
    from rankopt.spaces._layer import LayerInfo

    model = small_net().eval()
    layers = [info for info in _profile_layers(model) if isinstance(info, LayerInfo)]
    layer = next(info for info in layers if info.name == "conv2")
    dense = model.get_submodule("conv2")
    small = build_module(dense, layer, "svd", {"r": 2})
    variant = _swapped(model, "conv2", small)
    assert model.get_submodule("conv2") is dense  # the caller's model is left as it was
    assert isinstance(variant.get_submodule("conv2"), torch.nn.Sequential)
    x = torch.randn(3, *INPUT, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = variant(x)
    for name, runtime in RUNTIMES.items():
        out = runtime.compile(variant, INPUT)(x)
        got = torch.as_tensor(out[0]) if isinstance(out, list) else out
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5, msg=name)


def _profile_layers(model: torch.nn.Module) -> list[object]:
    from rankopt.evaluators import profile

    return list(profile(model, INPUT).layers)


def test_end_to_end_latency_on_each_runtime_and_unknown_runtimes() -> None:
    pytest.importorskip("onnxruntime", reason="onnxruntime (the 'onnx' extra) is missing")
    from rankopt.errors import UnknownNameError
    from rankopt.latency import measure_latency_ms

    model = small_net()
    for runtime in ("torch", "onnxruntime"):
        ms = measure_latency_ms(model, INPUT, batch_size=2, n_runs=3, runtime=runtime)
        assert 0 < ms < 1000
    with pytest.raises(UnknownNameError, match=r"tvm.*onnxruntime.*torch"):
        measure_latency_ms(model, INPUT, runtime="tvm")
    with pytest.raises(UnknownNameError, match="tvm"):
        latency_table(model, INPUT, ["svd"], runtime="tvm")


def test_rank_grid_with_a_multiple_measures_the_ranks_a_search_realises() -> None:
    from rankopt.evaluators import profile

    wide = torch.nn.Sequential(torch.nn.Conv2d(32, 64, 3, padding=1), torch.nn.ReLU())
    layer = next(iter(profile(wide, (32, 8, 8)).eligible_layers))
    for method in ("svd", "tucker2", "spatial_svd"):
        impl = get_method(method)
        full = impl.rank_space(layer)
        grid = rank_grid(method, layer, 4, multiple=8)
        assert 2 <= len(grid) <= 4
        assert len({tuple(sorted(g.items())) for g in grid}) == len(grid)
        for ranks in grid:
            assert all(r % 8 == 0 or r == full[k] for k, r in ranks.items()), (method, ranks)
            assert impl.macs(layer, ranks) < layer.macs
        macs = [impl.macs(layer, g) for g in grid]
        assert macs == sorted(macs)


def test_onnxruntime_searches_round_ranks_to_its_channel_block_unless_told_otherwise() -> None:
    from numpy._core._multiarray_umath import __cpu_features__

    from rankopt.latency._runtimes import nchwc_block
    from rankopt.searching.loop._settings import SearchSettings

    expected = (
        16
        if __cpu_features__["AVX512F"]
        else 8
        if __cpu_features__["AVX2"] and __cpu_features__["FMA3"]
        else 4
    )
    assert nchwc_block() == expected
    assert SearchSettings(latency_runtime="onnxruntime").ranks_multiple_of == expected
    assert SearchSettings(latency_runtime="onnxruntime", rank_multiple=1).ranks_multiple_of == 1
    assert SearchSettings().ranks_multiple_of == expected  # ONNX Runtime by default
    assert SearchSettings(latency_runtime="torch").ranks_multiple_of == 1
    assert SearchSettings(latency_runtime=None).ranks_multiple_of == 1
    from rankopt.errors import UnknownNameError

    with pytest.raises(UnknownNameError, match="tvm"):
        SearchSettings(latency_runtime="tvm")
    with pytest.raises(SettingsError, match="rank_multiple = 0"):
        SearchSettings(rank_multiple=0)


# ---------------------------------------------------------------- methods per runtime
def test_cp_is_latency_friendly_on_onnxruntime_only() -> None:
    assert get_method("cp").latency_friendly_on("onnxruntime")
    assert not get_method("cp").latency_friendly_on("torch")
    for runtime in ("torch", "onnxruntime"):
        assert not get_method("gkpd").latency_friendly_on(runtime)
        assert get_method("svd").latency_friendly_on(runtime)
        assert get_method("tucker2").latency_friendly_on(runtime)


def _fake_swapped(
    _self: object,
    model: torch.nn.Module,
    name: str,
    modules: list[torch.nn.Module],
    *_: object,
    **__: object,
) -> list[float]:
    """A deterministic stand-in for timing the model with ``name`` swapped: 1 ns per weight."""

    def ms(m: torch.nn.Module) -> float:
        return 1e-6 * sum(p.numel() for p in m.parameters())

    base = ms(model) - ms(model.get_submodule(name))
    return [1e-3 + base + ms(m) for m in modules]


def _fake_models(
    _self: object, models: list[torch.nn.Module], *_: object, **__: object
) -> list[float]:
    """Whole models by the cost model of :func:`_fake_swapped`, except that swaps together
    change the time by 0.8 of the sum of their changes alone."""
    ms = [1e-3 + 1e-6 * sum(p.numel() for p in m.parameters()) for m in models]
    return [ms[0]] + [ms[0] + 0.8 * (t - ms[0]) for t in ms[1:]]


def test_whole_plans_that_save_less_than_their_swaps_alone_scale_the_prediction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rankopt.latency._plans import N_PLANS, fit_scale, plan_fit_error
    from rankopt.latency._runtimes import TorchRuntime

    monkeypatch.setattr(TorchRuntime, "time_swapped_ms", _fake_swapped)
    monkeypatch.setattr(TorchRuntime, "time_models_ms", _fake_models)
    model = small_net()
    table = latency_table(
        model, INPUT, ["svd", "tucker2"], batch_sizes=(1, 4), n_grid=3, cache_dir=tmp_path
    )
    assert table.plan_scale == pytest.approx({1: 0.8, 4: 0.8})
    saved = json.loads(table.cache_path.read_text())  # type: ignore[union-attr]
    entry = next(iter(saved["models"].values()))["4"]["plan_scale"]["x1"]
    assert len(entry["plans"]) == N_PLANS and entry["scale"] == pytest.approx(0.8)
    # A plan's prediction is the measured whole-model time of the same swaps.
    grid = rank_grid("svd", table.layers["conv2"], 3)
    plan = [LayerPlan("conv2", "svd", grid[0], {}, (16, 8, 3, 3))]
    swapped = copy.deepcopy(model)
    swapped.conv2 = method_module("svd", table.layers["conv2"], grid[0], torch.Generator())
    measured = _fake_models(None, [model, swapped])[1]
    assert table.predict_model_ms(plan, 4) == pytest.approx(measured)
    # Another set of methods reuses the scale: no whole plan is timed again.
    monkeypatch.setattr(TorchRuntime, "time_models_ms", None)
    other = latency_table(model, INPUT, ["svd"], batch_sizes=(1, 4), n_grid=3, cache_dir=tmp_path)
    assert other.plan_scale == table.plan_scale
    # The fit: least squares through the origin, clamped to [0.5, 1.5].
    assert fit_scale([-1.0, -2.0], [-0.9, -1.8]) == pytest.approx(0.9)
    assert fit_scale([-1.0], [-5.0]) == 1.5 and fit_scale([-1.0], [1.0]) == 0.5
    assert fit_scale([0.0, 0.0], [0.1, -0.1]) == 1.0
    assert fit_scale([-1.0, -2.0], [float("nan"), -1.8]) == 1.0
    # Its error: the scaled predictions of the plans' whole times vs their measured times.
    assert table.plan_error == pytest.approx({1: 0.0, 4: 0.0}, abs=1e-9)
    assert entry["error"] == pytest.approx(0.0, abs=1e-9)
    # dense 10 ms; 10 - 0.9 * 2 = 8.2 vs 8 measured: 2.5 %; 10 - 0.9 * 1 = 9.1 vs 9.5: 4.2 %.
    assert plan_fit_error(0.9, 10.0, [-2.0, -1.0], [-2.0, -0.5]) == pytest.approx(0.4 / 9.5)
    assert math.isnan(plan_fit_error(1.0, 1.0, [-2.0], [-1.0]))  # a time of 0: no error


def _noisy_models(
    _self: object, models: list[torch.nn.Module], *_: object, **__: object
) -> list[float]:
    """:func:`_fake_models` with each whole plan's time off by -30 % or +30 % in turn."""
    times = _fake_models(None, models)
    return [times[0]] + [t * (0.7 if i % 2 else 1.3) for i, t in enumerate(times[1:])]


@pytest.mark.real_latency  # its own fake timings, not conftest's
def test_the_search_refuses_a_table_that_mispredicts_whole_plans(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Plans 30 % off: the search stops before any trial and says why and what to do;
    with the tolerance raised above the error it goes on."""
    from rankopt.errors import SettingsError
    from rankopt.evaluators import profile
    from rankopt.latency._runtimes import TorchRuntime
    from rankopt.searching.loop._inputs import measure_latency_table
    from rankopt.searching.loop._settings import SearchSettings

    monkeypatch.setenv("RANKOPT_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(TorchRuntime, "time_swapped_ms", _fake_swapped)
    monkeypatch.setattr(TorchRuntime, "time_models_ms", _noisy_models)
    model = small_net()
    lines: list[str] = []
    with pytest.raises(SettingsError) as refused:
        measure_latency_table(
            model, profile(model, INPUT), SearchSettings(latency_runtime="torch"), lines.append
        )
    message = str(refused.value)
    assert "cannot predict latency on this machine within 15 %" in message
    assert "(batch 1)" in message and "(batch 64)" in message
    assert "1 thread)" in message and "--latency-threads 1" not in message  # it was at 1
    assert "--latency-tolerance" in message and "delete" in message
    assert lines[0].startswith("latency table on this machine (")
    assert lines[0].endswith(", 1 thread; cached on disk)")
    worst = float(message.rsplit("--latency-tolerance ", 1)[1])
    # Accepting the error: the cached table (now measured) is used, its error above 25 %.
    table = measure_latency_table(
        model,
        profile(model, INPUT),
        SearchSettings(latency_runtime="torch", latency_tolerance=worst),
        lines.append,
    )
    assert 0.25 < max(table.plan_error.values()) < worst
    with pytest.raises(SettingsError, match=r"latency_tolerance = 0 must be in \(0, 1\]"):
        SearchSettings(latency_tolerance=0)


@pytest.mark.real_latency  # its own fake timings, not conftest's
def test_with_only_the_cap_a_table_over_the_tolerance_is_one_line_and_a_margin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same table 30 % off: a search with only the never-slower-than-dense cap goes on,
    says so in one line and takes the tolerance off the cap; a latency budget still stops."""
    from rankopt.evaluators import profile
    from rankopt.latency._runtimes import TorchRuntime
    from rankopt.searching.loop._inputs import study_latency
    from rankopt.searching.loop._settings import SearchSettings

    monkeypatch.setenv("RANKOPT_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(TorchRuntime, "time_swapped_ms", _fake_swapped)
    monkeypatch.setattr(TorchRuntime, "time_models_ms", _noisy_models)
    model = small_net()
    prof = profile(model, INPUT)
    settings = SearchSettings(latency_runtime="torch")
    lines: list[str] = []
    table, limits = study_latency(model, prof, settings, lines.append, None)
    assert table is not None and min(table.plan_error.values()) > 0.15
    assert "erred up to" in lines[-1] and "takes 15 % off at most" in lines[-1]
    assert limits["max_latency_ms"] == ()
    cap = dict(limits["latency_cap_ms"])
    assert cap == pytest.approx({b: 0.85 * ms for b, ms in table.model_ms.items()})
    with pytest.raises(SettingsError, match="cannot predict latency on this machine"):
        study_latency(model, prof, settings, lines.append, "90%")
    allowed = SearchSettings(latency_runtime="torch", allow_slower=True)
    assert study_latency(model, prof, allowed, lines.append, None)[1]["latency_cap_ms"] == ()


def test_latency_is_timed_at_one_thread_unless_told(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The table and the side-by-side comparison time at 1 thread whatever torch's count,
    restore that count, and refuse more threads than the usable cores, saying why."""
    from rankopt.errors import SettingsError
    from rankopt.latency._measure import compare_latency_ms, usable_cores
    from rankopt.latency._runtimes import TorchRuntime
    from rankopt.searching.loop._settings import SearchSettings

    seen: list[int] = []

    def timed(_self: object, models: list[torch.nn.Module], *a: object, **k: object) -> list[float]:
        seen.append(torch.get_num_threads())
        return _fake_models(None, models)

    monkeypatch.setattr(TorchRuntime, "time_models_ms", timed)
    monkeypatch.setattr(TorchRuntime, "time_swapped_ms", _fake_swapped)
    monkeypatch.setattr("rankopt.latency._measure.usable_cores", lambda: 2)
    torch.set_num_threads(2)
    model = small_net()
    compare_latency_ms([model, small_net()], INPUT, batch_sizes=(1,), min_timed_s=0.0)
    table = latency_table(model, INPUT, ["svd"], batch_sizes=(1,), n_grid=2, cache_dir=tmp_path)
    assert set(seen) == {1} and table.n_threads == 1
    assert torch.get_num_threads() == 2  # restored
    seen.clear()
    compare_latency_ms([model], INPUT, batch_sizes=(1,), min_timed_s=0.0, n_threads=2)
    assert set(seen) == {2}
    with pytest.raises(SettingsError) as refused:
        compare_latency_ms([model], INPUT, batch_sizes=(1,), n_threads=3)
    assert "latency_threads = 3 must be at most the 2 CPU core(s)" in str(refused.value)
    assert "scheduler" in str(refused.value)
    with pytest.raises(SettingsError, match="latency_threads = 3"):
        SearchSettings(latency_threads=3)
    assert usable_cores() >= 1


@pytest.mark.real_latency  # its own fake timings, not conftest's
def test_the_search_times_and_offers_cp_on_onnxruntime_not_on_torch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Timings (and ONNX Runtime's version) faked: the test checks which methods the search
    # measures and offers per runtime, not this machine's speed.
    from rankopt.evaluators import profile
    from rankopt.latency._runtimes import OnnxRuntime, TorchRuntime
    from rankopt.searching.loop._inputs import measure_latency_table
    from rankopt.searching.loop._settings import SearchSettings
    from rankopt.searching.space._space import SearchSpace

    monkeypatch.setenv("RANKOPT_CACHE_DIR", str(tmp_path))
    for cls in (TorchRuntime, OnnxRuntime):
        monkeypatch.setattr(cls, "time_swapped_ms", _fake_swapped)
        monkeypatch.setattr(cls, "time_models_ms", _fake_models)
    monkeypatch.setattr(OnnxRuntime, "check_available", lambda _self: None)
    monkeypatch.setattr(
        OnnxRuntime, "signature", lambda _self: {"runtime": "onnxruntime", "runtime_version": "x"}
    )
    # The small net's channels fit a block of 4 (an AVX-512 CPU's 16 would leave Tucker-2
    # no rank below full).
    monkeypatch.setattr("rankopt.latency._runtimes.nchwc_block", lambda: 4)
    model = small_net()
    prof = profile(model, INPUT)
    timed: dict[str, set[str]] = {}
    offered: dict[str, set[str]] = {}
    for runtime in ("torch", "onnxruntime"):
        settings = SearchSettings(latency_runtime=runtime)
        lines: list[str] = []
        table = measure_latency_table(model, prof, settings, lines.append)
        assert lines[-1] == (
            "latency table: whole plans save 0.80x (batch 1), 0.80x (batch 64) of what their "
            "layers save alone; predictions use that (within 0.0 % (batch 1), 0.0 % (batch 64) "
            "on those plans)"
        )
        assert not [line for line in lines if line.startswith("warning")]
        assert table.runtime == runtime
        timed[runtime] = {m for (_, m, _) in table.curves}
        assert set(table.methods) >= timed[runtime]
        space = SearchSpace(prof, latency=table, rank_multiple=settings.ranks_multiple_of)
        offered[runtime] = {m for choices in space.choices.values() for m in choices}
        if runtime == "onnxruntime":  # CP entries for the 3x3 conv, at both batch sizes
            assert ("conv2", "cp", 1) in table.curves and ("conv2", "cp", 64) in table.curves
    assert "cp" in timed["onnxruntime"] and "cp" not in timed["torch"]
    assert "cp" in offered["onnxruntime"] and "cp" not in offered["torch"]
    for runtime in ("torch", "onnxruntime"):
        assert {"svd", "tucker2"} <= timed[runtime] and "gkpd" not in timed[runtime]
        assert "gkpd" not in offered[runtime]


def test_swapped_variants_are_timed_against_the_dense_model_round_by_round() -> None:
    from rankopt.latency._timing import paired_medians_ms

    # The variant's own median (2.0) equals the dense model's: unpaired it saves nothing.
    # Its per-round differences (-0.5, +0.5, -1.0) have median -0.5: it saves 0.5 ms.
    dense = [1.0, 2.0, 3.0]
    variant = [0.5, 2.5, 2.0]
    assert paired_medians_ms([dense, variant]) == [2.0, 1.5]
    assert paired_medians_ms([dense]) == [2.0]


def test_a_layer_timed_while_the_machine_ran_slow_is_timed_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rankopt.latency._runtimes import TorchRuntime
    from rankopt.latency._units import DRIFT_TOLERANCE, MAX_RETRIES

    slow_rounds = {"conv2": 1, "conv1": MAX_RETRIES + 1}  # conv1 slow every time
    timed: list[str] = []

    def busy(_self: object, model: torch.nn.Module, name: str, modules: list, *a, **k):  # type: ignore[no-untyped-def]
        times = _fake_swapped(None, model, name, modules)
        if len(modules) == 1:  # the probe of a batch size's rounds
            return times
        timed.append(name)
        if slow_rounds.get(name, 0) > 0:  # a neighbour's load: everything 30 % slower
            slow_rounds[name] -= 1
            return [1.3 * t for t in times]
        return times

    monkeypatch.setattr(TorchRuntime, "time_swapped_ms", busy)
    monkeypatch.setattr(TorchRuntime, "time_models_ms", _fake_models)
    model = small_net()
    calls: list[tuple[int, int, str]] = []
    table = latency_table(
        model,
        INPUT,
        ["svd"],
        batch_sizes=(1,),
        n_grid=3,
        cache_dir=tmp_path,
        progress=lambda *a: calls.append(a),
    )
    # conv2 timed twice (the second timing kept), conv1 1 + MAX_RETRIES times (its first
    # timing kept: never faster), the others once.
    assert timed.count("conv2") == 2 and timed.count("conv1") == 1 + MAX_RETRIES
    again = [c[2] for c in calls if "again" in c[2]]
    assert "conv2 batch 1 again (its dense model ran 30 % slow)" in again
    assert len(again) == 1 + MAX_RETRIES and DRIFT_TOLERANCE < 0.3
    assert calls[-1][0] == calls[-1][1] == len(table.layers) + 1 + MAX_RETRIES
    saved = json.loads(table.cache_path.read_text())  # type: ignore[union-attr]
    found = next(iter(saved["models"].values()))["1"]["layers"]
    quiet = _fake_swapped(None, model, "conv2", [model.conv2])[0]
    assert found["conv2"]["svd"]["model_ms"] == pytest.approx(quiet)
    assert found["conv1"]["svd"]["model_ms"] == pytest.approx(
        1.3 * _fake_swapped(None, model, "conv1", [model.conv1])[0]
    )


def test_compare_latency_times_every_model_against_the_first_for_a_second_each(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from rankopt.errors import SettingsError
    from rankopt.latency import compare_latency_ms
    from rankopt.latency._runtimes import TorchRuntime

    calls: list[tuple[int, int, bool, bool]] = []

    def fake(
        _self: object,
        models: list[torch.nn.Module],
        x: torch.Tensor,
        *,
        n_warmup: int,
        n_runs: int,
        paired: bool = False,
    ) -> list[float]:
        on_cpu = all(
            p.dtype == torch.float32 and p.device.type == "cpu"
            for m in models
            for p in m.parameters()
        )
        calls.append((x.shape[0], n_runs, paired, on_cpu))
        return [0.5 * x.shape[0] + i for i in range(len(models))]

    monkeypatch.setattr(TorchRuntime, "time_models_ms", fake)
    model = small_net().double()
    out = compare_latency_ms([model, small_net()], INPUT, batch_sizes=(1, 4), min_timed_s=1.0)
    assert out == {1: [0.5, 1.5], 4: [2.0, 3.0]}
    # A probe of the first model, then rounds for 1 s of it: 1000 / 0.5 ms and 1000 / 2 ms.
    assert calls == [
        (1, 3, False, True),
        (1, 2000, True, True),
        (4, 3, False, True),
        (4, 500, True, True),
    ]
    assert next(model.parameters()).dtype == torch.float64  # timed on a float32 copy
    with pytest.raises(SettingsError, match="batch_sizes=\\[0\\]"):
        compare_latency_ms([model], INPUT, batch_sizes=(0,))
