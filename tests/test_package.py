"""Packaging: light imports, the napari manifest and its sample data."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def test_core_imports_without_qt_napari_torch_cupy_or_dask():
    code = (
        "import sys, neuroglia5d, neuroglia5d.pipeline, neuroglia5d.cli, "
        "neuroglia5d.processing.timepoint\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in "
        "('qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'napari', 'torch', 'cupy', 'dask',"
        " 'distributed', 'zarr')]\n"
        "assert not heavy, heavy\n"
        "assert callable(neuroglia5d.segment)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_manifest_is_shipped_in_the_package_and_linked_at_the_top():
    import npe2

    pkg = ROOT / "src" / "neuroglia5d" / "napari.yaml"
    top = ROOT / "napari.yaml"
    assert top.read_text() == pkg.read_text()
    pm = npe2.PluginManifest.from_file(pkg)
    assert pm.name == "napari-neuroglia5d"
    keys = {s.key for s in pm.contributions.sample_data}
    assert keys == {"microglia", "nuclei"}
    # every command points at a function that exists
    import importlib

    for cmd in pm.contributions.commands:
        mod, fn = cmd.python_name.split(":")
        assert callable(getattr(importlib.import_module(mod), fn))


def test_sample_data_contributions_return_real_layers():
    from neuroglia5d._napari.samples import SAMPLE_SHAPE, nuclei_sample

    layers = nuclei_sample()
    assert [kind for _, _, kind in layers] == ["image", "labels"]
    (raw, meta, _), (gt, gmeta, _) = layers
    assert raw.shape == gt.shape == SAMPLE_SHAPE
    assert raw.dtype == np.uint16 and gt.max() > 10
    assert meta["scale"] == (1.0, 1.5, 0.5, 0.5) == gmeta["scale"]
