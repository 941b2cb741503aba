"""Writers for Neuroglancer's *precomputed* format: volumes, pyramids, properties, skeletons.

Everything here works on one 3D timepoint. Arrays come in our (z, y, x) order; precomputed
files are (x, y, z): ``info`` sizes, resolutions and offsets are listed x first, and chunk
payloads are (x, y, z) in Fortran order, which is exactly the bytes of a C-ordered (z, y, x)
array. Resolutions are nanometres per voxel.

Layout of one volume (``neuroglancer_multiscale_volume``)::

    info                      JSON, one entry per scale
    <key>/<x0>-<x1>_<y0>-<y1>_<z0>-<z1>   one file per chunk

Intensity uses the ``raw`` encoding; labels use ``compressed_segmentation`` (8x8x8 blocks,
the ``compressed-segmentation`` package). The pyramid halves x and y at every level and z
only once its voxel is less than twice the finest lateral size, so levels approach isotropy.
Intensity is downsampled by the mean, labels by the mode (ties go to a non-zero label,
then to the smallest ID), so every label in a coarse level is a label of the full level.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: chunk size (x, y, z) in voxels of every scale
CHUNK_XYZ: tuple[int, int, int] = (64, 64, 32)
#: compressed_segmentation block size (x, y, z)
CSEG_BLOCK: tuple[int, int, int] = (8, 8, 8)


@dataclass(frozen=True)
class Scale:
    """One pyramid level.

    Attributes
    ----------
    key : str
        Folder name of the level.
    shape_zyx : tuple of int
        Size in voxels.
    resolution_nm_zyx : tuple of float
        Voxel size in nm.
    factor_zyx : tuple of int
        Downsampling factor from the previous level (1, 1, 1 for the full level).
    offset_zyx : tuple of int
        ``voxel_offset`` of the level (full-level offset divided by the total factor).
    """

    key: str
    shape_zyx: tuple[int, int, int]
    resolution_nm_zyx: tuple[float, float, float]
    factor_zyx: tuple[int, int, int]
    offset_zyx: tuple[int, int, int]


def _key(res_zyx: Sequence[float]) -> str:
    def f(v: float) -> str:
        return str(round(v)) if abs(v - round(v)) < 1e-6 else f"{v:g}"

    return "_".join(f(v) for v in reversed(tuple(res_zyx)))


def plan_scales(shape_zyx: Sequence[int], resolution_nm_zyx: Sequence[float],
                offset_zyx: Sequence[int] = (0, 0, 0), *, min_size: int = 16,
                max_levels: int = 6) -> list[Scale]:
    """Pyramid levels for a volume.

    Parameters
    ----------
    shape_zyx : sequence of int
        Full-resolution size (voxels).
    resolution_nm_zyx : sequence of float
        Full-resolution voxel size (nm).
    offset_zyx : sequence of int
        Full-resolution ``voxel_offset`` (voxels).
    min_size : int
        Stop once the lateral size of a level would fall below this (voxels).
    max_levels : int
        At most this many levels.

    Returns
    -------
    list of Scale
        Finest first.
    """
    shape = tuple(int(v) for v in shape_zyx)
    res = tuple(float(v) for v in resolution_nm_zyx)
    total = (1, 1, 1)
    scales = [Scale(_key(res), shape, res, (1, 1, 1), tuple(int(v) for v in offset_zyx))]  # type: ignore[arg-type]
    while len(scales) < max_levels:
        lateral = min(res[1], res[2])
        f = tuple(2 if (res[i] < 2 * lateral or i > 0) else 1 for i in range(3))
        if min(shape[1], shape[2]) // 2 < min_size:
            break
        shape = tuple(-(-s // fi) for s, fi in zip(shape, f, strict=True))
        res = tuple(r * fi for r, fi in zip(res, f, strict=True))
        total = tuple(a * b for a, b in zip(total, f, strict=True))
        off = tuple(int(o) // t for o, t in zip(offset_zyx, total, strict=True))
        scales.append(Scale(_key(res), shape, res, f, off))  # type: ignore[arg-type]
    return scales


def _blocks(vol: np.ndarray, f: Sequence[int]) -> np.ndarray:
    """(k, Z', Y', X') view of ``vol`` cut into f-sized blocks (edges padded by replication)."""
    fz, fy, fx = (int(v) for v in f)
    pad = [(0, (-s) % fi) for s, fi in zip(vol.shape, (fz, fy, fx), strict=True)]
    if any(p[1] for p in pad):
        vol = np.pad(vol, pad, mode="edge")
    z, y, x = (s // fi for s, fi in zip(vol.shape, (fz, fy, fx), strict=True))
    b = vol.reshape(z, fz, y, fy, x, fx).transpose(1, 3, 5, 0, 2, 4)
    return b.reshape(fz * fy * fx, z, y, x)


def downsample_mean(vol: np.ndarray, f: Sequence[int]) -> np.ndarray:
    """Block mean of an intensity volume (rounded back to integers for integer types)."""
    if tuple(f) == (1, 1, 1):
        return vol
    m = _blocks(vol, f).mean(axis=0, dtype=np.float64)
    if np.issubdtype(vol.dtype, np.integer):
        m = np.rint(m)
    return m.astype(vol.dtype)


def downsample_mode(labels: np.ndarray, f: Sequence[int]) -> np.ndarray:
    """Block mode of a label volume.

    Ties go to a non-zero label, then to the smallest ID, so thin objects survive
    downsampling as long as they cover as many voxels of a block as anything else.
    """
    if tuple(f) == (1, 1, 1):
        return labels
    b = _blocks(labels, f)
    k = b.shape[0]
    best = b[0].copy()
    best_score = np.full(b.shape[1:], -1, np.int32)
    for i in range(k):
        cnt = np.zeros(b.shape[1:], np.int32)
        for j in range(k):
            cnt += b[i] == b[j]
        score = 2 * cnt + (b[i] != 0)
        better = (score > best_score) | ((score == best_score) & (b[i] < best))
        best = np.where(better, b[i], best)
        best_score = np.where(better, score, best_score)
    return best


def volume_info(kind: str, dtype: np.dtype, scales: Sequence[Scale], *,
                extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``info`` JSON of an image (``kind='image'``) or segmentation volume."""
    seg = kind == "segmentation"
    out: dict[str, Any] = {
        "@type": "neuroglancer_multiscale_volume",
        "type": kind,
        "data_type": np.dtype(dtype).name,
        "num_channels": 1,
        "scales": [],
    }
    for s in scales:
        sc: dict[str, Any] = {
            "key": s.key,
            "size": list(reversed(s.shape_zyx)),
            "resolution": list(reversed(s.resolution_nm_zyx)),
            "voxel_offset": list(reversed(s.offset_zyx)),
            "chunk_sizes": [[min(c, n) for c, n in zip(CHUNK_XYZ, reversed(s.shape_zyx),
                                                      strict=True)]],
            "encoding": "compressed_segmentation" if seg else "raw",
        }
        if seg:
            sc["compressed_segmentation_block_size"] = list(CSEG_BLOCK)
        out["scales"].append(sc)
    if extra:
        out.update(extra)
    return out


def iter_chunks(shape_zyx: Sequence[int], offset_zyx: Sequence[int],
                chunk_xyz: Sequence[int]) -> Iterator[tuple[tuple[slice, ...], str]]:
    """Yield ``(slices into the (z, y, x) array, chunk file name)`` for every chunk."""
    cz = min(chunk_xyz[2], shape_zyx[0])
    cy = min(chunk_xyz[1], shape_zyx[1])
    cx = min(chunk_xyz[0], shape_zyx[2])
    oz, oy, ox = (int(v) for v in offset_zyx)
    for z0 in range(0, shape_zyx[0], cz):
        z1 = min(z0 + cz, shape_zyx[0])
        for y0 in range(0, shape_zyx[1], cy):
            y1 = min(y0 + cy, shape_zyx[1])
            for x0 in range(0, shape_zyx[2], cx):
                x1 = min(x0 + cx, shape_zyx[2])
                name = f"{x0 + ox}-{x1 + ox}_{y0 + oy}-{y1 + oy}_{z0 + oz}-{z1 + oz}"
                yield (slice(z0, z1), slice(y0, y1), slice(x0, x1)), name


def encode_chunk(chunk_zyx: np.ndarray, encoding: str) -> bytes:
    """Bytes of one chunk file.

    ``raw``: little-endian (x, y, z) Fortran order. ``compressed_segmentation``: the
    reference encoder with :data:`CSEG_BLOCK` blocks.
    """
    if encoding == "raw":
        return np.ascontiguousarray(chunk_zyx, dtype=chunk_zyx.dtype.newbyteorder("<")).tobytes()
    import compressed_segmentation as cseg

    a = np.ascontiguousarray(chunk_zyx)
    if a.dtype not in (np.uint32, np.uint64):
        a = a.astype(np.uint32)
    # a (z, y, x) C array is the (x, y, z) Fortran array the format wants
    return bytes(cseg.compress(a.T[..., np.newaxis], block_size=CSEG_BLOCK, order="F"))


def write_volume(root: Path, vol_zyx: np.ndarray, scales: Sequence[Scale], *, kind: str,
                 extra_info: Mapping[str, Any] | None = None) -> int:
    """Write a multiscale volume (every level) under ``root``; returns bytes written.

    Parameters
    ----------
    root : Path
        Folder of the volume (created).
    vol_zyx : numpy.ndarray
        Full-resolution (z, y, x) data.
    scales : sequence of Scale
        From :func:`plan_scales`.
    kind : {'image', 'segmentation'}
        Image volumes use ``raw`` chunks and mean downsampling; segmentations use
        ``compressed_segmentation`` chunks and mode downsampling.
    extra_info : mapping, optional
        Keys added to ``info`` (``mesh``, ``skeletons``, ``segment_properties``).
    """
    seg = kind == "segmentation"
    root.mkdir(parents=True, exist_ok=True)
    enc = "compressed_segmentation" if seg else "raw"
    if seg and vol_zyx.dtype not in (np.uint32, np.uint64):
        vol_zyx = vol_zyx.astype(np.uint32)
    info = volume_info(kind, vol_zyx.dtype, scales, extra=extra_info)
    (root / "info").write_text(json.dumps(info, indent=1))
    written = 0
    level = vol_zyx
    for s in scales:
        level = (downsample_mode if seg else downsample_mean)(level, s.factor_zyx)
        d = root / s.key
        d.mkdir(exist_ok=True)
        for sl, name in iter_chunks(s.shape_zyx, s.offset_zyx, CHUNK_XYZ):
            data = encode_chunk(level[sl], enc)
            (d / name).write_bytes(data)
            written += len(data)
    return written


# -- segment properties ------------------------------------------------------------------

def segment_properties(ids: Sequence[int], numbers: Mapping[str, Sequence[float]], *,
                       labels: Sequence[str] | None = None,
                       descriptions: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The ``segment_properties/info`` JSON (inline form).

    Parameters
    ----------
    ids : sequence of int
        Segment IDs.
    numbers : mapping of str to sequence of float
        Numeric properties, one value per ID (non-finite values are written as -1, as
        JSON has no NaN/inf).
    labels : sequence of str, optional
        The text Neuroglancer shows next to each ID.
    descriptions : mapping of str to str, optional
        Text shown for each numeric property (e.g. its unit).
    """
    props: list[dict[str, Any]] = []
    if labels is not None:
        props.append({"id": "label", "type": "label", "values": [str(v) for v in labels]})
    for name, vals in numbers.items():
        arr = np.asarray(vals, dtype=np.float64)
        arr = np.where(np.isfinite(arr), arr, -1.0)
        p: dict[str, Any] = {"id": name, "type": "number", "data_type": "float32",
                             "values": [float(np.float32(v)) for v in arr]}
        if descriptions and name in descriptions:
            p["description"] = descriptions[name]
        props.append(p)
    return {"@type": "neuroglancer_segment_properties",
            "inline": {"ids": [str(int(i)) for i in ids], "properties": props}}


# -- skeletons ---------------------------------------------------------------------------

SKELETON_INFO: dict[str, Any] = {
    "@type": "neuroglancer_skeletons",
    "vertex_attributes": [{"id": "radius", "data_type": "float32", "num_components": 1}],
}


def encode_skeleton(vertices_nm_xyz: np.ndarray, edges: np.ndarray,
                    radius_nm: np.ndarray) -> bytes:
    """One precomputed skeleton file (vertices in nm, x y z; one float32 radius each)."""
    v = np.ascontiguousarray(vertices_nm_xyz, dtype="<f4").reshape(-1, 3)
    e = np.ascontiguousarray(edges, dtype="<u4").reshape(-1, 2)
    r = np.ascontiguousarray(radius_nm, dtype="<f4").reshape(-1)
    if len(r) != len(v):
        raise ValueError(f"{len(r)} radii for {len(v)} vertices")
    return struct.pack("<II", len(v), len(e)) + v.tobytes() + e.tobytes() + r.tobytes()


def decode_skeleton(data: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inverse of :func:`encode_skeleton`: ``(vertices_nm_xyz, edges, radius_nm)``."""
    nv, ne = struct.unpack_from("<II", data, 0)
    o = 8
    v = np.frombuffer(data, "<f4", nv * 3, o).reshape(nv, 3)
    o += nv * 12
    e = np.frombuffer(data, "<u4", ne * 2, o).reshape(ne, 2)
    o += ne * 8
    r = np.frombuffer(data, "<f4", nv, o)
    return v, e, r
