"""manifest: gather every stage's record into ``RUN/manifest.json``; :func:`info` summarises a finished run."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import numpy as np

from .. import paths
from ..data import store
from ..formats.atlas import read_atlas
from ..formats.batches import read_batch
from ..formats.concepts import read_concepts
from ..formats.layout import read_layout_info
from ..formats.manifest import Manifest, read_manifest, write_manifest
from ..formats.shards import shard_stores


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


def _grid_record(gdir: Path, cells_per_job: int) -> dict | None:
    """One grid's figures (cells, icons rendered, render time, faithfulness, atlas paths); None when its
    atlas is not there."""
    if not paths.atlas_json(gdir).exists():
        return None
    meta = read_atlas(paths.atlas_json(gdir))
    render_seconds, rendered = 0.0, 0
    for b in range(paths.n_batches(len(meta.cells), cells_per_job)):
        batch = read_batch(paths.render_batch(gdir, b))
        render_seconds += batch.seconds
        rendered += batch.rendered
    return {
        "cells": len(meta.cells),
        "icons_rendered": rendered,
        "render_seconds": round(render_seconds, 1),
        "faithfulness": _percentiles([c.faithfulness for c in meta.cells]),
        "label_agreement": meta.label_agreement,
        "atlas": str(paths.atlas_png(gdir)),
        "labelled": str(paths.atlas_labelled(gdir)),
    }


def manifest(run_dir: str | Path, config: dict) -> Path:
    """Gather the run's records -> ``RUN/manifest.json`` (read by ``actlas info`` and the viewer).

    ``config`` is the run's whole config (every default filled in): its layers, grid sizes and
    ``render.cells_per_job`` say which artifacts belong to the current plan.
    """
    run_dir = Path(run_dir)
    stores = shard_stores(run_dir)
    collect = [{"store": st.name, **store.shard_attrs(st).get("summary", {})} for st in stores]
    # every model setting, declared or defaulted, as collect resolved it
    model = store.shard_attrs(stores[0]).get("params", {}).get("model") if stores else None
    cells_per_job = int(config.get("render", {}).get("cells_per_job", 0))
    layers = {}
    for layer in config["layers"]:
        entry: dict = {}
        if paths.layout_info(run_dir, layer).exists():
            entry["layout"] = read_layout_info(paths.layout_info(run_dir, layer)).to_json()
        grids = {}
        for n in config["grid"]["sizes"]:
            record = _grid_record(paths.grid_dir(run_dir, layer, n), cells_per_job)
            if record is not None:
                grids[str(n)] = record
        entry["grids"] = grids
        layers[layer] = entry
    record = Manifest(
        actlas=versions(),
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        host={"cpus": os.cpu_count(), "machine": platform.machine()},
        config=config,
        model=model,
        collect={
            "shards": len(collect),
            "images": sum(c.get("images", 0) for c in collect),
            "skipped": sum(c.get("skipped", 0) for c in collect),
            "seconds": round(sum(c.get("seconds", 0) for c in collect), 1),
            "per_shard": collect,
        },
        layers=layers,
    )
    return write_manifest(run_dir, record)


def info(run_dir: str | Path) -> dict:
    """A one-object summary of a finished run (what ``actlas info`` prints): model, layers, counts,
    atlases, timings, the class atlases, comparisons and patch reports of its config, and a
    ``head: probe`` model's probe (its held-out accuracy)."""
    m = read_manifest(run_dir)
    layers = {}
    for layer, entry in m.layers.items():
        grids = entry.get("grids", {})
        layout = entry.get("layout", {})
        layers[layer] = {
            "samples": layout.get("samples"),
            "layout_backend": layout.get("backend"),
            "layout_seconds": layout.get("total_seconds"),
            "grid_sizes": [int(g) for g in grids],
            "icons": sum(g["cells"] for g in grids.values()),
            "faithfulness_median": {g: v["faithfulness"]["median"] for g, v in grids.items()},
            "label_agreement": {g: v.get("label_agreement") for g, v in grids.items()},
            "atlases": [v["atlas"] for v in grids.values()],
            "render_seconds": {g: v["render_seconds"] for g, v in grids.items()},
        }
    run = Path(run_dir)

    def found(pattern: str) -> list[str]:
        return sorted(str(q) for q in run.glob(pattern))

    return {
        "run_dir": str(run_dir),
        "model": m.config.get("model"),
        "layers": layers,
        "class_atlases": found(f"*/class-*/{paths.ATLAS_PNG}"),
        "comparisons": found(f"*/compare-*/{paths.COMPARE_PNG}"),
        "patch_reports": found(f"{paths.PATCHES}/*/{paths.REPORT_MD}"),
        "concepts": {
            Path(q).parent.parent.name: read_concepts(q).summary()
            for q in found(f"*/{paths.CONCEPTS}/{paths.CONCEPTS_JSON}")
        },
        "images": m.collect["images"],
        "skipped": m.collect["skipped"],
        "collect_seconds": m.collect["seconds"],
        **({"probe": _probe_summary(run)} if paths.probe_npz(run).exists() else {}),
        "versions": m.actlas,
    }


def _probe_summary(run: Path) -> dict:
    """A ``head: probe`` run's probe: its held-out accuracy and what it was measured on."""
    from ..formats.probe import read_probe

    record = read_probe(run).to_json()
    keep = ("accuracy", "held_out", "train", "chance", "evaluate", "classes", "layer", "dims", "digest")
    return {k: record[k] for k in keep}
