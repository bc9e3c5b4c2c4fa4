"""Render batches (``FOLDER/render/batch-BBBBB.npz``, one per render job) and cached icons
(``RUN/cache/icons/KEY.npz``).

A batch holds ``cell`` (B,) the cells it rendered, ``icon`` (B, S, S, 3) uint8, ``objective`` (B,),
``faithfulness`` (B,), ``cells_digest`` (the grid it was rendered from), ``rendered`` (how many
icons were not cached), ``seconds``, ``params`` (the render settings, JSON) and ``icon_digest`` (B,)
(each icon's content digest, ``icon_digest``: one icon's bytes, whatever batch it was cut into). A
cached icon holds ``icon`` (S, S, 3), ``objective``, ``faithfulness`` and ``digest`` (of the three and
of its key, the file's name: an icon copied under another key does not pass).

Every reader checks the digests: ``read_icons`` refuses a batch whose icons differ from them (one line
naming the file and the fix), ``read_cached_icon`` gives None for a cached icon that does not pass (the
render stage renders it again), and ``batch_problem``, ``cached_problem`` are what ``actlas verify`` says.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import paths
from ..errors import MissingError
from ..files import run_entry_problem
from .atomic import PathLike, load_npz, save_npz

KEYS = ("cell", "icon", "objective", "faithfulness", "cells_digest", "rendered", "seconds", "params", "icon_digest")
CACHED_KEYS = ("icon", "objective", "faithfulness", "digest")
RENDER_AGAIN = "delete it and run the workflow again (render rewrites it)"


def cells_digest(directions: np.ndarray) -> str:
    """Digest of a grid's directions (K, C): a render batch records the grid it was made from."""
    return hashlib.sha256(np.ascontiguousarray(directions, dtype=np.float32).tobytes()).hexdigest()[:16]


def icon_digest(icon: np.ndarray) -> str:
    """Content digest of one icon (S, S, 3) uint8: its shape and bytes (16 hex digits)."""
    a = np.ascontiguousarray(icon)
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
    return h.hexdigest()[:16]


def icon_digests(icons: np.ndarray) -> np.ndarray:
    """The digest of each icon of (B, S, S, 3): (B,) strings."""
    return np.array([icon_digest(i) for i in icons], dtype="<U16").reshape(len(icons))


@dataclass
class RenderBatch:
    """One render job's icons (see the module)."""

    cell: np.ndarray
    icon: np.ndarray
    objective: np.ndarray
    faithfulness: np.ndarray
    cells_digest: str
    rendered: int
    seconds: float
    params: dict
    icon_digest: np.ndarray | None = None  # (B,) as read; written from ``icon``


def batch_problem(batch: RenderBatch) -> str:
    """What is wrong with a batch's icons ("" for nothing): their type and shape, their count against
    ``cell``, their digests against their bytes."""
    icon = batch.icon
    if icon.dtype != np.uint8 or icon.ndim != 4 or icon.shape[-1] != 3 or icon.shape[1] != icon.shape[2]:
        return f"its icons are {icon.dtype} of shape {icon.shape}, not uint8 RGB (B, S, S, 3)"
    if not len(batch.cell) == len(icon) == len(batch.faithfulness) == len(batch.objective):
        return "its cells, icons and scores differ in number"
    if batch.icon_digest is None or len(batch.icon_digest) != len(icon):
        return "it records no digest of its icons (rendered by an older actlas)"
    for c, have, want in zip(batch.cell, icon_digests(icon), batch.icon_digest):
        if have != str(want):
            return f"the icon of cell {int(c)} differs from the digest recorded when it was rendered"
    return ""


def write_batch(path: PathLike, batch: RenderBatch) -> Path:
    return save_npz(
        path,
        allow_nonfinite=("objective",),  # an icon's score may be undefined (verify allows it too)
        cell=batch.cell,
        icon=batch.icon,
        objective=batch.objective,
        faithfulness=batch.faithfulness,
        cells_digest=np.str_(batch.cells_digest),
        rendered=np.int64(batch.rendered),
        seconds=np.float64(batch.seconds),
        params=np.str_(json.dumps(batch.params)),
        icon_digest=icon_digests(batch.icon),
    )


def read_batch(path: PathLike) -> RenderBatch:
    data = load_npz(path)
    return RenderBatch(
        cell=data["cell"],
        icon=data["icon"],
        objective=data["objective"],
        faithfulness=data["faithfulness"],
        cells_digest=str(data["cells_digest"]),
        rendered=int(data["rendered"]),
        seconds=float(data["seconds"]),
        params=json.loads(str(data["params"])),
        icon_digest=data.get("icon_digest"),
    )


def read_icons(folder: PathLike, directions: np.ndarray, cells_per_job: int) -> tuple[np.ndarray, np.ndarray]:
    """The icons of every cell of an atlas folder whose directions are ``directions`` (K, C), from exactly
    the batches its plan makes (``cells_per_job``).

    Returns icon (K, S, S, 3) uint8 and faithfulness (K,). Raises ``MissingError`` when a batch is
    missing or was rendered from other cells (another grid, layout or ``cells_per_job``).
    """
    folder = Path(folder)
    k = len(directions)
    want = cells_digest(directions)
    icon = faith = None
    seen = np.zeros(k, bool)
    for b in range(paths.n_batches(k, cells_per_job)):
        path = paths.render_batch(folder, b)
        if not path.exists():
            raise MissingError(f"{path} is missing: run render for every batch of {folder} first")
        part = read_batch(path)
        problem = batch_problem(part)
        if problem:
            raise MissingError(f"{path}: {problem}: {RENDER_AGAIN}")
        if part.cells_digest != want or len(part.cell) and part.cell.max() >= k:
            raise MissingError(f"{path} was rendered from other cells than {paths.cells(folder)}: render again")
        if icon is None:
            size = part.icon.shape[1]
            icon = np.zeros((k, size, size, 3), dtype=np.uint8)
            faith = np.zeros(k, dtype=np.float32)
        icon[part.cell], faith[part.cell] = part.icon, part.faithfulness
        seen[part.cell] = True
    if icon is None or not seen.all():
        raise MissingError(f"icons missing for {int((~seen).sum())} cells of {folder}: render every batch first")
    return icon, faith


def cached_digest(key: str, icon: np.ndarray, objective, faithfulness) -> str:
    """Digest of a cached icon: its key (the file's name), icon (S, S, 3) and its two scores."""
    h = hashlib.sha256(f"{key}\0{icon_digest(icon)}\0".encode())
    h.update(np.asarray([objective, faithfulness], dtype=np.float32).tobytes())
    return h.hexdigest()[:16]


def write_cached_icon(path: PathLike, icon: np.ndarray, objective, faithfulness) -> Path:
    """One cached icon: ``icon`` (S, S, 3) uint8 with its ``objective``, ``faithfulness`` and ``digest``."""
    digest = cached_digest(Path(path).stem, icon, objective, faithfulness)
    return save_npz(
        path,
        allow_nonfinite=("objective",),
        icon=icon,
        objective=objective,
        faithfulness=faithfulness,
        digest=np.str_(digest),
    )


def cached_problem(path: PathLike, data) -> str:
    """What is wrong with a cached icon's members ``data`` ("" for nothing)."""
    icon = data.get("icon")
    if icon is not None and (
        icon.dtype != np.uint8 or icon.ndim != 3 or icon.shape[-1] != 3 or icon.shape[0] != icon.shape[1]
    ):
        return f"its icon is {icon.dtype} of shape {icon.shape}, not uint8 RGB (S, S, 3)"
    if any(k not in data for k in CACHED_KEYS):
        return f"lacks {', '.join(k for k in CACHED_KEYS if k not in data)}"
    if str(data["digest"]) != cached_digest(Path(path).stem, icon, data["objective"], data["faithfulness"]):
        return "its icon differs from the digest recorded when it was cached"
    return ""


def read_cached_icon(path: PathLike, size: int | None = None) -> tuple[np.ndarray, float, float] | None:
    """(icon (S, S, 3) uint8, objective, faithfulness) of a cached icon, or None when it cannot be used: it
    does not load, does not pass its digest, or (``size``) is not S x S (render then renders it again)."""
    if not Path(path).is_file() or run_entry_problem(path):  # absent, or a FIFO that would block
        return None
    try:
        data = load_npz(path)
    except Exception:  # noqa: BLE001 - a damaged cache entry of any kind is a miss
        return None
    if cached_problem(path, data) or (size is not None and data["icon"].shape[0] != size):
        return None
    return data["icon"], data["objective"], data["faithfulness"]
