"""The report in headless Chromium (Debian's ``chromium``, installed by scripts/install-system-deps.sh): no console
errors, every layer row, every figure drawn, sorting works; a screenshot is kept in ``build/test-artifacts``."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from test_report import _model

from sparseforge.cli import main
from sparseforge.report import layer_nodes

ARTIFACTS = Path(os.environ.get("SPARSEFORGE_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "build" /
                                "test-artifacts"))


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return name
    pytest.skip("no chromium (scripts/install-system-deps.sh installs Debian's)")


def _run(url: str, *extra: str) -> tuple[str, list[str]]:
    done = subprocess.run([_chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
                           "--v=0", *extra, url], capture_output=True, text=True, timeout=120, check=False)
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    return done.stdout, console


def test_console_errors_are_seen(tmp_path: Path) -> None:
    """The negative control: a page with an error shows up in what the test reads."""
    page = tmp_path / "bad.html"
    page.write_text("<html><body><script>undefinedFunction();</script></body></html>")
    _, console = _run(page.as_uri(), "--dump-dom")
    assert any("Uncaught ReferenceError" in line for line in console), console


def test_report_in_headless_chromium(tmp_path: Path) -> None:
    model = _model(tmp_path)
    out = tmp_path / "report.html"
    assert CliRunner().invoke(main, ["report", str(model), "-o", str(out)]).exit_code == 0
    expected = layer_nodes(out.read_text())
    dom, console = _run(out.as_uri(), "--dump-dom")
    assert not console, console
    assert layer_nodes(dom) == expected and len(expected) == 3
    svgs = re.findall(r"<svg\b.*?</svg>", dom, flags=re.S)
    assert len(svgs) >= 2 * len(expected) and all(re.search(r"<(path|image|g)\b", svg) for svg in svgs)
    sorted_dom, console = _run(out.as_uri() + "#sort=3", "--dump-dom")  # column 3: elements, numeric
    assert not console, console
    def elements(page: str) -> list[int]:
        rows = re.findall(r'<tr id="layer-[^"]*">(.*?)</tr>', page, flags=re.S)
        return [int(re.findall(r"<td[^>]*>(.*?)</td>", row, flags=re.S)[3]) for row in rows]

    assert elements(dom) == [64 * 48, 64 * 64, 8 * 64]  # model order
    assert elements(sorted_dom) == [8 * 64, 64 * 48, 64 * 64]  # sorted by the page's script
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "report-screenshot.png"
    _run(out.as_uri(), f"--screenshot={shot}", "--window-size=1400,2400")
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[0] >= 2000 and float(np.std(pixels)) > 0.05  # not a blank page


def test_profiled_report_in_headless_chromium(tmp_path: Path) -> None:
    """A report with a measured profile (synthetic numbers): its extra figures and tables render cleanly."""
    from test_report import profiled_report

    out = profiled_report(tmp_path)
    dom, console = _run(out.as_uri(), "--dump-dom")
    assert not console, console
    svgs = re.findall(r"<svg\b.*?</svg>", dom, flags=re.S)
    assert all(re.search(r"<(path|image|g)\b", svg) for svg in svgs)
    assert "where the measured time goes" in dom and "per layer: predicted vs measured speedup" in dom
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    _run(out.as_uri(), f"--screenshot={ARTIFACTS / 'report-profiled-screenshot.png'}", "--window-size=1400,1600")
