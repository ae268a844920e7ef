"""A known 8 x 16 weight applied in every op layout, analysed once per layout (shared by the fact tests)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import onnx_ir as ir
import pytest
from helpers import init, make_model, to_ir, vinfo
from onnx import helper

from sparseforge.passes.analysis.analyse import StructureAnalysisPass
from sparseforge.passes.infra import ReportedPassResult


def known_matrix() -> np.ndarray:
    """8 x 16: rows 2 and 5 zero; in every group of 4 columns only the first two are nonzero; rank 2."""
    m = np.zeros((8, 16), np.float32)
    for r in range(8):
        if r in (2, 5):
            continue
        for c in range(16):
            if c % 4 in (0, 1):
                m[r, c] = 1 + r + c
    return m


def layout_model(layout: str, m: np.ndarray):
    """A one-node model applying ``m`` (out x reduction) in the given layout."""
    out, red = m.shape
    if layout == "matmul_kn":
        node = helper.make_node("MatMul", ["x", "W"], ["y"], name="op")
        return make_model([node], [vinfo("x", [2, red])], [vinfo("y", [2, out])], [init("W", m.T.copy())])
    if layout == "matmul_const_first":
        node = helper.make_node("MatMul", ["W", "x"], ["y"], name="op")
        return make_model([node], [vinfo("x", [red, 3])], [vinfo("y", [out, 3])], [init("W", m)])
    if layout == "gemm_transb1":
        node = helper.make_node("Gemm", ["x", "W", "b"], ["y"], name="op", transB=1)
        return make_model([node], [vinfo("x", [2, red])], [vinfo("y", [2, out])],
                          [init("W", m), init("b", np.zeros(out, np.float32))])
    if layout == "gemm_transb0":
        node = helper.make_node("Gemm", ["x", "W"], ["y"], name="op", transB=0)
        return make_model([node], [vinfo("x", [2, red])], [vinfo("y", [2, out])], [init("W", m.T.copy())])
    if layout == "conv1x1":
        node = helper.make_node("Conv", ["x", "W"], ["y"], name="op")
        return make_model([node], [vinfo("x", [1, red, 4, 4])], [vinfo("y", [1, out, 4, 4])],
                          [init("W", m.reshape(out, red, 1, 1))])
    if layout == "conv2x2":
        node = helper.make_node("Conv", ["x", "W"], ["y"], name="op")
        return make_model([node], [vinfo("x", [1, 4, 5, 5])], [vinfo("y", [1, out, 4, 4])],
                          [init("W", m.reshape(out, 4, 2, 2))])
    if layout == "conv_grouped":
        node = helper.make_node("Conv", ["x", "W"], ["y"], name="op", group=2)
        return make_model([node], [vinfo("x", [1, 8, 5, 5])], [vinfo("y", [1, out, 4, 4])],
                          [init("W", m.reshape(out, 4, 2, 2))])
    if layout == "conv_depthwise":
        node = helper.make_node("Conv", ["x", "W"], ["y"], name="op", group=8, pads=[1, 2, 2, 1])
        return make_model([node], [vinfo("x", [1, 8, 6, 6])], [vinfo("y", [1, out, 6, 6])],
                          [init("W", m.reshape(out, 1, 4, 4))])
    raise ValueError(layout)


LAYOUTS = ("matmul_kn", "matmul_const_first", "gemm_transb1", "gemm_transb0", "conv1x1", "conv2x2",
           "conv_grouped", "conv_depthwise")


@dataclasses.dataclass
class Analysed:
    layout: str
    matrix: np.ndarray
    model: ir.Model
    result: ReportedPassResult
    layer: dict[str, Any]  # the layer's JSON fields

    @property
    def node(self) -> ir.Node:
        return next(iter(self.model.graph))


@pytest.fixture(params=LAYOUTS)
def analysed(request: pytest.FixtureRequest) -> Analysed:
    """The known matrix in one layout, after StructureAnalysis."""
    m = known_matrix()
    model = to_ir(layout_model(request.param, m))
    result = StructureAnalysisPass()(model)
    (layer,) = result.report.details["layers"]
    return Analysed(request.param, m, model, result, layer)
