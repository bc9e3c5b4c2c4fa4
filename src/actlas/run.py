"""The run directory: paths, stage functions that read and write its artifacts, manifest, info.

Each stage function here is what a Snakemake rule and the CLI call: it reads the artifacts of
earlier stages, calls the pure core (``actlas.layout``, ``actlas.grid``, ``actlas.render``,
``actlas.atlas``) and writes its own artifacts. Layout of the directory: docs/run-directory.md.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from . import atlas as atlas_core
from . import grid as grid_core
from . import images as imgs
from . import layout as layout_core
from . import render as render_core
from . import store
from .models import load_model

# --------------------------------------------------------------------------- paths


def shard_stores(run_dir: str | Path) -> list[Path]:
    """The shard stores of a run, in shard order."""
    return sorted(Path(run_dir, "collect").glob("shard-*.zarr"))


def shard_lists(run_dir: str | Path) -> list[Path]:
    """The shard lists of a run, in shard order."""
    return sorted(Path(run_dir, "shards").glob("shard-*.txt"))


def layer_dir(run_dir: str | Path, layer: str) -> Path:
    return Path(run_dir) / layer


def grid_dir(run_dir: str | Path, layer: str, n: int) -> Path:
    return Path(run_dir) / layer / f"grid-{n}"


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=_json_default))
    tmp.replace(path)


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o).__name__)


def _save_npz(path: Path, **arrays) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")  # not matched by *.npz: readers never see half a file
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    tmp.replace(path)


# --------------------------------------------------------------------------- shards


def shards(
    images: str | list[str], run_dir: str | Path, model: str, *, shard_size: int = 1000, limit: int | None = None,
    seed: int = 0,
) -> list[Path]:
    """List the image set(s), select ``limit`` deterministically, write shard lists (only changed ones)."""
    _, spec = load_model(model)
    rows: list[tuple[str, int]] = []
    for source in [images] if isinstance(images, (str, Path)) else images:
        rows += imgs.list_images(source, spec.synsets, spec.categories)
    rows = imgs.select(sorted(set(rows)), limit, seed)
    if not rows:
        raise ValueError(f"no images found in {images}")
    n = max(1, -(-len(rows) // shard_size))
    return imgs.write_shards(rows, n, Path(run_dir) / "shards")


# --------------------------------------------------------------------------- samples


@dataclass
class Samples:
    """Everything known about the samples of one layer, merged across shards (rows in shard order)."""

    activation: np.ndarray  # (n, C) float16
    attr_class: np.ndarray  # (n, k)
    attr_value: np.ndarray  # (n, k)
    image: np.ndarray  # (n,) global image index
    position: np.ndarray  # (n, 2)
    spatial: tuple[int, int]
    paths: list[str]  # per image
    label: np.ndarray  # per image
    pred: np.ndarray  # per image (n_img, 5)
    prob: np.ndarray
    size: np.ndarray  # per image (n_img, 2)


def check_stores(stores: list[Path], layer: str) -> None:
    """Refuse to mix shard stores collected differently, or lacking ``layer``.

    Every store must carry the same parameters (model, layers, positions, attribution, seed) and
    format version; only the image count and the commit chunk may differ. Raises ``StoreError``
    naming the stores and the parameters that differ.
    """
    first, first_params = None, None
    for st in stores:
        attrs = store.shard_attrs(st)
        params = {k: v for k, v in attrs.get("params", {}).items() if k not in ("images", "chunk")}
        params["format"] = attrs.get("format")
        if first is None:
            first, first_params = st, params
        elif params != first_params:
            keys = sorted(k for k in params.keys() | first_params.keys() if params.get(k) != first_params.get(k))
            raise store.StoreError(
                f"{st} and {first} were collected with different {', '.join(keys)} (another model, "
                "version or settings): a run directory holds one collect; delete its collect/ folder "
                "and collect again, or use another run directory"
            )
        if layer not in params.get("layers", []):
            raise store.StoreError(
                f"layer {layer!r} was not collected in {st} (collected: {params.get('layers')}); "
                "add it to the run's layers and collect again"
            )


def load_samples(run_dir: str | Path, layer: str, columns=("activation", "attr_class", "attr_value")) -> Samples:
    """Read one layer's samples from every shard store of a run."""
    stores = shard_stores(run_dir)
    if not stores:
        raise FileNotFoundError(f"no shard stores in {run_dir}/collect: run collect first")
    check_stores(stores, layer)
    paths: list[str] = []
    image_parts = []
    offset = 0
    for st in stores:
        image_parts.append(store.read([st], f"{layer}/image").astype(np.int64) + offset)
        rows = imgs.read_shard(Path(run_dir) / "shards" / f"{st.stem}.txt")
        paths += [p for p, _ in rows]
        offset += len(rows)
    import zarr

    group = zarr.open_group(str(stores[0]), mode="r")
    if layer not in group:
        raise KeyError(f"layer {layer!r} was not collected; collected: {group.attrs['params']['layers']}")
    read = {c: store.read(stores, f"{layer}/{c}") for c in columns}
    return Samples(
        activation=read.get("activation"),
        attr_class=read.get("attr_class"),
        attr_value=read.get("attr_value"),
        image=np.concatenate(image_parts),
        position=store.read(stores, f"{layer}/position"),
        spatial=tuple(group[layer].attrs["spatial"]),
        paths=paths,
        label=store.read(stores, "images/label"),
        pred=store.read(stores, "images/pred"),
        prob=store.read(stores, "images/prob"),
        size=store.read(stores, "images/size"),
    )


# --------------------------------------------------------------------------- stages


def layout(
    run_dir: str | Path, layer: str, *, n_neighbors: int = 20, min_dist: float = 0.01, metric: str = "cosine",
    pca: int = 0, whiten: bool = False, whitening_eps: float = 1.0, seed: int = 0, backend: str = "auto",
) -> Path:
    """Lay out one layer's activations with UMAP -> ``RUN/LAYER/coords.npy`` (+ whiten.npy, layout.json)."""
    start = time.perf_counter()
    stores = shard_stores(run_dir)
    if not stores:
        raise FileNotFoundError(f"no shard stores in {run_dir}/collect: run collect first")
    check_stores(stores, layer)
    acts = store.read_dask(stores, f"{layer}/activation")
    mean, cov = layout_core.moments(acts)
    x = np.asarray(acts.compute(), dtype=np.float32)
    coords, info = layout_core.layout(
        x, n_neighbors=n_neighbors, min_dist=min_dist, metric=metric, pca_components=pca, whiten=whiten,
        seed=seed, backend=backend,
    )
    out = layer_dir(run_dir, layer)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "whiten.npy", layout_core.whitening(cov, whitening_eps))
    np.save(out / "coords.npy", coords)
    info.update(
        samples=len(x), channels=x.shape[1], n_neighbors=n_neighbors, min_dist=min_dist, metric=metric, pca=pca,
        whiten=whiten, whitening_eps=whitening_eps, seed=seed, total_seconds=round(time.perf_counter() - start, 2),
    )
    _write_json(out / "layout.json", info)
    return out / "coords.npy"


def grid(run_dir: str | Path, layer: str, n: int, *, min_count: int = 3) -> Path:
    """Bin a layer's layout into an n x n grid -> ``RUN/LAYER/grid-N/cells.npz``."""
    samples = load_samples(run_dir, layer)
    coords = np.load(layer_dir(run_dir, layer) / "coords.npy")
    if len(coords) != len(samples.activation):
        raise store.StoreError(
            f"{layer_dir(run_dir, layer) / 'coords.npy'} has {len(coords)} rows but the shard stores hold "
            f"{len(samples.activation)} samples of {layer}: the layout is from another collect; run layout again"
        )
    n_classes = int(max(samples.attr_class.max() + 1, samples.pred.max() + 1))
    cells = grid_core.grid(
        coords, samples.activation, samples.attr_class, samples.attr_value, n, min_count=min_count,
        n_classes=n_classes,
    )
    path = grid_dir(run_dir, layer, n) / "cells.npz"
    _save_npz(path, **cells, n=np.int64(n), min_count=np.int64(min_count))
    return path


def n_render_batches(cells_path: str | Path, cells_per_job: int) -> int:
    """How many render jobs a grid needs."""
    with np.load(cells_path) as cells:
        return max(1, -(-len(cells["count"]) // cells_per_job))


def render(
    run_dir: str | Path, layer: str, n: int, model: str, *, batch: int = 0, cells_per_job: int = 0,
    params: render_core.RenderParams | None = None, device: str = "auto", threads: int | None = None,
    cache: bool = True, progress: bool = True, out_dir: str | Path | None = None,
) -> Path:
    """Render the icons of one batch of cells (all cells when ``cells_per_job`` is 0).

    Writes ``RUN/LAYER/grid-N/icons/batch-BBBBB.npz``. Icons already in ``RUN/cache/icons`` (same
    direction, whitening, model, layer and parameters) are reused, never rendered twice.
    """
    import torch

    from .collect import resolve_device

    if threads:
        torch.set_num_threads(threads)
    params = params or render_core.RenderParams()
    gdir = Path(out_dir) if out_dir else grid_dir(run_dir, layer, n)
    with np.load(gdir / "cells.npz") as f:
        directions = f["direction"]
    lo = batch * cells_per_job if cells_per_job else 0
    hi = min(lo + cells_per_job, len(directions)) if cells_per_job else len(directions)
    index = np.arange(lo, hi)
    whitening = np.load(layer_dir(run_dir, layer) / "whiten.npy")
    net, spec = load_model(model)
    dev = resolve_device(device)
    net.to(dev)
    if dev.type == "cuda":
        net.to(memory_format=torch.channels_last)
    cache_dir = Path(run_dir) / "cache" / "icons"
    wdigest = render_core.array_digest(whitening)
    keys = [render_core.icon_key(directions[i], wdigest, spec.source, layer, params) for i in index]
    found = {k: cache_dir / f"{k}.npz" for k in keys if cache and (cache_dir / f"{k}.npz").exists()}
    todo = [r for r, k in enumerate(keys) if k not in found]
    icon = np.zeros((len(index), params.size, params.size, 3), dtype=np.uint8)
    objective = np.zeros(len(index), dtype=np.float32)
    faith = np.zeros(len(index), dtype=np.float32)
    for r, k in enumerate(keys):
        if k in found:
            with np.load(found[k]) as c:
                icon[r], objective[r], faith[r] = c["icon"], c["objective"], c["faithfulness"]
    seconds = 0.0
    for lo_t in range(0, len(todo), params.batch_size):  # commit to the cache one batch at a time
        part = todo[lo_t : lo_t + params.batch_size]
        out = render_core.render(net, spec, layer, directions[index[part]], whitening=whitening, params=params,
                                 device=dev, progress=progress)
        seconds += float(out["seconds"])
        for j, r in enumerate(part):
            icon[r], objective[r], faith[r] = out["icon"][j], out["objective"][j], out["faithfulness"][j]
            if cache:
                _save_npz(cache_dir / f"{keys[r]}.npz", icon=out["icon"][j], objective=out["objective"][j],
                          faithfulness=out["faithfulness"][j])
    path = gdir / "icons" / f"batch-{batch:05d}.npz"
    _save_npz(path, cell=index, icon=icon, objective=objective, faithfulness=faith,
              rendered=np.int64(len(todo)), seconds=np.float64(seconds), params=json.dumps(params.to_json()))
    return path


def atlas(
    run_dir: str | Path, layer: str, n: int, model: str, *, density: bool = True, n_examples: int = 6,
    example_extent: float = 0.3, out_dir: str | Path | None = None,
) -> Path:
    """Compose a grid's icons -> atlas.png, atlas-labelled.png, icons/, examples/ and atlas.json.

    ``out_dir`` (default ``RUN/LAYER/grid-N``) holds cells.npz and icons/ (class atlases use their own).
    """
    gdir = Path(out_dir) if out_dir else grid_dir(run_dir, layer, n)
    cells = dict(np.load(gdir / "cells.npz"))
    k = len(cells["count"])
    batches = sorted((gdir / "icons").glob("batch-*.npz"))
    icon = faith = None
    for b in batches:
        with np.load(b) as f:
            if icon is None:
                size = f["icon"].shape[1]
                icon = np.zeros((k, size, size, 3), dtype=np.uint8)
                faith = np.full(k, np.nan, dtype=np.float32)
            icon[f["cell"]] = f["icon"]
            faith[f["cell"]] = f["faithfulness"]
    if icon is None or np.isnan(faith).any():
        raise FileNotFoundError(f"icons missing for some cells of {gdir}: run render for every batch first")
    _, spec = load_model(model)
    size = icon.shape[1]
    ij = cells["ij"]
    scale = atlas_core.density_scale(cells["count"]) if density else None
    image = atlas_core.compose(icon, ij, n, scale=scale)
    names = [spec.short_name(int(c)) for c in cells["label"]]
    Image.fromarray(image).save(gdir / "atlas.png", optimize=False)
    Image.fromarray(atlas_core.draw_labels(image, ij, names, size)).save(gdir / "atlas-labelled.png")
    (gdir / "icons").mkdir(exist_ok=True)
    samples = load_samples(run_dir, layer)
    (gdir / "examples").mkdir(exist_ok=True)
    records = []
    for c in range(k):
        i, j = int(ij[c, 0]), int(ij[c, 1])
        Image.fromarray(icon[c]).save(gdir / "icons" / f"{i}_{j}.png")
        att = cells["attribution"][c]
        top = np.argsort(-att)[:5]
        nonzero = np.flatnonzero(att)
        rows = grid_core.members(cells, c)
        pick, sim = atlas_core.nearest_members(cells["direction"][c], samples.activation[rows], n_examples)
        examples = []
        for e, (row, s) in enumerate(zip(rows[pick], sim)):
            img_i = int(samples.image[row])
            decoded, _ = imgs.decode(samples.paths[img_i])
            if decoded is None:
                continue
            box = spec.source_box((decoded.height, decoded.width), tuple(samples.position[row]), samples.spatial,
                                  example_extent)
            crop = decoded.crop(box).resize((96, 96), Image.Resampling.LANCZOS)
            name = f"examples/{i}_{j}_{e}.jpg"
            crop.save(gdir / name, quality=88)
            label = int(samples.label[img_i])
            examples.append({
                "src": name, "label": spec.short_name(label) if label >= 0 else None,
                "pred": spec.short_name(int(samples.pred[img_i, 0])), "prob": round(float(samples.prob[img_i, 0]), 4),
                "similarity": round(float(s), 4),
            })
        records.append({
            "i": i, "j": j, "count": int(cells["count"][c]), "label": names[c], "label_index": int(cells["label"][c]),
            "top": [[spec.short_name(int(t)), round(float(att[t]), 5)] for t in top],
            "attribution": {str(int(t)): round(float(att[t]), 5) for t in nonzero},
            "faithfulness": round(float(faith[c]), 4), "icon": f"icons/{i}_{j}.png", "examples": examples,
        })
    agreement = label_agreement(cells, samples)
    meta = {
        "label_agreement": round(agreement, 4),
        "layer": layer, "grid": n, "icon_size": size, "image": "atlas.png", "labelled": "atlas-labelled.png",
        "size_px": [n * size, n * size], "classes": [spec.short_name(c) for c in range(len(spec.categories))],
        "faithfulness_median": round(float(np.median(faith)), 4), "cells": records,
    }
    _write_json(gdir / "atlas.json", meta)
    return gdir / "atlas.png"


def label_agreement(cells: dict, samples: Samples) -> float:
    """Fraction of cells whose label equals the most common top-1 prediction of their samples' images."""
    top1 = samples.pred[samples.image, 0]
    hits = 0
    for c in range(len(cells["count"])):
        preds = top1[grid_core.members(cells, c)]
        hits += int(np.bincount(preds[preds >= 0]).argmax() == cells["label"][c]) if (preds >= 0).any() else 0
    return hits / max(len(cells["count"]), 1)


# --------------------------------------------------------------------------- manifest and info


def versions() -> dict:
    """Versions of the software that produced a run."""
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("actlas", "torch", "torchvision", "numpy", "zarr", "umap-learn", "snakemake"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def manifest(run_dir: str | Path, config: dict) -> Path:
    """Gather every stage's record into ``RUN/manifest.json`` (read by ``actlas info`` and the viewer)."""
    run_dir = Path(run_dir)
    collect = []
    for st in shard_stores(run_dir):
        attrs = store.shard_attrs(st)
        collect.append({"store": st.name, **attrs.get("summary", {})})
    layers = {}
    for layer in config["layers"]:
        ldir = layer_dir(run_dir, layer)
        entry: dict = {}
        if (ldir / "layout.json").exists():
            entry["layout"] = json.loads((ldir / "layout.json").read_text())
        grids = {}
        for n in config["grid"]["sizes"]:
            gdir = grid_dir(run_dir, layer, n)
            if not (gdir / "atlas.json").exists():
                continue
            meta = json.loads((gdir / "atlas.json").read_text())
            faith = [c["faithfulness"] for c in meta["cells"]]
            render_seconds, rendered = 0.0, 0
            for b in sorted((gdir / "icons").glob("batch-*.npz")):
                with np.load(b) as f:
                    render_seconds += float(f["seconds"])
                    rendered += int(f["rendered"])
            grids[str(n)] = {
                "cells": len(meta["cells"]), "icons_rendered": rendered, "render_seconds": round(render_seconds, 1),
                "faithfulness": {q: round(float(np.percentile(faith, p)), 4) for q, p in
                                 (("p10", 10), ("median", 50), ("p90", 90))},
                "label_agreement": meta.get("label_agreement"),
                "atlas": str(gdir / "atlas.png"), "labelled": str(gdir / "atlas-labelled.png"),
            }
        entry["grids"] = grids
        layers[layer] = entry
    data = {
        "actlas": versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": {"cpus": os.cpu_count(), "machine": platform.machine()},
        "config": config,
        "collect": {
            "shards": len(collect),
            "images": sum(c.get("images", 0) for c in collect),
            "skipped": sum(c.get("skipped", 0) for c in collect),
            "seconds": round(sum(c.get("seconds", 0) for c in collect), 1),
            "per_shard": collect,
        },
        "layers": layers,
    }
    _write_json(run_dir / "manifest.json", data)
    return run_dir / "manifest.json"


def info(run_dir: str | Path) -> dict:
    """A one-object summary of a run (what ``actlas info`` prints): model, layers, counts, atlases, timings,
    and the class atlases, comparisons and patch reports found in the run directory."""
    path = Path(run_dir) / "manifest.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: is {run_dir} a finished actlas run?")
    m = json.loads(path.read_text())  # data only, never executed
    layers = {}
    for layer, entry in m["layers"].items():
        grids = entry.get("grids", {})
        layers[layer] = {
            "samples": entry.get("layout", {}).get("samples"),
            "layout_backend": entry.get("layout", {}).get("backend"),
            "layout_seconds": entry.get("layout", {}).get("total_seconds"),
            "grid_sizes": [int(g) for g in grids],
            "icons": sum(g["cells"] for g in grids.values()),
            "faithfulness_median": {g: v["faithfulness"]["median"] for g, v in grids.items()},
            "label_agreement": {g: v.get("label_agreement") for g, v in grids.items()},
            "atlases": [v["atlas"] for v in grids.values()],
            "render_seconds": {g: v["render_seconds"] for g, v in grids.items()},
        }
    run = Path(run_dir)
    found = lambda pattern: sorted(str(q) for q in run.glob(pattern))  # noqa: E731
    return {
        "run_dir": str(run_dir),
        "model": m["config"].get("model"),
        "layers": layers,
        "class_atlases": found("*/class-*/atlas.png"),
        "comparisons": found("*/compare-*/compare.png"),
        "patch_reports": found("patches/*/report.md"),
        "images": m["collect"]["images"],
        "skipped": m["collect"]["skipped"],
        "collect_seconds": m["collect"]["seconds"],
        "versions": m["actlas"],
    }
