import numpy as np
import pytest

from actlas.data import store

COLS = [store.Column("a/x", (3,), "float16"), store.Column("a/i", (), "int32")]


def test_append_commits_and_reopen_truncates_uncommitted_rows(tmp_path):
    path = tmp_path / "s.zarr"
    g = store.open_shard(path, COLS, {"p": 1})
    store.append(g, {"a/x": np.ones((4, 3)), "a/i": np.arange(4)})
    # a writer killed after growing an array but before committing leaves extra rows behind
    g["a/x"].resize((9, 3))
    g["a/x"][4:9] = 7
    assert store.read([path], "a/x").shape == (4, 3)  # readers see committed rows only
    g = store.open_shard(path, COLS, {"p": 1})
    assert g["a/x"].shape == (4, 3)
    store.append(g, {"a/x": np.zeros((2, 3)), "a/i": np.arange(2)})
    np.testing.assert_array_equal(store.read([path], "a/i"), [0, 1, 2, 3, 0, 1])
    assert store.committed_of(path, "a/x") == 6


def test_other_params_refused(tmp_path):
    store.open_shard(tmp_path / "s.zarr", COLS, {"p": 1})
    with pytest.raises(store.StoreError):
        store.open_shard(tmp_path / "s.zarr", COLS, {"p": 2})


def test_merged_reads_numpy_and_dask(tmp_path):
    paths = []
    for k in range(3):
        g = store.open_shard(tmp_path / f"s{k}.zarr", COLS, {"p": 1})
        store.append(g, {"a/x": np.full((k + 1, 3), k), "a/i": np.arange(k + 1)})
        store.finish(g)
        paths.append(tmp_path / f"s{k}.zarr")
    x = store.read(paths, "a/x")
    assert x.shape == (6, 3) and x[:, 0].tolist() == [0, 1, 1, 2, 2, 2]
    np.testing.assert_array_equal(store.read_dask(paths, "a/x").compute(), x)
    assert all(store.is_complete(p) for p in paths)
    assert not store.is_complete(tmp_path / "missing.zarr")
