"""The registry of model sources: one entry per kind of ``source`` string.

Each kind says how it is written (``matches``), how it builds the model without its weights
(``build``), which class names and synset ids it provides, read as data without building anything
(``label_space``: parse time lists and labels images with it), and which files it reads (``files``:
the inputs of every rule that loads the model, so replacing weights at the same path reruns what
they made). ``SOURCES`` is tried in order; ``source_of`` picks the entry for a string.

Nothing here imports torch, torchvision or timm at import time: the Snakefile uses ``label_space``
and ``model_files`` at parse time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DependencyError, ModelError
from ..text import closest
from .block import random_seed, trusted
from .builders import (
    BUILTINS,
    build_architecture,
    build_builtin,
    build_timm,
    call_builder,
    call_factory,
    import_object,
    known_builder,  # noqa: F401 - re-exported: older callers import it from here
    load_export,
    timm_labels,
    torchvision_recipe,
    torchvision_weights,
    unknown_builtin,
)
from .card import card_fields, card_files, read_card
from .classes import read_names
from .hf import model_labels
from .hub import fetch_torchvision, quiet_stdout
from .imagenet import synsets_for


@dataclass
class Found:
    """What a source provides before the block's declared fields are applied: the model (no weights yet),
    its name, and ``values`` (input_size, resize, mean, std, labels, synsets) the source knows."""

    model: Any
    name: str
    values: dict = field(default_factory=dict)


class Source:
    """One kind of model source (see the module). Subclasses set ``kind`` and ``syntax`` and override
    what differs; the defaults give no labels and no files besides the block's, and need no weights."""

    kind = ""
    syntax = ""

    def matches(self, source: str) -> bool:
        return source.startswith(f"{self.kind}:")

    def build(self, source: str, block: dict, load: bool = True) -> tuple[Found, dict]:
        """The model of ``source`` -> (found, the block's fields merged over the source's). Without ``load``
        (``load_spec``) nothing is downloaded: the architecture alone is built."""
        raise NotImplementedError

    def label_space(self, source: str, block: dict) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(synsets, categories) the source itself names, read as data (no weights, no code)."""
        return (), ()

    def files(self, source: str, block: dict) -> list[Path]:
        """Files the source reads (the block's own files are added by ``model_files``)."""
        return []

    def weights_hint(self, source: str, block: dict) -> str | None:
        """None when the block gives the source weights; else how this source is given weights besides
        ``weights: FILE`` (``""``: no other way), for the one-line refusal of ``check``."""
        return None

    def check(self, source: str, block: dict) -> None:
        """Refuse, in one line and reading nothing but data, a block actlas cannot load: a source without weights."""
        hint = self.weights_hint(source, block)
        if hint is not None:
            raise ModelError(
                f"{source} has no weights: give {hint + ', ' if hint else ''}weights: FILE, or weights: random "
                "for an untrained network"
            )


def _argument(source: str) -> str:
    return source.split(":", 1)[1]


def _weights(block: dict):
    return block.get("weights")


# --------------------------------------------------------------------------- the kinds


class Card(Source):
    kind = "card"
    syntax = "a card (.json)"

    def matches(self, source: str) -> bool:
        return source.endswith(".json")

    def build(self, source, block, load=True):
        path = Path(source)
        card = read_card(path)
        merged = card_fields(path, card, block)
        model = build_architecture(
            card["architecture"], merged.get("kwargs", {}), trusted(block.get("trust_code")), f"model card {path}"
        )
        return Found(model, card.get("name", path.stem)), merged

    def label_space(self, source, block):
        path = Path(source)
        if not path.is_file():
            return (), ()
        card = read_card(path)
        synsets = read_names(card["synsets"], path.parent) if card.get("synsets") else ()
        categories = read_names(card["labels"], path.parent) if card.get("labels") else ()
        return synsets, categories

    def files(self, source, block):
        return card_files(Path(source))

    def weights_hint(self, source, block):
        path = Path(source)
        if _weights(block) or not path.is_file():
            return None  # a missing card is named when it is loaded
        card = read_card(path)
        kwargs = {**(card.get("kwargs") or {}), **(block.get("kwargs") or {})}
        return None if card.get("weights") or kwargs.get("pretrained") or kwargs.get("weights") else ""


class Builtin(Source):
    kind = "actlas"
    syntax = "actlas:NAME"

    def build(self, source, block, load=True):
        name = _argument(source)
        return Found(build_builtin(name, dict(block.get("kwargs") or {})), name), dict(block)

    def weights_hint(self, source, block):
        return None if _weights(block) else ""

    def check(self, source, block):
        if _argument(source) not in BUILTINS:
            raise unknown_builtin(_argument(source))
        super().check(source, block)


class Torchvision(Source):
    kind = "torchvision"
    syntax = "torchvision:NAME[:WEIGHTS]"

    @staticmethod
    def _weights(source: str, block: dict) -> str | None:
        _, _, *rest = source.split(":")
        return block.get("weights") or (rest[0] if rest else None)

    @staticmethod
    def _is_file(weights: str | None) -> bool:
        return bool(weights) and bool(Path(weights).suffix or "/" in weights)

    def _enum_name(self, source: str, block: dict) -> str | None:
        """The weights enum member named (``DEFAULT``, ``IMAGENET1K_V1``), or None (a file, random, none)."""
        weights = self._weights(source, block)
        if not weights or self._is_file(weights) or random_seed(weights) is not None:
            return None
        return weights

    @staticmethod
    def _name(source: str) -> str:
        """The builder name of ``source``; ``ModelError`` naming the closest when torchvision has none such."""
        import torchvision

        name = source.split(":")[1]
        if name not in torchvision.models.list_models():
            close = closest(name, torchvision.models.list_models(), n=5)
            hint = f"; closest: {', '.join(close)}" if close else ""
            raise ModelError(f"torchvision: Unknown model {name}{hint}; see torchvision.models.list_models()")
        return name

    def build(self, source, block, load=True):
        import torchvision

        name = self._name(source)
        kwargs = dict(block.get("kwargs") or {})
        enum_name = self._enum_name(source, block)
        enum = torchvision_weights(name, enum_name) if enum_name else None
        if enum is not None and load:
            fetch_torchvision(enum)  # into torch.hub's cache, or one line saying where to put the file
            with quiet_stdout():
                model = call_builder(lambda **kw: torchvision.models.get_model(name, weights=enum, **kw), kwargs, name)
        else:
            model = call_builder(lambda **kw: torchvision.models.get_model(name, weights=None, **kw), kwargs, name)
        fields = dict(block)
        if enum_name is not None:
            fields.pop("weights", None)  # a weights enum name, used by the builder
        return Found(model, name, values=torchvision_recipe(self._recipe(source, block), kwargs)), fields

    def _recipe(self, source: str, block: dict):
        """The weights whose metadata give preprocessing and class names: those named; for random weights the
        architecture's DEFAULT (its usual recipe); None for a weights file."""
        name, enum_name = source.split(":")[1], self._enum_name(source, block)
        if enum_name is not None:
            return torchvision_weights(name, enum_name)
        return (
            torchvision_weights(name, "DEFAULT", missing_ok=True) if random_seed(_weights(block)) is not None else None
        )

    def label_space(self, source, block):
        found = torchvision_recipe(self._recipe(source, block), dict(block.get("kwargs") or {}))
        return (), tuple(found.get("labels", ()))

    def weights_hint(self, source, block):
        return None if self._weights(source, block) else f"torchvision:{source.split(':')[1]}:DEFAULT"

    def check(self, source, block):
        self._name(source)
        super().check(source, block)
        self._recipe(source, block)


class Timm(Source):
    kind = "timm"
    syntax = "timm:NAME"

    def build(self, source, block, load=True):
        name, kwargs = _argument(source), dict(block.get("kwargs") or {})
        if not load:
            kwargs.pop("pretrained", None)
        model, values = build_timm(name, kwargs, pretrained=bool(kwargs.get("pretrained")) and not _weights(block))
        return Found(model, name, values=values), dict(block)

    def label_space(self, source, block):
        try:
            found = timm_labels(_argument(source), dict(block.get("kwargs") or {}))
        except DependencyError:
            return (), ()
        return tuple(found.get("synsets", ())), tuple(found.get("labels", ()))

    def weights_hint(self, source, block):
        if _weights(block) or (block.get("kwargs") or {}).get("pretrained"):
            return None
        return "kwargs: {pretrained: true} (timm's weights, from the Hugging Face Hub)"


class Transformers(Source):
    kind = "transformers"
    syntax = "transformers:ID_OR_PATH"

    def build(self, source, block, load=True):
        from . import hf

        ident = _argument(source)
        pretrained = load and not _weights(block)  # weights: FILE or random: the architecture from its config
        model, values = hf.build(ident, dict(block.get("kwargs") or {}), pretrained)
        return Found(model, Path(ident).name or ident, values=values), dict(block)

    def label_space(self, source, block):
        from . import hf

        return (), hf.label_space(_argument(source))

    def files(self, source, block):
        from . import hf

        return hf.files(_argument(source))


class Export(Source):
    kind = "export"
    syntax = "export:PATH.pt2"

    def build(self, source, block, load=True):
        if block.get("kwargs"):
            raise ModelError("an export:PATH program takes no kwargs; remove model.kwargs")
        if _weights(block):
            raise ModelError("an export:PATH program carries its own weights; remove model.weights")
        module, values = load_export(_argument(source))
        return Found(module, Path(_argument(source)).stem, values=values), dict(block)

    def files(self, source, block):
        return [Path(_argument(source))]


TORCHSCRIPT_REFUSED = (
    "TorchScript modules take no forward hooks, so actlas cannot read their layers; export the model instead: "
    "torch.export.save(torch.export.export(model.eval(), (torch.zeros(2, 3, H, W),), dynamic_shapes="
    "({0: torch.export.Dim('batch')},)), 'model.pt2') and use export:model.pt2"
)


class TorchScript(Source):
    kind = "torchscript"
    syntax = "torchscript:PATH (refused)"

    def build(self, source, block, load=True):
        raise ModelError(TORCHSCRIPT_REFUSED)

    def files(self, source, block):
        return [Path(_argument(source))]


class Factory(Source):
    kind = "factory"
    syntax = "package.module:function"

    def matches(self, source: str) -> bool:
        return ":" in source and not source.startswith(("/", "."))

    def build(self, source, block, load=True):
        from torch import nn

        if not trusted(block.get("trust_code")):
            raise ModelError(
                f"the source {source!r} runs Python code (a factory); actlas runs it only with "
                "trust_code: true (--trust-code) when you trust the config's author"
            )
        model = call_factory(import_object(source), dict(block.get("kwargs") or {}), source)
        if not isinstance(model, nn.Module):
            raise ModelError(f"{source} returned {type(model).__name__}, not a torch.nn.Module")
        return Found(model, source.split(":")[1], values=model_labels(model)), dict(block)


SOURCES: tuple[Source, ...] = (
    Card(),
    Torchvision(),
    Timm(),
    Transformers(),
    Builtin(),
    Export(),
    TorchScript(),
    Factory(),
)


def source_of(source: str) -> Source:
    """The registry entry for a source string; ``ModelError`` listing the kinds when none matches."""
    for entry in SOURCES:
        if entry.matches(source):
            return entry
    kinds = ", ".join(s.syntax for s in SOURCES if s.kind != "torchscript")
    raise ModelError(f"cannot tell what model {source!r} is: give {kinds}")


def _block(model) -> dict:
    """A source string or a model block as a block (parse time: not validated, never loaded)."""
    return dict(model) if isinstance(model, Mapping) else {"source": str(model)}


def label_space(model) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(synsets, categories) of a model, read as data (no weights, no code): the block's own ``synsets``
    and ``labels`` (relative to the working directory), else the source's. An unknown source gives
    ``((), ())``: images are then unlabelled (-1) unless a list file gives labels."""
    block = _block(model)
    if block.get("head") is not None:  # an encoder's head names its own classes, never the source's
        from .heads import head_names

        return head_names(block)
    source = str(block.get("source", ""))
    synsets = read_names(block["synsets"]) if block.get("synsets") else ()
    categories = read_names(block["labels"]) if block.get("labels") else ()
    try:
        entry = source_of(source)
    except ModelError:
        return synsets, categories
    if not (synsets and categories):
        own_synsets, own_categories = entry.label_space(source, block)
        synsets, categories = synsets or own_synsets, categories or own_categories
    return synsets or synsets_for(categories), categories


def check_model(model) -> None:
    """Refuse, before any job runs, a model block actlas cannot load, in one line, reading only data (parse
    time): a source without weights (``weights: random`` asks for an untrained network), a torchvision
    weights name that does not exist, an unknown built-in architecture, a bad ``random:SEED``."""
    block = _block(model)
    source = str(block.get("source", ""))
    random_seed(block.get("weights"))
    source_of(source).check(source, block)


def model_files(model) -> list[str]:
    """The files a model is read from (card, weights, label files, exported program), sorted: inputs of
    every rule that loads the model. ``model``: a source string or a model block. Files that do not
    exist are left out (the stage that loads the model names them)."""
    block = _block(model)
    source = str(block.get("source", ""))
    try:
        found = source_of(source).files(source, block)
    except ModelError:
        found = []
    found += [Path(str(block[k])) for k in ("weights", "labels", "synsets") if isinstance(block.get(k), str)]
    if block.get("head") is not None:
        from .heads import head_files

        found += head_files(block)
    return sorted({str(p) for p in found if p.is_file()})
