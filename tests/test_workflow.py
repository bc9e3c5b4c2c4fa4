"""The Snakemake workflow on a few real photos with the real MobileNetV2 (slow)."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import small_config, snakemake
from PIL import Image

pytestmark = pytest.mark.slow


def _planned(out) -> dict[str, int]:
    """Job counts per rule from a dry run's 'Job stats' table."""
    counts, table = {}, False
    for line in out.stdout.splitlines():
        if line.startswith("job ") and "count" in line:
            table = True
            continue
        if table:
            parts = line.split()
            if len(parts) == 2 and parts[1].isdigit():
                if parts[0] != "total":
                    counts[parts[0]] = int(parts[1])
            elif parts and not set(line.strip()) <= {"-", " "}:
                break
    return counts


def test_pipeline_outputs(small_run):
    for n in (3, 5):
        meta = json.loads((small_run / "features.13" / f"grid-{n}" / "atlas.json").read_text())
        png = Image.open(small_run / "features.13" / f"grid-{n}" / "atlas.png")
        # 48 px icons are shown enlarged without smoothing to cells of at least atlas.min_cell pixels
        assert meta["render_size"] == 48 and meta["icon_size"] % 48 == 0 and meta["icon_size"] >= 96
        assert png.size == (n * meta["icon_size"], n * meta["icon_size"]) == tuple(meta["size_px"])
        assert meta["grid"] == n and len(meta["cells"]) >= 2
        cell = meta["cells"][0]
        assert cell["label"] and cell["count"] >= 2 and -1 <= cell["faithfulness"] <= 1
        assert (small_run / "features.13" / f"grid-{n}" / cell["icon"]).exists()
        assert cell["examples"] and (small_run / "features.13" / f"grid-{n}" / cell["examples"][0]["src"]).exists()
        icons = np.stack(
            [np.asarray(Image.open(small_run / "features.13" / f"grid-{n}" / c["icon"])) for c in meta["cells"]]
        )
        assert icons.std() > 10  # not grey, not blank
    info = json.loads(snakemake_info(small_run))
    assert info["images"] == 24 and info["skipped"] == 0
    assert info["layers"]["features.13"]["grid_sizes"] == [3, 5]
    assert info["layers"]["features.13"]["samples"] == 24 * 6


def snakemake_info(run_dir) -> str:
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "actlas", "info", str(run_dir)], check=True, capture_output=True, text=True
    ).stdout


def test_rerun_plans_only_what_changed(small_run):
    work = small_run.parent
    assert _planned(snakemake(work, "-n")) == {}, "a finished run plans nothing"

    cfg = (work / "config.yaml").read_text()
    (work / "changed.yaml").write_text(cfg.replace("steps: 12", "steps: 13"))
    os.replace(work / "config.yaml", work / "orig.yaml")
    os.replace(work / "changed.yaml", work / "config.yaml")
    try:
        planned = _planned(snakemake(work, "-n"))
    finally:
        os.replace(work / "orig.yaml", work / "config.yaml")
    assert set(planned) <= {"render", "atlas", "manifest", "viewer", "all"}
    assert planned.get("render", 0) >= 2 and planned.get("atlas") == 2
    assert "collect" not in planned and "layout" not in planned and "grid" not in planned

    # Removing one image changes only the shard list it belongs to (shards are split by a stable
    # hash of each path): that shard's list and collect are planned, the other shards' are not, and
    # the dry run itself writes nothing.
    import yaml

    images = Path(yaml.safe_load((work / "config.yaml").read_text())["images"][0])
    photo = sorted(images.glob("*/*"))[0]
    target = photo.readlink()
    shards_before = {p.name: p.read_text() for p in (small_run / "shards").glob("shard-*.txt")}
    photo.unlink()
    try:
        planned = _planned(snakemake(work, "-n"))
        changed = [n for n, text in shards_before.items() if (small_run / "shards" / n).read_text() != text]
    finally:
        photo.symlink_to(target)
    assert not changed and len(shards_before) >= 2
    assert planned.get("shard_list") == 1 and planned.get("collect") == 1, planned
    assert {"layout", "grid"} <= set(planned)
    assert _planned(snakemake(work, "-n")) == {}, "restoring the image restores the plan"


def test_class_atlases_comparisons_and_patches_as_rules(small_run, tmp_path):
    """Config lists -> class_atlas, compare and patch jobs; the viewer lists the new maps; a change to a
    patch setting reruns only that experiment."""
    import shutil

    import yaml
    from conftest import CARD

    from actlas.data.samples import load_samples
    from actlas.models.load import load_model
    from actlas.text import slug

    work = tmp_path / "work"
    shutil.copytree(small_run.parent, work, symlinks=True)
    run = work / "run"
    cfg = yaml.safe_load((work / "config.yaml").read_text())
    cfg["run_dir"] = str(run)
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    # The copy has no Snakemake metadata, so only mtimes speak, and an earlier test may have rewritten
    # a shard list: --touch marks the copy's finished outputs up to date, in DAG order.
    snakemake(work, "--touch")
    _, spec = load_model(str(CARD))
    s = load_samples(run, "features.13", columns=("attr_class", "attr_value"))
    a, b = (spec.short_name(int(c)) for c in np.argsort(-np.bincount(s.attr_class[:, 0]))[:2])
    overlay = {
        "class_atlases": [{"class": a, "filter": "top", "grid": 3}],
        "comparisons": [{"classes": [a, b], "grid": 3}],
        "patches": [{"target": a, "discover": True, "candidates": 3, "sizes": [0.45], "max_images": 8}],
    }
    (work / "classes.yaml").write_text(yaml.safe_dump(overlay))
    both = ("--configfile", str(work / "config.yaml"), str(work / "classes.yaml"))
    planned = _planned(snakemake(work, "-n", *both))
    # exactly the new jobs and the viewer; the manifest (it records the config) may follow
    assert {k: v for k, v in planned.items() if k not in ("manifest", "all")} == {
        "class_atlas": 1,
        "compare": 1,
        "patch": 1,
        "viewer": 1,
    }, planned
    snakemake(work, *both)
    slug_a = slug(a)
    meta = json.loads((run / "features.13" / f"class-{slug_a}" / "atlas.json").read_text())
    assert meta["kind"] == "class" and meta["class"] == a and meta["grid"] == 3 and meta["cells"]
    assert sum(c["count"] for c in meta["cells"]) == meta["samples"]
    report = json.loads((run / "patches" / f"any-to-{slug_a}" / "report.json").read_text())
    assert report["target"] == a and report["discovery"]["best"].startswith(("cell:", "example:"))
    data = json.loads((run / "viewer" / "data.json").read_text())
    assert {e["kind"] for e in data["extras"]} == {"class", "compare"}
    # the viewer links the experiment, and the cell whose icon it pasted links back to it
    assert [e["name"] for e in data["patches"]] == [f"any-to-{slug_a}"]
    folder, ij = report["discovery"]["best"].split(":")[1:]
    ij = ",".join(ij.split(",")[:2])  # example:DIR:I,J,E names a dataset patch of cell (I, J)
    views = {e["id"]: e["grids"][0] for e in data["extras"]}
    views.update({f"{layer['layer']}/grid-{g['grid']}": g for layer in data["layers"] for g in layer["grids"]})
    (cell,) = [c for c in views[f"features.13/{folder}"]["cells"] if f"{c['i']},{c['j']}" == ij]
    assert [link["experiment"] for link in cell["patches"]] == [f"any-to-{slug_a}"]
    assert _planned(snakemake(work, "-n", *both)) == {}, "a finished run plans nothing"
    overlay["patches"][0]["max_images"] = 9
    (work / "classes.yaml").write_text(yaml.safe_dump(overlay))
    planned = _planned(snakemake(work, "-n", *both))
    # the experiment reruns, and the viewer that links its numbers
    assert {k: v for k, v in planned.items() if k not in ("manifest", "all")} == {"patch": 1, "viewer": 1}, planned


def test_a_class_atlas_at_another_layer_collects_that_layer_too(tmp_path):
    """A class atlas at a layer outside ``layers`` (the article's were at a late layer): collect
    records both layers, the main layer is laid out and the other only whitened, the class atlas is
    built there, and that layer gets no main atlas of its own."""
    import zarr
    from conftest import _photo_folder

    images = _photo_folder(12)
    synset = sorted(p.name for p in images.iterdir())[0]  # a class whose photo the run holds
    work, run = tmp_path / "work", tmp_path / "work" / "run"
    _tiny_config(
        work, images, run, class_atlases=[{"class": synset, "layer": "features.16", "filter": "top", "grid": 3}]
    )
    ran = _ran(snakemake(work))
    assert ran.get("layout") == 1 and ran.get("whitening") == 2 and ran.get("class_atlas") == 1, ran
    store = zarr.open_group(str(next((run / "collect").glob("*.zarr"))), mode="r")
    assert store["features.16/activation"].shape[1] == 160 and store["features.13/activation"].shape[1] == 96
    assert (run / "features.16" / "whiten.npy").exists() and not list((run / "features.16").glob("grid-*"))
    assert not (run / "features.16" / "coords.npy").exists()  # only its whitening: it is never laid out
    (folder,) = (run / "features.16").glob("class-*")
    meta = json.loads((folder / "atlas.json").read_text())
    assert meta["kind"] == "class" and meta["cells"], meta.keys()
    data = json.loads((run / "viewer" / "data.json").read_text())
    assert [layer["layer"] for layer in data["layers"]] == ["features.13"]
    assert [e["kind"] for e in data["extras"]] == ["class"]
    assert _planned(snakemake(work, "-n")) == {}, "a finished run plans nothing"


# --------------------------------------------------------------------------- a stage layer you can rerun


def _outputs(run) -> dict[str, bytes]:
    """What a user reads of a run, byte for byte: icons, examples, atlas.json and the atlas PNGs."""
    out = {}
    for path in sorted(Path(run).glob("*/grid-*/**/*")):
        if path.is_file() and (path.suffix in (".png", ".jpg") or path.name == "atlas.json"):
            out[str(path.relative_to(run))] = path.read_bytes()
    return out


def _ran(out) -> dict[str, int]:
    """Jobs a real run executed, per rule (from its log lines "rule NAME:" / "localrule NAME:")."""
    import re
    from collections import Counter

    return dict(Counter(re.findall(r"^(?:local)?(?:rule|checkpoint) (\w+):$", out.stdout + out.stderr, re.M)))


# The tiny workflow's settings (12 photos, one 3 x 3 grid); tests override sections of it.
TINY = {
    "collect": {"shard_size": 6, "positions": 4, "batch_size": 8, "chunk": 8},
    "grid": {"sizes": [3], "min_count": 2},
    "render": {"size": 32, "min_positions": 0, "steps": 6, "batch_size": 4, "cells_per_job": 4},
    "atlas": {"n_examples": 1},
}


def _diverged(run, other) -> list[str]:
    """The intermediates two runs hold that differ, upstream first (collected rows, whitening,
    coords, cells, render batches): where a mismatch of their outputs began."""
    import numpy as np
    import zarr

    run, other = Path(run), Path(other)
    differ = []
    for store in sorted((run / "collect").glob("*.zarr")):
        a, b = zarr.open_group(str(store), mode="r"), zarr.open_group(str(other / "collect" / store.name), mode="r")
        differ += [
            f"{store.name}/{k}"
            for k in ("features.13/activation", "features.13/attr_value", "images/prob")
            if not np.array_equal(a[k][:], b[k][:])
        ]
    for path in (
        sorted(run.glob("*/*.npy")) + sorted(run.glob("*/grid-*/cells.npz")) + sorted(run.glob("*/grid-*/render/*.npz"))
    ):
        twin = other / path.relative_to(run)
        if not twin.exists():
            differ.append(f"{path.relative_to(run)} (only in one run)")
            continue
        a, b = np.load(path), np.load(twin)
        pairs = (
            {"": (a, b)}
            if path.suffix == ".npy"
            else {k: (a[k], b[k]) for k in a.files if k not in ("seconds", "rendered")}
        )
        differ += [f"{path.relative_to(run)}:{k}" for k, (x, y) in pairs.items() if not np.array_equal(x, y)]
        if "rendered" in getattr(a, "files", ()) and not np.array_equal(a["icon"], b["icon"]):
            differ.append(
                f"{path.relative_to(run)}: {int(a['rendered'])} and {int(b['rendered'])} icons not from the cache"
            )
    return differ


def _tiny_config(work: Path, images: Path, run_dir, **over) -> None:
    over = {**TINY, **over}
    work.mkdir(parents=True, exist_ok=True)
    (work / "config.yaml").write_text(small_config(Path(run_dir), images, **over))


def test_incremental_run_equals_a_run_from_scratch(tmp_path):
    """Edits to collect, layout, grid and render settings and to the image set: after each, the
    incremental run's icons, atlas.json and PNGs equal a clean run's byte for byte, and only the
    stages whose inputs, params or code changed ran."""
    import shutil

    from conftest import _photo_folder

    images = _photo_folder(12)
    work, run = tmp_path / "inc", tmp_path / "inc" / "run"
    edits = [
        (
            "render cells_per_job and layout n_neighbors",
            {"render": {"cells_per_job": 2}, "layout": {"n_neighbors": 8}},
            {"render", "atlas"},
            {"collect", "whitening"},
        ),
        (
            "grid min_count",
            {"grid": {"sizes": [3], "min_count": 1}},
            {"grid", "render", "atlas"},
            {"collect", "layout"},
        ),
        ("an image removed", "drop-image", {"collect", "layout", "grid", "atlas"}, set()),
    ]
    _tiny_config(work, images, run)
    snakemake(work)
    state = {}
    for name, edit, must_run, must_not in edits:
        if edit == "drop-image":
            photo = sorted(images.glob("*/*"))[0]
            photo.rename(tmp_path / "dropped.jpg")
        else:
            for section, values in edit.items():
                state[section] = {**state.get(section, {}), **values}
        over = {k: {**TINY.get(k, {}), **v} for k, v in {**TINY, **state}.items()}
        _tiny_config(work, images, run, **over)
        ran = _ran(snakemake(work))
        assert must_run <= set(ran), (name, ran)
        assert not (must_not & set(ran)), (name, ran)
        fresh_work = tmp_path / f"fresh-{len(name)}"
        _tiny_config(fresh_work, images, fresh_work / "run", **over)
        snakemake(fresh_work)
        got, want = _outputs(run), _outputs(fresh_work / "run")
        assert got.keys() == want.keys(), (name, got.keys() ^ want.keys())
        differ = [k for k in got if got[k] != want[k]]
        assert not differ, (name, differ, _diverged(run, fresh_work / "run"))
        assert _planned(snakemake(work, "-n")) == {}, name
        shutil.rmtree(fresh_work)


@pytest.mark.parametrize(
    "artifact, rebuilt, kept",
    [
        ("features.13/coords.npy", {"layout", "grid", "atlas"}, {"collect", "shard_list"}),
        ("features.13/grid-3/cells.npz", {"grid": 1, "atlas": 1}, {"layout", "collect"}),
        ("features.13/grid-5/render/batch-00000.npz", {"render": 1, "atlas": 1}, {"grid", "layout", "collect"}),
        ("shards/shard-00001.txt", {"shard_list": 1, "collect": 1}, {"shard_index"}),
        ("features.13/grid-3/atlas.json", {"atlas": 1}, {"render", "grid", "layout", "collect"}),
        ("collect/shard-00000.zarr.skipped.tsv", {"collect": 1}, {"shard_list"}),
        # files inside directory() outputs (actlas.repair): the folder's rule plans, nothing else upstream
        ("features.13/grid-3/icons/*.png", {"atlas": 1}, {"render", "grid", "layout", "collect"}),
        ("features.13/grid-5/examples/*.jpg", {"atlas": 1}, {"render", "grid", "layout", "collect"}),
        ("viewer/index.html", {"viewer": 1}, {"atlas", "render", "grid", "layout", "collect"}),
        ("collect/shard-00001.zarr/features.13/activation/c/0/0", {"collect": 1}, {"shard_list", "shard_index"}),
        ("collect/shard-00000.zarr/images/zarr.json", {"collect": 1}, {"shard_list", "shard_index"}),
    ],
)
def test_deleting_an_intermediate_rebuilds_it_and_what_follows(small_run, tmp_path, artifact, rebuilt, kept):
    import shutil

    import yaml

    work = tmp_path / "work"
    shutil.copytree(small_run.parent, work, symlinks=True)
    cfg = yaml.safe_load((work / "config.yaml").read_text())
    cfg["run_dir"] = str(work / "run")
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    snakemake(work, "--touch")
    assert _planned(snakemake(work, "-n")) == {}
    (target,) = sorted((work / "run").glob(artifact))[:1]
    target.unlink()
    planned = _planned(snakemake(work, "-n"))
    assert not target.parent.exists() or not target.exists()  # a dry run writes nothing (nor repairs)
    if isinstance(rebuilt, dict):
        assert {k: planned.get(k) for k in rebuilt} == rebuilt, planned
    else:
        assert rebuilt <= set(planned), planned
    assert not (kept & set(planned)), planned


def test_files_deleted_inside_folders_are_rebuilt_equal_to_the_first_run(small_run, tmp_path):
    """An icon, an example and viewer/index.html deleted: the next run rebuilds their folders whole, the
    run's files equal the first run's byte for byte, and verify finds it sound."""
    import shutil

    import yaml

    from actlas.verify import verify_run

    work = tmp_path / "work"
    shutil.copytree(small_run.parent, work, symlinks=True)
    cfg = yaml.safe_load((work / "config.yaml").read_text())
    cfg["run_dir"] = str(work / "run")
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    run = work / "run"
    snakemake(work, "--touch")
    for pattern in ("features.13/grid-3/icons/*.png", "features.13/grid-5/examples/*.jpg", "viewer/index.html"):
        sorted(run.glob(pattern))[0].unlink()
    assert {str(p.path) for p in verify_run(run)} >= {str(run / "viewer" / "index.html")}
    snakemake(work, "--summary")  # runs no job: it must remove no folder (nothing would rebuild it)
    assert (run / "viewer").is_dir() and (run / "features.13" / "grid-3" / "icons").is_dir()
    out = snakemake(work)
    assert "lost" in out.stderr and set(_ran(out)) >= {"atlas", "viewer"} and "render" not in _ran(out), _ran(out)
    assert _outputs(run) == _outputs(small_run)
    assert (run / "viewer" / "index.html").read_bytes() == (small_run / "viewer" / "index.html").read_bytes()
    assert verify_run(run) == []
    assert _planned(snakemake(work, "-n")) == {}


def test_config_strings_never_reach_the_shell(small_run, tmp_path):
    """A metric holding shell code is passed as one quoted argument: the code never runs."""
    import shutil

    import yaml

    work = tmp_path / "work"
    shutil.copytree(small_run.parent, work, symlinks=True)
    cfg = yaml.safe_load((work / "config.yaml").read_text())
    marker = tmp_path / "INJECTED"
    cfg.update(run_dir=str(work / "run"), layout={"metric": f"cosine; touch {marker}; true"})
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    out = snakemake(work, "--forcerun", "layout", check=False)
    assert "layout" in out.stdout + out.stderr and not marker.exists()


@pytest.mark.parametrize("run_dir", ["/", ".", ".."])
def test_run_dir_that_would_mix_with_the_checkout_is_refused(tmp_path, run_dir):
    from conftest import ROOT

    work = tmp_path / "w"
    work.mkdir()
    (work / "config.yaml").write_text(small_config(Path(run_dir), tmp_path))
    before = sorted(p.name for p in ROOT.iterdir())
    out = snakemake(work, "-n", check=False)
    assert out.returncode != 0 and "run_dir" in out.stdout + out.stderr
    assert sorted(p.name for p in ROOT.iterdir()) == before


def test_dry_run_and_lint_write_nothing_and_any_run_dir_name_works(tmp_path):
    from conftest import _photo_folder

    images = _photo_folder(4)
    run = tmp_path / "a run ü"  # a space and unicode
    _tiny_config(tmp_path / "w", images, run)
    out = snakemake(tmp_path / "w", "-n")
    assert "collect" in _planned(out) and not run.exists()
    snakemake(tmp_path / "w", "--lint", check=False)
    assert not run.exists()
    snakemake(tmp_path / "w")  # and for real: every path reaches the shell quoted
    assert (run / "features.13" / "grid-3" / "atlas.png").is_file() and (run / "manifest.json").is_file()


def test_second_workflow_on_a_run_dir_is_refused_in_one_line(tmp_path):
    """A run directory another live workflow holds is refused before any job runs."""
    import subprocess
    import sys

    from conftest import _photo_folder

    images = _photo_folder(4)
    run = tmp_path / "run"
    _tiny_config(tmp_path / "w", images, run)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import sys, time; from actlas import lock; lock.acquire(sys.argv[1], 'another checkout'); "
                "print('held', flush=True); time.sleep(60)"
            ),
            str(run),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")},
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        out = snakemake(tmp_path / "w", check=False)
        assert out.returncode != 0
        lines = [line for line in (out.stdout + out.stderr).splitlines() if "another checkout" in line]
        assert lines and "Traceback" not in out.stderr, out.stderr[-2000:]
        assert not (run / "collect").exists()
    finally:
        holder.kill()


def test_a_failed_job_prints_its_error_line_on_the_console(tmp_path):
    """A job that fails with a user error: its one line (cause and fix) reaches the console, not only its log."""
    images = tmp_path / "img" / "a"
    images.mkdir(parents=True)
    for i in range(6):  # unreadable photos: collect skips them all and layout has nothing to lay out
        (images / f"x{i}.jpg").write_bytes(np.random.default_rng(i).bytes(3000))
    _tiny_config(tmp_path / "w", tmp_path / "img", tmp_path / "run")
    out = snakemake(tmp_path / "w", check=False)
    assert out.returncode != 0
    lines = [line for line in out.stderr.splitlines() if line.startswith("actlas: layout/")]
    assert lines and "Error: layout needs at least 4 samples" in lines[0], out.stderr[-3000:]


# --------------------------------------------------------------------------- aligned atlases


def test_aligned_atlases_as_rules(tmp_path):
    """One alignment of three maps on 16 real photos with the tests' tiny models: two layers of the run's
    model and a layer of a second model (tiny_vit) collected over the same shard lists. Each aligned map is
    gridded, rendered with its own model and composed; the viewer and ``actlas info`` show them; a finished
    run plans nothing, and a new alignment strength reruns the alignment's stages only."""
    import yaml
    from conftest import _photo_folder

    from actlas.stages.manifest import info

    block = {"input_size": [32, 32], "mean": [0.5] * 3, "std": [0.25] * 3, "labels": [f"c{i}" for i in range(10)]}
    net = block | {"source": "tiny_models:tiny_net", "trust_code": True}
    vit = block | {"source": "tiny_models:tiny_vit", "trust_code": True}
    images = _photo_folder(16)
    work, run = tmp_path / "work", tmp_path / "work" / "run"
    maps = ["features.1", "features.4", {"layer": "blocks.1", "model": vit, "name": "vit"}]

    def configure(strength: float) -> None:
        cfg = yaml.safe_load(small_config(run, images, **TINY)) | {"model": net, "layers": ["features.4"]}
        cfg["collect"] |= {"shard_size": 16, "positions": 2, "batch_size": 16, "chunk": 16}
        cfg["render"] |= {"size": 16, "steps": 2, "batch_size": 16, "cells_per_job": 64}
        cfg |= {"layout": {"n_neighbors": 5}, "alignments": [{"atlases": maps, "name": "m", "alignment": strength}]}
        work.mkdir(parents=True, exist_ok=True)
        (work / "config.yaml").write_text(yaml.safe_dump(cfg))

    configure(0.1)
    ran = _ran(snakemake(work))
    assert ran.get("model_collect") == 1 and ran.get("align") == 1 and ran.get("align_atlas") == 3, ran
    assert ran.get("align_render") == 3 and ran.get("whitening") == 2 and ran.get("model_whitening") == 1, ran
    vit_map = run / "aligned" / "m" / "blocks.1@vit" / "grid-3"
    meta = json.loads((vit_map / "atlas.json").read_text())
    assert meta["aligned"]["model"] == "vit" and meta["aligned"]["maps"] == ["features.1", "features.4", "blocks.1@vit"]
    assert [p["maps"][1] for p in meta["aligned"]["pairs"]] == ["features.1", "features.4"]
    assert all(set(c["partners"]) == {"features.1", "features.4"} for c in meta["cells"]), meta["cells"][0]
    assert (vit_map / "atlas.png").exists() and (run / "models" / "vit" / "blocks.1" / "whiten.npy").exists()
    assert not (run / "features.1" / "coords.npy").exists()  # an aligned layer is whitened, not laid out alone
    data = json.loads((run / "viewer" / "data.json").read_text())
    assert [[v["id"] for v in a["maps"]] for a in data["aligned"]] == [["features.1", "features.4", "blocks.1@vit"]]
    pairs = info(run)["alignments"]["m"]["pairs"]
    assert [p["maps"] for p in pairs] == [
        ["features.1", "features.4"],
        ["features.1", "blocks.1@vit"],
        ["features.4", "blocks.1@vit"],
    ]
    assert all(p["ratio"] < 1 for p in pairs), pairs
    assert _planned(snakemake(work, "-n")) == {}, "a finished run plans nothing"
    (run / "aligned" / "m" / "coords.npz").unlink()  # a deleted alignment is rebuilt, and only what follows it
    planned = _planned(snakemake(work, "-n"))
    assert planned.get("align") == 1 and planned.get("align_atlas") == 3, planned
    assert not {"collect", "model_collect", "layout", "whitening", "model_whitening", "grid", "atlas"} & set(planned)

    configure(0.5)
    ran = _ran(snakemake(work))
    assert ran.get("align") == 1 and ran.get("align_atlas") == 3, ran
    assert not {"collect", "model_collect", "layout", "whitening", "model_whitening", "grid", "atlas"} & set(ran), ran
    # what shows an alignment follows it; byte-equality with a run from scratch: tests/test_align_stages.py
    assert ran.get("viewer") == 1 and ran.get("manifest") == 1, ran
    assert set(ran) <= {"align", "align_grid", "align_render", "align_atlas", "viewer", "manifest", "all"}, ran
    assert _planned(snakemake(work, "-n")) == {}, "the changed run, finished, plans nothing"
