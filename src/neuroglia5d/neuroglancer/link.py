"""Neuroglancer states and shareable links for an export (or a pipeline OME-Zarr).

A state is the JSON Neuroglancer keeps in its URL after ``#!``. For an export it opens,
for one timepoint, the intensity (image layer), the labels (segmentation layer with
meshes, skeletons and segment properties; every label selected so its mesh and skeleton
show in 3D) and the centroids (point annotations carrying the statistics), with the voxel
size in metres per axis as Neuroglancer's ``dimensions`` want.

``neuroglia5d ng-link DIR --base-url URL`` (:func:`write_links`) writes, for data that will
be hosted at ``URL``: ``state_tNNN.json`` per timepoint, ``links.txt`` (one URL per
timepoint) and ``index.html`` (the same links, clickable).
"""

from __future__ import annotations

import html
import json
import urllib.parse
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..io.atomic import atomic_write_text
from .export import MANIFEST

#: the public Neuroglancer client used for shareable links
DEFAULT_VIEWER = "https://neuroglancer-demo.appspot.com/"


def load_manifest(export_dir: str | Path) -> dict[str, Any]:
    """Read ``neuroglia5d_ng.json`` of an export; one-line error when it is not one."""
    p = Path(export_dir) / MANIFEST
    if not p.is_file():
        raise InputError(f"{export_dir}: not a Neuroglancer export (no {MANIFEST}); run "
                         "`neuroglia5d export-neuroglancer` first")
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InputError(f"{p}: unreadable manifest ({e})") from None


def _dimensions(spacing_um: Any) -> dict[str, list[Any]]:
    sz, sy, sx = (float(v) for v in spacing_um)
    return {"x": [sx * 1e-6, "m"], "y": [sy * 1e-6, "m"], "z": [sz * 1e-6, "m"]}


def export_state(manifest: dict[str, Any], base_url: str, t: int = 0, *,
                 layout: str = "4panel") -> dict[str, Any]:
    """Neuroglancer state opening timepoint ``t`` of an export hosted at ``base_url``.

    Parameters
    ----------
    manifest : dict
        From :func:`load_manifest`.
    base_url : str
        URL of the export folder (``http://``, ``https://``, ``gs://``, ``s3://``).
    t : int
        Timepoint.
    layout : str
        Neuroglancer layout (``4panel``, ``xy``, ``3d``, ...).
    """
    tps = manifest["timepoints"]
    if not 0 <= t < len(tps):
        raise InputError(f"timepoint {t}: the export has timepoints 0..{len(tps) - 1}")
    tp = tps[t]
    base = base_url.rstrip("/") + "/" + tp["path"]
    _T, Z, Y, X = manifest["shape_tzyx"]
    oz, oy, ox = manifest["offset_zyx"]
    sz, sy, sx = manifest["voxel_size_um"]
    suffix = f" t{t:03d}"
    seg_name = "labels" + suffix
    layers: list[dict[str, Any]] = []
    if manifest["layers"].get("image"):
        # no explicit contrast: a shader range raced with the data type in the bundled
        # client (2.41); Neuroglancer sets the range from the data's histogram itself
        layers.append({"type": "image", "name": "intensity" + suffix,
                       "source": f"precomputed://{base}/image"})
    layers.append({"type": "segmentation", "name": seg_name,
                   "source": f"precomputed://{base}/labels",
                   "segments": [str(i) for i in tp["label_ids"]],
                   "selectedAlpha": 0.4, "tab": "segments"})
    layers.append({"type": "annotation", "name": "centroids" + suffix,
                   "source": f"precomputed://{base}/centroids",
                   "linkedSegmentationLayer": {"segment": seg_name},
                   "annotationColor": "#ffff00"})
    return {
        "dimensions": _dimensions((sz, sy, sx)),
        "position": [ox + X / 2, oy + Y / 2, oz + Z / 2],
        "layers": layers,
        "layout": layout,
    }


def omezarr_state(zarr_url: str, spacing_um: Any, shape_tzyx: Any, *,
                  offset_zyx: Any = (0, 0, 0), t: int = 0, name: str = "",
                  label_ids: Any = ()) -> dict[str, Any]:
    """State opening a pipeline ``<stem>_fused.ome.zarr`` as it is (``zarr://``).

    The store's root is the intensity; ``labels/working`` the labels. Neuroglancer
    reads the OME-NGFF axes (t, z, y, x) and voxel size; time is its ``t`` dimension
    (position ``t + 0.5`` shows timepoint ``t``), and x, y, z are the displayed ones.
    """
    base = zarr_url.rstrip("/")
    _, Z, Y, X = (int(v) for v in shape_tzyx)
    oz, oy, ox = (int(v) for v in offset_zyx)
    dims = _dimensions(spacing_um)
    dims["t"] = [1, ""]
    seg = f"{name} labels".strip()
    return {
        "dimensions": dims,
        "displayDimensions": ["x", "y", "z"],
        "position": [ox + X / 2, oy + Y / 2, oz + Z / 2, t + 0.5],
        "layers": [
            {"type": "image", "name": f"{name} intensity".strip(), "source": f"zarr://{base}/"},
            {"type": "segmentation", "name": seg, "source": f"zarr://{base}/labels/working/",
             "segments": [str(int(i)) for i in label_ids]},
        ],
        "layout": "4panel",
    }


def state_url(viewer_url: str, state: dict[str, Any]) -> str:
    """``viewer_url#!<url-encoded state>``."""
    return viewer_url + "#!" + urllib.parse.quote(json.dumps(state, separators=(",", ":")),
                                                  safe="")


def write_links(export_dir: str | Path, base_url: str, *,
                viewer_url: str = DEFAULT_VIEWER) -> list[str]:
    """Write ``state_tNNN.json``, ``links.txt`` and ``index.html`` into an export.

    Parameters
    ----------
    export_dir : str or Path
        An export (:func:`~.export.export_neuroglancer`).
    base_url : str
        Where the export folder will be hosted (its URL, CORS enabled).
    viewer_url : str
        The Neuroglancer client the links open.

    Returns
    -------
    list of str
        One URL per timepoint.
    """
    d = Path(export_dir)
    m = load_manifest(d)
    if "://" not in base_url:
        raise InputError(f"--base-url {base_url!r}: expected a URL such as "
                         "https://host/path, gs://bucket/path or s3://bucket/path")
    urls = []
    items = []
    for t in range(len(m["timepoints"])):
        st = export_state(m, base_url, t)
        atomic_write_text(d / f"state_t{t:03d}.json", json.dumps(st, indent=1))
        u = state_url(viewer_url, st)
        urls.append(u)
        items.append(f'<li><a href="{html.escape(u)}">timepoint {t}</a></li>')
    atomic_write_text(d / "links.txt", "\n".join(urls) + "\n")
    atomic_write_text(d / "index.html",
                      f"<!doctype html><meta charset='utf-8'><title>{html.escape(m['stem'])}"
                      f"</title><h1>{html.escape(m['stem'])} in Neuroglancer</h1><ol start=0>"
                      + "".join(items) + "</ol>\n")
    return urls
