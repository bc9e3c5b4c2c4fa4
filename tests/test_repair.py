"""Folders the workflow writes whole that lost a file (actlas.repair): found reading only, against the seal of
the last finished run and the chunks a finished store's rows need; removed so that their rules rebuild them."""

import os
import shutil
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from _tiny_run import LAYER, make_tiny_run

from actlas import paths, repair
from actlas.seal import seal


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ACTLAS_TRUST_CODE", "1")  # the tiny model is the tests' own code, while the run is built
        run = make_tiny_run(tmp_path_factory.mktemp("repair"))
    seal(run)
    return run


@pytest.fixture
def run(built, tmp_path):
    shutil.copytree(built, tmp_path / "run")  # copy2 keeps the times the seal recorded
    return tmp_path / "run"


def test_a_sound_run_has_no_incomplete_folder(run):
    assert repair.incomplete_folders(run) == {}
    assert repair.incomplete_folders(run / "nothing-here") == {}


def test_a_file_deleted_inside_a_folder_names_that_folder(run):
    icons = paths.icons_dir(paths.grid_dir(run, LAYER, 3))
    victim = sorted(icons.glob("*.png"))[0]
    victim.unlink()
    (run / LAYER / "coords.npy").unlink()  # not inside a folder written whole: Snakemake sees it itself
    assert repair.incomplete_folders(run) == {icons: victim.name}
    assert repair.remove([icons]) == [icons] and not icons.exists()
    assert repair.incomplete_folders(run) == {}  # the folder gone: Snakemake rebuilds it


def test_a_chunk_or_a_zarr_json_deleted_from_a_finished_store_names_the_store(run):
    stores = sorted(paths.collect_dir(run).glob(paths.STORE_GLOB))
    chunk = sorted((stores[0] / LAYER / "activation").rglob("c/*/*"))[0]
    chunk.unlink()
    (stores[1] / "images" / "zarr.json").unlink()
    found = repair.incomplete_folders(run)
    assert set(found) == {stores[0], stores[1]}, found
    assert found[stores[0]].startswith(f"{LAYER}/activation/c/") and found[stores[1]] == "images/zarr.json"


def test_a_folder_written_again_since_the_seal_is_left_to_snakemake(run):
    icons = paths.icons_dir(paths.grid_dir(run, LAYER, 3))
    first, second = sorted(icons.glob("*.png"))[:2]
    first.unlink()
    later = time.time() + 5
    os.utime(second, (later, later))  # a later (unsealed) run wrote the folder: the seal no longer describes it
    assert repair.incomplete_folders(run) == {}
