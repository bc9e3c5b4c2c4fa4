"""The limits of every numeric setting and the known values of free-text ones, checked in one line.

Every number a setting takes is finite and within its limits, checked where a config is read
(``actlas.settings.fill``, at the workflow's parse time) and where the CLI reads an option
(``actlas.cli_options``): an infinite learning rate or whitening ridge, a NaN distance or a batch of a
billion icons is refused before any job runs. Pure data and checks: no torch, no file access.
"""

from __future__ import annotations

import math
from dataclasses import fields

from .errors import ConfigError
from .settings import Atlas, ClassAtlas, Collect, Comparison, Grid, Layout, Patch, Render, RenderParams, Run
from .text import did_you_mean

# (class, field) -> (low, high), inclusive; ``OPEN`` names the bounds that are exclusive

BIG = 2**31 - 1  # any count; also numpy's and torch's seeds stay within it
LIMITS: dict[tuple[type, str], tuple[float, float]] = {
    (Run, "limit"): (1, BIG),
    (Run, "seed"): (0, BIG),
    (Collect, "shard_size"): (1, 10_000_000),
    (Collect, "positions"): (0, 100_000),
    (Collect, "attr_top"): (1, 100_000),
    (Collect, "batch_size"): (1, 65_536),
    (Collect, "chunk"): (1, 10_000_000),
    (Collect, "workers"): (0, 1024),
    (Collect, "threads"): (1, 4096),
    (Layout, "n_neighbors"): (2, 10_000),
    (Layout, "min_dist"): (0.0, 1.0),  # UMAP's spread is 1
    (Layout, "pca"): (0, 1_000_000),
    (Layout, "whitening_eps"): (0.0, 1e6),
    (Grid, "sizes"): (1, 400),
    (Grid, "min_count"): (1, BIG),
    (RenderParams, "size"): (16, 4096),
    (RenderParams, "min_positions"): (0, 256),
    (RenderParams, "steps"): (1, 1_000_000),
    (RenderParams, "lr"): (0.0, 10.0),
    (RenderParams, "warmup"): (0, 1_000_000),
    (RenderParams, "lr_end"): (0.0, 10.0),
    (RenderParams, "coarse"): (0, 1_000_000),
    (RenderParams, "check_every"): (0, 1_000_000),
    (RenderParams, "redirect"): (0, 1_000_000),
    (RenderParams, "power"): (0.0, 100.0),
    (RenderParams, "tries"): (1, 1000),
    (RenderParams, "batch_size"): (1, 4096),
    (RenderParams, "pad"): (0, 4096),
    (RenderParams, "jitter"): (0, 4096),
    (RenderParams, "scale"): (0.0, 1.0),
    (RenderParams, "rotate"): (0, 180),
    (RenderParams, "decay_power"): (0.0, 16.0),
    (RenderParams, "seed"): (0, BIG),
    (Render, "cells_per_job"): (0, 10_000_000),
    (Render, "threads"): (1, 4096),
    (Atlas, "n_examples"): (0, 1000),
    (Atlas, "example_extent"): (0.0, 1.0),
    (Atlas, "min_cell"): (1, 4096),
    (ClassAtlas, "top"): (1, 100_000_000),
    (ClassAtlas, "grid"): (1, 400),
    (ClassAtlas, "min_count"): (1, BIG),
    (ClassAtlas, "n_examples"): (0, 1000),
    (Comparison, "top"): (1, 100_000_000),
    (Comparison, "grid"): (1, 400),
    (Comparison, "min_count"): (1, BIG),
    (Comparison, "n_examples"): (0, 1000),
    (Patch, "candidates"): (1, 100_000),
    (Patch, "crops"): (0, 1000),
    (Patch, "sizes"): (0.0, 1.0),
    (Patch, "max_images"): (1, 100_000_000),
    (Patch, "max_evaluate"): (1, 100_000_000),
    (Patch, "batch_size"): (1, 65_536),
}
# exclusive bounds: (class, field) -> "low" or "high"
OPEN = {
    (Layout, "whitening_eps"): "low",
    (RenderParams, "lr"): "low",
    (RenderParams, "scale"): "high",
    (Atlas, "example_extent"): "low",
    (Patch, "sizes"): "low",
}


def limits(cls, name: str) -> tuple[float, float, str] | None:
    """(low, high, open bound or "") of a numeric field of ``cls`` (its base classes' too), or None."""
    for base in cls.__mro__:
        if (base, name) in LIMITS:
            return (*LIMITS[base, name], OPEN.get((base, name), ""))
    return None


def _number_problem(value, lim: tuple[float, float, str] | None) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return ""  # the schema and the option types check types
    if not math.isfinite(value):
        return "is not a finite number"
    if lim is None:
        return "" if abs(value) <= 1e12 else "is out of range"
    low, high, open_ = lim
    if value < low or (open_ == "low" and value == low):
        return f"must be {'over' if open_ == 'low' else 'at least'} {low:g}"
    if value > high or (open_ == "high" and value == high):
        return f"must be {'under' if open_ == 'high' else 'at most'} {high:g}"
    return ""


def check_number(cls, name: str, value, where: str = "") -> None:
    """Raise one ``ConfigError`` line when a numeric setting (or a number of its list) is not finite or out of range."""
    values = value if isinstance(value, (list, tuple)) else [value]
    for v in values:
        problem = _number_problem(v, limits(cls, name))
        if problem:
            key = f"{where}.{name}" if where else name
            low, high, _ = limits(cls, name) or (-1e12, 1e12, "")
            raise ConfigError(f"{key}: {v!r} {problem}; give a number from {low:g} to {high:g}")


def check_numbers(obj, where: str = "") -> None:
    """``check_number`` on every field of a settings dataclass (a config key as written: ``class``, not ``cls``)."""
    for f in fields(obj):
        check_number(type(obj), f.name, getattr(obj, f.name), where)


# free-text settings with a known set of values (not a fixed one: the CLI keeps its text option)
METRICS = (
    "cosine", "euclidean", "l2", "manhattan", "l1", "taxicab", "chebyshev", "linf", "linfinity",
    "canberra", "braycurtis", "correlation", "hellinger",
)  # fmt: skip
KNOWN = {(Layout, "metric"): METRICS}


def check_known(cls, name: str, value, where: str = "") -> None:
    """Raise one ``ConfigError`` line (with "did you mean") for a value a free-text setting does not take."""
    known = next((KNOWN[base, name] for base in cls.__mro__ if (base, name) in KNOWN), None)
    if known is not None and isinstance(value, str) and value not in known:
        key = f"{where}.{name}" if where else name
        hint = did_you_mean(value, known) or ""
        raise ConfigError(f"{key}: unknown value {value!r}{hint} (known: {', '.join(known)})")
