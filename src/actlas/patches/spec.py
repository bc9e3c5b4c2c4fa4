"""Patch specifications: the text that names a patch, parsed (pure: no file is read).

- ``cell:I,J``: the icon of cell (I, J) (column, row) of the run's largest main atlas of the layer;
  ``cell:DIR:I,J``: of the atlas folder ``RUN/LAYER/DIR`` (``grid-16``, ``class-great-white-shark``, ...)
- ``example:DIR:I,J,E``: dataset example E of that cell (``examples/I_J_E.jpg``)
- ``image:PATH``: a whole image; ``image:PATH:X0,Y0,X1,Y1``: a crop of it (pixels of the original)
- ``direction:PATH.npy``: an icon rendered for a direction (C,) with the run's whitening

The workflow (``rules/common.smk``) uses these to declare what an experiment reads; the patch
stage to load each patch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import ConfigError
from ..text import slug

KINDS = ("cell", "example", "image", "direction")
SYNTAX = "cell:I,J, cell:DIR:I,J, example:DIR:I,J,E, image:PATH[:X0,Y0,X1,Y1] or direction:PATH.npy"
# the atlas folders discovery searches when an experiment names none (``Patch.search``)
SEARCH = ("class-TARGET", "grid-*", "compare-*")


@dataclass(frozen=True)
class PatchSpec:
    """A parsed patch specification: its ``kind`` and ``text``; for cells and examples the atlas
    ``folder`` (None: the largest main grid) and ``i``, ``j`` (and ``e``); for images and
    directions the file ``path`` (and an image's crop ``box`` x0, y0, x1, y1)."""

    kind: str
    text: str
    folder: str | None = None
    i: int | None = None
    j: int | None = None
    e: int | None = None
    path: str | None = None
    box: tuple[int, int, int, int] | None = None


def parse_patch(text: str) -> PatchSpec:
    """Parse a patch specification (see the module); ``ConfigError`` saying how to write it."""
    kind, _, rest = text.partition(":")
    if kind == "cell":
        parts = rest.split(":")
        folder, ij = (None, parts[0]) if len(parts) == 1 else (parts[0], parts[1])
        m = re.fullmatch(r"\s*(\d+)\s*,\s*(\d+)\s*", ij)
        if not m or len(parts) > 2:
            raise ConfigError(f"bad cell {text!r}: write cell:I,J or cell:grid-16:I,J (column, row)")
        return PatchSpec("cell", text, folder=folder, i=int(m[1]), j=int(m[2]))
    if kind == "example":
        m = re.fullmatch(r"([^:]+):\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*", rest)
        if not m:
            raise ConfigError(f"bad example {text!r}: write example:DIR:I,J,E (column, row, example number)")
        return PatchSpec("example", text, folder=m[1], i=int(m[2]), j=int(m[3]), e=int(m[4]))
    if kind == "image":
        m = re.fullmatch(r"(.+?)(?::(\d+),(\d+),(\d+),(\d+))?", rest)
        if not m:
            raise ConfigError(f"bad image {text!r}: write image:PATH or image:PATH:X0,Y0,X1,Y1")
        box = tuple(int(m[k]) for k in range(2, 6)) if m[2] else None
        return PatchSpec("image", text, path=m[1], box=box)
    if kind == "direction" and rest:
        return PatchSpec("direction", text, path=rest)
    raise ConfigError(f"unknown patch {text!r}: use {SYNTAX}")


def cell_spec(folder: str, i: int, j: int) -> str:
    """``cell:DIR:I,J``."""
    return f"cell:{folder}:{i},{j}"


def example_spec(folder: str, i: int, j: int, e: int) -> str:
    """``example:DIR:I,J,E``."""
    return f"example:{folder}:{i},{j},{e}"


def with_grid(text: str, n: int) -> str:
    """``cell:I,J`` as ``cell:grid-N:I,J`` (the largest main grid, ``n`` cells a side); others unchanged."""
    spec = parse_patch(text)
    return cell_spec(f"grid-{n}", spec.i, spec.j) if spec.kind == "cell" and spec.folder is None else text


def tested_cell(text: str) -> tuple[str, int, int] | None:
    """(folder, i, j) of the atlas cell whose icon or dataset example ``text`` pastes, else None."""
    try:
        spec = parse_patch(text)
    except ConfigError:
        return None
    if spec.kind in ("cell", "example") and spec.folder is not None:
        return spec.folder, spec.i, spec.j
    return None


def default_search(target: str, class_atlases: list[str], grids: list[str], comparisons: list[str]) -> list[str]:
    """The atlas folders discovery searches when an experiment names none (``SEARCH``): the target's
    class atlas (when ``class_atlases``, folder names, holds it), then ``grids``, then ``comparisons``."""
    own = f"class-{slug(target)}"
    return ([own] if own in class_atlases else []) + list(grids) + list(comparisons)


def default_name(source: str | int | None, target: str | int) -> str:
    """An experiment's folder name under ``RUN/patches`` when it has none: ``SOURCE-to-TARGET``."""
    return f"{slug(source) if source not in (None, '') else 'any'}-to-{slug(target)}"
