"""The run directory: every file and folder name of a run, spelled here and nowhere else.

Layout: ``docs/run-directory.md``. The Snakemake rules build their patterns from these functions
(with ``"{layer}"``, ``"{n}"`` ... as arguments), the stages read and write through them and the
format modules (``actlas.formats``). Pure: nothing here touches the file system.

An **atlas folder** (``grid-N``, ``class-<slug>``, ``compare-<a>-<b>``) holds ``cells.npz``, its
render batches and the atlas files; the functions taking ``folder`` name files inside one.
"""

from __future__ import annotations

from pathlib import Path

PathLike = str | Path

# --------------------------------------------------------------------------- names

SHARDS = "shards"
SHARD_INDEX = "index.json"
SHARD_SKIPPED = "skipped.tsv"
COLLECT = "collect"
STORE_SKIPPED = ".skipped.tsv"  # suffix of a shard store's skip list: shard-NNNNN.zarr.skipped.tsv
COORDS = "coords.npy"
WHITEN = "whiten.npy"
LAYOUT_INFO = "layout.json"
CELLS = "cells.npz"
ROWS = "rows.npy"
RENDER = "render"
ATLAS_PNG = "atlas.png"
ATLAS_LABELLED = "atlas-labelled.png"
ATLAS_JSON = "atlas.json"
COMPARE_PNG = "compare.png"
ICONS = "icons"
EXAMPLES = "examples"
PATCHES = "patches"
REPORT_JSON = "report.json"
REPORT_MD = "report.md"
VIEWER = "viewer"
VIEWER_DATA = "data.json"
VIEWER_DATA_JS = "data.js"
VIEWER_INDEX = "index.html"
TILE_PROPERTIES = "vips-properties.xml"  # what pyvips' dzsave writes beside a pyramid's tiles (dated: removed)
TILES = "tiles"
MANIFEST = "manifest.json"
PROBE = "probe"
PROBE_NPZ = "probe.npz"
PROBE_JSON = "probe.json"  # beside probe.npz: the same stem
CACHE = "cache"
LOGS = "logs"
BENCHMARKS = "benchmarks"
MODELS = "models"
ALIGNED = "aligned"
ALIGN_JSON = "align.json"
ALIGN_COORDS = "coords.npz"
CONCEPTS = "concepts"
DICTIONARY = "dictionary.safetensors"
CONCEPTS_JSON = "concepts.json"
LOCK = ".actlas.lock"
SEAL = ".actlas-seal.json"

# what the atlas stage writes into an atlas folder (besides the folders icons/ and examples/)
ATLAS_FILES = (ATLAS_PNG, ATLAS_LABELLED, ATLAS_JSON)
# what a class atlas or comparison folder holds besides the atlas files (its one render batch included)
CLASS_FILES = (CELLS, ROWS, COORDS, f"{RENDER}/batch-00000.npz")
# atlas folders of a layer, as glob patterns: the main atlas per grid size, class atlases, comparisons
ATLAS_FOLDERS = ("grid-*", "class-*", "compare-*")
SHARD_LIST_GLOB = "shard-*.txt"
STORE_GLOB = "shard-*.zarr"
BATCH_GLOB = "batch-*.npz"


# --------------------------------------------------------------------------- the run


def shard_name(i: int) -> str:
    """``shard-00003``."""
    return f"shard-{i:05d}"


def shards_dir(run: PathLike) -> Path:
    return Path(run) / SHARDS


def shard_index(run: PathLike) -> Path:
    """``RUN/shards/index.json``: the shards of the current plan (stale lists beside it are ignored)."""
    return shards_dir(run) / SHARD_INDEX


def shard_skipped(run: PathLike) -> Path:
    """``RUN/shards/skipped.tsv``: files the listing left out, with their reason."""
    return shards_dir(run) / SHARD_SKIPPED


def shard_list(run: PathLike, shard: str) -> Path:
    """``RUN/shards/shard-NNNNN.txt``: one shard's image list."""
    return shards_dir(run) / f"{shard}.txt"


def collect_dir(run: PathLike) -> Path:
    return Path(run) / COLLECT


def shard_store(run: PathLike, shard: str) -> Path:
    """``RUN/collect/shard-NNNNN.zarr``: one shard's Zarr store."""
    return collect_dir(run) / f"{shard}.zarr"


def store_skipped(store: PathLike) -> Path:
    """``STORE.skipped.tsv``: the images a collect job could not decode, beside its store."""
    return Path(f"{store}{STORE_SKIPPED}")


def component(name: str, what: str) -> str:
    """``name`` when it is one plain path component (no ``/``, ``..``, NUL: it cannot leave the run), else
    ``ConfigError`` in one line."""
    text = str(name)
    if not text or text in (".", "..") or any(c in text for c in "/\\\0\n"):
        from .errors import ConfigError

        raise ConfigError(f"{what} {text!r} is not a plain folder name (no '/', '..' or control characters): rename it")
    return text


def layer_dir(run: PathLike, layer: str) -> Path:
    return Path(run) / component(layer, "layer")


def coords(run: PathLike, layer: str) -> Path:
    return layer_dir(run, layer) / COORDS


def whiten(run: PathLike, layer: str) -> Path:
    return layer_dir(run, layer) / WHITEN


def layout_info(run: PathLike, layer: str) -> Path:
    return layer_dir(run, layer) / LAYOUT_INFO


def grid_dir(run: PathLike, layer: str, n: int | str) -> Path:
    return layer_dir(run, layer) / f"grid-{n}"


def class_dir(run: PathLike, layer: str, name: str) -> Path:
    """``RUN/LAYER/class-<name>``."""
    return layer_dir(run, layer) / f"class-{name}"


def compare_dir(run: PathLike, layer: str, name: str) -> Path:
    """``RUN/LAYER/compare-<a>-<b>``."""
    return layer_dir(run, layer) / f"compare-{name}"


def concepts_dir(run: PathLike, layer: str) -> Path:
    """``RUN/LAYER/concepts``: the layer's concept dictionary, its icons, exemplars and summaries."""
    return layer_dir(run, layer) / CONCEPTS


def patches_dir(run: PathLike) -> Path:
    return Path(run) / PATCHES


def patch_dir(run: PathLike, name: str) -> Path:
    return patches_dir(run) / component(name, "patch name")


def probe_dir(run: PathLike) -> Path:
    return Path(run) / PROBE


def probe_npz(run: PathLike) -> Path:
    """``RUN/probe/probe.npz``: the linear probe of a ``head: probe`` model (weight, bias)."""
    return probe_dir(run) / PROBE_NPZ


def probe_json(run: PathLike) -> Path:
    """``RUN/probe/probe.json``: the probe's classes, held-out accuracy and settings."""
    return probe_dir(run) / PROBE_JSON


def viewer_dir(run: PathLike) -> Path:
    return Path(run) / VIEWER


def manifest(run: PathLike) -> Path:
    return Path(run) / MANIFEST


def icon_cache(run: PathLike) -> Path:
    return Path(run) / CACHE / "icons"


def cached_icon(run: PathLike, key: str) -> Path:
    """``RUN/cache/icons/KEY.npz``: one cached icon."""
    return icon_cache(run) / f"{key}.npz"


def log(run: PathLike, stage: str, name: str) -> Path:
    return Path(run) / LOGS / stage / f"{name}.log"


def benchmark(run: PathLike, stage: str, name: str) -> Path:
    return Path(run) / BENCHMARKS / stage / f"{name}.tsv"


def lock(run: PathLike) -> Path:
    return Path(run) / LOCK


def seal(run: PathLike) -> Path:
    return Path(run) / SEAL


# --------------------------------------------------------------------------- aligned atlases and other models


def model_dir(run: PathLike, name: str) -> Path:
    """``RUN/models/NAME``: what another model an alignment names keeps in the run: its shard stores
    (``collect/shard-NNNNN.zarr``, collected over the run's own shard lists), the whitening of its layers
    (``LAYER/whiten.npy``) and its icon cache (``cache/icons/``)."""
    return Path(run) / MODELS / name


def model_root(run: PathLike, name: str | None = None) -> Path:
    """Where a model's stores and per-layer files live: the run itself for its own model (``name`` None),
    else :func:`model_dir`."""
    return Path(run) if name is None else model_dir(run, name)


def aligned_root(run: PathLike) -> Path:
    """``RUN/aligned``: the run's alignments."""
    return Path(run) / ALIGNED


def aligned_dir(run: PathLike, name: str) -> Path:
    """``RUN/aligned/NAME``: one alignment of two or more atlases (config ``alignments``)."""
    return aligned_root(run) / name


def align_json(run: PathLike, name: str) -> Path:
    """``RUN/aligned/NAME/align.json``: the alignment's maps, layout record and measures."""
    return aligned_dir(run, name) / ALIGN_JSON


def align_coords(run: PathLike, name: str) -> Path:
    """``RUN/aligned/NAME/coords.npz``: each map's aligned coords and the photos they are of."""
    return aligned_dir(run, name) / ALIGN_COORDS


def aligned_map_dir(run: PathLike, name: str, map_id: str) -> Path:
    """``RUN/aligned/NAME/MAP``: one map of an alignment (MAP: its layer, or ``LAYER@MODEL`` for another model's)."""
    return aligned_dir(run, name) / map_id


def aligned_grid_dir(run: PathLike, name: str, map_id: str, n: int | str) -> Path:
    """``RUN/aligned/NAME/MAP/grid-N``: an atlas folder of one aligned map."""
    return aligned_map_dir(run, name, map_id) / f"grid-{n}"


# --------------------------------------------------------------------------- inside an atlas folder


def cells(folder: PathLike) -> Path:
    """``FOLDER/cells.npz`` of an atlas folder (``grid-N``, ``class-*``, ``compare-*``)."""
    return Path(folder) / CELLS


def render_dir(folder: PathLike) -> Path:
    return Path(folder) / RENDER


def render_batch(folder: PathLike, batch: int | str) -> Path:
    """``FOLDER/render/batch-BBBBB.npz``: the icons of one render job."""
    name = f"{batch:05d}" if isinstance(batch, int) else batch
    return render_dir(folder) / f"batch-{name}.npz"


def n_batches(n_cells: int, cells_per_job: int) -> int:
    """How many render jobs a grid of ``n_cells`` cells needs (at least one)."""
    return max(1, -(-n_cells // cells_per_job)) if cells_per_job else 1


def atlas_json(folder: PathLike) -> Path:
    return Path(folder) / ATLAS_JSON


def atlas_png(folder: PathLike) -> Path:
    return Path(folder) / ATLAS_PNG


def atlas_labelled(folder: PathLike) -> Path:
    return Path(folder) / ATLAS_LABELLED


def compare_png(folder: PathLike) -> Path:
    return Path(folder) / COMPARE_PNG


def rows(folder: PathLike) -> Path:
    """``FOLDER/rows.npy`` of a class atlas or comparison: the layer's sample rows it keeps."""
    return Path(folder) / ROWS


def folder_coords(folder: PathLike) -> Path:
    """``FOLDER/coords.npy`` of a class atlas or comparison: its own layout of the rows it keeps."""
    return Path(folder) / COORDS


def icons_dir(folder: PathLike) -> Path:
    return Path(folder) / ICONS


def examples_dir(folder: PathLike) -> Path:
    return Path(folder) / EXAMPLES


def icon_name(i: int | str, j: int | str) -> str:
    """``icons/I_J.png``: a cell's icon, relative to its atlas folder (as atlas.json records it)."""
    return f"{ICONS}/{i}_{j}.png"


def example_name(i: int | str, j: int | str, e: int | str) -> str:
    """``examples/I_J_E.jpg``: dataset example E of a cell, relative to its atlas folder."""
    return f"{EXAMPLES}/{i}_{j}_{e}.jpg"


# --------------------------------------------------------------------------- inside a concepts folder

# what the concepts stage writes into its folder (besides the folders icons/ and examples/)
# (icons/I_J.png and examples/I_J_E.jpg name concepts by their place (I, J) on a square, as cells)
CONCEPT_SHEET = "sheet.jpg"  # every concept's icon above its exemplars (a contact sheet)
CONCEPT_FILES = (DICTIONARY, CELLS, f"{RENDER}/batch-00000.npz", ATLAS_PNG, ATLAS_JSON, CONCEPT_SHEET, CONCEPTS_JSON)


def dictionary(folder: PathLike) -> Path:
    """``FOLDER/dictionary.safetensors``: the concept dictionary (``actlas.formats.dictionary``)."""
    return Path(folder) / DICTIONARY


def concept_sheet(folder: PathLike) -> Path:
    """``FOLDER/sheet.jpg``: the contact sheet of the concepts, each icon above its exemplars."""
    return Path(folder) / CONCEPT_SHEET


def concepts_json(folder: PathLike) -> Path:
    """``FOLDER/concepts.json``: every concept's summary and each atlas cell's top concepts."""
    return Path(folder) / CONCEPTS_JSON


# --------------------------------------------------------------------------- inside a patch experiment's folder


def report_json(folder: PathLike) -> Path:
    return Path(folder) / REPORT_JSON


def report_md(folder: PathLike) -> Path:
    return Path(folder) / REPORT_MD


def patch_png_name(slug: str) -> str:
    """``patch-<slug>.png``: the picture of a tested patch."""
    return f"patch-{slug}.png"


def examples_png_name(slug: str) -> str:
    """``examples-<slug>.png``: a tested patch on photos, before and after."""
    return f"examples-{slug}.png"


BARS_PNG = "bars.png"
SINGLE_PHOTO_PNG = "single-photo.png"


# --------------------------------------------------------------------------- inside the viewer


def viewer_index(run: PathLike) -> Path:
    return viewer_dir(run) / VIEWER_INDEX


def tiles(layer: str, view: str) -> str:
    """``tiles/LAYER/FOLDER``: the deep-zoom pyramid of one atlas, relative to the viewer folder."""
    return f"{TILES}/{layer}/{view}"


def aligned_tiles(name: str, map_id: str, view: str) -> str:
    """``tiles/aligned/NAME/MAP/grid-N``: the deep-zoom pyramid of one aligned atlas, relative to the viewer folder."""
    return f"{TILES}/{ALIGNED}/{name}/{map_id}/{view}"


def directory_output(run: PathLike, path: PathLike) -> Path | None:
    """The folder the workflow writes whole (a ``directory()`` output: a shard store, ``icons/``, ``examples/``,
    ``viewer/``, ``patches/NAME``) that holds ``path``, or None. Snakemake sees such a folder, not the files
    in it: a file deleted inside is rebuilt only once the folder is gone."""
    try:
        parts = Path(path).relative_to(run).parts
    except ValueError:
        return None
    if not parts or parts[0] in (CACHE, LOGS, BENCHMARKS):
        return None
    if parts[0] in (VIEWER,) and len(parts) > 1:
        return Path(run) / VIEWER
    if parts[0] == PATCHES and len(parts) > 2:
        return Path(run) / PATCHES / parts[1]
    for i, part in enumerate(parts[:-1]):
        if part.endswith(".zarr") or (i > 0 and part in (ICONS, EXAMPLES)):
            return Path(run).joinpath(*parts[: i + 1])
    return None
