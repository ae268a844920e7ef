"""CUDA back end without a GPU: targets, packing, kernel records, nvcc builds for sm_80/sm_90, export, and the
architecture of the embedded device code. (Numerical checks: test_cuda_gpu.py, on a GPU.)"""

from __future__ import annotations

import itertools
import os
import shutil

import numpy as np
import pytest

pytest.importorskip("tvm")

from sparseforge.codegen import cuda as C  # noqa: E402
from sparseforge.codegen.cuda import _pack  # noqa: E402
from sparseforge.codegen.kernels.testing import block_sparse, n_m_sparse, unstructured  # noqa: E402

pytestmark = pytest.mark.tvm

needs_nvcc = pytest.mark.skipif(shutil.which("nvcc") is None and not os.path.exists("/usr/local/cuda/bin/nvcc"),
                                reason="nvcc not found")
ACTS = ("none", "relu", "relu6", "gelu", "sigmoid", "silu", "tanh")


# ------------------------------------------------------------------------------------------------- targets


@pytest.mark.parametrize("arch", ["sm_70", "sm_75", "sm_80", "sm_86", "sm_89", "sm_90", "sm_90a", "sm_100a",
                                  "sm_120"])
def test_cuda_target_accepts(arch):
    tgt = C.cuda_target(arch)
    assert tgt.kind.name == "cuda" and str(tgt.arch) == arch
    assert tgt.host.kind.name == "llvm"


@pytest.mark.parametrize("arch", ["sm_60", "sm_77", "sm_80a", "compute_90", "90", "sm90", "", "gfx90a", None])
def test_cuda_target_rejects(arch):
    with pytest.raises(ValueError, match="CUDA architecture"):
        C.cuda_target(arch)


# ------------------------------------------------------------------------------------------------- packing


def _dense_from_rows(pat, k):
    """Rebuild W from a row pattern (NumPy emulation of the kernels' walk)."""
    arrays = dict(zip([a[0] for a in pat.arrays], pat.consts))
    w = np.zeros((pat.nb * pat.r, -(-k // pat.c) * pat.c + 256), np.float32)
    fmt = pat.info["format"]
    for ib in range(pat.nb):
        if fmt == "csr":
            for j in range(arrays["rowptr"][ib], arrays["rowptr"][ib + 1]):
                w[ib, arrays["idx"][j]] += arrays["vals"][j]
        elif fmt == "bsr":
            for j in range(arrays["bptr"][ib], arrays["bptr"][ib + 1]):
                c0 = int(arrays["bidx"][j]) * pat.c
                w[ib * pat.r:(ib + 1) * pat.r, c0:c0 + pat.c] += arrays["data"][j].T
        else:  # n:m
            n, group = map(int, fmt[2:].split(":"))
            J = arrays["vals"].size // pat.nb
            for e in range(J):
                w[ib, e // n * group + arrays["pos"][ib * J + e]] += arrays["vals"][ib * J + e]
    return w[:pat.n, :k]


def _dense_from_panels(pat, k):
    arrays = dict(zip([a[0] for a in pat.arrays], pat.consts))
    panels = -(-k // pat.tk)
    w = np.zeros((pat.nb * pat.r, panels * pat.tk), np.float32)
    fmt = pat.info["format"]
    for p in range(panels):
        for ib in range(pat.nb):
            if fmt.startswith("nm"):
                n, group = map(int, fmt[2:].split(":"))
                J = arrays["vals"].size // pat.nb
                gp, g = pat.tk // group, J // n
                s, cnt = ib * J + p * gp * n, (min(p * gp + gp, g) - p * gp) * n
            else:
                s = arrays["ptr"][p * pat.nb + ib]
                cnt = arrays["ptr"][p * pat.nb + ib + 1] - s
            for e in range(cnt):
                j = s + e
                if fmt == "csr-panels":
                    w[ib, p * pat.tk + arrays["idx"][j]] += arrays["vals"][j]
                elif fmt == "bsr-panels":
                    c0 = p * pat.tk + int(arrays["bidx"][j]) * pat.c
                    w[ib * pat.r:(ib + 1) * pat.r, c0:c0 + pat.c] += arrays["data"][j].T
                else:
                    w[ib, p * pat.tk + e // n * group + arrays["pos"][j]] += arrays["vals"][j]
    return w[:pat.n, :k]


def test_packing_roundtrip():
    """Every packed format (rows and K-panel-major) walks back to exactly W: odd shapes, empty rows, zeros."""
    rng = np.random.default_rng(0)
    w = unstructured(rng, 37, 101, 0.2, empty_rows=[0, 5], dense_rows=[7])
    np.testing.assert_array_equal(_dense_from_rows(_pack.csr_rows(w), 101), w)
    np.testing.assert_array_equal(_dense_from_rows(_pack.csr_rows(np.zeros_like(w)), 101), np.zeros_like(w))
    np.testing.assert_array_equal(_dense_from_panels(_pack.csr_panels(w, 32), 101), w)
    for r, c in [(4, 1), (1, 4), (3, 5), (16, 16)]:
        wb = block_sparse(rng, 37, 45, r, c, 0.3, empty_block_rows=[0])
        np.testing.assert_array_equal(_dense_from_rows(_pack.bsr_rows(wb, r, c), 45), wb)
        tk = C.kernels.panel_unit(c)
        np.testing.assert_array_equal(_dense_from_panels(_pack.bsr_panels(wb, r, c, tk), 45), wb)
    for n, group in [(2, 4), (1, 4), (2, 8)]:
        wn = n_m_sparse(rng, 19, 45, n, group, thin=0.2)
        np.testing.assert_array_equal(_dense_from_rows(_pack.nm_rows(wn, n, group), 45), wn)
        np.testing.assert_array_equal(_dense_from_panels(_pack.nm_rows(wn, n, group, 32), 45), wn)
    with pytest.raises(ValueError, match="not 2:4 sparse"):
        C.nm_matmul(np.ones((4, 8), np.float32), 1)


# ------------------------------------------------------------------------------------------------- records


def test_kernel_records():
    rng = np.random.default_rng(1)
    w = unstructured(rng, 40, 50, 0.2)
    bias = np.ones(40, np.float32)
    for k in (C.csr_matmul(w, 1, bias=bias), C.csr_matmul(w, 33, activation="gelu"),
              C.bsr_matmul(w, 4, block=(4, 1)), C.bsr_matmul(w, 64, block=(4, 4), bias=bias),
              C.nm_matmul(n_m_sparse(rng, 40, 50, 2, 4), 20, activation="relu")):
        assert k.func.attrs["tirx.is_scheduled"]
        text = k.func.script()
        assert 'thread="blockIdx.x"' in text and 'thread="threadIdx.x"' in text
        assert k.out_shape == (k.in_shape[0], 40) and k.out_dtype == "float32"
        assert k.info["device"] == "cuda" and k.info["arch"] == "sm_90"
        assert k.info["variant"] == ("rows" if k.in_shape[0] <= C.SMALL_M else "panel")
        if k.info["variant"] == "panel":
            assert ("alloc_shared" in text or 'scope="shared"' in text) and "tvm_storage_sync" in text
        else:
            assert "tvm_warp_shuffle_xor" in text
        assert all(isinstance(c, np.ndarray) for c in k.constants)
    conv = C.sparse_conv1x1(w[:, :, None, None], 2, 5, 7, bias=bias, target="sm_80")
    assert conv.in_shape == (2, 50, 5, 7) and conv.out_shape == (2, 40, 5, 7) and conv.info["arch"] == "sm_80"
    with pytest.raises(ValueError, match="activation"):
        C.csr_matmul(w, 1, activation="swish")
    with pytest.raises(ValueError, match="CUDA architecture"):
        C.bsr_matmul(w, 1, target="sm_61")


# ------------------------------------------------------------------------------------------------- builds


def _all_families(rng):
    """One kernel of every family and variant: odd shapes, empty rows, all-zero weights, M = 1 and M > 1."""
    acts = itertools.cycle(ACTS)
    w = unstructured(rng, 37, 45, 0.3, empty_rows=[0])
    b = rng.standard_normal(37).astype(np.float32)
    ks = [C.csr_matmul(w, 1, bias=b, activation=next(acts)), C.csr_matmul(w, 40, activation=next(acts)),
          C.csr_matmul(np.zeros_like(w), 3, bias=b)]
    for blk, m in [((4, 1), 1), ((16, 16), 2), ((3, 5), 33), ((1, 4), 70)]:
        ks.append(C.bsr_matmul(block_sparse(rng, 37, 45, *blk, 0.3), m, block=blk, bias=b, activation=next(acts)))
    wn = n_m_sparse(rng, 37, 45, 2, 4)
    ks += [C.nm_matmul(wn, 1, activation=next(acts)), C.nm_matmul(wn, 20, bias=b, activation=next(acts))]
    ks += [C.sparse_conv1x1(w, 2, 5, 7, bias=b, activation=next(acts)),
           C.sparse_conv1x1(block_sparse(rng, 37, 48, 4, 4, 0.3), 1, 9, 9, block=(4, 4), activation=next(acts))]
    return ks


@needs_nvcc
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_kernel_families_compile(arch, tmp_path):
    """Every kernel family compiles with nvcc for ``arch``; the exported library holds SASS and PTX for it."""
    kernels = _all_families(np.random.default_rng(2))
    ex = C.build(kernels, arch)
    path = str(tmp_path / f"kernels_{arch}.so")
    info = C.export(ex, path, arch)
    assert info["format"] == "fatbin"
    assert info["sass"] == [arch] and info["ptx"] == [arch] and info["archs"] == [arch]
    assert {f"{k.name}_kernel" for k in kernels} <= set(info["kernels"])
    other = "sm_90" if arch == "sm_80" else "sm_80"
    with pytest.raises(ValueError, match="rebuild"):
        C.export(ex, str(tmp_path / "wrong.so"), other)


@needs_nvcc
def test_mlp_builds_and_exports(tmp_path):
    """A Relax MLP mixing sparse kernels (call_tir) and a dense layer (dlight) builds and exports for sm_90."""
    rng = np.random.default_rng(3)
    k1 = C.csr_matmul(unstructured(rng, 64, 48, 0.2), 8, bias=np.ones(64, np.float32), activation="relu")
    dense = ("dense", rng.standard_normal((32, 64)).astype(np.float32), np.zeros(32, np.float32), "gelu")
    k3 = C.bsr_matmul(block_sparse(rng, 10, 32, 2, 2, 0.5), 8, block=(2, 2))
    mod = C.mlp_module([k1, dense, k3], 8, 48)
    ex = C.build(mod, "sm_90")
    info = C.export(ex, str(tmp_path / "mlp.so"), "sm_90")
    assert info["archs"] == ["sm_90"]
    names = set(info["kernels"])
    assert {f"{k1.name}_kernel", f"{k3.name}_kernel"} <= names
    assert any("matmul" in n for n in names - {f"{k1.name}_kernel", f"{k3.name}_kernel"})  # the dlight layer
    # an IRModule goes straight to a file, built for the requested architecture
    info80 = C.export(mod, str(tmp_path / "mlp80.so"), "sm_80")
    assert info80["archs"] == ["sm_80"]


def test_device_code_info_source_only(tmp_path):
    """Without a binary, a file holding CUDA source is reported as such (no architectures)."""
    p = tmp_path / "src.so"
    p.write_bytes(b'\x00extern "C" __global__ void k_kernel(float* x) {}\x00')
    info = C.device_code_info(str(p))
    assert info["format"] == "cuda-source" and info["archs"] == []
