"""Fact ``blocks``: fraction of all-zero blocks per block shape."""

from __future__ import annotations

import numpy as np
import pytest

from sparseforge.ir.forms.bsr import BLOCK_SHAPES
from sparseforge.passes.analysis import get
from sparseforge.passes.analysis.blocks import best_block, zero_block_fraction

EXPECTED_BLOCKS = {"1x4": 0.25, "4x1": 0.5, "4x4": 0.0, "8x1": 0.5, "1x8": 0.25, "16x1": 0.5, "16x16": 0.0}


def test_blocks_in_every_layout(analysed) -> None:
    assert analysed.layer["block_zero_fraction"] == pytest.approx(EXPECTED_BLOCKS)


def test_shapes_come_from_the_forms_registry_in_json_order(analysed) -> None:
    assert list(analysed.layer["block_zero_fraction"]) == list(EXPECTED_BLOCKS)
    keys = analysed.layer["block_zero_fraction"]
    assert {tuple(int(x) for x in k.split("x")) for k in keys} == set(BLOCK_SHAPES)


def test_zero_blocks_with_partial_edge_blocks() -> None:
    m = np.zeros((5, 6), np.float32)
    m[0, 0] = 1.0
    # 4x4 blocks: 2 x 2 blocks, only the top-left one is nonzero
    assert zero_block_fraction(m, 4, 4) == 0.75
    m[4, 5] = 2.0  # the bottom-right partial block is nonzero now
    assert zero_block_fraction(m, 4, 4) == 0.5
    assert zero_block_fraction(np.zeros((3, 3), np.float32), 16, 16) == 1.0


def test_best_block_prefers_larger_blocks_on_ties_and_its_cell() -> None:
    assert best_block(EXPECTED_BLOCKS) == ("16x1", 0.5)
    assert best_block({"1x4": 0.5, "4x1": 0.5}) == ("1x4", 0.5)  # equal area: the first listed
    assert get("blocks").cells({"block_zero_fraction": EXPECTED_BLOCKS}) == ("16x1 (50%)",)
    assert get("blocks").cells({"block_zero_fraction": {}}) == ("-",)
