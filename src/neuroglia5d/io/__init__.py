"""Reading inputs and writing outputs (TIFF, OME-Zarr; ``.ng5d`` in its own module)."""
