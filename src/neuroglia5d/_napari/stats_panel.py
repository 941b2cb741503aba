"""Live statistics of the labels under the merge brush (annotation dock's side panel).

:class:`LabelStatsCache` holds the per-label measurements of ``*_labelStats.csv`` (volume
µm³, intensities, nearest-neighbour distance, surface, sphericity) per timepoint and
recomputes the rows of edited labels on the bounding-box crop of those labels only
(:func:`neuroglia5d.annotation.live_stats`), nearest-neighbour distances of that
timepoint refreshed from the centroids. :class:`StatsPanel` lists the labels under the
current stroke with their rows, followed by the topology of the merged set
(:func:`neuroglia5d.annotation.merged_topology`: components, Euler
characteristic, branches, branch points, end points, loops, skeleton length in µm).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtWidgets import (
    QLabel,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

#: columns shown in the panel (of ``*_labelStats.csv``), with their headers
SHOWN: tuple[tuple[str, str], ...] = (
    ("label", "label"), ("volume_um3", "volume µm³"), ("mean_intensity", "mean int."),
    ("max_intensity", "max int."), ("nn_dist_um", "NN dist µm"), ("surface_um2", "surface µm²"),
    ("sphericity", "sphericity"))
#: topology keys shown, with their names
TOPO_SHOWN: tuple[tuple[str, str], ...] = (
    ("components", "components"), ("euler", "Euler"), ("branches", "branches"),
    ("branch_points", "branch points"), ("end_points", "end points"), ("loops", "loops"),
    ("length_um", "length µm"))

class LabelStatsCache:
    """Per-(timepoint, label) measurements, kept up to date after edits.

    Parameters
    ----------
    spacing_um : (float, float, float)
        Voxel size (z, y, x) in µm.
    offset_zyx : (int, int, int)
        Crop offset of the working copy in the raw frame (the CSV's frame), voxels.
    csv_path : path, optional
        ``<stem>_labelStats.csv`` to start from (labels without a row are measured on
        first use).
    """

    def __init__(self, spacing_um: Sequence[float], offset_zyx: Sequence[int],
                 csv_path: str | Path | None = None) -> None:
        self.spacing = tuple(float(v) for v in spacing_um)
        self.offset = tuple(int(v) for v in offset_zyx)
        self.rows: dict[int, dict[int, dict[str, float]]] = {}
        if csv_path is not None and Path(csv_path).exists():
            from ..processing.stats import read_stats_csv

            tb = read_stats_csv(csv_path)
            cols = list(tb)
            for i in range(len(tb["label"])):
                row = {c: float(tb[c][i]) for c in cols}
                self.rows.setdefault(int(row["t"]), {})[int(row["label"])] = row

    def get(self, t: int, label: int) -> dict[str, float] | None:
        """The row of ``label`` at ``t`` (None when unknown)."""
        return self.rows.get(int(t), {}).get(int(label))

    def table_at(self, t: int) -> dict[str, np.ndarray]:
        """The rows of timepoint ``t`` as a label table (columns of the CSV)."""
        from ..processing.stats import STATS_COLUMNS, empty_table

        rows = list(self.rows.get(int(t), {}).values())
        if not rows:
            return empty_table()
        return {c: np.array([r.get(c, np.nan) for r in rows]) for c in STATS_COLUMNS}

    def update(self, wc: Any, t: int, labels_ids: Iterable[int]) -> None:
        """Re-measure ``labels_ids`` at ``t`` on the crop of their bounding boxes.

        Measured by :func:`neuroglia5d.annotation.live_stats` on the working copy ``wc``;
        labels that no longer exist lose their row, and the nearest-neighbour distances
        of timepoint ``t`` are recomputed from all centroids.
        """
        from ..annotation import live_stats

        t = int(t)
        ids = sorted({int(v) for v in labels_ids if int(v) != 0})
        if not ids:
            return
        rows = self.rows.setdefault(t, {})
        for i in ids:
            rows.pop(i, None)
        tb = live_stats(wc, t, ids, table=self.table_at(t))
        for k in range(len(tb["label"])):
            rows[int(tb["label"][k])] = {c: float(tb[c][k]) for c in tb}
        self._recompute_nn(t)

    def _recompute_nn(self, t: int) -> None:
        from scipy.spatial import cKDTree

        rows = self.rows.get(t, {})
        if not rows:
            return
        ids = list(rows)
        pts = np.array([[rows[i]["centroid_z_um"], rows[i]["centroid_y_um"],
                         rows[i]["centroid_x_um"]] for i in ids])
        if len(ids) < 2:
            rows[ids[0]]["nn_dist_um"] = float("inf")
            return
        d, _ = cKDTree(pts).query(pts, k=2)
        for i, v in zip(ids, d[:, 1], strict=True):
            rows[i]["nn_dist_um"] = float(v)


def _fmt(v: float) -> str:
    if not np.isfinite(v):
        return "–"
    return f"{int(v)}" if float(v).is_integer() and abs(v) < 1e9 else f"{v:.3g}"


class StatsPanel(QWidget):
    """Table of the labels under the stroke, then the topology of the merged set."""

    def __init__(self) -> None:
        super().__init__()
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.title = QLabel("Labels under the merge brush")
        lay.addWidget(self.title)
        self.table = QTableWidget(0, len(SHOWN))
        self.table.setHorizontalHeaderLabels([h for _, h in SHOWN])
        self.table.verticalHeader().setVisible(False)
        lay.addWidget(self.table)
        self.topology = QLabel("")
        self.topology.setWordWrap(True)
        # fixed sizes: updates while painting must not re-layout the window
        self.topology.setFixedHeight(self.topology.fontMetrics().height() * 3 + 4)
        self.topology.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.title.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.table.setFixedHeight(160)
        lay.addWidget(self.topology)
        self.shown_ids: list[int] = []
        self.topo: dict[str, Any] | None = None

    def show_labels(self, t: int, ids: Sequence[int], cache: LabelStatsCache) -> None:
        """List ``ids`` at ``t`` with their measurements."""
        ids = [int(i) for i in ids if int(i) != 0]
        self.shown_ids = ids
        self.title.setText(f"Labels under the merge brush (t={t}): {len(ids)}")
        self.table.setRowCount(len(ids))
        for r, lab in enumerate(ids):
            row = cache.get(t, lab) or {}
            for c, (key, _) in enumerate(SHOWN):
                v = float(lab) if key == "label" else row.get(key, float("nan"))
                self.table.setItem(r, c, QTableWidgetItem(_fmt(v)))

    def show_topology(self, topo: dict[str, Any] | None) -> None:
        """Show the merged set's topology (None clears it)."""
        self.topo = topo
        if topo is None:
            self.topology.setText("")
            return
        parts = [f"{name} {_fmt(float(topo[k]))}" for k, name in TOPO_SHOWN if k in topo]
        self.topology.setText("Merged set: " + " · ".join(parts))

    def text(self) -> str:
        """Everything the panel shows, as plain text (one line per row)."""
        lines = [self.title.text()]
        for r in range(self.table.rowCount()):
            lines.append(" ".join(self.table.item(r, c).text()
                                  for c in range(self.table.columnCount())))
        lines.append(self.topology.text())
        return "\n".join(lines)
