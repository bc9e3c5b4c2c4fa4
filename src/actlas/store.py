"""The activation store: one Zarr group per shard, committed row counts, merged reads.

Each shard store (``RUN/collect/shard-NNNNN.zarr``) is written by one collect job only, so
concurrent jobs never share a chunk. Rows are appended in chunks; after every chunk the group's
``committed`` attribute records how many rows of each array are final (Zarr's local store writes
every chunk and metadata file atomically). Reopening truncates anything past the commit, so a
killed writer resumes without duplicated or zero-filled rows. Readers see only committed rows.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr

FORMAT = 1
CHUNK_ROWS = 8192


class StoreError(RuntimeError):
    """A store that does not match what the caller expects (another model, layer set or version)."""


@dataclass(frozen=True)
class Column:
    """An array of the store: per-row tail shape and dtype."""

    name: str  # "images/label", "features.13/activation", ...
    tail: tuple[int, ...]
    dtype: str


def open_shard(path: str | Path, columns: list[Column], params: dict) -> zarr.Group:
    """Open (or create) a shard store for appending, truncated to its committed rows.

    ``params`` identify what the store holds (model, layers, seed, ...); reopening a store made with
    other params raises ``StoreError`` rather than mixing two runs.
    """
    path = Path(path)
    group = zarr.open_group(str(path), mode="a")
    if "params" in group.attrs:
        if group.attrs["params"] != params or group.attrs.get("format") != FORMAT:
            raise StoreError(
                f"{path} was written with other parameters or another actlas version; "
                "delete it (or the run directory) to collect again"
            )
    else:
        group.attrs.update({"format": FORMAT, "params": params, "committed": {}, "complete": False})
    committed = dict(group.attrs["committed"])
    for col in columns:
        if col.name not in group:
            rows = max(CHUNK_ROWS // max(int(np.prod(col.tail)), 1), 256)
            group.create_array(col.name, shape=(0, *col.tail), chunks=(rows, *col.tail), dtype=col.dtype)
        array = group[col.name]
        n = committed.get(col.name, 0)
        if array.shape[0] != n:
            array.resize((n, *col.tail))
        committed[col.name] = n
    group.attrs["committed"] = committed
    return group


def committed(group: zarr.Group, name: str) -> int:
    """Rows of ``name`` that are final."""
    return int(group.attrs["committed"].get(name, 0))


def append(group: zarr.Group, rows: dict[str, np.ndarray]) -> None:
    """Append rows to several arrays, then commit them together (one metadata write).

    A failed write (disk full, read-only or vanished folder) raises ``StoreError`` saying so; the
    rows committed before it stay readable, and running the same command again resumes there.
    """
    counts = dict(group.attrs["committed"])
    try:
        for name, values in rows.items():
            array = group[name]
            start = counts[name]
            array.resize((start + len(values), *array.shape[1:]))
            if len(values):
                array[start : start + len(values)] = values
            counts[name] = start + len(values)
        group.attrs["committed"] = counts
    except OSError as err:
        raise StoreError(
            f"cannot write to the store {group.store}: {err.strerror or err}. The rows committed before "
            "stay readable; free disk space (or fix the folder's permissions) and run the same command "
            "again to resume from them"
        ) from err
    if os.environ.get("ACTLAS_TEST_COMMIT_DELAY"):  # lets kill-and-resume tests land between commits
        time.sleep(float(os.environ["ACTLAS_TEST_COMMIT_DELAY"]))


def finish(group: zarr.Group, **attrs) -> None:
    """Mark a shard store complete, with summary attributes."""
    group.attrs.update({**attrs, "complete": True})


def committed_of(path: str | Path, name: str) -> int:
    """Committed rows of ``name`` in the store at ``path`` (0 if it does not exist yet)."""
    try:
        return committed(zarr.open_group(str(path), mode="r"), name)
    except (FileNotFoundError, KeyError, zarr.errors.GroupNotFoundError):
        return 0


def is_complete(path: str | Path) -> bool:
    """Whether a shard store exists and was finished."""
    try:
        return bool(zarr.open_group(str(path), mode="r").attrs.get("complete", False))
    except (FileNotFoundError, zarr.errors.GroupNotFoundError):
        return False


def read(paths: list[str | Path], name: str) -> np.ndarray:
    """The committed rows of ``name`` from every shard store, concatenated in order."""
    parts = []
    for path in paths:
        group = zarr.open_group(str(path), mode="r")
        parts.append(group[name][: committed(group, name)])
    return np.concatenate(parts) if parts else np.zeros((0,))


def read_dask(paths: list[str | Path], name: str):
    """Like ``read`` but lazy: a Dask array over all shards (for data larger than memory)."""
    import dask.array as da

    parts = []
    for path in paths:
        group = zarr.open_group(str(path), mode="r")
        parts.append(da.from_zarr(group[name])[: committed(group, name)])
    return da.concatenate(parts)


def shard_attrs(path: str | Path) -> dict:
    """The attributes of a shard store (params, committed counts, summary)."""
    return dict(zarr.open_group(str(path), mode="r").attrs)
