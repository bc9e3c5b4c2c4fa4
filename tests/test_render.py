import copy
import dataclasses

import numpy as np
import pytest
import torch

from actlas.models.spec import ModelSpec
from actlas.settings import RenderParams
from actlas.viz import objectives, param, transforms
from actlas.viz.render import _optimise, render

SPEC = ModelSpec(
    name="tiny", source="tiny_models:tiny_net", input_size=(32, 32), resize=32, mean=(0.5,) * 3, std=(0.25,) * 3
)
FAST = RenderParams(size=32, steps=24, lr=0.05, batch_size=8, pad=4, jitter=2)


def _directions(tiny_model, k=3):
    x = torch.rand(k, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        h = tiny_model.features(SPEC.normalize(x))
    return objectives.centre(h).numpy()


def test_fft_image_has_unit_scale_whatever_the_size():
    for size in (32, 128):
        params, image_fn = param.image(2, size, seeds=[0, 1], sd=0.01)
        img = image_fn()
        assert img.shape == (2, 3, size, size)
        assert 0.4 < img.mean().item() < 0.6  # sigmoid of a small signal: mid-grey start, not noise
        assert img.std().item() < 0.05


def test_transform_draws_do_not_depend_on_batch():
    a = transforms.draw([5, 6], 10)
    b = transforms.draw([6], 10)
    np.testing.assert_array_equal(a[1], b[0])
    x = torch.rand(2, 3, 16, 16)
    y = transforms.standard(x, torch.from_numpy(a[:, 0]), pad_amount=4)
    assert y.shape == (2, 3, 24, 24)


def test_transform_scale_and_rotation_follow_their_settings():
    """render.scale and render.rotate bound the draws; at 0.1 and 10 they are Lucid's lists, the
    very float32 values the draws had before the settings existed (icon keys kept)."""
    np.testing.assert_array_equal(np.float32(transforms.scales(0.1)), np.float32([1 + (i - 5) / 50 for i in range(11)]))
    assert transforms.angles(10) == list(range(-10, 11)) + 5 * [0]
    d = transforms.draw(list(range(8)), 200, 4, 2, scale=0.3, rotate=25)
    assert d[..., 2].min() == pytest.approx(0.7) and d[..., 2].max() == pytest.approx(1.3)
    assert d[..., 3].min() == -25 and d[..., 3].max() == 25
    np.testing.assert_array_equal(transforms.draw([3], 50), transforms.draw([3], 50, 8, 4, 0.1, 10))


def test_objective_rises_within_a_few_steps(tiny_model):
    d = torch.from_numpy(_directions(tiny_model, 2))
    d = d / d.norm(dim=1, keepdim=True)
    _, short = _optimise(
        tiny_model, SPEC, "features.4", d, [1, 2], RenderParams(size=32, steps=1, pad=4, jitter=2), "cpu"
    )
    _, long = _optimise(
        tiny_model, SPEC, "features.4", d, [1, 2], RenderParams(size=32, steps=30, pad=4, jitter=2), "cpu"
    )
    assert (long > short).all()


def test_warmup_ramps_the_first_steps(tiny_model):
    d = torch.from_numpy(_directions(tiny_model, 2))
    d = d / d.norm(dim=1, keepdim=True)
    p = RenderParams(size=32, steps=4, pad=4, jitter=2, check_every=0, coarse=0, lr=0.05, decay_power=1.25)
    plain, _ = _optimise(tiny_model, SPEC, "features.4", d, [1, 2], p, "cpu")
    ramped, _ = _optimise(tiny_model, SPEC, "features.4", d, [1, 2], dataclasses.replace(p, warmup=40), "cpu")
    # four steps at a tenth of lr or less move the image from its grey start far less than four at lr
    assert (ramped - 0.5).abs().mean() < 0.5 * (plain - 0.5).abs().mean()


def test_every_render_setting_and_the_cache_format_key_an_icon(monkeypatch):
    from actlas.stages import render as render_stage

    p = RenderParams(size=32, steps=4, pad=4, jitter=2)
    direction = np.arange(8, dtype=np.float32)
    key = render_stage.icon_key(direction, "c", "features.4", p)
    assert key == PINNED_KEY, key  # a key changes only with its inputs or ICON_CACHE_FORMAT
    for field, value in p.to_json().items():
        changed = dataclasses.replace(p, **{field: value + 1 if isinstance(value, (int, float)) else value + "x"})
        assert render_stage.icon_key(direction, "c", "features.4", changed) != key, field
    assert render_stage.icon_key(direction, "d", "features.4", p) != key
    monkeypatch.setattr(render_stage, "ICON_CACHE_FORMAT", render_stage.ICON_CACHE_FORMAT + 1)
    assert render_stage.icon_key(direction, "c", "features.4", p) != key


PINNED_KEY = "20299c492380693c7ce14985980cb0f1"  # ICON_CACHE_FORMAT 2


def test_an_icon_is_the_best_image_its_optimisation_saw(tiny_model):
    """check_every keeps, per image, the best-scoring of the start, every N-th step and the end:
    never below the start or the last image, and above the last where a large rate overshoots."""
    d = torch.from_numpy(_directions(tiny_model, 4))
    d = d / d.norm(dim=1, keepdim=True)
    seeds = [1, 2, 3, 4]
    p = RenderParams(size=32, steps=12, lr=1.0, pad=4, jitter=2, check_every=0, coarse=0)
    last_img, last = _optimise(tiny_model, SPEC, "features.4", d, seeds, p, "cpu")
    _, start = _optimise(tiny_model, SPEC, "features.4", d, seeds, dataclasses.replace(p, lr=0.0, steps=1), "cpu")
    best_img, best = _optimise(tiny_model, SPEC, "features.4", d, seeds, dataclasses.replace(p, check_every=1), "cpu")
    assert (best >= last).all() and (best >= start).all()
    assert (best > last + 0.05).sum() >= 2  # a rate of 1.0 overshoots: earlier images scored more
    kept = best == last  # where the last image was the best, it is that very image
    assert kept.any() and torch.equal(best_img[kept], last_img[kept])
    # the images come back with the scores they earned: scored again, the same
    from actlas.viz.render import centre_activations

    again = objectives.direction_cossim(centre_activations(tiny_model, SPEC, "features.4", best_img), d, p.power)
    torch.testing.assert_close(again, best)


def test_coarse_steps_move_only_the_low_frequencies(tiny_model):
    """render.coarse: the first steps change the image only in its lowest frequencies (4 cycles an
    icon, before the sigmoid), and the objective still rises; afterwards every frequency moves."""
    d = torch.from_numpy(_directions(tiny_model, 2))
    d = d / d.norm(dim=1, keepdim=True)
    p = RenderParams(size=32, steps=12, pad=4, jitter=2, check_every=0, coarse=0)
    start, s0 = _optimise(tiny_model, SPEC, "features.4", d, [1, 2], dataclasses.replace(p, lr=0.0, steps=1), "cpu")

    def moved(images):  # the change in the sigmoid's input, and its energy above 4 cycles an icon
        change = torch.logit(images.clamp(1e-6, 1 - 1e-6)) - torch.logit(start.clamp(1e-6, 1 - 1e-6))
        power = torch.fft.rfft2(change, norm="ortho").abs() ** 2
        high = ~param.low_pass(power, 32, 4).bool()
        return float(power[..., high].sum() / power.sum())

    coarse, s1 = _optimise(tiny_model, SPEC, "features.4", d, [1, 2], dataclasses.replace(p, coarse=12), "cpu")
    free, _ = _optimise(tiny_model, SPEC, "features.4", d, [1, 2], p, "cpu")
    later, _ = _optimise(tiny_model, SPEC, "features.4", d, [1, 2], dataclasses.replace(p, coarse=6), "cpu")
    assert (s1 > s0).all()
    assert moved(coarse) < 1e-6 < 0.01 < moved(free)
    assert moved(later) > 0.01


def test_lr_schedule_ramps_then_holds_or_decays_towards_lr_end():
    from actlas.viz.render import lr_schedule

    p = RenderParams(steps=10, lr=0.1, warmup=4)
    assert lr_schedule(p)[:4] == pytest.approx([0.025, 0.05, 0.075, 0.1])
    assert lr_schedule(p)[4:] == pytest.approx([0.1] * 6)
    cosine = lr_schedule(dataclasses.replace(p, schedule="cosine"))
    assert cosine[:4] == pytest.approx([0.025, 0.05, 0.075, 0.1])  # the warm-up, then the half cosine
    assert cosine[4] == pytest.approx(0.1) and all(a > b for a, b in zip(cosine[4:], cosine[5:]))
    assert cosine[-1] == pytest.approx(0.1 * 0.5 * (1 + np.cos(np.pi * 5 / 6)))
    assert lr_schedule(RenderParams(steps=3, lr=1.0, schedule="cosine")) == pytest.approx([1.0, 0.75, 0.25])
    # lr_end: the same half cosine between lr and lr_end
    assert lr_schedule(RenderParams(steps=3, lr=1.0, schedule="cosine", lr_end=0.2)) == pytest.approx([1.0, 0.8, 0.4])
    assert lr_schedule(RenderParams(steps=3, lr=1.0, lr_end=0.2)) == pytest.approx([1.0] * 3)  # constant: unused
    with pytest.raises(ValueError, match="render.schedule 'linear' is not one of constant, cosine"):
        lr_schedule(dataclasses.replace(p, schedule="linear"))


def test_render_batched_equals_one_by_one(tiny_model):
    """An icon is the same bytes alone, with others, first or last in its batch: torch picks
    convolution kernels by batch size, so a cached icon would otherwise differ from a fresh one."""
    d = _directions(tiny_model, 3)
    together = render(tiny_model, SPEC, "features.4", d, params=FAST, progress=False)
    alone = [render(tiny_model, SPEC, "features.4", d[i : i + 1], params=FAST, progress=False) for i in range(3)]
    backwards = render(tiny_model, SPEC, "features.4", d[::-1], params=FAST, progress=False)
    for i in range(3):
        np.testing.assert_array_equal(together["icon"][i], alone[i]["icon"][0])
        np.testing.assert_array_equal(together["icon"][i], backwards["icon"][2 - i])
        assert together["objective"][i] == alone[i]["objective"][0]
        assert together["faithfulness"][i] == alone[i]["faithfulness"][0]


def test_a_short_batch_costs_at_most_the_default_batch(tiny_model):
    """One icon at the default batch size: the model sees batches of ``RenderParams().batch_size`` rows
    (the padding that keeps an icon's bytes independent of its batch), and that is small."""
    d = _directions(tiny_model, 1)
    seen = []
    hook = tiny_model.features[0].register_forward_hook(lambda m, i, o: seen.append(len(i[0])))
    try:
        params = dataclasses.replace(FAST, batch_size=RenderParams().batch_size, steps=2)
        render(tiny_model, SPEC, "features.4", d, params=params, progress=False)
    finally:
        hook.remove()
    assert seen and set(seen) == {RenderParams().batch_size} and RenderParams().batch_size <= 8


@pytest.mark.slow
def test_mobilenet_icons_do_not_depend_on_their_batch(card):
    """The shared MobileNetV2, whose first convolution takes another kernel for a batch of one."""
    from actlas.layout import moments, whitening
    from actlas.models.load import load_model

    net, spec = load_model(str(card))
    x = torch.rand(8, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        h = net.features[:14](spec.normalize(x))
    d = objectives.centre(h).numpy()[:4]
    # whitened as the render stage does: the whitening product once rounded differently with 4 rows than with 1
    w = whitening(moments(h.permute(0, 2, 3, 1).reshape(-1, h.shape[1]).numpy())[1], eps=0.1)
    p = RenderParams(size=32, min_positions=0, steps=6, batch_size=4)
    together = render(net, spec, "features.13", d, whitening=w, params=p, progress=False)
    for i in range(4):
        alone = render(net, spec, "features.13", d[i : i + 1], whitening=w, params=p, progress=False)
        np.testing.assert_array_equal(together["icon"][i], alone["icon"][0])
        assert together["faithfulness"][i] == alone["faithfulness"][0]


def test_render_is_deterministic_and_scores_faithfulness(tiny_model):
    d = _directions(tiny_model, 2)
    a = render(tiny_model, SPEC, "features.4", d, params=FAST, progress=False)
    b = render(tiny_model, SPEC, "features.4", d, params=FAST, progress=False)
    assert a["icon"].shape == (2, 32, 32, 3) and a["icon"].dtype == np.uint8
    assert np.array_equal(a["icon"], b["icon"])
    assert (a["faithfulness"] > 0.5).all()  # the icon's activation points along its direction


def test_best_of_tries_never_worse(tiny_model):
    d = _directions(tiny_model, 2)
    one = render(tiny_model, SPEC, "features.4", d, params=FAST, progress=False)
    three = render(
        tiny_model, SPEC, "features.4", d, params=RenderParams(**{**FAST.to_json(), "tries": 3}), progress=False
    )
    assert (three["objective"] >= one["objective"] - 1e-6).all()


def test_whitening_is_used(tiny_model):
    d = _directions(tiny_model, 1)
    w = np.diag(np.linspace(0.1, 3, d.shape[1])).astype(np.float32)
    a = render(tiny_model, SPEC, "features.4", d, params=FAST, progress=False)
    b = render(tiny_model, SPEC, "features.4", d, whitening=w, params=FAST, progress=False)
    assert not np.array_equal(a["icon"], b["icon"])


def test_maco_keeps_its_magnitude_and_renders_like_fft(tiny_model):
    params, image_fn = param.maco_image(2, 32, seeds=[3, 4])
    img = image_fn()
    assert img.shape == (2, 3, 32, 32) and img.min() >= 0 and img.max() <= 1
    assert params[0].shape == (2, 3, 32, 17)  # only the phase is a parameter
    d = _directions(tiny_model, 2)
    maco = RenderParams(size=32, steps=24, lr=0.05, batch_size=8, pad=4, jitter=2, param="maco")
    together = render(tiny_model, SPEC, "features.4", d, params=maco, progress=False)
    alone = render(tiny_model, SPEC, "features.4", d[1:], params=maco, progress=False)
    assert np.abs(together["icon"][1].astype(int) - alone["icon"][0].astype(int)).mean() < 1.0
    t = torch.from_numpy(d / np.linalg.norm(d, axis=1, keepdims=True))
    _, short = _optimise(tiny_model, SPEC, "features.4", t, [1, 2], dataclasses.replace(maco, steps=1), "cpu")
    _, long = _optimise(tiny_model, SPEC, "features.4", t, [1, 2], dataclasses.replace(maco, steps=30), "cpu")
    assert (long > short).all()


def test_an_unknown_parameterisation_fails_naming_the_valid_ones(tiny_model):
    with pytest.raises(ValueError, match="fft, maco"):
        render(
            tiny_model,
            SPEC,
            "features.4",
            _directions(tiny_model, 1),
            params=RenderParams(size=32, steps=1, param="nope"),
            progress=False,
        )


def test_the_render_stage_sizes_icons_by_the_layer(tmp_path):
    """The render stage fits the icon to its layer (``fit_to_layer``): what the batch file records and holds."""
    import json
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from _tiny_run import LAYER, MODEL, make_tiny_run

    from actlas import paths
    from actlas.models.load import load_model
    from actlas.nn.layers import layer_kinds
    from actlas.stages.render import render as render_stage
    from actlas.viz.render import fit_to_layer

    run = make_tiny_run(tmp_path, render=False)
    net, spec = load_model(MODEL)
    ((_, _, grid),) = layer_kinds(net, [LAYER], spec.input_size).values()
    asked = RenderParams(size=16, min_positions=24, steps=1, batch_size=16, pad=0, jitter=1)
    want = fit_to_layer(asked, spec.input_size, grid).size
    assert want == 48  # 24 positions of the tiny layer (stride 2) raise it
    batch = render_stage(run, LAYER, 3, MODEL, params=asked, device="cpu", progress=False, cache=False)
    with np.load(batch) as f:
        assert f["icon"].shape[1:] == (want, want, 3)
        assert json.loads(str(f["params"]))["size"] == want
    assert paths.render_batch(paths.grid_dir(run, LAYER, 3), 0) == batch


def test_icons_are_optimised_in_channels_last_unless_the_model_cannot_run_in_it(tiny_model):
    """channels_last makes CPU convolutions faster; a model whose forward breaks in it keeps its format and renders."""
    from torch import nn

    from actlas.nn.fastpaths import memory_format_for

    class Viewing(nn.Module):  # flattens with .view: fails on a channels_last tensor
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.head = nn.Linear(4 * 8 * 8, 3)

        def forward(self, x):
            h = self.conv(x)
            return self.head(h.view(h.shape[0], -1))

    import copy

    assert memory_format_for(copy.deepcopy(tiny_model), SPEC, "features.4", 32) == torch.channels_last
    net = Viewing().eval().requires_grad_(False)
    spec = dataclasses.replace(SPEC, input_size=(8, 8), resize=8)
    fmt = memory_format_for(net, spec, "head", 8)
    assert fmt == torch.contiguous_format
    assert net.conv.weight.is_contiguous()
    out = render(
        net,
        spec,
        "head",
        np.eye(3, dtype=np.float32)[:1],
        params=RenderParams(size=8, steps=2, batch_size=1, pad=0, jitter=1),
        memory_format=fmt,
        progress=False,
    )
    assert out["icon"].shape == (1, 8, 8, 3)


def test_photo_mean_reads_the_positions_collect_averages():
    """objectives.photo_mean is collect's photo mean (actlas.collect.photo_means): edges left out from 5 a side."""
    from actlas.collect import photo_means

    for hw in [(7, 7), (4, 4), (8, 5), (1, 1)]:
        a = torch.randn(2, 3, *hw, generator=torch.Generator().manual_seed(0))
        means, _ = photo_means(a, torch.zeros(2, 1, *hw))
        np.testing.assert_allclose(objectives.photo_mean(a).numpy(), means, rtol=1e-5, atol=1e-6)
    a = torch.zeros(1, 1, 7, 7)
    a[..., 0, :] = 100.0  # an edge row: not a position collect averages
    assert objectives.photo_mean(a).item() == 0.0 and objectives.pooled(a, "centre").item() == 0.0


def test_mean_pool_optimises_and_scores_the_icon_mean(tiny_model):
    """pool="mean" (aligned atlases): the objective and faithfulness read the icon's mean over its positions;
    its faithfulness is the cosine of that mean to the direction, and its icons are not the centre's."""
    from actlas.errors import ConfigError
    from actlas.viz.render import centre_activations

    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        d = objectives.photo_mean(tiny_model.features(SPEC.normalize(x))).numpy()
    mean = render(tiny_model, SPEC, "features.4", d, params=FAST, progress=False, pool="mean")
    centre = render(tiny_model, SPEC, "features.4", d, params=FAST, progress=False)
    assert not np.array_equal(mean["icon"], centre["icon"])
    icons = torch.from_numpy(mean["icon"]).permute(0, 3, 1, 2).float() / 255
    read = objectives.cosine(centre_activations(tiny_model, SPEC, "features.4", icons, "mean"), torch.from_numpy(d))
    np.testing.assert_allclose(read.numpy(), mean["faithfulness"], atol=0.02)  # the saved icon is 8-bit
    assert (mean["faithfulness"] > 0.5).all()
    with pytest.raises(ConfigError, match="centre, mean"):
        render(tiny_model, SPEC, "features.4", d, params=FAST, progress=False, pool="max")


def test_output_relus_are_the_relu_a_layer_ends_in(tiny_model):
    from actlas.viz.render import output_relus

    x = torch.rand(1, 3, 32, 32)
    assert output_relus(tiny_model, SPEC, "features.4", x) == [tiny_model.features[4]]  # the ReLU layer itself
    assert output_relus(tiny_model, SPEC, "features", x) == [tiny_model.features[4]]  # a block ending in it
    assert output_relus(tiny_model, SPEC, "features.3", x) == []  # a convolution: nothing to redirect


def test_redirect_wakes_a_channel_dead_at_the_start(tiny_model):
    """A direction on one channel that is 0 at the start image's centre has no gradient through the layer's
    ReLU: without redirect its icon never leaves the start (faithfulness 0); redirected, it makes it fire."""
    seeds = [1, 2]
    p = RenderParams(size=32, steps=24, lr=0.05, pad=4, jitter=2, check_every=0)
    _, image_fn = param.PARAMETERISATIONS[p.param](2, p.size, seeds=seeds, decay_power=p.decay_power)
    with torch.no_grad():
        start = objectives.centre(tiny_model.features(SPEC.normalize(image_fn())))
    dead = int(torch.nonzero((start == 0).all(0))[0])  # a channel 0 at the centre of both start images
    direction = torch.zeros(2, 16)
    direction[:, dead] = 1.0
    plain, _ = _optimise(tiny_model, SPEC, "features.4", direction, seeds, p, "cpu")
    woken, _ = _optimise(tiny_model, SPEC, "features.4", direction, seeds, dataclasses.replace(p, redirect=8), "cpu")
    with torch.no_grad():
        h_plain = objectives.centre(tiny_model.features(SPEC.normalize(plain)))
        h_woken = objectives.centre(tiny_model.features(SPEC.normalize(woken)))
    assert (h_plain[:, dead] == 0).all()
    assert (h_woken[:, dead] > 0).all()  # it fires: on this random net's unselective channel, cosine 0.25-0.3
    assert (objectives.cosine(h_woken, direction) > 0.2).all(), objectives.cosine(h_woken, direction)
    # only the first steps are redirected, and the ReLU modules are left as they were
    assert not tiny_model.features[4]._forward_hooks and not tiny_model.features[4]._forward_pre_hooks
    # an in-place ReLU (torchvision's) is redirected too: the same image, bit for bit
    inplace = copy.deepcopy(tiny_model)
    for m in inplace.features:
        if isinstance(m, torch.nn.ReLU):
            m.inplace = True
    again, _ = _optimise(inplace, SPEC, "features.4", direction, seeds, dataclasses.replace(p, redirect=8), "cpu")
    torch.testing.assert_close(again, woken, rtol=0, atol=0)
