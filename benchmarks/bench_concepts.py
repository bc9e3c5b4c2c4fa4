"""Concept dictionaries on real activations: explained variance, L0, dead atoms, seed stability and learning
time per method, size and k; how atlas cells decompose into concepts; issue 27's targets.

Data: the demo run's ``features.13`` and ``features.16`` (MobileNetV2, 2,300 ImageNet photos, 36,800
samples a layer, signed) and CIFAR-10 ResNet-20 ``layer3`` (a run of ``config/cifar10.yaml`` with
``--config limit=10000``: 10,000 samples, post-ReLU). Each layer's rows are split 90/10 by a fixed
hash of the row number (``actlas.concepts.heldout_mask``): dictionaries learn on the 90% and are
measured on the 10%. Stability: the mean cosine of the atoms of seed 0 and seed 1 matched one to one
(Hungarian). Each dictionary is measured with its own encoding and, for the autoencoders, with OMP on
its atoms too (same atoms, other codes).

Timing: ``actlas.concepts.learn`` of a 512-atom dictionary of the default (and of ``--time-methods``)
on all 36,800 ``features.13`` rows with ``--threads`` torch threads, each between two runs of a
reference with the same threads (``REF_REPS`` float32 products (36,800 x 96) @ (96 x 512)); the ratio
to the reference travels between machines better than the seconds. ``--layers ''`` times only;
``--no-timing`` skips the timing (and its last line).

Cells: the grid-16 atlas cells of ``features.13`` (their mean activation) decomposed into 5 concepts
three ways, each with exact non-negative least squares on the chosen atoms: OMP on the atoms (what
``actlas.concepts.decompose`` does), the encoder's top 5 on the cell direction, and the 5 concepts
with the largest mean code over the cell's samples. Reported: the median and 10th percentile of the
share of each cell's centred direction they explain.

Purity (``--purity``, only that): is a concept purer than a cell? For each layer, the default dictionary
(``method: auto``, K 512, k 16, learned on all rows) and the run's own (``LAYER/concepts/dictionary.safetensors``,
when there is one) encode every row; a concept's exemplars are the rows with its 8 highest codes, one per
photo (what the stage shows), its label its code-weighted attribution's best class (the stage's). A cell's
exemplars are its 8 samples nearest its mean in cosine, one per photo (what the atlas shows), its label its
attribution's best class (the grid's). Purity: the share of those exemplars whose photo's top-1 prediction
is the label (``actlas.concepts.exemplar_purity``), averaged over the concepts or cells; over all their
rows (a concept's weighted by its codes); and, label-free, the share of the exemplars predicted as their most
common prediction ("majority"). Cells come from grids of the layer's own coords: sizes 10 and 20
and the size whose median cell holds about as many samples as the median live concept ("matched").

Usage: PYTHONPATH=src .venv/bin/python benchmarks/bench_concepts.py [--demo RUN] [--cifar RUN] [--quick]
       [--methods topk,dl] [--sizes 256,512] [--layers features.13] [--time-methods topk] [--threads 2]
       [--json out.json] [--save DIR] [--purity] [--no-timing]
Last line: ``seconds: X``, the 512-atom default on features.13 (issue 27: at most 60 on 2 cores); with
``--purity``, ``ratio: X``: the last layer's mean concept purity (default dictionary) over the matched cells'.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

sys.path.insert(0, os.path.dirname(__file__))
from _common import ROOT, machine, table

from actlas import concepts
from actlas.concepts import dictionary as dm
from actlas.formats import dictionary as dfile

DEMO = Path(os.environ.get("ACTLAS_DEMO_RUN", "/work/main/runs/demo"))
CIFAR = ROOT / "runs" / "cifar10-10k"
DEFAULT = {"method": "archetypal", "size": 512, "k": 16}  # the default for signed layers (train.AUTO)
REF_REPS = 20
SAVE: Path | None = None  # --save: every dictionary measured, as safetensors
TARGETS = {"r2": 0.8, "l0": 16, "dead": 0.05, "stability": 0.8, "seconds": 60}


def read_layer(run_dir: Path, layer: str) -> np.ndarray:
    """One layer's collected activations (n, C) float16, in shard order: the only place the bench reads a run."""
    from actlas.data.samples import load_samples

    return load_samples(run_dir, layer, columns=("activation",)).activation


def read_cells(run_dir: Path, layer: str, grid: int = 16) -> dict:
    """The grid's cells (``direction`` (m, C), ``order``, ``offsets``)."""
    with np.load(run_dir / layer / f"grid-{grid}" / "cells.npz") as z:
        return {k: z[k] for k in ("direction", "order", "offsets")}


def reference_seconds(threads: int) -> float:
    """The reference workload: REF_REPS float32 products (36,800 x 96) @ (96 x 512), ``threads`` threads."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(36800, 96, generator=g), torch.randn(96, 512, generator=g)
    with dm.torch_threads(threads):
        a @ b
        start = time.perf_counter()
        for _ in range(REF_REPS):
            a @ b
        return time.perf_counter() - start


def measure(x: np.ndarray, method: str, size: int, k: int, epochs: int | None, threads: int) -> list[dict]:
    """Seed 0 and 1 on the 90%, measured on the 10%: one row per encoding."""
    train, held = dm.split(dm.array_chunks(x), 0.1)
    dicts, seconds = [], []
    for seed in (0, 1):
        start = time.perf_counter()
        dicts.append(concepts.learn(train, method=method, size=size, k=k, seed=seed, epochs=epochs, threads=threads))
        seconds.append(time.perf_counter() - start)
    stab = concepts.stability(dicts[0], dicts[1])
    if SAVE:
        for seed, d in enumerate(dicts):
            dfile.save(d, SAVE / f"{d.info['method']}-{size}-{k}-seed{seed}.safetensors")
    rows = []
    for encoding in ("encoder", "omp") if dicts[0].encoder is not None else ("omp",):
        with dm.torch_threads(threads):
            ev = concepts.evaluate(dicts[0], held, encoding=encoding)
        weighted = concepts.stability(dicts[0], dicts[1], weights=np.asarray(ev["frequency"]))
        rows.append(
            {
                "method": method,
                "size": size,
                "k": k,
                "encoding": encoding,
                "r2": ev["r2"],
                "l0": ev["l0"],
                "dead": ev["dead"],
                "stability": stab,
                "stability_weighted": weighted,
                "seconds": seconds[0],
                "epochs": dicts[0].info["epochs"],
                "rows": dicts[0].info["rows"],
            }
        )
    return rows, dicts[0]


def decompositions(d: dm.Dictionary, cells: dict, x: np.ndarray, n_terms: int = 5) -> dict:
    """Median and p10 share explained by ``n_terms`` concepts per cell, chosen three ways."""
    from scipy.optimize import nnls

    directions = cells["direction"]
    xc = directions - d.center

    def share(support: np.ndarray) -> np.ndarray:
        out = np.zeros(len(xc))
        for i, sel in enumerate(support):
            sel = np.unique(sel[sel >= 0])
            norm2 = float(xc[i] @ xc[i])
            if len(sel) and norm2 > 0:
                _, res = nnls(d.atoms[sel].T.astype(np.float64), xc[i].astype(np.float64))
                out[i] = 1 - res * res / norm2
        return out

    ways = {"omp on the atoms": concepts.decompose(directions, d, n_terms)[0]}
    if d.encoder is not None:
        pre = xc @ d.encoder + d.encoder_bias
        ways["encoder top 5"] = np.argsort(-pre, axis=1)[:, :n_terms]
    codes = concepts.encode_stream(d, dm.array_chunks(x)).tocsr()
    means = np.stack(
        [
            np.asarray(codes[cells["order"][cells["offsets"][i] : cells["offsets"][i + 1]]].mean(0)).ravel()
            for i in range(len(directions))
        ]
    )
    ways["members' mean codes top 5"] = np.argsort(-means, axis=1)[:, :n_terms]
    return {
        name: (float(np.median(s)), float(np.percentile(s, 10)))
        for name, s in ((name, share(sup)) for name, sup in ways.items())
    }


PURITY_EXAMPLES = 8  # exemplars per concept or cell: the stage's and the atlas' default (n_examples)


def nearest_one_per_photo(direction: np.ndarray, acts: np.ndarray, rows: np.ndarray, image: np.ndarray, n: int):
    """The ``n`` rows (of ``rows``) nearest ``direction`` in cosine, one per photo, padded with -1: (n,) int64."""
    from actlas import atlas as atlas_core

    order, _ = atlas_core.nearest_members(direction, acts[rows], len(rows))
    ranked = rows[order]
    _, first = np.unique(image[ranked], return_index=True)
    out = np.full(n, -1, np.int64)
    keep = ranked[np.sort(first)][:n]
    out[: len(keep)] = keep
    return out


def matched_grid(coords: np.ndarray, target: float, sizes=range(2, 81)) -> int:
    """The grid size whose median non-empty cell holds closest to ``target`` samples."""
    from actlas.grid import bin_coords

    def median(n):
        ij = bin_coords(coords, n)
        counts = np.bincount(ij[:, 1].astype(np.int64) * n + ij[:, 0], minlength=n * n)
        return float(np.median(counts[counts > 0]))

    return min(sizes, key=lambda n: abs(np.log(max(median(n), 1)) - np.log(max(target, 1))))


def ranked_codes(codes, x: np.ndarray, center: np.ndarray, how: str):
    """Codes (n, K) rescaled per row for ranking exemplars: ``code`` as they are (the stage's), ``share`` over
    the row's centred norm (the concept's share of the activation), ``dominance`` over the row's sum of codes."""
    csr = sp.csr_array(codes)
    if how == "code":
        return csr
    if how == "share":
        per_row = np.linalg.norm(np.asarray(x, np.float32) - center, axis=1)
    elif how == "dominance":
        per_row = np.asarray(csr.sum(1)).ravel()
    else:
        raise SystemExit(f"unknown ranking {how!r}: use code, share or dominance")
    coo = csr.tocoo()
    return sp.csr_array((coo.data / np.maximum(per_row[coo.row], 1e-12), (coo.row, coo.col)), shape=csr.shape)


def purity_rows(
    run_dir: Path,
    layer: str,
    threads: int,
    n_examples: int = PURITY_EXAMPLES,
    extra: tuple[tuple[str, int, int], ...] = (),
    rankings: tuple[str, ...] = ("code",),
) -> list[dict]:
    """Concept and cell purity of one layer (see the module): one row per dictionary (and exemplar ranking
    other than ``code``) and per grid. ``extra``: more dictionaries (method, K, k) learned on all rows."""
    from actlas import paths
    from actlas.concepts import summaries
    from actlas.data.samples import load_samples
    from actlas.formats.layout import read_coords
    from actlas.grid import grid

    s = load_samples(run_dir, layer)
    coords = read_coords(paths.coords(run_dir, layer))
    x, n_rows = s.activation, len(s.activation)
    row_pred = s.pred[s.image, 0].astype(np.int64)
    n_classes = max(int(s.attr_class.max()) + 1, int(s.pred.max()) + 1)
    dicts = []
    saved = SAVE / f"purity-{layer}-auto-512-16.safetensors" if SAVE else None
    if saved and saved.exists():  # --save: learned once, reused by later runs
        d = dfile.load(saved)
        dicts.append(("bench", d, 0.0))
    else:
        with dm.torch_threads(threads):
            start = time.perf_counter()
            d = concepts.learn(dm.array_chunks(x), method="auto", size=512, k=16, seed=0, threads=threads)
            dicts.append(("bench", d, time.perf_counter() - start))
        if saved:
            dfile.save(d, saved)
    for method, size, k in extra:
        with dm.torch_threads(threads):
            start = time.perf_counter()
            d = concepts.learn(dm.array_chunks(x), method=method, size=size, k=k, seed=0, threads=threads)
            dicts.append((f"{d.method} {size}/{k}", d, time.perf_counter() - start))
    own = paths.dictionary(paths.concepts_dir(run_dir, layer))
    if own.exists():
        d = dfile.load(own)
        dicts.append(("run's", d, 0.0))
    rows = []
    medians = []
    for short, d, seconds in dicts:
        name = f"concepts {d.method} {d.size}/{d.k} ({short})"
        with dm.torch_threads(threads):
            codes = concepts.encode_stream(d, dm.array_chunks(x))
        count = np.rint(summaries.frequency(codes) * n_rows).astype(np.int64)
        _, label = summaries.class_weights(codes, s.attr_class, s.attr_value, n_classes)
        zt = sp.csr_array(codes).T.tocsr()  # (K, n): each concept's codes over the rows
        owner = np.repeat(np.arange(d.size), np.diff(zt.indptr))
        hit = zt.data * (row_pred[zt.indices] == label[owner])
        all_rows = np.bincount(owner, weights=hit, minlength=d.size) / np.maximum(
            np.bincount(owner, weights=zt.data, minlength=d.size), 1e-30
        )
        for how in rankings:
            exemplars = summaries.top_rows(ranked_codes(codes, x, d.center, how), n_examples, group=s.image)
            purity, counted = summaries.exemplar_purity(exemplars, row_pred, label)
            majority = majority_share(exemplars, row_pred)
            live = (count > 0) & (counted > 0)
            what = name if how == "code" else f"{name}, exemplars by {how}"
            rows.append(
                _purity_row(
                    layer,
                    what,
                    count[live],
                    purity[live],
                    all_rows[live],
                    counted[live],
                    majority[live],
                    seconds=seconds,
                )
            )
        medians.append(float(np.median(count[count > 0])))
    matches = [matched_grid(coords, m) for m in medians]  # per dictionary: its count-matched grid size
    for n in dict.fromkeys([10, 20, *matches]):
        cells = grid(coords, x, s.attr_class, s.attr_value, n, n_classes=n_classes)
        ex = np.stack(
            [
                nearest_one_per_photo(cells.direction[c], x, cells.members(c), s.image, n_examples)
                for c in range(len(cells))
            ]
        )
        purity, counted = summaries.exemplar_purity(ex, row_pred, cells.label)
        majority = majority_share(ex, row_pred)
        all_rows = np.array([float(np.mean(row_pred[cells.members(c)] == cells.label[c])) for c in range(len(cells))])
        live = counted > 0
        rows.append(
            _purity_row(
                layer,
                cell_name(n, matches, [short for short, _, _ in dicts]),
                cells.count[live],
                purity[live],
                all_rows[live],
                counted[live],
                majority[live],
            )
        )
    return rows


def cell_name(n: int, matches: list[int], names: list[str]) -> str:
    """``cells grid-N``, saying which dictionaries (``names``: "bench" for the default) it is count-matched to."""
    to = [who for who, m in zip(names, matches) if m == n]
    return f"cells grid-{n}" + (f" (matched: {', '.join(to)})" if to else "")


def majority_share(rows: np.ndarray, row_pred: np.ndarray) -> np.ndarray:
    """Label-free purity: the share of each group's exemplars (K, n) (-1 padding) predicted as their most common
    prediction, (K,) float (0 for a group without exemplars)."""
    out = np.zeros(len(rows))
    for g, r in enumerate(rows):
        p = row_pred[r[r >= 0]]
        p = p[p >= 0]
        out[g] = np.bincount(p).max() / len(p) if len(p) else 0.0
    return out


def _purity_row(layer, what, count, purity, all_rows, counted, majority, seconds=0.0) -> dict:
    return {
        "layer": layer,
        "what": what,
        "groups": int(len(count)),
        "median_count": float(np.median(count)) if len(count) else 0.0,
        "exemplars": float(np.mean(counted)) if len(counted) else 0.0,
        "purity_mean": float(np.mean(purity)) if len(purity) else 0.0,
        "purity_median": float(np.median(purity)) if len(purity) else 0.0,
        "purity_p25": float(np.percentile(purity, 25)) if len(purity) else 0.0,
        "all_rows_mean": float(np.mean(all_rows)) if len(all_rows) else 0.0,
        "majority_mean": float(np.mean(majority)) if len(majority) else 0.0,
        "seconds": round(seconds, 1),
    }


def purity_main(args) -> None:
    """``--purity``: the purity table of ``--layers`` (features.* from ``--demo``, layer3 from ``--cifar``)."""
    runs = {"features.13": args.demo, "features.16": args.demo, "layer3": args.cifar}
    out = []
    for layer in filter(None, args.layers.split(",")):
        extra = tuple(
            (m, int(size), int(k)) for m, size, k in (e.split(":") for e in filter(None, args.purity_dicts.split(",")))
        )
        rows = purity_rows(runs[layer], layer, args.threads, extra=extra, rankings=tuple(args.purity_rank.split(",")))
        for r in rows:
            print(json.dumps(r), flush=True)
        out += rows
    header = ["layer", "what", "groups", "median n", "exemplars", "purity mean", "median", "p25", "all rows"]
    header += ["majority", "s"]
    keys = ["layer", "what", "groups", "median_count", "exemplars", "purity_mean", "purity_median", "purity_p25"]
    keys += ["all_rows_mean", "majority_mean", "seconds"]
    print(table(header, [[r[k] for k in keys] for r in out]))
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "purity": out}, indent=1))
    last = [r for r in out if r["layer"] == out[-1]["layer"]]
    matched = next(r for r in last if "matched: bench" in r["what"])
    print(f"ratio: {last[0]['purity_mean'] / max(matched['purity_mean'], 1e-9):.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--demo", type=Path, default=DEMO)
    ap.add_argument("--cifar", type=Path, default=CIFAR)
    ap.add_argument("--layers", default="features.13,features.16,layer3")
    ap.add_argument("--methods", default="topk,batchtopk,archetypal,dl,nmf")
    ap.add_argument("--sizes", default="256,512,1024")
    ap.add_argument("--k", default="16")
    ap.add_argument("--epochs", type=int, default=None, help="passes over the rows (default: learn's)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="features.13 only, 512 atoms, topk and dl")
    ap.add_argument("--json", type=Path, default=None, help="also write every row here")
    ap.add_argument("--save", type=Path, default=None, help="save every dictionary in this folder")
    ap.add_argument("--time-methods", default="topk", help="also time these methods (comma-separated)")
    ap.add_argument("--purity", action="store_true", help="only: concept against cell purity of --layers")
    ap.add_argument("--purity-dicts", default="", help="--purity: also these dictionaries, e.g. topk:512:16,nmf:512:8")
    ap.add_argument("--purity-rank", default="code", help="--purity: exemplar rankings (code, share, dominance)")
    ap.add_argument("--no-timing", action="store_true", help="skip the features.13 timing (and its last line)")
    args = ap.parse_args()
    global SAVE
    SAVE = args.save
    if SAVE:
        SAVE.mkdir(parents=True, exist_ok=True)
    if args.quick:
        args.layers, args.methods, args.sizes = "features.13", "topk,dl", "512"
    print(machine(), flush=True)
    if args.purity:
        return purity_main(args)
    runs = {"features.13": args.demo, "features.16": args.demo, "layer3": args.cifar}
    rows, kept = [], {}
    for layer in filter(None, args.layers.split(",")):
        x = read_layer(runs[layer], layer)
        nonneg = float(x.min()) >= 0
        print(f"{layer}: {x.shape[0]} rows x {x.shape[1]} channels, min {float(x.min()):.3g}", flush=True)
        for method in args.methods.split(","):
            if method == "nmf" and not nonneg:
                continue
            for size in map(int, args.sizes.split(",")):
                for k in map(int, args.k.split(",")):
                    out, d = measure(x, method, size, k, args.epochs, args.threads)
                    for r in out:
                        r["layer"] = layer
                        print(json.dumps(r), flush=True)
                    rows += out
                    if (method, size, k) == (DEFAULT["method"], DEFAULT["size"], DEFAULT["k"]):
                        kept[layer] = d
    header = ["layer", "method", "K", "k", "encoding", "R2", "L0", "dead", "stability", "weighted", "s/learn", "epochs"]
    print(
        table(
            header,
            [
                [
                    r["layer"],
                    r["method"],
                    r["size"],
                    r["k"],
                    r["encoding"],
                    r["r2"],
                    r["l0"],
                    r["dead"],
                    r["stability"],
                    r["stability_weighted"],
                    r["seconds"],
                    r["epochs"],
                ]
                for r in rows
            ],
        )
    )
    best_stab = {}
    for r in rows:
        best_stab[r["layer"]] = max(best_stab.get(r["layer"], 0.0), r["stability"])
    print("targets: R2 >= 0.8 at L0 <= 16 and dead <= 5%:")
    for r in rows:
        if r["r2"] >= TARGETS["r2"] and r["l0"] <= TARGETS["l0"] and r["dead"] <= TARGETS["dead"]:
            print(f"  met by {r['layer']} {r['method']} K={r['size']} k={r['k']} ({r['encoding']}): R2 {r['r2']:.3f}")
    print("best stability per layer (target: some method >= 0.8):", {k: round(v, 3) for k, v in best_stab.items()})
    if "features.13" in kept:
        cells = read_cells(args.demo, "features.13")
        with dm.torch_threads(args.threads):
            dec = decompositions(kept["features.13"], cells, read_layer(args.demo, "features.13"))
        print("cells of features.13 grid-16, share of the centred direction explained by 5 concepts (median, p10):")
        for name, (med, p10) in dec.items():
            print(f"  {name}: {med:.3f}, {p10:.3f}")
    if args.no_timing:
        if args.json:
            args.json.write_text(json.dumps({"machine": machine(), "rows": rows, "timings": {}}, indent=1))
        return
    # the timing target: the default (and --time-methods) on all of features.13's rows, between references
    x = read_layer(args.demo, "features.13")
    timings = {}
    for method in dict.fromkeys([DEFAULT["method"], *filter(None, args.time_methods.split(","))]):
        ref = reference_seconds(args.threads)
        start = time.perf_counter()
        concepts.learn(
            dm.array_chunks(x), **{**DEFAULT, "method": method}, seed=0, epochs=args.epochs, threads=args.threads
        )
        seconds = time.perf_counter() - start
        ref2 = reference_seconds(args.threads)
        timings[method] = {"seconds": seconds, "reference": [ref, ref2], "ratio": seconds / ((ref + ref2) / 2)}
        print(
            f"learn {method} K={DEFAULT['size']} k={DEFAULT['k']} on {len(x)} features.13 rows, {args.threads} "
            f"threads: {seconds:.1f} s; reference ({REF_REPS} x (36800x96)@(96x512)) {ref:.2f} s before, "
            f"{ref2:.2f} s after: ratio {timings[method]['ratio']:.1f}",
            flush=True,
        )
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "rows": rows, "timings": timings}, indent=1))
    print(f"seconds: {timings[DEFAULT['method']]['seconds']:.1f}")


if __name__ == "__main__":
    main()
