"""Image sets: listing, deterministic selection and sharding.

An image set is a folder tree (class sub-folders named by synset id or class name give labels;
other folders are unlabelled) or a list file (one ``path[<TAB>label]`` a line). Files that cannot
be listed (a name that is not valid Unicode, a format no installed decoder reads) are returned
with their reason. Shard lists and skip lists are written and read by ``actlas.formats.shards``.
"""

from __future__ import annotations

import errno
import os
import warnings
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataError, MissingError
from ..models.classes import folder_label
from .decode import unlisted_reason

Row = tuple[str, int]


def list_images(
    source: str | Path,
    synsets: tuple[str, ...] = (),
    categories: tuple[str, ...] = (),
    skipped: list[tuple[str, str]] | None = None,
) -> list[tuple[str, int]]:
    """All images under a folder (or in a list file), sorted by path, with labels (-1 if unknown).

    Symbolic links to folders are followed, each real folder once: a link back to a folder already
    walked (a loop such as ``a/up -> ..``) is not entered, so listing always ends and no image
    is listed twice through two routes. Unreadable folders are skipped with a warning. Files are
    judged by extension here (so a corrupt file still shows up, to be skipped with its reason in
    the shard's ``.skipped.tsv``) and by content at decode time: every extension of a format Pillow
    decodes here (``EXTENSIONS``). Files not listed (another extension, a name that is not valid
    Unicode) are appended to ``skipped`` as ``(path, reason)`` when a list is given.
    """
    source = Path(source)
    if source.is_file():
        rows = []
        for number, line in enumerate(read_list(source).splitlines(), 1):
            if line.strip():
                path, _, label = line.partition("\t")
                try:
                    value = int(label) if label.strip() else -1
                except ValueError:
                    raise DataError(
                        f"{source}:{number}: label {label!r} is not an integer class index "
                        "(lines are path<TAB>label, the label optional)"
                    ) from None
                if not -1 <= value < (len(categories) if categories else 32768):  # stored as int16
                    top = f"{len(categories) - 1} (the model has {len(categories)} classes)" if categories else "32767"
                    raise DataError(f"{source}:{number}: label {value} is out of range: give -1 (none) or 0..{top}")
                rows.append((str((source.parent / path).resolve()) if not os.path.isabs(path) else path, value))
        return sorted(rows)
    if not source.is_dir():
        from ..files import require_file

        if os.path.lexists(source):
            require_file(source, "image folder or list file", DataError)
        raise MissingError(f"image folder or list file not found: {source}")
    rows = []
    seen: set[tuple[int, int]] = set()

    def unreadable(err: OSError) -> None:
        if skipped is None:
            warnings.warn(f"skipping unreadable folder {err.filename}: {err.strerror}", stacklevel=3)
        else:  # listed in shards/skipped.tsv with the images it may hold
            skipped.append((str(err.filename), folder_reason(err)))

    for dirpath, dirnames, filenames in os.walk(source, followlinks=True, onerror=unreadable):
        try:
            st = os.stat(dirpath)
        except OSError as err:
            unreadable(err)
            dirnames.clear()
            continue
        if (st.st_dev, st.st_ino) in seen:  # reached again through a link: walked already
            dirnames.clear()
            continue
        seen.add((st.st_dev, st.st_ino))
        dirnames.sort()
        label = folder_label(Path(dirpath).name, categories, synsets) if Path(dirpath) != source else -1
        for name in sorted(filenames):
            reason = unlisted_reason(name)
            if not reason:
                rows.append((str(Path(dirpath, name).absolute()), label))
            elif skipped is not None:
                skipped.append((str(Path(dirpath, name).absolute()), reason))
    return sorted(rows)


def read_list(source: Path) -> str:
    """A list file's text: UTF-8 with or without a byte-order mark; bytes that are not UTF-8 kept as
    Python keeps them in file names (``surrogateescape``), so such a path is skipped with its reason
    (``unwritable_reason``) rather than stopping the listing. Line ends: LF, CRLF or CR."""
    return source.read_bytes().decode("utf-8-sig", errors="surrogateescape")


def folder_reason(err: OSError) -> str:
    """Why a folder could not be listed, in one line with the fix."""
    if err.errno == errno.ENAMETOOLONG:
        return "folder not listed: its path is longer than the system allows (PATH_MAX): move the images higher up"
    if err.errno == errno.EACCES:
        return "folder not listed: permission denied"
    return f"folder not listed: {err.strerror or type(err).__name__}"


def select(images: list[tuple[str, int]], limit: int | None, seed: int) -> list[tuple[str, int]]:
    """A deterministic shuffle of ``images`` under ``seed``, cut to ``limit``, returned sorted."""
    if limit is None or limit >= len(images):
        return list(images)
    order = np.random.default_rng(seed).permutation(len(images))[:limit]
    return sorted(images[i] for i in order)


def shard_of(path: str, n_shards: int) -> int:
    """Stable shard of an image: adding images changes only the shards they fall in."""
    key = Path(path).name + Path(path).parent.name
    return zlib.crc32(key.encode("utf-8", "surrogateescape")) % n_shards


def split_shards(images: list[tuple[str, int]], n_shards: int) -> list[list[tuple[str, int]]]:
    """Images split into ``n_shards`` lists by ``shard_of``, each sorted by path."""
    shards: list[list[tuple[str, int]]] = [[] for _ in range(n_shards)]
    for path, label in images:
        shards[shard_of(path, n_shards)].append((path, label))
    return shards


def not_unicode(text: str) -> bool:
    """Whether ``text`` holds undecodable bytes (kept by Python as lone surrogates): not valid UTF-8."""
    try:
        text.encode("utf-8")
        return False
    except UnicodeEncodeError:
        return True


def unwritable_reason(path: str) -> str:
    """Why a listed path cannot go into a shard list ("" when it can): names that are not valid Unicode."""
    return "path is not valid UTF-8: rename the file" if not_unicode(path) else ""
