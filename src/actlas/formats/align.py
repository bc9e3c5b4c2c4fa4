"""An alignment's files (``RUN/aligned/NAME/``): ``coords.npz`` (``AlignedCoords``: each map's aligned coords and
the photos they are of) and ``align.json`` (``AlignRecord``: its maps, the layout's record and the measures).

Written by the align stage (``actlas.stages.align``); read by the aligned grid and atlas stages, the manifest
and ``actlas info``. The measures of a pair (``PairMeasure``) and of a map (``TrustRecord``) are also what each
aligned atlas's ``atlas.json`` carries (``actlas.formats.atlas.AlignedMeta``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError, MissingError
from .atomic import PathLike, load_npz, read_json, save_npz, write_json


@dataclass
class AlignedCoords:
    """``coords.npz``: per map (in the alignment's order, ``maps`` their ids) its ``coords`` (n_i, 2) float32 in
    [0, 1], equal coords meaning the same place in every map, and ``photos`` (n_i,) int64, the photo of each
    point (its index in the run's plan, ascending)."""

    maps: list[str]
    coords: list[np.ndarray]
    photos: list[np.ndarray]

    def of(self, map_id: str) -> tuple[np.ndarray, np.ndarray]:
        """(coords (n, 2), photos (n,)) of one map; ``DataError`` when the alignment has no such map."""
        if map_id not in self.maps:
            raise DataError(f"the alignment holds maps {self.maps}, not {map_id!r}: run align again")
        k = self.maps.index(map_id)
        return self.coords[k], self.photos[k]


def write_aligned_coords(path: PathLike, aligned: AlignedCoords) -> Path:
    arrays = {"maps": np.array(aligned.maps, dtype=np.str_)}
    for k, (xy, photos) in enumerate(zip(aligned.coords, aligned.photos)):
        arrays[f"coords_{k}"] = np.asarray(xy, np.float32)
        arrays[f"photos_{k}"] = np.asarray(photos, np.int64)
    return save_npz(path, **arrays)


def read_aligned_coords(path: PathLike) -> AlignedCoords:
    """``coords.npz`` as ``AlignedCoords``; ``MissingError`` naming the stage that makes it."""
    if not Path(path).exists():
        raise MissingError(f"{path} not found: run align for the alignment first (actlas align, or the workflow)")
    data = load_npz(path)
    maps = [str(m) for m in data["maps"]]
    return AlignedCoords(
        maps, [data[f"coords_{k}"] for k in range(len(maps))], [data[f"photos_{k}"] for k in range(len(maps))]
    )


@dataclass
class PairMeasure:
    """How well two aligned maps line up. ``maps`` [A, B] (ids); ``matched`` the median distance between a
    photo's points in A and B (coords in [0, 1]), ``shuffled`` the same with the partners shuffled, ``ratio``
    matched / shuffled (0: on top of each other, 1: chance), ``unaligned_ratio`` the ratio of the maps laid
    out alone and moved onto each other (``actlas.align.rigid_align``: what aligning adds), ``pairs`` the
    photos in both; ``near`` the share of photos whose partner falls in the same or a neighbouring cell
    (``reach`` cells) of B's ``grid`` x ``grid`` grid, ``near_median`` its median over A's cells and
    ``near_chance`` the share with the partners shuffled."""

    maps: list[str]
    matched: float
    shuffled: float
    ratio: float
    pairs: int
    near: float
    near_median: float
    near_chance: float
    grid: int
    reach: int = 1
    unaligned_ratio: float | None = None

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> PairMeasure:
        return cls(**{k: data.get(k) for k in cls.__dataclass_fields__ if k in data})


@dataclass
class TrustRecord:
    """How well one aligned map keeps its own neighbourhoods: sklearn's trustworthiness (2,000 photos, 10
    neighbours, the layout's metric) of the ``aligned`` layout and of the map laid out alone (``unaligned``,
    the main atlas's UMAP settings), and ``delta`` = aligned - unaligned (the target: above -0.02)."""

    map: str
    aligned: float
    unaligned: float
    delta: float

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> TrustRecord:
        return cls(**{k: data.get(k) for k in cls.__dataclass_fields__})


@dataclass
class MapRecord:
    """One map of an alignment: its ``id``, ``layer``, ``model`` (None: the run's model; else its folder name
    under ``RUN/models/``), the ``photos`` laid out and their ``channels``."""

    id: str
    layer: str
    model: str | None
    photos: int
    channels: int

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class AlignRecord:
    """``align.json``: the alignment's ``name``, ``maps``, ``alignment`` strength, what a point is
    (``points``), the layout's record (``layout``: backend, neighbours, epochs, matched photos, timings), the
    measures of every pair of maps (``pairs``, on the largest grid) and of every map (``trust``), and the
    stage's ``seconds``."""

    name: str
    maps: list[MapRecord]
    alignment: float
    points: str
    layout: dict
    pairs: list[PairMeasure]
    trust: list[TrustRecord]
    seconds: float
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "maps": [m.to_json() for m in self.maps],
            "alignment": self.alignment,
            "points": self.points,
            "layout": self.layout,
            "pairs": [p.to_json() for p in self.pairs],
            "trust": [t.to_json() for t in self.trust],
            "seconds": self.seconds,
            **self.extra,
        }

    @classmethod
    def from_json(cls, data: dict, where: str = "align.json") -> AlignRecord:
        missing = [k for k in ("name", "maps", "alignment", "pairs", "trust") if k not in data]
        if missing:
            raise DataError(f"{where} lacks {missing}; run align again")
        names = set(cls.__dataclass_fields__) - {"extra"}
        return cls(
            name=data["name"],
            maps=[MapRecord(**m) for m in data["maps"]],
            alignment=float(data["alignment"]),
            points=data.get("points", ""),
            layout=dict(data.get("layout", {})),
            pairs=[PairMeasure.from_json(p) for p in data["pairs"]],
            trust=[TrustRecord.from_json(t) for t in data["trust"]],
            seconds=float(data.get("seconds", 0.0)),
            extra={k: v for k, v in data.items() if k not in names},
        )


def write_align_record(path: PathLike, record: AlignRecord) -> Path:
    """Write ``align.json`` atomically."""
    return write_json(path, record.to_json())


def read_align_record(path: PathLike) -> AlignRecord:
    """``align.json`` as ``AlignRecord``; ``MissingError`` when absent."""
    if not Path(path).exists():
        raise MissingError(f"{path} not found: run align for the alignment first (actlas align, or the workflow)")
    return AlignRecord.from_json(read_json(path), str(path))
