"""Shared fixtures: tiny real models and images, the shared MobileNetV2, and a small real run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT.parent / "shared" / "assets"
CARD = ASSETS / "models" / "mobilenet_v2_imagenet.json"
VAL = ASSETS / "images" / "imagenet-val"
SAMPLE = ASSETS / "images" / "imagenet-sample"

sys.path.insert(0, str(Path(__file__).parent))
# The tests' own factories (tiny_models:tiny_net) run code: a test that loads one asks for the
# ``trust_code`` fixture (or passes trust_code); nothing else is trusted.
TINY = {"source": "tiny_models:tiny_net", "trust_code": True}


_TRUST_AT_START = os.environ.get("ACTLAS_TRUST_CODE")


def pytest_runtest_setup(item):
    """No test or fixture leaves code trusted for the tests after it (they would pass that should refuse)."""
    if os.environ.get("ACTLAS_TRUST_CODE") != _TRUST_AT_START:
        raise pytest.UsageError(
            f"ACTLAS_TRUST_CODE was left set before {item.nodeid}: set it with monkeypatch (the trust_code fixture)"
        )


def pytest_collection_modifyitems(items):
    """A test that uses the shared MobileNetV2 (the ``card`` fixture and those built on it) is ``slow``."""
    for item in items:
        if "card" in getattr(item, "fixturenames", ()) and item.get_closest_marker("slow") is None:
            raise pytest.UsageError(f"{item.nodeid} uses the shared MobileNetV2: mark it @pytest.mark.slow")


@pytest.fixture(autouse=True)
def torch_threads(request):
    """One torch thread for the fast tests (their tiny models run fastest on one; a second thread only
    waits on the other core), two for the slow ones (the shared MobileNetV2), as the demo's jobs use."""
    torch.set_num_threads(2 if request.node.get_closest_marker("slow") else 1)


def pytest_sessionfinish(session, exitstatus):
    for folder in _TEMPORARY:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def trust_code(monkeypatch):
    """ACTLAS_TRUST_CODE=1 for one test: the tests' own factories (``tiny_models:...``) are code it trusts."""
    monkeypatch.setenv("ACTLAS_TRUST_CODE", "1")


@pytest.fixture(scope="session")
def tiny_model():
    from tiny_models import TinyNet

    return TinyNet().eval()


@pytest.fixture
def tiny_dataset(tmp_path) -> Path:
    """16 random 40x48 JPEGs in two labelled class folders."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(16):
        folder = tmp_path / "images" / ("n01440764" if i % 2 else "n01443537")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(folder / f"img{i:02d}.jpg")
    return tmp_path / "images"


@pytest.fixture(scope="session")
def card() -> str:
    if not CARD.exists():
        pytest.skip(f"shared assets not found at {ASSETS}")
    return str(CARD)


@pytest.fixture(scope="session")
def mobilenet(card):
    from actlas.models.load import load_model

    return load_model(card)


@pytest.fixture(scope="session")
def photos(card, tmp_path_factory) -> Path:
    """A folder of 24 real photos (symlinks into the shared set), in their class folders."""
    return _photo_folder(24, tmp_path_factory.mktemp("photos"))


_TEMPORARY: list[Path] = []  # folders _photo_folder made: removed when the session ends


def _photo_folder(n: int, base: Path | None = None) -> Path:
    """``base`` (default: a new temporary folder, removed when the session ends) holding ``n`` real
    photos (symlinks into the shared set), one class folder each."""
    if base is None:
        base = Path(tempfile.mkdtemp(prefix="actlas-photos-"))
        _TEMPORARY.append(base)
    base.mkdir(parents=True, exist_ok=True)
    classes = sorted(VAL.iterdir())
    step = max(1, len(classes) // n)
    for d in classes[::step][:n]:
        f = sorted(d.iterdir())[0]
        (base / d.name).mkdir()
        (base / d.name / f.name).symlink_to(f)
    return base


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run this repository's workflow on a config in ``workdir`` (its own run directory)."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), str(ROOT / "src")]),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    cmd = [
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
        str(workdir / "config.yaml"),
        *args,
    ]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if check and out.returncode != 0:
        raise AssertionError(f"snakemake failed:\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}")
    return out


def small_config(run_dir: Path, images: Path, **over) -> str:
    import yaml

    cfg = {
        "run_dir": str(run_dir),
        "model": str(CARD),
        "images": [str(images)],
        "layers": ["features.13"],
        "collect": {"shard_size": 12, "positions": 6, "batch_size": 8, "chunk": 8},
        "grid": {"sizes": [3, 5], "min_count": 2},
        "render": {"size": 48, "min_positions": 0, "steps": 12, "batch_size": 8, "cells_per_job": 8},
        "atlas": {"n_examples": 2},
    }
    for k, v in over.items():
        cfg[k] = {**cfg.get(k, {}), **v} if isinstance(v, dict) else v
    return yaml.safe_dump(cfg)


@pytest.fixture(scope="session")
def small_run(card, tmp_path_factory) -> Path:
    """A real pipeline run on 24 real photos with the shared MobileNetV2: two grid sizes of one layer."""
    work = tmp_path_factory.mktemp("small-run")
    images = _photo_folder(24, tmp_path_factory.mktemp("small-run-photos"))
    (work / "config.yaml").write_text(small_config(work / "run", images))
    snakemake(work)
    return work / "run"


def one_line(err: BaseException, *words: str) -> str:
    """The text of a user error, asserted to be one non-empty line holding every one of ``words``."""
    text = str(err)
    assert text and "\n" not in text, text
    for w in words:
        assert w in text, text
    return text
