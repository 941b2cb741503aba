"""Export one of our outputs to a Neuroglancer precomputed dataset.

Time convention: precomputed volumes are 3D, so each timepoint is its own set of
datasets under ``tNNN/`` (``t000``, ``t001``, ...), and one Neuroglancer state per
timepoint opens it (:mod:`.link`). Label IDs are the pipeline's track IDs, so one cell
keeps its ID (and colour) in every timepoint's state. Layout of ``OUT_DIR``::

    neuroglia5d_ng.json       manifest: stem, shape, voxel size, timepoints, label IDs
    tNNN/image/               intensity (raw chunks, mean pyramid)
    tNNN/labels/              labels (compressed_segmentation chunks, mode pyramid)
        segment_properties/   per-label statistics from <stem>_labelStats.csv
        mesh/                 one mesh per label (legacy precomputed mesh)
        skeletons/            one skeleton per label (precomputed skeleton, radius in nm)
    tNNN/centroids/           point annotations at label centroids, with the statistics
                              and a "segment" relationship to the label
    tNNN/swc/label_<ID>.swc   the skeletons as SWC (µm), for navis

Voxel sizes are nanometres (µm x 1000) and every volume carries the crop offset as its
``voxel_offset``, so data sits where it was in the raw frame.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, OutputError, ParameterError
from ..io.atomic import atomic_output, os_errors
from . import precomputed as pc

MANIFEST = "neuroglia5d_ng.json"
FORMAT = "neuroglia5d-neuroglancer"
#: statistics carried as segment properties and annotation properties (unit in brackets)
STAT_PROPS: dict[str, str] = {
    "volume_um3": "volume (µm³)",
    "mean_intensity": "mean intensity",
    "max_intensity": "max intensity",
    "sum_intensity": "summed intensity",
    "nn_dist_um": "nearest-neighbour distance (µm; -1 when alone)",
    "surface_um2": "surface (µm²)",
    "sphericity": "sphericity (0-1)",
    "centroid_z_um": "centroid z (µm)",
    "centroid_y_um": "centroid y (µm)",
    "centroid_x_um": "centroid x (µm)",
}

ProgressFn = Callable[[int, int, str], None]


@dataclass
class ExportResult:
    """What :func:`export_neuroglancer` wrote.

    Attributes
    ----------
    out_dir : Path
        The export folder.
    manifest : dict
        Contents of ``neuroglia5d_ng.json``.
    seconds : float
        Wall time of the export.
    bytes_written : int
        Size of the export on disk.
    """

    out_dir: Path
    manifest: dict[str, Any]
    seconds: float = 0.0
    bytes_written: int = 0
    timings: dict[str, float] = field(default_factory=dict)


def _resolve_input(path: Path) -> tuple[Path, Path | None, Path | None]:
    """``(fused-or-labels file, partner with intensity or None, labelStats csv or None)``."""
    from ..io.pairing import find_pair

    if path.is_dir() and not path.name.lower().endswith(".zarr"):
        fused = sorted(p for p in path.iterdir() if "_fused." in p.name
                       and not p.name.endswith(".partial"))
        stems = {p.name.split("_fused.")[0] for p in fused}
        if len(stems) != 1:
            raise InputError(f"{path}: expected the outputs of one series (a *_fused file), "
                             f"found {len(stems)}; name the file to export")
        pair = find_pair(fused[0])
        assert pair is not None and pair.fused is not None
        return pair.fused, None, pair.stats
    pair = find_pair(path)
    if pair is None:
        return path, None, None
    partner = pair.fused if pair.fused is not None and pair.fused != path else None
    return path, partner, pair.stats


def _stats_for(t: int, lab: np.ndarray, img: np.ndarray | None, table: dict[str, np.ndarray]
               | None, spacing: Sequence[float], offset: Sequence[int],
               ids: np.ndarray) -> dict[str, np.ndarray]:
    """Statistics rows of timepoint ``t`` in ID order (from the CSV when it matches)."""
    if table is not None:
        sel = table["t"] == t
        if np.array_equal(np.sort(table["label"][sel]), ids):
            order = np.argsort(table["label"][sel])
            return {k: v[sel][order] for k, v in table.items()}
    from ..processing.stats import label_stats

    inten = img if img is not None else np.zeros(lab.shape, np.float32)
    return label_stats(lab, inten, spacing, offset_zyx=offset, t=t)


def export_neuroglancer(src: str | Path, out_dir: str | Path, *, meshes: bool = True,
                        skeletons: bool = True, skeleton_method: str = "topology",
                        progress: ProgressFn | None = None) -> ExportResult:
    """Write a Neuroglancer precomputed dataset of one of our outputs.

    Parameters
    ----------
    src : str or Path
        ``<stem>_fused`` or ``<stem>_labels`` in any of our formats (``.ng5d``,
        ``.ome.zarr``, ``.tif``), or a pipeline output folder holding one series. A
        labels-only file takes its intensity from the fused partner when there is one;
        statistics come from ``<stem>_labelStats.csv`` (recomputed for timepoints whose
        labels no longer match it, e.g. after edits).
    out_dir : str or Path
        Export folder; written as ``OUT_DIR.partial`` and renamed when complete. An
        existing folder is replaced only if it is an earlier export.
    meshes, skeletons : bool
        Write meshes / skeletons (+ SWC) of every label.
    skeleton_method : {'topology', 'kimimaro'}
        See :func:`skeletonize_for_export`.
    progress : callable, optional
        ``progress(done, total, step)`` after each step of each timepoint.

    Returns
    -------
    ExportResult
    """
    from ..io.convert import load_outputs
    from ..processing.stats import read_stats_csv

    t_start = time.perf_counter()
    src = Path(src)
    out = Path(out_dir)
    if not src.exists():
        raise InputError(f"{src}: no such file or folder")
    _check_out(out)
    main, partner, stats_path = _resolve_input(src)
    o = load_outputs(main)
    labels = o.arrays.get("labels")
    if labels is None:
        raise InputError(f"{main}: holds no labels to export")
    intensity = o.arrays.get("intensity")
    if intensity is None and partner is not None:
        intensity = load_outputs(partner).arrays.get("intensity")
    table = read_stats_csv(stats_path) if stats_path is not None else None
    return export_arrays(labels, out, intensity=intensity, spacing_um=o.spacing_um,
                         offset_zyx=o.offset_zyx, stem=o.stem, source=str(main),
                         stats_table=table, meshes=meshes, skeletons=skeletons,
                         skeleton_method=skeleton_method, progress=progress,
                         _t_start=t_start)


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or (any(out.iterdir())
                                               and not (out / MANIFEST).exists())):
        raise OutputError(f"{out}: exists and is not a neuroglia5d Neuroglancer export; "
                          "choose an empty or new folder")


def export_arrays(labels: Any, out_dir: str | Path, *, intensity: Any = None,
                  spacing_um: Sequence[float], offset_zyx: Sequence[int] = (0, 0, 0),
                  stem: str = "data", source: str = "", stats_table: dict[str, np.ndarray]
                  | None = None, meshes: bool = True, skeletons: bool = True,
                  skeleton_method: str = "topology", progress: ProgressFn | None = None,
                  _t_start: float | None = None) -> ExportResult:
    """Export in-memory (or lazy) arrays: what :func:`export_neuroglancer` does after reading.

    Parameters
    ----------
    labels : array-like
        (T, Z, Y, X) integer labels, indexable by timepoint.
    out_dir : str or Path
        Export folder (see :func:`export_neuroglancer`).
    intensity : array-like, optional
        (T, Z, Y, X) intensity.
    spacing_um : sequence of float
        Voxel size (z, y, x), µm.
    offset_zyx : sequence of int
        Crop offset in the raw frame, voxels.
    stem, source : str
        Series name and where the data came from (recorded in the manifest).
    stats_table : dict, optional
        A ``*_labelStats.csv`` table; timepoints whose labels differ are re-measured.
    """
    t_start = time.perf_counter() if _t_start is None else _t_start
    out = Path(out_dir)
    _check_out(out)
    if np.ndim(labels) != 4:
        raise InputError(f"labels of shape {np.shape(labels)}: expected (T, Z, Y, X)")
    if intensity is not None and tuple(np.shape(intensity)) != tuple(np.shape(labels)):
        raise InputError(f"intensity {np.shape(intensity)} and labels {np.shape(labels)} "
                         "differ in shape")
    if skeleton_method not in ("topology", "kimimaro"):
        raise ParameterError(f"skeleton_method {skeleton_method!r}: expected 'topology' or "
                             "'kimimaro'")
    table = stats_table
    T, Z, Y, X = (int(v) for v in labels.shape)
    spacing = tuple(float(v) for v in spacing_um)
    offset = tuple(int(v) for v in offset_zyx)
    res_nm = tuple(v * 1000.0 for v in spacing)
    scales = pc.plan_scales((Z, Y, X), res_nm, offset)
    steps = ["volumes", "properties"] + (["meshes"] if meshes else []) + (
        ["skeletons"] if skeletons else [])
    total = T * len(steps)
    done = 0
    timings: dict[str, float] = dict.fromkeys(["read", *steps], 0.0)
    manifest: dict[str, Any] = {
        "format": FORMAT, "version": 1, "stem": stem, "source": source,
        "shape_tzyx": [T, Z, Y, X], "voxel_size_um": list(spacing),
        "voxel_size_nm": list(res_nm), "offset_zyx": list(offset),
        "time_convention": "one precomputed dataset per timepoint under tNNN/",
        "layers": {"image": "image" if intensity is not None else None,
                   "segmentation": "labels", "annotations": "centroids"},
        "meshes": meshes, "skeletons": skeletons,
        "skeleton_method": skeleton_method if skeletons else None,
        "scales": [s.key for s in scales],
        "timepoints": [],
    }
    with os_errors(out), atomic_output(out) as part:
        if part.exists():
            import shutil

            shutil.rmtree(part)
        part.mkdir(parents=True)
        for t in range(T):
            tic = time.perf_counter()
            lab = np.ascontiguousarray(np.asarray(labels[t]))
            if lab.dtype not in (np.uint32, np.uint64):
                lab = lab.astype(np.uint32)
            img = np.ascontiguousarray(np.asarray(intensity[t])) if intensity is not None \
                else None
            timings["read"] += time.perf_counter() - tic
            tdir = part / f"t{t:03d}"
            import fastremap

            ids = np.asarray(fastremap.unique(lab), dtype=np.int64)
            ids = ids[ids != 0]
            tic = time.perf_counter()
            extra: dict[str, Any] = {"segment_properties": "segment_properties"}
            if meshes:
                extra["mesh"] = "mesh"
            if skeletons:
                extra["skeletons"] = "skeletons"
            pc.write_volume(tdir / "labels", lab, scales, kind="segmentation",
                            extra_info=extra)
            rng_lohi: list[float] | None = None
            if img is not None:
                pc.write_volume(tdir / "image", img, scales, kind="image")
                nz = img[lab > 0] if ids.size else img.ravel()
                lo, hi = float(np.percentile(img, 1.0)), float(np.percentile(nz, 99.5))
                if np.issubdtype(img.dtype, np.integer):  # the client wants integer bounds
                    lo, hi = float(np.floor(lo)), float(np.ceil(hi))
                rng_lohi = [lo, max(hi, lo + 1)]
            timings["volumes"] += time.perf_counter() - tic
            done += 1
            _report(progress, done, total, f"t={t} volumes")

            tic = time.perf_counter()
            st = _stats_for(t, lab, img, table, spacing, offset, ids)
            numbers = {k: st[k] for k in STAT_PROPS}
            props = pc.segment_properties(
                ids, numbers, labels=[f"cell {i}" for i in ids],
                descriptions=STAT_PROPS)
            sp_dir = tdir / "labels" / "segment_properties"
            sp_dir.mkdir(parents=True, exist_ok=True)
            (sp_dir / "info").write_text(json.dumps(props))
            _write_centroids(tdir / "centroids", st, spacing, res_nm)
            timings["properties"] += time.perf_counter() - tic
            done += 1
            _report(progress, done, total, f"t={t} properties")

            if meshes:
                from .meshes import mesh_labels, write_meshes

                tic = time.perf_counter()
                write_meshes(tdir / "labels" / "mesh", mesh_labels(lab, spacing,
                                                                   offset_zyx=offset))
                timings["meshes"] += time.perf_counter() - tic
                done += 1
                _report(progress, done, total, f"t={t} meshes")
            if skeletons:
                tic = time.perf_counter()
                _write_skeletons(tdir, lab, spacing, offset, skeleton_method)
                timings["skeletons"] += time.perf_counter() - tic
                done += 1
                _report(progress, done, total, f"t={t} skeletons")
            manifest["timepoints"].append({"t": t, "path": f"t{t:03d}",
                                           "label_ids": [int(i) for i in ids],
                                           "intensity_range": rng_lohi})
        (part / MANIFEST).write_text(json.dumps(manifest, indent=1))
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return ExportResult(out, manifest, time.perf_counter() - t_start, size, timings)


def _report(progress: ProgressFn | None, done: int, total: int, step: str) -> None:
    if progress is not None:
        progress(done, total, step)


def _write_centroids(path: Path, st: dict[str, np.ndarray], spacing: Sequence[float],
                     res_nm: Sequence[float]) -> None:
    """Point annotations at the label centroids (voxel coordinates, voxel-centred)."""
    import neuroglancer
    from neuroglancer.write_annotations import AnnotationWriter

    cs = neuroglancer.CoordinateSpace(names=["x", "y", "z"], units="nm",
                                      scales=list(reversed(res_nm)))
    # int32, not uint32: neuroglancer 2.41's writer mis-aligns uint32 properties
    props = [neuroglancer.AnnotationPropertySpec(id="label", type="int32",
                                                 description="label ID")]
    props += [neuroglancer.AnnotationPropertySpec(id=k, type="float32", description=d)
              for k, d in STAT_PROPS.items()]
    # "segment" relationship: selecting a label in Neuroglancer lists its centroid
    w = AnnotationWriter(coordinate_space=cs, annotation_type="point",
                         relationships=["segment"], properties=props)
    sz, sy, sx = (float(v) for v in spacing)
    for i, lid in enumerate(st["label"]):
        point = [st["centroid_x_um"][i] / sx + 0.5, st["centroid_y_um"][i] / sy + 0.5,
                 st["centroid_z_um"][i] / sz + 0.5]
        values = {k: float(st[k][i]) for k in STAT_PROPS}
        w.add_point(point, id=int(lid), label=int(lid), segment=[int(lid)], **values)
    if not len(st["label"]):  # an empty layer still needs finite bounds
        w.lower_bound[:] = 0
        w.upper_bound[:] = 1
    w.write(path)


def skeletonize_for_export(lab: np.ndarray, spacing: Sequence[float],
                           offset: Sequence[int], method: str = "topology"
                           ) -> dict[int, Any]:
    """Skeletons of every label (µm, z y x, whole frame): the one switch point.

    ``topology``: the project's skeleton module (thinning + graph, shared with the
    annotation tools); ``kimimaro``: TEASAR. Labels that thin to nothing (small compact
    blobs) get a one-vertex skeleton at their centroid.
    """
    from .skeletons import fill_missing, skeletonize_labels

    if method == "kimimaro":
        return skeletonize_labels(lab, spacing, offset_zyx=offset)
    from ..processing.topology import skeletonize

    return fill_missing(skeletonize(lab, spacing, offset_zyx=offset), lab, spacing, offset)


def _write_skeletons(tdir: Path, lab: np.ndarray, spacing: Sequence[float],
                     offset: Sequence[int], method: str) -> None:
    from .skeletons import swc_text

    sk_dir = tdir / "labels" / "skeletons"
    swc_dir = tdir / "swc"
    sk_dir.mkdir(parents=True, exist_ok=True)
    swc_dir.mkdir(parents=True, exist_ok=True)
    (sk_dir / "info").write_text(json.dumps(pc.SKELETON_INFO))
    note = f"voxel size (z, y, x) {tuple(spacing)} µm"
    for lid, s in skeletonize_for_export(lab, spacing, offset, method).items():
        # vertices are µm (z, y, x) in the whole frame: nm (x, y, z), voxel-centred
        v_nm = (np.asarray(s.vertices)[:, ::-1] + np.asarray(spacing)[::-1] * 0.5) * 1000.0
        (sk_dir / str(lid)).write_bytes(pc.encode_skeleton(v_nm, s.edges,
                                                           np.asarray(s.radius) * 1000.0))
        (swc_dir / f"label_{lid}.swc").write_text(swc_text(s, spacing_note=note))
