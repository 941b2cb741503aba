"""numba kernels of the ``.ng5d`` codecs (imported only when encoding or decoding).

The per-voxel functions (``bp_voxel``, ``pal_voxel``) are plain functions of a brick's
header fields and the data words, which the CUDA kernels in
:mod:`neuroglia5d.io.ng5d_gpu` run one voxel per thread. The CPU decoders here decode
whole bricks sequentially instead (bit readers, byte copies, row fills: several times
faster than voxel by voxel), single-threaded and without the GIL over a range of bricks;
the ``*_par`` loops at the end run such ranges on numba's threads, and
:func:`neuroglia5d.io.ng5d_codec.run_kernel` picks one or the other. The tests check that
every path gives the same output. Array indices in their loops are unsigned
(``U64``), which spares numba's negative-index test on every access.
"""


from __future__ import annotations

import sys
from typing import Any

import numba
import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.core.extending import intrinsic, overload, register_jitable

_plain = numba.njit(cache=True, nogil=True)
_par = numba.njit(cache=True, nogil=True, parallel=True)
#: functions shared by the CPU kernels and the CUDA kernels (inlined in both targets)
_shared = register_jitable


@_plain
def bitlen(v: int) -> int:
    n = 0
    while v:
        v >>= 1
        n += 1
    return n

@_plain
def put_bits(data: Any, pos: int, v: int, w: int) -> None:
    # all int64: values are at most 32 bits wide
    k = pos >> 5
    s = pos & 31
    data[k] |= np.uint32((v << s) & 0xFFFFFFFF)
    if s + w > 32:
        data[k + 1] |= np.uint32(v >> (32 - s))

@_shared
def bits_window(data: Any, pos: int) -> int:
    """The (at least 33) bits of the u32 words ``data`` from bit ``pos`` on, lowest first:
    one value of up to 32 bits, or two of up to 16."""
    # clamped: a damaged file can give garbage but never a read outside the data
    k = min(pos >> 5, data.shape[0] - 2)
    return (np.int64(data[k]) | (np.int64(data[k + 1]) << 32)) >> (pos & 31)


@_shared
def get_bits(data: Any, pos: int, w: int) -> int:
    return bits_window(data, pos) & ((np.int64(1) << w) - 1)

@_shared
def read_bits_u(data: Any, p: Any, mask: Any) -> Any:
    """The bits ``mask`` (2^w − 1, w ≤ 32) of the u32 words ``data`` from bit ``p`` on,
    all unsigned (``U64``) and unclamped: for loops whose extents were checked."""
    k = p >> U64(5)
    return ((U64(data[k]) | (U64(data[k + U64(1)]) << U64(32))) >> (p & U64(31))) & mask


@_shared
def pos_bits(nmask: int) -> int:
    """Width of an exception position in a patched brick: enough for 32·nmask voxels."""
    v = 32 * nmask - 1
    n = 0
    while v:
        v >>= 1
        n += 1
    return max(n, 1)


@_shared
def region_voxel(i: int, z0: int, y0: int, x0: int, oy: int, ox: int
                 ) -> tuple[int, int, int]:
    """Volume coordinates of flat index ``i`` of a (·, oy, ox) region at (z0, y0, x0)."""
    return z0 + i // (oy * ox), y0 + (i // ox) % oy, x0 + i % ox


@_shared
def locate(z: int, y: int, x: int, gy: int, gx: int, bz: int, by: int, bx: int
           ) -> tuple[int, int]:
    """Brick number and index within the brick of voxel (z, y, x)."""
    iz, iy, ix = z // bz, y // by, x // bx
    return ((iz * gy + iy) * gx + ix,
            ((z - iz * bz) * by + (y - iy * by)) * bx + (x - ix * bx))


@_plain
def brick_range(z0: int, y0: int, x0: int, oz: int, oy: int, ox: int, bz: int, by: int,
                bx: int) -> tuple[int, int, int, int, int, int]:
    """First brick (z, y, x) and brick counts covering a region."""
    bz0, by0, bx0 = z0 // bz, y0 // by, x0 // bx
    return (bz0, by0, bx0, (z0 + oz - 1) // bz - bz0 + 1, (y0 + oy - 1) // by - by0 + 1,
            (x0 + ox - 1) // bx - bx0 + 1)


@intrinsic
def cttz(typingctx: Any, x: Any) -> Any:
    """Count of trailing zero bits of a non-zero uint64 (LLVM ``cttz``; CPU kernels only)."""
    sig = types.uint64(types.uint64)

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        return builder.cttz(args[0], ir.Constant(ir.IntType(1), 1))

    return sig, codegen


@_plain
def fill_box(flat: Any, z0: int, y0: int, x0: int, oy: int, ox: int, za: int, zb: int,
             ya: int, yb: int, xa: int, xb: int, val: Any) -> None:
    """Set voxels [za, zb) × [ya, yb) × [xa, xb) of a C-contiguous (·, oy, ox) output whose
    corner is voxel (z0, y0, x0) to ``val`` (row by row)."""
    for z in range(za, zb):
        for y in range(ya, yb):
            rs = U64(((z - z0) * oy + (y - y0)) * ox + xa - x0)
            for x in range(xb - xa):
                flat[rs + U64(x)] = val


@_plain
def flat_offsets(bz: int, by: int, bx: int, oy: int, ox: int) -> Any:
    """Offset of every brick voxel (C order) from the brick's corner in a C-contiguous
    (·, oy, ox) output, so whole bricks are written through one flat view."""
    lin = np.empty(bz * by * bx, np.int64)
    for z in range(bz):
        for y in range(by):
            for x in range(bx):
                lin[(z * by + y) * bx + x] = (z * oy + y) * ox + x
    return lin


def popc(x: int) -> int:
    """Set bits among the low 32 bits of ``x``. In compiled code (CPU and CUDA) the LLVM
    ``ctpop`` instruction (one ``popcnt`` / ``popc.b64``); this Python body runs under
    numba's CUDA simulator."""
    return bin(int(x) & 0xFFFFFFFF).count("1")


@intrinsic
def _ctpop32(typingctx: Any, x: Any) -> Any:
    sig = types.int64(types.int64)

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        return builder.ctpop(builder.and_(args[0], ir.Constant(ir.IntType(64), 0xFFFFFFFF)))

    return sig, codegen


@overload(popc, target="generic", inline="always")
def _popc_compiled(x: Any) -> Any:
    def impl(x: Any) -> int:  # pragma: no cover - compiled
        return _ctpop32(np.int64(x))

    return impl


# ---------------- bitpack
@_plain
def best_low_width(vals: Any, lo: int, w: int, skip: int, slots: int, head: int, best: int,
                   pw: int) -> tuple[int, int]:
    """(low width, exception count) of the fewest words for values ``vals - lo - skip``
    (``skip`` = 1: only the values above ``lo``, stored less one) at a low width w - 5 ..
    w - 1 with up to 255 exceptions (values >= the escape code 2^w2 - 1, stored at ``w``
    bits with a ``pw``-bit position each), ``slots`` low values and ``head`` header words;
    (0, 0) unless it takes fewer than ``best`` words."""
    cnt = np.zeros(6, np.int64)
    if w >= 2:
        for i in range(vals.shape[0]):
            d = vals[i] - lo
            if skip and d == 0:
                continue
            for t in range(1, 6):
                if d - skip >= (np.int64(1) << max(w - t, 1)) - 1:
                    cnt[t] += 1
    best_w = 0
    best_n = 0
    for t in range(1, 6):
        w2 = w - t
        if w2 < 1:
            break
        if cnt[t] > 255:
            continue
        words = head + (cnt[t] * pw + 31) // 32 + (slots * w2 + 31) // 32 \
            + (cnt[t] * w + 31) // 32
        if words < best:
            best, best_w, best_n = words, w2, cnt[t]
    return best_w, best_n


@_par
def bp_stats(u: Any, grid: Any, brick: Any, mins: Any, widths: Any, widths_sparse: Any,
             nnz: Any, pwidth: Any, pcount: Any, spwidth: Any, spcount: Any) -> None:
    """Per brick: minimum, width, sparse width (of the stored d - 1), count of voxels above
    the minimum, and the best low width and exception count of the ``patched`` and
    ``sparse patched`` modes (width 0: the mode does not pay)."""
    gz, gy, gx = grid[0], grid[1], grid[2]
    bz, by, bx = brick[0], brick[1], brick[2]
    n = bz * by * bx
    nmask = (n + 31) // 32
    pw = pos_bits(nmask)
    for b in prange(gz * gy * gx):
        vals = np.empty(n, np.int64)
        gather_brick(u, b // (gy * gx), (b // gx) % gy, b % gx, bz, by, bx, vals)
        lo = vals.min()
        hi = vals.max()
        c = 0
        for i in range(n):
            if vals[i] != lo:
                c += 1
        mins[b] = lo
        w = bitlen(hi - lo)
        widths[b] = w
        # sparse mode stores d - 1 (every stored d is >= 1)
        widths_sparse[b] = bitlen(hi - lo - 1) if hi > lo else 0
        nnz[b] = c
        # patched mode: the fewest words over low widths w - 5 .. w - 1 (at most 255
        # exceptions: values >= the escape code 2^w2 - 1, stored at w bits); the low
        # values fill nmask * w2 words
        best_w, best_n = best_low_width(vals, lo, w, 0, 32 * nmask, 1, np.int64(nmask) * w + 1,
                                        pw)
        pwidth[b] = best_w
        pcount[b] = best_n
        # sparse patched: the stored d - 1 at a low width, those >= its escape code apart
        # (the layout's fixed words are the same as a sparse brick's plus one header word,
        # so it must save more than that word)
        ws = widths_sparse[b]
        best_w, best_n = best_low_width(vals, lo, ws, 1, c, 0, (c * ws + 31) // 32 - 1, pw)
        spwidth[b] = best_w
        spcount[b] = best_n


@_shared
def packed_prefix_words(npre: int, pw: int) -> int:
    """Words of the packed prefix counts of a ``sparse`` (mode 4) brick: the counts of
    groups 1 .. npre - 1 (group 0's is always 0) at ``pw`` bits each."""
    return ((npre - 1) * pw + 31) >> 5


@_par
def bp_pack(u: Any, grid: Any, brick: Any, modes: Any, widths: Any, bases: Any,
            offsets: Any, data: Any) -> None:
    """Write every brick's data at its offset (``data`` zeroed, the header words of the
    patched, sparse patched and list bricks already written)."""
    gz, gy, gx = grid[0], grid[1], grid[2]
    bz, by, bx = brick[0], brick[1], brick[2]
    n = bz * by * bx
    nmask = (n + 31) // 32
    npre = (nmask + 7) // 8
    pw = pos_bits(nmask)
    for b in prange(gz * gy * gx):
        mode = modes[b]
        if mode == 0:
            continue
        vals = np.empty(n, np.int64)
        gather_brick(u, b // (gy * gx), (b // gx) % gy, b % gx, bz, by, bx, vals)
        w = np.int64(widths[b])
        base = np.int64(bases[b])
        off = np.int64(offsets[b])
        if mode == 1:
            for i in range(n):
                put_bits(data, (off << 5) + i * w, vals[i] - base, w)
        elif mode == 3:  # header word, exception positions, low values, exception values
            hdr = np.int64(data[off])
            we, ne = hdr & 0xFF, (hdr >> 8) & 0xFF
            ppos = (off + 1) << 5
            start = (off + 1 + ((ne * pw + 31) >> 5)) << 5
            vstart = start + ((nmask * w) << 5)
            esc = (np.int64(1) << w) - 1
            r = 0
            for i in range(n):
                d = vals[i] - base
                if d >= esc:
                    put_bits(data, start + i * w, esc, w)
                    put_bits(data, vstart + r * we, d, we)
                    put_bits(data, ppos + r * pw, i, pw)
                    r += 1
                else:
                    put_bits(data, start + i * w, d, w)
        elif mode == 6:  # header word, positions, values
            c = np.int64(data[off]) & 0xFFFF
            vstart = (off + 1 + ((c * pw + 31) >> 5)) << 5
            r = 0
            for i in range(n):
                d = vals[i] - base
                if d != 0:
                    put_bits(data, ((off + 1) << 5) + r * pw, i, pw)
                    put_bits(data, vstart + r * w, d - 1, w)
                    r += 1
        else:  # sparse (2: prefix words; 4: packed prefixes; 5: and exceptions)
            mm, q0, pp, xp, vstart, we, _ = bp_masked_layout(mode, off, nmask, npre, pw,
                                                             data)
            esc = (np.int64(1) << w) - 1
            r = 0
            e = 0
            for i in range(n):
                d = vals[i] - base
                if d != 0:
                    data[mm + (i >> 5)] |= np.uint32(np.int64(1) << (i & 31))
                    if mode == 5 and d - 1 >= esc:
                        put_bits(data, vstart + r * w, esc, w)
                        put_bits(data, pp + e * pw, r, pw)
                        put_bits(data, xp + e * we, d - 1, we)
                        e += 1
                    else:
                        put_bits(data, vstart + r * w, d - 1, w)
                    r += 1
            acc = 0  # set mask bits before every 8th mask word
            for k in range(nmask):
                if k % 8 == 0:
                    if mode == 2:
                        data[q0 + k // 8] = np.uint32(acc)
                    elif k > 0:
                        put_bits(data, (q0 << 5) + (k // 8 - 1) * pw, acc, pw)
                acc += popc(np.int64(data[mm + k]))

@_plain
def bp_check_heads(modes: Any, widths: Any, offsets: Any, nw: int, n: int
                   ) -> tuple[int, int]:
    """(code, brick) of the first brick whose header does not fit a block of ``nw`` data
    words, bricks of ``n`` voxels: 1 unknown mode, 2 wider than 32 bits, 3 dense data,
    4 sparse mask and prefixes, 5 patched low values, 6 a list brick's header word past
    the end; (0, 0) if all fit."""
    nmask = (n + 31) // 32
    npre = (nmask + 7) // 8
    nq = packed_prefix_words(npre, pos_bits(nmask))
    last = nw - 1
    for b in range(modes.shape[0]):
        m = np.int64(modes[b])
        w = np.int64(widths[b])
        off = np.int64(offsets[b])
        if m > 6:
            return 1, b
        if w > 32:
            return 2, b
        if m == 1 and off + (n * w + 31) // 32 > last:
            return 3, b
        if (m == 2 and off + nmask + npre > last) or (m == 4 and off + nmask + nq > last) \
                or (m == 5 and off + 1 + nmask + nq > last):
            return 4, b
        if m == 3 and off + 1 + nmask * w > last:
            return 5, b
        if m == 6 and off + 1 > last:
            return 6, b
    return 0, 0


@_plain
def bp_check_sparse(modes: Any, widths: Any, offsets: Any, data: Any, n: int, bad: Any,
                    j0: int, j1: int) -> None:
    """Flag every brick of ``[j0, j1)`` whose data does not fit (``bad[b]``, which starts
    at 0, gets the code of :func:`bp_check_data`). Called over ranges of bricks on the
    decoders' thread pool (a ``prange`` here left numba's OpenMP threads spinning through
    the decode that follows a parse, which then ran 30-50 % slower on two cores)."""
    nmask = (n + 31) // 32
    npre = (nmask + 7) // 8
    pw = pos_bits(nmask)
    nq = packed_prefix_words(npre, pw)
    for b in range(j0, j1):
        bad[b] = bp_check_data(np.int64(modes[b]), np.int64(widths[b]),
                               np.int64(offsets[b]), data, n, nmask, npre, nq, pw)


@_plain
def bp_check_data(m: int, w: int, off: int, data: Any, n: int, nmask: int, npre: int,
                  nq: int, pw: int) -> int:
    """0 if the data of a brick of mode ``m`` fits the block and holds together, else
    what does not: a sparse brick's mask (1), prefix counts (2) or values (3); a patched
    or sparse patched brick's header and extent (4) or exceptions (5); a list brick's
    header and extent (6) or positions (7). Constant and dense bricks have nothing past
    their header (0). ``nmask``, ``npre``, ``nq`` and ``pw`` follow from ``n`` (passed in
    so that a decoder computes them once)."""
    if m == 3:
        return bp_check_patched(w, off, data, n)
    if m == 6:
        return bp_check_list(w, off, data, n)
    if m == 2 or m == 4 or m == 5:
        return bp_check_masked(m, w, off, data, nmask, npre, nq, pw)
    return 0


@_plain
def bp_check_masked(m: int, w: int, off: int, data: Any, nmask: int, npre: int, nq: int,
                    pw: int) -> int:
    """0 if a sparse (mode 2 or 4) or sparse patched (5) brick's mask, prefix counts and
    (low) values fit the data and agree, else 1, 2 or 3 as in :func:`bp_check_sparse`;
    for a sparse patched brick also 4 (header) or 5 (exception ranks not increasing,
    not below its count of stored values, or not on an escape code)."""
    nw = data.shape[0]
    # (the layout reads the header word clamped to the data: checked below)
    mm, q0, rk0, _, v0, we, ne = bp_masked_layout(m, off, nmask, npre, pw, data)
    if q0 + (npre if m == 2 else nq) > nw - 1:
        return 1
    if m == 5 and (w < 1 or we < 1 or we > 32 or np.int64(data[off]) >> 16 or ne == 0):
        return 4
    acc = np.int64(0)
    for k in range(nmask):
        if k % 8 == 0 and bp_group_prefix(m, q0, k >> 3, pw, data) != acc:
            return 2
        acc += popc(np.int64(data[mm + k]))
    if (v0 >> 5) + (acc * w + 31) // 32 > nw - 1:
        return 3
    if m == 5 and not increasing_ids(data, rk0, ne, pw, acc, v0, w):
        return 5
    return 0


@_plain
def increasing_ids(data: Any, p0: int, cnt: int, pw: int, limit: int, lo: int, w: int
                   ) -> bool:
    """Whether ``cnt`` ``pw``-bit values from bit ``p0`` on strictly increase, stay below
    ``limit`` and, when ``w`` > 0, each names a ``w``-bit value (from bit ``lo``, at that
    index) holding the escape code 2^w − 1. Unsigned, unclamped bit readers: the caller
    checked the extents."""
    esc = (U64(1) << U64(w)) - U64(1)
    mpw = (U64(1) << U64(pw)) - U64(1)
    pp = U64(p0)
    nxt = U64(0)  # the smallest value the next one may have
    for _ in range(cnt):
        i = read_bits_u(data, pp, mpw)
        if i < nxt or i >= U64(limit) or (w > 0 and read_bits_u(data, U64(lo) + i * U64(w),
                                                                  esc) != esc):
            return False
        nxt = i + U64(1)
        pp += U64(pw)
    return True


@_plain
def bp_check_list(w: int, off: int, data: Any, n: int) -> int:
    """0 if a list brick's header and extent fit (6 if not) and its positions increase
    inside the brick (7 if not)."""
    nmask = (n + 31) // 32
    pw = pos_bits(nmask)
    nw = data.shape[0]
    hdr = np.int64(data[off])
    c = hdr & 0xFFFF
    if hdr >> 16 or c == 0 or c > n \
            or off + 1 + ((c * pw + 31) >> 5) + ((c * w + 31) >> 5) > nw - 1:
        return 6
    return 0 if increasing_ids(data, (off + 1) << 5, c, pw, n, 0, 0) else 7


@_plain
def bp_check_patched(w: int, off: int, data: Any, n: int) -> int:
    """0 if a patched brick's header, positions and exceptions fit, else 4 (header or
    extent) or 5 (positions not increasing, or not on an escape code). O(exceptions):
    enough for every read to stay inside the data. A voxel holding the escape code that
    no position names (damage the record's CRC rules out) decodes to the escape code on
    every decoder."""
    nmask = (n + 31) // 32
    nw = data.shape[0]
    if off + 1 > nw - 1:
        return 4
    hdr = np.int64(data[off])
    we = hdr & 0xFF
    ne = (hdr >> 8) & 0xFF
    pw = pos_bits(nmask)
    low0 = off + 1 + ((ne * pw + 31) >> 5)
    if w < 1 or we < 1 or we > 32 or hdr >> 16 or ne == 0 \
            or low0 + nmask * w + (ne * we + 31) // 32 > nw - 1:
        return 4
    # positions: increasing voxel numbers, each on an escape code
    return 0 if increasing_ids(data, (off + 1) << 5, ne, pw, n, low0 << 5, w) else 5


@_shared
def bp_patched_head(off: int, nmask: int, data: Any) -> tuple[int, int, int, int]:
    """(exception width, exception count, position width, first bit of the low values)
    of the patched brick at word ``off``."""
    pw = pos_bits(nmask)
    we, ne, low0 = bp_patched_words(off, pw, data)
    return we, ne, pw, low0


@_shared
def bp_patched_words(off: int, pw: int, data: Any) -> tuple[int, int, int]:
    """(exception width, exception count, first bit of the low values) of the patched
    brick at word ``off`` whose exception positions are ``pw`` bits wide."""
    hdr = np.int64(data[min(off, data.shape[0] - 1)])
    ne = (hdr >> 8) & 0xFF
    return hdr & 0xFF, ne, (off + 1 + ((ne * pw + 31) >> 5)) << 5


@_shared
def bp_exception(i: int, off: int, w: int, nmask: int, we: int, ne: int, pw: int,
                 low0: int, data: Any) -> int:
    """Value (above the base) of voxel ``i`` of a patched brick, which holds the escape
    code: its rank among the exceptions by binary search of their positions; the escape
    code itself where no position names ``i`` (a damaged brick: what every decoder
    writes there)."""
    q = bp_find(i, (off + 1) << 5, ne, pw, data)
    if get_bits(data, ((off + 1) << 5) + q * pw, pw) != i:
        return (np.int64(1) << w) - 1
    return get_bits(data, low0 + ((nmask * w) << 5) + q * we, we)


@_shared
def bp_find(key: int, p0: int, cnt: int, pw: int, data: Any) -> int:
    """The last of ``cnt`` increasing ``pw``-bit entries from bit ``p0`` on that is at most
    ``key`` (0 if none is), by binary search."""
    lo = 0
    hi = cnt
    while hi - lo > 1:
        mid = (lo + hi) >> 1
        if get_bits(data, p0 + mid * pw, pw) <= key:
            lo = mid
        else:
            hi = mid
    return lo


@_shared
def bp_group_prefix(mode: int, q0: int, g: int, pw: int, data: Any) -> int:
    """Set mask bits of a sparse brick before its group ``g`` of 8 mask words: a word each
    from word ``q0`` on (mode 2), or packed at ``pw`` bits from group 1 on (modes 4, 5)."""
    if mode == 2:
        return np.int64(data[q0 + g])
    if g == 0:
        return 0
    return get_bits(data, (q0 << 5) + (g - 1) * pw, pw)


@_shared
def bp_masked_layout(mode: int, off: int, nmask: int, npre: int, pw: int, data: Any
                     ) -> tuple[int, int, int, int, int, int, int]:
    """(first mask word, first prefix word, first bit of the exception ranks, of the
    exception values, of the stored values, exception width, exception count) of a sparse
    (mode 2 or 4) or sparse patched (mode 5) brick at word ``off``."""
    mm = off + 1 if mode == 5 else off
    q0 = mm + nmask
    if mode == 2:
        return mm, q0, 0, 0, (q0 + npre) << 5, 0, 0
    p0 = q0 + packed_prefix_words(npre, pw)
    if mode == 4:
        return mm, q0, 0, 0, p0 << 5, 0, 0
    we, ne, _ = bp_patched_words(off, pw, data)
    x0 = p0 + ((ne * pw + 31) >> 5)
    return mm, q0, p0 << 5, x0 << 5, (x0 + ((ne * we + 31) >> 5)) << 5, we, ne


@_shared
def bp_voxel(i: int, mode: int, w: int, base: int, off: int, nmask: int, npre: int,
             data: Any) -> int:
    if mode == 0:
        return base
    if mode == 1:
        return base + get_bits(data, (off << 5) + i * w, w)
    if mode == 3:  # patched: w-bit low values, the escape code marks an exception
        we, ne, pw, low0 = bp_patched_head(off, nmask, data)
        v = get_bits(data, low0 + i * w, w)
        if v != (np.int64(1) << w) - 1:
            return base + v
        return base + bp_exception(i, off, w, nmask, we, ne, pw, low0, data)
    pw = pos_bits(nmask)
    if mode == 6:  # list: increasing positions, then the values in their order
        c = np.int64(data[off]) & 0xFFFF
        p0 = (off + 1) << 5
        q = bp_find(i, p0, c, pw, data)
        if get_bits(data, p0 + q * pw, pw) != i:
            return base
        return base + 1 + get_bits(data, ((off + 1 + ((c * pw + 31) >> 5)) << 5) + q * w, w)
    mm, q0, p0, x0, v0, we, ne = bp_masked_layout(mode, off, nmask, npre, pw, data)
    k = i >> 5
    m = np.int64(data[mm + k])
    bit = i & 31
    if not (m >> bit) & 1:
        return base
    # set bits before this voxel: the group prefix, whole words of the group, this word
    rank = bp_group_prefix(mode, q0, k >> 3, pw, data)
    for kk in range(k & ~7, k):
        rank += popc(np.int64(data[mm + kk]))
    rank += popc(m & ((np.int64(1) << bit) - 1))
    v = get_bits(data, v0 + rank * w, w)
    if mode == 5 and v == (np.int64(1) << w) - 1:  # an exception: found by its rank
        v = bp_ranked_exception(rank, v, p0, x0, we, ne, pw, data)
    return base + 1 + v


@_shared
def bp_ranked_exception(rank: int, v: int, p0: int, x0: int, we: int, ne: int, pw: int,
                        data: Any) -> int:
    """Value of the stored value ``rank`` of a sparse patched brick, which holds the
    escape code ``v``: the exception whose rank (from bit ``p0``) is ``rank``, by binary
    search; ``v`` where none is (a damaged brick: what every decoder writes there)."""
    q = bp_find(rank, p0, ne, pw, data)
    if get_bits(data, p0 + q * pw, pw) != rank:
        return v
    return get_bits(data, x0 + q * we, we)


#: array indices of the CPU decode loops are unsigned: numba then skips the negative-index
#: wrap-around test it emits for every signed index (a select per load and store, which also
#: keeps LLVM from combining the stores); decoding runs about 1.7x faster
U64 = np.uint64
#: bits are numbered from the least significant of little-endian words, so on a
#: little-endian machine 8- and 16-bit values are plain bytes / halfwords of the data
LITTLE_ENDIAN = sys.byteorder == "little"


@_plain
def row_offsets(bz: int, by: int, oy: int, ox: int) -> Any:
    """Offset of every brick row (z, y) from the brick's corner in a C-contiguous
    (·, oy, ox) output (uint64)."""
    rows = np.empty(bz * by, np.uint64)
    for z in range(bz):
        for y in range(by):
            rows[z * by + y] = z * oy * ox + y * ox
    return rows


@_plain
def bp_fill(flat: Any, corner: Any, rows: Any, bx: int, value: Any) -> None:
    """Write ``value`` to every voxel of a brick (rows of ``bx`` voxels at
    ``corner + rows[r]``)."""
    for r in range(rows.shape[0]):
        d = corner + rows[U64(r)]
        for x in range(bx):
            flat[d + U64(x)] = value


@_plain
def bp_dense(flat: Any, corner: Any, rows: Any, bx: int, w: int, base: Any, off: Any,
             data: Any) -> None:
    """Unpack a dense brick row by row: 8- and 16-bit values straight from the data's
    bytes (a loop LLVM vectorises), other widths through a 64-bit bit reader refilled 32
    bits at a time, 4 values per refill test when ``w <= 8``, 2 when ``w <= 16``, else 1."""
    nr = rows.shape[0]
    if (w == 8 or w == 16) and LITTLE_ENDIAN:
        step = U64(bx)
        if w == 8:
            b8 = data.view(np.uint8)
            s = U64(off) * U64(4)
            for r in range(nr):
                d = corner + rows[U64(r)]
                for x in range(bx):
                    flat[d + U64(x)] = base + U64(b8[s + U64(x)])
                s += step
        else:
            b16 = data.view(np.uint16)
            s = U64(off) * U64(2)
            for r in range(nr):
                d = corner + rows[U64(r)]
                for x in range(bx):
                    flat[d + U64(x)] = base + U64(b16[s + U64(x)])
                s += step
        return
    mask = (U64(1) << U64(w)) - U64(1)
    uw = U64(w)
    buf = U64(0)
    avail = 0
    k = U64(off)
    if w <= 8 and bx % 4 == 0:
        w4 = 4 * w
        uw2, uw3, uw4 = U64(2 * w), U64(3 * w), U64(w4)
        for r in range(nr):
            d = corner + rows[U64(r)]
            for x in range(0, bx, 4):
                if avail < w4:
                    buf |= U64(data[k]) << U64(avail)
                    k += U64(1)
                    avail += 32
                dd = d + U64(x)
                flat[dd] = base + (buf & mask)
                flat[dd + U64(1)] = base + ((buf >> uw) & mask)
                flat[dd + U64(2)] = base + ((buf >> uw2) & mask)
                flat[dd + U64(3)] = base + ((buf >> uw3) & mask)
                buf >>= uw4
                avail -= w4
    elif w <= 16 and bx % 2 == 0:
        w2 = 2 * w
        uw2 = U64(w2)
        for r in range(nr):
            d = corner + rows[U64(r)]
            for x in range(0, bx, 2):
                if avail < w2:
                    buf |= U64(data[k]) << U64(avail)
                    k += U64(1)
                    avail += 32
                dd = d + U64(x)
                flat[dd] = base + (buf & mask)
                flat[dd + U64(1)] = base + ((buf >> uw) & mask)
                buf >>= uw2
                avail -= w2
    else:
        for r in range(nr):
            d = corner + rows[U64(r)]
            for x in range(bx):
                if avail < w:
                    buf |= U64(data[k]) << U64(avail)
                    k += U64(1)
                    avail += 32
                flat[d + U64(x)] = base + (buf & mask)
                buf >>= uw
                avail -= w


@_plain
def bp_sparse(flat: Any, corner: Any, rows: Any, lin: Any, bx: int, w: int, base: Any,
              mm: Any, v0: Any, nmask: int, data: Any) -> None:
    """Decode a sparse brick (mask from word ``mm``, values from bit ``v0``): the base
    everywhere, then the voxels of the set mask bits, visited in order (their values are
    stored in rank order)."""
    bp_fill(flat, corner, rows, bx, base)
    mask = (U64(1) << U64(w)) - U64(1)
    uw = U64(w)
    p = U64(v0)  # bit position of the next stored value
    b1 = base + U64(1)
    for wi in range(nmask):
        m = U64(data[U64(mm + wi)])
        i0 = U64(wi * 32)
        while m:
            k = p >> U64(5)
            win = U64(data[k]) | (U64(data[k + U64(1)]) << U64(32))
            flat[corner + lin[i0 + cttz(m)]] = b1 + ((win >> (p & U64(31))) & mask)
            p += uw
            m &= m - U64(1)


@_plain
def bp_sparse_patched(flat: Any, corner: Any, rows: Any, lin: Any, bx: int, w: int,
                      base: Any, mm: Any, v0: Any, x0: Any, p0: Any, we: int, ne: int,
                      nmask: int, pw: int, data: Any) -> None:
    """Decode a sparse patched brick: as :func:`bp_sparse`, a stored value holding the
    escape code taking the next exception value (from bit ``x0``) when the next
    exception's rank (from bit ``p0``; increasing, each naming an escape code: checked
    when the brick was first read) is its rank, and keeping the escape code otherwise (a
    damaged brick: what every decoder writes there)."""
    bp_fill(flat, corner, rows, bx, base)
    mask = (U64(1) << U64(w)) - U64(1)
    mwe = (U64(1) << U64(we)) - U64(1)
    mpw = (U64(1) << U64(pw)) - U64(1)
    uw, uwe, upw = U64(w), U64(we), U64(pw)
    p = U64(v0)
    px = U64(x0)
    pr = U64(p0)
    left = ne
    # where the stored value of the next exception's rank starts
    nxt = p + read_bits_u(data, pr, mpw) * uw if left > 0 else U64(0)
    b1 = base + U64(1)
    for wi in range(nmask):
        m = U64(data[U64(mm + wi)])
        i0 = U64(wi * 32)
        while m:
            v = read_bits_u(data, p, mask)
            if v == mask and left > 0 and p == nxt:
                v = read_bits_u(data, px, mwe)
                px += uwe
                pr += upw
                left -= 1
                if left > 0:
                    nxt = U64(v0) + read_bits_u(data, pr, mpw) * uw
            flat[corner + lin[i0 + cttz(m)]] = b1 + v
            p += uw
            m &= m - U64(1)


@_plain
def bp_list(flat: Any, corner: Any, rows: Any, lin: Any, bx: int, w: int, base: Any,
            off: Any, pw: int, data: Any) -> None:
    """Decode a list brick: the base everywhere, then each listed position's value."""
    bp_fill(flat, corner, rows, bx, base)
    c = np.int64(data[U64(off)]) & 0xFFFF
    upw, uw = U64(pw), U64(w)
    mpw = (U64(1) << upw) - U64(1)
    mw = (U64(1) << uw) - U64(1)
    pp = U64(off + 1) << U64(5)
    pv = U64(off + 1 + ((c * pw + 31) >> 5)) << U64(5)
    last = U64(lin.shape[0] - 1)
    b1 = base + U64(1)
    for _ in range(c):
        i = read_bits_u(data, pp, mpw)
        flat[corner + lin[min(i, last)]] = b1 + read_bits_u(data, pv, mw)
        pp += upw
        pv += uw


@_plain
def bp_patched(flat: Any, corner: Any, lin: Any, rows: Any, bx: int, w: int, base: Any,
               off: Any, nmask: int, data: Any) -> None:
    """Decode a patched brick: its low values as a dense brick, then the exceptions
    written over the voxels their positions name (checked against the escape codes when
    the brick was first read)."""
    hdr = np.int64(data[U64(off)])
    we = hdr & 0xFF
    ne = (hdr >> 8) & 0xFF
    pw = pos_bits(nmask)
    low0 = off + 1 + ((ne * pw + 31) >> 5)
    bp_dense(flat, corner, rows, bx, w, base, low0, data)
    # two bit readers, positions and values (their extents were checked with the header)
    pp = U64(off + 1) << U64(5)
    pv = U64(low0 + nmask * w) << U64(5)
    upw, uwe = U64(pw), U64(we)
    mpw = (U64(1) << upw) - U64(1)
    mwe = (U64(1) << uwe) - U64(1)
    last = U64(lin.shape[0] - 1)
    for _ in range(ne):
        i = read_bits_u(data, pp, mpw)
        flat[corner + lin[min(i, last)]] = base + read_bits_u(data, pv, mwe)
        pp += upw
        pv += uwe


@_plain
def bp_brick(flat: Any, corner: Any, rows: Any, lin: Any, bx: int, mode: int, w: int,
             base: Any, off: Any, nmask: int, npre: int, data: Any) -> None:
    """Decode one whole brick into ``flat``: its row ``r`` goes to ``corner + rows[r]``,
    its voxel ``i`` to ``corner + lin[i]`` (all uint64)."""
    if mode == 0:
        bp_fill(flat, corner, rows, bx, base)
    elif mode == 1:
        bp_dense(flat, corner, rows, bx, w, base, off, data)
    elif mode == 3:
        bp_patched(flat, corner, lin, rows, bx, w, base, off, nmask, data)
    elif mode == 6:
        bp_list(flat, corner, rows, lin, bx, w, base, off, pos_bits(nmask), data)
    else:
        pw = pos_bits(nmask)
        mm, _, p0, x0, v0, we, ne = bp_masked_layout(mode, off, nmask, npre, pw, data)
        if mode == 5:
            bp_sparse_patched(flat, corner, rows, lin, bx, w, base, mm, v0, x0, p0, we, ne,
                              nmask, pw, data)
        else:
            bp_sparse(flat, corner, rows, lin, bx, w, base, mm, v0, nmask, data)


@_plain
def bp_decode(out: Any, z0: int, y0: int, x0: int, shape: Any, grid: Any, brick: Any,
              modes: Any, widths: Any, bases: Any, offsets: Any, data: Any, checked: Any,
              bad: Any, j0: int, j1: int) -> None:
    """Decode bricks ``j0 .. j1 - 1`` (numbered in C order among the bricks covering the
    region) of a region into ``out`` (C-contiguous): whole bricks straight into ``out``,
    bricks cut by the region into a scratch brick first (decoding a whole brick
    sequentially is cheaper than voxel by voxel). Single-threaded and without the GIL: the
    caller runs ranges of bricks on several threads.

    A brick with data past its header whose ``checked`` flag is 0 is checked first
    (:func:`bp_check_data`, on data the decode then reads from cache) and flagged 1; one
    that does not fit is left undecoded and its code stored in ``bad[0]`` (the caller
    raises). The headers were checked by the parser."""
    lin, rows, own, own_rows = bp_offsets(out, brick)
    bp_decode_range(out, z0, y0, x0, grid, brick, modes, widths, bases, offsets, data,
                    checked, bad, lin, rows, own, own_rows, j0, j1)


@_plain
def bp_offsets(out: Any, brick: Any) -> tuple[Any, Any, Any, Any]:
    """Offsets of a brick's voxels and rows from its corner in ``out`` and in a scratch
    brick (C order), as :func:`bp_decode_range` takes them (computed once per decode)."""
    _, oy, ox = out.shape
    bz, by, bx = brick[0], brick[1], brick[2]
    return (flat_offsets(bz, by, bx, oy, ox).astype(np.uint64), row_offsets(bz, by, oy, ox),
            flat_offsets(bz, by, bx, by, bx).astype(np.uint64), row_offsets(bz, by, by, bx))


@_plain
def bp_decode_range(out: Any, z0: int, y0: int, x0: int, grid: Any, brick: Any,
                    modes: Any, widths: Any, bases: Any, offsets: Any, data: Any,
                    checked: Any, bad: Any, lin: Any, rows: Any, own: Any, own_rows: Any,
                    j0: int, j1: int) -> None:
    """:func:`bp_decode` with the brick offsets of :func:`bp_offsets`."""
    oz, oy, ox = out.shape
    bz, by, bx = brick[0], brick[1], brick[2]
    n = bz * by * bx
    nmask = (n + 31) // 32
    npre = (nmask + 7) // 8
    gy, gx = grid[1], grid[2]
    flat = out.reshape(-1)
    pw = pos_bits(nmask)
    nq = packed_prefix_words(npre, pw)
    bz0, by0, bx0, nbz, nby, nbx = brick_range(z0, y0, x0, oz, oy, ox, bz, by, bx)
    for j in range(j0, min(j1, nbz * nby * nbx)):
        iz = bz0 + j // (nby * nbx)
        iy = by0 + (j // nbx) % nby
        ix = bx0 + j % nbx
        b = U64((iz * gy + iy) * gx + ix)
        mode, w = np.int64(modes[b]), np.int64(widths[b])
        base, off = U64(bases[b]), np.int64(offsets[b])
        if mode >= 2 and checked[b] == 0:
            code = bp_check_data(mode, w, off, data, n, nmask, npre, nq, pw)
            if code != 0:
                bad[0] = code
                continue
            checked[b] = 1
        za, zb = max(iz * bz, z0), min((iz + 1) * bz, z0 + oz)
        ya, yb = max(iy * by, y0), min((iy + 1) * by, y0 + oy)
        xa, xb = max(ix * bx, x0), min((ix + 1) * bx, x0 + ox)
        if (zb - za == bz) and (yb - ya == by) and (xb - xa == bx):
            corner = U64(((za - z0) * oy + (ya - y0)) * ox + (xa - x0))
            bp_brick(flat, corner, rows, lin, bx, mode, w, base, off, nmask, npre, data)
        elif mode == 0:
            for z in range(za, zb):
                for y in range(ya, yb):
                    rs = ((z - z0) * oy + (y - y0)) * ox - x0
                    for x in range(xa, xb):
                        flat[U64(rs + x)] = base
        else:
            tmp = np.empty(n, out.dtype)
            bp_brick(tmp, U64(0), own_rows, own, bx, mode, w, base, off, nmask, npre,
                     data)
            for z in range(za, zb):
                for y in range(ya, yb):
                    rs = ((z - z0) * oy + (y - y0)) * ox - x0
                    rb = ((z - iz * bz) * by + (y - iy * by)) * bx - ix * bx
                    for x in range(xa, xb):
                        flat[U64(rs + x)] = tmp[U64(rb + x)]

# ---------------- palette
@_par
def pal_index(vol: Any, palette: Any, out: Any) -> None:
    Z, Y, X = vol.shape
    for z in prange(Z):
        for y in range(Y):
            for x in range(X):
                out[z, y, x] = np.searchsorted(palette, vol[z, y, x])

@_plain
def gather_brick(a: Any, iz: int, iy: int, ix: int, bz: int, by: int, bx: int,
                 vals: Any) -> None:
    """Copy brick (iz, iy, ix) of ``a`` into ``vals`` in C order, edges clamped."""
    Z, Y, X = a.shape
    i = 0
    for z in range(bz):
        zz = min(iz * bz + z, Z - 1)
        for y in range(by):
            yy = min(iy * by + y, Y - 1)
            for x in range(bx):
                xx = min(ix * bx + x, X - 1)
                vals[i] = a[zz, yy, xx]
                i += 1


@_par
def pal_stats(idx: Any, grid: Any, brick: Any, nlocal: Any, widths: Any
              ) -> None:
    gz, gy, gx = grid[0], grid[1], grid[2]
    bz, by, bx = brick[0], brick[1], brick[2]
    n = bz * by * bx
    for b in prange(gz * gy * gx):
        iz = b // (gy * gx)
        iy = (b // gx) % gy
        ix = b % gx
        vals = np.empty(n, np.int64)
        gather_brick(idx, iz, iy, ix, bz, by, bx, vals)
        vals.sort()
        c = 1
        for k in range(1, n):
            if vals[k] != vals[k - 1]:
                c += 1
        nlocal[b] = c
        if c == 1:
            widths[b] = 0
        else:
            w = 1
            while (1 << w) < c:
                w *= 2
            widths[b] = w

@_par
def pal_pack(idx: Any, grid: Any, brick: Any, words: Any, ext_of: Any, widths: Any,
             lut_off: Any, data_off: Any, lut: Any, data: Any
             ) -> None:
    gz, gy, gx = grid[0], grid[1], grid[2]
    bz, by, bx = brick[0], brick[1], brick[2]
    n = bz * by * bx
    top = np.int64(1) << np.int64(words.itemsize * 8 - 1)
    for b in prange(gz * gy * gx):
        iz = b // (gy * gx)
        iy = (b // gx) % gy
        ix = b % gx
        vals = np.empty(n, np.int64)
        gather_brick(idx, iz, iy, ix, bz, by, bx, vals)
        e = ext_of[b]
        if e < 0:
            words[b] = vals[0]
            continue
        words[b] = np.int64(e) | top
        u = np.unique(vals)
        lo = lut_off[e]
        for k in range(u.size):
            lut[lo + k] = u[k]
        w = widths[e]
        start = np.int64(data_off[e]) * 32
        for k in range(n):
            li = np.searchsorted(u, vals[k])
            put_bits(data, start + k * w, li, w)

@_shared
def pal_voxel(i: int, word: int, top: int, ext_w: Any, ext_lut: Any, ext_data: Any,
              lut: Any, data: Any) -> int:
    if word < top:
        return word
    e = word - top
    w = np.int64(ext_w[e])
    li = get_bits(data, (np.int64(ext_data[e]) << 5) + i * w, w)
    return np.int64(lut[min(np.int64(ext_lut[e]) + li, lut.shape[0] - 1)])

@_plain
def pal_brick(flat: Any, corner: Any, lin: Any, bx: int, w: int, d0: int, vals: Any,
              data: Any) -> None:
    """Decode one whole mixed brick (local indices of ``w`` bits from word ``d0``, ``vals``
    their values): voxel ``i`` goes to ``flat[corner + lin[i]]`` (uint64 offsets)."""
    n = lin.shape[0]
    mask = np.uint32((1 << w) - 1)
    per_word = 32 // w  # w divides 32
    uw = np.uint32(w)
    if per_word % bx == 0 and n % per_word == 0:  # whole rows per word (8 voxels at w <= 4)
        for wi in range(n // per_word):
            m = data[U64(d0 + wi)]
            for i in range(wi * per_word, (wi + 1) * per_word, bx):
                c0 = corner + lin[U64(i)]
                for x in range(bx):
                    flat[c0 + U64(x)] = vals[U64(m & mask)]
                    m >>= uw
        return
    for wi in range((n + per_word - 1) // per_word):
        m = data[U64(d0 + wi)]
        i0 = wi * per_word
        for i in range(i0, min(i0 + per_word, n)):
            flat[corner + lin[U64(i)]] = vals[U64(m & mask)]
            m >>= uw


@_plain
def pal_decode(out: Any, z0: int, y0: int, x0: int, grid: Any, brick: Any, words: Any,
               ext_w: Any, ext_lut: Any, ext_data: Any, lut: Any, data: Any,
               palette: Any, j0: int, j1: int) -> None:
    """Decode the rows of bricks (along x) ``j0 .. j1 - 1`` among those covering a region
    into ``out`` (C-contiguous): runs of single-valued bricks along x with the same value
    become long row fills; a whole mixed brick maps its local indices through a table of
    their values. Single-threaded and without the GIL (the caller runs ranges of rows on
    several threads)."""
    oz, oy, ox = out.shape
    bz, by, bx = brick[0], brick[1], brick[2]
    n = bz * by * bx
    gy, gx = grid[1], grid[2]
    top = np.int64(1) << np.int64(words.itemsize * 8 - 1)
    npal = palette.shape[0]
    nl = lut.shape[0]
    flat = out.reshape(-1)
    lin = flat_offsets(bz, by, bx, oy, ox).astype(np.uint64)
    own = flat_offsets(bz, by, bx, by, bx).astype(np.uint64)  # C order within the brick
    bz0, by0, bx0, nbz, nby, nbx = brick_range(z0, y0, x0, oz, oy, ox, bz, by, bx)
    vals = np.empty(min(n, 256), palette.dtype)
    tmp = np.empty(n, palette.dtype)
    for j in range(j0, min(j1, nbz * nby)):
        iz = bz0 + j // nby
        iy = by0 + j % nby
        za, zb = max(iz * bz, z0), min((iz + 1) * bz, z0 + oz)
        ya, yb = max(iy * by, y0), min((iy + 1) * by, y0 + oy)
        row0 = (iz * gy + iy) * gx
        jx = 0
        while jx < nbx:
            ix = bx0 + jx
            word = np.int64(words[U64(row0 + ix)])
            xa = max(ix * bx, x0)
            if word < top:  # single-valued: extend over the following bricks of this value
                jy = jx + 1
                while jy < nbx and np.int64(words[U64(row0 + bx0 + jy)]) == word:
                    jy += 1
                xb = min((bx0 + jy) * bx, x0 + ox)
                fill_box(flat, z0, y0, x0, oy, ox, za, zb, ya, yb, xa, xb,
                         palette[U64(min(word, npal - 1))])
                jx = jy
                continue
            jx += 1
            xb = min((ix + 1) * bx, x0 + ox)
            e = U64(word - top)
            w = np.int64(ext_w[e])
            lb = np.int64(ext_lut[e])
            full = (zb - za == bz) and (yb - ya == by) and (xb - xa == bx)
            nv = np.int64(1) << w
            if nv <= vals.shape[0]:
                for q in range(nv):  # every local index -> its value, clamped like pal_voxel
                    vals[U64(q)] = palette[U64(min(np.int64(lut[U64(min(lb + q, nl - 1))]),
                                                   npal - 1))]
                d0 = np.int64(ext_data[e])
                if full:
                    corner = U64(((za - z0) * oy + (ya - y0)) * ox + (xa - x0))
                    pal_brick(flat, corner, lin, bx, w, d0, vals, data)
                else:  # cut by the region: the whole brick into a scratch brick first
                    pal_brick(tmp, U64(0), own, bx, w, d0, vals, data)
                    for z in range(za, zb):
                        for y in range(ya, yb):
                            rs = ((z - z0) * oy + (y - y0)) * ox - x0
                            rb = ((z - iz * bz) * by + (y - iy * by)) * bx - ix * bx
                            for x in range(xa, xb):
                                flat[U64(rs + x)] = tmp[U64(rb + x)]
                continue
            for z in range(za, zb):
                for y in range(ya, yb):
                    for x in range(xa, xb):
                        i = ((z - iz * bz) * by + (y - iy * by)) * bx + (x - ix * bx)
                        p = pal_voxel(i, word, top, ext_w, ext_lut, ext_data, lut, data)
                        out[z - z0, y - y0, x - x0] = palette[min(p, npal - 1)]


# ---------------- parallel launchers
# One numba parallel loop runs a decoder's chunks on numba's threads (its thread pool keeps
# its threads warm between calls, which a Python thread pool cannot: there every hand-off
# waits for the GIL). The loop is static: ``threads`` runs of ``per`` iterations, one run
# per thread; iteration k decodes chunk (k mod per)·threads + k div per, so every thread
# takes every threads-th chunk and a region whose cost is uneven (empty background above a
# dense specimen) is shared evenly.
@_shared
def interleaved_len(n: int, chunk: int, threads: int) -> int:
    """Iterations of the parallel loop over ``n`` items in chunks of ``chunk``."""
    nch = (n + chunk - 1) // chunk
    return (nch + threads - 1) // threads * threads


@_shared
def interleaved_chunk(k: int, n: int, chunk: int, threads: int) -> tuple[int, int]:
    """Items ``[j0, j1)`` of iteration ``k`` of that loop (empty past the last chunk)."""
    nch = (n + chunk - 1) // chunk
    per = (nch + threads - 1) // threads
    c = min((k % per) * threads + k // per, nch)
    return c * chunk, min(n, (c + 1) * chunk)


@_par
def bp_decode_par(out: Any, z0: int, y0: int, x0: int, shape: Any, grid: Any, brick: Any,
                  modes: Any, widths: Any, bases: Any, offsets: Any, data: Any,
                  checked: Any, bad: Any, n: int, chunk: int, threads: int) -> None:
    """:func:`bp_decode` of bricks ``0 .. n - 1`` in chunks of ``chunk`` on numba's
    threads."""
    lin, rows, own, own_rows = bp_offsets(out, brick)
    for k in prange(interleaved_len(n, chunk, threads)):
        j0, j1 = interleaved_chunk(k, n, chunk, threads)
        if j1 > j0:
            bp_decode_range(out, z0, y0, x0, grid, brick, modes, widths, bases, offsets,
                            data, checked, bad, lin, rows, own, own_rows, j0, j1)


@_par
def pal_decode_par(out: Any, z0: int, y0: int, x0: int, grid: Any, brick: Any, words: Any,
                   ext_w: Any, ext_lut: Any, ext_data: Any, lut: Any, data: Any,
                   palette: Any, n: int, chunk: int, threads: int) -> None:
    """:func:`pal_decode` of rows ``0 .. n - 1`` in chunks on numba's threads."""
    for k in prange(interleaved_len(n, chunk, threads)):
        j0, j1 = interleaved_chunk(k, n, chunk, threads)
        if j1 > j0:
            pal_decode(out, z0, y0, x0, grid, brick, words, ext_w, ext_lut, ext_data, lut,
                       data, palette, j0, j1)
