import pytest
import torch

from actlas.layers import LayerError, capture, get_layer, layer_names, list_layers, run_until


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
    with pytest.raises(RuntimeError):
        with capture(tiny_model, ["features.0"]) as outs:
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
