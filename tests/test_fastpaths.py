"""The fast paths give the results of the plain paths, within tolerance (no timing assertions here).

- bf16 autocast (``amp``) vs float32: activations and attributions in collect, icons and
  faithfulness in render;
- channels_last inputs vs contiguous ones (the CUDA layout, checked on CPU);
- a layout computed with a warm numba cache vs one computed with an empty cache.

Batched vs one-by-one rendering is checked in test_render.py.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import TINY
from torch import nn

from actlas.collect import attribute
from actlas.models.spec import ModelSpec
from actlas.settings import RenderParams
from actlas.stages.collect import collect
from actlas.stages.render import icon_key
from actlas.viz.render import render

SPEC = ModelSpec(
    name="tiny", source="tiny_models:tiny_net", input_size=(32, 32), resize=32, mean=(0.5,) * 3, std=(0.25,) * 3
)
FAST = RenderParams(size=32, steps=24, lr=0.05, batch_size=8, pad=4, jitter=2)


def _rowwise_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)


def test_bf16_activations_and_attributions_match_float32(tiny_model):
    x = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    logits32, acts32, attrs32, classes32 = attribute(tiny_model, SPEC, x, ["features.3"], attr_top=2)
    logits16, acts16, attrs16, classes16 = attribute(tiny_model, SPEC, x, ["features.3"], attr_top=2, amp=True)
    assert acts16["features.3"].dtype == torch.bfloat16  # autocast really ran
    assert logits16.dtype == torch.float32 and attrs16["features.3"].dtype == torch.float32
    a32, a16 = acts32["features.3"].numpy(), acts16["features.3"].float().numpy()
    assert _rowwise_cosine(a32, a16).min() > 0.999
    np.testing.assert_allclose(a16, a32, atol=0.02 * np.abs(a32).max())
    np.testing.assert_allclose(logits16.numpy(), logits32.numpy(), atol=0.02 * np.abs(logits32.numpy()).max())
    # attributions at the top class: same picture, bf16 rounding of activation and gradient
    assert _rowwise_cosine(attrs32["features.3"][:, 0].numpy(), attrs16["features.3"][:, 0].numpy()).min() > 0.99


def test_channels_last_gives_the_same_activations(tiny_model):
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    _, plain, attr_plain, _ = attribute(tiny_model, SPEC, x, ["features.3"], attr_top=2)
    _, cl, attr_cl, _ = attribute(
        tiny_model, SPEC, x.contiguous(memory_format=torch.channels_last), ["features.3"], attr_top=2
    )
    torch.testing.assert_close(cl["features.3"], plain["features.3"], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(attr_cl["features.3"], attr_plain["features.3"], rtol=1e-4, atol=1e-5)


def test_collect_with_amp_stores_close_activations(tiny_model, tiny_dataset, tmp_path):
    from actlas.data import images, store
    from actlas.formats import shards as shard_files

    rows = images.list_images(tiny_dataset)
    shard = tmp_path / "shard-00000.txt"
    shard.write_text(shard_files.format_shard(rows))
    kw = dict(positions=3, attr_top=2, batch_size=8, chunk=8, workers=0, device="cpu", progress=False)
    collect(shard, tmp_path / "fp32.zarr", TINY, ["features.3"], **kw)
    collect(shard, tmp_path / "bf16.zarr", TINY, ["features.3"], amp=True, **kw)
    a32 = store.read([tmp_path / "fp32.zarr"], "features.3/activation").astype(np.float32)
    a16 = store.read([tmp_path / "bf16.zarr"], "features.3/activation").astype(np.float32)
    assert a32.shape == a16.shape
    assert np.median(_rowwise_cosine(a32, a16)) > 0.999
    # the same positions were sampled and the same classes attributed (ties aside)
    np.testing.assert_array_equal(
        store.read([tmp_path / "fp32.zarr"], "features.3/position"),
        store.read([tmp_path / "bf16.zarr"], "features.3/position"),
    )
    assert store.shard_attrs(tmp_path / "bf16.zarr")["params"]["amp"] == "bf16"
    assert "amp" not in store.shard_attrs(tmp_path / "fp32.zarr")["params"]


def _directions(tiny_model, k=3):
    from actlas.viz import objectives

    x = torch.rand(k, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        h = tiny_model.features(SPEC.normalize(x))
    return objectives.centre(h).numpy()


def test_bf16_render_is_as_faithful_as_float32(tiny_model):
    d = _directions(tiny_model, 3)
    fp32 = render(tiny_model, SPEC, "features.4", d, params=FAST, progress=False)
    bf16 = render(
        tiny_model, SPEC, "features.4", d, params=RenderParams(**{**FAST.to_json(), "amp": True}), progress=False
    )
    assert bf16["objective"].dtype == np.float32
    # Optimisation is chaotic: bf16 rounding moves pixels, but the icon must still show its direction.
    assert (bf16["faithfulness"] > 0.5).all()
    assert np.abs(bf16["faithfulness"] - fp32["faithfulness"]).max() < 0.1
    diff = np.abs(bf16["icon"].astype(int) - fp32["icon"].astype(int)).mean()
    assert diff < 25, diff  # same picture, not a different image (unrelated icons differ by ~60)


def test_amp_changes_icon_keys_only_when_on():
    d = np.ones(4, dtype=np.float32)
    off = icon_key(d, "context", "l", FAST)
    assert off == icon_key(d, "context", "l", RenderParams(**{**FAST.to_json(), "amp": False}))
    assert off != icon_key(d, "context", "l", RenderParams(**{**FAST.to_json(), "amp": True}))


_LAYOUT_CHILD = r"""
import json, sys
import numpy as np
from actlas.layout import layout
x = np.random.default_rng(0).standard_normal((300, 16)).astype(np.float32)
coords, info = layout(x, n_neighbors=10, seed=0, backend="umap-learn")
print(json.dumps(coords.tolist()))
"""


@pytest.mark.slow
def test_layout_with_warm_numba_cache_equals_cold(tmp_path):
    """A fresh process with an empty numba cache and a second one reusing it lay out the same points."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")}

    def run() -> np.ndarray:
        out = subprocess.run([sys.executable, "-c", _LAYOUT_CHILD], env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr[-3000:]
        return np.array(json.loads(out.stdout.strip().splitlines()[-1]))

    cold = run()
    assert any((tmp_path / "numba").rglob("*.nbi")), "numba wrote no cache index"
    warm = run()
    np.testing.assert_allclose(warm, cold, atol=1e-6)


def _v2_transform(spec: ModelSpec, image) -> torch.Tensor:
    """The per-image torchvision v2 pipeline ``ModelSpec.transform`` used to build (the reference)."""
    from torchvision.transforms import v2

    steps = [v2.PILToTensor()]
    if spec.resize:
        steps.append(v2.Resize(spec.resize, antialias=True))
    steps += [v2.CenterCrop(spec.input_size), v2.ToDtype(torch.float32, scale=True)]
    return v2.Compose(steps)(image)


@pytest.mark.parametrize(
    "resize, crop, size",
    [(0, (32, 32), (32, 32)), (40, (32, 32), (57, 43)), (256, (224, 224), (300, 200)), (0, (32, 32), (20, 50))],
)
def test_pixels_then_batch_scaling_equal_the_v2_pipeline_bit_for_bit(resize, crop, size):
    """collect's loader moves uint8 (``spec.pixels``) and scales whole batches (``to_float``): the same floats."""
    from PIL import Image

    from actlas.models.spec import to_float
    from actlas.stages.collect import collate as _collate

    spec = ModelSpec(name="t", source="t", input_size=crop, resize=resize)
    rng = np.random.default_rng(3)
    images = [Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)) for _ in range(3)]
    want = torch.stack([_v2_transform(spec, im) for im in images])
    pixels = [spec.pixels(im) for im in images]
    assert all(p.dtype == torch.uint8 and tuple(p.shape) == (3, *crop) for p in pixels)
    assert torch.equal(to_float(torch.stack(pixels)), want)
    assert torch.equal(torch.stack([spec.transform(im) for im in images]), want)
    x, *_ = _collate([(p, True, "", size) for p in pixels])
    assert x.dtype == torch.float32 and torch.equal(x, want)


class _ConvBN(nn.Module):
    """conv -> BatchNorm -> relu, twice, then a linear head; BatchNorm statistics far from identity."""

    def __init__(self, reuse: bool = False):
        super().__init__()
        torch.manual_seed(3)
        self.conv1, self.bn1 = nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 10)
        self.reuse = reuse  # conv2's output also feeds the sum after bn2: folding would change it
        for bn in (self.bn1, self.bn2):
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.2, 3)
            bn.weight.data.uniform_(0.5, 2)
            bn.bias.data.uniform_(-1, 1)

    def forward(self, x):
        y = self.conv2(torch.relu(self.bn1(self.conv1(x))))
        z = torch.relu(self.bn2(y)) + (y if self.reuse else 0)
        return self.fc(z.mean((2, 3)))


def _outputs(net, layers, x):
    from actlas.nn.layers import capture

    with torch.no_grad(), capture(net, layers) as outs:
        logits = net(x)
    return logits, {name: outs[name].clone() for name in layers}


@pytest.mark.parametrize("layer", ["bn1", "conv2"])
def test_fold_batchnorm_keeps_the_function_and_the_layer(layer):
    from actlas.nn.fastpaths import fold_batchnorm

    net = _ConvBN().eval()
    x = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    logits, acts = _outputs(net, [layer], x)
    n = fold_batchnorm(net, SPEC, [layer], 16)
    assert n == 1  # the pair holding the layer stays: bn1 is the layer, or conv2 is
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == 1
    logits2, acts2 = _outputs(net, [layer], x)
    torch.testing.assert_close(logits2, logits, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(acts2[layer], acts[layer], rtol=1e-4, atol=1e-5)


def test_fold_batchnorm_undoes_a_fold_that_changes_the_output():
    from actlas.nn.fastpaths import fold_batchnorm

    net = _ConvBN(reuse=True).eval()
    x = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    logits, _ = _outputs(net, [], x)
    assert fold_batchnorm(net, SPEC, ["bn1"], 16) == 0  # conv2's output is read twice: every fold undone
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == 2 and net.conv1.bias is None
    assert torch.equal(_outputs(net, [], x)[0], logits)
    assert fold_batchnorm(net.train(), SPEC, [], 16) == 0  # training mode: the batch's statistics, nothing folded


@pytest.mark.slow
def test_fold_batchnorm_on_the_real_mobilenet(mobilenet):
    from actlas.nn.fastpaths import fold_batchnorm

    net, spec = copy.deepcopy(mobilenet[0]), mobilenet[1]  # the session's model stays as loaded
    x = torch.rand(2, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    logits, acts = _outputs(mobilenet[0], ["features.13"], spec.normalize(x))
    assert fold_batchnorm(net, spec, ["features.13"], 96) == 52  # every conv -> BatchNorm pair
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    logits2, acts2 = _outputs(net, ["features.13"], spec.normalize(x))  # the layer's hook still fires
    torch.testing.assert_close(acts2["features.13"], acts["features.13"], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(logits2, logits, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("size", [(15, 15), (16, 16), (8, 9), (15, 12)])
@pytest.mark.parametrize(
    "kernel, stride, dilation, groups",
    [(3, 1, 1, 1), (3, 2, 1, 1), (3, 2, 1, 4), (5, 2, 1, 1), (4, 2, 1, 1), (3, 2, 2, 1), (2, 3, 1, 1)],
)
def test_same_padding_conv_equals_explicit_padding(size, kernel, stride, dilation, groups):
    # Conv2dSame: the output of F.pad then a plain convolution, for even and uneven splits, in both memory formats.
    import torch.nn.functional as F

    from actlas.nn.padding import Conv2dSame, same_padding, use_tf_same_padding

    torch.manual_seed(0)
    conv = use_tf_same_padding(nn.Sequential(nn.Conv2d(4, 8, kernel, stride=stride, dilation=dilation, groups=groups)))[
        0
    ]
    assert isinstance(conv, Conv2dSame)
    x = torch.rand(2, 4, *size)
    want = F.conv2d(F.pad(x, same_padding(x.shape[-2:], conv)), conv.weight, conv.bias, stride, 0, dilation, groups)
    for fmt in (torch.contiguous_format, torch.channels_last):
        got = conv(x.contiguous(memory_format=fmt))
        assert got.shape == (2, 8, -(-size[0] // stride), -(-size[1] // stride))
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("batch, threads", [(1, 1), (8, 1), (20, 1), (8, 2)])
def test_pointwise_matmul_equals_the_convolution_bit_for_bit(batch, threads, mobilenet):
    # A 1x1 convolution run as a matmul over the channels-last tensor, where torch would run it
    # through im2col (one thread, under 16 images): the very bits of the convolution, values and
    # input gradients, on the real MobileNetV2 to features.13; elsewhere the convolution itself.
    from actlas.nn.fastpaths import PointwiseConv2d, pointwise_as_matmul
    from actlas.nn.layers import capture, run_until

    net, spec = copy.deepcopy(mobilenet[0]), mobilenet[1]
    x = torch.rand(batch, 3, 64, 64, generator=torch.Generator().manual_seed(0))

    def run(model, fmt):
        xi = x.clone().contiguous(memory_format=fmt).requires_grad_(True)
        with capture(model, ["features.13"], stop=True) as outs:
            h = run_until(model, spec.normalize(xi), outs)["features.13"]
        h.square().sum().backward()
        return h.detach(), xi.grad

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        want = run(net.to(memory_format=torch.channels_last), torch.channels_last)
        assert pointwise_as_matmul(net) == 34  # features.1's project, expand and project of 16 blocks, features.18
        probe = torch.zeros(batch, 16, 4, 4).contiguous(memory_format=torch.channels_last)
        assert PointwiseConv2d.runs_as_matmul(probe) == (batch < 16 and threads == 1)
        assert not PointwiseConv2d.runs_as_matmul(probe.contiguous())
        got = run(net, torch.channels_last)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    finally:
        torch.set_num_threads(before)


_ALLOCATOR_CHILD = """
import hashlib, json, sys
import numpy as np, torch
sys.path.insert(0, {tests!r})
from actlas.allocator import keep_freed_memory
tuned = keep_freed_memory() if sys.argv[1] == "tuned" else False
torch.set_num_threads(1)
from tiny_models import TinyNet
from actlas.models.spec import ModelSpec
from actlas.settings import RenderParams
from actlas.viz.render import render
spec = ModelSpec(name="tiny", source="tiny_models:tiny_net", input_size=(32, 32), resize=32, mean=(0.5,) * 3,
                 std=(0.25,) * 3)
directions = np.random.default_rng(0).normal(size=(4, 16)).astype(np.float32)
out = render(TinyNet().eval(), spec, "features.3", directions, params=RenderParams(size=32, steps=24, batch_size=4),
             progress=False)
print(json.dumps([tuned, hashlib.sha256(out["icon"].tobytes()).hexdigest()]))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_keeping_freed_memory_leaves_icons_the_same_bytes_and_a_users_settings_alone(monkeypatch):
    """``keep_freed_memory`` (the CLI calls it) changes where tensors live, not what is computed; and a
    user's own MALLOC_* settings win."""
    from pathlib import Path

    from actlas.allocator import USER_SETTINGS, keep_freed_memory

    code = _ALLOCATOR_CHILD.format(tests=str(Path(__file__).parent))
    env = {k: v for k, v in os.environ.items() if k not in USER_SETTINGS}
    runs = {}
    for mode in ("tuned", "default"):
        out = subprocess.run([sys.executable, "-c", code, mode], env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr[-3000:]
        runs[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    assert runs["tuned"][0] is True, "glibc's thresholds were not set"
    assert runs["tuned"][1] == runs["default"][1]
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "131072")
    assert keep_freed_memory() is False
