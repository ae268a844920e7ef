"""StructureAnalysis: what structure each constant weight has, in the ``(output, reduction)`` view.

For every weight-bearing op (see :mod:`sparseforge.ir.weights`) it measures, on exact zeros:

* ``density``: fraction of nonzero elements;
* ``nm``: for 1:4, 2:4, 2:8, 4:8, the fraction of groups of M consecutive reduction elements (per output row)
  holding at most N nonzeros; a row's last partial group is padded with zeros;
* ``block_zero_fraction``: for each block shape rows x cols, the fraction of all-zero blocks; blocks at the
  matrix edge are partial (padded with zeros), and count as zero when their existing elements are all zero;
* ``dead_output_channels``: output channels whose weight row is all zero;
* ``dead_input_channels``: input channels of the op (for Conv: index into the op's input channels, across groups)
  whose weights are all zero;
* ``rank`` (numerical rank at fp32 tolerance ``s_max * max(m, n) * eps(float32)``) and ``rank_99`` (fewest
  singular values holding 99% of the spectral energy ``sum s_i^2``). Exact SVD up to ``max_svd_dim``; above it,
  a randomized range finder proves a low rank when one exists (``rank_method`` says which, and ``rank`` is
  ``None`` when the rank is only bounded);
* ``long_conv``: 1-D convolution with a kernel of at least 64 taps (an FFT-convolution candidate).

Results go to ``weight.meta[META_STRUCTURE]`` and into the pass report (``details["layers"]``).
The pass never changes the model.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import onnx_ir as ir
import scipy.linalg

from sparseforge.ir import keys
from sparseforge.ir.weights import WeightView, weight_views
from sparseforge.passes.infra import PassReport, ReportingPass

NM_PATTERNS: tuple[tuple[int, int], ...] = ((1, 4), (2, 4), (2, 8), (4, 8))
BLOCK_SHAPES: tuple[tuple[int, int], ...] = ((1, 4), (4, 1), (4, 4), (8, 1), (1, 8), (16, 1), (16, 16))
LONG_CONV_MIN_TAPS = 64
RANK_ENERGY = 0.99


@dataclasses.dataclass
class WeightStructure:
    """Structure of one weight as seen by one node (JSON-ready via :meth:`to_dict`)."""

    node: str
    op_type: str
    weight: str
    shape: tuple[int, int]
    stored_shape: tuple[int, ...]
    groups: int
    kernel_shape: tuple[int, ...]
    density: float
    nm: dict[str, float]
    block_zero_fraction: dict[str, float]
    dead_output_channels: list[int]
    dead_input_channels: list[int]
    rank: int | None
    rank_99: int | None
    rank_method: str
    long_conv: bool

    @property
    def sparsity(self) -> float:
        return 1.0 - self.density

    def best_nm(self) -> tuple[str, float] | None:
        """The sparsest N:M pattern with full compliance, else the best-complying one."""
        full = [(k, v) for k, v in self.nm.items() if v >= 1.0]
        if full:
            return min(full, key=lambda kv: _nm_ratio(kv[0]))
        if not self.nm:
            return None
        return max(self.nm.items(), key=lambda kv: (kv[1], -_nm_ratio(kv[0])))

    def best_block(self) -> tuple[str, float] | None:
        """The block shape with the largest zero-block fraction (ties: larger blocks)."""
        if not self.block_zero_fraction:
            return None
        return max(self.block_zero_fraction.items(), key=lambda kv: (round(kv[1], 6), _block_area(kv[0])))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["shape"] = list(self.shape)
        d["stored_shape"] = list(self.stored_shape)
        d["kernel_shape"] = list(self.kernel_shape)
        return d


def _nm_ratio(key: str) -> float:
    n, m = key.split(":")
    return int(n) / int(m)


def _block_area(key: str) -> int:
    r, c = key.split("x")
    return int(r) * int(c)


# ------------------------------------------------------------------------------------------ pure analyses


def density(matrix: np.ndarray) -> float:
    """Fraction of elements that are not exactly zero (NaN counts as nonzero)."""
    return float(np.count_nonzero(matrix)) / matrix.size if matrix.size else 0.0


def nm_compliance(matrix: np.ndarray, n: int, m: int) -> float:
    """Fraction of groups of ``m`` consecutive elements along axis 1 with at most ``n`` nonzeros."""
    rows, cols = matrix.shape
    if rows == 0 or cols == 0:
        return 1.0
    groups = -(-cols // m)
    nz = matrix != 0
    if groups * m != cols:
        nz = np.pad(nz, ((0, 0), (0, groups * m - cols)))
    counts = nz.reshape(rows, groups, m).sum(axis=2)
    return float(np.count_nonzero(counts <= n)) / counts.size


def nonzero_blocks(matrix: np.ndarray, br: int, bc: int) -> np.ndarray:
    """Boolean ``[ceil(rows/br), ceil(cols/bc)]`` map of blocks holding any nonzero (edges zero-padded)."""
    rows, cols = matrix.shape
    rb, cb = -(-rows // br), -(-cols // bc)
    nz = matrix != 0
    if rb * br != rows or cb * bc != cols:
        nz = np.pad(nz, ((0, rb * br - rows), (0, cb * bc - cols)))
    return nz.reshape(rb, br, cb, bc).any(axis=(1, 3))


def zero_block_fraction(matrix: np.ndarray, br: int, bc: int) -> float:
    """Fraction of ``br x bc`` blocks that are entirely zero (partial edge blocks included)."""
    if matrix.size == 0:
        return 1.0
    blocks = nonzero_blocks(matrix, br, bc)
    return 1.0 - float(np.count_nonzero(blocks)) / blocks.size


def dead_rows(matrix: np.ndarray) -> list[int]:
    """Indices of all-zero rows."""
    return [int(i) for i in np.flatnonzero(~(matrix != 0).any(axis=1))]


def dead_input_channels(view: WeightView, matrix: np.ndarray) -> list[int]:
    """Input channels of the op whose weights are all zero (Conv: across groups; MatMul/Gemm: zero columns)."""
    if view.op_type != "Conv":
        return [int(j) for j in np.flatnonzero(~(matrix != 0).any(axis=0))]
    out_ch = matrix.shape[0]
    groups = view.groups
    k = view.kernel_size
    per_group_in = matrix.shape[1] // k
    per_group_out = out_ch // groups
    nz = (matrix != 0).reshape(groups, per_group_out, per_group_in, k).any(axis=(1, 3))  # [groups, in/g]
    return [int(i) for i in np.flatnonzero(~nz.reshape(-1))]


@dataclasses.dataclass
class RankInfo:
    rank: int | None
    rank_99: int | None
    method: str


def rank_info(matrix: np.ndarray, max_svd_dim: int = 2048, sketch: int = 256, seed: int = 0) -> RankInfo:
    """Numerical rank at fp32 tolerance and the 99%-energy rank.

    Exact (``scipy.linalg.svdvals``) when ``min(shape) <= max_svd_dim``; otherwise a randomized range finder
    with ``sketch`` columns: if the residual is below tolerance the rank is proven at most ``sketch`` and the
    spectrum is exact to fp32; else ``rank`` is None and ``rank_99`` is given only if the captured singular values
    already hold 99% of the energy (``||W||_F^2`` is exact).
    """
    a = np.asarray(matrix, dtype=np.float32)
    m, n = a.shape
    if a.size == 0 or not np.any(a):
        return RankInfo(0, 0, "exact")
    if not np.all(np.isfinite(a)):
        return RankInfo(None, None, "skipped: non-finite values")
    eps = float(np.finfo(np.float32).eps)
    total_energy = float(np.sum(a.astype(np.float64) ** 2))
    if min(m, n) <= max_svd_dim:
        s = scipy.linalg.svdvals(a, check_finite=False).astype(np.float64)
        tol = s[0] * max(m, n) * eps
        return RankInfo(int(np.count_nonzero(s > tol)), _energy_rank(s, float(np.sum(s ** 2))), "exact")
    k = min(sketch, min(m, n))
    rng = np.random.default_rng(seed)
    wide = (a if m <= n else a.T).astype(np.float64)  # rows = smaller side
    omega = rng.standard_normal((wide.shape[1], k + 8))
    q, _ = np.linalg.qr(wide @ omega)
    proj = q.T @ wide
    s = scipy.linalg.svdvals(proj, check_finite=False)
    residual = float(np.linalg.norm(wide - q @ proj))  # Frobenius norm bounds sigma_{k+9}
    tol = s[0] * max(m, n) * eps
    r99 = _energy_rank(s, total_energy, allow_incomplete=True)
    if residual <= tol:
        return RankInfo(int(np.count_nonzero(s > tol)), r99, f"randomized (sketch {k}, exact below it)")
    return RankInfo(None, r99, f"bounded: rank > {k} (matrix larger than max_svd_dim={max_svd_dim})")


def _energy_rank(s: np.ndarray, total: float, allow_incomplete: bool = False) -> int | None:
    if total <= 0:
        return 0
    cumulative = np.cumsum(s ** 2)
    hit = np.flatnonzero(cumulative >= RANK_ENERGY * total * (1 - 1e-12))
    if hit.size == 0:
        return None if allow_incomplete else len(s)
    return int(hit[0]) + 1


def analyse_view(view: WeightView, *, with_rank: bool = True, max_svd_dim: int = 2048) -> WeightStructure:
    """Compute the :class:`WeightStructure` of one weight-bearing node."""
    mat = view.matrix()
    stored_shape = tuple(int(d) for d in view.stored().shape)
    rank = rank_info(mat, max_svd_dim) if with_rank else RankInfo(None, None, "skipped: --no-rank")
    return WeightStructure(
        node=view.name,
        op_type=view.op_type,
        weight=view.weight.name or "",
        shape=(int(mat.shape[0]), int(mat.shape[1])),
        stored_shape=stored_shape,
        groups=view.groups,
        kernel_shape=view.kernel_shape,
        density=density(mat),
        nm={f"{n}:{m}": nm_compliance(mat, n, m) for n, m in NM_PATTERNS},
        block_zero_fraction={f"{r}x{c}": zero_block_fraction(mat, r, c) for r, c in BLOCK_SHAPES},
        dead_output_channels=dead_rows(mat),
        dead_input_channels=dead_input_channels(view, mat),
        rank=rank.rank,
        rank_99=rank.rank_99,
        rank_method=rank.method,
        long_conv=view.op_type == "Conv" and len(view.kernel_shape) == 1
        and view.kernel_shape[0] >= LONG_CONV_MIN_TAPS,
    )


# ------------------------------------------------------------------------------------------ the pass


class StructureAnalysisPass(ReportingPass):
    """Analyse every constant weight; results in ``value.meta`` and ``report.details["layers"]``."""

    name = "StructureAnalysis"

    def __init__(self, *, with_rank: bool = True, max_svd_dim: int = 2048):
        super().__init__()
        self.with_rank = with_rank
        self.max_svd_dim = max_svd_dim

    def run(self, model: ir.Model, report: PassReport) -> None:
        layers: list[dict[str, Any]] = []
        cache: dict[tuple[int, int], WeightStructure] = {}
        for view in weight_views(model.graph):
            key = (id(view.weight), view.out_axis)
            structure = cache.get(key)
            if structure is None or structure.op_type != view.op_type:
                structure = analyse_view(view, with_rank=self.with_rank, max_svd_dim=self.max_svd_dim)
                cache[key] = structure
            else:
                structure = dataclasses.replace(structure, node=view.name)
            view.weight.meta[keys.META_STRUCTURE] = structure
            view.node.meta[keys.META_STRUCTURE] = structure
            layers.append(structure.to_dict())
            report.counts["weights"] += 1
            if structure.dead_output_channels:
                report.counts["layers-with-dead-outputs"] += 1
            if structure.long_conv:
                report.note("found.long-conv", f"1-D conv with {structure.kernel_shape[0]} taps: an FFT "
                            "convolution candidate", view.name)
            if structure.rank is None and self.with_rank:
                report.note("rank.bounded", structure.rank_method, view.name)
        report.details["layers"] = layers


def structure_of(view: WeightView) -> WeightStructure | None:
    """The analysis result attached to ``view``'s node, if the pass ran."""
    return view.node.meta.get(keys.META_STRUCTURE)
