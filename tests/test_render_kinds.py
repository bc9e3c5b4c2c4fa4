"""Render's centre objective on every layer kind: tokens (centre patch), channels-last, pooled."""

import numpy as np
import pytest
import torch

from actlas.models.spec import ModelSpec
from actlas.settings import RenderParams
from actlas.viz.render import _optimise, centre_activations, render

SPEC = ModelSpec(
    name="tiny", source="tiny_models:tiny_vit", input_size=(32, 32), resize=32, mean=(0.5,) * 3, std=(0.25,) * 3
)
FAST = RenderParams(size=32, steps=20, lr=0.05, batch_size=8, pad=4, jitter=2)


def _models():
    from tiny_models import ChannelsLastNet, tiny_vit

    return {"blocks.1": tiny_vit().eval(), "norm": ChannelsLastNet().eval(), "head": tiny_vit().eval()}


def test_centre_of_tokens_is_the_centre_patch():
    model = _models()["blocks.1"]
    x = torch.rand(2, 3, 32, 32)
    kept = {}
    h = model.blocks[1].register_forward_hook(lambda m, i, o: kept.setdefault("a", o))
    got = centre_activations(model, SPEC, "blocks.1", x)
    h.remove()
    torch.testing.assert_close(got, kept["a"][:, 1 + 2 * 4 + 2])  # CLS, then row 2, column 2 of the 4 x 4 grid
    cls = ModelSpec(**{**SPEC.__dict__, "layer_kinds": {"blocks.1": "cls"}})
    torch.testing.assert_close(centre_activations(model, cls, "blocks.1", x), kept["a"][:, 0])


@pytest.mark.parametrize("layer", ["blocks.1", "norm", "head"])
def test_objective_rises_on_every_kind(layer):
    model = _models()[layer]
    torch.manual_seed(0)
    with torch.no_grad():
        d = centre_activations(model, SPEC, layer, torch.rand(2, 3, 32, 32))
    d = d / d.norm(dim=1, keepdim=True)
    _, short = _optimise(model, SPEC, layer, d, [1, 2], RenderParams(size=32, steps=1, pad=4, jitter=2), "cpu")
    _, long = _optimise(model, SPEC, layer, d, [1, 2], RenderParams(size=32, steps=60, pad=4, jitter=2), "cpu")
    assert (long > short).all()


def test_render_tokens_scores_faithfulness():
    model = _models()["blocks.1"]
    with torch.no_grad():
        d = centre_activations(model, SPEC, "blocks.1", torch.rand(2, 3, 32, 32)).numpy()
    out = render(model, SPEC, "blocks.1", d, params=FAST, progress=False)
    assert out["icon"].shape == (2, 32, 32, 3) and np.isfinite(out["faithfulness"]).all()
    assert (out["faithfulness"] > 0).all()
