"""A poor segmentation of sample data with known errors, and ground-truth oracles.

:func:`corrupt_frame` turns one ground-truth frame into a segmentation with the four kinds
of error a poor pipeline setting makes, in known numbers:

* **over-merged**: touching objects joined (as with a ``seed_merge_tol`` near 1);
* **over-split**: objects cut in two by a seeded watershed of the distance transform
  from two seeds at the ends of the object's long axis (as with too small
  ``min_dist_um``);
* **artefacts**: spurious labels on bright specks and noise outside the objects (from the
  smoothed raw image above a low threshold, as with a low ``low_k``), topped up with small
  dim blobs;
* label IDs are renumbered at random per frame, so identities must be linked again (broken
  tracks come from the linker and from the splits and merges).

The oracles (:func:`match_labels` and friends) answer, from the ground truth, what a
careful proofreader would: which labels are artefacts, which adjacent pairs belong to one
object, which labels are fused, which labels at ``t`` and ``t + 1`` are the same object.
:func:`error_counts` measures the result against ground truth.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..metrics import overlap_table

__all__ = ["ErrorCounts", "corrupt_frame", "error_counts", "match_labels"]


def _split_in_two(mask: np.ndarray, spacing: Sequence[float]) -> np.ndarray | None:
    """Two-part labels (1, 2) of a mask cut by a watershed from the long-axis ends."""
    from scipy import ndimage as ndi
    from skimage.segmentation import watershed

    pts = np.argwhere(mask)
    if len(pts) < 20:
        return None
    sp = np.asarray(spacing)
    xyz = pts * sp
    c = xyz.mean(0)
    vt = np.linalg.svd(xyz - c, full_matrices=False)[2]
    ax = vt[0]
    proj = (xyz - c) @ ax
    a = pts[np.argmin(proj)]
    b = pts[np.argmax(proj)]
    # seeds a third of the way in from each end
    sa = pts[np.argmin(np.abs(proj - proj.min() * 0.5))]
    sb = pts[np.argmin(np.abs(proj - proj.max() * 0.5))]
    del a, b
    markers = np.zeros(mask.shape, np.int32)
    markers[tuple(sa)] = 1
    markers[tuple(sb)] = 2
    dist = ndi.distance_transform_edt(mask, sampling=spacing)
    out = watershed(-dist, markers, mask=mask)
    if (out == 1).sum() < 5 or (out == 2).sum() < 5:
        return None
    return out


def corrupt_frame(gt: np.ndarray, raw: np.ndarray, spacing_um: Sequence[float],
                  rng: np.random.Generator, *, p_merge: float = 0.5, p_split: float = 0.15,
                  n_artefacts: int = 10) -> np.ndarray:
    """A segmentation of one frame with merges, splits and artefacts (fresh random IDs).

    Parameters
    ----------
    gt : numpy.ndarray
        (Z, Y, X) ground-truth labels.
    raw : numpy.ndarray
        (Z, Y, X) raw intensity (for the artefacts).
    spacing_um : sequence of float
        Voxel size (z, y, x), µm.
    rng : numpy.random.Generator
        Randomness.
    p_merge : float
        Probability that a touching ground-truth pair is merged.
    p_split : float
        Probability that an object (not merged) is split in two.
    n_artefacts : int
        Number of spurious labels added.

    Returns
    -------
    numpy.ndarray
        (Z, Y, X) uint32 labels.
    """
    from scipy import ndimage as ndi

    from .features import frame_features

    seg = np.asarray(gt).astype(np.uint32).copy()
    ff = frame_features(seg, None, spacing_um)
    merged: set[int] = set()
    nxt = int(seg.max()) + 1
    remap: dict[int, int] = {}
    for a, b in ff.pairs[rng.permutation(len(ff.pairs))] if len(ff.pairs) else []:
        if a in merged or b in merged or rng.random() >= p_merge:
            continue
        merged |= {int(a), int(b)}
        remap[int(b)] = int(a)
    if remap:
        import fastremap

        fastremap.remap(seg, remap, preserve_missing_labels=True, in_place=True)
    slices = ndi.find_objects(seg.astype(np.int32))
    for lab in ff.ids:
        lab = int(lab)
        if lab in merged or rng.random() >= p_split or slices[lab - 1] is None:
            continue
        sl = slices[lab - 1]
        sub = seg[sl]
        parts = _split_in_two(sub == lab, spacing_um)
        if parts is None:
            continue
        sub[parts == 2] = nxt
        nxt += 1
    # artefacts: bright specks / noise blobs away from the objects
    sm = ndi.gaussian_filter(np.asarray(raw, np.float32), (0.5, 1.0, 1.0))
    outside = ~ndi.binary_dilation(gt > 0, np.ones((3, 7, 7), bool))
    bg = sm[outside]
    thr = float(np.median(bg) + 3.0 * bg.std()) if bg.size else np.inf
    cc, n = ndi.label((sm > thr) & outside)
    sizes = np.bincount(cc.ravel())
    ok = [i for i in range(1, n + 1) if 4 <= sizes[i] <= 400]
    rng.shuffle(ok)
    added = 0
    for i in ok[: n_artefacts // 2]:  # half on specks, half anywhere outside objects
        seg[cc == i] = nxt
        nxt += 1
        added += 1
    zz, yy, xx = np.indices((5, 9, 9))
    while added < n_artefacts:
        r = rng.uniform(1.0, 3.0)
        blob = ((zz - 2) * spacing_um[0]) ** 2 / max(r * 0.8, 1) ** 2 + \
            ((yy - 4) ** 2 + (xx - 4) ** 2) * spacing_um[1] ** 2 / r ** 2 <= 1
        z0 = int(rng.integers(0, max(seg.shape[0] - 5, 1)))
        y0 = int(rng.integers(0, max(seg.shape[1] - 9, 1)))
        x0 = int(rng.integers(0, max(seg.shape[2] - 9, 1)))
        box = (slice(z0, z0 + 5), slice(y0, y0 + 9), slice(x0, x0 + 9))
        region = seg[box]
        if region.shape != blob.shape or region[blob].any() or not outside[box][blob].all():
            added += 0.25  # give up after a few tries
            continue
        region[blob] = nxt
        nxt += 1
        added += 1
    # fresh random IDs
    ids = np.unique(seg)
    ids = ids[ids != 0]
    new = rng.permutation(len(ids)) + 1
    import fastremap

    fastremap.remap(seg, {int(o): int(v) for o, v in zip(ids, new, strict=True)},
                    preserve_missing_labels=True, in_place=True)
    return seg


@dataclass
class Match:
    """Ground-truth relation of each label of a segmentation frame.

    Attributes
    ----------
    main : dict
        label -> the ground-truth object covering most of it (0: none, an artefact).
    covers : dict
        label -> ground-truth objects of which it holds at least ``frac`` (fused when > 1).
    pieces : dict
        ground-truth object -> labels holding at least ``frac`` of it (split when > 1).
    """

    main: dict[int, int]
    covers: dict[int, list[int]]
    pieces: dict[int, list[int]]


def match_labels(gt: np.ndarray, seg: np.ndarray, frac: float = 0.2) -> Match:
    """Relate the labels of ``seg`` to the ground truth ``gt`` (one frame)."""
    pt, pp, inter, st, sp = overlap_table(gt, seg)
    main: dict[int, int] = {}
    best: dict[int, int] = {}
    covers: dict[int, list[int]] = {int(p): [] for p in sp}
    pieces: dict[int, list[int]] = {int(g): [] for g in st}
    for g, p, n in zip(pt, pp, inter, strict=True):
        g, p, n = int(g), int(p), int(n)
        if n > best.get(p, 0):
            best[p], main[p] = n, g
        if n >= frac * st[g] and n >= 0.2 * sp[p]:
            covers[p].append(g)
            pieces[g].append(p)
    for p in sp:
        if best.get(int(p), 0) < 0.3 * sp[p]:
            main[int(p)] = 0
    return Match(main, covers, pieces)


@dataclass
class ErrorCounts:
    """Errors of a segmentation against ground truth.

    Attributes
    ----------
    over_split : int
        Ground-truth objects in two or more pieces.
    under_split : int
        Labels holding two or more ground-truth objects (over-merged).
    artefacts : int
        Labels matching no ground-truth object.
    vi_split, vi_merge : float
        Variation of information (bits): conditional entropies H(seg | gt) and H(gt | seg)
        over the foreground of either.
    """

    over_split: int
    under_split: int
    artefacts: int
    vi_split: float
    vi_merge: float

    def __add__(self, o: ErrorCounts) -> ErrorCounts:
        return ErrorCounts(self.over_split + o.over_split, self.under_split + o.under_split,
                           self.artefacts + o.artefacts, self.vi_split + o.vi_split,
                           self.vi_merge + o.vi_merge)


def error_counts(gt: np.ndarray, seg: np.ndarray) -> ErrorCounts:
    """Count the errors of ``seg`` (one frame or a series, frame by frame) against ``gt``."""
    gt = np.asarray(gt)
    seg = np.asarray(seg)
    if gt.ndim == 4:
        tot = ErrorCounts(0, 0, 0, 0.0, 0.0)
        for t in range(gt.shape[0]):
            tot = tot + error_counts(gt[t], seg[t])
        return tot
    from skimage.metrics import variation_of_information

    m = match_labels(gt, seg)
    fg = (gt > 0) | (seg > 0)
    vs, vm = variation_of_information(gt[fg], seg[fg]) if fg.any() else (0.0, 0.0)
    return ErrorCounts(
        over_split=sum(len(v) > 1 for v in m.pieces.values()),
        under_split=sum(len(v) > 1 for v in m.covers.values()),
        artefacts=sum(1 for v in m.main.values() if v == 0),
        vi_split=float(vs), vi_merge=float(vm))


# ------------------------------------------------------------------ simulated proofreader
def _voxel_of(labels3d: np.ndarray, mask: np.ndarray) -> list[int] | None:
    """The voxel of ``mask`` deepest inside it (z, y, x)."""
    from scipy import ndimage as ndi

    if not mask.any():
        return None
    sl = ndi.find_objects(mask.astype(np.int8))[0]
    sub = mask[sl]
    d = ndi.distance_transform_edt(sub)
    k = np.unravel_index(int(np.argmax(d)), d.shape)
    return [int(k[i] + sl[i].start) for i in range(3)]


@dataclass
class ProofreadLog:
    """What the simulated proofreader did: corrections per kind, reviewed tiles."""

    counts: dict[str, int]
    reviewed: list[tuple[int, list[int]]]


def proofread(wc: object, gt: np.ndarray, *, k: int, tiles: Sequence[tuple[int, Sequence[int]]],
              rng: np.random.Generator) -> ProofreadLog:
    """Make ``k`` corrections of each kind through the working copy's user operations, as a
    careful user would, using the ground truth ``gt`` (T, Z, Y, X).

    The tiles ``(t, box)`` are visited in order; in each, errors are fixed in the order
    artefacts (erase), fused labels (split, one seed per ground-truth object), over-split
    pairs (merge stroke across both), broken identities to ``t + 1`` (temporal merge),
    each kind until it has ``k`` corrections. A tile where no error is left afterwards is
    marked reviewed.
    """
    counts = {"artefact": 0, "merge": 0, "split": 0, "track": 0}
    reviewed: list[tuple[int, list[int]]] = []
    lab = wc.labels  # type: ignore[attr-defined]
    for t, box in tiles:
        if min(counts.values()) >= k:
            break
        sl = (slice(box[0], box[1]), slice(box[2], box[3]), slice(box[4], box[5]))
        left = 0
        # artefacts
        m = match_labels(gt[t][sl], lab[t][sl])
        for v in [p for p, g in m.main.items() if g == 0]:
            if counts["artefact"] >= k:
                left += 1
                continue
            vox = _voxel_of(lab[t], lab[t] == v)
            if vox is not None and wc.erase(t, [[t, *vox]]) is not None:  # type: ignore[attr-defined]
                counts["artefact"] += 1
        # fused labels
        m = match_labels(gt[t][sl], lab[t][sl])
        for v, gs in list(m.covers.items()):
            if len(gs) < 2:
                continue
            if counts["split"] >= k:
                left += 1
                continue
            seeds = []
            for g in gs:
                vox = _voxel_of(lab[t], (lab[t] == v) & (gt[t] == g))
                if vox is not None:
                    seeds.append([[t, *vox]])
            if len(seeds) >= 2:
                try:
                    wc.split(t, seeds)  # type: ignore[attr-defined]
                    counts["split"] += 1
                except Exception:
                    left += 1
        # over-split: adjacent pairs of one object
        from .features import frame_features

        ff = frame_features(lab[t][sl], None, wc.spacing_um)  # type: ignore[attr-defined]
        m = match_labels(gt[t][sl], lab[t][sl])
        done: set[int] = set()
        for a, b in ff.pairs:
            a, b = int(a), int(b)
            if m.main.get(a, 0) == 0 or m.main.get(a) != m.main.get(b) or a in done or b in done:
                continue
            if counts["merge"] >= k:
                left += 1
                continue
            va = _voxel_of(lab[t], lab[t] == a)
            vb = _voxel_of(lab[t], lab[t] == b)
            if va is None or vb is None:
                continue
            if wc.merge(t, [[t, *va], [t, *vb]]) is not None:  # type: ignore[attr-defined]
                counts["merge"] += 1
                done |= {a, b}
        # identities to t + 1
        if t + 1 < gt.shape[0]:
            m0 = match_labels(gt[t][sl], lab[t][sl])
            m1 = match_labels(gt[t + 1][sl], lab[t + 1][sl])
            by_g1: dict[int, list[int]] = {}
            for p, g in m1.main.items():
                if g:
                    by_g1.setdefault(g, []).append(p)
            for a, g in m0.main.items():
                if g == 0 or len(m0.pieces.get(g, [])) > 1 or len(by_g1.get(g, [])) != 1:
                    continue
                b = by_g1[g][0]
                if a == b:
                    continue
                if counts["track"] >= k:
                    left += 1
                    continue
                va = _voxel_of(lab[t], lab[t] == a)
                vb = _voxel_of(lab[t + 1], lab[t + 1] == b)
                if va is None or vb is None:
                    continue
                wc.temporal_merge([[t, *va], [t + 1, *vb]])  # type: ignore[attr-defined]
                counts["track"] += 1
        if left == 0:
            wc.mark_reviewed(t, list(box))  # type: ignore[attr-defined]
            reviewed.append((t, list(box)))
    return ProofreadLog(counts, reviewed)


def poor_series(gt: np.ndarray, raw: np.ndarray, spacing_um: Sequence[float], seed: int, *,
                p_merge: float = 0.5, p_split: float = 0.15, n_artefacts: int = 10,
                max_dist_um: float = 6.0, p_break: float = 0.0) -> np.ndarray:
    """A poor segmentation of a whole series: :func:`corrupt_frame` on every frame, then
    linked by the baseline linker (:mod:`neuroglia5d.processing.tracking`).

    ``p_break``: probability that a label of a frame after the first takes a new track
    ID there (a linker failure: the object's track breaks and continues under the new
    ID)."""
    import fastremap

    from ..processing.tracking import LinkState, link_frame

    rng = np.random.default_rng(seed)
    out = np.zeros(gt.shape, np.uint32)
    state = LinkState()
    for t in range(gt.shape[0]):
        seg = corrupt_frame(gt[t], raw[t], spacing_um, rng, p_merge=p_merge, p_split=p_split,
                            n_artefacts=n_artefacts)
        seg, _ = link_frame(seg, state, spacing_um, max_dist_um=max_dist_um)
        if t and p_break > 0:
            ids = np.unique(seg)
            ids = ids[ids != 0]
            brk = ids[rng.random(len(ids)) < p_break]
            if len(brk):
                m = {int(v): state.next_id + k for k, v in enumerate(brk)}
                state.next_id += len(m)
                fastremap.remap(seg, m, preserve_missing_labels=True, in_place=True)
                if state.prev_labels is not None:
                    fastremap.remap(state.prev_labels, m, preserve_missing_labels=True,
                                    in_place=True)
                state.prev_centroids = {m.get(k, k): v for k, v in
                                        state.prev_centroids.items()}
        out[t] = seg
    return out


def half_tiles(shape: Sequence[int], *, x_split: int, tile_yx: int = 64
               ) -> list[tuple[int, list[int]]]:
    """Tiles ``(t, box)`` covering ``x < x_split`` of every frame (the part the simulated
    proofreader may touch), tile by tile and, within a tile, timepoint by timepoint (as a
    user follows the cells of a tile through time)."""
    n_t, nz, ny, _ = shape
    tiles = []
    for y0 in range(0, ny, tile_yx):
        for x0 in range(0, x_split, tile_yx):
            for t in range(n_t):
                tiles.append((t, [0, nz, y0, min(y0 + tile_yx, ny), x0,
                                  min(x0 + tile_yx, x_split)]))
    return tiles
