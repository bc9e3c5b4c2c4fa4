"""Patch experiments: compositing, Wilson intervals, controls on the same photos, a tiny end-to-end run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from actlas.models.spec import ModelSpec
from actlas.patches.experiment import (
    Photos,
    corner_offset,
    evaluate_patch,
    paste,
    patch_side,
    predict,
    random_crops,
    run_trial,
    split_halves,
    variants,
)
from actlas.patches.photos import choose_photos
from actlas.patches.stats import Trial, beats_controls, summarise, wilson
from actlas.settings import CORNERS
from actlas.stages.patch import load_patch

pytestmark = pytest.mark.usefixtures("trust_code")  # the tests' own factories (tiny_models:...)

SPEC = ModelSpec(
    name="tiny",
    source="tiny_models:tiny_net",
    input_size=(32, 32),
    resize=32,
    categories=tuple(f"class {i}" for i in range(10)),
)


@pytest.mark.parametrize("corner", CORNERS)
@pytest.mark.parametrize("size", [0.2, 0.3, 0.45, 0.5, 1.0])
@pytest.mark.parametrize("hw", [(32, 32), (24, 40)])
def test_paste_lands_in_the_corner_and_nowhere_else(corner, size, hw):
    images = torch.zeros(2, 3, *hw)
    patch = torch.ones(3, 5, 5)
    out = paste(images, patch, corner, size)
    side = round(size * min(hw))
    assert patch_side(size, hw) == side
    mask = out[0, 0] > 0.5
    ys, xs = np.nonzero(mask.numpy())
    assert mask.sum() == side * side  # the whole patch is inside the image
    assert (ys.min(), xs.min()) == corner_offset(corner, side, hw)
    assert ys.min() == (0 if corner.startswith("top") else hw[0] - side)
    assert xs.min() == (0 if corner.endswith("left") else hw[1] - side)
    assert ys.max() < hw[0] and xs.max() < hw[1]
    assert torch.equal(out[1], out[0]) and images.sum() == 0  # every image, input untouched


def test_paste_per_image_patches_and_pixel_values():
    images = torch.zeros(2, 3, 20, 20)
    patch = torch.stack([torch.full((3, 4, 4), 0.25), torch.full((3, 4, 4), 0.75)])
    out = paste(images, patch, "top-left", 0.2)
    assert torch.allclose(out[0, :, :4, :4], torch.tensor(0.25))
    assert torch.allclose(out[1, :, :4, :4], torch.tensor(0.75))
    assert out[:, :, 4:, :].abs().sum() == 0 and out[:, :, :, 4:].abs().sum() == 0


def test_paste_rejects_bad_corner_and_size():
    with pytest.raises(ValueError, match="top-left"):
        paste(torch.zeros(1, 3, 8, 8), torch.ones(3, 2, 2), "middle", 0.3)
    with pytest.raises(ValueError, match="fraction"):
        paste(torch.zeros(1, 3, 8, 8), torch.ones(3, 2, 2), "top-left", 1.5)


def test_variants_order_is_image_corner_size():
    images = torch.zeros(3, 3, 16, 16)
    images[1] += 0.5
    v = variants(images, torch.ones(3, 2, 2), CORNERS, (0.25, 0.5)).reshape(3, 4, 2, 3, 16, 16)
    assert v.shape == (3, 4, 2, 3, 16, 16)
    assert torch.allclose(v[1, 0, 0, :, 8:, 8:], torch.tensor(0.5))  # image 1 kept its pixels
    assert v[0, 3, 1, 0, 8:, 8:].min() == 1 and v[0, 3, 1, 0, :8, :8].max() == 0  # bottom-right, half side
    assert v[2, 1, 0, 0, :4, 12:].min() == 1  # top-right, quarter side


@pytest.mark.parametrize(
    "k,n,lo,hi", [(0, 10, 0.0, 0.2775), (10, 10, 0.7225, 1.0), (5, 10, 0.2366, 0.7634), (37, 100, 0.2817, 0.4682)]
)
def test_wilson_interval_known_values(k, n, lo, hi):
    a, b = wilson(k, n)
    assert a == pytest.approx(lo, abs=1e-3) and b == pytest.approx(hi, abs=1e-3)


def test_wilson_formula_and_edges():
    k, n, z = 7, 23, 1.959964
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert wilson(k, n) == pytest.approx((centre - half, centre + half))
    assert wilson(0, 0) == (0.0, 1.0)
    lo, hi = wilson(3, 30)
    assert lo < 0.1 < hi


def test_summarise_static_dynamic_and_probabilities():
    top = np.zeros((4, 4, 2), dtype=np.int64)
    prob = np.full((4, 4, 2), 0.1)
    top[0, 3, 1] = 7  # static hit (bottom-right, 0.45)
    prob[0, 3, 1] = 0.9
    top[1, 0, 0] = 7  # dynamic-only hit
    prob[1, 0, 0] = 0.6
    top[3, 3, 1] = 7  # excluded image
    trial = Trial(prob, top, CORNERS, (0.3, 0.45))
    keep = np.array([True, True, True, False])
    s = summarise(trial, 7, np.array([0.05, 0.05, 0.05, 0.9]), keep, ("bottom-right", 0.45))
    assert s["n"] == 3 and s["static"]["k"] == 1 and s["dynamic"]["k"] == 2
    assert s["prob_before"] == pytest.approx(0.05)
    assert s["prob_after_static"] == pytest.approx((0.9 + 0.1 + 0.1) / 3, abs=1e-4)
    assert s["prob_after_dynamic"] == pytest.approx((0.9 + 0.6 + 0.1) / 3, abs=1e-4)
    assert s["static"]["ci"][0] < 1 / 3 < s["static"]["ci"][1]


def test_choose_photos_and_halves_are_deterministic_and_disjoint():
    rows = [(f"p{i}", i % 5) for i in range(50)]
    src, sample, pool = choose_photos(rows, 1, 2, 20, seed=3)
    assert {r[1] for r in src} == {1} and len(src) == 10
    assert all(r[1] not in (1, 2) for r in sample + pool) and len(sample) == 20
    assert not set(sample) & set(pool)
    assert choose_photos(rows, 1, 2, 20, seed=3) == (src, sample, pool)
    a, b = split_halves(11, 0)
    assert len(a) == 5 and len(b) == 6 and not set(a) & set(b) and set(a) | set(b) == set(range(11))


def test_random_crops_come_from_the_pool():
    pool = torch.stack([torch.full((3, 30, 30), v) for v in (0.2, 0.6)])
    crops = random_crops(pool, 8, 6, seed=0)
    assert crops.shape == (8, 3, 6, 6)
    assert {round(float(v), 3) for v in crops.mean((1, 2, 3))} <= {0.2, 0.6}


def test_controls_use_the_same_photos_and_protocol(tiny_model):
    torch.manual_seed(0)
    x = torch.rand(6, 3, 32, 32)
    prob, top = predict(tiny_model, SPEC, x, 3)
    target = int(np.bincount(top, minlength=10).argmin())
    prob, top = predict(tiny_model, SPEC, x, target)
    photos = Photos(
        x,
        [f"p{i}" for i in range(6)],
        np.array([0, 0, 1, 1, 2, 2]),
        np.array([True, True, False, False, False, False]),
        torch.rand(3, 3, 32, 32),
    )
    trials = {}
    subset = np.array([0, 2, 3, 5])
    entry = evaluate_patch(
        tiny_model,
        SPEC,
        photos,
        "p",
        torch.rand(3, 8, 8),
        target,
        clean_prob=prob,
        clean_top=top,
        subset=subset,
        trials=trials,
    )
    kinds = {k for (_, k) in trials}
    assert kinds == {"patch", "noise", "random_image"}
    for idx, trial in trials.values():
        assert np.array_equal(idx, subset)  # same photos
        assert trial.prob.shape == (4, 4, 2) and trial.corners == CORNERS  # same protocol
    pops = entry["populations"]["not_target"]
    assert pops["patch"]["n"] == pops["noise"]["n"] == pops["random_image"]["n"] == int((top[subset] != target).sum())
    assert pops["patch"]["prob_before"] == pops["noise"]["prob_before"]
    # the batched trial equals pasting one image at a time
    _, trial = trials[("p", "patch")]
    one = paste(x[2:3], torch.rand(3, 8, 8), "top-left", 0.3)
    p1, _ = predict(tiny_model, SPEC, one, target)
    assert p1.shape == (1,)
    single = run_trial(tiny_model, SPEC, x[subset][1:2], torch.ones(3, 8, 8) * 0.5, target, batch_size=3)
    whole = run_trial(tiny_model, SPEC, x[subset], torch.ones(3, 8, 8) * 0.5, target, batch_size=64)
    np.testing.assert_allclose(single.prob[0], whole.prob[1], rtol=1e-4, atol=1e-6)
    assert isinstance(beats_controls(entry)["static"], bool)


def test_load_patch_cell_and_image(tmp_path):
    icons = tmp_path / "run" / "features.13" / "grid-8" / "icons"
    icons.mkdir(parents=True)
    Image.fromarray(np.full((10, 10, 3), 200, np.uint8)).save(icons / "3_4.png")
    name, patch = load_patch("cell:3,4", tmp_path / "run", "features.13")
    assert name == "grid-8:3,4" and patch.shape == (3, 10, 10) and patch.max() == pytest.approx(200 / 255)
    with pytest.raises(FileNotFoundError, match="3,4"):
        load_patch("cell:grid-8:1,1", tmp_path / "run", "features.13")
    img = tmp_path / "a.png"
    arr = np.zeros((20, 30, 3), np.uint8)
    arr[5:10, 10:20] = 255
    Image.fromarray(arr).save(img)
    name, patch = load_patch(f"image:{img}:10,5,20,10", tmp_path, "x")
    assert patch.shape == (3, 5, 10) and patch.min() == 1.0
    with pytest.raises(ValueError, match="inside"):
        load_patch(f"image:{img}:10,5,40,10", tmp_path, "x")
    with pytest.raises(ValueError, match="cell:I,J"):
        load_patch("icon:1", tmp_path, "x")


@pytest.mark.slow
def test_patch_experiment_on_real_photos(card, tmp_path):
    """A few real photos through the whole experiment: report, markdown and figures."""
    from conftest import VAL

    from actlas.data.images import list_images
    from actlas.models.load import load_model
    from actlas.stages.patch import patch
    from actlas.stages.shards import split_rows, write_plan

    _, spec = load_model(card)
    dirs = [VAL / spec.synsets[spec.class_index(c)] for c in ("grey whale", "snorkel", "ibex", "tile roof")]
    rows = [r for d in dirs for r in list_images(d, spec.synsets, spec.categories)]
    run = tmp_path / "run"
    write_plan(run, split_rows(rows, 1))
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(tmp_path / "n.png")
    path = patch(
        run,
        "great white shark",
        card,
        source="grey whale",
        layer="features.13",
        patches=[f"image:{tmp_path / 'n.png'}"],
        sizes=(0.3,),
        corners=("top-left", "bottom-right"),
        max_images=6,
        batch_size=16,
        device="cpu",
    )
    report = json.loads(path.read_text())
    e = report["patches"][0]
    assert e["populations"]["source_correct"]["patch"]["n"] <= 2
    assert set(e["populations"]["not_target"]) == {"patch", "noise", "random_image"}
    assert (path.parent / "bars.png").exists() and (path.parent / "report.md").exists()


def test_commands_have_help_with_an_example(tmp_path):
    from click.testing import CliRunner

    from actlas.cli import main

    for command in ("class-atlas", "compare", "patch"):
        out = CliRunner().invoke(main, [command, "--help"])
        assert out.exit_code == 0 and "Example: actlas" in out.output
    (tmp_path / "shards").mkdir()
    out = CliRunner().invoke(
        main, ["patch", str(tmp_path), "--target", "3", "--model", "tiny_models:tiny_net", "--layer", "features.4"]
    )
    assert out.exit_code != 0 and "--patch" in out.output
    # the workflow passes --patch (the README's spelling); --patches is the field's own
    for flag in ("--patch", "--patches"):
        out = CliRunner().invoke(
            main,
            [
                "patch",
                str(tmp_path),
                "--target",
                "3",
                "--model",
                "tiny_models:tiny_net",
                "--layer",
                "features.4",
                flag,
                "image:/no/such.png",
            ],
        )
        assert out.exit_code != 0 and "No such option" not in out.output, out.output


def test_discovery_holds_out_every_source_photo(tiny_model):
    from actlas.patches.experiment import discover

    x = torch.rand(10, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    prob, top = predict(tiny_model, SPEC, x, 0)
    source = np.zeros(10, bool)
    source[[1, 6]] = True
    photos = Photos(x, [f"p{i}" for i in range(10)], np.where(source, 5, 0), source)
    cands = [("a", torch.rand(3, 6, 6)), ("b", torch.rand(3, 6, 6))]
    best, scores, search, held = discover(tiny_model, SPEC, photos, cands, 9, clean_top=top)
    assert {1, 6} <= set(held.tolist()) and not set(search.tolist()) & set(held.tolist())
    assert len(scores) == 2 and best in (0, 1)


def test_near_target_population_and_random_sample_stay_apart(tiny_model):
    """Photos added for the near population never enter not_target (the random sample stays random)."""
    x = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    _, top = predict(tiny_model, SPEC, x, 0)
    target = int(np.bincount(top, minlength=10).argmin())
    prob, top = predict(tiny_model, SPEC, x, target)
    near = np.array([0, 1, 0, 1, 1, 0, 1, 1], bool)
    extra = np.array([0, 0, 0, 0, 0, 0, 1, 1], bool)
    photos = Photos(
        x,
        [f"p{i}" for i in range(8)],
        np.zeros(8, int),
        np.zeros(8, bool),
        torch.rand(2, 3, 32, 32),
        near=near,
        extra=extra,
    )
    entry = evaluate_patch(tiny_model, SPEC, photos, "p", torch.rand(3, 8, 8), target, clean_prob=prob, clean_top=top)
    eligible = top != target
    pops = entry["populations"]
    assert pops["not_target"]["patch"]["n"] == int((eligible & ~extra).sum())
    assert pops["near_target"]["patch"]["n"] == pops["near_target"]["noise"]["n"] == int((eligible & near).sum())
    assert pops["near_target"]["patch"]["prob_before"] == pytest.approx(float(prob[eligible & near].mean()), abs=1e-4)


def test_near_target_mask_reads_the_stored_top5(tiny_dataset, tmp_path):
    from actlas.data import images, store
    from actlas.formats import shards as shard_files
    from actlas.stages.collect import collect
    from actlas.stages.patch import near_target_mask
    from actlas.stages.shards import split_rows, write_plan

    rows = images.list_images(tiny_dataset)
    run = tmp_path / "run"
    write_plan(run, split_rows(rows, 2))
    for lst in sorted((run / "shards").glob("shard-*.txt")):
        collect(
            lst,
            run / "collect" / lst.with_suffix(".zarr").name,
            "tiny_models:tiny_net",
            ["features.4"],
            positions=1,
            attr_top=3,
            batch_size=8,
            chunk=8,
            device="cpu",
            progress=False,
        )
    n = sum(len(shard_files.read_shard(p)) for p in (run / "shards").glob("shard-*.txt"))
    pred = store.read(sorted((run / "collect").glob("shard-*.zarr")), "images/pred")
    target = int(pred[:, 1][0])  # second choice of the first photo: near for it
    mask = near_target_mask(run, n, target)
    assert mask.shape == (n,) and mask[0]
    np.testing.assert_array_equal(mask, (pred[:, 1:] == target).any(1) & (pred[:, 0] != target))
    assert not near_target_mask(run, n + 1, target).any()  # stores that do not match the lists: no near photos
    assert not near_target_mask(tmp_path / "empty", 3, target).any()


RESNET20 = Path(__file__).resolve().parents[1] / "config" / "models" / "cifar10_resnet20.json"
CIFAR = Path(__file__).resolve().parents[2] / "shared" / "assets" / "images"


def _cifar_folder(root: Path, split: str, counts: dict[str, int]) -> Path:
    """A folder of class subfolders linking the first N real CIFAR-10 photos of each class."""
    for name, n in counts.items():
        (root / name).mkdir(parents=True)
        for path in sorted((CIFAR / split / name).iterdir())[:n]:
            (root / name / path.name).symlink_to(path)
    return root


def test_held_out_evaluation_never_searches_its_photos(tmp_path):
    """With evaluate, the rates come from held-out photos classified correctly, discovery searches the
    run's source photos only, and the dataset-patch crops of the target's cells are candidates."""
    from actlas.data import images
    from actlas.formats.atlas import AtlasMeta, CellRecord, Example, write_atlas
    from actlas.stages.patch import patch
    from actlas.stages.shards import split_rows, write_plan

    train = _cifar_folder(tmp_path / "train", "cifar10-train", {"cat": 24, "dog": 8, "ship": 8})
    held = _cifar_folder(tmp_path / "test", "cifar10-test", {"cat": 40, "dog": 4, "frog": 6})
    categories = tuple(json.loads(RESNET20.read_text())["labels"])
    rows = images.list_images(train, (), categories)
    run = tmp_path / "run"
    write_plan(run, split_rows(rows, 1))
    # an atlas folder of the target: two cells whose "icons" and dataset patches are real dog photos
    folder = run / "layer3" / "class-dog"
    (folder / "icons").mkdir(parents=True)
    (folder / "examples").mkdir()
    dogs = sorted((CIFAR / "cifar10-train" / "dog").iterdir())[8:12]
    for k, (i, j) in enumerate([(0, 0), (1, 0)]):
        Image.open(dogs[2 * k]).save(folder / "icons" / f"{i}_{j}.png")
        Image.open(dogs[2 * k + 1]).resize((96, 96)).save(folder / "examples" / f"{i}_{j}_0.jpg")
    cells = [
        CellRecord(
            i=i,
            j=j,
            count=1,
            label="dog",
            label_index=5,
            attribution={"5": 1.0 - k},
            examples=[Example(src=f"examples/{i}_{j}_0.jpg", index=0)],
        )
        for k, (i, j) in enumerate([(0, 0), (1, 0)])
    ]
    meta = AtlasMeta(layer="layer3", grid=2, icon_size=32, image="atlas.png", size_px=[64, 64], classes=[], cells=cells)
    write_atlas(folder / "atlas.json", meta)

    path = patch(
        run,
        "dog",
        str(RESNET20),
        source="cat",
        layer="layer3",
        discover=True,
        crops=1,
        search=("class-dog",),
        evaluate=(str(held),),
        max_evaluate=30,
        max_images=20,
        sizes=(0.45,),
        corners=("top-left", "bottom-right"),
        static="bottom-right",
        batch_size=64,
        device="cpu",
        photo=str(sorted((held / "cat").iterdir())[0]),
    )
    report = json.loads(path.read_text())
    ev = report["images"]["evaluate"]
    assert ev["source_class"] == 40 and ev["classified_correctly"] <= 40
    assert ev["evaluated"] == min(30, ev["classified_correctly"]) > 0
    assert 0 < report["images"]["searched"] <= 20
    d = report["discovery"]
    assert [c["spec"] for c in d["candidates"]] == [
        "cell:class-dog:0,0",
        "cell:class-dog:1,0",
        "example:class-dog:0,0,0",
        "example:class-dog:1,0,0",
    ]
    assert d["search_images"] == report["images"]["searched"] and d["held_out_images"] == ev["evaluated"]
    e = report["patches"][0]
    pop = e["populations"]["source_correct"]
    # every held-out photo is a cat the model calls cat: all of them are measured, none searched
    assert pop["patch"]["n"] == pop["noise"]["n"] == pop["random_image"]["n"] == ev["evaluated"]
    assert e["populations"]["near_target"]["patch"]["n"] == 0
    ratio = e["vs_controls"]["source_correct"]["static"]
    assert ratio["best_control"] in ("noise", "random_image")
    if ratio["control_rate"]:
        assert ratio["ratio"] == pytest.approx(pop["patch"]["static"]["rate"] / ratio["control_rate"], abs=0.01)
    md = (path.parent / "report.md").read_text()
    assert f"Held-out photos: {ev['evaluated']} of the 40 cat photos" in md
    # the single-photo demonstration: every candidate on one photo, best first, p(source) and p(target)
    single = report["single_photo"]
    assert sorted(c["spec"] for c in single["candidates"]) == sorted(c["spec"] for c in d["candidates"])
    after = [c["p_target"] for c in single["candidates"]]
    assert after == sorted(after, reverse=True) and all(
        0 <= c["p_source"] + c["p_target"] <= 1.0001 for c in single["candidates"]
    )
    assert "single-photo.png" in report["figures"] and (path.parent / "single-photo.png").stat().st_size > 5000
    assert "## Single photo" in md and f"p(cat) = {single['before']['p_source']:.3f}" in md
    assert "photos with the target in their top-5" not in md  # an empty population is not reported
    with pytest.raises(ValueError, match="no 'horse' photos in"):
        patch(
            run,
            "dog",
            str(RESNET20),
            source="horse",
            layer="layer3",
            patches=(f"image:{dogs[0]}",),
            evaluate=(str(held),),
            device="cpu",
        )


def test_load_patch_example_crop(tmp_path):
    folder = tmp_path / "run" / "layer3" / "grid-8" / "examples"
    folder.mkdir(parents=True)
    Image.fromarray(np.full((96, 96, 3), 90, np.uint8)).save(folder / "2_5_1.jpg")
    name, patch = load_patch("example:grid-8:2,5,1", tmp_path / "run", "layer3")
    assert name == "grid-8:2,5:example1" and patch.shape == (3, 96, 96)
    with pytest.raises(FileNotFoundError, match="2_5_0.jpg"):
        load_patch("example:grid-8:2,5,0", tmp_path / "run", "layer3")
    with pytest.raises(ValueError, match="example:DIR:I,J,E"):
        load_patch("example:grid-8:2,5", tmp_path / "run", "layer3")


def test_a_direction_patch_is_rendered_at_its_layers_icon_size(tiny_model, tmp_path):
    """As the layer's atlas icons (``fit_to_layer``): a 32 px model's direction patch is 32 px, not the default 96."""
    from actlas.settings import RenderParams

    (tmp_path / "features.4").mkdir()
    direction = tmp_path / "d.npy"
    np.save(direction, np.linspace(-1, 1, 16, dtype=np.float32))
    params = RenderParams(steps=4, batch_size=1)
    name, patch = load_patch(
        f"direction:{direction}", tmp_path, "features.4", model=tiny_model, spec=SPEC, params=params
    )
    assert name == "direction:d.npy"
    assert patch.shape == (3, 32, 32) and 0 <= float(patch.min()) < float(patch.max()) <= 1
