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


def load_samples(run_dir: str | Path, layer: str, columns=("activation", "attr_class", "attr_value")) -> Samples:
    """Read one layer's samples from the shard stores of the run's current plan."""
    names = read_index(run_dir)
    stores = [paths.shard_store(run_dir, s) for s in names]
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
