"""All processing of one output timepoint of one channel, step by step.

:func:`process_channel` chains the documented step functions (background subtraction,
isolated-voxel removal, optional enhancement, smoothing, segmentation, statistics,
filtering). It is a pure function of its inputs and the locked :class:`Calibration`, so
timepoints can run in any order or on any worker and give identical results.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..backend import Device, array_module, to_cpu, to_device
from ..params import ChannelParams, Parameters
from .background import (
    BackgroundReport,
    noise_sigma,
    remove_isolated_voxels,
    subtract_background,
)
from .calibrate import Calibration, calibrate
from .enhance import CEDSettings, bilateral_planes, coherence_enhance
from .segment import SegmentReport, SegmentSettings, gaussian_noise_gain, segment_volume
from .stats import (
    REJECT_CODES,
    FilterLimits,
    LabelTable,
    classify_labels,
    label_stats,
    recompute_nn,
    select_rows,
)

#: physical sigma (µm) of the light smoothing before segmentation
SMOOTH_SIGMA_UM = 0.5


@dataclass
class ChannelResult:
    """Outputs of one channel at one timepoint (before linking across time).

    Attributes
    ----------
    intensity : numpy.ndarray
        (Z, Y, X) uint16 processed intensity (cropped frame).
    labels : numpy.ndarray
        (Z, Y, X) labels 1..n (cropped frame): uint16 while the IDs fit, else uint32
        (half the memory in the common case; every output format stores uint32).
    table : dict
        Per-label statistics of the kept labels.
    rejected : numpy.ndarray or None
        (Z, Y, X) uint8 codes of removed labels (:data:`REJECT_CODES`), when requested.
    background : BackgroundReport
    segmentation : SegmentReport
    notes : list of str
        Warnings worth showing the user (e.g. sparsity target not reached).
    """

    intensity: np.ndarray
    labels: np.ndarray
    table: LabelTable
    rejected: np.ndarray | None
    background: BackgroundReport
    segmentation: SegmentReport
    notes: list[str] = field(default_factory=list)


def segment_settings(params: Parameters, ch: ChannelParams) -> SegmentSettings:
    """Physical segmentation settings of a channel."""
    return SegmentSettings(spacing_um=params.spacing_um, min_dist_um=ch.minDist_um,
                           max_size_um=ch.maxSize_um, seed_merge_tol=params.seed_merge_tol,
                           stitch_threshold=params.stitch_threshold)


def preprocess(vol: Any, params: Parameters, ch: ChannelParams, device: Device = "cpu"
               ) -> tuple[Any, BackgroundReport, list[str]]:
    """Background subtraction, isolated-voxel removal and optional enhancement.

    Parameters
    ----------
    vol : array
        (Z, Y, X) accumulated float32 intensity (cropped); consumed (modified in place).
    params, ch : Parameters, ChannelParams
        Run and channel parameters.
    device : {"cpu", "gpu"}
        Where the filters run.

    Returns
    -------
    intensity : array
        Processed float32 intensity (background ~0) on ``device``.
    report : BackgroundReport
    notes : list of str
    """
    notes: list[str] = []
    v = to_device(vol, device)
    diam_px = ch.minDist_um / params.px_um
    v, bg = subtract_background(v, target_sparsity=ch.sparsity / 100.0,
                                object_diameter_px=diam_px, anisotropy=params.anisotropy)
    if bg.sparsity < bg.target_sparsity:
        notes.append(f"background: target sparsity {100 * bg.target_sparsity:.1f}% not reached "
                     f"({100 * bg.sparsity:.1f}%) without removing genuine signal")
    remove_isolated_voxels(v)
    if ch.bilat > 0:
        v = _bilateral_with_retry(v, ch.bilat, bg.sigma, notes)
    if ch.CED > 0:
        v = coherence_enhance(v, CEDSettings.level(ch.CED), anisotropy=params.anisotropy)
    return v, bg, notes


def to_uint16(v: Any) -> Any:
    """Round a non-negative float volume to uint16 in place (clipped), freeing the float."""
    xp = array_module(v)
    xp.rint(v, out=v)
    xp.clip(v, 0, 65535, out=v)
    return v.astype(xp.uint16)


def smoothing_sigma(params: Parameters) -> tuple[float, float, float]:
    """Gaussian sigma (z, y, x) in voxels of the smoothing before segmentation."""
    return tuple(SMOOTH_SIGMA_UM / s for s in params.spacing_um)  # type: ignore[return-value]


def smoothed_noise(bg: BackgroundReport, params: Parameters) -> float:
    """Noise deviation of the smoothed intensity (raw noise times the filter's gain)."""
    return bg.sigma * gaussian_noise_gain(smoothing_sigma(params))


def _bilateral_with_retry(v: Any, strength: float, sigma: float, notes: list[str]) -> Any:
    """Bilateral smoothing; new tiny fragments are cleaned up, and a result that lost too
    much foreground is redone at half the strength (once)."""
    before = float((v > 0).mean())
    for attempt, st in enumerate((strength, strength / 2)):
        out = bilateral_planes(v, st, range_sigma=2.0 * sigma)
        out[v == 0] = 0  # smoothing must not create signal where there was none
        remove_isolated_voxels(out, min_neighbours=2)
        after = float((out > 0).mean())
        if before == 0 or after >= 0.5 * before or attempt == 1:
            if attempt == 1:
                notes.append(f"bilateral smoothing {strength:g} left the volume too sparse; "
                             f"retried with {st:g}")
            return out
    return out  # pragma: no cover


def process_channel(
    vol: np.ndarray,
    params: Parameters,
    channel: int,
    calibration: Calibration | None,
    *,
    t: int,
    offset_zyx: tuple[int, int, int],
    device: Device = "cpu",
    want_rejected: bool = False,
) -> tuple[ChannelResult, Calibration]:
    """Process one channel of one timepoint.

    Parameters
    ----------
    vol : numpy.ndarray
        (Z, Y, X) accumulated float32 intensity, already cropped; consumed.
    params : Parameters
        Run parameters.
    channel : int
        1-based channel number.
    calibration : Calibration or None
        The locked choice; ``None`` at the first timepoint runs the calibration.
    t : int
        Output timepoint (for the statistics table).
    offset_zyx : tuple of int
        Crop offset in the full frame, in voxels.
    device : {"cpu", "gpu"}
        Where the filters run (segmentation and statistics always run on the CPU).
    want_rejected : bool
        Also return the volume of what the filters removed.
    """
    ch = params.channel(channel)
    v, bg, notes = preprocess(vol, params, ch, device)
    del vol
    intensity = to_uint16(v)  # the output intensity; segmentation smooths it
    del v
    settings = segment_settings(params, ch)
    chosen: list[Calibration] = []

    def choose(mask: np.ndarray, dist: np.ndarray) -> str:
        chosen.append(calibrate(mask, params.spacing_um, ch.minDist_um, params.algorithm,
                                dist_um=dist))
        return chosen[0].algorithm

    labels, seg = segment_volume(intensity, calibration.algorithm if calibration else choose,
                                 settings, noise=smoothed_noise(bg, params),
                                 smooth_sigma=smoothing_sigma(params))
    if calibration is None:
        calibration = chosen[0]
    intensity = to_cpu(intensity)
    table = label_stats(labels, intensity, params.spacing_um, offset_zyx=offset_zyx, t=t)
    limits = FilterLimits.from_diameters(ch.minDist_um, ch.maxSize_um, params.winXYZum)
    rejected_map = classify_labels(table, limits)
    rejected = np.zeros(labels.shape, np.uint8) if want_rejected else None
    if rejected_map:
        import fastremap

        rows = np.isin(table["label"], list(rejected_map))
        if rejected is not None:
            oz, oy, ox = offset_zyx
            for i in np.flatnonzero(rows):
                lab = int(table["label"][i])
                sl = (slice(table["bbox_z0"][i] - oz, table["bbox_z1"][i] - oz),
                      slice(table["bbox_y0"][i] - oy, table["bbox_y1"][i] - oy),
                      slice(table["bbox_x0"][i] - ox, table["bbox_x1"][i] - ox))
                rejected[sl][labels[sl] == lab] = REJECT_CODES[rejected_map[lab]]
        fastremap.mask(labels, list(rejected_map), in_place=True)
        table = select_rows(table, ~rows)
    labels, remap = fastremap_renumber(labels)
    table["label"] = np.array([remap.get(int(i), int(i)) for i in table["label"]], np.int64)
    table = recompute_nn(table)
    return ChannelResult(intensity, labels, table, rejected, bg, seg, notes), calibration


def fastremap_renumber(labels: np.ndarray) -> tuple[np.ndarray, dict[int, int]]:
    """Renumber labels 1..n in place (identity when already consecutive)."""
    import fastremap

    return fastremap.renumber(labels, in_place=True)


__all__ = ["ChannelResult", "noise_sigma", "preprocess", "process_channel",
           "remove_isolated_voxels", "segment_settings"]
