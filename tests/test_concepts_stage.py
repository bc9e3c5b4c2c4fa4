"""The concepts stage, its command, its file and its rule: a layer's dictionary of concepts in a run."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from _tiny_run import LAYER, MODEL, make_tiny_run
from click.testing import CliRunner

from actlas import cli, paths, settings
from actlas.errors import ConfigError
from actlas.formats import dictionary as dfile
from actlas.formats.concepts import read_concepts, write_concepts

PARAMS = {"size": 16, "min_positions": 0, "steps": 2, "batch_size": 16, "pad": 2, "jitter": 1}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ACTLAS_TRUST_CODE", "1")  # the tiny model is the tests' own code, while the run is built
        return make_tiny_run(tmp_path_factory.mktemp("concepts"))


def _run_concepts(run: Path, *extra: str) -> str:
    args = [str(run), "-l", LAYER, "-m", json.dumps(MODEL), "--dictionary-size", "8", "--k", "2"]
    args += ["--n-examples", "2", "--device", "cpu", "--threads", "1"]
    args += [f"--{k.replace('_', '-')}={v}" for k, v in PARAMS.items()]
    out = CliRunner().invoke(cli.main, ["concepts", *args, *extra])
    assert out.exit_code == 0, out.output
    return out.output


def test_concepts_command_writes_the_dictionary_icons_and_summaries(tiny_run):
    _run_concepts(tiny_run)
    folder = paths.concepts_dir(tiny_run, LAYER)
    meta = read_concepts(paths.concepts_json(folder))
    assert (meta.size, meta.k, meta.layer, meta.method) == (8, 2, LAYER, "archetypal")  # a signed layer
    d = dfile.load(paths.dictionary(folder))
    assert d.atoms.shape == (8, 16)
    figures = meta.figures
    assert figures["rows"] + meta.train_rows == 32 and figures["rows"] >= 1
    assert 0 <= figures["dead"] <= 1 and figures["l0"] <= 2
    live = [c for c in meta.concepts if c.count > 0]
    assert live, "some concept fires"
    for c in meta.concepts:
        assert (folder / c.icon).exists()
        assert 0 <= c.frequency <= 1
        if c.count:
            assert c.centroid is not None and all(0 <= v <= 1 for v in c.centroid)
            assert 1 <= len(c.examples) <= 2 and all((folder / e.src).exists() for e in c.examples)
            codes = [e.similarity for e in c.examples]
            assert codes == sorted(codes, reverse=True) and codes[0] > 0
            # purity: the share of its exemplars whose photo's top-1 prediction is its label
            assert c.purity == round(sum(e.pred == c.label for e in c.examples) / len(c.examples), 4)
        else:
            assert c.centroid is None and c.examples == [] and c.purity is None
    # the icons are the render stage's: one batch of every atom, their faithfulness recorded
    batch = np.load(paths.render_batch(folder, 0))
    assert batch["icon"].shape == (8, 16, 16, 3) and batch["icon"].std() > 0
    assert [c.faithfulness for c in meta.concepts] == [round(float(f), 4) for f in batch["faithfulness"]]
    # ... with the concepts' own objective power (not render.power, the cells') and the redirected gradient
    params = json.loads(str(batch["params"]))
    assert params["power"] == settings.Concepts.icon_power != settings.RenderParams.power
    assert params["redirect"] == settings.CONCEPT_REDIRECT and meta.settings["icon_power"] == params["power"]
    # every cell of the main grid as a few concepts, explaining a share of its direction
    (cells,) = meta.cells.values()
    grid_cells = np.load(paths.cells(paths.grid_dir(tiny_run, LAYER, 3)))
    assert len(cells) == len(grid_cells["count"])
    for cell in cells:
        assert 1 <= len(cell.concepts) <= 5 and 0 <= cell.share <= 1
        assert all(w > 0 and 0 <= j < 8 for j, w in cell.concepts)
    text = paths.concepts_json(folder).read_text()
    assert "NaN" not in text and "Infinity" not in text
    # the contact sheet: the 8 concepts in one row, each 16 px icon (as 64 px) above its exemplars
    from PIL import Image

    from actlas.atlas import SHEET_GAP

    depth = 1 + max(len(c.examples) for c in meta.concepts)
    with Image.open(paths.concept_sheet(folder)) as sheet:
        assert sheet.size == (8 * (64 + SHEET_GAP), 16 + 64 * depth + 2 * SHEET_GAP)


def test_info_reports_the_dictionary_figures(tiny_run):
    if not paths.concepts_json(paths.concepts_dir(tiny_run, LAYER)).exists():
        _run_concepts(tiny_run)
    out = CliRunner().invoke(cli.main, ["info", str(tiny_run)])
    assert out.exit_code == 0, out.output
    got = json.loads(out.output)["concepts"][LAYER]
    meta = read_concepts(paths.concepts_json(paths.concepts_dir(tiny_run, LAYER)))
    assert got["size"] == 8 and got["k"] == 2 and got["method"] == "archetypal"
    assert got["heldout_r2"] == meta.figures["r2"] and got["heldout_dead"] == meta.figures["dead"]
    assert got["live"] == sum(c.count > 0 for c in meta.concepts)
    purities = [c.purity for c in meta.concepts if c.purity is not None]
    assert got["exemplar_purity"] == round(sum(purities) / len(purities), 4)


def test_a_loaded_dictionary_is_used_as_given(tiny_run, tmp_path):
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    w_dec = rng.normal(size=(6, 16)).astype(np.float32)
    save_file({"W_dec": w_dec}, str(tmp_path / "mine.safetensors"))
    out = tmp_path / "out"
    _run_concepts(tiny_run, "--load", str(tmp_path / "mine.safetensors"), "--out", str(out))
    meta = read_concepts(paths.concepts_json(out))
    assert meta.method == "loaded" and meta.size == 6 and meta.source.endswith("mine.safetensors")
    d = dfile.load(paths.dictionary(out))
    np.testing.assert_allclose(d.atoms, w_dec / np.linalg.norm(w_dec, axis=1, keepdims=True), atol=1e-6)
    bad = CliRunner().invoke(cli.main, ["concepts", str(tiny_run), "-l", LAYER, "--load", str(tmp_path / "x.pt")])
    assert bad.exit_code != 0 and "safetensors" in bad.output and "Traceback" not in bad.output


def test_patch_experiments_search_and_paste_concept_icons(tiny_run):
    """The concepts folder is an atlas folder too (atlas.json, atlas.png, icons/I_J.png): discovery
    searches its icons (``search: [concepts]``) and ``cell:concepts:I,J`` pastes one."""
    from PIL import Image

    from actlas.formats.atlas import read_atlas
    from actlas.stages.patch import candidate_icons, load_patch

    if not paths.concepts_json(paths.concepts_dir(tiny_run, LAYER)).exists():
        _run_concepts(tiny_run)
    folder = paths.concepts_dir(tiny_run, LAYER)
    meta = read_concepts(paths.concepts_json(folder))
    atlas = read_atlas(paths.atlas_json(folder))
    assert atlas.kind == "concepts" and atlas.grid == 3 and len(atlas.cells) == 8
    assert [c.icon for c in atlas.cells] == [c.icon for c in meta.concepts]
    assert Image.open(paths.atlas_png(folder)).size == tuple(atlas.size_px)
    target = next(c.label_index for c in meta.concepts if c.count > 0)
    specs = candidate_icons(tiny_run, LAYER, target, str(target), folders=(paths.CONCEPTS,))
    want = {f"cell:concepts:{c.i},{c.j}" for c in atlas.cells if c.label_index == target}
    assert specs and set(specs) == want
    name, patch = load_patch(specs[0], tiny_run, LAYER)
    assert name.startswith("concepts:") and tuple(patch.shape) == (3, 16, 16) and float(patch.std()) > 0


def test_stability_matches_a_second_seed(tiny_run, tmp_path):
    out = tmp_path / "stable"
    _run_concepts(tiny_run, "--stability", "--out", str(out))
    meta = read_concepts(paths.concepts_json(out))
    per_concept = [c.stability for c in meta.concepts]
    assert all(s is not None and -1 <= s <= 1 for s in per_concept)
    assert meta.figures["stability"] == pytest.approx(np.mean(per_concept), abs=1e-3)
    first = read_concepts(paths.concepts_json(paths.concepts_dir(tiny_run, LAYER)))
    assert all(c.stability is None for c in first.concepts) and "stability" not in first.figures


def test_the_same_dictionary_makes_the_same_file(tmp_path):
    """The dictionary file holds no timing (its training's seconds stay in memory and concepts.json): a
    rerun that learns the same dictionary writes the same bytes."""
    from actlas.concepts.dictionary import Dictionary

    rng = np.random.default_rng(0)
    atoms = rng.normal(size=(4, 6)).astype(np.float32)
    atoms /= np.linalg.norm(atoms, axis=1, keepdims=True)
    made = []
    for seconds in (1.5, 2.5):
        d = Dictionary(atoms=atoms, center=np.zeros(6, np.float32), k=2, method="topk")
        d.info = {"size": 4, "seconds": seconds, "kmeans_seconds": seconds, "seed": 0}
        dfile.save(d, tmp_path / f"d{seconds}.safetensors")
        made.append((tmp_path / f"d{seconds}.safetensors").read_bytes())
    assert made[0] == made[1]
    assert dfile.load(tmp_path / "d1.5.safetensors").info == {"size": 4, "seed": 0}


def test_concepts_json_round_trips(tiny_run, tmp_path):
    meta = read_concepts(paths.concepts_json(paths.concepts_dir(tiny_run, LAYER)))
    write_concepts(tmp_path / "c.json", meta)
    assert read_concepts(tmp_path / "c.json") == meta


@pytest.mark.parametrize(
    "item, message",
    [
        ({"k": 0}, "1 <= k <= size"),
        ({"size": 4, "k": 8}, "1 <= k <= size"),
        ({"heldout": 1.5}, "heldout"),
        ({"load": "dict.pt"}, "safetensors"),
        ({"sise": 4}, "did you mean 'size'"),
        ({"icon_power": -1}, "icon_power must be at least 0"),
    ],
)
def test_a_bad_concepts_item_fails_at_parse_time(item, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        settings.fill({"concepts": [item]})


def _tiny_workflow(work: Path, images: Path, concepts: list, patches: list = ()) -> None:
    """A workflow config on the tiny model: 16 generated photos, 2 positions each, one 3 x 3 grid."""
    import yaml

    config = {
        "run_dir": str(work / "run"),
        "model": MODEL,
        "images": [str(images)],
        "layers": [LAYER],
        "collect": {"shard_size": 8, "positions": 2, "batch_size": 8, "chunk": 8, "workers": 0, "threads": 1},
        "layout": {"n_neighbors": 5},
        "grid": {"sizes": [3], "min_count": 1},
        "render": {**PARAMS, "cells_per_job": 16, "threads": 1},
        "atlas": {"n_examples": 1},
        "concepts": concepts,
        "patches": list(patches),
    }
    work.mkdir(exist_ok=True)
    (work / "config.yaml").write_text(yaml.safe_dump(config))


# Two discovery experiments for class 9 (the tiny model's usual label): one searches the concept icons (it
# shows them: a concept change reruns it), one the grid's cells only (it does not).
PATCHES = [
    {"target": 9, "name": name, "discover": True, "search": [folder], "candidates": 2, "sizes": [0.45], "max_images": 8}
    for name, folder in (("concepts-search", "concepts"), ("cells-search", "grid-3"))
]


def _run_files(run: Path) -> dict[str, object]:
    """What a run holds that a user reads, as comparable values: every file but the logs, benchmarks, the
    icon cache, Snakemake's metadata and the manifest (its timings); a JSON file without its ``seconds``, an
    ``.npz`` as its arrays but ``seconds`` and ``rendered`` (timings and cache hits); anything else its bytes."""

    def drop_seconds(value):
        if isinstance(value, dict):
            return {k: drop_seconds(v) for k, v in value.items() if k != "seconds"}
        return [drop_seconds(v) for v in value] if isinstance(value, list) else value

    out: dict[str, object] = {}
    for path in sorted(run.rglob("*")):
        rel = path.relative_to(run)
        if not path.is_file() or rel.parts[0] in ("logs", "benchmarks", "cache", ".snakemake", ".actlas"):
            continue
        if rel.name == "manifest.json" or rel.name.startswith("."):
            continue
        if path.suffix == ".json":
            out[str(rel)] = drop_seconds(json.loads(path.read_text()))
        elif path.suffix == ".npz":
            with np.load(path) as z:
                out[str(rel)] = {
                    k: z[k].tobytes() + str(z[k].dtype).encode() for k in z.files if k not in ("seconds", "rendered")
                }
        else:
            out[str(rel)] = path.read_bytes()
    return out


@pytest.mark.slow
def test_concepts_as_a_rule_rerun_alone_when_their_settings_change(tmp_path):
    """The workflow builds RUN/LAYER/concepts/ from a concepts item; a finished run plans nothing; a changed
    concept setting (size, k, seed, method or icon_power) plans the concepts job and what shows it (the viewer, the
    manifest, a patch experiment that searches the concepts) and nothing else. After all five changed, the
    incremental run's files equal, byte for byte (timings aside), those of a rebuild from scratch of everything
    the concepts feed: their folder, the patch experiment that searches them, the viewer and the icon cache
    deleted, the workflow run again (what comes before the concepts is the same in both; test_workflow holds
    it to a run from scratch)."""
    import shutil

    from _tiny_run import make_images
    from conftest import snakemake
    from test_workflow import _planned, _ran

    images = make_images(tmp_path / "images")
    concepts = [{"size": 8, "k": 2, "n_examples": 2}]
    work = tmp_path / "w"
    run = work / "run"
    _tiny_workflow(work, images, concepts, PATCHES)
    snakemake(work)
    folder = paths.concepts_dir(run, LAYER)
    meta = read_concepts(paths.concepts_json(folder))
    assert meta.size == 8 and meta.k == 2 and list(meta.cells) == ["3"] and meta.layer == LAYER
    assert np.isfinite(meta.figures["r2"]) and meta.faithfulness_median is not None
    assert _planned(snakemake(work, "-n")) == {}, "a finished run plans nothing"

    shows = {"concepts", "viewer", "manifest", "patch", "all"}
    for change in ({"k": 3}, {"size": 6}, {"seed": 5}, {"method": "topk"}, {"icon_power": 1.0}):
        _tiny_workflow(work, images, [{**concepts[0], **change}], PATCHES)
        planned = _planned(snakemake(work, "-n"))
        assert planned.get("concepts") == 1 and planned.get("patch") == 1 and set(planned) <= shows, (change, planned)

    changed = [{**concepts[0], "k": 3, "size": 6, "seed": 5, "method": "topk", "icon_power": 1.0}]
    _tiny_workflow(work, images, changed, PATCHES)
    ran = _ran(snakemake(work))
    assert ran.get("concepts") == 1 and ran.get("patch") == 1 and set(ran) <= shows, ran
    assert _planned(snakemake(work, "-n")) == {}, "the incremental run finished the plan"
    assert read_concepts(paths.concepts_json(folder)).size == 6
    got = _run_files(run)
    assert any(k.startswith("viewer/") for k in got) and any(k.startswith("patches/concepts-search/") for k in got)

    for gone in (folder, run / "viewer", run / "patches" / "concepts-search", run / "cache"):
        shutil.rmtree(gone)
    ran = _ran(snakemake(work))
    assert ran.get("concepts") == 1 and ran.get("patch") == 1 and set(ran) <= shows, ran
    want = _run_files(run)
    assert got.keys() == want.keys(), got.keys() ^ want.keys()
    differ = [k for k in got if got[k] != want[k]]
    assert not differ, differ

    _tiny_workflow(work, images, [{**concepts[0], "layer": "features.1"}])
    out = snakemake(work, "-n", check=False)
    assert out.returncode != 0 and "layer 'features.1' is not laid out" in out.stdout + out.stderr
