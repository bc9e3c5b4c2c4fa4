"""Class atlases and comparisons: sample filters, comparison axes with a known answer, a tiny end-to-end run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import TINY

from actlas.classes import (
    class_attribution,
    comparison_coords,
    dedupe,
    embed,
    select_samples,
    winners,
)
from actlas.collect import attribute
from actlas.formats.cells import read_cells
from actlas.models.spec import ModelSpec

CLS = np.array([[2, 1, 0], [1, 2, 0], [2, 0, 1], [0, 1, 3], [1, 3, 2], [3, 0, 1]])
VAL = np.array([[5.0, 1.0, 0.0], [4.0, 3.0, 0.0], [0.5, 2.0, 0.1], [9.0, 1.0, 1.0], [0.1, 0.2, 0.3], [1.0, 0.5, 0.2]])


def test_class_attribution_zero_where_not_stored():
    value, stored = class_attribution(CLS, VAL, 2)
    np.testing.assert_allclose(value, [5.0, 3.0, 0.5, 0.0, 0.3, 0.0], rtol=1e-6)
    assert stored.tolist() == [True, True, True, False, True, False]


def test_winner_filter_keeps_samples_whose_class_wins():
    assert winners(CLS, VAL, 2).tolist() == [True, False, False, False, True, False]
    negative = np.array([[-0.1, -0.5, -0.9]])  # wins, but supports nothing
    assert not winners(np.array([[2, 1, 0]]), negative, 2).any()
    assert select_samples(CLS, VAL, 2, filter="winner").tolist() == [0, 4]
    assert select_samples(CLS, VAL, 2, filter="winner", top=1).tolist() == [0]  # the best by attribution


def test_top_filter_and_union_have_no_duplicates():
    assert select_samples(CLS, VAL, 2, filter="top", top=3).tolist() == [0, 1, 2]  # 5.0, 3.0, 0.5
    both = select_samples(CLS, VAL, 2, filter="both", top=3)
    assert both.tolist() == [0, 1, 2, 4]
    assert len(np.unique(both)) == len(both)
    assert select_samples(CLS, VAL, 7, filter="both").tolist() == []
    with pytest.raises(ValueError, match="winner, top, both"):
        select_samples(CLS, VAL, 2, filter="best")


def test_dedupe_by_sample_key():
    keys = np.array([10, 10, 11, 12, 12, 13])
    assert dedupe(np.array([1, 0, 0, 3, 4]), keys).tolist() == [0, 3]
    assert select_samples(CLS, VAL, 2, filter="top", keys=np.array([7, 7, 8, 9, 8, 9])).tolist() == [0, 2]


def test_comparison_axes_known_answer_on_tiny_model(tiny_model):
    """After ``features.4`` TinyNet is a global average and a linear layer, so the attribution to
    class c at a position is exactly activation . W[c] / (H * W): the x axis must order samples by
    activation . (W[a] - W[b])."""
    spec = ModelSpec(
        name="tiny", source="tiny_models:tiny_net", input_size=(32, 32), resize=32, mean=(0, 0, 0), std=(1, 1, 1)
    )
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    _, acts, attrs, classes = attribute(tiny_model, spec, x, ["features.4"], attr_top=10)
    act = acts["features.4"].permute(0, 2, 3, 1).reshape(-1, 16).numpy()  # (4 * 16 * 16, 16)
    attr = attrs["features.4"].permute(0, 2, 3, 1).reshape(-1, 10).numpy()
    attr_class = classes.numpy().repeat(16 * 16, 0)
    a, b = 3, 7
    va, stored_a = class_attribution(attr_class, attr, a)
    vb, _ = class_attribution(attr_class, attr, b)
    assert stored_a.all()
    w = tiny_model.fc.weight.detach().numpy()
    expected = act @ (w[a] - w[b]) / (16 * 16)
    np.testing.assert_allclose(va - vb, expected, rtol=1e-4, atol=1e-7)
    y = np.arange(len(act), dtype=np.float64)
    coords = comparison_coords(va, vb, y, clip=100)
    np.testing.assert_allclose(coords[:, 0], 0.5 + 0.5 * expected / np.abs(expected).max(), atol=1e-5)
    assert coords[:, 1].min() == 0 and coords[:, 1].max() == 1
    # samples that favour A lie right of the middle, B left
    assert (coords[expected > 0, 0] > 0.5).all() and (coords[expected < 0, 0] < 0.5).all()


def test_comparison_coords_clip_and_degenerate_y():
    c = comparison_coords(np.array([0.0, 1.0, 100.0]), np.zeros(3), np.ones(3), clip=50)
    assert c[:, 0].tolist() == [0.5, 1.0, 1.0] and c[:, 1].tolist() == [0.5, 0.5, 0.5]


@pytest.mark.parametrize("method", ["tsne", "umap"])
@pytest.mark.parametrize("dims", [1, 2])
def test_embed_in_unit_square(method, dims):
    for data_seed in range(6 if dims == 1 else 1):  # a 1-D t-SNE interleaved clusters for data seeds 3 and 5
        rng = np.random.default_rng(data_seed)
        centres = np.eye(8)[:2] * 6  # two clusters in different directions (the layout uses cosine)
        x = np.concatenate([rng.normal(0, 1, (20, 8)) + centres[0], rng.normal(0, 1, (20, 8)) + centres[1]])
        x = x.astype(np.float32)
        xy = embed(x, dims, method=method, seed=0)
        assert xy.shape == (40, dims) and xy.min() >= 0 and xy.max() <= 1
        if dims == 1:  # the two clusters do not interleave on the line
            a, b = xy[:20, 0], xy[20:, 0]
            assert a.max() < b.min() or b.max() < a.min(), data_seed
    assert embed(x[:3], dims).shape == (3, dims)


def test_class_atlas_and_comparison_end_to_end(tiny_dataset, tmp_path):
    """A tiny real run (TinyNet, 16 photos, every position) -> class atlas and comparison folders."""
    from actlas.data import images
    from actlas.data.samples import load_samples
    from actlas.layout import moments, whitening
    from actlas.models.load import load_model
    from actlas.settings import RenderParams
    from actlas.stages.class_atlas import class_atlas
    from actlas.stages.collect import collect
    from actlas.stages.compare import compare
    from actlas.stages.shards import split_rows, write_plan

    model = TINY
    _, spec = load_model(model)
    run = tmp_path / "run"
    rows = images.list_images(tiny_dataset)
    write_plan(run, split_rows(rows, 1))
    collect(
        run / "shards" / "shard-00000.txt",
        run / "collect" / "shard-00000.zarr",
        model,
        ["features.4"],
        positions=6,
        attr_top=3,
        batch_size=8,
        chunk=8,
        device="cpu",
        progress=False,
    )
    s = load_samples(run, "features.4")
    (run / "features.4").mkdir()
    np.save(run / "features.4" / "whiten.npy", whitening(moments(s.activation.astype(np.float32))[1], 1.0))
    counts = np.bincount(s.attr_class[:, 0], minlength=10)
    a, b = (int(c) for c in np.argsort(-counts)[:2])
    params = RenderParams(size=16, min_positions=0, steps=2, batch_size=64)
    path = class_atlas(
        run, "features.4", str(a), model, filter="top", grid=3, params=params, device="cpu", n_examples=1
    )
    meta = json.loads(path.read_text())
    assert path.parent.name == f"class-{a}" and meta["kind"] == "class" and meta["grid"] == 3
    kept = np.load(path.parent / "rows.npy")
    value, stored = class_attribution(s.attr_class, s.attr_value, a)
    assert len(kept) == meta["samples"] == stored.sum() and stored[kept].all()
    assert sum(c["count"] for c in meta["cells"]) == len(kept)
    for c in meta["cells"]:  # a cell's top classes are the classes it attributes to, never a filler with 0
        values = [v for _, v in c["top"]]
        assert 0 not in values and values == sorted(values, reverse=True), c["top"]
    assert (path.parent / "atlas.png").exists() and all((path.parent / c["icon"]).exists() for c in meta["cells"])
    path = compare(run, "features.4", (str(a), str(b)), model, grid=4, params=params, device="cpu", n_examples=1)
    meta = json.loads(path.read_text())
    assert meta["kind"] == "compare" and meta["pair"] == [str(a), str(b)]
    assert meta["classes"] == list(spec.categories)  # the model's classes, as in every atlas.json
    cells = read_cells(path.parent / "cells.npz")
    va, _ = class_attribution(s.attr_class, s.attr_value, a)
    vb, _ = class_attribution(s.attr_class, s.attr_value, b)
    d = va - vb
    for k, (i, _) in enumerate(cells.ij):  # columns follow attribution to A minus B
        members = cells.order[cells.offsets[k] : cells.offsets[k + 1]]
        if i == 3:
            assert (d[members] > 0).all()
        if i == 0:
            assert (d[members] < 0).all()
    assert (path.parent / "compare.png").exists()


def test_unknown_class_names_the_closest(tmp_path):
    from actlas.errors import ModelError
    from actlas.models.classes import resolve_class

    with pytest.raises(ModelError, match="great white shark"):
        resolve_class("great white shrk", ("tench", "great white shark, white shark", "tiger shark"))
