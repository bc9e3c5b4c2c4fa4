"""Aligned atlases: matching samples across maps, the aligned layout, and the measures of an alignment."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from actlas import align

BLOCK = {"input_size": [32, 32], "mean": [0.5] * 3, "std": [0.25] * 3, "labels": [f"c{i}" for i in range(10)]}
TINY_NET = BLOCK | {"source": "tiny_models:tiny_net"}
TINY_VIT = BLOCK | {"source": "tiny_models:tiny_vit"}


@pytest.fixture(autouse=True)
def _trust_test_factories(monkeypatch):
    """The tests' own factories (``tiny_models:...``) are code the tests trust."""
    monkeypatch.setenv("ACTLAS_TRUST_CODE", "1")


def _collect(folder: Path, out: Path, model, layers: list[str], positions: int) -> dict:
    """Collect ``layers`` of ``model`` over the photos in ``folder``: per layer image, position, spatial, activation."""
    import zarr

    from actlas.data import images, store
    from actlas.formats import shards
    from actlas.stages.collect import collect

    shard = out.with_suffix(".txt")
    shard.write_text(shards.format_shard(images.list_images(folder)))
    collect(
        shard,
        out,
        model,
        layers,
        positions=positions,
        attr_top=1,
        batch_size=8,
        chunk=16,
        workers=0,
        progress=False,
        device="cpu",
    )
    group = zarr.open_group(str(out), mode="r")
    return {
        layer: {
            "image": store.read([out], f"{layer}/image").astype(np.int64),
            "position": store.read([out], f"{layer}/position").astype(np.int64),
            "spatial": tuple(group[layer].attrs["spatial"]),
            "activation": store.read([out], f"{layer}/activation").astype(np.float32),
        }
        for layer in layers
    }


def _match(a: dict, b: dict, **kw) -> align.Matching:
    return align.match(a["image"], a["position"], a["spatial"], b["image"], b["position"], b["spatial"], **kw)


def test_layers_of_one_grid_share_their_positions_and_match_by_position(tiny_dataset, tmp_path):
    got = _collect(
        tiny_dataset, tmp_path / "s.zarr", TINY_NET, ["features.1", "features.3", "features.4", "pool"], positions=3
    )
    f1, f3, f4, pool = got["features.1"], got["features.3"], got["features.4"], got["pool"]
    assert f3["spatial"] == f4["spatial"] == (16, 16) and f1["spatial"] == (32, 32) and pool["spatial"] == (1, 1)
    # collect draws a layer's positions from (grid, count, seed, photo): layers of one grid get the same ones
    m = _match(f3, f4)
    assert len(m.a) == len(f3["image"]) == 48
    assert np.array_equal(f3["position"][m.a], f4["position"][m.b]) and np.array_equal(
        f3["image"][m.a], f4["image"][m.b]
    )
    assert not m.offset.any()
    # layers of different grids drew other positions: mapped through the grids, one to one per photo
    m = _match(f1, f3)
    assert len(m.a) == 48 and len(np.unique(m.a)) == 48 and len(np.unique(m.b)) == 48
    assert np.array_equal(f1["image"][m.a], f3["image"][m.b])
    centre_1 = align.cell_centres(f1["position"], f1["spatial"])
    centre_3 = align.cell_centres(f3["position"], f3["spatial"])
    for photo in range(16):  # each photo's pairing is the best of every one-to-one pairing of its 3 x 3 samples
        rows_1, rows_3 = np.flatnonzero(f1["image"] == photo), np.flatnonzero(f3["image"] == photo)
        chosen = m.offset[np.isin(m.a, rows_1)].sum()
        best = min(
            np.linalg.norm(centre_1[rows_1] - centre_3[list(p)], axis=1).sum() for p in itertools.permutations(rows_3)
        )
        assert chosen == pytest.approx(best, rel=1e-5)
    # a pooled layer (one position): each photo's pooled sample pairs with its sample nearest the centre
    m = _match(f3, pool)
    assert len(m.a) == 16 and np.array_equal(f3["image"][m.a], pool["image"][m.b])
    dist = np.linalg.norm(centre_3 - 0.5, axis=1)
    for a in m.a:
        assert dist[a] == dist[f3["image"] == f3["image"][a]].min()


def test_match_by_position_pairs_only_the_same_photo_and_place():
    image_a, pos_a = np.array([0, 0, 1, 2]), np.array([[1, 1], [2, 3], [1, 1], [0, 0]])
    image_b, pos_b = np.array([1, 0, 0, 3]), np.array([[1, 1], [2, 3], [1, 2], [0, 0]])
    m = align.match(image_a, pos_a, (4, 4), image_b, pos_b, (4, 4))
    assert m.a.tolist() == [1, 2] and m.b.tolist() == [1, 0]
    with pytest.raises(ValueError, match="mapped"):
        align.match(image_a, pos_a, (4, 4), image_b, pos_b, (8, 8), method="position")
    # across grids: (1, 1) of a 4 x 4 grid has its centre at 0.375, nearest to (2, 2) of an 8 x 8 grid (0.3125)
    m = align.match([5, 5], [[1, 1], [3, 3]], (4, 4), [5, 5, 6], [[7, 7], [2, 2], [2, 2]], (8, 8))
    assert m.a.tolist() == [0, 1] and m.b.tolist() == [1, 0]
    assert m.offset[0] == pytest.approx(np.hypot(0.0625, 0.0625))


def test_photo_means_are_one_point_a_photo_matched_by_photo():
    x = np.array([[0, 2], [2, 4], [10, 10], [1, 1]], np.float32)
    means, photos = align.photo_means(x, np.array([3, 3, 7, 1]))
    assert photos.tolist() == [1, 3, 7]
    np.testing.assert_allclose(means, [[1, 1], [1, 3], [10, 10]])
    other, other_photos = align.photo_means(x[:3], np.array([7, 3, 3]))
    zeros = lambda n: np.zeros((n, 2), int)  # noqa: E731
    m = align.match(photos, zeros(3), (1, 1), other_photos, zeros(2), (1, 1))
    assert photos[m.a].tolist() == other_photos[m.b].tolist() == [3, 7]


def test_photo_ids_follow_paths_not_run_order():
    a, b = align.photo_ids(["x.jpg", "y.jpg", "z.jpg"], ["z.jpg", "x.jpg"])
    assert a.tolist() == [0, 1, 2] and b.tolist() == [2, 0]


def test_relations_chain_matchings_over_the_window():
    m01 = align.Matching(np.array([0, 1, 3]), np.array([4, 0, 2]), np.zeros(3, np.float32))  # map 0 -> map 1
    m12 = align.Matching(np.array([0, 2]), np.array([1, 0]), np.zeros(2, np.float32))  # map 1 -> map 2
    rel = align.relations([m01, m12], [4, 5, 3], window=2)
    w = 3  # one slot more than the window: umap-learn's optimiser reads offsets -w .. w - 1
    assert rel.shape == (3, 7, 5) and rel.dtype == np.int32
    assert rel[0, w + 1].tolist() == [4, 0, -1, 2, -1]
    assert rel[0, w + 2].tolist() == [-1, 1, -1, 0, -1]  # 1 -> 0 -> 1 and 3 -> 2 -> 0
    assert rel[1, w - 1].tolist() == [1, -1, 3, -1, 0]
    assert rel[1, w + 1].tolist() == [1, -1, 0, -1, -1]
    assert rel[2, w - 1].tolist() == [2, 0, -1, -1, -1]
    assert rel[2, w - 2].tolist() == [3, 1, -1, -1, -1]
    assert (rel[:, 0] == -1).all() and (rel[:, 2 * w] == -1).all() and (rel[:, w] == -1).all()
    assert (rel[0, :w] == -1).all() and (rel[2, w + 1 :] == -1).all()
    # window 1: the maps two steps away are left out
    one = align.relations([m01, m12], [4, 5, 3], window=1)  # slots: offsets -2 .. 2
    assert one[0, 3].tolist() == [4, 0, -1, 2, -1] and (one[0, 4] == -1).all() and (one[2, 0] == -1).all()
    with pytest.raises(ValueError, match="one to one"):
        align.relations([align.Matching(np.array([0, 1]), np.array([2, 2]), np.zeros(2))], [2, 3])


def test_overlap_weights_are_jaccard_of_matched_neighbourhoods():
    from scipy import sparse

    def graph(edges, n=3):
        i, j = np.array(edges).T
        return sparse.csr_matrix((np.ones(2 * len(i), np.float32), (np.r_[i, j], np.r_[j, i])), shape=(n, n))

    same = align.Matching(np.arange(3), np.arange(3), np.zeros(3, np.float32))
    rel = align.relations([same], [3, 3], window=1)
    weights = align.overlap_weights([graph([(0, 1), (1, 2)]), graph([(0, 1), (0, 2)])], rel)
    # 0: {1} against {1, 2}; 1: {0, 2} against {0}; 2: {1} against {0}
    np.testing.assert_allclose(weights[0, 3], [0.5, 0.5, 0.0])
    np.testing.assert_allclose(weights[1, 1], [0.5, 0.5, 0.0])
    assert not weights[:, [0, 2, 4]].any()


def test_rigid_align_undoes_a_move_turn_mirror_and_scale():
    rng = np.random.default_rng(1)
    first = rng.normal(size=(50, 2))
    turn = np.array([[0.6, -0.8], [0.8, 0.6]]) @ np.diag([1, -1])  # a rotation and a mirror
    second = np.vstack([first[10:] @ turn * 3 + [5, -2], rng.normal(size=(7, 2))])  # 40 matched, 7 others
    m = align.Matching(np.arange(10, 50), np.arange(40), np.zeros(40, np.float32))
    moved = align.rigid_align([first, second], [m])
    np.testing.assert_allclose(moved[0], first)
    np.testing.assert_allclose(moved[1][:40], first[10:], atol=1e-9)
    assert align.pair_distances(moved[0], moved[1], m)["matched"] < 1e-6


def test_measures_on_known_layouts():
    rng = np.random.default_rng(0)
    xy = rng.random((400, 2))
    same = align.Matching(np.arange(400), np.arange(400), np.zeros(400, np.float32))
    d = align.pair_distances(xy, xy, same)
    assert d["matched"] == 0 and d["ratio"] == 0 and d["shuffled"] > 0.3
    assert align.pair_distances(xy, rng.random((400, 2)), same)["ratio"] > 0.8
    # map A: three samples in cell (0, 0) of a 10 x 10 grid; their partners in cells (0, 0), (1, 1), (2, 2) of B
    a = np.array([[0.05, 0.05], [0.02, 0.08], [0.09, 0.01]])
    b = np.array([[0.01, 0.01], [0.15, 0.15], [0.25, 0.25]])
    m = align.Matching(np.arange(3), np.arange(3), np.zeros(3, np.float32))
    cells = align.cell_agreement(a, b, m, 10)
    assert cells["ij"].tolist() == [[0, 0]] and cells["count"].tolist() == [3]
    assert cells["share"][0] == pytest.approx(2 / 3) and cells["overall"] == pytest.approx(0.6667, abs=1e-4)
    assert align.cell_agreement(a, b, m, 10, reach=0)["share"][0] == pytest.approx(1 / 3)
    x = rng.normal(size=(500, 5)).astype(np.float32)
    assert align.trustworthiness(x[:, :2], x[:, :2], sample=300, metric="euclidean") == pytest.approx(1.0)
    assert align.trustworthiness(x, x[:, :2], sample=300, metric="euclidean") < 0.95
    out = align.measures([xy, xy], {(0, 1): same}, 10)
    assert out[0]["maps"] == [0, 1] and out[0]["distance"]["ratio"] == 0 and out[0]["cells"]["overall"] == 1.0


def test_aligned_layout_of_a_cnn_and_a_vit_puts_partners_together(tiny_dataset, tmp_path):
    cnn = _collect(tiny_dataset, tmp_path / "cnn.zarr", TINY_NET, ["features.3"], positions=16)["features.3"]
    vit = _collect(tiny_dataset, tmp_path / "vit.zarr", TINY_VIT, ["blocks.1"], positions=16)["blocks.1"]
    m = _match(cnn, vit)  # 16 x 16 against 4 x 4: mapped, 16 pairs a photo
    assert len(m.a) == 256
    xs = [cnn["activation"], vit["activation"]]
    kw = {"n_neighbors": 10, "n_epochs": 100, "seed": 3}
    tied, info = align.aligned_layout(xs, [m], alignment=1.0, pull="equal", **kw)
    for c in tied:
        assert c.shape == (256, 2) and c.dtype == np.float32 and np.isfinite(c).all()
        assert c.min() >= 0 and c.max() <= 1
    assert info["matched"] == [256] and info["knn"] == ["exact", "exact"]
    close = align.pair_distances(*tied, m)["ratio"]
    assert close < 0.3, close
    # umap-learn's own pull is weighed by how much the partners' neighbourhoods overlap: across two random
    # networks they hardly do, and the maps stay apart
    assert info["neighbourhood_overlap"][0] < 0.2
    weak, _ = align.aligned_layout(xs, [m], alignment=1.0, pull="overlap", **kw)
    assert align.pair_distances(*weak, m)["ratio"] > 2 * close
    again, _ = align.aligned_layout(xs, [m], alignment=1.0, pull="equal", **kw)
    assert all(np.array_equal(p, q) for p, q in zip(tied, again))  # deterministic for a seed
