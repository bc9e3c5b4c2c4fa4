"""Layers checked before any job runs (issue 31): the architecture built without weights on the meta device.

Each refusal is the one line the first job gives; a repeated check reads the per-user cache; models whose
architecture needs user code are left to the first job, which still fails in one line.
"""

from __future__ import annotations

import pytest
from conftest import one_line

from actlas.errors import LayerError, ModelError
from actlas.models import meta

RESNET = {"source": "actlas:cifar_resnet", "weights": "random", "kwargs": {"depth": 20}}


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """A cache of this test's own."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "actlas" / "architectures"


def test_a_good_layer_passes_and_every_module_is_listed():
    found = meta.check_layers(RESNET, ["layer3", "layer2.1.conv2"])
    assert found is not None and "layer3.2.bn2" in found.layers
    assert found.calls["layer3"] == 1 and "layer3" in found.reaching


def test_an_unknown_layer_is_the_clis_line(trust_code):
    from actlas.models.load import load_model
    from actlas.nn.layers import get_layer

    with pytest.raises(LayerError) as err:
        meta.check_layers(RESNET, ["layer3.2.bn9"])
    net, _ = load_model(RESNET)
    with pytest.raises(LayerError) as job:
        get_layer(net, "layer3.2.bn9")
    assert str(err.value) == str(job.value)
    one_line(err.value, "unknown layer 'layer3.2.bn9'", "'layer3.2.bn2'")


def test_a_module_the_forward_never_runs_is_refused():
    # torchvision's GoogLeNet with aux_logits: its auxiliary classifiers run only in training
    model = {
        "source": "torchvision:googlenet",
        "weights": "random",
        "kwargs": {"aux_logits": True, "init_weights": False},
    }
    with pytest.raises(LayerError) as err:
        meta.check_layers(model, ["inception4c", "aux1.conv"])
    one_line(err.value, "'aux1.conv'", "never runs")


def test_a_module_the_forward_runs_twice_is_refused():
    with pytest.raises(LayerError) as err:
        meta.check_layers({"source": "torchvision:resnet18", "weights": "random"}, ["layer1.0.relu"])
    one_line(err.value, "'layer1.0.relu'", "runs 2 times")
    # a module whose output the forward then changes in place (out += identity) still reaches the logits
    meta.check_layers({"source": "torchvision:resnet18", "weights": "random"}, ["layer1.0.bn2", "layer4", "avgpool"])


def test_a_one_channel_model_is_refused_naming_cause_and_fix():
    pytest.importorskip("timm")
    with pytest.raises(LayerError) as err:
        meta.check_layers({"source": "timm:resnet18", "weights": "random", "kwargs": {"in_chans": 1}}, ["layer4"])
    one_line(err.value, "1-channel", "'conv1'", "RGB", "x.mean(1, keepdim=True)")


def test_a_layer_the_logits_do_not_depend_on_is_found_on_the_meta_device(trust_code):
    import torch
    from hostile_models import BrokenNet

    from actlas.models.headhook import attach_head

    with torch.device("meta"):
        net = BrokenNet("unused").eval()
    attach_head(net, {}, (32, 32))
    found = meta.inspect_model(net, (32, 32))
    assert found.calls["probe"] == 1 and "probe" not in found.reaching and "net.features" in found.reaching


def test_a_model_output_without_logits_is_refused(trust_code):
    import torch
    from hostile_models import ShapeNet

    from actlas.models.headhook import attach_head

    for how, words in [("output_nologits", ["model.output"]), ("output_map", ["(batch, classes)"])]:
        with torch.device("meta"):
            net = ShapeNet(how).eval()
        attach_head(net, {}, (32, 32))
        found = meta.inspect_model(net, (32, 32))
        with pytest.raises(ModelError) as err:
            meta._raise_problem(found)
        one_line(err.value, *words)


def test_the_check_is_cached_and_a_repeat_builds_nothing(cache, monkeypatch):
    meta.check_layers(RESNET, ["layer3"])
    assert len(list(cache.glob("*.json"))) == 1

    def no_build(block):
        raise AssertionError("built again")

    monkeypatch.setattr(meta, "describe", no_build)
    meta.check_layers(RESNET, ["layer2"])  # another layer of the same model: the cache answers
    with pytest.raises(LayerError):
        meta.check_layers(RESNET, ["layr2"])
    with pytest.raises(AssertionError, match="built again"):
        meta.check_layers({**RESNET, "kwargs": {"depth": 32}}, ["layer2"])  # another architecture


def test_a_card_is_built_without_downloading(tmp_path):
    import json

    card = tmp_path / "card.json"
    card.write_text(
        json.dumps(
            {
                "architecture": "torchvision.models.resnet18",
                "kwargs": {"weights": "DEFAULT"},
                "weights": "w.safetensors",
            }
        )
    )
    assert meta._offline({"source": str(card)})["kwargs"] == {"weights": None}
    found = meta.check_layers({"source": str(card)}, ["layer4"])
    assert found is not None and "fc" in found.layers


def test_user_code_is_never_run_at_parse_time(tmp_path):
    import json

    assert meta.check_layers({"source": "hostile_models:broken_net", "trust_code": True}, ["nope"]) is None
    card = tmp_path / "card.json"
    card.write_text(json.dumps({"architecture": "hostile_models.broken_net", "weights": "w.safetensors"}))
    assert meta.check_layers({"source": str(card), "trust_code": True}, ["nope"]) is None
    assert meta.check_layers("export:model.pt2", ["nope"]) is None


def test_the_first_job_still_fails_in_one_line_for_a_factory(trust_code):
    from hostile_models import ShapeNet

    from actlas.nn.layers import layer_kinds

    for how, layer, words in [
        ("fine", "blok", ["unknown layer 'blok'", "'block'"]),
        ("shared", "block", ["runs 2 times"]),
        ("grey", "block", ["1-channel", "'stem'"]),
        ("fine", "pair", ["never runs"]),
    ]:
        with pytest.raises(LayerError) as err:
            layer_kinds(ShapeNet(how).eval(), [layer], (32, 32))
        one_line(err.value, *words)


@pytest.mark.slow  # two snakemake -n runs
def test_the_workflow_refuses_a_bad_layer_in_one_line_before_any_job(tmp_path, cache):
    """snakemake -n: one Error: line, the CLI's, for a layer a class atlas names; the second parse reads the cache."""
    import yaml
    from conftest import _photo_folder, small_config, snakemake

    work = tmp_path / "w"
    work.mkdir()
    images = _photo_folder(4, tmp_path / "photos")
    model = {**RESNET, "input_size": [32, 32], "resize": 32, "mean": 0.5, "std": 0.25, "labels": list("abcdefghij")}
    config = yaml.safe_load(small_config(tmp_path / "run", images, layers=["layer3"]))
    config.update(model=model, class_atlases=[{"class": "a", "layer": "layer3.2.bn9"}])
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    for _ in range(2):
        out = snakemake(work, "-n", check=False)
        assert out.returncode != 0
        lines = [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")]
        assert lines == [
            "Error: unknown layer 'layer3.2.bn9'; closest valid layers: 'layer3.2.bn2', 'layer3.2.bn1', "
            "'layer3.1.bn2', 'layer3.1.bn1', 'layer3.0.bn2', 'layer3.0.bn1' (see `actlas layers MODEL`)"
        ], out.stderr[-2000:]
        assert "Traceback" not in out.stderr and not (tmp_path / "run").exists()
        assert len(list(cache.glob("*.json"))) == 1


@pytest.mark.slow  # transformers
def test_a_local_transformers_config_is_checked_without_weights(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.ViTConfig(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, image_size=32, patch_size=8
    )
    config.save_pretrained(str(tmp_path / "vit"))  # config.json only: no weights anywhere
    model = {"source": f"transformers:{tmp_path / 'vit'}", "weights": "random", "mean": 0.5, "std": 0.5}
    with pytest.raises(ModelError) as err:  # an encoder (ViTModel) without a head: before any job
        meta.check_layers(model, ["layers.0"])
    one_line(err.value, "without logits", "model.head")
    config.architectures, config.num_labels = ["ViTForImageClassification"], 10
    config.save_pretrained(str(tmp_path / "vit"))
    found = meta.check_layers(model, ["vit.layers.0"])
    assert found is not None and found.calls["vit.layers.0"] == 1 and "vit.layers.0" in found.reaching
    with pytest.raises(LayerError) as err:
        meta.check_layers(model, ["vit.layers.1"])
    one_line(err.value, "'vit.layers.0'")
    assert (
        meta.check_layers({**model, "source": "transformers:google/vit-base-patch16-224"}, ["x"]) is None
    )  # no download


def test_a_sequence_first_layer_is_found_on_the_meta_device(trust_code):
    import torch
    from hostile_models import ShapeNet

    from actlas.models.headhook import attach_head
    from actlas.nn.problems import unbatched_layer

    with torch.device("meta"):
        net = ShapeNet("seq_first").eval()
    attach_head(net, {}, (32, 32))
    found = meta.inspect_model(net, (32, 32))
    assert found.unbatched["seq"] == [1024, 2, 8] and "block" not in found.unbatched
    assert str(unbatched_layer("seq", [1024, 2, 8], 2)).startswith("layer 'seq' gives shape [1024, 2, 8]")


def test_a_heads_features_are_what_a_layer_must_reach(trust_code):
    import torch
    from hostile_models import BrokenNet

    from actlas.models.headhook import attach_head

    for head, reached in [("probe", False), ("none", None)]:
        with torch.device("meta"):
            net = BrokenNet("unused").eval()
        attach_head(net, {"head": head}, (32, 32))  # a probe not trained yet: its features, not its logits
        found = meta.inspect_model(net, (32, 32), head=head)
        assert found.calls["probe"] == 1
        assert found.reaching is None if reached is None else ("probe" in found.reaching) == reached
