"""Navigation benchmark: how fast napari shows a new timepoint or z-plane per data source.

One generated (T, Z, Y, X) nuclei-like series (default 20×64×512×512) is shown in napari
(intensity as an Image layer, labels as a Labels layer) from three sources, one after the
other in the same run:

* an in-memory NumPy array (the ceiling);
* OME-Zarr read through dask (``dask.array.from_zarr``), napari's usual lazy path;
* ``.ng5d`` (:func:`neuroglia5d.open_ng5d`: compressed in memory, decoded per brick).

For each source it times, over several steps, (1) a timepoint switch and (2) a z-plane
switch, from ``viewer.dims.set_current_step`` to the end of a synchronous canvas repaint,
and separately (3) the data slice alone (``np.asarray(layer.data[t, z])`` of both layers).
Medians in milliseconds are printed as a table.

Run it on a display or under Xvfb::

    xvfb-run -a python benchmarks/navigation.py [--shape 20,64,512,512] [--steps 15]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def make_series(shape: tuple[int, int, int, int], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A generated series: raw intensity (uint16) and ground-truth labels (uint32)."""
    from neuroglia5d.sample_data import make_sample

    ds = make_sample("nuclei", shape=shape, seed=seed)
    return ds.raw, ds.labels


def write_sources(raw: np.ndarray, lab: np.ndarray, root: Path) -> dict[str, Path]:
    """Write the OME-Zarr and .ng5d copies."""
    from neuroglia5d.io.ng5d import ArraySpec, Ng5dWriter
    from neuroglia5d.io.omezarr_out import OmeZarrSeriesWriter
    from neuroglia5d.io.writers import SeriesMeta

    T = raw.shape[0]
    meta = SeriesMeta(stem="bench", shape_tzyx=raw.shape, spacing_um=(1.5, 0.5, 0.5))
    zw = OmeZarrSeriesWriter(root, meta)
    specs = [ArraySpec.make("intensity", "intensity", np.uint16, (T, 1, *raw.shape[1:])),
             ArraySpec.make("labels", "labels", np.uint32, (T, 1, *raw.shape[1:]))]
    nw = Ng5dWriter(root / "bench_fused.ng5d", specs, voxel_size_um=(1.5, 0.5, 0.5))
    for t in range(T):
        zw.write(t, raw[t], lab[t])
        nw.append("intensity", t, raw[t])
        nw.append("labels", t, lab[t])
    (zarr_path,) = zw.finalize()
    return {"zarr": zarr_path, "ng5d": nw.finalize()}


def open_source(kind: str, raw: np.ndarray, lab: np.ndarray, paths: dict[str, Path]
                ) -> tuple[Any, Any]:
    """(intensity, labels) array-likes of one source."""
    if kind == "numpy":
        return raw, lab
    if kind == "dask (OME-Zarr)":
        import dask.array as da

        return (da.from_zarr(str(paths["zarr"] / "0")),
                da.from_zarr(str(paths["zarr"] / "labels" / "working" / "0")))
    from neuroglia5d.io.ng5d import open_ng5d

    f = open_ng5d(paths["ng5d"])
    return f.arrays["intensity"], f.arrays["labels"]


def time_source(viewer: Any, img: Any, lab: Any, steps: int) -> dict[str, float]:
    """Median ms of a timepoint switch, a z switch (both with the draw) and the slice."""
    from qtpy.QtWidgets import QApplication

    viewer.layers.clear()
    viewer.add_image(img, scale=(1, 1.5, 0.5, 0.5), name="intensity",
                     contrast_limits=(100, 400))
    viewer.add_labels(lab, scale=(1, 1.5, 0.5, 0.5), name="labels")
    canvas = viewer.window._qt_viewer.canvas.native
    T, Z = img.shape[0], img.shape[1]
    app = QApplication.instance()

    def draw() -> None:
        app.processEvents()
        canvas.repaint()
        app.processEvents()

    viewer.dims.set_current_step(0, 0)
    viewer.dims.set_current_step(1, Z // 2)
    draw()
    res: dict[str, list[float]] = {"t": [], "z": [], "slice": []}
    rng = np.random.default_rng(0)
    z_mid = Z // 2
    for i in range(steps):
        t = (i + 1) % T
        t0 = time.perf_counter()
        viewer.dims.set_current_step(0, t)
        draw()
        res["t"].append(time.perf_counter() - t0)
        z = int(rng.integers(0, Z))
        t0 = time.perf_counter()
        viewer.dims.set_current_step(1, z)
        draw()
        res["z"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        np.asarray(img[t, z_mid])
        np.asarray(lab[t, z_mid])
        res["slice"].append(time.perf_counter() - t0)
    return {k: 1000 * statistics.median(v) for k, v in res.items()}


def main() -> int:
    """Run the benchmark and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="20,64,512,512", help="T,Z,Y,X")
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--seed", type=int, default=301)
    args = ap.parse_args()
    shape = tuple(int(v) for v in args.shape.split(","))

    import napari

    raw, lab = make_series(shape, args.seed)  # type: ignore[arg-type]
    rows = []
    with tempfile.TemporaryDirectory(prefix="ng5d-nav-") as tmp:
        paths = write_sources(raw, lab, Path(tmp))
        viewer = napari.Viewer(show=True)
        for kind in ("numpy", "dask (OME-Zarr)", ".ng5d"):
            img, labs = open_source(kind, raw, lab, paths)
            rows.append((kind, time_source(viewer, img, labs, args.steps)))
        viewer.close()
    print(f"\nSeries {shape} (T,Z,Y,X), uint16 intensity + uint32 labels, "
          f"median of {args.steps} steps; milliseconds\n")
    print("| source | timepoint switch (with draw) | z-plane switch (with draw) | "
          "data slice alone (t, z) |")
    print("|---|---:|---:|---:|")
    for kind, r in rows:
        print(f"| {kind} | {r['t']:.1f} | {r['z']:.1f} | {r['slice']:.2f} |")
    base = rows[0][1]["t"]
    ng, dk = rows[2][1]["t"], rows[1][1]["t"]
    print(f"\n.ng5d timepoint switch = {ng / base:.2f}x in-memory NumPy (target <= 1.5x); "
          f"{'faster' if ng < dk else 'slower'} than the dask path ({dk:.1f} ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
