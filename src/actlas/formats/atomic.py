"""Atomic writes: a reader sees the old file or the whole new one, never a part.

Each writer writes a hidden sibling (``.NAME.partial``, which no reader's pattern matches) and
renames it over the target.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

PathLike = str | Path


def _json_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(type(o).__name__)


def _partial(path: Path) -> Path:
    """A hidden sibling that no reader's pattern matches (``.NAME.partial``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".{path.name}.partial")


def write_json(path: PathLike, data) -> Path:
    """Write JSON atomically (numpy scalars and arrays as plain numbers and lists)."""
    path = Path(path)
    tmp = _partial(path)
    tmp.write_text(json.dumps(data, indent=1, default=_json_default))
    os.replace(tmp, path)
    return path


def read_json(path: PathLike):
    """The data of a JSON file (never executed)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_text(path: PathLike, text: str) -> Path:
    path = Path(path)
    tmp = _partial(path)
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def save_npz(path: PathLike, **arrays) -> Path:
    """Write an npz of ``arrays``, in the order given."""
    path = Path(path)
    tmp = _partial(path)
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, path)
    return path


def load_npz(path: PathLike) -> dict[str, np.ndarray]:
    """Every array of an npz (never unpickles)."""
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def save_npy(path: PathLike, array: np.ndarray) -> Path:
    path = Path(path)
    tmp = _partial(path)
    with open(tmp, "wb") as f:
        np.save(f, array)
    os.replace(tmp, path)
    return path


def load_npy(path: PathLike) -> np.ndarray:
    """The array of an npy (never unpickles)."""
    return np.load(path, allow_pickle=False)


def image_format(path: Path) -> str:
    return {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}[Path(path).suffix.lower()]


def save_image(path: PathLike, image, **kw) -> Path:
    """Save a PIL image atomically (format from the suffix; ``kw`` as ``Image.save``'s)."""
    path = Path(path)
    tmp = _partial(path)
    image.save(tmp, format=image_format(path), **kw)
    os.replace(tmp, path)
    return path
