"""The "Save working copy" dock widget: write the edited labels in the ticked formats.

The working copy (the Labels layer opened from ``<stem>_fused.*`` or made by the
segmentation) is written, with its intensity, as ``<stem>_fused.<ext>`` for every ticked
format and every format a fused copy already exists in, each atomically (``.partial`` then
rename). The original ``<stem>_labels.*`` is never written. While the dock is open, Ctrl+S
saves too: it overrides napari's own "Save Selected Layers..." binding (see
:mod:`.shortcuts`; it is listed as ``neuroglia5d:save`` in Preferences > Shortcuts) and
napari gets its binding back when the dock is closed. Other docks (the annotation dock)
add what they save through :func:`register_save_hook`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

_FORMATS = ("ng5d", "ome.zarr", "tif")

#: viewer id -> functions called with (viewer, working labels layer) after each save;
#: each returns the extra files it wrote
_SAVE_HOOKS: dict[int, list[Callable[[Any, Any], list[Path]]]] = {}


def register_save_hook(viewer: Any, hook: Callable[[Any, Any], list[Path]]) -> Callable[[], None]:
    """Call ``hook(viewer, labels_layer)`` after every save of a working copy in ``viewer``.

    Returns
    -------
    callable
        Removes the hook.
    """
    hooks = _SAVE_HOOKS.setdefault(id(viewer), [])
    hooks.append(hook)

    def remove() -> None:
        if hook in hooks:
            hooks.remove(hook)

    return remove


def working_layers(viewer: Any) -> list[Any]:
    """Labels layers that are working copies (opened by our reader or made by our widget)."""
    out = []
    for layer in viewer.layers:
        meta = getattr(layer, "metadata", {}).get("neuroglia5d", {})
        if layer.__class__.__name__ == "Labels" and meta.get("role") == "working":
            out.append(layer)
    return out


def intensity_for(viewer: Any, labels_layer: Any) -> Any:
    """The Image layer paired with a working Labels layer (same stem), or None."""
    stem = labels_layer.metadata["neuroglia5d"].get("stem")
    for layer in viewer.layers:
        if layer.__class__.__name__ == "Image" and layer.name == f"{stem} intensity":
            return layer
    return None


def save_working_copy(viewer: Any, labels_layer: Any, formats: list[str]) -> list[Path]:
    """Write ``<stem>_fused.<ext>`` for each format (never the original ``_labels`` file).

    Fused copies already present in other formats are rewritten too, so that the copy the
    reader prefers (the fastest to reload) is never an older one.
    """
    from ..io.convert import Outputs, write_outputs

    meta = labels_layer.metadata["neuroglia5d"]
    folder, stem = Path(meta["folder"]), meta["stem"]
    tiles = meta.get("tiles")
    if tiles is not None:  # a tiled working copy: the whole copy lives in the tile state
        labels = tiles.full()
        intensity = tiles.full_intensity
    else:
        labels = np.asarray(labels_layer.data)
        img = intensity_for(viewer, labels_layer)
        intensity = img.data if img is not None else None
    arrays: dict[str, Any] = {"labels": labels.astype(np.uint32, copy=False)}
    if intensity is not None:
        arrays["intensity"] = intensity
    o = Outputs(arrays, tuple(meta["spacing_um"]), tuple(meta["offset_zyx"]),  # type: ignore[arg-type]
                meta.get("provenance", {}), stem)
    exts = {"ng5d": ".ng5d", "ome.zarr": ".ome.zarr", "tif": ".ome.tif"}
    present = [f for f, e in exts.items() if (folder / f"{stem}_fused{e}").exists()]
    written = []
    for fmt in [f for f in _FORMATS if f in formats or f in present]:
        target = folder / f"{stem}_fused{exts[fmt]}"
        written.append(write_outputs(o, target, fmt))
    return written


class SaveWidget(QWidget):
    """Save the working copy in the ticked formats (button, or Ctrl+S while open)."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = getattr(napari_viewer, "__wrapped__", napari_viewer)  # plugin proxy
        lay = QVBoxLayout(self)
        row = QHBoxLayout()
        self.boxes = {}
        for f in _FORMATS:
            b = QCheckBox(f".{f}")
            b.setChecked(f == "ng5d")
            self.boxes[f] = b
            row.addWidget(b)
        lay.addLayout(row)
        self.button = QPushButton("Save working copy (Ctrl+S)")
        self.button.clicked.connect(self.save)
        lay.addWidget(self.button)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        lay.addWidget(self.status)
        lay.addWidget(self._adopt_box())
        lay.addStretch()
        from .shortcuts import KeyOverride

        self.key_override = KeyOverride(self.viewer, "neuroglia5d:save", self.save,
                                        priority=1).install()
        self.destroyed.connect(self.key_override.uninstall)

    def closeEvent(self, event: Any) -> None:
        """Give napari its Ctrl+S back when the dock closes."""
        self.key_override.uninstall()
        super().closeEvent(event)

    def event(self, e: Any) -> bool:
        """napari's ``remove_dock_widget`` only unparents the dock: give the key back then."""
        from qtpy.QtCore import QEvent

        if e.type() == QEvent.Type.ParentChange and self.parent() is None \
                and hasattr(self, "key_override"):
            self.key_override.uninstall()
        return bool(super().event(e))

    # -- adopting labels made by another tool (Cellpose, micro-sam, ...) ------------------
    def _adopt_box(self) -> QGroupBox:
        box = QGroupBox("Use a Labels layer as the working copy")
        box.setToolTip("Labels made by another tool (Cellpose, micro-sam, ...) become the "
                       "working copy, saved as <stem>_fused.* with the chosen intensity; "
                       "their current state is what 'restore' returns to.")
        form = QFormLayout(box)
        self.adopt_labels = QComboBox()
        self.adopt_image = QComboBox()
        self.adopt_stem = QLineEdit()
        self.adopt_stem.setPlaceholderText("from the image layer's name")
        self.adopt_folder = QLineEdit()
        browse = QPushButton("…")
        browse.setMaximumWidth(30)
        browse.clicked.connect(self._browse_folder)
        row = QHBoxLayout()
        row.addWidget(self.adopt_folder)
        row.addWidget(browse)
        form.addRow("labels", self.adopt_labels)
        form.addRow("intensity", self.adopt_image)
        form.addRow("name stem", self.adopt_stem)
        form.addRow("folder", row)
        self.adopt_button = QPushButton("Use as working copy")
        self.adopt_button.clicked.connect(self.adopt)
        form.addRow(self.adopt_button)
        for ev in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            ev.connect(self._refresh_layer_choices)
        self._refresh_layer_choices()
        return box

    def _refresh_layer_choices(self, *_: Any) -> None:
        for combo, kind in ((self.adopt_labels, "Labels"), (self.adopt_image, "Image")):
            current = combo.currentText()
            combo.clear()
            combo.addItems([ly.name for ly in self.viewer.layers
                            if ly.__class__.__name__ == kind])
            if current:
                combo.setCurrentText(current)

    def _browse_folder(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Folder for the working copy")
        if d:
            self.adopt_folder.setText(d)

    def adopt(self) -> Any:
        """Tag the chosen Labels layer as the working copy; returns it (or None)."""
        from .api import use_as_working_copy

        lname, iname = self.adopt_labels.currentText(), self.adopt_image.currentText()
        folder = self.adopt_folder.text().strip()
        if not lname or not iname:
            self.status.setText("choose a Labels layer and an Image layer")
            return None
        if not folder or not Path(folder).is_dir():
            self.status.setText(f"folder: {folder!r} is not an existing folder")
            return None
        labels, image = self.viewer.layers[lname], self.viewer.layers[iname]
        if tuple(labels.data.shape[-3:]) != tuple(image.data.shape[-3:]):
            self.status.setText(f"labels {tuple(labels.data.shape)} and intensity "
                                f"{tuple(image.data.shape)} differ in Z, Y, X")
            return None
        layer = use_as_working_copy(labels, image, folder, self.adopt_stem.text().strip() or None)
        stem = layer.metadata["neuroglia5d"]["stem"]
        self._refresh_layer_choices()
        self.status.setText(f"{lname!r} is the working copy; Save writes {stem}_fused.*")
        return layer

    def formats(self) -> list[str]:
        """Ticked formats."""
        return [f for f, b in self.boxes.items() if b.isChecked()]

    def save(self) -> list[Path]:
        """Save every working copy in the viewer; returns the files written."""
        layers = working_layers(self.viewer)
        if not layers:
            self.status.setText("no working copy open (open a _fused or _labels file)")
            return []
        written: list[Path] = []
        for layer in layers:
            written += save_working_copy(self.viewer, layer, self.formats())
            for hook in list(_SAVE_HOOKS.get(id(self.viewer), [])):
                written += hook(self.viewer, layer)
        self.status.setText("saved " + ", ".join(p.name for p in written))
        return written
