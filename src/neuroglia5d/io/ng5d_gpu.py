"""GPU decoding of ``.ng5d`` volumes: one CUDA thread per output voxel.

The kernels call the very per-voxel functions the CPU decoder uses
(:func:`neuroglia5d.io._ng5d_kernels.bp_voxel`, ``pal_voxel`` and
:func:`neuroglia5d.io._ng5d_octree_kernels.oct_voxel`, registered for every numba
target), on the compressed arrays already on the device, and write straight into a
device buffer: no CPU work per voxel, no host round trip. Without a GPU, the same kernels
run under numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) on NumPy arrays, which is
how the test suite checks them against the CPU decoder. Import this module only when
decoding on a device (it imports ``numba.cuda``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import cuda

from ._ng5d_kernels import bp_voxel, locate, pal_voxel, region_voxel
from ._ng5d_octree_kernels import oct_voxel
from .ng5d_codec import BitpackVolume, PaletteVolume, brick_grid
from .ng5d_octree import OctreeVolume

_THREADS = 256


@cuda.jit
def bp_kernel(out, z0, y0, x0, gy, gx, bz, by, bx, nmask, npre, modes, widths, bases,
              offsets, data):  # pragma: no cover - device code
    i = cuda.grid(1)
    oz, oy, ox = out.shape
    if i >= oz * oy * ox:
        return
    z, y, x = region_voxel(i, z0, y0, x0, oy, ox)
    b, li = locate(z, y, x, gy, gx, bz, by, bx)
    out[z - z0, y - y0, x - x0] = bp_voxel(li, np.int64(modes[b]), np.int64(widths[b]),
                                           np.int64(bases[b]), np.int64(offsets[b]),
                                           nmask, npre, data)

@cuda.jit
def pal_kernel(out, z0, y0, x0, gy, gx, bz, by, bx, top, words, ext_w, ext_lut,
               ext_data, lut, data, palette):  # pragma: no cover - device code
    i = cuda.grid(1)
    oz, oy, ox = out.shape
    if i >= oz * oy * ox:
        return
    z, y, x = region_voxel(i, z0, y0, x0, oy, ox)
    b, li = locate(z, y, x, gy, gx, bz, by, bx)
    p = pal_voxel(li, np.int64(words[b]), top, ext_w, ext_lut, ext_data, lut, data)
    out[z - z0, y - y0, x - x0] = palette[min(p, palette.shape[0] - 1)]


@cuda.jit
def oct_kernel(out, z0, y0, x0, u, ty, tx, nt, nn, sup, split, split_rank, other,
               other_rank, values, wg, rec_base, records, palette
               ):  # pragma: no cover - device code
    i = cuda.grid(1)
    oz, oy, ox = out.shape
    if i >= oz * oy * ox:
        return
    z, y, x = region_voxel(i, z0, y0, x0, oy, ox)
    p = oct_voxel(z, y, x, u, ty, tx, nt, nn, sup, split, split_rank, other, other_rank,
                  values, wg, rec_base, records)
    out[z - z0, y - y0, x - x0] = palette[min(p, palette.shape[0] - 1)]


# Brick-major kernels: the grid is the bricks covering the region, a block is one brick
# (its (x, y) plane, and a slab of ``blockDim.z`` planes that loops over the brick's z):
# no integer division per voxel, the brick's header loads are shared by the block, and a
# warp writes whole brick rows. Used whenever a brick plane fits a block (by·bx ≤ 1024).
@cuda.jit
def bp_brick_kernel(out, z0, y0, x0, bz0, by0, bx0, gy, gx, bz, by, bx, nmask, npre, modes,
                    widths, bases, offsets, data):  # pragma: no cover - device code
    oz, oy, ox = out.shape
    iz, iy, ix = bz0 + cuda.blockIdx.z, by0 + cuda.blockIdx.y, bx0 + cuda.blockIdx.x
    ly, lx = cuda.threadIdx.y, cuda.threadIdx.x
    y, x = iy * by + ly - y0, ix * bx + lx - x0
    if y < 0 or y >= oy or x < 0 or x >= ox:
        return
    b = (iz * gy + iy) * gx + ix
    mode, w = np.int64(modes[b]), np.int64(widths[b])
    base, off = np.int64(bases[b]), np.int64(offsets[b])
    for lz in range(cuda.threadIdx.z, bz, cuda.blockDim.z):
        z = iz * bz + lz - z0
        if z >= 0 and z < oz:
            out[z, y, x] = bp_voxel((lz * by + ly) * bx + lx, mode, w, base, off, nmask,
                                    npre, data)


@cuda.jit
def pal_brick_kernel(out, z0, y0, x0, bz0, by0, bx0, gy, gx, bz, by, bx, top, words, ext_w,
                     ext_lut, ext_data, lut, data, palette):  # pragma: no cover - device code
    oz, oy, ox = out.shape
    iz, iy, ix = bz0 + cuda.blockIdx.z, by0 + cuda.blockIdx.y, bx0 + cuda.blockIdx.x
    ly, lx = cuda.threadIdx.y, cuda.threadIdx.x
    y, x = iy * by + ly - y0, ix * bx + lx - x0
    if y < 0 or y >= oy or x < 0 or x >= ox:
        return
    b = (iz * gy + iy) * gx + ix
    word = np.int64(words[b])
    for lz in range(cuda.threadIdx.z, bz, cuda.blockDim.z):
        z = iz * bz + lz - z0
        if z >= 0 and z < oz:
            p = pal_voxel((lz * by + ly) * bx + lx, word, top, ext_w, ext_lut, ext_data, lut,
                          data)
            out[z, y, x] = palette[min(p, palette.shape[0] - 1)]


@cuda.jit
def oct_brick_kernel(out, z0, y0, x0, bz0, by0, bx0, u, ty, tx, nt, nn, sup, split,
                     split_rank, other, other_rank, values, wg, rec_base, records, palette
                     ):  # pragma: no cover - device code
    oz, oy, ox = out.shape
    iz, iy, ix = bz0 + cuda.blockIdx.z, by0 + cuda.blockIdx.y, bx0 + cuda.blockIdx.x
    ly, lx = cuda.threadIdx.y, cuda.threadIdx.x
    y, x = iy * 8 + ly - y0, ix * 8 + lx - x0
    if y < 0 or y >= oy or x < 0 or x >= ox:
        return
    for lz in range(cuda.threadIdx.z, 8, cuda.blockDim.z):
        z = iz * 8 + lz - z0
        if z >= 0 and z < oz:
            p = oct_voxel(z + z0, y + y0, x + x0, u, ty, tx, nt, nn, sup, split, split_rank,
                          other, other_rank, values, wg, rec_base, records)
            out[z, y, x] = palette[min(p, palette.shape[0] - 1)]


class DeviceVolume:
    """A parsed volume's arrays on the device (CuPy), uploaded once and reused.

    Parameters
    ----------
    vol : BitpackVolume, PaletteVolume or OctreeVolume
        Parsed host volume.
    xp : module
        ``cupy`` on a GPU; ``numpy`` under the CUDA simulator.
    """

    def __init__(self, vol: BitpackVolume | PaletteVolume | OctreeVolume, xp: Any) -> None:
        self.kind = ("bitpack" if isinstance(vol, BitpackVolume)
                     else "octree" if isinstance(vol, OctreeVolume) else "palette")
        self.scalars = vol.scalars() if isinstance(vol, OctreeVolume) else ()
        self.xp = xp
        self.arrays = {k: xp.array(v) for k, v in vol.arrays().items()}  # copies (writable)
        #: what the kernels are given: numba's views of the CuPy arrays, made once (a
        #: launch then skips converting each array, and the stream sync that goes with it)
        self.kargs = {k: _kernel_arg(v, xp) for k, v in self.arrays.items()}

    @property
    def nbytes(self) -> int:
        """Device memory held (compressed)."""
        return int(sum(a.nbytes for a in self.arrays.values()))


def _kernel_arg(a: Any, xp: Any) -> Any:
    """``a`` as a kernel argument: a numba device array view of a CuPy array (no copy), or
    ``a`` itself (NumPy, under the simulator)."""
    if xp is np:
        return a
    return cuda.as_cuda_array(a, sync=False)


#: voxels per thread block of the brick-major kernels (a brick's plane times a slab of its
#: planes; the threads loop over the rest of the brick)
BLOCK_VOXELS = 256


def _brick_launch(region: tuple[slice, slice, slice], brick: tuple[int, int, int]
                  ) -> tuple[tuple[int, int, int], tuple[int, int, int], tuple[int, int, int]]:
    """Grid (bricks covering the region, x fastest), block and first brick (z, y, x)."""
    first = tuple(r.start // b for r, b in zip(region, brick, strict=True))
    counts = tuple((r.stop - 1) // b - f + 1
                   for r, b, f in zip(region, brick, first, strict=True))
    bz, by, bx = brick
    tz = max(1, min(bz, BLOCK_VOXELS // (by * bx)))
    return ((counts[2], counts[1], counts[0]), (bx, by, tz),
            (first[0], first[1], first[2]))


def decode_on_device(dv: DeviceVolume, shape_zyx: tuple[int, int, int],
                     brick: tuple[int, int, int], dtype: Any,
                     region: tuple[slice, slice, slice] | None = None,
                     layout: str = "brick") -> Any:
    """Decode a region of a volume on the device into a new device array.

    Parameters
    ----------
    layout : {"brick", "flat"}
        ``brick``: a thread block per brick (the default; bricks whose (y, x) plane
        exceeds 1024 voxels fall back to ``flat``); ``flat``: one thread per output
        voxel in C order, the region's index split into brick and voxel by division.

    Returns
    -------
    array
        CuPy array (NumPy under the simulator) of the region, dtype ``dtype``.
    """
    if layout not in ("brick", "flat"):
        raise ValueError(f"layout must be 'brick' or 'flat', got {layout!r}")
    xp = dv.xp
    z, y, x = region if region is not None else (slice(0, s) for s in shape_zyx)
    reg = (z, y, x)
    shp = (z.stop - z.start, y.stop - y.start, x.stop - x.start)
    _, gy, gx = brick_grid(shape_zyx, brick)
    bz, by, bx = brick
    n = max(1, shp[0] * shp[1] * shp[2])
    empty = min(shp) <= 0
    if by * bx > 1024:
        layout = "flat"
    blocks = (n + _THREADS - 1) // _THREADS
    grid, block, (bz0, by0, bx0) = _brick_launch(reg, brick) if not empty else ((1,) * 3,) * 3
    a = dv.kargs
    dt = np.dtype(dtype)
    if dv.kind == "bitpack":
        nvox = bz * by * bx
        nmask = (nvox + 31) // 32
        npre = (nmask + 7) // 8
        out = xp.empty(shp, np.uint32 if dt == np.float32 else dt)
        ko = _kernel_arg(out, xp)
        hdr = (a["modes"], a["widths"], a["bases"], a["offsets"], a["data"])
        if empty:
            pass
        elif layout == "brick":
            bp_brick_kernel[grid, block](ko, z.start, y.start, x.start, bz0, by0, bx0, gy,
                                         gx, bz, by, bx, nmask, npre, *hdr)
        else:
            bp_kernel[blocks, _THREADS](ko, z.start, y.start, x.start, gy, gx, bz, by, bx,
                                        nmask, npre, *hdr)
        if dt == np.float32:  # the order-preserving map back to float bits, on the device
            pos = (out >> np.uint32(31)).astype(bool)
            out = xp.where(pos, out & np.uint32(0x7FFFFFFF), ~out).astype(np.uint32)
            out = out.view(np.float32)
        return out
    out = xp.empty(shp, dv.arrays["palette"].dtype)
    ko = _kernel_arg(out, xp)
    if empty:
        return out
    if dv.kind == "octree":
        u, ty, tx, nt, nn, sup, wg = dv.scalars
        tree = (u, ty, tx, nt, nn, sup, a["split"], a["split_rank"], a["other"],
                a["other_rank"], a["values"], wg, a["rec_base"], a["records"], a["palette"])
        if layout == "brick":
            grid, block, (bz0, by0, bx0) = _brick_launch(reg, (8, 8, 8))
            oct_brick_kernel[grid, block](ko, z.start, y.start, x.start, bz0, by0, bx0, *tree)
        else:
            oct_kernel[blocks, _THREADS](ko, z.start, y.start, x.start, *tree)
        return out
    top = np.int64(1) << np.int64(dv.arrays["words"].dtype.itemsize * 8 - 1)
    pal = (top, a["words"], a["ext_w"], a["ext_lut"], a["ext_data"], a["lut"], a["data"],
           a["palette"])
    if layout == "brick":
        pal_brick_kernel[grid, block](ko, z.start, y.start, x.start, bz0, by0, bx0, gy, gx,
                                      bz, by, bx, *pal)
    else:
        pal_kernel[blocks, _THREADS](ko, z.start, y.start, x.start, gy, gx, bz, by, bx, *pal)
    return out
