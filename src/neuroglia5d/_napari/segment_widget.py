"""The "Segment 4D stack" dock widget: the pipeline, from napari, in a thread worker.

Every parameter of ``parameters.json`` is a field with its unit and the manual's words as
tooltip; parameters load from and save to ``parameters.json``. Run starts the same
:func:`neuroglia5d.segment` the command line calls, in a worker thread (napari stays
responsive), with a progress bar and a Cancel button; finished timepoints appear as layers
while the rest is computed, and the written working copy is opened at the end. Cancel stops
after the current timepoint and removes the partial outputs of the run.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..params import CHANNEL_SPECS, GLOBAL_SPECS, Parameters, ParamSpec

_FORMATS = ("ng5d", "ome.zarr", "tif")


class _Bridge(QObject):
    """Carries progress reports from the worker thread to the GUI thread."""

    progress = Signal(object)


class SegmentWidget(QWidget):
    """Segment 4D stack (Plugins menu)."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = getattr(napari_viewer, "__wrapped__", napari_viewer)  # plugin proxy
        self.fields: dict[str, QWidget] = {}
        self.extra: dict[str, Any] = {}  # keys of other channels, kept when saving
        self.worker: Any = None
        self.cancel_event = threading.Event()
        self.live: dict[str, Any] = {}
        self.last_result: Any = None
        self._bridge = _Bridge()
        self._bridge.progress.connect(self._on_progress)
        self._build()
        self.set_parameters(Parameters())

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        lay = QVBoxLayout(self)
        io = QGroupBox("Input and output")
        form = QFormLayout(io)
        self.input_edit = QLineEdit()
        self.input_edit.setToolTip("A TIFF hyperstack, a folder of z-stacks or of plane TIFFs, "
                                   "or a name pattern with {t} and {z}")
        form.addRow("Input", self._with_browse(self.input_edit, folder=False))
        self.dataset_type = QComboBox()
        self.dataset_type.addItems(["auto", "stacks", "planes", "hyperstack"])
        self.dataset_type.setToolTip("Dataset type (auto detects it and says what it found)")
        form.addRow("Dataset type", self.dataset_type)
        self.out_edit = QLineEdit()
        self.out_edit.setToolTip("Output folder; the outputs go to OUT/<stem>/")
        form.addRow("Output folder", self._with_browse(self.out_edit, folder=True))
        fmt_row = QHBoxLayout()
        self.format_boxes = {}
        for f in _FORMATS:
            box = QCheckBox(f".{f}")
            box.setChecked(f in ("ng5d", "tif"))
            self.format_boxes[f] = box
            fmt_row.addWidget(box)
        fmt_w = QWidget()
        fmt_w.setLayout(fmt_row)
        form.addRow("Formats", fmt_w)
        self.device = QComboBox()
        self.device.addItems(["auto", "cpu", "gpu"])
        self.device_label = QLabel(_gpu_text())
        form.addRow("Device", self.device)
        form.addRow("", self.device_label)
        lay.addWidget(io)

        box = QGroupBox("Parameters (parameters.json)")
        pform = QFormLayout(box)
        for spec in GLOBAL_SPECS + CHANNEL_SPECS:
            key = spec.key_for(1)
            w = _field_for(spec)
            label = QLabel(f"{key}" + (f" [{spec.unit}]" if spec.unit else ""))
            tip = f"{key}: {spec.help}" + (f" Unit: {spec.unit}." if spec.unit else "")
            w.setToolTip(tip)
            label.setToolTip(tip)
            pform.addRow(label, w)
            self.fields[key] = w
        row = QHBoxLayout()
        load = QPushButton("Load parameters.json…")
        load.clicked.connect(self._load_dialog)
        save = QPushButton("Save parameters.json…")
        save.clicked.connect(self._save_dialog)
        row.addWidget(load)
        row.addWidget(save)
        pform.addRow(row)
        lay.addWidget(box)

        runrow = QHBoxLayout()
        self.run_button = QPushButton("Run")
        self.run_button.clicked.connect(self.run)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        runrow.addWidget(self.run_button)
        runrow.addWidget(self.cancel_button)
        lay.addLayout(runrow)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        lay.addWidget(self.progress)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        lay.addWidget(self.status)
        lay.addStretch()

    def _with_browse(self, edit: QLineEdit, *, folder: bool) -> QWidget:
        w = QWidget()
        row = QHBoxLayout(w)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(edit)
        b = QPushButton("…")
        b.setMaximumWidth(30)

        def browse() -> None:
            if folder:
                path = QFileDialog.getExistingDirectory(self, "Choose a folder")
            else:
                path, _ = QFileDialog.getOpenFileName(self, "Choose input")
            if path:
                edit.setText(path)

        b.clicked.connect(browse)
        row.addWidget(b)
        return w

    # ------------------------------------------------------------------ parameters
    def parameters(self) -> Parameters:
        """The parameters as set in the form (plus keys of other channels, kept)."""
        values: dict[str, Any] = {}
        for key, w in self.fields.items():
            if isinstance(w, QComboBox):
                values[key] = w.currentText()
            elif isinstance(w, QSpinBox):
                values[key] = int(w.value())
            else:
                values[key] = float(w.value())  # type: ignore[attr-defined]
        values.update(self.extra)
        return Parameters.from_dict(values, source="widget")

    def set_parameters(self, p: Parameters) -> None:
        """Fill the form from parameters (keys of other channels are kept aside)."""
        d = p.to_dict(provenance={})
        for key, value in d.items():
            w = self.fields.get(key)
            if w is None:
                self.extra[key] = value
            elif isinstance(w, QComboBox):
                w.setCurrentText(str(value))
            else:
                w.setValue(value)  # type: ignore[attr-defined]

    def load_parameters(self, path: str | Path) -> None:
        """Load ``parameters.json`` into the form (unknown keys are reported)."""
        import warnings

        from ..params import load_parameters

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            p = load_parameters(path)
        self.extra = {}
        self.set_parameters(p)
        self.status.setText(f"loaded {path}" + "".join(f"; {w.message}" for w in caught))

    def save_parameters(self, path: str | Path) -> None:
        """Write the form to ``parameters.json``."""
        self.parameters().save(Path(path))
        self.status.setText(f"saved {path}")

    def _load_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load parameters", "", "JSON (*.json)")
        if path:
            self._guard(self.load_parameters, path)

    def _save_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save parameters", "parameters.json",
                                              "JSON (*.json)")
        if path:
            self._guard(self.save_parameters, path)

    def _guard(self, fn: Any, *args: Any) -> None:
        from ..errors import Neuroglia5DError

        try:
            fn(*args)
        except Neuroglia5DError as e:
            from napari.utils.notifications import show_error

            show_error(str(e))
            self.status.setText(str(e))

    # ------------------------------------------------------------------ running
    def formats(self) -> list[str]:
        """Ticked output formats."""
        return [f for f, b in self.format_boxes.items() if b.isChecked()]

    def run(self) -> Any:
        """Start the pipeline in a worker thread; returns the worker."""
        from napari.qt.threading import create_worker

        from ..errors import Neuroglia5DError
        from ..pipeline import segment

        try:
            params = self.parameters()
        except Neuroglia5DError as e:
            self.status.setText(str(e))
            return None
        src, out = self.input_edit.text().strip(), self.out_edit.text().strip()
        if not src or not out or not self.formats():
            self.status.setText("choose an input, an output folder and at least one format")
            return None
        self.cancel_event = threading.Event()
        self.live = {}
        self.last_result = None
        self.out_dir = Path(out)
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.status.setText("running…")
        self.worker = create_worker(
            segment, src, out, params, dataset_type=self.dataset_type.currentText(),
            formats=self.formats(), device=self.device.currentText(),
            progress=self._bridge.progress.emit, cancel=self.cancel_event,
            _start_thread=True,
            _connect={"returned": self._on_done, "errored": self._on_error,
                      "finished": self._on_finished})
        return self.worker

    def cancel(self) -> None:
        """Stop after the current timepoint; the run's partial outputs are removed."""
        self.cancel_event.set()
        self.status.setText("cancelling after the current timepoint…")

    def _on_progress(self, p: Any) -> None:
        if p.stage in ("timepoint", "done") and p.total:
            self.progress.setRange(0, p.total)
            self.progress.setValue(p.done)
        if p.message:
            self.status.setText(p.message.splitlines()[0])
        if p.result is not None:
            self._show_live(p.result)

    def _show_live(self, r: dict[str, Any]) -> None:
        """Put a finished timepoint into the live layers (created on the first one)."""
        from .reader import _common

        common = _common(r["spacing_um"], r["offset_zyx"])
        for kind in ("intensity", "labels"):
            name = f"{r['stem']} {kind} (segmenting)"
            layer = self.live.get(name)
            if layer is None:
                arr = np.zeros(r["shape_tzyx"], np.uint16 if kind == "intensity" else np.uint32)
                add = self.viewer.add_image if kind == "intensity" else self.viewer.add_labels
                layer = add(arr, name=name, **common)
                self.live[name] = layer
            layer.data[r["t"]] = r[kind]
            layer.refresh()

    def _on_done(self, results: list[Any]) -> None:
        self.last_result = results
        for layer in list(self.live.values()):
            if layer in self.viewer.layers:
                self.viewer.layers.remove(layer)
        self.live = {}
        for res in results:
            fused = _best_fused(res)
            if fused is not None:
                self.viewer.open(str(fused), plugin="napari-neuroglia5d")
            self.status.setText(res.summary().splitlines()[0])

    def _on_error(self, exc: BaseException) -> None:
        from ..errors import Cancelled

        if isinstance(exc, Cancelled):
            removed = _remove_partials(self.out_dir)
            self.status.setText(f"cancelled; removed {removed} partial output(s)")
        else:
            from napari.utils.notifications import show_error

            show_error(str(exc))
            self.status.setText(f"error: {exc}")
        for layer in list(self.live.values()):
            if layer in self.viewer.layers:
                self.viewer.layers.remove(layer)
        self.live = {}

    def _on_finished(self) -> None:
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)


def _field_for(spec: ParamSpec) -> QWidget:
    if spec.kind is str:
        box = QComboBox()
        box.addItems(list(spec.choices or ()))
        return box
    if spec.kind is int:
        sb = QSpinBox()
        sb.setRange(int(spec.lo or 0), int(spec.hi if spec.hi is not None else 1_000_000))
        return sb
    ds = QDoubleSpinBox()
    ds.setDecimals(3)
    lo = float(spec.lo or 0.0) + (0.001 if spec.lo_open else 0.0)
    ds.setRange(lo, float(spec.hi if spec.hi is not None else 1e6))
    ds.setSingleStep(0.1)
    return ds


def _gpu_text() -> str:
    from ..backend import gpu_memory_bytes

    mem = gpu_memory_bytes()
    if mem is None:
        return "no CUDA GPU detected: the CPU path is used"
    free, total = mem
    return f"GPU: {free / 2**30:.1f} GiB free of {total / 2**30:.1f} GiB"


def _best_fused(res: Any) -> Path | None:
    for suffix in (".ng5d", ".ome.zarr", ".ome.tif"):
        p = res.out_dir / f"{res.stem}_fused{suffix}"
        if p.exists():
            return p
    return None


def _remove_partials(out_dir: Path) -> int:
    from ..io.atomic import remove

    found = sorted(out_dir.rglob("*.partial"), key=lambda p: len(p.parts))
    n = 0
    for p in found:
        if p.exists():
            remove(p)
            n += 1
    return n
