"""label_boxes: the same boxes as scipy.ndimage.find_objects, in one pass."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import ndimage as ndi

from neuroglia5d.annotation.label_boxes import label_boxes


def _reference(lab: np.ndarray) -> dict[int, tuple[int, ...]]:
    return {i + 1: (s[0].start, s[0].stop, s[1].start, s[1].stop, s[2].start, s[2].stop)
            for i, s in enumerate(ndi.find_objects(lab)) if s is not None}


@settings(max_examples=40, deadline=None)
@given(arrays(np.uint16, st.tuples(st.integers(1, 6), st.integers(1, 7), st.integers(1, 9)),
              elements=st.integers(0, 5)))
def test_same_boxes_as_find_objects(lab: np.ndarray) -> None:
    assert label_boxes(lab) == _reference(lab)


def test_known_boxes_runs_and_huge_ids() -> None:
    lab = np.zeros((4, 5, 6), np.uint32)
    lab[1:3, 2, 1:5] = 9  # a run along x over two planes
    lab[3, 0, 5] = 9
    lab[0, 4, 0] = 4_000_000_000  # an ID far above the voxel count
    assert label_boxes(lab) == {9: (1, 4, 0, 3, 1, 6), 4_000_000_000: (0, 1, 4, 5, 0, 1)}
    assert label_boxes(np.zeros((2, 2, 2), np.uint8)) == {}
    with pytest.raises(ValueError, match="3D"):
        label_boxes(np.zeros((2, 2), np.uint8))
