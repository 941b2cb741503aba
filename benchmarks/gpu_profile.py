"""Decode one benchmark volume on the GPU a few times, for a profiler such as Nsight Compute.

Builds the volumes of ``benchmarks/codec.py`` (same generator and seed), uploads the one
named, prints its brick statistics and decodes it ``--calls`` times with the default kernel
settings, checking the output. Usage, for example::

    ncu --section SpeedOfLight --section Occupancy -k regex:brick -c 2 \\
        python benchmarks/gpu_profile.py "nuclei raw"
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("volume", help="start of a volume's name, e.g. 'nuclei raw'")
    ap.add_argument("--calls", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="32×256×256 volumes")
    args = ap.parse_args(argv)

    import cupy as cp
    from codec import make_volumes, ng5d_encode, ng5d_parse

    from neuroglia5d.io.ng5d_gpu import DeviceVolume, decode_on_device

    shape = (32, 256, 256) if args.quick else (64, 512, 512)
    vols = [v for v in make_volumes(shape, 201, lambda m: None)
            if v.name.startswith(args.volume)]
    if not vols:
        ap.error(f"volume: no benchmark volume starts with {args.volume!r}")
    vol = vols[0]
    blob, brick = ng5d_encode(vol)
    parsed = ng5d_parse(vol, blob, brick)
    arrays = parsed.arrays()
    if "modes" in arrays:
        counts = np.bincount(np.asarray(arrays["modes"]).astype(np.int64), minlength=4)
        widths = np.asarray(arrays["widths"]).astype(np.int64)
        print(f"{vol.name}: bricks uniform/dense/sparse/patched {counts.tolist()}, mean width "
              f"{widths[np.asarray(arrays['modes']) > 0].mean():.2f} bits")
    else:
        print(f"{vol.name}: {len(blob)} B octree block")
    dv = DeviceVolume(parsed, cp)
    out = cp.empty(vol.data.shape, vol.data.dtype)
    for _ in range(args.calls):
        decode_on_device(dv, vol.data.shape, brick, vol.data.dtype, out=out)
    cp.cuda.Device().synchronize()
    if not np.array_equal(cp.asnumpy(out), vol.data):
        raise AssertionError(f"{vol.name}: the GPU decode differs from the original")
    print("decoded", args.calls, "times, output checked")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
