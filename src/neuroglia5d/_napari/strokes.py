"""Brush strokes on a (possibly tiled) working Labels layer, in whole-array voxels.

The working Labels layer shows either the whole working copy or one XY tile of it (see
:mod:`.tile_widget`). :class:`LayerView` hides that difference: it converts napari world
coordinates to (t, z, y, x) voxels of the *whole* array (tile offset included), refreshes
the tile on screen from the whole copy after an operation, and turns napari's own paint
history items into before/after boxes of the whole array. :class:`Stroke` collects the
voxels under a brush of a given width (a disk in the YX plane of the stroke) along a drag.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

Box = tuple[int, int, int, int, int, int]  # z0, z1, y0, y1, x0, x1 (half-open)


def disk_offsets(width: int) -> np.ndarray:
    """(K, 2) integer (dy, dx) offsets of a disk brush ``width`` pixels across."""
    width = max(1, int(width))
    r = (width - 1) / 2.0
    lo = -int(np.floor(r))
    hi = int(np.ceil(r))
    dy, dx = np.mgrid[lo:hi + 1, lo:hi + 1]
    c = (width - 1) / 2.0 + lo  # centre of the footprint relative to the click pixel
    keep = (dy - c) ** 2 + (dx - c) ** 2 <= (width / 2.0) ** 2 + 1e-9
    return np.column_stack([dy[keep], dx[keep]]).astype(np.int64)


class Stroke:
    """Voxels under one brush drag on the plane ``(t, z)``.

    Parameters
    ----------
    t, z : int
        Timepoint and plane of the first point (the stroke stays on this plane).
    shape_yx : (int, int)
        Y and X size of the whole array.
    width : int
        Brush width in pixels (diameter of the disk footprint).
    """

    def __init__(self, t: int, z: int, shape_yx: tuple[int, int], width: int) -> None:
        self.t, self.z = int(t), int(z)
        self.shape_yx = (int(shape_yx[0]), int(shape_yx[1]))
        self.mask = np.zeros(self.shape_yx, bool)
        self.offsets = disk_offsets(width)
        self.last: tuple[int, int] | None = None
        self.points: list[tuple[int, int]] = []

    def add(self, y: float, x: float) -> np.ndarray:
        """Stamp the brush from the previous point to ``(y, x)`` (whole-array pixels).

        Returns
        -------
        numpy.ndarray
            (K, 2) (y, x) pixels newly covered by this step (inside the array).
        """
        p = (int(np.rint(y)), int(np.rint(x)))
        if self.last is None:
            centres = np.array([p])
        else:
            n = max(abs(p[0] - self.last[0]), abs(p[1] - self.last[1]), 1)
            s = np.linspace(0.0, 1.0, n + 1)[1:]
            centres = np.round(np.outer(1 - s, self.last) + np.outer(s, p)).astype(np.int64)
        self.last = p
        self.points.append(p)
        pix = (centres[:, None, :] + self.offsets[None, :, :]).reshape(-1, 2)
        Y, X = self.shape_yx
        ok = (pix[:, 0] >= 0) & (pix[:, 0] < Y) & (pix[:, 1] >= 0) & (pix[:, 1] < X)
        pix = np.unique(pix[ok], axis=0)
        new = pix[~self.mask[pix[:, 0], pix[:, 1]]] if len(pix) else pix
        self.mask[new[:, 0], new[:, 1]] = True
        return new

    def voxels(self) -> np.ndarray:
        """(N, 4) int64 (t, z, y, x) voxels of the whole array covered by the stroke."""
        yx = np.argwhere(self.mask)
        n = len(yx)
        return np.column_stack([np.full(n, self.t), np.full(n, self.z), yx]).astype(np.int64)

    @property
    def empty(self) -> bool:
        """Whether no voxel inside the array was covered."""
        return not self.mask.any()


class LayerView:
    """The working Labels layer seen through the whole working copy.

    Parameters
    ----------
    layer : napari.layers.Labels
        The working layer (metadata ``neuroglia5d``; a tiled layer has ``tiles``).
    """

    def __init__(self, layer: Any) -> None:
        self.layer = layer

    @property
    def meta(self) -> dict[str, Any]:
        """The layer's ``neuroglia5d`` metadata."""
        return self.layer.metadata.setdefault("neuroglia5d", {})

    @property
    def tiles(self) -> Any:
        """The :class:`~.tile_widget.TileState` when the layer shows a tile, else None."""
        st = self.meta.get("tiles")
        return st if st is not None and getattr(st, "active", -1) >= 0 else None

    def whole(self) -> np.ndarray:
        """The whole working copy (T, Z, Y, X) that operations edit in place."""
        st = self.meta.get("tiles")
        if st is not None:
            return st.full_labels
        return np.asarray(self.layer.data)

    def tile_origin(self) -> tuple[int, int]:
        """(y0, x0) of the tile on screen within the whole array ((0, 0) untiled)."""
        st = self.tiles
        if st is None:
            return 0, 0
        tile = st.grid.tiles[st.active]
        return int(tile.y0), int(tile.x0)

    def tile_box(self) -> Box:
        """The (z0, z1, y0, y1, x0, x1) box of the whole array shown on screen."""
        shape = np.shape(self.layer.data)
        y0, x0 = self.tile_origin()
        return 0, int(shape[1]), y0, y0 + int(shape[2]), x0, x0 + int(shape[3])

    def world_to_voxel(self, position: Sequence[float]) -> tuple[int, int, int, int]:
        """World coordinates of the viewer to (t, z, y, x) voxels of the whole array."""
        d = np.asarray(self.layer.world_to_data(position), dtype=float)[-4:]
        t, z, y, x = (int(v) for v in np.rint(d))
        y0, x0 = self.tile_origin()
        return t, z, y + y0, x + x0

    def inside(self, tzyx: Sequence[int]) -> bool:
        """Whether a (t, z, y, x) voxel lies inside the whole array."""
        shape = self.whole().shape
        return all(0 <= int(v) < s for v, s in zip(tzyx, shape, strict=True))

    def refresh(self, boxes: Iterable[Sequence[int]] | None = None,
                shown: tuple[int, int | None] | None = None) -> None:
        """Copy changed regions of the whole array into the tile on screen and redraw.

        Parameters
        ----------
        boxes : iterable of (t, z0, z1, y0, y1, x0, x1), optional
            Changed boxes of the whole array (None: everything).
        shown : (t, z or None), optional
            Timepoint and plane on screen (z None in a 3D view): when no changed box
            meets them the redraw is left to napari's next slicing.
        """
        st = self.tiles
        if st is not None:
            data = self.layer.data
            whole = st.full_labels
            ty0, tx0 = self.tile_origin()
            ny, nx = data.shape[-2:]
            if boxes is None:
                data[...] = whole[:, :, ty0:ty0 + ny, tx0:tx0 + nx]
            else:
                for b in boxes:
                    t, z0, z1, y0, y1, x0, x1 = (int(v) for v in b)
                    ya, yb = max(y0, ty0), min(y1, ty0 + ny)
                    xa, xb = max(x0, tx0), min(x1, tx0 + nx)
                    if ya < yb and xa < xb:
                        data[t, z0:z1, ya - ty0:yb - ty0, xa - tx0:xb - tx0] = \
                            whole[t, z0:z1, ya:yb, xa:xb]
        if boxes is not None and shown is not None:
            t_on, z_on = shown
            hits = [b for b in boxes
                    if int(b[0]) == t_on and (z_on is None or int(b[1]) <= z_on < int(b[2]))]
            if not hits:
                return
            if z_on is not None and self._partial_refresh(t_on, z_on, hits):
                return
        # the array's shape and position are unchanged: no extent / thumbnail work
        self.layer.refresh(extent=False, thumbnail=False, highlight=False)

    def _partial_refresh(self, t: int, z: int, boxes: list[Sequence[int]]) -> bool:
        """Recolour only the changed part of the plane on screen, as napari's own paint
        does (``Labels._partial_labels_refresh``). Returns False where that is not
        possible (then the caller refreshes the whole layer)."""
        layer = self.layer
        try:
            if layer.contour != 0 or not isinstance(layer.data, np.ndarray) \
                    or tuple(layer._slice_input.displayed) != (2, 3):
                return False
            raw = layer._slice.image.raw
            view = layer._slice.image.view
            if raw.shape != layer.data.shape[-2:] or \
                    not np.shares_memory(raw, layer.data[t, z]):
                return False  # the slice on screen is not this plane of the array
            ty0, tx0 = self.tile_origin()
            ny, nx = raw.shape
            ya = max(min(int(b[3]) for b in boxes) - ty0, 0)
            yb = min(max(int(b[4]) for b in boxes) - ty0, ny)
            xa = max(min(int(b[5]) for b in boxes) - tx0, 0)
            xb = min(max(int(b[6]) for b in boxes) - tx0, nx)
            if ya >= yb or xa >= xb:
                return True  # the change is outside the tile on screen
            sub = (slice(ya, yb), slice(xa, xb))
            view[sub] = layer.colormap._data_to_texture(raw[sub])
            layer._updated_slice = None
            layer._accumulate_updated_slice((slice(t, t + 1), slice(z, z + 1), *sub))
            layer._partial_labels_refresh()
        except (AttributeError, TypeError, ValueError, IndexError):
            return False
        return True

    def paint_item_boxes(self, item: Sequence[Any]) -> list[tuple[Box, int, np.ndarray,
                                                                  np.ndarray]]:
        """Turn one napari paint history item into whole-array edits.

        Parameters
        ----------
        item : list of history atoms
            What ``layer.events.paint`` carries (``_MaskedPaintAtom`` or the legacy
            ``(indices, old_values, new_values)`` tuples), in the layer's (tile) frame.

        Returns
        -------
        list of (box, t, before, after)
            Per timepoint: the (z0, z1, y0, y1, x0, x1) box in whole-array voxels and the
            labels there before and after the edit.
        """
        data = self.layer.data
        lo = np.full(4, np.iinfo(np.int64).max)
        hi = np.full(4, -1)
        for atom in item:
            sl = _atom_slices(atom, data.shape)
            for k, s in enumerate(sl):
                lo[k] = min(lo[k], s.start)
                hi[k] = max(hi[k], s.stop)
        if hi[0] < 0:
            return []
        region = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
        after = np.array(data[region])
        before = after.copy()
        for atom in reversed(list(item)):
            if hasattr(atom, "slice_key"):
                local = _local_key(atom.slice_key, data.shape, lo)
                if atom.mask is None:
                    before[local] = atom.old_values
                else:
                    sub = before[local]
                    sub[atom.mask] = atom.old_values
            else:
                idx, old, _ = atom
                before[tuple(np.asarray(i) - int(a) for i, a in zip(idx, lo, strict=True))] = old
        y0, x0 = self.tile_origin()
        out = []
        for k, t in enumerate(range(int(lo[0]), int(hi[0]))):
            if np.array_equal(before[k], after[k]):
                continue
            box = (int(lo[1]), int(hi[1]), int(lo[2]) + y0, int(hi[2]) + y0,
                   int(lo[3]) + x0, int(hi[3]) + x0)
            out.append((box, t, before[k], after[k]))
        return out


def _local_key(key: Sequence[Any], shape: Sequence[int], lo: np.ndarray) -> tuple[Any, ...]:
    """A napari slice key (slices and ints) shifted by ``lo``, keeping its int axes."""
    full = tuple(key) + (slice(None),) * (len(shape) - len(key))
    out: list[Any] = []
    for k, n, a in zip(full, shape, lo, strict=True):
        if isinstance(k, slice):
            b, e, _ = k.indices(n)
            out.append(slice(b - int(a), e - int(a)))
        else:
            out.append(int(k) - int(a))
    return tuple(out)


def _atom_slices(atom: Any, shape: Sequence[int]) -> tuple[slice, ...]:
    """The 4D box of one napari history atom (slices with explicit bounds)."""
    if hasattr(atom, "slice_key"):
        key = tuple(atom.slice_key) + (slice(None),) * (len(shape) - len(atom.slice_key))
        out = []
        for k, n in zip(key, shape, strict=True):
            if isinstance(k, slice):
                a, b, _ = k.indices(n)
            else:
                a, b = int(k), int(k) + 1
            out.append(slice(a, b))
        return tuple(out)
    idx = atom[0]
    return tuple(slice(int(np.min(i)), int(np.max(i)) + 1) for i in idx)
