"""Decoding image files robustly: any format Pillow decodes here, as 8-bit RGB, or a one-line reason to skip.

``decode`` opens any file as a PIL image (never raising for a bad file); ``decode_pixels`` gives the
same pixels as a uint8 tensor and decodes plain JPEGs straight from their bytes (TorchCodec or
torchvision), which collect's loader uses. ``FORMATS`` and ``EXTENSIONS`` say what is decoded;
``REFUSED`` what never is, and why.
"""

from __future__ import annotations

import errno
import functools
import os
import stat
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from ..text import one_line

try:  # HEIC/HEIF (and AVIF in older Pillows) through the pillow-heif plugin, when it is installed
    import pillow_heif  # type: ignore[import-not-found]

    pillow_heif.register_heif_opener()
except Exception:  # noqa: BLE001 - the plugin is optional
    pass

Image.init()

# Pillow formats never decoded from untrusted files, and why. EPS is handed to Ghostscript (a
# PostScript interpreter); the others are identification stubs without a decoder.
REFUSED = {
    "EPS": "PostScript would be run by Ghostscript",
    "MPEG": "Pillow only identifies MPEG, it has no decoder",
    "BUFR": "Pillow has no BUFR decoder",
    "GRIB": "Pillow has no GRIB decoder",
    "HDF5": "Pillow has no HDF5 decoder",
    "WMF": "Pillow cannot draw WMF/EMF on this platform",
}
# Every format Pillow can open here (its own decoders and registered plugins), less the refused ones;
# Pillow tries them in this order, so the common photo formats (each known by its magic bytes) come
# first: with JPEG in its alphabetical place, opening a 32 x 32 JPEG took 93 us instead of 55.
_COMMON = ("JPEG", "PNG", "WEBP", "TIFF", "BMP", "GIF")
FORMATS = tuple(
    [f for f in _COMMON if f in Image.OPEN and f not in REFUSED]
    + sorted(f for f in Image.OPEN if f not in REFUSED and f not in _COMMON)
)
# Extension -> format for every format Pillow knows; images are listed by these extensions.
KNOWN = dict(Image.registered_extensions())
EXTENSIONS = tuple(sorted(ext for ext, fmt in KNOWN.items() if fmt in FORMATS))
# Image formats people meet that need a plugin or library this installation may lack.
PLUGINS = {
    ".avif": ("AVIF", "it needs Pillow built with libavif, or pip install pillow-avif-plugin"),
    ".heic": ("HEIC", "pip install pillow-heif"),
    ".heif": ("HEIF", "pip install pillow-heif"),
    ".jxl": ("JPEG XL", "pip install pillow-jxl-plugin"),
    ".jp2": ("JPEG 2000", "it needs Pillow built with OpenJPEG"),
    ".j2k": ("JPEG 2000", "it needs Pillow built with OpenJPEG"),
    ".cr2": ("camera raw", "no raw decoder"),
    ".nef": ("camera raw", "no raw decoder"),
    ".dng": ("camera raw", "no raw decoder"),
    ".arw": ("camera raw", "no raw decoder"),
}
MAX_PIXELS = 89_478_485  # Pillow's own decompression-bomb limit
MAX_ASPECT = 256  # longest side / shortest side; past this, resizing the short side blows up memory


def unlisted_reason(name: str) -> str:
    """Why a file of this name is not listed as an image ("" if it is listed)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        shown = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        return f"file name '{shown}' is not valid UTF-8: rename the file"
    ext = os.path.splitext(name)[1].lower()
    if ext in EXTENSIONS:
        return ""
    if ext in KNOWN and KNOWN[ext] in REFUSED:
        return f"format {KNOWN[ext]} ({ext}) is not decoded: {REFUSED[KNOWN[ext]]}"
    if ext in PLUGINS:
        kind, how = PLUGINS[ext]
        return f"format {kind} ({ext}): this Pillow cannot decode it ({how}; or convert the file)"
    return f"unknown extension {ext or '(none)'}: not an image format Pillow reads"


def _scale_to_8bit(array: np.ndarray, top: float) -> Image.Image:
    return Image.fromarray(np.clip(np.rint(array / top * 255.0), 0, 255).astype(np.uint8))


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow image -> 8-bit RGB, as a person would see it.

    EXIF orientation is applied (a broken EXIF block is ignored, the image kept as stored); 16-bit
    modes (``I;16*``) are scaled by 255/65535; 32-bit ``I`` by its likely range (8 or 16 bit, else
    its maximum); float ``F`` in [0, 1] by 255; transparency (RGBA, LA, PA, a palette's transparent
    index) is composited over mid-grey (128); CMYK, YCbCr, LAB and bilevel images are converted.
    Raises ``ValueError`` for a mode Pillow cannot convert to RGB.
    """
    try:
        image = ImageOps.exif_transpose(image)
    except Exception:  # noqa: BLE001 - a malformed EXIF block must not cost the image
        pass
    if image.mode.startswith("I;16"):
        image = _scale_to_8bit(np.asarray(image, dtype=np.float64), 65535.0)
    elif image.mode in ("I", "F"):
        array = np.asarray(image, dtype=np.float64)
        finite = array[np.isfinite(array)]
        high = float(finite.max()) if finite.size else 0.0
        if image.mode == "F" and high <= 1.0:
            top = 1.0
        elif high <= 255:
            top = 255.0
        elif high <= 65535:
            top = 65535.0
        else:
            top = high
        image = _scale_to_8bit(np.nan_to_num(array, nan=0.0, posinf=top, neginf=0.0), top)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        background = Image.new("RGBA", image.size, (128, 128, 128, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    return image.convert("RGB")


def _stat_reason(path: str | Path) -> str:
    """Why ``path`` is not a readable regular file ("" if it is one)."""
    try:
        st = os.stat(path)  # follows symbolic links
    except FileNotFoundError:
        return "broken symbolic link" if os.path.islink(path) else "file not found"
    except PermissionError:
        return "permission denied"
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "symbolic link loop"
        return one_line(f"cannot read: {err.strerror or err}")
    if stat.S_ISDIR(st.st_mode):
        return "not a regular file (a directory)"
    if stat.S_ISFIFO(st.st_mode):
        return "not a regular file (a named pipe)"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file (a device or socket)"
    if st.st_size == 0:
        return "empty file"
    return ""


def decode(path: str | Path) -> tuple[Image.Image | None, str]:
    """Open an image file as 8-bit RGB (see ``to_rgb``). Never raises for a bad file.

    Returns ``(image, "")``, or ``(None, reason)`` for a file to skip; the reason is one line
    starting with its kind: ``file not found``, ``broken symbolic link``, ``symbolic link loop``,
    ``permission denied``, ``not a regular file (...)``, ``empty file``, ``not an image: ...``,
    ``too large: ...`` (over Pillow's decompression-bomb limit, checked before any pixel is
    decoded), ``extreme aspect ratio: ...``, ``truncated: ...``, ``unsupported colour mode ...``
    or ``corrupt: ...``. Only the formats in ``FORMATS`` (every format Pillow decodes here, less
    ``REFUSED``: EPS, which Pillow would hand to Ghostscript, and decoder-less stubs) are decoded,
    whatever the extension.
    """
    reason = _stat_reason(path)
    if reason:
        return None, reason
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with open(path, "rb") as file, Image.open(file, formats=FORMATS) as image:
                w, h = image.size
                if w * h > MAX_PIXELS:
                    return None, f"too large: {w}x{h} pixels, over the decompression-bomb limit of {MAX_PIXELS}"
                if w < 1 or h < 1:
                    return None, f"corrupt: image size {w}x{h}"
                if max(w, h) > MAX_ASPECT * min(w, h):
                    return None, f"extreme aspect ratio: {w}x{h} pixels (more than {MAX_ASPECT}:1)"
                image.load()
                try:
                    return to_rgb(image), ""
                except ValueError as err:
                    return None, one_line(f"unsupported colour mode {image.mode}: {err}")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        return None, one_line(f"too large: {err}")
    except Image.UnidentifiedImageError:
        return None, "not an image: no decoder Pillow may use here recognises its content (EPS is never decoded)"
    except PermissionError:
        return None, "permission denied"
    except OSError as err:
        text = str(err) or type(err).__name__
        kind = "truncated" if "truncat" in text.lower() else "corrupt"
        return None, one_line(f"{kind}: {text}")
    except Exception as err:  # noqa: BLE001 - a malformed file must never stop a run: skip it
        return None, one_line(f"corrupt: {type(err).__name__}: {err}")


# --------------------------------------------------------------------------- the fast path for plain JPEGs

# Start-of-frame markers libjpeg decodes the same in Pillow and torchvision: baseline, extended, progressive.
_SOF = {0xC0, 0xC1, 0xC2}


def _plain_jpeg(data: bytes) -> bool:
    """Whether ``data`` is a complete 8-bit JPEG that the fast path's decoder decodes as Pillow would.

    Reads only the marker lengths up to the frame header. Plain means: it ends with the EOI marker
    (so it is not truncated); no EXIF block (its orientation is Pillow's job) and no Adobe block
    (CMYK and colour transforms); an 8-bit baseline, extended or progressive frame of one (grey)
    or three (YCbCr) components; within ``MAX_PIXELS`` and ``MAX_ASPECT``. Anything else is left
    to ``decode``, which also gives the reason a file is skipped.
    """
    if data[:2] != b"\xff\xd8" or data[-2:] != b"\xff\xd9":
        return False
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return False
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        length = (data[i + 2] << 8) | data[i + 3]
        if marker == 0xE1 and data[i + 4 : i + 8] == b"Exif" or marker == 0xEE:
            return False
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # a frame header
            if marker not in _SOF or i + 10 > n:
                return False
            precision, components = data[i + 4], data[i + 9]
            h, w = (data[i + 5] << 8) | data[i + 6], (data[i + 7] << 8) | data[i + 8]
            return (
                precision == 8
                and components in (1, 3)
                and 0 < w * h <= MAX_PIXELS
                and max(w, h) <= MAX_ASPECT * min(w, h)
            )
        if marker == 0xDA or length < 2:  # scan data before any frame header
            return False
        i += 2 + length
    return False


@functools.lru_cache(maxsize=1)
def _jpeg_decoder():
    """The JPEG decoder of the fast path: TorchCodec's when installed (it supersedes torchvision's
    image decoding, deprecated in torchvision 0.29), else torchvision's, else None (Pillow only).

    Either takes a 1-D uint8 tensor of the file's bytes and returns uint8 (C, H, W), grey or RGB as stored.
    """
    try:
        from torchcodec.decoders import decode_jpeg  # type: ignore[import-not-found]

        return decode_jpeg
    except Exception:  # noqa: BLE001 - optional; a broken install must not stop a run
        pass
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from torchvision.io import ImageReadMode, decode_jpeg
        return functools.partial(decode_jpeg, mode=ImageReadMode.UNCHANGED)
    except Exception:  # noqa: BLE001 - a torchvision without image decoding: Pillow decodes everything
        return None


def decode_pixels(path: str | Path):
    """An image file as a uint8 tensor, shape (3, H, W), RGB, exactly as ``np.array(decode(path)[0])``; never
    raises for a bad file.

    Returns ``(tensor, "")`` or ``(None, reason)`` (the reasons of ``decode``). Plain JPEGs
    (``_plain_jpeg``) are decoded straight from their bytes by ``_jpeg_decoder`` (TorchCodec or
    torchvision): on a 32 x 32 photo that takes about 40 us instead of Pillow's 120, most of which is
    Pillow parsing the header in Python. libjpeg-turbo does the work in all three, and the pixels
    are the same (a test checks, and so did all 62,300 shared photos).
    Every other file, and any JPEG torchvision refuses, goes through ``decode``.
    """
    import torch

    if not _stat_reason(path):
        try:
            with open(path, "rb") as file:  # only a JPEG is read whole here (Pillow reads the rest)
                head = file.read(2)
                data = head + file.read() if head == b"\xff\xd8" else b""
        except OSError:
            data = b""
        decoder = _jpeg_decoder() if _plain_jpeg(data) else None
        if decoder is not None:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)  # torchvision 0.29 points to TorchCodec
                    x = decoder(torch.frombuffer(bytearray(data), dtype=torch.uint8))
                if x.ndim == 3 and x.shape[0] in (1, 3):
                    return (x.expand(3, -1, -1).contiguous() if x.shape[0] == 1 else x), ""
            except Exception:  # noqa: BLE001 - the decoder refused it: Pillow decides, and names the reason
                pass
    image, reason = decode(path)
    if image is None:
        return None, reason
    return torch.from_numpy(np.array(image, dtype=np.uint8).reshape(image.height, image.width, 3)).permute(2, 0, 1), ""
