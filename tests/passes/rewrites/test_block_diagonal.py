"""Block-diagonal weights (up to permutation) become grouped products, exactly; a stray nonzero joins blocks."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_equivalent, init, make_model, to_ir, vinfo
from onnx import helper

from sparseforge.ir.forms.block_diagonal import find_blocks
from sparseforge.passes.infra import Pipeline
from sparseforge.passes.pipelines import export


def _permuted_blocks(sizes, seed=0, zero_rows=0) -> np.ndarray:
    """A ``[N, K]`` weight: blocks of ``(rows, cols)`` on the diagonal, rows and columns shuffled."""
    rng = np.random.default_rng(seed)
    n = sum(r for r, _ in sizes) + zero_rows
    k = sum(c for _, c in sizes)
    w = np.zeros((n, k), np.float32)
    r0 = c0 = 0
    for r, c in sizes:
        w[r0:r0 + r, c0:c0 + c] = rng.standard_normal((r, c))
        r0, c0 = r0 + r, c0 + c
    return w[rng.permutation(n)][:, rng.permutation(k)]


def _run(proto):
    model = to_ir(proto)
    return model, Pipeline(export())(model).report("BlockDiagonal")


@pytest.mark.parametrize("layout", ["matmul", "gemm_transB1_bias", "matmul_3d"])
def test_permuted_blocks_become_grouped_products(layout) -> None:
    w = _permuted_blocks([(32, 24), (16, 40), (48, 32)], zero_rows=8)  # [N=104, K=96]
    n, k = w.shape
    if layout == "gemm_transB1_bias":
        bias = np.random.default_rng(1).standard_normal(n).astype(np.float32)
        proto = make_model([helper.make_node("Gemm", ["x", "w", "c"], ["y"], name="fc", transB=1)],
                           [vinfo("x", [4, k])], [vinfo("y", [4, n])], [init("w", w), init("c", bias)])
    else:
        shape = [2, 3, k] if layout == "matmul_3d" else [4, k]
        proto = make_model([helper.make_node("MatMul", ["x", "w"], ["y"], name="fc")], [vinfo("x", shape)],
                           [vinfo("y", [*shape[:-1], n])], [init("w", w.T.copy())])
    model, report = _run(proto)
    ops = [nd.op_type for nd in model.graph]
    assert ops.count("MatMul") == 3 and "Concat" in ops, ops
    assert [nd.name for nd in model.graph][-1] == "fc"
    assert any(d.code == "grouped" and "3 blocks" in d.message for d in report.diagnostics)
    assert_equivalent(proto, model)


def test_a_stray_nonzero_joins_two_blocks() -> None:
    w = np.zeros((64, 64), np.float32)
    w[:32, :32] = 1.0
    w[32:, 32:] = 2.0
    blocks, why = find_blocks(w)
    assert blocks is not None and blocks.count == 2, why
    w[3, 40] = 0.5  # row 3 now reads a column of the second block
    blocks, why = find_blocks(w)
    assert blocks is None and "one block" in why


def test_dense_or_unstructured_sparse_weights_stay() -> None:
    rng = np.random.default_rng(2)
    w = rng.standard_normal((96, 80)).astype(np.float32)
    w[rng.random(w.shape) < 0.8] = 0  # 80% zeros, no block structure
    proto = make_model([helper.make_node("MatMul", ["x", "w"], ["y"], name="fc")], [vinfo("x", [4, 80])],
                       [vinfo("y", [4, 96])], [init("w", w.T.copy())])
    model, report = _run(proto)
    assert [nd.op_type for nd in model.graph] == ["MatMul"]
    assert any(d.code == "block-diagonal.not-rewritten" for d in report.diagnostics)


@pytest.mark.parametrize("sizes, zero_rows", [([(16, 8)] * 4, 0), ([(16, 8), (8, 16), (24, 8)], 4)],
                         ids=["equal-grouped", "unequal"])
def test_block_diagonal_conv_recovers_groups(sizes, zero_rows) -> None:
    pattern = _permuted_blocks(sizes, seed=3, zero_rows=zero_rows)  # [O, C] channel pattern
    rng = np.random.default_rng(4)
    w = (pattern[:, :, None, None] != 0) * rng.standard_normal((*pattern.shape, 3, 3))
    o, c = pattern.shape
    bias = rng.standard_normal(o).astype(np.float32)
    proto = make_model([helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv", pads=[1, 1, 1, 1])],
                       [vinfo("x", [1, c, 10, 10])], [vinfo("y", [1, o, 10, 10])],
                       [init("w", w.astype(np.float32)), init("b", bias)])
    model, report = _run(proto)
    convs = [nd for nd in model.graph if nd.op_type == "Conv"]
    if zero_rows == 0:
        assert len(convs) == 1 and convs[0].attributes["group"].value == 4
    else:
        assert len(convs) == 3 and "Concat" in [nd.op_type for nd in model.graph]
    assert any(d.code == "grouped" and "channel pattern" in d.message for d in report.diagnostics)
    assert_equivalent(proto, model)
