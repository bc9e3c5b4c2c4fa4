import pytest
import torch

from actlas.errors import LayerError
from actlas.nn.layers import capture, get_layer, layer_names, list_layers, run_until


def test_names_are_module_paths(tiny_model):
    names = layer_names(tiny_model)
    assert names[:3] == ["features", "features.0", "features.1"]
    assert "fc" in names


def test_wrong_layer_lists_nearest(tiny_model):
    with pytest.raises(LayerError) as err:
        get_layer(tiny_model, "features.33")
    assert "'features.3'" in str(err.value)


def test_list_layers_shapes(tiny_model):
    rows = {r["layer"]: r for r in list_layers(tiny_model, (32, 32))}
    assert rows["features.3"]["shape"] == [16, 16, 16]
    assert rows["features.3"]["channels"] == 16
    assert rows["fc"]["shape"] == [10]


def test_capture_removes_hooks_even_on_error(tiny_model):
    layer = get_layer(tiny_model, "features.0")
    with pytest.raises(RuntimeError), capture(tiny_model, ["features.0"]) as outs:
        tiny_model(torch.zeros(1, 3, 32, 32))
        assert outs["features.0"].shape == (1, 8, 32, 32)
        raise RuntimeError("boom")
    assert not layer._forward_hooks


def test_run_until_stops_early(tiny_model):
    calls = []
    h = tiny_model.fc.register_forward_hook(lambda *a: calls.append(1))
    with capture(tiny_model, ["features.1"], stop=True) as outs:
        got = run_until(tiny_model, torch.zeros(2, 3, 32, 32), outs)
    h.remove()
    assert got["features.1"].shape == (2, 8, 32, 32) and not calls


# --------------------------------------------------------------------------- layer kinds

from actlas.nn.kinds import LayerKind, detect_kind, layer_view
from actlas.nn.layers import layer_kinds


def _line(err) -> str:
    assert "\n" not in str(err.value), str(err.value)
    return str(err.value)


@pytest.mark.parametrize(
    "shape, kind, prefix",
    [
        ((16, 8, 8), "map", None),
        ((8, 8, 16), "channels_last", None),
        ((65, 16), "tokens", 1),
        ((64, 16), "tokens", 0),
        ((261, 32), "tokens", 5),
        ((10,), "pooled", None),
    ],
)
def test_kind_is_detected_from_the_shape(shape, kind, prefix):
    found = detect_kind(shape, (32, 32))
    assert found.kind == kind and found.prefix == prefix


def test_declared_kinds_and_their_errors():
    assert detect_kind((65, 16), (32, 32), "cls").kind == "cls"
    assert detect_kind((8, 8, 8), (32, 32), {"kind": "channels_last"}).kind == "channels_last"
    with pytest.raises(LayerError, match="does not fit the declared kind 'map'") as err:
        detect_kind((65, 16), (32, 32), "map", "blocks.1")
    assert "'blocks.1'" in _line(err)
    with pytest.raises(LayerError, match="declare a layer as one of map, channels_last, tokens, cls, pooled"):
        detect_kind((65, 16), (32, 32), "token")
    with pytest.raises(LayerError, match="model.layer_kinds") as err:
        detect_kind((2, 3, 4, 5), (32, 32), None, "odd")
    _line(err)


def test_token_view_lays_patch_tokens_on_the_grid():
    tokens = torch.arange(2 * 13 * 3, dtype=torch.float32).view(2, 13, 3)  # CLS + 3 x 4 patches
    view = layer_view(tokens, LayerKind("tokens", 1), (24, 32))
    assert view.shape == (2, 3, 3, 4)
    torch.testing.assert_close(view[1, :, 2, 1], tokens[1, 1 + 2 * 4 + 1])
    torch.testing.assert_close(layer_view(tokens, LayerKind("cls"), (24, 32))[:, :, 0, 0], tokens[:, 0])
    nhwc = torch.rand(2, 4, 5, 3)
    torch.testing.assert_close(layer_view(nhwc, LayerKind("channels_last"), (4, 5))[0, :, 1, 2], nhwc[0, 1, 2])
    assert layer_view(torch.rand(2, 7), LayerKind("pooled"), (4, 4)).shape == (2, 7, 1, 1)


def test_list_layers_reports_kind_and_grid():
    from tiny_models import ChannelsLastNet, tiny_vit

    rows = {r["layer"]: r for r in list_layers(tiny_vit(), (32, 32))}
    assert rows["blocks.1"]["kind"] == "tokens" and rows["blocks.1"]["grid"] == [4, 4]
    assert rows["blocks.1"]["prefix"] == 1 and rows["blocks.1"]["channels"] == 16
    assert rows["patch_embed"]["kind"] == "map" and rows["head"]["kind"] == "pooled"
    assert rows["head"]["grid"] == [1, 1]
    rows = {r["layer"]: r for r in list_layers(ChannelsLastNet(), (32, 32))}
    assert rows["norm"]["kind"] == "channels_last" and rows["norm"]["grid"] == [8, 8]


class _TupleBlock(torch.nn.Module):
    """A block that returns a tuple, as Hugging Face layers do."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        return (self.conv(x), None)


def test_tuple_outputs_are_read_at_their_first_element():
    net = torch.nn.Sequential(_TupleBlock())
    net.register_forward_hook(lambda m, i, o: o[0])
    found = layer_kinds(net, ["0"], (8, 8))
    assert found["0"][0].kind == "map" and found["0"][1:] == (4, (8, 8))
    with capture(net, ["0"], leaf=True) as outs:
        net(torch.zeros(1, 3, 8, 8))
    assert outs["0"].requires_grad and outs["0"].shape == (1, 4, 8, 8)


def test_a_layer_that_returns_no_tensor_fails_in_one_line():
    class NoTensor(torch.nn.Module):
        def forward(self, x):
            return None

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.side = NoTensor()
            self.conv = torch.nn.Conv2d(3, 2, 1)

        def forward(self, x):
            self.side(x)
            return self.conv(x).mean((2, 3))

    with pytest.raises(LayerError, match="layer 'side' returns NoneType, not a tensor") as err:
        layer_kinds(Net(), ["side"], (8, 8))
    _line(err)
