"""Generate (never download) a corpus of bad, odd and good image files for robustness tests.

    python tests/data/make_bad.py [OUT]        # default: tests/data/bad/ (git-ignored)

``make(out)`` writes the corpus and returns ``{name: Case}``: for every entry (a path relative
to ``out``) what ``actlas.data.decode.decode`` must do with it, either decode it (to ``size``, with
``pixels`` checked) or skip it with a reason starting with ``reason``. The good photos are
symbolic links into ``../shared/assets/images/imagenet-val`` (in their class folders).

Everything is small and fast to make: the decompression bombs are a PNG header that claims
huge dimensions and a valid, highly compressible 1-bit PNG just over Pillow's limit.
"""

from __future__ import annotations

import io
import os
import shutil
import struct
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
VAL = ROOT.parent / "shared" / "assets" / "images" / "imagenet-val"
GREY = (128, 128, 128)  # what transparency is composited over


@dataclass
class Case:
    """What decoding one corpus entry must give."""

    expect: str  # "decoded", "skipped", or "unlisted" (not an image file to list_images)
    why: str  # what the entry is
    reason: str = ""  # skipped: the reason starts with this
    size: tuple[int, int] | None = None  # decoded: (width, height) after EXIF orientation
    pixels: list[tuple[tuple[int, int], tuple[int, int, int]]] = field(default_factory=list)  # ((x, y), rgb)
    tolerance: int = 6  # per channel, for pixels (JPEG is lossy)
    listed: bool = True  # whether list_images lists it


def _png(width: int, height: int, bit_depth: int, colour_type: int, raw_rows) -> bytes:
    """A PNG written by hand (16-bit RGB, or a header that lies): rows without filter bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    z = zlib.compressobj(9)
    body = b"".join(z.compress(b"\x00" + row) for row in raw_rows) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def _resized_jpeg(jpeg: bytes, height: int, width: int) -> bytes:
    """``jpeg`` with its frame header (SOF0) claiming ``height`` x ``width``; the data is unchanged."""
    at = jpeg.index(b"\xff\xc0")
    return jpeg[: at + 5] + struct.pack(">HH", height, width) + jpeg[at + 9 :]


def _halves(size: tuple[int, int], left, right, mode: str = "RGB") -> Image.Image:
    """An image whose left half is ``left`` and right half ``right``."""
    w, h = size
    image = Image.new(mode, size, left)
    image.paste(Image.new(mode, (w - w // 2, h), right), (w // 2, 0))
    return image


def _encode(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


def _save(image: Image.Image, path: Path, fmt: str, **kw) -> None:
    path.write_bytes(_encode(image, fmt, **kw))


def _photo() -> Image.Image:
    """A generated 64x48 'photo' (a Mandelbrot set in colour)."""
    m = np.asarray(Image.effect_mandelbrot((64, 48), (-2.0, -1.2, 0.8, 1.2), 60), dtype=np.int32)
    return Image.fromarray(np.stack([m, 255 - m, (m * 3) % 256], axis=-1).astype(np.uint8))


def make(out: str | Path, n_photos: int = 6) -> dict[str, Case]:
    """Write the corpus into ``out`` (emptied first) and return what each entry must decode to."""
    out = Path(out)
    if out.exists():
        for p in out.rglob("*"):
            if not p.is_symlink():
                os.chmod(p, 0o755 if p.is_dir() else 0o644)
        shutil.rmtree(out)
    out.mkdir(parents=True)
    cases: dict[str, Case] = {}
    red, blue, green = (255, 0, 0), (0, 0, 255), (0, 255, 0)

    # --- cannot be decoded
    jpeg = _encode(_photo(), "JPEG", quality=90)
    (out / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    cases["truncated.jpg"] = Case("skipped", "JPEG cut in half", "truncated")
    png = _encode(_photo(), "PNG")
    (out / "truncated.png").write_bytes(png[: len(png) // 2])
    cases["truncated.png"] = Case("skipped", "PNG cut in half", "truncated")
    broken = bytearray(png)
    idat = broken.index(b"IDAT") + 4
    broken[idat + 2 : idat + 40] = bytes(38)  # zeros inside the compressed stream
    (out / "corrupt-data.png").write_bytes(bytes(broken))
    cases["corrupt-data.png"] = Case("skipped", "PNG whose compressed pixel data is damaged", "corrupt")
    (out / "empty.jpg").write_bytes(b"")
    cases["empty.jpg"] = Case("skipped", "zero-byte file", "empty file")
    (out / "text.jpg").write_text("this is not a JPEG, just text with the wrong name\n")
    cases["text.jpg"] = Case("skipped", "text file named .jpg", "not an image")
    (out / "._photo.jpg").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + bytes(64))
    cases["._photo.jpg"] = Case(
        "skipped", "macOS AppleDouble metadata file (common in copied datasets)", "not an image"
    )
    (out / "postscript.jpg").write_text("%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n")
    cases["postscript.jpg"] = Case("skipped", "EPS named .jpg: never handed to Ghostscript", "not an image")

    # --- bombs and degenerate shapes
    (out / "bomb-header.png").write_bytes(_png(100_000, 100_000, 8, 0, [bytes(16)]))
    cases["bomb-header.png"] = Case("skipped", "PNG header claiming 100000x100000 pixels", "too large")
    w, h = 10_000, 9_000  # 90 M pixels: over Pillow's limit (89.5 M), under twice it (its hard error)
    (out / "bomb-zeros.png").write_bytes(_png(w, h, 1, 0, (bytes(w // 8) for _ in range(h))))
    cases["bomb-zeros.png"] = Case("skipped", "valid 10000x9000 1-bit PNG of 14 kB", "too large")
    # A complete small JPEG whose frame header claims another size: the checks must run before any decoder.
    (out / "bomb-header.jpg").write_bytes(_resized_jpeg(_encode(_photo(), "JPEG", quality=90), 60_000, 60_000))
    cases["bomb-header.jpg"] = Case("skipped", "JPEG whose frame header claims 60000x60000 pixels", "too large")
    (out / "sliver.jpg").write_bytes(_resized_jpeg(_encode(_photo(), "JPEG", quality=90), 2, 60_000))
    cases["sliver.jpg"] = Case("skipped", "JPEG whose frame header claims 60000x2 pixels", "extreme aspect ratio")
    (out / "sliver.png").write_bytes(_png(20_000, 2, 8, 0, [bytes(20_000)] * 2))
    cases["sliver.png"] = Case("skipped", "20000x2 image", "extreme aspect ratio")
    Image.new("RGB", (1, 1), (200, 30, 60)).save(out / "one-pixel.png")
    cases["one-pixel.png"] = Case("decoded", "1x1 image", size=(1, 1), pixels=[((0, 0), (200, 30, 60))], tolerance=0)
    _halves((4000, 20), red, blue).save(out / "wide.png")
    cases["wide.png"] = Case(
        "decoded", "4000x20 image", size=(4000, 20), pixels=[((10, 10), red), ((3990, 10), blue)], tolerance=0
    )

    # --- colour modes
    _save(_halves((48, 32), (255, 0, 0, 0), (0, 0, 255, 0), "CMYK"), out / "cmyk.jpg", "JPEG", quality=95)
    cases["cmyk.jpg"] = Case(
        "decoded",
        "CMYK JPEG: cyan | yellow",
        size=(48, 32),
        pixels=[((5, 16), (0, 255, 255)), ((43, 16), (255, 255, 0))],
        tolerance=12,
    )
    _halves((48, 32), 40, 220, "L").save(out / "grey.jpg", quality=95)
    cases["grey.jpg"] = Case(
        "decoded", "greyscale JPEG", size=(48, 32), pixels=[((5, 16), (40, 40, 40)), ((43, 16), (220, 220, 220))]
    )
    rows16 = np.zeros((16, 48), dtype=np.uint16)
    rows16[:, :16], rows16[:, 16:32], rows16[:, 32:] = 65535, 32768, 200
    Image.fromarray(rows16).save(out / "grey16.png")
    cases["grey16.png"] = Case(
        "decoded",
        "16-bit greyscale PNG: 65535 | 32768 | 200",
        size=(48, 16),
        pixels=[((5, 8), (255,) * 3), ((24, 8), (128,) * 3), ((40, 8), (1,) * 3)],
        tolerance=1,
    )
    Image.fromarray(np.full((16, 16), 200, dtype=np.uint16)).save(out / "grey16-dark.png")
    cases["grey16-dark.png"] = Case(
        "decoded",
        "16-bit PNG, every pixel 200 of 65535 (nearly black)",
        size=(16, 16),
        pixels=[((8, 8), (1, 1, 1))],
        tolerance=1,
    )
    rgb16 = []
    for _ in range(8):
        rgb16.append(struct.pack(">HHH", 65535, 0, 0) * 8 + struct.pack(">HHH", 0, 0, 32768) * 8)
    (out / "rgb16.png").write_bytes(_png(16, 8, 16, 2, rgb16))
    cases["rgb16.png"] = Case(
        "decoded",
        "48-bit RGB PNG: red | half blue",
        size=(16, 8),
        pixels=[((2, 4), red), ((12, 4), (0, 0, 128))],
        tolerance=1,
    )
    Image.fromarray(np.concatenate([np.ones((8, 8)), np.full((8, 8), 0.5)], axis=1).astype(np.float32)).save(
        out / "float.tif"
    )
    cases["float.tif"] = Case(
        "decoded",
        "32-bit float TIFF in [0, 1]: 1.0 | 0.5",
        size=(16, 8),
        pixels=[((2, 4), (255,) * 3), ((12, 4), (128,) * 3)],
        tolerance=1,
    )
    _halves((16, 8), 1, 0, "1").save(out / "bilevel.png")
    cases["bilevel.png"] = Case(
        "decoded", "1-bit PNG", size=(16, 8), pixels=[((2, 4), (255,) * 3), ((12, 4), (0,) * 3)], tolerance=0
    )
    _halves((32, 16), (*red, 255), (*green, 0), "RGBA").save(out / "rgba.png")
    cases["rgba.png"] = Case(
        "decoded",
        "RGBA PNG: opaque red | transparent green",
        size=(32, 16),
        pixels=[((4, 8), red), ((28, 8), GREY)],
        tolerance=0,
    )
    _halves((32, 16), (60, 255), (250, 0), "LA").save(out / "grey-alpha.png")
    cases["grey-alpha.png"] = Case(
        "decoded",
        "grey + alpha PNG: opaque 60 | transparent",
        size=(32, 16),
        pixels=[((4, 8), (60,) * 3), ((28, 8), GREY)],
        tolerance=0,
    )
    pal = _halves((32, 16), 0, 1, "P")
    pal.putpalette([*red, *blue] + [0] * 762)
    pal.save(out / "palette.png", transparency=1)
    cases["palette.png"] = Case(
        "decoded",
        "palette PNG, index 1 (blue) transparent",
        size=(32, 16),
        pixels=[((4, 8), red), ((28, 8), GREY)],
        tolerance=0,
    )
    frames = [Image.new("RGB", (16, 16), red), Image.new("RGB", (16, 16), blue)]
    frames[0].save(out / "animated.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    cases["animated.gif"] = Case(
        "decoded", "two-frame GIF: the first frame (red) is used", size=(16, 16), pixels=[((8, 8), red)], tolerance=0
    )
    _save(_halves((32, 16), red, blue), out / "jpeg-named.png", "JPEG", quality=95)
    cases["jpeg-named.png"] = Case(
        "decoded",
        "a JPEG named .png: judged by content",
        size=(32, 16),
        pixels=[((4, 8), red), ((28, 8), blue)],
        tolerance=12,
    )
    _halves((32, 16), red, blue).save(out / "photo.webp", lossless=True)
    cases["photo.webp"] = Case(
        "decoded", "lossless WebP", size=(32, 16), pixels=[((4, 8), red), ((28, 8), blue)], tolerance=0
    )
    _photo().save(out / "progressive.jpg", progressive=True, quality=90)
    cases["progressive.jpg"] = Case("decoded", "progressive JPEG", size=(64, 48))

    # --- orientation: stored 60 wide x 40 high, left red, right blue; EXIF orientation 6 means
    # "rotate 90 degrees clockwise to display": shown 40 wide x 60 high, red on top, blue below.
    exif = Image.Exif()
    exif[0x0112] = 6
    _halves((60, 40), red, blue).save(out / "rotated.jpg", quality=95, exif=exif.tobytes())
    cases["rotated.jpg"] = Case(
        "decoded", "EXIF orientation 6", size=(40, 60), pixels=[((20, 5), red), ((20, 55), blue)], tolerance=12
    )
    _halves((60, 40), red, blue).save(out / "bad-exif.jpg", quality=95, exif=b"Exif\x00\x00" + b"\xff" * 40)
    cases["bad-exif.jpg"] = Case(
        "decoded",
        "JPEG with a garbage EXIF block: kept as stored",
        size=(60, 40),
        pixels=[((5, 20), red), ((55, 20), blue)],
        tolerance=12,
    )

    # --- file-system oddities
    (out / "self-loop.jpg").symlink_to("self-loop.jpg")
    cases["self-loop.jpg"] = Case("skipped", "symbolic link to itself", "symbolic link loop")
    (out / "dangling.jpg").symlink_to("no-such-file.jpg")
    cases["dangling.jpg"] = Case("skipped", "symbolic link to a missing file", "broken symbolic link")
    os.mkfifo(out / "pipe.jpg")
    cases["pipe.jpg"] = Case("skipped", "named pipe (opening it would block forever)", "not a regular file")
    (out / "folder.jpg").mkdir()
    cases["folder.jpg"] = Case(
        "skipped", "a folder named .jpg (walked, never listed)", "not a regular file", listed=False
    )
    (out / "nested").mkdir()
    _halves((32, 16), green, blue).save(out / "nested" / "inner.png")
    cases["nested/inner.png"] = Case(
        "decoded",
        "image in a sub-folder that links back to its parent",
        size=(32, 16),
        pixels=[((4, 8), green), ((28, 8), blue)],
        tolerance=0,
    )
    (out / "nested" / "up").symlink_to("..")
    cases["nested/up"] = Case("unlisted", "folder link to its parent (a loop): not entered", listed=False)
    (out / "notes.txt").write_text("not an image extension: never listed\n")
    cases["notes.txt"] = Case("unlisted", "a .txt file", listed=False)
    _halves((32, 16), red, blue).save(out / "unreadable.png")
    os.chmod(out / "unreadable.png", 0)
    if os.access(out / "unreadable.png", os.R_OK):  # root ignores permission bits
        cases["unreadable.png"] = Case(
            "decoded",
            "chmod 000 file, readable anyway because we run as root",
            size=(32, 16),
            pixels=[((4, 8), red), ((28, 8), blue)],
            tolerance=0,
        )
    else:
        cases["unreadable.png"] = Case("skipped", "chmod 000 file", "permission denied")

    # --- good photos, in their class folders (labels come from the folder names)
    if VAL.is_dir() and n_photos > 0:
        classes = sorted(VAL.iterdir())
        for d in classes[:: max(1, len(classes) // n_photos)][:n_photos]:
            f = sorted(d.iterdir())[0]
            (out / d.name).mkdir()
            (out / d.name / f.name).symlink_to(f)
            with Image.open(f) as im:
                size = im.size
            cases[f"{d.name}/{f.name}"] = Case("decoded", "real ImageNet photo (symbolic link)", size=size)
    return cases


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "bad"
    made = make(target)
    for name, case in sorted(made.items()):
        print(f"{case.expect:9s} {name:40s} {case.why}")
    print(f"{len(made)} entries in {target}")
