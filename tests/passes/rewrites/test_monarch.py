"""Monarch weights become two block-diagonal batched products, exactly; near-Monarch and dense weights stay."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_equivalent, init, make_model, to_ir, vinfo
from onnx import helper

from sparseforge.ir.forms import monarch
from sparseforge.passes.analysis.analyse import StructureAnalysisPass
from sparseforge.passes.infra import Pipeline
from sparseforge.passes.pipelines import export


def monarch_weight(n: int, k: int, a: int, f: int, order: str = "gf", seed: int = 0) -> np.ndarray:
    """A ``[N, K]`` Monarch weight: ``A`` blocks of ``F x K/A`` then ``F`` blocks of ``N/F x A``."""
    rng = np.random.default_rng(seed)
    left = rng.standard_normal((f, n // f, a)) / np.sqrt(a)
    right = rng.standard_normal((a, f, k // a)) / np.sqrt(k // a)
    return monarch.Monarch(right, left, order, 0.0).dense().astype(np.float32)


def _run(proto):
    model = to_ir(proto)
    return model, Pipeline(export())(model).report("Monarch")


@pytest.mark.parametrize("order", monarch.ORDERS)
def test_find_recovers_the_product(order) -> None:
    w = monarch_weight(128, 256, 16, 8, order)
    found, why = monarch.find(w)
    assert found is not None, why
    assert np.allclose(found.dense(), w, atol=1e-5)
    assert found.stored <= 16 * 8 * (16 + 16)  # never more than the generating factors


@pytest.mark.parametrize("layout", ["matmul", "gemm_transB1_bias", "gemm_transB0", "matmul_3d"])
def test_monarch_weight_becomes_two_batched_products(layout) -> None:
    w = monarch_weight(128, 96, 8, 8)  # (output, reduction)
    n, k = w.shape
    bias = np.random.default_rng(1).standard_normal(n).astype(np.float32)
    if layout.startswith("gemm"):
        trans_b = int(layout.startswith("gemm_transB1"))
        proto = make_model([helper.make_node("Gemm", ["x", "w", "c"], ["y"], name="fc", transB=trans_b)],
                           [vinfo("x", [4, k])], [vinfo("y", [4, n])],
                           [init("w", w if trans_b else w.T.copy()), init("c", bias)])
    else:
        shape = [2, 3, k] if layout == "matmul_3d" else [4, k]
        proto = make_model([helper.make_node("MatMul", ["x", "w"], ["y"], name="fc")], [vinfo("x", shape)],
                           [vinfo("y", [*shape[:-1], n])], [init("w", w.T.copy())])
    model, report = _run(proto)
    ops = [nd.op_type for nd in model.graph]
    assert ops.count("MatMul") == 2 and "Gemm" not in ops, ops
    assert [nd.name for nd in model.graph][-1] == "fc"
    params = sum(v.const_value.size for v in model.graph.initializers.values() if v.const_value.dtype.is_floating_point())
    assert params < n * k // 2
    assert any(d.code == "monarch" for d in report.diagnostics), report.diagnostics
    assert_equivalent(proto, model)


def test_one_changed_weight_leaves_it_dense() -> None:
    w = monarch_weight(256, 256, 16, 16)
    w[5, 7] += 0.05  # near-Monarch: one element off
    proto = make_model([helper.make_node("MatMul", ["x", "w"], ["y"], name="fc")], [vinfo("x", [4, 256])],
                       [vinfo("y", [4, 256])], [init("w", w.T.copy())])
    model, report = _run(proto)
    assert [nd.op_type for nd in model.graph] == ["MatMul"]
    assert any(d.code == "monarch.not-rewritten" and "not a Monarch product" in d.message
               for d in report.diagnostics)


def test_dense_weight_stays_and_fact_is_null() -> None:
    w = np.random.default_rng(3).standard_normal((128, 128)).astype(np.float32)
    proto = make_model([helper.make_node("MatMul", ["x", "w"], ["y"], name="fc")], [vinfo("x", [4, 128])],
                       [vinfo("y", [4, 128])], [init("w", w)])
    (layer,) = StructureAnalysisPass()(to_ir(proto)).report.details["layers"]
    assert layer["monarch"] is None
    model, _ = _run(proto)
    assert [nd.op_type for nd in model.graph] == ["MatMul"]


def test_fact_reports_the_blocks() -> None:
    w = monarch_weight(64, 64, 8, 8)
    proto = make_model([helper.make_node("MatMul", ["x", "w"], ["y"], name="fc")], [vinfo("x", [4, 64])],
                       [vinfo("y", [4, 64])], [init("w", w.T.copy())])
    (layer,) = StructureAnalysisPass()(to_ir(proto)).report.details["layers"]
    assert layer["monarch"] is not None and layer["monarch"][0] * layer["monarch"][1] >= 4
