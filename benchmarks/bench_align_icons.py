"""Faithfulness of an aligned atlas's icons: optimised at the centre position or on the icon's mean over positions.

An aligned atlas's cell is the mean of its photos' means over every position of the layer (edges avoided:
``actlas.collect.photo_means``), not a mean of single positions as a main atlas's cell is. This renders the
cells of one aligned map twice through the render stage's own ``render_folder`` (the run's whitening and model,
no cache, into a scratch folder): ``centre`` (a main atlas's objective: the icon's centre position) and
``mean`` (the objective and faithfulness read on the icon's own mean over its positions, edges avoided, as
collect reads a photo's: what the aligned render stage does, ``actlas.stages.align_render.POOL``), and scores
every icon both ways (cosine between the icon's centre or mean activation and the cell's direction, on the
saved 8-bit icon). ``--sheet`` writes both sets of icons side by side.

It also says how far a single position can reach such a direction at all: for each cell, the best cosine
between its direction and any one sampled position of the run's photos (``reach, one position``) and any one
photo's mean (``reach, one photo``).

Usage: PYTHONPATH=src .venv/bin/python benchmarks/bench_align_icons.py RUN NAME MAP --model CARD [--grid 10]
       [--size 80 --steps 96 --batch-size 8] [--render JSON] [--cells N] [--json FILE] [--sheet PNG]
RUN must hold ``aligned/NAME/MAP/grid-N/cells.npz`` (snakemake RUN/aligned/NAME/MAP/grid-N/cells.npz ...).
Last line: ``ratio: X`` = median faithfulness of the mean-pooled icons (read on their mean) over that of the
centre icons (read on their centre).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from _common import machine, table


def reach(directions: np.ndarray, points: np.ndarray) -> np.ndarray:
    """For each direction (K, C), the best cosine to any row of points (N, C) -> (K,)."""
    d = directions / np.maximum(np.linalg.norm(directions, axis=1, keepdims=True), 1e-12)
    p = points / np.maximum(np.linalg.norm(points, axis=1, keepdims=True), 1e-12)
    return (d @ p.T).max(1)


def subset(cells, keep: np.ndarray):
    """The cells ``keep`` (indices, ascending) of ``Cells``, their members regrouped."""
    import dataclasses

    members = [cells.members(k) for k in keep]
    offsets = np.concatenate([[0], np.cumsum([len(m) for m in members])]).astype(np.int64)
    return dataclasses.replace(
        cells,
        ij=cells.ij[keep],
        count=cells.count[keep],
        direction=cells.direction[keep],
        attribution=cells.attribution[keep],
        label=cells.label[keep],
        order=np.concatenate(members).astype(np.int64),
        offsets=offsets,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("name")
    ap.add_argument("map")
    ap.add_argument("--model", required=True, help="the map's model (card or model block path)")
    ap.add_argument("--grid", type=int, default=10)
    ap.add_argument("--size", type=int, default=80, help="render.size (the demo's 80; fit_to_layer may raise it)")
    ap.add_argument("--steps", type=int, default=96)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--render", type=json.loads, default={}, help='more render settings, JSON: {"pad": 4, "lr": 0.05}')
    ap.add_argument("--cells", type=int, default=0, help="only the N most populous cells (0: all)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--sheet", type=Path, help="a PNG of the icons: one row per objective, cells by count")
    args = ap.parse_args()

    import torch

    from actlas import paths
    from actlas.alignments import parse_map
    from actlas.data.samples import load_photo_means, load_samples
    from actlas.formats.batches import read_batch
    from actlas.formats.cells import read_cells, write_cells
    from actlas.models.load import load_model
    from actlas.settings import RenderParams
    from actlas.stages.render import render_folder
    from actlas.viz import objectives
    from actlas.viz.render import centre_activations

    torch.set_num_threads(1)
    layer, model_name = parse_map(args.map)
    folder = paths.aligned_grid_dir(args.run, args.name, args.map, args.grid)
    cells = read_cells(paths.cells(folder))
    order = np.argsort(-cells.count, kind="stable")
    keep = np.sort(order[: args.cells]) if args.cells else np.arange(len(cells))
    cells = subset(cells, keep)
    directions = cells.direction.astype(np.float32)
    params = RenderParams(**{"size": args.size, "steps": args.steps, "batch_size": args.batch_size, **args.render})
    root = paths.model_root(args.run, model_name)
    net, spec = load_model(args.model)
    out: dict = {"machine": machine(), "cells": len(directions), "map": args.map, "pools": {}}
    icons = {}
    scratch = Path(tempfile.mkdtemp(prefix="bench-align-icons-"))
    try:
        for pool in objectives.POOLS:
            f = scratch / pool
            f.mkdir()
            write_cells(paths.cells(f), cells)
            start = time.perf_counter()
            render_folder(
                f,
                root,
                layer,
                args.model,
                cells_per_job=0,
                params=params,
                cache=False,
                progress=False,
                threads=1,
                pool=pool,
            )
            seconds = time.perf_counter() - start
            batch = read_batch(paths.render_batch(f, 0))
            icons[pool] = batch.icon
            out["pools"][pool] = {"seconds": seconds, "own": batch.faithfulness.tolist(), "size": batch.params["size"]}
    finally:
        shutil.rmtree(scratch)
    rows = []
    for pool, icon in icons.items():
        images = torch.from_numpy(icon).permute(0, 3, 1, 2).float() / 255
        d = torch.from_numpy(directions)
        read = {}
        for at in objectives.POOLS:
            h = torch.cat(
                [centre_activations(net, spec, layer, images[i : i + 8], at) for i in range(0, len(images), 8)]
            )
            read[at] = objectives.cosine(h, d).numpy()
        own = np.asarray(out["pools"][pool]["own"])
        out["pools"][pool] |= {f"read_{at}": v.tolist() for at, v in read.items()}
        rows.append(
            [
                pool,
                out["pools"][pool]["size"],
                f"{np.median(own):.3f} / {np.percentile(own, 10):.3f}",
                f"{np.median(read['centre']):.3f}",
                f"{np.median(read['mean']):.3f}",
                f"{out['pools'][pool]['seconds'] / len(icon):.1f}",
            ]
        )
    if args.sheet:
        from PIL import Image

        rows_px = [
            np.concatenate(list(icons[p][np.argsort(-cells.count, kind="stable")]), axis=1) for p in objectives.POOLS
        ]
        Image.fromarray(np.concatenate(rows_px, axis=0)).save(args.sheet)
    means = load_photo_means(args.run, layer, model_name=model_name).activation
    samples = load_samples(args.run, layer, model_name=model_name).activation if model_name is None else None
    r_photo = reach(directions, means)
    line = f"reach, one photo: median {np.median(r_photo):.3f}"
    if samples is not None:
        r_pos = reach(directions, np.asarray(samples, np.float32))
        line += f"; reach, one position: median {np.median(r_pos):.3f} (of {len(samples)} positions)"
        out["reach_position"] = r_pos.tolist()
    out["reach_photo"] = r_photo.tolist()
    print(machine())
    print(
        f"{args.map} of {args.name}, {len(directions)} cells of a {args.grid} x {args.grid} grid, {len(means)} photos"
    )
    print(table(["objective", "px", "own faith median / p10", "read at centre", "read on mean", "s / icon"], rows))
    print(line)
    if args.json:
        args.json.write_text(json.dumps(out))
    ratio = np.median(out["pools"]["mean"]["own"]) / np.median(out["pools"]["centre"]["own"])
    print(f"ratio: {ratio:.3f}")


if __name__ == "__main__":
    main()
