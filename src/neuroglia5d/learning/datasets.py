"""Training examples from an annotations file (the user's recorded corrections).

The operations are replayed, in order, on a :class:`~neuroglia5d.annotation.WorkingCopy`
of the original labels; each user operation is turned into examples of the state the user
saw just before it:

* **artefact**: labels the user erased are positives; the untouched labels within
  ``near_um`` of them (still present at the end) and the labels left in reviewed regions
  are negatives.
* **merge**: the adjacent pairs a merge joined are positives; adjacent pairs left apart in
  regions the user reviewed (``review`` ops), and the parts a user split made, are
  negatives.
* **split**: labels the user split are positives (with the boundary between the parts as
  the target of the boundary network); untouched labels near them and labels left in
  reviewed regions are negatives.
* **tracking**: labels a temporal merge joined at consecutive timepoints, and labels
  keeping their ID between regions reviewed at ``t`` and ``t + 1``, are positive links;
  every other candidate link of those labels is negative.

Operations later undone by the user give no examples; machine operations
(``source == "model"``) are replayed but never learnt from.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .examples import (
    CropSpec,
    Frame,
    label_examples,
    link_examples,
    pair_examples,
    split_boundary_example,
)
from .features import NormalisedIntensity
from .train import BoundaryExample, ExampleSet

__all__ = ["CATEGORIES", "Corrections", "corrections_from_annotations"]

#: training order (and the categories of the networks)
CATEGORIES: tuple[str, ...] = ("artefact", "merge", "split", "track")


@dataclass
class Corrections:
    """Examples per network and the number of user corrections behind them.

    Attributes
    ----------
    sets : dict
        category -> list of :class:`ExampleSet` (concatenate before training).
    boundary : list of BoundaryExample
        Split boundary targets.
    counts : dict
        category -> number of user operations of that kind (the minimum-count rule).
    """

    sets: dict[str, list[ExampleSet]] = field(default_factory=lambda: {c: [] for c in
                                                                          CATEGORIES})
    boundary: list[BoundaryExample] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CATEGORIES, 0))

    def examples(self, category: str) -> ExampleSet | None:
        """All examples of ``category`` (None when there are none)."""
        s = [e for e in self.sets[category] if len(e)]
        return ExampleSet.concat(s) if s else None


def _active_ops(ops: Sequence[Any]) -> set[int]:
    """created_idx of the edit ops still in effect after the undo/redo records."""
    active: set[int] = set()
    for op in ops:
        if op.type == "undo":
            active.discard(int(op.target))
        elif op.type == "redo":
            active.add(int(op.target))
        elif op.type not in ("review",):
            active.add(int(op.created_idx))
    return active


def _grow(box: Sequence[int], margin: Sequence[int], shape: Sequence[int]) -> list[int]:
    return [max(int(box[0]) - margin[0], 0), min(int(box[1]) + margin[0], shape[0]),
            max(int(box[2]) - margin[1], 0), min(int(box[3]) + margin[1], shape[1]),
            max(int(box[4]) - margin[2], 0), min(int(box[5]) + margin[2], shape[2])]


def _union(boxes: Sequence[Sequence[int] | None]) -> list[int] | None:
    bs = [b for b in boxes if b is not None]
    if not bs:
        return None
    a = np.array(bs)
    return [int(a[:, 0].min()), int(a[:, 1].max()), int(a[:, 2].min()), int(a[:, 3].max()),
            int(a[:, 4].min()), int(a[:, 5].max())]


def corrections_from_annotations(doc: Mapping[str, Any], labels: np.ndarray,
                                 intensity: Any, *, spec: CropSpec | None = None,
                                 near_um: float = 15.0, max_link_um: float = 15.0
                                 ) -> Corrections:
    """Replay the annotations on the original labels and collect training examples.

    Parameters
    ----------
    doc : mapping
        The annotations document (:func:`neuroglia5d.annotation.load_annotations`).
    labels : numpy.ndarray
        (T, Z, Y, X) original labels (the segmentation the ops were made on); not modified.
    intensity : array-like or None
        (T, Z, Y, X) intensity.
    spec : CropSpec
        Crop size of the networks.
    near_um : float
        Radius around a corrected label within which untouched labels are negatives, µm.
    max_link_um : float
        Largest centroid displacement of a candidate link, µm.

    Returns
    -------
    Corrections
    """
    from ..annotation import Operation, WorkingCopy

    spec = spec or CropSpec()
    head = doc.get("header", {})
    spacing = tuple(float(v) for v in head.get("spacing_um", (1.0, 1.0, 1.0)))
    work = np.array(labels, copy=True)
    wc = WorkingCopy(work, original=labels, intensity=intensity, spacing_um=spacing)
    ops = [Operation.from_json(d) for d in doc["operations"]]
    active = _active_ops(ops)
    shape = work.shape[1:]
    margin = [int(np.ceil(near_um / s)) for s in spacing]
    norm_cache: dict[int, Any] = {}

    def norm(t: int) -> Any:
        """The normalised intensity of ``t``, computed region by region as asked for."""
        if t not in norm_cache:
            norm_cache[t] = (np.zeros(shape, np.float32) if intensity is None else
                             NormalisedIntensity(labels[t], np.asarray(intensity[t])))
        return norm_cache[t]

    def local(t: int, ids: Sequence[int]) -> Frame | None:
        box = _union([wc.bbox(t, int(v)) for v in ids])
        if box is None:
            return None
        return Frame.local(work[t], norm(t), spacing, _grow(box, margin, shape),
                           bbox_of=lambda v: wc.bbox(t, v))

    out = Corrections()
    pending_near: list[tuple[str, Frame, list[int], list[int], str]] = []
    erased: dict[int, set[int]] = {}
    split_done: dict[int, set[int]] = {}
    reviews: list[tuple[int, list[int]]] = []
    for op in ops:
        learn = op.source == "user" and op.created_idx in active
        t = op.t
        if op.type == "review":
            wc.apply(op)
            if op.source == "user" and op.box is not None:
                reviews.append((int(t), [int(v) for v in op.box]))  # type: ignore[arg-type]
            continue
        if not learn or op.type not in ("merge", "erase", "split", "temporal_merge"):
            wc.apply(op)
            continue
        key = f"op{op.created_idx}"
        if op.type == "temporal_merge":
            clicks = sorted(zip([int(p[0]) for p in op.stroke], op.labels, strict=True))
            pairs = [(ta, a, b) for (ta, a), (tb, b) in itertools.pairwise(clicks)
                     if tb == ta + 1]
            made = []
            for ta, a, b in pairs:
                box = _union([wc.bbox(ta, a), wc.bbox(ta + 1, b)])
                if box is None:
                    continue
                box = _grow(box, margin, shape)
                for tt_ in (ta, ta + 1):  # whole labels at both timepoints
                    sl = tuple(slice(box[2 * i], box[2 * i + 1]) for i in range(3))
                    box = _union([box, *[wc.bbox(tt_, int(v)) for v in np.unique(work[tt_][sl])
                                         if v]]) or box
                made.append((ta, a, b, Frame.local(work[ta], norm(ta), spacing, box),
                             Frame.local(work[ta + 1], norm(ta + 1), spacing, box)))
            wc.apply(op)
            for ta, a, b, f0, f1 in made:
                out.sets["track"].append(link_examples(f0, f1, [(a, b)], spec,
                                                       f"{key}t{ta}", max_dist_um=max_link_um))
            out.counts["track"] += 1 if made else 0
            continue
        tt = int(t)  # type: ignore[arg-type]
        fr = local(tt, op.labels)
        before = work[tt].copy() if op.type == "split" else None
        wc.apply(op)
        if fr is None:
            continue
        if op.type == "erase":
            erased.setdefault(tt, set()).update(int(v) for v in op.labels)
            near = [int(v) for v in fr.ff.ids if int(v) not in set(op.labels)]
            pending_near.append(("artefact", fr, list(op.labels), near, f"{key}"))
            out.counts["artefact"] += 1
        elif op.type == "merge":
            if op.pairs:
                out.sets["merge"].append(pair_examples(fr, [tuple(p) for p in op.pairs], [],
                                                       spec, key))
                out.counts["merge"] += 1
        elif op.type == "split":
            lab = int(op.labels[0])
            split_done.setdefault(tt, set()).add(lab)
            near = [int(v) for v in fr.ff.ids if int(v) != lab]
            pending_near.append(("split", fr, [lab], near, key))
            assert before is not None
            o = fr.origin
            sl = tuple(slice(o[i], o[i] + fr.labels.shape[i]) for i in range(3))
            ex = split_boundary_example(fr, lab, work[tt][sl], key)
            if ex is not None:
                out.boundary.append(ex)
            # the parts the user made are a "keep apart" example for the merge network
            parts = [lab, *op.created]
            after = local(tt, parts)
            if after is not None:
                negs = [(a, b) for a, b in after.ff.pairs if a in parts and b in parts]
                out.sets["merge"].append(pair_examples(after, [], negs, spec, key + "p"))
            out.counts["split"] += 1
    # negatives near the corrections: labels that survived to the end untouched
    for cat, fr, pos, near, key in pending_near:
        t_ = _frame_t(fr, ops, key)
        gone = erased.get(t_, set()) | split_done.get(t_, set())
        neg = [v for v in near if v not in gone]
        out.sets[cat].append(label_examples(fr, pos, neg, spec, key))
    # reviewed regions, in the final state
    for t_, box in reviews:
        fr = Frame.local(work[t_], norm(t_), spacing, box, bbox_of=lambda v, t_=t_: wc.bbox(t_, v))
        inside = _inside(fr, box)
        if not inside:
            continue
        key = f"rev{t_}:{','.join(map(str, box))}"
        gone = erased.get(t_, set()) | split_done.get(t_, set())
        keep = [v for v in inside if v not in gone]
        out.sets["artefact"].append(label_examples(fr, [], keep, spec, key))
        out.sets["split"].append(label_examples(fr, [], keep, spec, key))
        ins = set(inside)
        negs = [(int(a), int(b)) for a, b in fr.ff.pairs if a in ins and b in ins]
        out.sets["merge"].append(pair_examples(fr, [], negs, spec, key))
    # identities the user left in regions reviewed at t and t + 1 are positive links
    by_t: dict[int, list[list[int]]] = {}
    for t_, box in reviews:
        by_t.setdefault(t_, []).append(box)
    for t_, boxes in sorted(by_t.items()):
        for b0 in boxes:
            for b1 in by_t.get(t_ + 1, []):
                inter = [max(b0[0], b1[0]), min(b0[1], b1[1]), max(b0[2], b1[2]),
                         min(b0[3], b1[3]), max(b0[4], b1[4]), min(b0[5], b1[5])]
                if inter[1] <= inter[0] or inter[3] <= inter[2] or inter[5] <= inter[4]:
                    continue
                f0 = Frame.local(work[t_], norm(t_), spacing, inter)
                f1 = Frame.local(work[t_ + 1], norm(t_ + 1), spacing, inter)
                same = sorted(set(_inside(f0, inter)) & set(_inside(f1, inter)))
                if same:
                    key = f"revlink{t_}:{','.join(map(str, inter))}"
                    out.sets["track"].append(link_examples(
                        f0, f1, [(v, v) for v in same], spec, key, max_dist_um=max_link_um))
    return out


def _frame_t(fr: Frame, ops: Sequence[Any], key: str) -> int:
    idx = int(key[2:].rstrip("p"))
    for op in ops:
        if op.created_idx == idx:
            return int(op.t)
    return -1


def _inside(fr: Frame, box: Sequence[int]) -> list[int]:
    """Labels of ``fr`` whose centroid lies in ``box`` (whole-volume voxels)."""
    o = np.asarray(fr.origin)
    c = fr.ff.centroid_um / np.asarray(fr.spacing) + o
    lo = np.array([box[0], box[2], box[4]])
    hi = np.array([box[1], box[3], box[5]])
    ok = np.all((c >= lo) & (c < hi), axis=1)
    return [int(v) for v in fr.ff.ids[ok]]
