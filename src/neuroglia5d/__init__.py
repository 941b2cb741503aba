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
open_ng5d
    The native container (:mod:`neuroglia5d.io.ng5d`).
open_pair, segment_layer, use_as_working_copy, save
    Scripting napari from its console (:mod:`neuroglia5d._napari.api`; need napari).
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
    "open_ng5d": ("neuroglia5d.io.ng5d", "open_ng5d"),
    "open_pair": ("neuroglia5d._napari.api", "open_pair"),
    "segment_layer": ("neuroglia5d._napari.api", "segment_layer"),
    "use_as_working_copy": ("neuroglia5d._napari.api", "use_as_working_copy"),
    "save": ("neuroglia5d._napari.api", "save"),
}

if TYPE_CHECKING:
    from ._napari.api import open_pair, save, segment_layer, use_as_working_copy
    from .io.datasets import open_dataset
    from .io.ng5d import open_ng5d
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
    "open_ng5d",
    "open_pair",
    "process_channel",
    "save",
    "segment",
    "segment_layer",
    "use_as_working_copy",
    "write_sample",
]
