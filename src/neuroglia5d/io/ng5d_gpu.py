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

    @property
    def nbytes(self) -> int:
        """Device memory held (compressed)."""
        return int(sum(a.nbytes for a in self.arrays.values()))


def decode_on_device(dv: DeviceVolume, shape_zyx: tuple[int, int, int],
                     brick: tuple[int, int, int], dtype: Any,
                     region: tuple[slice, slice, slice] | None = None) -> Any:
    """Decode a region of a volume on the device into a new device array.

    Returns
    -------
    array
        CuPy array (NumPy under the simulator) of the region, dtype ``dtype``.
    """
    xp = dv.xp
    z, y, x = region if region is not None else (slice(0, s) for s in shape_zyx)
    shp = (z.stop - z.start, y.stop - y.start, x.stop - x.start)
    _, gy, gx = brick_grid(shape_zyx, brick)
    bz, by, bx = brick
    n = max(1, shp[0] * shp[1] * shp[2])
    blocks = (n + _THREADS - 1) // _THREADS
    a = dv.arrays
    dt = np.dtype(dtype)
    if dv.kind == "bitpack":
        nvox = bz * by * bx
        nmask = (nvox + 31) // 32
        npre = (nmask + 7) // 8
        out = xp.empty(shp, np.uint32 if dt == np.float32 else dt)
        if n and min(shp) > 0:
            bp_kernel[blocks, _THREADS](out, z.start, y.start, x.start, gy, gx, bz, by, bx,
                                        nmask, npre, a["modes"], a["widths"], a["bases"],
                                        a["offsets"], a["data"])
        if dt == np.float32:  # the order-preserving map back to float bits, on the device
            pos = (out >> np.uint32(31)).astype(bool)
            out = xp.where(pos, out & np.uint32(0x7FFFFFFF), ~out).astype(np.uint32)
            out = out.view(np.float32)
        return out
    out = xp.empty(shp, a["palette"].dtype)
    if dv.kind == "octree":
        if n and min(shp) > 0:
            u, ty, tx, nt, nn, sup, wg = dv.scalars
            oct_kernel[blocks, _THREADS](out, z.start, y.start, x.start, u, ty, tx, nt, nn,
                                         sup, a["split"], a["split_rank"], a["other"],
                                         a["other_rank"], a["values"], wg, a["rec_base"],
                                         a["records"], a["palette"])
        return out
    top = np.int64(1) << np.int64(a["words"].dtype.itemsize * 8 - 1)
    if n and min(shp) > 0:
        pal_kernel[blocks, _THREADS](out, z.start, y.start, x.start, gy, gx, bz, by, bx,
                                     top, a["words"], a["ext_w"], a["ext_lut"],
                                     a["ext_data"], a["lut"], a["data"], a["palette"])
    return out
