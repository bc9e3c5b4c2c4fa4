"""``concepts.json``: a layer's concept dictionary summarised (``ConceptsMeta``, ``ConceptRecord``, ``CellConcepts``).

Written by the concepts stage last in ``RUN/LAYER/concepts/``: its presence means the folder is
complete. Read by the viewer builder and ``actlas info``. Paths in it (``icon``, exemplars' ``src``,
``dictionary``) are relative to the concepts folder. No value is NaN: a concept active on no sample
has ``label`` None, ``centroid`` None and no exemplars.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import DataError, MissingError
from .atlas import Example
from .atomic import PathLike, read_json, write_json

REQUIRED = ("layer", "method", "size", "k", "figures", "concepts", "cells")
FIRES_MIN = 0.05  # a cell lists the concepts active on at least this share of its samples (CellConcepts.fires)


@dataclass
class ConceptRecord:
    """One concept (atom ``index``): the share of samples it is active on (``frequency``) and their
    ``count``; its ``label`` (a class name, None when inactive) and ``label_index``; ``top`` classes
    ([name, weight]: attribution weighted by the concept's codes); ``centroid`` [x, y] (code-weighted
    mean of its samples' layout coords, in [0, 1]) and ``spread``; its icon's ``faithfulness``;
    ``stability`` (cosine with its match in a second seed's dictionary, None when not measured);
    the ``icon`` path and its ``examples`` (the samples with its highest codes, one per photo;
    ``similarity`` holds the code); ``purity``: the share of those exemplars whose photo's top-1
    prediction is ``label`` (None without a label or exemplars)."""

    index: int
    frequency: float
    count: int
    label: str | None = None
    label_index: int = -1
    top: list = field(default_factory=list)
    centroid: list[float] | None = None
    spread: float = 0.0
    faithfulness: float | None = None
    stability: float | None = None
    icon: str | None = None
    examples: list[Example] = field(default_factory=list)
    purity: float | None = None

    def to_json(self) -> dict:
        out = asdict(self)
        out["examples"] = [e.to_json() for e in self.examples]
        return out

    @classmethod
    def from_json(cls, data: dict) -> ConceptRecord:
        names = {f.name for f in fields(cls)} - {"examples"}
        return cls(
            **{k: data[k] for k in names if k in data},
            examples=[Example.from_json(e) for e in data.get("examples", [])],
        )


@dataclass
class CellConcepts:
    """An atlas cell (column ``i``, row ``j``) as a few concepts: ``concepts`` [[index, weight], ...] by
    weight (non-negative), and the ``share`` of its centred direction's squared norm they explain;
    ``fires`` [[index, share], ...]: the concepts active on at least ``FIRES_MIN`` of the cell's samples,
    by that share (the viewer shades a concept's cells with it)."""

    i: int
    j: int
    concepts: list
    share: float
    fires: list = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> CellConcepts:
        return cls(
            i=int(data["i"]),
            j=int(data["j"]),
            concepts=list(data["concepts"]),
            share=float(data["share"]),
            fires=list(data.get("fires", [])),
        )


@dataclass
class ConceptsMeta:
    """A layer's concepts: ``layer``; the dictionary's ``method``, ``size`` (K), ``k`` (active atoms a
    sample), ``encoding`` and ``channels``; its file ``dictionary`` and ``source`` (the user's file it was
    loaded from, else None); ``figures`` on the held-out samples (``r2``, ``l0``, ``dead``, ``rows``, and
    ``stability`` when measured); ``train_rows``; ``seconds`` per step; the icons' ``render_size`` and
    ``faithfulness_median``; ``concepts`` (K records); ``cells``: per main grid size (as text), each cell's
    top concepts; ``settings``: the item's settings."""

    layer: str
    method: str
    size: int
    k: int
    figures: dict[str, Any]
    concepts: list[ConceptRecord]
    cells: dict[str, list[CellConcepts]]
    encoding: str = "omp"
    channels: int = 0
    dictionary: str | None = None
    source: str | None = None
    train_rows: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    render_size: int | None = None
    faithfulness_median: float | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("concepts", "cells")}
        out["concepts"] = [c.to_json() for c in self.concepts]
        out["cells"] = {n: [c.to_json() for c in cells] for n, cells in self.cells.items()}
        return out

    def summary(self) -> dict:
        """The dictionary's figures in one flat object (what ``actlas info`` prints per layer)."""
        live = [c for c in self.concepts if c.count > 0]
        return {
            "method": self.method,
            "size": self.size,
            "k": self.k,
            "source": self.source,
            **{f"heldout_{k}": v for k, v in self.figures.items()},
            "train_rows": self.train_rows,
            "live": len(live),
            "labelled_classes": len({c.label for c in live}),
            "faithfulness_median": self.faithfulness_median,
            "exemplar_purity": purity_mean(self.concepts),
            "seconds": self.seconds,
        }

    @classmethod
    def from_json(cls, data: dict, where: str = "concepts.json") -> ConceptsMeta:
        """Concepts from their JSON data; ``DataError`` naming the missing keys."""
        if not isinstance(data, dict):
            raise DataError(f"{where} is not a JSON object; rebuild it with the concepts stage")
        missing = [k for k in REQUIRED if k not in data]
        if missing:
            raise DataError(f"{where} lacks {missing}; rebuild it with the concepts stage (see docs/run-directory.md)")
        names = {f.name for f in fields(cls)} - {"concepts", "cells"}
        return cls(
            **{k: data[k] for k in names if k in data},
            concepts=[ConceptRecord.from_json(c) for c in data["concepts"]],
            cells={str(n): [CellConcepts.from_json(c) for c in cells] for n, cells in data["cells"].items()},
        )


def purity_mean(records: list[ConceptRecord]) -> float | None:
    """The mean ``purity`` of the concepts that have one (None when none has)."""
    values = [c.purity for c in records if c.purity is not None]
    return round(sum(values) / len(values), 4) if values else None


def write_concepts(path: PathLike, meta: ConceptsMeta) -> Path:
    """Write ``concepts.json`` atomically."""
    return write_json(path, meta.to_json())


def read_concepts(path: PathLike) -> ConceptsMeta:
    """``concepts.json`` as ``ConceptsMeta``; ``MissingError`` when absent, ``DataError`` when incomplete."""
    if not Path(path).exists():
        raise MissingError(f"{path} not found: run the concepts stage for its layer first (actlas concepts RUN)")
    return ConceptsMeta.from_json(read_json(path), str(path))
