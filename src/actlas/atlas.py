"""atlas: icons -> one image at the grid's layout, a labelled copy, and dataset example crops.

Icons smaller than ``min_cell`` pixels (a 32 px CIFAR model's) are shown enlarged by a whole
factor with nearest neighbour (``display_factor``, ``enlarge``): every icon pixel becomes a
block, nothing is smoothed. The labelled copy puts each label in a caption strip below its cell,
shortened with an ellipsis to the cell's width in a font sized to the cell: a label never covers
an icon (``label_geometry``).
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def density_scale(count: np.ndarray, smallest: float = 0.45) -> np.ndarray:
    """Icon scale in [smallest, 1] per cell from its sample count (sqrt, saturating at the 90th percentile)."""
    count = np.asarray(count, dtype=np.float64)
    top = max(np.percentile(count, 90), 1.0)
    return np.clip(smallest + (1 - smallest) * np.sqrt(count / top), smallest, 1.0)


def display_factor(size: int, min_cell: int) -> int:
    """The whole factor an icon of ``size`` px is enlarged by so its cell is at least ``min_cell`` px (>= 1)."""
    return max(1, math.ceil(min_cell / max(int(size), 1)))


def enlarge(icon: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement by a whole factor: (..., S, S, 3) -> (..., S*f, S*f, 3), no smoothing."""
    if factor == 1:
        return icon
    return np.repeat(np.repeat(icon, factor, axis=-3), factor, axis=-2)


def compose(
    icons: np.ndarray,
    ij: np.ndarray,
    n: int,
    *,
    scale: np.ndarray | None = None,
    background: int = 255,
    factor: int = 1,
) -> np.ndarray:
    """Tile icons (K, S, S, 3) uint8 at cells ij (K, 2) (column, row) of an n x n grid of S*factor px cells.

    Returns (n * S * factor, n * S * factor, 3) uint8. An icon with ``scale`` < 1 is shrunk and centred
    in its cell: with ``factor`` 1 by Lanczos resampling, with ``factor`` > 1 by a smaller whole factor
    (round(factor * scale), at least 1), so an enlarged icon stays nearest-neighbour blocks.
    """
    k, s = icons.shape[0], icons.shape[1]
    cell = s * factor
    out = np.full((n * cell, n * cell, 3), background, dtype=np.uint8)
    for idx in range(k):
        i, j = int(ij[idx, 0]), int(ij[idx, 1])
        icon = icons[idx]
        if factor > 1:
            f = factor if scale is None else max(1, min(factor, int(round(factor * float(scale[idx])))))
            icon = enlarge(icon, f)
        elif scale is not None and scale[idx] < 0.999:
            side = max(2, int(round(s * scale[idx])))
            icon = np.asarray(Image.fromarray(icon).resize((side, side), Image.Resampling.LANCZOS))
        off = (cell - icon.shape[0]) // 2
        out[j * cell + off : j * cell + off + icon.shape[0], i * cell + off : i * cell + off + icon.shape[1]] = icon
    return out


# smallest cell a label is written beside, and the font's size range (px)
LABEL_MIN_CELL = 64
LABEL_FONT = (10, 18)


def label_geometry(cell: int) -> tuple[int, int, int, int]:
    """Layout of the labelled atlas for cells of ``cell`` px: (up, pitch, strip, font).

    The atlas is enlarged by the whole factor ``up`` (nearest neighbour) so a cell is at least
    ``LABEL_MIN_CELL`` px; each cell ``pitch`` = cell * up px wide is followed by a caption strip
    ``strip`` px high holding its label in a ``font`` px font.
    """
    up = display_factor(cell, LABEL_MIN_CELL)
    pitch = cell * up
    font = int(np.clip(pitch // 9, *LABEL_FONT))
    return up, pitch, font + 6, font


def fit_text(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
    """``text`` shortened with an ellipsis until it is at most ``width`` px wide in ``font``."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text.rstrip() + "…"


def draw_labels(image: np.ndarray, ij: np.ndarray, labels: list[str], size: int) -> np.ndarray:
    """A labelled copy of an atlas of ``size`` px cells: (n*size, n*size, 3) -> (n*pitch, n*(pitch+strip), 3).

    Row j of icons is enlarged (``label_geometry``) and followed by a caption strip in which each
    cell's label is written, centred and shortened to the cell's width: no label pixel covers an icon.
    """
    up, pitch, strip, font_px = label_geometry(size)
    n_rows, n_cols = image.shape[0] // size, image.shape[1] // size
    big = enlarge(image, up)
    out = np.full((n_rows * (pitch + strip), n_cols * pitch, 3), 255, dtype=np.uint8)
    for j in range(n_rows):
        out[j * (pitch + strip) : j * (pitch + strip) + pitch] = big[j * pitch : (j + 1) * pitch]
    canvas = Image.fromarray(out)
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=font_px)
    for (i, j), text in zip(ij, labels):
        text = fit_text(draw, str(text), font, pitch - 4)
        x0, y0 = int(i) * pitch, int(j) * (pitch + strip) + pitch
        width = draw.textlength(text, font=font)
        draw.text((x0 + (pitch - width) / 2, y0 + strip / 2), text, fill=(0, 0, 0), font=font, anchor="lm")
    return np.asarray(canvas)


def nearest_members(direction: np.ndarray, member_acts: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k member rows closest in cosine to a direction: (indices into member_acts (k,), similarity (k,))."""
    a = member_acts.astype(np.float32)
    sim = a @ direction / (np.linalg.norm(a, axis=1) * np.linalg.norm(direction) + 1e-8)
    top = np.argsort(-sim, kind="stable")[:k]
    return top, sim[top]


def label_agreement(cells, top1: np.ndarray) -> float:
    """Fraction of cells (``actlas.grid.Cells``) whose label equals the most common top-1 prediction
    of their samples' images; ``top1`` (n_samples,) is each sample's image's top-1 class (-1 unknown)."""
    hits = 0
    for c in range(len(cells.count)):
        preds = top1[cells.members(c)]
        hits += int(np.bincount(preds[preds >= 0]).argmax() == cells.label[c]) if (preds >= 0).any() else 0
    return hits / max(len(cells.count), 1)


SHEET_GAP = 6  # px between two columns of a contact sheet, and between an icon and its first exemplar


def contact_sheet(
    columns: list[list[np.ndarray]], captions: list[str], tile: int = 64, per_row: int = 16
) -> np.ndarray:
    """A contact sheet: one column per group (a concept), its first image (the icon) above the others (its
    exemplars), under a caption; ``per_row`` columns a row of the sheet.

    ``columns``: per group a list of (H, W, 3) uint8 images, each shown as ``tile`` x ``tile`` px (enlarged
    by a whole factor with nearest neighbour when smaller, so an icon stays blocks; else resized with
    Lanczos); an empty slot stays white. ``captions``: one per group, shortened to the tile's width.
    Returns (rows * (strip + tile * (1 + E) + 2 * gap), min(K, per_row) * (tile + gap), 3) uint8, E the
    most images after the first in any column.
    """
    if len(columns) != len(captions):
        raise ValueError(f"{len(columns)} columns but {len(captions)} captions")
    k = len(columns)
    depth = max((len(c) for c in columns), default=1)
    font_px = int(np.clip(tile // 6, *LABEL_FONT))
    strip = font_px + 6
    col_w = tile + SHEET_GAP
    col_h = strip + tile * depth + 2 * SHEET_GAP
    n_cols, n_rows = min(max(k, 1), per_row), max(1, math.ceil(k / per_row))
    canvas = Image.new("RGB", (n_cols * col_w, n_rows * col_h), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=font_px)
    for g, (images, text) in enumerate(zip(columns, captions)):
        x0, y0 = (g % per_row) * col_w, (g // per_row) * col_h
        draw.text(
            (x0 + 1, y0 + strip / 2), fit_text(draw, str(text), font, tile), fill=(0, 0, 0), font=font, anchor="lm"
        )
        for e, image in enumerate(images):
            image = np.asarray(image, dtype=np.uint8)
            side = max(image.shape[0], image.shape[1])
            if side < tile and tile % side == 0 and image.shape[0] == image.shape[1]:
                image = enlarge(image, tile // side)
            elif image.shape[:2] != (tile, tile):
                image = np.asarray(Image.fromarray(image).resize((tile, tile), Image.Resampling.LANCZOS))
            y = y0 + strip + e * tile + (SHEET_GAP if e else 0)
            canvas.paste(Image.fromarray(image), (x0, y))
    return np.asarray(canvas)
