"""Reliability: killed runs resume to the same bytes, write errors and bad arguments fail clearly.

The slow tests run the real workflow (snakemake, the shared MobileNetV2, 8 real photos) on a tiny
config: one uninterrupted reference run, a run killed (SIGKILL to snakemake's whole process group)
at several points and resumed with ``--rerun-incomplete``, a second clean run (determinism), and
``actlas render`` killed and resumed alone. The fast tests use the tiny model.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr
from click.testing import CliRunner
from conftest import CARD, ROOT, _photo_folder, small_config, snakemake
from conftest import TINY as TINY_MODEL
from slow_actlas import slow_bin

from actlas import paths
from actlas.cli import main as cli
from actlas.data import images, store
from actlas.data.samples import load_samples
from actlas.errors import LayerError, ModelError
from actlas.formats import shards as shard_files
from actlas.formats.shards import shard_lists, shard_stores, write_index
from actlas.grid import grid as grid_cells
from actlas.models.classes import resolve_class
from actlas.models.load import load_model
from actlas.nn.layers import get_layer
from actlas.stages.collect import collect
from actlas.stages.grid import grid as grid_stage
from actlas.stages.layout import layout as layout_stage
from actlas.stages.shards import split_rows, write_plan

LAYER = "features.13"
ARRAYS = (
    "images/label",
    "images/pred",
    "images/prob",
    "images/size",
    "images/ok",
    f"{LAYER}/activation",
    f"{LAYER}/image",
    f"{LAYER}/position",
    f"{LAYER}/attr_class",
    f"{LAYER}/attr_value",
)
# One shard of 8 photos committed every 2 images; render jobs of up to 8 cells, cached 2 at a time.
TINY = dict(
    collect={"shard_size": 8, "chunk": 2, "batch_size": 2, "positions": 6},
    grid={"sizes": [3]},
    render={"size": 32, "steps": 8, "batch_size": 2, "cells_per_job": 8},
    atlas={"n_examples": 1},
)


# --------------------------------------------------------------------------- helpers


def _env(**extra: str) -> dict[str, str]:
    """The environment conftest.snakemake gives snakemake, plus ``extra``."""
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), str(ROOT / "src")]),  # this checkout's actlas
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        **extra,
    }


def _workdir(base: Path, images: Path, name: str) -> Path:
    work = base / name
    work.mkdir()
    (work / "config.yaml").write_text(small_config(work / "run", images, **TINY))
    return work


def _kill_when(cmd: list[str], ready, env: dict[str, str], log: Path, timeout: float = 300) -> bool:
    """Start ``cmd`` in its own process group; SIGKILL the whole group once ``ready()`` holds.

    Returns True if it was killed, False if it finished first.
    """
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + timeout
        try:
            while proc.poll() is None and time.time() < deadline:
                try:
                    hit = ready()
                except Exception:  # noqa: BLE001 - an artifact half-way through being created
                    hit = False
                if hit:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                    return True
                time.sleep(0.05)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    return False


def _snakemake_cmd(work: Path, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(ROOT / "Snakefile"),
        "--directory",
        str(ROOT),
        "--cores",
        "2",
        "--configfile",
        str(work / "config.yaml"),
        *args,
    ]


def _icons_of(grid_dir: Path) -> dict[int, np.ndarray]:
    """cell -> icon, from every render batch of a grid."""
    out = {}
    for b in sorted((grid_dir / "render").glob("batch-*.npz")):
        with np.load(b) as f:
            out.update({int(c): icon for c, icon in zip(f["cell"], f["icon"])})
    return out


def assert_same_run(a: Path, b: Path, sizes=(3,)) -> None:
    """Two run directories hold byte-identical shard lists, stores, layout, cells and icons."""
    assert [p.name for p in shard_stores(a)] == [p.name for p in shard_stores(b)]
    for la, lb in zip(shard_lists(a), shard_lists(b)):
        assert la.read_text() == lb.read_text()
    for sa, sb in zip(shard_stores(a), shard_stores(b)):
        assert store.is_complete(sa) and store.is_complete(sb)
        for name in ARRAYS:
            xa, xb = store.read([sa], name), store.read([sb], name)
            assert xa.dtype == xb.dtype and xa.shape == xb.shape, (sb, name)
            assert xa.tobytes() == xb.tobytes(), f"{sb.name}:{name} differs"
        image = store.read([sb], f"{LAYER}/image")
        ok = store.read([sb], "images/ok").astype(bool)
        positions = store.shard_attrs(sb)["params"]["positions"]
        assert np.array_equal(np.bincount(image, minlength=len(ok)), np.where(ok, positions, 0)), "duplicated rows"
    for name in ("coords.npy", "whiten.npy"):
        assert (a / LAYER / name).read_bytes() == (b / LAYER / name).read_bytes(), name
    for n in sizes:
        ga, gb = paths.grid_dir(a, LAYER, n), paths.grid_dir(b, LAYER, n)
        with np.load(ga / "cells.npz") as ca, np.load(gb / "cells.npz") as cb:
            for key in ca.files:
                assert ca[key].tobytes() == cb[key].tobytes(), f"cells.npz:{key}"
        ia, ib = _icons_of(ga), _icons_of(gb)
        assert ia.keys() == ib.keys() and all(ia[c].tobytes() == ib[c].tobytes() for c in ia), "icons differ"
        pngs = sorted(p.name for p in (ga / "icons").glob("*.png"))
        assert pngs == sorted(p.name for p in (gb / "icons").glob("*.png")) and pngs
        for p in pngs:
            assert (ga / "icons" / p).read_bytes() == (gb / "icons" / p).read_bytes(), p
        assert (ga / "atlas.png").read_bytes() == (gb / "atlas.png").read_bytes()


@pytest.fixture(scope="module")
def photos8(card, tmp_path_factory) -> Path:
    return _photo_folder(8, tmp_path_factory.mktemp("photos8"))


@pytest.fixture(scope="module")
def reference(photos8, tmp_path_factory) -> Path:
    """An uninterrupted tiny run: the run directory."""
    work = _workdir(tmp_path_factory.mktemp("reliability"), photos8, "reference")
    snakemake(work)
    return work / "run"


# --------------------------------------------------------------------------- killed runs


@pytest.mark.slow
def test_snakemake_killed_at_several_points_resumes_to_same_bytes(reference, photos8, tmp_path):
    """SIGKILL snakemake and its jobs mid-collect, then mid-render; rerun with --rerun-incomplete."""
    work = _workdir(tmp_path, photos8, "killed")
    run = work / "run"
    env = _env()
    env["PATH"] = f"{slow_bin(tmp_path / 'slow-bin', 0.4)}{os.pathsep}{env['PATH']}"  # collect pauses after commits

    def mid_collect() -> bool:
        return any(
            store.committed_of(s, "images/ok") >= 2 and not store.is_complete(s)
            for s in run.glob("collect/shard-*.zarr")
        )

    def mid_render() -> bool:
        cells = paths.grid_dir(run, LAYER, 3) / "cells.npz"
        cached = len(list((run / "cache" / "icons").glob("*.npz")))
        with np.load(cells) as f:
            return 1 <= cached < len(f["count"])

    killed_at = []
    for point, ready in (("collect", mid_collect), ("render", mid_render)):
        args = ("--rerun-incomplete",) if killed_at else ()
        assert _kill_when(_snakemake_cmd(work, *args), ready, env, tmp_path / f"{point}.log"), (
            f"the run finished before the {point} kill point:\n{(tmp_path / f'{point}.log').read_text()[-3000:]}"
        )
        killed_at.append(point)
        if point == "render":  # every icon cached before the kill, with its write time
            cached_at_kill = {p: p.stat().st_mtime_ns for p in (run / "cache" / "icons").glob("*.npz")}
        snakemake(work, "--unlock")
    assert not (run / "manifest.json").exists()
    snakemake(work, "--rerun-incomplete")
    assert_same_run(reference, run)
    # A re-rendered icon is written to the cache again; every icon cached before the kill is untouched.
    # (Counting `rendered` in the batch files cannot tell: a batch that finished before the kill
    # also counts its icons, and a killed batch leaves no file.)
    assert cached_at_kill, "the render kill point left no cached icon"
    assert {p: p.stat().st_mtime_ns for p in cached_at_kill} == cached_at_kill, "cached icons were re-rendered"
    rendered = 0
    for b in (paths.grid_dir(run, LAYER, 3) / "render").glob("batch-*.npz"):
        with np.load(b) as f:
            rendered += int(f["rendered"])
    assert rendered <= len(_icons_of(paths.grid_dir(run, LAYER, 3)))
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["collect"]["images"] == 8 and manifest["collect"]["skipped"] == 0


@pytest.mark.slow
def test_same_seed_gives_identical_bytes(reference, photos8, tmp_path):
    """A second clean run (other processes, other hash seeds) gives byte-identical activations, coords, icons."""
    work = _workdir(tmp_path, photos8, "again")
    snakemake(work)
    assert_same_run(reference, work / "run")


def _render_cmd(run: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "actlas",
        "render",
        str(run),
        "--layer",
        LAYER,
        "--n",
        "3",
        "--model",
        str(CARD),
        "--size",
        "32",
        "--min-positions",
        "0",
        "--steps",
        "8",
        "--batch-size",
        "2",
        "--device",
        "cpu",
        "--threads",
        "2",
        *extra,
    ]


@pytest.mark.slow
def test_render_killed_resumes_from_icon_cache(reference, tmp_path):
    """`actlas render` alone: SIGKILL after some icons are cached; the rerun renders only the rest."""
    runs = {}
    for name in ("clean", "killed"):
        run = tmp_path / name
        (run / LAYER / "grid-3").mkdir(parents=True)
        (run / LAYER / "whiten.npy").write_bytes((reference / LAYER / "whiten.npy").read_bytes())
        (run / LAYER / "grid-3" / "cells.npz").write_bytes((reference / LAYER / "grid-3" / "cells.npz").read_bytes())
        runs[name] = run
    env = _env()
    subprocess.run(_render_cmd(runs["clean"]), cwd=ROOT, env=env, check=True, capture_output=True)
    with np.load(runs["clean"] / LAYER / "grid-3" / "render" / "batch-00000.npz") as f:
        clean = {k: f[k] for k in ("cell", "icon", "objective", "faithfulness")}
        assert int(f["rendered"]) == len(clean["cell"]) >= 3
    cache = runs["killed"] / "cache" / "icons"
    assert _kill_when(
        _render_cmd(runs["killed"]), lambda: len(list(cache.glob("*.npz"))) >= 2, env, tmp_path / "render.log"
    ), "render finished before it could be killed"
    cached = len(list(cache.glob("*.npz")))
    assert not (runs["killed"] / LAYER / "grid-3" / "render" / "batch-00000.npz").exists()
    subprocess.run(_render_cmd(runs["killed"]), cwd=ROOT, env=env, check=True, capture_output=True)
    with np.load(runs["killed"] / LAYER / "grid-3" / "render" / "batch-00000.npz") as f:
        assert int(f["rendered"]) == len(clean["cell"]) - cached
        for k, v in clean.items():
            assert f[k].tobytes() == v.tobytes(), k


# --------------------------------------------------------------------------- write errors


def _shard(tiny_dataset: Path, tmp_path: Path) -> Path:
    path = tmp_path / "shard-00000.txt"
    path.write_text(shard_files.format_shard(images.list_images(tiny_dataset)))
    return path


def _disk_fills_at_commit(monkeypatch, commit: int) -> None:
    """From the ``commit``-th store.append on, every zarr write fails as on a full disk."""
    real_set, real_append = zarr.storage.LocalStore.set, store.append
    state = {"appends": 0}

    async def set_(self, key, value):
        if state["appends"] >= commit:
            raise OSError(errno.ENOSPC, "No space left on device")
        return await real_set(self, key, value)

    def append(group, rows):
        state["appends"] += 1
        return real_append(group, rows)

    monkeypatch.setattr(zarr.storage.LocalStore, "set", set_)
    monkeypatch.setattr(store, "append", append)


TINY_ARGS = dict(positions=2, attr_top=2, batch_size=4, chunk=4, workers=0, progress=False)


def test_disk_full_gives_clear_error_and_keeps_committed_rows(tiny_dataset, tmp_path, monkeypatch):
    """Two chunks of 4 images commit, then the disk is full: a clear StoreError, readable rows, resume."""
    shard = _shard(tiny_dataset, tmp_path)
    ref, out = tmp_path / "ref.zarr", tmp_path / "out.zarr"
    collect(shard, ref, TINY_MODEL, ["features.3"], **TINY_ARGS)
    with monkeypatch.context() as m:
        _disk_fills_at_commit(m, 3)
        with pytest.raises(store.StoreError, match="No space left on device.*run the same command again"):
            collect(shard, out, TINY_MODEL, ["features.3"], **TINY_ARGS)
    assert store.committed_of(out, "images/ok") == 8 and not store.is_complete(out)
    acts = store.read([out], "features.3/activation")
    assert len(acts) == 16 and acts.tobytes() == store.read([ref], "features.3/activation")[:16].tobytes()
    collect(shard, out, TINY_MODEL, ["features.3"], **TINY_ARGS)  # space freed: resumes
    for name in ("features.3/activation", "features.3/image", "images/ok", "images/pred"):
        assert store.read([out], name).tobytes() == store.read([ref], name).tobytes(), name


def test_disk_full_on_the_command_line_is_one_line(tiny_dataset, tmp_path, monkeypatch):
    shard = _shard(tiny_dataset, tmp_path)
    _disk_fills_at_commit(monkeypatch, 2)
    result = CliRunner().invoke(
        cli,
        [
            "collect",
            str(shard),
            str(tmp_path / "s.zarr"),
            "-m",
            "tiny_models:tiny_net",
            "--trust-code",
            "-l",
            "features.3",
            "--workers",
            "0",
            "--batch-size",
            "4",
            "--chunk",
            "4",
        ],
    )
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: cannot write to the store") and "No space left on device" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


# --------------------------------------------------------------------------- bad arguments and config


@pytest.mark.slow
@pytest.mark.parametrize(
    "override, words",
    [
        ({"render": {"stepz": 3}}, ["stepz", "render"]),
        ({"render": {"steps": "many"}}, ["'many' is not of type 'integer'", "steps"]),
        ({"collect": {"positions": -1}}, ["-1", "positions"]),
    ],
)
def test_config_errors_fail_before_any_job(photos8, tmp_path, override, words):
    work = tmp_path / "w"
    work.mkdir()
    (work / "config.yaml").write_text(small_config(work / "run", photos8, **override))
    out = snakemake(work, check=False)
    assert out.returncode != 0
    text = out.stdout + out.stderr
    for w in words:
        assert w in text, f"{w!r} not in:\n{text[-2000:]}"
    assert not (work / "run").exists(), "something ran before the config was validated"


def test_wrong_layer_names_closest(tiny_model):
    with pytest.raises(LayerError, match=r"unknown layer 'features\.33'.*'features\.3'"):
        get_layer(tiny_model, "features.33")


def test_wrong_class_names_closest():
    categories = ("tench, Tinca tinca", "goldfish, Carassius auratus", "grey whale, gray whale")
    with pytest.raises(ModelError, match=r"unknown class 'grey whalee'; did you mean 'grey whale'"):
        resolve_class("grey whalee", categories)


def test_wrong_model_names_closest(tmp_path):
    with pytest.raises(ModelError, match=r"Unknown model resnet5; closest: resnet50"):
        load_model("torchvision:resnet5")
    with pytest.raises(ModelError, match="model card not found"):
        load_model(str(tmp_path / "nope.json"))
    with pytest.raises(ModelError, match="cannot tell what model"):
        load_model("resnet50")


def test_wrong_layer_on_the_command_line_fails_fast(tiny_dataset, tmp_path):
    shard = _shard(tiny_dataset, tmp_path)
    start = time.perf_counter()
    result = CliRunner().invoke(
        cli,
        [
            "collect",
            str(shard),
            str(tmp_path / "s.zarr"),
            "-m",
            "tiny_models:tiny_net",
            "--trust-code",
            "-l",
            "features.33",
            "--workers",
            "0",
        ],
    )
    assert result.exit_code != 0 and "closest valid layers" in result.output and "'features.3'" in result.output
    assert "Traceback" not in result.output and time.perf_counter() - start < 30
    assert not (tmp_path / "s.zarr").exists() or store.committed_of(tmp_path / "s.zarr", "images/ok") == 0


def test_grid_larger_than_data_says_so():
    rng = np.random.default_rng(0)
    coords = rng.random((20, 2))
    acts = rng.random((20, 4)).astype(np.float32)
    cls, val = np.zeros((20, 1), np.int64), np.ones((20, 1), np.float32)
    grid_cells(coords, acts, cls, val, 2, min_count=3)  # fits
    with pytest.raises(
        ValueError, match=r"no cell of the 100x100 grid holds 3 samples \(20 samples in all\).*smaller grid"
    ):
        grid_cells(coords, acts, cls, val, 100, min_count=3)


def _two_shard_run(tiny_dataset: Path, run: Path, second: dict) -> None:
    """A run directory whose two shard stores were collected with TINY_ARGS and TINY_ARGS | second."""
    rows = images.list_images(tiny_dataset)
    for i, part in enumerate((rows[:8], rows[8:])):
        (run / "shards").mkdir(parents=True, exist_ok=True)
        (run / "shards" / f"shard-{i:05d}.txt").write_text(shard_files.format_shard(part))
        args = {**TINY_ARGS, **(second if i else {})}
        layers = args.pop("layers", ["features.3"])
        collect(
            run / "shards" / f"shard-{i:05d}.txt",
            run / "collect" / f"shard-{i:05d}.zarr",
            TINY_MODEL,
            layers,
            **args,
        )
    write_index(run, ["shard-00000", "shard-00001"])


@pytest.mark.parametrize(
    "second, words",
    [
        ({"positions": 3}, "positions"),
        ({"seed": 1}, "seed"),
        ({"layers": ["features.3", "features.1"]}, "layers"),
    ],
)
def test_layout_and_grid_refuse_mixed_stores(tiny_dataset, tmp_path, second, words):
    run = tmp_path / "run"
    _two_shard_run(tiny_dataset, run, second)
    with pytest.raises(store.StoreError, match=f"collected with different .*{words}"):
        layout_stage(run, "features.3", n_neighbors=5)
    with pytest.raises(store.StoreError, match=f"collected with different .*{words}"):
        load_samples(run, "features.3")


def test_layer_missing_from_a_store_is_refused(tiny_dataset, tmp_path):
    run = tmp_path / "run"
    _two_shard_run(tiny_dataset, run, {})
    with pytest.raises(store.StoreError, match="layer 'features.1' was not collected"):
        layout_stage(run, "features.1", n_neighbors=5)


def test_grid_refuses_coords_of_another_collect(tiny_dataset, tmp_path):
    run = tmp_path / "run"
    _two_shard_run(tiny_dataset, run, {})
    (run / "features.3").mkdir()
    np.save(run / "features.3" / "coords.npy", np.full((5, 2), 0.5, np.float32))
    with pytest.raises(store.StoreError, match="has 5 rows but the shard stores hold 32 samples"):
        grid_stage(run, "features.3", 2, min_count=1)


# --------------------------------------------------------------------------- limits named


def test_layout_of_too_few_samples_names_the_minimum_and_the_setting():
    from actlas.layout import layout

    x = np.random.default_rng(0).random((2, 8)).astype(np.float32)
    with pytest.raises(
        ValueError, match=r"^layout needs at least 4 samples of features\.13, got 2: .*collect\.positions"
    ):
        layout(x, n_neighbors=20, backend="umap-learn", layer="features.13")


def test_layout_of_a_one_image_run_is_one_line(tiny_dataset, tmp_path):
    run = tmp_path / "run"
    rows = images.list_images(tiny_dataset)[:1]
    write_plan(run, split_rows(rows, 1))
    collect(
        run / "shards" / "shard-00000.txt",
        run / "collect" / "shard-00000.zarr",
        TINY_MODEL,
        ["features.3"],
        **{**TINY_ARGS, "positions": 2},
    )
    with pytest.raises(ValueError, match=r"layout needs at least 4 samples( of features\.3)?, got 2") as err:
        layout_stage(run, "features.3", n_neighbors=5)
    assert "\n" not in str(err.value)


def test_grid_of_too_few_samples_names_min_count():
    coords = np.full((2, 2), 0.5)
    with pytest.raises(ValueError, match=r"needs at least 3 samples \(grid\.min_count\).*collect\.positions"):
        grid_cells(coords, np.ones((2, 4)), np.zeros((2, 1), np.int64), np.ones((2, 1)), 2, min_count=3)


def test_class_layout_of_no_samples_is_named():
    from actlas.classes import embed

    with pytest.raises(ValueError, match="needs at least 1 sample.*--filter top"):
        embed(np.zeros((0, 4), np.float32))
    assert embed(np.ones((2, 4), np.float32)).shape == (2, 2)
