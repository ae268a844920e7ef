"""Monarch projection: the nearest Monarch matrix of a weight (per-slice best rank-1 fits)."""



def test_projection_is_the_nearest_monarch_matrix() -> None:
    """``project`` returns an exact Monarch weight unchanged and, for any weight, the best rank-1 fit per slice
    (no other rank-1 choice of a slice is closer)."""
    import numpy as np

    from sparseforge.ir.forms import monarch

    rng = np.random.default_rng(0)
    l, r = rng.standard_normal((8, 8, 8)), rng.standard_normal((8, 8, 8))  # F=G=A=C=8
    exact = monarch._compose(l, r, "gf")
    np.testing.assert_allclose(monarch.project(exact, 8, 8), exact, rtol=1e-10, atol=1e-10)
    w = rng.standard_normal((64, 64))
    assert (8, 8) in monarch.candidates(64, 64)
    p = monarch.project(w, 8, 8)
    found, why = monarch.find(p.astype(np.float32))
    assert found is not None, why
    t, tp = monarch._slices(w, 8, 8, "gf"), monarch._slices(p, 8, 8, "gf")
    s = np.linalg.svd(t, compute_uv=False)
    np.testing.assert_allclose(np.linalg.norm(t - tp, axis=(2, 3)) ** 2, (s[..., 1:] ** 2).sum(-1), rtol=1e-9)
