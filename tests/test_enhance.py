"""Coherence-enhancing diffusion and edge-preserving smoothing."""

from __future__ import annotations

import cc3d
import numpy as np
import pytest
import scipy.ndimage as ndi

from neuroglia5d.processing.enhance import (
    CEDSettings,
    apply_tiled_xy,
    bilateral_planes,
    coherence_enhance,
)


def _broken_filament(gap: int = 2, amp: float = 100.0, noise: float = 5.0) -> np.ndarray:
    vol = np.zeros((9, 40, 80), np.float32)
    vol[4, 20, 10:36] = amp
    vol[4, 20, 36 + gap:70] = amp
    rng = np.random.default_rng(0)
    return np.maximum(vol + rng.normal(0, noise, vol.shape).astype(np.float32), 0)


def _connected(mask: np.ndarray) -> bool:
    lab = cc3d.connected_components(mask, connectivity=26)
    return bool(lab[4, 20, 20] != 0 and lab[4, 20, 20] == lab[4, 20, 60])


@pytest.mark.parametrize("level", [1, 2, 3])
def test_ced_reconnects_a_broken_filament_that_a_gaussian_leaves_broken(level):
    vol = _broken_filament()
    s = CEDSettings.level(level)
    ced = coherence_enhance(vol, s, anisotropy=1.0)
    gauss = ndi.gaussian_filter(vol, s.length_px)  # same diffusion length, isotropic
    half = 0.5 * 100.0  # half the filament's intensity: where its edge is drawn
    assert _connected(ced > half)
    assert not _connected(gauss > half)
    # the filament stays thin: no more than 3 voxels across
    assert int((ced[4, :, 20] > half).sum()) <= 3


def test_ced_levels_get_stronger():
    vol = _broken_filament(gap=3)
    gaps = [coherence_enhance(vol, CEDSettings.level(lv))[4, 20, 36:39].min() for lv in (1, 2, 3)]
    assert gaps[0] < gaps[1] < gaps[2]


def test_ced_tiled_equals_untiled():
    rng = np.random.default_rng(1)
    vol = ndi.gaussian_filter(rng.random((6, 90, 100)).astype(np.float32), 2) * 100
    s = CEDSettings.level(1)
    whole = coherence_enhance(vol, s, tile_xy=512)
    tiled = coherence_enhance(vol, s, tile_xy=32)
    assert np.allclose(whole, tiled, atol=1e-3 * float(vol.max()))


def test_apply_tiled_xy_stitches_tile_centres():
    vol = np.arange(3 * 50 * 70, dtype=np.float32).reshape(3, 50, 70)
    out = apply_tiled_xy(lambda a: a * 2, vol, tile=16, halo=3)
    assert np.array_equal(out, vol * 2)


def test_bilateral_keeps_an_edge_that_a_gaussian_blurs():
    vol = np.zeros((2, 40, 40), np.float32)
    vol[:, :, 20:] = 100
    rng = np.random.default_rng(2)
    noisy = vol + rng.normal(0, 4, vol.shape).astype(np.float32)
    bil = bilateral_planes(noisy, 1.5, range_sigma=8.0)
    gau = ndi.gaussian_filter(noisy, (0, 1.5, 1.5))
    # the step stays a step: the voxels next to it keep their side's value
    assert abs(float(bil[:, :, 19].mean()) - 0) < 5
    assert abs(float(bil[:, :, 20].mean()) - 100) < 5
    assert abs(float(gau[:, :, 19].mean()) - 0) > 20
    # and noise is reduced on flat parts
    assert bil[:, 5:35, 25:35].std() < 0.7 * noisy[:, 5:35, 25:35].std()


def test_bilateral_zero_strength_is_a_copy():
    vol = np.random.default_rng(3).random((2, 5, 5)).astype(np.float32)
    out = bilateral_planes(vol, 0, range_sigma=1.0)
    assert np.array_equal(out, vol) and out is not vol


def test_bilateral_retry_when_the_result_turns_too_sparse():
    from neuroglia5d.processing.timepoint import _bilateral_with_retry

    # isolated pairs of bright voxels: smoothing at full strength drags them under the
    # cleanup's bar, so the step retries at half strength and says so
    vol = np.zeros((3, 40, 40), np.float32)
    vol[1, 5:35:6, 5:35:6] = 100
    vol[1, 6:36:6, 5:35:6] = 100
    notes: list[str] = []
    out = _bilateral_with_retry(vol.copy(), 2.0, sigma=5.0, notes=notes)
    assert out.shape == vol.shape
    assert notes and "retried" in notes[0]


def test_bilateral_in_the_pipeline_keeps_accuracy(microglia_small):
    from neuroglia5d.metrics import score
    from neuroglia5d.params import Parameters
    from neuroglia5d.processing.timepoint import process_channel

    ds = microglia_small
    p = Parameters().updated({"bilat_ch1": 1.0})
    res, _ = process_channel(ds.raw[0].astype(np.float32), p, 1, None, t=0,
                             offset_zyx=(0, 0, 0))
    assert score(ds.labels[0], res.labels).f1 >= 0.85
