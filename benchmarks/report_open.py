"""Size and load time of the HTML report of the 12-layer BERT-shaped example (issue 12: under 5 MB, opens in under
2 s). The report is written by ``sparseforge report``; headless Chromium loads it ``--runs`` times and the page's
``load`` event time (``performance.now()``, from navigation start: parsing, layout, the inline SVG) is read from
its console.

    .venv/bin/python benchmarks/report_open.py [--runs 3]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))

PROBE = '<script>window.addEventListener("load", () => console.log("loaded-ms " + performance.now()));</script>'


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    browser = next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
    if browser is None:
        raise SystemExit("no chromium: apt-get install chromium")
    import models
    from sparseforge import api, report

    work = Path(tempfile.mkdtemp(prefix="report_open_"))
    module, inputs = models.bert_encoder()
    page = report.write(api.inspect(module, inputs), work / "bert12.html", title="bert12")
    size = page.stat().st_size
    timed = work / "timed.html"
    timed.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    loads = []
    for _ in range(args.runs):
        done = subprocess.run([browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
                               "--v=0", "--dump-dom", timed.as_uri()], capture_output=True, text=True, timeout=120)
        found = re.search(r"loaded-ms ([0-9.]+)", done.stderr)
        loads.append(float(found.group(1)) if found else float("nan"))
    print(f"report: {size / 1e6:.2f} MB; load event after {', '.join(f'{t:.0f}' for t in loads)} ms")


if __name__ == "__main__":
    main()
