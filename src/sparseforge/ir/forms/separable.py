"""Separable convolution kernels: a 2-D ``Conv`` weight ``W [O, C/g, kh, kw]`` whose spatial slices are exactly
rank 1 runs as a ``kh x 1`` and a ``1 x kw`` convolution.

Variants (:func:`find`), each exact at fp32 tolerance (the factors must reproduce ``W`` to
:func:`sparseforge.ir.forms.low_rank.reconstruction_rtol`, relative Frobenius):

* ``depthwise``: ``group = C = O`` and every ``W[c, 0] = u_c v_c^T``: a depthwise ``kh x 1`` then a depthwise
  ``1 x kw`` convolution;
* ``input-vertical`` / ``input-horizontal``: ``group = 1`` and, for every input channel ``i``, the vertical (or
  horizontal) factor is the same for all outputs (``W[o, i] = u_i g_{o,i}^T``): a depthwise ``kh x 1`` (``1 x kw``) on
  the input, then a full ``1 x kw`` (``kh x 1``) convolution;
* ``output-vertical`` / ``output-horizontal``: the factor is shared by all inputs of each output channel: a full
  ``1 x kw`` (``kh x 1``) convolution, then a depthwise ``kh x 1`` (``1 x kw``) on the output.

Factors are computed in float64 (SVD of the relevant unfolding) and stored in the weight's dtype.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from sparseforge.ir.forms.low_rank import reconstruction_rtol

VARIANTS = ("depthwise", "input-vertical", "input-horizontal", "output-vertical", "output-horizontal")


@dataclasses.dataclass(frozen=True)
class Separable:
    """``first`` runs before ``second``; each is a 4-D conv weight. ``first_axis`` is ``"vertical"`` (``kh x 1``)
    or ``"horizontal"``; ``first_depthwise`` / ``second_depthwise`` say which one is depthwise."""

    variant: str
    first: np.ndarray
    second: np.ndarray
    first_axis: str
    first_depthwise: bool
    second_depthwise: bool
    error: float

    def macs_per_pixel(self) -> int:
        """Multiply-adds per output pixel of both convs together (output-sized pixels, before strides)."""
        return int(self.first.size + self.second.size)


def _rank1(matrices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Best rank-1 factors ``a [B, m]``, ``b [B, n]`` of each ``[m, n]`` matrix of ``matrices [B, m, n]``."""
    u, s, vt = np.linalg.svd(matrices, full_matrices=False)
    root = np.sqrt(s[:, 0])
    return u[:, :, 0] * root[:, None], vt[:, 0, :] * root[:, None]


def _check(w: np.ndarray, approx: np.ndarray, k: int) -> tuple[bool, float]:
    norm = float(np.linalg.norm(w))
    error = float(np.linalg.norm(w - approx)) / norm if norm else 0.0
    return error <= reconstruction_rtol(k), error


def find(weight: np.ndarray, groups: int) -> tuple[Separable | None, str]:
    """The first exact variant for ``weight [O, C/g, kh, kw]`` with ``groups``, or None; a reason either way."""
    w = np.asarray(weight, np.float64)
    if w.ndim != 4 or w.shape[2] < 2 or w.shape[3] < 2:
        return None, "not a 2-D kernel of at least 2 x 2"
    o, cg, kh, kw = w.shape
    dtype = np.asarray(weight).dtype
    reduction = cg * kh * kw
    if not np.all(np.isfinite(w)) or not np.any(w):
        return None, "zero or non-finite weight"
    if groups == o and cg == 1:
        a, b = _rank1(w[:, 0])  # [O, kh], [O, kw]
        first = a.reshape(o, 1, kh, 1).astype(dtype)
        second = b.reshape(o, 1, 1, kw).astype(dtype)
        ok, err = _check(w, np.einsum("op,oq->opq", first[:, 0, :, 0].astype(np.float64),
                                      second[:, 0, 0, :].astype(np.float64))[:, None], reduction)
        if ok:
            return Separable("depthwise", first, second, "vertical", True, True, err), \
                f"depthwise {kh}x{kw} kernels of rank 1: {kh}x1 then 1x{kw} (reproduce it to {err:.1g})"
        return None, f"depthwise {kh}x{kw} kernels not of rank 1 (best rank-1 fit leaves {err:.2g})"
    if groups != 1:
        return None, f"grouped Conv (group={groups})"
    best_error = np.inf
    # input-shared: for each input i, W[:, i] unfolded so the shared factor's axis is one side
    for variant in VARIANTS[1:]:
        per_input = variant.startswith("input")
        vertical = variant.endswith("vertical")
        t = w.transpose(1, 0, 2, 3) if per_input else w  # [n_shared, n_other, kh, kw]
        shared, other = t.shape[0], t.shape[1]
        if vertical:
            unfold = t.transpose(0, 2, 1, 3).reshape(shared, kh, other * kw)
        else:
            unfold = t.transpose(0, 3, 1, 2).reshape(shared, kw, other * kh)
        factor, rest = _rank1(unfold)  # factor [shared, kh or kw], rest [shared, other * k']
        if vertical:
            g = rest.reshape(shared, other, kw)
            approx = np.einsum("sp,soq->sopq", factor, g)
        else:
            g = rest.reshape(shared, other, kh)
            approx = np.einsum("sq,sop->sopq", factor, g)
        approx = approx.transpose(1, 0, 2, 3) if per_input else approx
        ok, err = _check(w, approx, reduction)
        best_error = min(best_error, err)
        if not ok:
            continue
        k_shared = (kh, 1) if vertical else (1, kw)
        k_other = (1, kw) if vertical else (kh, 1)
        depthwise = factor.reshape(shared, 1, *k_shared).astype(dtype)
        if per_input:  # g [C, O, k'] -> full conv weight [O, C, k']
            full = g.transpose(1, 0, 2).reshape(o, cg, *k_other).astype(dtype)
            sep = Separable(variant, depthwise, full, "vertical" if vertical else "horizontal", True, False, err)
        else:  # g [O, C, k'] full conv first, then the depthwise shared factor per output
            full = g.reshape(o, cg, *k_other).astype(dtype)
            sep = Separable(variant, full, depthwise, "horizontal" if vertical else "vertical", False, True, err)
        return sep, (f"{kh}x{kw} kernels of rank 1 with the {'vertical' if vertical else 'horizontal'} factor "
                     f"shared per {'input' if per_input else 'output'} channel (reproduce it to {err:.1g})")
    return None, f"{kh}x{kw} kernels are not separable with a shared factor (best fit leaves {best_error:.2g})"
