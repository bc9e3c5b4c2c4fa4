"""Concept icons under the cosine power of the render objective: faithfulness against legibility.

A concept's direction is one atom of a sparse dictionary: a part that real activations hold together with
others. The render objective ``dot(h, v) * cos(h, v)^power`` (``RenderParams.power``) asks, the higher the
power, for an activation that holds that part alone. This renders a run's concept directions
(``LAYER/concepts/cells.npz``, the stage's own) through the render stage's ``render_folder`` (the run's
whitening, model and render settings, redirect as the stage uses it, no cache, a scratch folder) once per
``--powers`` value and reports, per power: the icons' faithfulness (cosine between the icon's centre
activation and the atom: median, p10, min, count below 0.5) and **label agreement**, the share of icons the
model itself classifies (the whole icon as its input) as the concept's label: a measure of whether an icon
shows the thing its concept's exemplars share, which faithfulness alone does not give. The same agreement
for the layer's grid cells' stored icons is printed for reference (``--grid``).

Usage: PYTHONPATH=src .venv/bin/python benchmarks/bench_concept_icons.py RUN LAYER --model CARD
       [--powers 4,2,1] [--concepts 48] [--grid 10] [--threads 2] [--json FILE] [--sheet PNG] [--quick]
Last line: ``ratio: X``, label agreement at the last power over that at the first.
"""

from __future__ import annotations

import argparse
import dataclasses
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
from bench_align_icons import subset


def run_params(run: Path):
    """The run's render settings (its manifest's ``config.render``) as ``RenderParams``."""
    from actlas.settings import RenderParams

    cfg = json.loads((run / "manifest.json").read_text())["config"].get("render", {})
    names = {f.name for f in dataclasses.fields(RenderParams)}
    return RenderParams(**{k: v for k, v in cfg.items() if k in names})


def classify(net, spec, icons: np.ndarray) -> np.ndarray:
    """Top-1 class of each icon (K, S, S, 3) uint8, fed whole at its own size -> (K,) int64."""
    import torch

    x = spec.normalize(torch.from_numpy(icons).permute(0, 3, 1, 2).float() / 255)
    with torch.no_grad():
        return net(x).argmax(1).numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("layer")
    ap.add_argument("--model", required=True)
    ap.add_argument("--powers", default="4,2,1")
    ap.add_argument("--concepts", type=int, default=0, help="every K/N-th concept (0: all)")
    ap.add_argument("--grid", type=int, default=10, help="grid size whose stored icons are the reference")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--sheet", type=Path, help="a PNG: one row of icons per power")
    ap.add_argument("--quick", action="store_true", help="16 concepts at powers 4 and 2")
    args = ap.parse_args()
    if args.quick:
        args.concepts, args.powers = 16, "4,2"

    import torch
    from PIL import Image

    from actlas import paths
    from actlas.formats.batches import read_batch
    from actlas.formats.cells import read_cells, write_cells
    from actlas.models.load import load_model
    from actlas.settings import CONCEPT_REDIRECT
    from actlas.stages.render import render_folder

    print(machine(), flush=True)
    torch.set_num_threads(args.threads)
    net, spec = load_model(args.model)
    concepts = read_cells(paths.cells(paths.concepts_dir(args.run, args.layer)))
    keep = np.arange(len(concepts))
    if args.concepts:
        keep = np.unique(np.linspace(0, len(concepts) - 1, args.concepts).round().astype(np.int64))
    labelled = concepts.label[keep] >= 0
    base = dataclasses.replace(run_params(args.run), redirect=run_params(args.run).redirect or CONCEPT_REDIRECT)
    rows, sheets = [], []
    for power in map(float, args.powers.split(",")):
        scratch = Path(tempfile.mkdtemp(prefix="concept-icons-"))
        try:
            write_cells(paths.cells(scratch), subset(concepts, keep))
            start = time.perf_counter()
            render_folder(
                scratch, args.run, args.layer, args.model, cells_per_job=0, threads=args.threads,
                params=dataclasses.replace(base, power=power), cache=False, progress=False,
            )  # fmt: skip
            seconds = time.perf_counter() - start
            batch = read_batch(paths.render_batch(scratch, 0))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        f = batch.faithfulness
        pred = classify(net, spec, batch.icon)
        agree = float(np.mean(pred[labelled] == concepts.label[keep][labelled])) if labelled.any() else 0.0
        rows.append(
            {
                "power": power,
                "icons": len(f),
                "median": float(np.median(f)),
                "p10": float(np.percentile(f, 10)),
                "min": float(f.min()),
                "below_0.5": int((f < 0.5).sum()),
                "label_agreement": agree,
                "seconds": round(seconds, 1),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
        sheets.append(batch.icon)
    grid_dir = paths.grid_dir(args.run, args.layer, args.grid)
    batches = sorted(paths.render_dir(grid_dir).glob("*.npz")) if grid_dir.exists() else []
    reference = None
    if batches:
        cells = read_cells(paths.cells(grid_dir))
        icons = np.concatenate([read_batch(b).icon for b in batches])
        lab = cells.label[: len(icons)]
        reference = float(np.mean(classify(net, spec, icons)[lab >= 0] == lab[lab >= 0]))
    header = ["power", "icons", "median", "p10", "min", "below 0.5", "label agreement", "s"]
    print(table(header, [[r[k] for k in ("power", "icons", "median", "p10", "min", "below_0.5")]
                         + [r["label_agreement"], r["seconds"]] for r in rows]))  # fmt: skip
    if reference is not None:
        print(f"grid-{args.grid} cells' stored icons, label agreement: {reference:.3f} ({len(icons)} icons)")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "rows": rows, "grid_agreement": reference}, indent=1))
    if args.sheet:
        side = sheets[0].shape[1]
        im = Image.new("RGB", (side * len(keep), side * len(sheets)))
        for r, icons in enumerate(sheets):
            for i, icon in enumerate(icons):
                im.paste(Image.fromarray(icon), (i * side, r * side))
        im.save(args.sheet)
    print(f"ratio: {rows[-1]['label_agreement'] / max(rows[0]['label_agreement'], 1e-9):.3f}")


if __name__ == "__main__":
    main()
