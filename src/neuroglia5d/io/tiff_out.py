"""OME-TIFF outputs: ``<stem>_labels.ome.tif`` and ``<stem>_fused.ome.tif``.

Layout (later capabilities read it):

``<stem>_labels.ome.tif``
    OME-TIFF, one series ``labels``, uint32, axes TZYX, physical sizes in µm (Fiji opens
    it calibrated through Bio-Formats). The segmentation as produced; never edited.
``<stem>_fused.ome.tif``
    OME-TIFF with two series of the same axes and calibration: ``intensity`` (the
    processed intensity, uint16) and ``labels`` (the working copy, uint32).

Both carry the crop offset as OME ``Plane`` positions (µm) and, with the provenance, as
JSON in the image ``Description``. Labels are deflate-compressed (zlib level 1, fast) with
a horizontal predictor (they shrink 20-100x); intensity is stored uncompressed for the
fastest reload.

While the series is being computed, every finished timepoint is a small TIFF of its own
in the staging folder ``<stem>_tif.partial/`` (written as ``.partial`` and renamed, so a
crash leaves only complete timepoints, which ``--resume`` reuses). :meth:`finalize`
streams them page by page into the two OME-TIFFs (each written as ``NAME.partial`` and
renamed), then removes the staging folder.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import OutputError
from .atomic import finalize, os_errors, partial_path, remove
from .writers import SeriesMeta, SeriesWriter

_CHUNK_RE = re.compile(r"^t(\d{5})\.tif$")
_BIGTIFF_BYTES = 3_800_000_000


def ome_metadata(meta: SeriesMeta, name: str, n_planes: int) -> dict[str, Any]:
    """tifffile OME metadata for one TZYX series of ``meta``."""
    dz, dy, dx = meta.spacing_um
    oz, oy, ox = meta.translate_um
    Z = meta.shape_tzyx[1]
    desc = {"neuroglia5d": {"role": name, "offset_zyx": list(meta.offset_zyx),
                            "spacing_um": list(meta.spacing_um), "channel": meta.channel,
                            "provenance": meta.provenance}}
    md: dict[str, Any] = {
        "axes": "TZYX",
        "Name": name,
        "Description": json.dumps(desc, ensure_ascii=False),
        "PhysicalSizeX": dx, "PhysicalSizeXUnit": "µm",
        "PhysicalSizeY": dy, "PhysicalSizeYUnit": "µm",
        "PhysicalSizeZ": dz, "PhysicalSizeZUnit": "µm",
        "Plane": {
            "PositionX": [ox] * n_planes, "PositionXUnit": ["µm"] * n_planes,
            "PositionY": [oy] * n_planes, "PositionYUnit": ["µm"] * n_planes,
            "PositionZ": [oz + dz * (i % Z) for i in range(n_planes)],
            "PositionZUnit": ["µm"] * n_planes,
        },
    }
    if meta.time_interval_s:
        md["TimeIncrement"] = meta.time_interval_s
        md["TimeIncrementUnit"] = "s"
    return md


class TiffSeriesWriter(SeriesWriter):
    """Writes ``<stem>_labels.ome.tif`` and ``<stem>_fused.ome.tif`` (see module docs)."""

    name = "tif"

    def __init__(self, out_dir: Path, meta: SeriesMeta, *, resume: bool = False) -> None:
        super().__init__(out_dir, meta, resume=resume)
        self.labels_path = self.out_dir / f"{meta.stem}_labels.ome.tif"
        self.fused_path = self.out_dir / f"{meta.stem}_fused.ome.tif"
        self.staging = self.out_dir / f"{meta.stem}_tif.partial"
        if self.staging.exists() and not resume:
            remove(self.staging)
        with os_errors(self.staging):
            self.staging.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ staging
    def _chunk(self, t: int) -> Path:
        return self.staging / f"t{t:05d}.tif"

    def final_paths(self) -> list[Path]:
        """``[<stem>_labels.ome.tif, <stem>_fused.ome.tif]``."""
        return [self.labels_path, self.fused_path]

    def completed(self) -> set[int]:
        """Timepoints with a complete chunk of the right shape in the staging folder."""
        import tifffile

        done: set[int] = set()
        want = tuple(self.meta.shape_tzyx[1:])
        for p in self.staging.iterdir():
            m = _CHUNK_RE.match(p.name)
            if not m:
                continue
            try:
                with tifffile.TiffFile(p) as tif:
                    shapes = [tuple(s.shape) for s in tif.series]
            except Exception:  # a damaged chunk is recomputed
                continue
            if shapes != [want, want]:
                raise OutputError(
                    f"{self.staging}: partial output is from a different run (timepoint shape "
                    f"{shapes[0] if shapes else '?'} != {want}); remove it or use another --out"
                )
            done.add(int(m.group(1)))
        return {t for t in done if t < self.meta.shape_tzyx[0]}

    def read_timepoint(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """Read a staged timepoint back as ``(intensity, labels)``."""
        import tifffile

        with tifffile.TiffFile(self._chunk(t)) as tif:
            return tif.series[0].asarray(), tif.series[1].asarray().astype(np.uint32)

    def write(self, t: int, intensity: np.ndarray, labels: np.ndarray) -> None:
        """Stage timepoint ``t`` as its own small TIFF (atomically)."""
        import tifffile

        final = self._chunk(t)
        part = partial_path(final)
        with os_errors(final):
            with tifffile.TiffWriter(part) as tw:
                tw.write(np.ascontiguousarray(intensity, dtype=np.uint16))
                tw.write(np.ascontiguousarray(labels))  # uint16 or uint32 as given
            os.replace(part, final)

    # ------------------------------------------------------------------ final files
    def _pages(self, series: int) -> Iterator[np.ndarray]:
        import tifffile

        T = self.meta.shape_tzyx[0]
        dtype = np.uint16 if series == 0 else np.uint32
        for t in range(T):
            with tifffile.TiffFile(self._chunk(t)) as tif:
                for page in tif.series[series].pages:
                    yield page.asarray().astype(dtype, copy=False)

    def _write_series(self, tw: Any, series: int, name: str) -> None:
        T, Z, Y, X = self.meta.shape_tzyx
        dtype = np.uint16 if series == 0 else np.uint32
        kw: dict[str, Any] = {}
        if series == 1:
            kw = {"compression": "zlib", "compressionargs": {"level": 1}, "predictor": True}
        tw.write(self._pages(series), shape=(T, Z, Y, X), dtype=dtype,
                 metadata=ome_metadata(self.meta, name, T * Z), **kw)

    def finalize(self) -> list[Path]:
        """Assemble the two OME-TIFFs from the staged timepoints and rename them."""
        import tifffile

        T, Z, Y, X = self.meta.shape_tzyx
        missing = set(range(T)) - self.completed()
        if missing:
            raise OutputError(f"{self.fused_path}: {len(missing)} of {T} timepoints missing; "
                              "not finalised (run again with --resume)")
        big = T * Z * Y * X * 6 > _BIGTIFF_BYTES
        for final, series in ((self.labels_path, (1,)), (self.fused_path, (0, 1))):
            part = partial_path(final)
            with os_errors(final):
                with tifffile.TiffWriter(part, bigtiff=big, ome=True) as tw:
                    for s in series:
                        self._write_series(tw, s, "intensity" if s == 0 else "labels")
                finalize(part, final)
        remove(self.staging)
        return self.final_paths()

    def abort(self) -> None:
        """Nothing buffered: finished timepoints are already in the staging folder."""


def _tzyx(tif: Any, i: int) -> np.ndarray:
    """Series ``i`` as a (T, Z, Y, X) array, singleton axes kept (tifffile squeezes them)."""
    s = tif.series[i]
    arr = tif.asarray(series=i, squeeze=False)
    axes = s.get_axes(False)
    keep = [k for k, a in enumerate(axes) if a in "TZYX"]
    drop = [k for k, a in enumerate(axes) if a not in "TZYX"]
    if any(arr.shape[k] != 1 for k in drop) or "".join(axes[k] for k in keep) != "TZYX":
        raise ValueError(f"series {i} has axes {axes}, expected TZYX")
    return arr.reshape([arr.shape[k] for k in keep])


def read_ome_tiff_series(path: str | Path) -> dict[str, Any]:
    """Read one of our OME-TIFFs: series arrays by name, voxel size, offset, provenance.

    Returns
    -------
    dict
        ``{"series": {name: array}, "spacing_um": (z, y, x), "offset_zyx": (z, y, x),
        "provenance": dict}``.
    """
    import tifffile

    with tifffile.TiffFile(path) as tif:
        series = {s.name or f"series{i}": _tzyx(tif, i) for i, s in enumerate(tif.series)}
        desc: dict[str, Any] = {}
        xml = tif.ome_metadata or ""
        m = re.search(r"<Description>(.*?)</Description>", xml, re.S)
        if m:
            import html

            try:
                desc = json.loads(html.unescape(m.group(1))).get("neuroglia5d", {})
            except json.JSONDecodeError:
                desc = {}
    return {"series": series, "spacing_um": tuple(desc.get("spacing_um", (1.0, 1.0, 1.0))),
            "offset_zyx": tuple(desc.get("offset_zyx", (0, 0, 0))),
            "provenance": desc.get("provenance", {})}
