"""Seeded segmentation of one 3D timepoint: foreground, seeds, and three algorithms.

The foreground is found by hysteresis (a low threshold a few noise deviations above the
background-subtracted, smoothed intensity, kept where a component reaches a high threshold
from Otsu's method). Every connected foreground component is then split on its own crop,
which keeps memory small and lets a component with one seed skip the splitting entirely:

``watershed``
    Compact cells and nuclei: seeds are maxima of the anisotropic distance transform
    (µm) at least ``minDist_um`` apart; a watershed on the distance splits touching
    objects along their necks; adjacent regions whose neck is nearly as thick as the
    thinner region (``seed_merge_tol``) are merged back.
``branching``
    Microglia and neurons: seeds are the thick cores (somata) of a component; every other
    voxel, thin processes included, is flooded from the cores along the intensity inside
    the component, so processes stay attached to their own cell body.
``stitch2d``
    For stacks whose z sampling is too coarse for 3D: the ``watershed`` method on every
    z-plane in 2D, stitched across z where masks of neighbouring planes overlap with IoU
    at least ``stitch_threshold`` (Cellpose's idea).

A secondary pass labels foreground that no seed reached, and a recovery loop brings back
blobs of the expected size that missed the high threshold.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

ALGORITHM_NAMES = ("watershed", "branching", "stitch2d")
UNREACHED = np.uint32(2**32 - 1)  # marks foreground voxels no seed reached (uint32 arrays)


def unreached_value(dtype: np.dtype) -> int:
    """The marker of unreached foreground in a label array of ``dtype`` (its maximum)."""
    return int(np.iinfo(dtype).max)


@dataclass(frozen=True)
class SegmentSettings:
    """Physical settings of the segmentation of one channel.

    Attributes
    ----------
    spacing_um : tuple of float
        Voxel size (z, y, x) in µm.
    min_dist_um : float
        Minimum object diameter (µm): seeds closer than ``seed_separation`` times this
        (by default half, one radius) are one object.
    max_size_um : float
        Maximum object diameter (recovery keeps blobs up to a sphere of this diameter).
    seed_merge_tol : float
        Adjacent regions merge when their neck is at least ``1 - tol`` times as thick as
        the thinner region (watershed), or cores closer than ``minDist`` join (branching).
    stitch_threshold : float
        stitch2d: IoU needed to join masks of neighbouring planes.
    low_k : float
        Low hysteresis threshold in noise deviations of the smoothed intensity.
    core_fraction : float
        branching: a core is where the local radius reaches this fraction of
        ``min_dist_um / 2``.
    edge_fraction : float
        Object boundaries lie where the intensity falls below this fraction of the local
        maximum (within ``edge_radius_um``): half-maximum edges for bright bodies and dim
        processes alike.
    edge_radius_um : float
        Radius of the neighbourhood of that local maximum, in µm.
    attach_gap_um : float
        branching: a piece without a cell body (a process cut off by noise) joins the cell
        it comes closest to when the gap is at most this, in µm.
    seed_separation : float
        Fraction of ``min_dist_um`` below which two seeds are one object; touching
        ellipsoids may have centres closer than their largest diameter, and seeds of one
        elongated object that survive are merged back by ``seed_merge_tol``.
    """

    spacing_um: tuple[float, float, float]
    min_dist_um: float
    max_size_um: float
    seed_merge_tol: float = 0.3
    stitch_threshold: float = 0.25
    low_k: float = 3.0
    core_fraction: float = 0.5
    edge_fraction: float = 0.5
    edge_radius_um: float = 1.0
    attach_gap_um: float = 3.0
    seed_separation: float = 0.5

    @property
    def separation_um(self) -> float:
        """Smallest distance between two seeds: ``seed_separation * min_dist_um`` (µm)."""
        return self.seed_separation * self.min_dist_um

    @property
    def min_volume_um3(self) -> float:
        """Smallest plausible object: a sphere of diameter ``min_dist_um / 2``."""
        return math.pi / 6 * (0.5 * self.min_dist_um) ** 3

    @property
    def max_volume_um3(self) -> float:
        """Largest plausible object: a sphere of diameter ``max_size_um``."""
        return math.pi / 6 * self.max_size_um ** 3

    @property
    def voxel_um3(self) -> float:
        """Volume of one voxel in µm³."""
        z, y, x = self.spacing_um
        return z * y * x


@dataclass
class SegmentReport:
    """Counts of what the segmentation did on one timepoint."""

    algorithm: str = ""
    low_threshold: float = 0.0
    high_threshold: float = 0.0
    components: int = 0
    primary_labels: int = 0
    secondary_labels: int = 0
    recovered_labels: int = 0
    dropped_components: int = 0
    attached_pieces: int = 0
    recovery_rounds: list[int] = field(default_factory=list)


# --------------------------------------------------------------------------- thresholds
def otsu(values: np.ndarray, nbins: int = 256) -> float:
    """Otsu's threshold of a 1D sample."""
    from skimage.filters import threshold_otsu

    if values.size == 0 or float(values.max()) == float(values.min()):
        return float(values.max()) if values.size else 0.0
    return float(threshold_otsu(values, nbins=nbins))


def gaussian_noise_gain(sigma_vox: Sequence[float], truncate: float = 4.0) -> float:
    """Factor by which a Gaussian filter of ``sigma_vox`` scales white noise's deviation.

    It is the root of the sum of squared kernel weights (the kernels scipy uses).
    """
    gain = 1.0
    for sd in sigma_vox:
        if sd <= 0:
            continue
        r = int(truncate * sd + 0.5)
        x = np.arange(-r, r + 1, dtype=np.float64)
        k = np.exp(-0.5 * (x / sd) ** 2)
        k /= k.sum()
        gain *= float(np.sqrt(np.sum(k * k)))
    return gain


def foreground_mask(s: np.ndarray, low: float, settings: SegmentSettings) -> np.ndarray:
    """Voxels above ``low`` and above ``edge_fraction`` of their local maximum.

    The local maximum is taken in a box of half-size ``edge_radius_um``; the second
    condition puts every object's boundary at its own half maximum, so blur halos of
    bright objects are not foreground while dim thin processes are.
    """
    import scipy.ndimage as ndi

    half = np.maximum(1, np.round(settings.edge_radius_um / np.asarray(settings.spacing_um)))
    size = tuple(int(2 * h + 1) for h in half)
    hz = int(half[0])
    Z = s.shape[0]
    mask = np.empty(s.shape, bool)
    # z slabs with a halo: identical to one filter over the volume, in little memory
    for z0 in range(0, Z, 8):
        z1 = min(Z, z0 + 8)
        a, b = max(0, z0 - hz), min(Z, z1 + hz)
        local_max = ndi.maximum_filter(s[a:b], size=size, mode="nearest")[z0 - a:z1 - a]
        local_max *= settings.edge_fraction
        part = s[z0:z1]
        np.greater_equal(part, local_max, out=mask[z0:z1])
        mask[z0:z1] &= part > low
    return mask


def hysteresis_components(s: np.ndarray, low: float | np.ndarray, high: float
                          ) -> tuple[np.ndarray, int, np.ndarray]:
    """Connected components (26-connectivity) of ``s > low`` that reach ``s > high``.

    ``low`` may also be a precomputed boolean foreground mask.

    Returns
    -------
    cc : numpy.ndarray
        Component labels (uint16 when there are at most 30000 components, else uint32).
    n : int
        Largest component id in ``cc`` before removal.
    dropped : numpy.ndarray
        Ids of low components that never reach ``high`` (kept in the returned ``cc`` as 0,
        but reported so recovery can look at them).
    """
    import cc3d

    low_mask = low if isinstance(low, np.ndarray) else s > low
    try:  # half the memory of uint32 while there are few components (the common case)
        cc, n = cc3d.connected_components(low_mask, connectivity=26, return_N=True,
                                          out_dtype=np.uint16)
        if int(n) > 30000:
            raise ValueError("too many components for uint16 with room for new labels")
    except ValueError:
        cc, n = cc3d.connected_components(low_mask, connectivity=26, return_N=True,
                                          out_dtype=np.uint32)
    del low_mask
    n = int(n)
    if n == 0:
        return cc, 0, np.zeros(0, np.int64)
    hi_ids = np.unique(cc[s > high])
    hi_ids = hi_ids[hi_ids != 0]
    keep = np.zeros(n + 1, bool)
    keep[hi_ids] = True
    dropped = np.flatnonzero(~keep[1:]) + 1
    return cc, n, dropped


# --------------------------------------------------------------------------- seeds
def seeds_from_distance(dist: np.ndarray, spacing_um: Sequence[float],
                        separation_um: float) -> np.ndarray:
    """Seed voxels of one crop (2D or 3D): maxima of ``dist`` at least ``separation_um``
    apart (physical distance).

    Candidates are local maxima in a box of half-size ``separation_um``, then thinned by
    :func:`group_nms`.

    Returns
    -------
    numpy.ndarray
        (n, ndim) integer coordinates.
    """
    import scipy.ndimage as ndi

    sp = np.asarray(spacing_um, dtype=np.float64)[-dist.ndim:]
    half = np.maximum(1, np.round(separation_um / sp)).astype(int)
    mx = ndi.maximum_filter(dist, size=tuple(int(2 * h + 1) for h in half), mode="constant")
    cand = np.argwhere((dist == mx) & (dist > 0))
    keep = group_nms(cand, dist[tuple(cand.T)], np.zeros(len(cand), np.int64), sp,
                     separation_um)
    return cand[keep]


def _markers(shape: tuple[int, ...], seeds: np.ndarray) -> np.ndarray:
    m = np.zeros(shape, np.int32)
    m[tuple(seeds.T)] = np.arange(1, len(seeds) + 1, dtype=np.int32)
    return m


# --------------------------------------------------------------------------- merging
def neck_merge(regions: np.ndarray, dist: np.ndarray, tol: float) -> np.ndarray:
    """Merge adjacent regions whose neck is nearly as thick as the thinner region.

    The neck height of two adjacent regions is the largest ``min(dist[p], dist[q])`` over
    neighbouring voxel pairs ``p`` in one and ``q`` in the other; they merge when it is at
    least ``(1 - tol)`` times the smaller of the two regions' peak ``dist``.
    """
    import fastremap

    n = int(regions.max())
    if n < 2 or tol <= 0:
        return regions
    peak = np.zeros(n + 1)
    np.maximum.at(peak, regions.ravel(), dist.ravel())
    best: dict[tuple[int, int], float] = {}
    for ax in range(regions.ndim):
        a = np.moveaxis(regions, ax, 0)
        d = np.moveaxis(dist, ax, 0)
        la, lb = a[:-1], a[1:]
        sel = (la != lb) & (la > 0) & (lb > 0)
        if not sel.any():
            continue
        x, y = la[sel].astype(np.int64), lb[sel].astype(np.int64)
        h = np.minimum(d[:-1][sel], d[1:][sel])
        lo, hi = np.minimum(x, y), np.maximum(x, y)
        key = lo * (n + 1) + hi
        order = np.lexsort((-h, key))
        key, h = key[order], h[order]
        first = np.r_[True, key[1:] != key[:-1]]
        for k, v in zip(key[first], h[first], strict=True):
            kk = (int(k // (n + 1)), int(k % (n + 1)))
            if v > best.get(kk, -1.0):
                best[kk] = float(v)
    parent = list(range(n + 1))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    merged = False
    for (i, j), h in sorted(best.items(), key=lambda kv: -kv[1]):
        if h >= (1.0 - tol) * min(peak[i], peak[j]):
            ri, rj = find(i), find(j)
            if ri != rj:
                parent[max(ri, rj)] = min(ri, rj)
                merged = True
    if not merged:
        return regions
    mapping = {i: find(i) for i in range(n + 1)}
    return fastremap.remap(regions, mapping, preserve_missing_labels=True)


# --------------------------------------------------------------------------- splitting
def group_nms(points: np.ndarray, values: np.ndarray, groups: np.ndarray,
              spacing_um: Sequence[float], min_dist_um: float) -> np.ndarray:
    """Non-maximum suppression inside groups: keep points at least ``min_dist_um`` apart.

    (Callers pass :attr:`SegmentSettings.separation_um` as ``min_dist_um``.)

    Points are taken in decreasing ``values`` within each group; a point closer than
    ``min_dist_um`` (Euclidean, µm) to a kept point of its own group is dropped.

    Returns
    -------
    numpy.ndarray
        Boolean mask of kept points.
    """
    from scipy.spatial import cKDTree

    keep = np.zeros(len(points), bool)
    if len(points) == 0:
        return keep
    order = np.lexsort((-values, groups))
    g_sorted = groups[order]
    starts = np.flatnonzero(np.r_[True, g_sorted[1:] != g_sorted[:-1]])
    ends = np.r_[starts[1:], len(order)]
    pts_um = points * np.asarray(spacing_um, dtype=np.float64)[-points.shape[1]:]
    r2 = min_dist_um * min_dist_um
    for a, b in zip(starts, ends, strict=True):
        idx = order[a:b]
        if len(idx) == 1:
            keep[idx[0]] = True
            continue
        p = pts_um[idx]
        if np.all(np.sum((p - p[0]) ** 2, axis=1) < r2):  # common: one object
            keep[idx[0]] = True
            continue
        tree = cKDTree(p)
        gone = np.zeros(len(idx), bool)
        for i in range(len(idx)):
            if gone[i]:
                continue
            keep[idx[i]] = True
            for j in tree.query_ball_point(p[i], r=min_dist_um - 1e-9):
                if j > i:
                    gone[j] = True
    return keep


def seeds_watershed(dist: np.ndarray, cc: np.ndarray, settings: SegmentSettings
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Seeds of the ``watershed`` method for every component at once.

    Maxima of the distance transform (µm) in a box of half-size ``min_dist_um / 2``,
    thinned to be :attr:`SegmentSettings.separation_um` apart within each component.

    Returns
    -------
    coords : numpy.ndarray
        (n, 3) seed voxels.
    comp : numpy.ndarray
        Component id of each seed.
    """
    import scipy.ndimage as ndi

    sp = np.asarray(settings.spacing_um, dtype=np.float64)
    half = np.maximum(1, np.round(0.5 * settings.min_dist_um / sp)).astype(int)
    size = tuple(int(2 * h + 1) for h in half)
    # z slabs with a halo: the same maxima as one filter over the volume, in little memory
    hz = int(half[0])
    cands = []
    Z = dist.shape[0]
    for z0 in range(0, Z, 8):
        z1 = min(Z, z0 + 8)
        a, b = max(0, z0 - hz), min(Z, z1 + hz)
        slab = dist[a:b].astype(np.float32)
        mx = ndi.maximum_filter(slab, size=size, mode="constant")
        c = np.argwhere((slab[z0 - a:z1 - a] == mx[z0 - a:z1 - a]) & (slab[z0 - a:z1 - a] > 0))
        c[:, 0] += z0
        cands.append(c)
    cand = np.concatenate(cands) if cands else np.zeros((0, 3), np.int64)
    vals = dist[tuple(cand.T)]
    comp = cc[tuple(cand.T)].astype(np.int64)
    keep = group_nms(cand, vals, comp, sp, settings.separation_um)
    return cand[keep], comp[keep]


def seeds_branching(dist: np.ndarray, cc: np.ndarray, settings: SegmentSettings
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeds of the ``branching`` method: thick cores (cell bodies) of every component.

    A core is a 26-connected region where the local radius (distance transform, µm)
    reaches ``core_fraction * min_dist_um / 2``; cores of one component whose deepest
    points are closer than :attr:`SegmentSettings.separation_um` are one cell.

    Returns
    -------
    cores : numpy.ndarray
        uint32 core labels (0 elsewhere); merged cores share a label.
    comp : numpy.ndarray
        For core label ``i`` (index ``i``), its component id (0 for unused labels).
    n_cores : numpy.ndarray
        Number of distinct cells (merged cores) per component id.
    """
    import cc3d
    import fastremap

    r_core = settings.core_fraction * 0.5 * settings.min_dist_um
    core_mask = dist >= r_core
    try:  # half the memory when there are fewer than 65536 cores (almost always)
        cores, n = cc3d.connected_components(core_mask, connectivity=26, return_N=True,
                                             out_dtype=np.uint16)
    except ValueError:
        cores, n = cc3d.connected_components(core_mask, connectivity=26, return_N=True,
                                             out_dtype=np.uint32)
    del core_mask
    n_comp = int(cc.max())
    if n == 0:
        return cores, np.zeros(1, np.int64), np.zeros(n_comp + 1, np.int64)
    st = cc3d.statistics(cores)
    peaks = np.zeros((n, 3), np.int64)
    depth = np.zeros(n)
    for i in range(1, n + 1):
        sl = st["bounding_boxes"][i]
        sub = np.where(cores[sl] == i, dist[sl], 0)
        k = np.unravel_index(int(np.argmax(sub)), sub.shape)
        peaks[i - 1] = [s_.start + kk for s_, kk in zip(sl, k, strict=True)]
        depth[i - 1] = sub[k]
    comp = cc[tuple(peaks.T)].astype(np.int64)
    keep = group_nms(peaks, depth, comp, settings.spacing_um, settings.separation_um)
    # merged-away cores join the nearest kept core of their component
    mapping = {0: 0}
    sp = np.asarray(settings.spacing_um)
    kept_idx = np.flatnonzero(keep)
    for i in range(n):
        if keep[i]:
            mapping[i + 1] = i + 1
            continue
        same = kept_idx[comp[kept_idx] == comp[i]]
        d = np.linalg.norm((peaks[same] - peaks[i]) * sp, axis=1)
        mapping[i + 1] = int(same[np.argmin(d)]) + 1
    cores = fastremap.remap(cores, mapping, preserve_missing_labels=True, in_place=True)
    comp_of = np.zeros(n + 1, np.int64)
    comp_of[1:] = comp
    n_cores = np.bincount(comp[keep], minlength=n_comp + 1)
    return cores, comp_of, n_cores


def split_watershed(mask: np.ndarray, settings: SegmentSettings,
                    dist: np.ndarray | None = None,
                    seeds: np.ndarray | None = None) -> np.ndarray:
    """Split one component (crop) of compact objects; returns labels 1..k in the crop.

    Parameters
    ----------
    mask : numpy.ndarray
        Boolean crop of the component (2D or 3D).
    settings : SegmentSettings
    dist : numpy.ndarray, optional
        Distance transform (µm) of the crop (computed when omitted).
    seeds : numpy.ndarray, optional
        (k, ndim) seed voxels in the crop (found when omitted).
    """
    import edt
    from skimage.segmentation import watershed

    sp = settings.spacing_um[-mask.ndim:]
    if dist is None:
        dist = edt.edt(np.ascontiguousarray(mask), anisotropy=sp, black_border=False,
                       parallel=1).astype(np.float32)
    if seeds is None:
        seeds = seeds_from_distance(dist, sp, settings.separation_um)
    if len(seeds) <= 1:
        return mask.astype(np.int32)
    regions = watershed(-dist, _markers(mask.shape, seeds), mask=mask)
    return neck_merge(regions, dist, settings.seed_merge_tol)


def split_branching(mask: np.ndarray, intensity: np.ndarray, markers: np.ndarray
                    ) -> np.ndarray:
    """Split one component (crop) of branching cells by flooding from its cores.

    Every voxel of the component, thin processes included, joins the core it is reached
    from first when flooding down the intensity inside the component (26-connected), so a
    process stays with the cell body it leaves from.
    """
    from skimage.segmentation import watershed

    return watershed(-intensity.astype(np.float32), markers, mask=mask,
                     connectivity=mask.ndim)


def split_stitch2d(mask: np.ndarray, settings: SegmentSettings) -> np.ndarray:
    """Split per z-plane in 2D and stitch masks of neighbouring planes by IoU."""
    from scipy.optimize import linear_sum_assignment

    out = np.zeros(mask.shape, np.int32)
    next_id = 1
    prev: np.ndarray | None = None
    for z in range(mask.shape[0]):
        m = mask[z]
        if not m.any():
            prev = None
            continue
        lab = split_watershed(m, settings).astype(np.int32)
        ids = np.unique(lab)
        ids = ids[ids != 0]
        new = np.zeros_like(lab)
        assigned: dict[int, int] = {}
        if prev is not None:
            both = (lab > 0) & (prev > 0)
            if both.any():
                pa, pb = prev[both], lab[both]
                keys, inter = np.unique(pa.astype(np.int64) << 32 | pb, return_counts=True)
                ka, kb = keys >> 32, keys & 0xFFFFFFFF
                pid = np.unique(ka)
                pidx = {v: i for i, v in enumerate(pid)}
                cidx = {v: i for i, v in enumerate(ids)}
                sa = {v: int((prev == v).sum()) for v in pid}
                sb = {v: int((lab == v).sum()) for v in ids}
                iou = np.zeros((len(pid), len(ids)))
                for x, y, n in zip(ka, kb, inter, strict=True):
                    iou[pidx[x], cidx[y]] = n / (sa[x] + sb[y] - n)
                r, c = linear_sum_assignment(-iou)
                for i, j in zip(r, c, strict=True):
                    if iou[i, j] >= settings.stitch_threshold:
                        assigned[int(ids[j])] = int(pid[i])
        for i in ids:
            if int(i) not in assigned:
                assigned[int(i)] = next_id
                next_id += 1
            new[lab == i] = assigned[int(i)]
        out[z] = new
        prev = new
    return out


# --------------------------------------------------------------------------- driver
def segment_volume(
    intensity: Any,
    algorithm: str | Callable[[np.ndarray, np.ndarray], str],
    settings: SegmentSettings,
    *,
    noise: float,
    smooth_sigma: Sequence[float] = (0.0, 0.0, 0.0),
    high: float | None = None,
) -> tuple[np.ndarray, SegmentReport]:
    """Segment one background-subtracted 3D volume into instance labels.

    Memory is kept to a few volumes: the smoothed copy is freed as soon as the foreground
    components are known (crops are kept where the flooding needs them), the distance
    transform after the seeds, and the labels reuse the component array.

    Parameters
    ----------
    intensity : array
        (Z, Y, X) processed intensity (background about 0), NumPy or CuPy.
    algorithm : str or callable
        ``watershed``, ``branching`` or ``stitch2d`` (see the module docstring), or a
        function ``choose(mask, dist_um) -> name`` called with the foreground and its
        distance transform (the calibration pass at the first timepoint).
    settings : SegmentSettings
        Physical settings.
    noise : float
        Noise deviation of the smoothed intensity (raw noise times
        :func:`gaussian_noise_gain` of ``smooth_sigma``).
    smooth_sigma : sequence of float
        Gaussian smoothing (z, y, x) in voxels applied first (on the array's device).
    high : float, optional
        High hysteresis threshold (Otsu of the foreground when omitted).

    Returns
    -------
    labels : numpy.ndarray
        Labels numbered 1..n, uint16 when they fit, else uint32.
    report : SegmentReport
    """
    import edt
    import fastremap
    import scipy.ndimage as ndi

    from ..backend import array_module, ndimage_module, to_cpu

    xp = array_module(intensity)
    s = to_cpu(ndimage_module(xp).gaussian_filter(intensity, smooth_sigma, output=xp.float32,
                                                  mode="nearest"))
    low = settings.low_k * noise
    if high is None:
        fg = s[::max(1, s.shape[0] // 32)]
        fg = fg[fg > low]
        high = max(otsu(fg), 2 * low) if fg.size else 2 * low
    fg_mask = foreground_mask(s, low, settings)
    np.minimum(s, 65504, out=s)  # the largest float16
    s = s.astype(np.float16)  # 0.1 % steps are plenty from here on; half the memory
    cc, n, dropped = hysteresis_components(s, fg_mask, high)
    del fg_mask
    dropped_set = np.zeros(n + 1, bool)
    dropped_set[dropped] = True
    objs = ndi.find_objects(cc)
    st = _component_sizes(cc, n)
    vmin_vox = settings.min_volume_um3 / settings.voxel_um3
    vmax_vox = settings.max_volume_um3 / settings.voxel_um3
    peaks = {int(c): float(s[objs[c - 1]][cc[objs[c - 1]] == c].max()) for c in dropped
             if vmin_vox <= st[c] <= vmax_vox}
    # the flooding of branching cells needs the intensity inside multi-cell components
    # only; keep crops of it and free the volume (the algorithm may still be undecided)
    s_crops: dict[int, np.ndarray] = {}
    if algorithm in ("branching",) or callable(algorithm):
        for cid, sl in enumerate(objs, start=1):
            if sl is not None and not dropped_set[cid] and st[cid] >= vmin_vox:
                s_crops[cid] = s[sl].copy()  # float16; widened when used
    del s
    # distance to the background (µm) of every component at once (components never touch,
    # so the binary transform is the per-label one); kept as float16 (0.01 µm steps)
    dist = edt.edt(cc > 0, anisotropy=settings.spacing_um, black_border=False,
                   parallel=_threads()).astype(np.float16)
    if callable(algorithm):
        kept = cc > 0
        if len(dropped):
            kept &= ~dropped_set[cc]
        algorithm = algorithm(kept, dist)
        del kept
    if algorithm not in ALGORITHM_NAMES:
        raise ValueError(f"unknown algorithm {algorithm!r}")
    if algorithm != "branching":
        s_crops.clear()
    rep = SegmentReport(algorithm=algorithm, low_threshold=float(low),
                        high_threshold=float(high), components=n - len(dropped))

    n_seeds = np.ones(n + 1, np.int64)
    seed_xyz = seed_comp = None
    cores = None
    if algorithm == "watershed":
        seed_xyz, seed_comp = seeds_watershed(dist, cc, settings)
        n_seeds = np.bincount(seed_comp, minlength=n + 1)
    elif algorithm == "branching":
        cores, _, n_seeds = seeds_branching(dist, cc, settings)
    if algorithm != "watershed":
        del dist  # the watershed method floods the distance map; the others are done with it
    # room for the new ids (split labels, recovered blobs) below the unreached marker
    upper = n + 1 + int(n_seeds.sum()) + len(peaks) + 1024
    if upper >= unreached_value(cc.dtype):
        cc = cc.astype(np.uint32)
    unreached = unreached_value(cc.dtype)
    lut = np.zeros(n + 1, np.int64)  # component id -> final id (single-label components)
    next_id = n + 1
    coreless: list[int] = []
    small: list[int] = []  # branching: small pieces kept only if they attach to a cell
    order = np.argsort(seed_comp, kind="stable") if seed_comp is not None else None
    seed_start = np.searchsorted(seed_comp[order], np.arange(n + 2)) \
        if seed_comp is not None and order is not None else None
    for cid in range(1, n + 1):
        sl = objs[cid - 1]
        if sl is None or dropped_set[cid]:
            continue
        if st[cid] < vmin_vox:
            if algorithm == "branching":  # maybe a process cut off by noise: try to attach
                lut[cid] = next_id
                coreless.append(next_id)
                small.append(next_id)
                next_id += 1
                continue
            rep.dropped_components += 1
            continue
        k = int(n_seeds[cid]) if algorithm != "stitch2d" else 2
        if k <= 1:
            lut[cid] = next_id
            if algorithm == "branching" and k == 0:
                coreless.append(next_id)
            next_id += 1
            rep.primary_labels += 1
            continue
        view = cc[sl]
        mask = view == cid
        if algorithm == "watershed":
            assert seed_xyz is not None and order is not None and seed_start is not None
            pts = seed_xyz[order[seed_start[cid]:seed_start[cid + 1]]]
            origin = np.array([a.start for a in sl])
            sub = split_watershed(mask, settings,
                                  dist=np.where(mask, dist[sl], 0).astype(np.float32),
                                  seeds=pts - origin)
        elif algorithm == "branching":
            assert cores is not None
            sub = split_branching(mask, s_crops[cid].astype(np.float32),
                                  np.where(mask, cores[sl], 0))
        else:
            sub = split_stitch2d(mask, settings)
        sub_ids = np.unique(sub[sub > 0])
        # voxels no seed reached go to the secondary pass
        view[mask & (sub == 0)] = unreached
        if len(sub_ids):
            remap = np.zeros(int(sub_ids.max()) + 1, cc.dtype)
            remap[sub_ids] = np.arange(next_id, next_id + len(sub_ids), dtype=cc.dtype)
            sel = sub > 0
            view[sel] = remap[sub[sel]]
        next_id += len(sub_ids)
        rep.primary_labels += len(sub_ids)
    dist = cores = None
    s_crops.clear()
    # low components that never reached the high threshold: recovery loop
    recovered = _recover_blobs(peaks, low, high, lut, next_id, rep)
    if algorithm == "branching":
        coreless += list(range(next_id, next_id + recovered))
    next_id += recovered
    mapping = {int(i): int(lut[i]) for i in range(1, n + 1)}
    mapping[0] = 0
    fastremap.remap(cc, mapping, preserve_missing_labels=True, in_place=True)
    # secondary pass: foreground no seed reached joins the label it touches most
    cc, rep.secondary_labels = _fill_unreached(cc, next_id, vmin_vox)
    if coreless:
        left = attach_pieces(cc, coreless, settings)
        rep.attached_pieces = len(coreless) - len(left)
        drop = sorted(set(small) & left)
        if drop:
            fastremap.mask(cc, drop, in_place=True)
            rep.dropped_components += len(drop)
    labels, _ = fastremap.renumber(cc, in_place=True)
    return labels, rep


def _component_sizes(cc: np.ndarray, n: int) -> np.ndarray:
    """Voxel count of every component id 0..n (without a full-size int64 copy)."""
    import cc3d

    counts = np.asarray(cc3d.statistics(cc)["voxel_counts"], dtype=np.int64)
    out = np.zeros(n + 1, np.int64)
    out[: min(len(counts), n + 1)] = counts[: n + 1]
    return out


def _threads() -> int:
    import os

    return max(1, min(8, os.cpu_count() or 1))


def attach_pieces(labels: np.ndarray, pieces: Sequence[int],
                  settings: SegmentSettings) -> set[int]:
    """Join labels without a cell body to the nearest cell within ``attach_gap_um``.

    For every piece, the cell with the most voxels inside the piece's neighbourhood of
    radius ``attach_gap_um`` (an anisotropic ellipsoid in voxels) takes it over. Pieces
    with no cell in reach stay as they are (the statistics filters judge them).

    Returns
    -------
    set of int
        The pieces that found no cell (left unchanged).
    """
    import scipy.ndimage as ndi

    sp = np.asarray(settings.spacing_um)
    r = settings.attach_gap_um
    half = np.floor(r / sp + 1e-9).astype(int)
    grid = np.ogrid[tuple(slice(-h, h + 1) for h in half)]
    ball = sum((g * s_) ** 2 for g, s_ in zip(grid, sp, strict=True)) <= r * r
    piece_set = {int(p) for p in pieces}
    left = set(piece_set)
    objs = ndi.find_objects(labels)
    for pid in pieces:
        if pid > len(objs) or objs[pid - 1] is None:
            continue
        sl = objs[pid - 1]
        grown = tuple(slice(max(0, a.start - h), a.stop + h) for a, h in zip(sl, half,
                                                                               strict=True))
        view = labels[grown]
        piece = view == pid
        reach = ndi.binary_dilation(piece, ball) & ~piece
        near = view[reach]
        near = near[(near != 0) & ~np.isin(near, list(piece_set))]
        if near.size:
            vals, counts = np.unique(near, return_counts=True)
            view[piece] = vals[np.argmax(counts)]
            left.discard(int(pid))
    return left


def _recover_blobs(peaks: dict[int, float], low: float, high: float, lut: np.ndarray,
                   next_id: int, rep: SegmentReport, rounds: int = 3) -> int:
    """Cleanup loop: bring back dim blobs of plausible size that missed the high threshold.

    ``peaks`` holds the low-threshold components of plausible volume that never reached
    ``high``, with their peak intensity. Round ``r`` accepts those whose peak is above a
    bar lowered geometrically from ``high`` to ``sqrt(low * high)`` (brightest blobs
    first, so the report shows how dim the recovered blobs were); the loop stops when
    nothing is left to judge. Recovered components get ids in ``lut``.

    Returns
    -------
    int
        Number of recovered labels.
    """
    pending = sorted(peaks)
    n_new = 0
    for r in range(1, rounds + 1):
        if not pending:
            break
        bar = high * (low / high) ** (r / (2 * rounds))  # down to sqrt(low * high)
        got = [cid for cid in pending if peaks[cid] >= bar]
        for cid in got:
            lut[cid] = next_id + n_new
            n_new += 1
        pending = [cid for cid in pending if peaks[cid] < bar]
        rep.recovery_rounds.append(len(got))
    rep.recovered_labels = n_new
    return n_new


def _fill_unreached(cc: np.ndarray, next_id: int, vmin: float) -> tuple[np.ndarray, int]:
    """Secondary pass: label foreground voxels that no seed reached (marked UNREACHED).

    Each unreached piece (26-connected) joins the label it touches most; a piece touching
    no label becomes a new label when it has at least ``vmin`` voxels, else background.

    Returns
    -------
    cc : numpy.ndarray
        The labels (the same array, or a uint32 copy if new ids needed the room).
    int
        Number of new labels created.
    """
    import cc3d
    import scipy.ndimage as ndi

    marker = unreached_value(cc.dtype)
    todo = cc == marker
    if not todo.any():
        return cc, 0
    pieces, n_pieces = cc3d.connected_components(todo, connectivity=26, return_N=True)
    del todo
    if next_id + int(n_pieces) >= marker:  # make room for new ids
        cc = cc.astype(np.uint32)
        cc[pieces > 0] = UNREACHED
        marker = int(UNREACHED)
    created = 0
    for pid, sl in enumerate(ndi.find_objects(pieces), start=1):
        if sl is None:
            continue
        grown = tuple(slice(max(0, a.start - 1), a.stop + 1) for a in sl)
        piece = pieces[grown] == pid
        ring = ndi.binary_dilation(piece, np.ones((3,) * piece.ndim, bool)) & ~piece
        around = cc[grown][ring]
        around = around[(around != 0) & (around != marker)]
        view = cc[grown]
        if around.size:
            vals, counts = np.unique(around, return_counts=True)
            view[piece] = vals[np.argmax(counts)]
        elif piece.sum() >= vmin:
            view[piece] = next_id + created
            created += 1
        else:
            view[piece] = 0
    return cc, created
