"""The HTML written by rankopt.studies renders in headless Chromium with the network off."""

from __future__ import annotations

import io
import os
import random
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Chromium not installed at /usr/bin/chromium"),
]


def _study() -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rng = random.Random(42)
    study = optuna.create_study(directions=["maximize", "minimize"], study_name="browser")
    study.set_user_attr("dense", {"accuracy": 0.98, "macs": 1_000_000, "n_params": 50_000})
    study.set_user_attr("budget", {"max_macs": 600_000, "max_params": None})
    study.set_user_attr("objectives", ["accuracy", "macs"])
    study.set_user_attr("model", "tiny")
    for i in range(40):
        acc, macs = rng.uniform(0.5, 0.97), rng.randint(50_000, 1_000_000)
        plan = {
            "schema_version": 1,
            "model": {"name": "tiny", "fingerprint": "0" * 16},
            "input_shape": [1, 28, 28],
            "layers": [
                {
                    "layer": "conv1",
                    "method": "tucker2",
                    "ranks": {"r_in": 1, "r_out": rng.randint(1, 16)},
                    "options": {},
                    "weight_shape": [16, 1, 3, 3],
                },
                {
                    "layer": "fc",
                    "method": "keep",
                    "ranks": {},
                    "options": {},
                    "weight_shape": [10, 16],
                },
            ],
            "metrics": {},
            "provenance": {},
        }
        attrs = {
            "plan": plan,
            "macs": macs,
            "n_params": macs // 20,
            "macs_ratio": macs / 1e6,
            "params_ratio": macs / 20 / 50_000,
            "accuracy": acc,
            "accuracy_before_finetune": acc / 2,
        }
        if i == 0:
            attrs["seed"] = "vbmf"
        study.add_trial(optuna.trial.create_trial(values=[acc, macs], user_attrs=attrs))
    return study


def _driver(tmp_path: Path) -> Any:
    pytest.importorskip("selenium")
    if not CHROMEDRIVER.exists():
        pytest.skip(reason="chromedriver not installed at /usr/bin/chromedriver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    from rankopt.studies._html import chromium_offline_flags

    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not go online
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in chromium_offline_flags(tmp_path / "profile"):
        options.add_argument(flag.replace("--headless", "--headless=new", 1))
    options.add_argument("--window-size=1200,900")
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


def test_report_renders_offline(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    Image = pytest.importorskip("PIL.Image")
    from rankopt.studies import FRONT_TRACE_NAME, pareto_front, report

    study = _study()
    table = pareto_front(study)
    n_front = int((table["kind"] == "trial").sum())
    page = report(study, tmp_path / "report.html")
    driver = _driver(tmp_path)
    try:
        driver.set_page_load_timeout(60)
        driver.get(page.resolve().as_uri())
        # Offline: plotly.js must come from the page itself.
        assert driver.execute_script("return typeof window.Plotly") == "object"
        counts = driver.execute_script(
            """
            const plots = document.querySelectorAll('.js-plotly-plot');
            const gd = plots[0];
            const idx = gd.data.findIndex(t => t.name === arguments[0]);
            if (idx < 0) { return [plots.length, -1, 0]; }
            // plotly >= 6 ships numbers as {dtype, bdata}; _fullData holds them decoded
            let x = gd.data[idx].x;
            if (x.length === undefined) { x = gd._fullData.find(t => t.index === idx).x; }
            const svgTraces = gd.querySelectorAll('.scatterlayer .trace').length;
            return [plots.length, x.length, svgTraces];
            """,
            FRONT_TRACE_NAME,
        )
        assert counts[0] == 3
        assert counts[1] == n_front > 0
        assert counts[2] >= 2  # scatter traces actually drawn as SVG
        rendered = driver.execute_script(
            """
            const plots = document.querySelectorAll('.js-plotly-plot');
            const idx = plots[0].data.findIndex(t => t.name === arguments[0]);
            const trace = plots[0].querySelectorAll('.scatterlayer .trace')[idx];
            return trace ? trace.querySelectorAll('path.point').length : -1;
            """,
            FRONT_TRACE_NAME,
        )
        assert rendered == n_front
        rows = driver.execute_script(
            "return document.querySelectorAll('#pareto-front tbody tr').length"
        )
        assert rows == len(table)
        plot = driver.find_elements("css selector", ".js-plotly-plot")[0]
        driver.execute_script("arguments[0].scrollIntoView()", plot)
        png = plot.screenshot_as_png
    finally:
        driver.quit()
    image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    non_white = (np.abs(255 - image).sum(axis=2) > 30).mean()
    assert image.shape[0] > 200 and image.shape[1] > 300
    assert non_white > 0.01, f"plot area is blank ({non_white:.2%} non-white pixels)"


@pytest.mark.parametrize("kaleido", [True, False], ids=["kaleido-if-installed", "chromium"])
def test_write_png(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kaleido: bool) -> None:
    np = pytest.importorskip("numpy")
    Image = pytest.importorskip("PIL.Image")
    import importlib.util

    from rankopt.studies import plot_pareto_front, write_png

    if not kaleido:  # force the headless-Chromium fallback
        find_spec = importlib.util.find_spec
        monkeypatch.setattr(
            importlib.util, "find_spec", lambda n, *a: None if n == "kaleido" else find_spec(n, *a)
        )
    out = write_png(plot_pareto_front(_study()), tmp_path / "front.png", width=800, height=500)
    image = np.asarray(Image.open(out).convert("RGB")).astype(int)
    assert image.shape[:2] == (500, 800)
    assert (np.abs(255 - image).sum(axis=2) > 30).mean() > 0.01


#: Text a person reads outside folded <details> stays short (a JSON dump does not).
LONGEST_VISIBLE_TEXT = 600


def test_report_leads_with_the_answer_and_reads_as_text(tmp_path: Path) -> None:
    """Headless Chromium: the recommended plan's summary and commands come before the front
    table, on the first screen; no visible text node outside <details> is longer than 600
    characters; the first screen is saved as a PNG (also /tmp/report_screenshot.png)."""
    import shutil

    np = pytest.importorskip("numpy")
    Image = pytest.importorskip("PIL.Image")
    from rankopt.studies import report, select_trial

    study = _study()
    study.set_user_attr("data", "mnist5k")
    study.set_user_attr("sensitivity", _profile(80))  # ~4,000 characters of JSON
    best = select_trial(study)
    page = report(study, tmp_path / "report.html")
    driver = _driver(tmp_path)
    try:
        driver.set_page_load_timeout(60)
        driver.get(page.resolve().as_uri())
        tops = driver.execute_script(
            """
            const top = s => document.querySelector(s).getBoundingClientRect().top;
            return [top('#recommended'), top('#gains'), top('#commands'),
                    top('#pareto-front'), window.innerHeight];
            """
        )
        recommended, gains, commands, front, height = tops
        assert recommended < gains < commands < front
        assert commands < height  # the answer and its commands are on the first screen
        lead = driver.find_element("css selector", "p.lead").text
        assert f"trial {best.number}" in lead
        texts = driver.execute_script(
            """
            const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
            const out = [];
            for (let n = walker.nextNode(); n; n = walker.nextNode()) {
              const el = n.parentElement;
              if (!el || el.closest('details, script, style')) { continue; }
              if (!el.getClientRects().length) { continue; }  // not rendered
              const text = n.textContent.trim();
              if (text) { out.push(text); }
            }
            return out;
            """
        )
        assert texts, "no visible text"
        longest = max(texts, key=len)
        assert len(longest) <= LONGEST_VISIBLE_TEXT, longest[:200]
        raw = driver.execute_script("return document.querySelector('#raw pre').textContent")
        assert '"sensitivity"' in raw and len(raw) > 4000  # the JSON is there, folded
        assert driver.execute_script("return document.querySelector('#raw').open") is False
        shot = tmp_path / "report_first_screen.png"
        assert driver.save_screenshot(str(shot))
    finally:
        driver.quit()
    image = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert image.shape[0] >= 600 and image.shape[1] >= 1000
    assert (np.abs(255 - image).sum(axis=2) > 30).mean() > 0.01  # not blank
    shutil.copy(shot, "/tmp/report_screenshot.png")


def _profile(n_layers: int) -> dict[str, Any]:
    """A sensitivity profile of ``n_layers`` layers x 2 methods x 3 points."""
    points = {
        f"block{i}.conv": {
            "tucker2": [[10_000, 0.9 / (i + 1)], [40_000, 0.1 / (i + 1)], [60_000, 0.01]],
            "cp": [[10_000, 1.2], [30_000, 0.3], [60_000, 0.02]],
        }
        for i in range(n_layers)
    }
    return {
        "schema_version": 1,
        "points": points,
        "dense_macs": {name: 100_000 for name in points},
        "n_images": 256,
        "wall_time_s": 20.0,
        "failed": {},
    }
