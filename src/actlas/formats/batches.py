"""Render batches (``FOLDER/render/batch-BBBBB.npz``, one per render job) and cached icons
(``RUN/cache/icons/KEY.npz``).

A batch holds ``cell`` (B,) the cells it rendered, ``icon`` (B, S, S, 3) uint8, ``objective`` (B,),
``faithfulness`` (B,), ``cells_digest`` (the grid it was rendered from), ``rendered`` (how many
icons were not cached), ``seconds`` and ``params`` (the render settings, JSON). A cached icon
holds ``icon`` (S, S, 3), ``objective`` and ``faithfulness``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import paths
from ..errors import MissingError
from .atomic import PathLike, load_npz, save_npz

KEYS = ("cell", "icon", "objective", "faithfulness", "cells_digest", "rendered", "seconds", "params")
CACHED_KEYS = ("icon", "objective", "faithfulness")


def cells_digest(directions: np.ndarray) -> str:
    """Digest of a grid's directions (K, C): a render batch records the grid it was made from."""
    return hashlib.sha256(np.ascontiguousarray(directions, dtype=np.float32).tobytes()).hexdigest()[:16]


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


def write_cached_icon(path: PathLike, icon: np.ndarray, objective, faithfulness) -> Path:
    """One cached icon: ``icon`` (S, S, 3) uint8 with its ``objective`` and ``faithfulness``."""
    return save_npz(path, allow_nonfinite=("objective",), icon=icon, objective=objective, faithfulness=faithfulness)


def read_cached_icon(path: PathLike) -> tuple[np.ndarray, float, float]:
    """(icon (S, S, 3) uint8, objective, faithfulness) of a cached icon."""
    data = load_npz(path)
    return data["icon"], data["objective"], data["faithfulness"]
