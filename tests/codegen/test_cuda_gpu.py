"""CUDA kernels and models against NumPy / ONNX Runtime on a real GPU (skipped without one).

Each test compiles all its kernels into one module (one nvcc run). Comparison: rtol 1e-4 plus an absolute floor
of 1e-5 x max(1, max |ref|) (fp32 sums in a different order than the float64 reference).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

pytest.importorskip("tvm")

from sparseforge.codegen import cuda as C  # noqa: E402
from sparseforge.codegen.cuda.device import KernelRunner, ModelRunner, device_arch, gpu_available  # noqa: E402
from sparseforge.codegen.kernels.testing import block_sparse, n_m_sparse, unstructured  # noqa: E402

pytestmark = [pytest.mark.tvm, pytest.mark.gpu,
              pytest.mark.skipif(not gpu_available(), reason="no CUDA GPU (gpu_available() is False)")]

ACTS = ("none", "relu", "relu6", "gelu", "sigmoid", "silu", "tanh")


def assert_close(actual, expected, rtol=1e-4, atol_scale=1e-5, what=""):
    expected = np.asarray(expected, np.float64)
    atol = atol_scale * max(1.0, float(np.abs(expected).max(initial=0.0)))
    np.testing.assert_allclose(np.asarray(actual, np.float64), expected, rtol=rtol, atol=atol, err_msg=what)


@pytest.fixture(scope="module")
def arch():
    return device_arch()


def _check_all(kernels, arch, seed=0, scale=1.0):
    lib = C.build(kernels, arch)
    rng = np.random.default_rng(seed)
    for k in kernels:
        x = (rng.standard_normal(k.in_shape) * scale).astype(np.float32)
        y = KernelRunner(lib, k)(x)
        assert np.all(np.isfinite(y)), k.name
        assert_close(y, k.reference(x), what=f"{k.name} {k.info}")


def _bias(rng, n, i):
    return rng.standard_normal(n).astype(np.float32) if i % 2 else None


def test_csr(arch):
    """Unstructured: both variants, M across the rows/panel switch, odd shapes, empty/dense rows, zeros."""
    rng = np.random.default_rng(0)
    acts = itertools.cycle(ACTS)
    ks = []
    for i, (m, (n, k)) in enumerate(itertools.product([1, 2, 7, 16, 17, 40, 130], [(37, 45), (130, 300)])):
        w = unstructured(rng, n, k, 0.15, empty_rows=[0, n - 1], dense_rows=[1])
        ks.append(C.csr_matmul(w, m, bias=_bias(rng, n, i), activation=next(acts)))
    w = unstructured(rng, 64, 96, 0.1)
    ks += [C.csr_matmul(w, 5, variant="panel", activation="gelu"), C.csr_matmul(w, 40, variant="rows"),
           C.csr_matmul(w, 3, group=32, threads=64), C.csr_matmul(w, 70, mr=1, rb=1, tk=32),
           C.csr_matmul(np.zeros((33, 20), np.float32), 1, bias=np.ones(33, np.float32), activation="sigmoid"),
           C.csr_matmul(np.zeros((33, 20), np.float32), 50, activation="relu")]
    _check_all(ks, arch)


def test_bsr(arch):
    rng = np.random.default_rng(1)
    acts = itertools.cycle(ACTS)
    ks = []
    blocks = [(4, 1), (1, 4), (4, 4), (8, 1), (16, 1), (16, 16), (3, 5), (2, 8)]
    for i, ((r, c), m) in enumerate(itertools.product(blocks, [1, 3, 16, 33, 100])):
        w = block_sparse(rng, 37, 45, r, c, 0.3, empty_block_rows=[0], full_block_rows=[1])
        ks.append(C.bsr_matmul(w, m, block=(r, c), bias=_bias(rng, 37, i), activation=next(acts)))
    ks.append(C.bsr_matmul(np.zeros((20, 20), np.float32), 2, block=(4, 4), bias=np.ones(20, np.float32)))
    w = block_sparse(rng, 70, 90, 16, 16, 0.3, empty_block_rows=[1])
    ks += [C.bsr_matmul(w, 2, block=(16, 16), rs=2), C.bsr_matmul(w, 50, block=(16, 16), rs=16, mr=1),
           C.bsr_matmul(w, 40, block=(16, 16), rs=2, activation="gelu"),
           C.bsr_matmul(block_sparse(rng, 70, 90, 8, 2, 0.3), 9, block=(8, 2), rs=1, bias=np.ones(70, np.float32))]
    _check_all(ks, arch)


def test_nm(arch):
    rng = np.random.default_rng(2)
    acts = itertools.cycle(ACTS)
    ks = []
    for i, ((n, g), m) in enumerate(itertools.product([(2, 4), (1, 4), (2, 8), (4, 8)], [1, 4, 17, 64])):
        w = n_m_sparse(rng, 29, 45, n, g, thin=0.1)  # K = 45: last group partial
        w[3] = 0
        ks.append(C.nm_matmul(w, m, n=n, group=g, bias=_bias(rng, 29, i), activation=next(acts)))
    _check_all(ks, arch)


def test_conv1x1(arch):
    rng = np.random.default_rng(3)
    acts = itertools.cycle(ACTS)
    ks = []
    for i, (blk, (b, h, w_)) in enumerate(itertools.product([None, (4, 1), (4, 4), (1, 8), (8, 1)],
                                                           [(1, 1, 1), (2, 5, 7), (1, 17, 19), (3, 8, 8)])):
        r, c = blk or (1, 1)
        w = block_sparse(rng, 37, 48, r, c, 0.25, empty_block_rows=[0])
        ks.append(C.sparse_conv1x1(w, b, h, w_, block=blk, bias=_bias(rng, 37, i), activation=next(acts)))
    _check_all(ks, arch)


def test_large_layers(arch):
    """Realistic sizes: 90 % unstructured and 4x1 / 16x16 blocks on 768x3072, batch 1, 8, 128."""
    rng = np.random.default_rng(4)
    ks = []
    for m in (1, 8, 128):
        ks.append(C.csr_matmul(unstructured(rng, 768, 3072, 0.1), m, activation="gelu"))
        ks.append(C.bsr_matmul(block_sparse(rng, 3072, 768, 4, 1, 0.1), m, block=(4, 1)))
        ks.append(C.bsr_matmul(block_sparse(rng, 768, 3072, 16, 16, 0.1), m, block=(16, 16),
                               bias=np.ones(768, np.float32)))
    _check_all(ks, arch, scale=0.5)


def _onnx_mlp(rng, m, dims, density=0.2):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits, ws = [], [], []
    prev = "x"
    for i, (k, n) in enumerate(zip(dims[:-1], dims[1:])):
        w = unstructured(rng, n, k, density, empty_rows=[0])
        b = rng.standard_normal(n).astype(np.float32)
        ws.append((w, b))
        inits += [numpy_helper.from_array(np.ascontiguousarray(w.T), f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        nodes += [helper.make_node("MatMul", [prev, f"w{i}"], [f"mm{i}"]),
                  helper.make_node("Add", [f"mm{i}", f"b{i}"], [f"a{i}"])]
        prev = f"a{i}"
        if i < len(dims) - 2:
            nodes.append(helper.make_node("Relu", [prev], [f"r{i}"]))
            prev = f"r{i}"
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, dims[0]])],
                              [helper.make_tensor_value_info(prev, TensorProto.FLOAT, [m, dims[-1]])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model, ws


def test_model_vs_onnxruntime(arch, tmp_path):
    """A small MLP: ONNX Runtime (CPU) vs (a) TVM's ONNX import built for CUDA (dlight), (b) the same layers as
    sparse CUDA kernels in a Relax graph, exported to a .so and reloaded."""
    ort = pytest.importorskip("onnxruntime")
    from sparseforge.codegen._tvm import onnx_frontend

    rng = np.random.default_rng(5)
    m, dims = 8, [48, 96, 64, 10]
    model, ws = _onnx_mlp(rng, m, dims)
    x = rng.standard_normal((m, dims[0])).astype(np.float32)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = sess.run(None, {"x": x})[0]

    dense = C.build(onnx_frontend.from_onnx(model, keep_params_in_input=False), arch)
    assert_close(ModelRunner(dense)(x)[0], expected, what="onnx import (dlight)")

    acts = ["relu"] * (len(ws) - 1) + ["none"]
    layers = [C.csr_matmul(w, m, bias=b, activation=a) if i % 2 == 0 else
              C.bsr_matmul(w, m, block=(2, 2), bias=b, activation=a) for i, ((w, b), a) in enumerate(zip(ws, acts))]
    path = str(tmp_path / "mlp.so")
    info = C.export(C.mlp_module(layers, m, dims[0]), path, arch)
    assert info["archs"] == [arch]
    assert_close(ModelRunner(path)(x)[0], expected, what="sparse kernels, exported")


def test_large_m_model(arch):
    """The same graph machinery with M = 130 (panel kernels) and a dlight dense layer in between."""
    rng = np.random.default_rng(6)
    w1, w3 = unstructured(rng, 256, 200, 0.1), block_sparse(rng, 30, 128, 4, 1, 0.2)
    w2 = (rng.standard_normal((128, 256)) * 0.1).astype(np.float32)
    k1 = C.csr_matmul(w1, 130, bias=np.ones(256, np.float32), activation="silu")
    k3 = C.bsr_matmul(w3, 130, block=(4, 1), activation="tanh")
    ex = C.build(C.mlp_module([k1, ("dense", w2, None, "relu"), k3], 130, 200), arch)
    x = rng.standard_normal((130, 200)).astype(np.float32)
    h = np.maximum(k1.reference(x).astype(np.float64) @ w2.T.astype(np.float64), 0)
    assert_close(ModelRunner(ex)(x)[0], k3.reference(h), what="large-M MLP")
