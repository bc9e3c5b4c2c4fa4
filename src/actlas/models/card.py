"""Model cards: a JSON file naming an architecture, its weights, preprocessing and label files.

A card holds the model block's fields (``actlas.models.block``) besides ``source``, ``trust_code``
and ``allow_pickle`` (which only the person running actlas may grant), plus ``architecture``
(a torchvision, timm or built-in actlas builder), ``name``, and documentation keys that are
ignored. Paths in a card (``weights``, ``labels``, ``synsets``) are relative to the card.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import ModelError
from ..files import require_file
from ..text import did_you_mean
from .block import FIELD_NAMES

# Card keys beyond the block's: the builder, its aliases, and documentation that is ignored.
CARD_KEYS = {"name", "architecture", "architecture_kwargs", "categories"}
CARD_DOC_KEYS = {"source", "license", "description", "class_order", "pixel_range", "url", "citation"}
CARD_ALIASES = {"architecture_kwargs": "kwargs", "categories": "labels"}
# Card keys that name files beside the card.
FILE_KEYS = ("weights", "labels", "synsets")


def read_card(path: Path) -> dict:
    """The card at ``path``, checked (unknown keys fail naming the closest), aliases resolved.

    Raises ``ModelError`` in one line for a missing or invalid card.
    """
    path = require_file(path, "model card", ModelError)
    try:
        card = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ModelError(f"model card {path} is not valid JSON: {err}") from err
    valid = (set(FIELD_NAMES) - {"source", "trust_code", "allow_pickle"}) | CARD_KEYS
    for key in card:
        if key in ("trust_code", "allow_pickle"):
            raise ModelError(
                f"model card {path} sets {key!r}, which only the person running actlas can grant "
                f"(model.{key}: true, --{key.replace('_', '-')}); remove it from the card"
            )
        if key not in valid and key not in CARD_DOC_KEYS and not key.endswith(("_note", "_notes", "_format")):
            raise ModelError(
                f"model card {path} has unknown key {key!r}{did_you_mean(key, sorted(valid))} "
                "(documentation keys may end in _note or _format)"
            )
    for alias, key in CARD_ALIASES.items():
        if alias in card:
            if key in card:
                raise ModelError(f"model card {path} sets both {alias!r} and {key!r}; keep one")
            card[key] = card.pop(alias)
    if "architecture" not in card:
        raise ModelError(f"model card {path} lacks the key 'architecture' (a torchvision, timm or actlas builder)")
    return card


def card_fields(path: Path, card: dict, block: dict) -> dict:
    """The card's block fields merged under the ``block``'s (the block wins; ``kwargs`` merge key by key),
    the card's file paths made relative to the working directory."""
    merged = {k: v for k, v in card.items() if k in FIELD_NAMES}
    merged.update({k: v for k, v in block.items() if k != "source"})
    if "kwargs" in block and "kwargs" in card:
        merged["kwargs"] = {**card["kwargs"], **block["kwargs"]}
    for key in FILE_KEYS:
        if key in card and key not in block and isinstance(card[key], str):
            merged[key] = os.path.normpath(Path(path).parent / card[key])
    if "weights" not in merged:
        raise ModelError(f"model card {path} lacks the key 'weights' (a safetensors file beside the card)")
    return merged


def card_files(path: Path) -> list[Path]:
    """The card and the files it names (weights, label files), as written beside it; a card that cannot
    be read names only itself (the stage that loads the model says what is wrong with it)."""
    path = Path(path)
    try:
        card = json.loads(path.read_text())
    except (OSError, ValueError):
        return [path]
    return [path] + [
        path.parent / str(card[k])
        for k in ("weights", "labels", "categories", "synsets")
        if isinstance(card.get(k), str)
    ]
