"""Robust image decoding and listing, on a generated corpus of bad, odd and good files.

The corpus comes from ``tests/data/make_bad.py`` (generated, never downloaded). Every entry is
either decoded to the right size, orientation and colours, or skipped with a one-line reason; one
slow test collects a shard of the whole corpus with the shared MobileNetV2.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY
from PIL import Image

from actlas.data import decode as dec
from actlas.data import images
from actlas.errors import DataError
from actlas.formats import shards as shard_files

sys.path.insert(0, str(Path(__file__).parent / "data"))
from make_bad import Case, make


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
        assert not any(p == str((out / name).absolute()) for p, _ in images.list_images(out))
        return
    image, reason = dec.decode(out / name)
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
        image, reason = dec.decode(out / name)
        assert reason == "" and image.size == cases[name].size
        assert np.asarray(image).std() > 10  # a real photo, not blank


def test_listing_ends_on_loops_and_lists_every_file_once(corpus):
    out, cases = corpus
    rows = images.list_images(out)
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
    rows = images.list_images(top, synsets=("n01440764",))
    assert rows == [(str(top / "n01440764" / "a.jpg"), 0)]


def test_list_file_with_bad_label_names_the_line(tmp_path):
    (tmp_path / "list.txt").write_text("a.jpg\t3\nb.jpg\tcat\n")
    with pytest.raises(ValueError, match=r"list.txt:2: label 'cat'"):
        images.list_images(tmp_path / "list.txt")


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
    assert dec.decode(path) == (None, "permission denied")


def test_any_decoder_exception_becomes_a_skip(tmp_path, monkeypatch):
    """A plugin bug (any exception type) costs one image, never the run."""
    path = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(path)

    def boom(self):
        raise IndexError("plugin bug")

    monkeypatch.setattr(Image.Image, "load", boom)
    image, reason = dec.decode(path)
    assert image is None and reason == "corrupt: IndexError: plugin bug"


@pytest.mark.parametrize("mode", ["RGB", "L", "P", "RGBA", "LA", "CMYK", "YCbCr", "LAB", "HSV", "I", "I;16", "F", "1"])
def test_to_rgb_gives_8bit_rgb_for_every_mode(mode):
    image = Image.new(mode, (5, 3))
    out = dec.to_rgb(image)
    assert out.mode == "RGB" and out.size == (5, 3)


@pytest.mark.slow
def test_collect_on_corpus_skips_bad_and_keeps_every_good_image(corpus, card, tmp_path):
    """A shard of the whole corpus through `actlas.collect` with the shared MobileNetV2.

    No crash; every skipped image is listed with its reason in the shard's .skipped.tsv and counted
    in the summary; every decodable image, good photo or odd file, gets its rows.
    """
    import torch

    from actlas.data import store
    from actlas.models.load import load_model
    from actlas.stages.collect import collect

    torch.set_num_threads(2)
    out, cases = corpus
    _, spec = load_model(card)
    rows = images.list_images(out, spec.synsets, spec.categories)
    shard = tmp_path / "shard-00000.txt"
    shard.write_text(shard_files.format_shard(rows))
    zarr_path = tmp_path / "shard-00000.zarr"
    summary = collect(
        shard,
        zarr_path,
        card,
        ["features.13"],
        positions=1,
        attr_top=1,
        batch_size=8,
        chunk=8,
        workers=0,
        device="cpu",
        progress=False,
    )

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


# --------------------------------------------------------------------------- any file name, any format

ODD_NAMES = [
    "tab\tname.jpg",
    "new\nline.jpg",
    "cr\rname.jpg",
    "-rf.jpg",
    "--help.jpg",
    "ünïcödé ☃ 写真.jpg",
    "back\\slash.jpg",
    'quote".jpg',
    '{"path": 1}.jpg',
    " leading space.jpg",
    "dots...jpg",
]


def test_any_file_name_round_trips_and_a_bad_one_costs_no_neighbour(tmp_path):
    from actlas.data import store
    from actlas.stages.collect import collect
    from actlas.stages.shards import split_rows, write_plan

    folder = tmp_path / "odd"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ODD_NAMES:
        Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(folder / name, format="JPEG")
    bad = os.path.join(os.fsencode(folder), b"latin1-\xe9.jpg")  # not valid UTF-8
    with open(bad, "wb") as f:
        Image.fromarray(np.zeros((24, 24, 3), np.uint8)).save(f, format="JPEG")
    skipped: list[tuple[str, str]] = []
    good = images.list_images(folder, skipped=skipped)
    assert sorted(Path(p).name for p, _ in good) == sorted(ODD_NAMES)
    assert [(Path(p).name, r) for p, r in skipped] == [
        (os.fsdecode(b"latin1-\xe9.jpg"), "file name 'latin1-\\xe9.jpg' is not valid UTF-8: rename the file")
    ]
    # a path that is not valid UTF-8 reaching a shard plan (from a list file, say) is skipped there
    rows = [*good, (os.fsdecode(bad), 0)]
    lists = write_plan(tmp_path, split_rows(rows, 1, skipped))
    assert shard_files.read_shard(lists[0]) == good  # tabs, newlines, dashes, quotes, Unicode: all round-trip
    listed = shard_files.read_skipped(tmp_path / "shards" / "skipped.tsv")
    assert sorted(r for _, r in listed) == [
        "file name 'latin1-\\xe9.jpg' is not valid UTF-8: rename the file",
        "path is not valid UTF-8: rename the file",
    ]
    assert all(Path(p).name == "latin1-\\xe9.jpg" for p, _ in listed)
    summary = collect(
        lists[0],
        tmp_path / "s.zarr",
        TINY,
        ["features.3"],
        positions=1,
        attr_top=1,
        batch_size=4,
        chunk=4,
        workers=0,
        device="cpu",
        progress=False,
    )
    assert summary["images"] == len(good) and summary["skipped"] == 0
    assert store.read([tmp_path / "s.zarr"], "images/ok").all()


def test_skipped_list_round_trips_odd_names(tmp_path):
    rows = [(f"/x/{name}", "not an image: reason\twith tab") for name in ODD_NAMES]
    (tmp_path / "s.tsv").write_text(shard_files.format_skipped(rows))
    assert [p for p, _ in shard_files.read_skipped(tmp_path / "s.tsv")] == [p for p, _ in rows]
    assert all("\t" not in r for _, r in shard_files.read_skipped(tmp_path / "s.tsv"))


def test_a_damaged_shard_list_line_is_named(tmp_path):
    (tmp_path / "shard-00000.txt").write_text('{"path": "/a/b.jpg", "label": 3}\n/a/c d.jpg\t-1\n')
    with pytest.raises(DataError, match=r"shard-00000.txt:2: damaged shard list line"):
        shard_files.read_shard(tmp_path / "shard-00000.txt")


def test_every_pillow_format_decodes_and_the_rest_are_listed_as_skipped(tmp_path):
    from PIL import features

    folder = tmp_path / "formats"
    folder.mkdir()
    picture = Image.new("RGB", (20, 12), (200, 40, 10))
    written = {}
    for ext, fmt in [
        (".tga", "TGA"),
        (".pcx", "PCX"),
        (".ppm", "PPM"),
        (".sgi", "SGI"),
        (".qoi", "QOI"),
        (".avif", "AVIF"),
    ]:
        if fmt == "AVIF" and not features.check("avif"):
            continue
        picture.save(folder / f"photo{ext}", format=fmt)
        written[f"photo{ext}"] = fmt
    (folder / "photo.heic").write_bytes(b"\x00\x00\x00\x18ftypheic" + bytes(32))
    (folder / "notes.txt").write_text("not an image\n")
    (folder / "figure.eps").write_text("%!PS-Adobe-3.0 EPSF-3.0\n")
    skipped: list[tuple[str, str]] = []
    rows = images.list_images(folder, skipped=skipped)
    assert sorted(Path(p).name for p, _ in rows) == sorted(written)
    for path, _ in rows:
        image, reason = dec.decode(path)
        assert image is not None and image.size == (20, 12), (path, reason)
        assert max(abs(a - b) for a, b in zip(image.getpixel((10, 6)), (200, 40, 10))) <= 12, path
    reasons = {Path(p).name: r for p, r in skipped}
    assert set(reasons) >= {"notes.txt", "figure.eps"}
    assert reasons["notes.txt"] == "unknown extension .txt: not an image format Pillow reads"
    assert "Ghostscript" in reasons["figure.eps"]
    if ".heic" not in dec.EXTENSIONS:
        assert reasons["photo.heic"].startswith("format HEIC (.heic): this Pillow cannot decode it")


def test_avif_is_named_when_pillow_cannot_decode_it(monkeypatch):
    monkeypatch.setattr(dec, "EXTENSIONS", tuple(e for e in dec.EXTENSIONS if e != ".avif"))
    assert dec.unlisted_reason("holiday.AVIF").startswith("format AVIF (.avif): this Pillow cannot decode it")


def test_formats_are_every_decodable_one_with_photo_formats_first():
    """Pillow tries ``FORMATS`` in order: the common photo formats first (JPEG tried after 20 others
    doubled the cost of opening a small JPEG), and no format gained or lost by the order."""
    Image.init()
    assert set(dec.FORMATS) == {f for f in Image.OPEN if f not in dec.REFUSED}
    assert len(dec.FORMATS) == len(set(dec.FORMATS))
    assert dec.FORMATS[:2] == ("JPEG", "PNG")


@pytest.mark.parametrize("name", NAMES)
def test_decode_pixels_agrees_with_decode_on_every_corpus_entry(corpus, name):
    """collect's loader decodes plain JPEGs with torchvision: the same pixels as ``decode``, or the same skip."""
    import torch

    out, cases = corpus
    if cases[name].expect == "unlisted":
        return
    image, reason = dec.decode(out / name)
    pixels, fast_reason = dec.decode_pixels(out / name)
    assert fast_reason == reason
    if image is None:
        assert pixels is None
        return
    assert pixels.dtype == torch.uint8 and pixels.shape == (3, image.height, image.width)
    assert torch.equal(pixels, torch.from_numpy(np.array(image)).permute(2, 0, 1))


def test_only_plain_jpegs_take_the_fast_path(corpus):
    """The torchvision path takes complete 8-bit JPEGs of 1 or 3 components with no EXIF or Adobe block,
    within the size checks; everything else (a rotation, CMYK, a cut file, a lying header) goes to Pillow."""
    out, cases = corpus
    plain = {n for n in cases if (out / n).is_file() and dec._plain_jpeg((out / n).read_bytes())}
    photos = {n for n in cases if n.endswith(".JPEG")}
    assert {"grey.jpg", "progressive.jpg", "jpeg-named.png"} | photos <= plain
    assert not plain & {
        "rotated.jpg",
        "bad-exif.jpg",
        "cmyk.jpg",
        "truncated.jpg",
        "bomb-header.jpg",
        "sliver.jpg",
        "empty.jpg",
        "text.jpg",
    }
