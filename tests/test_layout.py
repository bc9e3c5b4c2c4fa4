import numpy as np
import pytest

from actlas.layout import moments, normalize_coords, whitening
from actlas.viz.objectives import whiten_directions


def test_moments_numpy_and_dask_agree():
    import dask.array as da

    x = np.random.default_rng(0).normal(size=(1000, 6)).astype(np.float16)
    m1, c1 = moments(x)
    m2, c2 = moments(da.from_array(x, chunks=(128, 6)))
    np.testing.assert_allclose(m1, m2, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(c1, c2, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(c1, np.cov(x.astype(np.float64).T, bias=True), atol=1e-9)


def test_whitening_stable_with_dead_channels():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 8)) * np.array([1, 2, 3, 0, 0, 1e-9, 5, 1])
    _, cov = moments(x)
    w = whitening(cov, eps=0.1)
    assert np.isfinite(w).all()
    d = whiten_directions(np.abs(x[:4]).astype(np.float32) + 0.1, w)
    assert np.isfinite(d).all()
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1, rtol=1e-5)
    # a larger ridge moves the whitened direction towards the raw one
    raw = np.array([[1, 1, 1, 0, 0, 0, 1, 1]], dtype=np.float32)

    def cos(a, b) -> float:
        return float((a @ b.T).item() / np.linalg.norm(a) / np.linalg.norm(b))

    assert cos(whiten_directions(raw, whitening(cov, 10.0)), raw) > cos(
        whiten_directions(raw, whitening(cov, 0.01)), raw
    )


def test_normalize_coords_unit_square_with_outliers():
    xy = np.random.default_rng(0).normal(size=(1000, 2))
    xy[0] = [1e6, -1e6]
    c = normalize_coords(xy, clip=0.5)
    assert c.min() == 0 and c.max() == 1 and c.dtype == np.float32
    assert np.median(c[:, 0]) == pytest.approx(0.5, abs=0.05)


@pytest.mark.slow
def test_umap_cached_layout_is_deterministic():
    from actlas.layout import layout

    x = np.random.default_rng(0).normal(size=(300, 10)).astype(np.float32)
    a, info = layout(x, n_neighbors=10, seed=3, backend="umap-learn")
    b, _ = layout(x, n_neighbors=10, seed=3, backend="umap-learn")
    assert info["backend"] == "umap-learn"
    assert a.shape == (300, 2) and np.array_equal(a, b)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_exact_knn_matches_brute_force(metric):
    from actlas.layout import exact_knn

    rng = np.random.default_rng(1)
    x = rng.normal(size=(257, 7)).astype(np.float32)
    idx, dist = exact_knn(x, 6, metric, block_floats=1000)  # several row blocks
    if metric == "cosine":
        xn = x / np.linalg.norm(x, axis=1, keepdims=True)
        d = 1 - xn @ xn.T
    else:
        d = np.linalg.norm(x[:, None] - x[None], axis=-1)
    np.fill_diagonal(d, -1)  # self first
    want = np.argsort(d, axis=1, kind="stable")[:, :6]
    assert np.array_equal(idx[:, 0], np.arange(257)) and np.all(dist[:, 0] == 0)
    np.testing.assert_array_equal(idx[:, 1:], want[:, 1:])
    np.fill_diagonal(d, 0)
    np.testing.assert_allclose(dist, np.take_along_axis(d, idx, 1), atol=2e-5)
    with pytest.raises(ValueError, match="supports"):
        exact_knn(x, 3, "manhattan")


def test_exact_knn_is_chosen_by_size():
    from actlas.layout import use_exact_knn

    assert use_exact_knn(36_800, 96, "cosine") and use_exact_knn(100_000, 96, "euclidean")
    assert not use_exact_knn(1_000_000, 96, "cosine") and not use_exact_knn(100_000, 512, "cosine")
    assert not use_exact_knn(1000, 10, "correlation")


@pytest.mark.slow
def test_umap_with_exact_knn_separates_clusters():
    """The exact neighbour graph feeds umap-learn: two far clusters land apart, and info says which search ran."""
    from actlas.layout import layout

    rng = np.random.default_rng(0)
    centres = np.zeros((2, 16), np.float32)
    centres[0, 0] = centres[1, 1] = 10.0
    x = np.concatenate([c + rng.normal(size=(250, 16)).astype(np.float32) for c in centres])
    xy, info = layout(x, n_neighbors=10, seed=0, backend="umap-learn")
    assert info["knn"] == "exact" and info["knn_seconds"] >= 0
    a, b = xy[:250].mean(0), xy[250:].mean(0)
    spread = max(xy[:250].std(0).max(), xy[250:].std(0).max())
    assert np.linalg.norm(a - b) > 3 * spread


def test_a_whitened_direction_does_not_depend_on_the_rows_beside_it():
    """Each row is whitened alone: a BLAS product of 4 rows rounds differently from one row (the
    CI failure of an incremental run whose cached icon differed from a fresh one)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 96)) * rng.uniform(0.1, 3, 96)
    w = whitening(moments(x)[1], eps=0.1)
    d = np.abs(rng.normal(size=(9, 96))).astype(np.float32)
    together = whiten_directions(d, w)
    for lo in range(9):
        for k in (1, 2, 4):
            np.testing.assert_array_equal(whiten_directions(d[lo : lo + k], w), together[lo : lo + k])
    np.testing.assert_allclose(together, (d @ w.T) / np.linalg.norm(d @ w.T, axis=1, keepdims=True), atol=1e-6)
