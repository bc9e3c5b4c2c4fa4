"""Render batches: the files a render job writes (``FOLDER/render/batch-BBBBB.npz``) and how they are read back."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from .. import paths


def cells_digest(directions: np.ndarray) -> str:
    """Digest of a grid's directions (K, C): a render batch records the grid it was made from."""
    return hashlib.sha256(np.ascontiguousarray(directions, dtype=np.float32).tobytes()).hexdigest()[:16]


def read_icons(folder: str | Path, cells_per_job: int) -> tuple[np.ndarray, np.ndarray]:
    """The icons of every cell of ``FOLDER/cells.npz`` from exactly the batches its plan makes.

    Returns icon (K, S, S, 3) uint8 and faithfulness (K,). Raises ``FileNotFoundError`` when a
    batch is missing or was rendered from other cells (another grid, layout or ``cells_per_job``).
    """
    folder = Path(folder)
    with np.load(paths.cells(folder)) as f:
        directions = f["direction"]
    k = len(directions)
    want = cells_digest(directions)
    icon = faith = None
    seen = np.zeros(k, bool)
    for b in range(paths.n_batches(k, cells_per_job)):
        path = paths.render_batch(folder, b)
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: run render for every batch of {folder} first")
        part = paths.load_npz(path)
        if str(part["cells_digest"]) != want or len(part["cell"]) and part["cell"].max() >= k:
            raise FileNotFoundError(f"{path} was rendered from other cells than {paths.cells(folder)}: render again")
        if icon is None:
            size = part["icon"].shape[1]
            icon = np.zeros((k, size, size, 3), dtype=np.uint8)
            faith = np.zeros(k, dtype=np.float32)
        icon[part["cell"]], faith[part["cell"]] = part["icon"], part["faithfulness"]
        seen[part["cell"]] = True
    if icon is None or not seen.all():
        raise FileNotFoundError(f"icons missing for {int((~seen).sum())} cells of {folder}: render every batch first")
    return icon, faith
