"""Aligned atlases on real runs: how close matched samples land, against shuffled pairs, and what alignment costs
each map's own layout (trustworthiness against the same layer laid out alone).

Cases (each a pair of maps; the runs must exist, see below):

- ``demo``: MobileNetV2 ``features.13`` (14 x 14, 16 positions a photo) with ``features.16`` (7 x 7) of
  /work/main/runs/demo (read only). The grids differ: ``--method mapped`` (positions mapped through the grids,
  one to one per photo), ``photo`` (the same photos' samples paired at random: the control that says what the
  positions add), ``mean`` (one point per photo per map, its mean activation).
- ``layers``: ResNet-20 ``layer2`` (16 x 16) with ``layer3`` (8 x 8) on 5,000 cifar10-train photos, one position each.
- ``vit``: ResNet-20 ``layer3`` (8 x 8) with the CIFAR-10 ViT's ``blocks.3`` tokens (8 x 8): shared grid,
  exact position matches (collect draws the same positions for a grid, a count, a seed and a photo).

The CIFAR runs (same photos for both models: same images, limit and seed give the same shard plan)::

    snakemake runs/c10-resnet/collect/shard-00000.zarr runs/c10-resnet/shards/index.json --cores 1 \\
        --configfile runs/c10-resnet.yaml --config limit=5000     (and the same for runs/c10-vit.yaml)

where the two configs are config/cifar10.yaml's images and collect block with layers [layer2, layer3], and
the ViT's model (config/models/cifar10_vit.json) with layers [blocks.2, blocks.3].

Every map is also laid out alone (``actlas.layout.umap``, the main atlas' settings) as the reference:
trustworthiness (sklearn, 2,000 samples, 10 neighbours, cosine) of each aligned map minus the reference's.

Usage: .venv/bin/python benchmarks/bench_align.py --case demo --method mapped --alignment 0 0.01 0.1 1 [--plots DIR]
Last line: ``ratio: X`` = the largest matched / shuffled median distance over the pairs and alignments run
(lower is better; 1 is chance).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from _common import ROOT, machine, table

DEMO = Path(os.environ.get("ACTLAS_DEMO_RUN", "/work/main/runs/demo"))
CIFAR_RESNET = Path(os.environ.get("ACTLAS_C10_RESNET", ROOT / "runs" / "c10-resnet"))
CIFAR_VIT = Path(os.environ.get("ACTLAS_C10_VIT", ROOT / "runs" / "c10-vit"))
CACHE = Path(os.environ.get("ACTLAS_BENCH_SCRATCH", "/tmp/actlas-bench-align"))
CASES = {
    "demo": [(DEMO, "features.13"), (DEMO, "features.16")],
    "layers": [(CIFAR_RESNET, "layer2"), (CIFAR_RESNET, "layer3")],
    "vit": [(CIFAR_RESNET, "layer3"), (CIFAR_VIT, "blocks.3")],
}


def load_map(run_dir: Path, layer: str) -> dict:
    """One layer's samples of a run: ``activation`` (n, C) float32, ``image`` (n,) run image index, ``position``
    (n, 2), ``spatial`` (H, W), ``paths`` (n_images,), ``pred`` (n,) each sample's photo's top predicted class.

    The only place that reads a run (it moves with the stage)."""
    from actlas.stages.samples import load_samples

    s = load_samples(run_dir, layer, columns=("activation",))
    return {
        "activation": np.asarray(s.activation, np.float32),
        "image": s.image.astype(np.int64),
        "position": s.position.astype(np.int64),
        "spatial": tuple(s.spatial),
        "paths": list(s.paths),
        "pred": s.pred[s.image, 0].astype(np.int64),
    }


def prepare(case: str, method: str, seed: int) -> tuple[list[dict], list]:
    """The case's maps (photo ids shared by path) and their consecutive matchings."""
    from actlas import align

    maps = [load_map(run, layer) | {"name": f"{run.name}/{layer}"} for run, layer in CASES[case]]
    ids = align.photo_ids(*[m["paths"] for m in maps])
    for m, table_ in zip(maps, ids):
        m["photo"] = table_[m["image"]]
    if method == "mean":
        for m in maps:
            means, photos = align.photo_means(m["activation"], m["photo"])
            first = np.unique(m["photo"], return_index=True)[1]
            m.update(
                activation=means,
                photo=photos,
                position=np.zeros((len(photos), 2), np.int64),
                spatial=(1, 1),
                pred=m["pred"][first],
            )
    matchings = []
    for a, b in zip(maps, maps[1:]):
        if method == "photo":
            rng = np.random.default_rng(seed)
            matchings.append(
                align._match_mapped(
                    a["photo"], rng.random((len(a["photo"]), 2)), b["photo"], rng.random((len(b["photo"]), 2))
                )
            )
        else:
            matchings.append(
                align.match(a["photo"], a["position"], a["spatial"], b["photo"], b["position"], b["spatial"])
            )
    return maps, matchings


def alone(m: dict, key: str, seed: int) -> np.ndarray:
    """The map laid out on its own with the main atlas' settings (cached under CACHE by ``key``)."""
    from actlas.layout import normalize_coords, umap

    path = CACHE / f"{key}-{len(m['activation'])}-{seed}.npy"
    if path.exists():
        return np.load(path)
    xy, _ = umap(m["activation"], seed=seed, backend="umap-learn")
    coords = normalize_coords(xy)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, coords)
    return coords


def plot(path: Path, maps: list[dict], rows: list[tuple[str, list[np.ndarray]]], classes: int) -> None:
    """Scatter plots, one column a map and one row a layout, coloured by predicted class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), len(maps), figsize=(6 * len(maps), 6 * len(rows)), squeeze=False)
    cmap = plt.get_cmap("tab10" if classes <= 10 else "hsv")
    for r, (title, coords) in enumerate(rows):
        for c, (m, xy) in enumerate(zip(maps, coords)):
            ax = axes[r][c]
            ax.scatter(
                xy[:, 0],
                1 - xy[:, 1],
                s=1.5 if len(xy) > 5000 else 4,
                c=m["pred"] % classes,
                cmap=cmap,
                vmin=0,
                vmax=classes - 1,
                linewidths=0,
                alpha=0.6,
            )
            ax.set_title(f"{m['name']}: {title}", fontsize=10)
            ax.set_xlim(0, 1), ax.set_ylim(0, 1), ax.set_aspect("equal"), ax.set_xticks([]), ax.set_yticks([])
            for k in range(1, 10):  # a 10 x 10 grid: the same cell in every map
                ax.axhline(k / 10, color="0.85", lw=0.4, zorder=0), ax.axvline(k / 10, color="0.85", lw=0.4, zorder=0)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> None:
    from actlas import align

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", choices=sorted(CASES), default="demo")
    ap.add_argument("--method", choices=["mapped", "photo", "mean"], default="mapped")
    ap.add_argument("--alignment", type=float, nargs="+", default=[align.ALIGNMENT])
    ap.add_argument("--pull", choices=list(align.PULLS), default="overlap")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--grid", type=int, default=10, help="cells a side for the cell agreement")
    ap.add_argument("--plots", type=Path, help="folder for the side-by-side scatter plots")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args()
    os.environ.setdefault("NUMBA_CACHE_DIR", str(Path.home() / ".cache" / "actlas" / "numba"))

    print(f"# bench_align: {args.case}, {args.method} matching, {args.pull} pull ({machine()})")
    maps, matchings = prepare(args.case, args.method, args.seed)
    pairs = {(0, 1): matchings[0]}
    for m in maps:
        print(
            f"- {m['name']}: {m['activation'].shape[0]} samples x {m['activation'].shape[1]} channels, "
            f"grid {m['spatial']}"
        )
    print(f"- matched pairs: {len(matchings[0].a)}, median centre offset {float(np.median(matchings[0].offset)):.3f}")
    points = "means" if args.method == "mean" else "samples"
    ref = [alone(m, f"{args.case}-{points}-{m['name'].replace('/', '-')}", args.seed) for m in maps]
    ref_trust = [align.trustworthiness(m["activation"], c, seed=args.seed) for m, c in zip(maps, ref)]
    ref_measure = align.measures(ref, pairs, args.grid, seed=args.seed)[0]
    rows, results, worst = [], [], 0.0
    rows.append(
        [
            "alone",
            "-",
            ref_measure["distance"]["ratio"],
            ref_measure["cells"]["overall"],
            ref_measure["cells"]["shuffled"],
            *[round(t, 4) for t in ref_trust],
            "-",
            "-",
        ]
    )
    layouts = [("laid out alone", ref)]
    for lam in args.alignment:
        start = time.perf_counter()
        coords, info = align.aligned_layout(
            [m["activation"] for m in maps], matchings, alignment=lam, pull=args.pull, seed=args.seed
        )
        seconds = time.perf_counter() - start
        trust = [align.trustworthiness(m["activation"], c, seed=args.seed) for m, c in zip(maps, coords)]
        meas = align.measures(coords, pairs, args.grid, seed=args.seed)[0]
        worst = max(worst, meas["distance"]["ratio"])
        delta = [round(t - r, 4) for t, r in zip(trust, ref_trust)]
        rows.append(
            [
                f"aligned {lam:g}",
                round(info["neighbourhood_overlap"][0], 3),
                meas["distance"]["ratio"],
                meas["cells"]["overall"],
                meas["cells"]["shuffled"],
                *[round(t, 4) for t in trust],
                " / ".join(f"{d:+.4f}" for d in delta),
                round(seconds, 1),
            ]
        )
        results.append(
            {
                "alignment": lam,
                "measures": meas,
                "trust": trust,
                "trust_alone": ref_trust,
                "trust_delta": delta,
                "info": info,
                "seconds": round(seconds, 1),
            }
        )
        layouts.append((f"aligned {lam:g}", coords))
    names = [m["name"] for m in maps]
    print(
        table(
            [
                "layout",
                "overlap",
                "matched/shuffled",
                "cells near",
                "chance",
                f"trust {names[0]}",
                f"trust {names[1]}",
                "trust delta",
                "seconds",
            ],
            rows,
        )
    )
    if args.plots:
        classes = 10 if args.case != "demo" else 1000
        out = args.plots / f"align-{args.case}-{args.method}-{args.pull}.png"
        plot(out, maps, layouts, classes)
        print(f"plots: {out}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "case": args.case,
                    "method": args.method,
                    "pull": args.pull,
                    "maps": names,
                    "machine": machine(),
                    "results": results,
                },
                indent=1,
            )
        )
    print(f"ratio: {worst:.4f}")


if __name__ == "__main__":
    main()
