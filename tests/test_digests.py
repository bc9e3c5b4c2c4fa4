"""Content digests of rendered icons (issue 31): render batches and the icon cache record a digest of each
icon where they are written; the atlas stage, the render stage's cache and ``actlas verify`` check them."""

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))

from _tiny_run import LAYER, MODEL, make_tiny_run

from actlas import paths
from actlas.errors import MissingError
from actlas.formats import batches
from actlas.settings import RenderParams
from actlas.verify import verify_run

PARAMS = RenderParams(size=16, min_positions=0, steps=2, batch_size=16, pad=2, jitter=1)  # _tiny_run's


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ACTLAS_TRUST_CODE", "1")  # the tiny model is the tests' own code, while the run is built
        return make_tiny_run(tmp_path_factory.mktemp("digests"))


@pytest.fixture
def run(built, tmp_path, trust_code):
    """A copy of the tiny finished run, its icon cache included, for one test to damage."""
    import shutil

    shutil.copytree(built, tmp_path / "run")
    return tmp_path / "run"


def _reasons(run) -> dict[str, str]:
    return {str(Path(q.path).relative_to(run)): q.reason for q in verify_run(run)}


def test_an_icon_digest_is_of_the_icon_alone():
    icons = np.random.default_rng(0).integers(0, 255, (5, 8, 8, 3), dtype=np.uint8)
    whole = batches.icon_digests(icons)
    assert list(whole[1:3]) == list(batches.icon_digests(icons[1:3]))  # however the batch is cut
    assert len(set(whole)) == 5
    other = icons.copy()
    other[2, 0, 0, 0] ^= 1
    assert batches.icon_digests(other)[2] != whole[2]


def test_a_repainted_or_swapped_cached_icon_is_rendered_again_equal_to_a_fresh_one(run):
    import shutil

    from actlas.formats.atomic import save_npz
    from actlas.stages.render import render as render_stage

    grid = paths.grid_dir(run, LAYER, 3)
    batch_path = paths.render_batch(grid, 0)
    shutil.rmtree(paths.cached_icon(run, "x").parent)  # cached afresh under this test's torch threads (a key's)
    render_stage(run, LAYER, 3, MODEL, params=PARAMS, device="cpu", progress=False)
    first = batches.read_batch(batch_path)
    cached = sorted(paths.cached_icon(run, "x").parent.glob("*.npz"))
    # the tiny run's 3 x 3 grid keeps 2 or more cells (its layout follows the threads collect ran under)
    assert len(cached) == len(first.cell) >= 2 and _reasons(run) == {}
    with np.load(cached[0]) as f:
        original = {k: f[k] for k in f.files}
    save_npz(cached[0], **{**original, "icon": np.zeros_like(original["icon"])})  # repainted, its digest kept
    save_npz(cached[1], **original)  # another icon's entry, digest and all, copied under this key
    reasons = _reasons(run)
    assert set(reasons) == {str(p.relative_to(run)) for p in cached[:2]}, reasons
    assert all("differs from the digest" in r for r in reasons.values()), reasons
    batch_path.unlink()
    render_stage(run, LAYER, 3, MODEL, params=PARAMS, device="cpu", progress=False)
    again = batches.read_batch(batch_path)
    assert again.rendered == 2
    assert np.array_equal(again.icon, first.icon) and list(again.icon_digest) == list(first.icon_digest)
    assert _reasons(run) == {}


def test_an_altered_render_batch_is_refused_by_atlas_and_named_by_verify(run):
    from actlas.stages.atlas import atlas as atlas_stage

    batch_path = paths.render_batch(paths.grid_dir(run, LAYER, 3), 0)
    with np.load(batch_path) as f:
        members = {k: f[k] for k in f.files}
    icon = members["icon"].copy()
    icon[0] = 255 - icon[0]
    np.savez(batch_path, **{**members, "icon": icon})  # a valid npz: only the digest tells
    with pytest.raises(MissingError) as err:
        atlas_stage(run, LAYER, 3, MODEL, n_examples=1)
    assert str(batch_path) in str(err.value) and "\n" not in str(err.value)
    assert "differs from the digest" in str(err.value) and "run the workflow again" in str(err.value)
    assert "differs from the digest" in _reasons(run)[str(batch_path.relative_to(run))]
    np.savez(batch_path, **{k: v for k, v in members.items() if k != "icon_digest"})  # an older actlas's
    with pytest.raises(MissingError, match="no digest"):
        atlas_stage(run, LAYER, 3, MODEL, n_examples=1)


def test_a_repainted_icon_png_is_named_by_verify(run):
    icons = sorted((paths.grid_dir(run, LAYER, 3) / "icons").glob("*.png"))
    assert icons and _reasons(run) == {}
    pixels = np.asarray(Image.open(icons[0])).copy()
    pixels[0, 0] = 255 - pixels[0, 0]
    Image.fromarray(pixels).save(icons[0])  # a valid PNG
    reasons = _reasons(run)
    assert list(reasons) == [str(icons[0].relative_to(run))], reasons
    assert "differ from the icon rendered" in reasons[str(icons[0].relative_to(run))]
