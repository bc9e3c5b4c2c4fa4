"""``manifest.json``: a finished run's record: the config it was made with, the model as collect
resolved it, and each stage's figures (``Manifest``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .. import paths
from ..errors import MissingError
from .atomic import PathLike, read_json, write_json


@dataclass
class Manifest:
    """``actlas`` (versions of the software), ``created`` (local time), ``host`` (cpus, machine),
    ``config`` (the whole config, every default filled in), ``model`` (every model setting, declared
    or defaulted, as collect resolved it), ``collect`` (images, skipped, seconds, per shard) and
    ``layers`` (per layer its layout record and per grid size its cells, icons rendered, timings,
    faithfulness percentiles and atlas paths); ``alignments`` (per alignment its ``align.json`` record and
    per map and grid size its atlas's figures, measures included)."""

    actlas: dict
    created: str
    host: dict
    config: dict
    model: dict | None
    collect: dict
    layers: dict = field(default_factory=dict)
    alignments: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "actlas": self.actlas,
            "created": self.created,
            "host": self.host,
            "config": self.config,
            "model": self.model,
            "collect": self.collect,
            "layers": self.layers,
            **({"alignments": self.alignments} if self.alignments else {}),
        }


def write_manifest(run: PathLike, manifest: Manifest) -> Path:
    return write_json(paths.manifest(run), manifest.to_json())


def read_manifest(run: PathLike) -> Manifest:
    """The run's manifest; ``MissingError`` when the run has none (it is not finished)."""
    path = paths.manifest(run)
    if not path.exists():
        raise MissingError(f"{path} not found: is {run} a finished actlas run?")
    data = read_json(path)
    return Manifest(
        **{k: data.get(k) for k in Manifest.__dataclass_fields__} | {"alignments": data.get("alignments") or {}}
    )
