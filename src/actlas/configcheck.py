"""The workflow's config checked at parse time, every problem as one line naming the key and the fix.

``check_config`` runs before any job (the Snakefile calls it first): a size and nesting limit (a YAML
"billion laughs" of nested aliases expands to no more than ``MAX_VALUES`` values), then the schema
(``config/schema.yaml``) with one line per error (unknown keys with "did you mean", the model block's
keys as the CLI names them), then the settings (``actlas.settings.fill``: finite numbers within their
limits). The CLI gives the same lines for the same values.

Pure: reads no file but the schema, loads no model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import yaml

from . import settings
from .errors import ConfigError, UserError
from .text import did_you_mean, one_line

MAX_VALUES = 100_000  # values in a config, aliases counted each time they are used
MAX_DEPTH = 32  # nesting of mappings and lists


def check_size(config, max_values: int = MAX_VALUES, max_depth: int = MAX_DEPTH) -> None:
    """Raise ``ConfigError`` when ``config`` holds over ``max_values`` values, nests deeper than ``max_depth``
    or holds a number that is not finite (anywhere: ``model.mean: .nan`` too).

    Walks at most ``max_values`` nodes, so a config of nested YAML aliases (exponentially many values) is
    refused at once rather than expanded.
    """
    seen = 0
    stack = [(config, 0, "")]
    while stack:
        node, depth, where = stack.pop()
        seen += 1
        if seen > max_values:
            raise ConfigError(
                f"the config holds over {max_values} values (nested YAML aliases count each time they are used): "
                "write a plain config without aliases"
            )
        if depth > max_depth:
            raise ConfigError(f"the config nests over {max_depth} levels deep: write a flat config")
        if isinstance(node, float) and not math.isfinite(node):  # anywhere: the model block's mean, std ...
            raise ConfigError(f"{where or 'the config'}: {node!r} is not a finite number; give a finite number")
        if isinstance(node, Mapping):
            stack.extend((v, depth + 1, f"{where}.{k}" if where else str(k)) for k, v in node.items())
            stack.extend((k, depth + 1, where) for k in node)
        elif isinstance(node, (list, tuple)):
            stack.extend((v, depth + 1, f"{where}[{i}]") for i, v in enumerate(node))


def _where(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "the config"


def _schema_line(error, schema: dict) -> str:
    """One line for a jsonschema error: the key, what is wrong, the fix."""
    where = _where(error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = list(error.schema.get("properties", {}))
        extra = [k for k in error.instance if k not in allowed]
        key = extra[0] if extra else "?"
        within = f" in {where}" if error.absolute_path else ""
        hint = did_you_mean(str(key), allowed) or f"; valid keys: {', '.join(allowed)}"
        return f"unknown key {one_line(repr(key), 60)}{within}{hint}"
    if error.validator == "enum":
        return (
            f"{where}: {one_line(repr(error.instance), 60)} is not one of {', '.join(map(str, error.validator_value))}"
        )
    if error.validator == "required":
        return f"{where}: {error.message}; add it to the config"
    if error.validator in ("oneOf", "anyOf"):
        about = one_line(error.schema.get("description", ""), 100) or "see config/schema.yaml"
        return f"{where}: {one_line(repr(error.instance), 60)} is not a valid value ({about})"
    return f"{where}: {one_line(error.message, 160)}"


def check_schema(config: dict, schema: dict) -> None:
    """Raise ``ConfigError`` with one line for the first error of ``config`` against ``schema``."""
    import jsonschema

    model = config.get("model")
    if isinstance(model, Mapping):
        from .models.block import model_block

        try:
            model_block(model)
        except UserError as err:  # ModelError: the CLI's own line for an unknown model key
            raise ConfigError(f"model: {err}") from None
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(list(e.absolute_path)), str(e.absolute_path)))
    if errors:
        raise ConfigError(_schema_line(jsonschema.exceptions.best_match(errors), schema))


def _classes_named(config: dict):
    """(config key, class name) of every class the config names: class atlases, comparisons, patches."""
    for i, e in enumerate(config.get("class_atlases") or []):
        yield f"class_atlases[{i}].class", e.get("class")
    for i, e in enumerate(config.get("comparisons") or []):
        for j, name in enumerate(e.get("classes") or []):
            yield f"comparisons[{i}].classes[{j}]", name
    for i, e in enumerate(config.get("patches") or []):
        for key in ("target", "source"):
            if e.get(key) is not None:
                yield f"patches[{i}].{key}", e[key]


def check_names(config: dict) -> None:
    """The names a filled config gives, checked against the model's label space (read as data, no model
    loaded): the model source's kind ("did you mean"), every class name (ambiguous ones refused with
    their choices), ``collect.attr_top`` against the number of classes. ``ConfigError`` in one line."""
    from .models.classes import resolve_class
    from .models.sources import SOURCES, label_space, source_of

    model = config["model"]
    source = str(model.get("source", "") if isinstance(model, Mapping) else model)
    prefix = source.split(":", 1)[0]
    if source_of(source).kind == "factory" and "." not in prefix:  # torchvison:resnet18 reads as a factory
        hint = did_you_mean(prefix, [s.kind for s in SOURCES if s.kind not in ("", "card", "factory", "torchscript")])
        if hint:
            raise ConfigError(f"model source {source!r}: {prefix!r} is no source kind{hint}")
    synsets, categories = label_space(model)
    if not categories:
        return  # names known only once the model is built (a factory's own labels): the stages check them
    for key, name in _classes_named(config):
        try:
            resolve_class(name, categories, synsets)
        except UserError as err:
            raise ConfigError(f"{key}: {err}") from None
    top = config["collect"]["attr_top"]
    if top > len(categories):
        raise ConfigError(
            f"collect.attr_top is {top} but the model has {len(categories)} classes: "
            f"set collect.attr_top to at most {len(categories)}"
        )


def load_schema(path: str | Path) -> dict:
    return yaml.safe_load(Path(path).read_text(encoding="utf-8"))


def check_config(config: dict, schema: dict) -> dict:
    """The config, checked (size, schema, settings) and filled with every default; ``ConfigError`` otherwise."""
    check_size(config)
    check_schema(config, schema)
    return settings.fill(config)
