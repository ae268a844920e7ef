"""SparseGPT (Frantar & Alistarh 2023, "SparseGPT: Massive Language Models Can Be Accurately Pruned in One-Shot"):
prune ``W`` ``[N, K]`` column block by column block while updating the not-yet-pruned columns to compensate
(optimal brain surgeon with the inverse Hessian ``H = X^T X`` of the layer's inputs, Cholesky form).

Patterns: unstructured (the mask of each block of ``blocksize`` columns is chosen from ``w^2 / [H^-1]_jj^2`` over
the block, so every block reaches the target sparsity), N:M (at every M-th column the ``M - N`` lowest of the next
M are pruned, per row) and ``r x c`` blocks (at every c-th column the lowest-saliency ``r x c`` blocks of the next
c columns are pruned, the target fraction of them). Weights change, not only the mask. Float64 throughout.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

DAMP = 0.01  # dampening, a fraction of the mean diagonal of H (the reference implementation's default)
BLOCKSIZE = 128


def inverse_hessian_factor(h: np.ndarray, damp: float = DAMP) -> tuple[np.ndarray, np.ndarray]:
    """(upper Cholesky factor of ``(H + damp*mean(diag H) I)^-1``, dead columns) for ``h`` ``[K, K]``; dead columns
    (never active: ``H_jj == 0``) get ``H_jj = 1``."""
    h = np.array(h, np.float64, copy=True)
    dead = np.diag(h) == 0
    h[dead, dead] = 1.0
    h[np.diag_indices_from(h)] += damp * float(np.mean(np.diag(h)))
    lower = np.linalg.cholesky(h)
    inv = scipy.linalg.cho_solve((lower, True), np.eye(h.shape[0]))
    return np.linalg.cholesky(inv).T, dead


def prune(w: np.ndarray, h: np.ndarray, *, sparsity: float | None = None, nm: tuple[int, int] | None = None,
          block: tuple[int, int] | None = None, blocksize: int = BLOCKSIZE, damp: float = DAMP) -> np.ndarray:
    """The pruned and updated weight (same shape and dtype as ``w``), zeros exactly where pruned."""
    if (sparsity is None) == (nm is None):
        raise ValueError("sparsegpt: give exactly one of sparsity and nm")
    W = np.array(w, np.float64, copy=True)
    rows, cols = W.shape
    hinv, dead = inverse_hessian_factor(h, damp)
    W[:, dead] = 0.0
    r, c = block if block is not None else (1, 1)
    step = nm[1] if nm is not None else c
    blocksize = max(step, blocksize // step * step)
    mask = np.zeros_like(W, dtype=bool)  # True: pruned
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        W1 = W[:, i1:i2].copy()
        Q1 = np.zeros_like(W1)
        Err1 = np.zeros_like(W1)
        H1 = hinv[i1:i2, i1:i2]
        d = np.diag(H1)
        M1 = np.zeros_like(W1, dtype=bool)
        if nm is None and block is None:
            saliency = W1 ** 2 / d[None, :] ** 2
            n_zero = int(round(sparsity * saliency.size))
            if n_zero:
                M1.reshape(-1)[np.argsort(saliency.reshape(-1), kind="stable")[:n_zero]] = True
        for i in range(i2 - i1):
            if i % step == 0 and (nm is not None or block is not None):
                j2 = min(i + step, i2 - i1)
                saliency = W1[:, i:j2] ** 2 / d[None, i:j2] ** 2
                if nm is not None:
                    n, m = nm
                    drop = max(0, (j2 - i) - n) if j2 - i < m else m - n
                    order = np.argsort(saliency, axis=1, kind="stable")[:, :drop]
                    np.put_along_axis(M1[:, i:j2], order, True, axis=1)
                else:
                    nb = -(-rows // r)
                    padded = np.zeros((nb * r, j2 - i))
                    padded[:rows] = saliency
                    block_s = padded.reshape(nb, r, j2 - i).sum(axis=(1, 2))
                    n_zero = int(round(sparsity * nb))
                    pruned_blocks = np.zeros(nb, bool)
                    pruned_blocks[np.argsort(block_s, kind="stable")[:n_zero]] = True
                    M1[:, i:j2] = np.repeat(pruned_blocks, r)[:rows, None]
            wcol = W1[:, i]
            q = np.where(M1[:, i], 0.0, wcol)
            Q1[:, i] = q
            err = (wcol - q) / d[i]
            W1[:, i:] -= np.outer(err, H1[i, i:])
            Err1[:, i] = err
        W[:, i1:i2] = Q1
        mask[:, i1:i2] = M1
        W[:, i2:] -= Err1 @ hinv[i1:i2, i2:]
    W[mask] = 0.0
    W[:, dead] = 0.0
    return W.astype(w.dtype)
