"""Model shapes that could give a wrong atlas silently (issue 31), each a tiny real network (tests/hostile_models.py)
collected on a few real photos: the right behaviour, or one line naming the cause and the fix.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import _photo_folder, one_line

from actlas.errors import LayerError, ModelError

PHOTOS = 6


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return _photo_folder(PHOTOS, tmp_path_factory.mktemp("photos"))


def block(how: str = "fine", source: str = "hostile_models:shape_net", **kwargs) -> dict:
    return {
        "source": source,
        "kwargs": kwargs or {"how": how},
        "trust_code": True,
        "input_size": [32, 32],
        "resize": 32,
        "mean": 0.5,
        "std": 0.25,
        "labels": [f"class{i}" for i in range(10)],
    }


def collect_run(photos, run, model: dict, layers: list[str], batch_size: int = PHOTOS, positions: int = 3):
    """Collect the photos with ``model`` -> {column: array} of the store."""
    from actlas.data import store
    from actlas.stages.collect import collect
    from actlas.stages.shards import shards

    (shard,) = shards(str(photos), run, model, shard_size=PHOTOS)
    out = run / "collect" / "shard-00000.zarr"
    collect(
        shard, out, model, layers, positions=positions, attr_top=2, batch_size=batch_size, workers=0, progress=False
    )
    columns = ["images/pred", "images/attr_class"] + [f"{n}/{c}" for n in layers for c in ("activation", "position")]
    return {c: store.read([out], c) for c in columns + [f"{n}/attr_value" for n in layers]}


def test_a_layer_the_forward_runs_twice_is_refused(photos, tmp_path, trust_code):
    with pytest.raises(LayerError) as err:
        collect_run(photos, tmp_path / "run", block("shared"), ["block"])
    one_line(err.value, "'block'", "runs 2 times", "runs once")


def test_a_tuple_layer_is_read_at_its_first_element_and_a_dict_layer_is_refused(photos, tmp_path, trust_code):
    got = collect_run(photos, tmp_path / "run", block("tuple_layer"), ["pair"])
    acts = got["pair/activation"].astype(np.float32)
    assert acts.shape[1] == 8 and np.isfinite(acts).all() and acts.min() >= 0 and acts.std() > 0  # 2 x relu(...)
    assert np.abs(got["pair/attr_value"]).sum() > 0  # the logits depend on it through the namedtuple's map
    with pytest.raises(LayerError) as err:
        collect_run(photos, tmp_path / "run2", block("tuple_layer"), ["mapping"])
    one_line(err.value, "'mapping'", "returns dict", "another layer")


@pytest.mark.parametrize("how", ["output_tuple", "output_dict", "output_modeloutput"])
def test_a_forward_that_returns_a_tuple_dict_or_model_output_gives_its_logits(photos, tmp_path, trust_code, how):
    if how == "output_modeloutput":
        pytest.importorskip("transformers")
    fine = collect_run(photos, tmp_path / "fine", block("fine"), ["block"])
    got = collect_run(photos, tmp_path / how, block(how), ["block"])
    for key in ("images/pred", "images/attr_class", "block/attr_value", "block/activation"):
        np.testing.assert_array_equal(got[key], fine[key], err_msg=key)


@pytest.mark.parametrize(
    "how, words",
    [("output_nologits", ["without logits", "model.output"]), ("output_map", ["[6, 10, 2, 2]", "(batch, classes)"])],
)
def test_a_forward_without_logits_is_one_line(photos, tmp_path, trust_code, how, words):
    with pytest.raises(ModelError) as err:
        collect_run(photos, tmp_path / "run", block(how), ["block"])
    one_line(err.value, *words)


def test_a_one_channel_model_fed_rgb_is_one_line(photos, tmp_path, trust_code):
    with pytest.raises(LayerError) as err:
        collect_run(photos, tmp_path / "run", block("grey"), ["block"])
    one_line(err.value, "1-channel", "'stem'", "in_channels=1", "RGB")


def test_a_model_left_in_train_mode_is_collected_in_eval(photos, tmp_path, trust_code):
    from actlas.models.load import load_model

    model = block(source="hostile_models:train_mode_net", stubborn=False)
    net, _ = load_model(model)
    assert not any(m.training for m in net.modules())
    before = net.bn.running_mean.clone()
    whole = collect_run(photos, tmp_path / "whole", model, ["bn"])
    split = collect_run(photos, tmp_path / "split", model, ["bn"], batch_size=1)  # BatchNorm in train: batch-dependent
    np.testing.assert_array_equal(whole["bn/activation"], split["bn/activation"])
    np.testing.assert_array_equal(whole["images/pred"], split["images/pred"])  # dropout in train: random
    net, _ = load_model(model)
    assert (net.bn.running_mean == before).all()


def test_a_model_that_stays_in_train_mode_is_refused(trust_code):
    from actlas.models.load import load_model

    with pytest.raises(ModelError) as err:
        load_model(block(source="hostile_models:train_mode_net", stubborn=True))
    one_line(err.value, "training mode", "'bn'", "dropout")


def test_a_pooled_layer_is_one_position_and_a_class_token_never_a_position(photos, tmp_path, trust_code):
    got = collect_run(photos, tmp_path / "run", block("pooled_tokens"), ["pooled", "tokens"], positions=3)
    assert len(got["pooled/activation"]) == PHOTOS  # (B, C): one sample per photo, never the same one repeated
    assert (got["pooled/position"] == 0).all()
    assert len(got["tokens/activation"]) == 3 * PHOTOS
    positions = got["tokens/position"]
    assert positions.min() >= 0 and positions.max() < 4  # the 4 x 4 patch grid, the class token dropped
    assert got["tokens/activation"].astype(np.float32).max() < 50  # the class token is >= 100


def test_a_sequence_first_layer_and_a_random_forward_are_one_line(photos, tmp_path, trust_code):
    with pytest.raises(LayerError) as err:
        collect_run(photos, tmp_path / "seq", block("seq_first"), ["seq"])
    one_line(err.value, "'seq'", "[1024, 2, 8]", "not the batch", "batch_first=True")
    with pytest.raises(LayerError) as err:
        collect_run(photos, tmp_path / "noisy", block("noisy"), ["block"])
    one_line(err.value, "model's output", "random", "dropout")
