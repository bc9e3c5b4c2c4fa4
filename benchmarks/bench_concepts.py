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
to the reference travels between machines better than the seconds. ``--layers ''`` times only.

Cells: the grid-16 atlas cells of ``features.13`` (their mean activation) decomposed into 5 concepts
three ways, each with exact non-negative least squares on the chosen atoms: OMP on the atoms (what
``actlas.concepts.decompose`` does), the encoder's top 5 on the cell direction, and the 5 concepts
with the largest mean code over the cell's samples. Reported: the median and 10th percentile of the
share of each cell's centred direction they explain.

Usage: PYTHONPATH=src .venv/bin/python benchmarks/bench_concepts.py [--demo RUN] [--cifar RUN] [--quick]
       [--methods topk,dl] [--sizes 256,512] [--layers features.13] [--time-methods topk] [--threads 2]
       [--json out.json] [--save DIR]
Last line: ``seconds: X``, the 512-atom default on features.13 (issue 27: at most 60 on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
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
    args = ap.parse_args()
    global SAVE
    SAVE = args.save
    if args.quick:
        args.layers, args.methods, args.sizes = "features.13", "topk,dl", "512"
    print(machine(), flush=True)
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
