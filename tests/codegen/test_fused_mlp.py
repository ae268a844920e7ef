"""The fused sparse MLP kernel (Linear -> activation -> Linear, both weights sparse) against NumPy, and its refusals."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tvm")

from sparseforge.codegen.kernels import make_target, sparse_mlp  # noqa: E402
from sparseforge.codegen.kernels.testing import block_sparse, check_kernels, unstructured  # noqa: E402


def _weights(rng, n1, k, n2, b1, b2, density=0.2):
    w1 = unstructured(rng, n1, k, density) if b1 == (1, 1) else block_sparse(rng, n1, k, *b1, density + 0.1)
    w2 = unstructured(rng, n2, n1, density) if b2 == (1, 1) else block_sparse(rng, n2, n1, *b2, density + 0.1)
    return w1, w2


@pytest.mark.parametrize("threads", [1, 2])
def test_fused_mlp_matches_numpy(threads) -> None:
    """CSR and BSR weights, odd M (padding columns), one and several K panels in each sweep (``l1_bytes``),
    hidden sizes that are not a multiple of the vector width, with and without biases."""
    rng = np.random.default_rng(threads)
    tgt = make_target(threads=threads)
    kernels = []
    for i, (m, k, n1, n2, b1, b2, opts) in enumerate([
            (20, 40, 72, 24, (1, 1), (1, 1), {}), (64, 96, 200, 40, (4, 1), (1, 1), {}),
            (13, 48, 130, 30, (1, 1), (8, 1), {"l1_bytes": 2048}),
            (128, 64, 256, 64, (1, 1), (1, 1), {"l1_bytes": 4096}),
            (9, 33, 50, 17, (2, 2), (1, 4), {})]):
        w1, w2 = _weights(rng, n1, k, n2, b1, b2)
        bias1 = rng.standard_normal(n1).astype(np.float32) if i % 2 == 0 else None
        bias2 = rng.standard_normal(n2).astype(np.float32) if i != 1 else None
        kernels.append(sparse_mlp(w1, w2, m, bias1=bias1, activation1=("gelu", "relu", "silu", "gelu", "none")[i],
                                  bias2=bias2, activation2="relu" if i == 3 else "none", block1=b1, block2=b2,
                                  target=tgt, name=f"mlp_{threads}_{i}", **opts))
    assert {k.info["plan"].panels > 1 for k in kernels} == {True, False}
    assert {k.info["plan2"].panels > 1 for k in kernels} == {True, False}
    assert check_kernels(kernels, tgt, tol=1e-5) == []


def test_fused_mlp_hidden_row_of_zeros_and_empty_weight() -> None:
    """An all-zero first weight gives act(b1) rows; an empty second weight gives act2(b2)."""
    rng = np.random.default_rng(0)
    tgt = make_target(threads=1)
    w1 = np.zeros((40, 16), np.float32)
    w2 = unstructured(rng, 8, 40, 0.3)
    b1 = rng.standard_normal(40).astype(np.float32)
    a = sparse_mlp(w1, w2, 12, bias1=b1, activation1="gelu", target=tgt, name="zero_first")
    b = sparse_mlp(unstructured(rng, 40, 16, 0.3), np.zeros((8, 40), np.float32), 12,
                   bias2=np.arange(8, dtype=np.float32), target=tgt, name="zero_second")
    assert check_kernels([a, b], tgt, tol=1e-5) == []


def test_fused_mlp_refuses_mismatched_shapes_and_tiny_m() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="takes 30 inputs"):
        sparse_mlp(unstructured(rng, 40, 16, 0.3), unstructured(rng, 8, 30, 0.3), 12)
    with pytest.raises(ValueError, match="at least"):
        sparse_mlp(unstructured(rng, 40, 16, 0.3), unstructured(rng, 8, 40, 0.3), 2)


# --------------------------------------------------------------------------------------------------- compile

def _mlp_model(seed: int = 0, *, act: str = "Gelu", tokens: int = 24, shared: bool = False):
    """x [2, tokens, 64] -> MatMul (90% zeros) + b1 -> act -> MatMul (90% zeros) + b2 -> + x: standard ONNX (opset
    20 for Gelu). ``shared``: the activation output is also a graph output (the pair must not fuse)."""
    import onnx
    from helpers import init, make_model, vinfo
    from onnx import helper

    rng = np.random.default_rng(seed)

    def sparse(k, n):
        return (rng.standard_normal((k, n)) * (rng.random((k, n)) < 0.1)).astype(np.float32)

    inits = [init("w1", sparse(64, 256)), init("b1", rng.standard_normal(256).astype(np.float32)),
             init("w2", sparse(256, 64)), init("b2", rng.standard_normal(64).astype(np.float32))]
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h0"], name="fc1"),
             helper.make_node("Add", ["h0", "b1"], ["h1"], name="fc1_bias")]
    if act == "Gelu":
        nodes.append(helper.make_node("Gelu", ["h1"], ["h"], name="act"))
    else:
        nodes.append(helper.make_node("Relu", ["h1"], ["h"], name="act"))
    nodes += [helper.make_node("MatMul", ["h", "w2"], ["y0"], name="fc2"),
              helper.make_node("Add", ["y0", "b2"], ["y1"], name="fc2_bias"),
              helper.make_node("Add", ["y1", "x"], ["y"], name="residual")]
    outputs = [vinfo("y", [2, tokens, 64])] + ([vinfo("h", [2, tokens, 256])] if shared else [])
    model = make_model(nodes, [vinfo("x", [2, tokens, 64])], outputs, inits)
    model.opset_import[0].version = 20
    onnx.checker.check_model(model)
    return model


@pytest.mark.tvm
@pytest.mark.parametrize("act,fuse,shared,expect", [("Gelu", True, False, 1), ("Gelu", False, False, 0),
                                                    ("Relu", True, False, 1), ("Gelu", True, True, 0)])
def test_compile_fuses_mlp_and_matches_onnxruntime(tmp_path, act, fuse, shared, expect) -> None:
    from sparseforge.codegen.cost.rules import RuleCostModel
    from sparseforge.driver.compile import compile_model
    from sparseforge.driver.verify import verify_artifact

    model = _mlp_model(act=act, shared=shared)
    out = tmp_path / "artifact"
    result = compile_model(model, out, threads=2, cost_model=RuleCostModel.for_target("x86"), fuse=fuse)
    fused = [k for k in result.manifest["kernels"] if k["info"].get("variant") == "fused-mlp"]
    assert len(fused) == expect, result.manifest["kernels"]
    if expect:
        assert fused[0]["activation"] == act.lower() and fused[0]["info"]["fused"]
    report = verify_artifact(out, model, rtol=1e-4)
    assert report.ran and report.ok, report.to_dict()
