"""Image sets: listing, deterministic selection, sharding and robust decoding.

An image set is a folder tree (class sub-folders named by synset id or class name give labels;
other folders are unlabelled) or a list file (one ``path[<TAB>label]`` a line).
"""

from __future__ import annotations

import os
import warnings
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
MAX_PIXELS = 89_478_485  # Pillow's own decompression-bomb limit


def _label_of(folder: str, synsets: tuple[str, ...], categories: tuple[str, ...]) -> int:
    if folder in synsets:
        return synsets.index(folder)
    key = folder.lower().replace("_", " ")
    for i, name in enumerate(categories):
        if key == name.lower() or key == name.split(",")[0].strip().lower():
            return i
    return -1


def list_images(
    source: str | Path, synsets: tuple[str, ...] = (), categories: tuple[str, ...] = ()
) -> list[tuple[str, int]]:
    """All images under a folder (or in a list file), sorted by path, with labels (-1 if unknown).

    Symbolic links to folders are not followed (no loops); files are judged by extension here and
    by content at decode time.
    """
    source = Path(source)
    if source.is_file():
        rows = []
        for line in source.read_text().splitlines():
            if line.strip():
                path, _, label = line.partition("\t")
                rows.append((str((source.parent / path).resolve()) if not os.path.isabs(path) else path,
                             int(label) if label.strip() else -1))
        return sorted(rows)
    if not source.is_dir():
        raise FileNotFoundError(f"image folder or list file not found: {source}")
    rows = []
    for dirpath, dirnames, filenames in os.walk(source, followlinks=False):
        dirnames.sort()
        label = _label_of(Path(dirpath).name, synsets, categories) if Path(dirpath) != source else -1
        for name in sorted(filenames):
            if name.lower().endswith(EXTENSIONS):
                rows.append((str(Path(dirpath, name).absolute()), label))
    return sorted(rows)


def select(images: list[tuple[str, int]], limit: int | None, seed: int) -> list[tuple[str, int]]:
    """A deterministic shuffle of ``images`` under ``seed``, cut to ``limit``, returned sorted."""
    if limit is None or limit >= len(images):
        return list(images)
    order = np.random.default_rng(seed).permutation(len(images))[:limit]
    return sorted(images[i] for i in order)


def shard_of(path: str, n_shards: int) -> int:
    """Stable shard of an image: adding images changes only the shards they fall in."""
    return zlib.crc32(Path(path).name.encode() + str(Path(path).parent.name).encode()) % n_shards


def split_shards(images: list[tuple[str, int]], n_shards: int) -> list[list[tuple[str, int]]]:
    """Images split into ``n_shards`` lists by ``shard_of``, each sorted by path."""
    shards: list[list[tuple[str, int]]] = [[] for _ in range(n_shards)]
    for path, label in images:
        shards[shard_of(path, n_shards)].append((path, label))
    return shards


def format_shard(rows: list[tuple[str, int]]) -> str:
    """Text of a shard list file."""
    return "".join(f"{path}\t{label}\n" for path, label in rows)


def read_shard(path: str | Path) -> list[tuple[str, int]]:
    """Rows of a shard list file."""
    rows = []
    for line in Path(path).read_text().splitlines():
        if line:
            file, _, label = line.rpartition("\t")
            rows.append((file, int(label)))
    return rows


def write_shards(images: list[tuple[str, int]], n_shards: int, out_dir: str | Path) -> list[Path]:
    """Write ``out_dir/shard-NNNNN.txt`` files, touching only those whose content changed.

    Unchanged shards keep their modification time, so Snakemake reruns only changed shards.
    Shard files beyond ``n_shards`` are removed.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, rows in enumerate(split_shards(images, n_shards)):
        path = out_dir / f"shard-{i:05d}.txt"
        text = format_shard(rows)
        if not path.exists() or path.read_text() != text:
            tmp = path.with_suffix(".tmp")
            tmp.write_text(text)
            tmp.replace(path)
        paths.append(path)
    for stale in out_dir.glob("shard-*.txt"):
        if stale not in paths:
            stale.unlink()
    return paths


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow image -> 8-bit RGB: EXIF orientation applied, 16-bit scaled, transparency over grey."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if array.max() > 255 else 255.0
        image = Image.fromarray(np.clip(array / top * 255.0, 0, 255).astype(np.uint8))
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGBA", image.size, (128, 128, 128, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    return image.convert("RGB")


def decode(path: str | Path) -> tuple[Image.Image | None, str]:
    """Open an image file as RGB. Returns (image, "") or (None, reason) for a file to skip."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                if image.width * image.height > MAX_PIXELS:
                    return None, f"too large ({image.width}x{image.height} pixels)"
                image.load()
                return to_rgb(image), ""
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        return None, f"too large: {err}"
    except FileNotFoundError:
        return None, "file not found"
    except PermissionError:
        return None, "permission denied"
    except IsADirectoryError:
        return None, "is a directory"
    except OSError as err:
        reason = str(err) or type(err).__name__
        return None, f"cannot decode: {reason}"
    except (ValueError, SyntaxError, EOFError) as err:
        return None, f"cannot decode: {err}"
