"""Models and their preprocessing: the model block, ``ModelSpec`` and ``load_model``.

A model is declared by one block (``model:`` in a config, the ``--model`` flags of the CLI, or
the keys of a card), or by its ``source`` string alone. Every field is optional and defaults to
what the source provides (``MODEL_FIELDS`` lists them):

- ``source``: a card ``path/to/model.json``; ``torchvision:NAME[:WEIGHTS]``; ``timm:NAME``
  (optional extra ``actlas[timm]``; timm's pretrained config gives the preprocessing);
  ``export:PATH.pt2`` (a ``torch.export`` program, unflattened so layers keep their module
  paths); ``pkg.mod:fn``, a factory returning an ``nn.Module`` (needs ``trust_code``);
  ``torchscript:PATH`` is refused (ScriptModules take no forward hooks: export with torch.export).
- ``kwargs``, ``weights`` (safetensors or a state dict; wrapper prefixes such as ``module.`` are
  stripped), ``input_size``, ``resize``, ``crop``, ``mean``, ``std``, ``labels``, ``synsets``,
  ``output`` (key or index of the logits when forward returns a dict, tuple or ModelOutput),
  ``padding``, ``layer_kinds``, ``trust_code``, ``allow_pickle``.

No code is run from data: a card's ``architecture`` may name a torchvision or timm builder or a
built-in actlas architecture (``actlas:cifar10_resnet20``, see ``actlas.archs``); anything else,
and any ``pkg.mod:fn`` source, needs ``trust_code: true`` (``--trust-code``, or the environment
variable ``ACTLAS_TRUST_CODE=1``), which a card cannot grant itself.

Preprocessing travels with the model, split in two as rendering needs it: ``spec.transform``
(PIL image -> float tensor [3, H, W] in [0, 1]: resize, centre crop) and ``spec.normalize``
(differentiable mean/std normalisation): the network sees ``model(spec.normalize(x))``.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import json
import math
import os
import pickle
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ModelError(ValueError):
    """A model source, card or weights file that cannot be used; the message says how to fix it."""


class ModelDefaultWarning(UserWarning):
    """Preprocessing or labels fell back to a default; the message names the keys that set them."""


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 image tensor(s) (..., 3, H, W) -> float32 in [0, 1], exactly as torchvision v2.ToDtype(scale=True)."""
    return x.to(torch.float32).mul_(1.0 / 255)


@dataclass(frozen=True)
class ModelSpec:
    """Everything actlas needs to know about a model besides its weights.

    Attributes
    ----------
    name : str
        Short name, recorded in manifests.
    source : str
        The string the model was loaded from.
    input_size : (int, int)
        (height, width) the network is fed.
    resize : int
        Short side the image is resized to before the centre crop.
    mean, std : tuple of 3 floats
        Normalisation applied to RGB in [0, 1].
    categories : tuple of str
        Class names in logit order (may be empty for an unlabelled model).
    padding : str
        ``"default"`` or ``"tf_same"`` (TensorFlow SAME padding on every conv with kernel > 1).
    options : dict
        The resolved model block: every field of ``MODEL_FIELDS``, declared or defaulted.
    defaulted : tuple of str
        The fields that fell back to a default (not declared, not given by the source).
    layer_kinds : dict
        Declared layer kinds, layer -> ``"tokens"`` or ``{"kind": ..., "prefix": ...}``.
    """

    name: str
    source: str
    input_size: tuple[int, int] = (224, 224)
    resize: int = 256
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    categories: tuple[str, ...] = ()
    synsets: tuple[str, ...] = ()
    padding: str = "default"
    extra: dict = field(default_factory=dict, compare=False, hash=False)
    options: dict = field(default_factory=dict, compare=False, hash=False)
    defaulted: tuple[str, ...] = ()
    layer_kinds: dict = field(default_factory=dict, compare=False, hash=False)

    def transform(self, image) -> torch.Tensor:
        """PIL RGB image -> float32 tensor, shape (3, H, W), values in [0, 1] (resize + centre crop)."""
        return to_float(self.pixels(image))

    def pixels(self, image) -> torch.Tensor:
        """PIL RGB image (or its pixels, uint8 tensor (3, h, w)) -> uint8 tensor, shape (3, H, W): ``transform`` before its scaling to [0, 1].

        ``to_float(spec.pixels(image))`` equals ``spec.transform(image)`` bit for bit; collect moves
        uint8 images from its loader (``actlas.images.decode_pixels``) and scales whole batches at once.
        """
        from torchvision.transforms.v2 import functional as TF

        if isinstance(image, torch.Tensor):
            x = image
        else:
            x = torch.from_numpy(np.array(image, dtype=np.uint8, copy=True).reshape(image.height, image.width, -1))
            x = x.permute(2, 0, 1)  # as v2.PILToTensor: (C, H, W), a view
        if self.resize:
            x = TF.resize(x, [self.resize], antialias=True)
        if tuple(x.shape[-2:]) != tuple(self.input_size):
            x = TF.center_crop(x, list(self.input_size))
        return x

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Differentiable normalisation: x float (B, 3, H, W) in [0, 1] -> (x - mean) / std."""
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std

    def class_index(self, name: str) -> int:
        """Index of a class given by name, short name, synset id or number; fails with close names."""
        return resolve_class(name, self.categories, self.synsets)

    def short_name(self, index: int) -> str:
        """Class name up to its first comma ("great white shark"), or the index as text."""
        if 0 <= index < len(self.categories):
            return self.categories[index].split(",")[0].strip()
        return str(index)

    def source_box(
        self, image_hw: tuple[int, int], position: tuple[int, int], spatial: tuple[int, int], extent: float
    ) -> tuple[int, int, int, int]:
        """Box (x0, y0, x1, y1) in the original image around a layer position.

        ``position`` is (y, x) in a layer grid of size ``spatial`` (H, W); ``extent`` is the box side
        as a fraction of the network input. Inverts resize + centre crop.
        """
        h, w = image_hw
        scale = self.resize / min(h, w) if self.resize else 1.0
        rh, rw = round(h * scale), round(w * scale)
        top = (rh - self.input_size[0]) / 2
        left = (rw - self.input_size[1]) / 2
        cy = (position[0] + 0.5) / spatial[0] * self.input_size[0] + top
        cx = (position[1] + 0.5) / spatial[1] * self.input_size[1] + left
        half = extent * self.input_size[0] / 2
        box = [(cx - half) / scale, (cy - half) / scale, (cx + half) / scale, (cy + half) / scale]
        x0, y0 = max(0, int(box[0])), max(0, int(box[1]))
        x1, y1 = min(w, int(math.ceil(box[2]))), min(h, int(math.ceil(box[3])))
        return x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)

    def layer_kind(self, layer: str):
        """The declared kind of ``layer`` (``actlas.layers.LayerKind``), or None to detect it."""
        from .layers import as_kind

        return as_kind(self.layer_kinds.get(layer))

    def to_json(self) -> dict:
        """The spec as plain data for manifests: every model field, declared or defaulted
        (``model``), the resolved preprocessing, the class count and which fields were defaulted."""
        return {
            "name": self.name,
            "source": self.source,
            "input_size": list(self.input_size),
            "resize": self.resize,
            "mean": list(self.mean),
            "std": list(self.std),
            "n_classes": len(self.categories),
            "padding": self.padding,
            "model": _plain(self.options),
            "defaulted": list(self.defaulted),
        }

    def digest(self) -> str:
        """A short digest of ``to_json()`` (for cache keys that must change with any model setting)."""
        return hashlib.sha256(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()[:16]


def resolve_class(name: str | int, categories: tuple[str, ...], synsets: tuple[str, ...] = ()) -> int:
    """Class index from a number, a synset id, a full name or the part before its first comma.

    Raises ``ModelError`` naming the closest class names when nothing matches.
    """
    if isinstance(name, int) or (isinstance(name, str) and name.isdigit()):
        index = int(name)
        if 0 <= index < max(len(categories), 1):
            return index
        raise ModelError(f"class index {index} is out of range (0..{len(categories) - 1})")
    key = name.strip().lower()
    if key in synsets:
        return synsets.index(key)
    for i, full in enumerate(categories):
        names = [p.strip().lower() for p in full.split(",")]
        if key == full.lower() or key in names:
            return i
    import difflib

    shorts = [c.split(",")[0].strip() for c in categories]
    close = difflib.get_close_matches(name, shorts, n=5, cutoff=0.5)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise ModelError(f"unknown class {name!r}{hint}")


# --------------------------------------------------------------------------- padding


class Conv2dSame(nn.Conv2d):
    """A Conv2d with TensorFlow "SAME" padding: out = ceil(in / stride), the extra pixel after.

    Shares ``nn.Conv2d``'s parameters and state-dict keys, so weights load unchanged.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left, right, top, bottom = same_padding(x.shape[-2:], self)
        if left == right and top == bottom:  # an even split (stride 1): the convolution pads the same zeros itself
            return F.conv2d(x, self.weight, self.bias, self.stride, (top, left), self.dilation, self.groups)
        return self._conv_forward(F.pad(x, (left, right, top, bottom)), self.weight, self.bias)


def same_padding(hw, conv: nn.Conv2d) -> tuple[int, int, int, int]:
    """F.pad amounts (left, right, top, bottom) giving TensorFlow SAME output for ``conv`` on ``hw``."""
    pads = []
    for size, k, s, d in zip(hw, conv.kernel_size, conv.stride, conv.dilation):
        out = -(-int(size) // s)
        total = max((out - 1) * s + (k - 1) * d + 1 - int(size), 0)
        pads.append((total // 2, total - total // 2))
    (top, bottom), (left, right) = pads
    return left, right, top, bottom


def use_tf_same_padding(model: nn.Module) -> nn.Module:
    """Switch every Conv2d with a kernel larger than 1 to TensorFlow SAME padding, in place."""
    for module in model.modules():
        if type(module) is nn.Conv2d and max(module.kernel_size) > 1:
            module.__class__ = Conv2dSame
            module.padding = (0, 0)
    return model


# --------------------------------------------------------------------------- the model block


@dataclass(frozen=True)
class ModelField:
    """One field of the model block: its name, JSON type, default and help (the CLI mirrors these)."""

    name: str
    type: str  # "string", "object", "bool", "int", "int_pair", "float_triple", "string_or_int"
    default: Any
    help: str

    @property
    def flag(self) -> str:
        """The CLI flag: ``input_size`` -> ``--input-size`` (``source`` is ``--model``)."""
        return "--model" if self.name == "source" else "--" + self.name.replace("_", "-")


MODEL_FIELDS: tuple[ModelField, ...] = (
    ModelField(
        "source", "string", None, "card.json, torchvision:NAME[:WEIGHTS], timm:NAME, export:PATH.pt2 or pkg.mod:fn"
    ),
    ModelField("kwargs", "object", {}, "keyword arguments for the builder or factory"),
    ModelField("weights", "string", None, "weights file (safetensors or a state dict); torchvision: a weights name"),
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
)
FIELD_NAMES = tuple(f.name for f in MODEL_FIELDS)


def model_options() -> tuple[ModelField, ...]:
    """The fields of the model block, in order: name, type, default, help and CLI ``flag``."""
    return MODEL_FIELDS


# Card keys beyond the block's: the builder, its aliases, and documentation that is ignored.
CARD_KEYS = {"name", "architecture", "architecture_kwargs", "categories"}
CARD_DOC_KEYS = {"source", "license", "description", "class_order", "pixel_range", "url", "citation"}
CARD_ALIASES = {"architecture_kwargs": "kwargs", "categories": "labels"}


def _closest(key: str, valid) -> str:
    close = difflib.get_close_matches(key, sorted(valid), n=1, cutoff=0.0)
    return f"; did you mean {close[0]!r}?" if close else ""


def model_block(model: str | Mapping | None = None, **overrides) -> dict:
    """The model block as a dict of declared fields: from a source string, a JSON object string, or
    a mapping, with ``overrides`` (None values ignored) on top.

    Raises ``ModelError`` for an unknown key, naming the closest valid one.
    """
    if model is None:
        block = {}
    elif isinstance(model, str):
        block = json.loads(model) if model.lstrip().startswith("{") else {"source": model}
    elif isinstance(model, Mapping):
        block = dict(model)
    else:
        raise ModelError(
            f"a model is a source string or a mapping of {', '.join(FIELD_NAMES)}; got {type(model).__name__}"
        )
    for key in block:
        if key not in FIELD_NAMES:
            raise ModelError(f"unknown model key {key!r}{_closest(key, FIELD_NAMES)} (valid: {', '.join(FIELD_NAMES)})")
    block.update({k: v for k, v in overrides.items() if v is not None})
    for key in block:
        if key not in FIELD_NAMES:
            raise ModelError(f"unknown model option {key!r}{_closest(key, FIELD_NAMES)}")
    if not block.get("source"):
        raise ModelError(
            "the model block needs a source: card.json, torchvision:NAME, timm:NAME, export:PATH.pt2 "
            "or pkg.mod:fn (model.source, --model)"
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
        if kind == "object":
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


def _trusted(value: bool | None) -> bool:
    if value is not None:
        return bool(value)
    return os.environ.get("ACTLAS_TRUST_CODE", "").lower() in ("1", "true", "yes")


def _plain(value):
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


# --------------------------------------------------------------------------- weights


def load_weights(path: Path, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """A state dict from safetensors, or from a torch file through ``weights_only=True``.

    A pickle that needs code to load is refused unless ``allow_pickle`` (``model.allow_pickle``,
    ``--allow-pickle``). Checkpoints that wrap the state dict (``state_dict``, ``model``,
    ``model_state_dict``) are unwrapped.
    """
    path = Path(path)
    if not path.exists():
        raise ModelError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if not allow_pickle:
            raise ModelError(
                f"{path} is a pickle that runs code when loaded, so actlas refused it. Convert it to "
                "safetensors, or set model.allow_pickle: true (--allow-pickle) if you trust its author."
            ) from err
        state = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(state, nn.Module):
        state = state.state_dict()
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), (dict, nn.Module)):
            state = state[key].state_dict() if isinstance(state[key], nn.Module) else state[key]
            break
    if not isinstance(state, dict):
        raise ModelError(f"{path} holds a {type(state).__name__}, not a state dict")
    return state


WRAPPER_PREFIXES = ("module.", "_orig_mod.", "model.", "net.", "backbone.")


def fit_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` with wrapper prefixes (``module.`` of DataParallel, ``_orig_mod.`` of
    torch.compile, ``model.``, ...) stripped while that makes more keys fit ``model``."""
    want = set(model.state_dict())
    state = dict(state)
    for _ in range(2 * len(WRAPPER_PREFIXES)):
        fit = len(want & set(state))
        loose = [k for k in state if k not in want]
        best = None
        for prefix in WRAPPER_PREFIXES:
            stripped = {k[len(prefix) :] if k in loose and k.startswith(prefix) else k: v for k, v in state.items()}
            gain = len(want & set(stripped)) - fit
            if gain > 0 or (loose and gain == 0 and all(k.startswith(prefix) for k in loose)):
                best = stripped  # more keys fit, or every loose key sheds a wrapper layer
                if gain > 0:
                    break
        if best is None:
            return state
        state = best
    return state


def load_state(model: nn.Module, state: Mapping[str, torch.Tensor], where: str) -> None:
    """Load ``state`` into ``model`` (prefixes stripped); fails in one line naming the first missing,
    the first unexpected and the first mis-shaped key."""
    state = fit_state_dict(model, state)
    own = model.state_dict()
    shaped = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    missing, unexpected = [], []
    if not shaped:
        result = model.load_state_dict(state, strict=False)  # tolerates what torch tolerates (num_batches_tracked)
        missing, unexpected = list(result.missing_keys), list(result.unexpected_keys)
    if missing or unexpected or shaped:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (first {missing[0]!r})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (first {unexpected[0]!r})")
        if shaped:
            k = shaped[0]
            parts.append(
                f"{len(shaped)} of another shape (first {k!r}: {list(state[k].shape)} for {list(own[k].shape)})"
            )
        raise ModelError(
            f"weights {where} do not fit the model: keys {', '.join(parts)}; check the architecture "
            "and its kwargs (num_classes, ...)"
        )


# --------------------------------------------------------------------------- builders


def _import(dotted: str) -> Callable:
    module, _, attr = dotted.replace(":", ".").rpartition(".")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as err:
        raise ModelError(f"cannot import {dotted!r}: {err} (the module must be importable: on PYTHONPATH)") from err


def _known_builder(name: str) -> tuple[str, str] | None:
    """("torchvision" | "timm" | "actlas", builder) when ``name`` names a known builder, else None.

    Accepts ``torchvision.models.NAME``, ``torchvision:NAME``, ``timm:NAME``, ``timm.models.NAME``,
    ``actlas:NAME`` and ``actlas.archs.NAME``. Nothing is imported but torchvision, timm and actlas.
    """
    for prefix, lib in (
        ("torchvision.models.", "torchvision"),
        ("torchvision:", "torchvision"),
        ("timm:", "timm"),
        ("timm.models.", "timm"),
        ("actlas:", "actlas"),
        ("actlas.archs.", "actlas"),
    ):
        if name.startswith(prefix):
            builder = name[len(prefix) :]
            if lib == "torchvision":
                import torchvision

                return (lib, builder) if builder in torchvision.models.list_models() else None
            if lib == "actlas":
                from .archs import ARCHITECTURES

                return (lib, builder) if builder in ARCHITECTURES else None
            return lib, builder
    return None


def _build(architecture: str, kwargs: dict, trust_code: bool, where: str) -> nn.Module:
    known = _known_builder(architecture)
    if known is None:
        if not trust_code:
            raise ModelError(
                f"{where} names architecture {architecture!r}, which is not a torchvision, timm or actlas builder; "
                "actlas runs code named by a card or config only with trust_code: true (--trust-code) "
                "when you trust its author"
            )
        model = _import(architecture)(**kwargs)
    else:
        lib, builder = known
        if lib == "torchvision":
            import torchvision

            model = torchvision.models.get_model(builder, **kwargs)
        elif lib == "timm":
            model = _timm().create_model(builder, **kwargs)
        else:
            from .archs import ARCHITECTURES

            model = ARCHITECTURES[builder](**kwargs)
    if not isinstance(model, nn.Module):
        raise ModelError(f"{architecture} returned {type(model).__name__}, not a torch.nn.Module")
    return model


def _timm():
    try:
        import timm
    except ImportError as err:
        raise ModelError("timm:NAME needs timm: pip install 'actlas[timm]'") from err
    return timm


def _lines(value) -> tuple[str, ...]:
    """Names from a list, or from a file of one name a line (relative to the working directory)."""
    if isinstance(value, (list, tuple)):
        return tuple(str(v) for v in value)
    path = Path(value)
    if not path.exists():
        raise ModelError(f"labels or synsets file not found: {path}")
    return tuple(line.rstrip("\n") for line in path.read_text().splitlines() if line.strip())


@dataclass
class _Found:
    """What a source provides before the block's declared fields are applied."""

    model: nn.Module
    name: str
    values: dict = field(default_factory=dict)  # input_size, resize, mean, std, labels, synsets


def _read_card(path: Path) -> dict:
    if not path.exists():
        raise ModelError(f"model card not found: {path}")
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
                f"model card {path} has unknown key {key!r}{_closest(key, valid)} "
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


def _from_card(path: Path, block: dict) -> tuple[_Found, dict]:
    """The card's model (built, not yet weighted) and the card's fields merged under the block's."""
    card = _read_card(path)
    merged = {k: v for k, v in card.items() if k in FIELD_NAMES}
    merged.update({k: v for k, v in block.items() if k != "source"})
    if "kwargs" in block and "kwargs" in card:
        merged["kwargs"] = {**card["kwargs"], **block["kwargs"]}
    model = _build(
        card["architecture"], merged.get("kwargs", {}), _trusted(block.get("trust_code")), f"model card {path}"
    )
    if "weights" in card and "weights" not in block:
        merged["weights"] = os.path.normpath(path.parent / card["weights"])
    for key in ("labels", "synsets"):  # card paths are relative to the card
        if key in card and key not in block and not isinstance(card[key], list):
            merged[key] = os.path.normpath(path.parent / card[key])
    if "weights" not in merged:
        raise ModelError(f"model card {path} lacks the key 'weights' (a safetensors file beside the card)")
    return _Found(model, card.get("name", path.stem)), merged


def _from_torchvision(name: str, weights: str | None, kwargs: dict) -> _Found:
    import torchvision

    file = weights if weights and (Path(weights).suffix or "/" in weights) else None
    enum_name = None if file else weights
    try:
        model = torchvision.models.get_model(name, weights=enum_name, **kwargs)
    except ValueError as err:
        close = difflib.get_close_matches(name, torchvision.models.list_models(), n=5, cutoff=0.5)
        hint = f"; closest: {', '.join(close)}" if close else ""
        raise ModelError(f"{err}{hint}; see torchvision.models.list_models()") from err
    found = _Found(model, name)
    if enum_name is not None:
        enum = torchvision.models.get_model_weights(name)
        w = enum.DEFAULT if enum_name == "DEFAULT" else enum[enum_name]
        t = w.transforms()
        found.values = {
            "input_size": [t.crop_size[0], t.crop_size[0]],
            "resize": t.resize_size[0],
            "mean": list(t.mean),
            "std": list(t.std),
            "labels": list(w.meta.get("categories", ())),
        }
    return found


def _from_timm(name: str, kwargs: dict) -> _Found:
    timm = _timm()
    try:
        model = timm.create_model(name, **kwargs)
    except RuntimeError as err:
        raise ModelError(f"timm cannot create {name!r}: {err}; see timm.list_models()") from err
    cfg = timm.data.resolve_model_data_config(model)
    h, w = cfg["input_size"][1:]
    values = {
        "input_size": [h, w],
        "resize": int(math.floor(min(h, w) / cfg.get("crop_pct", 1.0))),
        "mean": list(cfg["mean"]),
        "std": list(cfg["std"]),
    }
    try:
        subset = timm.data.infer_imagenet_subset(model)
        if subset:
            info = timm.data.ImageNetInfo(subset)
            values["labels"] = list(info.label_descriptions())
            values["synsets"] = list(info.label_names())
    except Exception:  # noqa: BLE001 - labels are optional; a model timm cannot place gets none
        pass
    return _Found(model, name, values=values)


def _from_export(file: str) -> _Found:
    if not Path(file).exists():
        raise ModelError(f"torch.export file not found: {file}")
    program = torch.export.load(file)
    model = torch.export.unflatten(program)
    return _Found(model, Path(file).stem)


TORCHSCRIPT_REFUSED = (
    "TorchScript modules take no forward hooks, so actlas cannot read their layers; export the model instead: "
    "torch.export.save(torch.export.export(model.eval(), (torch.zeros(2, 3, H, W),), dynamic_shapes="
    "({0: torch.export.Dim('batch')},)), 'model.pt2') and use export:model.pt2"
)


class _Logits:
    """A root forward hook that turns any forward output into the logits tensor (see ``select_logits``)."""

    def __init__(self, output: str | int | None):
        self.output = output

    def __call__(self, _module, _inputs, out):
        return select_logits(out, self.output)


def select_logits(out, output: str | int | None = None) -> torch.Tensor:
    """The logits in a forward's output: a tensor as is; else ``output`` (a key, attribute or index);
    by default a tuple's first element and a dict's or ModelOutput's ``logits``."""
    if isinstance(out, torch.Tensor) and output is None:
        return out
    if output is None:
        if isinstance(out, (tuple, list)) and out and not isinstance(out, Mapping):
            if not _is_model_output(out):
                return select_logits(out[0])
        output = "logits"
    if isinstance(output, str) and output.lstrip("-").isdigit():
        output = int(output)
    if isinstance(out, Mapping) or _is_model_output(out):
        keys = list(out.keys())
        if output in keys:
            return select_logits(out[output])
        if isinstance(output, int) and -len(keys) <= output < len(keys):
            return select_logits(out[keys[output]])
        raise ModelError(
            f"the model's forward returns {type(out).__name__} without {output!r}; its keys: "
            f"{', '.join(map(str, keys))}; set model.output to the key of the logits"
        )
    if isinstance(out, (tuple, list)) and isinstance(output, int):
        if -len(out) <= output < len(out):
            return select_logits(out[output])
        raise ModelError(f"the model's forward returns {len(out)} values; model.output {output} is out of range")
    if isinstance(out, torch.Tensor):
        raise ModelError(f"the model's forward returns a tensor; remove model.output ({output!r})")
    raise ModelError(
        f"the model's forward returns {type(out).__name__}; set model.output to the key or index of the logits"
    )


def _is_model_output(out) -> bool:
    """A Hugging Face ``ModelOutput``-like object: keys() and item access."""
    return hasattr(out, "keys") and hasattr(out, "__getitem__") and not isinstance(out, torch.Tensor)


# --------------------------------------------------------------------------- load_model


def _describe_source(source: str, block: dict) -> tuple[_Found, dict]:
    """Build the model of ``source`` (no weights yet) -> (found, fields merged: block over card)."""
    kwargs = dict(block.get("kwargs") or {})
    if source.endswith(".json"):
        return _from_card(Path(source), block)
    if source.startswith("torchvision:"):
        _, name, *rest = source.split(":")
        weights = block.get("weights") or (rest[0] if rest else None)
        found = _from_torchvision(name, weights, kwargs)
        fields = dict(block)
        if weights and not (Path(weights).suffix or "/" in weights):
            fields.pop("weights", None)  # a weights enum name, used by the builder
        return found, fields
    if source.startswith("timm:"):
        return _from_timm(source.split(":", 1)[1], kwargs), dict(block)
    if source.startswith("export:"):
        if kwargs:
            raise ModelError("an export:PATH program takes no kwargs; remove model.kwargs")
        return _from_export(source.split(":", 1)[1]), dict(block)
    if source.startswith("torchscript:"):
        raise ModelError(TORCHSCRIPT_REFUSED)
    if ":" in source and not source.startswith(("/", ".")):
        if not _trusted(block.get("trust_code")):
            raise ModelError(
                f"the source {source!r} runs Python code (a factory); actlas runs it only with "
                "trust_code: true (--trust-code) when you trust the config's author"
            )
        model = _import(source)(**kwargs)
        if not isinstance(model, nn.Module):
            raise ModelError(f"{source} returned {type(model).__name__}, not a torch.nn.Module")
        return _Found(model, source.split(":")[1], values=_hf_labels(model)), dict(block)
    raise ModelError(
        f"cannot tell what model {source!r} is: give a card (.json), torchvision:NAME, timm:NAME, "
        "export:PATH.pt2 or package.module:function"
    )


def _hf_labels(model: nn.Module) -> dict:
    """``{"labels": [...]}`` from a Hugging Face model's ``config.id2label``, else {}."""
    id2label = getattr(getattr(model, "config", None), "id2label", None)
    if isinstance(id2label, Mapping) and id2label:
        try:
            return {"labels": [str(id2label[i]) for i in range(len(id2label))]}
        except KeyError:
            return {}
    return {}


def _pair(value, key: str) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    try:
        h, w = (int(v) for v in value)
    except (TypeError, ValueError):
        raise ModelError(f"model.{key} must be [height, width] or one number, not {value!r}") from None
    return h, w


def _triple(value, key: str) -> tuple[float, float, float]:
    if isinstance(value, (int, float)):
        return (float(value),) * 3
    try:
        a, b, c = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ModelError(f"model.{key} must be three numbers (R, G, B) or one, not {value!r}") from None
    return a, b, c


def resolve_spec(name: str, source: str, fields: dict, provided: dict) -> ModelSpec:
    """The ``ModelSpec`` from declared ``fields`` over what the source ``provided``, defaults last.

    Warns once (``ModelDefaultWarning``, one line) naming what was assumed and the keys that set it.
    """
    values = {**provided, **{k: v for k, v in fields.items() if v is not None}}
    assumed = []
    if "input_size" in values:
        size = _pair(values["input_size"], "input_size")
    elif "crop" in values:
        size = _pair(values["crop"], "crop")
    else:
        size = (224, 224)
        assumed.append(("input_size", "input 224 x 224"))
    if "resize" in values:
        resize = int(values["resize"])
    elif "input_size" in values or "crop" in values:
        resize = min(size)
    else:
        resize = 256
        assumed.append(("resize", "resize 256"))
    if "mean" not in values or "std" not in values:
        assumed.append((("mean", "std"), "ImageNet mean/std"))
    mean = _triple(values.get("mean", IMAGENET_MEAN), "mean")
    std = _triple(values.get("std", IMAGENET_STD), "std")
    categories = _lines(values["labels"]) if values.get("labels") else ()
    synsets = _lines(values["synsets"]) if values.get("synsets") else ()
    if not categories:
        assumed.append(("labels", "no class names (indices)"))
    from .layers import as_kind

    for kind in (values.get("layer_kinds") or {}).values():
        as_kind(kind)  # a mistyped kind fails at load time, in one line
    padding = values.get("padding") or "default"
    if padding not in ("default", "tf_same"):
        raise ModelError(f"unknown padding {padding!r}: use 'default' or 'tf_same'")
    if assumed:
        keys = ", ".join(f"model.{k}" for key, _ in assumed for k in ((key,) if isinstance(key, str) else key))
        warnings.warn(
            f"model {source}: assumed {', '.join(v for _, v in assumed)}; set {keys} to declare them",
            ModelDefaultWarning,
            stacklevel=3,
        )
    defaulted = tuple(k for key, _ in assumed for k in ((key,) if isinstance(key, str) else key))
    options = {f.name: fields.get(f.name, f.default) for f in MODEL_FIELDS}
    options.update(
        source=source,
        input_size=list(size),
        resize=resize,
        crop=values.get("crop"),
        mean=list(mean),
        std=list(std),
        padding=padding,
        trust_code=_trusted(fields.get("trust_code")),
        allow_pickle=bool(options["allow_pickle"]),
    )
    for key in ("labels", "synsets"):
        if isinstance(options[key], (list, tuple)) and len(options[key]) > 20:
            options[key] = f"{len(options[key])} names from the source"
    if options["labels"] is None and categories:
        options["labels"] = f"{len(categories)} names from the source"
    return ModelSpec(
        name=name,
        source=source,
        input_size=size,
        resize=resize,
        mean=mean,
        std=std,
        categories=categories,
        synsets=synsets,
        padding=padding,
        options=options,
        defaulted=defaulted,
        layer_kinds=dict(values.get("layer_kinds") or {}),
    )


def load_model(
    model: str | Mapping,
    *,
    weights: str | None = None,
    allow_pickle: bool | None = None,
    padding: str | None = None,
    trust_code: bool | None = None,
    **fields,
) -> tuple[nn.Module, ModelSpec]:
    """Load a model in eval mode, weights loaded, with its ``ModelSpec``.

    Parameters
    ----------
    model : str or mapping
        A source string (card ``.json``, ``torchvision:NAME[:WEIGHTS]``, ``timm:NAME``,
        ``export:PATH.pt2``, ``package.module:function``), a JSON object string, or a model block
        mapping with the keys of ``MODEL_FIELDS``.
    weights, allow_pickle, padding, trust_code, **fields
        Model-block fields given as arguments; they override the block's (None: not given).
        ``trust_code`` None reads the environment variable ``ACTLAS_TRUST_CODE``.

    The forward of the returned model always gives a logits tensor (``output`` selects it from a
    dict, tuple or ModelOutput). Raises ``ModelError`` in one line that says how to fix the problem.
    """
    return _load(
        model_block(
            model, weights=weights, allow_pickle=allow_pickle, padding=padding, trust_code=trust_code, **fields
        ),
        with_weights=True,
    )


def load_spec(model: str | Mapping, **fields) -> ModelSpec:
    """The ``ModelSpec`` of a model without loading its weights (for parse time: labels, synsets,
    preprocessing). The architecture is still built (a factory runs, under the same trust rule)."""
    return _load(model_block(model, **fields), with_weights=False)[1]


def _load(block: dict, with_weights: bool) -> tuple[nn.Module, ModelSpec]:
    source = str(block["source"])
    found, merged = _describe_source(source, block)
    net = found.model
    if merged.get("weights") and with_weights:
        path = Path(merged["weights"])
        load_state(net, load_weights(path, bool(merged.get("allow_pickle"))), str(path))
    spec = resolve_spec(found.name, source, merged, found.values)
    if spec.padding == "tf_same":
        use_tf_same_padding(net)
    for p in net.parameters():
        p.requires_grad_(False)
    for module in net.modules():  # in-place ops would overwrite captured activations
        if getattr(module, "inplace", False) is True:
            module.inplace = False
    net.register_forward_hook(_Logits(merged.get("output")))
    try:
        net.eval()
    except (NotImplementedError, RuntimeError):  # exported programs keep the mode they were exported in
        pass
    return net, spec
