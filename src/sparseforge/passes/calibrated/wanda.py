"""Wanda (Sun et al. 2023, "A Simple and Effective Pruning Approach for Large Language Models"): prune by
``|W_ij| * ||X_j||_2``, compared within each output row (unstructured), within each group of M (N:M), or per
block (block score = L2 norm of the scores in it). Weights keep their values; only the mask uses data."""

from __future__ import annotations

import numpy as np


def scores(w: np.ndarray, column_norms: np.ndarray, rows_per_group: int | None = None) -> np.ndarray:
    """``|W| * ||X_j||`` for ``w`` ``[N, K]``; ``column_norms`` ``[G, K]`` (row ``i`` uses group
    ``i // rows_per_group``)."""
    norms = np.asarray(column_norms, np.float64)
    if norms.shape[0] == 1:
        return np.abs(w.astype(np.float64)) * norms[0][None, :]
    group = np.arange(w.shape[0]) // rows_per_group
    return np.abs(w.astype(np.float64)) * norms[group]


def row_mask(score: np.ndarray, sparsity: float) -> np.ndarray:
    """Keep-mask zeroing ``round(sparsity * K)`` lowest scores in every row."""
    n_zero = int(round(sparsity * score.shape[1]))
    keep = np.ones(score.shape, bool)
    if n_zero:
        order = np.argsort(score, axis=1, kind="stable")[:, :n_zero]
        np.put_along_axis(keep, order, False, axis=1)
    return keep
