"""Annotation dock latency: user actions through napari's mouse events and key map, from
the press to the redrawn canvas, next to napari's own ``Labels.fill``.

A (T, Z, Y, X) series (default 4×64×512×512) of touching box pairs (40×40 px, 16 planes)
is opened as a working copy in a napari viewer with the annotation dock. For ``--reps``
different pairs it times, median and 90th percentile in ms:

* a merge stroke across a pair, an erase stroke, a split (two seed strokes + Enter), a
  temporal merge (G, clicks at three timepoints, G) and Ctrl+Z, each from the first mouse
  event to the end of the canvas draw (operation, live stats, display);
* one step of a merge stroke onto a new label (the live stats panel: the label's
  measurements), and the merged set's topology (computed once the stroke pauses);
* the canvas draw alone, and napari's ``Labels.fill`` of one box (3D) with its draw;

    xvfb-run -a python benchmarks/annotation_dock.py [--shape 4,64,512,512] [--reps 8]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class Ev:
    """A napari mouse event (as napari's own Labels tests build them)."""

    type: str
    position: tuple[float, ...]
    is_dragging: bool = False
    modifiers: tuple[str, ...] = ()
    button: int = 1
    dims_displayed: tuple[int, ...] = (2, 3)
    view_direction: tuple[float, ...] | None = None
    pos: tuple[int, int] = (0, 0)
    handled: bool = False
    delta: tuple[float, float] = (0.0, 0.0)
    dims_point: list[float] = field(default_factory=list)


def make_labels(shape: tuple[int, int, int, int]) -> np.ndarray:
    """Touching pairs of 40×40×16 boxes (IDs 2k+1 | 2k+2), the same at every timepoint."""
    _T, Z, Y, X = shape
    lab = np.zeros(shape, np.uint32)
    k = 1
    for z in range(2, Z - 16, 24):
        for y in range(8, Y - 40, 56):
            for x in range(8, X - 80, 96):
                lab[:, z:z + 16, y:y + 40, x:x + 40] = k
                lab[:, z:z + 16, y:y + 40, x + 40:x + 80] = k + 1
                k += 2
    return lab


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", default="4,64,512,512")
    ap.add_argument("--reps", type=int, default=8)
    args = ap.parse_args()
    shape = tuple(int(v) for v in args.shape.split(","))
    assert len(shape) == 4

    import napari
    from napari.utils._proxies import ReadOnlyWrapper
    from napari.utils.interactions import (
        mouse_move_callbacks,
        mouse_press_callbacks,
        mouse_release_callbacks,
    )
    from qtpy.QtWidgets import QApplication

    from neuroglia5d._napari.annotation_dock import AnnotationDock

    lab = make_labels(shape)  # type: ignore[arg-type]
    rng = np.random.default_rng(0)
    img = ((lab > 0) * 400 + rng.integers(100, 150, lab.shape)).astype(np.uint16)
    folder = Path(tempfile.mkdtemp(prefix="ng5d_dock_bench_"))
    spacing = (1.5, 0.5, 0.5)
    common = {"scale": (1.0, *spacing)}
    viewer = napari.Viewer(show=True)
    viewer.add_image(img, name="s intensity", **common)
    layer = viewer.add_labels(lab, name="s labels", metadata={"neuroglia5d": {
        "role": "working", "stem": "s", "folder": str(folder), "spacing_um": list(spacing),
        "offset_zyx": [0, 0, 0], "original": lab.copy(), "format": None}}, **common)
    dock = AnnotationDock(viewer)
    viewer.window.add_dock_widget(dock)
    app = QApplication.instance()
    canvas = viewer.window._qt_viewer.canvas.native
    keys = viewer.window._qt_viewer._key_map_handler

    def draw() -> None:
        app.processEvents()
        canvas.repaint()
        app.processEvents()

    def w(t: int, z: int, y: int, x: int) -> tuple[float, ...]:
        return tuple(float(v) for v in layer.data_to_world((t, z, y, x)))

    def drag(points: list[tuple[float, ...]]) -> None:
        mouse_press_callbacks(layer, ReadOnlyWrapper(Ev("mouse_press", points[0])))
        for p in points[1:]:
            mouse_move_callbacks(layer, ReadOnlyWrapper(Ev("mouse_move", p, True)))
        mouse_release_callbacks(layer, ReadOnlyWrapper(Ev("mouse_release", points[-1])))

    def key(k: str) -> None:
        keys.press_key(k)
        keys.release_key(k)

    res: dict[str, list[float]] = {}

    def timed(name: str, fn) -> None:  # type: ignore[no-untyped-def]
        t0 = time.perf_counter()
        fn()
        draw()
        res.setdefault(name, []).append((time.perf_counter() - t0) * 1e3)

    T = shape[0]
    pairs = [(y, x) for y in range(8, shape[2] - 40, 56) for x in range(8, shape[3] - 80, 96)]
    z = 10
    viewer.dims.current_step = (1, z, 0, 0)
    draw()
    from neuroglia5d._napari.strokes import Stroke

    def rep(t: int, y: int, x: int) -> None:
        viewer.dims.current_step = (t, z, 0, 0)
        draw()
        timed("draw alone", lambda: None)
        key("m")
        # one stroke step onto a new label: the live stats panel
        st = Stroke(t, z, shape[2:], 5)
        dock.stroke_labels = []
        t0 = time.perf_counter()
        dock._stroke_step(st, (t, z, y + 20, x + 60))
        res.setdefault("live stats (new label under the stroke)", []).append(
            (time.perf_counter() - t0) * 1e3)
        t0 = time.perf_counter()
        dock.flush_topology()
        res.setdefault("merged-set topology (when the stroke pauses)", []).append(
            (time.perf_counter() - t0) * 1e3)
        timed("merge stroke", lambda: drag([w(t, z, y + 20, x + 20 + 8 * k)
                                            for k in range(6)]))
        timed("undo (Ctrl+Z)", lambda: key("Control-Z"))
        key("e")
        timed("erase stroke", lambda: drag([w(t, z, y + 20, x + 60)]))
        key("s")

        def split() -> None:
            drag([w(t, z, y + 20, x + 5)])
            drag([w(t, z, y + 20, x + 35)])
            key("Enter")

        timed("split (2 seeds + Enter)", split)

        def temporal() -> None:
            key("g")
            for tt in range(T):
                viewer.dims.current_step = (tt, z, 0, 0)
                drag([w(tt, z, y + 20, x + 20)])
            key("g")

        if T > 1:
            timed(f"temporal merge ({T} clicks, incl. {T} timepoint switches)", temporal)
        viewer.dims.current_step = (t, z, 0, 0)
        draw()
        dock._recording_paint = True  # napari alone: the dock does not record this fill
        timed("napari Labels.fill (reference)",
              lambda: layer.fill((t, z, y + 20, x + 20), 9999))
        layer.undo()
        dock._recording_paint = False

    for i in range(min(args.reps, len(pairs))):
        rep(1 + i % max(1, T - 2), *pairs[i])
    print(f"shape {shape}, {len(res['draw alone'])} repetitions; median (p90) ms")
    print("| action (to the end of the draw) | median | p90 |")
    print("|---|---:|---:|")
    for name, v in res.items():
        p90 = float(np.percentile(v, 90))
        print(f"| {name} | {statistics.median(v):.1f} | {p90:.1f} |")
    viewer.close()


if __name__ == "__main__":
    main()
