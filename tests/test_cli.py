import dataclasses
import importlib
import inspect

from click.testing import CliRunner

import actlas
from actlas import cli, settings

# commands that read a run or a model rather than being a stage of the workflow
READERS = {
    "info": "actlas.stages.manifest:info",
    "verify": "actlas.verify:verify_run",
    "serve": "actlas.serve:serve",
    "export": "actlas.serve:export",
}


def _function(command: str):
    target = READERS.get(command) or f"actlas.stages.{command.replace('-', '_')}:{command.replace('-', '_')}"
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def test_every_command_mirrors_its_stage_function():
    """Each command calls the function of its name; every keyword of it is a flag (or an argument)."""
    for name, command in cli.main.commands.items():
        assert command.help and "Example:" in command.help, name
        if name == "layers":  # reads a model, not a run: its own small command
            continue
        fn = _function(name)
        flags = {p.name for p in command.params}
        if "model_source" in flags:  # the model block's flags (actlas.model_flags)
            flags.add("model")
        params = set(inspect.signature(fn).parameters) - {"progress", "cache", "samples", "extra", "corners"}
        if "params" in params:  # render settings: one flag per RenderParams field
            params = params - {"params"} | {f.name for f in dataclasses.fields(settings.RenderParams)}
        missing = {p for p in params if p not in flags}
        assert not missing, f"`actlas {name}` lacks {missing}"
        assert command.help and "Example:" in command.help, name


def test_cli_defaults_are_the_settings_defaults():
    """One home for defaults: every option named like a settings field defaults to that field."""
    sections = {
        "collect": settings.Collect,
        "layout": settings.Layout,
        "render": settings.RenderParams,
        "atlas": settings.Atlas,
        "class-atlas": settings.ClassAtlas,
        "compare": settings.Comparison,
        "patch": settings.Patch,
    }
    for name, cls in sections.items():
        command = cli.main.commands[name]
        fields = {f.name: getattr(cls, f.name) for f in dataclasses.fields(cls)}
        for p in command.params:
            if p.required:
                continue
            if (
                p.name in fields
                and p.name not in ("seed", "threads", "batch_size")
                or (p.name == "batch_size" and name in ("collect", "render", "patch"))
            ):
                want = fields[p.name]
                got = tuple(p.default) if isinstance(want, tuple) and p.default is not None else p.default
                assert got == want, f"`actlas {name} --{p.name}` defaults to {p.default!r}, settings say {want!r}"


def test_stage_defaults_are_the_settings_defaults():
    from actlas.stages.layout import layout

    for name, value in inspect.signature(layout).parameters.items():
        if name in {f.name for f in dataclasses.fields(settings.Layout)}:
            assert value.default == getattr(settings.Layout, name), name


def test_public_api_names_no_module():
    """`actlas.X` never shadows a module: the stages are `actlas.stages.X.X`."""
    for name in actlas.__all__:
        assert not inspect.ismodule(getattr(actlas, name)), name
    for name in ("layout", "grid", "render", "atlas", "collect"):
        assert importlib.util.find_spec(f"actlas.{name}") is not None and name not in actlas.__all__
    assert callable(actlas.info) and callable(actlas.load_model) and callable(actlas.list_layers)


def test_wrong_layer_is_one_clear_line(card):
    result = CliRunner().invoke(cli.main, ["layout", ".", "--layer", "x"])
    assert result.exit_code != 0 and "Traceback" not in result.output


def test_layers_command_lists_mobilenet(card):
    result = CliRunner().invoke(cli.main, ["layers", card])
    assert result.exit_code == 0
    assert "features.13" in result.output and "96x14x14" in result.output
