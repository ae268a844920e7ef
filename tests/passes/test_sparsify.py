"""DecideFormat + Sparsify: decisions follow the cost model, never sparse when predicted slower; rewrites exact."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from helpers import assert_equivalent, init, make_model, randn, to_ir, vinfo
from onnx import helper

from sparseforge.ir import keys
from sparseforge.passes.analysis.analyse import StructureAnalysisPass
from sparseforge.passes.canonicalize import infer_shapes
from sparseforge.passes.decide import (META_DECISION, SMALL_LAYER_CSR_DENSITY, SMALL_LAYER_SECONDS, DecideFormatPass,
                                      why_not)
from sparseforge.passes.infra import Pipeline, PipelineOrderError
from sparseforge.passes.rewrites.sparsify import SparsifyPass


class TableCostModel:
    """Dense costs 1.0; each sparse kernel costs ``factor * density`` (None = no data)."""

    def __init__(self, factors: dict[str, float]):
        self.factors = factors

    def predict(self, kernel, m, n, k, *, density=1.0, block=None, nm=None, nnz_blocks=None, kind="matmul"):
        if kernel == "dense":
            return 1.0
        factor = self.factors.get(kernel)
        return None if factor is None else factor * density


def sparse(shape, density, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) * (rng.random(shape) < density)).astype(np.float32)


def mixed_model():
    """MatMul + Add bias (3-D), Gemm with per-row C and a full C, a 1x1 Conv and a 3x3 Conv."""
    w_mm = sparse((16, 12), 0.1, 1)   # [K, N] for MatMul
    w_g = sparse((16, 12), 0.1, 2)    # [N, K] transB=1
    w_g2 = sparse((5, 12), 0.1, 3)
    w_c = sparse((6, 4, 1, 1), 0.2, 4)
    w_c3 = sparse((3, 6, 3, 3), 0.2, 5)
    nodes = [helper.make_node("MatMul", ["x", "w_mm"], ["m"], name="mm"),
             helper.make_node("Add", ["m", "b_mm"], ["h"], name="mm_bias"),
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("Reshape", ["r", "s2"], ["r2"], name="flat"),
             helper.make_node("Gemm", ["r2", "w_g", "c_g"], ["g"], name="gemm", transB=1),
             helper.make_node("Gemm", ["r2", "w_g2", "c_full"], ["g2"], name="gemm_fullc", transB=1),
             helper.make_node("Conv", ["img", "w_c", "b_c"], ["c"], name="conv1x1"),
             helper.make_node("Conv", ["c", "w_c3"], ["c3"], name="conv3x3", pads=[1, 1, 1, 1])]
    inits = [init("w_mm", w_mm), init("b_mm", randn(12, seed=6)), init("s2", np.array([6, 12], np.int64)),
             init("w_g", w_g), init("c_g", randn(16, seed=7)), init("w_g2", w_g2), init("c_full", randn(6, 5, seed=8)),
             init("w_c", w_c), init("b_c", randn(6, seed=9)), init("w_c3", w_c3)]
    return make_model(nodes, [vinfo("x", [2, 3, 16]), vinfo("img", [1, 4, 5, 5])],
                      [vinfo("g", [6, 16]), vinfo("g2", [6, 5]), vinfo("c3", [1, 3, 5, 5])], inits)


@pytest.mark.parametrize("fmt", ["csr", "bsr"])
def test_sparsify_every_candidate_exactly(fmt) -> None:
    proto = mixed_model()
    model = to_ir(proto)
    result = Pipeline([StructureAnalysisPass(with_rank=False), DecideFormatPass(TableCostModel({fmt: 1.0})),
                       SparsifyPass()])(model)
    ops_used = sorted(n.op_type for n in model.graph if n.domain == keys.DOMAIN)
    prefix = fmt.capitalize()
    assert ops_used == sorted([f"{prefix}MatMul"] * 3 + [f"{prefix}Conv1x1", f"{prefix}Conv"])
    decisions = {d["node"]: d for d in result.report("DecideFormat").details["decisions"]}
    assert decisions["conv3x3"]["fmt"] == fmt
    if fmt == "bsr":  # the direct conv kernel takes r x 1 blocks only
        assert decisions["conv3x3"]["block"][1] == 1
    conv = next(n for n in model.graph if n.op_type == f"{prefix}Conv")
    assert list(conv.attributes["pads"].value) == [1, 1, 1, 1] and list(conv.attributes["kernel_shape"].value) == [3, 3]
    assert (keys.DOMAIN, f"{prefix}MatMul", "") in model.functions
    assert_equivalent(proto, model)
    # the MatMul's bias Add stays a separate node; the full-C Gemm keeps an Add after the sparse op
    assert any(n.op_type == "Add" and n.name == "gemm_fullc_c" for n in model.graph)


def test_never_sparse_when_predicted_slower() -> None:
    model = to_ir(mixed_model())
    DecideFormatPass(TableCostModel({"csr": 20.0, "bsr": 30.0}))(model)  # 0.1 density -> 2.0 > dense 1.0
    for node in model.graph:
        decision = node.meta.get(META_DECISION)
        if decision is not None:
            assert decision.fmt == "dense"
    decision = next(n for n in model.graph if n.name == "gemm").meta[META_DECISION]
    assert "predicted" in decision.reason and "dense" in decision.reason


def test_nm_only_when_fully_compliant() -> None:
    w = np.zeros((8, 16), np.float32)
    w[:, 0::4] = 1.0
    w[:, 1::4] = 2.0  # exactly 2:4
    nodes = [helper.make_node("Gemm", ["x", "w"], ["y"], name="g", transB=1)]
    proto = make_model(nodes, [vinfo("x", [2, 16])], [vinfo("y", [2, 8])], [init("w", w)])
    model = to_ir(proto)
    Pipeline([StructureAnalysisPass(with_rank=False),
              DecideFormatPass(TableCostModel({"nm": 0.1, "csr": 5.0, "bsr": 5.0})), SparsifyPass()])(model)
    (node,) = list(model.graph)
    assert node.op_type == "NmMatMul" and node.meta[META_DECISION].nm in ((2, 4), (4, 8))
    assert_equivalent(proto, model)


def test_dense_flag_and_no_cost_model() -> None:
    model = to_ir(mixed_model())
    r = DecideFormatPass(TableCostModel({"csr": 0.01}), dense_only=True)(model)
    assert all(d["fmt"] == "dense" and "--dense" in d["reason"] for d in r.report.details["decisions"])
    model = to_ir(mixed_model())
    r = DecideFormatPass(None)(model)
    assert all(d["fmt"] == "dense" for d in r.report.details["decisions"])


def test_why_not_reasons() -> None:
    model = to_ir(mixed_model())
    infer_shapes(model)
    reasons = {n.name: why_not(n) for n in model.graph}
    assert reasons["mm"] is None and reasons["conv1x1"] is None and reasons["conv3x3"] is None
    assert reasons["relu"] == "no constant weight"


def test_decisions_read_the_analysis_facts() -> None:
    """DecideFormat needs the facts StructureAnalysis provides: a pipeline without it is refused when built, and
    the decision follows the stored facts (here a fact saying "fully 2:4" on a weight that is not)."""
    with pytest.raises(PipelineOrderError, match="DecideFormat requires density, nm, blocks"):
        Pipeline([DecideFormatPass(TableCostModel({"nm": 0.1}))])
    model = to_ir(make_model([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], [vinfo("x", [4, 16])],
                             [vinfo("y", [4, 16])], [init("w", np.ones((16, 16), np.float32))]))
    node = next(n for n in model.graph if n.op_type == "MatMul")
    node.meta["sparseforge.facts"] = {"density": 1.0, "blocks": {}, "nm": {"2:4": 1.0}}
    DecideFormatPass(TableCostModel({"nm": 0.1, "csr": 5.0, "bsr": 5.0}))(model)
    assert node.meta[META_DECISION].fmt == "nm"


@pytest.mark.parametrize("opset, sparse", [(13, False), (15, True), (20, True)])
def test_sparse_ops_follow_the_model_opset(opset, sparse) -> None:
    """The ai.sparseforge functions import the model's default opset (the ONNX checker rejects a mismatch); below
    opset 15 their bodies cannot be expressed, so layers stay dense and say why."""
    sparse_weight = np.where(np.arange(256).reshape(16, 16) % 7 == 0, 1.0, 0.0).astype(np.float32)
    proto = make_model([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], [vinfo("x", [4, 16])],
                       [vinfo("y", [4, 16])], [init("w", sparse_weight)], opset=opset)
    model = to_ir(proto)
    Pipeline([StructureAnalysisPass(with_rank=False), DecideFormatPass(TableCostModel({"csr": 0.1})),
              SparsifyPass()])(model)
    rewritten = [n for n in model.graph if n.domain == keys.DOMAIN]
    assert bool(rewritten) == sparse
    if not sparse:
        assert "model opset 13 < 15" in next(iter(model.graph)).meta[META_DECISION].reason
        return
    written = ir.to_proto(model)
    onnx.checker.check_model(written, full_check=True)
    assert all(f.opset_import[0].version == opset for f in written.functions)
    assert_equivalent(proto, model)


def test_small_layers_only_ask_about_csr() -> None:
    """A layer predicted under SMALL_LAYER_SECONDS dense is offered CSR alone: a measured cost model is never asked
    (so never fits) another variant for it (and at density 0.5 it stays dense, test below); a larger layer with the
    same weight still gets N:M."""
    w = np.zeros((8, 16), np.float32)
    w[:, 0::4] = 1.0
    w[:, 1::4] = 2.0  # exactly 2:4

    class Recording(TableCostModel):
        def __init__(self, dense_s):
            super().__init__({"nm": 0.1, "csr": 1.5, "bsr": 5.0})
            self.dense_s, self.asked = dense_s, set()

        def predict(self, kernel, m, n, k, **kw):
            self.asked.add(kernel)
            return self.dense_s * (1.0 if kernel == "dense" else super().predict(kernel, m, n, k, **kw))

    for dense_s, fmt in ((SMALL_LAYER_SECONDS / 2, "dense"), (SMALL_LAYER_SECONDS * 2, "nm")):
        nodes = [helper.make_node("Gemm", ["x", "w"], ["y"], name="g", transB=1)]
        model = to_ir(make_model(nodes, [vinfo("x", [2, 16])], [vinfo("y", [2, 8])], [init("w", w)]))
        cost = Recording(dense_s)
        Pipeline([StructureAnalysisPass(with_rank=False), DecideFormatPass(cost)])(model)
        (node,) = list(model.graph)
        assert node.meta[META_DECISION].fmt == fmt
        assert ("nm" in cost.asked) == (fmt == "nm"), cost.asked


@pytest.mark.parametrize(("density", "csr_factor", "fmt"), [
    (0.1, 30.0, "csr"),   # predicted 3x slower than dense: CSR all the same
    (0.2, 1.0, "csr"),
    (0.3, 0.1, "dense"),  # predicted 33x faster: dense all the same
])
def test_small_layers_are_decided_by_density_not_timings(density, csr_factor, fmt) -> None:
    """Under SMALL_LAYER_SECONDS dense, CSR at density <= SMALL_LAYER_CSR_DENSITY and dense above, whatever the
    timings say (noise at a few microseconds made fresh caches decide differently), and nothing is measured."""
    class Measuring(TableCostModel):
        def __init__(self):
            super().__init__({"csr": csr_factor})
            self.refined = 0

        def predict(self, kernel, m, n, k, **kw):
            return SMALL_LAYER_SECONDS / 4 * super().predict(kernel, m, n, k, **kw)

        def refine(self, *args, **kwargs):
            self.refined += 1
            return None

    rng = np.random.default_rng(0)
    w = np.zeros((20, 40), np.float32)
    w.flat[rng.choice(w.size, int(density * w.size), replace=False)] = 1.0
    nodes = [helper.make_node("Gemm", ["x", "w"], ["y"], name="g", transB=1)]
    model = to_ir(make_model(nodes, [vinfo("x", [1, 40])], [vinfo("y", [1, 20])], [init("w", w)]))
    cost = Measuring()
    Pipeline([StructureAnalysisPass(with_rank=False), DecideFormatPass(cost)])(model)
    (node,) = list(model.graph)
    decision = node.meta[META_DECISION]
    assert decision.fmt == fmt, decision
    assert f"CSR at most {SMALL_LAYER_CSR_DENSITY}" in decision.reason and "not by timings" in decision.reason
    assert cost.refined == 0
