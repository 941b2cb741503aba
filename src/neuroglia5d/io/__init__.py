"""Reading inputs and writing outputs (TIFF, OME-Zarr; ``.ng5d`` in its own module)."""

import os

# numba's OpenMP threads (the ``.ng5d`` decoders' parallel loops) keep spinning after a
# loop for libgomp's default GOMP_SPINCOUNT: about 9 ms of a core on a 2-core machine,
# which whatever runs next then lacks (a Blosc2 decode right after ours ran 25 % slower;
# also zstd frames inflated by our Python thread pool, napari's software rendering).
# 10000 spins, about 0.3 ms, still catch the next decode of a burst. It takes effect only
# if set before libgomp is first loaded (numba's first parallel loop or thread-count
# call), and never overrides the user's own setting.
os.environ.setdefault("GOMP_SPINCOUNT", "10000")
