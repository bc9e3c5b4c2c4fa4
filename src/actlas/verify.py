"""Verify a run directory: every shard store, chunk and artifact, one line per problem.

``verify_run(RUN)`` is the core of ``actlas verify RUN``. It reads everything a later stage
would read, and more:

- shard stores (``collect/shard-*.zarr``): metadata and attributes parse, the format is this
  actlas's, every array's committed rows are consistent (with the array, the store's summary, the
  shard list and the other arrays of its group) and every chunk they need exists and passes its
  crc32c checksum; activations are finite; every store was collected with the same parameters;
- shard lists (``shards/shard-*.txt``) parse;
- ``*.npy`` and ``*.npz`` load without pickle (every member of an npz is read, so its zip CRC is
  checked) and hold the keys and shapes their stage writes (``coords.npy`` one row per sample);
- ``*.json`` parse; images (``*.png``, ``*.jpg``) pass Pillow's ``verify`` and decode;
- with a seal (``RUN/.actlas-seal.json``, ``actlas.paths.seal``, written by ``seal`` when a workflow finishes): every
  sealed file whose modification time is unchanged still has its size and crc32. Files rewritten
  since (a later run) are not compared; damage that leaves the time alone (a failing disk, a
  flipped bit) is found even where the format has no checksum (``.npy``, ``.json``).

An empty list means the run is sound. A damaged shard store is fixed by deleting it and running
the workflow again (collect re-collects that shard); a damaged artifact by deleting it (its stage
reruns).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import paths
from .data import store
from .errors import MissingError, StoreError
from .files import regular, run_entry_problem
from .formats import batches, cells
from .formats.atlas import AtlasMeta
from .formats.shards import read_shard
from .seal import check_seal, seal  # noqa: F401 - seal: the workflow calls verify.seal
from .text import error_line, one_line

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class Problem:
    """One damaged thing: its path and why, in one line."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def _one(text: object, limit: int = 300) -> str:
    return one_line(text, limit)


def _strip(path: Path, reason: str) -> str:
    """A StoreError message without its leading path (Problem carries it)."""
    prefix = f"{path}: "
    return reason[len(prefix) :] if reason.startswith(prefix) else reason


# --------------------------------------------------------------------------- stores


def verify_store(path: str | Path, shard_rows: int | None = None) -> list[Problem]:
    """Problems of one shard store (every array and chunk read); ``shard_rows``: rows of its shard list."""
    import zarr
    from zarr.codecs import Crc32cCodec

    path = Path(path)
    out: list[Problem] = []

    def bad(reason: str) -> None:
        out.append(Problem(str(path), _one(_strip(path, reason))))

    try:
        group = store.open_group(path)
    except StoreError as err:
        return [Problem(str(path), _one(_strip(path, str(err))))]
    except (FileNotFoundError, zarr.errors.GroupNotFoundError):
        return [Problem(str(path), "not a Zarr store (its zarr.json is missing); " + store.RECOLLECT)]
    attrs = group.attrs
    if attrs.get("format") != store.FORMAT:
        bad(f"store format {attrs.get('format')!r}, this actlas reads format {store.FORMAT}; {store.RECOLLECT}")
        return out
    params = attrs.get("params")
    if not isinstance(params, dict) or not isinstance(params.get("layers"), list):
        bad(f"its 'params' attribute is damaged; {store.RECOLLECT}")
        return out
    try:
        counts = store.committed_counts(group, path)
    except StoreError as err:
        return [Problem(str(path), _one(_strip(path, str(err))))]
    if not isinstance(attrs.get("complete"), bool):
        bad(f"its 'complete' attribute is damaged; {store.RECOLLECT}")
    elif not attrs["complete"]:
        bad("collect has not finished this store: run the workflow (or collect) again to finish it")
    if attrs.get("complete") and not isinstance(attrs.get("summary"), dict):
        bad(f"its 'summary' attribute is missing or damaged; {store.RECOLLECT}")
    groups = {"images"} | {str(layer) for layer in params["layers"]}
    for name in sorted(groups):
        try:
            node = group[name]
            if name != "images":
                spatial = node.attrs.get("spatial")
                if not (isinstance(spatial, list) and len(spatial) == 2 and all(isinstance(v, int) for v in spatial)):
                    bad(f"group {name}: its 'spatial' attribute is missing or damaged; {store.RECOLLECT}")
        except KeyError:
            bad(f"group {name} is missing; {store.RECOLLECT}")
        except Exception as err:  # noqa: BLE001 - damaged metadata of any kind
            bad(f"group {name}: its metadata (zarr.json) is damaged ({error_line(err)}); {store.RECOLLECT}")
    for head in groups:
        if not any(k.startswith(head + "/") for k in counts):
            bad(f"no committed arrays of {head}; {store.RECOLLECT}")
    rows: dict[str, int] = {}
    data: dict[str, np.ndarray] = {}
    for name in sorted(counts):
        try:
            array = store.checked_array(group, path, name)
            if not any(isinstance(c, Crc32cCodec) for c in array.metadata.codecs):
                bad(f"array {name} has no crc32c checksum codec; {store.RECOLLECT}")
            n = store.checked_rows(group, path, name, array)
            values = store.read_rows(path, name, array, n)
        except StoreError as err:
            bad(str(err))
            continue
        except Exception as err:  # noqa: BLE001 - any failure to read is damage
            bad(f"array {name} cannot be read ({error_line(err)}); {store.RECOLLECT}")
            continue
        rows[name], data[name] = n, values
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            bad(f"array {name} holds NaN or infinite values; {store.RECOLLECT}")
    for head in groups:
        sizes = {k: v for k, v in rows.items() if k.startswith(head + "/")}
        if len(set(sizes.values())) > 1:
            bad(f"arrays of {head} have different committed row counts ({_one(sizes, 160)}); {store.RECOLLECT}")
    n_images = rows.get("images/ok")
    if attrs.get("complete") and n_images is not None:
        if params.get("images") != n_images:
            bad(f"{n_images} images committed, but collect was given {params.get('images')!r}; {store.RECOLLECT}")
        if shard_rows is not None and shard_rows != n_images:
            bad(
                f"{n_images} images committed, but its shard list has {shard_rows}: the list changed since; "
                "run the workflow again (collect reruns this shard)"
            )
    if n_images is not None:
        for layer in params["layers"]:
            owner = data.get(f"{layer}/image")
            if owner is not None and len(owner) and (owner.min() < 0 or owner.max() >= n_images):
                bad(f"array {layer}/image points outside the store's {n_images} images; {store.RECOLLECT}")
    return out


def _same_params(stores: list[Path]) -> list[Problem]:
    first = None
    out = []
    for st in stores:
        try:
            attrs = store.shard_attrs(st)
        except Exception:  # noqa: BLE001 - reported by verify_store
            continue
        params = attrs.get("params")
        if not isinstance(params, dict):
            continue
        key = {k: v for k, v in params.items() if k not in ("images", "chunk")}
        if first is None:
            first = (st, key)
        elif key != first[1]:
            diff = sorted(k for k in key.keys() | first[1].keys() if key.get(k) != first[1].get(k))
            out.append(
                Problem(str(st), f"collected with different {', '.join(diff)} than {first[0].name}: {store.RECOLLECT}")
            )
    return out


# --------------------------------------------------------------------------- artifacts


def _check_npy(path: Path, samples: dict[str, int]) -> str:
    arr = np.load(path, allow_pickle=False)
    layer = path.parent.name
    if path.name == paths.COORDS:
        if arr.ndim != 2 or arr.shape[1] != 2:
            return f"coords.npy has shape {arr.shape}, not (n, 2)"
        if not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 1:
            return "coords.npy holds values outside [0, 1] or non-finite ones"
        if layer in samples and samples[layer] != len(arr):
            return f"coords.npy has {len(arr)} rows, the shard stores hold {samples[layer]} samples of {layer}"
    elif path.name == paths.WHITEN and (arr.ndim != 2 or arr.shape[0] != arr.shape[1] or not np.isfinite(arr).all()):
        return f"whiten.npy is not a finite square matrix (shape {arr.shape})"
    return ""


def _check_npz(path: Path) -> str:
    with np.load(path, allow_pickle=False) as f:
        keys = set(f.files)
        values = {k: f[k] for k in keys}  # reads every member: its zip CRC is checked
    if path.name == paths.CELLS:
        want = set(cells.KEYS)
    elif path.parent.name == paths.RENDER:
        want = set(batches.KEYS)
    elif paths.CACHE in path.parts:
        want = set(batches.CACHED_KEYS)
    else:
        want = set()
    if paths.CACHE in path.parts and path.parent.name != paths.RENDER:
        problem = batches.cached_problem(path, values)  # its icon's type first, then its members and digest
        if problem:
            return problem
    missing = want - keys
    if missing:
        return f"lacks {', '.join(sorted(missing))}"
    if path.name == paths.CELLS:
        k, offsets = len(values["count"]), values["offsets"]
        if len(offsets) != k + 1 or offsets[-1] != len(values["order"]) or len(values["ij"]) != k:
            return "its cells, offsets and order disagree"
        if not np.isfinite(values["direction"]).all():
            return "its directions hold NaN or infinite values"
        direction, whiten = values["direction"], path.parent.parent / paths.WHITEN
        if direction.ndim != 2 or len(direction) != k:
            return f"its directions have shape {direction.shape}, not ({k}, channels)"
        if whiten.is_file() and not run_entry_problem(whiten):
            channels = np.load(whiten, mmap_mode="r", allow_pickle=False).shape[0]
            if direction.shape[1] != channels:
                return f"its directions have {direction.shape[1]} channels, the layer {channels} (whiten.npy)"
    elif path.parent.name == paths.RENDER:
        problem = batches.batch_problem(batches.read_batch(path))
        if problem:
            return problem
    elif values.get("icon") is not None and (values["icon"].dtype != np.uint8 or values["icon"].shape[-1] != 3):
        return f"its icons are {values['icon'].dtype} of shape {values['icon'].shape}, not uint8 RGB"
    for name, v in values.items():
        if v.dtype.kind == "f" and not np.isfinite(v).all() and name not in ("objective",):
            return f"{name} holds NaN or infinite values"
    return ""


def _check_json(path: Path) -> str:
    data = json.loads(path.read_text(encoding="utf-8"))
    if path.name == paths.ATLAS_JSON:
        AtlasMeta.from_json(data, path.name)  # raises for a missing key
    return ""


def _check_icons(folder: Path) -> list[Problem]:
    """Each ``icons/I_J.png`` of an atlas folder against its cell's icon in the render batches of the
    folder's cells (the atlas stage writes the rendered pixels): a repainted icon is named."""
    from PIL import Image

    try:
        grid = cells.read_cells(paths.cells(folder))
        want = batches.cells_digest(grid.direction)
        rendered: dict[int, np.ndarray] = {}
        for path in regular(sorted(paths.render_dir(folder).glob("*.npz"))):
            part = batches.read_batch(path)
            if part.cells_digest == want and not batches.batch_problem(part):
                rendered.update(zip((int(c) for c in part.cell), part.icon))
    except Exception:  # noqa: BLE001 - a damaged cells.npz or batch is reported on its own
        return []
    out = []
    for k, (i, j) in enumerate(grid.ij):
        path = folder / paths.icon_name(int(i), int(j))
        if k not in rendered or not path.is_file() or run_entry_problem(path):
            continue  # a missing icon: the seal names it
        try:
            with Image.open(path) as im:
                same = np.array_equal(np.asarray(im.convert("RGB")), rendered[k])
        except Exception:  # noqa: BLE001 - an image that does not decode is reported on its own
            continue
        if not same:
            out.append(
                Problem(
                    str(path),
                    "its pixels differ from the icon rendered for its cell (render/): "
                    f"delete {paths.atlas_json(folder).name} and run the workflow again (atlas rewrites the icons)",
                )
            )
    return out


def _check_image(path: Path) -> str:
    from PIL import Image

    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        im.load()
    return ""


# --------------------------------------------------------------------------- the run


def verify_run(run_dir: str | Path, *, use_seal: bool = True) -> list[Problem]:
    """Every problem of a run directory, one ``Problem`` each; an empty list means it is sound.

    Reads every shard store completely (all arrays, all chunks, checksums), every shard list,
    ``*.npy``, ``*.npz``, ``*.json`` and image artifact, and (``use_seal``) compares files against
    the seal the finished workflow left. Raises ``MissingError`` if ``run_dir`` is not a folder.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise MissingError(f"run directory not found: {run_dir}")
    problems: list[Problem] = []
    lists = {p.stem: p for p in regular(sorted(paths.shards_dir(run_dir).glob(paths.SHARD_LIST_GLOB)))}
    list_rows: dict[str, int] = {}
    for stem, p in lists.items():
        try:
            list_rows[stem] = len(read_shard(p))
        except Exception as err:  # noqa: BLE001 - a shard list that does not parse is damaged, whatever the error
            problems.append(
                Problem(
                    str(p),
                    f"damaged shard list ({_one(err, 160)}): run the workflow again (it rewrites the shard lists)",
                )
            )
    stores = sorted(paths.collect_dir(run_dir).glob(paths.STORE_GLOB))
    samples: dict[str, int] = {}
    for st in stores:
        if st.stem not in lists:
            problems.append(
                Problem(
                    str(paths.shard_list(run_dir, st.stem)),
                    f"missing (its store {st.name} needs it): run the workflow again (it rewrites the shard lists)",
                )
            )
        found = verify_store(st, list_rows.get(st.stem))
        problems += found
        try:
            attrs = store.shard_attrs(st)
            for layer, n in attrs["summary"]["rows"].items():
                samples[layer] = samples.get(layer, 0) + int(n)
        except Exception:  # noqa: BLE001 - reported above
            samples = dict.fromkeys(samples, -1)
    samples = {k: v for k, v in samples.items() if v >= 0}
    problems += _same_params(stores)
    for dirpath, dirnames, filenames in os.walk(run_dir):
        dirnames[:] = sorted(d for d in dirnames if not d.endswith(".zarr"))
        for name in sorted(filenames):
            p = Path(dirpath, name)
            suffix = p.suffix.lower()
            if run_entry_problem(p):  # never opened: a FIFO would block, a dangling link fail
                problems.append(Problem(str(p), f"{run_entry_problem(p)}, which no stage writes: remove it"))
                continue
            try:
                if suffix == ".npy":
                    reason = _check_npy(p, samples)
                elif suffix == ".npz":
                    reason = _check_npz(p)
                elif suffix == ".json" and name != paths.SEAL:
                    reason = _check_json(p)
                elif suffix in IMAGE_SUFFIXES:
                    reason = _check_image(p)
                else:
                    continue
            except Exception as err:  # noqa: BLE001 - anything that fails to load is damaged
                reason = f"cannot be read ({type(err).__name__}: {err})"
            if reason:
                problems.append(Problem(str(p), _one(f"{reason}: delete it and run the workflow again")))
            elif name == paths.ATLAS_JSON and paths.cells(p.parent).is_file():
                problems += _check_icons(p.parent)
    if use_seal:
        seen = {q.path for q in problems}
        problems += [Problem(p, reason) for p, reason in check_seal(Path(run_dir)) if p not in seen]
    return problems


def main(run_dir: str | Path) -> int:
    """Print one line per problem of ``run_dir`` (or that it is sound); the exit status: 0 sound, 1 not."""
    problems = verify_run(run_dir)
    for q in problems:
        print(q)
    if not problems:
        print(f"{run_dir}: sound")
    return 1 if problems else 0
