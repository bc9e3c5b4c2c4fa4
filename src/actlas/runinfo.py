"""What a run remembers: the model and the layers it was made with.

Commands that act on an existing run (``class-atlas``, ``compare``, ``patch``, ``render``,
``atlas`` ...) take ``--model`` and ``--layer`` from here when they are not given: from the run's
``manifest.json`` (the config it was made with), or, before the manifest exists, from what its
shard stores record (collect's parameters).
"""

from __future__ import annotations

from pathlib import Path

from . import paths
from .errors import ConfigError, UserError
from .models.block import FIELD_NAMES

PLACEHOLDER = " names from the source"  # ModelSpec.options: labels the source gave, not a file


def _config(run_dir: str | Path) -> dict:
    from .formats.manifest import read_manifest

    return read_manifest(run_dir).config if paths.manifest(run_dir).exists() else {}


def _collected(run_dir: str | Path) -> dict:
    """The collect parameters the run's first shard store records ({} when there is none)."""
    from .data import store
    from .formats.shards import shard_stores

    try:
        stores = shard_stores(run_dir)
        return store.shard_attrs(stores[0]).get("params", {}) if stores else {}
    except (UserError, OSError, KeyError, ValueError):
        return {}


def block_from_record(record: dict) -> dict:
    """A model block from the model record a shard store keeps (``ModelSpec.to_json()``): every field
    that was set, as collect resolved it (labels the source itself gave are left to the source)."""
    options = record.get("model", {})
    block = {}
    for key, value in options.items():
        if key not in FIELD_NAMES or value is None or value is False or value == {}:
            continue
        if isinstance(value, str) and value.endswith(PLACEHOLDER):
            continue
        block[key] = value
    block.setdefault("source", record.get("source"))
    return block


def run_model(run_dir: str | Path):
    """The run's model: the config's ``model`` (a source string or a block), else the block its shard
    stores record; ``ConfigError`` (pass --model) when the run has neither."""
    model = _config(run_dir).get("model")
    if model:
        return model
    record = _collected(run_dir).get("model")
    if record:
        return block_from_record(record)
    raise ConfigError(f"{run_dir} has no manifest.json or shard store naming its model: pass --model")


def run_layers(run_dir: str | Path) -> list[str]:
    """The run's layers, main ones first: the config's ``layers``, else the layers its shard stores
    record, else the one layer it holds a layout of; ``ConfigError`` (pass --layer) otherwise."""
    layers = _config(run_dir).get("layers") or _collected(run_dir).get("layers")
    if layers:
        return list(layers)
    found = sorted(p.parent.name for p in Path(run_dir).glob(f"*/{paths.COORDS}"))
    if len(found) == 1:
        return found
    raise ConfigError(f"cannot tell which layer of {run_dir} to use: pass --layer (laid out: {found or 'none'})")


def model_of(run_dir: str | Path, name: str):
    """The model block another model of the run (an alignment's, ``RUN/models/NAME/``) was collected with,
    from what its first shard store records; ``ConfigError`` (pass --model) when it has none."""
    from .data import store

    stores = sorted(paths.collect_dir(paths.model_dir(run_dir, name)).glob(paths.STORE_GLOB))
    try:
        record = store.shard_attrs(stores[0]).get("params", {}).get("model") if stores else None
    except (UserError, OSError, KeyError, ValueError):
        record = None
    if not record:
        raise ConfigError(f"{paths.model_dir(run_dir, name)} holds no shard store naming its model: pass --model")
    return block_from_record(record)
