import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from actlas.models import Conv2dSame, ModelError, load_model, load_weights, resolve_class, same_padding, use_tf_same_padding


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
    model, spec = load_model("tiny_models:tiny_net")
    assert spec.name == "tiny_net" and model(torch.zeros(1, 3, 32, 32)).shape == (1, 10)


class _Evil:
    def __reduce__(self):
        return (print, ("this pickle runs code",))


def test_code_running_pickle_is_refused(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(2), "evil": _Evil()}, path)
    with pytest.raises(ModelError, match="--allow-pickle"):
        load_weights(path)


def test_plain_torch_weights_load_safely(tmp_path, tiny_model):
    path = tmp_path / "w.pt"
    torch.save(tiny_model.state_dict(), path)
    state = load_weights(path)
    assert set(state) == set(tiny_model.state_dict())


@pytest.mark.slow
def test_tf_same_padding_raises_accuracy_on_real_photos(card):
    """The card's padding matters: TF SAME beats torchvision's symmetric padding on real photos."""
    from actlas.images import decode, list_images

    model_tf, spec = load_model(card)
    model_sym, _ = load_model(card, padding="default")
    rows = list_images(card.replace("models/mobilenet_v2_imagenet.json", "images/imagenet-val"), spec.synsets)[::4][:240]
    x = torch.stack([spec.transform(decode(p)[0]) for p, _ in rows])
    labels = torch.tensor([label for _, label in rows])
    with torch.no_grad():
        acc_tf = (model_tf(spec.normalize(x)).argmax(1) == labels).float().mean().item()
        acc_sym = (model_sym(spec.normalize(x)).argmax(1) == labels).float().mean().item()
    print(f"top-1 on {len(rows)} photos: tf_same {acc_tf:.3f}, symmetric {acc_sym:.3f}")
    assert acc_tf > 0.7
    assert acc_tf > acc_sym
