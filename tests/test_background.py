"""Crop, background subtraction, accumulation and isolated-voxel removal."""

from __future__ import annotations

import numpy as np
import pytest

from neuroglia5d.processing.background import (
    accumulate_frames,
    block_background,
    box3_count,
    noise_sigma,
    remove_isolated_voxels,
    signal_bbox_xy,
    subtract_background,
    subtract_grid,
)


def test_noise_sigma_of_white_noise_on_a_ramp():
    rng = np.random.default_rng(1)
    ramp = np.linspace(0, 500, 128, dtype=np.float32)[None, None, :]
    vol = ramp + rng.normal(0, 7.0, (16, 64, 128)).astype(np.float32)
    assert noise_sigma(vol) == pytest.approx(7.0, rel=0.05)


def test_signal_bbox_finds_a_blob_and_adds_the_margin():
    rng = np.random.default_rng(2)
    vol = rng.normal(100, 3, (8, 100, 120)).astype(np.float32)
    vol[2:6, 30:40, 50:70] += 200
    y0, y1, x0, x1 = signal_bbox_xy(vol, margin_px=5)
    # the box is the blob's (30:40, 50:70) plus the margin, within one pixel of smoothing
    assert abs(y0 - 25) <= 1 and abs(y1 - 45) <= 1
    assert abs(x0 - 45) <= 1 and abs(x1 - 75) <= 1


def test_signal_bbox_without_signal_is_the_whole_frame():
    vol = np.random.default_rng(3).normal(100, 3, (4, 50, 60)).astype(np.float32)
    assert signal_bbox_xy(vol) == (0, 50, 0, 60)


def test_block_background_recovers_a_smooth_gradient_under_objects():
    _, y, x = np.mgrid[0:12, 0:96, 0:96].astype(np.float32)
    bg = 50 + 0.1 * y + 0.06 * x
    vol = bg.copy()
    vol[:, 10:16, 10:16] += 500  # objects cover well under 20 % of each block
    vol[:, 60:66, 70:76] += 500
    grid, block = block_background(vol, (12, 32, 32), q=20)
    work = vol.copy()
    subtract_grid(work, grid, block)
    # away from the borders the residual background is small
    resid = work[:, 20:76, 20:76]
    outside = resid[(resid < 100)]
    assert np.abs(np.median(outside)) < 3.0
    assert work[:, 12, 12].min() > 450  # objects survive


def test_box3_count_matches_a_3x3x3_sum():
    import scipy.ndimage as ndi

    m = np.random.default_rng(4).random((9, 11, 13)) > 0.7
    ref = np.rint(ndi.uniform_filter(m.astype(float), 3, mode="constant") * 27).astype(int)
    assert np.array_equal(box3_count(m), ref)


def test_remove_isolated_voxels_keeps_thin_lines():
    vol = np.zeros((5, 20, 20), np.float32)
    vol[2, 5, 15] = 10  # isolated voxel
    idx = np.arange(3, 15)
    vol[2, idx, idx] = 7  # a 1-voxel diagonal line: 26-connected only
    out, removed = remove_isolated_voxels(vol.copy())
    assert removed == 1
    assert out[2, 5, 15] == 0
    assert np.all(out[2, idx, idx] == 7)


def test_accumulate_frames_is_the_mean():
    a = np.full((2, 3, 4), 10, np.uint16)
    b = np.full((2, 3, 4), 20, np.uint16)
    out = accumulate_frames([a, b])
    assert out.dtype == np.float32
    assert np.all(out == 15)


@pytest.mark.parametrize("kind,target", [("nuclei", 0.80), ("microglia", 0.90)])
def test_background_meets_sparsity_and_keeps_ground_truth(kind, target, request):
    ds = request.getfixturevalue(f"{kind}_small")
    vol = ds.raw[0].astype(np.float32)
    out, rep = subtract_background(vol, target_sparsity=target,
                                   object_diameter_px=8.0 / ds.px_um,
                                   anisotropy=ds.dz_um / ds.px_um)
    sparsity = float(np.mean(out == 0))
    assert sparsity >= target
    assert rep.sparsity == pytest.approx(sparsity)
    fg = ds.labels[0] > 0
    kept = float(np.mean(out[fg] > 0))
    assert kept >= 0.95, f"only {kept:.3f} of ground-truth foreground kept"
    assert not rep.guard_stopped
    assert rep.history == sorted(rep.history)  # sparsity only grows


def test_background_guard_stops_before_eating_signal(nuclei_small):
    """An impossible target (more zeros than there is background) stops at the guard."""
    ds = nuclei_small
    vol = ds.raw[0].astype(np.float32)
    out, rep = subtract_background(vol, target_sparsity=0.995, object_diameter_px=16,
                                   anisotropy=3.0)
    assert rep.guard_stopped
    assert rep.offset_sigma == pytest.approx(3.0)
    fg = ds.labels[0] > 0
    assert float(np.mean(out[fg] > 0)) >= 0.9


def test_background_stall_escalates_then_stops_at_the_guard():
    """Half the volume is bright signal: sparsity stalls near 50 %, so the method escalates
    (larger steps) and stops at the guard instead of cutting into the signal."""
    rng = np.random.default_rng(5)
    vol = rng.normal(100, 5, (8, 64, 64)).astype(np.float32)
    vol[:, :, :32] += 400
    out, rep = subtract_background(vol, target_sparsity=0.9, object_diameter_px=32,
                                   anisotropy=1.0)
    assert rep.stalls >= 1
    assert rep.guard_stopped
    assert rep.sparsity < 0.9
    assert float(np.mean(out[:, :, :32] > 0)) > 0.99
