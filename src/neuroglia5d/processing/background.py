"""XY crop, adaptive background subtraction, frame accumulation and isolated-voxel removal.

All functions take NumPy or CuPy arrays and use the matching ``xp``/``ndimage`` module
(:mod:`neuroglia5d.backend`), so the same code runs on the CPU and the GPU.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..backend import array_module, ndimage_module


# --------------------------------------------------------------------------- noise
def noise_sigma(vol: Any) -> float:
    """Robust standard deviation of the pixel noise (same units as ``vol``).

    Estimated from second differences along X, which cancel any locally linear
    background: for white noise ``d2 = v[x-1] - 2 v[x] + v[x+1]`` has deviation
    ``sigma * sqrt(6)``, and its median absolute value is ``0.6745`` of that.
    """
    xp = array_module(vol)
    step = max(1, vol.shape[0] // 16)
    sub = vol[::step].astype(xp.float32, copy=False)
    d2 = xp.abs(sub[..., :-2] - 2 * sub[..., 1:-1] + sub[..., 2:])
    mad = float(xp.median(d2))
    if mad == 0.0:  # quantised, very dark data: fall back to the mean
        return float(xp.mean(d2)) * math.sqrt(math.pi / 2) / math.sqrt(6.0)
    return mad / 0.6745 / math.sqrt(6.0)


# --------------------------------------------------------------------------- crop
def signal_bbox_xy(vol: Any, *, margin_px: int = 8, k_sigma: float = 4.0,
                   min_area_px: int = 16) -> tuple[int, int, int, int]:
    """Tightest XY box ``(y0, y1, x0, x1)`` (half-open) holding signal, plus a margin.

    Signal is where the maximum projection over z (and channels), lightly smoothed, stands
    more than ``k_sigma`` noise deviations above its median; specks smaller than
    ``min_area_px`` pixels are ignored. Without any signal the whole frame is returned.

    Parameters
    ----------
    vol : array
        (Z, Y, X) or (C, Z, Y, X) intensity.
    margin_px : int
        Pixels added on every side (clipped to the frame).
    """
    xp = array_module(vol)
    ndi = ndimage_module(xp)
    v = vol.reshape((-1, *vol.shape[-2:]))
    mip = v.max(axis=0).astype(xp.float32)
    sm = ndi.uniform_filter(mip, 3)
    med = float(xp.median(sm))
    sig = noise_sigma(mip[None]) / 3.0  # 3x3 mean divides the noise by 3
    mask = sm > med + k_sigma * max(sig, 1e-6)
    if int(mask.sum()) >= min_area_px:
        mask = ndi.binary_opening(mask, iterations=1)
    Y, X = mip.shape
    if int(mask.sum()) < min_area_px:
        return 0, Y, 0, X
    rows = xp.flatnonzero(mask.any(axis=1))
    cols = xp.flatnonzero(mask.any(axis=0))
    y0 = max(0, int(rows[0]) - margin_px)
    y1 = min(Y, int(rows[-1]) + 1 + margin_px)
    x0 = max(0, int(cols[0]) - margin_px)
    x1 = min(X, int(cols[-1]) + 1 + margin_px)
    return y0, y1, x0, x1


# --------------------------------------------------------------------------- accumulate
def accumulate_frames(frames: Sequence[Any]) -> Any:
    """Combine ``Taccum`` raw frames of one output timepoint into one float32 volume (mean)."""
    if not frames:
        raise ValueError("accumulate_frames needs at least one frame")
    xp = array_module(frames[0])
    out = frames[0].astype(xp.float32, copy=True)
    for f in frames[1:]:
        out += f
    if len(frames) > 1:
        out /= len(frames)
    return out


def box3_count(mask: Any) -> Any:
    """Number of True voxels in every 3x3x3 neighbourhood (itself included), as uint8.

    Separable sums of shifted contiguous slices on uint8: exact, and about 20x faster
    than a float uniform filter.
    """
    xp = array_module(mask)
    c = mask.astype(xp.uint8)
    out = c.copy()
    out[1:] += c[:-1]
    out[:-1] += c[1:]
    c[...] = out
    out[:, 1:] += c[:, :-1]
    out[:, :-1] += c[:, 1:]
    c[...] = out
    out[:, :, 1:] += c[:, :, :-1]
    out[:, :, :-1] += c[:, :, 1:]
    return out


def remove_isolated_voxels(vol: Any, *, min_neighbours: int = 1) -> tuple[Any, int]:
    """Zero non-zero voxels that have fewer than ``min_neighbours`` non-zero 26-neighbours.

    Thin structures one voxel wide keep their voxels (each has neighbours along the
    line); lone noise voxels left by background subtraction are removed. Works in place.

    Returns
    -------
    vol : array
        The same array.
    removed : int
        Number of voxels zeroed.
    """
    nz = vol > 0
    lone = box3_count(nz) < min_neighbours + 1
    lone &= nz
    removed = int(lone.sum())
    vol[lone] = 0
    return vol, removed


# --------------------------------------------------------------------------- background
@dataclass
class BackgroundReport:
    """What :func:`subtract_background` did.

    Attributes
    ----------
    target_sparsity, sparsity : float
        Requested and reached fraction (0–1) of zero voxels.
    sigma : float
        Noise standard deviation of the input.
    offset_sigma : float
        Final soft-threshold, in noise deviations above the estimated background.
    scales_px : list of int
        XY block sizes of the background estimates applied, coarse to fine.
    iterations : int
        Iterations of the sparsity loop.
    stalls : int
        Times progress stalled and the method escalated.
    guard_stopped : bool
        True when the loop stopped at the signal-protection guard before the target.
    history : list of float
        Sparsity after each iteration.
    """

    target_sparsity: float
    sparsity: float = 0.0
    sigma: float = 0.0
    offset_sigma: float = 0.0
    scales_px: list[int] = field(default_factory=list)
    iterations: int = 0
    stalls: int = 0
    guard_stopped: bool = False
    history: list[float] = field(default_factory=list)


def block_background(vol: Any, block_zyx: Sequence[int],
                     q: float = 20.0) -> tuple[Any, tuple[int, int, int]]:
    """Smooth background estimate on a coarse grid: the ``q``-th percentile of each block.

    Parameters
    ----------
    vol : array
        (Z, Y, X) float volume.
    block_zyx : sequence of int
        Requested block size in voxels.
    q : float
        Percentile (0–100). Low values ignore objects that cover part of a block.

    Returns
    -------
    grid : array
        (nz, ny, nx) background values at the block centres, smoothed by about a block.
    block : tuple of int
        Block size actually used (z, y, x), in voxels of ``vol``.
    """
    xp = array_module(vol)
    ndi = ndimage_module(xp)
    Z = vol.shape[0]
    bz, by, bx = (max(1, min(int(b), n)) for b, n in zip(block_zyx, vol.shape, strict=True))
    # subsample XY by 2 inside big blocks: percentiles barely change, 4x less work
    sub = 2 if min(by, bx) >= 16 else 1
    by_s, bx_s = by // sub, bx // sub
    v = vol[:, ::sub, ::sub]
    nz, ny, nx = math.ceil(Z / bz), math.ceil(v.shape[1] / by_s), math.ceil(v.shape[2] / bx_s)
    pad_yx = ((0, ny * by_s - v.shape[1]), (0, nx * bx_s - v.shape[2]))
    grid = xp.empty((nz, ny, nx), xp.float32)
    # one z-block at a time: the temporary copies stay a fraction of the volume
    for k in range(nz):
        slab = v[k * bz:(k + 1) * bz]
        pad = ((0, bz - slab.shape[0]), *pad_yx)
        if any(p[1] for p in pad):
            slab = xp.pad(slab, pad, mode="symmetric")
        blocks = slab.reshape(bz, ny, by_s, nx, bx_s).transpose(1, 3, 0, 2, 4)
        grid[k] = xp.percentile(blocks.reshape(ny, nx, -1), q, axis=-1)
    if min(grid.shape[1:]) > 2:
        grid = ndi.gaussian_filter(grid, (0.5 if nz > 2 else 0.0, 0.7, 0.7), mode="nearest")
    return grid, (bz, by_s * sub, bx_s * sub)


def interp_matrix(n_out: int, n_grid: int, block: int) -> np.ndarray:
    """(n_out, n_grid) weights of linear interpolation from block centres to voxels.

    Voxel ``i`` lies at ``(i + 0.5) / block - 0.5`` in block-centre units; outside the
    first and last centres the nearest centre's value is used.
    """
    pos = np.clip((np.arange(n_out) + 0.5) / block - 0.5, 0, n_grid - 1)
    i0 = np.floor(pos).astype(int)
    i1 = np.minimum(i0 + 1, n_grid - 1)
    w = (pos - i0).astype(np.float32)
    m = np.zeros((n_out, n_grid), np.float32)
    np.add.at(m, (np.arange(n_out), i0), 1 - w)
    np.add.at(m, (np.arange(n_out), i1), w)
    return m


def subtract_grid(vol: Any, grid: Any, block_zyx: Sequence[int]) -> None:
    """Subtract a block-centre grid, linearly interpolated to full size, plane by plane.

    The interpolation is separable, so each plane is ``Wy @ grid_z @ Wx.T`` (two small
    matrix products); no full-size background array is ever held. Works in place.
    """
    xp = array_module(vol)
    Z, Y, X = vol.shape
    bz, by, bx = (int(b) for b in block_zyx)
    nz, ny, nx = grid.shape
    wz = interp_matrix(Z, nz, bz)
    wy = xp.asarray(interp_matrix(Y, ny, by))
    wx_t = xp.asarray(interp_matrix(X, nx, bx).T.copy())
    for z in range(Z):
        g2 = xp.tensordot(xp.asarray(wz[z]), grid, axes=(0, 0))
        vol[z] -= wy @ g2 @ wx_t


def subtract_background(
    vol: Any,
    *,
    target_sparsity: float,
    object_diameter_px: float,
    anisotropy: float = 1.0,
    max_offset_sigma: float = 3.0,
    stall_eps: float = 0.002,
    stall_frac: float = 0.1,
    max_iter: int = 24,
    percentile: float = 20.0,
) -> tuple[Any, BackgroundReport]:
    """Remove the background until the volume reaches a target sparsity.

    The background is estimated blockwise (the ``percentile`` of each block, smoothed and
    interpolated), with blocks of 8, then 4, then 2 object diameters, each scale removing
    what the coarser one left (multi-scale);
    what remains is soft-thresholded at an offset of ``k`` noise deviations, with ``k``
    raised step by step until the fraction of zero voxels reaches ``target_sparsity``.
    When an iteration gains less than ``stall_eps``, or less than ``stall_frac`` of the
    sparsity still missing, progress has stalled and the method escalates (doubles its
    step). Two guards protect genuine signal: blocks are
    never smaller than two object diameters, and ``k`` never exceeds
    ``max_offset_sigma`` (voxels that far above the local background are signal, not
    noise); when they stop the loop before the target, ``report.guard_stopped`` is set.

    Parameters
    ----------
    vol : array
        (Z, Y, X) volume, float32 (modified in place and returned).
    target_sparsity : float
        Wanted fraction (0–1) of zero voxels.
    object_diameter_px : float
        Expected object diameter in XY pixels (sets the block sizes).
    anisotropy : float
        ``dz_um / px_um``; z blocks cover the same physical length as XY blocks.

    Returns
    -------
    vol : array
        Background-subtracted, non-negative float32 volume (same array).
    report : BackgroundReport
    """
    xp = array_module(vol)
    rep = BackgroundReport(target_sparsity=float(target_sparsity))
    sigma = max(noise_sigma(vol), 1e-6)
    rep.sigma = sigma
    n = vol.size
    diam = max(4.0, float(object_diameter_px))
    scales = [round(f * diam) for f in (8, 4, 2)]
    scales = [s for s in scales if s >= 8] or [8]

    def apply_scale(i: int) -> None:
        b = scales[i]
        bz = max(1, round(b / anisotropy))
        grid, block = block_background(vol, (bz, b, b), percentile)
        subtract_grid(vol, grid, block)
        rep.scales_px.append(b)

    # multi-scale: coarse to fine, each estimate removing what the previous one left
    for i in range(len(scales)):
        apply_scale(i)
    k, step = 0.0, 0.25
    prev = -1.0
    for it in range(max_iter):
        sparsity = float(xp.count_nonzero(vol <= k * sigma)) / n
        rep.history.append(sparsity)
        rep.iterations = it + 1
        if sparsity >= target_sparsity:
            break
        # progress stalls when a step gains little compared with what is still missing
        if prev >= 0 and sparsity - prev < max(stall_eps,
                                               stall_frac * (target_sparsity - sparsity)):
            rep.stalls += 1
            step *= 2
        prev = sparsity
        if k >= max_offset_sigma:
            rep.guard_stopped = True
            break
        k = min(max_offset_sigma, k + step)
    rep.offset_sigma = k
    vol -= k * sigma
    xp.maximum(vol, 0, out=vol)
    rep.sparsity = float(xp.count_nonzero(vol == 0)) / n
    return vol, rep
