"""Activation statistics of one layer: ``H = sum_x x x^T`` over the rows ``x`` its weight is applied to.

For ``MatMul``/``Gemm`` the rows are the input's last axis (all leading axes are samples); for a 2-D ``Conv`` the
rows are the input patches (im2col, ordered ``(ci, kh, kw)`` like the weight view), one per output position, per
group (``H`` is ``[G, K, K]``, K = Cin/G * kh * kw). Accumulated in float64, batch by batch (memory: K^2 per group).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from sparseforge.ir.conv import ConvSpec

#: Patches drawn per batch at most for a conv (a random subset of output positions): H of a big image layer
#: does not need every position, and im2col of all of them would be large.
MAX_PATCHES = 16384


@dataclasses.dataclass
class LayerStats:
    """``hessian``: ``[G, K, K]`` sum of ``x x^T``; ``rows``: how many ``x`` were summed."""

    hessian: np.ndarray
    rows: int = 0

    @classmethod
    def empty(cls, k: int, groups: int = 1) -> LayerStats:
        return cls(np.zeros((groups, k, k), np.float64), 0)

    def add_rows(self, x: np.ndarray, group: int = 0) -> None:
        """Add the rows of ``x`` ``[n, K]``."""
        x = np.asarray(x, np.float64)
        self.hessian[group] += x.T @ x
        if group == 0:
            self.rows += x.shape[0]

    @property
    def column_norms(self) -> np.ndarray:
        """``||X_j||_2`` per reduction column, ``[G, K]`` (Wanda's activation norm)."""
        return np.sqrt(np.maximum(np.einsum("gkk->gk", self.hessian), 0.0))

    def mean_hessian(self) -> np.ndarray:
        return self.hessian / max(self.rows, 1)


def patches(x: np.ndarray, spec: ConvSpec, group: int, rng: np.random.Generator | None = None,
            limit: int = MAX_PATCHES) -> np.ndarray:
    """im2col rows ``[n, Cin/G * kh * kw]`` of group ``group`` of ``x`` (``[B, Cin, H, W]``), ordered like the weight
    view; at most ``limit`` positions (a seeded random subset)."""
    b, cin, h, w = x.shape
    kh, kw = spec.kernel
    (sh, sw), (dh, dw) = spec.strides, spec.dilations
    pt, pl, pb, pr = spec.pads
    oh, ow = spec.out_hw
    cg = spec.cin_per_group
    xg = x[:, group * cg:(group + 1) * cg]
    xp = np.zeros((b, cg, h + pt + pb, w + pl + pr), x.dtype)
    xp[:, :, pt:pt + h, pl:pl + w] = xg
    positions = b * oh * ow
    take = None
    if positions > limit:
        rng = rng or np.random.default_rng(0)
        take = np.sort(rng.choice(positions, limit, replace=False))
    cols = []
    for i in range(kh):
        for j in range(kw):
            tap = xp[:, :, i * dh:i * dh + (oh - 1) * sh + 1:sh, j * dw:j * dw + (ow - 1) * sw + 1:sw]
            tap = tap.transpose(0, 2, 3, 1).reshape(positions, cg)  # [positions, cg]
            cols.append(tap if take is None else tap[take])
    # column order (ci, kh, kw): stack taps last, then flatten
    return np.stack(cols, axis=2).reshape(-1 if take is None else len(take), cg * kh * kw)


def accumulate(stats: LayerStats, x: np.ndarray, spec: ConvSpec | None, rng: np.random.Generator | None = None
               ) -> None:
    """Add one batch of a layer's input ``x`` (a MatMul/Gemm input, or a Conv input of geometry ``spec``)."""
    if spec is None:
        stats.add_rows(np.asarray(x).reshape(-1, stats.hessian.shape[-1]))
        return
    for g in range(spec.group):
        stats.add_rows(patches(np.asarray(x), spec, g, rng), g)
