"""In ``compile`` the structured MatMul forms are chosen by the cost model against dense and the sparse kernels;
in ``export`` (no cost model) the operation counts decide."""

from __future__ import annotations

import numpy as np
from helpers import assert_equivalent, init, make_model, vinfo
from onnx import helper

from sparseforge.codegen.cost.rules import RuleCostModel
from sparseforge.ir.frontend import load
from sparseforge.passes.infra import Pipeline
from sparseforge.passes.pipelines import compile as compile_pipeline
from sparseforge.passes.pipelines import export
from sparseforge.passes.rewrites.structured_cost import Product, choose


class _Model:
    """Seconds: dense ``mnk`` units plus ``overhead`` per product; sparse kernels ``sparse`` times dense."""

    def __init__(self, *, sparse: float = 10.0, overhead: float = 0.0):
        self.sparse, self.overhead = sparse, overhead

    def predict(self, kernel, m, n, k, **_):
        return (float(m * n * k) + self.overhead) * (1.0 if kernel == "dense" else self.sparse) * 1e-9


def _block_diagonal(n: int = 256, blocks: int = 8) -> np.ndarray:
    rng = np.random.default_rng(0)
    w = np.zeros((n, n), np.float32)
    size = n // blocks
    for b in range(blocks):
        w[b * size:(b + 1) * size, b * size:(b + 1) * size] = rng.standard_normal((size, size))
    return w


def _low_rank(n: int = 256, r: int = 4) -> np.ndarray:
    rng = np.random.default_rng(1)
    return (rng.standard_normal((n, r)) @ rng.standard_normal((r, n))).astype(np.float32)


def _matmul(w_kn: np.ndarray, m: int = 16):
    k, n = w_kn.shape
    return make_model([helper.make_node("MatMul", ["x", "w"], ["y"], name="fc")], [vinfo("x", [m, k])],
                      [vinfo("y", [m, n])], [init("w", w_kn)])


def _diagnostics(proto, cost_model, pass_name):
    model = load(proto)
    reports = Pipeline(compile_pipeline(cost_model))(model)
    return model, reports, [(d.code, d.message) for d in reports.report(pass_name).diagnostics]


def test_block_diagonal_weight_left_to_a_faster_sparse_kernel() -> None:
    proto = _matmul(_block_diagonal())
    model, reports, notes = _diagnostics(proto, _Model(sparse=0.01), "BlockDiagonal")
    assert any(code == "block-diagonal.not-chosen" and "vs csr" in msg for code, msg in notes), notes
    decisions = {d["node"]: d["fmt"] for d in reports.report("DecideFormat").details["decisions"]}
    assert decisions["fc"] == "csr", decisions
    assert_equivalent(proto, model)


def test_per_product_overhead_keeps_a_low_rank_layer_dense() -> None:
    proto = _matmul(_low_rank())
    model, _, notes = _diagnostics(proto, _Model(overhead=1e9), "LowRank")
    assert any(code == "low-rank.not-chosen" and "rank 4 factors predicted" in msg for code, msg in notes), notes
    assert [n.op_type for n in model.graph] == ["MatMul"]


def test_rules_keep_the_forms_and_say_what_they_compared() -> None:
    for weight, pass_name, code in ((_low_rank(), "LowRank", "factored"),
                                    (_block_diagonal(), "BlockDiagonal", "grouped")):
        proto = _matmul(weight)
        model, _, notes = _diagnostics(proto, RuleCostModel.for_target("x86"), pass_name)
        assert any(c == code and "predicted" in msg for c, msg in notes), notes
        assert_equivalent(proto, model)


def test_export_decides_by_operation_count() -> None:
    model = load(_matmul(_low_rank()))
    report = Pipeline(export())(model).report("LowRank")
    assert [n.op_type for n in model.graph] == ["MatMul", "MatMul"]
    assert all("predicted" not in d.message for d in report.diagnostics)


def test_choose_compares_against_the_best_alternative() -> None:
    w = _block_diagonal()
    parts = [Product(16, 32, 32)] * 8
    assert choose(None, 16, w, parts, "x").structured
    assert choose(_Model(), None, w, parts, "x").structured  # no static shape: operation count
    assert choose(_Model(), 16, w, parts, "x").structured
    assert not choose(_Model(sparse=0.05), 16, w, parts, "x").structured
