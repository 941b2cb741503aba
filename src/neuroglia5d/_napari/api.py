"""Scripting from napari's console or a notebook.

>>> import neuroglia5d
>>> image, labels = neuroglia5d.open_pair("out/movie/movie_labels.ome.tif", viewer)
>>> labels = neuroglia5d.segment_layer(viewer.layers["raw"], {"ch1_minDist_um": 8})
>>> neuroglia5d.save(viewer, formats=("ng5d", "tif"))
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def open_pair(path: str | Path, viewer: Any = None) -> tuple[Any, Any]:
    """Open a series' working copy (intensity and labels) in ``viewer`` (a new one if None).

    Returns
    -------
    (image_layer or None, labels_layer)
    """
    import napari

    if viewer is None:
        viewer = napari.Viewer()
    layers = viewer.open(str(path), plugin="napari-neuroglia5d")
    img = next((ly for ly in layers if ly.__class__.__name__ == "Image"), None)
    lab = next((ly for ly in layers if ly.__class__.__name__ == "Labels"), None)
    return img, lab


def segment_layer(layer: Any, params: Any = None, viewer: Any = None,
                  folder: str | Path | None = None) -> Any:
    """Segment an Image layer's (T, Z, Y, X) or (Z, Y, X) data in this process.

    The same steps as the pipeline (calibration at the first timepoint, linking over time)
    with the voxel size taken from the layer's ``scale``. The result is added to
    ``viewer`` (when given) as a working-copy Labels layer that :func:`save` writes to
    ``folder`` (default: the current folder).

    Returns
    -------
    numpy.ndarray or napari Labels layer
        The layer when a viewer is given, else the (T, Z, Y, X) uint32 labels.
    """
    from ..params import Parameters
    from ..pipeline import _resolve_params
    from ..processing.timepoint import process_channel
    from ..processing.tracking import LinkState, link_frame

    data = np.asarray(layer.data)
    if data.ndim == 3:
        data = data[np.newaxis]
    scale = tuple(float(s) for s in layer.scale[-3:])
    p = _resolve_params(params, strict=False) if params is not None else Parameters()
    if "px_um" not in p.explicit and "dz_um" not in p.explicit:
        p = p.updated({"dz_um": scale[0], "px_um": scale[2]})
    out = np.zeros(data.shape, np.uint32)
    calib = None
    state = LinkState()
    for t in range(data.shape[0]):
        res, calib = process_channel(data[t].astype(np.float32), p, 1, calib, t=t,
                                     offset_zyx=(0, 0, 0))
        lab, _ = link_frame(res.labels, state, p.spacing_um, max_dist_um=p.channel(1).minDist_um)
        out[t] = lab
    if viewer is None:
        return out
    stem = layer.name.replace(" ", "_")
    meta = {"neuroglia5d": {"role": "working", "stem": stem,
                            "folder": str(Path(folder) if folder else Path.cwd()),
                            "spacing_um": list(p.spacing_um), "offset_zyx": [0, 0, 0],
                            "original": out.copy(), "format": None, "provenance": {},
                            "source": None}}
    return viewer.add_labels(out, name=f"{stem} labels", scale=layer.scale,
                             translate=layer.translate, metadata=meta)


def use_as_working_copy(labels_layer: Any, image_layer: Any, folder: str | Path,
                        stem: str | None = None) -> Any:
    """Adopt a Labels layer made by another tool (Cellpose, micro-sam) as a working copy.

    The layer is tagged with the series name and folder so that :func:`save` writes
    ``<stem>_fused.*`` there together with ``image_layer``'s intensity; its current
    labels become the "original" that restore returns to.
    """
    stem = stem or image_layer.name.replace(" ", "_")
    scale = [float(s) for s in labels_layer.scale[-3:]]
    translate = [float(t) for t in labels_layer.translate[-3:]]
    labels_layer.metadata["neuroglia5d"] = {
        "role": "working", "stem": stem, "folder": str(folder), "spacing_um": scale,
        "offset_zyx": [round(t / s) for t, s in zip(translate, scale, strict=True)],
        "original": np.asarray(labels_layer.data).copy(), "format": None,
        "provenance": {}, "source": None}
    image_layer.name = f"{stem} intensity"
    return labels_layer


def save(viewer: Any, formats: tuple[str, ...] | list[str] = ("ng5d",)) -> list[Path]:
    """Save every working copy in ``viewer`` as ``<stem>_fused.<ext>`` (see SaveWidget)."""
    from .save_widget import save_working_copy, working_layers

    written: list[Path] = []
    for layer in working_layers(viewer):
        written += save_working_copy(viewer, layer, list(formats))
    return written
