"""``load_model`` and ``load_spec``: a model block -> the model in eval mode and its ``ModelSpec``.

The source's registry entry (``actlas.models.sources``) builds the model; the weights are loaded
(``actlas.models.weights``), the spec is resolved from the declared fields over what the source
provides, defaults last (``resolve_spec``), and the forward is made to return the logits.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path

from torch import nn

from ..errors import ModelError
from ..nn.kinds import as_kind
from ..nn.padding import use_tf_same_padding
from .block import MODEL_FIELDS, ModelDefaultWarning, model_block, random_seed, trusted
from .classes import read_names
from .headhook import attach_head
from .heads import head_fields
from .imagenet import synsets_for
from .sizes import fixed_input_size
from .sources import source_of
from .spec import IMAGENET_MEAN, IMAGENET_STD, INTERPOLATIONS, ModelSpec
from .untrained import make_usable, seeded
from .weights import load_state, load_weights


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


def resolve_spec(
    name: str, source: str, fields: dict, provided: dict, fixed: tuple[int, int] | None = None
) -> ModelSpec:
    """The ``ModelSpec`` from declared ``fields`` over what the source ``provided``, defaults last.

    ``fixed``: the only input size (H, W) the network takes (``actlas.models.sizes``), or None: it
    is the input size unless one is declared, and a declared one that differs fails in one line.
    Warns once (``ModelDefaultWarning``, one line) naming what was assumed and the keys that set it.
    """
    fixed = tuple(int(v) for v in fixed) if fixed else None
    declared = {k: v for k, v in fields.items() if v is not None}
    if fixed and "input_size" not in declared and "crop" not in declared:
        provided = {**provided, "input_size": list(fixed)}
        if "resize" not in provided:
            provided["resize"] = min(fixed)
    values = {**provided, **declared}
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
    categories = read_names(values["labels"]) if values.get("labels") else ()
    synsets = read_names(values["synsets"]) if values.get("synsets") else synsets_for(categories)
    if not categories:
        assumed.append(("labels", "no class names (indices)"))
    for kind in (values.get("layer_kinds") or {}).values():
        as_kind(kind)  # a mistyped kind fails at load time, in one line
    padding = values.get("padding") or "default"
    if padding not in ("default", "tf_same"):
        raise ModelError(f"unknown padding {padding!r}: use 'default' or 'tf_same'")
    interpolation = values.get("interpolation") or "bilinear"
    if interpolation not in INTERPOLATIONS:
        raise ModelError(f"unknown interpolation {interpolation!r}: use {', '.join(INTERPOLATIONS)}")
    if fixed and size != fixed:
        raise ModelError(
            f"model {source} takes only {fixed[0]} x {fixed[1]} inputs, not model.input_size {list(size)}: set "
            f"input_size to {list(fixed)} (or, timm: kwargs {{img_size: {size[0]}}} or {{dynamic_img_size: true}})"
        )
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
        interpolation=interpolation,
        trust_code=trusted(fields.get("trust_code")),
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
        interpolation=interpolation,
        fixed_size=fixed,
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
    dict, tuple or ModelOutput), or its ``head``'s (an encoder's: ``actlas.models.heads``). Raises
    ``ModelError`` in one line that says how to fix the problem.
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
    entry = source_of(source)
    entry.check(source, block)  # a source without weights is refused before anything is built
    seed = random_seed(block.get("weights"))
    if seed is None:
        found, merged = entry.build(source, block, load=with_weights)
    else:
        with seeded(seed):  # the same network in every stage, the caller's random state untouched
            found, merged = entry.build(source, block, load=False)
    net = found.model
    if merged.get("weights") and with_weights and seed is None:
        path = Path(merged["weights"])
        load_state(net, load_weights(path, bool(merged.get("allow_pickle"))), str(path))
    fields, provided = head_fields(merged, found.values)  # a declared head's class names are its own
    fixed = found.values.get("fixed_size") or fixed_input_size(net)
    spec = resolve_spec(found.name, source, fields, provided, fixed)
    if spec.padding == "tf_same":
        use_tf_same_padding(net)
    if seed is not None and with_weights:
        make_usable(net, spec.input_size, seed)
    for p in net.parameters():
        p.requires_grad_(False)
    for module in net.modules():  # in-place ops would overwrite captured activations
        if getattr(module, "inplace", False) is True:
            module.inplace = False
    attach_head(net, merged, spec.input_size)  # the forward returns the logits: the model's own or its head's
    try:
        net.eval()
    except (NotImplementedError, RuntimeError):  # exported programs keep the mode they were exported in
        pass
    else:
        _check_eval(net, source)
    return net, spec


def _check_eval(net: nn.Module, source: str) -> None:
    """Refuse a model that stays in training mode after ``eval()`` (its own ``train`` overridden): its dropout
    and BatchNorm would make every activation depend on the batch and the draw, silently."""
    training = [name or "the model" for name, module in net.named_modules() if module.training]
    if training:
        raise ModelError(
            f"model {source} stays in training mode after eval() ({', '.join(map(repr, training[:3]))}"
            f"{', ...' if len(training) > 3 else ''}): dropout and BatchNorm would make its activations random and "
            "batch-dependent; make its train()/eval() set every module's mode (do not override train)"
        )
