"""ARMOR-style factorized layers (block-diagonal . N:M . block-diagonal, kept as three products as ARMOR deploys
them) chain into the existing forms: the outer factors become grouped products, the middle one an N:M kernel
where the cost model says so; the whole stays exact."""

from __future__ import annotations

import numpy as np
from helpers import assert_equivalent, init, make_model, vinfo
from onnx import helper

from sparseforge.ir.frontend import load
from sparseforge.passes.infra import Pipeline
from sparseforge.passes.pipelines import compile as compile_pipeline


def _block_diagonal(n: int, blocks: int, rng) -> np.ndarray:
    w = np.zeros((n, n), np.float32)
    size = n // blocks
    for b in range(blocks):
        w[b * size:(b + 1) * size, b * size:(b + 1) * size] = rng.standard_normal((size, size))
    return w


def _two_four(n: int, rng) -> np.ndarray:
    """``[K, N]`` with 2 of every 4 consecutive reduction elements (per output column) zero."""
    w = rng.standard_normal((n, n)).astype(np.float32)  # [N, K] first
    groups = w.reshape(n, n // 4, 4)
    order = np.argsort(np.abs(groups), axis=-1)
    np.put_along_axis(groups, order[..., :2], 0.0, axis=-1)
    return np.ascontiguousarray(groups.reshape(n, n).T)


class _NmFastest:
    """Dense at one unit per multiply-add; N:M at a quarter of it, the other sparse kernels at dense cost."""


    def predict(self, kernel, m, n, k, **_):
        return float(m * n * k) * {"dense": 1.0, "nm": 0.25}.get(kernel, 1.0)


def test_block_diagonal_nm_block_diagonal_chain() -> None:
    rng = np.random.default_rng(0)
    n = 128
    weights = [_block_diagonal(n, 8, rng), _two_four(n, rng), _block_diagonal(n, 8, rng)]  # [K, N] each
    nodes = [helper.make_node("MatMul", ["x", "b1"], ["h1"], name="armor.left"),
             helper.make_node("MatMul", ["h1", "s"], ["h2"], name="armor.middle"),
             helper.make_node("MatMul", ["h2", "b2"], ["y"], name="armor.right")]
    proto = make_model(nodes, [vinfo("x", [16, n])], [vinfo("y", [16, n])],
                       [init("b1", weights[0]), init("s", weights[1]), init("b2", weights[2])])
    model = load(proto)  # a copy: the canonical weight names do not leak into proto
    reports = Pipeline(compile_pipeline(_NmFastest()))(model)
    grouped = [d.node for d in reports.report("BlockDiagonal").diagnostics if d.code == "grouped"]
    assert grouped == ["armor.left", "armor.right"], grouped
    decisions = {d["node"]: d["kernel"] for d in reports.report("DecideFormat").details["decisions"]}
    assert decisions["armor.middle"] == "nm 2:4", decisions
    assert any(n.domain == "ai.sparseforge" and n.name == "armor.middle" for n in model.graph)
    assert_equivalent(proto, model)
