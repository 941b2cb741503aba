"""Accuracy measures on labels with known overlaps."""

from __future__ import annotations

import numpy as np
import pytest

from neuroglia5d.metrics import score, score_series, tracking_consistency


def test_perfect_match():
    a = np.zeros((4, 10), np.uint32)
    a[:, :3] = 1
    a[:, 5:] = 2
    s = score(a, a * 7)
    assert (s.f1, s.mean_iou, s.seg, s.n_matched) == (1.0, 1.0, 1.0, 2)


def test_known_partial_overlaps():
    true = np.zeros((1, 20), np.uint32)
    true[0, 0:10] = 1
    true[0, 10:20] = 2
    pred = np.zeros((1, 20), np.uint32)
    pred[0, 0:8] = 5      # IoU 0.8 with 1, covers 80 % of it
    pred[0, 14:20] = 6    # IoU 0.6 with 2
    pred[0, 10:14] = 7    # IoU 0.4 with 2: no match
    s = score(true, pred)
    assert s.n_matched == 2 and s.n_pred == 3 and s.n_true == 2
    assert s.f1 == pytest.approx(2 * 2 / 5)
    assert s.mean_iou == pytest.approx(0.7)
    assert s.seg == pytest.approx((0.8 + 0.6) / 2)


def test_series_pools_frames_and_tracking_consistency():
    t = np.zeros((2, 1, 10), np.uint32)
    t[:, 0, :5] = 1
    p = t.copy()
    p[1][p[1] == 1] = 2  # identity switch in frame 1
    assert score_series(t, p).f1 == 1.0
    assert tracking_consistency(t, p) == 0.0
    assert tracking_consistency(t, t) == 1.0
