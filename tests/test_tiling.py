"""Tiling of the 4D region of interest (pure logic)."""

from __future__ import annotations

import numpy as np
import pytest

from neuroglia5d.tiling import BYTES_PER_VOXEL, make_grid, roi_from_stats


def test_roi_from_label_boxes_in_working_copy_coordinates():
    boxes = np.array([[40, 60, 100, 130], [55, 90, 70, 110]])  # y0, y1, x0, x1 (raw frame)
    assert roi_from_stats(boxes, (200, 300), offset_yx=(10, 20)) == (30, 80, 50, 110)
    assert roi_from_stats(np.zeros((0, 4)), (200, 300)) == (0, 200, 0, 300)


def test_whole_roi_in_one_tile_when_it_fits():
    g = make_grid((0, 100, 0, 120), depth=10, timepoints=5, budget_bytes=10**9)
    assert (g.rows, g.cols) == (1, 1)
    assert g.tiles[0].slices == (slice(0, 100), slice(0, 120))


@pytest.mark.parametrize("budget_mib", [1, 3, 8])
def test_tiles_fit_the_budget_cover_the_roi_and_overlap(budget_mib):
    roi = (10, 410, 20, 620)  # 400 x 600
    g = make_grid(roi, depth=16, timepoints=4, budget_bytes=budget_mib * 2**20)
    assert g.rows * g.cols > 1
    cover = np.zeros((630, 630), bool)
    for t in g.tiles:
        assert g.tile_bytes(t) <= g.budget_bytes
        assert t.y0 >= 10 and t.y1 <= 410 and t.x0 >= 20 and t.x1 <= 620
        cover[t.slices] = True
    assert cover[10:410, 20:620].all()
    if g.cols > 1:  # neighbours overlap by about 15 % of a tile
        a, b = g.at(0, 0), g.at(0, 1)
        ov = (a.x1 - b.x0) / (a.x1 - a.x0)
        assert 0.1 <= ov <= 0.2
    per = 16 * 4 * BYTES_PER_VOXEL
    assert g.tile_bytes(g.tiles[0]) == g.tiles[0].shape_yx[0] * g.tiles[0].shape_yx[1] * per


def test_budget_too_small_is_a_clear_error():
    with pytest.raises(ValueError, match="too small"):
        make_grid((0, 100, 0, 100), depth=64, timepoints=100, budget_bytes=1000)
