import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actlas.grid import attributed, bin_coords, grid


def test_bin_edges_half_open_and_one_in_last_cell():
    coords = np.array([[0.0, 0.0], [0.5, 0.5], [0.4999, 0.5], [1.0, 1.0], [0.25, 0.75]])
    ij = bin_coords(coords, 4)
    assert ij.tolist() == [[0, 0], [2, 2], [1, 2], [3, 3], [1, 3]]


def test_bin_rejects_unnormalised():
    with pytest.raises(ValueError, match="normalise"):
        bin_coords(np.array([[1.5, 0.0]]), 4)


def test_grid_directions_and_labels():
    coords = np.array([[0.1, 0.1], [0.2, 0.2], [0.9, 0.9], [0.8, 0.95], [0.6, 0.1]])
    acts = np.array([[1, 0], [3, 0], [0, 2], [0, 4], [5, 5]], dtype=np.float32)
    cls = np.array([[0, 1], [0, 1], [2, 1], [2, 1], [1, 0]])
    val = np.array([[1.0, 0.1], [3.0, 0.1], [2.0, 0.0], [1.0, 0.5], [9.0, 9.0]])
    cells = grid(coords, acts, cls, val, 2, min_count=2, n_classes=3)
    assert cells.ij.tolist() == [[0, 0], [1, 1]]
    assert cells.count.tolist() == [2, 2]
    np.testing.assert_allclose(cells.direction, [[2, 0], [0, 3]])
    np.testing.assert_allclose(cells.attribution[0], [2.0, 0.1, 0.0])
    assert cells.label.tolist() == [0, 2]
    assert sorted(cells.members(1).tolist()) == [2, 3]


def test_a_cell_of_negative_attributions_is_labelled_by_a_class_it_recorded():
    """Classes no sample recorded hold 0 in the mean attribution; they must not win a cell whose recorded
    attributions are all negative (class 0, "tench" on ImageNet, labelled such cells before)."""
    coords = np.array([[0.1, 0.1], [0.2, 0.2], [0.9, 0.9], [0.8, 0.9]])
    acts = np.ones((4, 2), dtype=np.float32)
    cls = np.array([[3, 5], [5, 3], [1, 2], [2, 1]])
    val = np.array([[-2.0, -0.5], [-0.1, -3.0], [1.0, 2.0], [1.0, 0.5]])
    cells = grid(coords, acts, cls, val, 2, min_count=2, n_classes=6)
    assert cells.label.tolist() == [5, 2]  # -0.3 beats -2.5 and the unrecorded zeros; then the best positive
    assert cells.attribution[0, 0] == 0.0


def test_samples_of_zero_attribution_record_no_class():
    """A position that never reaches the logits (a transformer's last block: the head reads the class token
    alone) has attribution 0 for every class: it must not label its cell (class 0, "airplane" on CIFAR-10,
    labelled every cell of such a layer before); a cell of such samples only has no label (-1)."""
    coords = np.array([[0.1, 0.1], [0.2, 0.2], [0.9, 0.9], [0.8, 0.9]])
    acts = np.ones((4, 2), dtype=np.float32)
    cls = np.array([[0, 1], [0, 1], [0, 1], [4, 1]])
    val = np.array([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [-1.0, -2.0]])
    cells = grid(coords, acts, cls, val, 2, min_count=2, n_classes=6)
    assert cells.label.tolist() == [-1, 4]
    assert not attributed(cls[:3], val[:3]) and attributed(cls, val)
    assert not attributed(np.full((3, 2), -1), np.ones((3, 2)))  # head: none records no class


def test_grid_too_large_says_so():
    with pytest.raises(ValueError, match="smaller grid"):
        grid(np.array([[0.1, 0.1]]), np.ones((1, 2)), np.zeros((1, 1), int), np.ones((1, 1)), 10, min_count=3)


coord = st.one_of(st.sampled_from([0.0, 1.0, 0.5, 0.25, 0.75, 1 / 3, 2 / 3, 0.1, 0.2]), st.floats(0, 1))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(coord, coord), min_size=1, max_size=60), st.integers(1, 12))
def test_every_sample_in_exactly_one_cell(points, n):
    coords = np.array(points, dtype=np.float64)
    ij = bin_coords(coords, n)
    assert ((ij >= 0) & (ij < n)).all()
    lo, hi = ij / n, (ij + 1) / n
    inside = (coords >= lo) & ((coords < hi) | ((ij == n - 1) & (coords <= 1.0)))
    assert inside.all()
    acts = np.ones((len(coords), 3), dtype=np.float32)
    cells = grid(coords, acts, np.zeros((len(coords), 1), int), np.ones((len(coords), 1)), n, min_count=1)
    assert cells.count.sum() == len(coords)
    assert sorted(cells.order.tolist()) == list(range(len(coords)))
    assert len({tuple(x) for x in cells.ij.tolist()}) == len(cells.ij)
