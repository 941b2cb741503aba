"""Baseline linker: the same cell keeps the same label ID in every frame it appears.

Frame ``t`` is linked to frame ``t-1`` in two rounds of one-to-one assignment (Hungarian):
first by overlap (IoU of the masks, after compensating the global drift estimated from the
previous links), then, for labels left over, by centroid distance within a radius in µm.
Unlinked labels of frame ``t`` get new IDs ``max + 1, ...``; IDs are never reused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass
class LinkState:
    """What the linker carries from one frame to the next.

    Attributes
    ----------
    next_id : int
        The next unused label ID.
    prev_labels : numpy.ndarray or None
        Labels of the previous frame (already carrying track IDs), subsampled by
        :data:`XY_STEP` in Y and X (overlaps are counted on that grid: 4x less memory).
    prev_centroids : dict of int to numpy.ndarray
        Centroids (z, y, x) in µm of the previous frame's labels.
    drift_um : numpy.ndarray
        Last estimated frame-to-frame displacement (z, y, x) in µm.
    """

    next_id: int = 1
    prev_labels: np.ndarray | None = None
    prev_centroids: dict[int, np.ndarray] = field(default_factory=dict)
    drift_um: np.ndarray = field(default_factory=lambda: np.zeros(3))


#: subsampling of the stored previous frame in Y and X
XY_STEP = 2


def remember(state: LinkState, labels: np.ndarray, spacing_um: Sequence[float]) -> None:
    """Store a frame that already carries track IDs as the previous frame of ``state``."""
    state.prev_labels = labels[:, ::XY_STEP, ::XY_STEP].copy()
    state.prev_centroids = _centroids(labels, spacing_um)


def _centroids(labels: np.ndarray, spacing: Sequence[float]) -> dict[int, np.ndarray]:
    import cc3d

    st = cc3d.statistics(labels)
    counts = np.asarray(st["voxel_counts"])
    cents = np.asarray(st["centroids"], dtype=np.float64)
    sp = np.asarray(spacing, dtype=np.float64)
    return {int(i): cents[i] * sp for i in np.flatnonzero(counts) if i != 0}


def _shift(a: np.ndarray, shift: Sequence[int]) -> np.ndarray:
    """Shift an array by whole voxels, filling with zeros."""
    out = np.zeros_like(a)
    src = []
    dst = []
    for s, n in zip(shift, a.shape, strict=True):
        s = int(s)
        if s >= 0:
            src.append(slice(0, n - s))
            dst.append(slice(s, n))
        else:
            src.append(slice(-s, n))
            dst.append(slice(0, n + s))
    out[tuple(dst)] = a[tuple(src)]
    return out


def link_frame(
    labels: np.ndarray,
    state: LinkState,
    spacing_um: Sequence[float],
    *,
    max_dist_um: float,
    min_iou: float = 0.1,
) -> tuple[np.ndarray, dict[int, int]]:
    """Give the labels of a new frame the IDs of the objects they continue.

    Parameters
    ----------
    labels : numpy.ndarray
        (Z, Y, X) labels of the new frame (any IDs, 0 = background). Modified in place
        (or widened to uint32 when the track IDs no longer fit its dtype).
    state : LinkState
        Linker state; updated for the next call.
    spacing_um : sequence of float
        Voxel size (z, y, x) in µm.
    max_dist_um : float
        Largest centroid displacement accepted in the distance round, in µm.
    min_iou : float
        Smallest IoU accepted in the overlap round.

    Returns
    -------
    labels : numpy.ndarray
        The array relabelled with track IDs.
    mapping : dict of int to int
        Old ID to new ID.
    """
    import fastremap
    from scipy.optimize import linear_sum_assignment

    cur_c = _centroids(labels, spacing_um)
    cur_ids = sorted(cur_c)
    mapping: dict[int, int] = {}
    if state.prev_labels is not None and cur_ids and state.prev_centroids:
        prev = state.prev_labels
        cur = labels[:, ::XY_STEP, ::XY_STEP]
        sp = np.asarray(spacing_um, dtype=np.float64) * np.array([1, XY_STEP, XY_STEP])
        vox_shift = np.round(state.drift_um / sp).astype(int)
        if np.any(vox_shift):
            prev = _shift(prev, vox_shift)
        # --- round 1: overlap (on the subsampled grid)
        both = (cur != 0) & (prev != 0)
        a = prev[both].astype(np.uint64)
        b = cur[both].astype(np.uint64)
        keys, inter = np.unique(a << np.uint64(32) | b, return_counts=True)
        pa = (keys >> np.uint64(32)).astype(np.int64)
        pb = (keys & np.uint64(0xFFFFFFFF)).astype(np.int64)
        size_prev = dict(zip(*np.unique(prev[prev != 0], return_counts=True), strict=True))
        size_cur = dict(zip(*np.unique(cur[cur != 0], return_counts=True), strict=True))
        if len(keys):
            prev_ids = sorted(set(pa.tolist()))
            pi = {v: i for i, v in enumerate(prev_ids)}
            ci = {v: i for i, v in enumerate(cur_ids)}
            iou = np.zeros((len(prev_ids), len(cur_ids)))
            for x, y, n in zip(pa, pb, inter, strict=True):
                if y in ci:
                    iou[pi[x], ci[y]] = n / (size_prev[x] + size_cur[y] - n)
            r, c = linear_sum_assignment(-iou)
            for i, j in zip(r, c, strict=True):
                if iou[i, j] >= min_iou:
                    mapping[cur_ids[j]] = prev_ids[i]
        # --- round 2: centroid distance for the rest
        used = set(mapping.values())
        rest_cur = [i for i in cur_ids if i not in mapping]
        rest_prev = [i for i in state.prev_centroids if i not in used]
        if rest_cur and rest_prev:
            pc = np.array([state.prev_centroids[i] + state.drift_um for i in rest_prev])
            cc = np.array([cur_c[i] for i in rest_cur])
            d = np.linalg.norm(pc[:, None, :] - cc[None, :, :], axis=-1)
            big = 1e9
            cost = np.where(d <= max_dist_um, d, big)
            r, c = linear_sum_assignment(cost)
            for i, j in zip(r, c, strict=True):
                if cost[i, j] < big:
                    mapping[rest_cur[j]] = rest_prev[i]
        # --- drift estimate from the links (median displacement), for the next frame
        disp = [cur_c[k] - state.prev_centroids[v] for k, v in mapping.items()
                if v in state.prev_centroids]
        if disp:
            state.drift_um = np.median(np.array(disp), axis=0)
    for i in cur_ids:
        if i not in mapping:
            mapping[i] = state.next_id
            state.next_id += 1
    if cur_ids:
        state.next_id = max(state.next_id, max(mapping.values()) + 1)
        if state.next_id > np.iinfo(labels.dtype).max:  # track IDs outgrew the dtype
            labels = labels.astype(np.uint32)
        fastremap.remap(labels, {**mapping, 0: 0}, preserve_missing_labels=True, in_place=True)
    state.prev_labels = labels[:, ::XY_STEP, ::XY_STEP].copy()
    state.prev_centroids = {mapping[k]: v for k, v in cur_c.items()}
    return labels, mapping
