"""Fact ``diagonal_blocks``: independent blocks up to a permutation of rows and columns."""

from __future__ import annotations

import numpy as np
from helpers import init, make_model, to_ir, vinfo
from onnx import helper

from sparseforge.passes.analysis import get
from sparseforge.passes.analysis.analyse import StructureAnalysisPass


def test_known_matrix_is_one_block_in_every_layout(analysed) -> None:
    assert analysed.layer["diagonal_blocks"] == 1


def test_shuffled_blocks_are_counted() -> None:
    rng = np.random.default_rng(0)
    w = np.zeros((48, 40), np.float32)  # (output, reduction): 3 blocks of 16 x 8, 16 x 16, 16 x 16
    for (r0, c0, c1) in ((0, 0, 8), (16, 8, 24), (32, 24, 40)):
        w[r0:r0 + 16, c0:c1] = rng.standard_normal((16, c1 - c0))
    w = w[rng.permutation(48)][:, rng.permutation(40)]
    model = to_ir(make_model([helper.make_node("MatMul", ["x", "W"], ["y"], name="fc")], [vinfo("x", [2, 40])],
                             [vinfo("y", [2, 48])], [init("W", np.ascontiguousarray(w.T))]))
    (layer,) = StructureAnalysisPass()(model).report.details["layers"]
    assert layer["diagonal_blocks"] == 3


def test_op_cell_note() -> None:
    fact = get("diagonal_blocks")
    assert fact.op_note({"diagonal_blocks": 8}) == " (8 blocks)"
    assert fact.op_note({"diagonal_blocks": 1}) == ""
