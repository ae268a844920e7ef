"""Low-rank factorization of a weight for its inputs: plain truncated SVD, or activation-aware (SVD-LLM's
whitening): with ``H = X^T X = L L^T`` (Cholesky, damped), truncate the SVD of ``W L`` and map back with ``L^-1``,
which minimizes the output error ``||(W - W') X^T||_F`` over rank-``r`` ``W'`` (plain SVD minimizes the weight
error instead). Float64; returns the factors ``u [N, r]``, ``v [r, K]``."""

from __future__ import annotations

import numpy as np
import scipy.linalg

from .sparsegpt import DAMP


def factor(w: np.ndarray, rank: int, h: np.ndarray | None = None, *, damp: float = DAMP
           ) -> tuple[np.ndarray, np.ndarray]:
    """Rank-``rank`` factors of ``w``: activation-aware with ``h`` (``[K, K]``), plain without."""
    w = np.asarray(w, np.float64)
    if h is None:
        u, s, vt = np.linalg.svd(w, full_matrices=False)
        return u[:, :rank] * s[:rank], vt[:rank]
    h = np.array(h, np.float64, copy=True)
    h[np.diag_indices_from(h)] += damp * float(np.mean(np.diag(h))) + 1e-12
    lower = np.linalg.cholesky(h)
    u, s, vt = np.linalg.svd(w @ lower, full_matrices=False)
    v = scipy.linalg.solve_triangular(lower, vt[:rank].T, lower=True, trans="T").T  # vt_r @ L^-1
    return u[:, :rank] * s[:rank], v
