"""The "Tiles" dock: split the working copy's region of interest to fit the memory budget.

The dock computes the ROI from the labels' bounding boxes (``*_labelStats.csv``, else the
labels themselves) and the tile grid (:mod:`neuroglia5d.tiling`). The working Labels and
Image layers then hold only the active tile (full Z and T, ``translate`` moved to the
tile), while the whole working copy stays in the dock. Switching tiles writes the active
tile's edits back into the whole copy first, so overlaps stay consistent and nothing is
lost; saving (Save widget, :func:`neuroglia5d.save`) writes the whole copy. A tile map
(active tile white) switches tiles by click; Ctrl+Shift+Right/Left steps through them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from qtpy.QtWidgets import (
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..tiling import BYTES_PER_VOXEL, TileGrid, make_grid, memory_budget_bytes, roi_from_stats


class TileState:
    """The whole working copy behind a tiled Labels layer (and its Image layer).

    Parameters
    ----------
    labels_layer, image_layer : napari layers
        The working copy's layers (image may be None); their data become tile views.
    grid : TileGrid
        The tiles.
    """

    def __init__(self, labels_layer: Any, image_layer: Any, grid: TileGrid) -> None:
        self.labels_layer = labels_layer
        self.image_layer = image_layer
        self.grid = grid
        self.full_labels = np.asarray(labels_layer.data)
        self.full_intensity = image_layer.data if image_layer is not None else None
        self.base_translate = tuple(labels_layer.translate)
        self.active = -1

    def write_back(self) -> None:
        """Copy the active tile's labels (edits included) into the whole copy."""
        if self.active < 0:
            return
        ys, xs = self.grid.tiles[self.active].slices
        self.full_labels[:, :, ys, xs] = self.labels_layer.data

    def activate(self, index: int) -> None:
        """Show tile ``index`` (after writing the current tile back)."""
        self.write_back()
        tile = self.grid.tiles[index]
        ys, xs = tile.slices
        scale = self.labels_layer.scale
        translate = list(self.base_translate)
        translate[-2] += tile.y0 * scale[-2]
        translate[-1] += tile.x0 * scale[-1]
        self.labels_layer.data = np.array(self.full_labels[:, :, ys, xs])
        self.labels_layer.translate = translate
        if self.image_layer is not None:
            # a lazy .ng5d array decodes only the tile's bricks
            self.image_layer.data = np.asarray(self.full_intensity[:, :, ys, xs])
            self.image_layer.translate = translate
        self.active = index

    def full(self) -> np.ndarray:
        """The whole working copy, the active tile's edits included."""
        self.write_back()
        return self.full_labels

    def restore_whole(self) -> None:
        """Put the whole copy back into the layers (untiled)."""
        self.write_back()
        self.labels_layer.data = self.full_labels
        self.labels_layer.translate = self.base_translate
        if self.image_layer is not None:
            self.image_layer.data = self.full_intensity
            self.image_layer.translate = self.base_translate
        self.active = -1


def roi_for(labels_layer: Any) -> tuple[int, int, int, int]:
    """ROI of a working copy from its statistics CSV (or its labels when there is none)."""
    from pathlib import Path

    meta = labels_layer.metadata.get("neuroglia5d", {})
    data = np.asarray(labels_layer.data)
    Y, X = data.shape[-2:]
    csv = Path(meta.get("folder", "")) / f"{meta.get('stem', '')}_labelStats.csv"
    if meta and csv.exists():
        from ..processing.stats import read_stats_csv

        tb = read_stats_csv(csv)
        boxes = np.column_stack([tb["bbox_y0"], tb["bbox_y1"], tb["bbox_x0"], tb["bbox_x1"]])
        off = meta.get("offset_zyx", [0, 0, 0])
        return roi_from_stats(boxes, (Y, X), (off[1], off[2]))
    fg = data.reshape(-1, Y, X).any(axis=0)
    if not fg.any():
        return 0, Y, 0, X
    ys, xs = np.flatnonzero(fg.any(axis=1)), np.flatnonzero(fg.any(axis=0))
    return int(ys[0]), int(ys[-1]) + 1, int(xs[0]), int(xs[-1]) + 1


class TileWidget(QWidget):
    """Tiles: memory budget, tile map, memory state."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = getattr(napari_viewer, "__wrapped__", napari_viewer)  # plugin proxy
        self.state: TileState | None = None
        lay = QVBoxLayout(self)
        form = QFormLayout()
        self.budget = QDoubleSpinBox()
        self.budget.setRange(0.01, 1e7)
        self.budget.setDecimals(2)
        self.budget.setSuffix(" MiB")
        self.budget.setValue(memory_budget_bytes() / 2**20)
        self.budget.setToolTip("Memory for the active tile (6 bytes per voxel: uint16 "
                               "intensity + uint32 labels); GPU memory on a GPU")
        form.addRow("Memory budget", self.budget)
        lay.addLayout(form)
        self.apply_button = QPushButton("Tile the working copy")
        self.apply_button.clicked.connect(self.apply)
        lay.addWidget(self.apply_button)
        self.map = QGridLayout()
        self.map_box = QWidget()
        self.map_box.setLayout(self.map)
        lay.addWidget(self.map_box)
        self.info = QLabel("")
        self.info.setWordWrap(True)
        lay.addWidget(self.info)
        lay.addStretch()
        self.buttons: list[QPushButton] = []
        self.viewer.bind_key("Control-Shift-Right", lambda v: self.step(1), overwrite=True)
        self.viewer.bind_key("Control-Shift-Left", lambda v: self.step(-1), overwrite=True)

    def apply(self) -> TileState | None:
        """Compute the ROI and grid for the first working copy and show its first tile."""
        from .save_widget import intensity_for, working_layers

        layers = working_layers(self.viewer)
        if not layers:
            self.info.setText("no working copy open")
            return None
        lab = layers[0]
        if self.state is not None:
            self.state.restore_whole()
        data = np.asarray(lab.data)
        T, Z = data.shape[0], data.shape[1]
        roi = roi_for(lab)
        grid = make_grid(roi, Z, T, int(self.budget.value() * 2**20))
        self.state = TileState(lab, intensity_for(self.viewer, lab), grid)
        lab.metadata["neuroglia5d"]["tiles"] = self.state
        self._build_map()
        self.switch(0)
        return self.state

    def _build_map(self) -> None:
        for b in self.buttons:
            b.deleteLater()
        self.buttons = []
        assert self.state is not None
        g = self.state.grid
        for i, t in enumerate(g.tiles):
            b = QPushButton(f"{t.row},{t.col}")
            b.setFixedSize(44, 28)
            b.clicked.connect(self._switcher(i))
            self.map.addWidget(b, t.row, t.col)
            self.buttons.append(b)

    def _switcher(self, index: int) -> Any:
        return lambda *_: self.switch(index)

    def switch(self, index: int) -> None:
        """Activate a tile (edits of the current one are written back first)."""
        if self.state is None:
            return
        self.state.activate(index)
        for i, b in enumerate(self.buttons):
            on = i == index
            b.setStyleSheet("background:white;color:black" if on else
                            "background:#333;color:#aaa")
        g = self.state.grid
        tile = g.tiles[index]
        y0, y1, x0, x1 = g.roi
        roi_bytes = (y1 - y0) * (x1 - x0) * g.depth * g.timepoints * BYTES_PER_VOXEL
        tb = g.tile_bytes(tile)
        self.info.setText(
            f"ROI {x1 - x0}×{y1 - y0}×{g.depth}×{g.timepoints} (W×H×D×T) = "
            f"{roi_bytes / 2**20:.1f} MiB; {g.rows}×{g.cols} tile(s), 15 % overlap. "
            f"Active tile {tile.row},{tile.col}: {tile.shape_yx[1]}×{tile.shape_yx[0]} px, "
            f"{tb / 2**20:.1f} MiB buffered, {max(0, g.budget_bytes - tb) / 2**20:.1f} MiB "
            "of the budget left.")

    def step(self, delta: int) -> None:
        """Next / previous tile."""
        if self.state is not None:
            self.switch((self.state.active + delta) % len(self.state.grid.tiles))
