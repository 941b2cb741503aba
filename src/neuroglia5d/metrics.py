"""Accuracy of instance labels against ground truth.

F1 at an IoU threshold and the mean IoU of matched pairs follow the usual instance
segmentation definitions (one-to-one matching, pairs with IoU > 0.5 are unique by
construction); SEG is the Cell Tracking Challenge measure: for every ground-truth object,
the Jaccard index with the predicted object covering more than half of it (0 when none
does), averaged over ground-truth objects.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Scores:
    """Accuracy of one prediction (or a whole series).

    Attributes
    ----------
    f1 : float
        F1 score of one-to-one matches at IoU >= ``iou_threshold``.
    precision, recall : float
        Matched / predicted and matched / ground-truth objects.
    mean_iou : float
        Mean IoU of the matched pairs (0 when none match).
    seg : float
        Cell Tracking Challenge SEG measure.
    n_true, n_pred, n_matched : int
        Object counts.
    """

    f1: float
    precision: float
    recall: float
    mean_iou: float
    seg: float
    n_true: int
    n_pred: int
    n_matched: int


def overlap_table(true: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                                np.ndarray, dict[int, int],
                                                                dict[int, int]]:
    """Overlapping (true, pred) label pairs with their intersection sizes.

    Returns
    -------
    pairs_true, pairs_pred, inter : numpy.ndarray
        One entry per overlapping pair of non-zero labels.
    size_true, size_pred : dict
        Voxel count of every non-zero label.
    """
    t = np.asarray(true).ravel()
    p = np.asarray(pred).ravel()
    if t.shape != p.shape:
        raise ValueError(f"shapes differ: {np.shape(true)} vs {np.shape(pred)}")
    tu, tc = np.unique(t, return_counts=True)
    pu, pc = np.unique(p, return_counts=True)
    size_true = {int(a): int(b) for a, b in zip(tu, tc, strict=True) if a != 0}
    size_pred = {int(a): int(b) for a, b in zip(pu, pc, strict=True) if a != 0}
    both = (t != 0) & (p != 0)
    key = t[both].astype(np.uint64) << np.uint64(32) | p[both].astype(np.uint64)
    keys, inter = np.unique(key, return_counts=True)
    return ((keys >> np.uint64(32)).astype(np.int64),
            (keys & np.uint64(0xFFFFFFFF)).astype(np.int64), inter, size_true, size_pred)


def score(true: np.ndarray, pred: np.ndarray, iou_threshold: float = 0.5) -> Scores:
    """Score predicted instance labels against ground truth (any dimensionality).

    Parameters
    ----------
    true, pred : numpy.ndarray
        Integer label images of one shape; 0 is background.
    iou_threshold : float
        Minimum IoU of a true-positive match.
    """
    pt, pp, inter, st, sp = overlap_table(true, pred)
    return _scores_from_table(pt, pp, inter, st, sp, iou_threshold)


def score_series(true: np.ndarray, pred: np.ndarray, iou_threshold: float = 0.5) -> Scores:
    """Score a (T, ...) series frame by frame and pool the counts over frames."""
    tp = n_true = n_pred = 0
    ious: list[float] = []
    seg_sum = 0.0
    for t in range(true.shape[0]):
        pt, pp, inter, st, sp = overlap_table(true[t], pred[t])
        m, i, s = _match(pt, pp, inter, st, sp, iou_threshold)
        tp += m
        ious += i
        seg_sum += s
        n_true += len(st)
        n_pred += len(sp)
    return _finish(tp, n_true, n_pred, ious, seg_sum)


def _match(pt: np.ndarray, pp: np.ndarray, inter: np.ndarray, st: dict[int, int],
           sp: dict[int, int], thr: float) -> tuple[int, list[float], float]:
    if len(pt) == 0:
        return 0, [], 0.0
    a = np.array([st[int(x)] for x in pt], dtype=np.float64)
    b = np.array([sp[int(x)] for x in pp], dtype=np.float64)
    iou = inter / (a + b - inter)
    # one-to-one matching: for thr >= 0.5 each label has at most one pair above thr;
    # for lower thresholds use an optimal assignment
    if thr >= 0.5:
        ok = iou >= thr
        matched = list(iou[ok])
    else:
        from scipy.optimize import linear_sum_assignment

        ti = {v: k for k, v in enumerate(np.unique(pt))}
        pi = {v: k for k, v in enumerate(np.unique(pp))}
        cost = np.zeros((len(ti), len(pi)))
        for x, y, v in zip(pt, pp, iou, strict=True):
            cost[ti[x], pi[y]] = -v
        r, c = linear_sum_assignment(cost)
        matched = [float(-cost[i, j]) for i, j in zip(r, c, strict=True) if -cost[i, j] >= thr]
    # SEG: predicted object covering > 50 % of the true one
    seg = float(np.sum(np.where(inter > 0.5 * a, iou, 0.0)))
    return len(matched), [float(x) for x in matched], seg


def _scores_from_table(pt: np.ndarray, pp: np.ndarray, inter: np.ndarray, st: dict[int, int],
                       sp: dict[int, int], thr: float) -> Scores:
    m, ious, seg = _match(pt, pp, inter, st, sp, thr)
    return _finish(m, len(st), len(sp), ious, seg)


def _finish(tp: int, n_true: int, n_pred: int, ious: list[float], seg_sum: float) -> Scores:
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_true if n_true else 0.0
    f1 = 2 * tp / (n_true + n_pred) if (n_true + n_pred) else 1.0
    return Scores(
        f1=f1,
        precision=precision,
        recall=recall,
        mean_iou=float(np.mean(ious)) if ious else 0.0,
        seg=seg_sum / n_true if n_true else 0.0,
        n_true=n_true,
        n_pred=n_pred,
        n_matched=tp,
    )


def tracking_consistency(true: np.ndarray, pred: np.ndarray) -> float:
    """Fraction of ground-truth objects whose matched prediction keeps one ID over time.

    For every true label, the predicted label matched at IoU >= 0.5 in each frame where it
    is matched is collected; the object counts as consistent when that set has one ID.
    """
    ids: dict[int, set[int]] = {}
    for t in range(true.shape[0]):
        pt, pp, inter, st, sp = overlap_table(true[t], pred[t])
        if len(pt) == 0:
            continue
        a = np.array([st[int(x)] for x in pt], dtype=np.float64)
        b = np.array([sp[int(x)] for x in pp], dtype=np.float64)
        iou = inter / (a + b - inter)
        for x, y, v in zip(pt, pp, iou, strict=True):
            if v >= 0.5:
                ids.setdefault(int(x), set()).add(int(y))
    if not ids:
        return 0.0
    return sum(len(v) == 1 for v in ids.values()) / len(ids)
