"""manifest: gather every stage's record into ``RUN/manifest.json``; :func:`info` summarises a finished run."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from .. import paths, store


def versions() -> dict:
    """Versions of the software that produced a run."""
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("actlas", "torch", "torchvision", "numpy", "zarr", "umap-learn", "snakemake"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def _percentiles(values: list[float]) -> dict:
    return {q: round(float(np.percentile(values, p)), 4) for q, p in (("p10", 10), ("median", 50), ("p90", 90))}


def manifest(run_dir: str | Path, config: dict) -> Path:
    """Gather the run's records -> ``RUN/manifest.json`` (read by ``actlas info`` and the viewer).

    ``config`` is the run's whole config (every default filled in): its layers, grid sizes and
    ``render.cells_per_job`` say which artifacts belong to the current plan.
    """
    run_dir = Path(run_dir)
    stores = paths.shard_stores(run_dir)
    collect = [{"store": st.name, **store.shard_attrs(st).get("summary", {})} for st in stores]
    # every model setting, declared or defaulted, as collect resolved it
    model = store.shard_attrs(stores[0]).get("params", {}).get("model") if stores else None
    cells_per_job = int(config.get("render", {}).get("cells_per_job", 0))
    layers = {}
    for layer in config["layers"]:
        entry: dict = {}
        if paths.layout_info(run_dir, layer).exists():
            entry["layout"] = json.loads(paths.layout_info(run_dir, layer).read_text())
        grids = {}
        for n in config["grid"]["sizes"]:
            gdir = paths.grid_dir(run_dir, layer, n)
            if not (gdir / "atlas.json").exists():
                continue
            meta = json.loads((gdir / "atlas.json").read_text())
            render_seconds, rendered = 0.0, 0
            for b in range(paths.n_batches(len(meta["cells"]), cells_per_job)):
                part = paths.load_npz(paths.render_batch(gdir, b))
                render_seconds += float(part["seconds"])
                rendered += int(part["rendered"])
            grids[str(n)] = {
                "cells": len(meta["cells"]),
                "icons_rendered": rendered,
                "render_seconds": round(render_seconds, 1),
                "faithfulness": _percentiles([c["faithfulness"] for c in meta["cells"]]),
                "label_agreement": meta.get("label_agreement"),
                "atlas": str(gdir / "atlas.png"),
                "labelled": str(gdir / "atlas-labelled.png"),
            }
        entry["grids"] = grids
        layers[layer] = entry
    data = {
        "actlas": versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": {"cpus": os.cpu_count(), "machine": platform.machine()},
        "config": config,
        "model": model,
        "collect": {
            "shards": len(collect),
            "images": sum(c.get("images", 0) for c in collect),
            "skipped": sum(c.get("skipped", 0) for c in collect),
            "seconds": round(sum(c.get("seconds", 0) for c in collect), 1),
            "per_shard": collect,
        },
        "layers": layers,
    }
    return paths.write_json(paths.manifest(run_dir), data)


def info(run_dir: str | Path) -> dict:
    """A one-object summary of a finished run (what ``actlas info`` prints): model, layers, counts,
    atlases, timings, and the class atlases, comparisons and patch reports of its config."""
    path = paths.manifest(run_dir)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: is {run_dir} a finished actlas run?")
    m = json.loads(path.read_text())  # data only, never executed
    layers = {}
    for layer, entry in m["layers"].items():
        grids = entry.get("grids", {})
        layers[layer] = {
            "samples": entry.get("layout", {}).get("samples"),
            "layout_backend": entry.get("layout", {}).get("backend"),
            "layout_seconds": entry.get("layout", {}).get("total_seconds"),
            "grid_sizes": [int(g) for g in grids],
            "icons": sum(g["cells"] for g in grids.values()),
            "faithfulness_median": {g: v["faithfulness"]["median"] for g, v in grids.items()},
            "label_agreement": {g: v.get("label_agreement") for g, v in grids.items()},
            "atlases": [v["atlas"] for v in grids.values()],
            "render_seconds": {g: v["render_seconds"] for g, v in grids.items()},
        }
    run = Path(run_dir)
    found = lambda pattern: sorted(str(q) for q in run.glob(pattern))  # noqa: E731
    return {
        "run_dir": str(run_dir),
        "model": m["config"].get("model"),
        "layers": layers,
        "class_atlases": found("*/class-*/atlas.png"),
        "comparisons": found("*/compare-*/compare.png"),
        "patch_reports": found("patches/*/report.md"),
        "images": m["collect"]["images"],
        "skipped": m["collect"]["skipped"],
        "collect_seconds": m["collect"]["seconds"],
        "versions": m["actlas"],
    }
