"""Aligned atlases on real runs: how close matched samples land, against shuffled pairs, and what alignment costs
each map's own layout (trustworthiness against the same layer laid out alone).

Cases (each a pair of maps; the runs must exist, see below):

- ``demo``: MobileNetV2 ``features.13`` (14 x 14, 16 positions a photo) with ``features.16`` (7 x 7) of the
  demo run (``make demo``: runs/demo, or ACTLAS_DEMO_RUN; read only). The grids differ: ``--method mapped``
  (positions mapped through the grids, one to one per photo), ``photo`` (the same photos' samples paired at
  random: the control that says what the positions add), ``mean`` (one point per photo per map, its mean
  activation over its samples).
- ``layers``: ResNet-20 ``layer2`` (16 x 16) with ``layer3`` (8 x 8) on 5,000 cifar10-train photos, one position each.
- ``vit``: ResNet-20 ``layer3`` (8 x 8) with the CIFAR-10 ViT's ``blocks.3`` tokens (8 x 8): shared grid,
  exact position matches (collect draws the same positions for a grid, a count, a seed and a photo).
- ``layers-every``, ``vit-every`` (``--method mean``): the same pairs as photo means over every position, from
  ``actlas collect SHARD OUT --positions 0`` stores of the c10-resnet run's shard list (runs/c10-all/resnet.zarr
  with layer2 and layer3, runs/c10-all/vit.zarr with blocks.3); ``demo-every``: the demo's first 400 photos
  (runs/mnv2-all/all.zarr, its shard list beside it).

Rows: each map laid out alone (``alone``), the same moved onto the first map through the matched pairs
(``alone, moved``: a similarity transform, ``actlas.align.rigid_align``), then the aligned layouts.

The CIFAR runs (same photos for both models: same images, limit and seed give the same shard plan)::

    snakemake runs/c10-resnet/collect/shard-00000.zarr runs/c10-resnet/shards/index.json --cores 1 \\
        --configfile runs/c10-resnet.yaml --config limit=5000     (and the same for runs/c10-vit.yaml)

where the two configs are config/cifar10.yaml's images and collect block with layers [layer2, layer3], and
the ViT's model (config/models/cifar10_vit.json) with layers [blocks.2, blocks.3].

Every map is also laid out alone (``actlas.layout.umap``, the main atlas' settings) as the reference:
trustworthiness (sklearn, 2,000 samples, 10 neighbours, cosine) of each aligned map minus the reference's.

Usage: .venv/bin/python benchmarks/bench_align.py [--quick] [--case demo --method mapped --alignment 0 0.01 0.1 1]
       [--pull overlap|equal] [--photos N] [--plots DIR] [--json FILE]
       .venv/bin/python benchmarks/bench_align.py --case demo --overlaps        (the matchings' neighbourhood overlap)
       .venv/bin/python benchmarks/bench_align.py --regions STORE     (every position of two layers: see regions())
Last line: ``ratio: X`` = matched / shuffled median distance at the last alignment given (lower is better;
1 is chance).
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

DEMO = Path(os.environ.get("ACTLAS_DEMO_RUN", ROOT / "runs" / "demo"))  # make demo
CIFAR_RESNET = Path(os.environ.get("ACTLAS_C10_RESNET", ROOT / "runs" / "c10-resnet"))
CIFAR_VIT = Path(os.environ.get("ACTLAS_C10_VIT", ROOT / "runs" / "c10-vit"))
CACHE = Path(os.environ.get("ACTLAS_BENCH_SCRATCH", "/tmp/actlas-bench-align"))
EVERY = Path(os.environ.get("ACTLAS_C10_EVERY", ROOT / "runs" / "c10-all"))  # stores of every position
DEMO_EVERY = Path(os.environ.get("ACTLAS_DEMO_EVERY", ROOT / "runs" / "mnv2-all" / "all.zarr"))
CASES = {
    "demo": [(DEMO, "features.13"), (DEMO, "features.16")],
    "layers": [(CIFAR_RESNET, "layer2"), (CIFAR_RESNET, "layer3")],
    "vit": [(CIFAR_RESNET, "layer3"), (CIFAR_VIT, "blocks.3")],
    # photo means over every position (stores of ``actlas collect --positions 0`` over a run's shard list)
    "demo-every": [(DEMO_EVERY, "features.13"), (DEMO_EVERY, "features.16")],
    "layers-every": [(EVERY / "resnet.zarr", "layer2"), (EVERY / "resnet.zarr", "layer3")],
    "vit-every": [(EVERY / "resnet.zarr", "layer3"), (EVERY / "vit.zarr", "blocks.3")],
}


def load_store(path: Path, layer: str) -> dict:
    """One layer of a single shard store (every position), as :func:`load_map`; the shard list beside it, or the
    c10-resnet run's, names the photos."""
    import zarr

    from actlas.data import store as st
    from actlas.formats.shards import read_shard

    listing = path.parent / "shard-00000.txt"
    if not listing.exists():
        listing = CIFAR_RESNET / "shards" / "shard-00000.txt"
    image = st.read([path], f"{layer}/image").astype(np.int64)
    return {
        "activation": np.asarray(st.read([path], f"{layer}/activation"), np.float32),
        "image": image,
        "position": st.read([path], f"{layer}/position").astype(np.int64),
        "spatial": tuple(zarr.open_group(str(path), mode="r")[layer].attrs["spatial"]),
        "paths": [row[0] for row in read_shard(listing)],
        "pred": st.read([path], "images/pred")[image, 0].astype(np.int64),
    }


def load_map(run_dir: Path, layer: str) -> dict:
    """One layer's samples of a run: ``activation`` (n, C) float32, ``image`` (n,) run image index, ``position``
    (n, 2), ``spatial`` (H, W), ``paths`` (n_images,), ``pred`` (n,) each sample's photo's top predicted class.

    The only place that reads a run (it moves with the stage)."""
    from actlas.data.samples import load_samples

    s = load_samples(run_dir, layer, columns=("activation",))
    return {
        "activation": np.asarray(s.activation, np.float32),
        "image": s.image.astype(np.int64),
        "position": s.position.astype(np.int64),
        "spatial": tuple(s.spatial),
        "paths": list(s.paths),
        "pred": s.pred[s.image, 0].astype(np.int64),
    }


def prepare(case: str, method: str, seed: int, photos: int = 0) -> tuple[list[dict], list]:
    """The case's maps (photo ids shared by path; the first ``photos`` photos, 0: all) and their consecutive
    matchings."""
    from actlas import align
    from actlas.align import matching as align_match

    maps = [
        (load_store(run, layer) if run.suffix == ".zarr" else load_map(run, layer)) | {"name": f"{run.stem}/{layer}"}
        for run, layer in CASES[case]
    ]
    ids = align.photo_ids(*[m["paths"] for m in maps])
    for i, (m, table_) in enumerate(zip(maps, ids)):
        m["photo"] = table_[m["image"]]
        if photos:
            keep = m["photo"] < photos
            maps[i] = m = {k: v[keep] if isinstance(v, np.ndarray) and len(v) == len(keep) else v for k, v in m.items()}
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
                align_match._match_mapped(
                    a["photo"], rng.random((len(a["photo"]), 2)), b["photo"], rng.random((len(b["photo"]), 2))
                )
            )
        else:
            matchings.append(
                align.match(a["photo"], a["position"], a["spatial"], b["photo"], b["position"], b["spatial"])
            )
    return maps, matchings


def alone(m: dict, key: str, seed: int) -> tuple[np.ndarray, float | None]:
    """The map laid out on its own with the main atlas' settings, and the seconds it took (cached under CACHE by
    ``key``, with the seconds of the run that made it)."""
    from actlas.layout import normalize_coords, umap

    path = CACHE / f"{key}-{len(m['activation'])}-{seed}.npy"  # the first photos: sizes tell the subsets apart
    if path.exists():
        seconds = path.with_suffix(".json")
        return np.load(path), json.loads(seconds.read_text())["seconds"] if seconds.exists() else None
    start = time.perf_counter()
    xy, _ = umap(m["activation"], seed=seed, backend="umap-learn")
    coords = normalize_coords(xy)
    seconds = time.perf_counter() - start
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, coords)
    path.with_suffix(".json").write_text(json.dumps({"seconds": round(seconds, 1)}))
    return coords, seconds


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


def library(maps: list[dict], matchings: list, alignment: float, seed: int) -> tuple[list[np.ndarray], dict]:
    """umap-learn's own ``AlignedUMAP`` (the main atlas' n_neighbors, min_dist, metric; its neighbour search and
    window) with ``alignment`` as its ``alignment_regularisation``, then moved and normalised as actlas does."""
    import warnings

    import umap

    from actlas import align
    from actlas.layout import normalize_coords

    relations = [dict(zip(m.a.tolist(), m.b.tolist())) for m in matchings]
    model = umap.AlignedUMAP(
        n_neighbors=20, min_dist=0.01, metric="cosine", alignment_regularisation=alignment, random_state=seed
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*n_jobs value.*")
        model.fit([m["activation"] for m in maps], relations=relations)
    xy = [np.nan_to_num(np.asarray(e, np.float64)) for e in model.embeddings_]
    moved = align.rigid_align(xy, matchings)
    joint = normalize_coords(np.concatenate(moved))
    coords = np.split(joint, np.cumsum([len(e) for e in xy])[:-1])
    return coords, {"backend": "umap.AlignedUMAP", "neighbourhood_overlap": [None]}


def overlaps(case: str, seed: int) -> None:
    """How much matched samples' neighbourhoods agree under each matching (umap-learn's pull weights, mean over
    the pairs), against partners shuffled across photos: no layout, only the neighbour graphs."""
    from actlas import align
    from actlas.align import layout as align_layout

    rows = []
    for method in ("mapped", "photo", "mean"):
        maps, matchings = prepare(case, method, seed)
        graphs = [align_layout._graph(m["activation"], 20, "cosine", seed)[0] for m in maps]
        m = matchings[0]
        shuffled = align.Matching(m.a, m.b[np.random.default_rng(seed).permutation(len(m.b))], m.offset)
        row = [method, len(m.a)]
        for pairs in (m, shuffled):
            rel = align.relations([pairs], [len(x["activation"]) for x in maps], 1)
            weights = align.overlap_weights(graphs, rel)
            row.append(round(float(weights[0][rel[0] >= 0].mean()), 4))
        rows.append(row)
    print(table(["matching", "pairs", "overlap", "overlap, partners shuffled"], rows))


def regions(store: Path, seed: int, positions: int = 16) -> None:
    """What "matched" can mean across grids, from a store of every position of features.13 (14 x 14) and
    features.16 (7 x 7) of the same photos (``actlas collect ... --positions 0``): the neighbourhood overlap
    of partners when each layer draws its positions on its own (as collect does) and pairs are mapped
    through the grids, when the finer layer takes the cell under each position of the coarser one (the
    same image region), and for photo means over every position or over the drawn ones."""
    from actlas import align
    from actlas.align import layout as align_layout
    from actlas.collect import image_key, sample_positions
    from actlas.data import store as st

    def read(layer):
        return {k: st.read([store], f"{layer}/{k}") for k in ("activation", "image", "position")}

    fine, coarse = read("features.13"), read("features.16")
    photos = np.unique(fine["image"])
    index = {}
    for name, m in (("fine", fine), ("coarse", coarse)):
        index[name] = {(int(i), int(y), int(x)): r for r, (i, (y, x)) in enumerate(zip(m["image"], m["position"]))}
    paths = [line for line in (store.parent / "shard-00000.txt").read_text().splitlines() if line.strip()]
    keys = [image_key(json.loads(line)["path"]) for line in paths]

    def rows(name, picks):
        return np.array([index[name][(int(i), int(y), int(x))] for i, (y, x) in picks])

    own_f, own_c, nested_f = [], [], []
    for p in photos:
        for y, x in sample_positions((14, 14), positions, seed, keys[p]):
            own_f.append((p, (y, x)))
        for y, x in sample_positions((7, 7), positions, seed, keys[p]):
            own_c.append((p, (y, x)))
            nested_f.append((p, (2 * y + 1, 2 * x + 1)))
    cases = {}
    rf, rc, rn = rows("fine", own_f), rows("coarse", own_c), rows("fine", nested_f)
    m = align.match(
        fine["image"][rf], fine["position"][rf], (14, 14), coarse["image"][rc], coarse["position"][rc], (7, 7)
    )
    cases["drawn apart, mapped"] = (fine["activation"][rf], coarse["activation"][rc], m)
    offset = np.linalg.norm(
        align.cell_centres(fine["position"][rn], (14, 14)) - align.cell_centres(coarse["position"][rc], (7, 7)), axis=1
    )
    m = align.Matching(np.arange(len(rn)), np.arange(len(rc)), offset.astype(np.float32))
    cases["nested (same region)"] = (fine["activation"][rn], coarse["activation"][rc], m)
    for label, (f_rows, c_rows) in {
        "photo means, every position": (None, None),
        "photo means, drawn": (rf, rc),
    }.items():
        fa = fine["activation"] if f_rows is None else fine["activation"][f_rows]
        fi = fine["image"] if f_rows is None else fine["image"][f_rows]
        ca = coarse["activation"] if c_rows is None else coarse["activation"][c_rows]
        ci = coarse["image"] if c_rows is None else coarse["image"][c_rows]
        (mf, pf), (mc, pc) = align.photo_means(fa.astype(np.float32), fi), align.photo_means(ca.astype(np.float32), ci)
        zeros = np.zeros((len(pf), 2), np.int64)
        cases[label] = (mf, mc, align.match(pf, zeros, (1, 1), pc, zeros, (1, 1)))
    out = []
    for label, (xa, xb, m) in cases.items():
        graphs = [align_layout._graph(np.asarray(x, np.float32), 20, "cosine", seed)[0] for x in (xa, xb)]
        shuffled = align.Matching(m.a, m.b[np.random.default_rng(seed).permutation(len(m.b))], m.offset)
        row = [label, len(m.a), round(float(np.median(m.offset)), 3)]
        for pairs in (m, shuffled):
            rel = align.relations([pairs], [len(xa), len(xb)], 1)
            weights = align.overlap_weights(graphs, rel)
            row.append(round(float(weights[0][rel[0] >= 0].mean()), 4))
        out.append(row)
    print(table(["matching", "pairs", "median offset", "overlap", "overlap, shuffled"], out))


def main() -> None:
    from actlas import align

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", choices=sorted(CASES), default="demo")
    ap.add_argument("--method", choices=["mapped", "photo", "mean"], default="mapped")
    ap.add_argument("--alignment", type=float, nargs="+", default=[align.ALIGNMENT])
    ap.add_argument("--pull", choices=list(align.PULLS), default="overlap")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--library", action="store_true", help="umap-learn's AlignedUMAP class instead of actlas.align")
    ap.add_argument("--photos", type=int, default=0, help="only the first N photos (0: all)")
    ap.add_argument("--quick", action="store_true", help="layers case, 1,500 photos, the default alignment")
    ap.add_argument("--grid", type=int, default=10, help="cells a side for the cell agreement")
    ap.add_argument("--plots", type=Path, help="folder for the side-by-side scatter plots")
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--overlaps", action="store_true", help="only the neighbourhood overlap of each matching")
    ap.add_argument("--regions", type=Path, help="a store of every position of features.13 and features.16")
    args = ap.parse_args()
    if args.quick:
        args.case, args.photos, args.alignment = "layers", 1500, [align.ALIGNMENT]
    os.environ.setdefault("NUMBA_CACHE_DIR", str(Path.home() / ".cache" / "actlas" / "numba"))

    if args.regions:
        print(f"# bench_align: what matched can mean across grids ({machine()})")
        return regions(args.regions, args.seed)
    if args.overlaps:
        print(f"# bench_align: {args.case}, neighbourhood overlap of each matching ({machine()})")
        return overlaps(args.case, args.seed)
    print(
        f"# bench_align: {args.case}, {args.method} matching, "
        f"{'umap.AlignedUMAP' if args.library else args.pull + ' pull'} ({machine()})"
    )
    maps, matchings = prepare(args.case, args.method, args.seed, args.photos)
    pairs = {(0, 1): matchings[0]}
    for m in maps:
        print(
            f"- {m['name']}: {m['activation'].shape[0]} samples x {m['activation'].shape[1]} channels, "
            f"grid {m['spatial']}"
        )
    print(f"- matched pairs: {len(matchings[0].a)}, median centre offset {float(np.median(matchings[0].offset)):.3f}")
    points = "means" if args.method == "mean" else "samples"
    ref, ref_seconds = zip(*[alone(m, f"{args.case}-{points}-{m['name'].replace('/', '-')}", args.seed) for m in maps])
    ref = list(ref)
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
            " + ".join("?" if t is None else f"{t:.1f}" for t in ref_seconds) + " alone",
        ]
    )
    from actlas.layout import normalize_coords

    moved = align.rigid_align(ref, matchings)
    moved = np.split(normalize_coords(np.concatenate(moved)), np.cumsum([len(c) for c in ref])[:-1])
    rigid_trust = [align.trustworthiness(m["activation"], c, seed=args.seed) for m, c in zip(maps, moved)]
    rigid_measure = align.measures(moved, pairs, args.grid, seed=args.seed)[0]
    rows.append(
        [
            "alone, moved",
            "-",
            rigid_measure["distance"]["ratio"],
            rigid_measure["cells"]["overall"],
            rigid_measure["cells"]["shuffled"],
            *[round(t, 4) for t in rigid_trust],
            "-",
            "-",
        ]
    )
    layouts = [("laid out alone", ref), ("alone, moved onto the first", moved)]
    for lam in args.alignment:
        start = time.perf_counter()
        if args.library:
            coords, info = library(maps, matchings, lam, args.seed)
        else:
            coords, info = align.aligned_layout(
                [m["activation"] for m in maps], matchings, alignment=lam, pull=args.pull, seed=args.seed
            )
        seconds = time.perf_counter() - start
        trust = [align.trustworthiness(m["activation"], c, seed=args.seed) for m, c in zip(maps, coords)]
        meas = align.measures(coords, pairs, args.grid, seed=args.seed)[0]
        worst = meas["distance"]["ratio"]  # the last alignment's
        delta = [round(t - r, 4) for t, r in zip(trust, ref_trust)]
        rows.append(
            [
                f"aligned {lam:g}",
                "-" if info["neighbourhood_overlap"][0] is None else round(info["neighbourhood_overlap"][0], 3),
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
                "seconds_alone": [None if t is None else round(t, 1) for t in ref_seconds],
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
        out = args.plots / f"align-{args.case}-{args.method}-{'library' if args.library else args.pull}.png"
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
