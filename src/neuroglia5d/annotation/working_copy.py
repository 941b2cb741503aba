"""The working copy of the labels and the operations that edit it.

Every operation acts on one timepoint's 3D volume (or one plane when z-locked), on whole
labels, and touches only the bounding boxes of the labels involved: the per-timepoint
boxes come from :func:`~.label_boxes.label_boxes` once, on the first touch of that
timepoint, and every op keeps them exact afterwards. What an op changed is kept as a
compact delta (per changed box: the packed mask of changed voxels, the values before and
after), so undo and redo restore the exact voxels and cost only the changed voxels.

New label IDs are ``next_id`` (the highest ID ever seen or issued, plus one) and are never
reused, even after undo.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ParameterError
from .operation import EDIT_TYPES, Operation, decode_array, encode_array, now_iso

Box = tuple[int, int, int, int, int, int]  # z0, z1, y0, y1, x0, x1 (half-open)


def _slices(box: Box) -> tuple[slice, slice, slice]:
    return slice(box[0], box[1]), slice(box[2], box[3]), slice(box[4], box[5])


def _union(a: Box | None, b: Box | None) -> Box | None:
    if a is None:
        return b
    if b is None:
        return a
    return (min(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3]),
            min(a[4], b[4]), max(a[5], b[5]))


def _plane(box: Box, z: int | None) -> Box | None:
    """``box`` limited to plane ``z`` (None when the plane misses the box)."""
    if z is None:
        return box
    if not box[0] <= z < box[1]:
        return None
    return (z, z + 1, *box[2:])


def _tight(mask: np.ndarray, origin: Box) -> Box | None:
    """Tight box (in the frame of ``origin``) of the True voxels of ``mask``."""
    out = []
    for ax in range(3):
        other = tuple(a for a in range(3) if a != ax)
        nz = np.flatnonzero(mask.any(axis=other))
        if len(nz) == 0:
            return None
        out += [origin[2 * ax] + int(nz[0]), origin[2 * ax] + int(nz[-1]) + 1]
    return tuple(out)  # type: ignore[return-value]


def crop_of(arr: Any, t: int, box: Box) -> np.ndarray:
    """``arr[t, z0:z1, y0:y1, x0:x1]`` as a numpy array (lazy arrays indexed one way or the
    other)."""
    sl = _slices(box)
    try:
        return np.asarray(arr[(t, *sl)])
    except (TypeError, IndexError, NotImplementedError):
        return np.asarray(np.asarray(arr[t])[sl])


@dataclass
class _Delta:
    """Voxels one op changed in one box of one timepoint."""

    t: int
    box: Box
    packed: np.ndarray  # np.packbits of the changed-voxel mask of the box
    before: np.ndarray | int
    after: np.ndarray | int
    ids: frozenset[int]  # label IDs in before and after

    def mask(self) -> np.ndarray:
        shape = (self.box[1] - self.box[0], self.box[3] - self.box[2], self.box[5] - self.box[4])
        n = shape[0] * shape[1] * shape[2]
        return np.unpackbits(self.packed, count=n).view(bool).reshape(shape)

    def write(self, labels: np.ndarray, forward: bool) -> None:
        crop = labels[self.t][_slices(self.box)]
        crop[self.mask()] = self.after if forward else self.before


def _compact(v: np.ndarray) -> np.ndarray | int:
    """A scalar when every value is the same (merge, erase), the array otherwise."""
    if v.size and (v == v.flat[0]).all():
        return int(v.flat[0])
    return v


class WorkingCopy:
    """The labels being corrected, the operations on them, and their undo/redo stacks.

    Parameters
    ----------
    labels : numpy.ndarray
        (T, Z, Y, X) integer labels, writable; edited in place (the whole copy).
    original : array-like, optional
        (T, Z, Y, X) labels of the segmentation (``<stem>_labels``), for restore and for
        the sub-labels of temporal merges.
    intensity : array-like, optional
        (T, Z, Y, X) intensity for the split's watershed and for live statistics.
    spacing_um : sequence of float
        Voxel size (z, y, x) in µm.
    offset_zyx : sequence of int
        Crop offset of the arrays in the raw frame (voxels), recorded in the header.
    journal : Journal, optional
        Every op is appended to it as it is applied.
    next_id : int, optional
        At least this for the next new ID (a previous session's high-water mark).
    prior : sequence of Operation, optional
        Operations of earlier sessions already applied to ``labels``; they are kept in
        :attr:`operations` (so a save lists them) but cannot be undone.

    Attributes
    ----------
    history : list of Operation
        Applied edit ops of this session, oldest first (the undo stack).
    redo_stack : list of Operation
        Undone ops, the next one to redo last.
    operations : list of Operation
        Everything recorded, in order (prior sessions, edits, undo/redo, reviews).
    listeners : list of callable
        Called with each recorded op (the dock refreshes ``op.changed_boxes``).
    dirty : dict of int to set of int
        Label IDs changed per timepoint since the last :func:`save_session`.
    n_changes, changed_at : int, dict
        A counter of label-changing steps and, per (t, label), its value when that label
        last changed (caches compare against it).
    """

    def __init__(
        self,
        labels: np.ndarray,
        original: Any = None,
        intensity: Any = None,
        spacing_um: Sequence[float] = (1.0, 1.0, 1.0),
        offset_zyx: Sequence[int] = (0, 0, 0),
        journal: Any = None,
        *,
        next_id: int | None = None,
        prior: Sequence[Operation] | None = None,
    ) -> None:
        if not isinstance(labels, np.ndarray) or labels.ndim != 4:
            raise ParameterError("labels: expected a (T, Z, Y, X) numpy array, got "
                                 f"{getattr(labels, 'shape', type(labels))}")
        if labels.dtype.kind not in "ui":
            raise ParameterError(f"labels: expected an integer array, got {labels.dtype}")
        if not labels.flags.writeable:
            raise ParameterError("labels: the working copy must be writable")
        for name, a in (("original", original), ("intensity", intensity)):
            if a is not None and tuple(a.shape) != labels.shape:
                raise ParameterError(f"{name}: shape {tuple(a.shape)} differs from the labels' "
                                     f"{labels.shape}")
        self.labels = labels
        self.original = original
        self.intensity = intensity
        self.spacing_um = tuple(float(v) for v in spacing_um)
        self.offset_zyx = tuple(int(v) for v in offset_zyx)
        self.journal = journal
        self.operations: list[Operation] = list(prior or [])
        self.history: list[Operation] = []
        self.redo_stack: list[Operation] = []
        self.listeners: list[Callable[[Operation], None]] = []
        self.dirty: dict[int, set[int]] = {}
        self.n_changes = 0  # counts label changes; changed_at[(t, id)] = count when last changed
        self.changed_at: dict[tuple[int, int], int] = {}
        self._boxes: dict[int, dict[int, Box]] = {}
        self._orig_boxes: dict[int, dict[int, Box]] = {}
        self._deltas: dict[int, list[_Delta]] = {}
        hi = int(labels.max()) if labels.size else 0
        for op in self.operations:
            hi = max([hi, *op.created])
        self.next_id = max(hi + 1, int(next_id or 1))
        self._next_idx = max((op.created_idx for op in self.operations), default=-1) + 1

    # ------------------------------------------------------------------ boxes
    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(T, Z, Y, X)."""
        return self.labels.shape  # type: ignore[return-value]

    def _boxes_at(self, t: int) -> dict[int, Box]:
        b = self._boxes.get(t)
        if b is None:
            from .label_boxes import label_boxes

            b = label_boxes(np.asarray(self.labels[t]))
            self._boxes[t] = b
        return b

    def bbox(self, t: int, label: int) -> Box | None:
        """Bounding box ``(z0, z1, y0, y1, x0, x1)`` of ``label`` at ``t`` (None if absent)."""
        self._check_t(t)
        return self._boxes_at(t).get(int(label))

    def labels_at(self, t: int) -> list[int]:
        """Label IDs present at ``t``, sorted."""
        self._check_t(t)
        return sorted(self._boxes_at(t))

    def _orig_bbox(self, t: int, label: int) -> Box | None:
        if self.original is None:
            return None
        boxes = self._orig_boxes.get(t)
        if boxes is None:
            from .label_boxes import label_boxes

            boxes = label_boxes(np.asarray(self.original[t]))
            self._orig_boxes[t] = boxes
        return boxes.get(int(label))

    def _refresh(self, t: int, ids: Iterable[int], region: Box) -> None:
        """Make the boxes of ``ids`` exact after a change confined to ``region``."""
        boxes = self._boxes_at(t)
        ids = [int(v) for v in ids if int(v) != 0]
        if len(ids) > 4:  # many labels (a machine relabel): one find_objects over them all
            from scipy import ndimage as ndi

            reg: Box | None = region
            for lab in ids:
                reg = _union(reg, boxes.get(lab))
            assert reg is not None
            o = (reg[0], reg[2], reg[4])
            found = ndi.find_objects(self.labels[t][_slices(reg)], max_label=max(ids))
            for lab in ids:
                sl = found[lab - 1] if lab <= len(found) else None
                if sl is None:
                    boxes.pop(lab, None)
                else:
                    boxes[lab] = tuple(v for i in range(3) for v in
                                       (o[i] + sl[i].start, o[i] + sl[i].stop))
            return
        for lab in ids:
            reg = _union(boxes.get(lab), region)
            assert reg is not None
            nb = _tight(self.labels[t][_slices(reg)] == lab, reg)
            if nb is None:
                boxes.pop(lab, None)
            else:
                boxes[lab] = nb

    def _check_t(self, t: int) -> None:
        if not 0 <= int(t) < self.shape[0]:
            raise ParameterError(f"t={t}: outside the {self.shape[0]} timepoints")

    # ------------------------------------------------------------------ writing
    def _write(self, t: int, box: Box, mask: np.ndarray, after: np.ndarray | int,
               ids: Iterable[int] | None = None) -> _Delta | None:
        """Set ``labels[t][box][mask] = after`` and return the delta (None if nothing
        changed)."""
        crop = self.labels[t][_slices(box)]
        before = crop[mask]
        new = np.broadcast_to(np.asarray(after, dtype=crop.dtype), before.shape)
        diff = before != new
        if not diff.any():
            return None
        if not diff.all():  # keep only the voxels that really change
            mask = mask.copy()
            mask[mask] = diff
            before, new = before[diff], new[diff]
        crop[mask] = new
        b, a = _compact(before), _compact(np.array(new))
        if ids is None:
            ids = set(np.unique(before).tolist()) | set(np.unique(new).tolist())
        return _Delta(t, box, np.packbits(mask.ravel()), b, a, frozenset(int(i) for i in ids))

    def _alloc(self, op: Operation, k: int) -> int:
        """The k-th new ID of ``op``: the recorded one on replay, else the next free one."""
        if k < len(op.created):
            nid = int(op.created[k])
        else:
            nid = self.next_id
            op.created.append(nid)
        self.next_id = max(self.next_id, nid + 1)
        if nid > np.iinfo(self.labels.dtype).max:
            raise ParameterError(f"label ID {nid} does not fit in {self.labels.dtype}")
        return nid

    def _commit(self, op: Operation, deltas: list[_Delta], *, replay: bool = False) -> Operation:
        if not replay or op.created_idx < 0:
            op.created_idx = self._next_idx
        self._next_idx = max(self._next_idx, op.created_idx + 1)
        if not op.time:
            op.time = now_iso()
        op.changed_boxes = [(d.t, *d.box) for d in deltas]
        self._mark(deltas)
        if op.type in EDIT_TYPES:
            self._deltas[op.created_idx] = deltas
            self.history.append(op)
            self.redo_stack.clear()
        self.operations.append(op)
        if self.journal is not None:
            self.journal.append(op)
        for fn in list(self.listeners):
            fn(op)
        return op

    # ------------------------------------------------------------------ helpers
    def _points(self, t: int, pts: Any, z: int | None = None) -> np.ndarray:
        """(N, 3) in-bounds (z, y, x) of the (t, z, y, x) points at ``t`` (plane ``z``)."""
        p = np.asarray(pts, dtype=np.int64).reshape(-1, 4)
        _, Z, Y, X = self.shape
        ok = ((p[:, 0] == t) & (p[:, 1] >= 0) & (p[:, 1] < Z) & (p[:, 2] >= 0) & (p[:, 2] < Y)
              & (p[:, 3] >= 0) & (p[:, 3] < X))
        if z is not None:
            ok &= p[:, 1] == z
        return p[ok, 1:]

    def _touched(self, t: int, stroke: Any, z_lock: bool) -> tuple[list[int], int | None,
                                                                    list[list[int]]]:
        self._check_t(t)
        p = np.asarray(stroke, dtype=np.int64).reshape(-1, 4)
        z = int(p[0, 1]) if (z_lock and len(p)) else None
        zyx = self._points(t, p, z)
        vals = self.labels[t][tuple(zyx.T)] if len(zyx) else np.zeros(0, self.labels.dtype)
        ids = sorted(int(v) for v in np.unique(vals) if v != 0)
        inside = self._points(t, p)  # the stroke as recorded: its voxels inside the array
        rec = np.column_stack([np.full(len(inside), t), inside]).astype(np.int64)
        return ids, z, rec.tolist()

    def _adjacent_pairs(self, t: int, ids: Sequence[int], z: int | None) -> list[list[int]]:
        """Pairs of ``ids`` sharing a face (6-connectivity; within plane ``z`` if set)."""
        boxes = self._boxes_at(t)
        reg = None
        for lab in ids:
            reg = _union(reg, boxes.get(lab))
        if reg is None:
            return []
        _, Z, Y, X = self.shape
        reg = (max(reg[0] - 1, 0), min(reg[1] + 1, Z), max(reg[2] - 1, 0), min(reg[3] + 1, Y),
               max(reg[4] - 1, 0), min(reg[5] + 1, X))
        if z is not None:
            reg = (z, z + 1, *reg[2:])
        crop = self.labels[t][_slices(reg)]
        idarr = np.asarray(ids, dtype=crop.dtype)
        found: set[tuple[int, int]] = set()
        for ax in range(3):
            if crop.shape[ax] < 2:
                continue
            v = np.moveaxis(crop, ax, 0)
            lo, hi = v[:-1], v[1:]
            d = lo != hi
            a, b = lo[d], hi[d]
            sel = np.isin(a, idarr) & np.isin(b, idarr)
            if sel.any():
                pr = np.unique(np.sort(np.column_stack([a[sel], b[sel]]), axis=1), axis=0)
                found.update((int(x), int(y)) for x, y in pr)
        return [list(p) for p in sorted(found)]

    def _label_crop_box(self, t: int, label: int, z: int | None) -> Box | None:
        b = self.bbox(t, label)
        return None if b is None else _plane(b, z)

    # ------------------------------------------------------------------ public ops
    def merge(self, t: int, stroke: Any, *, z_lock: bool = False,
              source: str = "user") -> Operation | None:
        """Labels under the stroke become one (the smallest ID keeps its ID).

        Parameters
        ----------
        t : int
            Timepoint.
        stroke : array-like
            (N, 4) (t, z, y, x) voxels touched (brush footprint applied); points of other
            timepoints or outside the array are ignored.
        z_lock : bool
            Act only within the plane of the first stroke point.
        source : str
            ``"user"`` or ``"model"``.

        Returns
        -------
        Operation or None
            The recorded op (``labels``, ``pairs``, ``changed_boxes``), or None when fewer
            than two labels were touched (nothing recorded).
        """
        ids, z, pts = self._touched(t, stroke, z_lock)
        if len(ids) < 2:
            return None
        op = Operation("merge", source, int(t), labels=ids, stroke=pts, z_lock=bool(z_lock),
                       z=z)
        return self._commit(op, self._apply_merge(op))

    def _apply_merge(self, op: Operation) -> list[_Delta]:
        t, z = int(op.t), op.z if op.z_lock else None  # type: ignore[arg-type]
        ids = [int(v) for v in op.labels]
        op.pairs = self._adjacent_pairs(t, ids, z)
        keep = min(ids)
        boxes = self._boxes_at(t)
        deltas: list[_Delta] = []
        new_box = boxes.get(keep)
        for lab in ids:
            if lab == keep:
                continue
            box = self._label_crop_box(t, lab, z)
            if box is None:
                continue
            m = self.labels[t][_slices(box)] == lab
            d = self._write(t, box, m, keep, ids=(lab, keep))
            if d is not None:
                deltas.append(d)
                new_box = _union(new_box, box)
        if z is None:  # whole labels moved: the boxes are known
            for lab in ids:
                if lab != keep:
                    boxes.pop(lab, None)
            if new_box is not None:
                boxes[keep] = new_box
        else:
            for d in deltas:
                self._refresh(t, d.ids, d.box)
        return deltas

    def erase(self, t: int, stroke: Any, *, z_lock: bool = False,
              source: str = "user") -> Operation | None:
        """Labels under the stroke are removed (set to 0). Returns None if none touched."""
        ids, z, pts = self._touched(t, stroke, z_lock)
        if not ids:
            return None
        op = Operation("erase", source, int(t), labels=ids, stroke=pts, z_lock=bool(z_lock),
                       z=z)
        return self._commit(op, self._apply_erase(op))

    def _apply_erase(self, op: Operation) -> list[_Delta]:
        t, z = int(op.t), op.z if op.z_lock else None  # type: ignore[arg-type]
        boxes = self._boxes_at(t)
        deltas = []
        for lab in (int(v) for v in op.labels):
            box = self._label_crop_box(t, lab, z)
            if box is None:
                continue
            d = self._write(t, box, self.labels[t][_slices(box)] == lab, 0, ids=(lab,))
            if d is None:
                continue
            deltas.append(d)
            if z is None:
                boxes.pop(lab, None)
            else:
                self._refresh(t, (lab,), box)
        return deltas

    def split(self, t: int, seeds: Sequence[Any], *, z_lock: bool = False,
              source: str = "user", boundary: np.ndarray | None = None,
              weights_id: str | None = None) -> Operation:
        """Divide one label between seed strokes (seeded watershed).

        Parameters
        ----------
        t : int
            Timepoint.
        seeds : sequence of array-like
            One (Ni, 4) (t, z, y, x) voxel list per part (at least two), on one label;
            points on other labels or background are ignored.
        z_lock : bool
            Split only within the plane of the first seed point.
        source : str
            ``"user"`` or ``"model"``.
        boundary : numpy.ndarray, optional
            Float elevation over the label's box (or its plane when z-locked), high on the
            boundary, to use instead of intensity + distance (a learned boundary).
        weights_id : str, optional
            Id of the model weights that produced ``boundary``.

        Returns
        -------
        Operation
            ``labels`` = [the label], ``created`` = new IDs of parts 2.., ``mask`` = the
            part index per voxel of the box (so replay is exact without the intensity).

        Raises
        ------
        ParameterError
            Fewer than two parts with seeds on the label, or seeds on background only.
        """
        self._check_t(t)
        if len(seeds) < 2:
            raise ParameterError("split: needs seed strokes on at least two parts")
        arrs = [np.asarray(s, dtype=np.int64).reshape(-1, 4) for s in seeds]
        first = next((a for a in arrs if len(a)), None)
        z = int(first[0, 1]) if (z_lock and first is not None) else None
        pts = [self._points(t, a, z) for a in arrs]
        vals = np.concatenate([self.labels[t][tuple(p.T)] for p in pts if len(p)] or
                              [np.zeros(0, self.labels.dtype)])
        vals = vals[vals != 0]
        if not len(vals):
            raise ParameterError("split: the seeds touch no label")
        u, c = np.unique(vals, return_counts=True)
        lab = int(u[np.argmax(c)])
        parts = [p[self.labels[t][tuple(p.T)] == lab] if len(p) else p for p in pts]
        if sum(1 for p in parts if len(p)) < 2 or any(len(p) == 0 for p in parts):
            raise ParameterError(f"split: every seed stroke must touch label {lab}")
        box = self._label_crop_box(t, lab, z)
        assert box is not None
        crop = self.labels[t][_slices(box)]
        mask = crop == lab
        markers = np.zeros(crop.shape, np.int32)
        origin = np.array([box[0], box[2], box[4]])
        for i, p in enumerate(parts):
            markers[tuple((p - origin).T)] = i + 1
        if boundary is not None:
            elev = np.asarray(boundary, dtype=np.float32)
            if z is not None and elev.shape != crop.shape and elev.ndim == 3:
                full = self.bbox(t, lab)
                assert full is not None
                elev = elev[z - full[0]: z - full[0] + 1]
            if elev.shape != crop.shape:
                raise ParameterError(f"split: boundary shape {elev.shape} differs from the "
                                     f"label's box {crop.shape}")
        else:
            elev = self._split_elevation(t, box, mask)
        from skimage.segmentation import watershed

        res = watershed(elev, markers, mask=mask)
        res[mask & (res == 0)] = 1  # parts no seed reaches stay with the label
        res[~mask] = 0
        op = Operation("split", source, int(t), labels=[lab],
                       seeds=[np.column_stack([np.full(len(q), t), q]).astype(np.int64)
                              .tolist() for q in (self._points(t, a) for a in arrs)],
                       z_lock=bool(z_lock), z=z,
                       mask=encode_array(res.astype(np.uint8), box), weights_id=weights_id)
        return self._commit(op, self._apply_split(op))

    def _split_elevation(self, t: int, box: Box, mask: np.ndarray) -> np.ndarray:
        """Low inside thick, bright parts, high at necks and dim gaps (0..1)."""
        import edt

        if mask.shape[0] == 1:  # one plane (z-lock): distance within the plane
            dist = edt.edt(np.ascontiguousarray(mask[0]), anisotropy=self.spacing_um[1:],
                           black_border=True)[None]
        else:
            dist = edt.edt(mask, anisotropy=self.spacing_um, black_border=True)
        dmax = float(dist.max()) or 1.0
        elev = 1.0 - dist / dmax
        if self.intensity is not None:
            img = crop_of(self.intensity, t, box).astype(np.float32)
            v = img[mask]
            lo, hi = float(v.min()), float(v.max())
            if hi > lo:
                elev = 0.5 * elev + 0.5 * (1.0 - (img - lo) / (hi - lo))
        return elev.astype(np.float32)

    def _apply_split(self, op: Operation) -> list[_Delta]:
        t = int(op.t)  # type: ignore[arg-type]
        lab = int(op.labels[0])
        assert op.mask is not None
        parts = decode_array(op.mask)
        box: Box = tuple(op.mask["box"])  # type: ignore[assignment]
        n = int(parts.max())
        new_ids = [self._alloc(op, k) for k in range(n - 1)]
        lut = np.zeros(n + 1, self.labels.dtype)
        lut[1] = lab
        lut[2:] = new_ids
        crop = self.labels[t][_slices(box)]
        m = (parts >= 2) & (crop == lab)
        d = self._write(t, box, m, lut[parts[m]], ids=(lab, *new_ids))
        if d is None:
            return []
        self._refresh(t, d.ids, box)
        return [d]

    def temporal_merge(self, clicks: Sequence[Sequence[int]], *,
                       source: str = "user") -> Operation | None:
        """Give the labels clicked at successive timepoints one identity (the first's ID).

        Where the first click's ID is already used at another clicked timepoint by a label
        that was not clicked there, that label gets a new ID first (recorded in
        ``mapping`` as ``[t, old, new]``).

        Parameters
        ----------
        clicks : sequence of (t, z, y, x)
            One voxel per clicked label.
        source : str
            ``"user"`` or ``"model"``.

        Returns
        -------
        Operation or None
            ``labels`` (the ID clicked at each click), ``sub_labels`` (original IDs under
            each clicked label), ``target_id``; None with fewer than two clicks.

        Raises
        ------
        ParameterError
            A click outside the array or on background.
        """
        pts = np.asarray(clicks, dtype=np.int64).reshape(-1, 4)
        if len(pts) < 2:
            return None
        ids = []
        for p in pts:
            self._check_t(int(p[0]))
            if len(self._points(int(p[0]), p[None])) == 0:
                raise ParameterError(f"temporal merge: click {p.tolist()} is outside the array")
            v = int(self.labels[p[0], p[1], p[2], p[3]])
            if v == 0:
                raise ParameterError(f"temporal merge: click {p.tolist()} is on background")
            ids.append(v)
        subs = [self._sub_labels(int(p[0]), v) for p, v in zip(pts, ids, strict=True)]
        op = Operation("temporal_merge", source, None, labels=ids, sub_labels=subs,
                       stroke=pts.tolist(), target_id=ids[0])
        return self._commit(op, self._apply_temporal(op))

    def _sub_labels(self, t: int, lab: int) -> list[int]:
        if self.original is None:
            return [lab]
        box = self.bbox(t, lab)
        assert box is not None
        m = self.labels[t][_slices(box)] == lab
        orig = crop_of(self.original, t, box)
        return sorted(int(v) for v in np.unique(orig[m]) if v != 0)

    def _apply_temporal(self, op: Operation) -> list[_Delta]:
        target = int(op.target_id if op.target_id is not None else op.labels[0])
        clicked: dict[int, set[int]] = {}
        for p, v in zip(op.stroke, op.labels, strict=True):
            clicked.setdefault(int(p[0]), set()).add(int(v))
        deltas: list[_Delta] = []
        moves: list[list[int]] = []
        k = 0
        for t in sorted(clicked):
            others = clicked[t] - {target}
            if not others:
                continue
            boxes = self._boxes_at(t)
            if target in boxes and target not in clicked[t]:
                nid = self._alloc(op, k)
                k += 1
                moves.append([t, target, nid])
                box = boxes[target]
                d = self._write(t, box, self.labels[t][_slices(box)] == target, nid,
                                ids=(target, nid))
                if d is not None:
                    deltas.append(d)
                boxes[nid] = boxes.pop(target)
            new_box = boxes.get(target)
            for lab in sorted(others):
                box = boxes.get(lab)
                if box is None:
                    continue
                d = self._write(t, box, self.labels[t][_slices(box)] == lab, target,
                                ids=(lab, target))
                if d is not None:
                    deltas.append(d)
                new_box = _union(new_box, boxes.pop(lab))
            if new_box is not None:
                boxes[target] = new_box
        op.mapping = moves
        return deltas

    def paint(self, t: int, region_box: Sequence[int], before: np.ndarray, after: np.ndarray,
              *, source: str = "user") -> Operation | None:
        """Record a paint edit of ``region_box`` (napari's own tools).

        The region may hold ``before`` (the edit is applied here) or already ``after`` (the
        viewer applied it to this very array; it is only recorded).

        Parameters
        ----------
        t : int
            Timepoint.
        region_box : sequence of int
            ``(z0, z1, y0, y1, x0, x1)`` of the edited region, whole-array voxels.
        before, after : numpy.ndarray
            Label values of the region before and after the edit.

        Returns
        -------
        Operation or None
            None when ``before`` equals ``after``.

        Raises
        ------
        ParameterError
            Shapes differ from the box, or the region holds neither ``before`` nor
            ``after``.
        """
        self._check_t(t)
        box: Box = tuple(int(v) for v in region_box)  # type: ignore[assignment]
        shape = (box[1] - box[0], box[3] - box[2], box[5] - box[4])
        before = np.asarray(before)
        after = np.asarray(after).astype(self.labels.dtype)
        if before.shape != shape or after.shape != shape:
            raise ParameterError(f"paint: before {before.shape} / after {after.shape} differ "
                                 f"from the region {shape}")
        ch = before != after
        if not ch.any():
            return None
        crop = self.labels[t][_slices(box)]
        if np.array_equal(crop, after):
            crop[...] = before  # undo the viewer's write; it is redone through the record
        elif not np.array_equal(crop, before):
            raise ParameterError("paint: the region holds neither 'before' nor 'after'")
        ids = sorted(int(v) for v in np.union1d(before[ch], after[ch]) if v != 0)
        created = sorted(int(v) for v in np.unique(after[ch]) if v >= self.next_id)
        op = Operation("paint", source, int(t), labels=ids, created=created, box=list(box),
                       mask=encode_array(after, box))
        return self._commit(op, self._apply_paint(op))

    def _apply_paint(self, op: Operation) -> list[_Delta]:
        t = int(op.t)  # type: ignore[arg-type]
        assert op.mask is not None
        after = decode_array(op.mask)
        box: Box = tuple(op.mask["box"])  # type: ignore[assignment]
        for c in op.created:
            self.next_id = max(self.next_id, int(c) + 1)
        crop = self.labels[t][_slices(box)]
        m = crop != after
        d = self._write(t, box, m, after[m])
        if d is None:
            return []
        self._refresh(t, d.ids, box)
        return [d]

    def restore(self, t: int, *, labels: Iterable[int] | None = None,
                box: Sequence[int] | None = None, source: str = "user") -> Operation | None:
        """Put the original segmentation back for some labels and/or a region.

        Parameters
        ----------
        t : int
            Timepoint.
        labels : iterable of int, optional
            Restore the voxels that now hold, or originally held, one of these IDs.
        box : sequence of int, optional
            ``(z0, z1, y0, y1, x0, x1)``: restore this region (limits ``labels`` to it).

        Returns
        -------
        Operation or None
            None when nothing changed.

        Raises
        ------
        ParameterError
            No original segmentation, or neither ``labels`` nor ``box`` given.
        """
        self._check_t(t)
        if self.original is None:
            raise ParameterError("restore: no original segmentation was given")
        if labels is None and box is None:
            raise ParameterError("restore: give labels, a box, or both")
        op = Operation("restore", source, int(t),
                       labels=sorted(int(v) for v in labels) if labels is not None else [],
                       box=[int(v) for v in box] if box is not None else None)
        deltas = self._apply_restore(op)
        if not deltas:
            return None
        return self._commit(op, deltas)

    def _apply_restore(self, op: Operation) -> list[_Delta]:
        t = int(op.t)  # type: ignore[arg-type]
        reg: Box | None = None
        if op.labels:
            for lab in op.labels:
                reg = _union(reg, self.bbox(t, lab))
                reg = _union(reg, self._orig_bbox(t, lab))
            if reg is None:
                return []
            if op.box is not None:
                b = op.box
                reg = (max(reg[0], b[0]), min(reg[1], b[1]), max(reg[2], b[2]),
                       min(reg[3], b[3]), max(reg[4], b[4]), min(reg[5], b[5]))
                if reg[0] >= reg[1] or reg[2] >= reg[3] or reg[4] >= reg[5]:
                    return []
        else:
            reg = tuple(int(v) for v in op.box)  # type: ignore[union-attr, assignment]
        assert reg is not None
        crop = self.labels[t][_slices(reg)]
        orig = crop_of(self.original, t, reg).astype(self.labels.dtype)
        if op.labels:
            ids = np.asarray(op.labels, dtype=crop.dtype)
            m = np.isin(crop, ids) | np.isin(orig, ids)
        else:
            m = np.ones(crop.shape, bool)
        m &= crop != orig
        if not m.any():
            return []
        self.next_id = max(self.next_id, int(orig.max()) + 1)
        d = self._write(t, reg, m, orig[m])
        if d is None:
            return []
        self._refresh(t, d.ids, reg)
        return [d]

    def relabel(self, t: int, mapping: Mapping[int, int], *, source: str = "model",
                weights_id: str | None = None) -> Operation | None:
        """Apply ``{old: new}`` to the labels of timepoint ``t`` at once (a machine op).

        ``new`` may be 0 (erase), an existing ID (merge) or a new one (recorded in
        ``created``). Returns None when nothing changed.
        """
        self._check_t(t)
        pairs = sorted((int(a), int(b)) for a, b in mapping.items() if int(a) != int(b))
        pairs = [p for p in pairs if p[0] != 0]
        if not pairs:
            return None
        created = sorted({b for _, b in pairs if b >= self.next_id})
        op = Operation("relabel", source, int(t), labels=[a for a, _ in pairs],
                       mapping=[list(p) for p in pairs], created=created,
                       weights_id=weights_id)
        deltas = self._apply_relabel(op)
        if not deltas:
            return None
        return self._commit(op, deltas)

    def _apply_relabel(self, op: Operation) -> list[_Delta]:
        """One delta per relabelled label, on its own box (a relabel of labels spread over
        the frame touches only their voxels); the boxes follow without a rescan."""
        t = int(op.t)  # type: ignore[arg-type]
        for c in op.created:
            self.next_id = max(self.next_id, int(c) + 1)
        boxes = self._boxes_at(t)
        items = [(int(a), int(b), boxes[int(a)]) for a, b in op.mapping if int(a) in boxes]
        if not items:
            return []
        # every mask before any write: a swap (a -> b, b -> a) must see the old IDs
        masks = [self.labels[t][_slices(bx)] == a for a, _, bx in items]
        deltas = []
        for (a, b, bx), m in zip(items, masks, strict=True):
            d = self._write(t, bx, m, b, ids=(a, b))
            if d is not None:
                deltas.append(d)
        if not deltas:
            return []
        moved: dict[int, Box] = {}
        sources = {a for a, _, _ in items}
        for _a, b, bx in items:  # a whole label moves: its box goes with it
            if b != 0:
                nb = _union(moved.get(b), bx)
                assert nb is not None
                moved[b] = nb
        for b in list(moved):
            if b not in sources and b in boxes:
                nb = _union(moved[b], boxes[b])
                assert nb is not None
                moved[b] = nb
        for a in sources:
            boxes.pop(a, None)
        boxes.update(moved)
        return deltas

    def mark_reviewed(self, t: int, box: Sequence[int], *, source: str = "user") -> Operation:
        """Record that the user reviewed region ``box`` (z0, z1, y0, y1, x0, x1) at ``t``."""
        self._check_t(t)
        op = Operation("review", source, int(t), box=[int(v) for v in box])
        return self._commit(op, [])

    # ------------------------------------------------------------------ undo / redo
    def _mark(self, deltas: list[_Delta]) -> None:
        """Note the labels ``deltas`` changed (``dirty`` and ``changed_at``)."""
        if not deltas:
            return
        self.n_changes += 1
        for d in deltas:
            self.dirty.setdefault(d.t, set()).update(d.ids)
            for i in d.ids:
                self.changed_at[(d.t, i)] = self.n_changes

    def _replay_deltas(self, deltas: list[_Delta], forward: bool) -> None:
        for d in (deltas if forward else reversed(deltas)):
            d.write(self.labels, forward)
        self._mark(deltas)
        for d in deltas:
            self._refresh(d.t, d.ids, d.box)

    def undo(self, *, source: str = "user") -> Operation | None:
        """Undo the last edit of this session (exact voxels). None if there is none."""
        if not self.history:
            return None
        last = self.history.pop()
        deltas = self._deltas[last.created_idx]
        self._replay_deltas(deltas, forward=False)
        self.redo_stack.append(last)
        op = Operation("undo", source, last.t, target=last.created_idx)
        self._commit(op, [])
        op.changed_boxes = [(d.t, *d.box) for d in deltas]
        return op

    def redo(self, *, source: str = "user") -> Operation | None:
        """Redo the last undone edit. None if there is none."""
        if not self.redo_stack:
            return None
        nxt = self.redo_stack.pop()
        deltas = self._deltas[nxt.created_idx]
        self._replay_deltas(deltas, forward=True)
        self.history.append(nxt)
        op = Operation("redo", source, nxt.t, target=nxt.created_idx)
        self._commit(op, [])  # not an edit: the redo stack stays
        op.changed_boxes = [(d.t, *d.box) for d in deltas]
        return op

    # ------------------------------------------------------------------ replay
    def apply(self, op: Operation) -> Operation:
        """Apply a recorded op again (replay), keeping its ``created_idx`` and new IDs.

        Raises
        ------
        ParameterError
            An undo/redo that does not match the stacks, or an unknown type.
        """
        if op.type == "undo":
            if not self.history or self.history[-1].created_idx != op.target:
                raise ParameterError(f"replay: undo of op {op.target} does not match the "
                                     "history")
            last = self.history.pop()
            self._replay_deltas(self._deltas[last.created_idx], forward=False)
            self.redo_stack.append(last)
            return self._record_only(op)
        if op.type == "redo":
            if not self.redo_stack or self.redo_stack[-1].created_idx != op.target:
                raise ParameterError(f"replay: redo of op {op.target} does not match the "
                                     "redo stack")
            nxt = self.redo_stack.pop()
            self._replay_deltas(self._deltas[nxt.created_idx], forward=True)
            self.history.append(nxt)
            return self._record_only(op)
        if op.type == "review":
            return self._record_only(op)
        fn = {"merge": self._apply_merge, "erase": self._apply_erase,
              "split": self._apply_split, "temporal_merge": self._apply_temporal,
              "paint": self._apply_paint, "restore": self._apply_restore,
              "relabel": self._apply_relabel}.get(op.type)
        if fn is None:
            raise ParameterError(f"replay: unknown operation type {op.type!r}")
        if op.t is not None:
            self._check_t(op.t)
        return self._commit(op, fn(op), replay=True)

    def _record_only(self, op: Operation) -> Operation:
        self._next_idx = max(self._next_idx, op.created_idx + 1)
        self.operations.append(op)
        if self.journal is not None:
            self.journal.append(op)
        return op
