"""Independent `.ng5d` reader written from docs/ng5d-format.md alone (a conformance check).

Only the standard library, NumPy and, for the ``zstd`` storage tier (format 2.0), the zstd
decoder of numcodecs (the writer uses imagecodecs'); it does not import neuroglia5d. Codecs
`bitpack` (with the brick modes 4-6 of format 2.2), `palette` and `octree` (format 2.1,
§2.5); `decode_block` decodes one volume block.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np

MAGIC = b"NG5D\r\n\x1a\n"
U64 = np.uint64


def _crc(b: bytes) -> int:
    return zlib.crc32(b) & 0xFFFFFFFF


def _sections(block: bytes, start: int, specs: list[tuple[str, int]]) -> list[np.ndarray]:
    """Read consecutive sections (dtype, count), each starting at a multiple of 8 (§2.2)."""
    out, pos = [], start
    for dt, count in specs:
        pos = -(-pos // 8) * 8
        size = np.dtype(dt).itemsize * count
        if pos + size > len(block):
            raise ValueError("section extends past its volume block")
        out.append(np.frombuffer(block, dtype="<" + dt, count=count, offset=pos))
        pos += size
    return out


def _get_bits(data: np.ndarray, p: np.ndarray, w: np.ndarray) -> np.ndarray:
    """§2.2 get_bits, vectorised; w = 0 reads 0 without touching data."""
    p, w = p.astype(U64), w.astype(U64)
    out = np.zeros(p.shape, dtype=U64)
    nz = w > 0
    k = (p[nz] >> U64(5)).astype(np.int64)
    if k.size and int(k.max()) + 1 >= data.size:
        raise ValueError("bit read past the end of the data section")
    d = data.astype(U64)
    both = d[k] | (d[k + 1] << U64(32))
    out[nz] = (both >> (p[nz] & U64(31))) & ((U64(1) << w[nz]) - U64(1))
    return out


def _take(arr: np.ndarray, idx: np.ndarray, what: str) -> np.ndarray:
    idx = np.asarray(idx, dtype=np.int64)
    if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= arr.size):
        raise ValueError(f"{what} index out of range")
    return arr[idx]


def _voxel_map(zyx: tuple[int, int, int], brick: tuple[int, int, int]) -> tuple[Any, Any, int, int]:
    """Brick number b and in-brick number i of every voxel (§2.1); also nb and n."""
    bz, by, bx = brick
    gy, gx = -(-zyx[1] // by), -(-zyx[2] // bx)
    nb = -(-zyx[0] // bz) * gy * gx
    z, y, x = (a.astype(np.int64) for a in np.indices(zyx))
    b = ((z // bz) * gy + y // by) * gx + x // bx
    i = (z % bz) * by * bx + (y % by) * bx + x % bx
    return b, i, nb, bz * by * bx


def _patched(data: np.ndarray, o: np.ndarray, i: np.ndarray, w: np.ndarray, base: np.ndarray,
             n: int) -> np.ndarray:
    """§2.3 mode 3 (patched): low values with an escape code, exceptions by position."""
    h = _take(data, o, "patched header").astype(np.int64)
    we, ne = h & 0xFF, (h >> 8) & 0xFF
    if np.any((we < 1) | (we > 32) | (ne < 1) | (h >> 16 != 0)):
        raise ValueError("bad patched brick header")
    nm = -(-n // 32)
    pw = max(1, (32 * nm - 1).bit_length())
    low = o + 1 + -(-ne * pw // 32)
    x = low + nm * w.astype(np.int64)
    v = _get_bits(data, U64(32) * low.astype(U64) + i.astype(U64) * w, w)
    out = base + v
    esc = v == (U64(1) << w) - U64(1)
    for k in np.flatnonzero(esc):  # the exception whose position is this voxel
        pos = _get_bits(data, U64(32) * U64(o[k] + 1) + np.arange(ne[k], dtype=U64) * U64(pw),
                        np.full(ne[k], pw, U64))
        q = np.flatnonzero(pos == U64(i[k]))
        if len(q) != 1:
            raise ValueError("escaped voxel is not an exception position")
        out[k] = base[k] + _get_bits(data, np.array([32 * x[k] + int(q[0]) * int(we[k])], U64),
                                     np.array([we[k]], U64))[0]
    return out


def _ints(data: np.ndarray, start: int, cnt: int, w: int) -> np.ndarray:
    """``cnt`` consecutive ``w``-bit values from bit ``start`` on."""
    return _get_bits(data, U64(start) + np.arange(cnt, dtype=U64) * U64(w),
                     np.full(cnt, w, U64)).astype(np.int64)


def _masked(data: np.ndarray, m: np.ndarray, o: np.ndarray, i: np.ndarray, w: np.ndarray,
            base: np.ndarray, n: int) -> np.ndarray:
    """§2.3 modes 2 (sparse), 4 (sparse, packed prefixes) and 5 (sparse patched)."""
    nm = -(-n // 32)
    npw = -(-nm // 8)
    pw = max(1, (32 * nm - 1).bit_length())
    nq = -(-(npw - 1) * pw // 32)
    o = o.astype(np.int64)
    mm = np.where(m == 5, o + 1, o)  # first mask word
    q = mm + nm  # first prefix word
    word = i // 32
    group = word // 8
    mword = _take(data, mm + word, "mask").astype(U64)
    bit = (i % 32).astype(U64)
    stored = ((mword >> bit) & U64(1)).astype(bool)
    rank = np.zeros(len(i), np.int64)
    old = m == 2
    rank[old] = _take(data, q[old] + group[old], "prefix").astype(np.int64)
    new = ~old & (group > 0)
    rank[new] = _get_bits(data, U64(32) * q[new].astype(U64)
                          + (group[new] - 1).astype(U64) * U64(pw),
                          np.full(int(new.sum()), pw, U64)).astype(np.int64)
    first = group * 8
    for j in range(7):
        before = first + j < word
        cnt = np.bitwise_count(_take(data, mm[before] + first[before] + j, "mask"))
        rank[before] += cnt.astype(np.int64)
    rank += np.bitwise_count(mword & ((U64(1) << bit) - U64(1))).astype(np.int64)
    v0 = np.where(old, q + npw, q + nq)  # first word of the (low) values
    pat = m == 5
    we = np.zeros(len(i), np.int64)
    ne = np.zeros(len(i), np.int64)
    if pat.any():
        h = _take(data, o[pat], "sparse patched header").astype(np.int64)
        we[pat], ne[pat] = h & 0xFF, (h >> 8) & 0xFF
        if np.any((we[pat] < 1) | (we[pat] > 32) | (ne[pat] < 1) | (h >> 16 != 0)):
            raise ValueError("bad sparse patched brick header")
    xw = v0 + -(-ne * pw // 32)  # exception values (mode 5)
    v0 = np.where(pat, xw + -(-ne * we // 32), v0)
    s = _get_bits(data, U64(32) * v0.astype(U64) + rank.astype(U64) * w, w)
    esc = pat & stored & (s == (U64(1) << w) - U64(1))
    for k in np.flatnonzero(esc):  # the exception whose rank is this voxel's
        ranks = _ints(data, 32 * int(q[k] + nq), int(ne[k]), pw)
        hit = np.flatnonzero(ranks == rank[k])
        if len(hit) != 1:
            raise ValueError("escaped value is not an exception rank")
        s[k] = _ints(data, 32 * int(xw[k]) + int(hit[0]) * int(we[k]), 1, int(we[k]))[0]
    return base + np.where(stored, s + U64(1), U64(0))


def _listed(data: np.ndarray, o: np.ndarray, i: np.ndarray, w: np.ndarray,
            base: np.ndarray, n: int) -> np.ndarray:
    """§2.3 mode 6 (list): the positions of the voxels above the base, and their values."""
    nm = -(-n // 32)
    pw = max(1, (32 * nm - 1).bit_length())
    out = base.copy()
    o = o.astype(np.int64)
    for ob in np.unique(o):
        sel = np.flatnonzero(o == ob)
        h = int(_take(data, np.array([ob]), "list header")[0])
        c = h & 0xFFFF
        if h >> 16 or not 1 <= c <= n:
            raise ValueError("bad list brick header")
        pos = _ints(data, 32 * (int(ob) + 1), c, pw)
        if np.any(np.diff(pos) <= 0) or pos[-1] >= n:
            raise ValueError("list brick positions not increasing inside the brick")
        qq = np.minimum(np.searchsorted(pos, i[sel]), c - 1)
        hit = pos[qq] == i[sel]
        wb = int(w[sel[0]])
        vals = _ints(data, 32 * (int(ob) + 1 + -(-c * pw // 32)), c, wb) if wb else \
            np.zeros(c, np.int64)
        out[sel[hit]] += (vals[qq[hit]] + 1).astype(U64)
    return out


def _decode_bitpack(block: bytes, zyx: Any, brick: Any, dtype: np.dtype) -> np.ndarray:
    b, i, nb, n = _voxel_map(zyx, brick)
    (head,) = _sections(block, 0, [("u4", 2)])
    if int(head[0]) != nb:
        raise ValueError(f"brick count {int(head[0])} != {nb} expected from shape and brick")
    mode, width, base, off, data = _sections(
        block, 0, [("u4", 2), ("u1", nb), ("u1", nb), ("u4", nb), ("u4", nb), ("u4", int(head[1]))]
    )[1:]
    m, w, o = mode[b], width[b].astype(U64), off[b].astype(U64)
    u = base[b].astype(U64)
    if np.any(m > 6) or np.any(w > 32):
        raise ValueError("bad brick mode or width")
    dense = m == 1
    u[dense] += _get_bits(data, U64(32) * o[dense] + i[dense].astype(U64) * w[dense], w[dense])
    sp = (m == 2) | (m == 4) | (m == 5)
    if np.any(sp):
        u[sp] = _masked(data, m[sp], o[sp], i[sp].astype(np.int64), w[sp], u[sp], n)
    pt = m == 3
    if np.any(pt):
        u[pt] = _patched(data, o[pt].astype(np.int64), i[pt].astype(np.int64), w[pt], u[pt],
                         n)
    ls = m == 6
    if np.any(ls):
        u[ls] = _listed(data, o[ls], i[ls].astype(np.int64), w[ls], u[ls], n)
    if np.any(u > 0xFFFFFFFF):
        raise ValueError("decoded value exceeds 32 bits")
    if dtype == np.float32:
        top = (u & U64(0x80000000)) != 0
        f = np.where(top, u & U64(0x7FFFFFFF), ~u & U64(0xFFFFFFFF)).astype(np.uint32)
        return f.view(np.float32)
    if np.any(u > np.iinfo(dtype).max):
        raise ValueError(f"decoded value exceeds {dtype}")
    return u.astype(dtype)


def _decode_palette(block: bytes, zyx: Any, brick: Any, dtype: np.dtype) -> np.ndarray:
    b, i, nb, _ = _voxel_map(zyx, brick)
    (head,) = _sections(block, 0, [("u4", 8)])
    npal, nbh, next_, nlut, nw, wb, lb = (int(v) for v in head[:7])
    if nbh != nb:
        raise ValueError(f"brick count {nbh} != {nb} expected from shape and brick")
    if wb not in (16, 32) or lb not in (16, 32):
        raise ValueError("bad wb/lb")
    pal, words, ew, elut, edata, lut, data = _sections(block, 0, [
        ("u4", 8), (dtype.str[1:], npal), (f"u{wb // 8}", nb), ("u1", next_), ("u4", next_),
        ("u4", next_), (f"u{lb // 8}", nlut), ("u4", nw)])[1:]
    v = words[b].astype(np.int64)
    top = 1 << (wb - 1)
    idx = v.copy()
    ext = v >= top
    e = v[ext] - top
    w = _take(ew, e, "ext_width").astype(U64)
    if np.any(~np.isin(w, [1, 2, 4, 8, 16])):
        raise ValueError("bad ext_width")
    p = U64(32) * _take(edata, e, "ext_data").astype(U64) + i[ext].astype(U64) * w
    j = _get_bits(data, p, w).astype(np.int64)
    idx[ext] = _take(lut, _take(elut, e, "ext_lut").astype(np.int64) + j, "lut")
    return _take(pal, idx, "palette").astype(dtype)


def _stream_bits(buf: np.ndarray, p: np.ndarray, w: Any, what: str) -> np.ndarray:
    """§2.5 byte bit stream: the `w`-bit integers at bit positions `p` of u8 array `buf`."""
    p = np.asarray(p, dtype=U64)
    w = np.broadcast_to(np.asarray(w, dtype=U64), p.shape)
    if w.size and int(w.max()) > 56:
        raise ValueError(f"{what}: entry width above 56 bits")
    idx = (p >> U64(3)).astype(np.int64)[:, None] + np.arange(8)
    if idx.size and int(idx.max()) >= buf.size:
        raise ValueError(f"{what}: bit read past the end of its section")
    word = np.ascontiguousarray(buf[idx]).view("<u8")[:, 0]
    return (word >> (p & U64(7))) & ((U64(1) << w) - U64(1))


def _rank(bits: np.ndarray, ranks: np.ndarray, i: np.ndarray) -> np.ndarray:
    """§2.5 rank(set, i): set bits before node i (i int64, already < nn)."""
    k, sh = i >> 6, (i & 63).astype(U64)
    return ranks[k].astype(np.int64) + np.bitwise_count(
        bits[k] & ((U64(1) << sh) - U64(1))).astype(np.int64)


def _bit(bits: np.ndarray, i: np.ndarray) -> np.ndarray:
    return ((bits[i >> 6] >> (i & 63).astype(U64)) & U64(1)).astype(bool)


def _decode_octree(block: bytes, zyx: Any, brick: Any, dtype: np.dtype) -> np.ndarray:
    """§2.5 codec `octree`: descend the tree of every voxel, then decode its mixed brick."""
    if tuple(brick) != (8, 8, 8):
        raise ValueError(f"octree brick must be (8, 8, 8), not {tuple(brick)}")
    (head,) = _sections(block, 0, [("u4", 12)])
    npal, u, tz, ty, tx, nn, nup, sup, nr, no, wg, rb = (int(v) for v in head)
    g = [-(-s // 8) for s in zyx]
    if u > 31 or [tz, ty, tx] != [-(-a // (1 << u)) for a in g]:
        raise ValueError(f"tree top {(tz, ty, tx)} at U={u} does not match the brick grid {g}")
    nt, nwd = tz * ty * tx, -(-nn // 64)
    if not nt <= nn or not nup <= nn or wg > 56:
        raise ValueError("bad octree head (nn, nup or wg)")
    nwo = nwd if no else 0  # no `other` bits at all: empty sections
    pal, split, srank, other, orank, values, rbase, recs = _sections(block, 0, [
        ("u4", 12), (dtype.str[1:], npal), ("u8", nwd), ("u4", nwd), ("u8", nwo), ("u4", nwo),
        ("u1", -(-no * wg // 8) + 8), ("u4", -(-nr // 8) + 1), ("u1", rb + 8)])[1:]
    z, y, x = (a.astype(np.int64).reshape(-1) for a in np.indices(zyx))
    bz, by, bx = z >> 3, y >> 3, x >> 3
    node = ((bz >> u) * ty + (by >> u)) * tx + (bx >> u)
    for k in range(u, 0, -1):  # at most U descents; a uniform node stays where it is
        s = _bit(split, node)
        c = 4 * (bz >> (k - 1) & 1) + 2 * (by >> (k - 1) & 1) + (bx >> (k - 1) & 1)
        node = np.where(s, nt + 8 * _rank(split, srank, node) + c, node)
        if node.size and int(node.max()) >= nn:
            raise ValueError("tree child beyond nn nodes")
    mixed = _bit(split, node)
    pidx = np.zeros(node.shape, dtype=U64)
    uni = ~mixed & (_bit(other, node) if no else False)
    ro = _rank(other, orank, node[uni])
    if ro.size and int(ro.max()) >= no:
        raise ValueError("other rank beyond no")
    pidx[uni] = _stream_bits(values, ro.astype(U64) * U64(wg), wg, "values")
    if np.any(mixed):
        offs = _record_offsets(recs, rbase, nr, rb, wg)
        pidx[mixed] = _octree_bricks(recs, offs, _rank(split, srank, node[mixed]) - sup,
                                     nr, rb, wg, z[mixed] & 7, y[mixed] & 7, x[mixed] & 7)
    return _take(pal, pidx, "palette").astype(dtype).reshape(zyx)


def _record_offsets(recs: np.ndarray, rbase: np.ndarray, nr: int, rb: int, wg: int
                    ) -> np.ndarray:
    """§2.5 records: start of every record (and rb), walking each group of 8 by the
    records' lengths; a group must end where the next begins."""
    if int(rbase[-1]) != rb:
        raise ValueError("rec_base's last entry differs from rb")
    offs = np.zeros(nr + 1, np.int64)
    offs[nr] = rb
    for g in range(len(rbase) - 1):
        p = int(rbase[g])
        for r in range(8 * g, min(nr, 8 * g + 8)):
            offs[r] = p
            if p + 2 > rb:
                raise ValueError(f"record {r} starts past the records")
            b0 = int(recs[p])
            m, h = b0 >> 4, 1
            if m == 15:
                m, h = int(recs[p + 1]) | int(recs[p + 2]) << 8, 3
            w = 1 << (b0 & 7)
            q = p + h + -(-m * wg // 8)
            p1 = bin(int(recs[q])).count("1")
            big_p = sum(bin(int(recs[q + 1 + t])).count("1") for t in range(p1))
            nv = (8 - p1) + (8 * p1 - big_p) + 8 * big_p
            p = q + 1 + p1 + -(-nv * w // 8)
        if p != int(rbase[g + 1]):
            raise ValueError(f"record group {g} does not end where the next begins")
    return offs


def _octree_bricks(recs: np.ndarray, offs: np.ndarray, r: np.ndarray,
                   nr: int, rb: int, wg: int, a: np.ndarray, b: np.ndarray,
                   e: np.ndarray) -> np.ndarray:
    """§2.5 records: palette index of in-brick voxels (a, b, e) of mixed-brick records r."""
    if r.size and (int(r.min()) < 0 or int(r.max()) >= nr):
        raise ValueError("mixed brick record number out of range")
    off = offs[r]
    end = offs[r + 1]
    if int(end.max()) > rb or np.any(end <= off):
        raise ValueError("record bytes outside the records section")
    b0 = recs[off].astype(np.int64)
    lw, zf, m = b0 & 7, b0 >> 3 & 1, b0 >> 4
    if np.any(lw > 4):
        raise ValueError("record local index width above 16 bits")
    w = 1 << lw
    big = m == 15
    m[big] = recs[off[big] + 1].astype(np.int64) | recs[off[big] + 2].astype(np.int64) << 8
    tab = off + 1 + 2 * big  # first byte of the table
    m1p = tab + -(-m * wg // 8)  # byte of m1; M2 follows it
    if np.any(m1p >= end):
        raise ValueError("record table past the end of its record")
    m1 = recs[m1p].astype(np.int64)
    p1 = np.bitwise_count(m1).astype(np.int64)
    vst = m1p + 1 + p1  # first byte of V
    if np.any(vst > end):
        raise ValueError("record M2 past the end of its record")
    c1, c2 = 4 * (a >> 2 & 1) + 2 * (b >> 2 & 1) + (e >> 2 & 1), 4 * (a >> 1 & 1) + 2 * (
        b >> 1 & 1) + (e >> 1 & 1)
    c3 = 4 * (a & 1) + 2 * (b & 1) + (e & 1)

    def pop8(v: np.ndarray) -> np.ndarray:
        return np.bitwise_count(v.astype(np.uint8)).astype(np.int64)

    def low(c: np.ndarray) -> np.ndarray:
        return (1 << c) - 1

    in1 = (m1 >> c1 & 1).astype(bool)
    r1 = pop8(m1 & low(c1))
    m2 = recs[m1p + 1 + np.minimum(r1, np.maximum(p1 - 1, 0))].astype(np.int64)
    pops = [pop8(recs[np.minimum(m1p + 1 + q, recs.size - 1)]) for q in range(8)]
    big_p = sum(np.where(q < p1, pops[q], 0) for q in range(8))
    q_r1 = sum(np.where(q < r1, pops[q], 0) for q in range(8))
    in2 = (m2 >> c2 & 1).astype(bool)
    j = np.where(~in1, pop8(~m1 & low(c1)), np.where(
        ~in2, (8 - p1) + (8 * r1 - q_r1) + pop8(~m2 & low(c2)),
        (8 - p1) + (8 * p1 - big_p) + 8 * (q_r1 + pop8(m2 & low(c2))) + c3))
    if np.any(8 * vst + (j + 1) * w > 8 * end):
        raise ValueError("value stream entry past the end of its record")
    loc = _stream_bits(recs, 8 * vst + j * w, w, "record values").astype(np.int64)
    if np.any(loc >= zf + m):
        raise ValueError("local index beyond the local table")
    q = loc - zf
    out = np.zeros(r.shape, dtype=U64)
    st = q >= 0  # zf = 1 and local index 0 is palette index 0
    out[st] = _stream_bits(recs, 8 * tab[st] + q[st] * wg, wg, "record table")
    return out


def _inflate(stored: bytes) -> bytes:
    """§2.6 storage `zstd`: the resident volume block from its frame table and frames."""
    from numcodecs import Zstd

    if len(stored) < 16:
        raise ValueError("stored block shorter than its frame table head")
    nf, size, rlen = struct.unpack_from("<IIQ", stored, 0)
    if size == 0 or size % 8 or nf != -(-rlen // size):
        raise ValueError("bad frame table")
    (lens,) = _sections(stored, 16, [("u4", nf)])
    pos = -(-(16 + 4 * nf) // 8) * 8
    parts = []
    for f, n in enumerate(int(v) for v in lens):
        want = min(size, rlen - f * size)
        if pos + n > len(stored):
            raise ValueError(f"frame {f} extends past its volume block")
        frame = stored[pos:pos + n]
        raw = frame if n == want else bytes(Zstd().decode(frame))
        if len(raw) != want:
            raise ValueError(f"frame {f} inflates to {len(raw)} bytes, expected {want}")
        parts.append(raw)
        pos += n
    return b"".join(parts)


def _record_header(buf: bytes, pos: int) -> tuple[bytes, int, int, int, int, int] | None:
    """(magic, array, t, codec, L, payload crc) of a record header with a valid CRC, else None."""
    if pos + 32 > len(buf):
        return None
    magic, arr, t, codec, length, pcrc, hcrc = struct.unpack_from("<4sIIIQII", buf, pos)
    if magic not in (b"NG5R", b"NG5X") or _crc(buf[pos:pos + 28]) != hcrc:
        return None
    return magic, arr, t, codec, length, pcrc


def _footer_index(buf: bytes, end: int) -> int | None:
    """Offset of the index record named by a valid footer ending at `end`, else None."""
    if end < 16 or buf[end - 4:end] != b"NG5F":
        return None
    off, crc = struct.unpack_from("<QI", buf, end - 16)
    return off if _crc(buf[end - 16:end - 8]) == crc else None


def _from_index(buf: bytes, start: int) -> dict[tuple[int, int], tuple[int, int, int]] | None:
    """§1.6 step 2: the entries of a valid footer's index, or None."""
    off = _footer_index(buf, len(buf))
    rec = _record_header(buf, off) if off is not None and off >= start else None
    if rec is None or rec[0] != b"NG5X" or rec[4] % 32 or off + 32 + rec[4] > len(buf) - 16:
        return None
    payload = buf[off + 32:off + 32 + rec[4]]
    if _crc(payload) != rec[5]:
        return None
    entries = {}
    for a, t, roff, length, pcrc, _ in struct.iter_unpack("<IIQQII", payload):
        entries[(a, t)] = (roff, length, pcrc)
    return entries


def _scan(buf: bytes, start: int) -> dict[tuple[int, int], tuple[int, int, int]]:
    """§1.6 step 3: latest complete NG5R record per (array, t)."""
    found, pos = {}, start
    while (rec := _record_header(buf, pos)) is not None and pos + 32 + rec[4] <= len(buf):
        magic, a, t, _, length, pcrc = rec
        if magic == b"NG5R":
            found[(a, t)] = (pos, length, pcrc)
        nxt = pos + 32 + length
        if magic == b"NG5X" and _footer_index(buf, nxt + 16) == pos:
            nxt += 16
        pos = nxt
    return found


CODEC_IDS = {"bitpack": 1, "palette": 2, "octree": 3}
DECODERS = {1: _decode_bitpack, 2: _decode_palette, 3: _decode_octree}


def decode_block(codec: str, block: bytes, zyx: tuple[int, int, int],
                 brick: tuple[int, int, int], dtype: Any) -> np.ndarray:
    """Decode one resident (plain) volume block of codec `codec` into a (Z, Y, X) array."""
    return DECODERS[CODEC_IDS[codec]](block, tuple(zyx), tuple(brick), np.dtype(dtype))


def read_ng5d(path: str | Path) -> dict[str, Any]:
    buf = Path(path).read_bytes()
    if len(buf) < 16 or buf[:8] != MAGIC:
        raise ValueError("not an ng5d file (bad magic)")
    major, _minor, hlen = struct.unpack_from("<HHI", buf, 8)  # 2.0 and 2.1 (octree) alike
    if major not in (1, 2):
        raise ValueError(f"unsupported major version {major}")
    if 16 + hlen + 4 > len(buf):
        raise ValueError("truncated header")
    hbytes = buf[16:16 + hlen]
    if _crc(hbytes) != struct.unpack_from("<I", buf, 16 + hlen)[0]:
        raise ValueError("header CRC mismatch")
    header = json.loads(hbytes.decode("utf-8"))
    start = 16 + hlen + 4
    specs = header["arrays"]
    entries = _from_index(buf, start)
    complete = entries is not None
    if entries is None:
        entries = _scan(buf, start)
    arrays = {s["name"]: np.zeros(s["shape"], dtype=s["dtype"]) for s in specs}
    present: dict[str, list[int]] = {s["name"]: [] for s in specs}
    for (a, t), (roff, length, pcrc) in sorted(entries.items()):
        if a >= len(specs):
            raise ValueError(f"record names unknown array position {a}")
        spec = specs[a]
        name, shape, dtype = spec["name"], spec["shape"], np.dtype(spec["dtype"])
        rec = _record_header(buf, roff)
        if rec is None or rec[:3] != (b"NG5R", a, t) or rec[4:] != (length, pcrc):
            raise ValueError(f"{name} t={t}: record header missing, damaged or not as indexed")
        payload = buf[roff + 32:roff + 32 + length]
        if len(payload) != length or _crc(payload) != pcrc:
            raise ValueError(f"{name} t={t}: payload CRC mismatch (damaged record)")
        if spec["codec"] not in CODEC_IDS:
            raise ValueError(f"{name}: unknown codec {spec['codec']!r}")
        codec = CODEC_IDS[spec["codec"]]
        if rec[3] != codec or not 0 <= t < shape[0]:
            raise ValueError(f"{name} t={t}: wrong codec id {rec[3]} or t out of range")
        decode = DECODERS[codec]
        storage = spec.get("storage", "plain") if major >= 2 else "plain"
        if storage not in ("plain", "zstd"):
            raise ValueError(f"{name}: unknown storage {storage!r}")
        arrays[name][t] = _decode_payload(payload, shape, spec["brick"], dtype, decode, name, t,
                                          storage)
        present[name].append(t)
    return {"header": header, "complete": complete, "arrays": arrays, "present": present}


def _decode_payload(payload: bytes, shape: list[int], brick: list[int], dtype: np.dtype,
                    decode: Any, name: str, t: int, storage: str = "plain") -> np.ndarray:
    """§2: C volume blocks of one timepoint, as a (C, Z, Y, X) array."""
    if len(payload) < 4 or struct.unpack_from("<I", payload)[0] != shape[1]:
        raise ValueError(f"{name} t={t}: channel count differs from the header's C")
    c = shape[1]
    if 4 + 8 * c > len(payload):
        raise ValueError(f"{name} t={t}: channel table past the payload")
    out = np.empty(shape[1:], dtype=dtype)
    offs = struct.unpack_from(f"<{c}Q", payload, 4)
    for ch, off in enumerate(offs):
        if off % 8 or off >= len(payload) or off < 4 + 8 * c:
            raise ValueError(f"{name} t={t}: bad volume block offset {off}")
        end = offs[ch + 1] if ch + 1 < c else len(payload)
        try:
            block = payload[off:end] if storage == "plain" else _inflate(payload[off:end])
            out[ch] = decode(block, tuple(shape[2:]), tuple(brick), dtype)
        except ValueError as exc:
            raise ValueError(f"{name} t={t} c={ch}: {exc}") from exc
    return out
