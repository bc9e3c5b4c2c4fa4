"""A small run directory in the format of docs/run-directory.md, made from generated images.

Only the files the viewer reads are written (``LAYER/grid-N/atlas.json``, ``atlas.png``,
``atlas-labelled.png``, ``icons/``, ``examples/`` and ``manifest.json``). Server tests use it:
they test the server, not the atlas. The browser acceptance test uses the real ``small_run``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = [
    "tench",
    "goldfish",
    "great white shark",
    "tiger shark",
    "grey whale",
    "red fox",
    "ibex",
    "artichoke",
    "snorkel",
    "scuba diver",
    "tile roof",
    "baseball",
    "frying pan",
    "wok",
    "crane",
    "crane",  # ImageNet has two "crane" classes
]


def _class_field(x: np.ndarray, y: np.ndarray, n_classes: int) -> np.ndarray:
    """Smooth per-class scores at layout coords (x, y) in [0, 1]; shape (..., n_classes)."""
    centres = np.stack([(np.arange(n_classes) * 0.618) % 1, (np.arange(n_classes) * 0.381 + 0.2) % 1], axis=1)
    d2 = (x[..., None] - centres[:, 0]) ** 2 + (y[..., None] - centres[:, 1]) ** 2
    return 2.0 * np.exp(-d2 / 0.03)


def _icon(rng: np.random.Generator, colour: np.ndarray, size: int) -> np.ndarray:
    """A size x size RGB uint8 icon: a colour with stripes and noise."""
    yy, xx = np.mgrid[0:size, 0:size]
    stripes = 0.5 + 0.5 * np.sin(xx * rng.uniform(0.2, 0.6) + yy * rng.uniform(0.2, 0.6))
    img = colour[None, None, :] * (0.55 + 0.45 * stripes[..., None]) + rng.normal(0, 10, (size, size, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def _write_atlas(
    folder: Path,
    layer: str,
    n: int,
    icon_size: int,
    examples_per_cell: int,
    palette: np.ndarray,
    rng: np.random.Generator,
    extra: dict | None = None,
) -> None:
    """One atlas folder (atlas.json, atlas.png, atlas-labelled.png, icons/, examples/) of an n x n grid."""
    n_classes = len(CLASSES)
    (folder / "icons").mkdir(parents=True, exist_ok=True)
    (folder / "examples").mkdir(exist_ok=True)
    atlas = np.full((n * icon_size, n * icon_size, 3), 255, np.uint8)
    centres = (np.arange(n) + 0.5) / n
    x, y = np.meshgrid(centres, centres, indexing="xy")  # [row j, column i]
    scores = _class_field(x, y, n_classes)
    density = scores.max(axis=-1) + 0.3 * np.exp(-((x - 0.5) ** 2 + (y - 0.5) ** 2) / 0.1)
    cells = []
    for j in range(n):
        for i in range(n):
            if density[j, i] < 0.35:
                continue
            s = scores[j, i]
            order = np.argsort(-s)
            label = int(order[0])
            icon = _icon(rng, palette[label], icon_size)
            atlas[j * icon_size : (j + 1) * icon_size, i * icon_size : (i + 1) * icon_size] = icon
            Image.fromarray(icon).save(folder / "icons" / f"{i}_{j}.png")
            examples = []
            for k in range(examples_per_cell):
                crop = _icon(rng, palette[int(order[k % 2])], 48)
                Image.fromarray(crop).save(folder / "examples" / f"{i}_{j}_{k}.jpg", quality=80)
                examples.append(
                    {
                        "src": f"examples/{i}_{j}_{k}.jpg",
                        "label": CLASSES[int(order[k % 2])],
                        "pred": CLASSES[label],
                        "prob": round(float(rng.uniform(0.3, 1)), 3),
                        "similarity": round(float(rng.uniform(0.5, 1)), 3),
                    }
                )
            attribution = {str(int(c)): round(float(s[c]), 4) for c in order[:5] if s[c] > 1e-3}
            cells.append(
                {
                    "i": i,
                    "j": j,
                    "count": int(1 + 40 * density[j, i] / n * 10),
                    "label": CLASSES[label],
                    "label_index": label,
                    "top": [[CLASSES[int(c)], round(float(s[c]), 4)] for c in order[:3]],
                    "attribution": attribution,
                    "faithfulness": round(float(rng.uniform(0.4, 0.95)), 3),
                    "icon": f"icons/{i}_{j}.png",
                    "examples": examples,
                }
            )
    Image.fromarray(atlas).save(folder / "atlas.png")
    Image.fromarray(255 - atlas).save(folder / "atlas-labelled.png")
    (folder / "atlas.json").write_text(
        json.dumps(
            {
                "layer": layer,
                "grid": n,
                "icon_size": icon_size,
                "image": "atlas.png",
                "labelled": "atlas-labelled.png",
                "size_px": [n * icon_size] * 2,
                "classes": CLASSES,
                "cells": cells,
                **(extra or {}),
            }
        )
    )


def make_fake_run(
    root: Path,
    layers: tuple[str, ...] = ("features.13",),
    grids: tuple[int, ...] = (10, 20, 40),
    icon_size: int = 32,
    examples_per_cell: int = 2,
    seed: int = 0,
    extras: bool = False,
) -> Path:
    """Write a run directory at ``root`` with one atlas per (layer, grid); returns ``root``.

    Occupied cells are where a smooth blob density is high, so grids of one layer agree;
    each cell's label is the class with the largest smooth score at its centre. With
    ``extras``, the first layer also gets an 8 x 8 class atlas (class-red-fox) and a 6 x 6
    comparison (compare-snorkel-scuba-diver) with the metadata the classes stage writes.
    """
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    palette = rng.integers(40, 230, size=(len(CLASSES), 3)).astype(float)
    for layer in layers:
        for n in grids:
            _write_atlas(root / layer / f"grid-{n}", layer, n, icon_size, examples_per_cell, palette, rng)
    if extras:
        _write_atlas(
            root / layers[0] / "class-red-fox",
            layers[0],
            8,
            icon_size,
            examples_per_cell,
            palette,
            rng,
            {
                "kind": "class",
                "class": "red fox",
                "class_index": 5,
                "filter": "winner",
                "top": 2000,
                "method": "tsne",
                "samples": 255,
                "images": 10,
            },
        )
        _write_atlas(
            root / layers[0] / "compare-snorkel-scuba-diver",
            layers[0],
            6,
            icon_size,
            examples_per_cell,
            palette,
            rng,
            {
                "kind": "compare",
                "pair": ["snorkel", "scuba diver"],
                "pair_indices": [8, 9],
                "filter": "top",
                "top": 2000,
                "method": "tsne",
                "x_axis": "attribution to snorkel minus attribution to scuba diver (scuba diver left, snorkel right)",
                "y_axis": "1-D tsne of the activations",
                "samples": 1584,
                "images": 11,
            },
        )
    (root / "manifest.json").write_text(json.dumps({"layers": list(layers), "fake": True}))
    return root


def write_patch_report(run: Path, name: str, layer: str, folder: str, cells: list[tuple[int, int]]) -> dict:
    """RUN/patches/NAME/report.json testing the icons of ``cells`` of LAYER/FOLDER (the stage's format,
    numbers from actlas.patches.stats.rate), with its two figures."""
    import numpy as np
    from PIL import Image

    from actlas.patches.stats import beats_controls, rate, vs_controls

    def pop(k: int, n: int) -> dict:
        hits = np.arange(n) < k
        return {"n": n, "static": rate(hits), "dynamic": rate(np.arange(n) < min(n, 2 * k))}

    out = run / "patches" / name
    out.mkdir(parents=True)
    entries = []
    for i, j in cells:
        e = {
            "name": f"{folder}:{i},{j}",
            "spec": f"cell:{folder}:{i},{j}",
            "patch_png": f"patch-{folder}-{i}-{j}.png",
            "discovered": True,
            "populations": {
                "source_correct": {"patch": pop(300, 700), "noise": pop(7, 700), "random_image": pop(35, 700)}
            },
        }
        e["beats_controls"] = {"source_correct": beats_controls(e, "source_correct")}
        e["vs_controls"] = {"source_correct": vs_controls(e, "source_correct")}
        entries.append(e)
    figures = ["bars.png"] + [f"examples-{folder}-{i}-{j}.png" for i, j in cells]
    for f in figures:
        Image.fromarray(np.full((20, 30, 3), 128, np.uint8)).save(out / f)
    report = {"source": "snorkel", "target": "red fox", "layer": layer, "patches": entries, "figures": figures}
    (out / "report.json").write_text(json.dumps(report))
    (out / "report.md").write_text("# Patch experiment\n")
    return report
