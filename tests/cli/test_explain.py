"""`sparseforge explain MODEL LAYER`: facts, candidate forms with predicted times, the choice, what would change."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from test_report import _model

from sparseforge.cli import main


def test_explain_a_sparse_and_a_low_rank_layer(tmp_path: Path) -> None:
    model = _model(tmp_path)
    sparse = json.loads(CliRunner().invoke(main, ["explain", str(model), "fc1", "--target", "arm", "--json"]).output)
    assert sparse["chosen"] == "csr" and sparse["facts"]["density"] < 0.2
    verdicts = {o["kernel"]: o["verdict"] for o in sparse["options"]}
    assert "(best)" in verdicts["csr"] and "not considered" in verdicts["bsr 16x16"]
    assert any(line.startswith("at density <= ") and "CSR wins at M = 4" in line for line in sparse["what_would_change"])
    low = json.loads(CliRunner().invoke(main, ["explain", str(model), "fc2", "--target", "arm", "--json"]).output)
    assert low["chosen"] == "dense"
    forms = {f["form"]: f for f in low["structured"]}
    assert forms["low rank"]["applies"] and "rank 2" in forms["low rank"]["found"]
    assert not forms["sparse + low rank"]["applies"] and "low-rank form applies" in forms["sparse + low rank"]["found"]
    assert any("low rank: predicted" in line for line in low["what_would_change"])
    text = CliRunner().invoke(main, ["explain", str(model), "x[/y]<b>&", "--target", "arm"])
    assert text.exit_code == 0 and "x[/y]<b>&" in text.output


def test_explain_an_unknown_layer_lists_the_layers(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["explain", str(_model(tmp_path)), "nope", "--target", "arm"])
    assert result.exit_code == 2 and "no layer with a constant weight named 'nope'" in result.output
    assert "fc1" in result.output
