"""The model block as click flags: ``--model`` plus one flag per field of ``actlas.models.MODEL_FIELDS``.

For ``cli.py``::

    @main.command()
    @model_flags
    def collect(shard, out, layers, ..., **model):
        block = model_block_from(model)     # pops the model flags; pass ``block`` where ``model`` went
"""

from __future__ import annotations

import warnings
from typing import Callable

import click

from .models import ModelDefaultWarning, model_from_flags, model_options


def model_field_flags(command: Callable) -> Callable:
    """The model block's flags without ``--model`` (for a command whose model is an argument)."""
    for field in reversed(model_options()):
        param = f"model_{field.name}"
        if field.name == "source":
            continue
        if field.type == "bool":
            command = click.option(field.flag, param, is_flag=True, default=None, help=field.help)(command)
        else:
            command = click.option(field.flag, param, default=None, help=field.help)(command)
    return command


def model_flags(command: Callable) -> Callable:
    """Add ``--model/-m`` (a source string or a JSON block) and ``--kwargs``, ``--weights``,
    ``--input-size``, ``--resize``, ``--crop``, ``--mean``, ``--std``, ``--labels``, ``--synsets``,
    ``--output``, ``--padding``, ``--layer-kinds``, ``--trust-code``, ``--allow-pickle``; each
    defaults to None (not given), so the card's or source's value stands."""
    command = model_field_flags(command)
    return click.option(
        "--model",
        "-m",
        "model_source",
        required=True,
        help="card .json, torchvision:NAME[:WEIGHTS], timm:NAME, export:PATH.pt2, pkg.mod:fn, "
        "or a JSON model block (docs/models.md)",
    )(command)


def model_block_from(params: dict) -> dict:
    """Pop the ``model_*`` parameters that ``model_flags`` added from a command's keyword arguments
    and return the model block (``actlas.models.model_from_flags``)."""
    flags = {f.name: params.pop(f"model_{f.name}") for f in model_options() if f"model_{f.name}" in params}
    source = flags.pop("source", None)
    return model_from_flags(source, **flags)


def one_line_warnings() -> None:
    """Show ``ModelDefaultWarning`` as the one line ``warning: MESSAGE`` (no file, line or source);
    other warnings keep Python's format. Call once at CLI start-up."""
    plain = warnings.formatwarning

    def formatwarning(message, category, filename, lineno, line=None):
        if issubclass(category, ModelDefaultWarning):
            return f"warning: {message}\n"
        return plain(message, category, filename, lineno, line)

    warnings.formatwarning = formatwarning
