"""Pruning: each method produces exactly the requested structure and reports its error."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import init, make_model, randn, to_ir, vinfo
from onnx import helper

from sparseforge.errors import SparseforgeError
from sparseforge.ir.weights import weight_views
from sparseforge.passes.analysis.analyse import analyse_view
from sparseforge.passes.rewrites.prune import PruneConfig, PrunePass, nm_mask


def two_layer():
    nodes = [helper.make_node("Gemm", ["x", "w1"], ["h"], name="fc1", transB=1),
             helper.make_node("Conv", ["h4", "w2"], ["y"], name="conv"),
             helper.make_node("Reshape", ["h", "shape"], ["h4"], name="r")]
    nodes = [nodes[0], nodes[2], nodes[1]]
    return to_ir(make_model(nodes, [vinfo("x", [1, 24])], [vinfo("y", [1, 16, 1, 1])],
                            [init("w1", randn(64, 24)), init("w2", randn(16, 4, 4, 4, seed=1)),
                             init("shape", np.array([1, 4, 4, 4], np.int64))]))


def structures(model):
    return {v.name: analyse_view(v, with_rank=False) for v in weight_views(model.graph)}


def test_magnitude_per_layer_is_exact() -> None:
    model = two_layer()
    result = PrunePass(PruneConfig("magnitude", 0.75))(model)
    for s in structures(model).values():
        assert s.density == pytest.approx(0.25)
    layers = result.report.details["layers"]
    assert all(0 < layer["relative_weight_error"] < 1 for layer in layers)
    assert any(d.code == "approximate" for d in result.report.diagnostics)


def test_magnitude_global_keeps_largest_overall() -> None:
    model = two_layer()
    before = {v.name: v.matrix().copy() for v in weight_views(model.graph)}
    PrunePass(PruneConfig("magnitude", 0.5, scope="global"))(model)
    kept = np.concatenate([v.matrix()[v.matrix() != 0] for v in weight_views(model.graph)])
    everything = np.concatenate([m.reshape(-1) for m in before.values()])
    assert kept.size == everything.size // 2
    assert np.min(np.abs(kept)) >= np.median(np.abs(everything)) - 1e-7


@pytest.mark.parametrize("n,m", [(2, 4), (1, 4), (2, 8), (4, 8)])
def test_nm_makes_every_group_comply(n: int, m: int) -> None:
    model = two_layer()
    PrunePass(PruneConfig("nm", nm=(n, m)))(model)
    for s in structures(model).values():
        assert s.nm[f"{n}:{m}"] == 1.0


def test_nm_mask_partial_group_and_exact_counts() -> None:
    w = np.array([[0.1, 3.0, -2.0, 0.5, 9.0]], np.float32)
    np.testing.assert_array_equal(nm_mask(w, 2, 4), [[False, True, True, False, True]])


@pytest.mark.parametrize("block", [(4, 1), (1, 4), (4, 4), (16, 16)])
def test_block_pruning_zeroes_whole_blocks(block) -> None:
    model = two_layer()
    PrunePass(PruneConfig("block", 0.5, block=block))(model)
    for s in structures(model).values():
        assert s.block_zero_fraction[f"{block[0]}x{block[1]}"] >= 0.5 - 1e-9


def test_channel_pruning_zeroes_rows() -> None:
    model = two_layer()
    PrunePass(PruneConfig("channel", 0.25))(model)
    s = structures(model)
    assert len(s["fc1"].dead_output_channels) == 16
    assert len(s["conv"].dead_output_channels) == 4


def test_skip_patterns_and_error_budget() -> None:
    model = two_layer()
    result = PrunePass(PruneConfig("magnitude", 0.9, skip=("fc*",)))(model)
    s = structures(model)
    assert s["fc1"].density == 1.0 and s["conv"].density == pytest.approx(0.1, abs=0.01)
    assert any(d.code == "skip.pattern" and d.node == "fc1" for d in result.report.diagnostics)
    model = two_layer()
    result = PrunePass(PruneConfig("magnitude", 0.9, max_weight_error=0.1))(model)
    assert all(s.density == 1.0 for s in structures(model).values())
    assert sum(d.code == "skip.error-budget" for d in result.report.diagnostics) == 2


@pytest.mark.parametrize("config,match", [
    (PruneConfig("magnitude"), "--sparsity is required"),
    (PruneConfig("magnitude", 1.5), "must be in"),
    (PruneConfig("nm", nm=(4, 4)), "bad N:M"),
    (PruneConfig("wavelet", 0.5), "unknown pruning method"),
    (PruneConfig("nm", scope="global"), "does not apply"),
])
def test_bad_configs(config, match) -> None:
    with pytest.raises(SparseforgeError, match=match):
        config.validate()


def test_sequential_statistics_see_earlier_stages_pruned() -> None:
    """``restats`` is asked stage by stage (Q/K/V-like siblings together), each time from the model with every
    earlier stage already pruned."""
    import onnx_ir as ir
    from onnx import helper

    from helpers import init, make_model, to_ir, vinfo
    from sparseforge.ir.weights import weight_views
    from sparseforge.passes.calibrated.stats import LayerStats
    from sparseforge.passes.rewrites.prune import PruneConfig, PrunePass, layer_stages

    rng = np.random.default_rng(0)
    nodes = [helper.make_node("MatMul", ["x", "wa"], ["a"], name="a"),
             helper.make_node("MatMul", ["x", "wb"], ["b"], name="b"),
             helper.make_node("Add", ["a", "b"], ["s"], name="add"),
             helper.make_node("MatMul", ["s", "wc"], ["y"], name="c")]
    inits = [init(n, rng.standard_normal((8, 8)).astype(np.float32)) for n in ("wa", "wb", "wc")]
    model = to_ir(make_model(nodes, [vinfo("x", [2, 8])], [vinfo("y", [2, 8])], inits))
    views = list(weight_views(model.graph))
    assert [[v.name for v in stage] for stage in layer_stages(model.graph, views)] == [["a", "b"], ["c"]]

    calls = []

    def restats(m: ir.Model, names):
        zeros = {v.name: float((v.matrix() == 0).mean()) for v in weight_views(m.graph)}
        calls.append((list(names), zeros))
        out = {}
        for name in names:
            st = LayerStats.empty(8, 1)
            st.add_rows(rng.standard_normal((32, 8)))
            out[name] = st
        return out

    PrunePass(PruneConfig("sparsegpt", sparsity=0.5, restats=restats))(model)
    assert [names for names, _ in calls] == [["a", "b"], ["c"]]
    assert calls[0][1] == {"a": 0.0, "b": 0.0, "c": 0.0}
    assert calls[1][1]["a"] == 0.5 and calls[1][1]["b"] == 0.5 and calls[1][1]["c"] == 0.0
