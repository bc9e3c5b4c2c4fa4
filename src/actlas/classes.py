"""classes: class activation atlases and two-class comparisons.

A **class atlas** keeps the samples that support one class (their attribution to it wins among
the classes stored for them: ``winner``; and/or the top-N by attribution to it: ``top``), lays
them out afresh (t-SNE by default, which the article found better for sparse class data, or
UMAP), bins them into a grid and renders every cell like the main atlas. Written to
``RUN/LAYER/class-<slug>/`` with the main atlas's files and ``atlas.json`` format.

A **comparison** of classes A and B puts the samples of either on a plane whose x axis is the
attribution to A minus the attribution to B (B on the left, A on the right) and whose y axis is
a 1-D layout of the activations. Written to ``RUN/LAYER/compare-<a>-<b>/``.

Attribution to a class not among a sample's stored classes (the top-k predicted of its image)
counts as 0.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .patches import _run_config, class_index, default_layer, default_model, slug

FILTERS = ("winner", "top", "both")
METHODS = ("tsne", "umap")

# --------------------------------------------------------------------------- pure pieces


def class_attribution(attr_class: np.ndarray, attr_value: np.ndarray, c: int) -> tuple[np.ndarray, np.ndarray]:
    """Each sample's attribution to class ``c``.

    attr_class, attr_value : (n, k) stored classes and their attribution values
    Returns (value (n,) float32, 0 where not stored; stored (n,) bool).
    """
    hit = attr_class == c
    stored = hit.any(1)
    value = np.where(hit, attr_value, 0.0).sum(1).astype(np.float32)
    return value, stored


def winners(attr_class: np.ndarray, attr_value: np.ndarray, c: int) -> np.ndarray:
    """(n,) bool: class ``c`` is stored for the sample, its attribution is positive and the largest stored.

    (A sample whose every stored attribution is negative supports no class: such cells would be
    labelled with an arbitrary class of zero mean attribution.)"""
    value, stored = class_attribution(attr_class, attr_value, c)
    best = np.where(attr_class >= 0, attr_value, -np.inf).max(1)
    return stored & (value >= best) & (value > 0)


def dedupe(rows: np.ndarray, keys: np.ndarray | None) -> np.ndarray:
    """Sorted unique rows, keeping one row per key (keys (n_total,), e.g. image and position)."""
    rows = np.unique(np.asarray(rows, dtype=np.int64))
    if keys is None or not len(rows):
        return rows
    _, first = np.unique(keys[rows], return_index=True)
    return np.sort(rows[first])


def select_samples(
    attr_class: np.ndarray, attr_value: np.ndarray, c: int, *, filter: str = "winner", top: int = 2000,
    keys: np.ndarray | None = None,
) -> np.ndarray:
    """Rows of the samples a class atlas keeps, sorted, without duplicates.

    - ``winner``: samples whose attribution to ``c`` wins among their stored classes (the ``top``
      highest by attribution to ``c`` when there are more);
    - ``top``: the ``top`` samples with the highest attribution to ``c`` among those storing it;
    - ``both``: the union of the two.

    keys : (n,) optional identity of a sample (one row kept per key).
    """
    if filter not in FILTERS:
        raise ValueError(f"unknown filter {filter!r}; use one of {', '.join(FILTERS)}")
    value, stored = class_attribution(attr_class, attr_value, c)
    parts = []
    if filter in ("winner", "both"):
        rows = np.flatnonzero(winners(attr_class, attr_value, c))
        parts.append(rows[np.argsort(-value[rows], kind="stable")[:top]])
    if filter in ("top", "both"):
        rows = np.flatnonzero(stored)
        parts.append(rows[np.argsort(-value[rows], kind="stable")[:top]])
    return dedupe(np.concatenate(parts), keys)


def embed(x: np.ndarray, n_components: int = 2, *, method: str = "tsne", seed: int = 0,
          perplexity: float = 30.0) -> np.ndarray:
    """Lay out rows of x (n, C) -> (n, n_components) in [0, 1] per axis (t-SNE or UMAP).

    t-SNE runs on the first 50 principal components, with perplexity capped at (n - 1) / 3;
    fewer than 4 samples get evenly spaced positions.
    """
    if method not in METHODS:
        raise ValueError(f"unknown layout method {method!r}; use tsne or umap")
    from .layout import normalize_coords

    x = np.asarray(x, dtype=np.float32)
    n = len(x)
    if n < 1:
        raise ValueError("a class atlas or comparison needs at least 1 sample to lay out, got 0: try --filter top "
                         "or a larger --top, or collect more images or positions (collect.positions)")
    if n < 4:
        return np.repeat(np.linspace(0, 1, max(n, 1))[:n, None], n_components, 1).astype(np.float32)
    if method == "tsne":
        from sklearn.decomposition import PCA
        from sklearn.manifold import TSNE

        if x.shape[1] > 50 and n > 50:
            x = PCA(50, random_state=seed).fit_transform(x)
        xy = TSNE(n_components, perplexity=float(min(perplexity, (n - 1) / 3)), init="pca", random_state=seed,
                  metric="cosine").fit_transform(x)
    else:
        from .layout import numba_cache_dir

        numba_cache_dir()
        import umap as umap_learn

        xy = umap_learn.UMAP(n_components=n_components, n_neighbors=int(min(15, n - 1)), min_dist=0.05,
                             metric="cosine", random_state=seed).fit_transform(x)
    return normalize_coords(np.asarray(xy, dtype=np.float64), clip=0.0)


def comparison_coords(attr_a: np.ndarray, attr_b: np.ndarray, y: np.ndarray, *, clip: float = 99.0) -> np.ndarray:
    """Plane of a two-class comparison -> (n, 2) in [0, 1].

    x = 0.5 + 0.5 * (attr_a - attr_b) / s, with s the ``clip`` percentile of |attr_a - attr_b|
    (clipped), so 0.5 is "no preference", A is to the right and B to the left; y (n,) is
    rescaled to [0, 1].
    """
    d = np.asarray(attr_a, dtype=np.float64) - np.asarray(attr_b, dtype=np.float64)
    scale = max(float(np.percentile(np.abs(d), clip)) if len(d) else 1.0, 1e-12)
    x = np.clip(0.5 + 0.5 * d / scale, 0.0, 1.0)
    y = np.asarray(y, dtype=np.float64).ravel()
    span = y.max() - y.min() if len(y) else 0.0
    y = (y - y.min()) / span if span > 0 else np.full_like(y, 0.5)
    return np.stack([x, y], 1).astype(np.float32)


# --------------------------------------------------------------------------- stages


def class_dir(run_dir: str | Path, layer: str, name: str) -> Path:
    """``RUN/LAYER/class-<slug>`` (or any other sub-folder name given as ``name``)."""
    return Path(run_dir) / layer / name


def run_render_params(run_dir: str | Path, seed: int | None = None, **given):
    """Render settings: those ``given`` (not None), else the run's own (the manifest's config), so a
    class atlas looks like the run's main atlas."""
    from .render import RenderParams

    keys = RenderParams().to_json().keys()
    cfg = _run_config(run_dir)
    merged = {k: v for k, v in cfg.get("render", {}).items() if k in keys}
    merged.update({k: v for k, v in given.items() if v is not None and k in keys})
    merged["seed"] = seed if seed is not None else cfg.get("seed", 0)
    return RenderParams(**merged)


def _build(run_dir, layer: str, model: str, samples, rows: np.ndarray, coords: np.ndarray, n: int, out: Path, *,
           min_count: int, params, device: str, threads: int | None, n_examples: int, extra: dict,
           progress: bool) -> Path:
    """Grid the kept samples, render and compose them into ``out`` like the main atlas."""
    from . import run as run_mod
    from .grid import grid as grid_cells
    from .models import load_model

    _, spec = load_model(model)
    n_classes = max(len(spec.categories), int(samples.attr_class.max()) + 1)
    cells = grid_cells(coords, samples.activation[rows], samples.attr_class[rows], samples.attr_value[rows], n,
                           min_count=min_count, n_classes=n_classes)
    cells["order"] = rows[cells["order"]]  # rows of the whole layer, as the main atlas's cells hold
    out.mkdir(parents=True, exist_ok=True)
    for stale in (out / "icons").glob("batch-*.npz"):
        stale.unlink()
    run_mod._save_npz(out / "cells.npz", **cells, n=np.int64(n), min_count=np.int64(min_count))
    np.save(out / "rows.npy", rows)
    np.save(out / "coords.npy", coords)
    run_mod.render(run_dir, layer, n, model, params=params or run_render_params(run_dir), device=device,
                   threads=threads, progress=progress, out_dir=out)
    run_mod.atlas(run_dir, layer, n, model, n_examples=n_examples, out_dir=out)
    meta = json.loads((out / "atlas.json").read_text())
    meta.update(extra, samples=int(len(rows)))
    run_mod._write_json(out / "atlas.json", meta)
    return out / "atlas.json"


def class_atlas(
    run_dir: str | Path, layer: str, cls: str, model: str, *, filter: str = "winner", top: int = 2000, n: int = 8,
    method: str = "tsne", min_count: int = 1, seed: int = 0, params=None, device: str = "auto",
    threads: int | None = None, n_examples: int = 4, progress: bool = False, out_dir: str | Path | None = None,
) -> Path:
    """Class atlas of ``cls`` -> ``RUN/LAYER/class-<slug>/atlas.json`` (+ atlas.png, labelled, icons, examples)."""
    from .models import load_model
    from .run import load_samples

    _, spec = load_model(model)
    c = class_index(spec, cls)
    name = spec.short_name(c)
    samples = load_samples(run_dir, layer)
    keys = samples.image * 65536 + samples.position[:, 0].astype(np.int64) * 256 + samples.position[:, 1]
    rows = select_samples(samples.attr_class, samples.attr_value, c, filter=filter, top=top, keys=keys)
    if len(rows) < 2:
        raise ValueError(f"only {len(rows)} samples support {name!r} with filter {filter!r}: try --filter top, or "
                         "collect more images or positions")
    coords = embed(samples.activation[rows], 2, method=method, seed=seed)
    extra = {"kind": "class", "class": name, "class_index": c, "filter": filter, "top": top, "method": method,
             "images": int(len(np.unique(samples.image[rows])))}
    out = Path(out_dir) if out_dir else class_dir(run_dir, layer, f"class-{slug(name)}")
    return _build(run_dir, layer, model, samples, rows, coords, n, out,
                  min_count=min_count, params=params, device=device, threads=threads, n_examples=n_examples,
                  extra=extra, progress=progress)


def compare(
    run_dir: str | Path, layer: str, a: str, b: str, model: str, *, filter: str = "top", top: int = 2000, n: int = 10,
    method: str = "tsne", min_count: int = 1, seed: int = 0, params=None, device: str = "auto",
    threads: int | None = None, n_examples: int = 4, progress: bool = False, out_dir: str | Path | None = None,
) -> Path:
    """Comparison of classes A and B -> ``RUN/LAYER/compare-<a>-<b>/atlas.json`` (+ PNGs with axes).

    Samples: those a class atlas of A or of B would keep (``filter``, ``top``). x: attribution to A
    minus attribution to B (A right); y: 1-D layout of the activations.
    """
    from .models import load_model
    from .run import load_samples

    _, spec = load_model(model)
    ca, cb = class_index(spec, a), class_index(spec, b)
    if ca == cb:
        raise ValueError(f"compare needs two different classes, got {a!r} twice")
    na, nb = spec.short_name(ca), spec.short_name(cb)
    samples = load_samples(run_dir, layer)
    keys = samples.image * 65536 + samples.position[:, 0].astype(np.int64) * 256 + samples.position[:, 1]
    rows = dedupe(np.concatenate([select_samples(samples.attr_class, samples.attr_value, c, filter=filter, top=top)
                                  for c in (ca, cb)]), keys)
    if len(rows) < 2:
        raise ValueError(f"only {len(rows)} samples support {na!r} or {nb!r}: try --filter top or collect more")
    va, _ = class_attribution(samples.attr_class[rows], samples.attr_value[rows], ca)
    vb, _ = class_attribution(samples.attr_class[rows], samples.attr_value[rows], cb)
    y = embed(samples.activation[rows], 1, method=method, seed=seed)[:, 0]
    coords = comparison_coords(va, vb, y)
    out = Path(out_dir) if out_dir else class_dir(run_dir, layer, f"compare-{slug(na)}-{slug(nb)}")
    # "pair", not "classes": atlas.json's "classes" stays the model's class list, as in every atlas
    extra = {"kind": "compare", "pair": [na, nb], "pair_indices": [ca, cb], "filter": filter, "top": top,
             "method": method, "x_axis": f"attribution to {na} minus attribution to {nb} ({nb} left, {na} right)",
             "y_axis": f"1-D {method} of the activations", "images": int(len(np.unique(samples.image[rows])))}
    path = _build(run_dir, layer, model, samples, rows, coords, n, out, min_count=min_count, params=params,
                  device=device, threads=threads, n_examples=n_examples, extra=extra, progress=progress)
    axes_png(out / "atlas-labelled.png", out / "compare.png", left=nb, right=na)
    return path


def axes_png(src: Path, dst: Path, *, left: str, right: str) -> None:
    """Copy of a comparison's labelled atlas with an axis strip below: "<- more LEFT | more RIGHT ->"."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.open(src).convert("RGB")
    strip = max(24, image.width // 40)
    canvas = Image.new("RGB", (image.width, image.height + strip), (255, 255, 255))
    canvas.paste(image, (0, 0))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=int(strip * 0.6))
    y = image.height + strip // 6
    draw.text((4, y), f"<- more {left}", fill=(0, 0, 0), font=font)
    text = f"more {right} ->"
    width = draw.textbbox((0, 0), text, font=font)[2]
    draw.text((image.width - width - 4, y), text, fill=(0, 0, 0), font=font)
    draw.line((image.width // 2, image.height, image.width // 2, image.height + strip), fill=(0, 0, 0))
    canvas.save(dst)


# --------------------------------------------------------------------------- CLI

import click  # noqa: E402

_common = [
    click.option("--layer", "-l", default=None, help="Layer (default: the run's first)."),
    click.option("--model", "-m", default=None, help="Model (default: the run's)."),
    click.option("--filter", "filter_", type=click.Choice(FILTERS), default=None,
                 help="winner: attribution to the class wins among the sample's stored classes; top: top-N by "
                      "attribution; both: the union."),
    click.option("--top", default=2000, show_default=True, help="At most this many samples per class."),
    click.option("--method", type=click.Choice(METHODS), default="tsne", show_default=True, help="Layout."),
    click.option("--min-count", default=1, show_default=True, help="Cells with fewer samples stay empty."),
    click.option("--seed", default=0, show_default=True),
    click.option("--device", default="auto", show_default=True),
    click.option("--threads", type=int, default=None),
    click.option("--out", "out_dir", type=click.Path(), default=None, help="Output folder (default under RUN/LAYER)."),
]


def _options(f):
    from .render import RenderParams

    options = list(_common)
    for name, value in RenderParams().to_json().items():
        if name != "seed":
            options.append(click.option(f"--{name.replace('_', '-')}", name, type=type(value), default=None,
                                        help=f"Render {name} (default: the run's, else {value})."))
    for option in reversed(options):
        f = option(f)
    return f


@click.command("class-atlas")
@click.argument("run_dir", type=click.Path(exists=True))
@click.option("--class", "cls", required=True, help="Class name, synset id or index.")
@click.option("--grid", "n", default=8, show_default=True, help="Cells per side.")
@_options
def class_atlas_command(run_dir, cls, n, layer, model, filter_, top, method, min_count, seed, device, threads,
                        out_dir, **render) -> None:
    """Build the class activation atlas of one class of a finished run.

    Example: actlas class-atlas runs/demo --class "great white shark" --filter winner --grid 8
    """
    path = class_atlas(run_dir, layer or default_layer(run_dir), cls, model or default_model(run_dir),
                       filter=filter_ or "winner", top=top, n=n, method=method, min_count=min_count, seed=seed,
                       params=run_render_params(run_dir, seed, **render), device=device, threads=threads, progress=True,
                       out_dir=out_dir)
    click.echo(str(path.with_name("atlas.png")))


@click.command("compare")
@click.argument("run_dir", type=click.Path(exists=True))
@click.option("--classes", nargs=2, required=True, help="Classes A and B (x = attribution to A minus B).")
@click.option("--grid", "n", default=10, show_default=True, help="Cells per side.")
@_options
def compare_command(run_dir, classes, n, layer, model, filter_, top, method, min_count, seed, device, threads,
                    out_dir, **render) -> None:
    """Compare two classes of a finished run: x = attribution to A minus B, y = a 1-D layout.

    Example: actlas compare runs/demo --classes snorkel "scuba diver"
    """
    path = compare(run_dir, layer or default_layer(run_dir), classes[0], classes[1], model or default_model(run_dir),
                   filter=filter_ or "top", top=top, n=n, method=method, min_count=min_count, seed=seed,
                   params=run_render_params(run_dir, seed, **render), device=device, threads=threads, progress=True,
                   out_dir=out_dir)
    click.echo(str(path.with_name("compare.png")))
