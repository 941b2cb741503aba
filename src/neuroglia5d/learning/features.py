"""Per-label and per-pair features and small 3D crops, the inputs of the learning networks.

Everything works on one timepoint's 3D labels (and the next timepoint's for temporal pairs),
vectorised over the volume: one pass of ``bincount`` per statistic, one pass per axis for
the contacts, so a 64 x 512 x 512 frame takes about a second on a CPU.

Feature vectors (all float32, physical units):

* :data:`LABEL_FEATURES` for one label: volume (µm³), extents (µm), elongation,
  flatness, fill of the bounding box, intensity statistics, relative contrast with its
  shell, number of neighbours, contact fraction, distance to the nearest label, border
  contact.
* :data:`PAIR_FEATURES` for two labels touching in 3D (6-connectivity): contact area
  (µm²), neck ratio (contact over the smaller label's cross-section), mean and minimum
  intensity on the contact relative to the labels' means, sizes and their ratio, centroid
  distance, intensity ratio, fill of the union's bounding box.
* :data:`LINK_FEATURES` for a label at ``t`` and a label at ``t + 1``: centroid distance
  after removing the global drift (µm), overlap (voxels and IoU, fractions of each),
  volume and intensity ratios, rank of the distance among the candidates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "LABEL_FEATURES",
    "LINK_FEATURES",
    "PAIR_FEATURES",
    "FrameFeatures",
    "NormalisedIntensity",
    "crop_around",
    "crops_at",
    "frame_features",
    "intensity_scale",
    "label_matrix",
    "link_candidates",
    "link_matrix",
    "normalise_intensity",
    "overlaps",
    "pair_matrix",
]

LABEL_FEATURES: tuple[str, ...] = (
    "log_volume_um3", "extent_z_um", "extent_y_um", "extent_x_um", "elongation", "flatness",
    "bbox_fill", "mean_int", "std_int", "max_int", "contrast", "n_neighbours",
    "contact_fraction", "nn_dist_um", "touches_border",
)
PAIR_FEATURES: tuple[str, ...] = (
    "log_contact_um2", "neck_ratio", "boundary_mean_rel", "boundary_min_rel",
    "log_vol_small", "log_vol_large", "vol_ratio", "centroid_dist_um", "int_ratio",
    "union_fill", "contact_frac_small", "dist_over_size",
)
LINK_FEATURES: tuple[str, ...] = (
    "dist_um", "dist_rank", "iou", "overlap_frac_a", "overlap_frac_b", "log_vol_ratio",
    "int_ratio", "log_vol_a", "log_vol_b", "n_candidates", "dist_over_size",
)


@dataclass
class FrameFeatures:
    """Measurements of one timepoint.

    Attributes
    ----------
    ids : numpy.ndarray
        Label IDs (sorted), shape (N,).
    volume_vox : numpy.ndarray
        Voxel counts, (N,).
    centroid_um : numpy.ndarray
        (N, 3) centroids (z, y, x) in µm.
    bbox : numpy.ndarray
        (N, 6) int boxes ``z0, z1, y0, y1, x0, x1`` (half-open voxels).
    mean_int, max_int : numpy.ndarray
        Intensity mean and maximum per label (0 without intensity).
    label_x : numpy.ndarray
        (N, len(LABEL_FEATURES)) float32 feature matrix.
    pairs : numpy.ndarray
        (P, 2) label IDs of adjacent pairs (a < b).
    pair_x : numpy.ndarray
        (P, len(PAIR_FEATURES)) float32.
    """

    ids: np.ndarray
    volume_vox: np.ndarray
    centroid_um: np.ndarray
    bbox: np.ndarray
    mean_int: np.ndarray
    max_int: np.ndarray
    label_x: np.ndarray
    pairs: np.ndarray
    pair_x: np.ndarray
    spacing_um: tuple[float, float, float] = (1.0, 1.0, 1.0)
    index: dict[int, int] = field(default_factory=dict)

    def row(self, label: int) -> int:
        """Row of ``label`` in the per-label arrays (KeyError if absent)."""
        return self.index[int(label)]


def _group_min(keys: np.ndarray, vals: np.ndarray, n: int, largest: bool = False
               ) -> np.ndarray:
    """Minimum (or maximum) of ``vals`` per key ``0..n-1`` (inf / -inf where absent)."""
    out = np.full(n, -np.inf if largest else np.inf)
    if keys.size == 0:
        return out
    order = np.lexsort((vals, keys))
    k = keys[order]
    v = vals[order]
    last = np.flatnonzero(np.r_[k[1:] != k[:-1], True])
    first = np.r_[0, last[:-1] + 1]
    out[k[last]] = v[last] if largest else v[first]
    return out


def _voxels(lab: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Foreground voxels of ``lab`` grouped by label: their flat indices (sorted by label,
    then raster order), their compact label 1..N, the original ID of each compact label
    (index 0 = 0) and the start of each label's run."""
    flat = lab.ravel()
    fg = np.flatnonzero(flat)
    v = flat[fg]
    if v.dtype == np.uint64:  # bincount takes signed integers
        v = v.astype(np.int64)
    hi = int(v.max()) if v.size else 0
    if hi < max(1 << 20, 8 * v.size):  # IDs small enough for a count table
        present = np.flatnonzero(np.bincount(v, minlength=hi + 1))
        present = present[present != 0]
        lut = np.zeros(hi + 1, np.int32)
        lut[present] = np.arange(1, len(present) + 1, dtype=np.int32)
        comp = lut[v]
    else:
        present, comp = np.unique(v, return_inverse=True)
        comp = (comp + 1).astype(np.int32)
    ids = np.concatenate([[0], present]).astype(np.int64)
    order = np.argsort(comp, kind="stable")
    fg, comp = fg[order], comp[order]
    starts = np.flatnonzero(np.r_[True, comp[1:] != comp[:-1]]) if comp.size else \
        np.zeros(0, np.int64)
    return fg, comp, ids, starts


def _faces_fg(flat: np.ndarray, fg: np.ndarray, comp: np.ndarray, zyx: Sequence[np.ndarray],
              shape: Sequence[int], ids_lut: Any, inten: np.ndarray | None,
              spacing: Sequence[float], n: int) -> dict[str, np.ndarray]:
    """Faces of the foreground voxels with their 6 neighbours (inside the volume): the
    label-label contacts (pairs, area, boundary intensity sum and minimum), each label's
    surface and the mean intensity of the background voxels face-adjacent to it."""
    strides = (shape[1] * shape[2], shape[2], 1)
    areas = (spacing[1] * spacing[2], spacing[0] * spacing[2], spacing[0] * spacing[1])
    iflat = inten.ravel() if inten is not None else None
    surf = np.zeros(n)
    sh_sum = np.zeros(n)
    sh_cnt = np.zeros(n)
    keys_all, area_all, isum_all = [], [], []
    for ax in range(3):
        for d in (1, -1):
            ok = zyx[ax] < shape[ax] - 1 if d == 1 else zyx[ax] > 0
            src = np.flatnonzero(ok)
            nb = fg[src] + d * strides[ax]
            nbl = ids_lut(flat[nb])  # compact label of the neighbour (0 background)
            own = comp[src]
            diff = nbl != own
            src, nb, nbl, own = src[diff], nb[diff], nbl[diff], own[diff]
            surf += np.bincount(own, minlength=n) * areas[ax]
            bg = nbl == 0
            if iflat is not None:
                sh_sum += np.bincount(own[bg], weights=iflat[nb[bg]], minlength=n)
            sh_cnt += np.bincount(own[bg], minlength=n)
            if d == 1:  # each label-label face once
                lb = ~bg
                a, b = own[lb], nbl[lb]
                keys_all.append(np.minimum(a, b).astype(np.int64) * n + np.maximum(a, b))
                area_all.append(np.full(a.shape, areas[ax]))
                if iflat is not None:
                    isum_all.append(0.5 * (iflat[fg[src[lb]]].astype(np.float64)
                                           + iflat[nb[lb]]))
                else:
                    isum_all.append(np.zeros(a.shape))
    surf[0] = 0.0
    out = {"surface": surf, "shell": sh_sum / np.maximum(sh_cnt, 1)}
    keys = np.concatenate(keys_all) if keys_all else np.zeros(0, np.int64)
    if keys.size == 0:
        e = np.zeros(0)
        out.update(pairs=np.zeros((0, 2), np.int64), area=e, bsum=e, bmin=e)
        return out
    area = np.concatenate(area_all)
    isum = np.concatenate(isum_all).astype(np.float64)
    uk, inv = np.unique(keys, return_inverse=True)
    out.update(pairs=np.stack([uk // n, uk % n], axis=1),
               area=np.bincount(inv, weights=area), bsum=np.bincount(inv, weights=isum),
               bmin=_group_min(inv, isum, len(uk)))
    return out


def frame_features(labels: np.ndarray, intensity: np.ndarray | None,
                   spacing_um: Sequence[float], *,
                   normalised: np.ndarray | None = None,
                   border_faces: Sequence[tuple[int, int]] | None = None,
                   links_only: bool = False) -> FrameFeatures:
    """Measure every label and every adjacent pair of one 3D timepoint.

    Everything is computed from the list of foreground voxels (grouped by label once) and
    their six neighbours, so the cost follows the number of labelled voxels, not the
    volume.

    Parameters
    ----------
    labels : numpy.ndarray
        (Z, Y, X) integer labels, 0 = background.
    intensity : numpy.ndarray or None
        (Z, Y, X) intensity (any units; features use it relative to the frame's
        background level and spread).
    spacing_um : sequence of float
        Voxel size (z, y, x) in µm.
    normalised : numpy.ndarray, optional
        The result of :func:`normalise_intensity` when the caller has it already.
    border_faces : sequence of (axis, side), optional
        Faces of the array that are the volume's real border (side 0 or -1); all six
        when omitted. A crop passes only the faces it shares with the volume.
    links_only : bool
        Only what linking across time needs (IDs, voxel counts, centroids, boxes, mean
        and maximum intensity): ``label_x`` has no columns and there are no pairs.

    Returns
    -------
    FrameFeatures
    """
    sp = tuple(float(s) for s in spacing_um)
    lab = np.ascontiguousarray(labels)
    if lab.dtype.kind not in "ui":
        lab = lab.astype(np.int64)
    inten = normalise_intensity(lab, intensity) if normalised is None else normalised
    if inten is not None:
        inten = np.ascontiguousarray(inten)
    shape = lab.shape
    fg, comp, ids, starts = _voxels(lab)
    n = len(ids)
    flat = lab.ravel()
    hi = int(ids[-1])
    if hi < max(1 << 20, 8 * max(len(fg), 1)):
        lut = np.zeros(hi + 1, np.int32)
        lut[ids] = np.arange(n, dtype=np.int32)

        def ids_lut(v: np.ndarray) -> np.ndarray:
            return lut[v]
    else:
        def ids_lut(v: np.ndarray) -> np.ndarray:
            return np.searchsorted(ids, v).astype(np.int32)
    yx = shape[1] * shape[2]
    z = fg // yx
    rem = fg - z * yx
    y = rem // shape[2]
    x = rem - y * shape[2]
    zyx = (z, y, x)
    cnt = np.bincount(comp, minlength=n).astype(np.float64)
    safe = np.maximum(cnt, 1)
    coords = [zyx[i].astype(np.float64) * sp[i] for i in range(3)]
    cen = np.stack([np.bincount(comp, weights=c, minlength=n) / safe for c in coords], 1)
    if links_only:
        return _links_only(lab, inten, fg, comp, ids, starts, zyx, cnt, cen, sp)
    cov = np.zeros((n, 3, 3))
    for i in range(3):
        for j in range(i, 3):
            sij = np.bincount(comp, weights=coords[i] * coords[j], minlength=n) / safe
            cov[:, i, j] = cov[:, j, i] = sij - cen[:, i] * cen[:, j]
    eig = np.maximum(np.linalg.eigvalsh(cov + np.eye(3) * 1e-6)[:, ::-1], 1e-6)
    bbox = np.zeros((n, 6), np.int64)
    rows = comp[starts] if len(starts) else np.zeros(0, np.int64)
    for i in range(3):
        if len(starts):
            bbox[rows, 2 * i] = np.minimum.reduceat(zyx[i], starts)
            bbox[rows, 2 * i + 1] = np.maximum.reduceat(zyx[i], starts) + 1
    fc = _faces_fg(flat, fg, comp, zyx, shape, ids_lut, inten, sp, n)
    max_i = np.full(n, -np.inf)
    if inten is not None:
        iv = inten.ravel()[fg].astype(np.float64)
        mean_i = np.bincount(comp, weights=iv, minlength=n) / safe
        sq = np.bincount(comp, weights=iv ** 2, minlength=n) / safe
        std_i = np.sqrt(np.maximum(sq - mean_i ** 2, 0))
        if len(starts):
            max_i[rows] = np.maximum.reduceat(iv, starts)
        contrast = (mean_i - fc["shell"]) / np.maximum(np.abs(mean_i), 1e-3)
    else:
        mean_i = std_i = contrast = np.zeros(n)
    pairs, area, bsum, bmin = fc["pairs"], fc["area"], fc["bsum"], fc["bmin"]
    surf = fc["surface"]
    touch = np.zeros(n)
    nnb = np.zeros(n)
    if len(pairs):
        touch += np.bincount(pairs[:, 0], weights=area, minlength=n)
        touch += np.bincount(pairs[:, 1], weights=area, minlength=n)
        nnb += np.bincount(pairs[:, 0], minlength=n)
        nnb += np.bincount(pairs[:, 1], minlength=n)
    border = np.zeros(n)
    faces = border_faces if border_faces is not None else [(a, s) for a in range(3)
                                                           for s in (0, -1)]
    for ax, side in faces:
        at = zyx[ax] == (0 if side == 0 else shape[ax] - 1)
        border[comp[at]] = 1
    border[0] = 0
    nn = _nn_dist(cen[1:])
    ext = (bbox[:, 1::2] - bbox[:, ::2]) * np.asarray(sp)
    vol = cnt * sp[0] * sp[1] * sp[2]
    bb_vol = np.prod(np.maximum(bbox[:, 1::2] - bbox[:, ::2], 1), axis=1)
    lx = np.stack([
        np.log1p(vol), ext[:, 0], ext[:, 1], ext[:, 2],
        np.sqrt(eig[:, 0] / eig[:, 1]), np.sqrt(eig[:, 1] / eig[:, 2]),
        cnt / bb_vol, mean_i, std_i, np.where(np.isfinite(max_i), max_i, 0), contrast, nnb,
        touch / np.maximum(surf, 1e-6), np.concatenate([[0], nn]), border,
    ], axis=1).astype(np.float32)[1:]
    # compact labels follow the ID order, so pairs (a < b) are already in ID order
    px = _pair_matrix(pairs, area, bsum, bmin, cnt, cen, mean_i, bbox, sp)
    real = ids[1:]
    ff = FrameFeatures(
        ids=real, volume_vox=cnt[1:].astype(np.int64), centroid_um=cen[1:], bbox=bbox[1:],
        mean_int=mean_i[1:], max_int=np.where(np.isfinite(max_i), max_i, 0)[1:], label_x=lx,
        pairs=np.stack([ids[pairs[:, 0]], ids[pairs[:, 1]]], 1) if len(pairs)
        else np.zeros((0, 2), np.int64),
        pair_x=px, spacing_um=sp)
    ff.index = {int(v): i for i, v in enumerate(real)}
    return ff


def _links_only(lab: np.ndarray, inten: np.ndarray | None, fg: np.ndarray, comp: np.ndarray,
                ids: np.ndarray, starts: np.ndarray, zyx: Sequence[np.ndarray],
                cnt: np.ndarray, cen: np.ndarray, sp: tuple[float, ...]) -> FrameFeatures:
    """The part of :func:`frame_features` that linking needs."""
    n = len(ids)
    rows = comp[starts] if len(starts) else np.zeros(0, np.int64)
    bbox = np.zeros((n, 6), np.int64)
    mean_i = np.zeros(n)
    max_i = np.zeros(n)
    if len(starts):
        for i in range(3):
            bbox[rows, 2 * i] = np.minimum.reduceat(zyx[i], starts)
            bbox[rows, 2 * i + 1] = np.maximum.reduceat(zyx[i], starts) + 1
        if inten is not None:
            iv = inten.ravel()[fg].astype(np.float64)
            mean_i = np.bincount(comp, weights=iv, minlength=n) / np.maximum(cnt, 1)
            max_i[rows] = np.maximum.reduceat(iv, starts)
    real = ids[1:]
    ff = FrameFeatures(
        ids=real, volume_vox=cnt[1:].astype(np.int64), centroid_um=cen[1:], bbox=bbox[1:],
        mean_int=mean_i[1:], max_int=max_i[1:], label_x=np.zeros((len(real), 0), np.float32),
        pairs=np.zeros((0, 2), np.int64), pair_x=np.zeros((0, len(PAIR_FEATURES)), np.float32),
        spacing_um=sp)
    ff.index = {int(v): i for i, v in enumerate(real)}
    return ff


def _nn_dist(c: np.ndarray) -> np.ndarray:
    if len(c) < 2:
        return np.full(len(c), 100.0)
    from scipy.spatial import cKDTree

    d, _ = cKDTree(c).query(c, k=2)
    return d[:, 1]


def _pair_matrix(pairs: np.ndarray, area: np.ndarray, bsum: np.ndarray, bmin: np.ndarray,
                 cnt: np.ndarray, cen: np.ndarray, mean_i: np.ndarray, bbox: np.ndarray,
                 sp: Sequence[float]) -> np.ndarray:
    if len(pairs) == 0:
        return np.zeros((0, len(PAIR_FEATURES)), np.float32)
    a, b = pairs[:, 0], pairs[:, 1]
    vox = sp[0] * sp[1] * sp[2]
    va, vb = cnt[a] * vox, cnt[b] * vox
    vs, vl = np.minimum(va, vb), np.maximum(va, vb)
    faces = bsum / np.maximum(area, 1e-9)  # not used directly; keep sums per area below
    del faces
    n_faces = np.maximum(area / min(sp[1] * sp[2], sp[0] * sp[2], sp[0] * sp[1]), 1)
    bmean = bsum / n_faces
    mref = np.maximum(np.minimum(mean_i[a], mean_i[b]), 1e-3)
    d = np.linalg.norm(cen[a] - cen[b], axis=1)
    lo = np.minimum(bbox[a, ::2], bbox[b, ::2])
    hi = np.maximum(bbox[a, 1::2], bbox[b, 1::2])
    ufill = (cnt[a] + cnt[b]) / np.prod(np.maximum(hi - lo, 1), axis=1)
    cross = vs ** (2 / 3)
    return np.stack([
        np.log1p(area), area / np.maximum(cross, 1e-6), bmean / mref, bmin / mref,
        np.log1p(vs), np.log1p(vl), vs / np.maximum(vl, 1e-9), d,
        np.minimum(mean_i[a], mean_i[b]) / np.maximum(np.maximum(mean_i[a], mean_i[b]), 1e-3),
        ufill, area / np.maximum(vs ** (2 / 3) * 4.84, 1e-6), d / np.maximum(vl ** (1 / 3), 1e-6),
    ], axis=1).astype(np.float32)


def label_matrix(ff: FrameFeatures, labels: Sequence[int]) -> np.ndarray:
    """Feature rows of ``labels`` (in that order)."""
    return ff.label_x[[ff.row(v) for v in labels]] if len(labels) else np.zeros(
        (0, len(LABEL_FEATURES)), np.float32)


def pair_matrix(ff: FrameFeatures, pairs: Sequence[Sequence[int]]) -> tuple[np.ndarray,
                                                                               np.ndarray]:
    """Feature rows of the given pairs; returns ``(X, found)``; pairs that do not touch get
    no row (``found`` is False for them)."""
    key = {(int(a), int(b)): i for i, (a, b) in enumerate(ff.pairs)}
    rows, found = [], []
    for a, b in pairs:
        k = (min(int(a), int(b)), max(int(a), int(b)))
        i = key.get(k)
        found.append(i is not None)
        if i is not None:
            rows.append(i)
    x = ff.pair_x[rows] if rows else np.zeros((0, len(PAIR_FEATURES)), np.float32)
    return x, np.array(found, bool)


def link_candidates(f0: FrameFeatures, f1: FrameFeatures, *, max_dist_um: float,
                    drift_um: np.ndarray | None = None, k: int = 4) -> np.ndarray:
    """Candidate links ``(row0, row1)``: for each label at ``t`` its ``k`` nearest labels at
    ``t + 1`` within ``max_dist_um`` (after removing ``drift_um``), and the reverse."""
    if len(f0.ids) == 0 or len(f1.ids) == 0:
        return np.zeros((0, 2), np.int64)
    from scipy.spatial import cKDTree

    c0 = f0.centroid_um + (0 if drift_um is None else drift_um)
    kk = min(k, len(f1.ids))
    t1 = cKDTree(f1.centroid_um)
    d, j = t1.query(c0, k=kk)
    d, j = d.reshape(len(c0), kk), j.reshape(len(c0), kk)
    out = {(i, int(j[i, m])) for i in range(len(c0)) for m in range(kk) if d[i, m] <= max_dist_um}
    kk0 = min(k, len(f0.ids))
    d2, i2 = cKDTree(c0).query(f1.centroid_um, k=kk0)
    d2, i2 = d2.reshape(len(f1.ids), kk0), i2.reshape(len(f1.ids), kk0)
    out |= {(int(i2[j_, m]), j_) for j_ in range(len(f1.ids)) for m in range(kk0)
            if d2[j_, m] <= max_dist_um}
    return np.array(sorted(out), np.int64).reshape(-1, 2)


def overlaps(lab0: np.ndarray, lab1: np.ndarray) -> dict[tuple[int, int], int]:
    """Voxel overlap of every (label at t, label at t + 1) pair."""
    a = np.asarray(lab0).ravel()
    b = np.asarray(lab1).ravel()
    m = (a != 0) & (b != 0)
    key = a[m].astype(np.uint64) << np.uint64(32) | b[m].astype(np.uint64)
    k, c = np.unique(key, return_counts=True)
    return {(int(x >> np.uint64(32)), int(x & np.uint64(0xFFFFFFFF))): int(v)
            for x, v in zip(k, c, strict=True)}


def link_matrix(f0: FrameFeatures, f1: FrameFeatures, cand: np.ndarray,
                ov: dict[tuple[int, int], int], drift_um: np.ndarray | None = None
                ) -> np.ndarray:
    """Feature rows (:data:`LINK_FEATURES`) of candidate links ``cand`` (row indices)."""
    if len(cand) == 0:
        return np.zeros((0, len(LINK_FEATURES)), np.float32)
    i, j = cand[:, 0], cand[:, 1]
    c0 = f0.centroid_um[i] + (0 if drift_um is None else drift_um)
    d = np.linalg.norm(c0 - f1.centroid_um[j], axis=1)
    rank = np.zeros(len(cand))
    ncand = np.zeros(len(cand))
    for row in np.unique(i):
        m = np.flatnonzero(i == row)
        rank[m[np.argsort(d[m])]] = np.arange(len(m))
        ncand[m] = len(m)
    va = f0.volume_vox[i].astype(np.float64)
    vb = f1.volume_vox[j].astype(np.float64)
    inter = np.array([ov.get((int(f0.ids[a]), int(f1.ids[b])), 0) for a, b in cand], float)
    iou = inter / np.maximum(va + vb - inter, 1)
    vox = float(np.prod(f0.spacing_um))
    ia, ib = f0.mean_int[i], f1.mean_int[j]
    return np.stack([
        d, rank, iou, inter / np.maximum(va, 1), inter / np.maximum(vb, 1),
        np.log(np.maximum(va, 1) / np.maximum(vb, 1)),
        np.minimum(ia, ib) / np.maximum(np.maximum(ia, ib), 1e-3),
        np.log1p(va * vox), np.log1p(vb * vox), ncand,
        d / np.maximum((np.maximum(va, vb) * vox) ** (1 / 3), 1e-6),
    ], axis=1).astype(np.float32)


def intensity_scale(labels: np.ndarray, intensity: Any) -> tuple[float, float]:
    """``(background median, 1 / (99.5th percentile - median))`` of one timepoint, from
    every second voxel along each axis (what :func:`normalise_intensity` applies)."""
    src = np.asarray(intensity[::2, ::2, ::2])
    bg = src[np.asarray(labels[::2, ::2, ::2]) == 0]
    lo = float(np.median(bg)) if bg.size else 0.0
    scale = float(np.percentile(src, 99.5) - lo) if src.size else 1.0
    return lo, 1.0 / max(scale, 1e-6)


def normalise_intensity(labels: np.ndarray, intensity: np.ndarray | None) -> np.ndarray | None:
    """Intensity as ``(I - background median) / (99.5th percentile - median)`` (float32)."""
    if intensity is None:
        return None
    lo, inv = intensity_scale(labels, intensity)
    inten = np.asarray(intensity).astype(np.float32)  # a copy, then in place
    inten -= lo
    inten *= inv
    return inten


class NormalisedIntensity:
    """:func:`normalise_intensity` of one timepoint computed only for the regions asked
    for (``norm[z0:z1, y0:y1, x0:x1]``), with the whole timepoint's scale: the same
    values without normalising the whole volume."""

    def __init__(self, labels: np.ndarray, intensity: Any) -> None:
        self.src = intensity
        self.shape = tuple(intensity.shape)
        self.lo, self.inv = intensity_scale(labels, intensity)

    def __getitem__(self, key: Any) -> np.ndarray:
        a = np.asarray(self.src[key]).astype(np.float32)
        a -= self.lo
        a *= self.inv
        return a


def crop_around(volumes: Sequence[np.ndarray], center_zyx: Sequence[float],
                size_zyx: Sequence[int], step_zyx: Sequence[int] = (1, 1, 1)) -> np.ndarray:
    """Crop same-shaped 3D arrays around a voxel position, zero-padded at the borders.

    Parameters
    ----------
    volumes : sequence of numpy.ndarray
        (Z, Y, X) arrays (intensity, masks, ...).
    center_zyx : sequence of float
        Centre of the crop in voxels.
    size_zyx : sequence of int
        Crop size in output voxels.
    step_zyx : sequence of int
        Subsampling of the source (the crop covers ``size * step`` voxels).

    Returns
    -------
    numpy.ndarray
        (len(volumes), *size_zyx) float32.
    """
    shape = volumes[0].shape
    out = np.zeros((len(volumes), *size_zyx), np.float32)
    src, dst = [], []
    for c, s, st, n in zip(center_zyx, size_zyx, step_zyx, shape, strict=True):
        lo = round(float(c)) - (s * st) // 2
        # first/last output index whose source lies inside [0, n)
        k0 = max(0, -(lo // st) if lo < 0 else 0)
        while lo + k0 * st < 0:
            k0 += 1
        k1 = s
        while k1 > k0 and lo + (k1 - 1) * st >= n:
            k1 -= 1
        if k1 <= k0:
            return out
        src.append(slice(lo + k0 * st, lo + (k1 - 1) * st + 1, st))
        dst.append(slice(k0, k1))
    for k, v in enumerate(volumes):
        out[(k, *dst)] = v[tuple(src)]
    return out


def crops_at(volumes: Sequence[np.ndarray], centers_zyx: np.ndarray,
             size_zyx: Sequence[int], step_zyx: Sequence[int] = (1, 1, 1)
             ) -> list[np.ndarray]:
    """Many crops at once: :func:`crop_around` of every centre (zero-padded at the
    borders).

    Crops inside the volume are copied as blocks from a strided view of the windows (one
    indexing operation per volume); the few that cross the border are gathered voxel by
    voxel.

    Parameters
    ----------
    volumes : sequence of numpy.ndarray
        (Z, Y, X) arrays of the same shape.
    centers_zyx : numpy.ndarray
        (N, 3) centres in voxels.
    size_zyx, step_zyx : sequence of int
        Crop size in output voxels and subsampling of the source.

    Returns
    -------
    list of numpy.ndarray
        One (N, *size_zyx) array per volume, of the volume's dtype.
    """
    from numpy.lib.stride_tricks import as_strided

    cen = np.asarray(centers_zyx, np.float64).reshape(-1, 3)
    n = len(cen)
    size = tuple(int(v) for v in size_zyx)
    step = tuple(int(v) for v in step_zyx)
    vols = [np.asarray(v) for v in volumes]
    out = [np.zeros((n, *size), v.dtype) for v in vols]
    if n == 0:
        return out
    shape = vols[0].shape
    span = np.array([(s - 1) * st + 1 for s, st in zip(size, step, strict=True)])
    lo = np.round(cen).astype(np.intp) - np.array([s * st // 2 for s, st in
                                                   zip(size, step, strict=True)])
    inside = np.all((lo >= 0) & (lo + span <= np.asarray(shape)), axis=1)
    if inside.any():
        li = lo[inside]
        nwin = tuple(int(shape[i] - span[i] + 1) for i in range(3))
        for v, o in zip(vols, out, strict=True):
            win = as_strided(v, shape=(*nwin, *size),
                             strides=(*v.strides, *(v.strides[i] * step[i] for i in range(3))),
                             writeable=False)
            o[inside] = win[li[:, 0], li[:, 1], li[:, 2]]
    rest = np.flatnonzero(~inside)
    if len(rest):  # crops crossing the border: voxel by voxel, zeros outside
        idx, ok = [], []
        for ax in range(3):
            c = lo[rest, ax][:, None] + np.arange(size[ax]) * step[ax]
            ok.append((c >= 0) & (c < shape[ax]))
            idx.append(np.clip(c, 0, shape[ax] - 1))
        zi, yi, xi = idx[0][:, :, None, None], idx[1][:, None, :, None], \
            idx[2][:, None, None, :]
        invalid = ~(ok[0][:, :, None, None] & ok[1][:, None, :, None]
                    & ok[2][:, None, None, :])
        for v, o in zip(vols, out, strict=True):
            g = v[zi, yi, xi]
            g[invalid] = 0
            o[rest] = g
    return out
