"""4D render of one tracked object (Alt+click in the annotation dock).

A box is cropped around the clicked label over *every* timepoint it appears in (its
identity: label IDs are global across time in the working copy), padded in XY and Z, and
shown as a 3D volume over time: the tracked object green, every other label red.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

#: values of the render volume
BACKGROUND, OTHER, TRACKED = 0, 1, 2
#: colours (RGBA) of the render: other labels red, the tracked object green
COLORS: dict[int | None, tuple[float, float, float, float]] = {
    BACKGROUND: (0.0, 0.0, 0.0, 0.0), OTHER: (1.0, 0.0, 0.0, 1.0),
    TRACKED: (0.0, 1.0, 0.0, 1.0), None: (0.0, 0.0, 0.0, 0.0)}


def track_box(labels: np.ndarray, label: int,
              bbox: Callable[[int, int], Sequence[int] | None] | None = None
              ) -> tuple[int, int, int, int, int, int] | None:
    """Union over all timepoints of the bounding boxes of ``label``.

    Parameters
    ----------
    labels : numpy.ndarray
        (T, Z, Y, X) labels.
    label : int
        The object's ID.
    bbox : callable, optional
        ``bbox(t, label) -> (z0, z1, y0, y1, x0, x1) or None`` (a working copy's cached
        boxes); computed from ``labels`` when not given.

    Returns
    -------
    (z0, z1, y0, y1, x0, x1) or None
        Half-open voxel box, None when the label is nowhere.
    """
    lo = np.array([np.iinfo(np.int64).max] * 3)
    hi = np.array([-1] * 3)
    for t in range(labels.shape[0]):
        b = bbox(t, label) if bbox is not None else _bbox(labels[t] == label)
        if b is None:
            continue
        lo = np.minimum(lo, [b[0], b[2], b[4]])
        hi = np.maximum(hi, [b[1], b[3], b[5]])
    if hi[0] < 0:
        return None
    return int(lo[0]), int(hi[0]), int(lo[1]), int(hi[1]), int(lo[2]), int(hi[2])


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int, int, int] | None:
    if not mask.any():
        return None
    out: list[int] = []
    for ax in range(3):
        other = tuple(a for a in range(3) if a != ax)
        nz = np.flatnonzero(mask.any(axis=other))
        out += [int(nz[0]), int(nz[-1]) + 1]
    return out[0], out[1], out[2], out[3], out[4], out[5]


def render_volume(labels: np.ndarray, label: int, *, pad_xy: int, pad_z: int,
                  bbox: Callable[[int, int], Sequence[int] | None] | None = None
                  ) -> tuple[np.ndarray, tuple[int, int, int]] | None:
    """The padded crop of ``label`` over time, coded for the render.

    Parameters
    ----------
    labels : numpy.ndarray
        (T, Z, Y, X) labels (the whole working copy).
    label : int
        The tracked object's ID.
    pad_xy, pad_z : int
        Padding in voxels around the object's box in Y/X and in Z.
    bbox : callable, optional
        Cached per-timepoint boxes (see :func:`track_box`).

    Returns
    -------
    (volume, origin_zyx) or None
        ``volume`` (T, z, y, x) uint8: :data:`TRACKED` where the object is,
        :data:`OTHER` for every other label, 0 elsewhere; ``origin_zyx`` the crop's
        corner in voxels of the whole array. None when the label is nowhere.
    """
    box = track_box(labels, label, bbox)
    if box is None:
        return None
    _, Z, Y, X = labels.shape
    z0, z1 = max(0, box[0] - pad_z), min(Z, box[1] + pad_z)
    y0, y1 = max(0, box[2] - pad_xy), min(Y, box[3] + pad_xy)
    x0, x1 = max(0, box[4] - pad_xy), min(X, box[5] + pad_xy)
    crop = np.asarray(labels[:, z0:z1, y0:y1, x0:x1])
    vol = np.where(crop == label, TRACKED, np.where(crop != 0, OTHER, BACKGROUND))
    return vol.astype(np.uint8), (z0, y0, x0)


def show_render(viewer: Any, volume: np.ndarray, origin_zyx: Sequence[int],
                spacing_um: Sequence[float], label: int, t: int) -> Any:
    """Show a render volume in ``viewer`` as a 3D Labels layer over time.

    The layer (named ``4D render of <label>``) replaces an earlier render of the same
    label; the viewer switches to 3D display at timepoint ``t``.

    Returns
    -------
    napari.layers.Labels
        The render layer.
    """
    from napari.utils.colormaps import DirectLabelColormap

    sz, sy, sx = (float(v) for v in spacing_um)
    oz, oy, ox = (int(v) for v in origin_zyx)
    name = f"4D render of {label}"
    if name in viewer.layers:
        viewer.layers.remove(name)
    layer = viewer.add_labels(
        volume, name=name, scale=(1.0, sz, sy, sx),
        translate=(0.0, oz * sz, oy * sy, ox * sx),
        colormap=DirectLabelColormap(color_dict=COLORS), opacity=1.0,
        axis_labels=("t", "z", "y", "x"), units=("", "µm", "µm", "µm"))
    layer.rendering = "iso_categorical"
    viewer.dims.ndisplay = 3
    step = list(viewer.dims.current_step)
    step[0] = int(t)
    viewer.dims.current_step = tuple(step)
    viewer.reset_view()
    return layer
