"""Encoders without a classifier (issue 29): ``model.head`` is ``none``, ``probe`` or ``text_embeddings``.

The encoder is the CIFAR-10 ViT of ``config/models/cifar10_vit.json`` (trained here) with its classifier
removed (``zoo_models.cifar10_vit_encoder``): its forward gives the CLS features (B, 64) and no logits.
The photos are real CIFAR-10 test photos from the shared assets.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import zoo_models
from conftest import ASSETS

from actlas.errors import ConfigError, ModelError, UserError
from actlas.models import heads

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
CIFAR = ASSETS / "images" / "cifar10-test"
LAYER = "blocks.2"


def encoder(head, **more) -> dict:
    """The model block of the trained CIFAR-10 ViT without its classifier, with ``head``."""
    return {
        "source": "zoo_models:cifar10_vit_encoder",
        "trust_code": True,
        **zoo_models.CIFAR_PREPROCESSING,
        "labels": CLASSES,
        "head": head,
        **more,
    }


def cifar_photos(folder: Path, per_class: int, skip: int = 0) -> Path:
    """``folder`` holding ``per_class`` real CIFAR-10 test photos of each class (symlinks), in class folders."""
    if not CIFAR.is_dir():
        pytest.skip(f"shared assets not found at {ASSETS}")
    for c in CLASSES:
        (folder / c).mkdir(parents=True)
        for f in sorted((CIFAR / c).iterdir())[skip : skip + per_class]:
            (folder / c / f.name).symlink_to(f)
    return folder


def collected(root: Path, model: dict, per_class: int = 4, **more) -> Path:
    """A run of ``model`` on ``per_class`` photos of each class: shards and collect at ``LAYER``."""
    from actlas.data.images import list_images
    from actlas.models.load import load_spec
    from actlas.stages.collect import collect
    from actlas.stages.shards import split_rows, write_plan

    spec = load_spec(model)
    rows = list_images(cifar_photos(root / "images", per_class), spec.synsets, spec.categories)
    run = root / "run"
    for lst in write_plan(run, split_rows(rows, 2)):
        store = run / "collect" / f"{lst.stem}.zarr"
        collect(lst, store, model, [LAYER], positions=2, attr_top=2, batch_size=8, chunk=8, workers=0, **more)
    return run


def atlas_of(run: Path, model: dict) -> dict:
    """Layout, whitening, a 3 x 3 grid, 16 px icons in 2 steps and the atlas of ``run``: its atlas.json."""
    from actlas.settings import RenderParams
    from actlas.stages.atlas import atlas
    from actlas.stages.grid import grid
    from actlas.stages.layout import layout
    from actlas.stages.render import render
    from actlas.stages.whitening import whitening

    layout(run, LAYER, n_neighbors=5, backend="umap-learn")
    whitening(run, LAYER)
    grid(run, LAYER, 3, min_count=1)
    params = RenderParams(size=16, min_positions=0, steps=2, batch_size=16, pad=2, jitter=1)
    render(run, LAYER, 3, model, params=params, device="cpu", progress=False)
    atlas(run, LAYER, 3, model, n_examples=1)
    return json.loads((run / LAYER / "grid-3" / "atlas.json").read_text())


# --------------------------------------------------------------------------- the model block's head


@pytest.mark.parametrize(
    "value, kind",
    [
        (None, "logits"),
        ("none", "none"),
        ("probe", "probe"),
        ({"kind": "probe", "layer": "blocks.3"}, "probe"),
        ({"text_embeddings": "t.safetensors", "labels": ["a", "b"]}, "text_embeddings"),
        ('{"text_embeddings": "t.safetensors"}', "text_embeddings"),  # as the CLI's --head gives it
    ],
)
def test_a_head_is_parsed(value, kind):
    assert heads.parse_head(value).kind == kind


@pytest.mark.parametrize(
    "value, words",
    [
        ("prob", "did you mean"),
        ({"kind": "probe", "text_embeddings": "t.safetensors"}, "takes no text_embeddings"),
        ({"kind": "text_embeddings"}, "needs text_embeddings"),
        ({"txt_embeddings": "t.safetensors"}, "unknown model.head key"),
        ({"text_embeddings": "t.safetensors", "scale": -1}, "positive"),
        (3, "must be probe, none or a mapping"),
    ],
)
def test_a_bad_head_is_refused_in_one_line(value, words):
    with pytest.raises(ModelError) as err:
        heads.parse_head(value)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_head_none_refuses_class_stages_at_parse_time():
    from actlas import settings

    for key, item in (("class_atlases", {"class": "cat"}), ("comparisons", {"classes": ["cat", "dog"]})):
        config = settings.fill({"model": encoder("none"), "images": ["x"], key: [item]})
        with pytest.raises(ConfigError, match=f"^{key}: .* head: none .* declare model.head: probe"):
            heads.check_workflow(config)
    assert heads.check_workflow(settings.fill({"model": encoder("none"), "images": ["x"]})).kind == "none"


def test_head_none_or_probe_takes_the_photo_folders_as_class_names(tmp_path):
    for c in ("cat", "dog"):
        (tmp_path / c).mkdir()
    block = {"source": "zoo_models:cifar10_vit_encoder", "head": "probe"}
    assert heads.with_folder_labels(block, [str(tmp_path)])["labels"] == ["cat", "dog"]
    assert heads.with_folder_labels(encoder("probe"), [str(tmp_path)])["labels"] == CLASSES  # declared: kept
    assert "labels" not in heads.with_folder_labels({**block, "head": None}, [str(tmp_path)])


def test_the_class_stages_refuse_a_model_without_a_head(tmp_path):
    from actlas.stages.class_atlas import class_atlas

    with pytest.raises(ConfigError, match="needs a class head, and the model has head: none"):
        class_atlas(tmp_path, LAYER, "cat", encoder("none"))


# --------------------------------------------------------------------------- head: none end to end


@pytest.mark.slow
def test_head_none_builds_an_atlas_labelled_by_its_photos(tmp_path):
    import zarr

    model = encoder("none")
    run = collected(tmp_path, model)
    for store in sorted((run / "collect").glob("*.zarr")):
        z = zarr.open_group(str(store), mode="r")
        assert (z[f"{LAYER}/attr_class"][:] == -1).all()  # no class head: no attribution
        assert (z["images/pred"][:] == -1).all()  # and no predictions
        assert np.abs(z[f"{LAYER}/activation"][:]).max() > 0
    record = atlas_of(run, model)
    assert record["label_agreement"] is None
    labels = [c["label"] for c in record["cells"]]
    assert set(labels) <= set(CLASSES) and len(set(labels)) > 1  # labelled by their nearest photos' folders
    example = record["cells"][0]["examples"][0]
    assert example["pred"] is None and example["label"] in CLASSES


# --------------------------------------------------------------------------- head: probe


def test_a_probe_head_gives_the_probes_logits_of_the_features(trust_code):
    from actlas import load_model
    from actlas.models.headhook import head_mode, use_probe

    net, spec = load_model(encoder("probe"))
    x = spec.normalize(torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0)))
    with torch.no_grad(), head_mode(net, "features"):
        features = net(x)
    assert features.shape == (3, 64)
    with pytest.raises(ModelError, match="no trained probe yet: run the probe stage"):
        net(x)
    rng = np.random.default_rng(0)
    weight, bias = rng.normal(size=(10, 64)).astype(np.float32), rng.normal(size=10).astype(np.float32)
    use_probe(net, spec, weight, bias, CLASSES)
    with torch.no_grad():
        logits = net(x)
    torch.testing.assert_close(logits, features @ torch.from_numpy(weight).T + torch.from_numpy(bias))
    with pytest.raises(UserError, match="trained for 9 classes .* run the probe stage again"):
        use_probe(net, spec, weight[:9], bias[:9], CLASSES[:9])


def test_a_head_reads_a_layer_or_refuses_features_named_as_logits(trust_code):
    from actlas import load_model
    from actlas.models.headhook import head_mode

    net, _ = load_model(encoder({"kind": "probe", "layer": "blocks.3"}))
    with torch.no_grad(), head_mode(net, "features"):
        assert net(torch.rand(2, 3, 32, 32)).shape == (2, 64)  # the mean of the layer's 8 x 8 patch tokens
    with pytest.raises(ModelError, match="holds an encoder's features, not logits: declare model.head: probe"):
        load_model(encoder(None, output="pooler_output"))


def test_the_probe_core_learns_separable_classes_and_holds_some_out():
    from actlas import probe

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 20)
    features = rng.normal(size=(60, 8)) + 4 * np.eye(3, 8)[labels]
    train, held = probe.split(labels, 0.25, seed=0)
    assert len(held) == 15 and not set(train) & set(held) and np.bincount(labels[held]).tolist() == [5, 5, 5]
    weight, bias = probe.fit(features[train], labels[train], n_classes=4)  # class 3 has no photos
    assert weight.shape == (4, 8) and probe.accuracy(weight, bias, features[held], labels[held]) >= 0.9
    assert (probe.predict(weight, bias, features) != 3).all()  # a class without photos is never predicted
    with pytest.raises(UserError, match="at least 2 classes"):
        probe.fit(features[:5], np.zeros(5, dtype=int), n_classes=4)


@pytest.mark.slow
def test_head_probe_learns_from_the_runs_photos_and_heads_collect_and_class_atlases(tmp_path):
    """The trained ViT's CLS features, a probe on 8 photos of each class (2 held out): better than chance,
    and collect's predictions and attributions, and a class atlas, come from it."""
    import zarr

    from actlas.data.images import list_images
    from actlas.formats.probe import read_probe
    from actlas.models.load import load_spec
    from actlas.settings import RenderParams
    from actlas.stages.class_atlas import class_atlas
    from actlas.stages.collect import collect
    from actlas.stages.probe import probe
    from actlas.stages.shards import split_rows, write_plan
    from actlas.stages.whitening import whitening

    model = encoder("probe")
    spec = load_spec(model)
    rows = list_images(cifar_photos(tmp_path / "images", 8), spec.synsets, spec.categories)
    run = tmp_path / "run"
    lists = write_plan(run, split_rows(rows, 2))
    with pytest.raises(UserError, match="not found: run the probe stage"):
        collect(lists[0], run / "collect" / "x.zarr", model, [LAYER], workers=0, progress=False)
    evaluate = cifar_photos(tmp_path / "evaluate", 4, skip=100)
    record = read_probe(probe(run, model, holdout=0.25, evaluate=(str(evaluate),), device="cpu"))
    assert (record.train, record.held_out, record.dims, record.classes) == (60, 20, 64, CLASSES)
    assert record.accuracy > 0.2 and record.evaluate[0]["accuracy"] > 0.2  # chance: 0.1
    assert set(record.per_class) == set(CLASSES)
    for lst in lists:
        collect(lst, run / "collect" / f"{lst.stem}.zarr", model, [LAYER], positions=2, attr_top=2, workers=0)
    z = zarr.open_group(str(run / "collect" / "shard-00000.zarr"), mode="r")
    assert z.attrs["params"]["probe"] == record.digest
    assert (z[f"{LAYER}/attr_class"][:] >= 0).all() and (z["images/pred"][:, 0] >= 0).all()
    whitening(run, LAYER)
    params = RenderParams(size=16, min_positions=0, steps=2, batch_size=16, pad=2, jitter=1)
    out = class_atlas(run, LAYER, "cat", model, grid=2, method="umap", n_examples=1, params=params, device="cpu")
    assert json.loads(out.read_text())["class"] == "cat"


# --------------------------------------------------------------------------- head: text_embeddings


def text_file(path: Path, embeddings: np.ndarray, **more: np.ndarray) -> str:
    from safetensors.numpy import save_file

    save_file({"embeddings": np.ascontiguousarray(embeddings, dtype=np.float32), **more}, str(path))
    return str(path)


def classifier_rows() -> np.ndarray:
    """The trained ViT's own classifier rows (10, 64): class embeddings in its feature space, as text ones are."""
    from safetensors.numpy import load_file

    return load_file(str(zoo_models.VIT_CARD.parent / "cifar10_vit.safetensors"))["head.weight"]


def test_text_embeddings_give_scaled_cosine_logits(tmp_path, trust_code):
    """Zero-shot logits as CLIP's: ``scale`` x the cosine of the features to each class's embedding; with the
    trained ViT's classifier rows as the embeddings, real photos are classified better than chance."""
    from PIL import Image

    from actlas import load_model
    from actlas.data.images import list_images
    from actlas.models.headhook import head_mode

    rows = classifier_rows()
    model = encoder({"text_embeddings": text_file(tmp_path / "text.safetensors", rows), "scale": 50})
    net, spec = load_model(model)
    photos = list_images(cifar_photos(tmp_path / "images", 4, skip=200), spec.synsets, spec.categories)
    x = torch.stack([spec.transform(Image.open(p).convert("RGB")) for p, _ in photos])
    with torch.no_grad():
        logits = net(spec.normalize(x))
        with head_mode(net, "features"):
            features = net(spec.normalize(x))
    cosine = torch.nn.functional.normalize(features, dim=1) @ torch.nn.functional.normalize(torch.from_numpy(rows)).T
    torch.testing.assert_close(logits, 50 * cosine)
    accuracy = (logits.argmax(1).numpy() == np.array([y for _, y in photos])).mean()
    assert accuracy > 0.3, accuracy  # chance: 0.1

    import zarr

    run = collected(tmp_path / "collect", model, per_class=2)  # the head is collect's class head too
    z = zarr.open_group(str(run / "collect" / "shard-00000.zarr"), mode="r")
    assert (z[f"{LAYER}/attr_class"][:] >= 0).all() and (z["images/pred"][:, 0] >= 0).all()


@pytest.mark.parametrize(
    "case, words",
    [
        ("missing", "not found: save the class embeddings"),
        ("two tensors", "holds 2 tensors"),
        ("one row short", "holds 9 rows .* but 10 class names"),
        ("pickle", "not a safetensors or .npy file"),
        ("nan", "NaN"),
        ("no labels", "needs class names"),
    ],
)
def test_a_bad_text_embeddings_file_is_refused_at_parse_time_in_one_line(case, words, tmp_path):
    rows = classifier_rows()
    path = tmp_path / "text.safetensors"
    block = encoder(None)
    if case == "two tensors":
        text_file(path, rows, extra=rows)
    elif case == "one row short":
        text_file(path, rows[:9])
    elif case == "pickle":
        path = tmp_path / "text.npy"
        np.save(path, np.array([rows], dtype=object), allow_pickle=True)
    elif case == "nan":
        text_file(path, np.full_like(rows, np.nan))
    elif case == "no labels":
        text_file(path, rows)
        block.pop("labels")
    block["head"] = {"text_embeddings": str(path)}
    with pytest.raises(ModelError, match=words) as err:
        heads.check_head(block)
    assert "\n" not in str(err.value)


def test_text_embeddings_are_an_input_of_the_rules_that_load_the_model(tmp_path):
    from actlas.models.sources import model_files

    path = text_file(tmp_path / "text.safetensors", classifier_rows())
    assert path in model_files(encoder({"text_embeddings": path}))


@pytest.mark.parametrize("source, family, side", [("hf_clip_vision", "clip", 128), ("hf_dinov2", "dinov2", 56)])
def test_hugging_face_towers_get_a_head_on_their_pooled_features(source, family, side, tmp_path, trust_code):
    """CLIP's image tower and DINOv2 (random weights) return a ModelOutput without logits: a head reads its
    ``pooler_output`` (B, 32); ``none`` leaves the forward as it is."""
    pytest.importorskip("transformers")
    from actlas import load_model
    from actlas.models.headhook import head_mode

    path = text_file(tmp_path / "text.safetensors", np.random.default_rng(0).normal(size=(3, 32)))
    block = {"source": f"zoo_models:{source}", **zoo_models.hf_preprocessing(family, side), "labels": ["a", "b", "c"]}
    x = torch.rand(2, 3, side, side, generator=torch.Generator().manual_seed(0))
    for head in ("none", {"text_embeddings": path}):
        net, _ = load_model({**block, "head": head})
        with torch.no_grad(), head_mode(net, "features"):
            features = net(x)
        with torch.no_grad():
            out = net(x)
        assert features.shape == (2, 32)
        if head == "none":
            assert not isinstance(out, torch.Tensor) and out.pooler_output is not None
        else:
            assert out.shape == (2, 3)


@pytest.mark.slow
def test_the_workflow_plans_the_probe_before_collect_and_refuses_class_stages_without_a_head(tmp_path):
    """Dry runs only: a probe-headed model plans one probe job (collect reads its probe); with head: none a
    class atlas is refused while the Snakefile parses, in one line naming the fix."""
    import yaml
    from conftest import snakemake

    images = cifar_photos(tmp_path / "images", 2)
    config = {
        "run_dir": str(tmp_path / "run"),
        "model": {k: v for k, v in encoder("probe").items() if k != "labels"},  # the folders name the classes
        "images": [str(images)],
        "layers": [LAYER],
        "class_atlases": [{"class": "cat"}],
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    out = snakemake(tmp_path, "-n").stdout
    counts = dict(line.split()[:2] for line in out.splitlines() if line.split()[:1] in (["probe"], ["collect"]))
    assert counts == {"probe": "1", "collect": "1"}, out
    config["model"]["head"] = "none"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(tmp_path, "-n", check=False)
    assert result.returncode != 0
    said = result.stdout + result.stderr
    assert "class_atlases: a class atlas needs a class head, and the model has head: none" in said
    assert not (tmp_path / "run").exists()  # parse time writes nothing


def doc_heads() -> dict[str, dict]:
    """The ``head example`` blocks of docs/models.md."""
    import re

    import yaml

    text = (Path(__file__).resolve().parents[1] / "docs" / "models.md").read_text()
    found = re.findall(r"<!-- head example: (\w+) -->\s*```yaml\n(.*?)```", text, flags=re.S)
    return {name: yaml.safe_load(body)["model"] for name, body in found}


def test_every_head_kind_has_a_docs_example_that_loads(tmp_path, trust_code):
    """docs/models.md's blocks, with the stand-in encoder as their source (no network here)."""
    from actlas import load_model

    examples = doc_heads()
    assert set(examples) == {"none", "probe", "text_embeddings"}
    for name, block in examples.items():
        head = block["head"]
        if name == "text_embeddings":
            head = {**head, "text_embeddings": text_file(tmp_path / head["text_embeddings"], classifier_rows())}
        net, spec = load_model(encoder(head))
        assert heads.head_of(spec).kind == name and list(spec.categories) == CLASSES
