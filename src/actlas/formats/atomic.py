"""Atomic writes: a reader sees the old file or the whole new one, never a part.

Each writer writes a hidden sibling (``.NAME.partial``, which no reader's pattern matches) and
renames it over the target.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..errors import DataError

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


def _nonfinite_key(data, where: str = "") -> str | None:
    """The key path (``cells[3].faithfulness``) of the first NaN or infinity in JSON-able data, else None."""
    if isinstance(data, (float, np.floating)):
        return None if np.isfinite(data) else where or "the value"
    if isinstance(data, np.ndarray):
        return None if data.dtype.kind != "f" or np.isfinite(data).all() else where or "the value"
    if isinstance(data, dict):
        items = ((f"{where}.{k}" if where else str(k), v) for k, v in data.items())
    elif isinstance(data, (list, tuple)):
        items = ((f"{where}[{i}]", v) for i, v in enumerate(data))
    else:
        return None
    return next((found for key, v in items if (found := _nonfinite_key(v, key))), None)


def write_json(path: PathLike, data) -> Path:
    """Write JSON atomically (numpy scalars and arrays as plain numbers and lists).

    NaN and infinity are refused (``DataError`` naming the key): they are not JSON, and no artifact holds them.
    """
    path = Path(path)
    try:
        text = json.dumps(data, indent=1, default=_json_default, allow_nan=False)
    except ValueError as err:
        key = _nonfinite_key(data) or "a value"
        raise DataError(
            f"{key} is NaN or infinite, which {path.name} cannot hold (JSON has finite numbers only): the inputs of "
            f"the stage writing {path} are not finite; check the model and the layer"
        ) from err
    tmp = _partial(path)
    tmp.write_text(text)
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


def check_finite(path: PathLike, arrays: dict, allow: tuple[str, ...] = ()) -> None:
    """Refuse (``DataError``, one line) a float array holding NaN or infinity, but those named in ``allow``."""
    for name, array in arrays.items():
        a = np.asarray(array)
        if name not in allow and a.dtype.kind in "fc" and not np.isfinite(a).all():
            raise DataError(
                f"{name} holds {int((~np.isfinite(a)).sum())} NaN or infinite values, which no artifact may hold "
                f"({Path(path).name}): the inputs of the stage writing it are not finite; check the model and layer"
            )


def save_npz(path: PathLike, allow_nonfinite: tuple[str, ...] = (), **arrays) -> Path:
    """Write an npz of ``arrays``, in order; float arrays must be finite (but those named in ``allow_nonfinite``)."""
    path = Path(path)
    check_finite(path, arrays, allow_nonfinite)
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
    """Write an npy; a float array must be finite (``DataError``)."""
    path = Path(path)
    check_finite(path, {path.stem: array})
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
