"""Shard lists, the shard index and skip lists.

- A **shard list** (``RUN/shards/shard-NNNNN.txt``) holds one JSON object ``{"path": ..., "label": ...}``
  a line, so any file name round-trips: tabs, newlines, leading dashes, any Unicode.
- The **shard index** (``RUN/shards/index.json``, ``{"shards": [names]}``) names the shards of the
  current plan; lists and stores an earlier plan left beside them are never read.
- A **skip list** (``RUN/shards/skipped.tsv``, and ``STORE.skipped.tsv`` beside each shard store)
  holds ``PATH<TAB>REASON`` lines: PATH escaped (``\\``, ``\\t``, ``\\n``, ``\\r``; undecodable bytes
  shown as ``\\xNN``), REASON one line.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .. import paths
from ..errors import DataError, MissingError
from ..text import one_line
from .atomic import PathLike, read_json, write_json, write_text

Row = tuple[str, int]


# --------------------------------------------------------------------------- shard lists


def format_shard(rows: list[Row]) -> str:
    """Text of a shard list: one JSON object a line. A path that is not valid Unicode (undecodable bytes,
    kept by Python as lone surrogates) raises ``DataError``: the plan lists those as skipped instead."""
    lines = []
    for path, label in rows:
        try:
            path.encode("utf-8")
        except UnicodeEncodeError:
            raise DataError(f"path is not valid UTF-8: rename the file: {path!r}") from None
        lines.append(json.dumps({"path": path, "label": int(label)}, ensure_ascii=False) + "\n")
    return "".join(lines)


def read_shard(path: PathLike) -> list[Row]:
    """Rows ``(path, label)`` of a shard list; ``DataError`` naming the line for a damaged one."""
    rows = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").split("\n"), 1):
        if not line:
            continue
        try:
            row = json.loads(line)
            rows.append((str(row["path"]), int(row["label"])))
        except (ValueError, KeyError, TypeError) as err:
            raise DataError(
                f"{path}:{number}: damaged shard list line ({one_line(err, 120)}); run shards again"
            ) from None
    return rows


def write_shard(path: PathLike, rows: list[Row]) -> Path:
    """Write one shard list atomically."""
    return write_text(path, format_shard(rows))


def shard_digest(rows: list[Row]) -> str:
    """Content digest of one shard list (a rule parameter: the list is rewritten when it changes)."""
    return hashlib.sha256(format_shard(rows).encode("utf-8", "surrogateescape")).hexdigest()[:16]


# --------------------------------------------------------------------------- the index


def write_index(run: PathLike, names: list[str], skipped: list[tuple[str, str]] = ()) -> Path:
    """Write ``RUN/shards/index.json`` (the shards of the current plan) and ``RUN/shards/skipped.tsv``
    (files the listing left out, with their reason; empty when none)."""
    write_text(paths.shard_skipped(run), format_skipped(list(skipped)))
    return write_json(paths.shard_index(run), {"shards": list(names)})


def read_index(run: PathLike) -> list[str]:
    """The shard names of the run's current plan."""
    path = paths.shard_index(run)
    if not path.exists():
        raise MissingError(f"{path} not found: list the images first (actlas shards, or the workflow)")
    return list(read_json(path)["shards"])


def shard_stores(run: PathLike) -> list[Path]:
    """The shard stores of the run's current plan, in shard order."""
    return [paths.shard_store(run, s) for s in read_index(run)]


def shard_lists(run: PathLike) -> list[Path]:
    """The shard lists of the run's current plan, in shard order."""
    return [paths.shard_list(run, s) for s in read_index(run)]


def run_rows(run: PathLike) -> list[Row]:
    """Every row of the run's current plan, in shard order (the order of the stores' images)."""
    return [row for lst in shard_lists(run) for row in read_shard(lst)]


# --------------------------------------------------------------------------- skip lists

_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}
_UNESCAPES = {v[1]: k for k, v in _ESCAPES.items()}


def _escape(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return "".join(_ESCAPES.get(c, c) for c in text)


def _unescape(field: str) -> str:
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 1 < len(field) and field[i + 1] in _UNESCAPES:
            out.append(_UNESCAPES[field[i + 1]])
            i += 2
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def format_skipped(rows: list[tuple[str, str]]) -> str:
    """Text of a skip list: ``PATH<TAB>REASON`` lines (see the module); ``read_skipped`` reverses it."""
    return "".join(f"{_escape(p)}\t{one_line(r)}\n" for p, r in rows)


def read_skipped(path: PathLike) -> list[tuple[str, str]]:
    """Rows ``(path, reason)`` of a skip list."""
    rows = []
    for line in Path(path).read_text(encoding="utf-8").split("\n"):
        if line:
            field, _, reason = line.partition("\t")
            rows.append((_unescape(field), reason))
    return rows


def skipped_digest(rows: list[tuple[str, str]]) -> str:
    """Content digest of a skip list (a rule parameter)."""
    return hashlib.sha256(format_skipped(list(rows)).encode("utf-8", "surrogateescape")).hexdigest()[:16]


def append_skipped(path: PathLike, rows: list[tuple[str, str]]) -> None:
    """Add rows to a skip list (collect, after each commit of its store)."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(format_skipped(rows))


def keep_skipped(path: PathLike, keep: set[str]) -> None:
    """Drop the rows of a skip list whose path is not in ``keep`` (collect resuming: the images past the
    last commit will be tried again); no file, nothing to do."""
    if Path(path).exists():
        write_text(path, format_skipped([(p, r) for p, r in read_skipped(path) if p in keep]))
