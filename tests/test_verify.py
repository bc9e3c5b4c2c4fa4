"""Damaged stores and artifacts are found and named: by the readers, and by verify_run over a whole run."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr
from _tiny_run import LAYER, make_tiny_run

from actlas.data import store
from actlas.errors import no_space_message
from actlas.stages.layout import layout as layout_stage
from actlas.verify import Problem, seal, verify_run

COLS = [store.Column("a/x", (3,), "float16"), store.Column("a/i", (), "int32")]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    run = make_tiny_run(tmp_path_factory.mktemp("tiny"))
    seal(run)
    return run


@pytest.fixture
def run(finished, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(finished, copy, symlinks=True)
    return copy


def _store(tmp_path, rows=17000) -> Path:
    path = tmp_path / "s.zarr"
    g = store.open_shard(path, COLS, {"p": 1})
    x = np.arange(rows * 3, dtype=np.float16).reshape(rows, 3) % 7
    store.append(g, {"a/x": x, "a/i": np.zeros(rows, np.int32)})  # a/i all zeros: its chunks are written too
    store.finish(g, summary={"images": 0, "rows": {"a": rows}})
    return path


def test_every_chunk_has_a_crc32c_and_zero_chunks_are_written(tmp_path):
    path = _store(tmp_path)
    array = zarr.open_group(str(path), mode="r")["a/i"]
    assert "Crc32cCodec" in repr(array.metadata.codecs)
    assert sorted(os.listdir(path / "a" / "i" / "c")) == ["0", "1", "2"]  # 17000 rows in chunks of 8192


def test_missing_chunk_is_an_error_naming_store_array_and_chunk(tmp_path):
    path = _store(tmp_path)
    (path / "a" / "i" / "c" / "1").unlink()
    for read in (
        lambda: store.read([path], "a/i"),
        lambda: store.read_dask([path], "a/i").compute(),
        lambda: store.committed_of(path, "a/i"),
    ):
        with pytest.raises(store.StoreError, match=r"s\.zarr: array a/i chunk c/1 is missing; delete the store"):
            read()
    np.testing.assert_array_equal(store.read([path], "a/x")[:2], [[0, 1, 2], [3, 4, 5]])  # other arrays read


def test_flipped_bits_are_a_checksum_error_naming_the_chunk(tmp_path):
    path = _store(tmp_path)
    chunk = path / "a" / "x" / "c" / "2" / "0"
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0x04
    chunk.write_bytes(bytes(data))
    with pytest.raises(store.StoreError, match=r"array a/x chunk c/2/0 is damaged \(crc32c mismatch\)"):
        store.read([path], "a/x")
    with pytest.raises(store.StoreError, match=r"chunk c/2/0 is damaged"):
        store.read_dask([path], "a/x").compute()
    assert len(store.read_dask([path], "a/x")[:2730].compute()) == 2730  # chunks before it still read


def test_committed_rows_are_checked_against_the_array_and_the_summary(tmp_path):
    path = _store(tmp_path)
    g = zarr.open_group(str(path), mode="a")
    g.attrs["committed"] = {"a/x": 16999, "a/i": 17000}
    with pytest.raises(store.StoreError, match="16999 committed rows but the finished store promises 17000"):
        store.read([path], "a/x")
    g.attrs["committed"] = {"a/x": 17001, "a/i": 17000}
    with pytest.raises(store.StoreError, match="has 17000 rows but 17001 are committed"):
        store.read([path], "a/x")


def test_store_of_the_old_format_is_refused(tmp_path):
    path = _store(tmp_path)
    zarr.open_group(str(path), mode="a").attrs["format"] = 1
    with pytest.raises(store.StoreError, match=f"store format 1, this actlas reads and writes format {store.FORMAT}"):
        store.open_shard(path, COLS, {"p": 1})


def test_no_space_message_is_one_line_naming_the_path():
    err = OSError(errno.ENOSPC, "No space left on device", "/runs/x/viewer/tiles/0_0.jpeg")
    assert no_space_message(err) == (
        "no space left on device writing /runs/x/viewer/tiles/0_0.jpeg: free space or move run_dir"
    )
    try:
        try:
            raise err
        except OSError as inner:
            raise RuntimeError("while writing tiles") from inner
    except RuntimeError as outer:
        assert no_space_message(outer).startswith("no space left on device writing /runs/x/viewer")
    assert no_space_message(OSError(errno.EDQUOT, "Disk quota exceeded")) == (
        "disk quota exceeded: free space or move run_dir"
    )
    assert no_space_message(OSError(errno.EACCES, "Permission denied")) is None


def test_a_finished_run_verifies_clean(finished):
    assert verify_run(finished) == []


def test_verify_names_a_missing_chunk_and_layout_refuses_it(run):
    chunk = run / "collect" / "shard-00001.zarr" / LAYER / "activation" / "c" / "0" / "0"
    chunk.unlink()
    problems = verify_run(run)
    assert problems and all(isinstance(p, Problem) for p in problems)
    assert str(problems[0]) == (
        f"{run}/collect/shard-00001.zarr: array {LAYER}/activation chunk c/0/0 is missing; "
        "delete the store and run collect again (the workflow then re-collects that shard)"
    )
    with pytest.raises(store.StoreError, match="chunk c/0/0 is missing"):
        layout_stage(run, LAYER, n_neighbors=5)


def test_verify_finds_damaged_artifacts(run):
    (run / LAYER / "grid-3" / "atlas.json").write_text('{"cells": [')
    cells = run / LAYER / "grid-3" / "cells.npz"
    cells.write_bytes(cells.read_bytes()[:-40])
    png = run / LAYER / "grid-3" / "atlas.png"
    png.write_bytes(png.read_bytes()[:-30])
    np.save(run / LAYER / "coords.npy", np.zeros((5, 2), np.float32))
    found = {Path(p.path).name: p.reason for p in verify_run(run)}
    assert set(found) >= {"atlas.json", "cells.npz", "atlas.png", "coords.npy"}, found
    assert "coords.npy has 5 rows, the shard stores hold 32 samples" in found["coords.npy"]
    assert all("\n" not in r for r in found.values())


def test_seal_finds_a_flipped_bit_that_leaves_the_time(run):
    path = run / LAYER / "coords.npy"
    st = path.stat()
    data = bytearray(path.read_bytes())
    coords = np.load(path)
    assert coords.dtype == np.float32 and coords.dtype.byteorder in "<="
    inside = np.flatnonzero((coords.ravel() > 0.25) & (coords.ravel() < 0.75))
    # the lowest mantissa bit (little-endian: the first byte) of a value well inside [0, 1]: only the seal can tell
    data[len(data) - coords.nbytes + 4 * int(inside[0])] ^= 0x01
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert verify_run(run, use_seal=False) == []
    assert [(Path(p.path).name, p.reason) for p in verify_run(run)] == [
        ("coords.npy", "damaged: its crc32 differs from when the run finished (same size and time)")
    ]
    path.write_bytes(bytes(data))  # rewritten now (a later run): not compared
    assert verify_run(run) == []


def test_verify_compares_store_counts_with_the_shard_list(run):
    lst = run / "shards" / "shard-00000.txt"
    lst.write_text(lst.read_text() + json.dumps({"path": "/new.jpg", "label": 0}) + "\n")
    assert any("its shard list has" in p.reason for p in verify_run(run))


def test_resuming_a_store_with_a_missing_or_damaged_chunk_is_refused(tmp_path):
    path = tmp_path / "s.zarr"
    g = store.open_shard(path, COLS, {"p": 1})
    store.append(g, {"a/x": np.ones((5, 3)), "a/i": np.arange(5)})  # a partly filled first chunk
    chunk = path / "a" / "x" / "c" / "0" / "0"
    data = chunk.read_bytes()
    chunk.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(store.StoreError, match="a chunk of a/x is damaged .*delete the store"):
        store.append(store.open_shard(path, COLS, {"p": 1}), {"a/x": np.ones((2, 3)), "a/i": np.arange(2)})
    chunk.unlink()
    with pytest.raises(store.StoreError, match="array a/x chunk c/0/0 is missing"):
        store.open_shard(path, COLS, {"p": 1})
