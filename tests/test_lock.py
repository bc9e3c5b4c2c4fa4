"""One writer per run directory: a second workflow is refused while the first lives; stale locks explained."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from actlas import lock

SRC = str(Path(lock.__file__).resolve().parents[1])


def _holder(run: Path, owner: str, hold: float) -> subprocess.Popen:
    """Another process (another checkout, say) that takes the lock and holds it ``hold`` seconds."""
    code = (
        f"import sys, time; sys.path.insert(0, {SRC!r}); from actlas import lock; "
        f"lock.acquire({str(run)!r}, {owner!r}); print('held', flush=True); time.sleep({hold})"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_acquire_release(tmp_path):
    run = tmp_path / "run"
    assert lock.acquire(run, "/work/a") is None
    held = json.loads((run / ".actlas.lock").read_text())
    assert held["pid"] == os.getpid() and held["owner"] == "/work/a" and {"host", "time"} <= held.keys()
    assert lock.acquire(run, "/work/a") is None  # already ours
    assert lock.release(run, "/work/a") and not (run / ".actlas.lock").exists()
    assert not lock.release(run, "/work/a")


def test_second_workflow_is_refused_while_the_first_runs(tmp_path):
    run = tmp_path / "run"
    proc = _holder(run, "/work/checkout-a", 30)
    try:
        with pytest.raises(lock.LockError) as err:
            lock.acquire(run, "/work/checkout-b")
        message = str(err.value)
        assert "\n" not in message and "is in use by another workflow: /work/checkout-a" in message
        assert f"pid {proc.pid}" in message and "wait for it to finish or use another run_dir" in message
        assert not lock.release(run, "/work/checkout-b")  # never removes another's lock
        assert (run / ".actlas.lock").exists()
    finally:
        proc.kill()
        proc.wait()


def test_lock_of_a_killed_run_is_taken_over_with_a_note(tmp_path):
    run = tmp_path / "run"
    proc = _holder(run, "/work/checkout-a", 30)
    proc.kill()
    proc.wait()
    note = lock.acquire(run, "/work/checkout-b")
    assert note and "left by /work/checkout-a" in note and "no longer running" in note
    assert json.loads((run / ".actlas.lock").read_text())["owner"] == "/work/checkout-b"


def test_lock_from_another_host_is_explained(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / ".actlas.lock").write_text(
        json.dumps({"host": "node-17", "pid": 4242, "owner": "/home/x/actlas", "time": time.time()})
    )
    with pytest.raises(lock.LockError, match=r"on node-17.*remove .*\.actlas\.lock if no other workflow is running"):
        lock.acquire(run, "/work/b")
    (run / ".actlas.lock").write_text("{garbage")
    with pytest.raises(lock.LockError, match="cannot be read: remove"):
        lock.acquire(run, "/work/b")


def test_check_refuses_without_taking(tmp_path):
    run = tmp_path / "run"
    lock.check(run)  # nothing held: fine, and nothing created
    assert not (run / ".actlas.lock").exists()
    proc = _holder(run, "/work/checkout-a", 30)
    try:
        with pytest.raises(lock.LockError, match="in use by another workflow"):
            lock.check(run)
    finally:
        proc.kill()
        proc.wait()
    lock.check(run)  # its holder is dead: a later acquire takes it over
    assert [p.name for p in run.iterdir()] == [".actlas.lock"]
