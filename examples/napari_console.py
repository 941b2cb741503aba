"""Scripting neuroglia5d from napari's console (or a notebook).

Run ``python examples/napari_console.py`` to see it work on generated data; inside napari,
paste the lines after ``viewer = ...`` into View > Console.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import napari

import neuroglia5d

tmp = Path(tempfile.mkdtemp(prefix="ng5d-console-"))
ds = neuroglia5d.make_sample("nuclei", shape=(3, 16, 128, 128), seed=1)
paths = neuroglia5d.write_sample(ds, tmp / "data")

viewer = napari.Viewer()
# 1. run the pipeline on files and open its working copy (intensity + labels)
result = neuroglia5d.segment(paths.hyperstack, tmp / "out", formats="ng5d,tif")[0]
image, labels = neuroglia5d.open_pair(result.out_dir / f"{result.stem}_fused.ng5d", viewer)
# 2. or segment a layer that is already in the viewer
raw = viewer.add_image(ds.raw, scale=(1, ds.dz_um, ds.px_um, ds.px_um), name="raw")
seg = neuroglia5d.segment_layer(raw, {"ch1_minDist_um": 8}, viewer=viewer, folder=tmp)
# 3. edit, then save every working copy (never the original _labels file)
labels.data[0, 5:8, 10:20, 10:20] = 0
print(neuroglia5d.save(viewer, formats=("ng5d", "tif")))
napari.run()
