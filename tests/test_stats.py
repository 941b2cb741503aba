"""Per-label statistics, plausibility filters, CSV and histogram."""

from __future__ import annotations

import numpy as np
import pytest

from neuroglia5d.processing.stats import (
    STATS_COLUMNS,
    FilterLimits,
    classify_labels,
    histogram_csv,
    histogram_png,
    label_stats,
    nn_histogram,
    read_stats_csv,
    recompute_nn,
    table_to_csv,
)

SP = (1.5, 0.5, 0.5)


def test_columns_are_the_documented_ones():
    assert STATS_COLUMNS == (
        "t", "label", "volume_um3", "centroid_z_um", "centroid_y_um", "centroid_x_um",
        "bbox_z0", "bbox_y0", "bbox_x0", "bbox_z1", "bbox_y1", "bbox_x1",
        "mean_intensity", "max_intensity", "sum_intensity", "nn_dist_um", "surface_um2",
        "sphericity")


def test_box_statistics_are_exact_in_the_full_frame():
    lab = np.zeros((10, 20, 30), np.uint32)
    lab[2:4, 5:9, 10:20] = 7  # 2 x 4 x 10 voxels
    inten = np.zeros(lab.shape, np.uint16)
    inten[2:4, 5:9, 10:20] = 3
    inten[3, 8, 19] = 10
    tb = label_stats(lab, inten, SP, offset_zyx=(0, 100, 200), t=4)
    assert tb["t"].tolist() == [4] and tb["label"].tolist() == [7]
    assert tb["volume_um3"][0] == pytest.approx(80 * 1.5 * 0.25)
    assert tb["centroid_z_um"][0] == pytest.approx(2.5 * 1.5)
    assert tb["centroid_y_um"][0] == pytest.approx((6.5 + 100) * 0.5)
    assert tb["centroid_x_um"][0] == pytest.approx((14.5 + 200) * 0.5)
    bbox = [int(tb[c][0]) for c in ("bbox_z0", "bbox_y0", "bbox_x0", "bbox_z1", "bbox_y1",
                                   "bbox_x1")]
    assert bbox == [2, 105, 210, 4, 109, 220]
    assert tb["max_intensity"][0] == 10
    assert tb["sum_intensity"][0] == 79 * 3 + 10
    assert tb["mean_intensity"][0] == pytest.approx((79 * 3 + 10) / 80)
    assert np.isinf(tb["nn_dist_um"][0])  # alone


def test_sphere_surface_and_sphericity():
    z, y, x = np.ogrid[0:30, 0:90, 0:90]
    r = 10.0
    ball = ((z * 1.5 - 22) ** 2 + (y * 0.5 - 22) ** 2 + (x * 0.5 - 22) ** 2) <= r * r
    lab = ball.astype(np.uint32)
    tb = label_stats(lab, lab.astype(np.uint16), SP)
    assert tb["volume_um3"][0] == pytest.approx(4 / 3 * np.pi * r**3, rel=0.03)
    assert tb["surface_um2"][0] == pytest.approx(4 * np.pi * r**2, rel=0.04)
    assert tb["sphericity"][0] > 0.9


def test_surface_of_a_box_counts_every_face_once():
    from neuroglia5d.processing.stats import surface_areas

    lab = np.zeros((6, 10, 12), np.uint32)
    lab[1:3, 2:6, 3:9] = 5  # 2 x 4 x 6 voxels
    lab[1:3, 6:8, 3:9] = 2  # touching label: the shared faces count for both
    a = surface_areas(lab, SP)
    faces5 = 2 * (4 * 6 * 0.25 + 2 * 6 * 1.5 * 0.5 + 2 * 4 * 1.5 * 0.5)
    assert a[5] == pytest.approx(faces5 / 1.5)
    assert a[0] == 0 and a[1] == 0
    edge = np.zeros((3, 4, 4), np.uint32)
    edge[0] = 1  # on the volume border: the border faces count too
    assert surface_areas(edge, (1.0, 1.0, 1.0))[1] == pytest.approx((2 * 16 + 4 * 4) / 1.5)


def test_nearest_neighbour_distances():
    lab = np.zeros((3, 40, 40), np.uint32)
    lab[1, 5, 5] = 1
    lab[1, 5, 15] = 2   # 5 µm from 1
    lab[1, 35, 35] = 3  # far
    tb = label_stats(lab, lab.astype(np.uint16), SP, surface=False)
    assert tb["nn_dist_um"].tolist() == pytest.approx([5.0, 5.0, np.hypot(10, 15) * 1.0])


def test_classify_small_oversize_isolated():
    tb = {
        "label": np.array([1, 2, 3, 4]),
        "volume_um3": np.array([1.0, 500.0, 500.0, 1e6]),
        "centroid_z_um": np.zeros(4),
        "centroid_y_um": np.array([0.0, 10.0, 20.0, 30.0]),
        "centroid_x_um": np.array([0.0, 0.0, 0.0, 500.0]),
    }
    limits = FilterLimits(min_volume_um3=10, max_volume_um3=1e5, isolation_um=50)
    rej = classify_labels(tb, limits)
    assert rej == {1: "small", 4: "oversize"}
    limits = FilterLimits(min_volume_um3=10, max_volume_um3=1e7, isolation_um=50)
    assert classify_labels(tb, limits) == {1: "small", 4: "isolated"}


def test_filter_limits_from_diameters():
    lim = FilterLimits.from_diameters(8.0, 40.0, 100.0)
    assert lim.min_volume_um3 == pytest.approx(np.pi / 6 * 64)
    assert lim.max_volume_um3 == pytest.approx(np.pi / 6 * 40**3)


def test_csv_round_trip(tmp_path):
    lab = np.zeros((4, 20, 20), np.uint32)
    lab[1:3, 2:6, 2:6] = 3
    lab[1:3, 10:14, 10:18] = 9
    tb = label_stats(lab, lab.astype(np.uint16) * 5, SP, t=2)
    f = tmp_path / "x_labelStats.csv"
    f.write_text(table_to_csv(tb))
    back = read_stats_csv(f)
    assert f.read_text().splitlines()[0] == ",".join(STATS_COLUMNS)
    for c in STATS_COLUMNS:
        assert np.allclose(back[c], tb[c], rtol=1e-5, equal_nan=True), c


def test_recompute_nn_per_timepoint():
    tb = {"t": np.array([0, 0, 1]), "label": np.array([1, 2, 1]),
          "centroid_z_um": np.zeros(3), "centroid_y_um": np.array([0.0, 3.0, 0.0]),
          "centroid_x_um": np.zeros(3), "nn_dist_um": np.zeros(3)}
    out = recompute_nn(tb)
    assert out["nn_dist_um"][:2].tolist() == [3.0, 3.0] and np.isinf(out["nn_dist_um"][2])


def test_histogram_csv_and_png():
    edges, counts = nn_histogram(np.array([0.5, 1.5, 1.7, np.inf]), bin_um=1.0)
    assert edges.tolist() == [0.0, 1.0, 2.0] and counts.tolist() == [1, 2]
    assert histogram_csv(edges, counts).splitlines() == ["bin_start_um,bin_end_um,count",
                                                         "0,1,1", "1,2,2"]
    png = histogram_png(edges, counts, title="t", marks={"winXYZum": 1.5})
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_label_stats_on_a_crop_smaller_than_its_label_ids():
    # cc3d.statistics refuses IDs >= the voxel count; a live-stats crop of a small label
    # with a large ID must still be measured, with its real ID
    lab = np.zeros((1, 2, 2), np.uint32)
    lab[0, 0, :] = 40
    lab[0, 1, 0] = 11
    img = np.arange(4.0).reshape(1, 2, 2)
    r = label_stats(lab, img, (2.0, 1.0, 1.0))
    assert list(r["label"]) == [11, 40]
    assert list(r["volume_um3"]) == [2.0, 4.0]
    assert list(r["mean_intensity"]) == [2.0, 0.5]
