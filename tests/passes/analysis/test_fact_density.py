"""Fact ``density``."""

from __future__ import annotations

import numpy as np
import pytest

from sparseforge.ir import keys
from sparseforge.passes.analysis import get
from sparseforge.passes.analysis.density import density


def test_density_in_every_layout(analysed) -> None:
    assert analysed.layer["density"] == pytest.approx(48 / 128)
    assert analysed.node.meta[keys.META_FACTS]["density"] == pytest.approx(0.375)


def test_density_counts_exact_zeros_and_nan_as_nonzero() -> None:
    m = np.array([[0.0, 1e-30, np.nan, 0.0]], np.float32)
    assert density(m) == 0.5
    assert density(np.zeros((0, 3), np.float32)) == 0.0


def test_density_cell() -> None:
    assert get("density").cells({"density": 0.375}) == ("0.375",)
