"""Images and lists as a hostile user brings them (issue 31): each is read correctly or listed with its reason
(``shards/skipped.tsv`` at listing, the store's ``.skipped.tsv`` at decoding); never a traceback, a hang, a
warning in place of a row, or a silently wrong pixel layout. Tiny images generated with Pillow."""

import io
import os
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from actlas.data.decode import decode_pixels
from actlas.data.images import list_images
from actlas.stages.shards import split_rows

# 8 x 12 RGB: red left half, green top half: any rotation, transpose or channel swap shows
RGB = np.zeros((8, 12, 3), np.uint8)
RGB[:, :6, 0] = 255
RGB[:4, :, 1] = 200


def _pixels(path) -> np.ndarray:
    x, reason = decode_pixels(path)
    assert x is not None, reason
    return x.permute(1, 2, 0).numpy()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@pytest.mark.parametrize(
    "name, make, expect",
    [
        ("cmyk.jpg", lambda p: Image.fromarray(RGB).convert("CMYK").save(p, quality=100), "rgb~"),
        ("palette.png", lambda p: Image.fromarray(RGB).convert("P", palette=Image.ADAPTIVE).save(p), "rgb"),
        ("la.png", lambda p: Image.fromarray(RGB).convert("LA").save(p), "grey"),
        (
            "anim.gif",
            lambda p: Image.fromarray(RGB).save(p, save_all=True, append_images=[Image.fromarray(255 - RGB)]),
            "rgb",
        ),
    ],
)
def test_odd_modes_decode_as_the_rgb_a_person_sees(tmp_path, name, make, expect):
    make(tmp_path / name)
    got = _pixels(tmp_path / name)
    assert got.shape == (8, 12, 3) and got.dtype == np.uint8
    if expect == "grey":
        want = np.asarray(Image.fromarray(RGB).convert("L"))
        assert (got == want[..., None]).all()
    else:
        assert np.abs(got.astype(int) - RGB).max() <= (0 if expect == "rgb" else 40), name


def test_sixteen_bit_is_scaled_not_wrapped(tmp_path):
    ramp = (np.arange(96).reshape(8, 12) * 600).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    got = _pixels(tmp_path / "g16.png")
    assert (got[..., 0] == np.rint(ramp / 65535 * 255)).all() and (got[..., 0] == got[..., 2]).all()


def test_an_exif_rotated_photo_is_turned_upright(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned: shown rotated 90 degrees clockwise
    Image.fromarray(RGB).save(tmp_path / "r.png", exif=exif.tobytes())
    got = _pixels(tmp_path / "r.png")
    assert got.shape == (12, 8, 3)
    assert (got == np.rot90(RGB, -1)).all()


def _bomb(path: Path) -> None:
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    body = _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)


def _truncated(path: Path) -> None:
    buf = io.BytesIO()
    Image.fromarray(RGB).save(buf, "JPEG")
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])


@pytest.mark.parametrize(
    "name, make, reason",
    [
        ("bomb.png", _bomb, "too large"),
        ("cut.jpg", _truncated, "truncated"),
        ("zero.png", lambda p: p.write_bytes(b""), "empty file"),
        ("text.jpg", lambda p: p.write_text("not an image"), "not an image"),
    ],
)
def test_bad_files_are_skipped_with_their_reason(tmp_path, name, make, reason):
    make(tmp_path / name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a reason, never a warning (nor a traceback)
        x, why = decode_pixels(tmp_path / name)
    assert x is None and why.startswith(reason) and "\n" not in why


def test_names_and_folders_that_cannot_be_listed_are_rows_of_the_skip_list(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(RGB).save(images / "ok.png")
    Image.fromarray(RGB).save(os.fsencode(images) + b"/bad\xff.png", format="PNG")
    os.mkdir(os.fsencode(images) + b"/dir\xfe")
    Image.fromarray(RGB).save(os.fsencode(images) + b"/dir\xfe/in.png", format="PNG")
    fd = os.open(images, os.O_RDONLY)  # a folder whose path is longer than PATH_MAX
    try:
        for _ in range(25):
            os.mkdir("d" * 200, dir_fd=fd)
            deeper = os.open("d" * 200, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = deeper
        with open(os.open("deep.png", os.O_CREAT | os.O_WRONLY, dir_fd=fd), "wb") as f:
            Image.fromarray(RGB).save(f, format="PNG")
    finally:
        os.close(fd)
    skipped: list[tuple[str, str]] = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rows = list_images(images, skipped=skipped)
    plan = split_rows(rows, 1, skipped)
    kept = [p for rows_ in plan.shards.values() for p, _ in rows_]
    assert kept == [str(images / "ok.png")]
    reasons = sorted(r.split(":")[0] for _, r in plan.skipped)
    assert len(plan.skipped) == 3, plan.skipped
    assert any("PATH_MAX" in r for _, r in plan.skipped) and sum("UTF-8" in r for _, r in plan.skipped) == 2, reasons
    from actlas.formats.shards import format_skipped

    assert all("\n" not in line for line in format_skipped(plan.skipped).splitlines(keepends=False))


def test_list_files_with_a_bom_crlf_or_bytes_that_are_not_utf8(tmp_path):
    Image.fromarray(RGB).save(tmp_path / "a.png")
    Image.fromarray(RGB).save(tmp_path / "b.png")
    listed = tmp_path / "list.txt"
    listed.write_bytes(b"\xef\xbb\xbfa.png\t3\r\nb.png\r\n\r\n")
    assert list_images(listed) == [(str(tmp_path / "a.png"), 3), (str(tmp_path / "b.png"), -1)]
    listed.write_bytes(b"a.png\rb.png\t1\r")  # old Mac line ends
    assert list_images(listed) == [(str(tmp_path / "a.png"), -1), (str(tmp_path / "b.png"), 1)]
    listed.write_bytes(b"a.png\nbad\xff.png\n")  # Latin-1 bytes: that row is skipped, with its reason
    rows = list_images(listed)
    plan = split_rows(rows, 1)
    assert [p for p, _ in plan.shards["shard-00000"]] == [str(tmp_path / "a.png")]
    assert len(plan.skipped) == 1 and "UTF-8" in plan.skipped[0][1]
