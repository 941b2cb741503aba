"""The "Annotation dock": correct 4D labels with brushes and record every operation.

Steps B5-B7 of the manual. The dock attaches to the working Labels layer (role
``working``, opened from ``<stem>_fused.*``) and edits the *whole* working copy through
:class:`neuroglia5d.annotation.WorkingCopy` (global label IDs, all z, all t), even when the
layer shows only one XY tile; the tile on screen is refreshed from the whole copy after
each operation, so the Tiles dock's write-back never undoes one.

Keys (on the working layer, its intensity layer and the viewer) and mouse actions are
listed in :data:`HELP`. Every key press and click is echoed as a one-line status message
(green text at the bottom left of the canvas, and a line in the dock).

Recording: every operation goes to the journal ``<stem>_auto_annotations.jsonl`` (opened
when the dock attaches; operations after the last save are offered for replay), regions
looked at (tile x timepoint) are recorded as ``review`` operations, and saving (the Save
dock's button or Ctrl+S, or this dock's button) also writes ``<stem>_auto_annotations.json``
and the topology tables and pictures (:func:`neuroglia5d.annotation.save_session`).
napari's own paint, fill and erase tools stay usable on the working layer: each of their
strokes is recorded as a ``paint`` operation, and napari's own Labels history is cleared
after recording so that nothing changes the copy unrecorded.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from .annotation_mouse import MouseMixin, _ids
from .annotation_session import SessionMixin, _first_per_idx
from .render4d import render_volume, show_render
from .stats_panel import LabelStatsCache, StatsPanel
from .status_line import CanvasStatus, StatusLine
from .strokes import LayerView

#: brushes: name -> (button text, key)
BRUSHES: dict[str, tuple[str, str]] = {
    "none": ("napari tools (recorded as paint)", "N"),
    "merge": ("Merge (white)", "M"),
    "split": ("Split (seeds)", "S"),
    "erase": ("Erase", "E"),
}

#: the merged set's topology is computed once the stroke pauses this long (ms)
TOPOLOGY_DELAY_MS = 80

#: re-measuring, the stats panel and the hover features follow an edit this much later
#: (ms): after the frame that shows it
FOLLOW_UP_DELAY_MS = 30

#: after this long without a key press, click or edit (ms) the dock measures the topology
#: of every label (all timepoints) in slices of IDLE_SLICE_MS, so that saving, which
#: writes the topology tables, finds them ready
IDLE_TOPOLOGY_DELAY_MS = 1500
IDLE_SLICE_MS = 15

#: keys and mouse actions (shown in the dock and in the README)
HELP: tuple[tuple[str, str], ...] = (
    ("M / S / E / N", "merge brush (white) / split brush / erase brush / napari's own tools"),
    ("drag", "paint a stroke with the active brush (merge and erase apply on release; a "
             "split stroke adds one seed)"),
    ("Enter", "split the label under the seeds (2 or more seed strokes)"),
    ("Escape", "drop the split seeds / temporal-merge clicks collected so far"),
    ("Z", "Z-lock: brushes act only within the current z-plane (toggle)"),
    ("G", "temporal merge mode: click the same object at successive timepoints, "
          "G again gives the clicked labels one identity"),
    ("Alt + click", "4D render of the clicked object over all timepoints "
                    "(green: object, red: other labels)"),
    ("R", "restore the label under the mouse to the original segmentation"),
    ("[ / ]", "brush width - / +"),
    ("Space (hold)", "drag to move the camera while a brush is active"),
    ("Ctrl+Z / Ctrl+Shift+Z", "undo / redo our last operation"),
    ("Ctrl+S", "save the working copy, annotations and topology"),
)


class AnnotationDock(MouseMixin, SessionMixin, QWidget):
    """Brushes, Z-lock, temporal merge, 4D render, undo/redo, restore, live stats.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer (napari passes it).
    render_viewer : callable, optional
        Factory returning the viewer the 4D render is shown in (default: a new
        ``napari.Viewer`` titled "4D render", reused while it stays open).
    """

    def __init__(self, napari_viewer: Any,
                 render_viewer: Callable[[], Any] | None = None) -> None:
        super().__init__()
        self._started = False
        # napari hands plugin widgets a public-only proxy; our own code needs the viewer
        # itself (Qt parents for the key overrides, identity of its layers)
        self.viewer = getattr(napari_viewer, "__wrapped__", napari_viewer)
        self._render_factory = render_viewer
        self.render_viewer: Any = None
        self.layer: Any = None
        self.view: LayerView | None = None
        self.wc: Any = None
        self.stats: LabelStatsCache | None = None
        self.brush = "merge"
        self.z_lock = False
        self.temporal = False
        self.temporal_clicks: list[tuple[int, int, int, int]] = []
        self.split_seeds: list[np.ndarray] = []
        self.split_t: int | None = None
        self.stroke_labels: list[int] = []
        self.messages: list[str] = []
        self.pending: list[dict[str, Any]] = []
        self._reviewed: set[tuple[int, tuple[int, ...]]] = set()
        self._recording_paint = False
        self._preview_time = 0.0
        self._preview_ly: Any = None
        self._canvas_status: CanvasStatus | None = None
        self._stale: dict[int, set[int]] = {}  # labels to re-measure, per timepoint
        self._features_due: set[int] = set()  # labels whose hover features to rewrite
        self._panel_due = False
        self._stats_due = False
        self._topo_request: tuple[int, list[int]] | None = None
        self._topo_cache: dict[tuple[Any, ...], dict[str, Any]] = {}
        self._cleanup: list[Callable[[], None]] = []
        self._build_ui()
        from qtpy.QtCore import QTimer

        self._topo_timer = QTimer(self)
        self._topo_timer.setSingleShot(True)
        self._topo_timer.setInterval(TOPOLOGY_DELAY_MS)
        self._topo_timer.timeout.connect(self.flush_topology)
        self.busy: str | None = None  # another thread is changing the working copy
        self._idle_work: Any = None  # generator of (t, label) still to measure
        self.idle_done = False
        self._idle_timer = QTimer(self)
        self._idle_timer.setSingleShot(True)
        self._idle_timer.setInterval(IDLE_TOPOLOGY_DELAY_MS)
        self._idle_timer.timeout.connect(self._idle_topology_step)
        # closing the dock (which may delete it without a close event) gives keys back
        self.destroyed.connect(functools.partial(_run_all, self._cleanup))
        self.viewer.layers.events.inserted.connect(self._on_layer_inserted)
        self.viewer.layers.events.removed.connect(self._on_layer_removed)
        self._started = True
        self.attach()

    # ------------------------------------------------------------------ UI
    def _build_ui(self) -> None:
        lay = QVBoxLayout(self)
        self.layer_box = QComboBox()
        self.layer_box.setToolTip("The working copy the brushes edit (each has its own "
                                  "journal and annotations file)")
        self.layer_box.currentTextChanged.connect(self._layer_chosen)
        pick = QFormLayout()
        pick.addRow("Working copy", self.layer_box)
        lay.addLayout(pick)
        self.target = QLabel("no working copy open")
        self.target.setWordWrap(True)
        lay.addWidget(self.target)
        self.brush_group = QButtonGroup(self)
        self.brush_buttons: dict[str, QRadioButton] = {}
        row = QVBoxLayout()
        for name, (text, key) in BRUSHES.items():
            b = QRadioButton(f"{text} [{key}]")
            self.brush_group.addButton(b)
            self.brush_buttons[name] = b
            b.toggled.connect(self._brush_toggled(name))
            row.addWidget(b)
        lay.addLayout(row)
        form = QFormLayout()
        self.width_box = QSpinBox()
        self.width_box.setRange(1, 199)
        self.width_box.setValue(5)
        self.width_box.setSuffix(" px")
        self.width_box.setToolTip("Brush width in pixels of the XY plane ([ and ] change it)")
        form.addRow("Brush width", self.width_box)
        self.zlock_box = QCheckBox("Z-lock [Z]: act only within the current z-plane")
        self.zlock_box.toggled.connect(self._set_zlock)
        form.addRow(self.zlock_box)
        self.temporal_box = QCheckBox("Temporal merge [G]: click one object per timepoint")
        self.temporal_box.toggled.connect(self._set_temporal)
        form.addRow(self.temporal_box)
        self.pad_xy = QSpinBox()
        self.pad_xy.setRange(0, 1000)
        self.pad_xy.setValue(10)
        self.pad_xy.setSuffix(" px")
        self.pad_xy.setToolTip("Padding around the object's box in X and Y for the 4D render")
        self.pad_z = QSpinBox()
        self.pad_z.setRange(0, 1000)
        self.pad_z.setValue(2)
        self.pad_z.setSuffix(" planes")
        self.pad_z.setToolTip("Padding around the object's box in Z for the 4D render")
        form.addRow("4D render padding XY", self.pad_xy)
        form.addRow("4D render padding Z", self.pad_z)
        lay.addLayout(form)
        buttons = QHBoxLayout()
        for text, slot in (("Undo", self.undo), ("Redo", self.redo),
                           ("Split (Enter)", self.apply_split)):
            b = QPushButton(text)
            b.clicked.connect(lambda *_, s=slot: s())
            buttons.addWidget(b)
        lay.addLayout(buttons)
        buttons2 = QHBoxLayout()
        self.restore_label_button = QPushButton("Restore selected label at t")
        self.restore_label_button.setToolTip("Back to the original segmentation: the layer's "
                                             "selected label at the current timepoint")
        self.restore_label_button.clicked.connect(self._restore_selected)
        buttons2.addWidget(self.restore_label_button)
        self.restore_region_button = QPushButton("Restore tile at t")
        self.restore_region_button.setToolTip("Back to the original segmentation: the region "
                                              "on screen (all z) at the current timepoint")
        self.restore_region_button.clicked.connect(self.restore_region)
        buttons2.addWidget(self.restore_region_button)
        lay.addLayout(buttons2)
        self.save_button = QPushButton("Save working copy and annotations")
        self.save_button.setToolTip("Rewrite the fused copies present (else .ng5d), then the "
                                    "annotations document (the Save dock and Ctrl+S do this "
                                    "too, in the formats ticked there)")
        self.save_button.clicked.connect(lambda *_: self.save())
        lay.addWidget(self.save_button)
        self.replay_box = QWidget()
        rl = QHBoxLayout(self.replay_box)
        rl.setContentsMargins(0, 0, 0, 0)
        self.replay_label = QLabel("")
        self.replay_label.setWordWrap(True)
        rl.addWidget(self.replay_label)
        self.replay_button = QPushButton("Replay")
        self.replay_button.clicked.connect(lambda *_: self.replay_pending())
        rl.addWidget(self.replay_button)
        self.discard_button = QPushButton("Discard")
        self.discard_button.clicked.connect(lambda *_: self.discard_pending())
        rl.addWidget(self.discard_button)
        self.replay_box.setVisible(False)
        lay.addWidget(self.replay_box)
        self.panel = StatsPanel()
        lay.addWidget(self.panel)
        # a new message repaints this line only (a QLabel would re-lay out napari's window)
        self.status = StatusLine("#3c3")
        lay.addWidget(self.status)
        keys = QLabel("<b>Keys and mouse</b><br>" + "<br>".join(
            f"<b>{k}</b>: {v}" for k, v in HELP))
        keys.setWordWrap(True)
        lay.addWidget(keys)
        lay.addStretch()
        self.brush_buttons[self.brush].setChecked(True)

    def _brush_toggled(self, name: str) -> Callable[[bool], None]:
        def on(checked: bool) -> None:
            if checked and self.brush != name:
                self.set_brush(name)
        return on

    # ------------------------------------------------------------------ status
    def message(self, text: str) -> None:
        """Show a one-line status message (on the canvas and in the dock).

        Both are Qt widgets that repaint without a redraw of the scene or a re-layout
        of napari's window (see :mod:`.status_line`); napari's status bar is left to
        napari, which rewrites it on every mouse move.
        """
        self.messages.append(text)
        del self.messages[:-1000]  # the last thousand are plenty
        self.status.setText(text)
        if self._canvas_status is None and self._started:
            with contextlib.suppress(AttributeError, RuntimeError, TypeError):
                self._canvas_status = CanvasStatus(self.viewer)
        if self._canvas_status is not None:
            with contextlib.suppress(RuntimeError):  # (the canvas is being deleted)
                self._canvas_status.setText(text)
        self._postpone_idle_work()

    # ------------------------------------------------------------------ busy
    def set_busy(self, reason: str | None) -> None:
        """Hold edits while another thread changes the working copy (the learning
        panel's T applies its operations from a thread worker): our operations are
        refused, napari's painting on the layer is off, idle measurements pause.

        Parameters
        ----------
        reason : str or None
            What runs (shown when an edit is refused); None ends the hold.
        """
        self.busy = reason
        if self.layer is not None:
            with contextlib.suppress(AttributeError, TypeError):
                self.layer.editable = reason is None
        if reason is None:
            self._postpone_idle_work()
        else:
            self._idle_timer.stop()
            self.message(f"{reason}: edits wait until it ends")

    # ------------------------------------------------------------------ idle work
    def _postpone_idle_work(self) -> None:
        """The user is active: idle work waits :data:`IDLE_TOPOLOGY_DELAY_MS` again."""
        if self.wc is not None and not self.idle_done and not self.busy:
            self._idle_timer.start(IDLE_TOPOLOGY_DELAY_MS)

    def _idle_items(self) -> Any:
        assert self.wc is not None
        wc = self.wc
        T = int(wc.shape[0])
        t0 = self.current_t()
        for t in [t0] + [t for t in range(T) if t != t0]:
            for lab in wc.labels_at(t):
                yield t, lab

    def _idle_topology_step(self) -> None:
        """Measure labels' topology for :data:`IDLE_SLICE_MS`, then yield to the event
        loop (rows are cached in the working copy until the label changes)."""
        import time

        from ..annotation.session import label_topology_row

        if self.wc is None or self.idle_done or self.busy:
            return  # (set_busy(None) resumes)
        if self._idle_work is None:
            self._idle_work = self._idle_items()
        end = time.perf_counter() + IDLE_SLICE_MS / 1e3
        try:
            while time.perf_counter() < end:
                t, lab = next(self._idle_work)
                label_topology_row(self.wc, t, lab)
        except StopIteration:
            self._idle_work = None
            self.idle_done = True
            return
        self._idle_timer.start(0)

    # ------------------------------------------------------------------ attach
    def _sync_layer_box(self) -> None:
        """List the viewer's working copies, the attached one current."""
        from .save_widget import working_layers

        names = [ly.name for ly in working_layers(self.viewer)]
        self.layer_box.blockSignals(True)
        try:
            self.layer_box.clear()
            self.layer_box.addItems(names)
            if self.layer is not None and self.layer.name in names:
                self.layer_box.setCurrentText(self.layer.name)
            self.layer_box.setEnabled(len(names) > 1)
        finally:
            self.layer_box.blockSignals(False)

    def _layer_chosen(self, name: str) -> None:
        if not name or name not in self.viewer.layers:
            return
        layer = self.viewer.layers[name]
        if layer is not self.layer:
            self.attach(layer)

    def _on_layer_inserted(self, event: Any) -> None:
        self._sync_layer_box()
        if self.layer is None:
            self.attach()
        elif self.wc is not None and self.wc.intensity is None:
            img = self._image_layer()  # the intensity arrived after the labels
            if img is not None and tuple(img.data.shape) == self.wc.shape:
                self.wc.intensity = img.data
                self._bind_keys_on(img)

    def attach(self, layer: Any = None) -> bool:
        """Attach to ``layer`` (default: the first working copy in the viewer; the dock's
        "Working copy" box picks another).

        Opens the journal, loads ``*_labelStats.csv`` and offers replay of journal
        operations made after the last save. Returns whether a layer is attached.
        """
        from .save_widget import working_layers

        if layer is None:
            layers = working_layers(self.viewer)
            if not layers:
                return False
            layer = layers[0]
        if layer is self.layer:
            return True
        self.detach()
        from ..annotation import Journal, WorkingCopy, pending_operations

        self.layer = layer
        self.view = LayerView(layer)
        meta = self.view.meta
        folder, stem = Path(meta.get("folder", ".")), meta.get("stem", layer.name)
        spacing = tuple(float(v) for v in meta.get("spacing_um", layer.scale[-3:]))
        offset = tuple(int(v) for v in meta.get("offset_zyx", (0, 0, 0)))
        self.folder, self.stem = folder, stem
        self.journal_path = folder / f"{stem}_auto_annotations.jsonl"
        self.annotations_path = folder / f"{stem}_auto_annotations.json"
        prior, next_id, saved = self._saved_session()
        self.pending = _first_per_idx(pending_operations(self.journal_path, saved))
        self.wc = WorkingCopy(self.view.whole(), original=meta.get("original"),
                              intensity=self._intensity(), spacing_um=spacing,
                              offset_zyx=offset, journal=Journal(self.journal_path),
                              next_id=next_id, prior=prior)
        self.stats = LabelStatsCache(spacing, offset, folder / f"{stem}_labelStats.csv")
        _warm_up_in_background()
        layer.mouse_drag_callbacks.append(self._on_drag)
        layer.events.paint.connect(self._on_napari_paint)
        layer.events.mode.connect(self._on_mode)
        layer.events.data.connect(self._on_data)
        self.viewer.dims.events.current_step.connect(self._on_step)
        self._cleanup += [
            lambda: layer.mouse_drag_callbacks.remove(self._on_drag)
            if self._on_drag in layer.mouse_drag_callbacks else None,
            lambda: layer.events.paint.disconnect(self._on_napari_paint),
            lambda: layer.events.mode.disconnect(self._on_mode),
            lambda: layer.events.data.disconnect(self._on_data),
            lambda: self.viewer.dims.events.current_step.disconnect(self._on_step),
        ]
        self._bind_keys_on(self.viewer)
        self._bind_keys_on(layer)
        self._bind_space(layer)
        img = self._image_layer()
        if img is not None:
            self._bind_keys_on(img)
        self._install_overrides([layer] + ([img] if img is not None else []))
        self._install_save_hook()
        self.target.setText(f"Working copy: {layer.name} ({stem}, journal "
                            f"{self.journal_path.name})")
        self.set_brush(self.brush, quiet=True)
        self._sync_layer_box()
        self._mark_reviewed()
        edits = [o for o in self.pending if o.get("type") != "review"]
        if edits:
            self.replay_label.setText(f"{len(edits)} operation(s) in the journal after the "
                                      "last save: replay them?")
            self.replay_box.setVisible(True)
        else:
            self.pending = []
        self.message(f"annotation dock attached to {layer.name}")
        return True

    def detach(self) -> None:
        """Disconnect from the current layer (keys, callbacks, save hook)."""
        for fn in reversed(self._cleanup):
            with contextlib.suppress(ValueError, RuntimeError, TypeError):
                fn()
        self._cleanup.clear()  # the same list stays connected to ``destroyed``
        if "annotation stroke" in self.viewer.layers:
            self.viewer.layers.remove("annotation stroke")
        self._preview_ly = None
        if self.wc is not None and getattr(self.wc, "journal", None) is not None:
            close = getattr(self.wc.journal, "close", None)
            if close is not None:
                close()
        self._idle_timer.stop()
        self._idle_work = None
        self.idle_done = False
        self.layer = None
        self.view = None
        self.wc = None
        self._stale = {}
        self._features_due = set()

    def closeEvent(self, event: Any) -> None:
        """Give napari its keys back when the dock closes."""
        self.shutdown()
        super().closeEvent(event)

    def event(self, e: Any) -> bool:
        """napari's ``remove_dock_widget`` only unparents the dock: shut down then."""
        from qtpy.QtCore import QEvent

        if e.type() == QEvent.Type.ParentChange and self.parent() is None \
                and getattr(self, "_started", False):
            self.shutdown()
        return bool(super().event(e))

    def shutdown(self) -> None:
        """Detach and stop following the viewer's layers (the dock is gone)."""
        self.detach()
        for ev, cb in ((self.viewer.layers.events.inserted, self._on_layer_inserted),
                       (self.viewer.layers.events.removed, self._on_layer_removed)):
            with contextlib.suppress(ValueError, RuntimeError, TypeError):
                ev.disconnect(cb)
        self._started = False
        if self._canvas_status is not None:
            self._canvas_status.close()
            self._canvas_status = None

    def current_t(self) -> int:
        """The working copy's timepoint on screen (clamped to the array)."""
        if self.view is None:
            return 0
        d = self.layer.world_to_data(self.viewer.dims.point)
        T = int(self.view.whole().shape[0])
        return int(min(max(int(np.rint(d[0])), 0), T - 1))

    def _on_layer_removed(self, event: Any) -> None:
        if self.layer is not None and event.value is self.layer:
            self.detach()
            self.target.setText("no working copy open")
            self.attach()  # the next working copy, if any
        self._sync_layer_box()

    def _image_layer(self) -> Any:
        from .save_widget import intensity_for

        return intensity_for(self.viewer, self.layer) if self.layer is not None else None

    def _intensity(self) -> Any:
        assert self.view is not None
        st = self.view.meta.get("tiles")
        if st is not None:
            return st.full_intensity
        img = self._image_layer()
        return img.data if img is not None else None

    # ------------------------------------------------------------------ keys
    def _key_actions(self) -> dict[str, Callable[[], None]]:
        return {
            "m": lambda: self.set_brush("merge"),
            "s": lambda: self.set_brush("split"),
            "e": lambda: self.set_brush("erase"),
            "n": lambda: self.set_brush("none"),
            "z": self.toggle_z_lock,
            "g": self.toggle_temporal,
            "Enter": self.apply_split,
            "Escape": self.cancel,
            "r": self.restore_under_cursor,
            "[": lambda: self.set_width(self.width_box.value() - 1),
            "]": lambda: self.set_width(self.width_box.value() + 1),
        }

    def _bind_keys_on(self, target: Any) -> None:
        for key, fn in self._key_actions().items():
            target.bind_key(key, _key_cb(fn), overwrite=True)
        self._cleanup.append(lambda: [target.bind_key(k, None) for k in self._key_actions()])

    def _bind_space(self, layer: Any) -> None:
        """Space held: move the camera (our brushes keep napari's pan/zoom mode with
        mouse panning off, so napari's own hold-to-pan would not)."""
        dock = self

        def hold_to_pan(layer: Any) -> Any:
            if dock.brush == "none":
                previous = layer.mode
                if previous != "pan_zoom":
                    layer.mode = "pan_zoom"
                    yield
                    layer.mode = previous
                return
            layer.mouse_pan = True
            yield
            layer.mouse_pan = dock.brush == "none" and layer.mode == "pan_zoom"

        layer.bind_key("Space", hold_to_pan, overwrite=True)
        self._cleanup.append(lambda: layer.bind_key("Space", None))

    def _install_overrides(self, layers: list[Any]) -> None:
        from .shortcuts import KeyOverride

        for name, fn in (("neuroglia5d:undo", self.undo), ("neuroglia5d:redo", self.redo)):
            ov = KeyOverride(self.viewer, name, fn, layers=layers).install()
            self._cleanup.append(ov.uninstall)
        # Ctrl+S: our save (working copy, then annotations and topology); an open Save
        # dock takes precedence (priority 1) and writes its ticked formats plus, through
        # the save hook, the annotations
        ov = KeyOverride(self.viewer, "neuroglia5d:save", lambda: self.save()).install()
        self._cleanup.append(ov.uninstall)

    def _install_save_hook(self) -> None:
        try:
            from .save_widget import register_save_hook
        except ImportError:
            return
        remove = register_save_hook(self.viewer, self._save_hook)
        self._cleanup.append(remove)

    def _save_hook(self, viewer: Any, layer: Any) -> list[Path]:
        if layer is not self.layer:
            return []
        return self.save_annotations()

    # ------------------------------------------------------------------ modes
    def set_brush(self, name: str, quiet: bool = False) -> None:
        """Activate a brush (``merge``, ``split``, ``erase``) or napari's tools (``none``)."""
        if name not in BRUSHES:
            raise ValueError(f"unknown brush {name!r}")
        self.brush = name
        b = self.brush_buttons[name]
        if not b.isChecked():
            b.setChecked(True)
        if self.layer is not None and name != "none":
            # our brushes paint with plain drags: napari's tools off, camera panning off
            self.layer.mode = "pan_zoom"
            self.layer.mouse_pan = False
        elif self.layer is not None:
            self.layer.mouse_pan = self.layer.mode == "pan_zoom"
        if name != "split":
            self.split_seeds = []
        if self.layer is not None:
            self.viewer.layers.selection.active = self.layer  # mouse events go to it
            self._clear_preview()
        if not quiet:
            self.message(f"brush: {BRUSHES[name][0]}")

    def _on_mode(self, event: Any) -> None:
        # the user picked one of napari's tools (paint, fill, erase...): our brush yields
        if self.layer is not None and str(self.layer.mode) != "pan_zoom" and self.brush != "none":
            self.brush = "none"
            self.brush_buttons["none"].setChecked(True)
            self.message(f"napari tool '{self.layer.mode}' on the working copy "
                         "(recorded as paint operations)")

    def set_width(self, width: int) -> None:
        """Set the brush width (pixels)."""
        self.width_box.setValue(max(1, int(width)))
        self.message(f"brush width {self.width_box.value()} px")

    def toggle_z_lock(self) -> None:
        """Z key: brushes on whole 3D labels <-> within the current z-plane."""
        self.zlock_box.setChecked(not self.zlock_box.isChecked())

    def _set_zlock(self, on: bool) -> None:
        self.z_lock = bool(on)
        self.message("Z-lock ON: brushes act within the current z-plane" if on else
                     "Z-lock OFF: brushes act on whole 3D labels")

    def toggle_temporal(self) -> None:
        """G key: enter temporal merge mode, or leave it and apply the clicks."""
        self.temporal_box.setChecked(not self.temporal_box.isChecked())

    def _set_temporal(self, on: bool) -> None:
        self.temporal = bool(on)
        if on:
            self.temporal_clicks = []
            self.message("temporal merge ON: click the same object at successive timepoints, "
                         "G applies")
            return
        clicks = self.temporal_clicks
        self.temporal_clicks = []
        if len(clicks) < 2:
            self.message(f"temporal merge OFF ({len(clicks)} click(s), nothing merged)")
            return
        self._apply("temporal merge", lambda: self.wc.temporal_merge(clicks))

    def cancel(self) -> None:
        """Escape: drop split seeds and temporal clicks collected so far."""
        n = len(self.split_seeds) + len(self.temporal_clicks)
        self.split_seeds = []
        self.temporal_clicks = []
        self._clear_preview()
        self.message(f"cancelled ({n} seed(s)/click(s) dropped)")

    # ------------------------------------------------------------------ operations
    def _apply(self, what: str, fn: Callable[[], Any], quiet: bool = False) -> Any:
        from ..errors import Neuroglia5DError

        if self.wc is None:
            self.message(f"{what}: no working copy attached")
            return None
        if self.busy:
            self.message(f"{what} refused: {self.busy} (edits wait until it ends)")
            return None
        if self.pending and not what.startswith("replay"):
            self.message(f"{what} refused: first replay or discard the journal's unsaved "
                         "operations (buttons in the dock)")
            return None
        n_before = getattr(self.wc, "n_changes", None)
        try:
            op = fn()
        except (Neuroglia5DError, ValueError) as e:
            self.message(f"{what} refused: {e}")
            return None
        if op is None:
            self.message(f"{what}: nothing to do")
            return None
        self._after_op(op, n_before)
        if not quiet:
            self.message(describe(op))
        return op

    def after_operation(self, op: Any) -> None:
        """Show an operation applied to :attr:`wc` from outside the dock (e.g. the
        learning panel's machine operations): tile refresh, redraw, live statistics."""
        self._after_op(op)

    def _after_op(self, op: Any, n_before: int | None = None) -> None:
        from qtpy.QtCore import QTimer

        boxes = list(getattr(op, "changed_boxes", None) or [])
        assert self.view is not None and self.stats is not None
        if boxes:
            self.view.refresh(boxes, shown=self._shown())
        self.idle_done = False  # (the changed labels' topology is measured again)
        self._idle_work = None
        self._postpone_idle_work()
        # the changed labels' measurements, the stats panel and the layer's hover
        # features follow in the frame after the edit (the edit is drawn first)
        for t, ids in self._changed_labels(op, boxes, n_before).items():
            self._stale.setdefault(int(t), set()).update(int(i) for i in ids)
        self._panel_due = bool(self.stroke_labels)
        if (self._stale or self._panel_due) and not self._stats_due:
            self._stats_due = True
            QTimer.singleShot(FOLLOW_UP_DELAY_MS, self.flush_stats)

    def flush_stats(self) -> None:
        """Re-measure the labels edits changed (all timepoints), show the stroke's labels
        in the stats panel, then refresh the hover features of the working layer
        (napari's status bar shows them under the mouse)."""
        self._stats_due = False
        if self.wc is None:
            self._stale = {}
            return
        for t in sorted(self._stale):
            self._flush_stats_at(t)
        if self._panel_due and self.stroke_labels:
            t = self.current_t()
            self._show_stats(t, [i for i in self.stroke_labels if self.wc.bbox(t, i)])
        self._panel_due = False
        feats, self._features_due = self._features_due, set()
        if feats:
            self._refresh_features(feats)

    def _flush_stats_at(self, t: int) -> None:
        ids = self._stale.pop(int(t), None)
        if ids:
            self._update_stats(int(t), ids)
            self._features_due |= ids

    def _refresh_features(self, labels: set[int]) -> None:
        """Rewrite the hover-feature rows of ``labels`` from the live measurements
        (aggregated over timepoints as the reader does from ``*_labelStats.csv``)."""
        if self.layer is None or self.stats is None:
            return
        feats = getattr(self.layer, "features", None)
        if feats is None or "index" not in getattr(feats, "columns", ()):
            return
        import pandas as pd

        from ..processing.stats import STATS_COLUMNS
        from .reader import features_of_table

        rows = [r for t_rows in self.stats.rows.values()
                for lab, r in t_rows.items() if lab in labels]
        tb = {c: np.array([r.get(c, np.nan) for r in rows]) for c in STATS_COLUMNS}
        tb["label"], tb["t"] = tb["label"].astype(np.int64), tb["t"].astype(np.int64)
        new = features_of_table(tb) if rows else None
        keep = feats[~feats["index"].isin(list(labels))]
        if new is not None:
            keep = pd.concat([keep, pd.DataFrame(new)[list(feats.columns)]],
                             ignore_index=True)
        self.layer.features = keep.reset_index(drop=True)

    def _shown(self) -> tuple[int, int | None]:
        """(t, z) on screen; z None in a 3D view."""
        if self.viewer.dims.ndisplay != 2:
            return self.current_t(), None
        d = self.layer.world_to_data(self.viewer.dims.point)
        return self.current_t(), int(np.rint(d[1]))

    def _changed_labels(self, op: Any, boxes: list[Any],
                        n_before: int | None) -> dict[int, set[int]]:
        """Labels whose voxels the op changed, per timepoint (the core's change stamps;
        every label in the changed boxes when they are not available)."""
        stamps = getattr(self.wc, "changed_at", None)
        if n_before is None or stamps is None:
            return _touched(op, boxes, self.view.whole())  # type: ignore[union-attr]
        out: dict[int, set[int]] = {}
        for (t, i), n in stamps.items():
            if n > n_before:
                out.setdefault(int(t), set()).add(int(i))
        return out

    def _update_stats(self, t: int, ids: Any) -> None:
        """Re-measure labels; a failure to measure never undoes or blocks an edit."""
        assert self.stats is not None
        try:
            self.stats.update(self.wc, t, ids)
        except ValueError as e:  # (reported in the status line, the edit stands)
            self.message(f"live statistics not updated at t={t}: {e}")

    def _show_stats(self, t: int, ids: Sequence[int], topology: bool = True) -> None:
        assert self.stats is not None and self.wc is not None
        if int(t) in self._stale and self._stale[int(t)] & {int(i) for i in ids}:
            self._flush_stats_at(t)
        missing = [i for i in ids if self.stats.get(t, i) is None]
        if missing:
            self._update_stats(t, missing)
        self.panel.show_labels(t, ids, self.stats)
        if topology:
            # the merged set's topology (a skeleton) waits for the stroke to pause
            self._topo_request = (int(t), [int(i) for i in ids])
            self._topo_timer.start()

    def flush_topology(self) -> None:
        """Compute the requested merged-set topology now (the timer does it otherwise)."""
        from ..annotation import merged_topology

        self._topo_timer.stop()
        req, self._topo_request = self._topo_request, None
        if req is None or self.wc is None:
            return
        t, ids = req
        key = self._union_key(t, ids)
        if key is None:
            self.panel.show_topology(None)
            return
        topo = self._topo_cache.get(key)
        if topo is None:  # (a merge or its undo leaves the union, and its topology, as is)
            topo = merged_topology(self.wc, t, ids)
            if len(self._topo_cache) > 256:
                self._topo_cache.clear()
            self._topo_cache[key] = topo
        self.panel.show_topology(topo)

    def _union_key(self, t: int, ids: Sequence[int]) -> tuple[Any, ...] | None:
        """Identity of the voxels of the union of ``ids`` at ``t`` (box and digest)."""
        import hashlib

        assert self.wc is not None
        boxes = [b for b in (self.wc.bbox(t, i) for i in ids) if b is not None]
        if not boxes:
            return None
        b = np.array(boxes)
        box = (int(b[:, 0].min()), int(b[:, 1].max()), int(b[:, 2].min()),
               int(b[:, 3].max()), int(b[:, 4].min()), int(b[:, 5].max()))
        crop = self.wc.labels[t, box[0]:box[1], box[2]:box[3], box[4]:box[5]]
        mask = np.isin(crop, np.asarray(ids, dtype=crop.dtype))
        return (t, box, hashlib.blake2b(np.packbits(mask).tobytes(), digest_size=16).digest())

    def undo(self) -> None:
        """Undo our last operation (Ctrl+Z)."""
        if self.wc is None:
            self.message("undo: no working copy attached")
            return
        if not self.wc.history:
            self.message("undo: nothing to undo")
            return
        self._apply("undo", self.wc.undo)

    def redo(self) -> None:
        """Redo the last undone operation (Ctrl+Shift+Z)."""
        if self.wc is None:
            self.message("redo: no working copy attached")
            return
        if not self.wc.redo_stack:
            self.message("redo: nothing to redo")
            return
        self._apply("redo", self.wc.redo)

    def restore_label(self, t: int, label: int) -> Any:
        """Restore one label at timepoint ``t`` to the original segmentation."""
        return self._apply("restore", lambda: self.wc.restore(t, labels=[int(label)]))

    def _restore_selected(self) -> None:
        if self.layer is None:
            self.message("restore: no working copy attached")
            return
        self.restore_label(self.current_t(), int(self.layer.selected_label))

    def restore_under_cursor(self) -> None:
        """R key: restore the label under the mouse cursor."""
        if self.view is None:
            self.message("restore: no working copy attached")
            return
        pos = self.view.world_to_voxel(self.viewer.cursor.position)
        if not self.view.inside(pos) or int(self.view.whole()[pos]) == 0:
            self.message(f"restore: no label under the cursor at {pos}")
            return
        self.restore_label(pos[0], int(self.view.whole()[pos]))

    def restore_region(self) -> Any:
        """Restore the region on screen (all z) at the current timepoint."""
        if self.view is None:
            self.message("restore: no working copy attached")
            return None
        t = self.current_t()
        box = self.view.tile_box()
        return self._apply("restore", lambda: self.wc.restore(t, box=box))

    # ------------------------------------------------------------------ napari's tools
    def _on_napari_paint(self, event: Any) -> None:
        """Record a stroke of napari's own paint/fill/erase tools as ``paint`` operations."""
        if self.view is None or self.wc is None or self._recording_paint:
            return
        self._recording_paint = True
        try:
            edits = self.view.paint_item_boxes(event.value)
            if self.pending:  # not recorded in order yet: take the edit back
                whole = self.view.whole()
                for box, t, before, _ in edits:
                    z0, z1, y0, y1, x0, x1 = box
                    whole[t, z0:z1, y0:y1, x0:x1] = before
                    self.view.refresh([(t, *box)])
                self.message("paint refused: first replay or discard the journal's unsaved "
                             "operations (buttons in the dock)")
                edits = []
            for box, t, before, after in edits:
                op = self.wc.paint(t, box, before, after)
                if op is None:
                    continue
                self.message(describe(op))
                assert self.stats is not None
                self._update_stats(t, set(_ids(before)) | set(_ids(after)))
            # napari's own history could change the copy unrecorded: ours replaces it
            reset = getattr(self.layer, "_reset_history", None)
            if reset is not None:
                reset()
        finally:
            self._recording_paint = False

    # ------------------------------------------------------------------ review
    def _on_step(self, event: Any = None) -> None:
        self._mark_reviewed()

    def _on_data(self, event: Any = None) -> None:
        if self.view is not None and self.wc is not None \
                and self.view.whole() is not self.wc.labels:
            self.message("the working copy was replaced: re-attaching the annotation dock")
            layer = self.layer
            self.layer = None
            self.attach(layer)
            return
        # a tile switch sets the data before the tile index: look once it is done
        from qtpy.QtCore import QTimer

        QTimer.singleShot(0, self._mark_reviewed)

    def _mark_reviewed(self) -> None:
        if self.view is None or self.wc is None or self.pending:
            return  # (held until the unsaved journal operations are replayed or discarded)
        t = self.current_t()
        box = self.view.tile_box()
        key = (t, box)
        if key in self._reviewed:
            return
        self._reviewed.add(key)
        self.wc.mark_reviewed(t, box)

    # ------------------------------------------------------------------ 4D render
    def render_4d(self, pos: tuple[int, int, int, int]) -> Any:
        """Alt+click: 4D render of the object at ``pos`` (green) with other labels red."""
        assert self.view is not None
        if not self.view.inside(pos):
            self.message(f"4D render: click outside the data at {pos}")
            return None
        whole = self.view.whole()
        lab = int(whole[pos])
        if lab == 0:
            self.message(f"4D render: no label at {pos}")
            return None
        res = render_volume(whole, lab, pad_xy=self.pad_xy.value(), pad_z=self.pad_z.value(),
                            bbox=self.wc.bbox if self.wc is not None else None)
        if res is None:
            self.message(f"4D render: label {lab} not found")
            return None
        vol, origin = res
        n_t = int(np.count_nonzero((vol == 2).reshape(vol.shape[0], -1).any(axis=1)))
        viewer = self._render_target()
        layer = show_render(viewer, vol, origin, self.stats.spacing if self.stats else
                            (1.0, 1.0, 1.0), lab, pos[0])
        self.message(f"4D render of label {lab}: box {vol.shape[1:]} (z, y, x) from "
                     f"{origin}, present at {n_t}/{vol.shape[0]} timepoints")
        return layer

    def _render_target(self) -> Any:
        v = self.render_viewer
        alive = v is not None and getattr(getattr(v, "window", None), "_qt_window", None) \
            is not None
        if not alive:
            if self._render_factory is not None:
                v = self._render_factory()
            else:
                import napari

                v = napari.Viewer(title="neuroglia5d 4D render")
            self.render_viewer = v
        return v


_WARM: list[Any] = []


def _warm_up_in_background() -> None:
    """Load the numba kernel of the label boxes off the GUI thread (once per process),
    so the first edit does not wait for numba."""
    import threading

    from ..annotation.label_boxes import warm_up

    if not _WARM:
        th = threading.Thread(target=warm_up, name="neuroglia5d-warm-up", daemon=True)
        _WARM.append(th)
        th.start()


def _run_all(fns: list[Callable[[], Any]], *_: Any) -> None:
    for fn in reversed(fns):
        with contextlib.suppress(ValueError, RuntimeError, TypeError, KeyError):
            fn()
    fns.clear()


def _key_cb(fn: Callable[[], None]) -> Callable[[Any], None]:
    def cb(_target: Any) -> None:
        fn()
    return cb


def _touched(op: Any, boxes: list[Any], whole: np.ndarray) -> dict[int, set[int]]:
    """Labels whose measurements an operation may have changed, per timepoint."""
    out: dict[int, set[int]] = {}
    for b in boxes:
        t, z0, z1, y0, y1, x0, x1 = (int(v) for v in b)
        out.setdefault(t, set()).update(_ids(whole[t, z0:z1, y0:y1, x0:x1]))
    named: set[int] = set()
    for key in ("labels", "created"):
        for v in getattr(op, key, None) or []:
            if isinstance(v, (list, tuple)):
                named.update(int(x) for x in v)
            else:
                named.add(int(v))
    for t in out:
        out[t] |= named
    return out


def describe(op: Any) -> str:
    """One-line description of a recorded operation."""
    kind = getattr(op, "type", "op")
    parts = [kind]
    t = getattr(op, "t", None)
    if t is not None:
        parts.append(f"t={t}")
    labels = getattr(op, "labels", None)
    if labels:
        parts.append(f"labels {list(labels)}")
    created = getattr(op, "created", None)
    if created:
        parts.append(f"new {list(created)}")
    if getattr(op, "z_lock", False):
        parts.append(f"Z-lock z={getattr(op, 'z', '?')}")
    idx = getattr(op, "created_idx", None)
    if idx is not None:
        parts.append(f"#{idx}")
    return " ".join(str(p) for p in parts)
