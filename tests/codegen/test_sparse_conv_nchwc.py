"""Sparse 1x1 convolution on the dense pipeline's NCHW{L}c activations (``sparse_conv1x1_nchwc``)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

pytest.importorskip("tvm")

from sparseforge.codegen.kernels import (ACTIVATIONS, Runner, build, make_target,  # noqa: E402
                                         sparse_conv1x1, sparse_conv1x1_nchwc)
from sparseforge.codegen.kernels.conv1x1_nchwc import butterfly, from_nchwc, to_nchwc  # noqa: E402
from sparseforge.codegen.kernels.testing import block_sparse, max_error, unstructured  # noqa: E402

pytestmark = pytest.mark.tvm

TOL = 1e-5


def _input(rng, kernel, cin: int) -> np.ndarray:
    """Random NCHWc input whose padding lanes hold NaN: any read of them into a real output shows."""
    x = rng.standard_normal(kernel.in_shape).astype(np.float32)
    x[:, -1, :, :, cin % x.shape[-1] or x.shape[-1]:] = np.nan
    return x


def _check(cases, target, seed=0):
    """cases: [(kernel, cin, cout)]; all compiled into one module, each run on NaN-padded input."""
    lib = build([k for k, _, _ in cases], target)
    rng = np.random.default_rng(seed)
    bad = []
    for k, cin, cout in cases:
        x = _input(rng, k, cin)
        y = Runner(lib, k, x)()
        ref = k.reference(x)
        lanes = y.shape[-1]
        pad = y[:, -1, :, :, (cout % lanes or lanes):]
        if not np.all(np.isfinite(y)) or np.any(pad != 0):
            bad.append((k.name, "non-finite output or non-zero padding lanes", k.info))
        elif max_error(y, ref) > TOL:
            bad.append((k.name, max_error(y, ref), k.info))
    assert not bad, "\n".join(map(str, bad))


def test_butterfly_is_a_transpose():
    for lanes in (2, 4, 8, 16):
        v = [[(r, c) for c in range(lanes)] for r in range(lanes)]
        for stage in butterfly(lanes):
            new = [None] * lanes
            for d, i, j, idx in stage:
                cat = v[i] + v[j]
                new[d] = [cat[k] for k in idx]
            v = new
        assert all(v[r][c] == (c, r) for r in range(lanes) for c in range(lanes))


def test_layout_helpers_round_trip():
    x = np.random.default_rng(0).standard_normal((2, 24, 3, 5)).astype(np.float32)
    x5 = to_nchwc(x, 16)
    assert x5.shape == (2, 2, 3, 5, 16) and np.all(x5[:, 1, :, :, 8:] == 0)
    assert x5[1, 1, 2, 4, 3] == x[1, 19, 2, 4]
    np.testing.assert_array_equal(from_nchwc(x5, 24), x)


@pytest.mark.parametrize("lanes", [4, 8, 16])
def test_nchwc_shapes_blocks_activations(lanes):
    """Channels that are not multiples of L (Cin 24 / Cout 40 with L 16), H*W not a multiple of the tile, batch 2,
    empty rows, CSR and BSR (4x1, 2x3, 2x2; a block column past Cin), every activation with and without bias (14
    kernels: 7 activations cycled over alternating bias), K panels, 1 and 2 threads; input padding lanes hold NaN,
    output padding lanes must be 0."""
    rng = np.random.default_rng(lanes)
    acts = itertools.cycle(ACTIVATIONS)
    configs = [  # (cin, cout, batch, h, w, block, opts)
        (24, 40, 2, 5, 7, None, {}),
        (24, 40, 1, 9, 9, (4, 1), {}),
        (13, 10, 2, 3, 3, (2, 3), {}),             # 3-wide blocks: the last block column reaches past Cin
        (64, 40, 1, 6, 6, None, dict(kc=16)),      # 4 K panels
        (64, 36, 1, 6, 6, (2, 2), dict(kc=24)),
        (8, 20, 1, 1, 1, None, {}),                # a single position
        (40, 24, 2, 8, 8, None, dict(max_vectors=1)),
    ]
    cases = []
    for i, (cin, cout, b, h, w, block, opts) in enumerate(configs):
        t = make_target(threads=1 + i % 2)
        if block is None:
            wt = unstructured(rng, cout, cin, 0.3, empty_rows=[0, cout - 1], dense_rows=[1])
        else:
            wt = block_sparse(rng, cout, cin, *block, 0.4, empty_block_rows=[0])
        for bias in (None, rng.standard_normal(cout).astype(np.float32)):
            k = sparse_conv1x1_nchwc(wt, b, h, w, lanes=lanes, bias=bias, activation=next(acts), target=t,
                                     block=block, **opts)
            assert k.in_shape == (b, -(-cin // lanes), h, w, lanes)
            assert k.out_shape == (b, -(-cout // lanes), h, w, lanes)
            cases.append((k, cin, cout))
    assert any(k.info["plan"].panels > 1 for k, _, _ in cases)
    _check(cases, make_target(threads=2), seed=lanes)


def test_nchwc_zero_weight_and_mobilenet_like_shapes():
    """All-zero weight gives act(bias) (and 0 in the padding lanes); 90 % sparse MobileNetV2-like layers at the
    host's lane count agree with the NCHW kernel."""
    rng = np.random.default_rng(7)
    t = make_target(threads=2)
    cases = []
    for act, bias in (("relu6", rng.standard_normal(40).astype(np.float32)), ("sigmoid", None)):
        cases.append((sparse_conv1x1_nchwc(np.zeros((40, 24), np.float32), 1, 4, 5, bias=bias, activation=act,
                                           target=t), 24, 40))
    shapes = [(14, 24, 144), (7, 160, 96), (7, 96, 24)]
    pairs = []
    for hw, cin, cout in shapes:
        wt = unstructured(rng, cout, cin, 0.1)
        bias = rng.standard_normal(cout).astype(np.float32)
        kn = sparse_conv1x1_nchwc(wt[:, :, None, None], 1, hw, hw, bias=bias, activation="relu6", target=t)
        ko = sparse_conv1x1(wt, 1, hw, hw, bias=bias, activation="relu6", target=t)
        cases.append((kn, cin, cout))
        pairs.append((kn, ko, cin, cout))
    _check(cases, t)
    lib = build([k for pair in pairs for k in pair[:2]], t)
    for kn, ko, cin, cout in pairs:
        x = rng.standard_normal(ko.in_shape).astype(np.float32)
        y_nchw = Runner(lib, ko, x)()
        y_nchwc = Runner(lib, kn, to_nchwc(x, kn.in_shape[-1]))()
        np.testing.assert_allclose(from_nchwc(y_nchwc, cout), y_nchw, rtol=1e-5, atol=1e-5)


def test_nchwc_errors_and_cross_compile():
    with pytest.raises(ValueError, match="1x1"):
        sparse_conv1x1_nchwc(np.ones((4, 4, 3, 3), np.float32), 1, 2, 2)
    with pytest.raises(ValueError, match="divide lanes"):
        sparse_conv1x1_nchwc(np.ones((6, 8), np.float32), 1, 2, 2, lanes=4, block=(3, 1))
    with pytest.raises(ValueError, match="power of two"):
        sparse_conv1x1_nchwc(np.ones((6, 8), np.float32), 1, 2, 2, lanes=6)
    from sparseforge.codegen._tvm import IRModule, tvm
    from sparseforge.codegen.kernels import resolve_target

    t = resolve_target({"tvm_target": {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon"]},
                        "threads": 2})
    k = sparse_conv1x1_nchwc(unstructured(np.random.default_rng(3), 10, 12, 0.3), 1, 3, 5, target=t,
                             activation="relu")
    assert k.in_shape[-1] == 4
    asm = tvm.tirx.build(IRModule({k.name: k.func}), target=t.tvm()).inspect_source("asm")
    assert "fmla" in asm
