"""N:M form: exact encoding, group packing, ONNX body, options, calibration."""

from __future__ import annotations

import numpy as np
import pytest
from form_checks import check_body_in_onnxruntime, check_roundtrip, structured

from sparseforge.ir import forms
from sparseforge.ir.forms import nm

CASES = [((8, 10), (2, 4)), ((3, 16), (1, 4)), ((5, 24), (4, 8)), ((2, 3), (2, 8)), ((1, 1), (1, 4))]


@pytest.mark.parametrize("shape,pattern", CASES)
def test_roundtrip_and_entries(shape, pattern) -> None:
    enc = check_roundtrip(structured(shape, 1.0, nm=pattern), "nm", nm=pattern)
    groups = -(-shape[1] // pattern[1])
    assert enc.indices.dtype == np.uint8 and enc.values.shape == (shape[0], groups * pattern[0])
    assert enc.dims.tolist() == [*shape, groups, pattern[1]]


def test_refuses_non_compliant_weights() -> None:
    with pytest.raises(ValueError, match="2:4"):
        forms.encode(np.ones((2, 8), np.float32), "nm", nm=(2, 4))


def test_groups_pad_with_position_zero() -> None:
    w = np.zeros((1, 8), np.float32)
    w[0, 3] = 1.0
    vals, pos = nm.groups(forms.encode(w, "nm", nm=(2, 4)))
    assert vals.tolist() == [[1.0, 0.0, 0.0, 0.0]] and pos.tolist() == [[3, 0, 0, 0]]


@pytest.mark.parametrize("kind", ["matmul", "conv1x1"])
@pytest.mark.parametrize("shape,pattern", CASES[:3])
def test_onnx_body_matches_reference(kind, shape, pattern) -> None:
    check_body_in_onnxruntime(structured(shape, 1.0, nm=pattern, seed=3), "nm", kind, nm=pattern)


def test_options_only_compliant_patterns() -> None:
    w = structured((8, 16), 1.0, nm=(2, 4))
    labels = [o.label for o in nm.FORM.options(w)]
    assert "nm 2:4" in labels and "nm 4:8" in labels and "nm 1:4" not in labels
    option = forms.option_for("nm2:4")
    assert (option.nm, option.stored, option.variant_key) == ((2, 4), 0.5, "nm2:4")
    assert nm.FORM.fixed_stored and nm.FORM.stored_fraction(8, 16, 0.1, nm=(1, 4)) == 0.25
