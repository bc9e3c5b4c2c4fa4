import inspect

from click.testing import CliRunner

import actlas
from actlas import cli
from actlas import run as run_mod
from actlas.collect import collect


def test_every_command_mirrors_a_library_function():
    targets = {
        "collect": collect, "layout": run_mod.layout, "grid": run_mod.grid, "render": run_mod.render,
        "atlas": run_mod.atlas, "info": run_mod.info, "shards": run_mod.shards,
    }
    for name, fn in targets.items():
        command = cli.main.commands[name]
        flags = {p.name for p in command.params}
        params = set(inspect.signature(fn).parameters) - {"params", "progress", "cache", "images", "config"}
        missing = {p for p in params if p not in flags and p not in ("run_dir", "shard", "out")}
        assert not missing, f"`actlas {name}` lacks {missing}"
        assert command.help and "Example:" in command.help


def test_public_api_names_the_stages():
    for name in ("collect", "layout", "grid", "render", "atlas", "info", "load_model", "list_layers"):
        assert callable(getattr(actlas, name)), name


def test_wrong_layer_is_one_clear_line(card):
    result = CliRunner().invoke(cli.main, ["layout", ".", "--layer", "x"])
    assert result.exit_code != 0


def test_layers_command_lists_mobilenet(card):
    result = CliRunner().invoke(cli.main, ["layers", card])
    assert result.exit_code == 0
    assert "features.13" in result.output and "96x14x14" in result.output
