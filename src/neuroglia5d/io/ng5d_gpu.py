"""GPU decoding of ``.ng5d`` volumes, on the compressed arrays already on the device.

Two layouts of numba.cuda kernels, both writing straight into a device buffer (no CPU work
per voxel, no host round trip):

- ``brick`` (the default): a thread block per brick (``bitpack``; for ``octree`` up to
  :data:`OCT_BRICKS` bricks along x). What a brick's voxels share is read once per brick:
  its header, a patched brick's exceptions and a list brick's voxels (scattered by the
  block), a sparse brick's mask ranks, an octree brick's tree descent, record head and
  local palette (in shared memory). A ``bitpack`` thread decodes two neighbouring voxels
  from one 64-bit window of the bit stream in each of its planes.
- ``flat``: one thread per output voxel calling the per-voxel functions the CPU code also
  holds (:func:`neuroglia5d.io._ng5d_kernels.bp_voxel`, ``pal_voxel`` and
  :func:`neuroglia5d.io._ng5d_octree_kernels.oct_voxel`); the fallback for brick planes
  over 1024 voxels, ``bitpack`` bricks over 4096 voxels and the 2.0 ``palette`` codec.

The kernels are built from the functions the CPU decoder's modules register for every
numba target (``get_bits``, ``bits_window``, ``value_slot``, ``local_entry``, ...).
Without a GPU, the same kernels run under numba's CUDA simulator
(``NUMBA_ENABLE_CUDASIM=1``) on NumPy arrays, which is how the test suite checks them
against the CPU decoder (``tests/ng5d_gpu_check.py``), and are compiled to PTX for the
argument types of every launch (``NG5D_XP=ptx``; the simulator never types them).
numba's CUDA target is the numba-cuda package (the ``gpu`` extra). Import this module only when
decoding on a device (it imports ``numba.cuda``).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from numba import cuda
from numba.core.extending import register_jitable

from ._ng5d_kernels import (
    bits_window,
    bp_group_prefix,
    bp_masked_layout,
    bp_patched_words,
    bp_ranked_exception,
    bp_voxel,
    get_bits,
    locate,
    pal_voxel,
    popc,
    pos_bits,
    region_voxel,
)
from ._ng5d_octree_kernels import (
    bit_at,
    find_node,
    get_bits8,
    get_u8,
    local_entry,
    node_value,
    oct_voxel,
    octant_rank,
    rank_at,
    record_head,
    record_start,
    value_slot,
)
from .ng5d_codec import BitpackVolume, PaletteVolume, brick_grid, ensure_checked
from .ng5d_octree import OctreeVolume

_THREADS = 256
#: stores index with unsigned ints (non-negative by the kernels' own tests): numba then
#: emits no negative-index wrap-around for them
_U = np.uint64


@cuda.jit
def bp_kernel(out, z0, y0, x0, fmap, gy, gx, bz, by, bx, nmask, npre, modes, widths, bases,
              offsets, data):  # pragma: no cover - device code
    i = cuda.grid(1)
    oz, oy, ox = out.shape
    if i >= oz * oy * ox:
        return
    z, y, x = region_voxel(i, z0, y0, x0, oy, ox)
    b, li = locate(z, y, x, gy, gx, bz, by, bx)
    v = bp_voxel(li, np.int64(modes[b]), np.int64(widths[b]), np.int64(bases[b]),
                 np.int64(offsets[b]), nmask, npre, data)
    out[z - z0, y - y0, x - x0] = float_bits(v) if fmap else v

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


@register_jitable
def float_bits(v: int) -> int:
    """float32 bits of a value of the order-preserving map (``ordered_to_float``)."""
    return (v ^ ((((v >> 31) & 1) - 1) | 0x80000000)) & 0xFFFFFFFF


# Brick-major kernels: the grid is the bricks covering the region, a block is one brick
# (its (x, y) plane, and a slab of ``blockDim.z`` planes that loops over the brick's z):
# no integer division per voxel, the brick's header loads are shared by the block, and a
# warp writes whole brick rows. Used whenever a brick plane fits a block (by·bx ≤ 1024),
# for ``bitpack`` and ``octree`` (the 2.0 ``palette`` codec keeps the flat kernel).
# Nsight Compute on an H100 found both bound by their instruction count (ALU pipe 58-61 %
# busy, DRAM 5-6 %), not by memory: what is shared by a brick is computed once for it.

#: a thread of the bitpack brick kernel decodes two voxels along x (bricks of even width)
BP_PAIRS = True
#: mask words of the largest brick (voxels / 32) that the bitpack brick kernel decodes:
#: it ranks a sparse brick's mask in shared memory. Larger bricks go to the flat kernel:
#: a per-voxel fallback for them inside the brick kernel (``bp_voxel``, which ranks and
#: searches voxel by voxel) raised the kernel's registers from 63 to 105 per thread
#: (ptxas for sm_90, ``NG5D_XP=ptx python tests/ng5d_gpu_check.py``), which limits how
#: many of its blocks an SM holds at once, for every brick of every volume
MASK_WORDS = 128


@register_jitable
def put(out: Any, z: int, y: int, x: int, v: int, fmap: int) -> None:
    """Store value ``v`` at (z, y, x) of ``out`` (as float32 bits when ``fmap``)."""
    out[_U(z), _U(y), _U(x)] = float_bits(v) if fmap else v


@register_jitable
def put_listed(out: Any, i: int, iz: int, iy: int, ix: int, bz: int, by: int, bx: int,
               z0: int, y0: int, x0: int, v: int, fmap: int) -> None:
    """Store value ``v`` at voxel ``i`` (clamped to the brick) of brick (iz, iy, ix), if
    it lies in the region at (z0, y0, x0) that ``out`` holds."""
    oz, oy, ox = out.shape
    plane = by * bx
    i = min(i, bz * plane - 1)
    lz = i // plane
    ly = (i - lz * plane) // bx
    z, y, x = iz * bz + lz - z0, iy * by + ly - y0, ix * bx + i % bx - x0
    if z >= 0 and z < oz and y >= 0 and y < oy and x >= 0 and x < ox:
        put(out, z, y, x, v, fmap)


@cuda.jit
def bp_brick_kernel(out, z0, y0, x0, bz0, by0, bx0, fmap, xv, pw, gy, gx, bz, by, bx, nmask,
                    npre, modes, widths, bases, offsets, data):  # pragma: no cover - device
    # A thread decodes ``xv`` (1 or 2) voxels next to each other along x in each of its
    # planes of the brick: the two values are neighbours in the bit stream, one 64-bit
    # window of it holds both (widths up to 16 bits), and the thread's share of the
    # brick's work (its header, its indices) is spread over twice the voxels. The kernel
    # is bound by its instruction count (Nsight Compute on an H100), not by memory.
    msk = cuda.shared.array(MASK_WORDS, np.uint32)
    pre = cuda.shared.array(MASK_WORDS, np.int32)
    oz, oy, ox = out.shape
    iz, iy, ix = bz0 + cuda.blockIdx.z, by0 + cuda.blockIdx.y, bx0 + cuda.blockIdx.x
    ly, lz0 = cuda.threadIdx.y, cuda.threadIdx.z
    lx = cuda.threadIdx.x * xv
    t = (lz0 * by + ly) * cuda.blockDim.x + cuda.threadIdx.x
    nthr = cuda.blockDim.x * by * cuda.blockDim.z
    y, x = iy * by + ly - y0, ix * bx + lx - x0
    b = (iz * gy + iy) * gx + ix
    mode, w = np.int64(modes[b]), np.int64(widths[b])
    base, off = np.int64(bases[b]), np.int64(offsets[b])
    # what the brick's voxels share, read once: the patched head; a sparse mask's words
    # and each word's rank (set bits before it), in shared memory
    we, ne, low0 = bp_patched_words(off, pw, data) if mode == 3 else (0, 0, off << 5)
    # sparse (2, 4) and sparse patched (5): the same for the whole block (the caller
    # sends bricks of over MASK_WORDS mask words to the flat kernel)
    ranked = mode == 2 or mode == 4 or mode == 5
    rk0, ex0 = 0, 0  # first bits of a sparse patched brick's exception ranks and values
    if ranked:
        mm, q0, rk0, ex0, low0, we, ne = bp_masked_layout(mode, off, nmask, npre, pw, data)
        for k in range(t, nmask, nthr):
            msk[k] = data[mm + k]
            r = bp_group_prefix(mode, q0, k >> 3, pw, data)
            for kk in range(k & ~7, k):
                r += cuda.popc(data[mm + kk])
            pre[k] = r
        cuda.syncthreads()
    esc = (np.int64(1) << w) - 1
    in0 = x >= 0 and x < ox
    in1 = xv == 2 and x + 1 >= 0 and x + 1 < ox
    if y >= 0 and y < oy and (in0 or in1):
        dz = cuda.blockDim.z
        plane = by * bx
        li = (lz0 * by + ly) * bx + lx
        for lz in range(lz0, bz, dz):
            z = iz * bz + lz - z0
            if z >= 0 and z < oz:
                if mode == 1 or mode == 3:  # (an exception: written over by the pass below)
                    pos = low0 + li * w
                    win = bits_window(data, pos)
                    if in0:
                        put(out, z, y, x, base + (win & esc), fmap)
                    if in1:
                        v = (win >> w) & esc if w <= 16 else get_bits(data, pos + w, w)
                        put(out, z, y, x + 1, base + v, fmap)
                elif mode == 0 or mode == 6:  # (a list brick's voxels: the pass below)
                    if in0:
                        put(out, z, y, x, base, fmap)
                    if in1:
                        put(out, z, y, x + 1, base, fmap)
                else:  # ranked (li even when xv is 2: both voxels in one mask word)
                    k = li >> 5
                    m = np.int64(msk[k])
                    bit = li & 31
                    r = np.int64(pre[k]) + cuda.popc(m & ((np.int64(1) << bit) - 1))
                    s0 = (m >> bit) & 1
                    if in0:
                        v = 0
                        if s0:
                            v = 1 + get_bits(data, low0 + r * w, w)
                            if mode == 5 and v == esc + 1:  # an exception, by its rank
                                v = 1 + bp_ranked_exception(r, esc, rk0, ex0, we, ne, pw, data)
                        put(out, z, y, x, base + v, fmap)
                    if in1:
                        v = 0
                        if (m >> (bit + 1)) & 1:
                            r += s0
                            v = 1 + get_bits(data, low0 + r * w, w)
                            if mode == 5 and v == esc + 1:
                                v = 1 + bp_ranked_exception(r, esc, rk0, ex0, we, ne, pw, data)
                        put(out, z, y, x + 1, base + v, fmap)
            li += dz * plane
    if mode == 6:
        # a list brick's voxels, one per thread, over the base the loop above wrote (a
        # block barrier orders the two writes; the branch is the same for the whole block)
        cuda.syncthreads()
        c = np.int64(data[off]) & 0xFFFF
        v0 = (off + 1 + ((c * pw + 31) >> 5)) << 5
        for e in range(t, c, nthr):
            put_listed(out, get_bits(data, ((off + 1) << 5) + e * pw, pw), iz, iy, ix, bz,
                       by, bx, z0, y0, x0, base + 1 + get_bits(data, v0 + e * w, w), fmap)
    if mode == 3:
        # a patched brick's exceptions, one per thread, written where their positions say
        # over the escape code the loop above wrote there (a block barrier orders the two
        # writes; an escape code that no position names stays, as on every decoder)
        cuda.syncthreads()
        ex0 = low0 + ((nmask * w) << 5)
        for e in range(t, ne, nthr):
            put_listed(out, get_bits(data, ((off + 1) << 5) + e * pw, pw), iz, iy, ix, bz,
                       by, bx, z0, y0, x0, base + get_bits(data, ex0 + e * we, we), fmap)


#: most bricks along x per thread block of the octree brick kernel: one thread each finds
#: their records (a serial chain of loads, the kernel's latency), the block then decodes
#: them one after the other
OCT_BRICKS = 8
#: the octree kernel groups bricks only while this many blocks remain (a small region gets
#: one brick per block, so that it still fills the device)
OCT_MIN_BLOCKS = 4096
#: bricks per block of the octree kernel, when set (benchmarks); automatic when None
OCT_GROUP: int | None = None


@cuda.jit
def oct_brick_kernel(out, z0, y0, x0, bz0, by0, bx0, nb, u, ty, tx, nt, nn, sup, split,
                     split_rank, other, other_rank, values, wg, rec_base, records, palette
                     ):  # pragma: no cover - device code
    # What a brick's voxels share is found once per brick, not per voxel (``oct_voxel``):
    # - its descent of the tree and its record's start: the first ``nb`` threads find
    #   them for the block's ``nb`` bricks along x, in parallel;
    # - a mixed brick's record head (widths, masks, the M2 bytes and their ranks): the
    #   first thread reads it into shared memory;
    # - its local palette, mapped through the volume's palette: one entry per thread.
    # A voxel then reads only its own value from the record (``value_slot``).
    head = cuda.shared.array(OCT_BRICKS, np.int64)
    rh = cuda.shared.array(8, np.int64)
    m2s = cuda.shared.array(8, np.int64)
    m2p = cuda.shared.array(8, np.int64)
    lut = cuda.shared.array(512, np.uint64)
    oz, oy, ox = out.shape
    iz, iy = bz0 + cuda.blockIdx.z, by0 + cuda.blockIdx.y
    ix0 = bx0 + cuda.blockIdx.x * nb
    last = (x0 + ox - 1) >> 3  # the region's last brick along x
    ly, lx, tz = cuda.threadIdx.y, cuda.threadIdx.x, cuda.threadIdx.z
    t = (tz * 8 + ly) * 8 + lx
    nthr = 64 * cuda.blockDim.z
    if t < nb and ix0 + t <= last:
        i, _ = find_node(iz, iy, ix0 + t, u, ty, tx, nt, nn, split, split_rank)
        if bit_at(split, i) == 0:
            head[t] = -1 - node_value(i, other, other_rank, values, wg)
        else:
            head[t] = record_start(rank_at(split, split_rank, i) - sup, rec_base, records,
                                   wg)
    cuda.syncthreads()
    y = iy * 8 + ly - y0
    yin = y >= 0 and y < oy
    npal = palette.shape[0] - 1
    dz = cuda.blockDim.z
    for j in range(nb):  # (every test on j and h below is the same for the block)
        if ix0 + j > last:
            break
        h = head[j]
        x = (ix0 + j) * 8 + lx - x0
        inside = yin and x >= 0 and x < ox
        if h < 0:  # a uniform brick
            if inside:
                v = palette[min(-1 - h, npal)]
                for lz in range(tz, 8, dz):
                    z = iz * 8 + lz - z0
                    if z >= 0 and z < oz:
                        out[_U(z), _U(y), _U(x)] = v
            continue
        if t == 0:
            w, zf, m, q = record_head(records, h, wg)
            m1 = get_u8(records, q)
            p1 = popc(m1)
            big = 0
            for k in range(p1):
                m2 = get_u8(records, q + 1 + k)
                m2s[k] = m2
                m2p[k] = big
                big += popc(m2)
            rh[0], rh[1], rh[2], rh[3] = w, zf, m, (q + 1 + p1) << 3
            rh[4], rh[5], rh[6] = m1, p1, big
        cuda.syncthreads()
        zf, m = rh[1], rh[2]
        nl = min(max(zf + m, 1), 512)  # local palette entries (512 at most when intact)
        for k in range(t, nl, nthr):
            lut[k] = palette[min(local_entry(records, h, wg, zf, m, k), npal)]
        cuda.syncthreads()
        if inside:
            w, v0, m1, p1, big = rh[0], rh[3], rh[4], rh[5], rh[6]
            for lz in range(tz, 8, dz):
                z = iz * 8 + lz - z0
                if z >= 0 and z < oz:
                    r1 = octant_rank(m1, lz, ly, lx)
                    rr = min(r1, 7)
                    jv = value_slot(m1, p1, big, r1, m2p[rr], m2s[rr], lz, ly, lx)
                    li = get_bits8(records, v0 + jv * w, w)
                    out[_U(z), _U(y), _U(x)] = lut[min(li, nl - 1)]
        cuda.syncthreads()  # before the next brick's head and palette replace these


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
        if isinstance(vol, BitpackVolume):  # the device kernels trust the brick data
            if vol.lazy is not None:
                vol.lazy.ensure()
            ensure_checked(vol)
        self.scalars = vol.scalars() if isinstance(vol, OctreeVolume) else ()
        self.xp = xp
        self.arrays = {k: xp.array(v) for k, v in vol.arrays().items()}  # copies (writable)
        #: loaded kernels and packed parameters of this volume's arguments, per
        #: (volume shape, brick) and kernel (see :func:`launch`)
        self.launches: dict[Any, dict[Any, Any]] = {}

    @property
    def nbytes(self) -> int:
        """Device memory held (compressed)."""
        return int(sum(a.nbytes for a in self.arrays.values()))


#: how kernels are launched on a GPU: numba compiles each kernel to PTX once per argument
#: signature and CuPy loads it; ``driver`` then launches it with ``cuLaunchKernel`` on a
#: parameter block packed by NumPy, ``cupy`` through CuPy's kernel call (50-80 parameters
#: converted one by one), ``numba`` through numba's own dispatcher (it marshals every
#: array on every launch). ``driver`` and ``cupy`` keep a volume's own part of the
#: parameters packed (:attr:`DeviceVolume.launches`). Host time of a whole
#: ``decode_on_device`` call on an H100 machine (benchmarks/gpu_decode.py): 0.03-0.07,
#: 0.08-0.15 and 0.2-0.45 ms, against 0.08-0.15 ms for the kernel decoding a 64×512×512
#: timepoint. The simulator always uses numba's. The environment variable
#: ``NG5D_GPU_LAUNCH`` sets it.
LAUNCH = os.environ.get("NG5D_GPU_LAUNCH", "driver")
_MODULES: dict[Any, Any] = {}
#: byte offsets of the 8-byte kernel parameters in a packed parameter block
_OFFSETS = np.arange(0, 8 * 512, 8, dtype=np.uint64)


def _is_array(a: Any) -> bool:
    return hasattr(a, "dtype") and getattr(a, "ndim", 0) > 0


def _arg_key(a: Any) -> Any:
    return (a.dtype.str, a.ndim) if _is_array(a) else None


def _arg_type(a: Any) -> Any:
    from numba import types
    from numba.np.numpy_support import from_dtype

    return types.Array(from_dtype(a.dtype), a.ndim, "C") if _is_array(a) else types.int64


def _flat_args(args: tuple[Any, ...]) -> list[int]:
    """The kernel parameters as numba's kernels take them, as ints: an array as its data
    model's fields (meminfo, parent, size, itemsize, data pointer, shape, strides), an
    int as an int64."""
    flat: list[int] = []
    for a in args:
        if _is_array(a):
            if not a.flags.c_contiguous:
                raise ValueError("kernel arrays must be C-contiguous")
            flat += (0, 0, a.size, a.itemsize, a.data.ptr, *a.shape, *a.strides)
        else:
            flat.append(int(a))
    return flat


#: PTX parameter types of 8 bytes (a kernel whose parameters are all such takes its
#: arguments packed as one array of 8-byte words)
PARAM_8 = frozenset({"u64", "s64", "b64"})


def ptx_entry(ptx: str, what: str) -> tuple[str, list[str]]:
    """(entry name, parameter types such as ``u64``) of the kernel in a PTX module;
    :func:`launch` passes :func:`_flat_args` to those parameters."""
    import re

    entry = re.search(r"\.entry\s+([\w$]+)\s*\(([^)]*)\)", ptx)
    if entry is None:
        raise RuntimeError(f"{what}: no kernel entry in its PTX")
    return entry.group(1), re.findall(r"\.param\s+\.(\w+)", entry.group(2))


def _load(kernel: Any, args: tuple[Any, ...]) -> tuple[Any, Any, bool]:
    """(module, function, all parameters 8 bytes) of ``kernel`` for these argument types."""
    import cupy

    dev = cupy.cuda.Device()
    key = (kernel.py_func, dev.id, *(_arg_key(a) for a in args))
    got = _MODULES.get(key)
    if got is None:
        cc = str(dev.compute_capability)  # "90" for 9.0
        ptx, _ = cuda.compile_ptx(kernel.py_func, tuple(_arg_type(a) for a in args),
                                  cc=(int(cc[:-1]), int(cc[-1])))
        name, kinds = ptx_entry(ptx, kernel.py_func.__name__)
        mod = cupy.cuda.function.Module()
        mod.load(ptx.encode() + b"\0")
        got = _MODULES[key] = (mod, mod.get_function(name),
                               set(kinds) <= PARAM_8)
    return got


def launch(kernel: Any, grid: Any, block: Any, args: tuple[Any, ...], xp: Any,
           fixed: int = 0, cache: dict[Any, Any] | None = None) -> None:
    """Run a numba CUDA kernel over ``grid`` × ``block`` threads with ``args`` (device
    arrays and ints) on the current CuPy stream (see :data:`LAUNCH`); under the simulator
    (``xp`` NumPy), through numba.

    Parameters
    ----------
    fixed : int
        The last ``fixed`` arguments are the same on every call that passes this
        ``cache`` (a volume's compressed arrays and sizes): their part of the parameter
        block is packed once and kept there, with the loaded kernel.
    cache : dict, optional
        Where to keep it (:attr:`DeviceVolume.launches`).
    """
    if xp is np or LAUNCH == "numba":
        kernel[grid, block](*args)
        return
    import cupy

    head = args[:len(args) - fixed]
    key = (kernel.py_func, *(_arg_key(a) for a in head))
    got = cache.get(key) if cache is not None else None
    if got is None:
        _, fn, all8 = _load(kernel, args)
        got = (fn, all8, _flat_args(args[len(head):]))
        if cache is not None:
            cache[key] = got
    fn, all8, tail = got
    flat = _flat_args(head) + tail
    g = (*grid, 1, 1)[:3] if isinstance(grid, tuple) else (grid, 1, 1)
    b = (*block, 1, 1)[:3] if isinstance(block, tuple) else (block, 1, 1)
    if LAUNCH == "driver" and all8 and len(flat) <= _OFFSETS.shape[0]:
        buf = np.array(flat, dtype=np.int64)
        ptrs = _OFFSETS[:len(flat)] + np.uint64(buf.ctypes.data)
        cupy.cuda.driver.launchKernel(fn.ptr, *g, *b, 0, cupy.cuda.get_current_stream().ptr,
                                      int(ptrs.ctypes.data), 0)
        return
    fn(g, b, tuple(np.int64(v) for v in flat))


#: voxels per thread block and pass of the brick-major kernels (a brick's plane times a
#: slab of its planes; the threads loop over the rest of the brick; a ``bitpack`` thread
#: takes two voxels of a row). 64-256 measured alike on an H100; 512 and up slower
BLOCK_VOXELS = 128


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
                     layout: str = "brick", out: Any = None) -> Any:
    """Decode a region of a volume on the device into a device array.

    Parameters
    ----------
    dv : DeviceVolume
        The volume's compressed arrays on the device.
    shape_zyx, brick : tuple of int
        The volume's shape and brick shape (voxels).
    dtype : dtype
        The volume's dtype.
    region : tuple of slice, optional
        Region (step 1, within the volume) to decode; the whole volume by default.
    layout : {"brick", "flat"}
        ``brick``: a thread block per brick (the default; bricks whose (y, x) plane
        exceeds 1024 voxels, ``bitpack`` bricks of over 4096 voxels and the 2.0
        ``palette`` codec fall back to ``flat``);
        ``flat``: one thread per output voxel in C order, the region's index split into
        brick and voxel by division.
    out : array, optional
        C-contiguous device array of the region's shape and the volume's dtype to decode
        into (a new one by default).

    Returns
    -------
    array
        CuPy array (NumPy under the simulator) of the region: ``out`` if given.
    """
    if layout not in ("brick", "flat"):
        raise ValueError(f"layout must be 'brick' or 'flat', got {layout!r}")
    xp = dv.xp
    z, y, x = region if region is not None else (slice(0, s) for s in shape_zyx)
    reg = (z, y, x)
    shp = (z.stop - z.start, y.stop - y.start, x.stop - x.start)
    dt = np.dtype(dtype) if dv.kind == "bitpack" else dv.arrays["palette"].dtype
    if out is None:
        out = xp.empty(shp, dt)
    elif (tuple(out.shape) != shp or out.dtype != dt or not out.flags.c_contiguous
          or not isinstance(out, xp.ndarray)):
        raise ValueError(f"out: need a C-contiguous {xp.__name__} array {shp} {dt}, got "
                         f"{type(out).__name__} {tuple(out.shape)} {out.dtype}")
    if min(shp) <= 0:
        return out
    _, gy, gx = brick_grid(shape_zyx, brick)
    bz, by, bx = brick
    if by * bx > 1024 or (dv.kind == "bitpack" and bz * by * bx > 32 * MASK_WORDS):
        layout = "flat"
    n = shp[0] * shp[1] * shp[2]
    flat = ((n + _THREADS - 1) // _THREADS,), (_THREADS,)
    grid, block, first = _brick_launch(reg, brick if dv.kind != "octree" else (8, 8, 8))
    nb = 1  # bricks per block (octree)
    if dv.kind == "octree":
        nb = min(OCT_GROUP or grid[0] * grid[1] * grid[2] // OCT_MIN_BLOCKS, OCT_BRICKS)
        nb = max(nb, 1)
        grid = ((grid[0] + nb - 1) // nb, grid[1], grid[2])
    at = (z.start, y.start, x.start)
    a = dv.arrays
    # the volume's own arguments (the kernels' last ones) are packed once per volume
    cache = dv.launches.setdefault((tuple(shape_zyx), tuple(brick)), {})
    if dv.kind == "bitpack":
        nvox = bz * by * bx
        nmask = (nvox + 31) // 32
        npre = (nmask + 7) // 8
        res = out.view(np.uint32) if dt == np.float32 else out
        tail = (gy, gx, bz, by, bx, nmask, npre, a["modes"], a["widths"], a["bases"],
                a["offsets"], a["data"])
        fmap = int(dt == np.float32)  # the kernel maps the values back to float bits
        if layout == "brick":
            xv = 2 if BP_PAIRS and bx % 2 == 0 else 1  # voxels per thread along x
            block = (bx // xv, *block[1:])
            launch(bp_brick_kernel, grid, block,
                   (res, *at, *first, fmap, xv, pos_bits(nmask), *tail), xp, len(tail), cache)
        else:
            launch(bp_kernel, *flat, (res, *at, fmap, *tail), xp, len(tail), cache)
        return out
    if dv.kind == "octree":
        u, ty, tx, nt, nn, sup, wg = dv.scalars
        tail = (u, ty, tx, nt, nn, sup, a["split"], a["split_rank"], a["other"],
                a["other_rank"], a["values"], wg, a["rec_base"], a["records"], a["palette"])
        if layout == "brick":
            launch(oct_brick_kernel, grid, block, (out, *at, *first, nb, *tail), xp,
                   len(tail), cache)
        else:
            launch(oct_kernel, *flat, (out, *at, *tail), xp, len(tail), cache)
        return out
    top = np.int64(1) << np.int64(a["words"].dtype.itemsize * 8 - 1)
    tail = (gy, gx, bz, by, bx, top, a["words"], a["ext_w"], a["ext_lut"], a["ext_data"],
            a["lut"], a["data"], a["palette"])
    # the 2.0 ``palette`` codec (still read) keeps the flat kernel only
    launch(pal_kernel, *flat, (out, *at, *tail), xp, len(tail), cache)
    return out
