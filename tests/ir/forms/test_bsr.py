"""BSR form: exact encoding, blocks from any operand, ONNX body, options, calibration."""

from __future__ import annotations

import numpy as np
import pytest
from form_checks import check_body_in_onnxruntime, check_roundtrip, structured

from sparseforge.ir import forms
from sparseforge.ir.forms import bsr

CASES = [((14, 9), (4, 1), 0.3), ((7, 10), (1, 4), 0.3), ((16, 16), (4, 4), 1.0), ((20, 33), (16, 16), 0.5),
         ((5, 5), (8, 1), 0.0), ((1, 1), (16, 16), 1.0)]


@pytest.mark.parametrize("shape,block,density", CASES)
def test_roundtrip_and_entries(shape, block, density) -> None:
    enc = check_roundtrip(structured(shape, density, block=block), "bsr", block=block)
    nb, kb = -(-shape[0] // block[0]), -(-shape[1] // block[1])
    assert enc.dims.tolist() == [*shape, nb, kb] and enc.values.shape[1:] == block
    assert enc.indices.dtype == np.int32 and np.all(np.diff(enc.indices) > 0)


def _blocks_of_dense(w, r, c):
    n, k = w.shape
    nb, kb = -(-n // r), -(-k // c)
    wp = np.zeros((nb * r, kb * c), np.float32)
    wp[:n, :k] = w
    grid = wp.reshape(nb, r, kb, c).transpose(0, 2, 1, 3)
    ib, jb = np.nonzero(np.any(grid != 0, axis=(2, 3)))
    return grid[ib, jb], ib, jb


@pytest.mark.parametrize("r,c", [(4, 1), (8, 1), (2, 4), (1, 1), (16, 16)])
def test_block_entries_from_any_form_match_the_dense_cut(r, c) -> None:
    w = structured((19, 24), 0.5, block=(8, 1), seed=4)
    for enc in (forms.encode(w, "bsr", block=(8, 1)), forms.encode(w, "csr"), forms.encode(w, "bsr", block=(4, 4))):
        data, brow, bcol = bsr.block_entries(enc, r, c)
        expected = _blocks_of_dense(w, r, c)
        np.testing.assert_array_equal(data, expected[0])
        np.testing.assert_array_equal(brow, expected[1])
        np.testing.assert_array_equal(bcol, expected[2])


def test_split_blocks_keep_signed_zeros() -> None:
    w = structured((16, 8), 0.5, block=(8, 1), seed=5)  # masked normals hold -0.0
    enc = forms.encode(w, "bsr", block=(8, 1))
    data, _, _ = bsr.block_entries(enc, 4, 1)
    np.testing.assert_array_equal(np.signbit(data), np.signbit(_blocks_of_dense(w, 4, 1)[0]))


def test_pack_layout_and_empty_weight() -> None:
    data, bidx, bptr = bsr.bsr_pack(forms.encode(np.zeros((5, 7), np.float32), "bsr", block=(4, 1)), 4, 1)
    assert data.shape == (1, 4, 1) and bidx.dtype == np.uint16 and bptr.tolist() == [0, 0, 0]


@pytest.mark.parametrize("kind", ["matmul", "conv1x1"])
@pytest.mark.parametrize("block", [(4, 1), (16, 16)])
def test_onnx_body_matches_reference(kind, block) -> None:
    check_body_in_onnxruntime(structured((20, 33), 0.5, block=block, seed=3), "bsr", kind, block=block)


def test_options_follow_block_shapes() -> None:
    w = structured((16, 16), 0.3, block=(4, 1), seed=1)
    options = bsr.FORM.options(w)
    assert [o.block for o in options] == list(bsr.BLOCK_SHAPES)
    first = options[0]
    assert (first.label, first.variant_key) == ("bsr 4x1", "bsr4x1")
    assert first.nnz_blocks == int(bsr.nonzero_blocks(w, 4, 1).sum()) and first.stored == first.nnz_blocks / 64
    assert forms.option_for("bsr16x1").block == (16, 1) and forms.variant_key("bsr", (1, 8)) == "bsr1x8"
    assert bsr.FORM.stored_fraction(16, 16, 0.3, block=(4, 1), nnz_blocks=32) == 0.5
