"""viewer: build ``RUN/viewer/`` (deep-zoom tiles, data.json, the static viewer) from a run's atlases.

A run holds one atlas per layer and grid size (``RUN/LAYER/grid-N/atlas.json`` and
``atlas.png``, see ``docs/run-directory.md``), and may hold class atlases
(``RUN/LAYER/class-<slug>/``) and two-class comparisons (``RUN/LAYER/compare-<a>-<b>/``) in
the same format. :func:`viewer` turns them into ``RUN/viewer/``:

```
RUN/viewer/
  index.html viewer.js viewer.css      the static viewer (package data, actlas/viewer/)
  openseadragon/                       OpenSeadragon, copied from node_modules (npm ci)
  tiles/LAYER/FOLDER.dzi               deep-zoom pyramid of each atlas.png (pyvips dzsave);
  tiles/LAYER/FOLDER_files/{level}/{col}_{row}.jpg    FOLDER is grid-N, class-<slug> or compare-<a>-<b>
  data.json                            index: layers (main atlases), extras (class atlases and
                                       comparisons), grids, tile sources, cells, classes
  data.js                              the same index as a script (lets file:// pages load it)
```

Icons and dataset examples are not copied: ``data.json`` points at them in the run
(``../LAYER/grid-N/icons/3_7.png``). Serving it is ``actlas.serve``'s job.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any

from ..paths import slug

VIEWER_DIR = "viewer"
STATIC_FILES = ("index.html", "viewer.js", "viewer.css")
OSD_ENV = "ACTLAS_OPENSEADRAGON_DIR"
TILE_SIZE = 256
TILE_OVERLAP = 1
TILE_FORMAT = "jpg"
TILE_QUALITY = 90

# Atlas folders of a layer: the main atlas per grid size, class atlases, two-class comparisons.
ATLAS_FOLDERS = ("grid-*", "class-*", "compare-*")

# --------------------------------------------------------------------------- reading atlases


@dataclass(frozen=True)
class AtlasRef:
    """One ``RUN/LAYER/FOLDER/atlas.json`` (FOLDER: grid-N, class-<slug>, compare-<a>-<b>)."""

    layer: str
    grid: int
    folder: Path  # RUN/LAYER/FOLDER
    atlas: dict[str, Any] = field(repr=False)

    @property
    def kind(self) -> str:
        """``atlas`` (a main atlas, one per grid size), ``class`` or ``compare``."""
        return str(self.atlas.get("kind", "atlas"))

    @property
    def view(self) -> str:
        """The folder's name: ``grid-8``, ``class-great-white-shark``, ``compare-snorkel-scuba-diver``."""
        return self.folder.name


REQUIRED_KEYS = ("layer", "grid", "icon_size", "image", "size_px", "classes", "cells")
REQUIRED_CELL_KEYS = ("i", "j", "count", "label")


def read_atlases(run_dir: Path, layers: list[str] | None = None, atlases: list[Path] | None = None) -> list[AtlasRef]:
    """Read the atlases of a run, checked: main atlases (``RUN/LAYER/grid-N/atlas.json``) in (layer, grid)
    order, then class atlases and comparisons (``class-*/``, ``compare-*/``) in (layer, kind, name) order.

    ``atlases`` lists the atlas.json files to show (the workflow passes those of its plan); by
    default every one found in the run.

    Layers follow ``layers`` when given, else ``manifest.json``'s ``layers``, else sorted names.
    Raises ``FileNotFoundError`` when the run has no atlas and ``ValueError`` when an
    atlas.json lacks a key of the format in ``docs/run-directory.md``.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory {run_dir} does not exist; pass the run_dir of your config")
    refs = []
    found = (
        [Path(p) for p in atlases]
        if atlases
        else sorted(p for folder in ATLAS_FOLDERS for p in run_dir.glob(f"*/{folder}/atlas.json"))
    )
    for path in found:
        atlas = json.loads(path.read_text())
        missing = [k for k in REQUIRED_KEYS if k not in atlas]
        if missing:
            raise ValueError(f"{path} lacks {missing}; rebuild it with the atlas stage (see docs/run-directory.md)")
        for cell in atlas["cells"][:1]:
            missing = [k for k in REQUIRED_CELL_KEYS if k not in cell]
            if missing:
                raise ValueError(f"cells of {path} lack {missing}; rebuild it with the atlas stage")
        refs.append(AtlasRef(layer=path.parent.parent.name, grid=int(atlas["grid"]), folder=path.parent, atlas=atlas))
    if not refs:
        raise FileNotFoundError(
            f"no atlas in {run_dir} (expected {run_dir}/LAYER/grid-N/atlas.json); "
            "run the pipeline's atlas stage first, e.g. `snakemake --cores 2 atlas`"
        )
    order = _layer_order(run_dir, {r.layer for r in refs}, layers)
    kinds = ("atlas", "class", "compare")
    return sorted(
        refs,
        key=lambda r: (
            r.kind != "atlas",
            order.index(r.layer),
            kinds.index(r.kind) if r.kind in kinds else 3,
            r.grid,
            r.view,
        ),
    )


def _layer_order(run_dir: Path, layers: set[str], given: list[str] | None = None) -> list[str]:
    """Layers in the ``given`` order, else manifest order (``manifest.json["layers"]``), then any others sorted."""
    listed: list[str] = list(given or [])
    manifest = run_dir / "manifest.json"
    if not listed and manifest.is_file():
        try:
            value = json.loads(manifest.read_text()).get("layers", [])
            listed = [v if isinstance(v, str) else v.get("name", "") for v in value]
        except (ValueError, AttributeError):
            listed = []
    ordered = [layer for layer in listed if layer in layers]
    return ordered + sorted(layers - set(ordered))


# --------------------------------------------------------------------------- the data index


def _round(value: float, digits: int = 4) -> float:
    """Round to ``digits`` significant digits (keeps data.json small)."""
    if value == 0 or not math.isfinite(value):
        return 0.0 if not math.isfinite(value) else value
    return round(value, digits - 1 - int(math.floor(math.log10(abs(value)))))


def _run_relative(ref: AtlasRef, path: str) -> str:
    """Map a path inside ``LAYER/FOLDER/`` (as atlas.json writes it) to a URL relative to viewer/."""
    parts = PurePosixPath(path).parts
    if not parts or PurePosixPath(path).is_absolute() or ".." in parts:
        raise ValueError(f"{ref.folder}/atlas.json names {path!r}; paths must stay inside {ref.folder}")
    return "../" + "/".join((ref.layer, ref.view, *parts))


def cell_entry(ref: AtlasRef, cell: dict[str, Any]) -> dict[str, Any]:
    """One cell of atlas.json as the viewer reads it (paths relative to viewer/, values rounded)."""
    entry: dict[str, Any] = {
        "i": int(cell["i"]),
        "j": int(cell["j"]),
        "count": int(cell["count"]),
        "label": str(cell["label"]),
        "label_index": int(cell.get("label_index", -1)),
        "top": [[str(name), _round(float(v))] for name, v in cell.get("top", [])],
        "attribution": {str(k): _round(float(v)) for k, v in cell.get("attribution", {}).items()},
        "faithfulness": None if cell.get("faithfulness") is None else _round(float(cell["faithfulness"])),
        "icon": _run_relative(ref, cell["icon"]) if cell.get("icon") else None,
        "examples": [
            {
                "src": _run_relative(ref, ex["src"]),
                "label": ex.get("label"),
                "pred": ex.get("pred"),
                "prob": None if ex.get("prob") is None else _round(float(ex["prob"]), 3),
                "similarity": None if ex.get("similarity") is None else _round(float(ex["similarity"]), 3),
            }
            for ex in cell.get("examples", [])
        ],
    }
    return entry


def grid_entry(ref: AtlasRef, width: int, height: int) -> dict[str, Any]:
    """One grid of one layer: its tile pyramid (as an inline OpenSeadragon tile source) and cells."""
    tiles = f"tiles/{ref.layer}/{ref.view}"
    return {
        "grid": ref.grid,
        "icon_size": int(ref.atlas["icon_size"]),
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
        "labelled": _run_relative(ref, ref.atlas["labelled"]) if ref.atlas.get("labelled") else None,
        "cells": [cell_entry(ref, c) for c in ref.atlas["cells"]],
    }


def extra_entry(ref: AtlasRef, width: int, height: int) -> dict[str, Any]:
    """A class atlas or comparison as the viewer lists it: id, title, description and its one grid."""
    a = ref.atlas
    if ref.kind == "compare":
        first, second = (list(a.get("pair", [])) + ["A", "B"])[:2]
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


PATCH_CELL = re.compile(r"(?:cell|example):([^:]+):(\d+),(\d+)(?:,\d+)?")


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
        report = json.loads(Path(path).read_text())
        name = Path(path).parent.name
        base = f"../patches/{name}/"
        title = f"{report.get('source') or 'any photo'} \u2192 {report.get('target')}"
        figures = list(report.get("figures", []))
        main = "single-photo.png" if "single-photo.png" in figures else (figures[0] if figures else None)
        experiments.append(
            {
                "name": name,
                "title": title,
                "layer": report.get("layer"),
                "report": base + "report.md",
                "figure": base + main if main else None,
                "figures": [base + f for f in figures],
            }
        )
        for e in report.get("patches", []):
            m = PATCH_CELL.fullmatch(str(e.get("spec", "")))
            if not m:
                continue
            pops = e.get("populations", {})
            pop = "source_correct" if pops.get("source_correct", {}).get("patch", {}).get("n") else "not_target"
            if pop not in pops:
                continue
            d = pops[pop]
            control = e.get("vs_controls", {}).get(pop, {})
            examples = f"examples-{slug(e.get('name', ''))}.png"  # write_figures' name for the patch's photos
            link = {
                "experiment": name,
                "title": title,
                "patch": e.get("name"),
                "spec": e.get("spec"),
                "kind": "dataset patch" if str(e["spec"]).startswith("example:") else "icon",
                "discovered": bool(e.get("discovered")),
                "population": pop,
                "report": base + "report.md",
                "figure": base + examples if examples in figures else None,
                **{proto: _rate(d["patch"][proto]) for proto in ("static", "dynamic")},
                "best_control": {proto: control.get(proto, {}).get("control_rate") for proto in ("static", "dynamic")},
                "above_controls": e.get("beats_controls", {}).get(pop, {}),
            }
            key = (str(report.get("layer")), m[1], int(m[2]), int(m[3]))
            cells.setdefault(key, []).append(link)
    return experiments, cells


def data_index(
    refs: list[AtlasRef], sizes: dict[tuple[str, str], tuple[int, int]], title: str, reports: list[Path] = ()
) -> dict[str, Any]:
    """The viewer's ``data.json``: classes; layers in order, each with its main grids coarse to fine;
    extras: class atlases and comparisons, one grid each; patches: the patch experiments
    (``patch_links``), each cell listing those that tested its icon or dataset patch.

    ``sizes`` maps (layer, folder name) to the atlas image's (width, height) in pixels.
    """
    classes = list(refs[0].atlas["classes"])
    for ref in refs[1:]:
        if list(ref.atlas["classes"]) != classes:
            raise ValueError(
                f"{ref.folder}/atlas.json lists other classes than {refs[0].folder}/atlas.json; "
                "all atlases of a run must come from one model: rebuild the run"
            )
    layers: dict[str, list[dict[str, Any]]] = {}
    extras = []
    experiments, tested = patch_links(list(reports))
    for ref in refs:
        size = sizes[(ref.layer, ref.view)]
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
        "patches": experiments,
    }


# --------------------------------------------------------------------------- building


def find_openseadragon(openseadragon_dir: Path | None = None) -> Path:
    """Folder holding ``openseadragon.min.js`` and ``images/`` (OpenSeadragon's build output).

    Looks at ``openseadragon_dir``, then ``$ACTLAS_OPENSEADRAGON_DIR``, then
    ``node_modules/openseadragon/build/openseadragon`` under the working directory and under
    the actlas checkout.
    """
    candidates = [Path(p) for p in (openseadragon_dir, os.environ.get(OSD_ENV)) if p]
    sub = Path("node_modules/openseadragon/build/openseadragon")
    candidates += [Path.cwd() / sub, Path(__file__).resolve().parents[3] / sub]
    for folder in candidates:
        if (folder / "openseadragon.min.js").is_file():
            return folder
    raise FileNotFoundError(
        "OpenSeadragon not found (looked in " + ", ".join(map(str, candidates)) + "); "
        f"run `npm ci` in the actlas repository root, or set {OSD_ENV} to a folder holding openseadragon.min.js"
    )


def make_tiles(atlas_png: Path, out_base: Path) -> tuple[int, int]:
    """Write a deep-zoom pyramid of ``atlas_png``: ``out_base.dzi`` and ``out_base_files/``.

    Returns the image's (width, height) in pixels.
    """
    try:
        import pyvips
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("building the viewer needs pyvips: pip install pyvips pyvips-binary") from err
    if not atlas_png.is_file():
        raise FileNotFoundError(f"{atlas_png} is missing; rerun the atlas stage for this grid")
    image = pyvips.Image.new_from_file(str(atlas_png), access="sequential")
    if image.hasalpha():
        image = image.flatten(background=[255, 255, 255])
    out_base.parent.mkdir(parents=True, exist_ok=True)
    image.dzsave(
        str(out_base),
        layout="dz",
        tile_size=TILE_SIZE,
        overlap=TILE_OVERLAP,
        suffix=f".{TILE_FORMAT}[Q={TILE_QUALITY}]",
    )
    return image.width, image.height


def _copy_static(dest: Path, osd: Path) -> None:
    """Copy the viewer's package data and OpenSeadragon into ``dest``."""
    package = resources.files("actlas") / "viewer"
    for name in STATIC_FILES:
        (dest / name).write_bytes((package / name).read_bytes())
    (dest / "openseadragon").mkdir()
    shutil.copy2(osd / "openseadragon.min.js", dest / "openseadragon" / "openseadragon.min.js")
    if (osd / "images").is_dir():
        shutil.copytree(osd / "images", dest / "openseadragon" / "images")


def viewer(
    run_dir: Path | str,
    openseadragon: Path | str | None = None,
    layers: list[str] | None = None,
    atlases: list[Path | str] | None = None,
    patches: list[Path | str] | None = None,
) -> Path:
    """Build ``RUN/viewer/`` from every atlas of the run; returns the path of its index.html.

    ``layers`` orders the layer switch (default: manifest.json's order, else sorted);
    ``openseadragon`` is OpenSeadragon's build folder (default: :func:`find_openseadragon`);
    ``atlases`` the atlas.json files to show (default: every one in the run); ``patches`` the
    patch experiments' report.json files linked from the cells they tested (default: every
    ``RUN/patches/*/report.json``).

    Reads each ``RUN/LAYER/FOLDER/atlas.json`` and ``atlas.png``, tiles the PNG with pyvips
    ``dzsave``, writes ``data.json``/``data.js`` and copies the static viewer and OpenSeadragon.
    The folder is built next to the old one and swapped in, so a failed build leaves the old
    viewer intact.
    """
    run_dir = Path(run_dir)
    refs = read_atlases(run_dir, layers, [Path(a) for a in atlases] if atlases else None)
    osd = find_openseadragon(Path(openseadragon) if openseadragon else None)
    final = run_dir / VIEWER_DIR
    staging = Path(tempfile.mkdtemp(prefix=".viewer-", dir=run_dir))
    try:
        sizes = {
            (r.layer, r.view): make_tiles(r.folder / r.atlas["image"], staging / "tiles" / r.layer / r.view)
            for r in refs
        }
        reports = [Path(p) for p in patches] if patches is not None else sorted(run_dir.glob("patches/*/report.json"))
        index = data_index(refs, sizes, title=run_dir.resolve().name, reports=reports)
        text = json.dumps(index, separators=(",", ":"))
        (staging / "data.json").write_text(text)
        (staging / "data.js").write_text(f"window.ACTLAS_DATA={text};\n")
        _copy_static(staging, osd)
        staging.chmod(0o755)
        if final.exists():
            shutil.rmtree(final)
        staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final / "index.html"


def ensure_viewer(run_dir: Path) -> None:
    """Build the viewer when the run has none yet."""
    if not (run_dir / VIEWER_DIR / "index.html").is_file():
        viewer(run_dir)
