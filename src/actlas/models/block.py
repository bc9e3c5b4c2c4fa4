"""The model block: its fields (``MODEL_FIELDS``), parsing a block from a source string, JSON or a
mapping, and the CLI flags' texts as field values."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ModelError
from ..text import did_you_mean


class ModelDefaultWarning(UserWarning):
    """Preprocessing or labels fell back to a default; the message names the keys that set them."""


@dataclass(frozen=True)
class ModelField:
    """One field of the model block: its name, JSON type, default and help (the CLI mirrors these)."""

    name: str
    type: str  # "string", "object", "bool", "int", "int_pair", "float_triple", "string_or_int", "head"
    default: Any
    help: str

    @property
    def flag(self) -> str:
        """The CLI flag: ``input_size`` -> ``--input-size`` (``source`` is ``--model``)."""
        return "--model" if self.name == "source" else "--" + self.name.replace("_", "-")


MODEL_FIELDS: tuple[ModelField, ...] = (
    ModelField(
        "source",
        "string",
        None,
        "card.json, torchvision:NAME[:WEIGHTS], timm:NAME, transformers:ID_OR_PATH, actlas:NAME, export:PATH.pt2 "
        "or pkg.mod:fn",
    ),
    ModelField("kwargs", "object", {}, "keyword arguments for the builder or factory"),
    ModelField(
        "weights",
        "string",
        None,
        "weights file (safetensors or a state dict); torchvision: a weights name; random (or random:SEED) for an "
        "untrained network",
    ),
    ModelField(
        "input_size", "int_pair", None, "(height, width) the network is fed (default: the source's, else 224 x 224)"
    ),
    ModelField("resize", "int", None, "short side images are resized to before the centre crop (0: no resize)"),
    ModelField("crop", "int", None, "centre crop side; sets input_size when that is not given"),
    ModelField("mean", "float_triple", None, "normalisation mean of RGB in [0, 1] (default ImageNet's)"),
    ModelField("std", "float_triple", None, "normalisation std (default ImageNet's)"),
    ModelField("labels", "string", None, "class names, one a line in index order (or a list)"),
    ModelField("synsets", "string", None, "folder names -> class index, one a line in index order (or a list)"),
    ModelField(
        "output", "string_or_int", None, "key or index of the logits when forward returns a dict, tuple or ModelOutput"
    ),
    ModelField("padding", "string", None, "default or tf_same (TensorFlow SAME padding)"),
    ModelField(
        "layer_kinds", "object", {}, "layer -> map, channels_last, tokens, cls or pooled, or {kind: tokens, prefix: N}"
    ),
    ModelField(
        "trust_code", "bool", False, "allow a pkg.mod:fn source or a card architecture that is not a known builder"
    ),
    ModelField("allow_pickle", "bool", False, "allow weights pickles that run code when loaded"),
    ModelField(
        "interpolation",
        "string",
        None,
        "how images are resized: bilinear, bicubic or nearest (default: the source's, else bilinear)",
    ),
    ModelField(
        "head",
        "head",
        None,
        "an encoder's class head: none, probe, or {text_embeddings: PATH.safetensors, labels: ...} (docs/models.md)",
    ),
)
FIELD_NAMES = tuple(f.name for f in MODEL_FIELDS)


def model_options() -> tuple[ModelField, ...]:
    """The fields of the model block, in order: name, type, default, help and CLI ``flag``."""
    return MODEL_FIELDS


def model_block(model: str | Mapping | None = None, **overrides) -> dict:
    """The model block as a dict of declared fields: from a source string, a JSON object string, or
    a mapping, with ``overrides`` (None values ignored) on top.

    Raises ``ModelError`` for an unknown key, naming the closest valid one.
    """
    if model is None:
        block = {}
    elif isinstance(model, str):
        try:
            block = json.loads(model) if model.lstrip().startswith("{") else {"source": model}
        except json.JSONDecodeError as err:
            raise ModelError(f"the model block {model!r} is not valid JSON: {err}") from None
    elif isinstance(model, Mapping):
        block = dict(model)
    else:
        raise ModelError(
            f"a model is a source string or a mapping of {', '.join(FIELD_NAMES)}; got {type(model).__name__}"
        )
    for key in block:
        if key not in FIELD_NAMES:
            raise ModelError(
                f"unknown model key {key!r}{did_you_mean(key, FIELD_NAMES)} (valid: {', '.join(FIELD_NAMES)})"
            )
    block.update({k: v for k, v in overrides.items() if v is not None})
    for key in block:
        if key not in FIELD_NAMES:
            raise ModelError(f"unknown model option {key!r}{did_you_mean(key, FIELD_NAMES)}")
    if not block.get("source"):
        raise ModelError(
            "the model block needs a source: card.json, torchvision:NAME, timm:NAME, transformers:ID_OR_PATH, "
            "actlas:NAME, export:PATH.pt2 or pkg.mod:fn (model.source, --model)"
        )
    return block


def parse_flag(name: str, text: str | bool | None):
    """A CLI flag's text as the value of model field ``name``: ``"32,32"`` -> [32, 32] (int_pair),
    ``"0.5"`` or ``"0.5,0.5,0.5"`` (float_triple), JSON for objects, an int for digits (string_or_int).
    None stays None (flag not given); booleans pass through."""
    if text is None or isinstance(text, bool):
        return text
    kind = {f.name: f.type for f in MODEL_FIELDS}[name]
    try:
        if kind == "int_pair":
            parts = [int(v) for v in str(text).replace("x", ",").split(",")]
            return parts * 2 if len(parts) == 1 else parts
        if kind == "float_triple":
            parts = [float(v) for v in str(text).split(",")]
            return parts * 3 if len(parts) == 1 else parts
        if kind == "int":
            return int(text)
        if kind == "object" or (kind == "head" and str(text).lstrip().startswith("{")):
            return json.loads(text)
    except (ValueError, json.JSONDecodeError) as err:
        raise ModelError(f"--{name.replace('_', '-')} {text!r}: {err}") from None
    if kind == "string_or_int" and str(text).lstrip("-").isdigit():
        return int(text)
    return text


def model_from_flags(model: str | Mapping | None, **flags) -> dict:
    """The model block from ``--model`` (a source, a JSON block or a mapping) and the other model flags'
    texts (``input_size="32,32"``; None: not given), the flags on top."""
    return model_block(model, **{k: parse_flag(k, v) for k, v in flags.items()})


def trusted(value: bool | None) -> bool:
    """The block's ``trust_code``; when not given (None), the environment variable ``ACTLAS_TRUST_CODE``."""
    if value is not None:
        return bool(value)
    return os.environ.get("ACTLAS_TRUST_CODE", "").lower() in ("1", "true", "yes")


RANDOM = "random"


def random_seed(weights) -> int | None:
    """The seed of ``weights: random`` (0) or ``random:SEED``; None for any other weights value."""
    if not isinstance(weights, str) or not (weights == RANDOM or weights.startswith(RANDOM + ":")):
        return None
    text = weights[len(RANDOM) + 1 :] if ":" in weights else "0"
    try:
        return int(text)
    except ValueError:
        raise ModelError(f"model.weights {weights!r}: write random or random:SEED with an integer SEED") from None
