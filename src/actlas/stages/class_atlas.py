"""class_atlas: the class atlas of one class -> ``LAYER/class-<slug>/``.

The samples that support the class are laid out afresh (t-SNE by default), gridded, rendered
and composed like the main atlas; the folder holds the main atlas's files plus ``rows.npy``
and ``coords.npy``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from .. import classes as classes_core
from .. import grid as grid_core
from .. import paths
from ..data.samples import Samples, load_samples
from ..errors import DataError
from ..formats.atomic import save_npy
from ..formats.cells import write_cells
from ..models.heads import require_logits
from ..models.load import load_spec
from ..models.spec import ModelSpec
from ..settings import ClassAtlas, Render, RenderParams, Run
from ..text import slug
from .atlas import atlas_folder
from .render import render_folder


def sample_keys(samples: Samples) -> np.ndarray:
    """(n,) int64: one key per (image, position), to drop duplicate samples."""
    return samples.image * 65536 + samples.position[:, 0].astype(np.int64) * 256 + samples.position[:, 1]


def build_folder(
    out: Path,
    run_dir: str | Path,
    layer: str,
    model,
    spec: ModelSpec,
    samples: Samples,
    rows: np.ndarray,
    coords: np.ndarray,
    n: int,
    *,
    min_count: int,
    params: RenderParams | None,
    device: str,
    threads: int | None,
    n_examples: int,
    extra: dict,
    progress: bool,
) -> Path:
    """Grid the kept ``rows`` at ``coords`` (M, 2), render and compose them into ``out`` like the main atlas;
    atlas.json gets ``extra`` and the counts of the images and samples kept."""
    n_classes = max(len(spec.categories), int(samples.attr_class.max()) + 1)
    extra = {**extra, "images": int(len(np.unique(samples.image[rows]))), "samples": int(len(rows))}
    cells = grid_core.grid(
        coords,
        samples.activation[rows],
        samples.attr_class[rows],
        samples.attr_value[rows],
        n,
        min_count=min_count,
        n_classes=n_classes,
    )
    cells = dataclasses.replace(cells, order=rows[cells.order])  # rows of the whole layer, as a main atlas's
    write_cells(paths.cells(out), cells)
    save_npy(paths.rows(out), rows)
    save_npy(paths.folder_coords(out), coords)
    render_folder(
        out, run_dir, layer, model, cells_per_job=0, params=params, device=device, threads=threads, progress=progress
    )
    return atlas_folder(
        out,
        run_dir,
        layer,
        model,
        cells_per_job=0,
        n_examples=n_examples,
        samples=samples,
        extra=extra,
    )


def class_atlas(
    run_dir: str | Path,
    layer: str,
    cls: str | int,
    model,
    *,
    filter: str = ClassAtlas.filter,
    top: int = ClassAtlas.top,
    grid: int = ClassAtlas.grid,
    method: str = ClassAtlas.method,
    min_count: int = ClassAtlas.min_count,
    n_examples: int = ClassAtlas.n_examples,
    seed: int = Run.seed,
    params: RenderParams | None = None,
    device: str = Run.device,
    threads: int | None = Render.threads,
    progress: bool = False,
    out: str | Path | None = None,
) -> Path:
    """Class atlas of ``cls`` -> ``LAYER/class-<slug>/atlas.json`` (+ atlas.png, labelled, icons, examples)."""
    spec = load_spec(model)
    require_logits(spec, "a class atlas")
    c = spec.class_index(str(cls))
    name = spec.short_name(c)
    samples = load_samples(run_dir, layer)
    rows = classes_core.select_samples(
        samples.attr_class, samples.attr_value, c, filter=filter, top=top, keys=sample_keys(samples)
    )
    if len(rows) < 2:
        raise DataError(
            f"only {len(rows)} samples support {name!r} with filter {filter!r}: try filter top, or "
            "collect more images or positions (collect.positions)"
        )
    coords = classes_core.embed(samples.activation[rows], 2, method=method, seed=seed)
    extra = {
        "kind": "class",
        "class": name,
        "class_index": c,
        "filter": filter,
        "top": top,
        "method": method,
    }
    folder = Path(out) if out else paths.class_dir(run_dir, layer, slug(name))
    return build_folder(
        folder,
        run_dir,
        layer,
        model,
        spec,
        samples,
        rows,
        coords,
        grid,
        min_count=min_count,
        params=params,
        device=device,
        threads=threads,
        n_examples=n_examples,
        extra=extra,
        progress=progress,
    )
