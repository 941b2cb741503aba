"""Editing benchmark: latency of each annotation operation and of the live stats update.

A generated microglia series (default 20×64×512×512, uint32 labels, uint16 intensity;
``--generate`` timepoints are generated and repeated along t to fill the series) is put
in a :class:`neuroglia5d.annotation.WorkingCopy`, with a napari ``Labels`` layer on the
same array (no viewer window). For ``--reps`` different objects at different timepoints
it times:

* napari's own ``Labels.fill`` of the object with a neighbour's label (3D, contiguous;
  the reference: a merge done with napari's tools), undone with ``Labels.undo``;
* our ``merge`` (a brush stroke over the object and its nearest neighbour), ``erase``,
  ``temporal_merge`` (the object at t and another at t+1), ``split`` (two seeds at the
  object's ends), each followed by the layer's ``refresh()`` (applied and displayed),
  and ``undo`` / ``redo``;
* the live stats panel update: the ``*_labelStats.csv`` measurements of the labels under
  the stroke (:func:`~neuroglia5d.annotation.live_stats`) and the topology of the merged
  set (:func:`~neuroglia5d.annotation.merged_topology`);
* the first touch of a timepoint (its bounding boxes, once per timepoint).

Medians and 90th percentiles in milliseconds are printed as one table with the targets
(merge, erase and temporal merge no slower than ``Labels.fill``; split < 200 ms; stats <
50 ms)::

    python benchmarks/editing.py [--shape 20,64,512,512] [--reps 12] [--generate 4]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Iterator
from typing import Any

import numpy as np


def make_series(shape: tuple[int, int, int, int], generate: int, seed: int
                ) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """Raw intensity and labels: ``generate`` timepoints of the microglia sample, repeated."""
    from neuroglia5d.sample_data import DIFFICULTY, make_sample

    T = shape[0]
    g = max(1, min(generate, T))
    ds = make_sample("microglia", shape=(g, *shape[1:]), seed=seed)
    reps = -(-T // g)
    raw = np.concatenate([ds.raw] * reps)[:T]
    lab = np.concatenate([ds.labels] * reps)[:T].astype(np.uint32)
    d = DIFFICULTY["microglia"]
    return raw, lab, (d.dz_um, d.px_um, d.px_um)


class _Timer:
    """``with timer("name"): ...`` appends the block's duration (ms) to ``res["name"]``."""

    def __init__(self) -> None:
        self.res: dict[str, list[float]] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        yield
        self.res.setdefault(name, []).append((time.perf_counter() - t0) * 1e3)


def _disc(t: int, z: int, y: int, x: int, r: int = 3) -> list[tuple[int, int, int, int]]:
    return [(t, z, y + dy, x + dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1)
            if dy * dy + dx * dx <= r * r]


def _voxel(lab3: np.ndarray, box: tuple[int, ...], label: int, which: str = "middle"
           ) -> tuple[int, int, int]:
    crop = lab3[box[0]:box[1], box[2]:box[3], box[4]:box[5]] == label
    pts = np.argwhere(crop)
    if which == "first":
        p = pts[0]
    elif which == "last":
        p = pts[-1]
    else:
        c = pts.mean(axis=0)
        p = pts[np.argmin(((pts - c) ** 2).sum(axis=1))]
    return int(p[0] + box[0]), int(p[1] + box[2]), int(p[2] + box[4])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", default="20,64,512,512", help="T,Z,Y,X")
    ap.add_argument("--reps", type=int, default=12, help="objects per operation")
    ap.add_argument("--generate", type=int, default=4, help="timepoints generated (repeated)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    shape = tuple(int(v) for v in args.shape.split(","))
    assert len(shape) == 4

    from napari.layers import Labels

    from neuroglia5d.annotation import WorkingCopy, live_stats, merged_topology

    t0 = time.perf_counter()
    raw, lab, sp = make_series(shape, args.generate, args.seed)  # type: ignore[arg-type]
    print(f"series {lab.shape} generated in {time.perf_counter() - t0:.0f} s; "
          f"voxel {sp} µm")
    wc = WorkingCopy(lab, original=lab.copy(), intensity=raw, spacing_um=sp)
    layer = Labels(lab)
    layer.n_edit_dimensions = 3
    layer.contiguous = True
    T = shape[0]
    rng = np.random.default_rng(args.seed)
    timer = _Timer()
    res = timer.res
    seen: set[int] = set()

    for _ in range(args.reps):
        t = int(rng.integers(T - 1))
        if t not in seen:
            with timer("first touch of a timepoint (boxes)"):
                wc.labels_at(t)
            seen.add(t)
        ids = wc.labels_at(t)
        if len(ids) < 3:
            continue
        a = int(ids[int(rng.integers(len(ids)))])
        box_a = wc.bbox(t, a)
        za, ya, xa = _voxel(lab[t], box_a, a)
        # nearest other label by box centre
        centre = np.array([(box_a[0] + box_a[1]) / 2, (box_a[2] + box_a[3]) / 2,
                           (box_a[4] + box_a[5]) / 2])
        others = [i for i in ids if i != a]
        cent = np.array([[(b[0] + b[1]) / 2, (b[2] + b[3]) / 2, (b[4] + b[5]) / 2]
                         for b in (wc.bbox(t, i) for i in others)])
        b = int(others[int(np.argmin(((cent - centre) ** 2).sum(axis=1)))])
        zb, yb, xb = _voxel(lab[t], wc.bbox(t, b), b)
        layer._slice_dims(_dims_point(t, za))  # the layer shows plane za of timepoint t

        # napari's reference: fill the object with the neighbour's label (3D), then undo
        with timer("napari Labels.fill (reference)"):
            layer.fill((t, za, ya, xa), b)
        layer.undo()
        assert (lab[t, za, ya, xa] == a)

        stroke = _disc(t, za, ya, xa) + _disc(t, zb, yb, xb)
        with timer("live stats panel (rows + topology)"):
            with timer("live stats (labelStats rows)"):
                live_stats(wc, t, [a, b])
            with timer("live topology of the merged set"):
                merged_topology(wc, t, [a, b])

        with timer("merge + refresh"):
            with timer("merge (op alone)"):
                wc.merge(t, stroke)
            with timer("layer refresh (display)"):
                layer.refresh()
        with timer("undo + refresh"):
            wc.undo()
            layer.refresh()
        with timer("redo + refresh"):
            wc.redo()
            layer.refresh()
        wc.undo()

        with timer("erase + refresh"):
            with timer("erase (op alone)"):
                wc.erase(t, _disc(t, za, ya, xa))
            layer.refresh()
        wc.undo()

        later = wc.labels_at(t + 1)
        c = int(later[int(rng.integers(len(later)))])
        if c == a and len(later) > 1:
            c = int(later[0] if later[0] != a else later[1])
        zc, yc, xc = _voxel(lab[t + 1], wc.bbox(t + 1, c), c)
        with timer("temporal merge + refresh"):
            with timer("temporal merge (op alone)"):
                wc.temporal_merge([(t, za, ya, xa), (t + 1, zc, yc, xc)])
            layer.refresh()
        wc.undo()

        s0 = _voxel(lab[t], box_a, a, "first")
        s1 = _voxel(lab[t], box_a, a, "last")
        if s0 != s1:
            with timer("split + refresh"):
                with timer("split (op alone)"):
                    wc.split(t, [[(t, *s0)], [(t, *s1)]])
                layer.refresh()
            wc.undo()
    assert np.array_equal(lab, wc.original), "undo did not restore the series"

    ref = statistics.median(res["napari Labels.fill (reference)"])
    targets = {"merge + refresh": ("<= fill", ref), "erase + refresh": ("<= fill", ref),
               "temporal merge + refresh": ("<= fill", ref),
               "split + refresh": ("< 200 ms", 200.0),
               "live stats (labelStats rows)": ("< 50 ms", 50.0),
               "live topology of the merged set": ("< 50 ms", 50.0),
               "live stats panel (rows + topology)": ("< 50 ms", 50.0)}
    print(f"\nshape {shape}, {args.reps} objects, median object box "
          f"{_median_box(wc)} voxels\n")
    print("| operation | median ms | p90 ms | n | target | met |")
    print("|---|---:|---:|---:|---|---|")
    for name, vals in sorted(res.items(), key=lambda kv: _ORDER.index(kv[0])):
        med = statistics.median(vals)
        p90 = float(np.percentile(vals, 90))
        tgt, lim = targets.get(name, ("", None))
        met = "" if lim is None else ("yes" if med <= lim else "no")
        print(f"| {name} | {med:.1f} | {p90:.1f} | {len(vals)} | {tgt} | {met} |")
    return 0


_ORDER = ["first touch of a timepoint (boxes)", "napari Labels.fill (reference)",
          "merge + refresh", "merge (op alone)", "layer refresh (display)", "undo + refresh",
          "redo + refresh", "erase + refresh", "erase (op alone)", "temporal merge + refresh",
          "temporal merge (op alone)", "split + refresh", "split (op alone)",
          "live stats panel (rows + topology)", "live stats (labelStats rows)",
          "live topology of the merged set"]


def _median_box(wc: Any) -> int:
    sizes = []
    for t in list(wc._boxes)[:3]:
        for b in wc._boxes[t].values():
            sizes.append((b[1] - b[0]) * (b[3] - b[2]) * (b[5] - b[4]))
    return int(statistics.median(sizes)) if sizes else 0


def _dims_point(t: int, z: int) -> Any:
    """A dims object placing ``layer`` at (t, z) like the viewer does."""
    from napari.components import Dims

    d = Dims(ndim=4, ndisplay=2)
    d.current_step = (t, z, 0, 0)
    return d


if __name__ == "__main__":
    raise SystemExit(main())
