"""Hostile input (issue 31): nothing silently wrong, every problem one line naming the cause and the fix.

Numbers: non-finite logits, activations and attributions stop collect naming the output or layer; a
constant layer stops layout and whitening; no artifact holds NaN; numeric settings are finite and bounded
in the config and on the command line. The config: checked at parse time (size, schema, settings).
Tiny real networks (tests/hostile_models.py) on a few real photos.
"""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner
from conftest import ROOT, _photo_folder, one_line

from actlas import limits, settings
from actlas.cli import main as cli
from actlas.configcheck import check_config, check_size, load_schema
from actlas.errors import ConfigError, DataError, LayerError, ModelError, UserError
from actlas.formats.atomic import save_npy, save_npz, write_json

PHOTOS = 6
SCHEMA = load_schema(ROOT / "config" / "schema.yaml")
DEFAULTS = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


def block(how: str, classes: int = 10) -> dict:
    return {
        "source": "hostile_models:broken_net",
        "kwargs": {"how": how, "classes": classes},
        "trust_code": True,
        "input_size": [32, 32],
        "resize": 32,
        "mean": 0.5,
        "std": 0.25,
        "labels": [f"class{i}" for i in range(classes)],
    }


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """A few real photos (symlinks into the shared set)."""
    return _photo_folder(PHOTOS, tmp_path_factory.mktemp("photos"))


def collected(photos, run, how: str, classes: int = 10, attr_top: int = 2):
    from actlas.stages.collect import collect
    from actlas.stages.shards import shards

    (shard,) = shards(str(photos), run, block(how, classes), shard_size=PHOTOS)
    collect(
        shard,
        run / "collect" / "shard-00000.zarr",
        block(how, classes),
        ["probe"],
        positions=3,
        attr_top=attr_top,
        batch_size=PHOTOS,
        workers=0,
        progress=False,
    )
    return run


# --------------------------------------------------------------------------- numbers in collect, layout, whitening


@pytest.mark.parametrize(
    "how, words",
    [
        ("logits", ["model's output", "logits", "model.weights"]),
        ("activation", ["'probe'", "activations"]),
        ("gradient", ["'probe'", "attribution"]),
    ],
)
def test_non_finite_numbers_stop_collect_naming_the_output_or_layer(photos, tmp_path, how, words):
    with pytest.raises(ModelError) as err:
        collected(photos, tmp_path / "run", how)
    one_line(err.value, *words)


def test_a_layer_the_logits_do_not_depend_on_is_refused_in_one_line(photos, tmp_path):
    with pytest.raises(LayerError) as err:
        collected(photos, tmp_path / "run", "unused")
    one_line(err.value, "'probe'", "does not reach")


def test_a_healthy_layer_collects(photos, tmp_path):
    from actlas.data import store

    run = collected(photos, tmp_path / "run", "fine")
    acts = store.read([run / "collect" / "shard-00000.zarr"], "probe/activation")
    assert np.isfinite(acts).all() and acts.std() > 0


def test_a_constant_layer_stops_layout_and_whitening(photos, tmp_path):
    from actlas.stages.layout import layout
    from actlas.stages.whitening import whitening

    run = collected(photos, tmp_path / "run", "constant")
    with pytest.raises(LayerError) as err:
        layout(run, "probe", n_neighbors=4, backend="umap-learn")
    one_line(err.value, "'probe'", "constant", "another layer")
    with pytest.raises(LayerError) as err:
        whitening(run, "probe")
    one_line(err.value, "'probe'", "constant")
    assert not (run / "probe").exists() or not any((run / "probe").iterdir())


def test_the_spread_check_passes_real_variation_and_refuses_a_constant():
    from actlas.layout import check_spread

    rng = np.random.default_rng(0)
    x = np.abs(rng.normal(size=(100, 8)))
    check_spread(x.mean(0), float(x.var(0).sum()))
    y = 5 + 1e-6 * x
    with pytest.raises(LayerError):
        check_spread(y.mean(0), float(y.var(0).sum()))


# --------------------------------------------------------------------------- no artifact holds NaN


def test_json_refuses_nan_naming_the_key(tmp_path):
    path = tmp_path / "a.json"
    with pytest.raises(DataError) as err:
        write_json(path, {"cells": [{"faithfulness": 0.5}, {"faithfulness": np.float32("nan")}]})
    one_line(err.value, "cells[1].faithfulness", "a.json")
    with pytest.raises(DataError):
        write_json(path, {"x": [math.inf]})
    assert not path.exists()
    write_json(path, {"x": [1.5]})
    assert json.loads(path.read_text()) == {"x": [1.5]}


def test_arrays_with_nan_are_refused(tmp_path):
    with pytest.raises(DataError) as err:
        save_npy(tmp_path / "whiten.npy", np.array([[1.0, np.nan]], dtype=np.float32))
    one_line(err.value, "whiten.npy")
    with pytest.raises(DataError):
        save_npz(tmp_path / "cells.npz", direction=np.array([np.inf]))
    assert not list(tmp_path.iterdir())
    save_npz(tmp_path / "b.npz", allow_nonfinite=("objective",), objective=np.array([np.nan]), icon=np.zeros(2))


# --------------------------------------------------------------------------- numeric settings


def config_with(**over) -> dict:
    cfg = json.loads(json.dumps(DEFAULTS))
    for section, values in over.items():
        cfg[section] = {**cfg[section], **values} if isinstance(values, dict) else values
    return cfg


@pytest.mark.parametrize(
    "over, words",
    [
        ({"layout": {"whitening_eps": math.inf}}, ["layout.whitening_eps", "finite"]),
        ({"layout": {"min_dist": math.nan}}, ["layout.min_dist", "finite"]),
        ({"render": {"lr": math.inf}}, ["render.lr"]),
        ({"render": {"lr": 1e30}}, ["render.lr", "at most"]),
        ({"render": {"batch_size": 10**9}}, ["render.batch_size", "at most"]),
        ({"collect": {"batch_size": 10**9}}, ["collect.batch_size"]),
        ({"patches": [{"target": "a", "sizes": [math.nan]}]}, ["patches[0].sizes[0]"]),
        ({"seed": -1}, ["seed"]),
    ],
)
def test_numeric_settings_are_finite_and_bounded_at_parse_time(over, words):
    with pytest.raises(ConfigError) as err:
        check_config(config_with(**over), SCHEMA)
    one_line(err.value, *words)


@pytest.mark.parametrize(
    "args, flag",
    [
        (["whitening", ".", "--whitening-eps", "inf"], "--whitening-eps"),
        (["layout", ".", "--min-dist", "nan"], "--min-dist"),
        (["render", ".", "--lr", "1e30"], "--lr"),
        (["render", ".", "--batch-size", "1000000"], "--batch-size"),
    ],
)
def test_numeric_options_are_finite_and_bounded_on_the_command_line(args, flag):
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2 and flag in result.output and "Traceback" not in result.output, result.output


def test_defaults_are_within_their_limits():
    check_config(config_with(), SCHEMA)
    for cls in (*settings.SECTIONS.values(), *settings.ITEMS.values(), settings.Run):
        limits.check_numbers(cls() if cls not in settings.ITEMS.values() else cls())


# --------------------------------------------------------------------------- the config at parse time


def test_nested_aliases_are_refused_fast():
    text = "a0: &a0 [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 12)
    )
    bomb = yaml.safe_load(text)
    start = time.perf_counter()
    with pytest.raises(ConfigError) as err:
        check_config({**config_with(), "bomb": bomb["a11"]}, SCHEMA)
    assert time.perf_counter() - start < 2
    one_line(err.value, "aliases")
    with pytest.raises(ConfigError):
        check_size({"a": [[[[[[1]]]]]]}, max_depth=4)


@pytest.mark.parametrize(
    "over, words",
    [
        ({"modle": "x"}, ["'modle'", "did you mean 'model'"]),
        ({"model": {"sorce": "x"}}, ["'sorce'", "did you mean 'source'"]),
        ({"layout": {"min_dst": 0.1}}, ["'min_dst'", "layout", "did you mean 'min_dist'"]),
        ({"render": {"steps": "many"}}, ["render.steps", "'many' is not of type 'integer'"]),
        ({"device": "gpu"}, ["device", "auto"]),
        ({"layers": "x" * 10_000}, ["layers"]),
    ],
)
def test_config_errors_are_one_line(over, words):
    cfg = config_with()
    cfg.update(over)
    with pytest.raises(UserError) as err:
        check_config(cfg, SCHEMA)
    assert len(one_line(err.value, *words)) < 400


def test_the_workflow_refuses_a_bad_config_in_one_line_before_any_job(tmp_path):
    from conftest import snakemake

    work = tmp_path / "w"
    work.mkdir()
    (work / "config.yaml").write_text(f"run_dir: {tmp_path / 'run'}\nrender: {{lr: .inf}}\n")
    out = snakemake(work, "-n", check=False)
    assert out.returncode != 0
    lines = [line for line in out.stderr.splitlines() if line.startswith("Error")]
    assert len(lines) == 1 and lines[0].startswith("Error: render.lr: inf is not a finite number"), out.stderr[-2000:]
    assert "Traceback" not in out.stderr and not (tmp_path / "run").exists()


def test_attr_top_over_the_number_of_classes_is_one_line(photos, tmp_path):
    with pytest.raises(ConfigError) as err:
        collected(photos, tmp_path / "run", "fine", classes=2, attr_top=5)
    one_line(err.value, "collect.attr_top", "2 classes")


# --------------------------------------------------------------------------- names checked before any job


def card_labels():
    from conftest import CARD

    from actlas.models.sources import label_space

    if not CARD.exists():
        pytest.skip("shared assets not found")
    return label_space(str(CARD))


def test_ambiguous_class_names_are_refused_with_their_choices():
    from actlas.models.classes import resolve_class

    synsets, categories = card_labels()
    with pytest.raises(ModelError) as err:
        resolve_class("crane", categories, synsets)
    one_line(err.value, "ambiguous", "'crane (134)'", "'crane (517)'")
    assert resolve_class("crane (517)", categories, synsets) == 517
    assert resolve_class("Crane (134)", categories, synsets) == 134
    assert resolve_class("tench", categories, synsets) == 0
    with pytest.raises(ModelError) as err:
        resolve_class("crane (3)", categories, synsets)
    one_line(err.value, "'crane (517)'")


@pytest.mark.parametrize(
    "over, words",
    [
        ({"class_atlases": [{"class": "crane"}]}, ["class_atlases[0].class", "'crane (517)'"]),
        (
            {"comparisons": [{"classes": ["tench", "goldfsh"]}]},
            ["comparisons[0].classes[1]", "did you mean 'goldfish'"],
        ),
        ({"patches": [{"target": "maillot"}]}, ["patches[0].target", "ambiguous"]),
        ({"model": "torchvison:resnet18"}, ["did you mean 'torchvision'"]),
        ({"model": {"source": "tiny_models:tiny_net", "labels": ["a", "b"]}}, ["collect.attr_top", "2 classes"]),
        ({"layout": {"metric": "cosin"}}, ["layout.metric", "did you mean 'cosine'"]),
    ],
)
def test_names_in_the_config_are_checked_at_parse_time(over, words):
    from actlas.configcheck import check_names

    card_labels()
    cfg = config_with()
    cfg.update(over)
    with pytest.raises(ConfigError) as err:
        check_names(check_config(cfg, SCHEMA))
    one_line(err.value, *words)


def test_qualified_and_plain_class_names_pass_parse_time():
    from actlas.configcheck import check_names

    card_labels()
    cfg = config_with()
    cfg.update(class_atlases=[{"class": "crane (517)"}], comparisons=[{"classes": ["tench", "n01443537"]}])
    check_names(check_config(cfg, SCHEMA))


def test_a_patch_name_that_leaves_the_run_is_refused():
    from actlas import paths

    result = CliRunner().invoke(cli, ["patch", ".", "-m", "x", "-l", "a", "--target", "1", "--name", "../../x"])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert "'../../x'" in result.output and len(result.output.strip().splitlines()) == 1
    for bad in ("../x", "a/b", "..", ""):
        with pytest.raises(ConfigError):
            paths.patch_dir("run", bad)
        with pytest.raises(ConfigError):
            paths.layer_dir("run", bad)


def test_the_cli_keeps_quotes_in_messages():
    result = CliRunner().invoke(cli, ["patch", ".", "-m", "x", "-l", "a", "--target", "1", "--name", ""])
    assert result.output.startswith("Error: patch name '' may hold"), result.output


def test_a_port_out_of_range_is_refused_by_the_option():
    result = CliRunner().invoke(cli, ["serve", ".", "--port", "99999"])
    assert result.exit_code == 2 and "--port" in result.output and "Traceback" not in result.output, result.output


def test_list_file_labels_out_of_range_are_one_line(tmp_path):
    from actlas.data.images import list_images

    photo = next(p for d in sorted(_photo_folder(1, tmp_path / "p").iterdir()) for p in d.iterdir())
    for label in (40000, 10, -5):
        (tmp_path / "list.txt").write_text(f"{photo}\t{label}\n")
        with pytest.raises(DataError) as err:
            list_images(tmp_path / "list.txt", (), tuple(f"c{i}" for i in range(10)) if label != 40000 else ())
        one_line(err.value, f"label {label}", "list.txt:1")
    (tmp_path / "list.txt").write_text(f"{photo}\t9\n")
    assert list_images(tmp_path / "list.txt", (), tuple(f"c{i}" for i in range(10)))[0][1] == 9


@pytest.mark.parametrize(
    "source, kwargs, words",
    [
        ("builtins:input", {}, ["builtins:input", "EOFError"]),
        ("hostile_models:broken_net", {"colour": 1}, ["hostile_models:broken_net", "TypeError", "colour"]),
    ],
)
def test_a_failing_or_waiting_factory_is_one_line(source, kwargs, words):
    from actlas.models.load import load_model

    with pytest.raises(ModelError) as err:
        load_model({"source": source, "kwargs": kwargs, "trust_code": True})
    one_line(err.value, *words)


def test_a_non_finite_number_anywhere_in_the_config_is_refused():
    cfg = config_with()
    cfg["model"] = {"source": "tiny_models:tiny_net", "mean": [0.5, math.nan, 0.5]}
    with pytest.raises(ConfigError) as err:
        check_config(cfg, SCHEMA)
    one_line(err.value, "model.mean[1]", "finite")


def test_a_bad_image_set_fails_the_workflow_at_parse_time_in_one_line(tmp_path):
    from conftest import snakemake

    work = tmp_path / "w"
    work.mkdir()
    (tmp_path / "list.txt").write_text("a.jpg\t40000\n")
    (work / "config.yaml").write_text(f"run_dir: {tmp_path / 'run'}\nimages: [{tmp_path / 'list.txt'}]\n")
    out = snakemake(work, "-n", check=False)
    lines = [line for line in out.stderr.splitlines() if line.startswith("Error")]
    assert out.returncode != 0 and len(lines) == 1 and "label 40000" in lines[0], out.stderr[-2000:]
    assert "Traceback" not in out.stderr and 'File "' not in out.stderr


def test_a_patch_with_no_photo_to_measure_is_one_line(tiny_model):
    from actlas.models.spec import ModelSpec
    from actlas.patches.experiment import class_probs
    from actlas.patches.photos import run_photos

    rows = [("/nowhere/a.jpg", 3), ("/nowhere/b.jpg", 3)]  # every photo of the target, none of the source
    with pytest.raises(DataError) as err:
        run_photos(rows, ModelSpec("tiny", "tiny"), 1, 3, np.zeros(2, bool), max_images=4, seed=0)
    one_line(err.value, "no photo", "source")
    probs, top = class_probs(tiny_model, ModelSpec("tiny", "tiny"), torch.zeros(0, 3, 32, 32), [1, 3])
    assert probs.shape == (0, 2) and top.shape == (0,)


def test_an_image_folder_named_by_an_ambiguous_class_is_refused():
    from actlas.models.classes import folder_label

    synsets, categories = card_labels()
    with pytest.raises(ModelError) as err:
        folder_label("crane", categories, synsets)
    one_line(err.value, "'crane (517)'", "synset")
    assert folder_label("crane (517)", categories, synsets) == 517
    assert (
        folder_label("n01440764", categories, synsets) == 0 and folder_label("holiday (2)", categories, synsets) == -1
    )


def test_a_negative_seed_is_refused_by_the_option():
    result = CliRunner().invoke(cli, ["layout", ".", "--seed", "-1"])
    assert result.exit_code == 2 and "--seed" in result.output and "Traceback" not in result.output, result.output
