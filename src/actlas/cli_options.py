"""The options the ``actlas`` commands share, built from the settings and the model block.

- ``options_of(cls)``: one option per field of a settings dataclass, its default from it (a field
  with a fixed set of values is a ``click.Choice``);
- ``model_flags``: ``--model/-m`` and one flag per field of the model block
  (``actlas.models.block.MODEL_FIELDS``); ``model_block_from`` turns them back into a block;
- the short flags every command spells the same: ``-m`` model, ``-l`` layer, ``-n`` grid size,
  ``-d`` device, ``-s`` seed, ``-t`` threads, ``-o`` out;
- ``run_layer`` and ``run_model_block``: what a command acting on a run takes when ``--layer`` or
  ``--model`` is not given (``actlas.runinfo``).

The CLI is the only place that imports click.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Callable

import click

from . import limits, settings
from .errors import ConfigError
from .models.block import ModelDefaultWarning, model_from_flags, model_options

Decorator = Callable[[Callable], Callable]
# the short flags every command spells the same (``options_of`` adds them to settings fields too)
SHORT = {"model": "-m", "layer": "-l", "n": "-n", "device": "-d", "seed": "-s", "threads": "-t", "out": "-o"}

# --------------------------------------------------------------------------- shared options

seed_option = click.option(
    "--seed",
    "-s",
    type=click.IntRange(0, 2**31 - 1),
    default=settings.Run.seed,
    show_default=True,
    help="The run's seed.",
)
device_option = click.option(
    "--device",
    "-d",
    type=click.Choice(settings.DEVICES),
    default=settings.Run.device,
    show_default=True,
    help="Where to compute (auto: cuda when a GPU is available).",
)
threads_option = click.option("--threads", "-t", type=int, default=None, help="Torch CPU threads.")
grid_option = click.option(
    "--n", "-n", "n", default=settings.Grid.sizes[-1], show_default=True, help="Cells per side of the grid."
)
# commands that only read a run: they take no lock
READERS = ("verify", "info")


def hold_run_lock(ctx: click.Context, run_dir) -> None:
    """Take the run's lock for a command that writes it (``actlas.lock.for_command``), given back when it ends;
    under the workflow that holds it, nothing to take."""
    from . import lock

    if run_dir is None or (ctx.command and ctx.command.name in READERS):
        return
    owner = f"actlas {ctx.command.name if ctx.command else ''} (pid {os.getpid()})"
    if lock.for_command(run_dir, owner):
        ctx.call_on_close(lambda: lock.release(run_dir, owner))


def _locked_run(ctx: click.Context, _param, value):
    hold_run_lock(ctx, value)
    return value


run_argument = click.argument("run_dir", type=click.Path(exists=True, file_okay=False), callback=_locked_run)


def layer_option(help: str = "Layer path (named_modules()); default: the run's first layer.") -> Decorator:
    return click.option("--layer", "-l", default=None, help=help)


def out_option(help: str) -> Decorator:
    return click.option("--out", "-o", type=click.Path(), default=None, help=help)


class Number(click.ParamType):
    """An int or float option held to its setting's limits (``settings.check_number``): no inf, nan or absurd sizes."""

    def __init__(self, kind: type, cls, name: str):
        self.kind, self.cls, self.field = kind, cls, name
        self.name = kind.__name__

    def convert(self, value, param, ctx):
        if isinstance(value, self.kind) and not isinstance(value, bool):
            number = value
        else:
            number = (click.INT if self.kind is int else click.FLOAT).convert(value, param, ctx)
        try:
            limits.check_number(self.cls, self.field, number)
        except ConfigError as err:
            self.fail(str(err).split(": ", 1)[-1], param, ctx)
        return number


def number_type(cls, name: str, kind: type):
    """``Number`` for an int or float field of a settings class, else ``kind`` unchanged."""
    known = limits.KNOWN.get((cls, name))
    if known:
        return click.Choice(known)
    return Number(kind, cls, name) if kind in (int, float) else kind


def options_of(cls, *, skip: tuple[str, ...] = (), unset: bool = False, aliases: dict[str, str] | None = None):
    """click options for the fields of a settings dataclass (defaults from it; ``unset``: default None;
    ``aliases``: another spelling of a field's flag, e.g. ``{"patches": "--patch"}``)."""
    aliases = aliases or {}
    fields = [f for f in dataclasses.fields(cls) if f.name not in skip]

    def decorate(f):
        for field in reversed(fields):
            name = field.name
            value = getattr(cls, name)
            default = None if unset else value
            flag = "--" + name.replace("_", "-")
            spellings = (flag, aliases[name]) if name in aliases else (flag,)
            spellings += (SHORT[name],) if name in SHORT else ()
            choices = field.metadata.get("choices")
            if isinstance(value, bool):
                f = click.option(f"{flag}/--no-{flag[2:]}", name, default=default, show_default=not unset)(f)
            elif choices:
                f = click.option(*spellings, name, type=click.Choice(choices), default=default, show_default=not unset)(
                    f
                )
            elif isinstance(value, tuple):
                kind = number_type(cls, name, type(value[0]) if value else str)
                f = click.option(*spellings, name, multiple=True, type=kind, default=default, show_default=not unset)(f)
            else:
                kind = number_type(cls, name, type(value) if value is not None else str)
                f = click.option(*spellings, name, type=kind, default=default, show_default=not unset)(f)
        return f

    return decorate


def render_params(values: dict) -> settings.RenderParams:
    """The render settings among a command's keyword arguments."""
    names = {f.name for f in dataclasses.fields(settings.RenderParams)}
    return settings.RenderParams(**{k: v for k, v in values.items() if k in names})


def class_options(cls) -> Decorator:
    """The options of ``class-atlas`` and ``compare``: the run, its layer and model, the item's settings,
    the render settings, seed, device, threads and the output folder."""

    def decorate(f):
        for option in reversed(
            [
                run_argument,
                layer_option(),
                model_flags(),
                options_of(cls, skip=("cls", "classes", "layer")),
                options_of(settings.RenderParams, skip=("seed",)),
                seed_option,
                device_option,
                click.option(
                    "--threads",
                    "-t",
                    type=int,
                    default=settings.Render.threads,
                    show_default=True,
                    help="Torch CPU threads.",
                ),
                out_option("Output folder (default under RUN/LAYER)."),
            ]
        ):
            f = option(f)
        return f

    return decorate


def render_job_options(f):
    """The options of one render job (``render``, ``align-render``): the model flags, ``--batch``,
    ``--cells-per-job``, the render settings, ``--device`` and ``--threads``."""
    for option in reversed(
        [
            model_flags(),
            click.option("--batch", default=0, show_default=True, help="Which batch of cells."),
            click.option(
                "--cells-per-job",
                default=settings.Render.cells_per_job,
                show_default=True,
                help="Cells per batch (0 = all).",
            ),
            options_of(settings.RenderParams),
            device_option,
            threads_option,
        ]
    ):
        f = option(f)
    return f


def render_settings(options: dict) -> dict:
    """Pop the render settings (``--steps`` ...) from a command's options: ``params`` for its stage."""
    names = {f.name for f in dataclasses.fields(settings.RenderParams)} - {"seed"}
    values = {k: options.pop(k) for k in list(options) if k in names}
    return {"params": render_params({**values, "seed": options["seed"]})}


# --------------------------------------------------------------------------- the model block


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


def model_flags(required: bool = False) -> Decorator:
    """``--model/-m`` (a source string or a JSON block; with ``required`` False, default: the run's model)
    and ``--kwargs``, ``--weights``, ``--input-size``, ``--resize``, ``--crop``, ``--mean``, ``--std``,
    ``--labels``, ``--synsets``, ``--output``, ``--padding``, ``--layer-kinds``, ``--trust-code``,
    ``--allow-pickle``; each defaults to None (not given), so the card's or source's value stands."""
    help = (
        "card .json, torchvision:NAME[:WEIGHTS], timm:NAME, export:PATH.pt2, pkg.mod:fn, "
        "or a JSON model block (docs/models.md)" + ("" if required else "; default: the run's model")
    )

    def decorate(command: Callable) -> Callable:
        command = model_field_flags(command)
        return click.option("--model", "-m", "model_source", required=required, default=None, help=help)(command)

    return decorate


def model_block_from(params: dict, run_dir=None) -> dict:
    """Pop the ``model_*`` parameters ``model_flags`` added from a command's keyword arguments and return
    the model block (``actlas.models.block.model_from_flags``); without ``--model``, the model of
    ``run_dir`` (``actlas.runinfo.run_model``) with the other flags on top."""
    flags = {f.name: params.pop(f"model_{f.name}") for f in model_options() if f"model_{f.name}" in params}
    source = flags.pop("source", None)
    if source is None and run_dir is not None:
        from .runinfo import run_model

        source = run_model(run_dir)
    return model_from_flags(source, **flags)


def run_layer(run_dir, layer: str | None) -> str:
    """``--layer``, or the run's first layer (``actlas.runinfo.run_layers``)."""
    if layer:
        return layer
    from .runinfo import run_layers

    return run_layers(run_dir)[0]


def one_line_warnings() -> None:
    """Show ``ModelDefaultWarning`` as the one line ``warning: MESSAGE`` (no file, line or source);
    other warnings keep Python's format. Call once at CLI start-up."""
    plain = warnings.formatwarning

    def formatwarning(message, category, filename, lineno, line=None):
        if issubclass(category, ModelDefaultWarning):
            return f"warning: {message}\n"
        return plain(message, category, filename, lineno, line)

    warnings.formatwarning = formatwarning
