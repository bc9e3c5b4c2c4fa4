"""The viewer's index ``RUN/viewer/data.json`` (and ``data.js``, the same as a script for file:// pages),
built from a run's atlases (``atlas.json``) and patch experiments (``report.json``).

::

    {title, classes: [name],
     layers: [{layer, grids: [{grid, icon_size, size_px, dzi, tile_source, labelled, cells}]}],
     extras: [{id, layer, kind: "class" | "compare", title, about, axis, grids: [one grid]}],
     aligned: [{id, name, title, about, maps: [{id, layer, model, title, trust, [classes], grids: [{..., pairs}]}]}],
     patches: [{name, title, layer, report, figure, figures}],
     concepts: [{layer, method, size, k, figures, faithfulness_median, concepts, cells}]}

A cell holds ``i, j, count, label, label_index, top, attribution, faithfulness, icon, examples``
(paths relative to ``viewer/``) and, when a patch experiment tested its icon or dataset example,
``patches`` (its numbers); a cell of an aligned map adds ``near`` and ``partners`` (per other map: the
share of its photos in the same or a neighbouring cell there, and the cells [[i, j, photos], ...] they
land in). ``src/actlas/viewer/viewer.js`` reads it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from .. import paths
from ..errors import DataError
from ..patches.spec import tested_cell
from ..text import slug
from .atlas import AtlasMeta, CellRecord
from .atomic import PathLike, write_text
from .concepts import ConceptsMeta
from .report import read_report

TILE_SIZE = 256
TILE_OVERLAP = 1
TILE_FORMAT = "jpg"
TILE_QUALITY = 90


@dataclass(frozen=True)
class AtlasRef:
    """One ``RUN/LAYER/FOLDER/atlas.json`` (FOLDER: grid-N, class-<slug>, compare-<a>-<b>) and its content."""

    layer: str
    folder: Path  # RUN/LAYER/FOLDER
    atlas: AtlasMeta

    @property
    def grid(self) -> int:
        return int(self.atlas.grid)

    @property
    def kind(self) -> str:
        """``atlas`` (a main atlas, one per grid size), ``class`` or ``compare``."""
        return self.atlas.kind

    @property
    def view(self) -> str:
        """The folder's name: ``grid-8``, ``class-great-white-shark``, ``compare-snorkel-scuba-diver``."""
        return self.folder.name

    @property
    def rel(self) -> str:
        """The folder relative to the run: ``LAYER/FOLDER``, or ``aligned/NAME/MAP/grid-N`` for an aligned atlas."""
        a = self.atlas.aligned
        return f"{self.layer}/{self.view}" if a is None else f"{paths.ALIGNED}/{a.name}/{a.map}/{self.view}"

    @property
    def tiles(self) -> str:
        """Its deep-zoom pyramid, relative to the viewer folder (``actlas.paths.tiles``, ``aligned_tiles``)."""
        a = self.atlas.aligned
        return paths.tiles(self.layer, self.view) if a is None else paths.aligned_tiles(a.name, a.map, self.view)


def _round(value: float, digits: int = 4) -> float:
    """Round to ``digits`` significant digits (keeps data.json small)."""
    if value == 0 or not math.isfinite(value):
        return 0.0 if not math.isfinite(value) else value
    return round(value, digits - 1 - int(math.floor(math.log10(abs(value)))))


def _run_relative(ref: AtlasRef, path: str) -> str:
    """Map a path inside ``LAYER/FOLDER/`` (as atlas.json writes it) to a URL relative to viewer/."""
    parts = PurePosixPath(path).parts
    if not parts or PurePosixPath(path).is_absolute() or ".." in parts:
        raise DataError(f"{ref.folder}/{paths.ATLAS_JSON} names {path!r}; paths must stay inside {ref.folder}")
    return "../" + "/".join((ref.rel, *parts))


def cell_entry(ref: AtlasRef, cell: CellRecord) -> dict[str, Any]:
    """One cell of atlas.json as the viewer reads it (paths relative to viewer/, values rounded)."""
    return {
        "i": cell.i,
        "j": cell.j,
        "count": cell.count,
        "label": cell.label,
        "label_index": cell.label_index,
        "top": [[str(name), _round(float(v))] for name, v in cell.top],
        "attribution": {str(k): _round(float(v)) for k, v in cell.attribution.items()},
        "faithfulness": None if cell.faithfulness is None else _round(float(cell.faithfulness)),
        "icon": _run_relative(ref, cell.icon) if cell.icon else None,
        "examples": [
            {
                "src": _run_relative(ref, ex.src),
                "label": ex.label,
                "pred": ex.pred,
                "prob": None if ex.prob is None else _round(float(ex.prob), 3),
                "similarity": None if ex.similarity is None else _round(float(ex.similarity), 3),
            }
            for ex in cell.examples
        ],
        **({"near": cell.near, "partners": cell.partners} if cell.near or cell.partners else {}),
    }


def grid_entry(ref: AtlasRef, width: int, height: int) -> dict[str, Any]:
    """One grid of one layer: its tile pyramid (as an inline OpenSeadragon tile source) and cells."""
    tiles = ref.tiles
    return {
        "grid": ref.grid,
        "icon_size": int(ref.atlas.icon_size),
        "size_px": [width, height],
        "dzi": f"{tiles}.dzi",
        "tile_source": {
            "Image": {
                "xmlns": "http://schemas.microsoft.com/deepzoom/2008",
                "Url": f"{tiles}_files/",
                "Format": TILE_FORMAT,
                "Overlap": str(TILE_OVERLAP),
                "TileSize": str(TILE_SIZE),
                "Size": {"Width": str(width), "Height": str(height)},
            }
        },
        "labelled": _run_relative(ref, ref.atlas.labelled) if ref.atlas.labelled else None,
        "cells": [cell_entry(ref, c) for c in ref.atlas.cells],
    }


def extra_entry(ref: AtlasRef, width: int, height: int) -> dict[str, Any]:
    """A class atlas or comparison as the viewer lists it: id, title, description and its one grid."""
    a = ref.atlas.extra
    if ref.kind == "compare":
        first, second = ([*a.get("pair", []), "A", "B"])[:2]
        title = f"compare: {first} vs {second}"
        about = f"x: {a.get('x_axis', 'attribution to A minus B')}; y: {a.get('y_axis', '1-D layout')}."
        axis = {"left": f"more {second}", "right": f"more {first}"}
    else:
        title = f"class: {a.get('class', ref.view)}"
        about = (
            f"Samples whose attribution supports {a.get('class', 'the class')} "
            f"(filter {a.get('filter', '?')}, at most {a.get('top', '?')}), laid out with {a.get('method', '?')}."
        )
        axis = None
    counts = [f"{a[k]} {k}" for k in ("samples", "images") if a.get(k) is not None]
    return {
        "id": f"{ref.layer}/{ref.view}",
        "layer": ref.layer,
        "kind": ref.kind,
        "title": title,
        "about": about + (" " + ", ".join(counts) + "." if counts else ""),
        "axis": axis,
        "grids": [grid_entry(ref, width, height)],
    }


def _rate(r: dict) -> dict[str, Any]:
    return {"k": r.get("k"), "n": r.get("n"), "rate": r.get("rate"), "ci": r.get("ci")}


def patch_links(reports: list[Path]) -> tuple[list[dict[str, Any]], dict[tuple[str, str, int, int], list[dict]]]:
    """The patch experiments of a run as the viewer shows them.

    ``reports``: ``RUN/patches/NAME/report.json`` files. Returns (experiments, per cell): one entry
    per report (title, links to report.md and its figures, relative to viewer/; ``figure`` is the
    single-photo demonstration when there is one, else the first figure, the rates), and for each
    cell (layer, atlas folder, i, j) whose icon or dataset patch a report tested (``cell:DIR:I,J``,
    ``example:DIR:I,J,E``), the patch's numbers: its main population (``source_correct`` when it
    has photos, else ``not_target``), static and dynamic rates with 95% intervals, the best
    control's rate and whether the patch's interval lies above both controls'.
    """
    experiments, cells = [], {}
    for path in reports:
        report = read_report(path)
        name = Path(path).parent.name
        base = f"../{paths.PATCHES}/{name}/"
        title = f"{report.source or 'any photo'} \u2192 {report.target}"
        figures = list(report.figures)
        main = paths.SINGLE_PHOTO_PNG if paths.SINGLE_PHOTO_PNG in figures else (figures[0] if figures else None)
        experiments.append(
            {
                "name": name,
                "title": title,
                "layer": report.layer,
                "report": base + paths.REPORT_MD,
                "figure": base + main if main else None,
                "figures": [base + f for f in figures],
            }
        )
        for e in report.patches:
            cell = tested_cell(e.spec)
            if cell is None:
                continue
            pops = e.populations
            pop = "source_correct" if pops.get("source_correct", {}).get("patch", {}).get("n") else "not_target"
            if pop not in pops:
                continue
            d = pops[pop]
            control = e.vs_controls.get(pop, {})
            examples = paths.examples_png_name(slug(e.name))  # the figure of the patch's photos
            link = {
                "experiment": name,
                "title": title,
                "patch": e.name,
                "spec": e.spec,
                "kind": "dataset patch" if e.spec.startswith("example:") else "icon",
                "discovered": e.discovered,
                "population": pop,
                "report": base + paths.REPORT_MD,
                "figure": base + examples if examples in figures else None,
                **{proto: _rate(d["patch"][proto]) for proto in ("static", "dynamic")},
                "best_control": {proto: control.get(proto, {}).get("control_rate") for proto in ("static", "dynamic")},
                "above_controls": e.beats_controls.get(pop, {}),
            }
            cells.setdefault((str(report.layer), *cell), []).append(link)
    return experiments, cells


def _percent(value: float) -> str:
    return f"{100 * value:.0f}%"


def aligned_entries(refs: list[AtlasRef], sizes: dict[str, tuple[int, int]], classes: list[str]) -> list[dict]:
    """The alignments as the viewer shows them, side by side: per alignment (in the order of ``refs``) its id
    ``aligned/NAME``, title, description, measures (``pairs``, ``trust`` per map), and its ``maps`` in order,
    each with its grids coarse to fine (cells with ``near`` and ``partners``) and, for another model's map
    whose classes differ from the run's, its own ``classes``."""
    out: dict[str, dict[str, Any]] = {}
    for ref in refs:
        a = ref.atlas.aligned
        entry = out.setdefault(a.name, {"id": f"{paths.ALIGNED}/{a.name}", "name": a.name, "order": a.maps, "maps": {}})
        view = entry["maps"].setdefault(
            a.map, {"id": a.map, "layer": ref.atlas.layer, "model": a.model, "trust": a.trust.to_json(), "grids": []}
        )
        if list(ref.atlas.classes) != classes:
            view["classes"] = list(ref.atlas.classes)
        view["grids"].append(grid_entry(ref, *sizes[ref.tiles]) | {"pairs": [p.to_json() for p in a.pairs]})
    entries = []
    for name, entry in out.items():
        maps = [entry["maps"][m] for m in entry["order"] if m in entry["maps"]]
        for view in maps:
            view["grids"].sort(key=lambda g: g["grid"])
            view["title"] = view["layer"] if view["model"] is None else f"{view['layer']} ({view['model']})"
        first = maps[0]["grids"][-1]["pairs"] if maps else []
        grid = maps[0]["grids"][-1]["grid"] if maps else 0
        titles = {v["id"]: v["title"] for v in maps}
        pairs = "; ".join(
            f"{titles.get(p['maps'][1], p['maps'][1])}: {p['ratio']:.2f} of the shuffled distance, "
            f"{_percent(p['near'])} in the same or a neighbouring cell (chance {_percent(p['near_chance'])})"
            for p in first
        )
        trust = ", ".join(f"{v['title']} {v['trust']['delta']:+.3f}" for v in maps)
        about = (
            "Each map lays out the same photos, one point a photo (its mean activation over the layer), so that a "
            f"photo lands at about the same place in every map. Photos of {maps[0]['title'] if maps else '?'} "
            f"against {pairs} (grid {grid}). Trustworthiness against each map laid out alone: {trust}."
        )
        entries.append(
            {
                "id": entry["id"],
                "name": name,
                "title": "aligned: " + " \u2194 ".join(v["title"] for v in maps),
                "about": about,
                "maps": maps,
            }
        )
    return entries


def concepts_entry(layer: str, meta: ConceptsMeta) -> dict[str, Any]:
    """A layer's concepts (``LAYER/concepts/concepts.json``) as the viewer reads them: the dictionary's
    figures, each concept (paths relative to viewer/; ``centroid`` [x, y] on the atlas's unit square, None for
    a concept active on no sample, and ``spread``, for the concept map) and each main grid's cells with their
    concepts."""

    def rel(path: str) -> str:
        parts = PurePosixPath(path).parts
        if not parts or PurePosixPath(path).is_absolute() or ".." in parts:
            raise DataError(f"{layer}/{paths.CONCEPTS}/{paths.CONCEPTS_JSON} names {path!r}; paths must stay inside")
        return "/".join(("..", layer, paths.CONCEPTS, *parts))

    return {
        "layer": layer,
        "method": meta.method,
        "size": meta.size,
        "k": meta.k,
        "figures": meta.figures,
        "faithfulness_median": meta.faithfulness_median,
        "concepts": [
            {
                "index": c.index,
                "label": c.label,
                "frequency": _round(float(c.frequency)),
                "count": c.count,
                "faithfulness": c.faithfulness,
                "stability": c.stability,
                "top": [[str(name), _round(float(v))] for name, v in c.top],
                "centroid": None if c.centroid is None else [_round(float(v)) for v in c.centroid],
                "spread": _round(float(c.spread)),
                "icon": rel(c.icon) if c.icon else None,
                "examples": [
                    {"src": rel(e.src), "label": e.label, "pred": e.pred, "prob": e.prob, "similarity": e.similarity}
                    for e in c.examples
                ],
            }
            for c in meta.concepts
        ],
        "cells": {n: [c.to_json() for c in cells] for n, cells in meta.cells.items()},
    }


def data_index(
    refs: list[AtlasRef],
    sizes: dict[str, tuple[int, int]],
    title: str,
    reports: list[Path] = (),
    concepts: list[tuple[str, ConceptsMeta]] = (),
) -> dict[str, Any]:
    """The viewer's ``data.json``: classes; layers in order, each with its main grids coarse to fine;
    extras: class atlases and comparisons, one grid each; aligned: the alignments, their maps side by side
    (``aligned_entries``); patches: the patch experiments (``patch_links``), each cell listing those that
    tested its icon or dataset patch; concepts: each (layer, ``concepts.json``) of ``concepts``
    (``concepts_entry``).

    ``sizes`` maps each atlas's tiles (``AtlasRef.tiles``) to the atlas image's (width, height) in pixels.
    """
    aligned = [r for r in refs if r.kind == "aligned"]
    refs = [r for r in refs if r.kind != "aligned"] or aligned
    classes = list(refs[0].atlas.classes)
    for ref in refs[1:]:
        if ref.kind != "aligned" and list(ref.atlas.classes) != classes:
            raise DataError(
                f"{ref.folder}/{paths.ATLAS_JSON} lists other classes than {refs[0].folder}/{paths.ATLAS_JSON}; "
                "all atlases of a run must come from one model: rebuild the run"
            )
    layers: dict[str, list[dict[str, Any]]] = {}
    extras = []
    experiments, tested = patch_links(list(reports))
    for ref in refs:
        if ref.kind == "aligned":
            continue
        size = sizes[ref.tiles]
        if ref.kind == "atlas":
            entry = grid_entry(ref, *size)
            layers.setdefault(ref.layer, []).append(entry)
        else:
            entry = extra_entry(ref, *size)
            extras.append(entry)
        for grid in entry.get("grids", [entry]):
            for cell in grid["cells"]:
                links = tested.get((ref.layer, ref.view, cell["i"], cell["j"]))
                if links:
                    cell["patches"] = links
    return {
        "title": title,
        "classes": classes,
        "layers": [{"layer": name, "grids": grids} for name, grids in layers.items()],
        "extras": extras,
        "aligned": aligned_entries(aligned, sizes, classes),
        "patches": experiments,
        "concepts": [concepts_entry(layer, meta) for layer, meta in concepts],
    }


def write_data(folder: PathLike, index: dict[str, Any]) -> None:
    """Write ``data.json`` and ``data.js`` (``window.ACTLAS_DATA=...``) into the viewer folder."""
    text = json.dumps(index, separators=(",", ":"))
    write_text(Path(folder) / paths.VIEWER_DATA, text)
    write_text(Path(folder) / paths.VIEWER_DATA_JS, f"window.ACTLAS_DATA={text};\n")
