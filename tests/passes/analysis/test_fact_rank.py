"""Fact ``rank``: numerical rank at fp32 tolerance and 99%-energy rank."""

from __future__ import annotations

import numpy as np

from sparseforge.passes.analysis import get
from sparseforge.passes.analysis.analyse import StructureAnalysisPass
from sparseforge.passes.analysis.rank import rank_info


def _rank99(m: np.ndarray) -> int:
    s = np.linalg.svd(m.astype(np.float64), compute_uv=False)
    energy = np.cumsum(s ** 2) / np.sum(s ** 2)
    return int(np.searchsorted(energy, 0.99) + 1)


def test_rank_in_every_layout(analysed) -> None:
    assert analysed.layer["rank"] == 2
    assert analysed.layer["rank_99"] == _rank99(analysed.matrix)
    assert analysed.layer["rank_method"] == "exact"


def test_rank_exact_and_99_percent_energy() -> None:
    rng = np.random.default_rng(0)
    u, v = rng.standard_normal((64, 5)), rng.standard_normal((5, 48))
    info = rank_info((u @ v).astype(np.float32))
    assert info.rank == 5 and info.method == "exact"
    s = np.diag([10.0, 1.0, 0.1, 0.01]).astype(np.float32)
    info = rank_info(s)
    assert info.rank == 4
    assert info.rank_99 == 1  # 100 / 101.0101 > 0.99
    assert rank_info(np.zeros((4, 4), np.float32)).rank == 0


def test_rank_on_matrices_above_the_svd_limit() -> None:
    rng = np.random.default_rng(1)
    low = (rng.standard_normal((700, 3)) @ rng.standard_normal((3, 600))).astype(np.float32)
    info = rank_info(low, max_svd_dim=100, sketch=32)
    assert info.rank == 3 and "randomized" in info.method and info.rank_99 is not None
    full = rng.standard_normal((300, 200)).astype(np.float32)
    info = rank_info(full, max_svd_dim=100, sketch=32)
    assert info.rank is None and "bounded" in info.method


def test_no_rank_option(analysed) -> None:
    (layer,) = StructureAnalysisPass(with_rank=False)(analysed.model).report.details["layers"]
    assert (layer["rank"], layer["rank_99"], layer["rank_method"]) == (None, None, "skipped: --no-rank")


def test_rank_cell() -> None:
    cell = get("rank").cells
    assert cell({"rank": 2, "rank_99": 1}) == ("2 / 1",)
    assert cell({"rank": None, "rank_99": 7}) == ("? / 7",)
    assert cell({"rank": None, "rank_99": None}) == ("-",)
