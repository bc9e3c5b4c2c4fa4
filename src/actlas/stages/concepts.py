"""concepts: a layer's dictionary of concepts -> ``LAYER/concepts/``.

Streams the layer's collected activations from the shard stores (``rows`` at a time: memory holds
the training block of ``actlas.concepts.train.learn`` and the sparse codes, never every activation),
learns a dictionary on the samples outside the held-out split (or loads the user's), measures it on
the held-out ones, encodes every sample, and writes:

- ``dictionary.safetensors`` (``actlas.formats.dictionary``);
- ``cells.npz``: one record per concept (``actlas.formats.cells``: its atom as the direction, its
  code-weighted attribution, its exemplar rows as its members) on a square grid, so that the render
  stage renders the concepts' icons as it renders cells' (``render_folder``: batched, padded batches,
  the icon cache, faithfulness) into ``render/batch-00000.npz``, with the objective's cosine power
  ``icon_power`` and ``CONCEPT_REDIRECT`` steps of redirected ReLU gradient;
- ``icons/I_J.png``, ``examples/I_J_E.jpg`` (the samples with its highest codes, one per photo) of the
  concept at (I, J) of that square, and ``atlas.png``/``atlas.json`` of the square (a patch experiment
  pastes and searches concept icons as any atlas folder's: ``search: [concepts]``), and ``sheet.jpg``
  (every concept's icon above its exemplars, ``actlas.atlas.contact_sheet``);
- ``concepts.json`` last (``actlas.formats.concepts``): per concept its frequency, classes, label,
  place on the layout and spread, icon faithfulness, exemplars; per cell of each main grid its top
  concepts (``actlas.concepts.summaries.decompose``); the dictionary's figures; each concept's exemplar
  purity (the share of its exemplars predicted as its label, ``summaries.exemplar_purity``).
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from PIL import Image

from .. import atlas as atlas_core
from .. import paths
from ..concepts import dictionary as dict_core
from ..concepts import metrics, summaries
from ..concepts.train import learn
from ..data import store
from ..data.decode import decode
from ..data.samples import Samples, check_stores, load_samples
from ..formats import dictionary as dfile
from ..formats.atlas import AtlasMeta, CellRecord, Example, write_atlas
from ..formats.atomic import save_image
from ..formats.batches import read_batch
from ..formats.cells import Cells, read_cells, write_cells
from ..formats.concepts import FIRES_MIN, CellConcepts, ConceptRecord, ConceptsMeta, write_concepts
from ..formats.layout import read_coords
from ..formats.shards import shard_stores
from ..models.load import load_spec
from ..models.spec import ModelSpec
from ..settings import CONCEPT_REDIRECT, Atlas, Concepts, RenderParams, Run
from .atlas import EXAMPLE_SIDE
from .render import render_folder

ROWS = 16384  # activation rows read from the stores at once


def activation_chunks(run_dir: str | Path, layer: str, rows: int = ROWS) -> tuple[dict_core.Chunks, int, int]:
    """(a re-iterable stream of (<= rows, C) float16 activation chunks in row order, n rows, C channels)."""
    stores = shard_stores(run_dir)
    check_stores(stores, layer)
    act = store.read_dask(stores, f"{layer}/activation")
    n = act.shape[0]

    def chunks():
        for s in range(0, n, rows):
            yield np.asarray(act[s : s + rows].compute())

    return chunks, n, act.shape[1]


def grid_cells(run_dir: str | Path, layer: str, grids) -> list[int]:
    """The main grid sizes to decompose: ``grids``, or those the layer's folder holds (``grid-N/cells.npz``)."""
    if grids:
        return [int(g) for g in grids]
    found = paths.layer_dir(run_dir, layer).glob("grid-*/" + paths.CELLS)
    return sorted(int(p.parent.name.split("-", 1)[1]) for p in found)


def concept_cells(d: dict_core.Dictionary, count, weights, label, exemplars) -> Cells:
    """The concepts as ``Cells`` (render reads their directions): concept j at (j % side, j // side) of a
    side x side grid, its atom as direction, its exemplar rows as members."""
    size = d.size
    side = max(1, math.ceil(math.sqrt(size)))
    j = np.arange(size)
    members = [row[row >= 0] for row in exemplars]
    return Cells(
        ij=np.stack([j % side, j // side], 1).astype(np.int32),
        count=np.asarray(count, np.int64),
        direction=d.atoms.astype(np.float32),
        attribution=np.asarray(weights, np.float32),
        label=np.asarray(label, np.int32),
        order=np.concatenate(members).astype(np.int64) if size else np.zeros(0, np.int64),
        offsets=np.concatenate([[0], np.cumsum([len(m) for m in members])]).astype(np.int64),
        n=side,
        min_count=0,
    )


def cell_fires(codes: sp.csr_array, rows: np.ndarray, most: int = 64) -> list[list]:
    """The concepts active on at least ``FIRES_MIN`` of a cell's sample ``rows``: [[index, share], ...], by
    share (at most ``most``: with k active a sample at most k / FIRES_MIN reach the threshold)."""
    if len(rows) == 0:
        return []
    share = np.asarray((codes[rows] > 0).sum(0)).ravel() / len(rows)
    order = np.argsort(-share, kind="stable")[:most]
    return [[int(j), round(float(share[j]), 4)] for j in order if share[j] >= FIRES_MIN]


def exemplar_crops(
    folder: Path,
    j: int,
    ij: tuple[int, int],
    rows: np.ndarray,
    codes: sp.csc_array,
    samples: Samples,
    spec: ModelSpec,
    extent: float,
) -> list[Example]:
    """Crops of the photos around concept ``j``'s exemplar rows -> ``examples/I_J_E.jpg`` at its cell ``ij``
    of the concepts' square (``similarity`` holds the code); a photo that no longer decodes is left out."""
    out = []
    lo, hi = codes.indptr[j], codes.indptr[j + 1]
    code = dict(zip(codes.indices[lo:hi].tolist(), codes.data[lo:hi].tolist()))
    for e, row in enumerate(rows):
        img = int(samples.image[row])
        decoded, _ = decode(samples.paths[img])
        if decoded is None:
            continue
        box = spec.source_box((decoded.height, decoded.width), tuple(samples.position[row]), samples.spatial, extent)
        crop = decoded.crop(box).resize((EXAMPLE_SIDE, EXAMPLE_SIDE), Image.Resampling.LANCZOS)
        name = paths.example_name(*ij, e)
        save_image(folder / name, crop, quality=88)
        label = int(samples.label[img])
        out.append(
            Example(
                src=name,
                label=spec.short_name(label) if label >= 0 else None,
                pred=spec.short_name(int(samples.pred[img, 0])),
                prob=round(float(samples.prob[img, 0]), 4),
                similarity=round(float(code.get(int(row), 0.0)), 4),
                index=e,
            )
        )
    return out


def sheet_atlas(folder: Path, layer: str, square: Cells, records: list[ConceptRecord], icon, spec: ModelSpec) -> None:
    """The concepts as an atlas folder: ``atlas.png`` (every icon on the square, concept j at
    (j % side, j // side)) and ``atlas.json`` (``kind`` concepts, a cell record per concept), so that a
    patch experiment pastes (``cell:concepts:I,J``) and searches (``search: [concepts]``) concept icons."""
    size = int(icon.shape[1])
    factor = atlas_core.display_factor(size, Atlas.min_cell)
    image = atlas_core.compose(icon, square.ij, square.n, scale=None, factor=factor)
    save_image(paths.atlas_png(folder), Image.fromarray(image), optimize=False)
    cells = []
    for j, r in enumerate(records):
        att = square.attribution[j]
        cells.append(
            CellRecord(
                i=int(square.ij[j, 0]),
                j=int(square.ij[j, 1]),
                count=r.count,
                label=r.label or "",
                label_index=r.label_index,
                top=r.top,
                attribution={str(int(c)): round(float(att[c]), 5) for c in np.flatnonzero(att)},
                faithfulness=r.faithfulness,
                icon=r.icon,
                examples=r.examples,
            )
        )
    meta = AtlasMeta(
        layer=layer,
        grid=square.n,
        icon_size=size * factor,
        render_size=size,
        display_factor=factor,
        image=paths.ATLAS_PNG,
        size_px=[square.n * size * factor] * 2,
        classes=[spec.short_name(c) for c in range(len(spec.categories))],
        cells=cells,
        faithfulness_median=round(float(np.median([r.faithfulness for r in records])), 4) if records else None,
        extra={"kind": "concepts"},
    )
    write_atlas(paths.atlas_json(folder), meta)


def contact_sheet(folder: Path, records: list[ConceptRecord], icon: np.ndarray) -> Path:
    """``sheet.jpg``: every concept's icon (K, S, S, 3) above its exemplar crops (read back from ``examples/``),
    concept j in column j % 16 of row j // 16, captioned with its index and label."""
    columns = []
    for j, r in enumerate(records):
        crops = []
        for e in r.examples:
            with Image.open(folder / e.src) as im:
                crops.append(np.asarray(im.convert("RGB")))
        columns.append([icon[j], *crops])
    tile = min(max(64, int(icon.shape[1])), EXAMPLE_SIDE)
    captions = [f"{r.index} {r.label or '-'}" for r in records]
    sheet = atlas_core.contact_sheet(columns, captions, tile=tile)
    return save_image(paths.concept_sheet(folder), Image.fromarray(sheet), quality=90)


def concepts(
    run_dir: str | Path,
    layer: str,
    model,
    *,
    method: str = Concepts.method,
    size: int = Concepts.size,
    k: int = Concepts.k,
    seed: int = Run.seed,
    load: str | None = Concepts.load,
    heldout: float = Concepts.heldout,
    stability: bool = Concepts.stability,
    terms: int = Concepts.terms,
    n_examples: int = Concepts.n_examples,
    icon_power: float = Concepts.icon_power,
    grids=None,
    example_extent: float = Atlas.example_extent,
    params: RenderParams | None = None,
    device: str = Run.device,
    threads: int | None = None,
    progress: bool = False,
    out: str | Path | None = None,
) -> Path:
    """Learn (or ``load``) the concepts of ``layer``, render their icons, summarise them -> ``concepts.json``.

    ``seed`` seeds the dictionary (its second seed for ``stability`` is ``seed + 1``); ``params`` are the
    render settings (their seed the run's; their ``power`` is ``icon_power``'s, their redirect
    ``CONCEPT_REDIRECT`` when 0); ``grids`` the main grid sizes whose cells are decomposed into ``terms``
    concepts each (default: every ``grid-N`` of the layer). Returns the ``concepts.json`` path.
    """
    Concepts(
        layer=layer, method=method, size=size, k=k, seed=seed, load=load, heldout=heldout, terms=terms,
        icon_power=icon_power,
    )  # fmt: skip
    folder = Path(out) if out else paths.concepts_dir(run_dir, layer)
    folder.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    t = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal t
        now = time.perf_counter()
        seconds[name] = round(now - t, 3)
        t = now

    chunks, n_rows, channels = activation_chunks(run_dir, layer)
    train, held = dict_core.split(chunks, heldout)
    second = None
    if load:
        d = dfile.load(load, channels=channels, k=k)
    else:
        d = learn(train, method=method, size=size, k=k, seed=seed, threads=threads)
        if stability:
            second = learn(train, method=method, size=size, k=k, seed=seed + 1, threads=threads)
    lap("learn")
    figures = metrics.evaluate(d, held)
    figures.pop("frequency")
    atom_stab = None
    if second is not None:
        figures["stability"] = metrics.stability(d, second)
        atom_stab = metrics.atom_stability(d, second)
    train_rows = n_rows - figures["rows"]
    lap("evaluate")
    codes = summaries.encode_stream(d, chunks)
    lap("encode")

    spec = load_spec(model)
    samples = load_samples(run_dir, layer, columns=("attr_class", "attr_value"))
    coords = read_coords(paths.coords(run_dir, layer))
    n_classes = max(len(spec.categories), int(samples.attr_class.max()) + 1)
    freq = summaries.frequency(codes)
    count = np.rint(freq * n_rows).astype(np.int64)
    exemplars = summaries.top_rows(codes, n_examples, group=samples.image)
    weights, label = summaries.class_weights(codes, samples.attr_class, samples.attr_value, n_classes)
    centroid, spread = summaries.placement(codes, coords)
    purity, counted = summaries.exemplar_purity(exemplars, samples.pred[samples.image, 0], label)
    cell_concepts = {}
    for n in grid_cells(run_dir, layer, grids):
        cells = read_cells(paths.cells(paths.grid_dir(run_dir, layer, n)))
        idx, w, share = summaries.decompose(cells.direction, d, terms)
        cell_concepts[str(n)] = [
            CellConcepts(
                i=int(cells.ij[c, 0]),
                j=int(cells.ij[c, 1]),
                concepts=[[int(a), round(float(b), 5)] for a, b in zip(idx[c], w[c]) if a >= 0],
                share=round(float(share[c]), 4),
                fires=cell_fires(codes, cells.members(c)),
            )
            for c in range(len(cells))
        ]
    lap("summaries")

    dfile.save(d, paths.dictionary(folder))
    write_cells(paths.cells(folder), concept_cells(d, count, weights, label, exemplars))
    params = dataclasses.replace(params or RenderParams(), power=icon_power)  # settings.Concepts.icon_power: why
    if not params.redirect:
        params = dataclasses.replace(params, redirect=CONCEPT_REDIRECT)  # settings.CONCEPT_REDIRECT: why
    render_folder(
        folder, run_dir, layer, model, cells_per_job=0, params=params, device=device, threads=threads, progress=progress
    )
    batch = read_batch(paths.render_batch(folder, 0))
    lap("render")

    for sub in (paths.icons_dir(folder), paths.examples_dir(folder)):  # nothing of an earlier run stays in them
        shutil.rmtree(sub, ignore_errors=True)
        sub.mkdir()
    codes_csc = codes.tocsc()
    square = concept_cells(d, count, weights, label, exemplars)
    records = []
    for j in range(d.size):
        ij = (int(square.ij[j, 0]), int(square.ij[j, 1]))
        save_image(folder / paths.icon_name(*ij), Image.fromarray(batch.icon[j]))
        live = count[j] > 0
        order = np.argsort(-weights[j], kind="stable")[:5]
        rows = exemplars[j][exemplars[j] >= 0]
        records.append(
            ConceptRecord(
                index=j,
                frequency=round(float(freq[j]), 6),
                count=int(count[j]),
                label=spec.short_name(int(label[j])) if label[j] >= 0 else None,
                label_index=int(label[j]),
                top=[[spec.short_name(int(c)), w] for c in order if (w := round(float(weights[j, c]), 5)) > 0],
                centroid=[round(float(v), 5) for v in centroid[j]] if live else None,
                spread=round(float(spread[j]), 5),
                faithfulness=round(float(batch.faithfulness[j]), 4),
                stability=None if atom_stab is None else round(float(atom_stab[j]), 4),
                icon=paths.icon_name(*ij),
                examples=exemplar_crops(folder, j, ij, rows, codes_csc, samples, spec, example_extent),
                purity=round(float(purity[j]), 4) if counted[j] else None,
            )
        )
    sheet_atlas(folder, layer, square, records, batch.icon, spec)
    contact_sheet(folder, records, batch.icon)
    lap("examples")
    meta = ConceptsMeta(
        layer=layer,
        method=d.method,
        size=d.size,
        k=d.k,
        encoding=d.encoding,
        channels=d.channels,
        figures={key: round(float(v), 5) if isinstance(v, float) else v for key, v in figures.items()},
        concepts=records,
        cells=cell_concepts,
        dictionary=paths.DICTIONARY,
        source=str(load) if load else None,
        train_rows=int(train_rows),
        seconds=seconds,
        render_size=int(batch.icon.shape[1]),
        faithfulness_median=round(float(np.median(batch.faithfulness)), 4) if d.size else None,
        settings={
            "method": method,
            "size": size,
            "k": k,
            "seed": seed,
            "heldout": heldout,
            "terms": terms,
            "icon_power": icon_power,
        },
    )
    return write_concepts(paths.concepts_json(folder), meta)
