"""Linking with the tracking network, and the exports of the tracks.

:func:`link_series` scores every candidate link between consecutive timepoints with the
tracking network (or, without one, with the overlap/distance score of the baseline), and
solves a one-to-one assignment per pair of timepoints (``scipy.optimize.linear_sum_assignment``
on ``-log p``). With ``divisions=True`` (cells that divide: the user says so), a label at
``t`` whose second-best candidate at ``t + 1`` also scores above ``division_p``, is left
unassigned, and together with the first daughter holds about the mother's volume
(0.6-1.4 x, each daughter below 0.8 x) is recorded as dividing (the daughter gets a new
track ID and the mother as parent); by default links are one-to-one only (two halves of an
over-split object are not a division). Unlinked labels start new tracks.

Exports: :func:`tracks_layer_data` (napari ``Tracks`` data and ``graph``),
:func:`write_ctc` (Cell Tracking Challenge result folder: ``maskTTT.tif`` +
``res_track.txt``), :func:`write_geff` (GEFF zarr, read by trackastra, ultrack and
motile-tracker).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .examples import CropSpec, Frame, link_crops
from .features import link_candidates, link_matrix, overlaps

__all__ = ["LinkResult", "link_series", "tracks_layer_data", "write_ctc", "write_geff"]


@dataclass
class LinkResult:
    """Per pair of timepoints: ``mapping`` ``{label at t+1: track ID}``; ``parents``
    ``{daughter track: mother track}``."""

    mappings: dict[int, dict[int, int]] = field(default_factory=dict)
    parents: dict[int, int] = field(default_factory=dict)
    n_links: int = 0
    n_divisions: int = 0


def _baseline_p(x: np.ndarray) -> np.ndarray:
    """Score of a link without a network (0..1): above 0.55 with an overlap of IoU >= 0.1
    (as the baseline linker's first round), else falling with the distance over the
    object's size."""
    iou = x[:, 2]
    d = x[:, 10]  # distance over object size
    return np.where(iou >= 0.1, np.clip(0.55 + iou, 0, 1), 0.9 * np.exp(-d))


def link_series(labels: np.ndarray, intensity: Any, spacing_um: Sequence[float], *,
                model: Any = None, spec: CropSpec | None = None, max_dist_um: float = 15.0,
                min_p: float = 0.5, divisions: bool = False, division_p: float = 0.9,
                prior_n: int = 20,
                apply: Callable[[int, dict[int, int]], None] | None = None,
                t_range: tuple[int, int] | None = None,
                progress: Callable[[int, int], None] | None = None,
                frames: dict[int, Frame] | None = None) -> LinkResult:
    """Relink a (T, Z, Y, X) series frame by frame (``labels`` is modified in place).

    Parameters
    ----------
    labels : numpy.ndarray
        Labels; at ``t + 1`` they get the track IDs of their links at ``t``.
    intensity : array-like or None
        (T, Z, Y, X) intensity.
    spacing_um : sequence of float
        Voxel size (z, y, x), µm.
    model : ObjectClassifier, optional
        The tracking network (``kind == "track"``); the baseline score without.
    spec : CropSpec, optional
        Crop of the network (its stored crop size by default).
    max_dist_um : float
        Largest centroid displacement of a candidate link (after drift), µm.
    min_p : float
        Smallest link probability accepted.
    prior_n : int
        Weight of the overlap/distance prior, in examples: the link probability is
        ``w * p_network + (1 - w) * p_prior`` with ``w = n_pos / (n_pos + prior_n)`` and
        ``n_pos`` the positive links the network was trained on, so a tracker trained on a
        handful of corrections leans on the prior and one trained on many on itself.
    divisions : bool
        Propose divisions (cells that divide); off: one-to-one links only.
    division_p : float
        Probability above which an unassigned second link is a division.
    apply : callable, optional
        ``apply(t, mapping)`` performs the relabelling of timepoint ``t`` (e.g. a
        ``WorkingCopy.relabel`` machine op); by default the array is remapped in place.
    t_range : (int, int), optional
        First and last timepoint to relink (all by default).
    progress : callable, optional
        ``progress(done, total)``.
    frames : dict of int to Frame, optional
        Measurements of timepoints already made (of the labels as they are now).
    """
    import fastremap
    from scipy.optimize import linear_sum_assignment

    chunk = 512
    if spec is None:
        spec = CropSpec(size=tuple(model.crop_zyx)) if model is not None else CropSpec()
    n_t = labels.shape[0]
    t0, t1 = t_range if t_range is not None else (0, n_t - 1)
    res = LinkResult()
    next_id = int(labels.max()) + 1
    drift = np.zeros(3)
    inten = (lambda t: None) if intensity is None else (lambda t: np.asarray(intensity[t]))
    frames = frames or {}
    prev = frames.get(t0) or Frame(labels[t0], inten(t0), spacing_um)
    for t in range(t0, t1):
        cur = frames.get(t + 1) or Frame(labels[t + 1], inten(t + 1), spacing_um)
        cand = link_candidates(prev.ff, cur.ff, max_dist_um=max_dist_um, drift_um=drift)
        mapping: dict[int, int] = {}
        if len(cand):
            ov = overlaps(prev.labels, cur.labels)
            x = link_matrix(prev.ff, cur.ff, cand, ov, drift)
            p = _baseline_p(x)
            if model is not None:
                n_pos = int(model.history[-1].get("n_pos", 0)) if getattr(
                    model, "history", None) else prior_n
                w = n_pos / (n_pos + prior_n)
                # crops a chunk at a time: the buffers stay small and are reused
                pn = [model.predict_proba(x[i:i + chunk], link_crops(prev, cur,
                                                                     cand[i:i + chunk], spec))
                      for i in range(0, len(cand), chunk)]
                p = w * np.concatenate(pn) + (1 - w) * p
            n0, n1 = len(prev.ff.ids), len(cur.ff.ids)
            cost = np.full((n0, n1), 1e6)
            pm = np.zeros((n0, n1))
            for (i, j), pv in zip(cand, p, strict=True):
                pm[i, j] = pv
                if pv >= min_p:
                    cost[i, j] = -np.log(max(pv, 1e-9))
            r, cidx = linear_sum_assignment(cost)
            assigned = {}
            for i, j in zip(r, cidx, strict=True):
                if cost[i, j] < 1e6:
                    assigned[int(j)] = int(i)
                    mapping[int(cur.ff.ids[j])] = int(prev.ff.ids[i])
            res.n_links += len(assigned)
            # divisions: a mother with a second confident, unassigned daughter
            mothers = {i: j for j, i in assigned.items()} if divisions else {}
            for i, j0 in mothers.items():
                row = pm[i].copy()
                vm = float(prev.ff.volume_vox[i])
                for j in np.argsort(-row)[:2]:
                    both = float(cur.ff.volume_vox[j] + cur.ff.volume_vox[j0])
                    halves = (0.6 * vm <= both <= 1.4 * vm
                              and max(cur.ff.volume_vox[j], cur.ff.volume_vox[j0]) < 0.8 * vm)
                    if int(j) not in assigned and row[j] >= division_p and halves:
                        daughter = int(cur.ff.ids[j])
                        mapping[daughter] = next_id
                        res.parents[next_id] = int(prev.ff.ids[i])
                        next_id += 1
                        res.n_divisions += 1
                        assigned[int(j)] = -1
            disp = [cur.ff.centroid_um[j] - prev.ff.centroid_um[i]
                    for j, i in assigned.items() if i >= 0]
            if disp:
                drift = np.median(np.array(disp), axis=0)
        # labels not linked: a new track (new ID when theirs is taken or was used at t)
        taken = set(mapping.values()) | {int(v) for v in prev.ff.ids}
        for v in cur.ff.ids:
            v = int(v)
            if v not in mapping and v in taken:
                mapping[v] = next_id
                next_id += 1
        mapping = {a: b for a, b in mapping.items() if a != b}
        if mapping:
            if apply is not None:
                apply(t + 1, mapping)
            else:
                fastremap.remap(labels[t + 1], mapping, preserve_missing_labels=True,
                                in_place=True)
            next_id = max(next_id, int(labels[t + 1].max()) + 1)
        res.mappings[t + 1] = mapping
        # a frame that is a view of the series already carries the new IDs
        prev = cur.relabelled(mapping, labels_done=np.shares_memory(cur.labels, labels[t + 1])
                              ) if mapping else cur
        if progress is not None:
            progress(t + 1 - t0, t1 - t0)
    return res


# ------------------------------------------------------------------ exports
def _segments(labels: np.ndarray) -> dict[int, list[int]]:
    """Timepoints at which each label is present."""
    out: dict[int, list[int]] = {}
    for t in range(labels.shape[0]):
        for v in np.unique(labels[t]):
            if v:
                out.setdefault(int(v), []).append(t)
    return out


def tracks_layer_data(labels: np.ndarray, spacing_um: Sequence[float] = (1.0, 1.0, 1.0),
                      parents: dict[int, int] | None = None
                      ) -> tuple[np.ndarray, dict[int, list[int]]]:
    """napari ``Tracks`` data ``(track_id, t, z, y, x)`` (voxel coordinates, centroids)
    and ``graph`` ``{track: [parent]}``."""
    from scipy import ndimage as ndi

    rows = []
    for t in range(labels.shape[0]):
        lab = np.asarray(labels[t])
        ids = np.unique(lab)
        ids = ids[ids != 0]
        if not len(ids):
            continue
        cents = ndi.center_of_mass(np.ones(lab.shape, np.uint8), lab, ids)
        rows += [(int(v), t, *c) for v, c in zip(ids, cents, strict=True)]
    data = np.array(sorted(rows), np.float64).reshape(-1, 5)
    present = {int(v) for v in data[:, 0]} if len(data) else set()
    graph = {int(d): [int(m)] for d, m in (parents or {}).items()
             if d in present and m in present}
    return data, graph


def ctc_tracks(labels: np.ndarray, parents: dict[int, int] | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """Relabel so that every track is one run of consecutive frames (a track that
    disappears and comes back continues under a new label with the earlier one as
    parent, as the Cell Tracking Challenge format requires) and build the
    ``L B E P`` table. Returns ``(labels, table)``; the labels are a new array."""
    import fastremap

    out = np.array(labels, copy=True)
    segs = _segments(out)
    next_id = max(segs, default=0) + 1
    parents = dict(parents or {})
    # a mother that keeps her ID after a division continues as a new track from then on
    # (a CTC mother ends the frame before her daughters start)
    current: dict[int, int] = {}
    for d in sorted(parents, key=lambda v: segs.get(v, [10 ** 9])[0]):
        orig = parents[d]
        m = current.get(orig, orig)
        parents[d] = m
        if d not in segs or m not in segs:
            continue
        t_d = segs[d][0]
        later = [t for t in segs[m] if t >= t_d]
        if not later:
            continue
        new = next_id
        next_id += 1
        for t in later:
            fastremap.remap(out[t], {m: new}, preserve_missing_labels=True, in_place=True)
        segs[m] = [t for t in segs[m] if t < t_d]
        segs[new] = later
        parents[new] = m
        current[orig] = current[m] = new
    segs = {k: v for k, v in segs.items() if v}
    rows: list[list[int]] = []
    renamed: dict[tuple[int, int], int] = {}
    for lab, ts in sorted(segs.items()):
        runs: list[list[int]] = [[ts[0]]]
        for t in ts[1:]:
            if t == runs[-1][-1] + 1:
                runs[-1].append(t)
            else:
                runs.append([t])
        parent = int(parents.get(lab, 0))
        cur = lab
        for k, run in enumerate(runs):
            if k:
                new = next_id
                next_id += 1
                for t in run:
                    renamed[(t, lab)] = new
                parent, cur = cur, new
            rows.append([cur, run[0], run[-1], parent])
    for t in range(out.shape[0]):
        m = {lab: new for (tt, lab), new in renamed.items() if tt == t}
        if m:
            fastremap.remap(out[t], m, preserve_missing_labels=True, in_place=True)
    ids = {r[0] for r in rows}
    for r in rows:  # parents must be tracks that exist
        if r[3] not in ids:
            r[3] = 0
    return out, np.array(sorted(rows), np.int64).reshape(-1, 4)


def write_ctc(folder: str | Path, labels: np.ndarray,
              parents: dict[int, int] | None = None) -> Path:
    """Write a Cell Tracking Challenge result folder (``mask000.tif`` ... as uint16,
    ``res_track.txt``), atomically (``folder.partial`` renamed when complete)."""
    import tifffile

    from ..errors import OutputError
    from ..io.atomic import atomic_output

    lab, table = ctc_tracks(labels, parents)
    if lab.max() > 65535:
        raise OutputError(f"{folder}: more than 65535 track labels do not fit the CTC format")
    digits = max(3, len(str(lab.shape[0] - 1)))
    with atomic_output(Path(folder)) as tmp:
        tmp.mkdir(parents=True, exist_ok=True)
        for t in range(lab.shape[0]):
            tifffile.imwrite(tmp / f"mask{t:0{digits}d}.tif", lab[t].astype(np.uint16),
                             photometric="minisblack")
        (tmp / "res_track.txt").write_text(
            "".join(f"{a} {b} {c} {d}\n" for a, b, c, d in table))
    return Path(folder)


def write_geff(path: str | Path, labels: np.ndarray, spacing_um: Sequence[float],
               parents: dict[int, int] | None = None) -> Path:
    """Write the tracks as a GEFF graph (one node per label and timepoint with ``t``,
    ``z``, ``y``, ``x`` in µm and ``track_id``; edges from each node to the same track at
    the next timepoint, and from a mother's last node to her daughters' first)."""
    import geff
    import networkx as nx

    from ..io.atomic import atomic_output

    data, _ = tracks_layer_data(labels, (1.0, 1.0, 1.0), parents)
    sp = [float(s) for s in spacing_um]
    g = nx.DiGraph()
    last: dict[int, tuple[int, int]] = {}
    first: dict[int, int] = {}
    for k, (tid, t, z, y, x) in enumerate(data):
        tid, t = int(tid), int(t)
        g.add_node(k, t=t, z=z * sp[0], y=y * sp[1], x=x * sp[2], track_id=tid)
        if tid in last and last[tid][0] == t - 1:
            g.add_edge(last[tid][1], k)
        first.setdefault(tid, k)
        last[tid] = (t, k)
    for d, m in (parents or {}).items():
        if d in first and m in last:
            g.add_edge(last[m][1], first[d])
    with atomic_output(Path(path)) as tmp:
        geff.write(g, str(tmp), axis_names=["t", "z", "y", "x"],
                   axis_units=[None, "micrometer", "micrometer", "micrometer"],
                   axis_types=["time", "space", "space", "space"])
    return Path(path)
