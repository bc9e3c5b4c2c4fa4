"""``probe/probe.npz`` and ``probe/probe.json``: the linear probe of a ``head: probe`` model (``Probe``).

The probe stage writes them; collect and patch give the probe to the model
(``actlas.models.headhook.use_probe``); ``actlas info`` reports its accuracy. The arrays are
``probe.npz`` (read with ``allow_pickle=False``), everything else ``probe.json`` (written last).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .. import paths
from ..errors import MissingError
from .atomic import PathLike, load_npz, read_json, save_npz, write_json


@dataclass
class Probe:
    """A trained probe: ``weight`` (K, D) float32 and ``bias`` (K,) float32 on raw features, the
    ``classes`` (K names, the model's), the features' ``layer`` (None: the forward's output) and
    ``dims`` D, its held-out ``accuracy`` (None without held-out photos) over ``held_out`` photos,
    trained on ``train``; ``per_class`` (name -> train, held_out, accuracy), ``evaluate`` (one record
    per extra photo folder: images, photos, accuracy), ``chance`` (the most common class's share of the
    held-out photos), ``skipped`` photos that did not decode, and the settings ``c``, ``holdout``, ``seed``."""

    weight: np.ndarray
    bias: np.ndarray
    classes: list[str]
    layer: str | None = None
    dims: int = 0
    accuracy: float | None = None
    held_out: int = 0
    train: int = 0
    chance: float | None = None
    per_class: dict = field(default_factory=dict)
    evaluate: list = field(default_factory=list)
    skipped: int = 0
    c: float = 1.0
    holdout: float = 0.2
    seed: int = 0

    @property
    def digest(self) -> str:
        """A short hash of the weights: stores collected through different probes are not mixed."""
        h = hashlib.sha256(np.ascontiguousarray(self.weight, dtype=np.float32).tobytes())
        h.update(np.ascontiguousarray(self.bias, dtype=np.float32).tobytes())
        return h.hexdigest()[:16]

    def to_json(self) -> dict:
        """Everything but the arrays, plus the ``digest``."""
        out = {k: v for k, v in asdict(self).items() if k not in ("weight", "bias")}
        return {**out, "digest": self.digest}


def write_probe(run: PathLike, probe: Probe) -> Path:
    """Write ``RUN/probe/probe.npz`` (weight, bias) and then ``RUN/probe/probe.json``; returns the npz."""
    save_npz(paths.probe_npz(run), weight=probe.weight.astype(np.float32), bias=probe.bias.astype(np.float32))
    write_json(paths.probe_json(run), probe.to_json())
    return paths.probe_npz(run)


def read_probe(path: PathLike) -> Probe:
    """A probe: its ``probe.npz`` (the ``.json`` of the same name beside it), or a run directory's;
    ``MissingError`` naming the stage that makes it."""
    path = Path(path)
    npz = path if path.suffix == ".npz" else paths.probe_npz(path)
    meta_path = npz.with_suffix(".json")
    if not npz.exists() or not meta_path.exists():
        raise MissingError(f"{npz} not found: run the probe stage (actlas probe RUN) first")
    arrays = load_npz(npz)
    meta = {k: v for k, v in read_json(meta_path).items() if k in Probe.__dataclass_fields__}
    return Probe(weight=arrays["weight"], bias=arrays["bias"], **meta)
