"""napari reader contribution: ``.ng5d``, our ``.ome.zarr``, and ``.tif``/``.tiff``.

Opening ``<stem>_labels.*`` or ``<stem>_fused.*`` opens the working copy (intensity and
labels, fastest format first: ``.ng5d``, ``.ome.zarr``, ``.tif``); the original labels
(``<stem>_labels.*``) are kept read-only in the Labels layer's metadata for "restore".
Everything needed for navigation is loaded once (TIFF read in one pass, OME-Zarr chunks
decompressed once, ``.ng5d`` kept compressed in memory and decoded per brick on demand),
so stepping through Z and T reads no file. Readers never prompt and never write.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import Neuroglia5DError
from ..io.pairing import Pair, find_pair

LayerData = tuple[Any, dict[str, Any], str]
PathLike = str | list[str]


def get_reader(path: PathLike) -> Any:
    """npe2 reader hook: a reader function for paths we take, else None (never raises)."""
    paths = [path] if isinstance(path, str) else list(path)
    if not paths or not all(_takes(Path(p)) for p in paths):
        return None
    return read


def _takes(p: Path) -> bool:
    try:
        low = p.name.lower()
        if low.endswith(".ng5d") or low.endswith(".ng5d.partial"):
            return p.is_file()
        if low.endswith(".ome.zarr"):
            return p.is_dir() and _is_our_zarr(p)
        if low.endswith((".tif", ".tiff")):
            return p.is_file()
    except OSError:
        return False
    return False


def _is_our_zarr(p: Path) -> bool:
    for meta in (p / ".zattrs", p / "zarr.json"):
        if meta.exists():
            try:
                attrs = json.loads(meta.read_text())
            except (OSError, json.JSONDecodeError):
                return False
            attrs = attrs.get("attributes", attrs)
            return "neuroglia5d" in attrs
    return False


def read(path: PathLike) -> list[LayerData]:
    """Read one or more paths into layer data; a damaged file of ours is a notification."""
    paths = [path] if isinstance(path, str) else list(path)
    layers: list[LayerData] = []
    for p in paths:
        try:
            layers += layers_for(Path(p))
        except Neuroglia5DError as e:
            _notify_error(str(e))
        except (OSError, ValueError) as e:
            _notify_error(f"{p}: cannot open ({e})")
    return layers


def _notify_error(msg: str) -> None:
    from napari.utils.notifications import show_error

    show_error(msg)


def _notify_warning(msg: str) -> None:
    from napari.utils.notifications import show_warning

    show_warning(msg)


# --------------------------------------------------------------------------- loading
def load_any(path: Path) -> dict[str, Any]:
    """Arrays and metadata of one of our files: ``{"intensity", "labels", "spacing_um",
    "offset_zyx"}`` (arrays (T, Z, Y, X); missing ones absent). TIFF and OME-Zarr are read
    into memory in one pass; ``.ng5d`` arrays stay lazy (compressed in memory)."""
    from ..io.convert import format_of, load_outputs

    fmt = format_of(path)
    o = load_outputs(path)
    out: dict[str, Any] = {"spacing_um": tuple(o.spacing_um),
                           "offset_zyx": tuple(int(v) for v in o.offset_zyx),
                           "provenance": o.provenance, "format": fmt}
    for name, a in o.arrays.items():
        out[name] = a if fmt == "ng5d" else np.asarray(a[...] if fmt == "tif" else a[:])
    return out


def label_features(stats_csv: Path) -> dict[str, np.ndarray] | None:
    """Per-label features for napari's hover status: the ``*_labelStats.csv`` rows of every
    label averaged over the timepoints it appears in, plus its first/last timepoint."""
    from ..processing.stats import read_stats_csv

    try:
        tb = read_stats_csv(stats_csv)
    except (OSError, KeyError, ValueError):
        return None
    return features_of_table(tb)


def features_of_table(tb: dict[str, np.ndarray]) -> dict[str, np.ndarray] | None:
    """:func:`label_features` of a label-stats table (columns as in the CSV, one row per
    label and timepoint); None when it has no rows."""
    labels = tb["label"]
    if labels.size == 0:
        return None
    ids, inv = np.unique(labels, return_inverse=True)
    n = np.bincount(inv)
    feats: dict[str, np.ndarray] = {"index": ids}
    for col in ("volume_um3", "mean_intensity", "max_intensity", "nn_dist_um", "surface_um2",
                "sphericity"):
        v = tb[col].astype(float)
        ok = np.isfinite(v)
        s = np.bincount(inv[ok], weights=v[ok], minlength=len(ids))
        c = np.bincount(inv[ok], minlength=len(ids))
        with np.errstate(invalid="ignore", divide="ignore"):
            feats[col] = np.round(s / c, 3)
    t = tb["t"]
    feats["t_first"] = np.array([t[inv == k].min() for k in range(len(ids))])
    feats["t_last"] = np.array([t[inv == k].max() for k in range(len(ids))])
    feats["timepoints"] = n
    return feats


def _common(spacing: tuple[float, ...], offset: tuple[int, ...]) -> dict[str, Any]:
    sz, sy, sx = spacing
    oz, oy, ox = offset
    return {"scale": (1.0, sz, sy, sx), "translate": (0.0, oz * sz, oy * sy, ox * sx),
            "axis_labels": ("t", "z", "y", "x"), "units": ("", "µm", "µm", "µm")}


def layers_for(path: Path) -> list[LayerData]:
    """Layers for one path (pairing applied to our ``_fused``/``_labels`` files)."""
    pair = find_pair(path)
    if pair is not None and (pair.fused is not None or pair.labels is not None):
        return _pair_layers(pair)
    if path.name.lower().endswith((".tif", ".tiff")):
        return _plain_tiff_layers(path)
    d = load_any(path)
    return _array_layers(d, path.name, path, None)


def _pair_layers(pair: Pair) -> list[LayerData]:
    for w in pair.warnings:
        _notify_warning(w)
    src = pair.fused if pair.fused is not None else pair.labels
    assert src is not None
    d = load_any(src)
    original = None
    if pair.labels is not None and pair.fused is not None:
        original = load_any(pair.labels).get("labels")
    return _array_layers(d, pair.stem, src, pair, original)


def _array_layers(d: dict[str, Any], stem: str, src: Path, pair: Pair | None,
                  original: Any = None) -> list[LayerData]:
    common = _common(d["spacing_um"], d["offset_zyx"])
    layers: list[LayerData] = []
    if "intensity" in d:
        layers.append((d["intensity"], {"name": f"{stem} intensity", "colormap": "gray",
                                        "blending": "additive", **common}, "image"))
    if "labels" in d:
        lab = d["labels"]
        is_working = pair is not None and pair.fused is not None
        # the working copy must be editable: decode it into memory
        data = np.array(lab[...] if hasattr(lab, "file") else lab, copy=True)
        meta = {"neuroglia5d": {
            "role": "working" if is_working else "labels",
            "source": str(src), "stem": stem, "folder": str(src.parent),
            "spacing_um": list(d["spacing_um"]), "offset_zyx": list(d["offset_zyx"]),
            "original": original, "format": d["format"],
            "provenance": d.get("provenance", {}),
        }}
        kw: dict[str, Any] = {"name": f"{stem} labels", "metadata": meta, **common}
        if pair is not None and pair.stats is not None:
            feats = label_features(pair.stats)
            if feats is not None:
                kw["features"] = feats
        layers.append((data, kw, "labels"))
    return layers


def _plain_tiff_layers(path: Path) -> list[LayerData]:
    """A TIFF that is not one of our outputs: our OME layout, or any stack/hyperstack."""
    from ..io.convert import load_outputs

    try:
        o = load_outputs(path)
        d = {"spacing_um": tuple(o.spacing_um), "offset_zyx": tuple(o.offset_zyx),
             "format": "tif", "provenance": o.provenance}
        for k, a in o.arrays.items():
            d[k] = np.asarray(a)
        return _array_layers(d, path.stem, path, None)
    except Neuroglia5DError:
        pass
    from ..io.datasets import open_dataset

    ds = open_dataset(path, "hyperstack")
    data = np.stack([ds.read_timepoint(t) for t in range(ds.n_timepoints)])  # T C Z Y X
    spacing = (ds.dz_um or 1.0, ds.px_um or 1.0, ds.px_um or 1.0)
    common = _common(spacing, (0, 0, 0))
    name = path.name.split(".")[0]
    if ds.n_channels == 1:
        return [(data[:, 0], {"name": name, **common}, "image")]
    return [(data[:, c], {"name": f"{name} ch{c + 1}", **common}, "image")
            for c in range(ds.n_channels)]
