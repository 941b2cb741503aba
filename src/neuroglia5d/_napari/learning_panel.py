"""Learning panel: press T to train the correction networks and apply them.

The panel works on the annotation dock's working copy (:class:`AnnotationDock` ``.wc``):
T trains (in a thread worker, with a progress bar; napari stays responsive) every network
with enough corrections, in the order artefact, merge, split, tracking, on the operations
recorded so far; then it runs the networks on the current tile (or the whole copy) and
applies the predicted changes as machine operations (``source="model"``, undoable with the
dock's undo), and the view refreshes. A small plot shows loss and held-out accuracy per
round; the meta controller's decisions are listed. Weights, history and meta state are
saved beside the data (``<stem>_learning.pt``) after every press and can be saved and
loaded as named weight sets. The Tracks layer (with its ``graph`` of divisions) is
updated after linking.

The dock can embed the panel (``LearningPanel(viewer, dock=self)``) or call
:func:`press_t` directly; without a dock the panel looks for one among the viewer's dock
widgets.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

__all__ = ["LearningPanel", "find_annotation_dock", "press_t"]


def find_annotation_dock(viewer: Any) -> Any:
    """The viewer's annotation dock widget, if one is open."""
    try:
        from .annotation_dock import AnnotationDock
    except ImportError:
        return None
    win = getattr(viewer, "window", None)
    docks = getattr(win, "_dock_widgets", None) or {}
    for dw in list(docks.values()):
        w = dw.widget() if hasattr(dw, "widget") else dw
        if isinstance(w, AnnotationDock):
            return w
        for child in (w.findChildren(AnnotationDock) if hasattr(w, "findChildren") else []):
            return child
    return None


def press_t(panel: LearningPanel) -> Any:
    """What the T key does: train then apply (returns the worker)."""
    return panel.train_and_apply()


class LearningPanel(QWidget):
    """Train / apply the correction networks from the annotation dock's corrections.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer.
    dock : AnnotationDock, optional
        The annotation dock whose working copy is corrected (found in the viewer when
        omitted).
    """

    def __init__(self, napari_viewer: Any, dock: Any = None) -> None:
        super().__init__()
        self.viewer = getattr(napari_viewer, "__wrapped__", napari_viewer)
        self.dock = dock
        self.learner: Any = None
        self.worker: Any = None
        self.cancel_event = threading.Event()
        self.last_train: Any = None
        self.last_apply: Any = None
        self.history: list[dict[str, Any]] = []
        self.messages: list[str] = []
        self._build_ui()
        self._bind_t()

    def _bind_t(self) -> None:
        """T on the viewer and on the working layer (layer bindings take precedence)."""
        self.viewer.bind_key("t", lambda _v=None: press_t(self), overwrite=True)
        layer = getattr(self._dock(), "layer", None)
        if layer is not None and hasattr(layer, "bind_key"):
            layer.bind_key("t", lambda _l=None: press_t(self), overwrite=True)

    # ------------------------------------------------------------------ UI
    def _build_ui(self) -> None:
        lay = QVBoxLayout(self)
        row = QHBoxLayout()
        self.train_btn = QPushButton("Train + apply (T)")
        self.train_btn.clicked.connect(lambda: self.train_and_apply())
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.clicked.connect(self.cancel_event.set)
        self.cancel_btn.setEnabled(False)
        row.addWidget(self.train_btn)
        row.addWidget(self.cancel_btn)
        lay.addLayout(row)
        opts = QHBoxLayout()
        opts.addWidget(QLabel("min corrections"))
        self.min_box = QSpinBox()
        self.min_box.setRange(1, 1000)
        self.min_box.setValue(5)
        opts.addWidget(self.min_box)
        self.scope = QComboBox()
        self.scope.addItems(["current timepoint", "all timepoints"])
        opts.addWidget(self.scope)
        self.relink = QCheckBox("relink")
        self.relink.setChecked(True)
        opts.addWidget(self.relink)
        self.divisions = QCheckBox("cells divide")
        self.divisions.setToolTip("let the linker propose divisions (off: one-to-one "
                                  "links only, as for nuclei that do not divide)")
        self.divisions.setChecked(False)
        opts.addWidget(self.divisions)
        lay.addLayout(opts)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        lay.addWidget(self.progress)
        self.status = QLabel("press T after correcting a few errors of each kind")
        self.status.setWordWrap(True)
        lay.addWidget(self.status)
        sets = QHBoxLayout()
        self.save_set_btn = QPushButton("Save weight set…")
        self.save_set_btn.clicked.connect(self._save_named_dialog)
        self.load_set = QComboBox()
        self.load_set.addItem("load weight set…")
        self.load_set.activated.connect(self._load_named_chosen)
        sets.addWidget(self.save_set_btn)
        sets.addWidget(self.load_set)
        lay.addLayout(sets)
        self._refresh_sets()
        self.canvas = self._make_plot()
        if self.canvas is not None:
            lay.addWidget(self.canvas)

    def _make_plot(self) -> Any:
        try:
            from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
            from matplotlib.figure import Figure
        except ImportError:  # pragma: no cover
            return None
        fig = Figure(figsize=(3.2, 2.2), tight_layout=True)
        self.ax_loss = fig.add_subplot(211)
        self.ax_acc = fig.add_subplot(212)
        return FigureCanvasQTAgg(fig)

    def message(self, text: str) -> None:
        """Show ``text`` in the panel and the viewer's status bar."""
        self.messages.append(text)
        self.status.setText(text)
        with contextlib.suppress(Exception):  # a closed viewer
            self.viewer.status = text

    # ------------------------------------------------------------------ data
    def _dock(self) -> Any:
        if self.dock is None:
            self.dock = find_annotation_dock(self.viewer)
        return self.dock

    def _weights_path(self) -> Path | None:
        d = self._dock()
        if d is None or getattr(d, "folder", None) is None:
            return None
        return Path(d.folder) / f"{d.stem}_learning.pt"

    def _ensure_learner(self) -> Any:
        from ..learning.session import Learner

        if self.learner is None:
            p = self._weights_path()
            if p is not None and p.exists():
                try:
                    self.learner = Learner.load(p)
                    self.message(f"continuing from {p.name}")
                except Exception as e:  # a damaged file: start afresh, say so
                    self.message(f"{p.name}: {e}; starting new networks")
            if self.learner is None:
                self.learner = Learner()
        self.learner.min_examples = int(self.min_box.value())
        return self.learner

    # ------------------------------------------------------------------ T
    def train_and_apply(self, *, block: bool = False) -> Any:
        """Train, then apply; in a thread worker (``block`` waits, for scripts/tests)."""
        d = self._dock()
        if d is None or getattr(d, "wc", None) is None:
            self.message("learning: open the annotation dock on a working copy first")
            return None
        if self.worker is not None:
            self.message("learning: already running")
            return self.worker
        wc = d.wc
        if wc.original is None:
            self.message("learning: the working copy has no original labels to learn from")
            return None
        from ..annotation import annotations_document, make_header

        doc = annotations_document(wc, make_header(wc))
        learner = self._ensure_learner()
        t_now = int(d.current_t()) if hasattr(d, "current_t") else 0
        t_range = (t_now, t_now) if self.scope.currentIndex() == 0 else None
        original = np.asarray(wc.original)
        intensity = wc.intensity
        relink = self.relink.isChecked() and wc.labels.shape[0] > 1
        divisions = self.divisions.isChecked()
        if relink and t_range is not None:
            t_range = (max(t_now - 1, 0), min(t_now + 1, wc.labels.shape[0] - 1))
        self.cancel_event.clear()

        def job() -> Any:
            from ..learning.datasets import corrections_from_annotations

            yield ("examples", 0.0, "collecting examples from the corrections")
            corr = corrections_from_annotations(doc, original, intensity, spec=learner.spec)
            q: queue.Queue[tuple[str, float, str]] = queue.Queue()
            out: dict[str, Any] = {}

            def train() -> None:
                try:
                    out["rep"] = learner.train(
                        corr, progress=lambda ph, f, m: q.put((ph, 0.8 * f, m)),
                        cancel=self.cancel_event)
                except Exception as e:  # handed to the worker's error signal below
                    out["error"] = e

            th = threading.Thread(target=train, daemon=True)
            th.start()
            while th.is_alive() or not q.empty():
                with contextlib.suppress(queue.Empty):
                    yield q.get(timeout=0.1)
            th.join()
            if "error" in out:
                raise out["error"]
            rep = out["rep"]
            yield ("trained", 0.8, rep.summary())
            if self.cancel_event.is_set() or not learner.models:
                return rep, None
            listeners = list(getattr(wc, "listeners", []))
            if hasattr(wc, "listeners"):
                wc.listeners.clear()  # GUI refresh happens on the main thread afterwards
            try:
                ar = learner.apply(wc, t_range=t_range, relink=relink,
                                   divisions=divisions)
            finally:
                if hasattr(wc, "listeners"):
                    wc.listeners.extend(listeners)
            return rep, ar

        return self._run(job, block)

    def _run(self, job: Any, block: bool) -> Any:
        if block:
            gen = job()
            try:
                while True:
                    self._on_progress(next(gen))
            except StopIteration as stop:
                self._on_done(stop.value)
            return None
        from napari.qt.threading import thread_worker

        worker = thread_worker(job, start_thread=False)()
        worker.yielded.connect(self._on_progress)
        worker.returned.connect(self._on_done)
        worker.errored.connect(self._on_error)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        self.train_btn.setEnabled(False)
        self.cancel_btn.setEnabled(True)
        d = self._dock()
        if d is not None and hasattr(d, "set_busy"):
            # the worker changes the working copy: no edits from the GUI meanwhile
            d.set_busy("learning (T) is running")
        worker.start()
        return worker

    def _on_progress(self, item: tuple[str, float, str]) -> None:
        _phase, frac, text = item
        self.progress.setValue(int(1000 * frac))
        self.message(text)

    def _on_error(self, e: Exception) -> None:
        self.message(f"learning failed: {e}")

    def _on_finished(self) -> None:
        d = self._dock()
        if d is not None and hasattr(d, "set_busy"):
            d.set_busy(None)
        self.worker = None
        self.train_btn.setEnabled(True)
        self.cancel_btn.setEnabled(False)

    def _on_done(self, result: tuple[Any, Any]) -> None:
        rep, ar = result
        self.last_train, self.last_apply = rep, ar
        for k, r in rep.rounds.items():
            self.history.append({"network": k, **{x: r[x] for x in ("round", "loss",
                                                                    "val_acc", "steps")}})
        self._plot()
        lines = [rep.summary()]
        if ar is not None:
            self._refresh_view(ar)
            lines.append(ar.summary())
            self._update_tracks(ar)
        p = self._weights_path()
        if p is not None and self.learner is not None and self.learner.models:
            try:
                self.learner.save(p)
                lines.append(f"saved {p.name}")
            except Exception as e:  # a read-only folder must not lose the result
                lines.append(f"could not save {p.name}: {e}")
        self.progress.setValue(1000)
        self.message("\n".join(x for x in lines if x))

    def _refresh_view(self, ar: Any) -> None:
        d = self._dock()
        after = getattr(d, "after_operation", None) or getattr(d, "_after_op", None)
        for op in ar.ops:
            if after is not None:
                after(op)
            elif getattr(d, "view", None) is not None:
                d.view.refresh(getattr(op, "changed_boxes", None) or None)

    def _update_tracks(self, ar: Any) -> None:
        from ..learning.tracking import tracks_layer_data

        d = self._dock()
        wc = d.wc
        if wc.labels.shape[0] < 2 or "track" not in (self.learner.models if self.learner
                                                      else {}):
            return
        data, graph = tracks_layer_data(wc.labels, wc.spacing_um, ar.parents)
        if not len(data):
            return
        name = "tracks (learned)"
        scale = (1.0, *wc.spacing_um)
        if name in self.viewer.layers:
            layer = self.viewer.layers[name]
            layer.data = data
            layer.graph = graph
        else:
            self.viewer.add_tracks(data, graph=graph, name=name, scale=scale)

    def _plot(self) -> None:
        if self.canvas is None:
            return
        self.ax_loss.clear()
        self.ax_acc.clear()
        for net in sorted({h["network"] for h in self.history}):
            hs = [h for h in self.history if h["network"] == net]
            x = list(range(len(hs)))
            self.ax_loss.plot(x, [h["loss"] for h in hs], marker="o", label=net)
            self.ax_acc.plot(x, [h["val_acc"] for h in hs], marker="o", label=net)
        self.ax_loss.set_ylabel("loss")
        self.ax_acc.set_ylabel("held-out acc.")
        self.ax_acc.set_xlabel("round (press of T)")
        self.ax_acc.set_ylim(0.4, 1.02)
        if self.history:
            self.ax_loss.legend(fontsize=6)
        self.canvas.draw_idle()

    # ------------------------------------------------------------------ weight sets
    def _refresh_sets(self) -> None:
        from ..learning.session import Learner

        self.load_set.clear()
        self.load_set.addItem("load weight set…")
        self.load_set.addItems(Learner.named_sets())

    def save_named(self, name: str) -> Path | None:
        """Save the current networks as the weight set ``name``."""
        if self.learner is None or not self.learner.models:
            self.message("no trained networks to save yet")
            return None
        p = self.learner.save_named(name)
        self._refresh_sets()
        self.message(f"saved weight set {name!r}")
        return p

    def load_named(self, name: str) -> None:
        """Use the weight set ``name`` (training continues from it)."""
        from ..learning.session import Learner

        self.learner = Learner.load_named(name)
        self.message(f"loaded weight set {name!r} (crop {self.learner.spec.size})")

    def _save_named_dialog(self) -> None:
        name, ok = QInputDialog.getText(self, "Save weight set", "name (e.g. sparse microglia)")
        if ok and name.strip():
            self.save_named(name.strip())

    def _load_named_chosen(self, index: int) -> None:
        if index > 0:
            self.load_named(self.load_set.itemText(index))
