import dataclasses
import importlib
import inspect

import numpy as np
import pytest
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
        if "model_source" in flags:  # the model block's flags (actlas.cli_options.model_flags)
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
    for name in ("layout", "grid", "atlas", "collect", "classes"):
        assert importlib.util.find_spec(f"actlas.{name}") is not None and name not in actlas.__all__
    assert callable(actlas.info) and callable(actlas.load_model) and callable(actlas.list_layers)
    assert callable(actlas.load_spec) and callable(actlas.capture) and callable(actlas.get_layer)


def test_a_run_without_its_files_is_one_clear_line(tmp_path):
    result = CliRunner().invoke(cli.main, ["layout", str(tmp_path), "--layer", "x"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert (
        result.output
        == f"Error: {tmp_path}/shards/index.json not found: list the images first (actlas shards, or the workflow)\n"
    )


def test_a_user_error_prints_exactly_its_message(tmp_path):
    """A UserError's message, quotes and all, as one line: ``unknown class ''`` stays as it is."""
    args = ["class-atlas", str(tmp_path), "-m", "tiny_models:tiny_net", "--trust-code", "-l", "features.3"]
    result = CliRunner().invoke(cli.main, [*args, "--class", ""])
    assert result.exit_code == 1 and result.output == "Error: unknown class ''\n", result.output


def test_a_bug_prints_its_traceback_and_says_it_is_a_bug(tmp_path, monkeypatch):
    from actlas.stages import layout

    def broken(*args, **kw):
        return {}["missing key"]

    monkeypatch.setattr(layout, "layout", broken)
    result = CliRunner().invoke(cli.main, ["layout", str(tmp_path), "--layer", "x"])
    assert result.exit_code == 1
    assert "Traceback" in result.output and "KeyError: 'missing key'" in result.output
    assert result.output.rstrip().splitlines()[-1] == f"Error: {cli.BUG}"


def test_a_choice_is_checked_by_the_command_line(tmp_path):
    """``--backend cumll`` fails naming the choices (it does not silently mean auto); so does every choice."""
    result = CliRunner().invoke(cli.main, ["layout", str(tmp_path), "--backend", "cumll"])
    assert result.exit_code == 2 and "'cumll' is not one of 'auto', 'cuml', 'umap-learn'" in result.output
    for cls in (settings.Layout, settings.RenderParams, settings.ClassAtlas, settings.Comparison, settings.Patch):
        for field in dataclasses.fields(cls):
            choices = settings.choices(cls, field.name)
            if choices:
                assert getattr(cls, field.name) in choices, (cls.__name__, field.name)


def _flags(command) -> set[str]:
    return {o for p in command.params for o in (*getattr(p, "opts", ()), *getattr(p, "secondary_opts", ()))}


def test_every_flag_a_help_shows_is_accepted():
    """The options and the example of each command's help name only flags the command takes."""
    import re

    for name, command in cli.main.commands.items():
        text = CliRunner().invoke(cli.main, [name, "--help"]).output
        example = text.split("Example:", 1)[1].split("Options:", 1)[0].split("&&")[0]  # this command's part
        options = text.split("Options:", 1)[1]
        shown = set(re.findall(r"(?<![\w/.-])(--?[a-z][a-z0-9-]*)", example + options)) - {"--help"}
        assert shown <= _flags(command), f"`actlas {name} --help` shows {shown - _flags(command)}"


def test_every_command_spells_the_shared_short_flags_alike():
    short = {
        "layer": "-l",
        "layers": "-l",
        "model_source": "-m",
        "device": "-d",
        "seed": "-s",
        "threads": "-t",
        "out": "-o",
        "n": "-n",
    }
    for name, command in cli.main.commands.items():
        for p in command.params:
            if p.name in short and isinstance(p, __import__("click").Option):
                assert short[p.name] in p.opts, f"`actlas {name} --{p.name}` lacks {short[p.name]}"


def test_a_run_remembers_its_model_and_layer(tmp_path):
    """render, atlas and class-atlas on a run need neither --model nor --layer: before the manifest
    exists from what its shard stores record, then from the manifest."""
    from _tiny_run import make_tiny_run

    run = make_tiny_run(tmp_path, render=False)
    runner = CliRunner()
    fast = ["--size", "16", "--min-positions", "0", "--steps", "1", "--batch-size", "16", "--jitter", "1"]
    result = runner.invoke(cli.main, ["render", str(run), "-n", "3", "--device", "cpu", *fast])
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli.main, ["atlas", str(run), "-n", "3", "--n-examples", "1"])
    assert result.exit_code == 0 and (run / "features.3" / "grid-3" / "atlas.json").exists(), result.output
    result = runner.invoke(
        cli.main, ["manifest", str(run), "--config", '{"layers": ["features.3"], "grid": {"sizes": [3]}}']
    )
    assert result.exit_code == 0, result.output
    from actlas.data.samples import load_samples

    common = str(int(np.bincount(load_samples(run, "features.3").attr_class[:, 0]).argmax()))
    result = runner.invoke(
        cli.main,
        [
            "class-atlas",
            str(run),
            "--class",
            common,
            "--filter",
            "top",
            "--grid",
            "2",
            "--device",
            "cpu",
            "--n-examples",
            "1",
            *fast,
        ],
    )
    assert result.exit_code == 0, result.output
    assert (run / "features.3" / f"class-{common}" / "atlas.json").exists()


@pytest.mark.slow
def test_layers_command_lists_mobilenet(card):
    result = CliRunner().invoke(cli.main, ["layers", card])
    assert result.exit_code == 0
    assert "features.13" in result.output and "96x14x14" in result.output
