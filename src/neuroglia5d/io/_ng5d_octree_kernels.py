"""numba kernels of the ``octree`` labels codec (imported only when encoding or decoding).

The layout is specified in ``docs/ng5d-format.md`` (§2.5). ``oct_voxel`` decodes one voxel
from the compressed arrays alone (a descent of at most ``U + 1`` tree levels, then at most
four popcounts in its brick); the CUDA kernel in :mod:`neuroglia5d.io.ng5d_gpu` runs it one
voxel per thread. The CPU decoder decodes whole bricks instead: it finds each brick's node
once, fills uniform bricks row by row, and expands a mixed brick's record sequentially
(cells in the order the record lists them), which is several times faster than voxel by
voxel. Bit sets are read as pairs of 32-bit words (the u64 words of the file, little
endian), so every operation stays in signed 64-bit integers on both targets.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
from numba import prange
from numba.core.extending import register_jitable

from ._ng5d_kernels import fill_box, interleaved_chunk, interleaved_len, popc

_plain = numba.njit(cache=True, nogil=True)
_par = numba.njit(cache=True, nogil=True, parallel=True)
_shared = register_jitable
U64 = np.uint64

#: C-order offset within an 8x8x8 brick of every voxel, listed in record (octant) order
_M = np.empty(512, np.int64)
for _m in range(512):
    _c1, _c2, _c3 = _m >> 6, (_m >> 3) & 7, _m & 7
    _z = ((_c1 >> 2) & 1) * 4 + ((_c2 >> 2) & 1) * 2 + ((_c3 >> 2) & 1)
    _y = ((_c1 >> 1) & 1) * 4 + ((_c2 >> 1) & 1) * 2 + ((_c3 >> 1) & 1)
    _x = (_c1 & 1) * 4 + (_c2 & 1) * 2 + (_c3 & 1)
    _M[_m] = (_z * 8 + _y) * 8 + _x
MORTON_ZYX = _M


# --------------------------------------------------------------------------- shared
@_shared
def bit_at(words: Any, i: int) -> int:
    """Bit ``i`` of a bit set given as u32 words (two per u64 word of the file)."""
    return (np.int64(words[i >> 5]) >> (i & 31)) & 1


@_shared
def rank_at(words: Any, ranks: Any, i: int) -> int:
    """Set bits before ``i`` (``ranks``: set bits before each u64 word)."""
    k = i >> 6
    b = i & 63
    lo = np.int64(words[2 * k])
    r = np.int64(ranks[k])
    if b < 32:
        return r + popc(lo & ((np.int64(1) << b) - 1))
    hi = np.int64(words[2 * k + 1])
    return r + popc(lo) + popc(hi & ((np.int64(1) << (b - 32)) - 1))


@_shared
def get_bits8(buf: Any, pos: int, w: int) -> int:
    """The ``w``-bit (``w`` <= 32) entry at bit ``pos`` of a byte bit stream (clamped to
    the buffer, so a damaged block never reads outside it)."""
    n = buf.shape[0]
    k = pos >> 3
    x = np.int64(0)
    for q in range(5):
        kk = min(k + q, n - 1)
        x |= np.int64(buf[kk]) << (8 * q)
    return (x >> (pos & 7)) & ((np.int64(1) << w) - 1)


@_shared
def get_u8(buf: Any, k: int) -> int:
    return np.int64(buf[min(k, buf.shape[0] - 1)])


@_shared
def find_node(iz: int, iy: int, ix: int, u: int, ty: int, tx: int, nt: int, nn: int,
              split: Any, split_rank: Any) -> tuple[int, int]:
    """(node, level) where the descent for brick (iz, iy, ix) ends: a uniform node, or a
    split level-0 node (a mixed brick)."""
    i = ((iz >> u) * ty + (iy >> u)) * tx + (ix >> u)
    i = min(i, nn - 1)
    k = u
    while k > 0 and bit_at(split, i):
        k -= 1
        c = ((iz >> k) & 1) * 4 + ((iy >> k) & 1) * 2 + ((ix >> k) & 1)
        i = min(nt + 8 * rank_at(split, split_rank, i) + c, nn - 1)
    return i, k


@_shared
def node_value(i: int, other: Any, other_rank: Any, values: Any, wg: int) -> int:
    """Palette index of uniform node ``i`` (no ``other`` bits at all: background)."""
    if other.shape[0] == 0 or bit_at(other, i) == 0:
        return 0
    return get_bits8(values, wg * rank_at(other, other_rank, i), wg)


@_shared
def record_len(rec: Any, p: int, wg: int) -> int:
    """Length in bytes of the record starting at byte ``p`` (from its own fields)."""
    w, _zf, _m, q = record_head(rec, p, wg)
    m1 = get_u8(rec, q)
    p1 = popc(m1)
    p2 = 0
    for t in range(p1):
        p2 += popc(get_u8(rec, q + 1 + t))
    nv = (8 - p1) + (8 * p1 - p2) + 8 * p2
    return (q - p) + 1 + p1 + ((nv * w + 7) >> 3)


@_shared
def record_start(r: int, rec_base: Any, rec: Any, wg: int) -> int:
    """Byte where record ``r`` starts: its group's start, then the lengths of the records
    before it in the group (at most 7)."""
    g = min(max(r, 0) >> 3, rec_base.shape[0] - 1)
    p = np.int64(rec_base[g])
    for _ in range(max(r, 0) & 7):
        p += record_len(rec, p, wg)
    return p


@_shared
def record_head(rec: Any, p: int, wg: int) -> tuple[int, int, int, int]:
    """(w, zf, m, position of m1) of the record starting at byte ``p``."""
    b0 = get_u8(rec, p)
    w = np.int64(1) << min(b0 & 7, 4)
    zf = (b0 >> 3) & 1
    m = b0 >> 4
    q = p + 1
    if m == 15:
        m = get_u8(rec, q) | (get_u8(rec, q + 1) << 8)
        q += 2
    q += (m * wg + 7) >> 3
    return w, zf, m, q


@_shared
def value_slot(m1: int, p1: int, big: int, r1: int, before: int, m2: int, a: int, b: int,
               e: int) -> int:
    """Entry of voxel (a, b, e) (z, y, x mod 8) in its record's value stream.

    ``m1``: the record's M1 byte; ``p1``: its set bits; ``big``: set bits of all M2
    bytes; ``r1``: set bits of ``m1`` below the voxel's octant; ``before``: set bits of
    the M2 bytes before the ``r1``-th; ``m2``: the ``r1``-th M2 byte (read only when the
    voxel's octant is split).
    """
    c1 = ((a >> 2) & 1) * 4 + ((b >> 2) & 1) * 2 + ((e >> 2) & 1)
    c2 = ((a >> 1) & 1) * 4 + ((b >> 1) & 1) * 2 + ((e >> 1) & 1)
    c3 = (a & 1) * 4 + (b & 1) * 2 + (e & 1)
    if (m1 >> c1) & 1 == 0:
        return popc(~m1 & ((1 << c1) - 1) & 0xFF)
    if (m2 >> c2) & 1 == 0:
        return (8 - p1) + (8 * r1 - before) + popc(~m2 & ((1 << c2) - 1) & 0xFF)
    return (8 - p1) + (8 * p1 - big) + 8 * (before + popc(m2 & ((1 << c2) - 1))) + c3


@_shared
def octant_rank(m1: int, a: int, b: int, e: int) -> int:
    """Set bits of ``m1`` below the octant of voxel (a, b, e)."""
    c1 = ((a >> 2) & 1) * 4 + ((b >> 2) & 1) * 2 + ((e >> 2) & 1)
    return popc(m1 & ((1 << c1) - 1))


@_shared
def local_entry(rec: Any, p: int, wg: int, zf: int, m: int, li: int) -> int:
    """Palette index of local value ``li`` of the record at byte ``p`` with flags ``zf``
    and ``m`` entries. A damaged record reads as every decoder reads it: ``li`` clamped
    to the local palette and to its first 512 entries (an intact one has at most 512),
    0 for an empty local palette."""
    if zf + m == 0:
        return 0
    li = min(li, min(zf + m, 512) - 1)
    if zf == 1:
        if li == 0:
            return 0
        li -= 1
    return get_bits8(rec, ((p + (3 if (get_u8(rec, p) >> 4) == 15 else 1)) << 3) + li * wg, wg)


@_shared
def record_voxel(rec: Any, p: int, wg: int, a: int, b: int, e: int) -> int:
    """Palette index of voxel (a, b, e) (z, y, x mod 8) of the record at byte ``p``."""
    w, zf, m, q = record_head(rec, p, wg)
    m1 = get_u8(rec, q)
    p1 = popc(m1)
    r1 = octant_rank(m1, a, b, e)
    big = 0  # set bits of all M2 bytes, and of those before the r1-th
    before = 0
    for t in range(p1):
        pc = popc(get_u8(rec, q + 1 + t))
        big += pc
        if t < r1:
            before += pc
    j = value_slot(m1, p1, big, r1, before, get_u8(rec, q + 1 + r1), a, b, e)
    li = get_bits8(rec, ((q + 1 + p1) << 3) + j * w, w)
    return local_entry(rec, p, wg, zf, m, li)


@_shared
def oct_voxel(z: int, y: int, x: int, u: int, ty: int, tx: int, nt: int, nn: int,
              sup: int, split: Any, split_rank: Any, other: Any, other_rank: Any,
              values: Any, wg: int, rec_base: Any, rec: Any) -> int:
    """Palette index of voxel (z, y, x): the whole per-voxel decode (GPU threads)."""
    iz, iy, ix = z >> 3, y >> 3, x >> 3
    i, _ = find_node(iz, iy, ix, u, ty, tx, nt, nn, split, split_rank)
    if bit_at(split, i) == 0:
        return node_value(i, other, other_rank, values, wg)
    p = record_start(rank_at(split, split_rank, i) - sup, rec_base, rec, wg)
    return record_voxel(rec, p, wg, z & 7, y & 7, x & 7)


# --------------------------------------------------------------------------- encoder
@_par
def brick_minmax(idx: Any, gz: int, gy: int, gx: int, mn: Any, mx: Any) -> None:
    """Smallest and largest palette index of every brick (its voxels inside the volume)."""
    nz, ny, nx = idx.shape
    for b in prange(gz * gy * gx):
        iz = b // (gy * gx)
        iy = (b // gx) % gy
        ix = b % gx
        lo = np.int64(idx[iz * 8, iy * 8, ix * 8])
        hi = lo
        for z in range(iz * 8, min(iz * 8 + 8, nz)):
            for y in range(iy * 8, min(iy * 8 + 8, ny)):
                for x in range(ix * 8, min(ix * 8 + 8, nx)):
                    v = np.int64(idx[z, y, x])
                    lo = min(lo, v)
                    hi = max(hi, v)
        mn[b] = lo
        mx[b] = hi


@_plain
def put_bits8(buf: Any, pos: int, v: int, w: int) -> None:
    """OR the ``w``-bit value ``v`` into a byte bit stream at bit ``pos`` (buffer zeroed)."""
    v = v << (pos & 7)
    k = pos >> 3
    while v:
        buf[k] |= np.uint8(v & 0xFF)
        v >>= 8
        k += 1


@_plain
def encode_brick(idx: Any, iz: int, iy: int, ix: int, wg: int, out: Any, pos: int,
                 write: bool) -> int:
    """Encode the record of brick (iz, iy, ix) at byte ``pos`` of ``out`` (when ``write``);
    return its length in bytes. Voxels outside the volume repeat the nearest inside one."""
    nz, ny, nx = idx.shape
    vals = np.empty(512, np.int64)
    for mo in range(512):
        c = MORTON_ZYX[mo]
        z = min(iz * 8 + (c >> 6), nz - 1)
        y = min(iy * 8 + ((c >> 3) & 7), ny - 1)
        x = min(ix * 8 + (c & 7), nx - 1)
        vals[mo] = idx[z, y, x]
    table = np.unique(vals)
    nl = table.shape[0]
    zf = 1 if table[0] == 0 else 0
    m = nl - zf
    lw = 0
    while (1 << (1 << lw)) < nl:
        lw += 1
    w = 1 << lw
    li = np.searchsorted(table, vals)
    m1 = 0
    m2 = np.zeros(8, np.int64)
    for c1 in range(8):
        s = c1 * 64
        same = True
        for t in range(1, 64):
            if li[s + t] != li[s]:
                same = False
                break
        if not same:
            m1 |= 1 << c1
            for c2 in range(8):
                s2 = s + c2 * 8
                for t in range(1, 8):
                    if li[s2 + t] != li[s2]:
                        m2[c1] |= 1 << c2
                        break
    p1 = 0
    p2 = 0
    for c1 in range(8):
        if (m1 >> c1) & 1:
            p1 += 1
            p2 += popc(m2[c1])
    nv = (8 - p1) + (8 * p1 - p2) + 8 * p2
    head = 1 if m < 15 else 3
    tbytes = (m * wg + 7) >> 3
    size = head + tbytes + 1 + p1 + ((nv * w + 7) >> 3)
    if not write:
        return size
    out[pos] = np.uint8(lw | (zf << 3) | (min(m, 15) << 4))
    if m >= 15:
        out[pos + 1] = np.uint8(m & 0xFF)
        out[pos + 2] = np.uint8(m >> 8)
    t0 = (pos + head) << 3
    for q in range(m):
        put_bits8(out, t0 + q * wg, table[zf + q], wg)
    q = pos + head + tbytes
    out[q] = np.uint8(m1)
    k = q + 1
    for c1 in range(8):
        if (m1 >> c1) & 1:
            out[k] = np.uint8(m2[c1])
            k += 1
    vb = k << 3
    j = 0
    for c1 in range(8):  # uniform 4^3 cells
        if (m1 >> c1) & 1 == 0:
            put_bits8(out, vb + j * w, li[c1 * 64], w)
            j += 1
    for c1 in range(8):  # uniform 2^3 cells of the mixed 4^3 cells
        if (m1 >> c1) & 1:
            for c2 in range(8):
                if (m2[c1] >> c2) & 1 == 0:
                    put_bits8(out, vb + j * w, li[c1 * 64 + c2 * 8], w)
                    j += 1
    for c1 in range(8):  # voxels of the mixed 2^3 cells
        if (m1 >> c1) & 1:
            for c2 in range(8):
                if (m2[c1] >> c2) & 1:
                    for c3 in range(8):
                        put_bits8(out, vb + j * w, li[c1 * 64 + c2 * 8 + c3], w)
                        j += 1
    return size


@_par
def record_sizes(idx: Any, bricks: Any, wg: int, sizes: Any) -> None:
    dummy = np.zeros(1, np.uint8)
    for r in prange(bricks.shape[0]):
        sizes[r] = encode_brick(idx, bricks[r, 0], bricks[r, 1], bricks[r, 2], wg, dummy,
                                0, False)


@_par
def write_records(idx: Any, bricks: Any, wg: int, offsets: Any, out: Any) -> None:
    for r in prange(bricks.shape[0]):
        encode_brick(idx, bricks[r, 0], bricks[r, 1], bricks[r, 2], wg, out, offsets[r],
                     True)


@_plain
def check_tree(sw: Any, sr: Any, ow: Any, orank: Any, values: Any, nn: int, nup: int,
               sup: int, nr: int, no: int, wg: int, npal: int, rec_base: Any, rb: int
               ) -> int:
    """0 when the bit sets and the record groups' starts ``rec_base`` (increasing, the
    last one ``rb``, the records' length) hold together, else the code of the first
    problem (see ``ng5d_octree._TREE_ERRORS``)."""
    ng = rec_base.shape[0]
    if ng == 0 or np.int64(rec_base[ng - 1]) != rb:
        return 6
    for g in range(1, ng):
        if rec_base[g] < rec_base[g - 1]:
            return 6
    nw = sw.shape[0]
    s_up = 0
    s_low = 0
    o_all = 0
    for k in range(nw):
        ws = sw[k]
        wo = ow[k] if no else np.uint64(0)
        if ws & wo:
            return 1
        lo = 64 * k
        if lo + 64 > nn:  # the last word: nothing past node nn - 1
            keep = np.uint64(0) if nn <= lo else (np.uint64(1) << np.uint64(nn - lo)) - \
                np.uint64(1)
            if (ws | wo) & ~keep:
                return 1
        if np.int64(sr[k]) != s_up + s_low:
            return 2
        if no and np.int64(orank[k]) != o_all:
            return 3
        # split bits of upper nodes (numbers below nup) and of level-0 ones (the bits past
        # node nn - 1 are zero: checked above)
        up = ws if lo + 64 <= nup else (np.uint64(0) if lo >= nup else
                                        ws & ((np.uint64(1) << np.uint64(nup - lo))
                                              - np.uint64(1)))
        n_up = popc(np.int64(up & np.uint64(0xFFFFFFFF))) + popc(np.int64(up >> np.uint64(32)))
        s_up += n_up
        s_low += popc(np.int64(ws & np.uint64(0xFFFFFFFF))) + \
            popc(np.int64(ws >> np.uint64(32))) - n_up
        o_all += popc(np.int64(wo & np.uint64(0xFFFFFFFF))) + popc(np.int64(wo >> np.uint64(32)))
    if s_up != sup or s_low != nr or o_all != no:
        return 4
    for j in range(no):
        if get_bits8(values, j * wg, wg) >= npal:
            return 5
    return 0


@_plain
def check_records(rec: Any, rec_base: Any, nr: int, wg: int) -> int:
    """-1 if every record group ends where the next begins and no record reaches past the
    records, else the first record that does not fit. ``rec`` is the records and 8 more
    bytes (as parsed); a record is read as :func:`record_len` reads it, without its
    clamps: a field that would lie past the records is itself a misfit."""
    n = U64(rec.shape[0])
    rb = np.int64(rec_base[rec_base.shape[0] - 1])
    for g in range(rec_base.shape[0] - 1):
        p = np.int64(rec_base[g])
        for r in range(g * 8, min(nr, g * 8 + 8)):
            if p >= rb:  # (a record has at least 2 bytes)
                return r
            up = U64(p)
            b0 = np.int64(rec[up])
            m = b0 >> 4
            q = up + U64(1)
            if m == 15:
                m = np.int64(rec[q]) | (np.int64(rec[q + U64(1)]) << 8)
                q += U64(2)
            q += U64((m * wg + 7) >> 3)
            if q + U64(9) > n:  # its m1 and up to 8 M2 bytes past the records
                return r
            m1 = np.int64(rec[q])
            p1 = popc(m1)
            p2 = 0
            for t in range(p1):
                p2 += popc(np.int64(rec[q + U64(1 + t)]))
            nv = (8 - p1) + (8 * p1 - p2) + 8 * p2
            w = np.int64(1) << min(b0 & 7, 4)
            p = np.int64(q) + 1 + p1 + ((nv * w + 7) >> 3)
            if p > rb:
                return r
        if p != np.int64(rec_base[g + 1]):
            return g * 8
    return -1


# --------------------------------------------------------------------------- CPU decoder
@_plain
def fill4(out: Any, c: Any, sz: Any, sy: Any, v: Any) -> None:
    """Set the 4³ cube with corner ``c`` of a flat array (strides ``sz``, ``sy``) to ``v``."""
    for z in range(4):
        for y in range(4):
            r = c + U64(z) * sz + U64(y) * sy
            for x in range(4):
                out[r + U64(x)] = v


@_plain
def fill2(out: Any, c: Any, sz: Any, sy: Any, v: Any) -> None:
    """Set the 2³ cube with corner ``c`` of a flat array to ``v``."""
    for z in range(2):
        for y in range(2):
            r = c + U64(z) * sz + U64(y) * sy
            out[r] = v
            out[r + U64(1)] = v


@_plain
def read_fast(rec: Any, pos: int, w: int) -> int:
    """``w``-bit entry at bit ``pos`` (w <= 16) without clamping: the caller has checked
    that the record, and 8 bytes after it, lie inside the buffer."""
    k = U64(pos >> 3)
    x = np.int64(rec[k]) | (np.int64(rec[k + U64(1)]) << 8) | (np.int64(rec[k + U64(2)]) << 16)
    return (x >> (pos & 7)) & ((np.int64(1) << w) - 1)


@_plain
def expand_record(rec: Any, p: int, end: int, wg: int, palette: Any, out: Any, corner: Any,
                  sz: Any, sy: Any, vals: Any) -> None:
    """The values of a mixed brick (record at bytes ``p .. end - 1``) into the flat array
    ``out``: voxel (z, y, x) of the brick goes to ``corner + z·sz + y·sy + x`` (all
    uint64); ``vals`` is scratch for its local table's values. A record whose
    fields would run past its end is read with clamped reads (damaged: wrong values, but
    no read outside the buffer)."""
    npal = palette.shape[0]
    w, zf, m, q = record_head(rec, p, wg)
    nl = min(zf + m, vals.shape[0])
    t0 = (p + (3 if (get_u8(rec, p) >> 4) == 15 else 1)) << 3
    if zf:
        vals[0] = palette[0]
    for t in range(zf, nl):
        vals[t] = palette[U64(min(get_bits8(rec, t0 + (t - zf) * wg, wg), npal - 1))]
    if nl == 0:
        nl = 1
        vals[0] = palette[0]
    m1 = get_u8(rec, q)
    p1 = popc(m1)
    m2s = np.int64(0)  # the M2 bytes, first in the lowest byte
    p2 = 0
    for t in range(p1):
        b = get_u8(rec, q + 1 + t)
        m2s |= b << (8 * t)
        p2 += popc(b)
    vb = (q + 1 + p1) << 3
    nv = (8 - p1) + (8 * p1 - p2) + 8 * p2
    fast = end <= rec.shape[0] - 8 and (vb + nv * w + 7) >> 3 <= end and w <= 16
    top = nl - 1
    j = 0
    for c1 in range(8):
        if (m1 >> c1) & 1 == 0:
            li = read_fast(rec, vb + j * w, w) if fast else get_bits8(rec, vb + j * w, w)
            j += 1
            fill4(out, corner + U64((c1 >> 2) * 4) * sz + U64(((c1 >> 1) & 1) * 4) * sy
                  + U64((c1 & 1) * 4), sz, sy, vals[U64(min(li, top))])
    k = 0
    for c1 in range(8):
        if (m1 >> c1) & 1:
            m2 = (m2s >> (8 * k)) & 0xFF
            k += 1
            for c2 in range(8):
                if (m2 >> c2) & 1 == 0:
                    li = read_fast(rec, vb + j * w, w) if fast else get_bits8(rec, vb + j * w, w)
                    j += 1
                    fill2(out, corner + U64((c1 >> 2) * 4 + (c2 >> 2) * 2) * sz
                          + U64(((c1 >> 1) & 1) * 4 + ((c2 >> 1) & 1) * 2) * sy
                          + U64((c1 & 1) * 4 + (c2 & 1) * 2), sz, sy, vals[U64(min(li, top))])
    k = 0
    mask = (np.int64(1) << w) - 1
    for c1 in range(8):
        if (m1 >> c1) & 1:
            m2 = (m2s >> (8 * k)) & 0xFF
            k += 1
            for c2 in range(8):
                if (m2 >> c2) & 1:
                    r0 = (corner + U64((c1 >> 2) * 4 + (c2 >> 2) * 2) * sz
                          + U64(((c1 >> 1) & 1) * 4 + ((c2 >> 1) & 1) * 2) * sy
                          + U64((c1 & 1) * 4 + (c2 & 1) * 2))
                    pos = vb + j * w
                    if fast and w <= 4:  # 8 entries: w + 1 bytes from pos
                        kk = U64(pos >> 3)
                        bits = np.int64(rec[kk])
                        for d in range(1, w + 1):
                            bits |= np.int64(rec[kk + U64(d)]) << (8 * d)
                        bits >>= pos & 7
                        for c3 in range(8):
                            out[r0 + U64(c3 >> 2) * sz + U64((c3 >> 1) & 1) * sy
                                + U64(c3 & 1)] = vals[U64(min(bits & mask, top))]
                            bits >>= w
                    else:
                        for c3 in range(8):
                            out[r0 + U64(c3 >> 2) * sz + U64((c3 >> 1) & 1) * sy
                                + U64(c3 & 1)] = vals[U64(min(get_bits8(rec, pos + c3 * w, w),
                                                              top))]
                    j += 8


@_plain
def row_refs(iz: int, iy: int, bx0: int, nbx: int, u: int, ty: int, tx: int, nt: int,
             nn: int, sup: int, split: Any, split_rank: Any, other: Any, other_rank: Any,
             values: Any, wg: int, rec_base: Any, npal: int,
             path: Any, base: Any, refs: Any) -> None:
    """What each brick of a row (along x) holds: ``refs[j] >= 0`` the palette index of a
    uniform brick, ``-1 - refs[j]`` the number of a mixed brick's record.

    Neighbouring bricks share their ancestors: a brick re-descends only from the highest
    level at which its position differs from the previous brick's, and a brick inside the
    same uniform node as the previous one costs nothing (``path[k]``: node at level k,
    ``base[k]``: its first child)."""
    stop = u + 1  # level at which the previous descent ended (none yet)
    prev = np.int64(-1)
    for j in range(nbx):
        ix = bx0 + j
        h = u
        if j > 0:
            h = 0
            while h < u and (ix >> (h + 1)) != ((ix - 1) >> (h + 1)):
                h += 1
            if (ix >> u) != ((ix - 1) >> u):
                h = u
            if h < stop and stop <= u:  # still inside the previous uniform node
                refs[j] = prev
                continue
        if h == u:
            i = min(((iz >> u) * ty + (iy >> u)) * tx + (ix >> u), nn - 1)
        else:
            c = ((iz >> h) & 1) * 4 + ((iy >> h) & 1) * 2 + ((ix >> h) & 1)
            i = min(base[h + 1] + c, nn - 1)
        k = h
        while True:
            path[k] = i
            if bit_at(split, i) == 0:
                prev = min(node_value(i, other, other_rank, values, wg), npal - 1)
                stop = k
                break
            r = rank_at(split, split_rank, i)
            if k == 0:
                prev = -1 - (r - sup)
                stop = 0
                break
            base[k] = nt + 8 * r
            k -= 1
            c = ((iz >> k) & 1) * 4 + ((iy >> k) & 1) * 2 + ((ix >> k) & 1)
            i = min(base[k + 1] + c, nn - 1)
        refs[j] = prev


@_plain
def oct_decode(out: Any, z0: int, y0: int, x0: int, u: int, ty: int, tx: int, nt: int,
               nn: int, sup: int, split: Any, split_rank: Any, other: Any, other_rank: Any,
               values: Any, wg: int, rec_base: Any, rec: Any, palette: Any,
               j0: int, j1: int) -> None:
    """Decode the rows of bricks (along x) ``j0 .. j1 - 1`` among those covering a region
    into ``out`` (C-contiguous): runs of uniform bricks along x with the same value become
    row fills, a mixed brick's record is expanded into local indices and mapped through its
    table. Single-threaded, without the GIL (the caller runs ranges of rows on threads)."""
    oz, oy, ox = out.shape
    npal = palette.shape[0]
    flat = out.reshape(-1)
    bz0, by0, bx0 = z0 >> 3, y0 >> 3, x0 >> 3
    nby = ((y0 + oy - 1) >> 3) - by0 + 1
    nbx = ((x0 + ox - 1) >> 3) - bx0 + 1
    nbz = ((z0 + oz - 1) >> 3) - bz0 + 1
    brick = np.empty(512, palette.dtype)
    vals = np.empty(512, palette.dtype)
    path = np.zeros(u + 2, np.int64)
    base = np.zeros(u + 2, np.int64)
    refs = np.empty(nbx, np.int64)
    for j in range(j0, min(j1, nbz * nby)):
        iz = bz0 + j // nby
        iy = by0 + j % nby
        za, zb = max(iz * 8, z0), min(iz * 8 + 8, z0 + oz)
        ya, yb = max(iy * 8, y0), min(iy * 8 + 8, y0 + oy)
        row_refs(iz, iy, bx0, nbx, u, ty, tx, nt, nn, sup, split, split_rank, other,
                 other_rank, values, wg, rec_base, npal, path, base, refs)
        jx = 0
        while jx < nbx:
            ix = bx0 + jx
            ref = refs[jx]
            xa = max(ix * 8, x0)
            if ref >= 0:  # uniform: one fill over the following bricks of this value
                jy = jx + 1
                while jy < nbx and refs[jy] == ref:
                    jy += 1
                xb = min((bx0 + jy) * 8, x0 + ox)
                fill_box(flat, z0, y0, x0, oy, ox, za, zb, ya, yb, xa, xb,
                         palette[U64(ref)])
                jx = jy
                continue
            jx += 1
            xb = min(ix * 8 + 8, x0 + ox)
            p0 = record_start(-1 - ref, rec_base, rec, wg)
            p1 = p0 + record_len(rec, p0, wg)
            if zb - za == 8 and yb - ya == 8 and xb - xa == 8:  # whole brick: straight out
                corner = U64(((za - z0) * oy + (ya - y0)) * ox + (xa - x0))
                expand_record(rec, p0, p1, wg, palette, flat, corner, U64(oy * ox), U64(ox),
                              vals)
                continue
            expand_record(rec, p0, p1, wg, palette, brick, U64(0), U64(64), U64(8), vals)
            for z in range(za, zb):
                for y in range(ya, yb):
                    rs = ((z - z0) * oy + (y - y0)) * ox - x0
                    rb = ((z - iz * 8) * 8 + (y - iy * 8)) * 8 - ix * 8
                    for x in range(xa, xb):
                        flat[U64(rs + x)] = brick[U64(rb + x)]


@_par
def oct_decode_par(out: Any, z0: int, y0: int, x0: int, u: int, ty: int, tx: int, nt: int,
                   nn: int, sup: int, split: Any, split_rank: Any, other: Any,
                   other_rank: Any, values: Any, wg: int, rec_base: Any, rec: Any,
                   palette: Any, n: int, chunk: int, threads: int) -> None:
    """:func:`oct_decode` of rows ``0 .. n - 1`` in chunks on numba's threads (every
    thread takes every ``threads``-th chunk, like ``bp_decode_par``)."""
    for k in prange(interleaved_len(n, chunk, threads)):
        j0, j1 = interleaved_chunk(k, n, chunk, threads)
        if j1 > j0:
            oct_decode(out, z0, y0, x0, u, ty, tx, nt, nn, sup, split, split_rank, other,
                       other_rank, values, wg, rec_base, rec, palette, j0, j1)
