"""atlas: tile a grid's icons -> atlas.png, atlas-labelled.png, icons/, examples/ and atlas.json."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from .. import atlas as atlas_core
from .. import grid as grid_core
from .. import paths
from ..data.decode import decode
from ..data.samples import Samples, load_samples
from ..formats.atlas import AlignedMeta, AtlasMeta, CellRecord, Example, write_atlas
from ..formats.atomic import save_image
from ..formats.batches import read_icons
from ..formats.cells import Cells, read_cells
from ..models.load import load_spec
from ..models.spec import ModelSpec
from ..settings import Atlas, Render

EXAMPLE_SIDE = 96  # pixels of a dataset example crop


def cell_examples(
    folder: Path, cells: Cells, c: int, samples: Samples, spec: ModelSpec, n_examples: int, extent: float
) -> list[Example]:
    """Crops of the photos around the ``n_examples`` samples of cell ``c`` nearest its direction
    -> ``examples/I_J_E.jpg``; a photo that no longer decodes is left out."""
    i, j = int(cells.ij[c, 0]), int(cells.ij[c, 1])
    rows = cells.members(c)
    pick, sim = atlas_core.nearest_members(cells.direction[c], samples.activation[rows], n_examples)
    examples = []
    for e, (row, s) in enumerate(zip(rows[pick], sim)):
        img_i = int(samples.image[row])
        decoded, _ = decode(samples.paths[img_i])
        if decoded is None:
            continue
        box = spec.source_box((decoded.height, decoded.width), tuple(samples.position[row]), samples.spatial, extent)
        crop = decoded.crop(box).resize((EXAMPLE_SIDE, EXAMPLE_SIDE), Image.Resampling.LANCZOS)
        name = paths.example_name(i, j, e)
        save_image(folder / name, crop, quality=88)
        label, pred = int(samples.label[img_i]), int(samples.pred[img_i, 0])
        examples.append(
            Example(
                src=name,
                label=spec.short_name(label) if label >= 0 else None,
                pred=spec.short_name(pred) if pred >= 0 else None,  # a model without a class head predicts none
                prob=round(float(samples.prob[img_i, 0]), 4) if pred >= 0 else None,
                similarity=round(float(s), 4),
                index=e,
            )
        )
    return examples


def atlas_folder(
    folder: str | Path,
    run_dir: str | Path,
    layer: str,
    model,
    *,
    cells_per_job: int = Render.cells_per_job,
    density: bool = Atlas.density,
    n_examples: int = Atlas.n_examples,
    example_extent: float = Atlas.example_extent,
    min_cell: int = Atlas.min_cell,
    samples: Samples | None = None,
    extra: dict | None = None,
    aligned: AlignedMeta | None = None,
    cell_fields: list[dict] | None = None,
) -> Path:
    """Compose the icons of an atlas folder (``grid-N``, ``class-*``, ``compare-*``) into its atlas files.

    Reads ``cells.npz`` and the render batches its plan makes (``cells_per_job``); writes
    ``atlas.png`` (N*S x N*S RGB), ``atlas-labelled.png``, ``icons/I_J.png``, ``examples/I_J_E.jpg``
    and ``atlas.json`` (last: its presence means the folder is complete). ``extra`` adds keys to atlas.json,
    ``aligned`` an aligned atlas's record and ``cell_fields`` (one dict a cell) its cells' fields.
    Icons under ``min_cell`` px are shown enlarged by a whole factor, nearest neighbour (``icons/`` keep
    the rendered pixels); ``icon_size`` in atlas.json is the atlas's cell, ``render_size`` the icon's.
    """
    folder = Path(folder)
    cells = read_cells(paths.cells(folder))
    n = cells.n
    icon, faith = read_icons(folder, cells.direction, cells_per_job)
    spec = load_spec(model)
    size = icon.shape[1]
    ij = cells.ij
    factor = atlas_core.display_factor(size, min_cell)
    scale = atlas_core.density_scale(cells.count) if density else None
    image = atlas_core.compose(icon, ij, n, scale=scale, factor=factor)
    names = [spec.short_name(int(c)) if c >= 0 else "" for c in cells.label]  # -1: no labelled photo
    save_image(paths.atlas_png(folder), Image.fromarray(image), optimize=False)
    labelled = atlas_core.draw_labels(image, ij, names, size * factor)
    save_image(paths.atlas_labelled(folder), Image.fromarray(labelled))
    samples = samples or load_samples(run_dir, layer)
    for sub in (paths.icons_dir(folder), paths.examples_dir(folder)):  # nothing of an earlier plan stays in them
        shutil.rmtree(sub, ignore_errors=True)
        sub.mkdir()
    records = []
    for c in range(len(cells)):
        i, j = int(ij[c, 0]), int(ij[c, 1])
        save_image(folder / paths.icon_name(i, j), Image.fromarray(icon[c]))
        att = cells.attribution[c]
        nonzero = np.flatnonzero(att)
        top = [(int(t), round(float(att[t]), 5)) for t in np.argsort(-att, kind="stable")[:5]]
        top = [(t, v) for t, v in top if v != 0]  # no class whose attribution rounds to 0.0
        records.append(
            CellRecord(
                i=i,
                j=j,
                count=int(cells.count[c]),
                label=names[c],
                label_index=int(cells.label[c]),
                top=[[spec.short_name(t), v] for t, v in top],
                attribution={str(int(t)): round(float(att[t]), 5) for t in nonzero},
                faithfulness=round(float(faith[c]), 4),
                icon=paths.icon_name(i, j),
                examples=cell_examples(folder, cells, c, samples, spec, n_examples, example_extent),
                **(cell_fields[c] if cell_fields else {}),
            )
        )
    top1 = samples.pred[samples.image, 0]
    attributed = grid_core.attributed(samples.attr_class, samples.attr_value)  # else the labels are the photos'
    meta = AtlasMeta(
        label_agreement=round(atlas_core.label_agreement(cells, top1), 4) if attributed else None,
        layer=layer,
        grid=n,
        icon_size=size * factor,
        render_size=size,
        display_factor=factor,
        image=paths.ATLAS_PNG,
        labelled=paths.ATLAS_LABELLED,
        size_px=[n * size * factor, n * size * factor],
        classes=[spec.short_name(c) for c in range(len(spec.categories))],
        faithfulness_median=round(float(np.median(faith)), 4),
        cells=records,
        aligned=aligned,
        extra=dict(extra or {}),
    )
    return write_atlas(paths.atlas_json(folder), meta)


def atlas(
    run_dir: str | Path,
    layer: str,
    n: int,
    model,
    *,
    cells_per_job: int = Render.cells_per_job,
    density: bool = Atlas.density,
    n_examples: int = Atlas.n_examples,
    example_extent: float = Atlas.example_extent,
    min_cell: int = Atlas.min_cell,
) -> Path:
    """Compose a grid's icons into ``LAYER/grid-N/atlas.png``, atlas-labelled.png, icons/, examples/, atlas.json."""
    folder = paths.grid_dir(run_dir, layer, n)
    atlas_folder(
        folder,
        run_dir,
        layer,
        model,
        cells_per_job=cells_per_job,
        density=density,
        n_examples=n_examples,
        example_extent=example_extent,
        min_cell=min_cell,
    )
    return paths.atlas_png(folder)
