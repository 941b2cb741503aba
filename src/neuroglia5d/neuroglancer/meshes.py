"""Meshes of every label in Neuroglancer's precomputed (legacy, single-resolution) format.

zmesh runs marching cubes on all labels at once with the voxel size; meshes are
simplified (``reduction_factor`` 10, at most one lateral voxel of error). Layout under
the segmentation volume::

    mesh/info            {"@type": "neuroglancer_legacy_mesh"}
    mesh/<id>:0          {"fragments": ["<id>:0:0"]}
    mesh/<id>:0:0        uint32 n_vertices, float32 (x, y, z) nm x n, uint32 triangles x 3

Vertices are nanometres in the whole-volume frame, voxel-centred as Neuroglancer draws
voxels: voxel ``i`` spans ``[i, i + 1)`` and its centre is ``(i + 0.5) * resolution``.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def mesh_labels(labels: np.ndarray, spacing_um: Sequence[float], *,
                offset_zyx: Sequence[int] = (0, 0, 0),
                reduction_factor: int = 10) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Mesh every non-zero label of a (z, y, x) volume.

    Returns
    -------
    dict of int to (vertices, faces)
        ``vertices`` (N, 3) float32 nm (x, y, z); ``faces`` (M, 3) uint32.
    """
    import zmesh

    res_xyz = np.asarray(spacing_um, dtype=np.float64)[::-1] * 1000.0
    off_xyz = np.asarray(offset_zyx, dtype=np.float64)[::-1]
    lab = np.asarray(labels)
    if lab.dtype not in (np.uint32, np.uint64):
        lab = lab.astype(np.uint32)
    mesher = zmesh.Mesher(tuple(res_xyz))
    mesher.mesh(np.asfortranarray(lab.T))  # (x, y, z): vertices come out x, y, z
    out: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for lid in mesher.ids():
        m = mesher.get(lid, normals=False, reduction_factor=reduction_factor,
                       max_error=float(res_xyz[:2].min()), voxel_centered=True)
        v = (np.asarray(m.vertices, dtype=np.float64) + off_xyz * res_xyz).astype(np.float32)
        out[int(lid)] = (v, np.asarray(m.faces, dtype=np.uint32).reshape(-1, 3))
    mesher.clear()
    return out


def encode_fragment(vertices_nm_xyz: np.ndarray, faces: np.ndarray) -> bytes:
    """One legacy mesh fragment."""
    v = np.ascontiguousarray(vertices_nm_xyz, dtype="<f4").reshape(-1, 3)
    f = np.ascontiguousarray(faces, dtype="<u4").reshape(-1, 3)
    return struct.pack("<I", len(v)) + v.tobytes() + f.tobytes()


def decode_fragment(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`encode_fragment`: ``(vertices_nm_xyz, faces)``."""
    (n,) = struct.unpack_from("<I", data, 0)
    v = np.frombuffer(data, "<f4", n * 3, 4).reshape(n, 3)
    f = np.frombuffer(data, "<u4", offset=4 + n * 12).reshape(-1, 3)
    return v, f


def write_meshes(mesh_dir: Path, meshes: dict[int, tuple[np.ndarray, np.ndarray]]) -> int:
    """Write ``mesh/`` (info, one manifest and one fragment per label); returns bytes."""
    mesh_dir.mkdir(parents=True, exist_ok=True)
    (mesh_dir / "info").write_text(json.dumps({"@type": "neuroglancer_legacy_mesh"}))
    n = 0
    for lid, (v, f) in meshes.items():
        frag = f"{lid}:0:0"
        data = encode_fragment(v, f)
        (mesh_dir / frag).write_bytes(data)
        (mesh_dir / f"{lid}:0").write_text(json.dumps({"fragments": [frag]}))
        n += len(data)
    return n
