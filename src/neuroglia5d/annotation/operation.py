"""One recorded editing operation, and the compact array encoding used in its JSON.

An :class:`Operation` is what the journal (``<stem>_auto_annotations.jsonl``) holds one per
line and what ``<stem>_auto_annotations.json`` lists; ``docs/annotations.schema.json`` is
its schema. Coordinates are (t, z, y, x) voxels of the whole working array; boxes are
half-open ``[z0, z1, y0, y1, x0, x1]`` in the same frame.
"""

from __future__ import annotations

import base64
import datetime as _dt
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: every operation type the schema knows
OP_TYPES: tuple[str, ...] = ("merge", "split", "erase", "temporal_merge", "paint", "restore",
                             "relabel", "undo", "redo", "review")
#: operation types that change labels and are undoable
EDIT_TYPES: frozenset[str] = frozenset(OP_TYPES) - {"undo", "redo", "review"}


def encode_array(arr: np.ndarray, box: tuple[int, ...] | list[int] | None = None) -> dict[str, Any]:
    """Encode an array as JSON: ``{"dtype", "shape", "zlib_b64", "box"?}``.

    The bytes are the array in C order, zlib-compressed (level 6) and base64-encoded.
    """
    a = np.ascontiguousarray(arr)
    d: dict[str, Any] = {"dtype": a.dtype.str, "shape": [int(v) for v in a.shape],
                         "zlib_b64": base64.b64encode(zlib.compress(a.tobytes(), 6))
                         .decode("ascii")}
    if box is not None:
        d["box"] = [int(v) for v in box]
    return d


def decode_array(d: dict[str, Any]) -> np.ndarray:
    """Inverse of :func:`encode_array` (a new, writable array)."""
    raw = zlib.decompress(base64.b64decode(d["zlib_b64"]))
    return np.frombuffer(raw, dtype=np.dtype(d["dtype"])).reshape(d["shape"]).copy()


def now_iso() -> str:
    """Current time, ISO 8601 with time zone, millisecond precision."""
    return _dt.datetime.now(_dt.UTC).astimezone().isoformat(timespec="milliseconds")


@dataclass
class Operation:
    """One recorded operation.

    Attributes
    ----------
    type : str
        One of :data:`OP_TYPES`.
    source : str
        ``"user"`` or ``"model"``.
    t : int or None
        Timepoint (None for ``temporal_merge``, ``undo``, ``redo``).
    labels : list of int
        Label IDs involved: touched by the stroke (merge/erase), the label split (split),
        the label clicked at each click (temporal_merge), restored/relabelled IDs.
    sub_labels : list of list of int
        ``temporal_merge``: the original label IDs making up each clicked label.
    pairs : list of [int, int]
        ``merge``: touched labels adjacent in 3D (6-connectivity), ``a < b``.
    stroke : list of [t, z, y, x]
        Voxels touched by the stroke (merge/erase) or the clicks (temporal_merge).
    seeds : list of list of [t, z, y, x]
        ``split``: one voxel list per part.
    z_lock : bool
        The op acted only within plane ``z``.
    z : int or None
        The plane of a z-locked op.
    created : list of int
        Label IDs this op created.
    created_idx : int
        Monotonic index of the op in the annotations (0, 1, 2, ...).
    mask : dict or None
        Compressed result (:func:`encode_array`) with its ``box``: for ``split`` the part
        index (0 = not the label, 1 = kept ID, 2.. = ``created`` in order) per voxel of the
        label's box, for ``paint`` the label values painted in ``box``.
    box : list of int or None
        ``[z0, z1, y0, y1, x0, x1]`` of a region op (paint, restore, review).
    mapping : list of [int, int]
        ``relabel``: old -> new IDs; ``temporal_merge``: ``[t, old, new]`` label moves made
        to free the target ID at a timepoint (``new`` from ``created``).
    target : int or None
        ``undo`` / ``redo``: the ``created_idx`` of the operation undone or redone.
    target_id : int or None
        ``temporal_merge``: the identity given to the clicked labels.
    weights_id : str or None
        ``source == "model"``: id of the weights that made the op.
    time : str
        ISO 8601 time the op was applied.
    changed_boxes : list of tuple
        (t, z0, z1, y0, y1, x0, x1) boxes changed (for the viewer; not saved).
    """

    type: str
    source: str = "user"
    t: int | None = None
    labels: list[int] = field(default_factory=list)
    sub_labels: list[list[int]] = field(default_factory=list)
    pairs: list[list[int]] = field(default_factory=list)
    stroke: list[list[int]] = field(default_factory=list)
    seeds: list[list[list[int]]] = field(default_factory=list)
    z_lock: bool = False
    z: int | None = None
    created: list[int] = field(default_factory=list)
    created_idx: int = -1
    mask: dict[str, Any] | None = None
    box: list[int] | None = None
    mapping: list[list[int]] = field(default_factory=list)
    target: int | None = None
    target_id: int | None = None
    weights_id: str | None = None
    time: str = ""
    changed_boxes: list[tuple[int, ...]] = field(default_factory=list, repr=False)

    _SAVED = ("type", "source", "t", "labels", "sub_labels", "pairs", "stroke", "seeds",
              "z_lock", "z", "created", "created_idx", "mask", "box", "mapping", "target",
              "target_id", "weights_id", "time")

    def to_json(self) -> dict[str, Any]:
        """The op as a JSON-ready dict (keys with empty/None values left out, except the
        always-present ``type``, ``source``, ``created_idx``, ``time``, ``z_lock``)."""
        out: dict[str, Any] = {}
        for k in self._SAVED:
            v = getattr(self, k)
            if k in ("type", "source", "created_idx", "time", "z_lock"):
                out[k] = v
            elif v is None or (isinstance(v, list) and not v):
                continue
            else:
                out[k] = v
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Operation:
        """Build an op from :meth:`to_json` output (unknown keys are ignored)."""
        kw = {k: d[k] for k in cls._SAVED if k in d}
        return cls(**kw)
