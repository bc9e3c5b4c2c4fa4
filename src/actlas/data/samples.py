"""A run's samples: one layer's rows merged across the shard stores of the current plan.

The stages that need samples (layout, whitening, grid, atlas, class atlases, comparisons, patches)
read them through :func:`load_samples` (or check the stores with :func:`check_stores`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import paths
from ..errors import MissingError, StoreError
from ..formats.shards import read_index, read_shard
from . import store


@dataclass
class Samples:
    """Everything known about the samples of one layer, merged across shards (rows in shard order).

    ``activation`` (n, C) float16; ``attr_class``/``attr_value`` (n, k); ``image`` (n,) global
    image index; ``position`` (n, 2) (y, x) in the layer grid ``spatial``; per image: ``paths``,
    ``label`` (n_img,), ``pred``/``prob`` (n_img, 5), ``size`` (n_img, 2).
    """

    activation: np.ndarray | None
    attr_class: np.ndarray | None
    attr_value: np.ndarray | None
    image: np.ndarray
    position: np.ndarray
    spatial: tuple[int, int]
    paths: list[str]
    label: np.ndarray
    pred: np.ndarray
    prob: np.ndarray
    size: np.ndarray


def check_stores(stores: list[Path], layer: str) -> None:
    """Refuse to mix shard stores collected differently, or lacking ``layer``.

    Every store must carry the same parameters (model, layers, positions, attribution, seed) and
    format version; only the image count and the commit chunk may differ. Raises ``StoreError``
    naming the stores and the parameters that differ.
    """
    if not stores:
        raise MissingError("no shard stores: run collect first")
    first, first_params = None, None
    for st in stores:
        if not Path(st).exists():
            raise MissingError(f"{st} not found: run collect for it (snakemake rebuilds it)")
        attrs = store.shard_attrs(st)
        if attrs.get("format") != store.FORMAT:
            raise StoreError(store.old_format(st, attrs.get("format")))
        params = {k: v for k, v in attrs.get("params", {}).items() if k not in ("images", "chunk")}
        params["format"] = attrs.get("format")
        if first is None:
            first, first_params = st, params
        elif params != first_params:
            keys = sorted(k for k in params.keys() | first_params.keys() if params.get(k) != first_params.get(k))
            raise StoreError(
                f"{st} and {first} were collected with different {', '.join(keys)} (another model, "
                "version or settings): a run directory holds one collect; delete its collect/ folder "
                "and collect again, or use another run directory"
            )
        if layer not in params.get("layers", []):
            raise StoreError(
                f"layer {layer!r} was not collected in {st} (collected: {params.get('layers')}); "
                "add it to the run's layers and collect again"
            )


def model_stores(run_dir: str | Path, model_name: str | None = None) -> list[Path]:
    """The shard stores of the run's current plan: its model's (``RUN/collect/``), or those another model
    collected over the same shard lists for an alignment (``RUN/models/NAME/collect/``, ``model_name``)."""
    root = paths.model_root(run_dir, model_name)
    return [paths.shard_store(root, s) for s in read_index(run_dir)]


def load_samples(
    run_dir: str | Path,
    layer: str,
    columns=("activation", "attr_class", "attr_value"),
    *,
    model_name: str | None = None,
) -> Samples:
    """Read one layer's samples from the shard stores of the run's current plan (of another model's
    stores over the same shard lists with ``model_name``, :func:`model_stores`)."""
    names = read_index(run_dir)
    stores = model_stores(run_dir, model_name)
    check_stores(stores, layer)
    all_paths: list[str] = []
    image_parts = []
    offset = 0
    for name, st in zip(names, stores):
        image_parts.append(store.read([st], f"{layer}/image").astype(np.int64) + offset)
        rows = read_shard(paths.shard_list(run_dir, name))
        all_paths += [p for p, _ in rows]
        offset += len(rows)
    read = {c: store.read(stores, f"{layer}/{c}") for c in columns}
    return Samples(
        activation=read.get("activation"),
        attr_class=read.get("attr_class"),
        attr_value=read.get("attr_value"),
        image=np.concatenate(image_parts),
        position=store.read(stores, f"{layer}/position"),
        spatial=tuple(store.layer_attrs(stores[0], layer)["spatial"]),
        paths=all_paths,
        label=store.read(stores, "images/label"),
        pred=store.read(stores, "images/pred"),
        prob=store.read(stores, "images/prob"),
        size=store.read(stores, "images/size"),
    )


def load_photo_means(run_dir: str | Path, layer: str, *, model_name: str | None = None) -> Samples:
    """One point per photo: each decoded photo's mean activation over every position of ``layer`` and its mean
    attribution to the photo's top classes (collect's ``images/mean/LAYER``, ``images/mean_attr/LAYER``), as
    ``Samples`` on a 1 x 1 grid: ``activation`` (p, C) float32, ``attr_class``/``attr_value`` (p, k),
    ``image`` (p,) the photo's index in the run's plan (ascending), ``position`` (p, 2) zeros; the per-image
    arrays as :func:`load_samples`'. ``model_name``: another model's stores (:func:`model_stores`)."""
    names = read_index(run_dir)
    stores = model_stores(run_dir, model_name)
    check_stores(stores, layer)
    all_paths = [p for name in names for p, _ in read_shard(paths.shard_list(run_dir, name))]
    ok = store.read(stores, "images/ok").astype(bool)
    image = np.flatnonzero(ok).astype(np.int64)
    return Samples(
        activation=np.asarray(store.read(stores, store.photo_mean(layer))[ok], np.float32),
        attr_class=store.read(stores, "images/attr_class")[ok],
        attr_value=store.read(stores, store.photo_attr(layer))[ok],
        image=image,
        position=np.zeros((len(image), 2), np.int16),
        spatial=(1, 1),
        paths=all_paths,
        label=store.read(stores, "images/label"),
        pred=store.read(stores, "images/pred"),
        prob=store.read(stores, "images/prob"),
        size=store.read(stores, "images/size"),
    )
