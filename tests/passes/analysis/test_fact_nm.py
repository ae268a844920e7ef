"""Fact ``nm``: N:M compliance per pattern."""

from __future__ import annotations

import numpy as np
import pytest

from sparseforge.ir.forms.nm import PATTERNS
from sparseforge.passes.analysis import get
from sparseforge.passes.analysis.nm import best_nm, nm_compliance

EXPECTED_NM = {"1:4": 0.25, "2:4": 1.0, "2:8": 0.25, "4:8": 1.0}


def test_nm_in_every_layout(analysed) -> None:
    assert analysed.layer["nm"] == pytest.approx(EXPECTED_NM)


def test_patterns_come_from_the_forms_registry_in_json_order(analysed) -> None:
    assert list(analysed.layer["nm"]) == ["1:4", "2:4", "2:8", "4:8"]
    assert {tuple(int(x) for x in k.split(":")) for k in analysed.layer["nm"]} == set(PATTERNS)


def test_nm_compliance_counts_partial_groups() -> None:
    m = np.array([[1, 1, 0, 0, 1, 1]], np.float32)  # groups [1,1,0,0] and [1,1,pad,pad]
    assert nm_compliance(m, 2, 4) == 1.0
    assert nm_compliance(m, 1, 4) == 0.0
    m = np.array([[1, 1, 1, 0, 1]], np.float32)
    assert nm_compliance(m, 2, 4) == 0.5


def test_best_nm_and_its_cell() -> None:
    assert best_nm(EXPECTED_NM) == ("2:4", 1.0)  # sparsest fully compliant
    assert best_nm({"1:4": 0.5, "2:8": 0.5, "4:8": 0.75}) == ("4:8", 0.75)
    assert best_nm({}) is None
    assert get("nm").cells({"nm": EXPECTED_NM}) == ("2:4 (100%)",)
    assert get("nm").cells({"nm": {}}) == ("-",)
