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
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

ALGORITHM_NAMES = ("watershed", "branching", "stitch2d")
UNREACHED = np.uint32(2**32 - 1)  # marks foreground voxels no seed reached


@dataclass(frozen=True)
class SegmentSettings:
    """Physical settings of the segmentation of one channel.

    Attributes
    ----------
    spacing_um : tuple of float
        Voxel size (z, y, x) in µm.
    min_dist_um : float
        Minimum object diameter: seeds closer than this are one object.
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
    attach_gap_um: float = 2.0

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
    local_max = ndi.maximum_filter(s, size=tuple(int(2 * h + 1) for h in half), mode="nearest")
    local_max *= settings.edge_fraction
    mask = s >= local_max
    del local_max
    mask &= s > low
    return mask


def hysteresis_components(s: np.ndarray, low: float | np.ndarray, high: float
                          ) -> tuple[np.ndarray, int, np.ndarray]:
    """Connected components (26-connectivity) of ``s > low`` that reach ``s > high``.

    ``low`` may also be a precomputed boolean foreground mask.

    Returns
    -------
    cc : numpy.ndarray
        uint32 component labels, 0 outside the kept components (modified array of the
        low mask's components).
    n : int
        Largest component id in ``cc`` before removal.
    dropped : numpy.ndarray
        Ids of low components that never reach ``high`` (kept in the returned ``cc`` as 0,
        but reported so recovery can look at them).
    """
    import cc3d
    import fastremap

    low_mask = low if isinstance(low, np.ndarray) else s > low
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
def seeds_from_distance(dist: np.ndarray, spacing_um: Sequence[float], min_dist_um: float,
                        min_value: float = 0.0) -> np.ndarray:
    """Seed voxels: maxima of ``dist`` at least ``min_dist_um`` apart (physical distance).

    Candidates are local maxima in a box of half-size ``min_dist_um / 2``; they are then
    taken in decreasing order of ``dist`` and any candidate closer than ``min_dist_um``
    (Euclidean, in µm) to one already taken is dropped.

    Returns
    -------
    numpy.ndarray
        (n, ndim) integer coordinates, strongest first.
    """
    import scipy.ndimage as ndi
    from scipy.spatial import cKDTree

    sp = np.asarray(spacing_um, dtype=np.float64)[-dist.ndim:]
    half = np.maximum(1, np.round(0.5 * min_dist_um / sp)).astype(int)
    size = tuple(int(2 * h + 1) for h in half)
    mx = ndi.maximum_filter(dist, size=size, mode="constant", cval=0)
    cand = np.argwhere((dist == mx) & (dist > min_value))
    if len(cand) == 0:
        return cand
    vals = dist[tuple(cand.T)]
    order = np.argsort(-vals, kind="stable")
    cand = cand[order]
    pts = cand * sp
    tree = cKDTree(pts)
    taken = np.zeros(len(cand), bool)
    suppressed = np.zeros(len(cand), bool)
    for i in range(len(cand)):
        if suppressed[i]:
            continue
        taken[i] = True
        for j in tree.query_ball_point(pts[i], r=min_dist_um - 1e-9):
            if j != i:
                suppressed[j] = True
    return cand[taken]


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
def split_watershed(mask: np.ndarray, settings: SegmentSettings,
                    dist: np.ndarray | None = None) -> np.ndarray:
    """Split one component (crop) of compact objects; returns labels 1..k in the crop."""
    import edt
    from skimage.segmentation import watershed

    sp = settings.spacing_um[-mask.ndim:]
    if dist is None:
        dist = edt.edt(np.ascontiguousarray(mask), anisotropy=sp, black_border=False,
                       parallel=1).astype(np.float32)
    seeds = seeds_from_distance(dist, sp, settings.min_dist_um)
    if len(seeds) <= 1:
        return mask.astype(np.int32)
    regions = watershed(-dist, _markers(mask.shape, seeds), mask=mask)
    return neck_merge(regions, dist, settings.seed_merge_tol)


def split_branching(mask: np.ndarray, intensity: np.ndarray,
                    settings: SegmentSettings) -> tuple[np.ndarray, bool]:
    """Split one component (crop) of branching cells by flooding from thick cores.

    Returns
    -------
    labels : numpy.ndarray
        Labels 1..k in the crop.
    has_core : bool
        False when the component has no cell body (a detached process).
    """
    import cc3d
    import edt
    from skimage.segmentation import watershed

    sp = settings.spacing_um
    dist = edt.edt(np.ascontiguousarray(mask), anisotropy=sp, black_border=False, parallel=1)
    r_core = settings.core_fraction * 0.5 * settings.min_dist_um
    core = dist >= r_core
    if not core.any():
        return mask.astype(np.int32), False
    cores, n = cc3d.connected_components(core, connectivity=26, return_N=True)
    if n <= 1:
        return mask.astype(np.int32), True
    # cores closer than minDist (their strongest points) are one cell
    st = cc3d.statistics(cores)
    peaks = []
    for i in range(1, n + 1):
        sl = st["bounding_boxes"][i]
        sub = np.where(cores[sl] == i, dist[sl], 0)
        idx = np.unravel_index(int(np.argmax(sub)), sub.shape)
        peaks.append((float(sub[idx]), tuple(s.start + k for s, k in zip(sl, idx,
                                                                         strict=True))))
    order = sorted(range(n), key=lambda i: -peaks[i][0])
    pts = np.array([peaks[i][1] for i in range(n)], dtype=np.float64) * np.asarray(sp)
    keep_of = list(range(n))
    taken: list[int] = []
    for i in order:
        near = [j for j in taken if np.linalg.norm(pts[i] - pts[j]) < settings.min_dist_um]
        if near:
            keep_of[i] = keep_of[near[0]]
        else:
            taken.append(i)
    if len(taken) <= 1:
        return mask.astype(np.int32), True
    lut = np.zeros(n + 1, np.int32)
    for new, i in enumerate(taken, start=1):
        lut[i + 1] = new
    for i in range(n):
        lut[i + 1] = lut[keep_of[i] + 1]
    markers = lut[cores]
    return watershed(-intensity.astype(np.float32), markers, mask=mask,
                     connectivity=mask.ndim), True


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
    s: np.ndarray,
    algorithm: str,
    settings: SegmentSettings,
    *,
    noise: float,
    high: float | None = None,
) -> tuple[np.ndarray, SegmentReport]:
    """Segment one smoothed, background-subtracted 3D volume into instance labels.

    Parameters
    ----------
    s : numpy.ndarray
        (Z, Y, X) float32 smoothed intensity (background about 0).
    algorithm : {"watershed", "branching", "stitch2d"}
        Method (see the module docstring).
    settings : SegmentSettings
        Physical settings.
    noise : float
        Noise deviation of ``s`` (raw noise times :func:`gaussian_noise_gain`).
    high : float, optional
        High hysteresis threshold (Otsu of the foreground when omitted).

    Returns
    -------
    labels : numpy.ndarray
        uint32 labels numbered 1..n.
    report : SegmentReport
    """
    import fastremap
    import scipy.ndimage as ndi

    if algorithm not in ALGORITHM_NAMES:
        raise ValueError(f"unknown algorithm {algorithm!r}")
    rep = SegmentReport(algorithm=algorithm)
    low = settings.low_k * noise
    if high is None:
        fg = s[::max(1, s.shape[0] // 32)]
        fg = fg[fg > low]
        high = max(otsu(fg), 2 * low) if fg.size else 2 * low
    rep.low_threshold, rep.high_threshold = float(low), float(high)
    cc, n, dropped = hysteresis_components(s, foreground_mask(s, low, settings), high)
    rep.components = n - len(dropped)
    vmin_vox = settings.min_volume_um3 / settings.voxel_um3
    vmax_vox = settings.max_volume_um3 / settings.voxel_um3
    objs = ndi.find_objects(cc)
    dropped_set = np.zeros(n + 1, bool)
    dropped_set[dropped] = True
    next_id = n + 1
    coreless: list[int] = []  # branching: labels without a cell body
    for cid, sl in enumerate(objs, start=1):
        if sl is None:
            continue
        view = cc[sl]
        mask = view == cid
        if dropped_set[cid]:
            continue
        nvox = int(mask.sum())
        if nvox < vmin_vox:
            view[mask] = 0
            rep.dropped_components += 1
            continue
        if algorithm == "watershed":
            sub = split_watershed(mask, settings)
        elif algorithm == "branching":
            sub, has_core = split_branching(mask, s[sl], settings)
            if not has_core:
                coreless.append(next_id)
        else:
            sub = split_stitch2d(mask, settings)
        k = int(sub.max())
        # voxels of the component that no seed reached: secondary pass below
        view[mask & (sub == 0)] = UNREACHED
        sel = sub > 0
        view[sel] = (sub[sel] + (next_id - 1)).astype(np.uint32)
        next_id += k
        rep.primary_labels += k
    # low components never reaching the high threshold: recovery loop
    recovered = _recover_blobs(cc, s, dropped, objs, low, high, vmin_vox, vmax_vox, next_id, rep)
    if algorithm == "branching":
        coreless += list(range(next_id, next_id + recovered))
    next_id += recovered
    # secondary pass: foreground no seed reached, attached to the label it touches most
    rep.secondary_labels = _fill_unreached(cc, next_id, vmin_vox)
    if coreless:
        rep.attached_pieces = attach_pieces(cc, coreless, settings)
    # component ids that were never replaced (dropped, recovered = replaced) are gone now
    cc[cc <= n] = 0
    labels, _ = fastremap.renumber(cc, in_place=True)
    return labels.astype(np.uint32, copy=False), rep


def attach_pieces(labels: np.ndarray, pieces: Sequence[int],
                  settings: SegmentSettings) -> int:
    """Join labels without a cell body to the nearest cell within ``attach_gap_um``.

    For every piece, the cell with the most voxels inside the piece's neighbourhood of
    radius ``attach_gap_um`` (an anisotropic ellipsoid in voxels) takes it over. Pieces
    with no cell in reach stay as they are (the statistics filters judge them).

    Returns
    -------
    int
        Number of pieces attached.
    """
    import scipy.ndimage as ndi

    sp = np.asarray(settings.spacing_um)
    r = settings.attach_gap_um
    half = np.floor(r / sp + 1e-9).astype(int)
    grid = np.ogrid[tuple(slice(-h, h + 1) for h in half)]
    ball = sum((g * s_) ** 2 for g, s_ in zip(grid, sp, strict=True)) <= r * r
    piece_set = set(int(p) for p in pieces)
    attached = 0
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
            attached += 1
    return attached


def _recover_blobs(cc: np.ndarray, s: np.ndarray, dropped: np.ndarray, objs: list[Any],
                   low: float, high: float, vmin: float, vmax: float, next_id: int,
                   rep: SegmentReport, rounds: int = 3) -> int:
    """Bring back dim blobs of plausible size that never reached the high threshold.

    Round ``r`` accepts a low-threshold component when its volume is in range and its peak
    is above ``bar_r``, a bar lowered geometrically from ``high`` towards ``low``.
    """
    if len(dropped) == 0:
        return 0
    pending = {int(i) for i in dropped}
    n_new = 0
    peaks = {}
    sizes = {}
    for cid in pending:
        sl = objs[cid - 1]
        m = cc[sl] == cid
        sizes[cid] = int(m.sum())
        peaks[cid] = float(s[sl][m].max())
    for r in range(1, rounds + 1):
        bar = high * (low / high) ** (r / (rounds + 1))
        got = 0
        for cid in sorted(pending):
            if vmin <= sizes[cid] <= vmax and peaks[cid] >= bar:
                sl = objs[cid - 1]
                view = cc[sl]
                view[view == cid] = next_id + n_new
                n_new += 1
                got += 1
        pending -= {c for c in pending if vmin <= sizes[c] <= vmax and peaks[c] >= bar}
        rep.recovery_rounds.append(got)
        if got == 0:
            break
    rep.recovered_labels = n_new
    return n_new


def _fill_unreached(cc: np.ndarray, next_id: int, vmin: float) -> int:
    """Secondary pass: label foreground voxels that no seed reached (marked UNREACHED).

    Each unreached piece (26-connected) joins the label it touches most; a piece touching
    no label becomes a new label when it has at least ``vmin`` voxels, else background.

    Returns
    -------
    int
        Number of new labels created.
    """
    import cc3d
    import scipy.ndimage as ndi

    todo = cc == UNREACHED
    if not todo.any():
        return 0
    pieces, n = cc3d.connected_components(todo, connectivity=26, return_N=True)
    del todo
    created = 0
    for pid, sl in enumerate(ndi.find_objects(pieces), start=1):
        if sl is None:
            continue
        grown = tuple(slice(max(0, a.start - 1), a.stop + 1) for a in sl)
        piece = pieces[grown] == pid
        ring = ndi.binary_dilation(piece, np.ones((3,) * piece.ndim, bool)) & ~piece
        around = cc[grown][ring]
        around = around[(around != 0) & (around != UNREACHED)]
        view = cc[grown]
        if around.size:
            vals, counts = np.unique(around, return_counts=True)
            view[piece] = vals[np.argmax(counts)]
        elif piece.sum() >= vmin:
            view[piece] = next_id + created
            created += 1
        else:
            view[piece] = 0
    return created
