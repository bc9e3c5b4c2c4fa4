"""The activation store: one Zarr group per shard, committed row counts, merged, verified reads.

Each shard store (``RUN/collect/shard-NNNNN.zarr``) is written by one collect job only, so
concurrent jobs never share a chunk. Rows are appended in chunks; after every chunk the group's
``committed`` attribute records how many rows of each array are final (Zarr's local store writes
every chunk and metadata file atomically). Reopening truncates anything past the commit, so a
killed writer resumes without duplicated or zero-filled rows. Readers see only committed rows.

Every chunk carries a crc32c checksum (Zarr's ``crc32c`` codec, after compression), and every
chunk is written even when it holds only zeros, so a reader can tell a damaged chunk (checksum
mismatch) and a missing one (Zarr alone would read a missing chunk as zeros) from good data.
Readers check the row counts a finished store promises (its ``summary``) and raise ``StoreError``
naming the store, the array and the chunk.
"""

from __future__ import annotations

import asyncio
import errno
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import Crc32cCodec, ZstdCodec
from zarr.core.sync import sync as zarr_sync

from ..errors import StoreError
from ..text import error_line

# 3: each photo's mean activation and attribution per layer (images/mean/LAYER, images/mean_attr/LAYER: what
# aligned atlases lay out); 2: crc32c on every chunk, empty chunks written; older formats are refused
FORMAT = 3
CHUNK_ROWS = 8192
_WRITE = {"write_empty_chunks": True}  # a chunk of zeros is written too: missing means missing


@dataclass(frozen=True)
class Column:
    """An array of the store: per-row tail shape and dtype."""

    name: str  # "images/label", "features.13/activation", ...
    tail: tuple[int, ...]
    dtype: str


RECOLLECT = "delete the store and run collect again (the workflow then re-collects that shard)"


def old_format(path, found) -> str:
    """The one line for a store of another format than this actlas's."""
    return (
        f"{path} is in store format {found!r}, this actlas reads and writes format {FORMAT} (checksummed chunks, "
        "each photo's mean per layer); delete it (or the run directory's collect/ folder) to collect again: "
        "the workflow re-collects it by itself"
    )


def photo_mean(layer: str) -> str:
    """The store array of each photo's mean activation at ``layer`` over every position: ``images/mean/LAYER``."""
    return f"images/mean/{layer}"


def photo_attr(layer: str) -> str:
    """The store array of each photo's mean attribution at ``layer`` to its top classes: ``images/mean_attr/LAYER``."""
    return f"images/mean_attr/{layer}"


def _damaged(path, what: str) -> StoreError:
    return StoreError(f"{path}: {what}; {RECOLLECT}")


def open_group(path: str | Path, mode: str = "r") -> zarr.Group:
    """Open a store's group; a damaged or unreadable group metadata file is a ``StoreError``."""
    try:
        return zarr.open_group(str(path), mode=mode)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError):
        raise
    except (ValueError, TypeError, KeyError, OSError, json.JSONDecodeError) as err:
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise _damaged(path, f"group metadata (zarr.json) is damaged ({error_line(err)})") from err


def committed_counts(group: zarr.Group, path) -> dict[str, int]:
    """The ``committed`` attribute, checked to be a mapping of array name to a non-negative int."""
    counts = group.attrs.get("committed")
    if not isinstance(counts, dict) or not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 0 for k, v in counts.items()
    ):
        raise _damaged(path, f"its 'committed' attribute is damaged ({str(counts)[:80]!r})")
    return counts


def open_shard(path: str | Path, columns: list[Column], params: dict) -> zarr.Group:
    """Open (or create) a shard store for appending, truncated to its committed rows.

    ``params`` identify what the store holds (model, layers, seed, ...); reopening a store made with
    other params raises ``StoreError`` rather than mixing two runs, and so does a store of another
    format (an older actlas's stores have no checksums).
    """
    path = Path(path)
    group = open_group(path, mode="a")
    if "params" in group.attrs:
        if group.attrs.get("format") != FORMAT:
            raise StoreError(old_format(path, group.attrs.get("format")))
        if group.attrs["params"] != params:
            raise StoreError(
                f"{path} was written with other parameters or another actlas version; "
                "delete it (or the run directory) to collect again"
            )
    else:
        group.attrs.update({"format": FORMAT, "params": params, "committed": {}, "complete": False})
    committed = dict(committed_counts(group, path))
    for col in columns:
        if col.name not in group:
            rows = max(CHUNK_ROWS // max(int(np.prod(col.tail)), 1), 256)
            group.create_array(
                col.name,
                shape=(0, *col.tail),
                chunks=(rows, *col.tail),
                dtype=col.dtype,
                compressors=[ZstdCodec(level=0), Crc32cCodec()],
                config=_WRITE,
            )
        array = group[col.name].with_config(_WRITE)
        n = committed.get(col.name, 0)
        require_chunks(path, col.name, array, min(n, array.shape[0]))  # appending would rewrite it from zeros
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
    name = next(iter(rows), "")
    try:
        _write_rows(group, rows, counts)
        for name, values in rows.items():
            counts[name] += len(values)
        group.attrs["committed"] = counts  # only once every array's rows are written
    except ValueError as err:
        if "checksum" not in str(err).lower():
            raise
        raise _damaged(
            getattr(group.store, "root", group.store), f"a chunk of {name} is damaged (crc32c mismatch)"
        ) from err
    except OSError as err:
        raise StoreError(
            f"cannot write to the store {group.store}: {err.strerror or err}. The rows committed before "
            "stay readable; free disk space (or fix the folder's permissions) and run the same command "
            "again to resume from them"
        ) from err


def _write_rows(group: zarr.Group, rows: dict[str, np.ndarray], counts: dict[str, int]) -> None:
    """Grow every array of ``rows`` and write its rows at ``counts[name]``, all arrays concurrently.

    One round trip to Zarr's event loop for the whole batch (Zarr's synchronous API pays one per
    open, resize and write: most of a commit's time for small batches); the same metadata and chunks.
    """
    async_group = getattr(group, "_async_group", None)
    if async_group is None:  # another Zarr: the synchronous API, array by array
        for name, values in rows.items():
            array = group[name].with_config(_WRITE)
            start = counts[name]
            array.resize((start + len(values), *array.shape[1:]))
            if len(values):
                array[start : start + len(values)] = values
        return

    async def one(name: str, values: np.ndarray) -> None:
        try:
            array = (await async_group.getitem(name)).with_config(_WRITE)
            start = counts[name]
            await array.resize((start + len(values), *array.metadata.shape[1:]))
            if len(values):
                await array.setitem(slice(start, start + len(values)), values)
        except ValueError as err:
            if "checksum" in str(err).lower():  # name the array here: the caller cannot tell which failed
                raise _damaged(
                    getattr(group.store, "root", group.store), f"a chunk of {name} is damaged (crc32c mismatch)"
                ) from err
            raise

    async def every() -> None:
        results = await asyncio.gather(*(one(n, v) for n, v in rows.items()), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    zarr_sync(every())


def finish(group: zarr.Group, **attrs) -> None:
    """Mark a shard store complete, with summary attributes."""
    group.attrs.update({**attrs, "complete": True})


# --------------------------------------------------------------------------- checked reads


def checked_array(group: zarr.Group, path, name: str) -> zarr.Array:
    try:
        array = group[name]
    except KeyError:
        raise _damaged(path, f"array {name} is missing") from None
    except (ValueError, TypeError, OSError, json.JSONDecodeError) as err:
        raise _damaged(path, f"array {name}: its metadata (zarr.json) is damaged ({error_line(err)})") from err
    if not isinstance(array, zarr.Array):
        raise _damaged(path, f"{name} is a group, not an array")
    return array


def promised_rows(group: zarr.Group, path, name: str) -> int | None:
    """Rows a finished store promises for ``name`` (its summary), or None while it is being written."""
    if not group.attrs.get("complete"):
        return None
    summary = group.attrs.get("summary", {})
    if not isinstance(summary, dict):
        raise _damaged(path, "its 'summary' attribute is damaged")
    head = name.rsplit("/", 1)[0]
    if head.split("/", 1)[0] == "images":  # one row a photo: images/label, images/mean/LAYER ...
        value = summary.get("images")
    else:
        value = summary.get("rows", {}).get(head) if isinstance(summary.get("rows"), dict) else None
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _damaged(path, f"its summary's row count for {name} is damaged ({value!r})")
    return value


def checked_rows(group: zarr.Group, path, name: str, array: zarr.Array | None = None) -> int:
    """Committed rows of ``name``, checked against the array's shape and the store's summary."""
    array = array if array is not None else checked_array(group, path, name)
    n = committed_counts(group, path).get(name, 0)
    if n > array.shape[0]:
        raise _damaged(path, f"array {name} has {array.shape[0]} rows but {n} are committed")
    promised = promised_rows(group, path, name)
    if promised is not None and promised != n:
        raise _damaged(path, f"array {name} has {n} committed rows but the finished store promises {promised}")
    return n


def _chunk_keys(array: zarr.Array, n: int) -> list[tuple[int, tuple[int, ...], str]]:
    """(first row, chunk index, key) of every chunk holding rows 0..n-1."""
    chunks = array.chunks
    rest = [range(math.ceil(s / c)) if s else range(0) for s, c in zip(array.shape[1:], chunks[1:])]
    encode = array.metadata.chunk_key_encoding.encode_chunk_key
    out = []
    for i in range(math.ceil(n / chunks[0]) if n else 0):
        for tail in np.ndindex(*[len(r) for r in rest]) if rest else [()]:
            index = (i, *tail)
            out.append((i * chunks[0], index, encode(index)))
    return out


def missing_chunks(path, name: str, array: zarr.Array, n: int) -> list[str]:
    """Keys of the chunks that rows 0..n-1 of ``name`` need but the store lacks (Zarr reads those as zeros)."""
    base = Path(path) / name
    return [key for _, _, key in _chunk_keys(array, n) if not (base / key).is_file()]


def require_chunks(path, name: str, array: zarr.Array, n: int) -> None:
    """Raise ``StoreError`` naming the first chunk rows 0..n-1 of ``name`` need that the store lacks."""
    missing = missing_chunks(path, name, array, n)
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise _damaged(path, f"array {name} chunk {missing[0]} is missing{more}")


def read_rows(
    path, name: str, array: zarr.Array, n: int, lo: int = 0, hi: int | None = None, check_missing: bool = True
) -> np.ndarray:
    """Rows lo..hi of ``name`` (hi <= n committed), every chunk present and checksum-verified."""
    hi = n if hi is None else hi
    if check_missing:
        require_chunks(path, name, array, n)
    try:
        return array[lo:hi]
    except (ValueError, RuntimeError, OSError, TypeError) as err:
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise
        rows = array.chunks[0]
        for first, _, key in _chunk_keys(array, n):
            if first + rows <= lo or first >= hi:
                continue
            try:
                array[max(first, lo) : min(first + rows, hi)]
            except Exception as inner:  # name the chunk, whatever the codec raised
                kind = "crc32c mismatch" if "checksum" in str(inner).lower() else error_line(inner)
                raise _damaged(path, f"array {name} chunk {key} is damaged ({kind})") from inner
        raise _damaged(path, f"array {name} cannot be read ({error_line(err)})") from err


def read_checked(path: str | Path, name: str) -> np.ndarray:
    """The committed rows of ``name`` of one store, every needed chunk present and checksum-verified."""
    group = open_group(path)
    array = checked_array(group, path, name)
    n = checked_rows(group, path, name, array)
    return read_rows(path, name, array, n)


def committed_of(path: str | Path, name: str) -> int:
    """Committed rows of ``name`` in the store at ``path`` (0 if it does not exist yet).

    Raises ``StoreError`` when the store is damaged: metadata that does not parse, more rows committed
    than the array holds, a count other than a finished store promises, or a needed chunk missing.
    """
    try:
        group = open_group(path)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError):
        return 0
    if name not in committed_counts(group, path):
        return 0
    array = checked_array(group, path, name)
    n = checked_rows(group, path, name, array)
    require_chunks(path, name, array, n)
    return n


def is_complete(path: str | Path) -> bool:
    """Whether a shard store exists and was finished (a store whose metadata is damaged is not)."""
    try:
        return bool(zarr.open_group(str(path), mode="r").attrs.get("complete", False))
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, ValueError, TypeError, json.JSONDecodeError):
        return False


def read(paths: list[str | Path], name: str) -> np.ndarray:
    """The committed rows of ``name`` from every shard store, concatenated in order.

    Every chunk read is checksum-verified and checked to exist; a damaged store raises ``StoreError``
    naming the store, the array and the chunk.
    """
    parts = [read_checked(path, name) for path in paths]
    return np.concatenate(parts) if parts else np.zeros((0,))


class _Checked:
    """An array-like over the committed rows of one store's array whose reads name a damaged chunk."""

    def __init__(self, path, name: str, array: zarr.Array, n: int):
        self.path, self.name, self.array, self.n = path, name, array, n
        self.shape = (n, *array.shape[1:])
        self.dtype = array.dtype
        self.ndim = len(self.shape)

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        first = key[0] if key else slice(None)
        if isinstance(first, slice) and first.step in (None, 1):
            lo, hi, _ = first.indices(self.n)
            rows = read_rows(self.path, self.name, self.array, self.n, lo, max(lo, hi), check_missing=False)
            return rows[(slice(None), *key[1:])]
        return read_rows(self.path, self.name, self.array, self.n, check_missing=False)[key]


def read_dask(paths: list[str | Path], name: str):
    """Like ``read`` but lazy: a Dask array over all shards (for data larger than memory).

    Row counts and the presence of every chunk are checked now; checksums as chunks are read.
    """
    import dask.array as da

    parts = []
    for path in paths:
        group = open_group(path)
        array = checked_array(group, path, name)
        n = checked_rows(group, path, name, array)
        require_chunks(path, name, array, n)
        checked = _Checked(path, name, array, n)
        parts.append(
            da.from_array(
                checked,
                chunks=(array.chunks[0], *array.shape[1:]),
                asarray=True,
                meta=np.empty((0,) * checked.ndim, dtype=array.dtype),
                name=False,
            )
        )
    return da.concatenate(parts)


def shard_attrs(path: str | Path) -> dict:
    """The attributes of a shard store (params, committed counts, summary)."""
    return dict(open_group(path).attrs)


def layer_attrs(path: str | Path, layer: str) -> dict:
    """The attributes of one layer's group in a shard store (``spatial``, ``channels``, ``kind``)."""
    return dict(open_group(path)[layer].attrs)
