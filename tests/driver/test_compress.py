"""``compress``: the per-layer levels meet the output-error budget (on the calibration samples exactly, on
held-out ones within noise), a looser budget is never predicted slower, and a speedup goal is reached."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest
from helpers import init, make_model, to_ir, vinfo
from onnx import helper

from sparseforge.driver.calibration_data import check
from sparseforge.driver.compress import BLOCK_LEVEL_SHAPES, BLOCK_LEVELS, LEVELS, compress
from sparseforge.passes.infra import Pipeline
from sparseforge.passes.pipelines import canonicalize


def _blocky(w, rng, block=8, kept=0.25):
    """``w`` with three quarters of its ``block x 1`` blocks scaled down 20x (weights a block pruning can drop)."""
    rows = w.shape[0] // block
    scale = np.where(rng.random((rows, 1, w.shape[1])) < kept, 1.0, 0.05)
    return (w.reshape(rows, block, -1) * scale).reshape(w.shape).astype(np.float32)


def _mlp(blocky=False):
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], name="fc1", transB=1),
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("Gemm", ["r", "w2", "b2"], ["h2"], name="fc2", transB=1),
             helper.make_node("Relu", ["h2"], ["r2"], name="relu2"),
             helper.make_node("Gemm", ["r2", "w3"], ["y"], name="fc3", transB=1)]
    inits = [init("w1", rng.standard_normal((64, 32)).astype(np.float32) / 6),
             init("b1", rng.standard_normal(64).astype(np.float32) * 0.1),
             init("w2", rng.standard_normal((64, 64)).astype(np.float32) / 8),
             init("b2", rng.standard_normal(64).astype(np.float32) * 0.1),
             init("w3", rng.standard_normal((10, 64)).astype(np.float32) / 8)]
    if blocky:
        for t in inits[0], inits[2]:
            t.CopyFrom(init(t.name, _blocky(np.frombuffer(t.raw_data, np.float32).reshape(tuple(t.dims)), rng)))
    return make_model(nodes, [vinfo("x", [8, 32])], [vinfo("y", [8, 10])], inits)


def _data(model, n=256, rank=12):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((n, rank)) @ rng.standard_normal((rank, 32))).astype(np.float32)
    from sparseforge.driver.calibration_data import model_inputs

    return check({"x": x}, model_inputs(model), 8, "test").split(0.25)


class _Cost:
    """Dense: M N K; a sparse kernel: 1.5x the dense cost per stored weight (50% sparse = 0.75 of dense)."""

    def predict(self, kernel, m, n, k, *, density=1.0, block=None, nm=None, nnz_blocks=None, kind="matmul"):
        return float(m * n * k) * (1.0 if kernel == "dense" else 1.5 * density)


def _run(budget=None, speedup=None):
    model = to_ir(_mlp())
    Pipeline(canonicalize())(model)
    fit, held = _data(model)
    return model, compress(model, fit, held, _Cost(), max_output_error=budget,
                           speedup=speedup)


@pytest.mark.parametrize("budget", [0.1, 0.3])
def test_budget_is_met_on_calibration_and_held_out_data(budget) -> None:
    model, report = _run(budget=budget)
    assert report["calibration_error"] <= budget
    (held,) = report["accuracy"]
    assert held["relative_l2"] <= 1.5 * budget  # same distribution, other samples
    assert report["predicted_speedup"] > 1.0
    levels = {r["node"]: r["level"] for r in report["layers"]}
    assert set(levels) == {"fc1", "fc2", "fc3"}
    allowed = {"dense", "2:4"} | {f"{int(round(s * 100))}%" for s in LEVELS} | {
        f"{int(round(s * 100))}% in {r}x{c} blocks" for s in BLOCK_LEVELS for r, c in BLOCK_LEVEL_SHAPES}
    assert all(v in allowed or v.startswith("rank ") for v in levels.values())
    assert set(levels.values()) != {"dense"}
    # the written weights are the chosen ones: density as reported
    from sparseforge.ir.weights import weight_views

    density = {v.name: np.count_nonzero(v.matrix()) / v.matrix().size for v in weight_views(model.graph)}
    for r in report["layers"]:
        if r["kernel"] != "sparse + low rank":  # a split layer is three products now
            assert abs(density[r["node"]] - r["density"]) < 1e-9


def test_looser_budget_is_not_slower_and_speedup_goal_is_reached() -> None:
    _, tight = _run(budget=0.05)
    _, loose = _run(budget=0.3)
    assert loose["predicted_speedup"] >= tight["predicted_speedup"]
    _, goal = _run(speedup=2.0)
    assert goal["predicted_speedup"] >= 2.0 and goal["calibration_error"] > 0
    with pytest.raises(Exception, match="exactly one goal"):
        _run()


class _NoSparse(_Cost):
    """Sparse kernels never pay: only low rank can make a layer faster."""

    def predict(self, kernel, m, n, k, **kw):
        return None if kernel != "dense" else float(m * n * k)


def test_low_rank_levels_are_exact_low_rank_weights_the_compiler_factors() -> None:
    from sparseforge.ir.forms import low_rank
    from sparseforge.ir.weights import weight_views

    model = to_ir(_mlp())
    Pipeline(canonicalize())(model)
    fit, held = _data(model)
    report = compress(model, fit, held, _NoSparse(), max_output_error=0.2, speedup=None)
    chosen = {r["node"]: r for r in report["layers"]}
    assert any(r["level"].startswith("rank ") for r in chosen.values()), chosen
    assert report["calibration_error"] <= 0.2 and report["predicted_speedup"] > 1.0
    for view in weight_views(model.graph):
        level = chosen[view.name]["level"]
        if level.startswith("rank "):
            rank = int(level.split()[1])
            factors, why = low_rank.factor(view.matrix(), rank)
            assert factors is not None and factors.rank <= rank, why


def test_monarch_levels_are_exact_monarch_weights_the_compiler_finds() -> None:
    """With only products to gain from, Monarch projections are offered too; a chosen one is a Monarch weight
    at fp32 tolerance (the compiler's Monarch pass rewrites it exactly)."""
    from sparseforge.driver.compress import LayerChoice, assign, build_levels
    from sparseforge.driver.calibrated_prune import collect_stats
    from sparseforge.ir.forms import monarch

    model = to_ir(_mlp())
    Pipeline(canonicalize())(model)
    fit, _ = _data(model)
    layers: list[LayerChoice] = build_levels(model, collect_stats(model, fit), _NoSparse())
    fc2 = next(layer for layer in layers if layer.view.name == "fc2")
    labels = [lv.label for lv in fc2.levels]
    assert any(label.startswith("monarch ") for label in labels), labels
    for lv in fc2.levels:
        if lv.label.startswith("monarch "):
            found, why = monarch.find(lv.matrix.astype(np.float32))
            assert found is not None, why
            assert 0 < lv.error < 1 and lv.seconds < fc2.dense.seconds
    assert assign(layers, 1e-9) != assign(layers, 1e9)


def test_sparse_low_rank_levels_are_written_as_their_products() -> None:
    """A sparse + low-rank level is written as ``(x V^T) U^T + x S^T`` (the compiler's own split, the residual
    left to the sparse kernels), computing what the level's weight computes."""
    from sparseforge.driver.calibrated_prune import collect_stats
    from sparseforge.driver.compress import apply, build_levels
    from sparseforge.runtime.compare import session

    model = to_ir(_mlp())
    Pipeline(canonicalize())(model)
    fit, _ = _data(model)
    layers = build_levels(model, collect_stats(model, fit), _Cost())
    index = next(i for i, layer in enumerate(layers) if layer.view.name == "fc2")
    level = next(j for j, lv in enumerate(layers[index].levels) if lv.label == "rank 4 + 10% sparse")
    lv = layers[index].levels[level]
    assert lv.kernel == "sparse + low rank" and 0 < lv.error < 1
    assert np.count_nonzero(lv.parts.s) <= 0.1 * lv.parts.s.size + 64
    choice = [level if i == index else 0 for i in range(len(layers))]
    split = ir.from_proto(ir.to_proto(model))
    apply(split, layers, choice)
    names = {n.name: n.op_type for n in split.graph}
    assert {"fc2/low_rank", "fc2/low_rank_out", "fc2/sparse"} <= set(names) and names.get("fc2", "Add") == "Add"
    merged = ir.from_proto(ir.to_proto(model))
    from sparseforge.ir.weights import weight_views

    view = next(v for v in weight_views(merged.graph) if v.name == "fc2")
    from sparseforge.passes.canonicalize import new_initializer

    new = new_initializer(merged, "fc2_merged", view.to_stored(lv.matrix.astype(np.float32)))
    for user, i in list(view.weight.uses()):
        user.replace_input_with(i, new)
    x = {"x": np.random.default_rng(3).standard_normal((8, 32)).astype(np.float32)}
    (a,) = session(split).run(None, x)
    (b,) = session(merged).run(None, x)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


class _BlockCost(_Cost):
    """Blocked kernels pay below 83% stored (BSR at 1.2x dense per stored weight), unstructured ones never (CSR at
    3x)."""

    def predict(self, kernel, m, n, k, *, density=1.0, block=None, nm=None, nnz_blocks=None, kind="matmul"):
        if kernel == "dense":
            return float(m * n * k)
        if kernel == "bsr":  # the stored blocks, zeros inside them included
            return float(m * n * k) * 1.2 * nnz_blocks * block[0] * block[1] / (n * k)
        return float(m * n * k) * density * 3.0


def test_block_levels_timed_as_compile_predicts_them() -> None:
    """Every layer gets ``r x 1`` block levels (whole blocks pruned, weights updated), timed as ``compile`` would:
    with its BSR option; with only blocked kernels paying, every layer compress makes sparse runs BSR."""
    from sparseforge.driver.calibrated_prune import collect_stats
    from sparseforge.driver.compress import build_levels

    model = to_ir(_mlp(blocky=True))
    Pipeline(canonicalize())(model)
    fit, held = _data(model, rank=32)
    layers = {lc.view.name: lc for lc in build_levels(model, collect_stats(model, fit), _BlockCost())}
    for name in ("fc1", "fc2"):
        blocked = [lv for lv in layers[name].levels if "blocks" in lv.label]
        assert len(blocked) == len(BLOCK_LEVELS) * len(BLOCK_LEVEL_SHAPES)
        for lv in blocked:
            sparsity = int(lv.label.split("%")[0]) / 100
            br, bc = (int(x) for x in lv.label.split(" in ")[1].split(" ")[0].split("x"))
            w = lv.matrix
            tiles = (w != 0).reshape(w.shape[0] // br, br, w.shape[1] // bc, bc).any(axis=(1, 3))
            assert abs((1 - tiles.mean()) - sparsity) <= 0.5 / tiles.shape[0]  # per column of blocks, rounded
            assert lv.kernel.startswith("bsr") and lv.seconds < layers[name].dense.seconds
            assert 0 < lv.error < 1
    report = compress(model, fit, held, _BlockCost(), max_output_error=0.3, speedup=None)
    sparse = [r for r in report["layers"] if r["level"] != "dense"]
    assert sparse and all(r["kernel"].startswith("bsr") for r in sparse), report["layers"]
