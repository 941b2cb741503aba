"""Live statistics of edited labels and the files Ctrl+S writes.

* :func:`live_stats`: the ``*_labelStats.csv`` rows of some labels at one timepoint,
  re-measured on the bounding-box crop of those labels (what the stats panel shows while
  the merge brush paints), with :func:`neuroglia5d.processing.stats.label_stats`.
* :func:`merged_topology`: topology of the union of labels (the merge-brush set).
* :func:`save_session`: ``<stem>_auto_annotations.json``, a refreshed
  ``<stem>_labelStats.csv``, ``<stem>_topologyAdvanced_<YYMMDDhhmmss>.csv`` (per label at
  the current timepoint), ``<stem>_topologyAdvanced4D_<YYMMDDhhmmss>.csv`` (per-label
  dynamics over the timepoints) and ``<stem>_interactive_Z<first>-<last>.png``.

Per-label topology is cached on the working copy and recomputed only for the labels the
operations changed (``wc.dirty``), so saving again after a few edits is quick.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..io.atomic import atomic_write_bytes, atomic_write_text
from ..processing.stats import (
    STATS_COLUMNS,
    LabelTable,
    concat_tables,
    empty_table,
    label_stats,
    read_stats_csv,
    recompute_nn,
    select_rows,
    table_to_csv,
)
from ..processing.topology import TOPOLOGY_KEYS, topology_metrics
from .record import make_header, save_annotations
from .working_copy import Box, WorkingCopy, crop_of

#: columns of ``<stem>_topologyAdvanced_*.csv``
TOPOLOGY_COLUMNS: tuple[str, ...] = ("t", "label", "volume_um3", "centroid_z_um",
                                     "centroid_y_um", "centroid_x_um", *TOPOLOGY_KEYS,
                                     "branch_density_per_um")
#: columns of ``<stem>_topologyAdvanced4D_*.csv``
TOPOLOGY4D_COLUMNS: tuple[str, ...] = (
    "label", "timepoints_present", "first_t", "last_t", "persistence", "longest_gap_t",
    "volume_um3_mean", "volume_um3_cv",
    "euler_mean", "euler_std", "euler_changes",
    "components_mean", "connectivity_stability", "component_changes",
    "loops_mean", "loop_changes",
    "branches_mean", "branches_std", "branch_turnover_per_t",
    "branch_points_mean", "end_points_mean", "end_point_turnover_per_t",
    "length_um_mean", "length_um_std", "length_change_um_per_t",
    "centroid_speed_um_per_t", "net_displacement_um",
)


def _union_box(wc: WorkingCopy, t: int, ids: Sequence[int]) -> Box | None:
    box: Box | None = None
    for i in ids:
        b = wc.bbox(t, i)
        if b is None:
            continue
        box = b if box is None else (min(box[0], b[0]), max(box[1], b[1]), min(box[2], b[2]),
                                     max(box[3], b[3]), min(box[4], b[4]), max(box[5], b[5]))
    return box


def _slices(b: Box) -> tuple[slice, slice, slice]:
    return slice(b[0], b[1]), slice(b[2], b[3]), slice(b[4], b[5])


def live_stats(wc: WorkingCopy, t: int, ids: Iterable[int], *,
               table: LabelTable | None = None, surface: bool = True) -> LabelTable:
    """Measure labels ``ids`` at ``t`` on the crop of their boxes.

    Parameters
    ----------
    wc : WorkingCopy
        The working copy (its intensity is used; zeros without one).
    t : int
        Timepoint.
    ids : iterable of int
        Labels to measure (absent ones are left out).
    table : LabelTable, optional
        The current ``*_labelStats.csv`` table: the centroids of the other labels at ``t``
        give the nearest-neighbour distances (else they are among ``ids`` only).
    surface : bool
        Compute surface area and sphericity.

    Returns
    -------
    LabelTable
        One row per label, columns :data:`~neuroglia5d.processing.stats.STATS_COLUMNS`;
        bounding boxes and centroids in the raw frame (crop offset added).
    """
    want = sorted({int(v) for v in ids if int(v) != 0})
    parts = []
    for i in want:  # each label on its own box (far-apart labels cost their boxes only)
        box = wc.bbox(t, i)
        if box is None:
            continue
        lab = np.array(wc.labels[t][_slices(box)])
        lab[lab != i] = 0
        img = (crop_of(wc.intensity, t, box).astype(np.float64) if wc.intensity is not None
               else np.zeros(lab.shape))
        off = tuple(o + b for o, b in zip(wc.offset_zyx, box[0::2], strict=True))
        parts.append(label_stats(lab, img, wc.spacing_um, offset_zyx=off, t=int(t),
                                 surface=surface))
    if not parts:
        return empty_table()
    tb = recompute_nn(concat_tables(parts))
    if table is not None and len(table["label"]):
        others = (table["t"] == t) & ~np.isin(table["label"], want)
        if others.any():
            from scipy.spatial import cKDTree

            cols = ("centroid_z_um", "centroid_y_um", "centroid_x_um")
            pts_o = np.column_stack([table[c][others] for c in cols])
            pts = np.column_stack([tb[c] for c in cols])
            d_o = cKDTree(pts_o).query(pts, k=1)[0]
            tb["nn_dist_um"] = np.minimum(tb["nn_dist_um"], d_o)
    return tb


def merged_topology(wc: WorkingCopy, t: int, ids: Iterable[int]) -> dict[str, Any] | None:
    """:func:`~neuroglia5d.processing.topology.topology_metrics` of the union of ``ids``
    at ``t`` (None when none is present)."""
    want = sorted({int(v) for v in ids if int(v) != 0 and wc.bbox(t, int(v)) is not None})
    if not want:
        return None
    total: dict[str, Any] | None = None
    for group in _touching_groups(wc, t, want):
        box = _union_box(wc, t, group)
        assert box is not None
        crop = wc.labels[t][_slices(box)]
        res = topology_metrics(np.isin(crop, np.asarray(group, crop.dtype)), wc.spacing_um)
        total = res if total is None else {k: total[k] + res[k] for k in total}
    return total


def _touching_groups(wc: WorkingCopy, t: int, ids: list[int]) -> list[list[int]]:
    """Groups of ``ids`` whose boxes (grown by one voxel) overlap, transitively: labels of
    different groups cannot touch, so each group is measured on its own box."""
    boxes = {i: wc.bbox(t, i) for i in ids}
    parent = {i: i for i in ids}

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for k, a in enumerate(ids):
        ba = boxes[a]
        for b in ids[k + 1:]:
            bb = boxes[b]
            if all(ba[2 * d] <= bb[2 * d + 1] and bb[2 * d] <= ba[2 * d + 1] for d in range(3)):
                parent[find(a)] = find(b)
    groups: dict[int, list[int]] = {}
    for i in ids:
        groups.setdefault(find(i), []).append(i)
    return list(groups.values())


# --------------------------------------------------------------------------- per label
def _topology_cache(wc: WorkingCopy) -> dict[tuple[int, int], dict[str, Any]]:
    cache: dict[tuple[int, int], dict[str, Any]] | None = getattr(wc, "_topology_cache", None)
    if cache is None:
        cache = {}
        wc._topology_cache = cache  # type: ignore[attr-defined]
    return cache


def label_topology_row(wc: WorkingCopy, t: int, label: int) -> dict[str, Any] | None:
    """Topology, volume and centroid of one label at ``t`` (cached until it changes)."""
    cache = _topology_cache(wc)
    key = (int(t), int(label))
    hit = cache.get(key)
    if hit is not None and wc.changed_at.get(key, -1) < hit["_stamp"]:
        return hit
    # the stamp is taken before the voxels are read: a change made meanwhile (from
    # another thread) leaves the row stale rather than wrongly current
    stamp = wc.n_changes + 1
    box = wc.bbox(t, label)
    if box is None:
        return None
    m = wc.labels[t][_slices(box)] == label
    sp = np.asarray(wc.spacing_um)
    idx = np.argwhere(m)
    cen = (idx.mean(axis=0) + np.asarray(box[0::2]) + np.asarray(wc.offset_zyx)) * sp
    row: dict[str, Any] = {"t": int(t), "label": int(label),
                           "volume_um3": float(len(idx) * sp.prod()),
                           "centroid_z_um": float(cen[0]), "centroid_y_um": float(cen[1]),
                           "centroid_x_um": float(cen[2])}
    row.update(topology_metrics(m, wc.spacing_um))
    row["branch_density_per_um"] = (row["branches"] / row["length_um"] if row["length_um"] > 0
                                    else 0.0)
    row["_stamp"] = stamp  # valid until the label changes again
    cache[key] = row
    return row


def topology_table(wc: WorkingCopy, t: int) -> list[dict[str, Any]]:
    """One :data:`TOPOLOGY_COLUMNS` row per label at ``t``."""
    rows = [label_topology_row(wc, t, lab) for lab in wc.labels_at(t)]
    return [r for r in rows if r is not None]


def dynamics_table(wc: WorkingCopy, timepoints: Sequence[int] | None = None
                   ) -> list[dict[str, Any]]:
    """Per-label topology dynamics over ``timepoints`` (default all): one
    :data:`TOPOLOGY4D_COLUMNS` row per label ID present at any of them.

    Changes and turnovers are between consecutive timepoints where the label is present;
    ``connectivity_stability`` is the fraction of those where the label is one connected
    piece; ``persistence`` = present / (last - first + 1).
    """
    tps = list(range(wc.shape[0])) if timepoints is None else sorted(int(t) for t in timepoints)
    per: dict[int, list[dict[str, Any]]] = {}
    for t in tps:
        for r in topology_table(wc, t):
            per.setdefault(int(r["label"]), []).append(r)
    return [_dynamics_row(lab, per[lab]) for lab in sorted(per)]


def _dynamics_row(lab: int, rs: list[dict[str, Any]]) -> dict[str, Any]:
    """One :data:`TOPOLOGY4D_COLUMNS` row from a label's per-timepoint rows (t order)."""
    ts = np.array([r["t"] for r in rs])
    n = len(rs)
    dt = np.diff(ts).astype(float)

    def col(k: str) -> np.ndarray:
        return np.array([float(r[k]) for r in rs])

    def steps(k: str) -> np.ndarray:
        return np.abs(np.diff(col(k)))

    def per_t(d: np.ndarray) -> float:
        return float((d / dt).mean()) if n > 1 else 0.0

    vol = col("volume_um3")
    cen = np.column_stack([col("centroid_z_um"), col("centroid_y_um"), col("centroid_x_um")])
    move = np.sqrt((np.diff(cen, axis=0) ** 2).sum(axis=1))
    gaps = dt - 1
    return {
        "label": lab, "timepoints_present": n, "first_t": int(ts[0]), "last_t": int(ts[-1]),
        "persistence": n / float(ts[-1] - ts[0] + 1),
        "longest_gap_t": int(gaps.max()) if n > 1 else 0,
        "volume_um3_mean": float(vol.mean()),
        "volume_um3_cv": float(vol.std() / vol.mean()) if vol.mean() > 0 else 0.0,
        "euler_mean": float(col("euler").mean()), "euler_std": float(col("euler").std()),
        "euler_changes": int((steps("euler") > 0).sum()),
        "components_mean": float(col("components").mean()),
        "connectivity_stability": float((col("components") == 1).mean()),
        "component_changes": int((steps("components") > 0).sum()),
        "loops_mean": float(col("loops").mean()),
        "loop_changes": int((steps("loops") > 0).sum()),
        "branches_mean": float(col("branches").mean()),
        "branches_std": float(col("branches").std()),
        "branch_turnover_per_t": per_t(steps("branches")),
        "branch_points_mean": float(col("branch_points").mean()),
        "end_points_mean": float(col("end_points").mean()),
        "end_point_turnover_per_t": per_t(steps("end_points")),
        "length_um_mean": float(col("length_um").mean()),
        "length_um_std": float(col("length_um").std()),
        "length_change_um_per_t": per_t(steps("length_um")),
        "centroid_speed_um_per_t": per_t(move),
        "net_displacement_um": float(np.sqrt(((cen[-1] - cen[0]) ** 2).sum())),
    }


def rows_to_csv(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """CSV text with ``columns`` as header (floats with 6 significant digits)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow([f"{r[c]:.6g}" if isinstance(r[c], float) else r[c] for c in columns])
    return buf.getvalue()


# --------------------------------------------------------------------------- stats CSV
def refresh_stats_table(wc: WorkingCopy, table: LabelTable | None,
                        timepoints: Iterable[int] | None = None) -> LabelTable:
    """The ``*_labelStats.csv`` table brought up to date with the working copy.

    Rows of labels the ops changed (``wc.dirty``) are re-measured on their crops, rows of
    labels gone are dropped, and nearest-neighbour distances are recomputed. Without a
    table, every label of ``timepoints`` (default all) is measured.
    """
    if table is None:
        tps = range(wc.shape[0]) if timepoints is None else timepoints
        parts = []
        for t in tps:
            img = (np.asarray(wc.intensity[t], dtype=np.float64) if wc.intensity is not None
                   else np.zeros(wc.shape[1:]))
            parts.append(label_stats(wc.labels[t], img, wc.spacing_um,
                                     offset_zyx=wc.offset_zyx, t=int(t)))
        return recompute_nn(concat_tables(parts))
    out = table
    for t, ids in sorted(wc.dirty.items()):
        ids = {int(i) for i in ids if int(i) != 0}
        if not ids:
            continue
        keep = ~((out["t"] == t) & np.isin(out["label"], sorted(ids)))
        out = concat_tables([select_rows(out, keep), live_stats(wc, t, ids)])
    order = np.lexsort((out["label"], out["t"]))
    return recompute_nn(select_rows(out, order))


# --------------------------------------------------------------------------- picture
def label_colors(ids: np.ndarray) -> np.ndarray:
    """(N, 3) float RGB per label ID, stable across saves (golden-ratio hues)."""
    from matplotlib.colors import hsv_to_rgb

    ids = np.asarray(ids, np.float64)
    hsv = np.column_stack([(ids * 0.6180339887) % 1.0, np.full(len(ids), 0.75),
                           np.full(len(ids), 1.0)])
    return hsv_to_rgb(hsv)


def interactive_png(wc: WorkingCopy, t: int, z_range: tuple[int, int]) -> bytes:
    """PNG of the labels at ``t`` over planes ``z_range`` (inclusive), seen from above: the
    first label along z at each pixel, coloured by ID, over the intensity's maximum
    projection in grey."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    z0, z1 = int(z_range[0]), int(z_range[1]) + 1
    lab = wc.labels[t, z0:z1]
    fg = lab != 0
    first = np.argmax(fg, axis=0)
    top = np.take_along_axis(lab, first[None], axis=0)[0]
    Y, X = top.shape
    if wc.intensity is not None:
        mip = np.asarray(wc.intensity[t][z0:z1]).max(axis=0).astype(np.float64)
        lo, hi = np.percentile(mip, (1, 99.8))
        grey = np.clip((mip - lo) / (hi - lo if hi > lo else 1.0), 0, 1)
    else:
        grey = np.zeros((Y, X))
    rgb = np.repeat(grey[..., None], 3, axis=2)
    ids, inv = np.unique(top, return_inverse=True)
    cols = label_colors(ids)
    cols[ids == 0] = 0
    col = cols[inv.reshape(top.shape)]
    has = top != 0
    rgb[has] = 0.35 * rgb[has] + 0.65 * col[has]
    dpi = 100
    fig = Figure(figsize=(max(X, 200) / dpi, max(Y, 200) / dpi + 0.3), dpi=dpi)
    ax = fig.add_axes((0, 0, 1, Y / (Y + 30)))
    ax.imshow(rgb, interpolation="nearest")
    ax.set_axis_off()
    fig.text(0.01, 0.99, f"t={t}  z={z0}-{z1 - 1}  {int((ids != 0).sum())} labels",
             va="top", fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


# --------------------------------------------------------------------------- Ctrl+S
def _find_files(folder: Path, stem: str) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for role in ("labels", "fused"):
        for ext in (".ome.tif", ".ome.tiff", ".tif", ".ome.zarr", ".ng5d"):
            p = folder / f"{stem}_{role}{ext}"
            if p.exists():
                out[role] = p
                break
    return out


def save_session(wc: WorkingCopy, folder: str | Path, stem: str, t: int,
                 z_range: tuple[int, int], *, files: Mapping[str, str | Path] | None = None,
                 header: Mapping[str, Any] | None = None,
                 timepoints: Sequence[int] | None = None,
                 stamp: str | None = None) -> list[Path]:
    """Write everything Ctrl+S saves, each file atomically.

    Parameters
    ----------
    wc : WorkingCopy
        The working copy.
    folder : str or Path
        Output folder (the dataset's folder).
    stem : str
        Dataset stem.
    t : int
        Current timepoint (the single-timepoint topology table and the picture).
    z_range : (int, int)
        First and last plane shown (inclusive), for the picture.
    files : mapping, optional
        Data files for the header (default: ``<stem>_labels.*`` and ``<stem>_fused.*``
        found in ``folder``).
    header : mapping, optional
        Extra header entries.
    timepoints : sequence of int, optional
        Timepoints of the 4D dynamics table (default all).
    stamp : str, optional
        ``YYMMDDhhmmss`` of the topology files (default now).

    Returns
    -------
    list of Path
        Annotations, label stats, topology, 4D topology, picture.
    """
    folder = Path(folder)
    stamp = stamp or _dt.datetime.now().strftime("%y%m%d%H%M%S")
    z0, z1 = (int(v) for v in z_range)
    found = dict(files) if files is not None else _find_files(folder, stem)
    head = make_header(wc, files=found, stem=stem, **dict(header or {}))
    written = [save_annotations(folder / f"{stem}_auto_annotations.json", wc, head)]
    stats_path = folder / f"{stem}_labelStats.csv"
    old = read_stats_csv(stats_path) if stats_path.exists() else None
    if old is not None and set(old) != set(STATS_COLUMNS):  # pragma: no cover - defensive
        old = None
    topo = topology_table(wc, t)  # uses (and refreshes) the topology cache first
    dyn = dynamics_table(wc, timepoints)
    table = refresh_stats_table(wc, old)
    written.append(atomic_write_text(stats_path, table_to_csv(table)))
    written.append(atomic_write_text(folder / f"{stem}_topologyAdvanced_{stamp}.csv",
                                     rows_to_csv(topo, TOPOLOGY_COLUMNS)))
    written.append(atomic_write_text(folder / f"{stem}_topologyAdvanced4D_{stamp}.csv",
                                     rows_to_csv(dyn, TOPOLOGY4D_COLUMNS)))
    written.append(atomic_write_bytes(folder / f"{stem}_interactive_Z{z0:03d}-{z1:03d}.png",
                                      interactive_png(wc, t, (z0, z1))))
    # the stats table is now current: later saves re-measure only what changes next
    wc.dirty.clear()
    return written
