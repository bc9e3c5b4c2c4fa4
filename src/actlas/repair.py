"""Folders the workflow writes whole that lost a file: found before a run, removed so that it rebuilds them.

Snakemake sees a ``directory()`` output (a shard store, ``icons/``, ``examples/``, ``viewer/``,
``patches/NAME``: ``actlas.paths.directory_output``) as one thing: a file deleted inside it leaves the folder
present and "up to date". ``incomplete_folders`` finds such folders without writing anything: a file the
seal of the last finished run lists (``actlas.seal``) that is gone, or a chunk a finished shard store's
committed rows need (chunks are not sealed: they carry their own checksums). ``remove`` deletes them, so
the next run rebuilds each folder whole, as a run from scratch would. The workflow removes them when a
real run starts (``rules/common.smk``); a dry run only names them and plans their rules.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from . import paths
from .files import run_entry_problem


def _sealed(run_dir: Path) -> tuple[dict, float] | None:
    """(files, created) of the run's seal, or None when there is none or it does not parse."""
    seal = paths.seal(run_dir)
    if not seal.is_file() or run_entry_problem(seal):
        return None
    try:
        data = json.loads(seal.read_text(encoding="utf-8"))
        files, created = data["files"], float(data["created"])
        return (files, created) if isinstance(files, dict) else None
    except (OSError, ValueError, KeyError, TypeError):
        return None  # a damaged seal: verify names it


def _rewritten_since(folder: Path, created: float) -> bool:
    """Whether a file in ``folder`` is newer than the seal: a later run wrote the folder again (the
    seal then no longer describes it)."""
    limit = int(created * 1e9)
    for dirpath, _, filenames in os.walk(folder):
        for name in filenames:
            try:
                if os.stat(os.path.join(dirpath, name), follow_symlinks=False).st_mtime_ns > limit:
                    return True
            except OSError:
                continue
    return False


def _store_gaps(store_path: Path) -> str:
    """The first chunk a finished store's committed rows need that is gone ("" for none, or for a store
    that is not finished: collect resumes that one itself)."""
    from .data import store

    if not store.is_complete(store_path):
        return ""
    try:
        group = store.open_group(store_path)
        for name, n in sorted(store.committed_counts(group, store_path).items()):
            missing = store.missing_chunks(store_path, name, group[name], n)
            if missing:
                return f"{name}/{missing[0]}"
    except Exception:  # noqa: BLE001 - damaged metadata: verify names it; collect refuses it in one line
        return ""
    return ""


def _changed_since(folder: Path, created: float) -> bool:
    """Whether a folder under ``folder`` (itself included) changed after the seal: a deleted chunk changes its
    parent folder's time. Only such stores are opened (Zarr is slow to import at parse time)."""
    limit = int(created * 1e9)
    for dirpath, _, _ in os.walk(folder):
        try:
            if os.stat(dirpath, follow_symlinks=False).st_mtime_ns > limit:
                return True
        except OSError:
            return True
    return False


def _stores(run_dir: Path) -> list[Path]:
    found = list(paths.collect_dir(run_dir).glob(paths.STORE_GLOB))
    models = run_dir / paths.MODELS
    if models.is_dir():
        found += list(models.glob(f"*/{paths.COLLECT}/{paths.STORE_GLOB}"))
    return sorted(p for p in found if p.is_dir() and not p.is_symlink())


def incomplete_folders(run_dir: str | Path) -> dict[Path, str]:
    """{folder: the first file it lost} for every folder the workflow writes whole that lacks a file it held
    when the run was last sealed, or a chunk of a finished store. Reads only; {} without a run."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return {}
    out: dict[Path, str] = {}
    sealed = _sealed(run_dir)
    if sealed is not None:
        files, created = sealed
        for rel in sorted(files):
            path = run_dir / rel
            folder = paths.directory_output(run_dir, path)
            if folder is None or folder in out or not folder.is_dir() or os.path.lexists(path):
                continue
            if not _rewritten_since(folder, created):
                out[folder] = str(path.relative_to(folder))
    if paths.collect_dir(run_dir).is_dir() or (run_dir / paths.MODELS).is_dir():
        for st in _stores(run_dir):
            if st not in out and (sealed is None or _changed_since(st, sealed[1])):
                gap = _store_gaps(st)
                if gap:
                    out[st] = gap
    return out


def describe(folder: Path, missing: str) -> str:
    """One line: which folder lost which file, and what rebuilds it."""
    return f"{folder} lost {missing}: the workflow rebuilds the folder whole"


def remove(folders) -> list[Path]:
    """Delete each folder (a folder the workflow writes whole: its rule then rebuilds it); the ones removed."""
    done = []
    for folder in folders:
        folder = Path(folder)
        if folder.is_dir() and not folder.is_symlink():
            shutil.rmtree(folder)
            done.append(folder)
    return done
