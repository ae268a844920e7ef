"""StructureAnalysis: every number pinned on hand-built weights, in every op layout."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import init, make_model, to_ir, vinfo
from onnx import helper

from sparseforge.ir import keys
from sparseforge.passes.structure_analysis import (
    StructureAnalysisPass,
    dead_rows,
    nm_compliance,
    rank_info,
    zero_block_fraction,
)


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


EXPECTED_NM = {"1:4": 0.25, "2:4": 1.0, "2:8": 0.25, "4:8": 1.0}
EXPECTED_BLOCKS = {"1x4": 0.25, "4x1": 0.5, "4x4": 0.0, "8x1": 0.5, "1x8": 0.25, "16x1": 0.5, "16x16": 0.0}


def _rank99(m: np.ndarray) -> int:
    s = np.linalg.svd(m.astype(np.float64), compute_uv=False)
    energy = np.cumsum(s ** 2) / np.sum(s ** 2)
    return int(np.searchsorted(energy, 0.99) + 1)


def _layout_model(layout: str, m: np.ndarray):
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


DEAD_INPUTS = {
    "matmul_kn": [2, 3, 6, 7, 10, 11, 14, 15],
    "matmul_const_first": [2, 3, 6, 7, 10, 11, 14, 15],
    "gemm_transb1": [2, 3, 6, 7, 10, 11, 14, 15],
    "gemm_transb0": [2, 3, 6, 7, 10, 11, 14, 15],
    "conv1x1": [2, 3, 6, 7, 10, 11, 14, 15],
    "conv2x2": [],           # every input channel owns 4 taps, two of them nonzero
    "conv_grouped": [],
    "conv_depthwise": [2, 5],  # channel c feeds only output c
}


@pytest.mark.parametrize("layout", list(DEAD_INPUTS))
def test_every_number_in_every_layout(layout: str) -> None:
    m = known_matrix()
    model = to_ir(_layout_model(layout, m))
    result = StructureAnalysisPass()(model)
    (layer,) = result.report.details["layers"]
    assert layer["node"] == "op"
    assert tuple(layer["shape"]) == (8, 16)
    assert layer["density"] == pytest.approx(48 / 128)
    assert layer["nm"] == pytest.approx(EXPECTED_NM)
    assert layer["block_zero_fraction"] == pytest.approx(EXPECTED_BLOCKS)
    assert layer["dead_output_channels"] == [2, 5]
    assert layer["dead_input_channels"] == DEAD_INPUTS[layout]
    assert layer["rank"] == 2
    assert layer["rank_99"] == _rank99(m)
    assert layer["long_conv"] is False
    # the result is attached to the weight value and to the node
    node = next(iter(model.graph))
    assert node.meta[keys.META_STRUCTURE].density == pytest.approx(0.375)
    assert result.modified is False


def test_conv_dead_input_channels_across_groups() -> None:
    w = np.ones((4, 3, 3, 3), np.float32)
    w[:, 1] = 0  # input channel 1 unused
    model = to_ir(make_model([helper.make_node("Conv", ["x", "W"], ["y"], name="c")], [vinfo("x", [1, 3, 5, 5])],
                             [vinfo("y", [1, 4, 3, 3])], [init("W", w)]))
    (layer,) = StructureAnalysisPass()(model).report.details["layers"]
    assert layer["dead_input_channels"] == [1]
    assert layer["shape"] == [4, 27]
    # grouped: 2 groups of 3 input channels; channel 1 of group 1 (global 4) is dead only in group 1's rows
    wg = np.ones((4, 3, 1, 1), np.float32)
    wg[2:, 1] = 0
    wg[:2, 0] = 0
    model = to_ir(make_model([helper.make_node("Conv", ["x", "W"], ["y"], name="g", group=2)],
                             [vinfo("x", [1, 6, 2, 2])], [vinfo("y", [1, 4, 2, 2])], [init("W", wg)]))
    (layer,) = StructureAnalysisPass()(model).report.details["layers"]
    assert layer["dead_input_channels"] == [0, 4]


def test_nm_compliance_counts_partial_groups() -> None:
    m = np.array([[1, 1, 0, 0, 1, 1]], np.float32)  # groups [1,1,0,0] and [1,1,pad,pad]
    assert nm_compliance(m, 2, 4) == 1.0
    assert nm_compliance(m, 1, 4) == 0.0
    m = np.array([[1, 1, 1, 0, 1]], np.float32)
    assert nm_compliance(m, 2, 4) == 0.5


def test_zero_blocks_with_partial_edge_blocks() -> None:
    m = np.zeros((5, 6), np.float32)
    m[0, 0] = 1.0
    # 4x4 blocks: 2 x 2 blocks, only the top-left one is nonzero
    assert zero_block_fraction(m, 4, 4) == 0.75
    m[4, 5] = 2.0  # the bottom-right partial block is nonzero now
    assert zero_block_fraction(m, 4, 4) == 0.5
    assert zero_block_fraction(np.zeros((3, 3), np.float32), 16, 16) == 1.0


def test_dead_rows_and_nan_is_nonzero() -> None:
    m = np.zeros((3, 4), np.float32)
    m[1, 2] = np.nan
    assert dead_rows(m) == [0, 2]


def test_rank_exact_and_99_percent_energy() -> None:
    rng = np.random.default_rng(0)
    u, v = rng.standard_normal((64, 5)), rng.standard_normal((5, 48))
    info = rank_info((u @ v).astype(np.float32))
    assert info.rank == 5 and info.method == "exact"
    s = np.diag([10.0, 1.0, 0.1, 0.01]).astype(np.float32)
    info = rank_info(s)
    assert info.rank == 4
    assert info.rank_99 == 1  # 100 / 101.0101 > 0.99
    assert rank_info(np.zeros((4, 4), np.float32)).rank == 0


def test_rank_on_matrices_above_the_svd_limit() -> None:
    rng = np.random.default_rng(1)
    low = (rng.standard_normal((700, 3)) @ rng.standard_normal((3, 600))).astype(np.float32)
    info = rank_info(low, max_svd_dim=100, sketch=32)
    assert info.rank == 3 and "randomized" in info.method and info.rank_99 is not None
    full = rng.standard_normal((300, 200)).astype(np.float32)
    info = rank_info(full, max_svd_dim=100, sketch=32)
    assert info.rank is None and "bounded" in info.method


@pytest.mark.parametrize("taps,expected", [(64, True), (63, False)])
def test_long_conv_candidates(taps: int, expected: bool) -> None:
    w = np.ones((4, 4, taps), np.float32)
    model = to_ir(make_model([helper.make_node("Conv", ["x", "W"], ["y"], name="c")], [vinfo("x", [1, 4, 128])],
                             [vinfo("y", [1, 4, 129 - taps])], [init("W", w)]))
    result = StructureAnalysisPass()(model)
    (layer,) = result.report.details["layers"]
    assert layer["long_conv"] is expected
    assert any(d.code == "found.long-conv" for d in result.report.diagnostics) is expected


def test_activation_matmul_is_not_a_weight() -> None:
    node = helper.make_node("MatMul", ["a", "b"], ["y"], name="attn")
    model = to_ir(make_model([node], [vinfo("a", [2, 3]), vinfo("b", [3, 4])], [vinfo("y", [2, 4])]))
    assert StructureAnalysisPass()(model).report.details["layers"] == []
