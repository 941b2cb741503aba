"""Damage resident volume blocks at random and decode them, each block ending right
before a page the process may not read (``PROT_NONE``), or starting right after one.

Run by ``tests/test_ng5d.py`` in a subprocess: a decoder that reads past either end of
its block ends this process with SIGSEGV, which the test reports. A damaged block must
either be refused (``InputError``) or decode to an array of the region's shape (wrong
values are allowed: the per-record CRC of a file catches damage; here there is none).

Each decoded block is also decoded voxel by voxel as the GPU's flat kernels do (their
per-voxel functions, in CPU loops), after the checks a device upload makes; a block
where the two differ is counted.

Usage: ``python tests/ng5d_damage_fuzz.py SEED TRIALS``; prints one line per codec:
``codec trials refused decoded differ``. ``bitpack`` holds brick modes 0, 1 and 3-6 (the
format 2.2 layouts), ``bitpack-2.1`` modes 0-3 (the 2.1 sparse layout, mode 2, in place
of the sparse 2.2 ones).
"""

from __future__ import annotations

import ctypes
import mmap
import sys
from typing import Any

import numpy as np

from neuroglia5d.errors import InputError
from neuroglia5d.io import ng5d_codec as codec
from neuroglia5d.io import ng5d_octree as octree

PAGE = mmap.PAGESIZE


class GuardedBuffer:
    """Writable memory of ``size`` bytes (rounded up to pages) between two pages that
    may not be read or written."""

    def __init__(self, size: int) -> None:
        self.size = -(-size // PAGE) * PAGE
        self.map = mmap.mmap(-1, self.size + 2 * PAGE)
        addr = ctypes.addressof(ctypes.c_char.from_buffer(self.map))
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        for guard in (addr, addr + PAGE + self.size):
            if libc.mprotect(ctypes.c_void_p(guard), PAGE, 0) != 0:  # PROT_NONE
                raise OSError(ctypes.get_errno(), "mprotect failed")

    def place(self, block: bytes, at_end: bool) -> memoryview:
        """``block`` copied so that its last byte is the last readable one (``at_end``),
        or its first byte the first readable one."""
        start = PAGE + (self.size - len(block) if at_end else 0)
        self.map[start:start + len(block)] = block
        return memoryview(self.map)[start:start + len(block)]


def volumes() -> dict[str, tuple[np.ndarray, tuple[int, int, int]]]:
    """Intensity volumes whose blocks hold every bitpack brick mode, and labels."""
    rng = np.random.default_rng(5)
    vol = np.zeros((8, 32, 64), np.uint16)
    vol[:4, :16, 16:32] = rng.integers(0, 200, (4, 16, 16))  # dense
    vol[:4, :16, 32:48] = rng.integers(0, 20, (4, 16, 16))  # patched: noise ...
    vol[1, 3, 40] = vol[2, 7, 45] = 3000  # ... with two bright voxels
    vol[:4, 16:, :64] = ((rng.random((4, 16, 64)) < np.repeat([0.01, 0.3, 0.3, 0.6], 16))
                         * rng.integers(1, 16, (4, 16, 64)))  # list, sparse, sparse ...
    vol[:4, 16:, 32:48] = np.minimum(vol[:4, 16:, 32:48], 7)  # ... patched, sparse
    vol[:4, 16:, 32:48].flat[[5, 400, 1000]] = 50_000
    vol[4:] = rng.poisson(300, (4, 32, 64))  # camera noise: dense and patched
    lab = np.zeros((16, 40, 40), np.uint32)
    lab[2:9, 5:30, 5:20] = 3
    lab[4:14, 20:38, 15:39] = 9
    lab[10:16, 0:12, 0:40] = rng.integers(1, 6, (6, 12, 40))  # mixed records
    return {"bitpack": (vol, (4, 16, 16)), "bitpack-2.1": (vol, (4, 16, 16)),
            "octree": (lab, octree.BRICK), "palette": (lab, (8, 8, 8))}


#: brick modes each bitpack block must hold (so that every layout gets damaged)
MODES = {"bitpack": {0, 1, 3, 4, 5, 6}, "bitpack-2.1": {0, 1, 2, 3}}


def encode(name: str, vol: np.ndarray, br: tuple[int, int, int]) -> bytes:
    """The resident block of ``vol`` in codec ``name``."""
    if name == "bitpack":
        return codec.encode_bitpack(vol, br)
    if name == "bitpack-2.1":
        return codec.encode_bitpack(vol, br, sparse_modes=(codec.MODE_SPARSE,))
    if name == "octree":
        return octree.encode_octree(vol)
    return codec.encode_palette(vol, br)


def parse(name: str, block: Any, vol: np.ndarray, br: tuple[int, int, int]) -> Any:
    """Parse a block as a reader does (the counts come from the file's header)."""
    nb = int(np.prod(codec.brick_grid(vol.shape, br)))
    if name.startswith("bitpack"):
        return codec.parse_bitpack(block, nb, int(np.prod(br)))
    if name == "octree":
        return octree.parse_octree(block, vol.shape, vol.dtype)
    return codec.parse_palette(block, nb, vol.dtype, int(np.prod(br)))


def decode(name: str, v: Any, vol: np.ndarray, br: tuple[int, int, int],
           region: tuple[slice, slice, slice] | None) -> np.ndarray:
    """Decode ``region`` (None: all) of a parsed block on the CPU."""
    if name.startswith("bitpack"):
        return codec.decode_bitpack(v, vol.shape, br, vol.dtype, region)
    if name == "octree":
        return octree.decode_octree(v, vol.shape, region)
    return codec.decode_palette(v, vol.shape, br, region)


def voxel_kernels() -> Any:
    """The GPU's flat kernels (``ng5d_gpu.bp_kernel``, ``oct_kernel``, ``pal_kernel``) as
    CPU loops: a thread per voxel, each running the shared per-voxel decode."""
    import numba

    from neuroglia5d.io._ng5d_kernels import bp_voxel, locate, pal_voxel, region_voxel
    from neuroglia5d.io._ng5d_octree_kernels import oct_voxel

    @numba.njit(cache=False)
    def bp(out: Any, z0: int, y0: int, x0: int, gy: int, gx: int, bz: int, by: int,
           bx: int, nmask: int, npre: int, modes: Any, widths: Any, bases: Any,
           offsets: Any, data: Any) -> None:
        oz, oy, ox = out.shape
        for i in range(oz * oy * ox):
            z, y, x = region_voxel(i, z0, y0, x0, oy, ox)
            b, li = locate(z, y, x, gy, gx, bz, by, bx)
            out[z - z0, y - y0, x - x0] = bp_voxel(
                li, np.int64(modes[b]), np.int64(widths[b]), np.int64(bases[b]),
                np.int64(offsets[b]), nmask, npre, data)

    @numba.njit(cache=False)
    def octv(out: Any, z0: int, y0: int, x0: int, u: int, ty: int, tx: int, nt: int,
             nn: int, sup: int, split: Any, split_rank: Any, other: Any, other_rank: Any,
             values: Any, wg: int, rec_base: Any, records: Any, palette: Any) -> None:
        oz, oy, ox = out.shape
        for i in range(oz * oy * ox):
            z, y, x = region_voxel(i, z0, y0, x0, oy, ox)
            p = oct_voxel(z, y, x, u, ty, tx, nt, nn, sup, split, split_rank, other,
                          other_rank, values, wg, rec_base, records)
            out[z - z0, y - y0, x - x0] = palette[min(p, palette.shape[0] - 1)]

    @numba.njit(cache=False)
    def pal(out: Any, z0: int, y0: int, x0: int, gy: int, gx: int, bz: int, by: int,
            bx: int, top: int, words: Any, ext_w: Any, ext_lut: Any, ext_data: Any,
            lut: Any, data: Any, palette: Any) -> None:
        oz, oy, ox = out.shape
        for i in range(oz * oy * ox):
            z, y, x = region_voxel(i, z0, y0, x0, oy, ox)
            b, li = locate(z, y, x, gy, gx, bz, by, bx)
            p = pal_voxel(li, np.int64(words[b]), top, ext_w, ext_lut, ext_data, lut, data)
            out[z - z0, y - y0, x - x0] = palette[min(p, palette.shape[0] - 1)]

    return bp, octv, pal


def decode_by_voxel(name: str, v: Any, vol: np.ndarray, br: tuple[int, int, int],
                    region: tuple[slice, slice, slice] | None) -> np.ndarray:
    """What the GPU's flat kernel computes for ``region`` (None: all), after what a
    device upload checks first (:func:`ng5d_codec.ensure_checked`)."""
    bp, octv, pal = KERNELS
    (z0, y0, x0), shp = codec.region_start_shape(vol.shape, region)
    out = np.empty(shp, vol.dtype)
    _, gy, gx = codec.brick_grid(vol.shape, br)
    bz, by, bx = br
    if name.startswith("bitpack"):
        codec.ensure_checked(v)
        nmask = (bz * by * bx + 31) // 32
        bp(out, z0, y0, x0, gy, gx, bz, by, bx, nmask, (nmask + 7) // 8, v.modes, v.widths,
           v.bases, v.offsets, v.data)
    elif name == "octree":
        octv(out, z0, y0, x0, *v.scalars()[:6], v.split, v.split_rank, v.other,
             v.other_rank, v.values, v.wg, v.rec_base, v.records, v.palette)
    else:
        top = 1 << (v.words.dtype.itemsize * 8 - 1)
        pal(out, z0, y0, x0, gy, gx, bz, by, bx, top, v.words, v.ext_w, v.ext_lut,
            v.ext_data, v.lut, v.data, v.palette)
    return out


KERNELS: Any = None


def main(seed: int, trials: int) -> None:
    global KERNELS
    KERNELS = voxel_kernels()
    rng = np.random.default_rng(seed)
    for name, (vol, br) in volumes().items():
        blob = encode(name, vol, br)
        guard = GuardedBuffer(len(blob))
        pristine = parse(name, guard.place(blob, True), vol, br)
        assert np.array_equal(decode(name, pristine, vol, br, None), vol), name
        if name in MODES and set(np.unique(pristine.modes).tolist()) != MODES[name]:
            raise AssertionError(f"{name}: brick modes {sorted(set(pristine.modes))}, "
                                 f"expected {sorted(MODES[name])}")
        refused = decoded = differ = 0
        for trial in range(trials):
            buf = bytearray(blob)
            for _ in range(int(rng.integers(1, 4))):  # 1-3 damaged bytes
                buf[int(rng.integers(len(buf)))] ^= int(rng.integers(1, 256))
            z0, y0, x0 = (int(rng.integers(s)) for s in vol.shape)
            region = (slice(z0, int(rng.integers(z0 + 1, vol.shape[0] + 1))),
                      slice(y0, int(rng.integers(y0 + 1, vol.shape[1] + 1))),
                      slice(x0, int(rng.integers(x0 + 1, vol.shape[2] + 1))))
            try:
                v = parse(name, guard.place(bytes(buf), trial % 2 == 0), vol, br)
                for r in (region, None):
                    got = decode(name, v, vol, br, r)
                    want = vol[r] if r is not None else vol
                    assert got.shape == want.shape and got.dtype == want.dtype
                    if not np.array_equal(decode_by_voxel(name, v, vol, br, r), got):
                        differ += 1
                decoded += 1
            except InputError:
                refused += 1
        print(name, trials, refused, decoded, differ, flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
