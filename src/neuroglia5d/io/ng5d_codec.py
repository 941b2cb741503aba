"""The ``.ng5d`` volume codecs ``bitpack`` (intensity) and ``palette`` (labels, format 2.0;
2.1 writes labels with ``octree``, :mod:`neuroglia5d.io.ng5d_octree`), and the storage tier.

Both split a (Z, Y, X) volume into bricks and store every brick so that **each voxel can
be decoded on its own** from the brick's header and a few 32-bit data words: no voxel's
decoding depends on another's, so a GPU thread per voxel (or a CPU loop over any subset of
bricks) decodes any region without touching the rest. The byte layout is specified in
``docs/ng5d-format.md``; this module is the reference implementation (NumPy for the
layout, numba for the loops; the per-voxel functions are shared with the CUDA kernels in
:mod:`neuroglia5d.io.ng5d_gpu`).

``bitpack`` (uint8, uint16, uint32, float32)
    Per brick: ``constant`` (header only), ``dense`` (every value minus the brick minimum,
    ``width`` bits each), ``sparse`` (a bit mask of the voxels different from the
    minimum, prefix counts of the mask, and the packed values of those voxels only),
    ``patched`` (format 2.1: dense at a lower width whose top code marks up to 255
    exceptions, stored with their positions at full width), and since format 2.2
    ``sparse patched`` (a sparse brick's values with exceptions the same way) and
    ``list`` (the positions of the few voxels above the minimum instead of a mask),
    whichever is smallest. 2.2 writes a sparse brick's prefix counts packed (mode 4);
    the word-per-count sparse layout of 2.0-2.1 (mode 2) is still read.
    float32 is stored through the order-preserving map to uint32 (lossless).
``palette`` (uint8 .. uint64 labels)
    A sorted palette of the volume's label values; per brick a 16- or 32-bit word that is
    either the palette index of a single-valued brick or the index of an extended header
    (local table of palette indices plus local indices packed at 1, 2, 4, 8 or 16 bits).

Storage tier (format 2.0, array key ``storage``)
    ``zstd``: a volume block is stored as independent zstd frames, each covering a fixed
    byte range (:data:`FRAME_BYTES`) of the block above (the *resident* form). A reader
    inflates a record once (frames in parallel threads) into the resident form, which it
    keeps in memory and decodes voxel by voxel, on the CPU or the GPU. ``plain``: the
    resident block is stored as is (every 1.x file).
"""

from __future__ import annotations

import itertools
import math
import struct
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError

STORAGE_PLAIN, STORAGE_ZSTD = "plain", "zstd"
STORAGES = (STORAGE_PLAIN, STORAGE_ZSTD)
#: resident bytes per zstd frame of the storage tier (a multiple of 8)
FRAME_BYTES = 1 << 18
#: zstd level of the storage tier per codec (decoding speed does not depend on it; label
#: blocks are small, so a slower level costs little and gains 5-15 %)
ZSTD_LEVELS = {"bitpack": 3, "palette": 15, "octree": 15}
ZSTD_LEVEL = ZSTD_LEVELS["bitpack"]
#: a frame is stored verbatim unless zstd saves at least this fraction of it, and a whole
#: block unless zstd saves this fraction of it: on bit-packed camera noise zstd saves 2-3 %
#: but inflating costs as much as decoding
ZSTD_MIN_GAIN = {"bitpack": 0.10, "palette": 0.0, "octree": 0.0}

CODEC_BITPACK = 1
CODEC_PALETTE = 2
CODEC_NAMES = {CODEC_BITPACK: "bitpack", CODEC_PALETTE: "palette"}

MODE_CONSTANT, MODE_DENSE, MODE_SPARSE, MODE_PATCHED = 0, 1, 2, 3
#: brick modes of format 2.2: sparse with packed prefix counts, sparse patched, list
MODE_SPARSE_PACKED, MODE_SPARSE_PATCHED, MODE_LIST = 4, 5, 6
#: the sparse modes a 2.2 writer chooses from (2.1's layout: ``(MODE_SPARSE,)``)
SPARSE_MODES_22 = (MODE_SPARSE_PACKED, MODE_SPARSE_PATCHED, MODE_LIST)
BITPACK_DTYPES = ("uint8", "uint16", "uint32", "float32")
PALETTE_DTYPES = ("uint8", "uint16", "uint32", "uint64")
_ALIGN = 8


# --------------------------------------------------------------------------- geometry
def brick_grid(shape_zyx: tuple[int, int, int], brick: tuple[int, int, int]
               ) -> tuple[int, int, int]:
    """Number of bricks along (z, y, x); edge bricks are partial (stored padded)."""
    return tuple(math.ceil(s / b) for s, b in zip(shape_zyx, brick, strict=True))  # type: ignore[return-value]


def _section(buf: bytearray, arr: np.ndarray) -> None:
    buf += arr.tobytes()
    pad = (-len(buf)) % _ALIGN
    if pad:
        buf += b"\0" * pad


def _take(mv: memoryview, pos: int, dtype: Any, count: int, lazy: LazyBlock | None = None
          ) -> tuple[np.ndarray, int]:
    """A section at ``pos`` (inflating it first when ``lazy`` is given), and the next
    section's position."""
    nbytes = int(count) * np.dtype(dtype).itemsize
    if lazy is not None:
        lazy.ensure(pos, pos + nbytes)
    if pos + nbytes > len(mv):
        raise InputError(f"volume block truncated (needs {pos + nbytes} bytes, has {len(mv)})")
    arr = np.frombuffer(mv, dtype=dtype, count=int(count), offset=pos)
    pos += nbytes
    pos += (-pos) % _ALIGN
    return arr, pos


# --------------------------------------------------------------------------- float map
def float_to_ordered(a: np.ndarray) -> np.ndarray:
    """Map float32 bits to uint32 so that the integer order is the float order."""
    u = a.astype(np.float32, copy=False).view(np.uint32)
    neg = (u >> np.uint32(31)).astype(bool)
    return np.where(neg, ~u, u | np.uint32(0x80000000)).astype(np.uint32)


def ordered_to_float(u: np.ndarray) -> np.ndarray:
    """Inverse of :func:`float_to_ordered`."""
    u = u.astype(np.uint32, copy=False)
    pos = (u >> np.uint32(31)).astype(bool)
    return np.where(pos, u & np.uint32(0x7FFFFFFF), ~u).astype(np.uint32).view(np.float32)


# --------------------------------------------------------------------------- kernels
#: a decode of at most this many bricks (bitpack, about 0.5 µs each) or rows of bricks
#: (octree, 2–40 µs each; palette, about 40 µs each) runs on the calling thread alone; a
#: larger one is cut into up to TASKS_PER_THREAD chunks per thread, run on numba's threads
#: (see :func:`run_kernel`)
BRICKS_PER_TASK = 64
ROWS_PER_TASK = 4
#: ... unless numba's threads are asleep (no parallel loop ended in the last WARM_SECONDS,
#: about as long as they spin after one: see ``GOMP_SPINCOUNT`` in :mod:`neuroglia5d.io`)
#: and it has fewer than this many bricks / rows (about 0.5 ms of work on one thread):
#: waking a thread costs 0.1–5 ms on a small virtual machine, and the parallel loop waits
#: for it at its end
COLD_PARALLEL_BRICKS = 1024
COLD_PARALLEL_ROWS = 64
WARM_SECONDS = 0.0003
#: the parse checks of sparse and patched bricks, and the zstd frames of the storage tier,
#: go to a Python thread pool (:func:`run_chunks`); checks in tasks of at least this many
#: bricks (well under a millisecond of work: a small volume is checked on the calling
#: thread, which is faster than waking a pool thread for it)
CHECK_BRICKS_PER_TASK = 8192
#: ... in up to this many chunks per thread (load balancing)
TASKS_PER_THREAD = 8

#: held while a decode runs on numba's threads: a decode started meanwhile on another
#: Python thread (napari slices on several) runs on its own thread instead of starting a
#: second team of threads on the same cores (numba's ``workqueue`` layer, where no OpenMP
#: or TBB is installed, cannot run two parallel loops at once at all)
_PARALLEL = threading.Lock()
#: when the last parallel decode ended (``time.perf_counter()``)
_LAST_PARALLEL_END = [0.0]

_POOLS: dict[int, Any] = {}


def _pool(threads: int) -> Any:
    """A persistent thread pool of ``threads`` workers."""
    from concurrent.futures import ThreadPoolExecutor

    pool = _POOLS.get(threads)
    if pool is None:
        pool = _POOLS[threads] = ThreadPoolExecutor(threads, thread_name_prefix="ng5d")
    return pool


def _threads(threads: int | None) -> int:
    if threads is None:
        import numba

        threads = numba.get_num_threads()
    return max(1, int(threads))


def run_chunks(run: Any, n: int, min_chunk: int, threads: int | None = None) -> None:
    """Call ``run(j0, j1)`` over ``[0, n)`` in chunks, on the calling thread and
    ``threads - 1`` pool threads (default: numba's thread count), first come first served.

    The calling thread takes part and returns as soon as every chunk is done: it never
    waits for a helper that has not started yet (on a machine busy with other work a
    sleeping thread can take milliseconds to be scheduled; a parallel loop that ends on a
    barrier waits for it, here the caller does its share of the work instead). ``run``
    must release the GIL (a ``nogil`` numba function, zstd) for the threads to overlap.
    """
    threads = _threads(threads)
    if n <= 0:
        return
    chunk = max(min_chunk, -(-n // (threads * TASKS_PER_THREAD)))
    if threads == 1 or n <= chunk:
        run(0, n)
        return
    lock = threading.Lock()
    done = threading.Event()
    state = {"next": 0, "busy": 0}
    errors: list[BaseException] = []

    def work() -> None:
        while True:
            with lock:
                j0 = state["next"]
                if j0 >= n or errors:
                    return
                state["next"] = j1 = min(n, j0 + chunk)
                state["busy"] += 1
            try:
                run(j0, j1)
            except BaseException as e:  # re-raised on the calling thread
                errors.append(e)
            finally:
                with lock:
                    state["busy"] -= 1
                    if state["busy"] == 0 and (state["next"] >= n or errors):
                        done.set()

    pool = _pool(threads - 1)
    for _ in range(min(threads - 1, -(-n // chunk) - 1)):
        try:
            pool.submit(work)
        except RuntimeError:  # interpreter shutting down: the calling thread does it all
            break
    work()
    done.wait()
    if errors:
        raise errors[0]


def run_kernel(kernel: Any, kernel_par: Any, args: tuple[Any, ...], n: int,
               min_chunk: int, cold_min: int) -> None:
    """Run a decoder over items ``[0, n)``: ``kernel_par(*args, n, chunk, threads)``, its
    numba parallel loop over chunks of at least ``min_chunk`` items (each chunk has a
    fixed cost of a few µs), or ``kernel(*args, 0, n)`` on the calling thread when there
    is one thread, ``n <= min_chunk``, another decode holds numba's threads, or numba's
    threads are asleep and ``n < cold_min``.

    numba's threads spin for a while after a parallel loop before they sleep, so right
    after one (a tile after a whole timepoint, a slice after a slice) even a decode of a
    fraction of a millisecond gains from them; a small decode does not wait for a
    sleeping one to wake up.
    """
    threads = _threads(None)
    if n <= 0:
        return
    warm = time.perf_counter() - _LAST_PARALLEL_END[0] < WARM_SECONDS
    if threads > 1 and n > min_chunk and (warm or n >= cold_min) \
            and _PARALLEL.acquire(blocking=False):
        try:
            kernel_par(*args, n, max(min_chunk, -(-n // (threads * TASKS_PER_THREAD))),
                       threads)
        finally:
            _LAST_PARALLEL_END[0] = time.perf_counter()
            _PARALLEL.release()
        return
    kernel(*args, 0, n)


def _kernels() -> Any:
    """The numba kernels (compiled on first use, cached on disk)."""
    from . import _ng5d_kernels

    return _ng5d_kernels


# --------------------------------------------------------------------------- bitpack
@dataclass
class BitpackVolume:
    """Parsed ``bitpack`` volume block (views into the payload buffer)."""

    modes: np.ndarray
    widths: np.ndarray
    bases: np.ndarray
    offsets: np.ndarray
    data: np.ndarray
    #: set while the block is being inflated on demand (see :class:`LazyBlock`)
    lazy: LazyBlock | None = None
    #: per brick (uint8): 1 once its data was checked. The parser checks every brick's
    #: header; the data of the bricks with data past it (sparse, patched, list) is checked
    #: by the first decode that reads it, in the same pass (on data then in cache), or by
    #: :func:`ensure_checked` before a device upload
    checked: np.ndarray | None = None
    #: byte position of ``data`` in the block
    data_pos: int = 0
    #: voxels of one brick
    n_voxels: int = 0

    def arrays(self) -> dict[str, np.ndarray]:
        """The block's arrays (what a device copy needs)."""
        return {"modes": self.modes, "widths": self.widths, "bases": self.bases,
                "offsets": self.offsets, "data": self.data}


def encode_bitpack(vol: np.ndarray, brick: tuple[int, int, int],
                   sparse_modes: tuple[int, ...] = SPARSE_MODES_22) -> bytes:
    """Encode a (Z, Y, X) intensity volume (uint8/16/32 or float32) as a ``bitpack`` block.

    ``sparse_modes``: the modes for bricks mostly at their minimum, :data:`SPARSE_MODES_22`
    (format 2.2), or ``(MODE_SPARSE,)`` for a block that 2.0 and 2.1 readers decode."""
    if vol.ndim != 3:
        raise ValueError(f"expected a 3D volume, got shape {vol.shape}")
    dt = np.dtype(vol.dtype)
    if dt.name not in BITPACK_DTYPES:
        raise ValueError(f"bitpack: unsupported dtype {dt} (use one of {BITPACK_DTYPES})")
    u = float_to_ordered(vol) if dt == np.float32 else np.ascontiguousarray(vol)
    k = _kernels()
    grid = np.array(brick_grid(vol.shape, brick), np.int64)
    br = np.array(brick, np.int64)
    nb = int(np.prod(grid))
    n = int(np.prod(br))
    mins = np.zeros(nb, np.int64)
    widths = np.zeros(nb, np.int64)
    widths_sparse = np.zeros(nb, np.int64)
    nnz = np.zeros(nb, np.int64)
    pwidth = np.zeros(nb, np.int64)
    pcount = np.zeros(nb, np.int64)
    spwidth = np.zeros(nb, np.int64)
    spcount = np.zeros(nb, np.int64)
    k.bp_stats(u, grid, br, mins, widths, widths_sparse, nnz, pwidth, pcount, spwidth,
               spcount)
    nmask = (n + 31) // 32
    npre = (nmask + 7) // 8
    pbits = k.pos_bits(nmask)  # width of a position or rank
    nq = k.packed_prefix_words(npre, pbits)
    big = np.iinfo(np.int64).max
    dense = (n * widths + 31) // 32
    svals = (nnz * widths_sparse + 31) // 32
    # words of each candidate layout (a mode not allowed costs "big")
    cost = np.full((7, nb), big, np.int64)
    cost[MODE_DENSE] = dense
    cost[MODE_PATCHED] = np.where(pwidth > 0, 1 + (pcount * pbits + 31) // 32
                                  + nmask * pwidth + (pcount * widths + 31) // 32, big)
    if MODE_SPARSE in sparse_modes:
        cost[MODE_SPARSE] = nmask + npre + svals
    if MODE_SPARSE_PACKED in sparse_modes:
        cost[MODE_SPARSE_PACKED] = nmask + nq + svals
    if MODE_SPARSE_PATCHED in sparse_modes:
        cost[MODE_SPARSE_PATCHED] = np.where(
            spwidth > 0, 1 + nmask + nq + (spcount * pbits + 31) // 32
            + (spcount * widths_sparse + 31) // 32 + (nnz * spwidth + 31) // 32, big)
    if MODE_LIST in sparse_modes:
        cost[MODE_LIST] = np.where(nnz > 0, 1 + (nnz * pbits + 31) // 32 + svals, big)
    # the cheapest; ties go to the simplest layout (the lowest of dense, patched, sparse,
    # packed sparse, list, sparse patched)
    order = np.array([MODE_DENSE, MODE_PATCHED, MODE_SPARSE, MODE_SPARSE_PACKED, MODE_LIST,
                      MODE_SPARSE_PATCHED])
    modes = order[np.argmin(cost[order], axis=0)].astype(np.uint8)
    modes[widths == 0] = MODE_CONSTANT
    full = widths
    widths = np.select([modes == MODE_PATCHED, modes == MODE_SPARSE_PATCHED,
                        np.isin(modes, (MODE_SPARSE, MODE_SPARSE_PACKED, MODE_LIST))],
                       [pwidth, spwidth, widths_sparse], widths)
    words = np.where(modes == MODE_CONSTANT, 0,
                     np.take_along_axis(cost, modes[None].astype(np.int64), 0)[0])
    offsets = np.zeros(nb, np.uint32)
    if nb > 1:
        offsets[1:] = np.cumsum(words[:-1], dtype=np.int64).astype(np.uint32)
    total = int(words.sum())
    if total + 2 > np.iinfo(np.uint32).max:
        raise ValueError(f"bitpack: a block of {total} data words does not fit 32-bit "
                         f"offsets (use smaller timepoints)")
    data = np.zeros(total + 2, np.uint32)  # +2: the two-word read window never overruns
    # header words: exception width and count (patched), with the stored values' width
    # (sparse patched), and the count of listed voxels (list)
    pb = np.flatnonzero(modes == MODE_PATCHED)
    data[offsets[pb]] = (full[pb] | (pcount[pb] << 8)).astype(np.uint32)
    sb = np.flatnonzero(modes == MODE_SPARSE_PATCHED)
    data[offsets[sb]] = (widths_sparse[sb] | (spcount[sb] << 8)).astype(np.uint32)
    lb = np.flatnonzero(modes == MODE_LIST)
    data[offsets[lb]] = nnz[lb].astype(np.uint32)
    k.bp_pack(u, grid, br, modes, widths, mins, offsets.astype(np.int64), data)
    buf = bytearray(np.array([nb, total + 2], np.uint32).tobytes())
    _section(buf, modes)
    _section(buf, widths.astype(np.uint8))
    _section(buf, mins.astype(np.uint32))
    _section(buf, offsets)
    _section(buf, data)
    return bytes(buf)


def parse_bitpack(block: bytes | memoryview | LazyBlock, n_bricks: int, n_voxels: int
                  ) -> BitpackVolume:
    """Parse a ``bitpack`` block without decoding it; raise when it does not fit.

    ``n_voxels`` is the number of voxels of one brick. Every brick's header is checked
    now, the data of sparse, patched and list bricks when a decode first reads it (see
    :attr:`BitpackVolume.checked`). ``block`` may be a :class:`LazyBlock`: only its head
    sections are inflated now, the data of the bricks a decode needs when it needs them.
    """
    lazy = block if isinstance(block, LazyBlock) else None
    mv = memoryview(lazy.buf if lazy is not None else block)
    head, pos = _take(mv, 0, np.uint32, 2, lazy)
    nb, nwords = int(head[0]), int(head[1])
    if nb != n_bricks:
        raise InputError(f"volume block has {nb} bricks, the header's shape needs {n_bricks}")
    modes, pos = _take(mv, pos, np.uint8, nb, lazy)
    widths, pos = _take(mv, pos, np.uint8, nb, lazy)
    bases, pos = _take(mv, pos, np.uint32, nb, lazy)
    offsets, pos = _take(mv, pos, np.uint32, nb, lazy)
    data, _ = _take(mv, pos, np.uint32, nwords)
    v = BitpackVolume(modes, widths, bases, offsets, data, lazy, np.zeros(nb, np.uint8), pos,
                      n_voxels)
    _check_bitpack(v, n_voxels, with_data=False)
    return v


def _check_bitpack(v: BitpackVolume, n: int, with_data: bool = True) -> None:
    """Refuse headers that point outside the data (so decoding never reads out of bounds);
    ``with_data``: also check the sparse bricks' masks and prefix counts."""
    nw = len(v.data)
    if nw < 2:
        raise InputError("volume block has no spare data words")
    # one compiled pass over the brick headers (numpy's masks cost 50 µs for 2048 bricks)
    code, b = _kernels().bp_check_heads(v.modes, v.widths, v.offsets, nw, n)
    if code:
        raise InputError({1: f"volume block has an unknown brick mode {int(v.modes[b])}",
                          2: "volume block has a brick wider than 32 bits",
                          3: "a dense brick's data lies past the end of the block",
                          4: "a sparse brick's mask lies past the end of the block",
                          5: "a patched brick's low values lie past the end of the block",
                          6: "a list brick's header lies past the end of the block",
                          }[code])
    if with_data:
        _check_sparse(v, n, None)


def _check_sparse(v: BitpackVolume, n: int, bricks: np.ndarray | None) -> None:
    """Check the masks, prefix counts and value extents of sparse bricks (all, or those
    listed in ``bricks``)."""
    modes = v.modes
    if bricks is not None:
        keep = np.zeros(len(modes), np.uint8)
        keep[bricks] = 1
        modes = np.where(keep.astype(bool), modes, np.uint8(MODE_CONSTANT))
    if (modes >= MODE_SPARSE).any():
        bad = np.zeros(len(v.modes), np.uint8)
        check = _kernels().bp_check_sparse
        run_chunks(lambda j0, j1: check(modes, v.widths, v.offsets, v.data, n, bad, j0, j1),
                   len(modes), CHECK_BRICKS_PER_TASK)
        if bad.any():
            raise InputError(_DATA_ERRORS[int(bad[np.flatnonzero(bad)[0]])])


#: what :func:`_ng5d_kernels.bp_check_data` found wrong with a brick's data, by code
_DATA_ERRORS = {
    1: "a sparse brick's mask lies past the end of the block",
    2: "a sparse brick's prefix counts do not match its mask",
    3: "a sparse brick's values lie past the end of the block",
    4: "a patched brick's header or exceptions do not fit the block",
    5: "a patched brick's exception positions do not match its escape codes",
    6: "a list brick's header or values do not fit the block",
    7: "a list brick's positions are not increasing inside the brick",
}


def decode_bitpack(v: BitpackVolume, shape_zyx: tuple[int, int, int],
                   brick: tuple[int, int, int], dtype: Any,
                   region: tuple[slice, slice, slice] | None = None) -> np.ndarray:
    """Decode a region (default: everything) of a ``bitpack`` volume on the CPU."""
    (z0, y0, x0), shp = region_start_shape(shape_zyx, region)
    dt = np.dtype(dtype)
    out = np.empty(shp, np.uint32 if dt == np.float32 else dt)
    if min(shp) <= 0:
        return out.astype(dt) if dt == np.float32 else out
    if v.lazy is not None and not v.lazy.complete:
        _inflate_bricks(v, _region_bricks(shape_zyx, brick, (z0, y0, x0), shp), brick,
                        check=False)
    if v.checked is None:  # built by hand, not by the parser: check it all now
        ensure_checked(v)
    k = _kernels()
    bad = np.zeros(1, np.uint8)
    args = (out, z0, y0, x0, np.array(shape_zyx, np.int64),
            np.array(brick_grid(shape_zyx, brick), np.int64), np.array(brick, np.int64),
            v.modes, v.widths, v.bases, v.offsets, v.data, v.checked, bad)
    run_kernel(k.bp_decode, k.bp_decode_par, args,
               _n_region_bricks(brick, (z0, y0, x0), shp), BRICKS_PER_TASK,
               COLD_PARALLEL_BRICKS)
    if bad[0]:  # the decode checks the data of each brick it reads first
        raise InputError(_DATA_ERRORS[int(bad[0])])
    return ordered_to_float(out) if dt == np.float32 else out


# --------------------------------------------------------------------------- palette
@dataclass
class PaletteVolume:
    """Parsed ``palette`` volume block (views into the payload buffer)."""

    palette: np.ndarray
    words: np.ndarray
    ext_w: np.ndarray
    ext_lut: np.ndarray
    ext_data: np.ndarray
    lut: np.ndarray
    data: np.ndarray
    lazy: LazyBlock | None = None
    data_pos: int = 0
    word_bits: int = 16

    def arrays(self) -> dict[str, np.ndarray]:
        """The block's arrays (what a device copy needs)."""
        return {"palette": self.palette, "words": self.words, "ext_w": self.ext_w,
                "ext_lut": self.ext_lut, "ext_data": self.ext_data, "lut": self.lut,
                "data": self.data}


def palette_index(vol: np.ndarray, codec: str) -> tuple[np.ndarray, np.ndarray]:
    """The sorted palette of a (Z, Y, X) label volume and every voxel's index into it
    (uint16 when the palette allows, else uint32); ``codec`` names the caller in errors."""
    import fastremap

    if vol.ndim != 3:
        raise ValueError(f"expected a 3D volume, got shape {vol.shape}")
    dt = np.dtype(vol.dtype)
    if dt.name not in PALETTE_DTYPES:
        raise ValueError(f"{codec}: unsupported dtype {dt} (use one of {PALETTE_DTYPES})")
    vol = np.ascontiguousarray(vol)
    palette = np.asarray(fastremap.unique(vol), dtype=dt)
    palette.sort()
    idx = np.empty(vol.shape, np.uint16 if len(palette) <= 65536 else np.uint32)
    _kernels().pal_index(vol, palette, idx)
    return palette, idx


def encode_palette(vol: np.ndarray, brick: tuple[int, int, int]) -> bytes:
    """Encode a (Z, Y, X) label volume (unsigned integers) as a ``palette`` block."""
    palette, idx = palette_index(vol, "palette")
    k = _kernels()
    npal = len(palette)
    grid = np.array(brick_grid(vol.shape, brick), np.int64)
    br = np.array(brick, np.int64)
    nb = int(np.prod(grid))
    n = int(np.prod(br))
    nlocal = np.zeros(nb, np.int64)
    widths = np.zeros(nb, np.int64)
    k.pal_stats(idx, grid, br, nlocal, widths)
    packed = np.flatnonzero(nlocal > 1)
    n_ext = len(packed)
    word_bits = 16 if (npal < 2**15 and n_ext < 2**15) else 32
    ext_of = np.full(nb, -1, np.int64)
    ext_of[packed] = np.arange(n_ext)
    e_w = widths[packed]
    e_n = nlocal[packed]
    lut_off = np.zeros(n_ext, np.int64)
    data_off = np.zeros(n_ext, np.int64)
    if n_ext > 1:
        lut_off[1:] = np.cumsum(e_n[:-1])
        data_off[1:] = np.cumsum((n * e_w[:-1] + 31) // 32)
    n_lut = int(e_n.sum())
    n_words = int(((n * e_w + 31) // 32).sum()) + 2
    lut_dt = np.uint16 if npal <= 65536 else np.uint32
    words = np.zeros(nb, np.uint16 if word_bits == 16 else np.uint32)
    lut = np.zeros(n_lut, lut_dt)
    data = np.zeros(n_words, np.uint32)
    k.pal_pack(idx, grid, br, words, ext_of, e_w, lut_off, data_off, lut, data)
    buf = bytearray(np.array([npal, nb, n_ext, n_lut, n_words, word_bits,
                              16 if lut_dt == np.uint16 else 32, 0], np.uint32).tobytes())
    _section(buf, palette)
    _section(buf, words)
    _section(buf, e_w.astype(np.uint8))
    _section(buf, lut_off.astype(np.uint32))
    _section(buf, data_off.astype(np.uint32))
    _section(buf, lut)
    _section(buf, data)
    return bytes(buf)


def parse_palette(block: bytes | memoryview | LazyBlock, n_bricks: int, dtype: Any,
                  n_voxels: int) -> PaletteVolume:
    """Parse a ``palette`` block without decoding it; raise when it does not fit.

    ``n_voxels`` is the number of voxels of one brick; ``block`` may be a
    :class:`LazyBlock` (the packed indices are inflated when a decode needs them).
    """
    lazy = block if isinstance(block, LazyBlock) else None
    mv = memoryview(lazy.buf if lazy is not None else block)
    head, pos = _take(mv, 0, np.uint32, 8, lazy)
    npal, nb, n_ext, n_lut, n_words, word_bits, lut_bits = (int(v) for v in head[:7])
    if nb != n_bricks:
        raise InputError(f"volume block has {nb} bricks, the header's shape needs {n_bricks}")
    if word_bits not in (16, 32) or lut_bits not in (16, 32):
        raise InputError(f"volume block has invalid word sizes ({word_bits}, {lut_bits})")
    palette, pos = _take(mv, pos, dtype, npal, lazy)
    words, pos = _take(mv, pos, np.uint16 if word_bits == 16 else np.uint32, nb, lazy)
    ext_w, pos = _take(mv, pos, np.uint8, n_ext, lazy)
    ext_lut, pos = _take(mv, pos, np.uint32, n_ext, lazy)
    ext_data, pos = _take(mv, pos, np.uint32, n_ext, lazy)
    lut, pos = _take(mv, pos, np.uint16 if lut_bits == 16 else np.uint32, n_lut, lazy)
    data, _ = _take(mv, pos, np.uint32, n_words)
    v = PaletteVolume(palette, words, ext_w, ext_lut, ext_data, lut, data, lazy, pos,
                      word_bits)
    _check_palette(v, n_voxels, word_bits)
    return v


def _check_palette(v: PaletteVolume, n: int, word_bits: int) -> None:
    """Refuse headers that point outside the block (decoding then stays in bounds)."""
    top = 1 << (word_bits - 1)
    words = v.words.astype(np.int64)
    uni = words < top
    if uni.any() and int(words[uni].max()) >= len(v.palette):
        raise InputError("a single-valued brick points past the palette")
    ext = words[~uni] - top
    if ext.size and int(ext.max()) >= len(v.ext_w):
        raise InputError("a brick points past the extended headers")
    if len(v.ext_w):
        if not np.isin(v.ext_w, (1, 2, 4, 8, 16)).all():
            raise InputError("an extended header has an invalid index width")
        end = v.ext_data.astype(np.int64) + (n * v.ext_w.astype(np.int64) + 31) // 32
        if len(v.data) < 2 or int(end.max()) > len(v.data) - 1:
            raise InputError("a brick's indices lie past the end of the block")
        if not len(v.lut) or int(v.ext_lut.max()) >= len(v.lut):
            raise InputError("a brick's local table lies past the end of the block")


def decode_palette(v: PaletteVolume, shape_zyx: tuple[int, int, int],
                   brick: tuple[int, int, int],
                   region: tuple[slice, slice, slice] | None = None) -> np.ndarray:
    """Decode a region (default: everything) of a ``palette`` volume on the CPU."""
    (z0, y0, x0), shp = region_start_shape(shape_zyx, region)
    out = np.empty(shp, v.palette.dtype)
    if min(shp) <= 0:
        return out
    if v.lazy is not None:
        _inflate_bricks(v, _region_bricks(shape_zyx, brick, (z0, y0, x0), shp), brick)
    k = _kernels()
    args = (out, z0, y0, x0, np.array(brick_grid(shape_zyx, brick), np.int64),
            np.array(brick, np.int64), v.words, v.ext_w, v.ext_lut, v.ext_data, v.lut,
            v.data, v.palette)
    nbz, nby, _ = _n_region_bricks(brick, (z0, y0, x0), shp, per_axis=True)
    run_kernel(k.pal_decode, k.pal_decode_par, args, nbz * nby, ROWS_PER_TASK,
               COLD_PARALLEL_ROWS)
    return out


# --------------------------------------------------------------------------- storage tier
_STORED_HEAD = 16  # u32 frame count, u32 frame size, u64 resident length


def store_zstd(block: bytes, level: int = ZSTD_LEVEL, frame: int | None = None,
               min_gain: float = 0.0) -> bytes:
    """Wrap a resident volume block in the ``zstd`` storage tier (independent frames).

    A frame whose zstd encoding is not shorter than its byte range, or saves less than
    ``min_gain`` (a fraction) of it, is stored verbatim (the reader tells the two apart
    by the stored length). With ``min_gain`` > 0, when zstd saves less than ``min_gain``
    of the whole block every frame is stored verbatim: a reader then uses the stored bytes
    in place (:class:`LazyBlock`), with no copy (bit-packed camera noise, whose head
    sections alone would compress).
    """
    import imagecodecs

    frame = FRAME_BYTES if frame is None else frame
    if frame <= 0 or frame % _ALIGN:
        raise ValueError(f"frame size must be a positive multiple of {_ALIGN}, got {frame}")
    mv = memoryview(block)
    r = len(mv)
    nf = -(-r // frame)
    frames = []
    for f in range(nf):
        raw = mv[f * frame:min((f + 1) * frame, r)]
        z = imagecodecs.zstd_encode(raw, level=level)
        frames.append(z if len(z) < len(raw) * (1.0 - min_gain) and len(z) < len(raw)
                      else bytes(raw))
    if min_gain > 0 and sum(len(z) for z in frames) > r * (1.0 - min_gain):
        frames = [bytes(mv[f * frame:min((f + 1) * frame, r)]) for f in range(nf)]
    buf = bytearray(np.array([nf, frame], np.uint32).tobytes() + np.uint64(r).tobytes())
    _section(buf, np.array([len(z) for z in frames], np.uint32))
    for z in frames:
        buf += z
    return bytes(buf)


def stored_layout(stored: bytes | memoryview) -> tuple[int, int, np.ndarray, int]:
    """(resident length, frame size, stored frame lengths, offset of the first frame)."""
    rlen, frame, lens, pos = _frame_table(memoryview(stored))
    return rlen, frame, np.array(lens, np.uint32), pos


def _frame_table(mv: memoryview) -> tuple[int, int, tuple[int, ...], int]:
    """:func:`stored_layout` with the lengths as a tuple: read with :mod:`struct` (a
    first read of a timepoint runs this once; a few NumPy calls on small arrays cost
    10-60 µs each there, right after another large decode has left the caches cold)."""
    if len(mv) < _STORED_HEAD:
        raise InputError(f"volume block truncated (needs {_STORED_HEAD} bytes, has "
                         f"{len(mv)})")
    nf, frame, rlen = struct.unpack_from("<IIQ", mv, 0)
    if frame <= 0 or frame % _ALIGN or nf != -(-rlen // frame):
        raise InputError(f"stored volume block has an invalid frame table ({nf} frames of "
                         f"{frame} bytes for {rlen} bytes)")
    pos = _STORED_HEAD + 4 * nf
    if pos > len(mv):
        raise InputError(f"volume block truncated (needs {pos} bytes, has {len(mv)})")
    lens = struct.unpack_from(f"<{nf}I", mv, _STORED_HEAD)
    pos += (-pos) % _ALIGN
    if pos + sum(lens) > len(mv):
        raise InputError("stored volume block truncated (its frames end past the block)")
    return rlen, frame, lens, pos


#: up to this many frames are inflated on the calling thread (about 1 ms each)
_SERIAL_FRAMES = 8


def inflate_zstd(stored: bytes | memoryview, threads: int | None = None) -> np.ndarray:
    """The resident volume block of a ``zstd``-stored one (uint8 array, frames decoded in
    ``threads`` threads; default: numba's thread count)."""
    lz = LazyBlock(stored)
    lz.ensure(threads=threads)
    return lz.buf


# --------------------------------------------------------------------------- lazy inflation
class LazyBlock:
    """The resident form of a ``zstd``-stored volume block, inflated frame by frame as
    parts of it are needed (a z-plane of a timepoint inflates only the frames holding the
    head sections and that plane's bricks). Untouched frames cost no memory."""

    def __init__(self, stored: bytes | memoryview) -> None:
        self.stored = memoryview(stored)
        self.rlen, self.frame, lens, pos = _frame_table(self.stored)
        #: where each stored frame starts, and where the last one ends
        self.starts = list(itertools.accumulate(lens, initial=pos))
        self._lock = threading.Lock()  # readers on several threads (napari slicing)
        n = len(lens)
        #: frames not inflated yet
        self._left = n
        f, r = self.frame, self.rlen
        if n and all(ln == min(f, r - f * i) for i, ln in enumerate(lens)):
            # every frame verbatim: the frames, back to back, are the resident block; it is
            # read in place (read-only, no copy) where 8-byte aligned like a resident block
            view = np.frombuffer(self.stored, np.uint8, self.rlen, pos)
            if view.__array_interface__["data"][0] % 8 == 0:
                self.buf, self.done, self._left = view, np.ones(n, np.bool_), 0
                return
        self.buf = np.empty(self.rlen, np.uint8)
        self.done = np.zeros(n, np.bool_)

    @property
    def complete(self) -> bool:
        """Every frame inflated."""
        return self._left == 0

    def ensure(self, lo: int = 0, hi: int | None = None, threads: int | None = None) -> None:
        """Inflate the frames covering resident bytes ``[lo, hi)`` (default: all)."""
        if self._left == 0:
            return
        hi = self.rlen if hi is None else min(hi, self.rlen)
        if hi <= lo:
            return
        f0, f1 = lo // self.frame, -(-hi // self.frame)
        if f1 - f0 == 1 and self.done[f0]:
            return
        with self._lock:
            todo = [f for f in range(f0, f1) if not self.done[f]]
            if todo:
                _inflate_frames(self, todo, threads)
                self.done[todo] = True
                self._left -= len(todo)


def _inflate_frames(lz: LazyBlock, frames: list[int], threads: int | None) -> None:
    import imagecodecs

    def one(f: int) -> None:
        lo, hi = f * lz.frame, min((f + 1) * lz.frame, lz.rlen)
        src = lz.stored[lz.starts[f]:lz.starts[f + 1]]
        if len(src) == hi - lo:
            lz.buf[lo:hi] = np.frombuffer(src, np.uint8)
            return
        try:
            got = imagecodecs.zstd_decode(src, out=lz.buf[lo:hi])
        except Exception as e:  # imagecodecs raises its own error types
            raise InputError(f"stored volume block: frame {f} does not inflate ({e})") from None
        if len(got) != hi - lo:
            raise InputError(f"stored volume block: frame {f} inflates to {len(got)} bytes, "
                             f"expected {hi - lo}")

    def run(j0: int, j1: int) -> None:
        for f in frames[j0:j1]:
            one(f)

    if len(frames) <= _SERIAL_FRAMES:  # a slice's few frames: on the calling thread
        run(0, len(frames))
    else:
        run_chunks(run, len(frames), 1, threads)


def region_start_shape(shape_zyx: tuple[int, int, int],
                       region: tuple[slice, slice, slice] | None
                       ) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """(start, shape) of a region of slices with explicit bounds (default: the volume)."""
    z, y, x = region if region is not None else (slice(0, s) for s in shape_zyx)
    return ((z.start, y.start, x.start),
            (z.stop - z.start, y.stop - y.start, x.stop - x.start))


def _n_region_bricks(brick: tuple[int, int, int], start: tuple[int, int, int],
                     shp: tuple[int, int, int], per_axis: bool = False) -> Any:
    """Number of bricks covering a region (or per axis, z y x)."""
    n = [(s0 + k - 1) // b - s0 // b + 1 for s0, k, b in zip(start, shp, brick, strict=True)]
    return tuple(n) if per_axis else n[0] * n[1] * n[2]


def _region_bricks(shape_zyx: tuple[int, int, int], brick: tuple[int, int, int],
                   start: tuple[int, int, int], shp: tuple[int, int, int]) -> np.ndarray:
    """Numbers of the bricks covering a region."""
    grid = brick_grid(shape_zyx, brick)
    axes = [np.arange(s0 // b, (s0 + n - 1) // b + 1)
            for s0, n, b in zip(start, shp, brick, strict=True)]
    iz, iy, ix = np.meshgrid(*axes, indexing="ij")
    return ((iz * grid[1] + iy) * grid[2] + ix).ravel()


def _inflate_bricks(v: BitpackVolume | PaletteVolume, bricks: np.ndarray | None,
                    brick: tuple[int, int, int], check: bool = True) -> None:
    """Inflate the data of ``bricks`` (None: all) of a lazily inflated volume, and with
    ``check`` check the data of the bitpack bricks not checked yet."""
    lz = v.lazy
    if lz is None:
        if check and isinstance(v, BitpackVolume):
            ensure_checked(v, bricks)
        return
    n = int(np.prod(brick))
    if lz.complete:
        lo, hi = 0, 0
    elif bricks is None:
        lo, hi = 0, lz.rlen
    elif isinstance(v, BitpackVolume):
        off = v.offsets[bricks].astype(np.int64)
        lo = v.data_pos + 4 * int(off.min())
        w = v.widths[bricks].astype(np.int64)
        nmask = (n + 31) // 32
        # a brick's data ends before the next brick's data; the last spans up to the end
        end = np.where(v.modes[bricks] == MODE_SPARSE, off + nmask + (nmask + 7) // 8
                       + (n * w + 31) // 32, off + (n * w + 31) // 32)
        pat = v.modes[bricks] >= MODE_PATCHED
        if pat.any():  # other layouts' ends depend on their data: up to the next brick's
            nxt = np.append(v.offsets.astype(np.int64), len(v.data) - 2)[bricks + 1]
            end = np.where(pat, np.maximum(nxt, off + 1), end)
        hi = v.data_pos + 4 * (int(end.max()) + 2)
    else:
        top = 1 << (v.word_bits - 1)
        words = v.words[bricks].astype(np.int64)
        ext = words[words >= top] - top
        if not len(ext):
            lo, hi = 0, 0
        else:
            d = v.ext_data[ext].astype(np.int64)
            lo = v.data_pos + 4 * int(d.min())
            end = d + (n * v.ext_w[ext].astype(np.int64) + 31) // 32
            hi = v.data_pos + 4 * (int(end.max()) + 2)
    lz.ensure(lo, hi)
    if check and isinstance(v, BitpackVolume):
        ensure_checked(v, bricks)


def ensure_checked(v: BitpackVolume, bricks: np.ndarray | None = None) -> None:
    """Check the data of ``bricks`` (None: all) of a parsed bitpack volume where not
    checked yet (inflated already, if stored with zstd); raise if it does not fit."""
    n = v.n_voxels
    if v.checked is None:
        if not n:
            raise ValueError("a BitpackVolume built by hand needs n_voxels to be checked")
        v.checked = np.zeros(len(v.modes), np.uint8)
    if bricks is None:
        bricks = np.arange(len(v.modes))
    todo = bricks[v.checked[bricks] == 0]
    if len(todo):
        _check_sparse(v, n, todo if len(todo) < len(v.modes) else None)
        v.checked[todo] = 1


def ensure_inflated(v: BitpackVolume | PaletteVolume, brick: tuple[int, int, int]) -> None:
    """Inflate (and check) all of a lazily inflated volume (before a device upload)."""
    _inflate_bricks(v, None, brick)
