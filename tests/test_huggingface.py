"""A real Hugging Face image classifier (tiny, random weights): ModelOutput, tuple-free token layers,
labels from config.id2label. Skipped when ``transformers`` is not installed."""

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

from actlas.data import store
from actlas.models.load import load_model
from actlas.nn.layers import list_layers
from actlas.stages.collect import collect
from actlas.viz.render import centre_activations

BLOCK = {
    "source": "tiny_models:hf_vit",
    "trust_code": True,
    "output": "logits",
    "input_size": [32, 32],
    "resize": 32,
    "mean": 0.5,
    "std": 0.5,
}


def _layer(model) -> str:
    names = [n for n, _ in model.named_modules()]
    return next(n for n in names if n.endswith(("layers.0", "layer.0")))  # transformers 5 or 4; not the last block


def test_hugging_face_classifier_gives_logits_labels_and_token_layers():
    model, spec = load_model(BLOCK)
    assert spec.categories[0] == "airplane" and spec.class_index("truck") == 9  # from config.id2label
    x = torch.rand(2, 3, 32, 32)
    logits = model(spec.normalize(x))
    assert isinstance(logits, torch.Tensor) and logits.shape == (2, 10)
    layer = _layer(model)
    row = {r["layer"]: r for r in list_layers(model, spec.input_size)}[layer]
    assert (row["kind"], row["grid"], row["prefix"], row["channels"]) == ("tokens", [4, 4], 1, 16)
    assert centre_activations(model, spec, layer, x).shape == (2, 16)


def test_collect_a_hugging_face_block(tiny_dataset, tmp_path):
    from actlas.data import images
    from actlas.formats import shards as shard_files

    model, _ = load_model(BLOCK)
    layer = _layer(model)
    rows = images.list_images(tiny_dataset)
    shard = tmp_path / "shard-00000.txt"
    shard.write_text(shard_files.format_shard(rows))
    summary = collect(
        shard, tmp_path / "hf.zarr", BLOCK, [layer], positions=3, attr_top=2, batch_size=4, workers=0, progress=False
    )
    assert summary["rows"] == {layer: 48}
    values = store.read([tmp_path / "hf.zarr"], f"{layer}/attr_value")
    assert np.isfinite(values).all() and np.abs(values).sum() > 0  # patch tokens of a middle block reach the CLS head
