"""neuroglia5d: 3D/4D fluorescence microscopy segmentation, label correction and learning.

The package is importable without Qt or napari. Heavy modules load on first use::

    import neuroglia5d
    results = neuroglia5d.segment("movie.ome.tif", "out/", {"ch1_minDist_um": 8})

Public API
----------
segment
    The headless pipeline (:func:`neuroglia5d.pipeline.segment`).
Parameters, load_parameters
    Parameters and ``parameters.json`` (:mod:`neuroglia5d.params`).
open_dataset
    Raw TIFF inputs in the three dataset layouts (:mod:`neuroglia5d.io.datasets`).
make_sample, write_sample
    Generated sample data with ground truth (:mod:`neuroglia5d.sample_data`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__

_LAZY = {
    "segment": ("neuroglia5d.pipeline", "segment"),
    "DatasetResult": ("neuroglia5d.pipeline", "DatasetResult"),
    "Parameters": ("neuroglia5d.params", "Parameters"),
    "load_parameters": ("neuroglia5d.params", "load_parameters"),
    "open_dataset": ("neuroglia5d.io.datasets", "open_dataset"),
    "make_sample": ("neuroglia5d.sample_data", "make_sample"),
    "write_sample": ("neuroglia5d.sample_data", "write_sample"),
    "process_channel": ("neuroglia5d.processing.timepoint", "process_channel"),
}

if TYPE_CHECKING:
    from .io.datasets import open_dataset
    from .params import Parameters, load_parameters
    from .pipeline import DatasetResult, segment
    from .processing.timepoint import process_channel
    from .sample_data import make_sample, write_sample


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        mod, attr = _LAZY[name]
        return getattr(importlib.import_module(mod), attr)
    raise AttributeError(f"module 'neuroglia5d' has no attribute {name!r}")


__all__ = [
    "DatasetResult",
    "Parameters",
    "__version__",
    "load_parameters",
    "make_sample",
    "open_dataset",
    "process_channel",
    "segment",
    "write_sample",
]
