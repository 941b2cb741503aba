"""napari writer contributions (File > Save Layers): ``.ng5d``, ``.ome.zarr``, ``.tif``.

A single Labels or Image layer writes to ``.ng5d`` or ``.tif``; an Image and a Labels layer
together write a fused file (intensity + working labels) to any of the three formats. The
voxel size and crop offset come from the layers' ``scale`` and ``translate``. Every file is
written as ``NAME.partial`` and renamed when complete.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..io.convert import Outputs, format_of

FullLayerData = tuple[Any, dict[str, Any], str]


def _tzyx(data: Any) -> Any:
    a = data
    if getattr(a, "ndim", 0) == 3:
        a = np.asarray(a)[np.newaxis]
    if getattr(a, "ndim", 0) != 4:
        raise ValueError(f"expected a (T, Z, Y, X) or (Z, Y, X) layer, got {a.ndim} dims")
    return a


def _geometry(meta: dict[str, Any]) -> tuple[tuple[float, float, float], tuple[int, int, int]]:
    scale = list(meta.get("scale") or [1.0] * 4)[-3:]
    translate = list(meta.get("translate") or [0.0] * 4)[-3:]
    spacing = tuple(float(s) for s in scale)
    offset = tuple(round(t / s) for t, s in zip(translate, spacing, strict=True))
    return spacing, offset  # type: ignore[return-value]


def _outputs(layers: list[FullLayerData], path: Path) -> Outputs:
    arrays: dict[str, Any] = {}
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    offset: tuple[int, int, int] = (0, 0, 0)
    prov: dict[str, Any] = {}
    for data, meta, kind in layers:
        name = "labels" if kind == "labels" else "intensity"
        if name in arrays:
            raise ValueError(f"{path}: at most one {kind} layer per file")
        a = _tzyx(data)
        if kind == "labels":
            a = np.asarray(a)
            if a.size and int(a.min()) < 0:
                raise ValueError(f"{path}: labels must be non-negative")
            a = a.astype(np.uint32, copy=False)
        else:
            a = np.asarray(a)
            if a.dtype not in (np.uint8, np.uint16, np.float32):
                a = np.clip(a, 0, 65535).astype(np.uint16)
        arrays[name] = a
        spacing, offset = _geometry(meta)
        prov = (meta.get("metadata") or {}).get("neuroglia5d", {}).get("provenance", prov)
    return Outputs(arrays, spacing, offset, prov or {}, path.name)


def write_layers(path: str, layers: list[FullLayerData]) -> list[str]:
    """Write one layer, or an image and a labels layer, to ``path`` (format by extension)."""
    from ..io.convert import write_outputs

    p = Path(path)
    fmt = format_of(p)
    o = _outputs(layers, p)
    return [str(write_outputs(o, p, fmt))]


def write_labels(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """npe2 writer for one Labels layer."""
    return write_layers(path, [(data, meta, "labels")])


def write_image(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """npe2 writer for one Image layer."""
    return write_layers(path, [(data, meta, "image")])
