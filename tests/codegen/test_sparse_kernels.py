"""Sparse matmul kernels (BSR, CSR, N:M) and the dense reference kernel against NumPy.

Every test compiles all its kernels into one module (one ``tvm.compile``) to keep the file fast. Errors are
``max |y - ref| / max(1, max |ref|)`` (fp32, 1e-5 scaled to the output magnitude).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

pytest.importorskip("tvm")

from sparseforge.codegen.kernels import (ACTIVATIONS, bsr_matmul, build, csr_matmul, dense_matmul,  # noqa: E402
                                         make_target, measure, nm_matmul, run)
from sparseforge.codegen.kernels.nm import nm_pack  # noqa: E402
from sparseforge.codegen.kernels.testing import (block_sparse, check_kernels, n_m_sparse,  # noqa: E402
                                                 unstructured)

pytestmark = pytest.mark.tvm

TOL = 1e-5
ACTS = itertools.cycle(ACTIVATIONS)


@pytest.fixture(scope="module")
def tgt():
    return make_target(threads=2)


def _bias(rng, n, i):
    return rng.standard_normal(n).astype(np.float32) if i % 2 else None


def _assert_ok(kernels, target, **kw):
    bad = check_kernels(kernels, target, tol=TOL, **kw)
    info = {k.name: k.info for k in kernels}
    assert not bad, "\n".join(f"{name}: err={err:.3g} {info[name]}" for name, err in bad)


BLOCKS = [(1, 4), (4, 1), (4, 4), (8, 1), (1, 8), (16, 1), (16, 16), (3, 5)]


def test_bsr_all_blocks(tgt):
    """Every block shape, odd N/K (37x45: no block divides both), M = 1, 3 (small-M) and 9 (panel),
    static pattern and index arrays, empty and full block rows, all activations, with and without bias."""
    rng = np.random.default_rng(0)
    kernels = []
    cases = [(b, m, s) for b, m, s in itertools.product(BLOCKS, [1, 3, 9], [True, False])
             if not (s and m == 3 and b not in [(4, 1), (1, 8)])]  # static M=3: two shapes (compile time)
    for i, ((r, c), m, static) in enumerate(cases):
        w = block_sparse(rng, 37, 45, r, c, 0.3, empty_block_rows=[0], full_block_rows=[1])
        k = bsr_matmul(w, m, block=(r, c), bias=_bias(rng, 37, i), activation=next(ACTS), target=tgt,
                       static_max_blocks=10**6 if static else 0)
        assert k.info["static"] == (static and m < 4)
        kernels.append(k)
    _assert_ok(kernels, tgt)


def test_bsr_edge_weights(tgt):
    """All-zero and fully dense weights, a weight smaller than one block, a single block row."""
    rng = np.random.default_rng(1)
    cases = [np.zeros((20, 30), np.float32), rng.standard_normal((20, 30)).astype(np.float32),
             rng.standard_normal((3, 2)).astype(np.float32), block_sparse(rng, 4, 64, 4, 4, 0.5)]
    kernels = []
    for i, (w, (r, c), m) in enumerate(itertools.product(cases, [(4, 4), (16, 1), (1, 8)], [1, 5])):
        kernels.append(bsr_matmul(w, m, block=(r, c), bias=_bias(rng, w.shape[0], i), activation=next(ACTS),
                                  target=tgt, static_max_blocks=64 if i % 3 else 0))
    _assert_ok(kernels, tgt)


def test_csr_variants(tgt):
    """Gather (small M) and panel (M >= 3) variants, empty/dense rows, all-zero weight, odd shapes, long K."""
    rng = np.random.default_rng(2)
    shapes = [(37, 50), (64, 64), (20, 300), (5, 3)]
    kernels = []
    for i, ((n, k), m) in enumerate(itertools.product(shapes, [1, 2, 3, 5, 16, 33])):
        w = unstructured(rng, n, k, 0.3, empty_rows=[0, n - 1], dense_rows=[1])
        kernels.append(csr_matmul(w, m, bias=_bias(rng, n, i), activation=next(ACTS), target=tgt))
    kernels.append(csr_matmul(np.zeros((17, 40), np.float32), 1, target=tgt))
    kernels.append(csr_matmul(np.zeros((17, 40), np.float32), 20, bias=np.ones(17, np.float32), target=tgt,
                              activation="gelu"))
    assert {k.info["variant"] for k in kernels} == {"gather", "panel"}
    _assert_ok(kernels, tgt)


def test_k_panels_and_chunks(tgt):
    """K split into panels (partial sums through the YT workspace) and several row chunks, 1 and 2 threads."""
    rng = np.random.default_rng(3)
    kernels = []
    for threads, kc in itertools.product([1, 2], [8, 24]):
        t = make_target(threads=threads)
        w = unstructured(rng, 70, 45, 0.3, empty_rows=[5])
        b = rng.standard_normal(70).astype(np.float32)
        kernels.append(csr_matmul(w, 9, bias=b, activation="silu", target=t, kc=kc))
        kernels.append(csr_matmul(w, 40, target=t, kc=kc))  # M > 16: transposed store through YT
        kernels.append(bsr_matmul(w * (block_sparse(rng, 70, 45, 4, 4, 0.5) != 0), 20, block=(4, 4), bias=b,
                                  activation="relu", target=t, kc=kc))
        kernels.append(nm_matmul(n_m_sparse(rng, 70, 45, 2, 4), 6, n=2, group=4, target=t, kc=kc))
    assert all(k.info["plan"].panels > 1 for k in kernels)
    _assert_ok(kernels, tgt)


@pytest.mark.parametrize("lanes", [4, 8])
def test_narrow_vectors(lanes):
    """lanes=4 (NEON / wasm SIMD128 width) and 8 (AVX2) generate correct code (run on the host CPU)."""
    rng = np.random.default_rng(4)
    t = make_target(threads=2, lanes=lanes)
    kernels = [
        csr_matmul(unstructured(rng, 33, 21, 0.4), 1, target=t, activation="gelu"),
        csr_matmul(unstructured(rng, 33, 21, 0.4), 7, target=t, activation="tanh"),
        bsr_matmul(block_sparse(rng, 33, 21, 16, 1, 0.4), 1, block=(16, 1), target=t, static_max_blocks=0),
        bsr_matmul(block_sparse(rng, 33, 21, 1, 8, 0.4), 2, block=(1, 8), target=t),
        bsr_matmul(block_sparse(rng, 33, 21, 4, 4, 0.4), 6, block=(4, 4), target=t),
        nm_matmul(n_m_sparse(rng, 33, 21, 2, 4), 1, n=2, group=4, target=t),
        dense_matmul(rng.standard_normal((33, 21)).astype(np.float32), 5, target=t, activation="sigmoid"),
    ]
    _assert_ok(kernels, t)


def test_hardware_gather(tgt):
    """The explicit AVX-512/AVX2 gather intrinsics (opt-in) give the same results as per-lane loads."""
    import dataclasses

    from sparseforge.codegen.kernels._common import _llvm_features

    avx512, avx2 = _llvm_features(tgt.tvm_target)
    modes = (["avx512"] if avx512 else []) + (["avx2"] if avx2 else [])
    if not modes:
        pytest.skip("host has no AVX2")
    rng = np.random.default_rng(5)
    kernels = []
    for mode in modes:
        t = dataclasses.replace(tgt, gather=mode)
        kernels.append(csr_matmul(unstructured(rng, 40, 70, 0.3, empty_rows=[3]), 2, target=t, activation="relu"))
        kernels.append(nm_matmul(n_m_sparse(rng, 40, 70, 2, 8), 1, n=2, group=8, target=t))
    _assert_ok(kernels, tgt)


def test_nm_patterns(tgt):
    """1:4, 2:4, 2:8, 4:8 with K not a multiple of the group, thinned groups; gather, permute (AVX-512, 2:4 and
    4:8, 2-bit packed positions for 2:4) and panel variants."""
    rng = np.random.default_rng(6)
    kernels = []
    for i, ((nn, g), m, k) in enumerate(itertools.product([(2, 4), (1, 4), (2, 8), (4, 8)], [1, 2, 5, 17],
                                                          [45, 64])):
        w = n_m_sparse(rng, 23, k, nn, g, thin=0.2)
        w[4] = 0
        kernels.append(nm_matmul(w, m, n=nn, group=g, bias=_bias(rng, 23, i), activation=next(ACTS), target=tgt))
        if m < 3 and 2 * nn == g:  # AVX-512 hosts pick the permute variant here: also check the gather one
            kernels.append(nm_matmul(w, m, n=nn, group=g, target=tgt, variant="gather", activation="gelu"))
    _assert_ok(kernels, tgt)


def test_nm_pack_rejects_and_roundtrips():
    rng = np.random.default_rng(7)
    w = n_m_sparse(rng, 5, 10, 2, 4)
    vals, pos = nm_pack(w, 2, 4)
    assert vals.shape == pos.shape == (5, 6) and pos.dtype == np.uint8
    dense = np.zeros((5, 12), np.float32)
    for i in range(5):
        for j in range(6):
            dense[i, (j // 2) * 4 + pos[i, j]] += vals[i, j]
    np.testing.assert_array_equal(dense[:, :10], w)
    with pytest.raises(ValueError, match="not 2:4"):
        nm_pack(np.ones((2, 8), np.float32), 2, 4)


def test_dense_reference_kernel(tgt):
    rng = np.random.default_rng(8)
    kernels = []
    for i, (m, (n, k)) in enumerate(itertools.product([1, 3, 8, 13], [(37, 45), (64, 64), (70, 19)])):
        kernels.append(dense_matmul(rng.standard_normal((n, k)).astype(np.float32), m, bias=_bias(rng, n, i),
                                    activation=next(ACTS), target=tgt))
    _assert_ok(kernels, tgt)


def test_static_matches_indexed(tgt):
    """The baked-in pattern and the index-array kernel compute the same values (up to fp32 rounding)."""
    rng = np.random.default_rng(9)
    w = block_sparse(rng, 40, 48, 4, 1, 0.3)
    ks = [bsr_matmul(w, 2, block=(4, 1), target=tgt, static_max_blocks=s) for s in (10**6, 0)]
    assert [k.info["static"] for k in ks] == [True, False]
    assert len(ks[0].constants) == 1  # only the values travel; offsets are literals in the code
    lib = build(ks, tgt)
    x = rng.standard_normal((2, 48)).astype(np.float32)
    y0, y1 = (run(k, x, lib=lib) for k in ks)
    np.testing.assert_allclose(y0, y1, rtol=1e-6, atol=1e-6)


def test_kernel_contract(tgt):
    """Scheduled PrimFunc, unique names, destination-passing call, input validation, measure()."""
    rng = np.random.default_rng(10)
    w = unstructured(rng, 16, 16, 0.5)
    a = csr_matmul(w, 1, target=tgt)
    b = csr_matmul(w, 1, target=tgt)
    assert a.name != b.name
    assert bool(a.func.attrs["tirx.is_scheduled"])
    assert a.out_shape == (1, 16) and a.out_dtype == "float32" and a.in_shape == (1, 16)
    assert measure(a, repeat=3, target=tgt) > 0
    with pytest.raises(ValueError, match="activation"):
        csr_matmul(w, 1, activation="swish", target=tgt)
    with pytest.raises(ValueError, match="bias"):
        csr_matmul(w, 1, bias=np.ones(3, np.float32), target=tgt)
    with pytest.raises(ValueError, match="2-D"):
        csr_matmul(w[None], 1, target=tgt)
