"""Annotation dock latency: user actions through napari's mouse events and key map, from
the press to the redrawn canvas, next to napari's own ``Labels.fill``.

A (T, Z, Y, X) series (default 4×64×512×512) of touching box pairs (40×40 px, 16 planes)
is opened as a working copy in a napari viewer with the annotation dock. For ``--reps``
different pairs it times, median and 90th percentile in ms:

* each action from its input event (mouse release, key press) to the end of the first
  canvas draw after it, with the event loop running as in napari (no forced repaint):
  merge (release of a stroke across a pair; also the whole 6-event drag), erase (click),
  split (Enter after two seed strokes), temporal merge (G after clicks at every
  timepoint) and Ctrl+Z; and to the composition of the window after that draw (Qt's
  ``frameSwapped``: on screen, with our status message shown over the canvas);
* one step of a merge stroke onto a new label (the live stats panel: the label's
  measurements), and the merged set's topology (computed once the stroke pauses);
* napari's ``Labels.fill`` of one box to the end of its draw: of the whole 3D object (the
  reference: our brushes act on whole 3D labels) and, napari's default, of the plane on
  screen only; and a forced repaint alone;

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
    """Touching pairs of 40×40×16 boxes (IDs 2k+1 | 2k+2 at t = 0, plus 10000 t at t):
    the same boxes at every timepoint, each with a new ID (a temporal merge to do)."""
    _T, Z, Y, X = shape
    lab = np.zeros(shape, np.uint32)
    k = 1
    for z in range(2, Z - 16, 24):
        for y in range(8, Y - 40, 56):
            for x in range(8, X - 80, 96):
                lab[:, z:z + 16, y:y + 40, x:x + 40] = k
                lab[:, z:z + 16, y:y + 40, x + 40:x + 80] = k + 1
                k += 2
    for t in range(1, _T):
        lab[t][lab[t] > 0] += 10000 * t
    return lab


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", default="4,64,512,512")
    ap.add_argument("--reps", type=int, default=8)
    ap.add_argument("--profile", default="", metavar="TEXT",
                    help="cProfile the actions whose name contains TEXT (to the draw)")
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
    qt_canvas = viewer.window._qt_viewer.canvas
    canvas = qt_canvas.native
    keys = viewer.window._qt_viewer._key_map_handler
    # the end of every canvas draw
    draws: list[float] = []
    qt_canvas._scene_canvas.events.draw.connect(
        lambda e: draws.append(time.perf_counter()), position="last")
    # and of every composition of the window with the canvas in it (Qt's frameSwapped)
    swaps: list[float] = []
    canvas.frameSwapped.connect(lambda: swaps.append(time.perf_counter()))

    def draw() -> None:
        app.processEvents()
        canvas.repaint()
        app.processEvents()

    def idle(ms: float = 150) -> None:
        end = time.perf_counter() + ms / 1e3
        while time.perf_counter() < end:
            app.processEvents()
            time.sleep(0.002)

    def w(t: int, z: int, y: int, x: int) -> tuple[float, ...]:
        return tuple(float(v) for v in layer.data_to_world((t, z, y, x)))

    def press(p: tuple[float, ...]) -> None:
        mouse_press_callbacks(layer, ReadOnlyWrapper(Ev("mouse_press", p)))

    def move(p: tuple[float, ...]) -> None:
        mouse_move_callbacks(layer, ReadOnlyWrapper(Ev("mouse_move", p, True)))

    def release(p: tuple[float, ...]) -> None:
        mouse_release_callbacks(layer, ReadOnlyWrapper(Ev("mouse_release", p)))

    def drag(points: list[tuple[float, ...]]) -> None:
        press(points[0])
        for p in points[1:]:
            move(p)
        release(points[-1])

    def key(k: str) -> None:
        keys.press_key(k)
        keys.release_key(k)

    res: dict[str, list[float]] = {}
    import cProfile

    profiler = cProfile.Profile()

    screen: dict[str, list[float]] = {}

    def timed(name: str, fn, status: bool = True) -> None:  # type: ignore[no-untyped-def]
        """Time ``fn`` (an action) to the end of the first canvas draw after it (the
        scene drawn) and to the composition of the window after that draw (Qt's
        ``frameSwapped``: on screen; with our status message shown over the canvas);
        the event loop runs as napari's would (no forced repaint)."""
        idle(60)
        prof = profiler if args.profile and args.profile in name else None
        if prof is not None:
            prof.enable()
        t0 = time.perf_counter()
        fn()
        t_fn = time.perf_counter()
        t_draw = t_screen = None
        deadline = t_fn + 5.0
        while time.perf_counter() < deadline:
            app.processEvents()
            if t_draw is None:
                t_draw = next((d for d in draws if d > t_fn), None)
            shown = dock._canvas_status.text() if dock._canvas_status is not None else ""
            if t_draw is not None and (not status or shown == dock.messages[-1]):
                t_screen = next((d for d in swaps if d > t_draw), None)
                if t_screen is not None:
                    break
            time.sleep(0.001)
        if prof is not None:
            prof.disable()
        if t_draw is None:  # nothing was redrawn: the action ended with ``fn``
            t_draw = t_fn
        res.setdefault(name, []).append((t_draw - t0) * 1e3)
        screen.setdefault(name, []).append(((t_screen or deadline) - t0) * 1e3)

    T = shape[0]
    pairs = [(y, x) for y in range(8, shape[2] - 40, 56) for x in range(8, shape[3] - 80, 96)]
    z = 10
    viewer.dims.current_step = (1, z, 0, 0)
    draw()
    from neuroglia5d._napari.strokes import Stroke

    def rep(t: int, y: int, x: int) -> None:
        viewer.dims.current_step = (t, z, 0, 0)
        draw()
        t0 = time.perf_counter()
        draw()
        res.setdefault("draw alone (forced repaint)", []).append(
            (time.perf_counter() - t0) * 1e3)
        key("m")
        idle()  # (the last action's follow-up: statistics, status text)
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
        pts = [w(t, z, y + 20, x + 20 + 8 * k) for k in range(6)]
        press(pts[0])
        for p in pts[1:]:
            move(p)
        idle()
        timed("merge (mouse release -> merged label shown)", lambda: release(pts[-1]))
        timed("undo (Ctrl+Z)", lambda: key("Control-Z"))
        timed("merge stroke (whole drag, 6 mouse events)", lambda: drag(pts))
        timed("undo (Ctrl+Z)", lambda: key("Control-Z"))
        key("e")
        timed("erase (click)", lambda: drag([w(t, z, y + 20, x + 60)]))
        key("s")
        drag([w(t, z, y + 20, x + 5)])
        drag([w(t, z, y + 20, x + 35)])
        timed("split (Enter, after 2 seed strokes)", lambda: key("Enter"))
        if T > 1:
            key("g")
            for tt in range(T):
                viewer.dims.current_step = (tt, z, 0, 0)
                drag([w(tt, z, y + 20, x + 20)])
            viewer.dims.current_step = (t, z, 0, 0)
            draw()
            timed(f"temporal merge (G, after clicks at {T} timepoints)", lambda: key("g"))
        viewer.dims.current_step = (t, z, 0, 0)
        draw()
        dock._recording_paint = True  # napari alone: the dock does not record this fill
        layer.n_edit_dimensions = 3  # the whole 3D object, as our brushes act
        timed("napari Labels.fill of the 3D object (reference)",
              lambda: layer.fill((t, z, y + 20, x + 20), 9999), status=False)
        layer.undo()
        layer.n_edit_dimensions = 2  # napari's default: the plane on screen only
        timed("napari Labels.fill in the plane on screen (napari's default)",
              lambda: layer.fill((t, z, y + 20, x + 20), 9999), status=False)
        layer.undo()
        dock._recording_paint = False

    for i in range(min(args.reps, len(pairs))):
        rep(1 + i % max(1, T - 2), *pairs[i])
    print(f"shape {shape}, {len(res['draw alone (forced repaint)'])} repetitions; median (p90) ms")
    print("| action | scene drawn: median | p90 | on screen: median | p90 |")
    print("|---|---:|---:|---:|---:|")
    for name, v in res.items():
        cells = [f"{statistics.median(v):.1f}", f"{float(np.percentile(v, 90)):.1f}"]
        on = screen.get(name)
        cells += [f"{statistics.median(on):.1f}", f"{float(np.percentile(on, 90)):.1f}"] \
            if on else ["–", "–"]
        print(f"| {name} | " + " | ".join(cells) + " |")
    if args.profile:
        import pstats

        st = pstats.Stats(profiler).sort_stats("cumulative")
        st.print_stats(40)
        st.print_callees("_apply|_after_op|_finish_stroke|_partial_refresh|_partial_labels_refresh")
    viewer.close()


if __name__ == "__main__":
    main()
