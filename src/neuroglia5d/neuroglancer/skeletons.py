"""Skeletons of every label of a 3D timepoint, and SWC files that navis reads.

The export uses the project's topology module (:func:`neuroglia5d.processing.topology.
skeletonize`, thinning + graph); :func:`skeletonize_labels` is the kimimaro (TEASAR)
alternative (``method="kimimaro"``). Every skeleton is a :class:`Skel` in µm (z, y, x) in the
frame of the whole raw volume: ``(index + offset_zyx) * spacing_um``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class Skel:
    """One label's skeleton.

    Attributes
    ----------
    label : int
        The label ID.
    vertices : numpy.ndarray
        (N, 3) float, µm, (z, y, x), whole-volume frame.
    edges : numpy.ndarray
        (M, 2) int, indices into ``vertices``.
    radius : numpy.ndarray
        (N,) float, µm, distance to the label's boundary at each vertex.
    """

    label: int
    vertices: np.ndarray
    edges: np.ndarray
    radius: np.ndarray


def skeletonize_labels(labels: np.ndarray, spacing_um: Sequence[float], *,
                       offset_zyx: Sequence[int] = (0, 0, 0)) -> dict[int, Skel]:
    """Skeleton of every non-zero label of a (z, y, x) volume (kimimaro TEASAR).

    Parameters
    ----------
    labels : numpy.ndarray
        (Z, Y, X) integer labels.
    spacing_um : sequence of float
        Voxel size (z, y, x), µm.
    offset_zyx : sequence of int
        Position of ``labels[0, 0, 0]`` in the whole volume, voxels.

    Returns
    -------
    dict of int to Skel
        Labels too small for a centre line (a single voxel) get a one-vertex skeleton at
        their centre, so every label has one.
    """
    import kimimaro

    sp = np.asarray(spacing_um, dtype=np.float64)
    off = np.asarray(offset_zyx, dtype=np.float64)
    lab = np.ascontiguousarray(labels)
    if lab.dtype not in (np.uint32, np.uint64):
        lab = lab.astype(np.uint32)
    lateral = float(min(sp[1], sp[2]))
    # TEASAR in nm: invalidation ball = 1.5 x boundary distance + 2 lateral voxels
    params = {"scale": 1.5, "const": 2 * lateral * 1000, "pdrf_scale": 100000,
              "pdrf_exponent": 4, "soma_acceptance_threshold": 3500,
              "soma_detection_threshold": 750, "soma_invalidation_const": 300,
              "soma_invalidation_scale": 2}
    sk = kimimaro.skeletonize(lab, teasar_params=params, anisotropy=tuple(sp * 1000),
                              dust_threshold=0, progress=False, fix_branching=True,
                              fix_borders=True, parallel=1)
    out: dict[int, Skel] = {}
    for lid, s in sk.items():
        v = np.asarray(s.vertices, dtype=np.float64) / 1000.0 + off * sp
        out[int(lid)] = Skel(int(lid), v, np.asarray(s.edges, dtype=np.int64).reshape(-1, 2),
                             np.asarray(s.radius, dtype=np.float64) / 1000.0)
    return fill_missing(out, lab, spacing_um, offset_zyx)


def fill_missing(skels: dict[int, Any], labels: np.ndarray, spacing_um: Sequence[float],
                 offset_zyx: Sequence[int] = (0, 0, 0)) -> dict[int, Any]:
    """Give every label without a skeleton (or with an empty one) a one-vertex skeleton at
    its centroid (radius: half the smallest voxel side), so every label has one."""
    import fastremap

    sp = np.asarray(spacing_um, dtype=np.float64)
    off = np.asarray(offset_zyx, dtype=np.float64)
    out = dict(skels)
    ids = np.asarray(fastremap.unique(labels))
    missing = [int(i) for i in ids[ids != 0]
               if int(i) not in out or len(out[int(i)].vertices) == 0]
    if missing:
        import cc3d

        # one pass over the volume for every centroid (not one comparison per label)
        cents = np.asarray(cc3d.statistics(np.asarray(labels))["centroids"], np.float64)
        for lid in missing:
            c = (cents[lid] + off) * sp
            out[lid] = Skel(lid, c[np.newaxis], np.zeros((0, 2), np.int64),
                            np.array([float(sp.min()) / 2]))
    return out


def swc_text(skel: Skel, *, spacing_note: str = "") -> str:
    """SWC text of a skeleton: x y z and radius in µm, one tree per connected piece.

    Cycles (rare, TEASAR output is a forest) are cut where the breadth-first walk meets
    an already visited vertex. Node type 0 (undefined); roots have parent -1.
    """
    n = len(skel.vertices)
    adj: list[list[int]] = [[] for _ in range(n)]
    for a, b in np.asarray(skel.edges, dtype=np.int64).reshape(-1, 2):
        adj[int(a)].append(int(b))
        adj[int(b)].append(int(a))
    order: list[tuple[int, int]] = []  # (vertex, parent vertex or -1)
    seen = np.zeros(n, bool)
    # start each tree at an end point when there is one (the usual SWC root)
    starts = sorted(range(n), key=lambda i: (len(adj[i]) != 1, i))
    for s in starts:
        if seen[s]:
            continue
        seen[s] = True
        q = deque([(s, -1)])
        while q:
            v, p = q.popleft()
            order.append((v, p))
            for w in adj[v]:
                if not seen[w]:
                    seen[w] = True
                    q.append((w, v))
    node_id = {v: i + 1 for i, (v, _) in enumerate(order)}
    lines = [f"# neuroglia5d skeleton of label {skel.label}",
             "# units: micrometres (x y z radius)" + (f"; {spacing_note}" if spacing_note else ""),
             "# id type x y z radius parent"]
    for v, p in order:
        z, y, x = skel.vertices[v]
        lines.append(f"{node_id[v]} 0 {x:.4f} {y:.4f} {z:.4f} {skel.radius[v]:.4f} "
                     f"{node_id[p] if p >= 0 else -1}")
    return "\n".join(lines) + "\n"
