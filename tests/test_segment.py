"""Seeds, the three segmentation algorithms, recovery, secondary pass and calibration."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi

from neuroglia5d.metrics import score
from neuroglia5d.params import Parameters
from neuroglia5d.processing.calibrate import calibrate
from neuroglia5d.processing.segment import (
    UNREACHED,
    SegmentSettings,
    _fill_unreached,
    group_nms,
    neck_merge,
    seeds_watershed,
    segment_volume,
)
from neuroglia5d.processing.timepoint import process_channel

SP = (1.5, 0.5, 0.5)  # µm (z, y, x): anisotropic like the sample data


def ball(shape, centre_um, radius_um, spacing=SP):
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    d2 = sum(((g * s) - c) ** 2 for g, s, c in zip(grids, spacing, centre_um, strict=True))
    return d2 <= radius_um**2


def render(masks, spacing=SP, amp=100.0):
    """Intensity of labelled masks blurred by a small PSF (background 0)."""
    img = np.zeros(masks[0].shape, np.float32)
    for m in masks:
        img[m] = amp
    sig = tuple(0.35 / s for s in spacing)
    return ndi.gaussian_filter(img, sig)


def labels_of(masks):
    lab = np.zeros(masks[0].shape, np.uint32)
    for i, m in enumerate(masks, start=1):
        lab[m & (lab == 0)] = i
    return lab


def settings(**kw):
    base = dict(spacing_um=SP, min_dist_um=6.0, max_size_um=30.0)
    base.update(kw)
    return SegmentSettings(**base)


def test_two_touching_spheres_are_split_in_physical_units():
    shape = (16, 60, 80)
    a = ball(shape, (12, 15, 12), 4.5)
    b = ball(shape, (12, 15, 20.5), 4.5)  # centres 8.5 µm apart: touching
    s = render([a, b])
    lab, rep = segment_volume(s, "watershed", settings(), noise=1.0)
    assert rep.algorithm == "watershed"
    sc = score(labels_of([a, b]), lab)
    assert sc.n_pred == 2 and sc.n_matched == 2
    assert sc.mean_iou > 0.8


def test_group_nms_keeps_points_min_dist_apart_within_groups():
    pts = np.array([[0, 0, 0], [0, 0, 10], [0, 0, 30], [0, 0, 0]])  # voxels
    vals = np.array([5.0, 4.0, 3.0, 9.0])
    groups = np.array([1, 1, 1, 2])
    keep = group_nms(pts, vals, groups, SP, min_dist_um=6.0)
    # 0 and 1 are 5 µm apart (same group): the weaker one goes; 2 is 15 µm away: kept;
    # 3 is in another group at the same place: kept
    assert keep.tolist() == [True, False, True, True]


def test_seeds_respect_min_dist():
    shape = (16, 60, 100)
    a = ball(shape, (12, 15, 12), 4.0)
    b = ball(shape, (12, 15, 19.5), 4.0)  # overlapping, centres 7.5 µm apart
    mask = a | b
    import edt

    from neuroglia5d.processing.segment import hysteresis_components

    cc, _, _ = hysteresis_components(mask.astype(np.float32), mask, 0.5)
    dist = edt.edt(cc, anisotropy=SP, black_border=False)
    xyz, _ = seeds_watershed(dist, cc, settings(min_dist_um=6.0))
    assert len(xyz) == 2
    d = np.linalg.norm((xyz[0] - xyz[1]) * np.array(SP))
    assert d >= 3.0  # half of minDist
    xyz, _ = seeds_watershed(dist, cc, settings(min_dist_um=16.0))
    assert len(xyz) == 1  # with a larger expected diameter they are one object


def test_seed_merge_tol_merges_regions_joined_by_a_thick_neck():
    regions = np.zeros((1, 1, 9), np.int32)
    regions[0, 0, :4] = 1
    regions[0, 0, 4:] = 2
    dist = np.array([[[1, 2, 3, 2.8, 2.7, 2.8, 3, 2, 1]]], np.float32)
    # neck 2.8 (min of the two voxels across the border: 2.7) vs peaks 3: 2.7 >= (1-tol)*3
    assert neck_merge(regions, dist, tol=0.3).max() == 1
    assert neck_merge(regions, dist, tol=0.05).max() == 2


def _cell(shape, soma_um, tip_um):
    """A soma with a thin straight process towards tip_um (1 voxel wide)."""
    m = ball(shape, soma_um, 3.5)
    n = 200
    for f in np.linspace(0, 1, n):
        p = np.array(soma_um) + f * (np.array(tip_um) - np.array(soma_um))
        idx = tuple(round(v / s) for v, s in zip(p, SP, strict=True))
        m[idx] = True
    return m


def test_branching_keeps_processes_on_their_own_cell_body():
    shape = (12, 80, 120)
    a = _cell(shape, (9, 20, 10), (9, 20, 32))   # process pointing right
    b = _cell(shape, (9, 20, 50), (9, 20, 32.5))  # process pointing left, tips touch
    s = render([a, b])
    lab, _ = segment_volume(s, "branching", settings(min_dist_um=6.0), noise=1.0)
    gt = labels_of([a, b])
    sc = score(gt, lab)
    assert sc.n_pred == 2 and sc.n_matched == 2
    # process voxels far from the somata keep their own cell's label
    la, lb = lab[6, 40, 40], lab[6, 40, 80]
    assert la != 0 and lb != 0 and la != lb
    assert lab[6, 40, 56] == la and lab[6, 40, 72] == lb


def test_branching_attaches_a_process_piece_cut_off_by_a_gap():
    shape = (12, 80, 120)
    a = _cell(shape, (9, 20, 15), (9, 20, 40))
    a[:, :, 47:50] = False  # a 1.5 µm gap along the process
    s = render([a])
    lab, rep = segment_volume(s, "branching", settings(), noise=1.0)
    assert rep.attached_pieces >= 1
    assert lab.max() == 1
    assert lab[6, 40, 70] == lab[6, 40, 30] != 0


def test_stitch2d_joins_planes_by_overlap():
    sp = (4.0, 0.5, 0.5)  # very coarse z
    shape = (6, 60, 60)
    a = np.zeros(shape, bool)
    b = np.zeros(shape, bool)
    yy, xx = np.mgrid[0:60, 0:60]
    disk_a = (yy - 20) ** 2 + (xx - 20) ** 2 <= 64
    disk_b = (yy - 20) ** 2 + (xx - 37) ** 2 <= 64  # touching in xy
    a[1:4] = disk_a
    b[2:5] = disk_b
    s = render([a, b], spacing=sp)
    lab, _ = segment_volume(s, "stitch2d", settings(spacing_um=sp, min_dist_um=6.0),
                            noise=1.0)
    sc = score(labels_of([a, b]), lab)
    assert sc.n_pred == 2 and sc.mean_iou > 0.75


def test_recovery_brings_back_a_dim_blob_of_plausible_size():
    shape = (16, 60, 100)
    bright = ball(shape, (12, 15, 12), 4.0)
    dim = ball(shape, (12, 15, 35), 4.0)
    s = render([bright], amp=100.0) + render([dim], amp=20.0)
    lab, rep = segment_volume(s, "watershed", settings(), noise=1.0, high=50.0)
    assert rep.recovered_labels == 1
    assert lab.max() == 2
    assert lab[8, 30, 70] != 0  # the dim blob's centre


def test_recovery_ignores_specks_smaller_than_the_minimum_volume():
    shape = (16, 60, 100)
    bright = ball(shape, (12, 15, 12), 4.0)
    speck = ball(shape, (12, 15, 35), 0.8)
    s = render([bright], amp=100.0) + render([speck], amp=30.0)
    lab, rep = segment_volume(s, "watershed", settings(), noise=1.0, high=50.0)
    assert rep.recovered_labels == 0 and lab.max() == 1


def test_secondary_pass_gives_unreached_voxels_to_their_neighbour():
    cc = np.zeros((3, 10, 10), np.uint32)
    cc[1, 2:5, 2:5] = 7
    cc[1, 5, 2:5] = UNREACHED  # touches label 7
    cc[1, 8:10, 8:10] = UNREACHED  # alone, 4 voxels
    cc, created = _fill_unreached(cc, next_id=20, vmin=3)
    assert created == 1
    assert np.all(cc[1, 5, 2:5] == 7)
    assert np.all(cc[1, 8:10, 8:10] == 20)
    assert not np.any(cc == UNREACHED)


def test_secondary_pass_on_uint16_labels_makes_room_for_new_ids():
    cc = np.zeros((3, 10, 10), np.uint16)
    cc[1, 2:5, 2:5] = 7
    cc[1, 8:10, 8:10] = 65535  # the uint16 marker
    cc, created = _fill_unreached(cc, next_id=65535, vmin=3)
    assert created == 1 and cc.dtype == np.uint32
    assert np.all(cc[1, 8:10, 8:10] == 65535) and np.all(cc[1, 2:5, 2:5] == 7)


def test_calibration_uses_physical_units_for_coarse_z():
    sp = (1.0, 0.5, 0.5)
    mask = ball((16, 40, 40), (8, 10, 10), 5.0, spacing=sp)
    # the same expected diameter spans 2 planes at dz = 4 µm but 8 planes at dz = 1 µm
    assert calibrate(mask, (4.0, 0.5, 0.5), min_dist_um=8.0).algorithm == "stitch2d"
    assert calibrate(mask, sp, min_dist_um=8.0).algorithm == "watershed"
    assert calibrate(mask, sp, 8.0, forced="branching").algorithm == "branching"


def _f1(ds, algorithm="auto"):
    p = Parameters().updated({"px_um": ds.px_um, "dz_um": ds.dz_um, "algorithm": algorithm})
    res, cal = process_channel(ds.raw[0].astype(np.float32), p, 1, None, t=0,
                               offset_zyx=(0, 0, 0))
    return score(ds.labels[0], res.labels).f1, cal.algorithm


def test_calibration_picks_different_methods_and_the_other_one_is_worse(nuclei_small,
                                                                        microglia_small):
    f1_n, alg_n = _f1(nuclei_small)
    f1_m, alg_m = _f1(microglia_small)
    assert alg_n == "watershed"
    assert alg_m == "branching"
    assert f1_n > 0.9 and f1_m > 0.85
    f1_n_forced, _ = _f1(nuclei_small, "branching")
    f1_m_forced, _ = _f1(microglia_small, "watershed")
    assert f1_n_forced < f1_n
    assert f1_m_forced < f1_m


@pytest.mark.parametrize("dz", [1.0, 2.0])
def test_volume_is_measured_in_physical_units(dz):
    sp = (dz, 0.5, 0.5)
    shape = (int(24 / dz), 60, 60)
    a = ball(shape, (12, 15, 15), 5.0, spacing=sp)
    s = render([a], spacing=sp)
    lab, _ = segment_volume(s, "watershed", settings(spacing_um=sp), noise=1.0)
    vol_um3 = float((lab > 0).sum()) * dz * 0.25
    assert vol_um3 == pytest.approx(4 / 3 * np.pi * 5.0**3, rel=0.15)
