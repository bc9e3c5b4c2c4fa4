"""``atlas.json``: an atlas folder's description, one record per cell (``AtlasMeta``, ``CellRecord``).

Written by the atlas stage (and the class atlas and comparison stages) last in an atlas folder:
its presence means the folder is complete. Read by the viewer builder, the patch stage, the
manifest and ``verify``. Paths in it (``icon``, examples' ``src``, ``image``, ``labelled``) are
relative to the atlas folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import paths
from ..errors import DataError, MissingError
from .align import PairMeasure, TrustRecord
from .atomic import PathLike, read_json, write_json

# keys an atlas.json and each of its cells must hold (the rest have defaults)
REQUIRED = ("layer", "grid", "icon_size", "image", "size_px", "classes", "cells")
REQUIRED_CELL = ("i", "j", "count", "label")


@dataclass
class Example:
    """A dataset example of a cell: the crop ``src`` (``examples/I_J_E.jpg``) around a sample whose
    activation is near the cell's direction, ``index`` E, the photo's true ``label`` and the model's
    top-1 ``pred`` with its ``prob``, and the sample's cosine ``similarity`` to the direction."""

    src: str
    label: str | None = None
    pred: str | None = None
    prob: float | None = None
    similarity: float | None = None
    index: int | None = None

    def to_json(self) -> dict:
        out = {
            "src": self.src,
            "label": self.label,
            "pred": self.pred,
            "prob": self.prob,
            "similarity": self.similarity,
        }
        if self.index is not None:
            out["index"] = self.index
        return out

    @classmethod
    def from_json(cls, data: dict) -> Example:
        return cls(**{k: data.get(k) for k in ("src", "label", "pred", "prob", "similarity", "index")})


@dataclass
class CellRecord:
    """One cell: column ``i``, row ``j``, its sample ``count``, ``label`` (a class name) and its
    ``label_index``, the ``top`` classes by mean attribution ([name, value]), every non-zero mean
    ``attribution`` (class index as text -> value), the icon's ``faithfulness``, the ``icon`` path
    and its ``examples``. A cell of an aligned atlas adds, per other map of its alignment (by id), ``near``:
    the share of its photos whose point in that map falls in the same or a neighbouring cell of that map's
    grid of the same size, and ``partners``: where its photos fall there, [[i, j, photos], ...] (most first)."""

    i: int
    j: int
    count: int
    label: str
    label_index: int = -1
    top: list = field(default_factory=list)
    attribution: dict[str, float] = field(default_factory=dict)
    faithfulness: float | None = None
    icon: str | None = None
    examples: list[Example] = field(default_factory=list)
    near: dict[str, float] = field(default_factory=dict)
    partners: dict[str, list[list[int]]] = field(default_factory=dict)

    def to_json(self) -> dict:
        aligned = {"near": self.near, "partners": self.partners} if self.near or self.partners else {}
        return {
            "i": self.i,
            "j": self.j,
            "count": self.count,
            "label": self.label,
            "label_index": self.label_index,
            "top": self.top,
            "attribution": self.attribution,
            "faithfulness": self.faithfulness,
            "icon": self.icon,
            "examples": [e.to_json() for e in self.examples],
            **aligned,
        }

    @classmethod
    def from_json(cls, data: dict) -> CellRecord:
        return cls(
            i=int(data["i"]),
            j=int(data["j"]),
            count=int(data["count"]),
            label=str(data["label"]),
            label_index=int(data.get("label_index", -1)),
            top=list(data.get("top", [])),
            attribution=dict(data.get("attribution", {})),
            faithfulness=data.get("faithfulness"),
            icon=data.get("icon"),
            examples=[Example.from_json(e) for e in data.get("examples", [])],
            near={str(k): float(v) for k, v in data.get("near", {}).items()},
            partners={str(k): [list(map(int, p)) for p in v] for k, v in data.get("partners", {}).items()},
        )


@dataclass
class AlignedMeta:
    """What an aligned atlas adds (its ``atlas.json`` key ``aligned``): the alignment's ``name``, this atlas's
    ``map`` id, its ``model`` (None: the run's; else its folder under ``RUN/models/``), every map of the
    alignment (``maps``, in order), the ``alignment`` strength, the measures of this map against each other
    map at this atlas's grid size (``pairs``, ``actlas.formats.align.PairMeasure``) and of its own layout
    (``trust``)."""

    name: str
    map: str
    model: str | None
    maps: list[str]
    alignment: float
    pairs: list[PairMeasure]
    trust: TrustRecord

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "map": self.map,
            "model": self.model,
            "maps": self.maps,
            "alignment": self.alignment,
            "pairs": [p.to_json() for p in self.pairs],
            "trust": self.trust.to_json(),
        }

    @classmethod
    def from_json(cls, data: dict) -> AlignedMeta:
        return cls(
            name=str(data["name"]),
            map=str(data["map"]),
            model=data.get("model"),
            maps=[str(m) for m in data["maps"]],
            alignment=float(data["alignment"]),
            pairs=[PairMeasure.from_json(p) for p in data.get("pairs", [])],
            trust=TrustRecord.from_json(data["trust"]),
        )


@dataclass
class AtlasMeta:
    """An atlas folder: ``layer``, ``grid`` (cells per side), ``icon_size`` (an atlas cell's pixels),
    ``render_size`` (the icons' own) and ``display_factor`` (icon_size / render_size), the ``image``
    and ``labelled`` PNGs and ``size_px``, the model's ``classes``, the ``cells``, the median
    ``faithfulness_median`` and ``label_agreement``; ``extra`` holds what a class atlas (``kind``
    ``class``, ``class``, ``filter`` ...) or comparison (``kind`` ``compare``, ``pair`` ...) adds; ``aligned``
    (``AlignedMeta``) what an aligned atlas adds."""

    layer: str
    grid: int
    icon_size: int
    image: str
    size_px: list[int]
    classes: list[str]
    cells: list[CellRecord]
    label_agreement: float | None = None
    render_size: int | None = None
    display_factor: int | None = None
    labelled: str | None = None
    faithfulness_median: float | None = None
    aligned: AlignedMeta | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """``atlas`` (a main atlas, one per grid size), ``class``, ``compare`` or ``aligned``."""
        return "aligned" if self.aligned is not None else str(self.extra.get("kind", "atlas"))

    def to_json(self) -> dict:
        return {
            "label_agreement": self.label_agreement,
            "layer": self.layer,
            "grid": self.grid,
            "icon_size": self.icon_size,
            "render_size": self.render_size,
            "display_factor": self.display_factor,
            "image": self.image,
            "labelled": self.labelled,
            "size_px": self.size_px,
            "classes": self.classes,
            "faithfulness_median": self.faithfulness_median,
            "cells": [c.to_json() for c in self.cells],
            **({"aligned": self.aligned.to_json()} if self.aligned is not None else {}),
            **self.extra,
        }

    @classmethod
    def from_json(cls, data: dict, where: str = paths.ATLAS_JSON) -> AtlasMeta:
        """An atlas from its JSON data; ``DataError`` naming the missing keys."""
        if not isinstance(data, dict):
            raise DataError(f"{where} is not a JSON object; rebuild it with the atlas stage")
        missing = [k for k in REQUIRED if k not in data]
        if missing:
            raise DataError(f"{where} lacks {missing}; rebuild it with the atlas stage (see docs/run-directory.md)")
        if not isinstance(data["cells"], list):
            raise DataError(f"{where} has no list of cells; rebuild it with the atlas stage")
        for cell in data["cells"]:
            missing = [k for k in REQUIRED_CELL if k not in cell]
            if missing:
                raise DataError(f"cells of {where} lack {missing}; rebuild it with the atlas stage")
        names = set(cls.__dataclass_fields__) - {"extra", "cells", "aligned"}
        aligned = data.get("aligned")
        return cls(
            **{k: data[k] for k in names if k in data},
            cells=[CellRecord.from_json(c) for c in data["cells"]],
            aligned=AlignedMeta.from_json(aligned) if isinstance(aligned, dict) else None,
            extra={k: v for k, v in data.items() if k not in names and k not in ("cells", "aligned")},
        )


def write_atlas(path: PathLike, meta: AtlasMeta) -> Path:
    """Write ``atlas.json`` atomically."""
    return write_json(path, meta.to_json())


def read_atlas(path: PathLike) -> AtlasMeta:
    """``atlas.json`` as ``AtlasMeta``; ``MissingError`` when absent, ``DataError`` when incomplete."""
    if not Path(path).exists():
        raise MissingError(f"{path} not found: run the atlas stage (or the class atlas) for its folder first")
    return AtlasMeta.from_json(read_json(path), str(path))
