"""The run directory: every path and file name of a run, in one place, and the atomic writers.

Layout: ``docs/run-directory.md``. The Snakemake rules build their patterns from these
functions (with ``"{layer}"``, ``"{n}"`` ... as arguments), the stages read and write through
them. Pure: nothing here reads a file, except the few ``read_*`` and ``write_*`` helpers at the end.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np

PathLike = str | Path


def shard_name(i: int) -> str:
    """``shard-00003``."""
    return f"shard-{i:05d}"


def shards_dir(run: PathLike) -> Path:
    return Path(run) / "shards"


def shard_index(run: PathLike) -> Path:
    """``RUN/shards/index.json``: the shards of the current plan (stale lists beside it are ignored)."""
    return shards_dir(run) / "index.json"


def shard_skipped(run: PathLike) -> Path:
    """``RUN/shards/skipped.tsv``: files the listing left out, with their reason."""
    return shards_dir(run) / "skipped.tsv"


def shard_list(run: PathLike, shard: str) -> Path:
    return shards_dir(run) / f"{shard}.txt"


def shard_store(run: PathLike, shard: str) -> Path:
    return Path(run) / "collect" / f"{shard}.zarr"


def layer_dir(run: PathLike, layer: str) -> Path:
    return Path(run) / layer


def coords(run: PathLike, layer: str) -> Path:
    return layer_dir(run, layer) / "coords.npy"


def whiten(run: PathLike, layer: str) -> Path:
    return layer_dir(run, layer) / "whiten.npy"


def layout_info(run: PathLike, layer: str) -> Path:
    return layer_dir(run, layer) / "layout.json"


def grid_dir(run: PathLike, layer: str, n: int | str) -> Path:
    return layer_dir(run, layer) / f"grid-{n}"


def cells(folder: PathLike) -> Path:
    """``FOLDER/cells.npz`` of an atlas folder (``grid-N``, ``class-*``, ``compare-*``)."""
    return Path(folder) / "cells.npz"


def render_batch(folder: PathLike, batch: int | str) -> Path:
    """``FOLDER/render/batch-BBBBB.npz``: the icons of one render job."""
    name = f"{batch:05d}" if isinstance(batch, int) else batch
    return Path(folder) / "render" / f"batch-{name}.npz"


def n_batches(n_cells: int, cells_per_job: int) -> int:
    """How many render jobs a grid of ``n_cells`` cells needs (at least one)."""
    return max(1, -(-n_cells // cells_per_job)) if cells_per_job else 1


# what the atlas stage writes into an atlas folder (besides the folders icons/ and examples/)
ATLAS_FILES = ("atlas.png", "atlas-labelled.png", "atlas.json")


def class_dir(run: PathLike, layer: str, name: str) -> Path:
    """``RUN/LAYER/class-<name>``."""
    return layer_dir(run, layer) / f"class-{name}"


def compare_dir(run: PathLike, layer: str, name: str) -> Path:
    """``RUN/LAYER/compare-<a>-<b>``."""
    return layer_dir(run, layer) / f"compare-{name}"


def patch_dir(run: PathLike, name: str) -> Path:
    return Path(run) / "patches" / name


def viewer_dir(run: PathLike) -> Path:
    return Path(run) / "viewer"


def manifest(run: PathLike) -> Path:
    return Path(run) / "manifest.json"


def icon_cache(run: PathLike) -> Path:
    return Path(run) / "cache" / "icons"


def log(run: PathLike, stage: str, name: str) -> Path:
    return Path(run) / "logs" / stage / f"{name}.log"


def benchmark(run: PathLike, stage: str, name: str) -> Path:
    return Path(run) / "benchmarks" / stage / f"{name}.tsv"


def lock(run: PathLike) -> Path:
    return Path(run) / ".actlas.lock"


def slug(text: str) -> str:
    """Folder-safe lower-case name: "great white shark" -> "great-white-shark"."""
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-") or "x"


# --------------------------------------------------------------------------- reading and writing


def read_shard_index(run: PathLike) -> list[str]:
    """The shard names of the run's current plan (``RUN/shards/index.json``)."""
    path = shard_index(run)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: list the images first (actlas shards, or the workflow)")
    return list(json.loads(path.read_text())["shards"])


def shard_stores(run: PathLike) -> list[Path]:
    """The shard stores of the run's current plan, in shard order."""
    return [shard_store(run, s) for s in read_shard_index(run)]


def shard_lists(run: PathLike) -> list[Path]:
    """The shard lists of the run's current plan, in shard order."""
    return [shard_list(run, s) for s in read_shard_index(run)]


def _json_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(type(o).__name__)


def _partial(path: Path) -> Path:
    """A hidden sibling that no reader's pattern matches (``.NAME.partial``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".{path.name}.partial")


def write_json(path: PathLike, data) -> Path:
    """Write JSON atomically (a reader sees the old file or the whole new one)."""
    path = Path(path)
    tmp = _partial(path)
    tmp.write_text(json.dumps(data, indent=1, default=_json_default))
    os.replace(tmp, path)
    return path


def write_text(path: PathLike, text: str) -> Path:
    path = Path(path)
    tmp = _partial(path)
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def save_npz(path: PathLike, **arrays) -> Path:
    path = Path(path)
    tmp = _partial(path)
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, path)
    return path


def save_npy(path: PathLike, array: np.ndarray) -> Path:
    path = Path(path)
    tmp = _partial(path)
    with open(tmp, "wb") as f:
        np.save(f, array)
    os.replace(tmp, path)
    return path


def save_image(path: PathLike, image, **kw) -> Path:
    """Save a PIL image atomically (format from the suffix)."""
    path = Path(path)
    tmp = _partial(path)
    image.save(tmp, format=image_format(path), **kw)
    os.replace(tmp, path)
    return path


def image_format(path: Path) -> str:
    return {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}[path.suffix.lower()]


def load_npz(path: PathLike) -> dict[str, np.ndarray]:
    """Every array of an npz (never unpickles)."""
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}
