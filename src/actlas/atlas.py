"""atlas: icons -> one image at the grid's layout, a labelled copy, and dataset example crops."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def density_scale(count: np.ndarray, smallest: float = 0.45) -> np.ndarray:
    """Icon scale in [smallest, 1] per cell from its sample count (sqrt, saturating at the 90th percentile)."""
    count = np.asarray(count, dtype=np.float64)
    top = max(np.percentile(count, 90), 1.0)
    return np.clip(smallest + (1 - smallest) * np.sqrt(count / top), smallest, 1.0)


def compose(
    icons: np.ndarray, ij: np.ndarray, n: int, *, scale: np.ndarray | None = None, background: int = 255
) -> np.ndarray:
    """Tile icons (K, S, S, 3) uint8 at cells ij (K, 2) (column, row) of an n x n grid.

    Returns (n * S, n * S, 3) uint8; an icon with ``scale`` < 1 is shrunk and centred in its cell.
    """
    k, s = icons.shape[0], icons.shape[1]
    out = np.full((n * s, n * s, 3), background, dtype=np.uint8)
    for idx in range(k):
        i, j = int(ij[idx, 0]), int(ij[idx, 1])
        icon = icons[idx]
        if scale is not None and scale[idx] < 0.999:
            side = max(2, int(round(s * scale[idx])))
            icon = np.asarray(Image.fromarray(icon).resize((side, side), Image.Resampling.LANCZOS))
        off = (s - icon.shape[0]) // 2
        out[j * s + off : j * s + off + icon.shape[0], i * s + off : i * s + off + icon.shape[1]] = icon
    return out


def draw_labels(image: np.ndarray, ij: np.ndarray, labels: list[str], size: int) -> np.ndarray:
    """Write each cell's label in a small box at the bottom of its icon: (H, W, 3) -> (H, W, 3)."""
    canvas = Image.fromarray(image)
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=max(8, size // 8))
    for (i, j), text in zip(ij, labels):
        x, y = int(i) * size + 2, (int(j) + 1) * size - max(8, size // 8) - 4
        text = text if len(text) <= 16 else text[:15] + "…"
        box = draw.textbbox((x, y), text, font=font)
        draw.rectangle((box[0] - 1, box[1] - 1, box[2] + 1, box[3] + 1), fill=(255, 255, 255))
        draw.text((x, y), text, fill=(0, 0, 0), font=font)
    return np.asarray(canvas)


def nearest_members(direction: np.ndarray, member_acts: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k member rows closest in cosine to a direction: (indices into member_acts (k,), similarity (k,))."""
    a = member_acts.astype(np.float32)
    sim = a @ direction / (np.linalg.norm(a, axis=1) * np.linalg.norm(direction) + 1e-8)
    top = np.argsort(-sim, kind="stable")[:k]
    return top, sim[top]
