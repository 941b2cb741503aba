"""Mouse side of the annotation dock: brush strokes, split seeds, temporal-merge clicks,
Alt+click picking (2D voxel or the label under the ray in 3D) and the stroke preview.

:class:`MouseMixin` is mixed into :class:`~.annotation_dock.AnnotationDock`; it uses the
dock's state (``view``, ``wc``, ``brush``, ``split_seeds``, ...) and its ``message`` /
``_apply`` / ``_show_stats``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .strokes import Stroke

#: colour maps of the stroke preview per brush (merge white)
PREVIEW_COLOURS: dict[str, str] = {"merge": "gray", "erase": "red", "split": "cyan"}


def _has_mod(event: Any, name: str) -> bool:
    mods = getattr(event, "modifiers", None) or ()
    return any(m == name or getattr(m, "name", None) == name or str(m) == name for m in mods)


def _ids(values: np.ndarray) -> list[int]:
    u = np.unique(np.asarray(values))
    return [int(v) for v in u if v != 0]


class MouseMixin:
    """Mouse callbacks and the stroke preview of the annotation dock."""

    # provided by the dock
    view: Any
    wc: Any
    layer: Any
    viewer: Any
    brush: str
    z_lock: bool
    temporal: bool
    split_seeds: list[np.ndarray]
    split_t: int | None
    stroke_labels: list[int]
    temporal_clicks: list[tuple[int, int, int, int]]
    width_box: Any
    _preview_time: float
    _preview_ly: Any
    message: Any
    _apply: Any
    _show_stats: Any
    render_4d: Any
    current_t: Any

    def _on_drag(self, layer: Any, event: Any) -> Any:
        if event.type != "mouse_press" or self.view is None:
            return
        if getattr(event, "button", None) not in (None, 1):
            return
        if _has_mod(event, "Alt"):
            pos = self._pick(event)
            if pos is not None:
                self.render_4d(pos)
            return
        if self.temporal:
            pos = self._pick(event)
            if pos is not None:
                self.temporal_click(pos)
            return
        if self.brush != "none" and self.layer.mouse_pan:
            return  # Space held: the drag moves the camera
        if self.brush == "none":
            if self.viewer.dims.ndisplay == 2:
                where = self.view.world_to_voxel(event.position)
                self.message(f"napari {self.layer.mode} tool: click at (t, z, y, x) = {where}")
            return
        if self.viewer.dims.ndisplay != 2:
            self.message("brushes paint in the 2D view (Ctrl+Y switches back)")
            return
        pos = self.view.world_to_voxel(event.position)
        if not self.view.inside(pos):
            self.message(f"click outside the data at {pos}")
            return
        whole = self.view.whole()
        stroke = Stroke(pos[0], pos[1], whole.shape[-2:], self.width_box.value())
        self.stroke_labels = []
        self._stroke_step(stroke, pos)
        self.message(f"{self.brush} stroke started at (t, z, y, x) = {pos}")
        yield
        while event.type == "mouse_move":
            self._stroke_step(stroke, self.view.world_to_voxel(event.position))
            self._preview(stroke, self.split_seeds if self.brush == "split" else (),
                          throttle=True)
            yield
        self.finish_stroke(stroke)

    def _pick(self, event: Any) -> tuple[int, int, int, int] | None:
        """The clicked voxel (2D), or a voxel of the label under the ray (3D view)."""
        assert self.view is not None
        if self.viewer.dims.ndisplay == 2:
            pos = self.view.world_to_voxel(event.position)
            if not self.view.inside(pos):
                self.message(f"click outside the data at {pos}")
                return None
            return pos
        value = self.layer.get_value(event.position, view_direction=event.view_direction,
                                     dims_displayed=list(event.dims_displayed), world=True)
        t = self.current_t()
        box = self.wc.bbox(t, int(value)) if value else None
        if box is None:
            self.message("no label under the mouse")
            return None
        z0, _, y0, _, x0, _ = box
        crop = self.view.whole()[t, box[0]:box[1], box[2]:box[3], box[4]:box[5]]
        z, y, x = np.argwhere(crop == int(value))[0]
        return t, int(z0 + z), int(y0 + y), int(x0 + x)

    # stroke preview: a 2D image over the tile on screen, coloured like the brush
    def _preview(self, stroke: Stroke | None, seeds: Sequence[np.ndarray] = (),
                 throttle: bool = False) -> None:
        """Show the stroke (and split seeds) on the tile; ``throttle``: at most every
        50 ms (while dragging)."""
        import time

        if self.view is None:
            return
        now = time.perf_counter()
        if throttle and now - self._preview_time < 0.05:
            return
        self._preview_time = now
        y0, x0 = self.view.tile_origin()
        ny, nx = np.shape(self.layer.data)[-2:]
        layer = self._preview_layer()
        img = layer.data
        fresh = img.shape != (ny, nx)
        if fresh:
            img = np.zeros((ny, nx), np.uint8)
        else:
            img[...] = 0
        for sd in seeds:
            yy, xx = sd[:, 2] - y0, sd[:, 3] - x0
            ok = (yy >= 0) & (yy < ny) & (xx >= 0) & (xx < nx)
            img[yy[ok], xx[ok]] = 1
        if stroke is not None:
            img |= stroke.mask[y0:y0 + ny, x0:x0 + nx]
        if not img.any():
            layer.opacity = 0.0  # (cheaper than toggling visibility)
            return
        if fresh:
            layer.data = img
        else:  # same array edited in place: re-slice only
            layer.refresh(extent=False, thumbnail=False, highlight=False)
        cmap = PREVIEW_COLOURS.get(self.brush, "gray")
        if layer.colormap.name != cmap:
            layer.colormap = cmap
        tr = tuple(self.layer.translate[-2:])
        if tuple(layer.translate) != tr:
            layer.translate = tr
        if layer.opacity != 0.6:
            layer.opacity = 0.6

    def _preview_layer(self) -> Any:
        name = "annotation stroke"
        if self._preview_ly is not None and self._preview_ly in self.viewer.layers:
            return self._preview_ly
        if name in self.viewer.layers:
            self._preview_ly = self.viewer.layers[name]
            return self._preview_ly
        active = self.viewer.layers.selection.active
        layer = self.viewer.add_image(np.zeros((1, 1), np.uint8), name=name,
                                      scale=tuple(self.layer.scale[-2:]), opacity=0.6,
                                      contrast_limits=(0, 1), blending="additive",
                                      metadata={"neuroglia5d": {"role": "preview"}})
        self.viewer.layers.selection.active = active
        self._preview_ly = layer
        return layer

    def _clear_preview(self) -> None:
        seeds = self.split_seeds if self.brush == "split" else []
        if seeds:
            self._preview(None, seeds)
        elif self._preview_ly is not None and self._preview_ly.opacity != 0.0:
            self._preview_ly.opacity = 0.0

    def _stroke_step(self, stroke: Stroke, pos: tuple[int, int, int, int]) -> None:
        new = stroke.add(pos[2], pos[3])
        if self.brush != "merge" or len(new) == 0:
            return
        whole = self.view.whole()  # type: ignore[union-attr]
        under = _ids(whole[stroke.t, stroke.z, new[:, 0], new[:, 1]])
        added = [i for i in under if i not in self.stroke_labels]
        if added:
            self.stroke_labels += added
            self._show_stats(stroke.t, self.stroke_labels)

    def finish_stroke(self, stroke: Stroke) -> None:
        """Apply a finished stroke with the active brush."""
        try:
            self._finish_stroke(stroke)
        finally:
            self._clear_preview()

    def _finish_stroke(self, stroke: Stroke) -> None:
        if stroke.empty:
            self.message("stroke outside the data: nothing done")
            return
        vox = stroke.voxels()
        t = stroke.t
        whole = self.view.whole()  # type: ignore[union-attr]
        under = _ids(whole[t, stroke.z][stroke.mask])
        if self.brush == "merge":
            if len(under) < 2:
                self.message(f"merge: {len(under)} label(s) under the stroke, nothing merged")
                return
            self._apply("merge", lambda: self.wc.merge(t, vox, z_lock=self.z_lock))
        elif self.brush == "erase":
            if not under:
                self.message("erase: no label under the stroke")
                return
            self._apply("erase", lambda: self.wc.erase(t, vox, z_lock=self.z_lock))
        elif self.brush == "split":
            if self.split_seeds and self.split_t != t:
                self.split_seeds = []
            self.split_seeds.append(vox)
            self.split_t = t
            self.message(f"split seed {len(self.split_seeds)} on label(s) {under} at t={t}"
                         + (": Enter splits" if len(self.split_seeds) > 1 else
                            ": draw another seed"))

    def apply_split(self) -> None:
        """Enter: split the label under the seeds (at least two seed strokes)."""
        if len(self.split_seeds) < 2 or self.split_t is None:
            self.message(f"split needs 2 or more seed strokes ({len(self.split_seeds)} drawn)")
            return
        seeds, t = self.split_seeds, self.split_t
        self.split_seeds = []
        self._clear_preview()
        self._apply("split", lambda: self.wc.split(t, seeds, z_lock=self.z_lock))

    def temporal_click(self, pos: tuple[int, int, int, int]) -> None:
        """A click in temporal merge mode: remember the object at this timepoint."""
        if not self.view.inside(pos):  # type: ignore[union-attr]
            self.message(f"temporal merge: click outside the data at {pos}")
            return
        lab = int(self.view.whole()[pos])  # type: ignore[union-attr]
        if lab == 0:
            self.message(f"temporal merge: no label at {pos}")
            return
        self.temporal_clicks = [c for c in self.temporal_clicks if c[0] != pos[0]] + [pos]
        self.temporal_clicks.sort()
        self.message(f"temporal merge: label {lab} at t={pos[0]} "
                     f"({len(self.temporal_clicks)} timepoint(s); G applies)")
