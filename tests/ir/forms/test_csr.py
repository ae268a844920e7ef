"""CSR form: exact encoding, entries, ONNX body, options, calibration."""

from __future__ import annotations

import numpy as np
import pytest
from form_checks import check_body_in_onnxruntime, check_roundtrip, structured

from sparseforge.ir import forms
from sparseforge.ir.forms import csr


@pytest.mark.parametrize("shape,density", [((13, 21), 0.2), ((5, 7), 0.0), ((6, 9), 1.0), ((1, 1), 1.0),
                                           ((1, 70000), 0.001)])
def test_roundtrip_and_entries(shape, density) -> None:
    enc = check_roundtrip(structured(shape, density), "csr")
    assert enc.indices.dtype == np.int32 and enc.dims.tolist() == list(shape)


def test_row_entries_of_any_form_are_csr_rows() -> None:
    w = structured((9, 16), 1.0, nm=(2, 4))
    for enc in (forms.encode(w, "csr"), forms.encode(w, "bsr", block=(4, 4)), forms.encode(w, "nm", nm=(2, 4))):
        vals, cols, rowptr = csr.row_entries(enc)
        dense = np.zeros_like(w)
        for i in range(9):
            dense[i, cols[rowptr[i]:rowptr[i + 1]]] = vals[rowptr[i]:rowptr[i + 1]]
        np.testing.assert_array_equal(dense, w)
        assert rowptr.dtype == np.int32 and rowptr[-1] == np.count_nonzero(w)


def test_explicit_zeros_are_not_entries() -> None:
    enc = forms.Encoded("csr", np.array([0.0, 2.0], np.float32), np.array([1, 5], np.int32),
                        np.array([2, 3], np.int64))
    rows, cols, vals = csr.FORM.entries(enc)
    assert rows.tolist() == [1] and cols.tolist() == [2] and vals.tolist() == [2.0]


@pytest.mark.parametrize("kind", ["matmul", "conv1x1"])
def test_onnx_body_matches_reference(kind) -> None:
    check_body_in_onnxruntime(structured((13, 21), 0.2, seed=3), "csr", kind)


def test_options_and_keys() -> None:
    (option,) = csr.FORM.options(structured((10, 10), 0.3))
    assert (option.form, option.label, option.variant_key) == ("csr", "csr", "csr")
    assert option.stored == pytest.approx(np.count_nonzero(structured((10, 10), 0.3)) / 100)
    assert forms.option_for("csr").form == "csr" and forms.variant_key("csr") == "csr"
