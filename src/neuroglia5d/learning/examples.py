"""Turning labels, pairs and links of one frame into network inputs (features + crops).

A :class:`Frame` bundles one timepoint's labels, normalised intensity and features; the
``*_inputs`` functions return ``(x, c)`` for given labels / pairs / links, and the
``*_examples`` functions add the 0/1 targets and stable keys of an
:class:`~neuroglia5d.learning.train.ExampleSet`.

Crop channels:

* label (artefact, split): intensity, the label's mask, other labels' masks;
* pair (merge): intensity, mask of the first label, mask of the second;
* link (tracking): intensity at ``t``, at ``t + 1``, the mask at ``t``, the mask at
  ``t + 1``; centred between the two centroids.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .features import (
    LABEL_FEATURES,
    LINK_FEATURES,
    PAIR_FEATURES,
    FrameFeatures,
    crops_at,
    frame_features,
    label_matrix,
    link_candidates,
    link_matrix,
    normalise_intensity,
    overlaps,
    pair_matrix,
)
from .train import BoundaryExample, ExampleSet

__all__ = ["CropSpec", "Frame", "label_examples", "label_inputs", "link_crops",
           "link_examples", "link_inputs", "pair_examples", "pair_inputs", "split_boundary_example"]

CHANNELS = {"artefact": 3, "split": 3, "merge": 3, "track": 4}
N_FEATURES = {"artefact": len(LABEL_FEATURES), "split": len(LABEL_FEATURES),
              "merge": len(PAIR_FEATURES), "track": len(LINK_FEATURES)}


@dataclass(frozen=True)
class CropSpec:
    """Crop size (output voxels) and subsampling step, both (z, y, x)."""

    size: tuple[int, int, int] = (8, 16, 16)
    step: tuple[int, int, int] = (1, 2, 2)


class Frame:
    """One timepoint: labels, normalised intensity and their features.

    Parameters
    ----------
    labels : numpy.ndarray
        (Z, Y, X) labels (a copy is kept).
    intensity : numpy.ndarray or None
        (Z, Y, X) intensity.
    spacing_um : sequence of float
        Voxel size (z, y, x), µm.
    links_only : bool
        Measure only what linking needs (:func:`~.features.frame_features`).
    copy : bool
        Keep a copy of ``labels`` (False: the frame refers to the caller's array, which
        must then not change while the frame is used).
    """

    def __init__(self, labels: np.ndarray, intensity: np.ndarray | None,
                 spacing_um: Sequence[float], *,
                 border_faces: Sequence[tuple[int, int]] | None = None,
                 normalised: np.ndarray | None = None,
                 origin: Sequence[int] = (0, 0, 0), links_only: bool = False,
                 copy: bool = True) -> None:
        self.labels = np.array(labels, copy=True) if copy else np.asarray(labels)
        self.inten = (normalise_intensity(self.labels, intensity) if normalised is None
                      else np.asarray(normalised, np.float32))
        if self.inten is None:
            self.inten = np.zeros(self.labels.shape, np.float32)
        self.spacing = tuple(float(s) for s in spacing_um)
        self.origin = tuple(int(v) for v in origin)
        self.ff: FrameFeatures = frame_features(self.labels, None, self.spacing,
                                                normalised=self.inten,
                                                border_faces=border_faces,
                                                links_only=links_only)

    @classmethod
    def local(cls, labels: np.ndarray, norm_intensity: Any, spacing_um: Sequence[float],
              box: Sequence[int], bbox_of: Callable[[int], Sequence[int] | None] | None = None
              ) -> Frame:
        """A frame of the region ``box`` (z0, z1, y0, y1, x0, x1) of a whole volume.

        With ``bbox_of`` (label -> its box in the volume, e.g. ``WorkingCopy.bbox`` at one
        timepoint) the region grows so that every label it touches is whole.
        ``norm_intensity`` is the whole volume's :func:`normalise_intensity` (or a
        :class:`~.features.NormalisedIntensity`, sliced region by region), so features
        match those computed on the whole frame.
        """
        shape = labels.shape
        lo = [max(int(box[2 * i]), 0) for i in range(3)]
        hi = [min(int(box[2 * i + 1]), shape[i]) for i in range(3)]
        if bbox_of is not None:
            sl = tuple(slice(lo[i], hi[i]) for i in range(3))
            for v in np.unique(labels[sl]):
                if v == 0:
                    continue
                bb = bbox_of(int(v))
                if bb is None:
                    continue
                for i in range(3):
                    lo[i] = min(lo[i], int(bb[2 * i]))
                    hi[i] = max(hi[i], int(bb[2 * i + 1]))
        sl = tuple(slice(lo[i], hi[i]) for i in range(3))
        faces = [(i, side) for i in range(3) for side, at in ((0, lo[i] == 0),
                                                              (-1, hi[i] == shape[i])) if at]
        return cls(labels[sl], None, spacing_um, border_faces=faces,
                   normalised=norm_intensity[sl], origin=lo)

    def relabelled(self, mapping: dict[int, int], *, labels_done: bool = False) -> Frame:
        """The same frame after ``{old: new}`` ID changes (no geometry change): IDs and
        labels remapped, features kept (pairs are not re-sorted). ``labels_done``: the
        frame's labels array (a view of the caller's) already holds the new IDs."""
        import copy

        import fastremap

        fr = copy.copy(self)
        if not labels_done:
            fr.labels = fastremap.remap(self.labels, {int(a): int(b) for a, b in
                                                      mapping.items()},
                                        preserve_missing_labels=True, in_place=False)
        ff = copy.copy(self.ff)
        ff.ids = np.array([mapping.get(int(v), int(v)) for v in self.ff.ids], np.int64)
        ff.pairs = np.array([[mapping.get(int(a), int(a)), mapping.get(int(b), int(b))]
                             for a, b in self.ff.pairs], np.int64).reshape(-1, 2)
        ff.index = {int(v): i for i, v in enumerate(ff.ids)}
        fr.ff = ff
        return fr

    def center_vox(self, label: int) -> np.ndarray:
        """Centroid of ``label`` in voxels."""
        return self.ff.centroid_um[self.ff.row(label)] / np.asarray(self.spacing)

    def has(self, label: int) -> bool:
        """Whether ``label`` is present."""
        return int(label) in self.ff.index


def label_inputs(frame: Frame, labels: Sequence[int], spec: CropSpec
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Features and crops of ``labels`` (all present in ``frame``)."""
    x = label_matrix(frame.ff, labels)
    lab = np.asarray([int(v) for v in labels], np.int64)
    rows = np.asarray([frame.ff.row(v) for v in lab], np.int64)
    cen = frame.ff.centroid_um[rows] / np.asarray(frame.spacing) if len(rows) else \
        np.zeros((0, 3))
    inten, lb = crops_at([frame.inten, frame.labels], cen, spec.size, spec.step)
    own = lab.reshape(-1, 1, 1, 1)
    c = np.empty((len(lab), 3, *spec.size), np.float32)
    c[:, 0] = inten
    c[:, 1] = lb == own
    c[:, 2] = (lb != 0) & (lb != own)
    return x, c


def pair_inputs(frame: Frame, pairs: Sequence[Sequence[int]], spec: CropSpec
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features and crops of adjacent pairs; ``found`` marks the pairs that touch (only
    those get rows)."""
    x, found = pair_matrix(frame.ff, pairs)
    kept = np.asarray([sorted((int(a), int(b))) for (a, b), f in
                       zip(pairs, found, strict=True) if f], np.int64).reshape(-1, 2)
    sp = np.asarray(frame.spacing)
    ra = np.asarray([frame.ff.row(v) for v in kept[:, 0]], np.int64)
    rb = np.asarray([frame.ff.row(v) for v in kept[:, 1]], np.int64)
    cen = (0.5 * (frame.ff.centroid_um[ra] / sp + frame.ff.centroid_um[rb] / sp)
           if len(kept) else np.zeros((0, 3)))
    inten, lb = crops_at([frame.inten, frame.labels], cen, spec.size, spec.step)
    c = np.empty((len(kept), 3, *spec.size), np.float32)
    c[:, 0] = inten
    c[:, 1] = lb == kept[:, 0].reshape(-1, 1, 1, 1)
    c[:, 2] = lb == kept[:, 1].reshape(-1, 1, 1, 1)
    return x, c, found


def link_inputs(f0: Frame, f1: Frame, cand: np.ndarray, spec: CropSpec,
                ov: dict[tuple[int, int], int] | None = None,
                drift_um: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Features and crops of candidate links ``cand`` (rows into ``f0.ff`` / ``f1.ff``)."""
    if ov is None:
        ov = overlaps(f0.labels, f1.labels)
    x = link_matrix(f0.ff, f1.ff, cand, ov, drift_um)
    return x, link_crops(f0, f1, cand, spec)


def link_crops(f0: Frame, f1: Frame, cand: np.ndarray, spec: CropSpec) -> np.ndarray:
    """Crops (N, 4, Z, Y, X) of candidate links ``cand``: intensity at t and t + 1, the
    mask of the label at t and of the label at t + 1, centred between the centroids."""
    cand = np.asarray(cand, np.int64).reshape(-1, 2)
    sp = np.asarray(f0.spacing)
    center = 0.5 * (f0.ff.centroid_um[cand[:, 0]] + f1.ff.centroid_um[cand[:, 1]]) / sp \
        if len(cand) else np.zeros((0, 3))
    i0, l0 = crops_at([f0.inten, f0.labels], center, spec.size, spec.step)
    i1, l1 = crops_at([f1.inten, f1.labels], center, spec.size, spec.step)
    a = f0.ff.ids[cand[:, 0]].reshape(-1, 1, 1, 1)
    b = f1.ff.ids[cand[:, 1]].reshape(-1, 1, 1, 1)
    c = np.empty((len(cand), 4, *spec.size), np.float32)
    c[:, 0] = i0
    c[:, 1] = i1
    c[:, 2] = l0 == a
    c[:, 3] = l1 == b
    return c


# ------------------------------------------------------------------ examples with targets
def label_examples(frame: Frame, pos: Sequence[int], neg: Sequence[int], spec: CropSpec,
                   key: str) -> ExampleSet:
    """Label examples: ``pos`` labels are 1, ``neg`` 0 (absent labels are skipped)."""
    pos = [int(v) for v in pos if frame.has(v)]
    neg = [int(v) for v in neg if frame.has(v) and int(v) not in set(pos)]
    x, c = label_inputs(frame, pos + neg, spec)
    y = np.array([1] * len(pos) + [0] * len(neg), np.float32)
    return ExampleSet(x, c, y, [f"{key}/{v}" for v in pos + neg])


def pair_examples(frame: Frame, pos: Sequence[Sequence[int]], neg: Sequence[Sequence[int]],
                  spec: CropSpec, key: str) -> ExampleSet:
    """Pair examples (pairs that do not touch in ``frame`` are skipped)."""
    norm = [tuple(sorted((int(a), int(b)))) for a, b in pos]
    pset = set(norm)
    negn = [p for p in {tuple(sorted((int(a), int(b)))) for a, b in neg} if p not in pset]
    allp = list(dict.fromkeys(norm)) + sorted(negn)
    x, c, found = pair_inputs(frame, allp, spec)
    kept = [p for p, f in zip(allp, found, strict=True) if f]
    y = np.array([1.0 if p in pset else 0.0 for p in kept], np.float32)
    return ExampleSet(x, c, y, [f"{key}/{a}-{b}" for a, b in kept])


def link_examples(f0: Frame, f1: Frame, pos: Sequence[tuple[int, int]], spec: CropSpec,
                  key: str, *, max_dist_um: float = 15.0,
                  also_neg: Sequence[tuple[int, int]] = ()) -> ExampleSet:
    """Link examples: the ``pos`` links (label at t, label at t + 1) are 1; every other
    candidate of the labels involved (and ``also_neg``) is 0."""
    pos = [(int(a), int(b)) for a, b in pos if f0.has(a) and f1.has(b)]
    if not pos and not also_neg:
        return _empty(N_FEATURES["track"], 4, spec)
    cand = link_candidates(f0.ff, f1.ff, max_dist_um=max_dist_um)
    pos_rows = {(f0.ff.row(a), f1.ff.row(b)) for a, b in pos}
    involved0 = {r[0] for r in pos_rows}
    involved1 = {r[1] for r in pos_rows}
    rows = set(pos_rows)
    rows |= {(int(i), int(j)) for i, j in cand if i in involved0 or j in involved1}
    rows |= {(f0.ff.row(a), f1.ff.row(b)) for a, b in also_neg if f0.has(a) and f1.has(b)}
    rows_l = sorted(rows)
    arr = np.array(rows_l, np.int64).reshape(-1, 2)
    x, c = link_inputs(f0, f1, arr, spec)
    y = np.array([1.0 if r in pos_rows else 0.0 for r in rows_l], np.float32)
    keys = [f"{key}/{f0.ff.ids[i]}>{f1.ff.ids[j]}" for i, j in rows_l]
    return ExampleSet(x, c, y, keys)


def _empty(nf: int, ch: int, spec: CropSpec) -> ExampleSet:
    return ExampleSet(np.zeros((0, nf), np.float32), np.zeros((0, ch, *spec.size), np.float32),
                      np.zeros(0, np.float32), [])


def label_box(labels: np.ndarray, label: int, margin: int = 2) -> tuple[slice, ...] | None:
    """Bounding box of ``label`` grown by ``margin`` voxels (None when absent)."""
    from scipy import ndimage as ndi

    m = labels == label
    sl = ndi.find_objects(m.astype(np.int8))
    if not sl or sl[0] is None:
        return None
    return tuple(slice(max(s.start - margin, 0), min(s.stop + margin, n))
                 for s, n in zip(sl[0], labels.shape, strict=True))


def boundary_input(frame: Frame, label: int, box: tuple[slice, ...]) -> np.ndarray:
    """(2, Z, Y, X) input of the boundary network: intensity and the label's mask."""
    return np.stack([frame.inten[box], (frame.labels[box] == label).astype(np.float32)])


def split_boundary_example(before: Frame, label: int, after: np.ndarray,
                           key: str) -> BoundaryExample | None:
    """The boundary target of a split: voxels of ``label`` (in ``before``) whose
    6-neighbour inside the old mask carries another ID in ``after`` (grown by one voxel
    in Y and X)."""
    from scipy import ndimage as ndi

    box = label_box(before.labels, label)
    if box is None:
        return None
    mask = before.labels[box] == label
    aft = np.asarray(after)[box]
    bnd = np.zeros(mask.shape, bool)
    for ax in range(3):
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[ax] = slice(0, -1)
        hi[ax] = slice(1, None)
        d = (aft[tuple(lo)] != aft[tuple(hi)]) & mask[tuple(lo)] & mask[tuple(hi)]
        bnd[tuple(lo)] |= d
        bnd[tuple(hi)] |= d
    if not bnd.any():
        return None
    bnd = ndi.binary_dilation(bnd, np.ones((1, 3, 3), bool)) & mask
    return BoundaryExample(boundary_input(before, label, box), bnd.astype(np.float32), key)
