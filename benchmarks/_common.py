"""Shared helpers of the benchmark scripts (not a test module; run the bench_*.py scripts)."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ASSETS = Path(os.environ.get("ACTLAS_ASSETS", ROOT.parent / "shared" / "assets"))
MODEL = str(ASSETS / "models" / "mobilenet_v2_imagenet.json")
IMAGES = [ASSETS / "images" / "imagenet-val", ASSETS / "images" / "imagenet-sample"]
LAYER = "features.13"


def photos(limit: int | None = None, seed: int = 0) -> list[tuple[str, int]]:
    """(path, label) rows of the shared photos, a deterministic selection of ``limit`` of them."""
    from actlas.data import images
    from actlas.models.load import load_model

    _, spec = load_model(MODEL)
    rows: list[tuple[str, int]] = []
    for folder in IMAGES:
        rows += images.list_images(str(folder), spec.synsets, spec.categories)
    return images.select(sorted(set(rows)), limit, seed)


def write_shard(rows: list[tuple[str, int]], path: Path) -> Path:
    """A shard list file of ``rows``."""
    from actlas.formats import shards as shard_files

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(shard_files.format_shard(rows))
    return path


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    """(seconds, result) of one call."""
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def interleave(cases: dict[str, Callable[[], object]], reps: int) -> dict[str, list[float]]:
    """Run every case once per repetition, alternating the order each repetition; seconds per case."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    names = list(cases)
    for r in range(reps):
        for name in names if r % 2 == 0 else names[::-1]:
            times[name].append(timed(cases[name])[0])
    return times


def median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def machine() -> str:
    """One line describing where a benchmark ran."""
    import torch

    try:
        load = f", load average {os.getloadavg()[0]:.1f}"
    except OSError:
        load = ""
    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{platform.machine()}, {os.cpu_count()} CPUs, {dev}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} torch threads{load}"
    )


def table(header: list[str], rows: list[list[object]]) -> str:
    """A plain Markdown table."""
    cells = [[str(c) for c in header]] + [[f"{c:.3g}" if isinstance(c, float) else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]

    def line(r: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"

    return "\n".join(
        [line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(r) for r in cells[1:]]
    )
