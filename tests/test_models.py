import pytest
import torch
import torch.nn.functional as F
from torch import nn

from actlas.errors import ModelError
from actlas.models.classes import resolve_class
from actlas.models.load import load_model
from actlas.models.weights import load_weights
from actlas.nn.padding import Conv2dSame, same_padding, use_tf_same_padding


def test_same_padding_stride2_even_input_pads_after_only():
    conv = nn.Conv2d(1, 1, 3, stride=2)
    assert same_padding((4, 4), conv) == (0, 1, 0, 1)  # TF: 0 before, 1 after
    assert same_padding((5, 5), conv) == (1, 1, 1, 1)
    assert same_padding((7, 7), nn.Conv2d(1, 1, 3, stride=1)) == (1, 1, 1, 1)


def test_tf_same_conv_matches_hand_computed_case():
    conv = nn.Conv2d(1, 1, 3, stride=2, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.fill_(1.0)
    x = torch.arange(16, dtype=torch.float32).view(1, 1, 4, 4)
    use_tf_same_padding(conv)
    assert isinstance(conv, Conv2dSame)
    out = conv(x)
    # TF SAME on 4x4, k3 s2: pad bottom/right by one zero; windows start at rows/cols 0 and 2.
    padded = F.pad(x, (0, 1, 0, 1))
    expected = torch.tensor([[padded[0, 0, r : r + 3, c : c + 3].sum() for c in (0, 2)] for r in (0, 2)])
    assert torch.equal(out[0, 0], expected)
    assert expected[0, 0] == 0 + 1 + 2 + 4 + 5 + 6 + 8 + 9 + 10


def test_tf_same_keeps_state_dict_keys(tiny_model):
    keys = set(tiny_model.state_dict())
    m = use_tf_same_padding(type(tiny_model)())
    assert set(m.state_dict()) == keys


@pytest.mark.slow
def test_card_loads_with_preprocessing(mobilenet):
    model, spec = mobilenet
    assert spec.mean == (0.5, 0.5, 0.5) and spec.std == (0.5, 0.5, 0.5)
    assert spec.padding == "tf_same" and len(spec.categories) == 1000
    assert spec.class_index("grey whale") == 147  # ImageNet index 147 (labels.txt line 148)
    assert any(isinstance(m, Conv2dSame) for m in model.modules())
    assert not any(p.requires_grad for p in model.parameters())


def test_unknown_class_names_close_ones():
    with pytest.raises(ModelError, match="great white shark"):
        resolve_class("great white shak", ("tench", "goldfish", "great white shark, white shark"))


def test_unknown_source_says_what_to_give():
    with pytest.raises(ModelError, match="card"):
        load_model("not-a-model")


def test_factory_source(tmp_path):
    model, spec = load_model("tiny_models:tiny_net", trust_code=True)
    assert spec.name == "tiny_net" and model(torch.zeros(1, 3, 32, 32)).shape == (1, 10)


class _Note:
    """A harmless object that a weights_only load cannot unpickle."""


class _Evil:
    def __reduce__(self):
        return (print, ("this pickle runs code",))


def test_code_running_pickle_is_refused(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(2), "evil": _Evil()}, path)
    with pytest.raises(ModelError, match="--allow-pickle"):
        load_weights(path)


def test_allow_pickle_is_a_model_option(tmp_path, tiny_model):
    """model.allow_pickle (--allow-pickle) loads a checkpoint that needs code to unpickle."""
    path = tmp_path / "weights.pt"
    torch.save({"state_dict": tiny_model.state_dict(), "note": _Note()}, path)
    block = {"source": "tiny_models:tiny_net", "weights": str(path), "trust_code": True}
    with pytest.raises(ModelError, match=r"model.allow_pickle: true \(--allow-pickle\)"):
        load_model(block)
    model, spec = load_model({**block, "allow_pickle": True})
    assert spec.options["allow_pickle"] is True


def test_plain_torch_weights_load_safely(tmp_path, tiny_model):
    path = tmp_path / "w.pt"
    torch.save(tiny_model.state_dict(), path)
    state = load_weights(path)
    assert set(state) == set(tiny_model.state_dict())


@pytest.mark.slow
def test_tf_same_padding_raises_accuracy_on_real_photos(card):
    """The card's padding matters: TF SAME beats torchvision's symmetric padding on real photos."""
    from actlas.data.decode import decode
    from actlas.data.images import list_images

    model_tf, spec = load_model(card)
    model_sym, _ = load_model(card, padding="default")
    rows = list_images(card.replace("models/mobilenet_v2_imagenet.json", "images/imagenet-val"), spec.synsets)[::4][
        :240
    ]
    x = torch.stack([spec.transform(decode(p)[0]) for p, _ in rows])
    labels = torch.tensor([label for _, label in rows])
    with torch.no_grad():
        acc_tf = (model_tf(spec.normalize(x)).argmax(1) == labels).float().mean().item()
        acc_sym = (model_sym(spec.normalize(x)).argmax(1) == labels).float().mean().item()
    print(f"top-1 on {len(rows)} photos: tf_same {acc_tf:.3f}, symmetric {acc_sym:.3f}")
    assert acc_tf > 0.7
    assert acc_tf > acc_sym


# --------------------------------------------------------------------------- the model block

import json
import warnings
from pathlib import Path

from actlas.models.block import FIELD_NAMES, MODEL_FIELDS, ModelDefaultWarning, model_block, model_options
from actlas.models.logits import select_logits

TINY = {
    "source": "tiny_models:tiny_net",
    "trust_code": True,
    "input_size": [32, 32],
    "mean": [0.5] * 3,
    "std": [0.25] * 3,
    "labels": [f"class{i}" for i in range(10)],
}


def _one_line(err) -> str:
    text = str(err.value)
    assert "\n" not in text, text
    return text


def test_block_declares_preprocessing_and_labels_without_a_warning(tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"name {i}\n" for i in range(10)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model, spec = load_model({**TINY, "labels": str(labels), "resize": 40})
    assert spec.input_size == (32, 32) and spec.resize == 40 and spec.mean == (0.5,) * 3
    assert spec.short_name(3) == "name 3" and spec.defaulted == ()
    record = spec.to_json()["model"]
    assert set(record) == {f.name for f in MODEL_FIELDS}  # every field, declared or defaulted
    assert record["input_size"] == [32, 32] and record["trust_code"] is True
    json.dumps(spec.to_json())


def test_defaults_warn_in_one_line_naming_the_keys():
    with pytest.warns(ModelDefaultWarning) as record:
        _, spec = load_model("tiny_models:tiny_net", trust_code=True)
    assert len(record) == 1
    message = str(record[0].message)
    assert "\n" not in message
    assert "224 x 224" in message and "model.input_size" in message and "model.labels" in message
    assert spec.defaulted == ("input_size", "resize", "mean", "std", "labels")
    assert spec.to_json()["model"]["resize"] == 256


def test_crop_sets_the_input_size():
    _, spec = load_model({**TINY, "input_size": None, "crop": 24, "resize": 28})
    assert spec.input_size == (24, 24) and spec.resize == 28


def test_unknown_key_names_the_closest_valid_one():
    with pytest.raises(ModelError, match="did you mean 'input_size'") as err:
        load_model({**TINY, "input_sise": [32, 32]})
    _one_line(err)


def test_json_string_block_and_model_options():
    _, spec = load_model(json.dumps(TINY))
    assert spec.input_size == (32, 32)
    flags = {f.name: f.flag for f in model_options()}
    assert flags["source"] == "--model" and flags["input_size"] == "--input-size"
    assert model_block("torchvision:resnet18", resize=None) == {"source": "torchvision:resnet18"}


# --------------------------------------------------------------------------- no code from data


def _card(tmp_path: Path, **keys) -> str:
    path = tmp_path / "card.json"
    path.write_text(json.dumps({"weights": "w.safetensors", **keys}))
    return str(path)


def test_card_cannot_run_code(tmp_path):
    """The issue's card: subprocess.run would create X when the card is read."""
    marker = tmp_path / "X"
    card = _card(tmp_path, architecture="subprocess.run", architecture_kwargs={"args": ["touch", str(marker)]})
    with pytest.raises(ModelError, match=r"trust_code: true \(--trust-code\)") as err:
        load_model(card)
    _one_line(err)
    assert not marker.exists()


def test_card_cannot_grant_itself_trust(tmp_path):
    card = _card(tmp_path, architecture="tiny_models.tiny_net", trust_code=True)
    with pytest.raises(ModelError, match="only the person running actlas can grant") as err:
        load_model(card)
    _one_line(err)


def test_factory_source_needs_trust_code():
    with pytest.raises(ModelError, match=r"runs Python code .*trust_code: true \(--trust-code\)") as err:
        load_model("tiny_models:tiny_net")
    _one_line(err)


def test_trust_code_from_the_environment(monkeypatch):
    monkeypatch.setenv("ACTLAS_TRUST_CODE", "1")
    model, spec = load_model({**TINY, "trust_code": None})
    assert spec.options["trust_code"] is True


def test_card_with_a_trusted_callable_and_a_builtin(tmp_path, tiny_model):
    from safetensors.torch import save_file

    save_file(tiny_model.state_dict(), tmp_path / "w.safetensors")
    card = _card(
        tmp_path,
        architecture="tiny_models.tiny_net",
        input_size=[32, 32],
        mean=[0.5] * 3,
        std=[0.5] * 3,
        labels=[str(i) for i in range(10)],
        license_note="test",
    )
    model, spec = load_model(card, trust_code=True)
    x = torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(model(x), tiny_model(x))
    with pytest.raises(ModelError, match="unknown key 'inputsize'; did you mean 'input_size'"):
        load_model(_card(tmp_path, architecture="actlas:cifar10_resnet20", inputsize=[32, 32]))


# --------------------------------------------------------------------------- checkpoints


def test_wrapper_prefixes_are_stripped(tmp_path, tiny_model):
    path = tmp_path / "dp.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in tiny_model.state_dict().items()}}, path)
    model, _ = load_model({**TINY, "weights": str(path)})
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(model(x), tiny_model(x))
    path2 = tmp_path / "compiled.pt"
    torch.save({f"_orig_mod.model.{k}": v for k, v in tiny_model.state_dict().items()}, path2)
    model, _ = load_model({**TINY, "weights": str(path2)})
    torch.testing.assert_close(model(x), tiny_model(x))


def test_checkpoint_that_does_not_fit_names_first_missing_and_unexpected_key(tmp_path, tiny_model):
    state = {f"module.{k}": v for k, v in tiny_model.state_dict().items()}
    state["module.head.weight"] = state.pop("module.fc.weight")
    path = tmp_path / "bad.pt"
    torch.save(state, path)
    with pytest.raises(ModelError) as err:
        load_model({**TINY, "weights": str(path)})
    text = _one_line(err)
    assert "1 missing (first 'fc.weight')" in text and "1 unexpected (first 'head.weight')" in text
    torch.save({k: v[:5] if k == "fc.bias" else v for k, v in tiny_model.state_dict().items()}, path)
    with pytest.raises(ModelError, match=r"first 'fc.bias': \[5\] for \[10\]"):
        load_model({**TINY, "weights": str(path)})


# --------------------------------------------------------------------------- outputs


def test_dict_and_tuple_outputs_become_logits(tiny_model):
    x = torch.rand(2, 3, 32, 32)
    for source in ("tiny_models:dict_net", "tiny_models:tuple_net"):
        model, _ = load_model({**TINY, "source": source})
        torch.testing.assert_close(model(x), tiny_model(x))
    model, _ = load_model({**TINY, "source": "tiny_models:tuple_net", "output": 1})
    assert model(x).shape == (2, 16)
    model, _ = load_model({**TINY, "source": "tiny_models:dict_net", "output": "nope"})
    with pytest.raises(ModelError, match="its keys: features, logits; set model.output") as err:
        model(x)
    _one_line(err)


def test_select_logits_reads_model_output_like_objects():
    from collections import OrderedDict

    class Output(OrderedDict):  # what transformers.ModelOutput is: an ordered dict with attributes
        pass

    logits = torch.zeros(1, 3)
    assert select_logits(Output(loss=None, logits=logits)) is logits
    assert select_logits((logits, torch.ones(1))) is logits
    with pytest.raises(ModelError, match="its keys: hidden"):
        select_logits({"hidden": logits})


# --------------------------------------------------------------------------- sources


def test_torchscript_is_refused_with_the_torch_export_recipe(tmp_path, tiny_model):
    path = tmp_path / "m.pt"
    torch.jit.script(tiny_model).save(str(path))
    with pytest.raises(ModelError, match=r"torch.export.save\(torch.export.export\(.*export:model.pt2") as err:
        load_model(f"torchscript:{path}")
    _one_line(err)


def _export(model: nn.Module, path: Path, size: int = 32) -> Path:
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(model.eval(), (torch.zeros(2, 3, size, size),), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(path))
    return path


def test_export_source_keeps_module_paths(tmp_path, tiny_model):
    from actlas.nn.layers import capture, layer_names

    path = _export(tiny_model, tmp_path / "tiny.pt2")
    model, spec = load_model({"source": f"export:{path}", "input_size": [32, 32]})
    assert {"features.0", "features.3", "fc"} <= set(layer_names(model))
    x = torch.rand(3, 3, 32, 32)
    with capture(model, ["features.3"]) as outs:
        out = model(x)
    torch.testing.assert_close(out, tiny_model(x))
    assert outs["features.3"].shape == (3, 16, 16, 16)


def test_timm_source_takes_preprocessing_and_labels_from_timm():
    pytest.importorskip("timm")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model, spec = load_model({"source": "timm:test_vit", "weights": "random"})
    assert spec.input_size == (160, 160) and spec.resize == 168  # 160 / crop_pct 0.95
    assert spec.mean == (0.5,) * 3 and spec.std == (0.5,) * 3
    assert len(spec.categories) == 1000 and spec.short_name(0) == "tench" and spec.synsets[0] == "n01440764"
    assert model(torch.zeros(1, 3, *spec.input_size)).shape == (1, 1000)
    from actlas.nn.layers import list_layers

    block = {r["layer"]: r for r in list_layers(model, spec.input_size)}["blocks.0"]
    assert (block["kind"], block["grid"], block["prefix"]) == ("tokens", [10, 10], 1)


def test_card_architecture_may_name_timm():
    pytest.importorskip("timm")
    from actlas.models.sources import known_builder

    assert known_builder("timm:test_vit") == ("timm", "test_vit")
    assert known_builder("torchvision.models.resnet18") == ("torchvision", "resnet18")
    assert known_builder("actlas:cifar10_resnet20") == ("actlas", "cifar10_resnet20")
    assert known_builder("torchvision.models.os") is None and known_builder("subprocess.run") is None


# --------------------------------------------------------------------------- real models

RESNET20 = Path(__file__).resolve().parents[1] / "config" / "models" / "cifar10_resnet20.json"
CIFAR_TEST = Path(__file__).resolve().parents[2] / "shared" / "assets" / "images" / "cifar10-test"


@pytest.mark.slow
def test_cifar10_resnet20_card_is_accurate_on_real_photos():
    if not CIFAR_TEST.exists():
        pytest.skip("shared CIFAR-10 photos not found")
    from actlas.data.decode import decode
    from actlas.data.images import list_images

    model, spec = load_model(str(RESNET20))
    assert spec.input_size == (32, 32) and spec.resize == 0 and spec.categories[0] == "airplane"
    rows = list_images(CIFAR_TEST, spec.synsets, spec.categories)[::50]  # 200 photos, 20 per class
    assert len(rows) == 200 and {label for _, label in rows} == set(range(10))
    x = torch.stack([spec.transform(decode(p)[0]) for p, _ in rows])
    with torch.no_grad():
        acc = (model(spec.normalize(x)).argmax(1) == torch.tensor([label for _, label in rows])).float().mean().item()
    print(f"ResNet-20 top-1 on {len(rows)} CIFAR-10 test photos: {acc:.3f}")
    assert acc > 0.7  # chance is 0.1; the assets README measured 0.81 on all 10,000


def test_parse_time_reads_a_cards_inline_labels(tmp_path):
    """The workflow's planner labels CIFAR folders from the built-in card, whose labels are a list, not a file."""
    from actlas.models.sources import label_space
    from actlas.stages.shards import plan

    synsets, categories = label_space(str(RESNET20))
    assert synsets == () and categories[:2] == ("airplane", "automobile") and len(categories) == 10
    for name in ("cat", "dog"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "0001.jpg").write_bytes(b"x")
    rows = [row for shard in plan(str(tmp_path), str(RESNET20)).shards.values() for row in shard]
    assert sorted(label for _, label in rows) == [3, 5]


@pytest.mark.slow
def test_export_of_the_shared_mobilenet(tmp_path, card):
    from actlas.nn.layers import list_layers

    net, spec = load_model(card)
    path = _export(net, tmp_path / "mobilenet.pt2", 224)
    exported, espec = load_model(
        {
            "source": f"export:{path}",
            "input_size": [224, 224],
            "resize": 256,
            "mean": [0.5] * 3,
            "std": [0.5] * 3,
            "labels": str(Path(card).parent / "../imagenet/labels.txt"),
        }
    )
    x = torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(exported(espec.normalize(x)), net(spec.normalize(x)), rtol=1e-4, atol=1e-4)
    rows = {r["layer"]: r for r in list_layers(exported, (224, 224))}
    assert rows["features.13"]["kind"] == "map" and rows["features.13"]["grid"] == [14, 14]


def test_schema_accepts_a_model_block_and_refuses_a_typo():
    import jsonschema
    import yaml

    schema = yaml.safe_load((Path(__file__).resolve().parents[1] / "config" / "schema.yaml").read_text())
    model = {"$schema": schema["$schema"], **schema["properties"]["model"]}
    jsonschema.validate("torchvision:resnet18", model)
    block = {
        "source": "tiny_models:tiny_net",
        "kwargs": {},
        "weights": "w.safetensors",
        "input_size": [32, 32],
        "resize": 0,
        "crop": 32,
        "mean": [0.5] * 3,
        "std": 0.5,
        "labels": ["a", "b"],
        "synsets": "s.txt",
        "output": "logits",
        "padding": "tf_same",
        "layer_kinds": {"blocks.1": {"kind": "tokens", "prefix": 1}, "norm": "channels_last"},
        "trust_code": True,
        "allow_pickle": False,
        "head": "probe",
        "interpolation": "bicubic",
    }
    assert set(block) == set(FIELD_NAMES)
    jsonschema.validate(block, model)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**block, "input_sise": [32, 32]}, model)


def test_flags_and_rule_arguments_make_the_same_block(tmp_path, tiny_model):
    from actlas.models.block import model_from_flags
    from actlas.models.load import load_spec
    from actlas.smk import model_arg

    block = model_from_flags(
        "tiny_models:tiny_net",
        input_size="32",
        mean="0.5",
        std="0.25,0.25,0.25",
        output="0",
        kwargs='{"seed": 0}',
        trust_code=True,
        resize=None,
    )
    assert block == {
        "source": "tiny_models:tiny_net",
        "input_size": [32, 32],
        "mean": [0.5] * 3,
        "std": [0.25] * 3,
        "output": 0,
        "kwargs": {"seed": 0},
        "trust_code": True,
    }
    assert model_from_flags(model_arg(block)) == block and model_arg("x.json") == "x.json"
    with pytest.raises(ModelError, match="--input-size 'big'"):
        model_from_flags("tiny_models:tiny_net", input_size="big")
    path = tmp_path / "bad.safetensors"
    from safetensors.torch import save_file

    save_file({"nope": torch.zeros(1)}, path)
    spec = load_spec({**TINY, "weights": str(path)})  # weights are not read: no failure at parse time
    assert spec.input_size == (32, 32)
    with pytest.raises(ModelError, match="do not fit"):
        load_model({**TINY, "weights": str(path)})


VIT = Path(__file__).resolve().parents[1] / "config" / "models" / "cifar10_vit.json"


@pytest.mark.slow
def test_cifar10_vit_card_is_accurate_on_real_photos():
    """The project's own ViT (scripts/train_vit.py): at least 50% on cifar10-test (63% on all 10,000)."""
    if not CIFAR_TEST.exists():
        pytest.skip("shared CIFAR-10 photos not found")
    from actlas.data.decode import decode
    from actlas.data.images import list_images
    from actlas.nn.layers import list_layers

    model, spec = load_model(str(VIT))
    rows = list_images(CIFAR_TEST, spec.synsets, spec.categories)[::25]  # 400 photos, 40 per class
    x = torch.stack([spec.transform(decode(p)[0]) for p, _ in rows])
    with torch.no_grad():
        acc = (model(spec.normalize(x)).argmax(1) == torch.tensor([label for _, label in rows])).float().mean().item()
    print(f"ViT top-1 on {len(rows)} CIFAR-10 test photos: {acc:.3f}")
    assert acc > 0.5
    block = {r["layer"]: r for r in list_layers(model, spec.input_size)}["blocks.3"]
    assert (block["kind"], block["grid"], block["prefix"], block["channels"]) == ("tokens", [8, 8], 1, 64)


def test_model_flags_mirror_the_block():
    import click
    from click.testing import CliRunner

    from actlas.cli_options import model_block_from, model_flags

    seen = {}

    @click.command()
    @model_flags()
    def cmd(**params):
        seen["block"] = model_block_from(params)
        seen["rest"] = params

    result = CliRunner().invoke(
        cmd,
        [
            "-m",
            "tiny_models:tiny_net",
            "--input-size",
            "32",
            "--mean",
            "0.5",
            "--trust-code",
            "--layer-kinds",
            '{"fc": "pooled"}',
        ],
    )
    assert result.exit_code == 0, result.output
    assert seen["block"] == {
        "source": "tiny_models:tiny_net",
        "input_size": [32, 32],
        "mean": [0.5] * 3,
        "trust_code": True,
        "layer_kinds": {"fc": "pooled"},
    }
    assert seen["rest"] == {}
    help_text = CliRunner().invoke(cmd, ["--help"]).output
    for field in MODEL_FIELDS:
        assert field.flag in help_text


def test_default_warning_prints_as_one_line(capsys):
    import subprocess
    import sys

    code = (
        "from actlas.cli_options import one_line_warnings; one_line_warnings(); "
        "from actlas.models.load import load_model; load_model('tiny_models:tiny_net', trust_code=True)"
    )
    here = Path(__file__).parent
    env = {"PYTHONPATH": f"{here}:{here.parent / 'src'}", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("warning: model tiny_models:tiny_net: assumed input 224 x 224")


def test_a_mistyped_layer_kind_fails_at_load_time():
    from actlas.errors import LayerError

    with pytest.raises(LayerError, match="unknown layer kind 'token'") as err:
        load_model({**TINY, "layer_kinds": {"fc": "token"}})
    _one_line(err)
