"""Conversion between our output formats: ``.tif`` (OME-TIFF), ``.ome.zarr`` and ``.ng5d``.

:func:`load_outputs` opens any of them as a :class:`Outputs` (named arrays of (T, Z, Y, X)
plus voxel size, crop offset and provenance), read timepoint by timepoint;
:func:`convert` writes it in the format the output name asks for (atomically, via
``.partial``). A ``_labels`` file (labels only) converts to ``.tif`` and ``.ng5d``; OME-Zarr
output needs a fused file (intensity and labels), as the OME-Zarr layout holds both.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, OutputError
from .atomic import atomic_output, os_errors

ProgressFn = Callable[[int, int], None]


@dataclass
class Outputs:
    """Arrays of one of our output files.

    Attributes
    ----------
    arrays : dict of str to array-like
        ``intensity`` and/or ``labels``, each (T, Z, Y, X), indexable by timepoint.
    spacing_um : tuple of float
        (z, y, x) voxel size.
    offset_zyx : tuple of int
        Crop offset in the raw frame (voxels).
    provenance : dict
        What the file recorded about how it was made.
    stem : str
        Name stem (without ``_fused``/``_labels`` and extension).
    """

    arrays: dict[str, Any]
    spacing_um: tuple[float, float, float]
    offset_zyx: tuple[int, int, int]
    provenance: dict[str, Any] = field(default_factory=dict)
    stem: str = ""


def format_of(path: Path) -> str:
    """``tif``, ``ome.zarr`` or ``ng5d`` from a file name; raise for anything else."""
    n = path.name.lower()
    if n.endswith(".ng5d") or n.endswith(".ng5d.partial"):
        return "ng5d"
    if n.endswith(".ome.zarr") or n.endswith(".zarr"):
        return "ome.zarr"
    if n.endswith(".tif") or n.endswith(".tiff"):
        return "tif"
    raise InputError(f"{path}: unknown format (expected .tif, .ome.zarr or .ng5d)")


def _stem(path: Path) -> str:
    n = path.name
    for suf in (".ng5d.partial", ".ng5d", ".ome.zarr", ".zarr", ".ome.tiff", ".ome.tif",
                ".tiff", ".tif"):
        if n.lower().endswith(suf):
            n = n[: -len(suf)]
            break
    for role in ("_fused", "_labels"):
        if n.endswith(role):
            return n[: -len(role)]
    return n


def load_outputs(path: str | Path) -> Outputs:
    """Open one of our outputs (any format) lazily enough to convert it timepoint by timepoint."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file or folder")
    fmt = format_of(p)
    if fmt == "ng5d":
        from .ng5d import open_ng5d

        f = open_ng5d(p)
        prov = f.header.get("attributes", {}).get("provenance", {})
        return Outputs({n: a for n, a in f.arrays.items()}, f.voxel_size_um, f.offset_zyx,
                       prov, _stem(p))
    if fmt == "ome.zarr":
        from .omezarr_out import read_fused_omezarr

        d = read_fused_omezarr(p)
        return Outputs({"intensity": d["intensity"], "labels": d["labels_working"]},
                       tuple(d["spacing_um"]), tuple(d["offset_zyx"]),  # type: ignore[arg-type]
                       d.get("provenance", {}), _stem(p))
    from .tiff_out import read_ome_tiff_series

    try:
        d = read_ome_tiff_series(p)
    except ValueError as e:
        raise InputError(f"{p}: not one of our OME-TIFF outputs ({e})") from None
    series = d["series"]
    arrays = {k: v for k, v in series.items() if k in ("intensity", "labels")}
    if not arrays:
        raise InputError(f"{p}: no 'intensity' or 'labels' series (not one of our outputs)")
    return Outputs(arrays, d["spacing_um"], d["offset_zyx"], d["provenance"], _stem(p))


def convert(src: str | Path, dst: str | Path, *, progress: ProgressFn | None = None,
            ngff_version: str = "0.4") -> Path:
    """Convert one of our outputs to another format (chosen by ``dst``'s extension).

    Returns
    -------
    Path
        The written file or store.
    """
    out = Path(dst)
    fmt = format_of(out)
    o = load_outputs(src)
    if Path(src).resolve() == out.resolve():
        raise OutputError(f"{out}: output is the input")
    return write_outputs(o, out, fmt, progress=progress, ngff_version=ngff_version)


def write_outputs(o: Outputs, out: Path, fmt: str, *, progress: ProgressFn | None = None,
                  ngff_version: str = "0.4") -> Path:
    """Write arrays (``intensity`` and/or ``labels``, (T, Z, Y, X)) in format ``fmt``."""
    T = next(iter(o.arrays.values())).shape[0]
    total = T * len(o.arrays)
    if fmt == "ng5d":
        from .ng5d import ArraySpec, convert_arrays

        specs = []
        for name, a in o.arrays.items():
            role = "labels" if name == "labels" else "intensity"
            dtype = "uint32" if role == "labels" else a.dtype
            specs.append((ArraySpec.make(name, role, dtype, (a.shape[0], 1, *a.shape[1:])), a))
        return convert_arrays(specs, out, voxel_size_um=o.spacing_um, offset_zyx=o.offset_zyx,
                              attributes={"provenance": o.provenance}, progress=progress)
    if fmt == "tif":
        return _write_tif(o, out, progress)
    return _write_zarr(o, out, progress, ngff_version, total)


def _write_tif(o: Outputs, out: Path, progress: ProgressFn | None) -> Path:
    import tifffile

    from .tiff_out import ome_metadata
    from .writers import SeriesMeta

    a0 = next(iter(o.arrays.values()))
    T, Z, Y, X = a0.shape
    meta = SeriesMeta(stem=o.stem, shape_tzyx=(T, Z, Y, X), spacing_um=o.spacing_um,
                      offset_zyx=o.offset_zyx, provenance=o.provenance)
    done = [0]
    total = T * len(o.arrays)

    def pages(a: Any, dtype: Any) -> Any:
        for t in range(T):
            vol = np.asarray(a[t]).astype(dtype, copy=False)
            yield from vol
            done[0] += 1
            if progress is not None:
                progress(done[0], total)

    with atomic_output(out) as part, os_errors(out):
        big = T * Z * Y * X * 6 > 3_800_000_000
        with tifffile.TiffWriter(part, bigtiff=big, ome=True) as tw:
            for name in ("intensity", "labels"):
                if name not in o.arrays:
                    continue
                dtype = np.uint32 if name == "labels" else np.dtype(o.arrays[name].dtype)
                kw: dict[str, Any] = {}
                if name == "labels":
                    kw = {"compression": "zlib", "compressionargs": {"level": 1},
                          "predictor": True}
                tw.write(pages(o.arrays[name], dtype), shape=(T, Z, Y, X), dtype=dtype,
                         metadata=ome_metadata(meta, name, T * Z), **kw)
    return out


def _write_zarr(o: Outputs, out: Path, progress: ProgressFn | None, ngff_version: str,
                total: int) -> Path:
    from .omezarr_out import OmeZarrSeriesWriter
    from .writers import SeriesMeta

    if not {"intensity", "labels"} <= set(o.arrays):
        raise OutputError(f"{out}: OME-Zarr output needs intensity and labels (convert a "
                          "_fused file)")
    inten, lab = o.arrays["intensity"], o.arrays["labels"]
    T, Z, Y, X = inten.shape
    meta = SeriesMeta(stem=o.stem, shape_tzyx=(T, Z, Y, X), spacing_um=o.spacing_um,
                      offset_zyx=o.offset_zyx, provenance=o.provenance,
                      options={"ngff_version": ngff_version})
    tmp_dir = out.parent / (out.name + ".convert.partial")
    with os_errors(tmp_dir):
        tmp_dir.mkdir(parents=True, exist_ok=True)
    try:
        w = OmeZarrSeriesWriter(tmp_dir, meta)
        for t in range(T):
            w.write(t, np.asarray(inten[t]), np.asarray(lab[t]))
            if progress is not None:
                progress(2 * (t + 1), total)
        (written,) = w.finalize()
        from .atomic import finalize

        finalize(written, out)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return out
