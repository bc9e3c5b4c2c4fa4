"""A patch experiment's ``report.json`` (``PatchReport``, one ``PatchEntry`` per patch tested).

Written by the patch stage beside ``report.md`` and the figures it names; read by the viewer
builder, which links each tested cell to its numbers. A population's numbers are plain data:
``{"patch" | "noise" | "random_image": {"n", "static", "dynamic", "prob_before", ...}}`` with a
rate ``{"k", "n", "rate", "ci"}`` per protocol (``actlas.patches.experiment.summarise``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import MissingError
from .atomic import PathLike, read_json, write_json


@dataclass
class PatchEntry:
    """One tested patch: its ``name``, the ``spec`` it was loaded from (``cell:DIR:I,J``, ...), its
    picture ``patch_png``, ``populations`` (population -> patch and controls -> numbers), per
    population whether it ``beats_controls`` and its ratio to them (``vs_controls``), and whether
    discovery chose it (``discovered``)."""

    name: str
    spec: str = ""
    patch_png: str = ""
    populations: dict = field(default_factory=dict)
    beats_controls: dict = field(default_factory=dict)
    vs_controls: dict = field(default_factory=dict)
    discovered: bool = False

    def to_json(self) -> dict:
        out = {"name": self.name, "populations": self.populations, "spec": self.spec, "patch_png": self.patch_png}
        if self.discovered:
            out["discovered"] = True
        out.update(beats_controls=self.beats_controls, vs_controls=self.vs_controls)
        return out

    @classmethod
    def from_json(cls, data: dict) -> PatchEntry:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass
class PatchReport:
    """A patch experiment: ``source`` and ``target`` classes (short names) and the target's index, the
    ``model`` and ``layer``, the runs it took icons and photos from, the protocol (``corners``,
    ``sizes``, ``static``), ``seed``, photo counts (``images``), the ``patches`` tested, the
    ``discovery`` (candidates searched, the best), the ``figures`` and, with a photo, the
    ``single_photo`` demonstration."""

    target: str
    layer: str
    patches: list[PatchEntry] = field(default_factory=list)
    source: str | None = None
    target_index: int | None = None
    model: Any = None
    icons_run: str | None = None
    photos_run: str | None = None
    corners: list[str] = field(default_factory=list)
    sizes: list[float] = field(default_factory=list)
    static: list = field(default_factory=list)
    seed: int = 0
    images: dict = field(default_factory=dict)
    clean_top1_is_target: int = 0
    discovery: dict | None = None
    seconds: float = 0.0
    figures: list[str] = field(default_factory=list)
    single_photo: dict | None = None

    def to_json(self) -> dict:
        out = {
            "source": self.source,
            "target": self.target,
            "target_index": self.target_index,
            "model": self.model,
            "layer": self.layer,
            "icons_run": self.icons_run,
            "photos_run": self.photos_run,
            "corners": self.corners,
            "sizes": self.sizes,
            "static": self.static,
            "seed": self.seed,
            "images": self.images,
            "clean_top1_is_target": self.clean_top1_is_target,
            "patches": [e.to_json() for e in self.patches],
            "discovery": self.discovery,
            "seconds": self.seconds,
        }
        if self.single_photo is not None:
            out["single_photo"] = self.single_photo
        out["figures"] = self.figures
        return out

    @classmethod
    def from_json(cls, data: dict) -> PatchReport:
        fields = {k: data[k] for k in cls.__dataclass_fields__ if k in data and k != "patches"}
        return cls(**fields, patches=[PatchEntry.from_json(e) for e in data.get("patches", [])])


def write_report(path: PathLike, report: PatchReport) -> Path:
    return write_json(path, report.to_json())


def read_report(path: PathLike) -> PatchReport:
    if not Path(path).exists():
        raise MissingError(f"{path} not found: run the patch experiment first (actlas patch, or the workflow)")
    return PatchReport.from_json(read_json(path))
