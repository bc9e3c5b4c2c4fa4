"""Class names: the one matcher from a name, synset id or number to a class index, and label files.

A class is named by its index, its synset id (``n01440764``), its full name
(``"great white shark, white shark, ..."``) or any of the comma-separated names in it; case, runs
of spaces and underscores do not matter (``great_white_shark`` is a folder name for it). Class
atlases, comparisons, patch targets and the labels of image folders all use ``match_class``.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import ModelError
from ..files import require_file
from ..text import did_you_mean


def _norm(text: str) -> str:
    return " ".join(str(text).lower().replace("_", " ").split())


def match_class(text: str, categories: tuple[str, ...], synsets: tuple[str, ...] = ()) -> int | None:
    """Index of the class ``text`` names (a synset id, a full name or one of its comma-separated names),
    or None when none matches. The first class that matches wins."""
    text = str(text).strip()
    for key in (text, text.lower()):
        if key in synsets:
            return synsets.index(key)
    key = _norm(text)
    for i, full in enumerate(categories):
        if key == _norm(full) or key in (_norm(p) for p in full.split(",")):
            return i
    return None


def all_matches(text: str, categories: tuple[str, ...], synsets: tuple[str, ...] = ()) -> list[int]:
    """Every class index ``text`` names (``match_class`` gives the first): ImageNet has two ``crane``s."""
    text = str(text).strip()
    for key in (text, text.lower()):
        if key in synsets:
            return [synsets.index(key)]
    key = _norm(text)
    return [i for i, full in enumerate(categories) if key == _norm(full) or key in (_norm(p) for p in full.split(","))]


def _short(categories: tuple[str, ...], i: int) -> str:
    return categories[i].split(",")[0].strip()


def resolve_class(name: str | int, categories: tuple[str, ...], synsets: tuple[str, ...] = ()) -> int:
    """Class index from a number, a synset id, a full name or any of its comma-separated names, or
    ``NAME (INDEX)`` (the viewer's name of a class whose name two classes share: ``crane (517)``).

    Raises ``ModelError`` naming the closest class names when nothing matches, and the choices when a
    name is ambiguous.
    """
    if isinstance(name, bool):
        raise ModelError(f"class {name!r} is not a class name or index: give a name, synset id or index")
    if isinstance(name, int) or (isinstance(name, str) and name.strip().isdigit()):
        index = int(name)
        if 0 <= index < max(len(categories), 1):
            return index
        raise ModelError(f"class index {index} is out of range (0..{len(categories) - 1})")
    qualified = re.fullmatch(r"(.*?)\s*\((\d+)\)", str(name).strip())
    if qualified:
        index = int(qualified.group(2))
        named = all_matches(qualified.group(1), categories, synsets)
        if index in named:
            return index
        if named:
            choices = ", ".join(repr(f"{_short(categories, i)} ({i})") for i in named)
            raise ModelError(f"class {name!r}: class {index} is not {qualified.group(1)!r}; name one of {choices}")
    found = all_matches(name, categories, synsets)
    if len(found) > 1:
        choices = ", ".join(repr(f"{_short(categories, i)} ({i})") for i in found)
        raise ModelError(f"class {name!r} is ambiguous: {len(found)} classes have that name; name one of {choices}")
    if found:
        return found[0]
    shorts = [c.split(",")[0].strip() for c in categories]
    raise ModelError(f"unknown class {name!r}{did_you_mean(name, shorts, n=5)}")


def class_index(spec, name: str | int) -> int:
    """``resolve_class`` for a ``ModelSpec``; a model without class names accepts any index."""
    if not spec.categories and str(name).strip().isdigit():
        return int(name)
    return resolve_class(name, spec.categories, spec.synsets)


def folder_label(folder: str, categories: tuple[str, ...], synsets: tuple[str, ...] = ()) -> int:
    """The label of images in a folder named ``folder`` (a synset id, a class name or ``NAME (INDEX)``), -1 if
    none; a name two classes share (ImageNet's ``crane``) raises ``ModelError`` naming the choices."""
    found = all_matches(folder, categories, synsets)
    if len(found) == 1:
        return found[0]
    qualified = re.fullmatch(r"(.*?)\s*\((\d+)\)\s*", folder)
    if len(found) > 1 or (qualified and all_matches(qualified.group(1), categories, synsets)):
        try:
            return resolve_class(folder, categories, synsets)
        except ModelError as err:
            raise ModelError(f"image folder {folder!r}: {err}; or rename it to its synset id") from None
    return -1


def read_names(value, base: str | Path | None = None) -> tuple[str, ...]:
    """Class names (or synset ids) from a list, or from a file of one name a line (a relative path is
    relative to ``base``, default the working directory). Raises ``ModelError`` for a missing file."""
    if isinstance(value, (list, tuple)):
        return tuple(str(v) for v in value)
    path = Path(base) / value if base is not None else Path(value)
    require_file(path, "labels or synsets file", ModelError)
    return tuple(line.rstrip("\n") for line in path.read_text().splitlines() if line.strip())
