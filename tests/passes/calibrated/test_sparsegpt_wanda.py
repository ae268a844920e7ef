"""SparseGPT's OBS update and Wanda's scores against plain NumPy references of the algorithms; conv statistics
against the convolution itself."""

from __future__ import annotations

import numpy as np
import pytest

from sparseforge.ir.conv import ConvSpec, reference
from sparseforge.passes.calibrated import sparsegpt, wanda
from sparseforge.passes.calibrated.stats import LayerStats, accumulate


def obs_reference(w: np.ndarray, h: np.ndarray, pruned: np.ndarray, damp: float = sparsegpt.DAMP) -> np.ndarray:
    """Column by column, with the explicit inverse of the Hessian of the columns not yet processed: zero the
    pruned weights of column j and move their error onto columns j+1.. (optimal brain surgeon)."""
    w = w.astype(np.float64).copy()
    h = h.astype(np.float64).copy()
    h[np.diag_indices_from(h)] += damp * np.mean(np.diag(h))
    for j in range(w.shape[1]):
        hinv = np.linalg.inv(h[j:, j:])
        q = np.where(pruned[:, j], 0.0, w[:, j])
        err = (w[:, j] - q) / hinv[0, 0]
        w[:, j:] -= np.outer(err, hinv[0, :])
        w[:, j] = q
    return w


@pytest.mark.parametrize("blocksize", [128, 4])
def test_sparsegpt_update_on_a_4x8_layer_matches_the_reference(blocksize) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 8)) @ rng.standard_normal((8, 8))  # correlated inputs: updates matter
    h = x.T @ x
    w = rng.standard_normal((4, 8))
    got = sparsegpt.prune(w, h, sparsity=0.5, blocksize=blocksize)
    pruned = got == 0
    assert pruned.sum() == 16
    np.testing.assert_allclose(got, obs_reference(w, h, pruned), rtol=1e-9, atol=1e-9)
    # the update is what makes it better than masking alone: compare output errors on the calibration inputs
    masked = np.where(pruned, 0.0, w)
    assert np.linalg.norm(x @ (got - w).T) < np.linalg.norm(x @ (masked - w).T)


def test_sparsegpt_nm_and_block_patterns() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((200, 16))
    h = x.T @ x
    w = rng.standard_normal((8, 16))
    got = sparsegpt.prune(w, h, nm=(2, 4))
    assert ((got.reshape(8, 4, 4) != 0).sum(axis=2) <= 2).all()
    np.testing.assert_allclose(got, obs_reference(w, h, got == 0), rtol=1e-9, atol=1e-9)
    blocks = sparsegpt.prune(w, h, sparsity=0.5, block=(4, 1))
    zero = (blocks == 0).reshape(2, 4, 16).all(axis=1)
    assert zero.sum() == 16 and ((blocks == 0).reshape(2, 4, 16).any(axis=1) == zero).all()
    with pytest.raises(ValueError, match="exactly one"):
        sparsegpt.prune(w, h)


def test_sparsegpt_beats_magnitude_at_70_percent() -> None:
    """On correlated inputs SparseGPT's output error is well below magnitude pruning's and below its own mask
    without the updates (the 2x of the issue is measured on trained models: benchmarks/calibrated_pruning.py)."""
    rng = np.random.default_rng(2)
    # correlated inputs with uneven scales, as activations are (a few directions carry most of the energy)
    x = rng.standard_normal((512, 16)) @ rng.standard_normal((16, 64)) + 0.1 * rng.standard_normal((512, 64))
    w = rng.standard_normal((32, 64))
    h = x.T @ x
    sg = sparsegpt.prune(w, h, sparsity=0.7)
    mag = np.where(np.abs(w) > np.quantile(np.abs(w), 0.7), w, 0.0)
    err = lambda p: np.linalg.norm(x @ (p - w).T) / np.linalg.norm(x @ w.T)  # noqa: E731
    assert err(sg) < 0.8 * err(mag)
    assert err(sg) < 0.8 * err(np.where(sg == 0, 0.0, w))


def test_wanda_scores_and_per_row_selection() -> None:
    w = np.array([[1.0, -2.0, 3.0, -0.5], [0.1, 0.2, -0.3, 4.0]])
    norms = np.array([[2.0, 1.0, 0.1, 1.0]])
    s = wanda.scores(w, norms)
    np.testing.assert_allclose(s, np.abs(w) * norms)
    keep = wanda.row_mask(s, 0.5)
    assert keep.sum(axis=1).tolist() == [2, 2]
    assert keep[0].tolist() == [True, True, False, False]  # |3| * 0.1 loses to |-2| * 1
    assert keep[1, 3] and not keep[1, 2]
    grouped = wanda.scores(np.ones((4, 2)), np.array([[1.0, 2.0], [3.0, 4.0]]), rows_per_group=2)
    np.testing.assert_allclose(grouped, [[1, 2], [1, 2], [3, 4], [3, 4]])


@pytest.mark.parametrize("spec", [ConvSpec((2, 4, 7, 6), 5, (3, 3), (2, 1), (1, 1, 0, 1)),
                                  ConvSpec((1, 6, 5, 5), 6, (3, 3), (1, 1), (1, 1, 1, 1), (2, 2), group=3)])
def test_conv_statistics_give_the_output_energy(spec) -> None:
    """``tr(W_g H_g W_g^T)`` summed over groups equals ``||conv(x, W)||^2``: the patches are the conv's rows,
    ordered like the weight view."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal(spec.x_shape)
    w = rng.standard_normal((spec.cout, spec.reduction))
    stats = LayerStats.empty(spec.reduction, spec.group)
    accumulate(stats, x, spec)
    rows = spec.cout // spec.group
    energy = sum(np.einsum("ik,kl,il->", w[g * rows:(g + 1) * rows], stats.hessian[g], w[g * rows:(g + 1) * rows])
                 for g in range(spec.group))
    assert stats.rows == spec.m
    np.testing.assert_allclose(energy, np.sum(reference(spec, w, x) ** 2), rtol=1e-9)


def test_activation_aware_svd_minimizes_the_output_error() -> None:
    """At the same rank, the whitened SVD's output error is the optimum (the tail singular values of ``W L``) and
    below plain SVD's, which minimizes the weight error instead."""
    from sparseforge.passes.calibrated import svd

    rng = np.random.default_rng(4)
    x = rng.standard_normal((400, 10)) @ rng.standard_normal((10, 48)) * np.linspace(0.2, 2, 48) \
        + 0.05 * rng.standard_normal((400, 48))
    w = rng.standard_normal((32, 48))
    h = x.T @ x
    out_err = lambda u, v: np.linalg.norm(x @ (w - u @ v).T)  # noqa: E731
    u, v = svd.factor(w, 8, h, damp=0.0)
    up, vp = svd.factor(w, 8)
    assert u.shape == (32, 8) and v.shape == (8, 48)
    assert out_err(u, v) < 0.5 * out_err(up, vp)
    s = np.linalg.svd(w @ np.linalg.cholesky(h + 1e-12 * np.eye(48)), compute_uv=False)
    np.testing.assert_allclose(out_err(u, v), np.sqrt(np.sum(s[8:] ** 2)), rtol=1e-6)
    assert np.linalg.norm(w - up @ vp) <= np.linalg.norm(w - u @ v)  # plain SVD: the best weight error
