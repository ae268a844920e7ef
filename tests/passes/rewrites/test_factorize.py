"""Low-rank factorization: exact at fp32 tolerance, every MatMul/Gemm layout, near-low-rank weights left alone."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_equivalent, init, make_model, to_ir, vinfo
from onnx import helper

from sparseforge.ir.forms import low_rank
from sparseforge.passes.infra import Pipeline
from sparseforge.passes.pipelines import export


def _low_rank(n: int, k: int, r: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, r)) @ rng.standard_normal((r, k))).astype(np.float32)


def _matmul(weight_kn: np.ndarray, m: int = 4):
    k, n = weight_kn.shape
    return make_model([helper.make_node("MatMul", ["x", "w"], ["y"], name="fc")], [vinfo("x", [m, k])],
                      [vinfo("y", [m, n])], [init("w", weight_kn)])


def _gemm(w: np.ndarray, trans_b: int, m: int = 4):
    n, k = (w.shape if trans_b else w.shape[::-1])
    bias = np.random.default_rng(9).standard_normal(n).astype(np.float32)
    return make_model([helper.make_node("Gemm", ["x", "w", "c"], ["y"], name="fc", transB=trans_b)],
                      [vinfo("x", [m, k])], [vinfo("y", [m, n])], [init("w", w), init("c", bias)])


def _run(proto):
    model = to_ir(proto)
    report = Pipeline(export())(model).report("LowRank")
    return model, report


@pytest.mark.parametrize("layout", ["matmul", "gemm_transB0", "gemm_transB1"])
def test_low_rank_weight_becomes_two_thin_products(layout) -> None:
    w = _low_rank(96, 64, 4)  # (output, reduction)
    proto = {"matmul": lambda: _matmul(w.T.copy()), "gemm_transB0": lambda: _gemm(w.T.copy(), 0),
             "gemm_transB1": lambda: _gemm(w, 1)}[layout]()
    model, report = _run(proto)
    ops = [n.op_type for n in model.graph]
    assert len(ops) == 2 and ops[0] == "MatMul", ops
    assert [n.name for n in model.graph] == ["fc/low_rank", "fc"]
    params = sum(v.const_value.size for v in model.graph.initializers.values())
    assert params <= 4 * (96 + 64) + 96
    assert any(d.code == "factored" and "rank 4 of 96x64" in d.message for d in report.diagnostics)
    assert_equivalent(proto, model)


def test_large_weight_uses_the_randomized_range_finder() -> None:
    w = _low_rank(600, 700, 5, seed=1)
    proto = _matmul(w.T.copy(), m=2)
    model, _ = _run(proto)
    assert [n.op_type for n in model.graph] == ["MatMul", "MatMul"]
    assert_equivalent(proto, model)


@pytest.mark.parametrize("make,reason", [
    (lambda: _low_rank(96, 64, 4) + 1e-3 * np.random.default_rng(3).standard_normal((96, 64)).astype(np.float32),
     "not low rank"),
    (lambda: np.random.default_rng(4).standard_normal((96, 64)).astype(np.float32), "not low rank"),
    (lambda: _low_rank(96, 64, 30), "break-even"),
])
def test_weights_that_are_not_exactly_low_rank_stay(make, reason) -> None:
    proto = _matmul(make().T.copy())
    model, report = _run(proto)
    assert [n.op_type for n in model.graph] == ["MatMul"]
    assert any(d.code == "low-rank.not-factored" and reason in d.message for d in report.diagnostics), \
        [d.message for d in report.diagnostics]


def test_a_stray_entry_adds_exactly_one_to_the_rank() -> None:
    """A rank-3 weight plus one stray nonzero is exactly rank 4 (still factored, exactly); noise on every entry
    is not low rank at all."""
    w = _low_rank(300, 200, 3, seed=5)
    exact, why = low_rank.factor(w, low_rank.break_even_rank(300, 200))
    assert exact is not None and exact.rank == 3 and exact.error < 1e-6, why
    w[7, 11] += 1e-3 * float(np.abs(w).max())
    stray, why = low_rank.factor(w, low_rank.break_even_rank(300, 200))
    assert stray is not None and stray.rank == 4, why
    noisy = w + 1e-4 * np.random.default_rng(6).standard_normal(w.shape).astype(np.float32)
    assert low_rank.factor(noisy, low_rank.break_even_rank(300, 200))[0] is None
