"""Robust image decoding and listing, on a generated corpus of bad, odd and good files.

The corpus comes from ``tests/data/make_bad.py`` (generated, never downloaded). Every entry is
either decoded to the right size, orientation and colours, or skipped with a one-line reason; one
slow test collects a shard of the whole corpus with the shared MobileNetV2.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from actlas import images as imgs

sys.path.insert(0, str(Path(__file__).parent / "data"))
from make_bad import Case, make  # noqa: E402


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict[str, Case]]:
    out = tmp_path_factory.mktemp("corpus") / "bad"
    return out, make(out)


def _listed_cases() -> list[str]:
    """Entry names, known without building the corpus (for parametrize ids)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        return sorted(make(Path(tmp) / "bad", n_photos=0))


NAMES = _listed_cases()


@pytest.mark.parametrize("name", NAMES)
def test_corpus_entry_decoded_or_skipped_with_reason(corpus, name):
    out, cases = corpus
    case = cases[name]
    if case.expect == "unlisted":
        assert not any(p == str((out / name).absolute()) for p, _ in imgs.list_images(out))
        return
    image, reason = imgs.decode(out / name)
    if case.expect == "skipped":
        assert image is None, f"{name} ({case.why}) should be skipped"
        assert reason.startswith(case.reason), f"{name}: {reason!r} does not start with {case.reason!r}"
        assert "\t" not in reason and "\n" not in reason and len(reason) <= 200
        return
    assert image is not None, f"{name} ({case.why}) should decode, got: {reason}"
    assert reason == ""
    assert image.mode == "RGB" and image.size == case.size, (image.mode, image.size)
    for (x, y), rgb in case.pixels:
        got = image.getpixel((x, y))
        assert max(abs(a - b) for a, b in zip(got, rgb)) <= case.tolerance, f"{name} at {(x, y)}: {got} != {rgb}"


def test_real_photos_in_corpus(corpus):
    out, cases = corpus
    photos = [n for n in cases if n.endswith(".JPEG")]
    if not photos:
        pytest.skip("shared photos not found")
    for name in photos:
        image, reason = imgs.decode(out / name)
        assert reason == "" and image.size == cases[name].size
        assert np.asarray(image).std() > 10  # a real photo, not blank


def test_listing_ends_on_loops_and_lists_every_file_once(corpus):
    out, cases = corpus
    rows = imgs.list_images(out)
    paths = [p for p, _ in rows]
    assert len(paths) == len(set(paths)), "an image listed twice"
    expected = {str((out / n).absolute()) for n, c in cases.items() if c.listed}
    assert set(paths) == expected
    assert not any("/up/" in p for p in paths)  # the link back to the parent is not entered


def test_folder_links_are_followed_once(tmp_path):
    real = tmp_path / "store" / "n01440764"
    real.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(real / "a.jpg")
    top = tmp_path / "set"
    top.mkdir()
    (top / "n01440764").symlink_to(real)
    (top / "z-again").symlink_to(real)  # a second route to the same folder (sorted later): not walked
    rows = imgs.list_images(top, synsets=("n01440764",))
    assert rows == [(str(top / "n01440764" / "a.jpg"), 0)]


def test_list_file_with_bad_label_names_the_line(tmp_path):
    (tmp_path / "list.txt").write_text("a.jpg\t3\nb.jpg\tcat\n")
    with pytest.raises(ValueError, match=r"list.txt:2: label 'cat'"):
        imgs.list_images(tmp_path / "list.txt")


def test_unreadable_file_is_skipped_as_permission_denied(tmp_path, monkeypatch):
    """chmod 000 does not stop root (the test machines run as root), so the denial is simulated."""
    path = tmp_path / "locked.jpg"
    Image.new("RGB", (8, 8)).save(path)
    real_open = open

    def denied(file, *args, **kwargs):
        if str(file) == str(path):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", denied)
    assert imgs.decode(path) == (None, "permission denied")


def test_any_decoder_exception_becomes_a_skip(tmp_path, monkeypatch):
    """A plugin bug (any exception type) costs one image, never the run."""
    path = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(path)

    def boom(self):
        raise IndexError("plugin bug")

    monkeypatch.setattr(Image.Image, "load", boom)
    image, reason = imgs.decode(path)
    assert image is None and reason == "corrupt: IndexError: plugin bug"


@pytest.mark.parametrize("mode", ["RGB", "L", "P", "RGBA", "LA", "CMYK", "YCbCr", "LAB", "HSV", "I", "I;16", "F", "1"])
def test_to_rgb_gives_8bit_rgb_for_every_mode(mode):
    image = Image.new(mode, (5, 3))
    out = imgs.to_rgb(image)
    assert out.mode == "RGB" and out.size == (5, 3)


@pytest.mark.slow
def test_collect_on_corpus_skips_bad_and_keeps_every_good_image(corpus, card, tmp_path):
    """A shard of the whole corpus through `actlas.collect` with the shared MobileNetV2.

    No crash; every skipped image is listed with its reason in the shard's .skipped.tsv and counted
    in the summary; every decodable image, good photo or odd file, gets its rows.
    """
    import torch

    from actlas import store
    from actlas.collect import collect
    from actlas.models import load_model

    torch.set_num_threads(2)
    out, cases = corpus
    _, spec = load_model(card)
    rows = imgs.list_images(out, spec.synsets, spec.categories)
    shard = tmp_path / "shard-00000.txt"
    shard.write_text(imgs.format_shard(rows))
    zarr_path = tmp_path / "shard-00000.zarr"
    summary = collect(shard, zarr_path, card, ["features.13"], positions=1, attr_top=1, batch_size=8, chunk=8,
                      workers=0, device="cpu", progress=False)

    name_of = {str((out / n).absolute()): n for n in cases}
    expected_ok = [cases[name_of[p]].expect == "decoded" for p, _ in rows]
    ok = store.read([zarr_path], "images/ok").astype(bool)
    assert ok.tolist() == expected_ok
    assert summary["images"] == len(rows) and summary["skipped"] == expected_ok.count(False)

    skipped = dict(line.split("\t") for line in Path(str(zarr_path) + ".skipped.tsv").read_text().splitlines())
    assert set(skipped) == {p for (p, _), good in zip(rows, expected_ok) if not good}
    for path, reason in skipped.items():
        assert reason.startswith(cases[name_of[path]].reason), (path, reason)

    image = store.read([zarr_path], "features.13/image")
    assert np.array_equal(np.bincount(image, minlength=len(rows)), np.where(expected_ok, 1, 0))
    sizes = store.read([zarr_path], "images/size")
    for (path, _), size, good in zip(rows, sizes, expected_ok):
        if good:
            assert tuple(size[::-1]) == cases[name_of[path]].size  # stored (height, width)
    acts = store.read([zarr_path], "features.13/activation")
    assert np.isfinite(acts.astype(np.float32)).all()

    labels = store.read([zarr_path], "images/label")
    pred = store.read([zarr_path], "images/pred")
    photos = [i for i, (p, _) in enumerate(rows) if p.endswith(".JPEG")]
    assert photos and (labels[photos] >= 0).all()
    assert (pred[photos, 0] == labels[photos]).mean() >= 0.5  # the photos themselves are classified
