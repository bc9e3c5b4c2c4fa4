"""The run directory trusted only as far as it is checked (issue 31): real paths for run_dir's guards,
FIFOs and dangling links that never block or fail verify and the seal, named files (weights, cards,
labels, lists, directions) that must be regular files, and the run's lock taken by commands run by hand.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import ROOT

from actlas import lock, paths
from actlas.cli import main as cli
from actlas.errors import ConfigError, DataError, LockError, ModelError
from actlas.smk import check_run_dir


@contextmanager
def deadline(seconds: int = 20):
    """Fail instead of hanging: SIGALRM after ``seconds``."""

    def fail(*_):
        raise TimeoutError(f"blocked for {seconds} s")

    old = signal.signal(signal.SIGALRM, fail)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def test_run_dir_guards_hold_on_real_paths(tmp_path):
    checkout = tmp_path / "checkout"
    (checkout / "runs").mkdir(parents=True)
    other = tmp_path / "other"
    (other / ".git").mkdir(parents=True)
    (checkout / "runs" / "root").symlink_to("/")
    (checkout / "runs" / "other").symlink_to(other)
    (checkout / "runs" / "home").symlink_to(checkout)
    for name in ("root", "other", "home"):
        with pytest.raises(ConfigError) as err:
            check_run_dir(f"runs/{name}", checkout)
        assert "\n" not in str(err.value) and "folder of its own" in str(err.value)
    (checkout / "runs" / "fine").symlink_to(tmp_path / "elsewhere")
    assert check_run_dir("runs/fine", checkout) == "runs/fine"
    assert check_run_dir("runs/new", checkout) == "runs/new"


def odd_run(tmp_path) -> Path:
    """A run directory holding a FIFO where a shard list, an npy and a JSON would be, a dangling link and a loop."""
    run = tmp_path / "run"
    (run / "shards").mkdir(parents=True)
    (run / "layer").mkdir()
    os.mkfifo(run / "shards" / "shard-00000.txt")
    os.mkfifo(run / "layer" / "coords.npy")
    os.mkfifo(run / "layer" / "atlas.json")
    (run / "layer" / "gone.png").symlink_to(run / "nowhere.png")
    (run / "layer" / "loop").symlink_to(run / "layer" / "loop")
    np.save(run / "layer" / "whiten.npy", np.eye(2, dtype=np.float32))
    return run


def test_fifos_and_dangling_links_never_block_verify_or_the_seal(tmp_path):
    from actlas import verify

    run = odd_run(tmp_path)
    with deadline():
        seal = verify.seal(run)
        problems = verify.verify_run(run)
    assert "whiten.npy" in seal.read_text() and "coords.npy" not in seal.read_text()
    named = {Path(q.path).name: q.reason for q in problems}
    assert {"shard-00000.txt", "coords.npy", "atlas.json", "gone.png", "loop"} <= set(named), named
    assert "named pipe" in named["coords.npy"] and "remove it" in named["coords.npy"]


def test_named_files_that_are_not_regular_files_are_refused(tmp_path):
    from actlas.data.images import list_images
    from actlas.models.card import read_card
    from actlas.models.classes import read_names
    from actlas.models.weights import load_weights

    fifo = tmp_path / "pipe.safetensors"
    os.mkfifo(fifo)
    with deadline():
        for call, error in [
            (lambda: load_weights(fifo), ModelError),
            (lambda: load_weights(Path("/dev/zero")), ModelError),
            (lambda: read_names(str(fifo)), ModelError),
            (lambda: read_card(fifo), ModelError),
            (lambda: list_images(fifo), DataError),
        ]:
            with pytest.raises(error) as err:
                call()
            assert "\n" not in str(err.value) and "not a regular file" in str(err.value), err.value


def test_garbage_weights_are_one_line(tmp_path):
    from actlas.models.weights import load_weights

    (tmp_path / "w.safetensors").write_bytes(b"\xff" * 8 + b"garbage")
    (tmp_path / "w.pt").write_bytes(b"not a torch file at all")
    for name in ("w.safetensors", "w.pt"):
        with pytest.raises(ModelError) as err:
            load_weights(tmp_path / name)
        assert "\n" not in str(err.value) and name in str(err.value)


@pytest.fixture
def locked_run(tmp_path):
    """A run whose lock another live process holds."""
    run = tmp_path / "run"
    run.mkdir()
    code = f"from actlas import lock; lock.acquire({str(run)!r}, 'another workflow'); import time; time.sleep(60)"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    holder = subprocess.Popen([sys.executable, "-c", code], env=env)
    for _ in range(200):
        if lock.holder(run):
            break
        time.sleep(0.05)
    yield run
    holder.kill()
    holder.wait()


def test_commands_run_by_hand_take_the_runs_lock(locked_run, monkeypatch):
    monkeypatch.delenv(lock.ENV, raising=False)
    result = CliRunner().invoke(cli, ["layout", str(locked_run), "-l", "x"])
    assert result.exit_code == 1 and "in use by another workflow" in result.output, result.output
    result = CliRunner().invoke(cli, ["shards", "imgs", "--run", str(locked_run), "-m", "x"])
    assert result.exit_code == 1 and "in use by another workflow" in result.output, result.output
    with pytest.raises(LockError):
        lock.for_command(locked_run, "me")
    # under the workflow that holds the lock (its jobs inherit lock.ENV) the command goes on
    monkeypatch.setenv(lock.ENV, lock.token(lock.holder(locked_run)))
    result = CliRunner().invoke(cli, ["layout", str(locked_run), "-l", "x"])
    assert "in use" not in result.output, result.output


def test_a_command_on_a_free_run_takes_and_gives_back_the_lock(tmp_path, monkeypatch):
    monkeypatch.delenv(lock.ENV, raising=False)
    run = tmp_path / "run"
    run.mkdir()
    seen = {}
    real = lock.acquire

    def spy(run_dir, owner):
        seen["owner"] = owner
        return real(run_dir, owner)

    monkeypatch.setattr(lock, "acquire", spy)
    result = CliRunner().invoke(cli, ["layout", str(run), "-l", "x"])
    assert result.exit_code == 1 and "actlas layout" in seen["owner"]
    assert not paths.lock(run).exists()
    result = CliRunner().invoke(cli, ["verify", str(run)])
    assert not paths.lock(run).exists()


# --------------------------------------------------------------------------- partial deletions


def test_directory_outputs_are_found_for_files_inside_them(tmp_path):
    run = tmp_path / "run"
    grid = paths.grid_dir(run, "features.13", 3)
    assert paths.directory_output(run, paths.icons_dir(grid) / "cell-0-0.png") == paths.icons_dir(grid)
    assert paths.directory_output(run, paths.examples_dir(grid) / "x.jpg") == paths.examples_dir(grid)
    assert paths.directory_output(run, paths.viewer_index(run)) == paths.viewer_dir(run)
    assert paths.directory_output(run, paths.patch_dir(run, "a-to-b") / "report.json") == paths.patch_dir(run, "a-to-b")
    store = paths.shard_store(run, "shard-00000")
    assert paths.directory_output(run, store / "zarr.json") == store
    for plain in (paths.atlas_json(grid), paths.cells(grid), paths.shard_index(run), paths.cached_icon(run, "k")):
        assert paths.directory_output(run, plain) is None, plain


def test_verify_gives_the_exact_command_for_a_file_deleted_inside_a_directory_output(tmp_path):
    from actlas import verify

    run = tmp_path / "my run"
    grid = paths.grid_dir(run, "features.13", 3)
    paths.icons_dir(grid).mkdir(parents=True)
    icon = paths.icons_dir(grid) / "cell-0-0.txt"
    icon.write_text("icon")
    paths.atlas_json(grid).write_text("{}")
    verify.seal(run)
    icon.unlink()
    paths.atlas_json(grid).unlink()
    reasons = {Path(q.path).name: q.reason for q in verify.verify_run(run)}
    assert f"rm -r -- '{paths.icons_dir(grid)}'" in reasons["cell-0-0.txt"], reasons
    assert "run the workflow again" in reasons["atlas.json"] and "rm -r" not in reasons["atlas.json"]


def test_a_deleted_skip_list_of_a_complete_store_is_written_again(tmp_path):
    from conftest import _photo_folder
    from test_hostile import block

    from actlas.formats.shards import read_skipped
    from actlas.stages.collect import collect
    from actlas.stages.shards import shards

    photos = _photo_folder(4, tmp_path / "photos")
    bad = next(photos.iterdir()) / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    run = tmp_path / "run"
    (shard,) = shards(str(photos), run, block("fine"), shard_size=10)
    out = run / "collect" / "shard-00000.zarr"
    kw = dict(positions=2, attr_top=2, batch_size=8, workers=0, progress=False)
    collect(shard, out, block("fine"), ["probe"], **kw)
    before = read_skipped(paths.store_skipped(out))
    assert [p for p, _ in before] == [str(bad)]
    paths.store_skipped(out).unlink()
    collect(shard, out, block("fine"), ["probe"], **kw)
    assert read_skipped(paths.store_skipped(out)) == before


def test_verify_checks_the_shape_of_directions_and_icons(tmp_path):
    from actlas import verify
    from actlas.formats.atomic import save_npz

    run = tmp_path / "run"
    grid = paths.grid_dir(run, "features.13", 2)
    grid.mkdir(parents=True)
    np.save(paths.whiten(run, "features.13"), np.eye(4, dtype=np.float32))
    cells = dict(
        ij=np.zeros((2, 2), np.int32),
        count=np.ones(2, np.int64),
        attribution=np.zeros((2, 1), np.float32),
        label=np.zeros(2, np.int64),
        order=np.arange(2),
        offsets=np.array([0, 1, 2]),
        n=np.int64(2),
        min_count=np.int64(1),
    )
    save_npz(paths.cells(grid), direction=np.ones((2, 3), np.float32), **cells)
    save_npz(paths.cached_icon(run, "k"), icon=np.zeros((8, 8), np.float32), objective=0.0, faithfulness=0.0)
    reasons = {Path(q.path).name: q.reason for q in verify.verify_run(run)}
    assert "3 channels, the layer 4" in reasons["cells.npz"], reasons
    assert "not uint8 RGB" in reasons["k.npz"], reasons
    save_npz(paths.cells(grid), direction=np.ones((2, 4), np.float32), **cells)
    assert "cells.npz" not in {Path(q.path).name for q in verify.verify_run(run)}


def test_a_direction_file_that_is_not_an_npy_array_is_one_line(tmp_path):
    from actlas.stages.patch import _render_direction

    text = tmp_path / "passwd"
    text.write_text("root:x:0:0:root:/root:/bin/bash\n")
    pickled = tmp_path / "obj.npy"
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    for path in (text, pickled):
        with pytest.raises(ConfigError) as err:
            _render_direction(path, tmp_path, "x", object(), object(), None, "cpu", None)
        assert "\n" not in str(err.value) and "allow_pickle" not in str(err.value) and "np.save" in str(err.value)
