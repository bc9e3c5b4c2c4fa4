"""shards: list the image set, choose ``limit`` images deterministically, split them into shard lists.

The listing needs no model: labels come from the class folders through the model's label files
(a card's ``categories``/``synsets``, a model block's ``labels``/``synsets``, or torchvision's
weights metadata), read as data. The workflow plans at parse time (:func:`plan`, which writes
nothing) and writes each list in its own job (:func:`write_list`), so a list whose content did
not change is not rewritten.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from .. import images as imgs
from .. import paths
from ..settings import Collect, Run

Row = tuple[str, int]


def label_space(model) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(synsets, categories) of a model, read as data (no weights, no code).

    ``model``: a source string or a model block (mapping with ``source``). Unknown sources give
    ``((), ())``: images are then unlabelled (-1) unless a list file gives labels.
    """
    block = dict(model) if isinstance(model, dict) else {"source": str(model)}
    source = str(block.get("source", ""))

    def lines(base: Path, name) -> tuple[str, ...]:
        if not name:
            return ()
        if isinstance(name, (list, tuple)):  # a card may list its labels inline (config/models/cifar10_resnet20.json)
            return tuple(str(x) for x in name)
        path = (base / name) if not Path(name).is_absolute() else Path(name)
        return tuple(x.rstrip("\n") for x in path.read_text().splitlines() if x.strip())

    synsets = lines(Path.cwd(), block.get("synsets"))
    categories = lines(Path.cwd(), block.get("labels"))
    if source.endswith(".json") and Path(source).is_file():
        card = json.loads(Path(source).read_text())
        base = Path(source).parent
        synsets = synsets or lines(base, card.get("synsets"))
        categories = categories or lines(base, card.get("labels") or card.get("categories"))
    elif source.startswith("torchvision:") and not categories:
        _, name, *rest = source.split(":")
        if rest:
            import torchvision

            enum = torchvision.models.get_model_weights(name)
            weights = enum.DEFAULT if rest[0] == "DEFAULT" else enum[rest[0]]
            categories = tuple(weights.meta.get("categories", ()))
    return synsets, categories


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
        raise ValueError(f"no images found in {images}: check the config's images (folders or list files)")
    n = max(1, -(-len(rows) // shard_size))
    shards = {paths.shard_name(i): part for i, part in enumerate(imgs.split_shards(rows, n))}
    return Plan(shards, sorted(set(skipped)))


def digest(rows: list[Row]) -> str:
    """Content digest of one shard list (a rule parameter: the list is rewritten when it changes)."""
    return hashlib.sha256(imgs.format_shard(rows).encode("utf-8", "surrogateescape")).hexdigest()[:16]


def skipped_digest(skipped: list[tuple[str, str]]) -> str:
    """Content digest of the skipped-files list (a rule parameter)."""
    return hashlib.sha256(imgs.format_skipped(list(skipped)).encode("utf-8", "surrogateescape")).hexdigest()[:16]


def write_list(path: str | Path, rows: list[Row]) -> Path:
    """Write one shard list atomically."""
    return paths.write_text(path, imgs.format_shard(rows))


def write_index(path: str | Path, names: list[str], skipped: list[tuple[str, str]] = ()) -> Path:
    """Write ``RUN/shards/index.json`` (the shards of the current plan) and, beside it,
    ``skipped.tsv`` (files the listing left out, with their reason; empty when none)."""
    paths.write_text(paths.shard_skipped(Path(path).parent.parent), imgs.format_skipped(list(skipped)))
    return paths.write_json(path, {"shards": list(names)})


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
    planned = plan(images, model, shard_size=shard_size, limit=limit, seed=seed)
    out = [write_list(paths.shard_list(run_dir, name), rows) for name, rows in planned.shards.items()]
    write_index(paths.shard_index(run_dir), list(planned.shards), planned.skipped)
    return out
