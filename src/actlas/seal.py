"""The seal of a finished run (``RUN/.actlas-seal.json``): size, modification time and crc32 of its files.

``seal`` writes it when a workflow finishes; ``check_seal`` (``actlas verify``) finds damage that left a
file's modification time alone. Only regular files are sealed and read: a FIFO or a dangling link in
the run never blocks or fails the seal (``actlas.files.run_entry_problem``).
"""

from __future__ import annotations

import json
import os
import shlex
import time
import zlib
from pathlib import Path

from . import paths
from .files import run_entry_problem
from .text import one_line


def _one(text: object, limit: int = 300) -> str:
    return one_line(text, limit)


def _sealed_files(run_dir: Path):
    """Files a seal covers: all but chunk files of stores (they carry crc32c), locks, seals and partials."""
    for dirpath, dirnames, filenames in os.walk(run_dir):
        dirnames.sort()
        rel_dir = Path(dirpath).relative_to(run_dir)
        in_store = any(p.endswith(".zarr") for p in rel_dir.parts)
        for name in sorted(filenames):
            if name in (paths.SEAL, paths.LOCK) or name.endswith((".tmp", ".partial")) or ".stale-" in name:
                continue
            if (not in_store or name == "zarr.json") and not run_entry_problem(Path(dirpath, name)):
                yield Path(dirpath, name)  # a FIFO or a dangling link is never read, never sealed


def _crc(path: Path) -> int:
    crc = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            crc = zlib.crc32(block, crc)
    return crc


def seal(run_dir: str | Path) -> Path:
    """Record size, modification time and crc32 of the run's files in ``RUN/.actlas-seal.json``.

    Call it when a workflow finishes (Snakemake ``onsuccess``); ``verify_run`` then finds damage
    to those files that left their modification time alone.
    """
    run_dir = Path(run_dir)
    files = {}
    for path in _sealed_files(run_dir):
        st = path.stat()
        files[str(path.relative_to(run_dir))] = [st.st_size, st.st_mtime_ns, _crc(path)]
    out = paths.seal(run_dir)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps({"created": time.time(), "files": files}))
    tmp.replace(out)
    return out


def missing_advice(run_dir: Path, path: Path) -> str:
    """What rebuilds a file of the run that is missing: the next workflow run, or for a file inside a folder
    the workflow writes whole (``paths.directory_output``), that folder deleted first (the exact command)."""
    folder = paths.directory_output(run_dir, path)
    if folder is None:
        return "missing since the run finished: run the workflow again (it rebuilds it)"
    return (
        f"missing since the run finished, inside {folder.name}/, a folder the workflow writes whole: "
        f"rm -r -- {shlex.quote(str(folder))} and run the workflow again (it rebuilds the folder)"
    )


def check_seal(run_dir: Path) -> list[tuple[str, str]]:
    """(path, problem) of each sealed file damaged since the seal (same time, other size or crc32)."""
    path = paths.seal(run_dir)
    if not path.exists():
        return []
    try:
        files = json.loads(path.read_text())["files"]
        assert isinstance(files, dict)
    except Exception as err:  # noqa: BLE001 - a seal that does not parse is damaged, whatever the error
        return [
            (
                str(path),
                f"the seal is damaged ({_one(err, 80)}): delete it (the next finished workflow writes a new one)",
            )
        ]
    out = []
    for rel, entry in files.items():
        p = run_dir / rel
        try:
            size, mtime, crc = entry
            st = p.stat()
        except FileNotFoundError:
            out.append((str(p), missing_advice(run_dir, p)))
            continue
        except Exception:  # noqa: BLE001 - an entry of any other shape is damaged
            out.append((str(path), f"the seal's entry for {rel} is damaged: delete the seal"))
            continue
        if st.st_mtime_ns != mtime:
            continue  # rewritten since the seal
        if st.st_size != size:
            out.append((str(p), f"damaged: {st.st_size} bytes, {size} when the run finished (same time)"))
        elif _crc(p) != crc:
            out.append((str(p), "damaged: its crc32 differs from when the run finished (same size and time)"))
    return out
