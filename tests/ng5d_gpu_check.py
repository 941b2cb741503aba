"""The GPU kernels of ``.ng5d`` against the CPU decoder, run as a script (prints ``True 40``).

``NG5D_XP=cupy`` runs them on a real GPU with CuPy arrays (tests/test_gpu.py); otherwise
under numba's CUDA simulator on NumPy arrays (tests/test_ng5d.py). A script, not a test
module, because the simulator must be switched on before numba is imported.

``NG5D_XP=ptx`` runs the same decodes without a GPU and without the simulator: every
kernel launch is instead compiled to PTX by numba-cuda and NVIDIA's NVVM, for compute
capability 8.0 and 9.0 (or those ``NG5D_PTX_CC`` lists, e.g. ``90``) and with the
argument types the launch would have, then assembled by ``ptxas`` where one is found
(``CUDA_HOME/bin``, the ``nvidia-cuda-nvcc`` wheel, ``PATH``), which reports registers
and spills per kernel. The simulator runs the kernels as Python and never types them;
this is what the GPU path compiles. It needs numba-cuda (the test extra) and NVVM (the
``nvidia-nvvm`` wheel, which ``make test`` installs, or a CUDA toolkit) and prints
``compiled N`` followed by one line per kernel and architecture.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import numpy as np


class PtxCompiler:
    """Stands in for ``ng5d_gpu.launch``: compiles each kernel for the argument types of
    the launch (as the GPU path does before loading it), once per types and architecture,
    and keeps the PTX."""

    #: compute capabilities compiled for (``NG5D_PTX_CC``, e.g. ``80,90``)
    ARCHS = tuple((int(a) // 10, int(a) % 10)
                  for a in os.environ.get("NG5D_PTX_CC", "80,90").split(","))

    def __init__(self) -> None:
        self.ptx: dict[tuple[str, str, tuple[int, int]], str] = {}

    def __call__(self, kernel: Any, grid: Any, block: Any, args: tuple[Any, ...], xp: Any,
                 fixed: int = 0, cache: Any = None) -> None:
        from numba import cuda

        from neuroglia5d.io.ng5d_gpu import PARAM_8, _arg_type, _is_array, ptx_entry

        types = tuple(_arg_type(a) for a in args)
        # the GPU launcher passes an array as 5 + 2·ndim 8-byte fields (meminfo, parent,
        # size, itemsize, data, shape, strides), an int as one: the kernel's parameters
        # must be exactly those
        fields = sum(5 + 2 * a.ndim if _is_array(a) else 1 for a in args)
        for cc in self.ARCHS:
            key = (kernel.py_func.__name__, str(types), cc)
            if key not in self.ptx:
                ptx = self.ptx[key] = cuda.compile_ptx(kernel.py_func, types, cc=cc)[0]
                _, kinds = ptx_entry(ptx, key[0])
                if len(kinds) != fields or not set(kinds) <= PARAM_8:
                    raise AssertionError(f"{key[0]}: {len(kinds)} PTX parameters of types "
                                         f"{sorted(set(kinds))}; the launcher packs {fields} "
                                         "8-byte fields")

    def report(self) -> list[str]:
        """Per kernel and architecture: variants compiled, and when ``ptxas`` is found,
        the most registers and spilled bytes of any variant."""
        import re
        import shutil
        import subprocess
        import sysconfig
        import tempfile

        # on PATH, in CUDA_HOME, or from the ``nvidia-cuda-nvcc`` wheel (the same CUDA
        # release as the ``nvidia-nvvm`` one: an older ptxas refuses newer PTX)
        dirs = [os.path.join(os.environ.get("CUDA_HOME", ""), "bin"),
                os.path.join(sysconfig.get_paths()["purelib"], "nvidia", "cu13", "bin")]
        found = [shutil.which("ptxas", path=d) for d in dirs] + [shutil.which("ptxas")]
        ptxas = next((p for p in found if p), None)
        rows: dict[tuple[str, tuple[int, int]], list[tuple[int, int]]] = {}
        for (name, _, cc), ptx in self.ptx.items():
            regs = spill = -1
            if ptxas:
                with tempfile.NamedTemporaryFile("w", suffix=".ptx") as f:
                    f.write(ptx)
                    f.flush()
                    out = subprocess.run(
                        [ptxas, "-v", f"--gpu-name=sm_{cc[0]}{cc[1]}", "-o", os.devnull,
                         f.name], capture_output=True, text=True).stderr
                if "registers" in out:  # (an older ptxas refuses newer PTX)
                    regs = max(int(r) for r in re.findall(r"Used (\d+) registers", out))
                    spill = sum(int(b) for b in re.findall(r"(\d+) bytes spill", out))
            rows.setdefault((name, cc), []).append((regs, spill))
        return [f"{name} sm_{cc[0]}{cc[1]}: {len(v)} variants"
                + (f", at most {max(r for r, _ in v)} registers, "
                   f"{max(s for _, s in v)} bytes spilled" if v[0][0] >= 0 else
                   " (no ptxas that reads this PTX: registers not reported)")
                for (name, cc), v in sorted(rows.items())]


def main() -> list[bool]:
    """Decode on the device and on the CPU; one bool per comparison."""
    xp: Any
    if os.environ.get("NG5D_XP") == "cupy":
        import cupy as xp
        host = xp.asnumpy
    elif os.environ.get("NG5D_XP") == "ptx":
        xp, host = np, np.asarray
    else:
        os.environ["NUMBA_ENABLE_CUDASIM"] = "1"  # before numba.cuda is first imported
        xp = np
        host = np.asarray
    from neuroglia5d.io import ng5d_codec as c
    from neuroglia5d.io import ng5d_gpu as g
    from neuroglia5d.io import ng5d_octree as o
    from neuroglia5d.io.ng5d_gpu import DeviceVolume, decode_on_device

    if os.environ.get("NG5D_XP") == "ptx":
        g.launch = COMPILER
        # numba compiles a kernel's device functions (``register_jitable`` ones too) for
        # the current device's architecture; there is none: name the oldest one compiled
        import types

        import numba.cuda.dispatcher as nd

        nd.get_current_device = lambda: types.SimpleNamespace(
            compute_capability=PtxCompiler.ARCHS[0])

    rng = np.random.default_rng(0)
    ok = []
    modes: set[int] = set()
    for layout in ("brick", "flat"):  # a thread block per brick; a thread per voxel
        dec = functools.partial(decode_on_device, layout=layout)
        # (the simulator is slow: the flat layout gets the patched uint8 volume only)
        for dtype in ((np.uint16, np.float32, np.uint8, np.uint32) if layout == "brick"
                      else (np.uint8,)):
            v = (rng.random((5, 20, 24)) * 300).astype(dtype)
            if dtype == np.uint8:  # camera-like noise and bright voxels: patched bricks
                v = rng.poisson(20, (5, 20, 24)).astype(np.uint8)
                v.flat[rng.integers(0, v.size, 9)] = 250
            v[:2] = 0
            v[3, 2:9, 2:9] = 7
            if dtype == np.uint32:  # every brick mode: uniform (zero and not), dense,
                # list, sparse, sparse patched, patched (brick 4×8×8: the z = 4 plane is
                # a brick of its own)
                v = np.zeros((5, 20, 24), np.uint32)
                v[:4, :8, 8:16] = 3
                v[:4, :8, 16:] = (rng.random((4, 8, 8)) < 0.3) * rng.integers(1, 16, (4, 8, 8))
                v[:4, 8:16, :8] = rng.integers(0, 400, (4, 8, 8))
                v[:4, 8:16, 8:16].flat[rng.integers(0, 256, 5)] = 31
                v[:4, 8:16, 16:] = (rng.random((4, 8, 8)) < 0.3) * rng.integers(1, 8, (4, 8, 8))
                v[:4, 8:16, 16:].flat[[5, 130, 131]] = 100_000
                v[:4, 16:, 16:] = rng.poisson(9, (4, 4, 8)) + 100
                v[:4, 16:, 16:].flat[[3, 77, 100]] = 3_000_000
            br = (4, 8, 8)
            nb = int(np.prod(c.brick_grid(v.shape, br)))
            blocks = [c.encode_bitpack(v, br)]
            if dtype == np.uint32:  # and the sparse layout of format 2.0-2.1
                blocks.append(c.encode_bitpack(v, br, sparse_modes=(c.MODE_SPARSE,)))
            r = (slice(1, 4), slice(3, 17), slice(5, 20))
            for blk in blocks:
                p = c.parse_bitpack(blk, nb, 256)
                if dtype == np.uint32:
                    modes.update(int(m) for m in np.asarray(p.arrays()["modes"]))
                for reg in (None, r):
                    d = dec(DeviceVolume(p, xp), v.shape, br, dtype, reg)
                    cpu = c.decode_bitpack(p, v.shape, br, dtype, reg)
                    ok.append(np.array_equal(host(d).view(np.uint8), cpu.view(np.uint8)))
            if dtype == np.float32 and layout == "brick":  # into a given device buffer
                buf = xp.full((3, 14, 15), np.nan, np.float32)
                d = dec(DeviceVolume(p, xp), v.shape, br, dtype, r, out=buf)
                ok.append(d is buf and np.array_equal(
                    host(buf).view(np.uint8), c.decode_bitpack(p, v.shape, br, dtype, r)
                    .view(np.uint8)))
                try:
                    dec(DeviceVolume(p, xp), v.shape, br, dtype, r, out=buf[:, 1:])
                    ok.append(False)
                except ValueError as e:
                    ok.append("out: need a C-contiguous" in str(e))
        lab = np.zeros((6, 20, 21), np.uint64)
        lab[1:4, 3:12, 3:15] = 9
        lab[2:6, 10:20, 10:21] = 2**40 + 1
        bl = (4, 8, 8)
        nb = int(np.prod(c.brick_grid(lab.shape, bl)))
        pl = c.parse_palette(c.encode_palette(lab, bl), nb, np.uint64, 256)
        ok.append(np.array_equal(host(dec(DeviceVolume(pl, xp), lab.shape, bl,
                                                       np.uint64)),
                                 c.decode_palette(pl, lab.shape, bl)))
        # octree: uniform regions above the bricks, records with uniform 4^3 and 2^3
        # cells, w 1-16
        lab2 = np.zeros((20, 37, 35), np.uint64)
        lab2[2:17, 3:30, 5:33] = 5
        lab2[6:11, 9:20, 9:25] = 2**40 + 1
        lab2[12, 20:26, 4:30] = 9
        lab2[0:3, 0:4, 30:35] = rng.integers(0, 12, (3, 4, 5))
        lab2[14:20, 29:37, 0:8] = rng.integers(0, 300, (6, 8, 8))  # long local palettes
        po = o.parse_octree(o.encode_octree(lab2, levels=2), lab2.shape, np.uint64)
        # (under the simulator a voxel's tree descent costs ~2 ms: the flat layout, a
        # thread per voxel, gets a small region only)
        for reg in ((None, (slice(3, 17), slice(5, 33), slice(1, 34))) if layout == "brick"
                    else ((slice(6, 12), slice(8, 24), slice(8, 26)),)):
            ok.append(np.array_equal(host(dec(DeviceVolume(po, xp), lab2.shape,
                                                           o.BRICK, np.uint64, reg)),
                                     o.decode_octree(po, lab2.shape, reg)))
        if layout == "brick":  # blocks of one brick plane (8 planes per thread), and of 3
            g.BLOCK_VOXELS, g.OCT_GROUP = 64, 3  # bricks (the last one's 2 bricks)
            try:
                reg = (slice(2, 20), slice(0, 37), slice(3, 35))
                ok.append(np.array_equal(host(dec(DeviceVolume(po, xp), lab2.shape,
                                                               o.BRICK, np.uint64, reg)),
                                         o.decode_octree(po, lab2.shape, reg)))
            finally:
                g.BLOCK_VOXELS, g.OCT_GROUP = 128, None
        # a zstd-stored block inflated frame by frame: part of it on the CPU, then all for
        # the GPU
        lz = c.parse_bitpack(c.LazyBlock(c.store_zstd(c.encode_bitpack(v, br), frame=512)),
                             int(np.prod(c.brick_grid(v.shape, br))), 256)
        cpu = c.decode_bitpack(lz, v.shape, br, v.dtype, r)
        c.ensure_inflated(lz, br)
        d = dec(DeviceVolume(lz, xp), v.shape, br, v.dtype, r)
        ok.append(np.array_equal(host(d).view(np.uint8), cpu.view(np.uint8)))
        # bricks of odd width: a voxel per thread in the bitpack brick kernel
        odd = (2, 4, 5)
        po5 = c.parse_bitpack(c.encode_bitpack(v, odd),
                              int(np.prod(c.brick_grid(v.shape, odd))), 40)
        ok.append(np.array_equal(host(dec(DeviceVolume(po5, xp), v.shape, odd, v.dtype, r)),
                                 c.decode_bitpack(po5, v.shape, odd, v.dtype, r)))
        # bricks of 1024 voxels: sparse bricks with packed prefix counts of 4 groups
        # (sparse, sparse patched, list; and the 2.1 layout)
        big = (4, 16, 16)
        dens = np.kron([[0.3, 0.3], [0.02, 0.6]], np.ones((16, 16)))  # per brick
        vb = ((rng.random((4, 32, 32)) < dens) * rng.integers(1, 9, (4, 32, 32))
              ).astype(np.uint16)
        vb[:, :16, 16:].flat[[7, 300, 900]] = 60_000
        nbb = int(np.prod(c.brick_grid(vb.shape, big)))
        for blk in (c.encode_bitpack(vb, big),
                    c.encode_bitpack(vb, big, sparse_modes=(c.MODE_SPARSE,))):
            pb = c.parse_bitpack(blk, nbb, 1024)
            modes.update(int(m) for m in np.asarray(pb.arrays()["modes"]))
            for reg in (None, (slice(1, 4), slice(3, 30), slice(2, 31))):
                ok.append(np.array_equal(host(dec(DeviceVolume(pb, xp), vb.shape, big,
                                                  vb.dtype, reg)),
                                         c.decode_bitpack(pb, vb.shape, big, vb.dtype, reg)))
        # sparse bricks of 4096 voxels (the most the brick kernel ranks in shared
        # memory), and of 8192 (the flat kernel)
        for bigger in ((4, 32, 32), (8, 32, 32)):
            pb = c.parse_bitpack(c.encode_bitpack(vb, bigger),
                                 int(np.prod(c.brick_grid(vb.shape, bigger))),
                                 int(np.prod(bigger)))
            ok.append(np.array_equal(host(dec(DeviceVolume(pb, xp), vb.shape, bigger,
                                              vb.dtype)),
                                     c.decode_bitpack(pb, vb.shape, bigger, vb.dtype)))
        # a damaged patched and sparse patched brick: an escape code that no exception
        # names decodes to the escape code on every decoder (the CPU's brick decode, and
        # each GPU kernel)
        ok.append(damaged_escapes_agree(c, dec, host, xp, rng))
        # a brick plane of more than 1024 voxels: the flat kernel either way
        wide = (1, 8, 136)
        pw = c.parse_bitpack(c.encode_bitpack(v, wide),
                             int(np.prod(c.brick_grid(v.shape, wide))), 8 * 136)
        ok.append(np.array_equal(host(dec(DeviceVolume(pw, xp), v.shape, wide, v.dtype, r)),
                                 c.decode_bitpack(pw, v.shape, wide, v.dtype, r)))
    if modes != {0, 1, 2, 3, 4, 5, 6}:
        raise AssertionError(f"the volumes have brick modes {sorted(modes)}, not all seven")
    return ok


def damaged_escapes_agree(c: Any, dec: Any, host: Any, xp: Any, rng: Any) -> bool:
    """Give a patched (mode 3) and a sparse patched (mode 5) brick one more escape code
    than they have exceptions, then decode on the device and on the CPU."""
    from neuroglia5d.io import _ng5d_kernels as k
    from neuroglia5d.io.ng5d_gpu import DeviceVolume

    v = np.zeros((4, 8, 16), np.uint32)
    v[:, :, :8] = rng.poisson(9, (4, 8, 8)) + 100  # camera-like noise ...
    v[:, :, :8].flat[[3, 77, 100]] = 3_000_000  # ... and three bright voxels
    v[:, :, 8:] = (rng.random((4, 8, 8)) < 0.3) * rng.integers(1, 8, (4, 8, 8))
    v[:, :, 8:].flat[[5, 130, 131]] = 100_000
    br = (4, 8, 8)
    p = c.parse_bitpack(bytearray(c.encode_bitpack(v, br)), 2, 256)
    if list(p.modes) != [c.MODE_PATCHED, c.MODE_SPARSE_PATCHED]:
        raise AssertionError(f"brick modes {list(p.modes)}, not patched and sparse patched")
    nmask, npre = 8, 1
    pw = k.pos_bits(nmask)
    # patched: voxel 0 (not one of the three exceptions) gets the escape code
    w = int(p.widths[0])
    _, _, _, low0 = k.bp_patched_head(int(p.offsets[0]), nmask, p.data)
    k.put_bits(p.data, low0, (1 << w) - 1, w)
    # sparse patched: stored value 0 (not one of the exceptions) gets it
    w = int(p.widths[1])
    v0 = k.bp_masked_layout(5, int(p.offsets[1]), nmask, npre, pw, p.data)[4]
    k.put_bits(p.data, v0, (1 << w) - 1, w)
    cpu = c.decode_bitpack(p, v.shape, br, v.dtype)
    if np.array_equal(cpu, v):
        raise AssertionError("the damage did not change the decoded volume")
    return bool(np.array_equal(host(dec(DeviceVolume(p, xp), v.shape, br, v.dtype)), cpu))


COMPILER = PtxCompiler()


if __name__ == "__main__":
    if os.environ.get("NG5D_XP") == "ptx":
        main()  # (nothing is decoded: the outputs are not compared)
        print("compiled", len(COMPILER.ptx))
        print("\n".join(COMPILER.report()))
        raise SystemExit(0)
    res = main()
    print(all(res), len(res))
    raise SystemExit(0 if all(res) else 1)
