"""viewer: build ``RUN/viewer/`` (deep-zoom tiles, data.json, the static viewer) from a run's atlases.

A run holds one atlas per layer and grid size (``RUN/LAYER/grid-N/atlas.json`` and
``atlas.png``, see ``docs/run-directory.md``), and may hold class atlases
(``RUN/LAYER/class-<slug>/``) and two-class comparisons (``RUN/LAYER/compare-<a>-<b>/``) in
the same format. :func:`viewer` turns them into ``RUN/viewer/``:

```
RUN/viewer/
  index.html viewer.js aligned.js viewer.css  the static viewer (package data, actlas/viewer/)
  openseadragon/                       OpenSeadragon, copied from node_modules (npm ci)
  tiles/LAYER/FOLDER.dzi               deep-zoom pyramid of each atlas.png (pyvips dzsave);
  tiles/LAYER/FOLDER_files/{level}/{col}_{row}.jpg    FOLDER is grid-N, class-<slug> or compare-<a>-<b>
  data.json, data.js                   the index (actlas.formats.viewer)
```

Icons and dataset examples are not copied: ``data.json`` points at them in the run
(``../LAYER/grid-N/icons/3_7.png``). Serving it is ``actlas.serve``'s job.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from importlib import resources
from pathlib import Path

from .. import paths
from ..errors import DependencyError, MissingError
from ..formats.atlas import read_atlas
from ..formats.concepts import read_concepts
from ..formats.manifest import read_manifest
from ..formats.viewer import TILE_FORMAT, TILE_OVERLAP, TILE_QUALITY, TILE_SIZE, AtlasRef, data_index, write_data

# the static viewer: package data (actlas/viewer/) copied into every RUN/viewer/
STATIC_FILES = ("index.html", "viewer.js", "aligned.js", "viewer.css")
OSD_ENV = "ACTLAS_OPENSEADRAGON_DIR"


def read_atlases(run_dir: Path, layers: list[str] | None = None, atlases: list[Path] | None = None) -> list[AtlasRef]:
    """Read the atlases of a run, checked: main atlases (``RUN/LAYER/grid-N/atlas.json``) in (layer, grid)
    order, then class atlases and comparisons (``class-*/``, ``compare-*/``) in (layer, kind, name) order,
    then aligned atlases (``RUN/aligned/NAME/MAP/grid-N/``) in (alignment, map, grid) order.

    ``atlases`` lists the atlas.json files to show (the workflow passes those of its plan); by
    default every one found in the run.

    Layers follow ``layers`` when given, else ``manifest.json``'s, else sorted names. Raises
    ``MissingError`` when the run has no atlas and ``DataError`` when an atlas.json lacks a key of
    the format (``actlas.formats.atlas``).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise MissingError(f"run directory {run_dir} does not exist; pass the run_dir of your config")
    found = (
        [Path(p) for p in atlases]
        if atlases
        else sorted(p for folder in paths.ATLAS_FOLDERS for p in run_dir.glob(f"*/{folder}/{paths.ATLAS_JSON}"))
        + sorted(paths.aligned_root(run_dir).glob(f"*/*/grid-*/{paths.ATLAS_JSON}"))
    )
    refs = [AtlasRef(layer=path.parent.parent.name, folder=path.parent, atlas=read_atlas(path)) for path in found]
    aligned = [r for r in refs if r.kind == "aligned"]  # after the others, in their alignment's order
    refs = [r for r in refs if r.kind != "aligned"]
    if not refs and not aligned:
        raise MissingError(
            f"no atlas in {run_dir} (expected {run_dir}/LAYER/grid-N/{paths.ATLAS_JSON}); "
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
    ) + sorted(aligned, key=lambda r: (r.atlas.aligned.name, r.atlas.aligned.maps.index(r.layer), r.grid))


def _layer_order(run_dir: Path, layers: set[str], given: list[str] | None = None) -> list[str]:
    """Layers in the ``given`` order, else the manifest's order, then any others sorted."""
    listed: list[str] = list(given or [])
    if not listed and paths.manifest(run_dir).is_file():
        try:
            listed = [v if isinstance(v, str) else v.get("name", "") for v in read_manifest(run_dir).layers or []]
        except (ValueError, AttributeError, TypeError):
            listed = []
    ordered = [layer for layer in listed if layer in layers]
    return ordered + sorted(layers - set(ordered))


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
    raise MissingError(
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
        raise DependencyError("building the viewer needs pyvips: pip install pyvips pyvips-binary") from err
    if not atlas_png.is_file():
        raise MissingError(f"{atlas_png} is missing; rerun the atlas stage for this grid")
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
    # dzsave's record of the image carries the time it ran: the same atlas must make the same viewer
    Path(f"{out_base}_files", paths.TILE_PROPERTIES).unlink(missing_ok=True)
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
    concepts: list[Path | str] | None = None,
) -> Path:
    """Build ``RUN/viewer/`` from every atlas of the run; returns the path of its index.html.

    ``layers`` orders the layer switch (default: manifest.json's order, else sorted);
    ``openseadragon`` is OpenSeadragon's build folder (default: :func:`find_openseadragon`);
    ``atlases`` the atlas.json files to show (default: every one in the run); ``patches`` the
    patch experiments' report.json files linked from the cells they tested (default: every
    ``RUN/patches/*/report.json``); ``concepts`` the layers' ``concepts.json`` files shown beside their
    main atlases (default: every ``RUN/LAYER/concepts/concepts.json``).

    Reads each ``RUN/LAYER/FOLDER/atlas.json`` and ``atlas.png``, tiles the PNG with pyvips
    ``dzsave``, writes ``data.json``/``data.js`` and copies the static viewer and OpenSeadragon.
    The folder is built next to the old one and swapped in, so a failed build leaves the old
    viewer intact.
    """
    run_dir = Path(run_dir)
    refs = read_atlases(run_dir, layers, [Path(a) for a in atlases] if atlases else None)
    osd = find_openseadragon(Path(openseadragon) if openseadragon else None)
    final = paths.viewer_dir(run_dir)
    staging = Path(tempfile.mkdtemp(prefix=".viewer-", dir=run_dir))
    try:
        sizes = {r.tiles: make_tiles(r.folder / r.atlas.image, staging / r.tiles) for r in refs}
        reports = (
            [Path(p) for p in patches]
            if patches is not None
            else sorted(paths.patches_dir(run_dir).glob(f"*/{paths.REPORT_JSON}"))
        )
        found = (
            [Path(p) for p in concepts]
            if concepts is not None
            else sorted(run_dir.glob(f"*/{paths.CONCEPTS}/{paths.CONCEPTS_JSON}"))
        )
        layer_concepts = [(p.parent.parent.name, read_concepts(p)) for p in found]
        index = data_index(refs, sizes, title=run_dir.resolve().name, reports=reports, concepts=layer_concepts)
        write_data(staging, index)
        _copy_static(staging, osd)
        staging.chmod(0o755)
        if final.exists():
            shutil.rmtree(final)
        staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return paths.viewer_index(run_dir)


def ensure_viewer(run_dir: Path) -> None:
    """Build the viewer when the run has none yet."""
    if not paths.viewer_index(run_dir).is_file():
        viewer(run_dir)
