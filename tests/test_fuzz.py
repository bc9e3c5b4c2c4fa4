"""Fuzz: random corruptions of a small finished run are detected, or change nothing a stage reads.

A tiny finished run (tests/_tiny_run.py: two shard stores, layout, grid, icons, atlas, manifest,
sealed) is damaged 240 times, one file at a time: deleted, truncated or bit-flipped (1 to 8 bits),
its modification time kept, as a failing disk would. Targets: store chunks, store metadata and
attribute files (zarr.json), npz, npy and json artifacts, shard lists and PNGs. Each corruption
must be reported by ``verify_run``, or make the next stage's read fail, or leave everything a
stage reads unchanged; none may silently change what a stage reads. The outcome counts are printed.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from _tiny_run import LAYER, make_tiny_run
from PIL import Image

from actlas.data import store
from actlas.data.samples import load_samples
from actlas.formats import shards as shard_files
from actlas.formats.shards import shard_stores
from actlas.verify import seal, verify_run

TRIALS = 240


def _targets(run: Path) -> dict[str, list[Path]]:
    files = [p for p in sorted(run.rglob("*")) if p.is_file() and not p.name.startswith(".actlas")]
    kinds = {
        "chunk": [p for p in files if "/c/" in str(p.relative_to(run)) and ".zarr" in str(p)],
        "zarr.json": [p for p in files if p.name == "zarr.json"],
        "npz": [p for p in files if p.suffix == ".npz"],
        "npy": [p for p in files if p.suffix == ".npy"],
        "json": [p for p in files if p.suffix == ".json" and ".zarr" not in str(p)],
        "shard list": [p for p in files if p.parent.name == "shards"],
        "png": [p for p in files if p.suffix == ".png"],
    }
    return {k: v for k, v in kinds.items() if v}


def _reads(run: Path) -> dict:
    """Everything the stages after collect read from the run, as plain values (raises where a read fails)."""
    out = {}
    samples = load_samples(run, LAYER)
    for field in ("activation", "attr_class", "attr_value", "image", "position", "label", "pred", "prob", "size"):
        out[f"samples.{field}"] = getattr(samples, field)
    out["samples.spatial"], out["samples.paths"] = samples.spatial, samples.paths
    out["layout.activation"] = np.asarray(store.read_dask(shard_stores(run), f"{LAYER}/activation").compute())
    for p in sorted(run.rglob("*")):
        if ".zarr" in str(p) or not p.is_file() or p.name.startswith(".actlas"):
            continue
        key = str(p.relative_to(run))
        if p.suffix == ".npy":
            out[key] = np.load(p, allow_pickle=False)
        elif p.suffix == ".npz":
            with np.load(p, allow_pickle=False) as f:
                out[key] = {k: f[k] for k in f.files}
        elif p.suffix == ".json":
            out[key] = json.loads(p.read_text())
        elif p.suffix == ".txt":
            out[key] = shard_files.read_shard(p)
        elif p.suffix in (".png", ".jpg"):
            with Image.open(p) as im:
                out[key] = np.asarray(im.convert("RGB"))
    return out


def _outcome(run: Path, reference: dict) -> str:
    """What the stages after collect see: a failed read, a missing output (Snakemake reruns its stage), or values."""
    try:
        now = _reads(run)
    except Exception:  # noqa: BLE001 - the next stage's read fails: detected there
        return "next stage"
    if reference.keys() - now.keys():
        return "missing output (rebuilt)"
    return "unchanged" if _same(now, reference) else "silent"


def _same(a, b) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _corrupt(path: Path, rng: np.random.Generator) -> str:
    """Damage one file, keeping its modification time; returns what was done."""
    data = path.read_bytes()
    st = path.stat()
    op = rng.choice(["delete", "truncate", "flip", "flip"]) if data else "delete"
    if op == "delete":
        path.unlink()
        return op
    if op == "truncate":
        data = data[: int(rng.integers(0, len(data)))]
    else:
        buf = bytearray(data)
        for _ in range(int(rng.integers(1, 9))):
            buf[int(rng.integers(0, len(buf)))] ^= 1 << int(rng.integers(0, 8))
        if bytes(buf) == data:
            buf[0] ^= 1
        data = bytes(buf)
    path.write_bytes(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    return op


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    run = make_tiny_run(tmp_path_factory.mktemp("fuzz"))
    seal(run)
    return run


def test_random_corruptions_are_detected_or_change_nothing(finished):
    run = finished
    assert verify_run(run) == []
    reference = _reads(run)
    targets = _targets(run)
    kinds = sorted(targets)
    rng = np.random.default_rng(14)
    outcomes: Counter = Counter()
    by_kind: Counter = Counter()
    without_seal: Counter = Counter()
    silent = []
    for trial in range(TRIALS):
        kind = kinds[trial % len(kinds)]
        path = targets[kind][int(rng.integers(0, len(targets[kind])))]
        original, st = path.read_bytes(), path.stat()
        op = _corrupt(path, rng)
        try:
            if verify_run(run, use_seal=False):
                outcome = "verify"
            elif verify_run(run):
                outcome = "verify (seal)"
                without_seal[f"{_outcome(run, reference)} ({kind})"] += 1  # what a run without a seal would see
            else:
                outcome = _outcome(run, reference)
            if outcome == "silent":
                silent.append(f"{op} {path.relative_to(run)}")
            outcomes[outcome] += 1
            by_kind[(kind, outcome)] += 1
        finally:
            path.write_bytes(original)
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    print(f"\nfuzz outcomes over {TRIALS} corruptions: {dict(outcomes)}")
    for kind in kinds:
        print(f"  {kind}: { ({o: n for (k, o), n in sorted(by_kind.items()) if k == kind}) }")
    print(f"  found by the seal only; without it: {dict(sorted(without_seal.items()))}")
    assert sum(outcomes.values()) == TRIALS >= 200
    assert not silent, f"corruptions that silently changed what a stage reads: {silent}"
    assert verify_run(run) == []  # every file restored
