"""The model zoo: the architectures researchers study, each through every stage, with random weights.

Each entry is built with seeded random weights and its real preprocessing metadata, without a
download (``zoo_models``): torchvision and timm models through their own sources (``torchvision:NAME``,
``timm:NAME``) with the random weights saved to a file, Hugging Face models through factories in
``zoo_models`` (``trust_code``, granted here explicitly). For each: ``actlas layers`` (the CLI), then
collect on 4 real ImageNet photos at one layer of every kind the model has (map, channels-last map,
tokens, CLS, pooled), and a render of a 2 x 2 grid's icons (a few steps: this is plumbing) and its atlas
at one layer, through the stage functions.

Tests of what does not work yet are ``xfail(strict=True)`` with the reason: they flip when it is fixed.
Only the stable surface is used: the ``actlas`` CLI, ``actlas.load_model`` / ``list_layers`` and the
stage functions ``actlas.stages.<name>.<name>``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
import zoo_models

from actlas.errors import UserError

pytest.importorskip("timm")
pytest.importorskip("transformers")

pytestmark = pytest.mark.slow  # real photos, real architectures

ROOT = Path(__file__).resolve().parents[1]
VAL = zoo_models.ASSETS / "images" / "imagenet-val"
PHOTOS = 4
POSITIONS = 2  # per photo at a layer of more than one position
TV, TIMM, HF = "torchvision", "timm", "hf"
USER_ERRORS = (UserError, ValueError, KeyError)  # ModelError (a ValueError) and LayerError (a KeyError) too


@dataclass(frozen=True)
class Entry:
    """One architecture: where it comes from, the layer read for each kind, and the layer rendered."""

    id: str
    lib: str  # torchvision, timm or hf
    name: str  # builder name (torchvision, timm) or zoo_models factory (hf)
    layers: tuple[tuple[str, str], ...]  # (layer, kind it must have), one per kind the model has
    render: str  # the layer whose 2 x 2 grid is rendered and composed into an atlas
    kwargs: dict = field(default_factory=dict)
    block: dict = field(default_factory=dict)  # more model-block fields (layer_kinds, output, ...)
    prefix: int | None = None  # leading non-patch tokens of the token layers (CLS, distillation, registers)
    fixed: bool = False  # the network takes only its input size: icons are rendered at it
    labelled: bool = True  # the photos' ImageNet folders map to class indices


ZOO = (
    # torchvision, at full size (no tiny configurations), weights random
    Entry(
        "tv-googlenet",
        TV,
        "googlenet",
        (("inception4c", "map"), ("inception5b", "map"), ("dropout", "pooled")),
        "inception4c",
        kwargs={"aux_logits": False, "transform_input": True, "init_weights": False},
    ),
    Entry("tv-resnet50", TV, "resnet50", (("layer3", "map"), ("fc", "pooled")), "layer3"),
    Entry(
        "tv-convnext_tiny",
        TV,
        "convnext_tiny",
        (("features.5", "map"), ("features.5.0.block.2", "channels_last"), ("classifier.1", "pooled")),
        "features.5.0.block.2",
    ),
    Entry(
        "tv-efficientnet_b0", TV, "efficientnet_b0", (("features.6", "map"), ("classifier.0", "pooled")), "features.6"
    ),
    Entry(
        "tv-vit_b_16",
        TV,
        "vit_b_16",
        (
            ("conv_proj", "map"),
            ("encoder.layers.encoder_layer_2", "tokens"),
            ("encoder.ln", "cls"),
            ("heads.head", "pooled"),
        ),
        "encoder.layers.encoder_layer_2",
        block={"layer_kinds": {"encoder.ln": "cls"}},
        prefix=1,
        fixed=True,
    ),
    Entry(
        "tv-swin_t",
        TV,
        "swin_t",
        (("features.3", "channels_last"), ("permute", "map"), ("flatten", "pooled")),
        "features.3",
    ),
    Entry(
        "tv-regnet_y_400mf",
        TV,
        "regnet_y_400mf",
        (("trunk_output.block3", "map"), ("fc", "pooled")),
        "trunk_output.block3",
    ),
    # timm: its test_* models, or a real architecture made small through its kwargs
    Entry(
        "timm-test_vit",
        TIMM,
        "test_vit",
        (("patch_embed", "channels_last"), ("blocks.2", "tokens"), ("norm", "cls"), ("fc_norm", "pooled")),
        "blocks.2",
        block={"layer_kinds": {"norm": "cls"}},
        prefix=1,
    ),  # dynamic_img_size in its config
    Entry(
        "timm-deit_tiny_distilled",
        TIMM,
        "deit_tiny_distilled_patch16_224",
        (("blocks.0", "tokens"), ("norm", "cls"), ("head", "pooled")),  # head_drop runs twice: refused (below)
        "blocks.0",
        kwargs={"depth": 2},
        block={"layer_kinds": {"norm": "cls"}},
        prefix=2,
        fixed=True,
    ),  # CLS + distillation
    Entry(
        "timm-test_convnext",
        TIMM,
        "test_convnext",
        (("stages.2", "map"), ("stages.2.blocks.0.norm", "channels_last"), ("head.flatten", "pooled")),
        "stages.2.blocks.0.norm",
    ),
    Entry(
        "timm-test_efficientnet",
        TIMM,
        "test_efficientnet",
        (("blocks.3", "map"), ("global_pool", "pooled")),
        "blocks.3",
    ),
    Entry(
        "timm-vit_reg4",
        TIMM,
        "vit_betwixt_patch16_reg4_gap_256",
        (("blocks.1", "tokens"), ("fc_norm", "pooled")),
        "blocks.1",
        kwargs={"depth": 2, "embed_dim": 64, "num_heads": 2},
        prefix=4,
        fixed=True,
    ),  # 4 registers, no CLS
    # Hugging Face transformers: tiny configs; the encoders have no classifier: head: none (no attribution; the
    # probe and text_embeddings heads: tests/test_heads.py)
    Entry(
        "hf-vit",
        HF,
        "hf_vit",
        (("vit.layers.0", "tokens"), ("vit.layernorm", "cls"), ("classifier", "pooled")),
        "vit.layers.0",
        block={"layer_kinds": {"vit.layernorm": "cls"}, "output": "logits"},
        prefix=1,
        fixed=True,
        labelled=False,
    ),
    Entry(
        "hf-dinov2",
        HF,
        "hf_dinov2",
        (("encoder.layer.0", "tokens"), ("layernorm", "cls")),
        "encoder.layer.0",
        block={"layer_kinds": {"layernorm": "cls"}, "head": "none"},
        prefix=1,
        labelled=False,
    ),
    Entry(
        "hf-clip_vision",
        HF,
        "hf_clip_vision",
        (("encoder.layers.0", "tokens"), ("pre_layrnorm", "cls"), ("post_layernorm", "pooled")),
        "encoder.layers.0",
        block={"layer_kinds": {"pre_layrnorm": "cls"}, "head": "none"},
        prefix=1,
        fixed=True,
        labelled=False,
    ),
)
BY_ID = {e.id: e for e in ZOO}
HF_FAMILY = {"hf_vit": ("vit", 128), "hf_dinov2": ("dinov2", 56), "hf_clip_vision": ("clip", 128)}


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """4 real ImageNet photos of 4 classes, in their WordNet-id folders (symlinks into the shared set)."""
    if not VAL.exists():
        pytest.skip(f"shared photos not found at {VAL}")
    base = tmp_path_factory.mktemp("zoo-photos")
    classes = sorted(VAL.iterdir())
    for d in classes[:: len(classes) // PHOTOS][:PHOTOS]:
        f = min(d.iterdir())
        (base / d.name).mkdir()
        (base / d.name / f.name).symlink_to(f)
    return base


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("zoo-weights")


def model_block(entry: Entry, weights_dir: Path) -> dict:
    """The entry's model block: random weights (seeded, from a file, or built by a trusted factory) and
    its real preprocessing."""
    if entry.lib == HF:
        family, size = HF_FAMILY[entry.name]
        return {
            "source": f"zoo_models:{entry.name}",
            "trust_code": True,
            **zoo_models.hf_preprocessing(family, size),
            **entry.block,
        }
    path = weights_dir / f"{entry.id}.safetensors"
    if entry.lib == TV:
        if not path.exists():
            zoo_models.save_weights(zoo_models.torchvision_random(entry.name, **entry.kwargs), path)
        block = {"source": f"torchvision:{entry.name}", **zoo_models.torchvision_preprocessing(entry.name)}
    else:  # timm gives its preprocessing and ImageNet class names itself; the synsets are declared (see below)
        if not path.exists():
            zoo_models.save_weights(zoo_models.timm_random(entry.name, **entry.kwargs), path)
        block = {"source": f"timm:{entry.name}", "synsets": str(zoo_models.SYNSETS)}
    if entry.kwargs:
        block["kwargs"] = dict(entry.kwargs)
    return {**block, "weights": str(path), **entry.block}


def cli(*args: str):
    """``actlas ARGS`` in this process (click's runner); returns the result."""
    from click.testing import CliRunner

    from actlas.cli import main

    return CliRunner().invoke(main, list(args))


def list_layers_cli(block: dict) -> dict[str, dict]:
    result = cli("layers", json.dumps(block), "--json")
    assert result.exit_code == 0, result.output
    return {row["layer"]: row for row in json.loads(result.stdout)}


_RUNS: dict[str, Path] = {}


def collected_run(entry: Entry, block: dict, photos: Path, tmp_path_factory) -> Path:
    """A run directory with the entry's layers collected on the photos and its render layer laid out and
    gridded (2 x 2); built once per entry."""
    if entry.id in _RUNS:
        return _RUNS[entry.id]
    from actlas.stages.collect import collect
    from actlas.stages.grid import grid
    from actlas.stages.layout import layout
    from actlas.stages.shards import shards
    from actlas.stages.whitening import whitening

    run = tmp_path_factory.mktemp(f"zoo-{entry.id}")
    (shard,) = shards(str(photos), run, block, shard_size=PHOTOS)
    rows = [json.loads(line) for line in shard.read_text().splitlines()]
    labelled = sum(r["label"] >= 0 for r in rows)
    assert labelled == (PHOTOS if entry.labelled else 0), rows
    layers = [layer for layer, _ in entry.layers]
    summary = collect(
        shard,
        run / "collect" / f"{shard.stem}.zarr",
        block,
        layers,
        positions=POSITIONS,
        attr_top=2,
        batch_size=PHOTOS,
        workers=0,
        progress=False,
        device="cpu",
    )
    assert summary["images"] == PHOTOS and summary["skipped"] == 0, summary
    for layer, kind in entry.layers:
        one = kind in ("cls", "pooled")
        assert summary["rows"][layer] == PHOTOS * (1 if one else POSITIONS), (layer, summary)
    import zarr

    store = zarr.open_group(str(run / "collect" / f"{shard.stem}.zarr"), mode="r")
    for layer, _ in entry.layers:
        values = np.asarray(store[f"{layer}/attr_value"])
        acts = np.asarray(store[f"{layer}/activation"]).astype(np.float32)
        assert np.isfinite(values).all() and np.isfinite(acts).all(), layer
        assert np.abs(acts).sum() > 0, layer
        if entry.block.get("head") == "none":  # an encoder without a class head: no attribution
            assert (values == 0).all() and (np.asarray(store[f"{layer}/attr_class"]) == -1).all(), layer
        else:
            assert np.abs(values).sum() > 0, layer  # logits that depend on the activations
    layout(run, entry.render, n_neighbors=4, backend="umap-learn")
    whitening(run, entry.render)
    grid(run, entry.render, 2, min_count=1)
    _RUNS[entry.id] = run
    return run


def input_side(block: dict) -> int:
    from actlas import load_model

    return block["input_size"][0] if "input_size" in block else load_model(block)[1].input_size[0]  # timm: its config


def render_params(entry: Entry, block: dict, **over):
    """Plumbing settings: 2 steps, one batch; 64 px icons, or the input size where the network takes no other
    (what docs/models.md tells a user to set)."""
    from actlas.settings import RenderParams

    size = input_side(block) if entry.fixed else 64
    return RenderParams(**{"size": size, "min_positions": 0, "steps": 2, "batch_size": 4, "check_every": 0, **over})


# --------------------------------------------------------------------------- the zoo


@pytest.mark.parametrize("entry", ZOO, ids=lambda e: e.id)
def test_zoo_layers_collect_render_atlas(entry, photos, weights_dir, tmp_path_factory):
    from actlas.stages.atlas import atlas
    from actlas.stages.render import render

    block = model_block(entry, weights_dir)
    rows = list_layers_cli(block)
    for layer, kind in entry.layers:
        assert rows[layer]["kind"] == kind, rows[layer]
        if kind == "tokens":
            assert rows[layer]["prefix"] == entry.prefix, rows[layer]
    run = collected_run(entry, block, photos, tmp_path_factory)

    params = render_params(entry, block)
    cells = np.load(run / entry.render / "grid-2" / "cells.npz")["count"].size
    out = render(run, entry.render, 2, block, cells_per_job=0, params=params, device="cpu", progress=False)
    side = min(params.size, input_side(block))  # an icon is never larger than the input
    with np.load(out) as f:
        assert f["icon"].shape == (cells, side, side, 3)
        assert np.isfinite(f["faithfulness"]).all()
        assert f["icon"].std() > 0  # an image, not a blank
    atlas(run, entry.render, 2, block, cells_per_job=0, n_examples=1)
    record = json.loads((run / entry.render / "grid-2" / "atlas.json").read_text())
    assert len(record["cells"]) == cells and (run / entry.render / "grid-2" / "atlas.png").exists()


# --------------------------------------------------------------------------- what a new user meets (issue 29)
#
# Each test states the behaviour wanted; where today's behaviour is seen instead, it raises ``Today`` with what
# the user gets, and the xfail expects exactly that (raises=Today): any other failure, in the test or its
# fixtures, is a real failure.


class Today(Exception):
    """What a new user meets today instead of the behaviour a test asks for."""


OFFLINE = {"https_proxy": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "HF_HUB_OFFLINE": "1"}


@pytest.fixture
def offline(monkeypatch, tmp_path) -> Path:
    """No network (every HTTPS request goes to a closed local port) and an empty torch cache: ``TORCH_HOME``."""
    for key, value in OFFLINE.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch"


def one_line_error(result) -> str:
    """The CLI's error: exit code 1 and one line on stderr, ``Error: ...``, no traceback."""
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


@pytest.mark.parametrize("source", ["torchvision:resnet18", "timm:test_vit"])
def test_a_source_without_weights_is_refused_unless_random_weights_are_asked_for(source):
    result = cli("layers", source)
    if result.exit_code == 0:
        raise Today(f"exit 0; stderr: {result.stderr.strip()!r}")
    assert "random" in one_line_error(result)


@pytest.mark.parametrize("source", ["torchvision:resnet18", "timm:test_vit"])
def test_random_weights_are_asked_for_and_seeded(source):
    """Random weights must be one network in every stage: today two loads of a source without weights differ."""
    from actlas import load_model

    x = torch.rand(1, 3, 64, 64)
    a, _ = load_model({"source": source, "weights": "random"})
    b, _ = load_model({"source": source, "weights": "random"})
    torch.testing.assert_close(a(x), b(x))


def test_weights_in_the_torch_cache_load_offline(offline):
    """Where ``torchvision:NAME:WEIGHTS`` looks before it downloads: ``$TORCH_HOME/hub/checkpoints/<the URL's file>``.
    A file put there loads with no network, and preprocessing and class names come from the weights enum."""
    import torchvision

    from actlas import load_model

    weights = torchvision.models.ResNet18_Weights.DEFAULT
    path = offline / "hub" / "checkpoints" / weights.url.rsplit("/", 1)[1]
    path.parent.mkdir(parents=True)
    torch.save(zoo_models.seeded(torchvision.models.resnet18).state_dict(), path)
    model, spec = load_model("torchvision:resnet18:DEFAULT")
    assert spec.input_size == (224, 224) and spec.resize == 256 and len(spec.categories) == 1000
    assert spec.defaulted == ()
    x = torch.rand(1, 3, 64, 64)
    torch.testing.assert_close(model(x), zoo_models.seeded(torchvision.models.resnet18)(x))


def error_lines(result) -> list[str]:
    """The lines the CLI printed on stderr for a failed command (warnings left out)."""
    assert result.exit_code != 0, result.output
    return [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("warning:")]


def test_an_offline_download_fails_in_one_line_naming_the_file_and_where_to_put_it(offline):
    lines = error_lines(cli("layers", "torchvision:resnet18:DEFAULT"))
    if len(lines) != 1 or "resnet18-f37072fd.pth" not in lines[0]:
        raise Today(f"{len(lines)} lines: {lines[-1]}")
    assert lines[0].startswith("Error: ") and str(offline / "hub" / "checkpoints") in lines[0]


def test_a_bad_weights_name_lists_the_valid_ones(offline):
    lines = error_lines(cli("layers", "torchvision:resnet18:BOGUS"))
    if len(lines) != 1 or "IMAGENET1K_V1" not in lines[0]:
        raise Today(f"{len(lines)} lines: {lines[-1]}")
    assert lines[0].startswith("Error: ") and "DEFAULT" in lines[0]


@pytest.mark.parametrize("source", ["timm:test_vit", "torchvision:resnet18:DEFAULT"])
def test_imagenet_folders_are_labelled_for_sources_with_imagenet_classes(source, photos, tmp_path, offline):
    from actlas.stages.shards import shards

    (shard,) = shards(str(photos), tmp_path / "run", source, shard_size=PHOTOS)  # reads metadata: no weights needed
    labels = [json.loads(line)["label"] for line in shard.read_text().splitlines()]
    if min(labels) < 0:
        raise Today(f"labels {labels}")


FIXED = [e for e in ZOO if e.fixed]


@pytest.fixture
def fixed_run(request, photos, weights_dir, tmp_path_factory):
    """(entry, block, run) of a fixed-size entry, collected and gridded."""
    entry = request.param
    block = model_block(entry, weights_dir)
    return entry, block, collected_run(entry, block, photos, tmp_path_factory)


@pytest.mark.parametrize("fixed_run", FIXED, ids=lambda e: e.id, indirect=True)
def test_fixed_size_networks_get_icons_of_their_input_size(fixed_run):
    from actlas.settings import RenderParams
    from actlas.stages.render import render

    entry, block, run = fixed_run
    params = RenderParams(steps=2, batch_size=4)
    assert params.size < input_side(block)  # smaller icons than the input: what fails today
    try:
        out = render(run, entry.render, 2, block, cells_per_job=0, params=params, device="cpu", progress=False)
    except (AssertionError, ValueError, RuntimeError) as err:
        raise Today(f"{type(err).__name__}: {err}") from err
    with np.load(out) as f:
        assert f["icon"].shape[1] == input_side(block)


def test_an_export_program_gets_icons_of_its_input_size(photos, tmp_path):
    from tiny_models import TinyNet

    from actlas.settings import RenderParams
    from actlas.stages.collect import collect
    from actlas.stages.grid import grid
    from actlas.stages.layout import layout
    from actlas.stages.render import render
    from actlas.stages.shards import shards
    from actlas.stages.whitening import whitening

    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(TinyNet().eval(), (torch.zeros(2, 3, 224, 224),), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(tmp_path / "tiny.pt2"))
    block = {
        "source": f"export:{tmp_path / 'tiny.pt2'}",
        "input_size": [224, 224],
        "resize": 256,
        "mean": 0.5,
        "std": 0.5,
        "labels": [str(i) for i in range(10)],
    }
    run = tmp_path / "run"
    (shard,) = shards(str(photos), run, block, shard_size=PHOTOS)
    collect(
        shard,
        run / "collect" / "shard-00000.zarr",
        block,
        ["features.3"],
        positions=POSITIONS,
        attr_top=2,
        batch_size=PHOTOS,
        workers=0,
        progress=False,
    )
    layout(run, "features.3", n_neighbors=4, backend="umap-learn")
    whitening(run, "features.3")
    grid(run, "features.3", 2, min_count=1)
    try:
        out = render(
            run, "features.3", 2, block, cells_per_job=0, params=RenderParams(steps=2, batch_size=4), progress=False
        )
    except RuntimeError as err:
        raise Today(str(err)) from err
    with np.load(out) as f:
        assert f["icon"].shape[1] == 224


def test_timm_img_size_kwarg_sets_the_input_size():
    block = {
        "source": "timm:vit_small_patch14_reg4_dinov2",
        "weights": "random",
        "kwargs": {"depth": 1, "embed_dim": 32, "num_heads": 2, "img_size": 98},
    }
    result = cli("layers", json.dumps(block), "--json")
    if result.exit_code != 0:
        raise Today(f"{type(result.exception).__name__}: {result.exception}")
    rows = {row["layer"]: row for row in json.loads(result.stdout)}
    assert rows["blocks.0"]["grid"] == [7, 7] and rows["blocks.0"]["prefix"] == 5  # CLS + 4 registers


ENCODER = {"source": "zoo_models:hf_dinov2", "trust_code": True, **zoo_models.hf_preprocessing("dinov2", 56)}


def test_an_encoder_without_logits_lists_its_layers():
    result = cli("layers", json.dumps(ENCODER), "--json")
    if result.exit_code != 0:
        raise Today(result.stderr.strip())
    rows = {row["layer"]: row for row in json.loads(result.stdout)}
    assert rows["encoder.layer.0"]["kind"] == "tokens"


@pytest.mark.parametrize(
    "head",
    ["none", "probe", {"text_embeddings": "text.npy", "labels": ["a", "b"]}],
    ids=["none", "probe", "text_embeddings"],
)
def test_encoder_heads_are_declared_in_the_model_block(head, tmp_path):
    from actlas import load_model

    if isinstance(head, dict):
        np.save(tmp_path / "text.npy", np.eye(2, 32, dtype=np.float32))
        head = {**head, "text_embeddings": str(tmp_path / "text.npy")}
    load_model({**ENCODER, "head": head})


@pytest.mark.parametrize("scale", [1e-9, 1e6], ids=["underflow", "overflow"])
def test_activations_out_of_float16_range_are_kept_or_refused(scale, photos, tmp_path):
    """Either the stored activations keep their values (nonzero, finite), or collect refuses in one line."""
    import zarr

    from actlas.stages.collect import collect
    from actlas.stages.shards import shards

    block = {
        "source": "zoo_models:scaled_net",
        "kwargs": {"scale": scale},
        "trust_code": True,
        "input_size": [32, 32],
        "resize": 32,
        "mean": 0.5,
        "std": 0.25,
        "labels": [str(i) for i in range(10)],
    }
    (shard,) = shards(str(photos), tmp_path / "run", block, shard_size=PHOTOS)
    out = tmp_path / "run" / "collect" / "shard-00000.zarr"
    try:
        collect(
            shard, out, block, ["scaled"], positions=POSITIONS, attr_top=2, batch_size=PHOTOS, workers=0, progress=False
        )
    except USER_ERRORS as err:
        assert "\n" not in str(err) and "scaled" in str(err)
        return
    acts = np.asarray(zarr.open_group(str(out), mode="r")["scaled/activation"]).astype(np.float32)
    if not (np.isfinite(acts).all() and (acts != 0).all()):
        raise Today(f"stored {int((acts == 0).sum())} zeros and {int(np.isinf(acts).sum())} infinities of {acts.size}")


def test_a_module_a_model_calls_twice_is_refused_on_a_real_architecture():
    """timm's distilled DeiT runs ``head_drop`` on the class token and again on the distillation token: which
    call would a sample be? Neither: one line, before any store (collect used to keep the second call)."""
    timm = pytest.importorskip("timm")

    from actlas.errors import LayerError
    from actlas.nn.layers import layer_kinds

    torch.manual_seed(0)
    model = timm.create_model("deit_tiny_distilled_patch16_224", pretrained=False, depth=2).eval()
    with pytest.raises(LayerError, match="'head_drop' runs 2 times in one forward"):
        layer_kinds(model, ["head_drop"], (224, 224))
    assert set(layer_kinds(model, ["head", "norm"], (224, 224), {"norm": "cls"})) == {"head", "norm"}
