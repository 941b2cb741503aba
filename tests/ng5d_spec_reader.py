"""Independent `.ng5d` reader written from docs/ng5d-format.md alone (a conformance check).

Only the standard library, NumPy and, for the ``zstd`` storage tier (format 2.0), the zstd
decoder of numcodecs (the writer uses imagecodecs'); it does not import neuroglia5d.
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
    if np.any(m > 2) or np.any(w > 32):
        raise ValueError("bad brick mode or width")
    dense = m == 1
    u[dense] += _get_bits(data, U64(32) * o[dense] + i[dense].astype(U64) * w[dense], w[dense])
    sp = m == 2
    if np.any(sp):
        nm = -(-n // 32)
        npw = -(-nm // 8)
        os_, is_, ws = o[sp].astype(np.int64), i[sp], w[sp]
        word = is_ // 32
        mword = _take(data, os_ + word, "mask").astype(U64)
        bit = (is_ % 32).astype(U64)
        stored = ((mword >> bit) & U64(1)).astype(bool)
        rank = _take(data, os_ + nm + word // 8, "prefix").astype(np.int64)
        group = (word // 8) * 8
        for j in range(7):
            before = group + j < word
            cnt = np.bitwise_count(_take(data, os_[before] + group[before] + j, "mask"))
            rank[before] += cnt.astype(np.int64)
        rank += np.bitwise_count(mword & ((U64(1) << bit) - U64(1))).astype(np.int64)
        p = U64(32) * (os_ + nm + npw).astype(U64) + rank.astype(U64) * ws
        val = _get_bits(data, p[stored], ws[stored]) + U64(1)
        us = u[sp]
        us[stored] += val
        u[sp] = us
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


def _inflate(stored: bytes) -> bytes:
    """§2.5 storage `zstd`: the resident volume block from its frame table and frames."""
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


def read_ng5d(path: str | Path) -> dict[str, Any]:
    buf = Path(path).read_bytes()
    if len(buf) < 16 or buf[:8] != MAGIC:
        raise ValueError("not an ng5d file (bad magic)")
    major, _minor, hlen = struct.unpack_from("<HHI", buf, 8)
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
        codec = {"bitpack": 1, "palette": 2}[spec["codec"]]
        if rec[3] != codec or not 0 <= t < shape[0]:
            raise ValueError(f"{name} t={t}: wrong codec id {rec[3]} or t out of range")
        decode = _decode_bitpack if codec == 1 else _decode_palette
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
