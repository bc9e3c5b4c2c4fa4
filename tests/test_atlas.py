"""The atlas core on synthetic icons: small icons enlarged by a whole factor, nearest neighbour;
labels in a caption strip that never covers an icon, readable and within their cell."""

import dataclasses

import numpy as np
import pytest

from actlas import atlas
from actlas.settings import RenderParams
from actlas.viz.render import fit_to_input, fit_to_layer


def _icons(k, s, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(k, s, s, 3), dtype=np.uint8)


def test_a_32_px_icon_is_enlarged_by_a_whole_factor_nearest_neighbour():
    icons = _icons(4, 32)
    ij = np.array([[0, 0], [1, 0], [0, 1], [1, 1]])
    f = atlas.display_factor(32, 96)
    assert f == 3
    out = atlas.compose(icons, ij, 2, factor=f)
    assert out.shape == (2 * 96, 2 * 96, 3)
    for k, (i, j) in enumerate(ij):
        cell = out[j * 96 : (j + 1) * 96, i * 96 : (i + 1) * 96]
        # every icon pixel is a 3 x 3 block of exactly its value: no smoothing, no new colours
        np.testing.assert_array_equal(cell, np.repeat(np.repeat(icons[k], 3, 0), 3, 1))
        np.testing.assert_array_equal(cell[::3, ::3], icons[k])


def test_large_icons_are_not_enlarged():
    assert atlas.display_factor(96, 96) == 1 and atlas.display_factor(128, 96) == 1
    icons = _icons(1, 96)
    out = atlas.compose(icons, np.array([[0, 0]]), 1)
    np.testing.assert_array_equal(out, icons[0])


def test_density_shrinks_an_enlarged_icon_by_a_smaller_whole_factor():
    icons = _icons(2, 32)
    out = atlas.compose(icons, np.array([[0, 0], [1, 0]]), 2, scale=np.array([1.0, 0.5]), factor=4)
    small = out[0:128, 128:256]
    side = 32 * 2  # round(4 * 0.5) = 2
    off = (128 - side) // 2
    np.testing.assert_array_equal(small[off : off + side, off : off + side], np.repeat(np.repeat(icons[1], 2, 0), 2, 1))
    assert (small[:off] == 255).all() and (small[off + side :] == 255).all()


@pytest.mark.parametrize("size", [16, 32, 64, 96, 160])
def test_labels_never_cover_icons_and_stay_readable(size):
    n = 3
    rng = np.random.default_rng(size)
    ij = np.array([[i, j] for j in range(n) for i in range(n)])
    image = atlas.compose(_icons(n * n, size), ij, n)
    labels = ["automobile", "great white shark, white shark, man-eater", "ox"] * 3
    labelled = atlas.draw_labels(image, ij, labels, size)
    up, pitch, strip, font = atlas.label_geometry(size)
    assert pitch >= atlas.LABEL_MIN_CELL and font >= atlas.LABEL_FONT[0] and up * size == pitch
    assert labelled.shape == (n * (pitch + strip), n * pitch, 3)
    big = atlas.enlarge(image, up)
    for j in range(n):
        top = j * (pitch + strip)
        # the icon rows are exactly the (enlarged) icons: not one label pixel on them
        np.testing.assert_array_equal(labelled[top : top + pitch], big[j * pitch : (j + 1) * pitch])
        caption = labelled[top + pitch : top + pitch + strip]
        for i in range(n):
            ink = (caption[:, i * pitch : (i + 1) * pitch] < 128).all(axis=2)
            assert ink.sum() > 20  # the label was written in this cell's strip
            cols = np.flatnonzero(ink.any(axis=0))
            assert cols.min() >= 1 and cols.max() <= pitch - 2  # within its own cell, not the neighbour's
    del rng


def test_long_labels_are_shortened_with_an_ellipsis():
    from PIL import Image, ImageDraw, ImageFont

    draw = ImageDraw.Draw(Image.new("RGB", (10, 10)))
    font = ImageFont.load_default(size=10)
    short = atlas.fit_text(draw, "automobile", font, 40)
    assert short.endswith("…") and draw.textlength(short, font=font) <= 40
    assert atlas.fit_text(draw, "ox", font, 40) == "ox"


def test_render_size_follows_a_small_input():
    p = RenderParams(size=96, pad=12, jitter=8)
    small = fit_to_input(p, (32, 32))
    assert (small.size, small.pad, small.jitter) == (32, 4, 3)
    assert fit_to_input(p, (224, 224)) == p
    # the spectrum keeps the range it had at the asked size: (0.707 S) ** decay, highest over lowest frequency
    assert small.decay_power > p.decay_power > 0
    assert (0.707 * 32) ** small.decay_power == pytest.approx((0.707 * 96) ** p.decay_power, rel=0.01)
    assert fit_to_input(p, (16, 16)).decay_power > small.decay_power
    # and the pace: a step moves a pixel about lr * S ** (decay - 1), as at the asked size
    assert small.lr < p.lr
    assert small.lr * 32 ** (small.decay_power - 1) == pytest.approx(p.lr * 96 ** (p.decay_power - 1), rel=0.001)
    assert fit_to_input(dataclasses.replace(p, lr_end=0.01), (32, 32)).lr_end == pytest.approx(
        0.01 * small.lr / p.lr, rel=0.001
    )
    # the jitter shrinks to no less than 2 px (1 px left pixel-sized grain), nor more than asked
    assert fit_to_input(dataclasses.replace(p, jitter=4), (32, 32)).jitter == 2
    assert fit_to_input(dataclasses.replace(p, jitter=1), (32, 32)).jitter == 1
    assert fit_to_input(dataclasses.replace(p, jitter=0), (32, 32)).jitter == 0


def test_render_size_follows_the_layer_stride():
    """An icon spans at least min_positions of the layer's positions a side: deep layers get larger icons."""
    import dataclasses

    p = RenderParams(size=80, pad=0, jitter=8)
    assert fit_to_layer(p, (224, 224), (7, 7)).size == 128  # stride 32 (MobileNetV2 features.16, ResNet layer4)
    assert fit_to_layer(p, (224, 224), (14, 14)) == p  # stride 16: 4 positions are 64 px, under 80
    assert fit_to_layer(p, (224, 224), (1, 1)) == p  # a pooled vector or CLS token has no stride
    assert fit_to_layer(p, (224, 224), (7, 14)).size == 128  # the coarser axis decides
    assert fit_to_layer(p, (96, 96), (3, 3)).size == 96  # never over the input
    assert fit_to_layer(p, (32, 32), (8, 8)) == fit_to_input(p, (32, 32))  # a 32 px model renders 32 px
    assert fit_to_layer(dataclasses.replace(p, min_positions=0), (224, 224), (7, 7)) == dataclasses.replace(
        p, min_positions=0
    )


def test_contact_sheet_puts_each_icon_above_its_exemplars():
    rng = np.random.default_rng(0)
    icons = rng.integers(0, 255, (3, 8, 8, 3), dtype=np.uint8)
    crops = [rng.integers(0, 255, (12, 12, 3), dtype=np.uint8) for _ in range(2)]
    columns = [[icons[0], *crops], [icons[1]], [icons[2], crops[0]]]
    sheet = atlas.contact_sheet(columns, ["0 cat", "1 dog", "2 a very long caption"], tile=16, per_row=2)
    gap, strip = atlas.SHEET_GAP, 10 + 6  # the font is at least LABEL_FONT[0] = 10 px
    col_w, col_h = 16 + gap, strip + 16 * 3 + 2 * gap
    assert sheet.shape == (2 * col_h, 2 * col_w, 3) and sheet.dtype == np.uint8
    # the 8 px icon enlarged twice with nearest neighbour, below its caption; its exemplars under it, after a gap
    assert (sheet[strip : strip + 16, :16] == atlas.enlarge(icons[0], 2)).all()
    first = sheet[strip + 16 + gap : strip + 32 + gap, :16]
    assert first.shape == (16, 16, 3) and abs(first.astype(int).mean() - crops[0].mean()) < 20
    assert (sheet[strip + 16 : strip + 16 + gap, :16] == 255).all()  # the gap stays white
    assert (sheet[col_h + strip : col_h + strip + 16, :16] == atlas.enlarge(icons[2], 2)).all()  # third: next row
    assert (sheet[strip + 16 + gap :, col_w : col_w + 16][: 2 * 16] == 255).all()  # a column of one icon: white below
    assert (sheet[:strip, :col_w] < 128).any()  # a caption is written
    with pytest.raises(ValueError, match="captions"):
        atlas.contact_sheet(columns, ["one"])
