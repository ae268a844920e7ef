"""Sparse 1x1 convolution, fused activations (accuracy of the vectorized exp/erf/tanh) and target handling."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

pytest.importorskip("tvm")

from sparseforge.codegen.kernels import (ACTIVATIONS, KernelTarget, Runner, build, bsr_matmul,  # noqa: E402
                                         csr_matmul, dense_matmul, make_target, nm_matmul, resolve_target,
                                         sparse_conv1x1)
from sparseforge.codegen.kernels._common import apply_activation_np  # noqa: E402
from sparseforge.codegen.kernels.testing import (block_sparse, check_kernels, n_m_sparse,  # noqa: E402
                                                 unstructured)

pytestmark = pytest.mark.tvm

TOL = 1e-5


def _assert_ok(kernels, target):
    bad = check_kernels(kernels, target, tol=TOL)
    info = {k.name: k.info for k in kernels}
    assert not bad, "\n".join(f"{name}: err={err:.3g} {info[name]}" for name, err in bad)


def test_conv1x1_shapes_and_blocks():
    """Spatial sizes below/at/above the vector width and tile, tail tiles, batch > 1, CSR and 4x1/2x2 blocks,
    empty and dense output channels, all activations, 1 and 2 threads (tile- and channel-parallel)."""
    rng = np.random.default_rng(0)
    acts = itertools.cycle(ACTIVATIONS)
    kernels = []
    spatial = [(1, 1, 1), (1, 3, 5), (2, 4, 4), (1, 5, 7), (3, 8, 8), (1, 20, 21)]
    for i, ((b, h, w), block, threads) in enumerate(itertools.product(spatial, [None, (4, 1), (2, 2)], [1, 2])):
        t = make_target(threads=threads)
        wt = unstructured(rng, 22, 32, 0.3, empty_rows=[0], dense_rows=[1]) if block is None else \
            block_sparse(rng, 22, 32, *block, 0.4, empty_block_rows=[2])
        bias = rng.standard_normal(22).astype(np.float32) if i % 2 else None
        kernels.append(sparse_conv1x1(wt, b, h, w, bias=bias, activation=next(acts), target=t, block=block))
    _assert_ok(kernels, make_target(threads=2))


def test_conv1x1_k_panels_and_4d_weight():
    rng = np.random.default_rng(1)
    kernels = []
    for threads, kc in itertools.product([1, 2], [8, 16]):
        t = make_target(threads=threads)
        w4 = unstructured(rng, 24, 40, 0.3)[:, :, None, None]
        kernels.append(sparse_conv1x1(w4, 2, 6, 7, bias=np.ones(24, np.float32), activation="relu6",
                                      target=t, kc=kc))
        kernels.append(sparse_conv1x1(w4[:, :, 0, 0], 1, 2, 2, target=t, kc=kc, block=(4, 1)))
    assert all(k.info["plan"].panels > 1 for k in kernels)
    assert kernels[0].in_shape == (2, 40, 6, 7) and kernels[0].out_shape == (2, 24, 6, 7)
    _assert_ok(kernels, make_target(threads=2))
    with pytest.raises(ValueError, match="1x1"):
        sparse_conv1x1(np.ones((4, 4, 3, 3), np.float32), 1, 2, 2)
    with pytest.raises(ValueError, match="divide Cin"):
        sparse_conv1x1(np.ones((4, 6), np.float32), 1, 2, 2, block=(1, 4))


@pytest.mark.parametrize("activation", [a for a in ACTIVATIONS if a != "none"])
def test_activation_accuracy(activation):
    """The fused activations on a wide input range, elementwise against float64: |err| <= 1e-6 * max(1, |y|).
    Also finite for huge inputs (no inf/nan from the exp range reduction)."""
    t = make_target(threads=1)
    n = 64
    x = np.concatenate([np.linspace(-12, 12, 40 * n - 16), [0, -0.0, 1e-8, -1e-8, 88, -88, 89, -89, 100, -100,
                                                            1e4, -1e4, 1e30, -1e30, 3.4e38, -3.4e38]])
    x = x.astype(np.float32).reshape(-1, n)
    kern = dense_matmul(np.eye(n, dtype=np.float32), x.shape[0], activation=activation, target=t)
    y = Runner(build(kern, t), kern, x)()
    ref = apply_activation_np(x.astype(np.float64), activation)
    assert np.all(np.isfinite(y))
    err = np.abs(y - ref) / np.maximum(1.0, np.abs(ref))
    assert err.max() <= 1e-6, f"{activation}: max error {err.max():.3g} at x={x.flat[err.argmax()]}"


def test_target_descriptions():
    """dict / object / KernelTarget inputs; lanes and registers derived from the TVM target's CPU features."""
    arm = resolve_target({"tvm_target": {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon"]},
                          "threads": 4})
    assert (arm.lanes, arm.threads, arm.registers, arm.gather) == (4, 4, 32, "none")

    class Obj:
        lanes, threads = 8, 2
        tvm_target = {"kind": "llvm", "mcpu": "haswell"}

    avx2 = resolve_target(Obj())
    assert (avx2.lanes, avx2.threads, avx2.registers) == (8, 2, 16)
    assert "+prefer-no-gather" in avx2.tvm_target["mattr"]
    assert resolve_target(avx2) is avx2
    host = resolve_target(None)
    assert isinstance(host, KernelTarget) and host.lanes in (4, 8, 16) and host.threads >= 1


@pytest.mark.parametrize("arch", ["aarch64", "wasm32"])
def test_cross_compile(arch):
    """Kernels for NEON (aarch64) and wasm SIMD128 (4 lanes) compile; the vector code uses the target's ISA."""
    tvm_target = {"aarch64": {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon"]},
                  "wasm32": {"kind": "llvm", "mtriple": "wasm32-unknown-unknown-wasm", "mattr": ["+simd128"]}}[arch]
    t = resolve_target({"tvm_target": tvm_target, "threads": 1})
    assert t.lanes == 4
    rng = np.random.default_rng(2)
    kernels = [
        csr_matmul(unstructured(rng, 20, 24, 0.3), 1, target=t, activation="gelu"),
        csr_matmul(unstructured(rng, 20, 24, 0.3), 8, target=t),
        bsr_matmul(block_sparse(rng, 20, 24, 4, 1, 0.3), 1, block=(4, 1), target=t),
        nm_matmul(n_m_sparse(rng, 20, 24, 2, 4), 1, target=t),
        sparse_conv1x1(unstructured(rng, 8, 16, 0.3), 1, 4, 4, target=t),
    ]
    from sparseforge.codegen._tvm import IRModule, tvm

    lib = tvm.tirx.build(IRModule({k.name: k.func for k in kernels}), target=t.tvm())
    asm = lib.inspect_source("asm")
    assert ("fmla" in asm) if arch == "aarch64" else ("f32x4" in asm)
