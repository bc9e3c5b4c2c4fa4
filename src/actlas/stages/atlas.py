"""atlas: tile a grid's icons -> atlas.png, atlas-labelled.png, icons/, examples/ and atlas.json."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from .. import atlas as atlas_core
from .. import grid as grid_core
from .. import images as imgs
from .. import paths
from ..settings import Atlas, Render
from .batches import read_icons
from .samples import Samples, load_samples


def label_agreement(cells: dict, samples: Samples) -> float:
    """Fraction of cells whose label equals the most common top-1 prediction of their samples' images."""
    top1 = samples.pred[samples.image, 0]
    hits = 0
    for c in range(len(cells["count"])):
        preds = top1[grid_core.members(cells, c)]
        hits += int(np.bincount(preds[preds >= 0]).argmax() == cells["label"][c]) if (preds >= 0).any() else 0
    return hits / max(len(cells["count"]), 1)


def atlas_folder(
    folder: str | Path,
    run_dir: str | Path,
    layer: str,
    model,
    *,
    cells_per_job: int = Render.cells_per_job,
    density: bool = Atlas.density,
    n_examples: int = Atlas.n_examples,
    example_extent: float = Atlas.example_extent,
    min_cell: int = Atlas.min_cell,
    samples: Samples | None = None,
    extra: dict | None = None,
) -> Path:
    """Compose the icons of an atlas folder (``grid-N``, ``class-*``, ``compare-*``) into its atlas files.

    Reads ``cells.npz`` and the render batches its plan makes (``cells_per_job``); writes
    ``atlas.png`` (N*S x N*S RGB), ``atlas-labelled.png``, ``icons/I_J.png``, ``examples/I_J_E.jpg``
    and ``atlas.json`` (last: its presence means the folder is complete). ``extra`` adds keys to atlas.json.
    Icons under ``min_cell`` px are shown enlarged by a whole factor, nearest neighbour (``icons/`` keep
    the rendered pixels); ``icon_size`` in atlas.json is the atlas's cell, ``render_size`` the icon's.
    """
    from ..models import load_model

    folder = Path(folder)
    cells = paths.load_npz(paths.cells(folder))
    n = int(cells["n"])
    icon, faith = read_icons(folder, cells_per_job)
    _, spec = load_model(model)
    size = icon.shape[1]
    ij = cells["ij"]
    factor = atlas_core.display_factor(size, min_cell)
    scale = atlas_core.density_scale(cells["count"]) if density else None
    image = atlas_core.compose(icon, ij, n, scale=scale, factor=factor)
    names = [spec.short_name(int(c)) for c in cells["label"]]
    paths.save_image(folder / "atlas.png", Image.fromarray(image), optimize=False)
    labelled = atlas_core.draw_labels(image, ij, names, size * factor)
    paths.save_image(folder / "atlas-labelled.png", Image.fromarray(labelled))
    samples = samples or load_samples(run_dir, layer)
    for sub in ("icons", "examples"):  # this stage's folders: nothing of an earlier plan stays in them
        shutil.rmtree(folder / sub, ignore_errors=True)
        (folder / sub).mkdir()
    records = []
    for c in range(len(cells["count"])):
        i, j = int(ij[c, 0]), int(ij[c, 1])
        paths.save_image(folder / "icons" / f"{i}_{j}.png", Image.fromarray(icon[c]))
        att = cells["attribution"][c]
        nonzero = np.flatnonzero(att)
        top = [(int(t), round(float(att[t]), 5)) for t in np.argsort(-att, kind="stable")[:5]]
        top = [(t, v) for t, v in top if v != 0]  # no class whose attribution rounds to 0.0
        rows = grid_core.members(cells, c)
        pick, sim = atlas_core.nearest_members(cells["direction"][c], samples.activation[rows], n_examples)
        examples = []
        for e, (row, s) in enumerate(zip(rows[pick], sim)):
            img_i = int(samples.image[row])
            decoded, _ = imgs.decode(samples.paths[img_i])
            if decoded is None:
                continue
            box = spec.source_box(
                (decoded.height, decoded.width), tuple(samples.position[row]), samples.spatial, example_extent
            )
            crop = decoded.crop(box).resize((96, 96), Image.Resampling.LANCZOS)
            name = f"examples/{i}_{j}_{e}.jpg"
            paths.save_image(folder / name, crop, quality=88)
            label = int(samples.label[img_i])
            examples.append(
                {
                    "src": name,
                    "label": spec.short_name(label) if label >= 0 else None,
                    "pred": spec.short_name(int(samples.pred[img_i, 0])),
                    "prob": round(float(samples.prob[img_i, 0]), 4),
                    "similarity": round(float(s), 4),
                }
            )
        records.append(
            {
                "i": i,
                "j": j,
                "count": int(cells["count"][c]),
                "label": names[c],
                "label_index": int(cells["label"][c]),
                "top": [[spec.short_name(t), v] for t, v in top],
                "attribution": {str(int(t)): round(float(att[t]), 5) for t in nonzero},
                "faithfulness": round(float(faith[c]), 4),
                "icon": f"icons/{i}_{j}.png",
                "examples": examples,
            }
        )
    meta = {
        "label_agreement": round(label_agreement(cells, samples), 4),
        "layer": layer,
        "grid": n,
        "icon_size": size * factor,
        "render_size": size,
        "display_factor": factor,
        "image": "atlas.png",
        "labelled": "atlas-labelled.png",
        "size_px": [n * size * factor, n * size * factor],
        "classes": [spec.short_name(c) for c in range(len(spec.categories))],
        "faithfulness_median": round(float(np.median(faith)), 4),
        "cells": records,
        **(extra or {}),
    }
    paths.write_json(folder / "atlas.json", meta)
    return folder / "atlas.json"


def atlas(
    run_dir: str | Path,
    layer: str,
    n: int,
    model,
    *,
    cells_per_job: int = Render.cells_per_job,
    density: bool = Atlas.density,
    n_examples: int = Atlas.n_examples,
    example_extent: float = Atlas.example_extent,
    min_cell: int = Atlas.min_cell,
) -> Path:
    """Compose a grid's icons into ``LAYER/grid-N/atlas.png``, atlas-labelled.png, icons/, examples/, atlas.json."""
    atlas_folder(
        paths.grid_dir(run_dir, layer, n),
        run_dir,
        layer,
        model,
        cells_per_job=cells_per_job,
        density=density,
        n_examples=n_examples,
        example_extent=example_extent,
        min_cell=min_cell,
    )
    return paths.grid_dir(run_dir, layer, n) / "atlas.png"
