"""The ``octree`` labels codec of ``.ng5d`` (format 2.1, codec id 3).

Labels are mostly large regions of one value (background, cell interiors) and thin
boundaries. ``palette`` (the ``compressed_segmentation`` family) pays a header for every
8×8×8 brick and ``n·w`` bits for every brick a boundary touches; ``octree`` instead keeps

* a tree of uniform regions above the bricks (top nodes of 2^U bricks per axis), in
  which a region of one value costs two bits (split / other-than-background) plus its
  palette index when it is not background, and
* for a brick holding several values, a record with its local table and an octree of its
  4³ and 2³ cells: only the 2³ cells a boundary runs through store their 8 voxels.

Every voxel still decodes on its own (``_ng5d_octree_kernels.oct_voxel``: rank queries
down the tree, then popcounts inside the brick), so the GPU decodes one voxel per thread;
the CPU decodes brick by brick. The byte layout is in ``docs/ng5d-format.md`` (§2.5).
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError
from . import ng5d_codec as codec
from .ng5d_codec import (
    _ALIGN,
    LazyBlock,
    _n_region_bricks,
    _section,
    brick_grid,
    palette_index,
    region_start_shape,
    run_kernel,
)

CODEC_OCTREE = 3
BRICK = (8, 8, 8)
#: tree levels above the bricks: top nodes of 8 bricks (64 voxels) per axis
LEVELS = 3
_HEAD = 12
_GROUP = 8  # records per rec_base entry


def _kernels() -> Any:
    from . import _ng5d_octree_kernels

    return _ng5d_octree_kernels


@dataclass
class OctreeVolume:
    """Parsed ``octree`` volume block (views into the resident buffer)."""

    palette: np.ndarray
    levels: int
    top: tuple[int, int, int]
    n_nodes: int
    n_upper: int
    split_upper: int
    n_records: int
    wg: int
    split: np.ndarray  # u32 view of the u64 words
    split_rank: np.ndarray
    other: np.ndarray
    other_rank: np.ndarray
    values: np.ndarray
    rec_base: np.ndarray
    records: np.ndarray
    lazy: LazyBlock | None = None
    records_pos: int = 0
    checked: bool = False

    def arrays(self) -> dict[str, np.ndarray]:
        """The block's arrays (what a device copy needs)."""
        return {"palette": self.palette, "split": self.split, "split_rank": self.split_rank,
                "other": self.other, "other_rank": self.other_rank, "values": self.values,
                "rec_base": self.rec_base, "records": self.records}

    def scalars(self) -> tuple[int, int, int, int, int, int, int]:
        """(U, ty, tx, nt, nn, sup, wg) as the kernels take them."""
        tz, ty, tx = self.top
        return (self.levels, ty, tx, tz * ty * tx, self.n_nodes, self.split_upper, self.wg)


# --------------------------------------------------------------------------- encoder
def _pool_levels(mn: np.ndarray, mx: np.ndarray, levels: int
                 ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per level (0 = bricks .. ``levels``): smallest and largest palette index of every
    node; nodes wholly outside the grid get (huge, -1), which counts as uniform."""
    big = np.iinfo(np.int64).max
    out = [(mn, mx)]
    for _ in range(levels):
        a, b = out[-1]
        sh = [2 * math.ceil(s / 2) for s in a.shape]
        a2 = np.full(sh, big, np.int64)
        b2 = np.full(sh, -1, np.int64)
        a2[:a.shape[0], :a.shape[1], :a.shape[2]] = a
        b2[:b.shape[0], :b.shape[1], :b.shape[2]] = b
        r = (sh[0] // 2, 2, sh[1] // 2, 2, sh[2] // 2, 2)
        out.append((a2.reshape(r).min((1, 3, 5)), b2.reshape(r).max((1, 3, 5))))
    return out


def _bits(flags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A bool array as u64 words (bit i of word i // 64) and the set bits before each."""
    n = len(flags)
    nw = max(1, -(-n // 64))
    padded = np.zeros(nw * 64, np.uint8)
    padded[:n] = flags
    words = np.packbits(padded, bitorder="little").view("<u8")
    counts = np.add.reduceat(padded, np.arange(0, nw * 64, 64)).astype(np.int64)
    ranks = np.zeros(nw, np.uint32)
    ranks[1:] = np.cumsum(counts)[:-1]
    return words, ranks


def _pack(values: np.ndarray, w: int) -> np.ndarray:
    """``w``-bit entries as a byte bit stream (least significant bit first), plus 8 spare
    bytes."""
    n = len(values)
    bits = ((values.astype(np.uint64)[:, None] >> np.arange(w, dtype=np.uint64)) & 1)
    out = np.packbits(bits.astype(np.uint8).ravel(), bitorder="little")
    return np.concatenate([out, np.zeros(8 + (-(-n * w // 8)) - len(out), np.uint8)])


def encode_octree(vol: np.ndarray, levels: int = LEVELS) -> bytes:
    """Encode a (Z, Y, X) label volume (unsigned integers) as an ``octree`` block."""
    palette, idx = palette_index(vol, "octree")
    k = _kernels()
    npal = len(palette)
    wg = max(1, (npal - 1).bit_length())
    grid = brick_grid(vol.shape, BRICK)
    mn = np.empty(int(np.prod(grid)), np.int64)
    mx = np.empty_like(mn)
    k.brick_minmax(idx, *grid, mn, mx)
    pyr = _pool_levels(mn.reshape(grid), mx.reshape(grid), levels)
    # breadth first, level by level: positions (level grid units) of the existing nodes
    top_mn = pyr[levels][0]
    pos = np.stack(np.meshgrid(*(np.arange(s) for s in top_mn.shape), indexing="ij"),
                   -1).reshape(-1, 3)
    offs = np.array([(dz, dy, dx) for dz in (0, 1) for dy in (0, 1) for dx in (0, 1)])
    split_l, value_l = [], []
    n_upper = sup = 0
    mixed = pos
    for lev in range(levels, -1, -1):
        a, b = pyr[lev]
        inside = (pos < np.array(a.shape)).all(1)
        pz, py, px = (np.minimum(pos[:, d], a.shape[d] - 1) for d in range(3))
        lo, hi = a[pz, py, px], b[pz, py, px]
        sp = inside & (hi > lo)
        split_l.append(sp)
        value_l.append(np.where(inside & ~sp, lo, 0))
        if lev > 0:
            n_upper += len(pos)
            sup += int(sp.sum())
            pos = (2 * pos[sp][:, None, :] + offs[None]).reshape(-1, 3)
        else:
            mixed = pos[sp]
    split = np.concatenate(split_l)
    vals = np.concatenate(value_l)
    other = vals != 0
    nn = len(split)
    sw, sr = _bits(split)
    no = int(other.sum())
    ow, orank = _bits(other) if no else (np.zeros(0, np.uint64), np.zeros(0, np.uint32))
    values = _pack(vals[other], wg)
    bricks = np.ascontiguousarray(mixed, np.int64)
    nr = len(bricks)
    sizes = np.zeros(nr, np.int64)
    if nr:
        k.record_sizes(idx, bricks, wg, sizes)
    offsets = np.zeros(nr + 1, np.int64)
    np.cumsum(sizes, out=offsets[1:])
    rb = int(offsets[-1])
    records = np.zeros(rb + 8, np.uint8)
    if nr:
        k.write_records(idx, bricks, wg, offsets[:-1], records)
    if rb >= 2**32:
        raise ValueError("octree: a volume's mixed bricks take more than 4 GiB")
    base = np.append(offsets[:-1][::_GROUP], rb).astype(np.uint32)
    tz, ty, tx = top_mn.shape
    buf = bytearray(np.array([npal, levels, tz, ty, tx, nn, n_upper, sup, nr, no, wg, rb],
                             np.uint32).tobytes())
    for arr in (palette, sw, sr, ow, orank, values, base, records):
        _section(buf, arr)
    return bytes(buf)


# --------------------------------------------------------------------------- parser
def parse_octree(block: bytes | memoryview | LazyBlock, shape_zyx: tuple[int, int, int],
                 dtype: Any) -> OctreeVolume:
    """Parse an ``octree`` block without decoding it; raise when it does not fit.

    ``block`` may be a :class:`LazyBlock` (the records are inflated when a decode needs
    them).
    """
    lazy = block if isinstance(block, LazyBlock) else None
    mv = memoryview(lazy.buf if lazy is not None else block)
    if len(mv) < 4 * _HEAD:
        raise InputError(f"volume block truncated (needs {4 * _HEAD} bytes, has {len(mv)})")
    if lazy is not None:
        lazy.ensure(0, 4 * _HEAD)
    # (struct and one size check, not a NumPy call per section: a timepoint's first read
    # runs this right after other work has left the caches cold)
    npal, lev, tz, ty, tx, nn, nup, sup, nr, no, wg, rb = struct.unpack_from(
        f"<{_HEAD}I", mv, 0)
    grid = brick_grid(shape_zyx, BRICK)
    if lev > 20 or (tz, ty, tx) != tuple(-(-g // (1 << lev)) for g in grid):
        raise InputError(f"octree block: top grid {(tz, ty, tx)} at {lev} levels does not "
                         f"fit the brick grid {grid}")
    if not 1 <= wg <= 32 or npal < 1 or npal > (1 << wg):
        raise InputError(f"octree block: {npal} palette entries at {wg} bits")
    nt = tz * ty * tx
    nw = max(1, -(-nn // 64))
    # the sections, in order, each padded to 8 bytes: (dtype, count, byte position)
    sections = [(np.dtype(dtype), npal), (_U64, nw), (_U32, nw), (_U64, nw if no else 0),
                (_U32, nw if no else 0), (_U8, -(-no * wg // 8) + 8),
                (_U32, -(-nr // _GROUP) + 1)]
    pos = 4 * _HEAD
    at = []
    for dt, n in sections:
        at.append(pos)
        pos += n * dt.itemsize
        pos += (-pos) % _ALIGN
    records_pos = pos
    if records_pos + rb + 8 > len(mv):
        raise InputError(f"volume block truncated (needs {records_pos + rb + 8} bytes, has "
                         f"{len(mv)})")
    if lazy is not None:  # the head sections now, the records when a decode needs them
        lazy.ensure(0, records_pos)
    palette, sw, sr, ow, orank, values, base = (
        np.frombuffer(mv, dt, n, p) for (dt, n), p in zip(sections, at, strict=True))
    records = np.frombuffer(mv, _U8, rb + 8, records_pos)
    v = OctreeVolume(palette, lev, (tz, ty, tx), nn, nup, sup, nr, wg, sw.view(np.uint32),
                     sr, ow.view(np.uint32), orank, values, base, records, lazy, records_pos)
    _check(v, nt, no, rb, sw, ow)
    return v


_U8, _U32, _U64 = np.dtype(np.uint8), np.dtype(np.uint32), np.dtype(np.uint64)


_TREE_ERRORS = {
    1: "node bits set past the last node, or a split node marked uniform",
    2: "the split ranks do not match its bits",
    3: "the other ranks do not match its bits",
    4: "node counts do not match the tree",
    5: "a uniform region points past the palette",
    6: "record groups out of order or past the records",
}


def _check(v: OctreeVolume, nt: int, no: int, rb: int, sw: np.ndarray, ow: np.ndarray
           ) -> None:
    """Refuse a block whose tree or tables do not hold together (decoding then stays in
    bounds; the kernels clamp what remains). One compiled pass over the bit sets."""
    upper_ok = v.n_upper == 0 if v.levels == 0 else nt <= v.n_upper <= v.n_nodes
    code = 4 if not upper_ok or v.n_nodes != nt + 8 * v.split_upper else \
        _kernels().check_tree(sw, v.split_rank, ow, v.other_rank, v.values, v.n_nodes,
                              v.n_upper, v.split_upper, v.n_records, no, v.wg,
                              len(v.palette), v.rec_base, rb)
    if code:
        raise InputError(f"octree block: {_TREE_ERRORS[code]}")
    if v.lazy is None:  # a lazily inflated block checks its records when they arrive
        _check_records(v)


def _check_records(v: OctreeVolume) -> None:
    bad = _kernels().check_records(v.records, v.rec_base, v.n_records, v.wg)
    if bad >= 0:
        raise InputError(f"octree block: record {bad} does not fit its group (damaged)")


# --------------------------------------------------------------------------- decoder
def decode_octree(v: OctreeVolume, shape_zyx: tuple[int, int, int],
                  region: tuple[slice, slice, slice] | None = None) -> np.ndarray:
    """Decode a region (default: everything) of an ``octree`` volume on the CPU."""
    (z0, y0, x0), shp = region_start_shape(shape_zyx, region)
    out = np.empty(shp, v.palette.dtype)
    if min(shp) <= 0:
        return out
    ensure_records(v)
    k = _kernels()
    u, ty, tx, nt, nn, sup, wg = v.scalars()
    args = (out, z0, y0, x0, u, ty, tx, nt, nn, sup, v.split, v.split_rank, v.other,
            v.other_rank, v.values, wg, v.rec_base, v.records, v.palette)
    nbz, nby, _ = _n_region_bricks(BRICK, (z0, y0, x0), shp, per_axis=True)
    run_kernel(k.oct_decode, k.oct_decode_par, args, nbz * nby, codec.ROWS_PER_TASK,
               codec.COLD_PARALLEL_ROWS)
    return out


def ensure_records(v: OctreeVolume) -> None:
    """Inflate the records of a lazily inflated volume (label blocks are small: a
    64×512×512 timepoint's records fit in one or two zstd frames)."""
    if v.lazy is not None and not v.checked:
        v.lazy.ensure(v.records_pos, v.records_pos + len(v.records))
        _check_records(v)
        v.checked = True
