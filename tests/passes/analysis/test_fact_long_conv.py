"""Fact ``long_conv``: 1-D convolutions with at least 64 taps."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import init, make_model, to_ir, vinfo
from onnx import helper

from sparseforge.passes.analysis import get
from sparseforge.passes.analysis.analyse import StructureAnalysisPass


def test_not_long_in_any_layout(analysed) -> None:
    assert analysed.layer["long_conv"] is False


@pytest.mark.parametrize("taps,expected", [(64, True), (63, False)])
def test_long_conv_candidates(taps: int, expected: bool) -> None:
    w = np.ones((4, 4, taps), np.float32)
    model = to_ir(make_model([helper.make_node("Conv", ["x", "W"], ["y"], name="c")], [vinfo("x", [1, 4, 128])],
                             [vinfo("y", [1, 4, 129 - taps])], [init("W", w)]))
    result = StructureAnalysisPass()(model)
    (layer,) = result.report.details["layers"]
    assert layer["long_conv"] is expected
    assert any(d.code == "found.long-conv" for d in result.report.diagnostics) is expected


def test_long_conv_marks_the_op_cell() -> None:
    fact = get("long_conv")
    assert fact.columns == ()
    assert fact.op_note({"long_conv": True}) == " (long)"
    assert fact.op_note({"long_conv": False}) == ""
