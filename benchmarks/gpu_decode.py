"""GPU decode of ``.ng5d`` volumes: kernel layouts and block sizes against a device copy.

Needs a CUDA GPU with CuPy. For each benchmark volume of ``benchmarks/codec.py`` (same
generator, same seed) and each kernel variant, checks the decode bit-exactly against the
original, then prints, per decode of the whole timepoint:

- ``call``: median wall time of ``decode_on_device`` with a device synchronize before and
  after (what a caller waits for);
- ``kernel``: median device time of the launch alone, from CUDA events around 20
  back-to-back calls (the host's launch cost hides behind the device's work, unless the
  host is the slower of the two);
- ``host``: median host time to issue one call without waiting for it;
- variants: ``flat`` (a thread per voxel, C order) or ``brick`` (a block per brick, with
  that many voxels per block), launched by numba's dispatcher, CuPy's kernel call or
  ``cuLaunchKernel`` (``neuroglia5d.io.ng5d_gpu.LAUNCH``), into a new array or (``out=``)
  into a given one;
- the GB/s of decoded output for ``call`` and ``kernel``, and ``kernel`` as a percentage of a
  ``cupy.copyto`` of the decoded output (same bytes written, timed the same way).

Usage::

    python benchmarks/gpu_decode.py [--quick] [--repeats 30]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

#: (layout, voxels per block of the brick layout, launcher, decode into a given buffer,
#: two voxels per thread in the bitpack brick kernel, bricks per block of the octree one
#: (None: chosen by the region's size))
VARIANTS: list[tuple[str, int, str, bool, bool, int | None]] = [
    ("flat", 256, "driver", False, True, None), ("brick", 128, "cupy", False, True, None),
    ("brick", 128, "driver", False, True, None), ("brick", 128, "driver", True, True, None),
    ("brick", 256, "driver", True, True, None)]
#: further variants for intensity (bitpack) and labels (octree)
INTENSITY_VARIANTS: list[tuple[str, int, str, bool, bool, int | None]] = [
    ("brick", 128, "driver", True, False, None), ("brick", 256, "driver", True, False, None),
    ("brick", 512, "driver", True, True, None)]
LABEL_VARIANTS: list[tuple[str, int, str, bool, bool, int | None]] = [
    ("brick", 128, "driver", True, True, 1), ("brick", 128, "driver", True, True, 2),
    ("brick", 128, "driver", True, True, 4), ("brick", 128, "driver", True, True, 8),
    ("brick", 64, "driver", True, True, None)]


def event_ms(cp: Any, fn: Any, n: int) -> float:
    """Device milliseconds per call of ``fn`` over ``n`` back-to-back calls."""
    start, stop = cp.cuda.Event(), cp.cuda.Event()
    cp.cuda.Device().synchronize()
    start.record()
    for _ in range(n):
        fn()
    stop.record()
    stop.synchronize()
    return cp.cuda.get_elapsed_time(start, stop) / n


def bench_volume(vol: Any, cp: Any, repeats: int) -> list[list[str]]:
    """One table row per kernel variant for one volume."""
    from codec import ng5d_encode, ng5d_parse

    from neuroglia5d.io import ng5d_gpu as g

    sync = cp.cuda.Device().synchronize
    blob, brick = ng5d_encode(vol)
    dv = g.DeviceVolume(ng5d_parse(vol, blob, brick), cp)
    nbytes = vol.data.nbytes
    src = cp.asarray(vol.data)
    dst = cp.empty_like(src)
    copy_ms = statistics.median(event_ms(cp, functools.partial(cp.copyto, dst, src), 20)
                                for _ in range(5))
    rows = []
    labels = vol.data.dtype.itemsize == 4
    for layout, bv, launcher, given, pairs, group in (
            VARIANTS + (LABEL_VARIANTS if labels else INTENSITY_VARIANTS)):
        g.BLOCK_VOXELS, g.LAUNCH, g.OCT_GROUP, g.BP_PAIRS = bv, launcher, group, pairs
        dec = functools.partial(g.decode_on_device, dv, vol.data.shape, brick, vol.data.dtype,
                                layout=layout, out=cp.empty_like(src) if given else None)
        if not np.array_equal(cp.asnumpy(dec()), vol.data):
            raise AssertionError(f"{vol.name}: {layout}/{bv}/{launcher} differs from the "
                                 "original")
        calls, hosts = [], []
        for _ in range(repeats):
            sync()
            t0 = time.perf_counter()
            dec()
            t1 = time.perf_counter()
            sync()
            t2 = time.perf_counter()
            hosts.append(t1 - t0)
            calls.append(t2 - t0)
        kern = statistics.median(event_ms(cp, dec, 20) for _ in range(5))
        call = statistics.median(calls) * 1e3
        name = f"{layout} {bv} {launcher}" if layout == "brick" else f"flat {launcher}"
        name += " out=" if given else ""
        if layout == "brick":
            name += (f" {group or 'auto'} bricks/block" if labels
                     else " pairs" if pairs else " single")
        rows.append([vol.name, name, f"{call:.3f}", f"{kern:.3f}",
                     f"{statistics.median(hosts) * 1e3:.3f}",
                     f"{nbytes / call / 1e6:.1f}", f"{nbytes / kern / 1e6:.1f}",
                     f"{nbytes / copy_ms / 1e6:.1f}", f"{100 * copy_ms / kern:.1f}"])
        print(" | ".join(rows[-1]), flush=True)
    print("\n".join(kernel_resources(cp)), flush=True)
    g.BLOCK_VOXELS, g.LAUNCH, g.OCT_GROUP, g.BP_PAIRS = 128, "driver", None, True
    g._MODULES.clear()
    return rows


def kernel_resources(cp: Any) -> list[str]:
    """Registers per thread and local (spill) bytes of each kernel loaded so far."""
    from neuroglia5d.io import ng5d_gpu as g

    lines = []
    for key, (_, fn, _) in g._MODULES.items():
        try:
            regs = cp.cuda.driver.funcGetAttribute(4, fn.ptr)  # CU_FUNC_ATTRIBUTE_NUM_REGS
            local = cp.cuda.driver.funcGetAttribute(3, fn.ptr)  # ..._LOCAL_SIZE_BYTES
        except Exception as e:  # an older CuPy without the call: the table still stands
            lines.append(f"{key[0].__name__}: attributes unavailable ({e})")
            continue
        lines.append(f"{key[0].__name__} {key[2:3]}: {regs} registers, {local} B local")
    return sorted(set(lines))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="32×256×256 volumes")
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args(argv)

    import cupy as cp
    from codec import gpu_name, make_volumes

    shape = (32, 256, 256) if args.quick else (64, 512, 512)
    vols = make_volumes(shape, 201, lambda m: print(f"  .. {m}", flush=True))
    print(f"GPU: {gpu_name(cp)}; CuPy {cp.__version__}")
    header = ["volume", "variant", "call ms", "kernel ms", "host ms", "call GB/s",
              "kernel GB/s", "copy GB/s", "kernel % of copy"]
    rows: list[list[str]] = []
    for vol in vols:
        rows += bench_volume(vol, cp, args.repeats)
        cp.get_default_memory_pool().free_all_blocks()
    print()
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
