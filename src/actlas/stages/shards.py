"""shards: list the image set, choose ``limit`` images deterministically, split them into shard lists.

The listing needs no model: labels come from the class folders through the model's label space
(``actlas.models.sources.label_space``: a card's label files, a block's ``labels``/``synsets``, or
torchvision's weights metadata), read as data. The workflow plans at parse time (:func:`plan`,
which writes nothing) and writes each list in its own job (``actlas.formats.shards.write_shard``),
so a list whose content did not change is not rewritten.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .. import paths
from ..data import images as imgs
from ..errors import DataError
from ..formats.shards import Row, write_index, write_shard
from ..models.sources import label_space
from ..settings import Collect, Run


@dataclass
class Plan:
    """The shard lists of an image set: ``shards`` {shard name: rows (path, label)} and the files
    left out with their reason, ``skipped`` [(path, reason)]."""

    shards: dict[str, list[Row]]
    skipped: list[tuple[str, str]]


def plan(
    images: str | list[str],
    model,
    *,
    shard_size: int = Collect.shard_size,
    limit: int | None = Run.limit,
    seed: int = Run.seed,
) -> Plan:
    """List, select and split an image set. Reads only; writes nothing."""
    synsets, categories = label_space(model)
    rows: list[Row] = []
    skipped: list[tuple[str, str]] = []
    for source in [images] if isinstance(images, (str, Path)) else images:
        rows += imgs.list_images(source, synsets, categories, skipped=skipped)
    keep = []
    for row in sorted(set(rows)):
        reason = imgs.unwritable_reason(row[0])
        if reason:
            skipped.append((row[0], reason))
        else:
            keep.append(row)
    rows = imgs.select(keep, limit, seed)
    if not rows:
        raise DataError(f"no images found in {images}: check the config's images (folders or list files)")
    return split_rows(rows, max(1, -(-len(rows) // shard_size)), skipped)


def split_rows(rows: list[Row], n_shards: int, skipped: list[tuple[str, str]] = ()) -> Plan:
    """A plan of ``n_shards`` shards of listed ``rows`` (``actlas.data.images.split_shards``); rows whose
    path cannot be written (not valid Unicode) join ``skipped``."""
    skipped = list(skipped) + [(p, imgs.unwritable_reason(p)) for p, _ in rows if imgs.unwritable_reason(p)]
    good = [(p, label) for p, label in rows if not imgs.unwritable_reason(p)]
    shards = {paths.shard_name(i): part for i, part in enumerate(imgs.split_shards(good, n_shards))}
    return Plan(shards, sorted(set(skipped)))


def write_plan(run_dir: str | Path, planned: Plan) -> list[Path]:
    """Write a plan: ``RUN/shards/shard-NNNNN.txt``, ``index.json`` and ``skipped.tsv``."""
    out = [write_shard(paths.shard_list(run_dir, name), rows) for name, rows in planned.shards.items()]
    write_index(run_dir, list(planned.shards), planned.skipped)
    return out


def shards(
    images: str | list[str],
    run_dir: str | Path,
    model,
    *,
    shard_size: int = Collect.shard_size,
    limit: int | None = Run.limit,
    seed: int = Run.seed,
) -> list[Path]:
    """List, select and split the images -> ``RUN/shards/shard-NNNNN.txt`` and ``index.json``."""
    return write_plan(run_dir, plan(images, model, shard_size=shard_size, limit=limit, seed=seed))
