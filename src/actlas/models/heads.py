"""An encoder's class head, declared by the model block's ``head`` (README, "Encoders without a classifier").

DINOv2, CLIP's image tower, MAE and most self-supervised backbones have no logits; attribution,
labels, class atlases and patches need a class head. ``head`` says which:

- absent: the model's own logits (``actlas.models.logits``);
- ``none``: no class head, so no attribution: atlases are labelled by their photos' labels, and
  class atlases, comparisons and patch experiments are refused at parse time;
- ``probe`` (or ``{kind: probe, layer: LAYER}``): a linear probe (logistic regression) on the
  features, trained on the run's labelled photos by the probe stage (``actlas.stages.probe``);
- ``{text_embeddings: PATH, labels: ..., scale: 100, layer: LAYER}``: zero-shot logits, ``scale`` x
  the cosine between the features and each class's embedding (K, D), as CLIP's zero-shot
  classifier. The file is read as data, never as code: a ``.safetensors`` file holding one tensor
  (K, D), or a ``.npy`` array (``allow_pickle=False``).

The **features** are the forward's output (``model.output`` picks a key; by default a ModelOutput's
``image_embeds``, else its ``pooler_output``), shape (B, D); or, with ``layer``, that layer's output
read as one position (``cls``, ``pooled``) or averaged over its positions (``map``, ``tokens``).

A head's class names are its own: the text head's ``labels``, else the block's (or its card's)
``labels``; never the source's (a Hugging Face encoder's default ``id2label`` names no class).
This module reads data only (the Snakefile checks a head at parse time); the forward hook that
makes the model return the head's logits is ``actlas.models.headhook``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ModelError
from ..text import did_you_mean
from .classes import read_names

TEXT = "text_embeddings"
HEAD_KINDS = ("probe", TEXT, "none")
HEAD_KEYS = ("kind", "layer", "text_embeddings", "labels", "scale")
# keys of a ModelOutput that hold an encoder's pooled features, in the order a head looks for them
FEATURE_KEYS = ("image_embeds", "pooler_output")
# keys that hold features, never logits: ``output`` naming one without a head is refused
NOT_LOGITS = (*FEATURE_KEYS, "last_hidden_state", "hidden_states", "image_features")
CLIP_SCALE = 100.0  # CLIP's learned logit scale (exp(4.6052)): softmax over cosines * 100
HEAD_HINT = (
    "declare model.head: probe (a linear probe on the run's labelled photos), "
    "{text_embeddings: PATH.safetensors, labels: ...} (zero-shot) or none (an atlas without attribution)"
)


@dataclass(frozen=True)
class Head:
    """A parsed ``head``: ``kind`` (``logits``: the model's own; ``probe``, ``text_embeddings``, ``none``),
    the ``layer`` its features are read at (None: the forward's output), and for ``text_embeddings`` the embeddings'
    path, the ``labels`` as written (a list or a file) and the logit ``scale``."""

    kind: str = "logits"
    layer: str | None = None
    text_embeddings: str | None = None
    labels: tuple[str, ...] | str | None = None
    scale: float = CLIP_SCALE

    @property
    def declared(self) -> bool:
        """A head other than the model's own logits."""
        return self.kind != "logits"

    @property
    def has_logits(self) -> bool:
        """Whether the model gets logits (and so attribution, predictions, class atlases, patches)."""
        return self.kind != "none"


def parse_head(value) -> Head:
    """The model block's ``head`` -> ``Head``; ``ModelError`` in one line for anything else."""
    if value is None:
        return Head()
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            import json

            try:
                return parse_head(json.loads(text))
            except ValueError as err:
                raise ModelError(f"model.head {value!r} is not valid JSON: {err}") from None
        if text in ("probe", "none"):
            return Head(kind=text)
        raise ModelError(
            f"unknown model.head {value!r}{did_you_mean(text, ['probe', 'none'])}: use probe, none, or "
            "{text_embeddings: PATH.safetensors, labels: ...}"
        )
    if not isinstance(value, Mapping):
        raise ModelError(f"model.head must be probe, none or a mapping, not {type(value).__name__}")
    for key in value:
        if key not in HEAD_KEYS:
            raise ModelError(
                f"unknown model.head key {key!r}{did_you_mean(str(key), HEAD_KEYS)} (valid: {', '.join(HEAD_KEYS)})"
            )
    kind = value.get("kind") or (TEXT if value.get(TEXT) else None)
    if kind not in HEAD_KINDS:
        raise ModelError(
            f"model.head {dict(value)} names no head: give kind ({', '.join(HEAD_KINDS)}) "
            "or text_embeddings: PATH.safetensors"
        )
    if kind == TEXT and not value.get(TEXT):
        raise ModelError(
            "model.head of kind text_embeddings needs text_embeddings: PATH.safetensors (K class embeddings (K, D))"
        )
    extra = [k for k in (TEXT, "labels", "scale") if k in value and kind != TEXT]
    if extra or (kind == "none" and value.get("layer")):
        keys = extra or ["layer"]
        raise ModelError(f"model.head {kind} takes no {', '.join(keys)}: only a text_embeddings head has them")
    labels = value.get("labels")
    if isinstance(labels, list):
        labels = tuple(str(v) for v in labels)
    try:
        scale = float(value.get("scale", CLIP_SCALE))
    except (TypeError, ValueError):
        raise ModelError(f"model.head scale must be a number, not {value.get('scale')!r}") from None
    if not np.isfinite(scale) or scale <= 0:
        raise ModelError(f"model.head scale must be a positive number, not {scale}")
    layer = value.get("layer")
    return Head(kind, str(layer) if layer else None, value.get(TEXT), labels, scale)


def head_of(spec) -> Head:
    """The ``Head`` of a ``ModelSpec`` (its resolved block's ``head``)."""
    return parse_head(spec.options.get("head"))


def _block(model) -> dict:
    return dict(model) if isinstance(model, Mapping) else {"source": str(model)}


def head_names(block: Mapping) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(synsets, class names) of a block whose head is declared, read as data: a text head's ``labels``,
    else the block's ``labels``/``synsets``, else its card's; never the source's."""
    head = parse_head(block.get("head"))
    synsets = read_names(block["synsets"]) if block.get("synsets") else ()
    if head.labels:
        return synsets, read_names(head.labels)
    if block.get("labels"):
        return synsets, read_names(block["labels"])
    source = str(block.get("source", ""))
    if source.endswith(".json") and Path(source).is_file():
        from .card import read_card

        card = read_card(Path(source))
        base = Path(source).parent
        own = read_names(card["synsets"], base) if card.get("synsets") else ()
        return synsets or own, read_names(card["labels"], base) if card.get("labels") else ()
    return synsets, ()


def head_fields(fields: dict, provided: dict) -> tuple[dict, dict]:
    """The block's fields and what the source ``provided``, as ``resolve_spec`` should see them: with a
    declared head, the source's class names are dropped and a text head's ``labels`` are the model's."""
    head = parse_head(fields.get("head"))
    if not head.declared:
        return fields, provided
    provided = {k: v for k, v in provided.items() if k not in ("labels", "synsets")}
    if head.labels:
        fields = {**fields, "labels": list(head.labels) if isinstance(head.labels, tuple) else head.labels}
    return fields, provided


def head_files(model) -> list[Path]:
    """Files a head reads (its text embeddings and labels file): inputs of every rule that loads the model."""
    head = parse_head(_block(model).get("head"))
    return [Path(p) for p in (head.text_embeddings, head.labels) if isinstance(p, str)]


def load_text_embeddings(path: str) -> np.ndarray:
    """Class embeddings (K, D) float32, read as data: a ``.safetensors`` file holding one tensor, or a
    ``.npy`` array (``allow_pickle=False``); ``ModelError`` in one line for anything else."""
    hint = "save the class embeddings (K, D) with safetensors.numpy.save_file({'embeddings': array}, PATH)"
    if not Path(path).is_file():
        raise ModelError(f"head text_embeddings {path} not found: {hint}")
    try:
        if str(path).endswith(".npy"):
            array = np.load(path, allow_pickle=False)
        else:
            from safetensors.numpy import load_file

            tensors = load_file(str(path))
            if len(tensors) != 1:
                keys = ", ".join(sorted(tensors)) or "none"
                raise ModelError(f"head text_embeddings {path} holds {len(tensors)} tensors ({keys}), not one: {hint}")
            (array,) = tensors.values()
    except (ValueError, OSError) as err:  # safetensors' SafetensorError is an OSError
        raise ModelError(f"head text_embeddings {path} is not a safetensors or .npy file ({err}): {hint}") from None
    if not isinstance(array, np.ndarray) or array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
        shape = list(getattr(array, "shape", ()))
        raise ModelError(f"head text_embeddings {path} must be numbers of shape (classes, dims), not {shape}: {hint}")
    array = array.astype(np.float32)
    if not np.isfinite(array).all() or (np.linalg.norm(array, axis=1) == 0).any():
        raise ModelError(f"head text_embeddings {path} holds NaN, infinity or an all-zero row: embed the classes again")
    return array


def check_head(model) -> Head:
    """Check a model block's head as far as data tells, loading no model (the Snakefile calls it at parse
    time): its form, and for a text head the embeddings file, its shape and the class-name count."""
    block = _block(model)
    head = parse_head(block.get("head"))
    if head.kind == "logits" and block.get("output") in NOT_LOGITS:
        raise ModelError(
            f"model.output {block['output']!r} holds an encoder's features, not logits: {HEAD_HINT}; "
            "model.output then picks the features"
        )
    if head.kind == TEXT:
        embeddings = load_text_embeddings(head.text_embeddings)
        _, names = head_names(block)
        if not names:
            raise ModelError(
                "a text_embeddings head needs class names: set model.head.labels (a list or a file, one a line)"
            )
        if len(names) != len(embeddings):
            raise ModelError(
                f"head text_embeddings {head.text_embeddings} holds {len(embeddings)} rows (shape "
                f"{list(embeddings.shape)}) but {len(names)} class names are given: one row per class, in label order"
            )
    return head


def require_logits(spec, what: str) -> None:
    """Refuse ``what`` (a class atlas, a comparison, a patch experiment) in one line for a model with
    ``head: none``: it has no class head, so no attribution and no predictions."""
    if not head_of(spec).has_logits:
        from ..errors import ConfigError

        raise ConfigError(
            f"{what} needs a class head, and the model has head: none (no logits, so no attribution or "
            "predictions): declare model.head: probe or {text_embeddings: ..., labels: ...}, or drop it"
        )


def check_workflow(config: Mapping) -> Head:
    """The workflow's head, checked at parse time (``check_head``); a model with ``head: none`` refuses
    the config's class atlases, comparisons and patch experiments in one line."""
    head = check_head(config["model"])
    if not head.has_logits:
        for key, what in (("class_atlases", "a class atlas"), ("comparisons", "a comparison"), ("patches", "a patch")):
            if config.get(key):
                from ..errors import ConfigError

                raise ConfigError(
                    f"{key}: {what} needs a class head, and the model has head: none (no attribution): declare "
                    f"model.head: probe or {{text_embeddings: ..., labels: ...}}, or empty {key}"
                )
    return head


def folder_classes(images) -> tuple[str, ...]:
    """The sorted names of the sub-folders of image folders (list files name none): a head's default classes."""
    names = set()
    for source in [images] if isinstance(images, (str, Path)) else images:
        if Path(source).is_dir():
            names |= {p.name for p in Path(source).iterdir() if p.is_dir() and not p.name.startswith(".")}
    return tuple(sorted(names))


def with_folder_labels(model, images):
    """The workflow's model: with ``head: probe`` or ``none`` and no class names (block, card or head),
    the image folders' class sub-folders, sorted, become ``labels``; any other model as it is."""
    block = _block(model)
    head = parse_head(block.get("head"))
    if head.kind not in ("probe", "none") or head_names(block)[1]:
        return model
    names = folder_classes(images)
    return {**block, "labels": list(names)} if names else model
