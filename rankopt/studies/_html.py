"""Writing figures to disk: standalone offline HTML pages and PNG images."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from html import escape
from pathlib import Path

import plotly.graph_objects as go

from rankopt._optional import installed
from rankopt.errors import RankoptError

__all__ = ["chromium_offline_flags", "figures_html", "page_html", "write_html", "write_png"]


def figures_html(figures: Iterable[go.Figure]) -> str:
    """HTML fragment of the figures with plotly.js embedded once (before the first one)."""
    parts = []
    for i, fig in enumerate(figures):
        parts.append(
            fig.to_html(
                full_html=False,
                include_plotlyjs=(i == 0),
                include_mathjax=False,
                config={"displaylogo": False, "responsive": True},
            )
        )
    return "\n".join(parts)


def page_html(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{escape(title)}</title>\n"
        "<style>body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}"
        "table{border-collapse:collapse;font-size:0.85em}"
        "th,td{border:1px solid #ccc;padding:3px 6px;text-align:right}"
        "td.l,th.l{text-align:left}pre{background:#f6f6f6;padding:0.6em}</style>\n"
        f"</head>\n<body>\n<h1>{escape(title)}</h1>\n{body}\n</body>\n</html>\n"
    )


def write_html(
    figures: go.Figure | Sequence[go.Figure], path: str | Path, *, title: str = "rankopt"
) -> Path:
    """Write one or several figures to a standalone HTML page that works offline.

    plotly.js is embedded in the page once (no CDN, no network needed to view it).

    Args:
        figures: A figure or a sequence of figures, drawn in order.
        path: Output file; its parent directory must exist.
        title: Page title and heading.

    Returns:
        The path written.
    """
    figs = [figures] if isinstance(figures, go.Figure) else list(figures)
    path = Path(path)
    path.write_text(page_html(title, figures_html(figs)), encoding="utf-8")
    return path


_CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "chrome")


def _find_chromium() -> str | None:
    for name in _CHROMIUM_CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


def write_png(fig: go.Figure, path: str | Path, *, width: int = 1000, height: int = 650) -> Path:
    """Write a figure as a PNG image.

    Uses kaleido (``fig.write_image``) when it is installed, otherwise a headless Chromium
    screenshot of the offline HTML page (network disabled).

    Args:
        fig: The figure.
        path: Output ``.png`` file.
        width: Image width in pixels.
        height: Image height in pixels.

    Returns:
        The path written.

    Raises:
        RankoptError: neither kaleido nor Chromium is installed, or Chromium failed.
    """
    path = Path(path)
    kaleido_error = "the Python package 'kaleido' is not installed"
    if installed("kaleido"):
        try:
            fig.write_image(str(path), width=width, height=height)
        except Exception as exc:  # kaleido needs its own Chrome; fall back to ours
            kaleido_error = f"kaleido failed: {type(exc).__name__}: {exc}".splitlines()[0]
        else:
            return path
    chromium = _find_chromium()
    if chromium is None:
        raise RankoptError(
            f"cannot write PNG: {kaleido_error} and no Chromium browser is on PATH; "
            "pip install kaleido, or apt-get install chromium"
        )
    with tempfile.TemporaryDirectory(prefix="rankopt-png-") as tmp:
        page = Path(tmp) / "figure.html"
        sized = go.Figure(fig)
        sized.update_layout(width=width, height=height, margin={"t": 60})
        html = sized.to_html(full_html=True, include_plotlyjs=True, config={"staticPlot": True})
        page.write_text(
            html.replace("<head>", "<head><style>body{margin:0}</style>", 1), encoding="utf-8"
        )
        cmd = [
            chromium,
            *chromium_offline_flags(Path(tmp) / "profile"),
            f"--window-size={width},{height}",
            "--virtual-time-budget=5000",
            "--hide-scrollbars",
            f"--screenshot={path.resolve()}",
            page.resolve().as_uri(),
        ]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RankoptError(f"cannot write PNG with {chromium}: {exc}") from None
        if not path.exists():
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise RankoptError(
                f"cannot write PNG: {chromium} exited {proc.returncode} without writing "
                f"{path}: {last}"
            )
    return path


def chromium_offline_flags(profile_dir: Path) -> list[str]:
    """Command-line flags for headless Chromium with every network access disabled."""
    return [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--proxy-server=127.0.0.1:9",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        f"--user-data-dir={profile_dir}",
    ]
