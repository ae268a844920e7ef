"""Sparse + low rank: exact splits found, near misses and plain weights refused with a reason, and the compile
pipeline gives the residual a sparse kernel where the cost model says the split pays."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_equivalent, init, make_model, to_ir, vinfo
from onnx import helper

from sparseforge.codegen.cost.rules import RuleCostModel
from sparseforge.ir.forms import sparse_low_rank
from sparseforge.passes.infra import Pipeline
from sparseforge.passes.pipelines import compile as compile_pipeline
from sparseforge.passes.pipelines import export


def _split(n: int, k: int, rank: int, density: float, seed: int = 0) -> np.ndarray:
    """``[N, K]``: rank ``rank`` plus a random residual at ``density``, entries of similar size."""
    rng = np.random.default_rng(seed)
    low = rng.standard_normal((n, rank)) @ rng.standard_normal((rank, k)) / np.sqrt(rank)
    return (low + rng.standard_normal((n, k)) * (rng.random((n, k)) < density)).astype(np.float32)


@pytest.mark.parametrize("n,k,rank,density", [(256, 256, 4, 0.05), (200, 600, 8, 0.1), (640, 384, 16, 0.05)])
def test_exact_splits_are_found(n, k, rank, density) -> None:
    w = _split(n, k, rank, density, seed=rank)
    parts, why = sparse_low_rank.decompose(w, 100)
    assert parts is not None, why
    assert parts.rank == rank and abs(parts.density - density) < 0.02, why
    rebuilt = parts.u.astype(np.float64) @ parts.v + parts.s
    assert np.linalg.norm(rebuilt - w) <= 1e-6 * np.linalg.norm(w)


@pytest.mark.parametrize("make,reason", [
    (lambda: np.random.default_rng(1).standard_normal((256, 256)).astype(np.float32), "not sparse + low rank"),
    (lambda: _split(256, 256, 4, 0.05) + 1e-4 * np.random.default_rng(2).standard_normal((256, 256)).astype(
        np.float32), "not sparse"),  # noise on every entry: the residual is dense
    (lambda: _split(256, 256, 4, 0.0) * (np.random.default_rng(3).random((256, 256)) < 0.2), "itself is sparse"),
])
def test_weights_that_do_not_split_are_refused(make, reason) -> None:
    parts, why = sparse_low_rank.decompose(make(), 100)
    assert parts is None and reason in why, why


def _model(w_nk: np.ndarray, layout: str, m: int = 8):
    n, k = w_nk.shape
    if layout == "matmul":
        nodes, inits = [helper.make_node("MatMul", ["x", "w"], ["y"], name="fc")], [init("w", w_nk.T.copy())]
    else:
        bias = np.random.default_rng(9).standard_normal(n).astype(np.float32)
        trans_b = int(layout == "gemm_transB1")
        nodes = [helper.make_node("Gemm", ["x", "w", "c"], ["y"], name="fc", transB=trans_b)]
        inits = [init("w", w_nk if trans_b else w_nk.T.copy()), init("c", bias)]
    return make_model(nodes, [vinfo("x", [m, k])], [vinfo("y", [m, n])], inits)


@pytest.mark.parametrize("layout", ["matmul", "gemm_transB0", "gemm_transB1"])
def test_compile_pipeline_splits_and_gives_the_residual_a_sparse_kernel(layout) -> None:
    proto = _model(_split(256, 320, 4, 0.05), layout)
    model = to_ir(proto)
    reports = Pipeline(compile_pipeline(RuleCostModel.for_target("x86")))(model)
    split = reports.report("SparseLowRank")
    assert any(d.code == "split" and "rank 4 + sparse" in d.message for d in split.diagnostics), \
        [d.message for d in split.diagnostics]
    decisions = {d["node"]: d["fmt"] for d in reports.report("DecideFormat").details["decisions"]}
    assert decisions["fc/sparse"] == "csr" and decisions["fc/low_rank"] == "dense", decisions
    assert [n.name for n in model.graph][-1] == "fc"
    assert_equivalent(proto, model)


class _SlowSparse:
    """Dense at one unit per multiply-add, every sparse kernel ten times the dense time."""

    unit = "relative"

    def predict(self, kernel, m, n, k, **_):
        return float(m * n * k) * (1.0 if kernel == "dense" else 10.0)


def test_not_split_when_the_cost_model_says_dense_is_faster() -> None:
    proto = _model(_split(256, 320, 4, 0.05), "matmul")
    model = to_ir(proto)
    report = Pipeline(compile_pipeline(_SlowSparse()))(model).report("SparseLowRank")
    assert [n.op_type for n in model.graph if n.name == "fc"] != ["Add"]
    assert any(d.code == "sparse-low-rank.not-split" and "not faster" in d.message for d in report.diagnostics), \
        [d.message for d in report.diagnostics]


def test_export_does_not_split() -> None:
    """ONNX Runtime has no sparse kernels: the split would only add work to the exported model."""
    model = to_ir(_model(_split(256, 320, 4, 0.05), "matmul"))
    Pipeline(export())(model)
    assert [n.op_type for n in model.graph] == ["MatMul"]


def test_inspect_fact_reports_the_split() -> None:
    from sparseforge.passes.analysis.analyse import StructureAnalysisPass, facts_of

    model = to_ir(_model(_split(256, 320, 4, 0.05), "matmul"))
    Pipeline([StructureAnalysisPass()])(model)
    fact = facts_of(next(iter(model.graph)))["sparse_low_rank"]
    assert fact["rank"] == 4 and abs(fact["density"] - 0.05) < 0.01, fact
