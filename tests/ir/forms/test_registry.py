"""The forms registry: decision order, the stored-fraction cut, calibration keys and random weights."""

from __future__ import annotations

import numpy as np
import pytest

from sparseforge.ir import forms


def test_forms_in_decision_order() -> None:
    assert list(forms.FORMS) == ["csr", "bsr", "nm"]
    with pytest.raises(ValueError, match="unknown sparse format"):
        forms.get("coo")


def test_options_cut_at_max_stored_fraction() -> None:
    w = np.ones((8, 8), np.float32)
    w[0, 0] = 0.0  # density 63/64: every CSR/BSR option stores >= 0.9
    assert all(o.stored >= forms.MAX_STORED_FRACTION for o in forms.all_options(w) if o.form != "nm")
    assert forms.options(w) == []
    sparse = np.zeros((8, 8), np.float32)
    sparse[::4, ::4] = 1.0
    labels = [o.label for o in forms.options(sparse)]
    assert labels[0] == "csr" and labels[1] == "bsr 4x1" and labels[-1] == "nm 4:8"


def _old_random_weight(n, k, density, *, block=None, nm=None, seed=0):
    """The calibration weights as codegen/calibration.py generated them (cached tables depend on them)."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((n, k)).astype(np.float32)
    if nm is not None:
        keep_n, m = nm
        groups = -(-k // m)
        scores = rng.random((n, groups, m))
        mask = np.zeros((n, groups, m), bool)
        np.put_along_axis(mask, np.argsort(scores, axis=2)[:, :, :keep_n], True, axis=2)
        return w * mask.reshape(n, groups * m)[:, :k]
    if block is not None:
        br, bc = block
        nb, kb = -(-n // br), -(-k // bc)
        mask = rng.random((nb, kb)) < density
        mask[np.arange(nb), rng.integers(0, kb, nb)] |= density > 0
        return w * np.repeat(np.repeat(mask, br, 0), bc, 1)[:n, :k]
    return w * (rng.random((n, k)) < density)


@pytest.mark.parametrize("key,params", [("csr", {}), ("bsr4x1", {"block": (4, 1)}),
                                        ("bsr16x16", {"block": (16, 16)}), ("nm2:4", {"nm": (2, 4)}),
                                        ("nm1:4", {"nm": (1, 4)})])
def test_random_weights_and_keys_are_unchanged(key, params) -> None:
    new = forms.random_weight(37, 45, 0.25, key, seed=1)
    old = _old_random_weight(37, 45, 0.25, seed=1, **params)
    assert new.dtype == np.float32
    np.testing.assert_array_equal(new, old)
    kernel = key[:3] if key.startswith(("csr", "bsr")) else "nm"
    assert forms.variant_key(kernel, params.get("block"), params.get("nm")) == key
    assert forms.option_for(key).variant_key == key
