"""The .ng5d container and codecs: round trips, random access, robustness, crash safety."""

from __future__ import annotations

import importlib.util
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from neuroglia5d.io import ng5d_codec as codec
from neuroglia5d.io import ng5d_octree as octree
from neuroglia5d.io.ng5d import (
    ArraySpec,
    Ng5dError,
    Ng5dWriter,
    open_ng5d,
    recover,
)

HYP = settings(max_examples=25, deadline=None,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def roundtrip_bitpack(vol: np.ndarray, brick: tuple[int, int, int]) -> np.ndarray:
    blob = codec.encode_bitpack(vol, brick)
    nb = int(np.prod(codec.brick_grid(vol.shape, brick)))
    v = codec.parse_bitpack(blob, nb, int(np.prod(brick)))
    return codec.decode_bitpack(v, vol.shape, brick, vol.dtype)


def roundtrip_palette(vol: np.ndarray, brick: tuple[int, int, int]) -> np.ndarray:
    blob = codec.encode_palette(vol, brick)
    nb = int(np.prod(codec.brick_grid(vol.shape, brick)))
    v = codec.parse_palette(blob, nb, vol.dtype, int(np.prod(brick)))
    return codec.decode_palette(v, vol.shape, brick)


def same(a: np.ndarray, b: np.ndarray) -> bool:
    if a.dtype == np.float32:
        return np.array_equal(a.view(np.uint32), b.view(np.uint32))
    return np.array_equal(a, b)


shapes = st.tuples(st.integers(1, 11), st.integers(1, 23), st.integers(1, 29))
bricks = st.sampled_from([(4, 16, 16), (8, 8, 8), (3, 5, 7), (1, 1, 1), (2, 4, 8)])


@HYP
@given(data=st.data(), shape=shapes, brick=bricks,
       dtype=st.sampled_from([np.uint8, np.uint16, np.uint32, np.float32]))
def test_bitpack_round_trip(data, shape, brick, dtype):
    if dtype == np.float32:
        elems = st.floats(-1e6, 1e6, allow_nan=False, width=32)
    else:
        elems = st.integers(0, int(np.iinfo(dtype).max))
    vol = data.draw(hnp.arrays(dtype, shape, elements=elems))
    kind = data.draw(st.sampled_from(["any", "sparse", "outliers"]))
    if kind == "sparse":  # mostly one value: exercises the list and sparse modes
        keep = data.draw(hnp.arrays(bool, shape, elements=st.booleans()))
        vol = np.where(keep & (np.arange(vol.size).reshape(shape) % 7 == 0), vol,
                       vol.flat[0])
    elif kind == "outliers" and dtype != np.float32:
        # background subtraction's output: zeros, small values, a few bright voxels
        # (the sparse patched mode)
        seed = data.draw(st.integers(0, 2**16))
        rng = np.random.default_rng(seed)
        density = data.draw(st.sampled_from([0.02, 0.3, 0.7]))
        small = rng.integers(1, 8, shape) * (rng.random(shape) < density)
        vol = np.where(rng.random(shape) < 0.004, vol, small.astype(dtype))
    assert same(roundtrip_bitpack(vol, brick), vol)


@HYP
@given(data=st.data(), shape=shapes, brick=bricks,
       dtype=st.sampled_from([np.uint16, np.uint32, np.uint64]),
       n_values=st.sampled_from([1, 2, 3, 17, 400]))
def test_palette_round_trip(data, shape, brick, dtype, n_values):
    hi = int(np.iinfo(dtype).max)
    values = np.array(data.draw(st.lists(st.integers(0, hi), min_size=n_values,
                                         max_size=n_values)), dtype)
    pick = data.draw(hnp.arrays(np.int64, shape, elements=st.integers(0, n_values - 1)))
    vol = values[pick]
    assert np.array_equal(roundtrip_palette(vol, brick), vol)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_extremes_all_zero_all_max_single_voxel(dtype):
    top = np.finfo(np.float32).max if dtype == np.float32 else np.iinfo(dtype).max
    for vol in (np.zeros((5, 17, 19), dtype), np.full((5, 17, 19), top, dtype),
                np.full((1, 1, 1), 7, dtype)):
        assert same(roundtrip_bitpack(vol, (4, 16, 16)), vol)
    lab = np.full((9, 9, 9), np.iinfo(np.uint64).max, np.uint64)
    assert np.array_equal(roundtrip_palette(lab, (8, 8, 8)), lab)


def test_modes_and_compression_on_known_volumes():
    vol = np.zeros((8, 32, 32), np.uint16)
    blob_zero = codec.encode_bitpack(vol, (4, 16, 16))
    vol[2, 5, 5] = 1000  # one bright voxel: a list brick (its position and value)
    v = codec.parse_bitpack(codec.encode_bitpack(vol, (4, 16, 16)), 8, 1024)
    assert sorted(v.modes.tolist()) == [0] * 7 + [codec.MODE_LIST]
    b = int(np.flatnonzero(v.modes)[0])
    # header word, one 10-bit position, one 10-bit value (999 above the base plus 1)
    assert len(v.data) - 2 == 3 and int(v.data[int(v.offsets[b])]) == 1
    # all-constant bricks cost their 10-byte header only
    assert len(blob_zero) < 8 * 16 + 64
    lab = np.zeros((16, 64, 64), np.uint32)
    blob = codec.encode_palette(lab, (8, 8, 8))
    assert len(blob) < lab.nbytes / 500  # uniform bricks: one 16-bit word each


def test_region_decodes_only_what_is_asked(tmp_path):
    rng = np.random.default_rng(0)
    vol = (rng.random((13, 40, 50)) * 900).astype(np.uint16)
    lab = (rng.random((13, 40, 50)) * 5).astype(np.uint32) * 1000
    for _ in range(20):
        z0, y0, x0 = rng.integers(0, (12, 39, 49))
        z1, y1, x1 = (rng.integers(z0 + 1, 14), rng.integers(y0 + 1, 41),
                      rng.integers(x0 + 1, 51))
        r = (slice(z0, z1), slice(y0, y1), slice(x0, x1))
        v = codec.parse_bitpack(codec.encode_bitpack(vol, (4, 16, 16)),
                                int(np.prod(codec.brick_grid(vol.shape, (4, 16, 16)))), 1024)
        assert np.array_equal(codec.decode_bitpack(v, vol.shape, (4, 16, 16), np.uint16, r),
                              vol[r])
        p = codec.parse_palette(codec.encode_palette(lab, (8, 8, 8)),
                                int(np.prod(codec.brick_grid(lab.shape, (8, 8, 8)))),
                                np.uint32, 512)
        assert np.array_equal(codec.decode_palette(p, lab.shape, (8, 8, 8), r), lab[r])


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32, np.float32])
def test_patched_bricks_round_trip(dtype):
    """Camera-like noise with a few bright voxels: bricks go to the patched mode (low
    width with an escape code, exceptions by position), whole and in regions."""
    rng = np.random.default_rng(11)
    vol = rng.poisson(40, (9, 37, 45)).astype(np.float64)
    hot = rng.integers(0, vol.size, 60)
    vol.flat[hot] = 240 if dtype == np.uint8 else 60000
    vol = (vol / 7.5).astype(np.float32) if dtype == np.float32 else vol.astype(dtype)
    for br in ((4, 16, 16), (3, 5, 7)):
        nb = int(np.prod(codec.brick_grid(vol.shape, br)))
        v = codec.parse_bitpack(codec.encode_bitpack(vol, br), nb, int(np.prod(br)))
        # patched: dense (mode 3), or sparse at the brick minimum (mode 5) when its mask
        # costs less than the bit saved on every other voxel
        patched = np.isin(v.modes, (codec.MODE_PATCHED, codec.MODE_SPARSE_PATCHED))
        if dtype != np.float32:  # (float32's order-preserving map spreads the values)
            assert patched.sum() >= nb // 4
        assert same(codec.decode_bitpack(v, vol.shape, br, dtype), vol)
        r = (slice(2, 8), slice(5, 30), slice(9, 44))
        assert same(codec.decode_bitpack(v, vol.shape, br, dtype, r), vol[r])
        k = codec._kernels()  # the per-voxel function agrees (what the GPU threads run)
        nmask = (int(np.prod(br)) + 31) // 32
        b = int(np.flatnonzero(patched)[0]) if dtype != np.float32 else 0
        got = [k.bp_voxel(i, int(v.modes[b]), int(v.widths[b]), int(v.bases[b]),
                          int(v.offsets[b]), nmask, (nmask + 7) // 8, v.data)
               for i in range(int(np.prod(br)))]
        full = codec.decode_bitpack(v, vol.shape, br, dtype)
        _, gy, gx = codec.brick_grid(vol.shape, br)
        iz, iy, ix = b // (gy * gx), (b // gx) % gy, b % gx
        want = []
        for i in range(int(np.prod(br))):
            z, y, x = i // (br[1] * br[2]), (i // br[2]) % br[1], i % br[2]
            zz, yy, xx = iz * br[0] + z, iy * br[1] + y, ix * br[2] + x
            if zz < vol.shape[0] and yy < vol.shape[1] and xx < vol.shape[2]:
                want.append((i, full[zz, yy, xx]))
        u = np.array(got, np.uint64).astype(np.uint32)
        vals = u.view(np.float32) if dtype == np.float32 else u
        if dtype == np.float32:
            vals = codec.ordered_to_float(u)
        assert all(vals[i] == w for i, w in want)


def test_damaged_patched_bricks_are_refused():
    rng = np.random.default_rng(12)
    vol = rng.poisson(40, (4, 16, 16)).astype(np.uint16)
    vol[1, 2, 3] = 60000
    buf = bytearray(codec.encode_bitpack(vol, (4, 16, 16)))
    v = codec.parse_bitpack(buf, 1, 1024)
    assert v.modes[0] == codec.MODE_PATCHED
    off = int(v.offsets[0])
    assert (int(v.data[off]) >> 8) & 0xFF == 1  # one exception
    v.data[off + 1] ^= 1  # its position: no longer on the escape code
    with pytest.raises(codec.InputError, match="exception positions"):
        codec._check_bitpack(v, 1024)
    v.data[off + 1] ^= 1
    v.data[off] += 1 << 8  # two exceptions announced, one escape code
    with pytest.raises(codec.InputError, match="patched brick"):
        codec._check_bitpack(v, 1024)


def test_frames_zstd_barely_shrinks_are_stored_verbatim():
    rng = np.random.default_rng(13)
    raw = rng.integers(0, 256, 300_000).astype(np.uint8)
    raw[::10] = 0  # zstd saves about 4 %
    block = raw.tobytes()
    tight = codec.store_zstd(block, min_gain=0.10)
    loose = codec.store_zstd(block, min_gain=0.0)
    rlen, _, lens, _ = codec.stored_layout(tight)
    assert rlen == len(block) and int(lens.sum()) == len(block)  # all verbatim
    assert len(loose) < len(tight)  # zstd still saves a little
    for stored in (tight, loose):
        assert codec.inflate_zstd(stored).tobytes() == block
    # all verbatim: the resident block is the stored bytes, in place
    lz = codec.LazyBlock(tight)
    assert lz.complete and np.shares_memory(lz.buf, np.frombuffer(tight, np.uint8))
    assert not codec.LazyBlock(loose).complete


def test_a_block_zstd_barely_shrinks_is_stored_verbatim_whole_and_read_in_place():
    rng = np.random.default_rng(14)
    vol = rng.poisson(300, (8, 64, 64)).astype(np.uint16)  # camera noise: dense bricks
    vol[0, 0, :5] = 4000
    block = codec.encode_bitpack(vol, (4, 16, 16))
    head = codec.store_zstd(block, frame=4096, min_gain=0.0)
    rlen, _, lens, _ = codec.stored_layout(head)
    assert int(lens[0]) < 4096  # zstd shrinks the first frame (the bricks' headers) ...
    stored = codec.store_zstd(block, frame=4096, min_gain=0.10)
    rlen, _, lens, _ = codec.stored_layout(stored)
    assert int(lens.sum()) == rlen == len(block)  # ... but not the block by 10 %: verbatim
    nb = int(np.prod(codec.brick_grid(vol.shape, (4, 16, 16))))
    v = codec.parse_bitpack(codec.LazyBlock(stored), nb, 1024)
    assert v.lazy is not None and v.lazy.complete and not v.lazy.buf.flags.writeable
    assert np.shares_memory(v.data, np.frombuffer(stored, np.uint8))
    assert np.array_equal(codec.decode_bitpack(v, vol.shape, (4, 16, 16), vol.dtype), vol)
    r = (slice(1, 7), slice(5, 50), slice(3, 61))
    assert np.array_equal(codec.decode_bitpack(v, vol.shape, (4, 16, 16), vol.dtype, r),
                          vol[r])
    # a misaligned copy of the stored bytes is copied into an aligned resident buffer
    odd = np.frombuffer(b"\0" + stored, np.uint8)[1:]
    assert odd.ctypes.data % 8 != 0
    lz = codec.LazyBlock(memoryview(odd))
    assert not lz.complete and lz.buf.ctypes.data % 8 == 0
    v = codec.parse_bitpack(lz, nb, 1024)
    assert np.array_equal(codec.decode_bitpack(v, vol.shape, (4, 16, 16), vol.dtype), vol)


def roundtrip_octree(vol: np.ndarray, region: tuple[slice, slice, slice] | None = None,
                     levels: int = octree.LEVELS) -> np.ndarray:
    v = octree.parse_octree(octree.encode_octree(vol, levels), vol.shape, vol.dtype)
    return octree.decode_octree(v, vol.shape, region)


def _blobs(shape, rng, n_values):
    """Label blobs on a background (what segmentations look like) and random voxels."""
    vol = np.zeros(shape, np.int64)
    for k in range(1, n_values):
        c = [rng.integers(0, s) for s in shape]
        r = [max(1, int(rng.integers(1, max(2, s // 3 + 1)))) for s in shape]
        vol[tuple(slice(max(0, a - b), a + b) for a, b in zip(c, r, strict=True))] = k
    return vol


@HYP
@given(data=st.data(), shape=shapes, dtype=st.sampled_from([np.uint8, np.uint16, np.uint32,
                                                            np.uint64]),
       n_values=st.sampled_from([1, 2, 3, 5, 17, 300]), blobs=st.booleans(),
       levels=st.sampled_from([0, 1, 3]))
def test_octree_round_trip(data, shape, dtype, n_values, blobs, levels):
    hi = int(np.iinfo(dtype).max)
    n_values = min(n_values, hi + 1)
    values = np.array(data.draw(st.lists(st.integers(0, hi), min_size=n_values,
                                         max_size=n_values)), dtype)
    if blobs:
        pick = _blobs(shape, np.random.default_rng(data.draw(st.integers(0, 99))), n_values)
    else:
        pick = data.draw(hnp.arrays(np.int64, shape, elements=st.integers(0, n_values - 1)))
    vol = values[pick]
    assert np.array_equal(roundtrip_octree(vol, levels=levels), vol)
    z, y, x = (data.draw(st.integers(0, s - 1)) for s in shape)
    r = (slice(z, data.draw(st.integers(z + 1, shape[0]))),
         slice(y, data.draw(st.integers(y + 1, shape[1]))),
         slice(x, data.draw(st.integers(x + 1, shape[2]))))
    assert np.array_equal(roundtrip_octree(vol, r, levels), vol[r])


def test_octree_extremes_and_known_sizes():
    for vol in (np.zeros((9, 17, 19), np.uint32),
                np.full((9, 9, 9), np.iinfo(np.uint64).max, np.uint64),
                np.full((1, 1, 1), 7, np.uint8)):
        assert np.array_equal(roundtrip_octree(vol), vol)
    # a uniform volume: the head, the palette and a handful of words
    big = np.zeros((64, 256, 256), np.uint32)
    assert len(octree.encode_octree(big)) < 200
    # one voxel set: one mixed brick whose record keeps a single 2^3 cell's 8 voxels;
    # every tree level above it splits once: 1 x 4 x 4 top nodes + 3 levels x 8 children
    big[33, 100, 7] = 5
    blob = octree.encode_octree(big)
    v = octree.parse_octree(blob, big.shape, np.uint32)
    assert (v.n_records, v.n_nodes, v.split_upper) == (1, 16 + 3 * 8, 3)
    # record: head 1 + table 1 + m1 1 + M2 1 + values ceil((7 + 7 + 8) / 8) = 3 bytes
    assert list(v.rec_base) == [0, 7]
    assert np.array_equal(octree.decode_octree(v, big.shape), big)
    # labels with 4 values in one brick: 2-bit local indices; 300 values: 16 bits
    lab = np.arange(8 * 8 * 8, dtype=np.uint32).reshape(8, 8, 8) % 4
    v = octree.parse_octree(octree.encode_octree(lab), lab.shape, np.uint32)
    assert v.records[0] & 7 == 1 and np.array_equal(octree.decode_octree(v, lab.shape), lab)
    lab = (np.arange(512, dtype=np.uint32).reshape(8, 8, 8) % 300) + 1
    v = octree.parse_octree(octree.encode_octree(lab), lab.shape, np.uint32)
    assert v.records[0] & 7 == 4 and v.records[0] >> 4 == 15  # w = 16, m in two bytes
    assert np.array_equal(octree.decode_octree(v, lab.shape), lab)


def test_octree_voxel_function_matches_the_brick_decoder():
    from neuroglia5d.io import _ng5d_octree_kernels as k

    rng = np.random.default_rng(5)
    lab = _blobs((20, 37, 35), rng, 9).astype(np.uint32)
    lab[0:3, 0:4, 30:35] = rng.integers(0, 12, (3, 4, 5))
    v = octree.parse_octree(octree.encode_octree(lab, levels=2), lab.shape, np.uint32)
    u, ty, tx, nt, nn, sup, wg = v.scalars()
    got = np.array([v.palette[k.oct_voxel(z, y, x, u, ty, tx, nt, nn, sup, v.split,
                                          v.split_rank, v.other, v.other_rank, v.values,
                                          wg, v.rec_base, v.records)]
                    for z, y, x in np.ndindex(lab.shape)]).reshape(lab.shape)
    assert np.array_equal(got, lab)


def test_damaged_octree_blocks_are_refused():
    lab = np.zeros((16, 40, 40), np.uint32)
    lab[2:9, 5:30, 5:20] = 3
    lab[4:14, 20:38, 15:39] = 9
    good = octree.encode_octree(lab)
    v = octree.parse_octree(good, lab.shape, np.uint32)
    head = 12 * 4
    npal_end = head + 8  # palette: 3 uint32 values, padded to 16 bytes
    split_pos = npal_end + 8
    cases = {
        "top grid": lambda b: struct.pack_into("<I", b, 16, 9),  # ty
        "palette entries": lambda b: struct.pack_into("<I", b, 40, 1),  # wg = 1 for 3
        "ranks do not match": lambda b: b.__setitem__(split_pos, b[split_pos] ^ 0x01),
        "node counts": lambda b: struct.pack_into("<I", b, 28, v.split_upper + 1),
        # a record's m1 byte: its length changes, its group no longer ends where it should
        "does not fit": lambda b: b.__setitem__(len(b) - 8 - int(v.rec_base[-1]) + 2,
                                                b[len(b) - 8 - int(v.rec_base[-1]) + 2] ^ 0xFF),
    }
    for msg, damage in cases.items():
        buf = bytearray(good)
        damage(buf)
        with pytest.raises(codec.InputError, match=msg):
            octree.parse_octree(bytes(buf), lab.shape, np.uint32)
    with pytest.raises(codec.InputError, match="top grid"):
        octree.parse_octree(good, (16, 40, 200), np.uint32)  # another shape than the data's
    with pytest.raises(codec.InputError, match="truncated"):
        octree.parse_octree(good[:-20], lab.shape, np.uint32)


# --------------------------------------------------------------------------- container
def write_file(path: Path, T=4, C=1, finalize=True, brick=None):
    rng = np.random.default_rng(1)
    inten = (rng.random((T, C, 9, 21, 30)) * 700).astype(np.uint16)
    lab = np.zeros((T, C, 9, 21, 30), np.uint32)
    lab[:, :, 2:6, 3:12, 4:20] = 11
    lab[:, :, 4:9, 10:21, 15:30] = 2**31 + 5
    specs = [ArraySpec.make("intensity", "intensity", np.uint16, inten.shape, brick),
             ArraySpec.make("labels", "labels", np.uint32, lab.shape)]
    w = Ng5dWriter(path, specs, voxel_size_um=(1.5, 0.5, 0.5), offset_zyx=(0, 7, 9),
                   attributes={"note": "test"})
    for t in range(T):
        w.append("intensity", t, inten[t])
        w.append("labels", t, lab[t])
    if finalize:
        w.finalize()
    else:
        w.abort()
    return inten, lab


def test_container_round_trip_and_metadata(tmp_path):
    p = tmp_path / "a.ng5d"
    inten, lab = write_file(p, C=2)
    assert not (tmp_path / "a.ng5d.partial").exists()
    f = open_ng5d(p)
    assert f.complete and f.voxel_size_um == (1.5, 0.5, 0.5) and f.offset_zyx == (0, 7, 9)
    a, b = f.arrays["intensity"], f.arrays["labels"]
    assert a.shape == inten.shape and a.dtype == np.uint16  # (T, C, Z, Y, X) with C = 2
    assert np.array_equal(np.asarray(a), inten) and np.array_equal(b[...], lab)
    assert np.array_equal(a[2, 1, 3:7, ::3, 28:2:-5], inten[2, 1, 3:7, ::3, 28:2:-5])
    assert f.header["attributes"] == {"note": "test"}


def test_single_channel_arrays_are_tzyx_and_slice_like_numpy(tmp_path):
    p = tmp_path / "b.ng5d"
    inten, _ = write_file(p)
    f = open_ng5d(p)
    a = f.arrays["intensity"]
    assert a.shape == (4, 9, 21, 30) and a.ndim == 4
    ref = inten[:, 0]
    for key in [(1, 3), (slice(None), 4), (Ellipsis, 5), (-1, -2, slice(2, 19, 4), 7),
                (slice(3, 0, -1), slice(None), 0)]:
        assert np.array_equal(a[key], ref[key]), key


def test_opening_reads_once_and_keeps_no_file_open(tmp_path):
    p = tmp_path / "c.ng5d"
    write_file(p)
    fd_dir = Path("/proc/self/fd")
    before = len(list(fd_dir.iterdir()))
    f = open_ng5d(p)
    f.arrays["labels"][...]
    assert len(list(fd_dir.iterdir())) == before
    p.unlink()  # everything is in memory: still readable
    assert f.arrays["intensity"][1, 2].shape == (21, 30)


def test_latest_record_wins(tmp_path):
    p = tmp_path / "d.ng5d"
    spec = ArraySpec.make("labels", "labels", np.uint32, (2, 1, 4, 8, 8))
    w = Ng5dWriter(p, [spec])
    w.append("labels", 0, np.full((4, 8, 8), 1, np.uint32))
    w.append("labels", 1, np.full((4, 8, 8), 2, np.uint32))
    w.append("labels", 0, np.full((4, 8, 8), 3, np.uint32))  # an edit
    w.abort()
    f = open_ng5d(tmp_path / "d.ng5d.partial")
    assert not f.complete and f.arrays["labels"][0].max() == 3
    out = recover(tmp_path / "d.ng5d.partial")
    g = open_ng5d(out)
    assert g.complete and g.arrays["labels"][0].max() == 3 and g.arrays["labels"][1].max() == 2


def test_wrong_magic_version_and_truncated_header(tmp_path):
    p = tmp_path / "e.ng5d"
    write_file(p)
    data = p.read_bytes()
    bad = tmp_path / "bad.ng5d"
    bad.write_bytes(b"XXXX" + data[4:])
    with pytest.raises(Ng5dError, match=r"not an \.ng5d file"):
        open_ng5d(bad)
    bad.write_bytes(data[:8] + struct.pack("<H", 9) + data[10:])
    with pytest.raises(Ng5dError, match=r"version 9\.2 is not supported"):
        open_ng5d(bad)
    bad.write_bytes(data[:40])
    with pytest.raises(Ng5dError, match="truncated inside the header"):
        open_ng5d(bad)
    bad.write_bytes(data[:20] + bytes([data[20] ^ 0xFF]) + data[21:])
    with pytest.raises(Ng5dError, match="header checksum"):
        open_ng5d(bad)


def test_flipped_byte_names_the_record_and_the_rest_stays_readable(tmp_path):
    p = tmp_path / "f.ng5d"
    inten, lab = write_file(p)
    f = open_ng5d(p)
    i_lab = f.array_index("labels")
    e = f.entries[(i_lab, 2)]
    data = bytearray(p.read_bytes())
    data[e.offset + 32 + e.length // 2] ^= 0x10
    p.write_bytes(bytes(data))
    g = open_ng5d(p)
    with pytest.raises(Ng5dError, match=r"labels t=2: checksum mismatch"):
        g.arrays["labels"][2]
    assert np.array_equal(g.arrays["labels"][3], lab[3, 0])
    assert np.array_equal(g.arrays["intensity"][...], inten[:, 0])
    info = g.info()
    assert [a["checksum_errors"] for a in info["arrays"]] == [[], [2]]


def test_header_that_does_not_match_the_data(tmp_path):
    p = tmp_path / "g.ng5d"
    write_file(p)
    data = p.read_bytes()
    (hlen,) = struct.unpack_from("<I", data, 12)
    header = json.loads(data[16:16 + hlen])
    header["arrays"][1]["shape"][3] = 80  # labels Y: 21 -> 80, another top grid (octree)
    hj = json.dumps(header).encode()
    new = data[:12] + struct.pack("<I", len(hj)) + hj + struct.pack("<I", zlib.crc32(hj))
    # records keep their absolute offsets only if the header keeps its length: rebuild by
    # scanning instead (drop the old footer)
    body = data[16 + hlen + 4:]
    (tmp_path / "g2.ng5d.partial").write_bytes(new + body[:-16])
    f = open_ng5d(tmp_path / "g2.ng5d.partial")
    with pytest.raises(Ng5dError, match="does not match the data"):
        f.arrays["labels"][0]


_KILL = r"""
import os, sys
import numpy as np
from neuroglia5d.io.ng5d import ArraySpec, Ng5dWriter
rng = np.random.default_rng(3)
vol = (rng.random((6, 9, 21, 30)) * 700).astype(np.uint16)
np.save(sys.argv[2], vol)
w = Ng5dWriter(sys.argv[1], [ArraySpec.make("intensity", "intensity", np.uint16,
                                            (6, 1, 9, 21, 30))])
for t in range(6):
    w.append("intensity", t, vol[t])
    if t == 2:
        w.fh.write(b"NG5R" + b"\x00" * 10)  # the start of a record that never finishes
        w.fh.flush()
        os.kill(os.getpid(), 9)
"""


def test_kill_9_mid_stream_then_info_and_recover(tmp_path):
    path = tmp_path / "k.ng5d"
    proc = subprocess.run([sys.executable, "-c", _KILL, str(path), str(tmp_path / "v.npy")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr
    part = tmp_path / "k.ng5d.partial"
    assert part.exists() and not path.exists()
    vol = np.load(tmp_path / "v.npy")
    f = open_ng5d(part)
    assert not f.complete and f.timepoints("intensity") == [0, 1, 2]
    for t in range(3):
        assert np.array_equal(f.arrays["intensity"][t], vol[t])
    cli = [sys.executable, "-m", "neuroglia5d.cli"]
    info = subprocess.run([*cli, "info", str(part)], capture_output=True, text=True)
    assert "UNFINISHED" in info.stdout and "timepoints 3/6" in info.stdout
    rec = subprocess.run([*cli, "recover", str(part)], capture_output=True, text=True)
    assert rec.returncode == 0, rec.stderr
    g = open_ng5d(path)
    assert g.complete and g.timepoints("intensity") == [0, 1, 2]
    assert np.array_equal(g.arrays["intensity"][2], vol[2])
    assert not part.exists()


def test_resume_appends_after_the_last_complete_record(tmp_path):
    p = tmp_path / "r.ng5d"
    spec = ArraySpec.make("labels", "labels", np.uint32, (3, 1, 4, 8, 8))
    w = Ng5dWriter(p, [spec])
    w.append("labels", 0, np.full((4, 8, 8), 5, np.uint32))
    w.fh.write(b"NG5R garbage")  # torn tail
    w.abort()
    w2 = Ng5dWriter(p, [spec], resume=True)
    assert w2.completed("labels") == {0}
    w2.append("labels", 1, np.full((4, 8, 8), 6, np.uint32))
    w2.append("labels", 2, np.full((4, 8, 8), 7, np.uint32))
    w2.finalize()
    f = open_ng5d(p)
    assert f.complete and [int(f.arrays["labels"][t].max()) for t in range(3)] == [5, 6, 7]


def test_finalize_refuses_missing_timepoints(tmp_path):
    spec = ArraySpec.make("labels", "labels", np.uint32, (3, 1, 4, 8, 8))
    w = Ng5dWriter(tmp_path / "m.ng5d", [spec])
    w.append("labels", 0, np.zeros((4, 8, 8), np.uint32))
    from neuroglia5d.errors import OutputError

    with pytest.raises(OutputError, match="2 timepoint record"):
        w.finalize()
    w.abort()


GPU_CHECK = Path(__file__).with_name("ng5d_gpu_check.py")


def test_gpu_kernels_under_the_cuda_simulator_match_the_cpu_decoder():
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    proc = subprocess.run([sys.executable, str(GPU_CHECK)], capture_output=True, text=True,
                          env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["True", "40"]


@pytest.mark.skipif(importlib.util.find_spec("numba_cuda") is None,
                    reason="numba-cuda (the test extra) is not installed")
def test_gpu_kernels_compile_to_ptx_for_every_launch():
    """What the simulator cannot check: numba-cuda types each kernel with the argument
    types of its launches, NVVM compiles it (no GPU needed), and its PTX parameters are
    the 8-byte fields the GPU launcher packs (the script raises otherwise)."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env.update(NG5D_XP="ptx", NG5D_PTX_CC="90")
    proc = subprocess.run([sys.executable, str(GPU_CHECK)], capture_output=True, text=True,
                          env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    # 3 bitpack variants (uint16, uint8 and uint32 output; float32 decodes as uint32
    # bits) of the two bitpack kernels, one of each label kernel
    assert lines[0] == "compiled 9"
    kernels = {ln.split()[0] for ln in lines[1:]}
    assert kernels == {"bp_brick_kernel", "bp_kernel", "oct_brick_kernel", "oct_kernel",
                       "pal_kernel"}


def test_edit_a_tile_then_save_appends_and_survives_reopening(tmp_path):
    p = tmp_path / "edit.ng5d"
    _, lab = write_file(p)
    size0 = p.stat().st_size
    f = open_ng5d(p)
    region = (slice(0, 8), slice(0, 16), slice(8, 24))  # brick-aligned tile
    tile = f.arrays["labels"].decode_tile(1, region)
    assert tile.flags.writeable and np.array_equal(tile, lab[1, 0][region])
    tile[tile == 11] = 77
    f.write_tile("labels", 1, region, tile)
    assert f.dirty
    want = lab[1, 0].copy()
    want[region] = tile
    assert np.array_equal(f.arrays["labels"][1], want)  # reads see the edit before saving
    f.save()
    assert not f.dirty and p.stat().st_size > size0
    g = open_ng5d(p)
    assert g.complete
    assert np.array_equal(g.arrays["labels"][1], want)
    assert np.array_equal(g.arrays["labels"][2], lab[2, 0])  # untouched timepoints
    # a scan (no footer) finds the edited record too: the latest wins
    data = p.read_bytes()[:-16]
    (tmp_path / "scan.ng5d.partial").write_bytes(data)
    h = open_ng5d(tmp_path / "scan.ng5d.partial")
    assert not h.complete and np.array_equal(h.arrays["labels"][1], want)


# --------------------------------------------------------------------------- storage tier
def test_zstd_storage_frames_verbatim_and_damage(monkeypatch):
    rng = np.random.default_rng(5)
    noise = rng.integers(0, 256, 5000, dtype=np.uint8).tobytes()  # incompressible
    block = noise + bytes(7000)  # then highly compressible
    stored = codec.store_zstd(block, frame=2048)
    rlen, frame, lens, _ = codec.stored_layout(stored)
    assert (rlen, frame, len(lens)) == (12000, 2048, 6)
    assert lens[0] == 2048 and lens[1] == 2048  # verbatim: zstd would not shrink them
    assert lens[-1] < 100
    for threads in (1, 2):
        assert codec.inflate_zstd(stored, threads).tobytes() == block
    bad = bytearray(stored)
    bad[-3] ^= 0xFF  # inside the last zstd frame
    with pytest.raises(codec.InputError, match="frame 5"):
        codec.inflate_zstd(bytes(bad), 1)
    with pytest.raises(codec.InputError, match=r"frame table|truncated"):
        codec.inflate_zstd(stored[:40], 1)


def test_plain_storage_and_version_1_files_stay_readable(tmp_path):
    from tests.ng5d_spec_reader import read_ng5d

    rng = np.random.default_rng(2)
    inten = rng.integers(0, 900, (2, 1, 5, 20, 33), dtype=np.uint16)
    lab = (rng.random((2, 1, 5, 20, 33)) * 4).astype(np.uint32)
    p = tmp_path / "plain.ng5d"
    w = Ng5dWriter(p, [ArraySpec.make("intensity", "intensity", np.uint16, inten.shape,
                                      storage="plain"),
                       ArraySpec.make("labels", "labels", np.uint32, lab.shape,
                                      storage="plain")])
    for t in range(2):
        w.append("intensity", t, inten[t])
        w.append("labels", t, lab[t])
    w.finalize()
    # the same file as a 1.0 writer made it: version 1.0, no "storage" keys (same length)
    data = bytearray(p.read_bytes())
    (hlen,) = struct.unpack_from("<I", data, 12)
    h = json.loads(data[16:16 + hlen])
    h["version"] = [1, 0]
    for a in h["arrays"]:
        del a["storage"]
    hj = json.dumps(h, sort_keys=True).encode().ljust(hlen)
    data[8:12] = struct.pack("<HH", 1, 0)
    data[16:16 + hlen] = hj
    data[16 + hlen:20 + hlen] = struct.pack("<I", zlib.crc32(hj))
    v1 = tmp_path / "v1.ng5d"
    v1.write_bytes(bytes(data))
    for path in (p, v1):
        f = open_ng5d(path)
        assert [s.storage for s in f.specs.values()] == ["plain", "plain"]
        assert np.array_equal(f.arrays["intensity"][...], inten[:, 0])
        assert np.array_equal(f.arrays["labels"][...], lab[:, 0])
        out = read_ng5d(path)
        assert np.array_equal(out["arrays"]["labels"], lab)
    info = open_ng5d(p).info()["arrays"][1]
    assert info["resident_bytes"] == info["compressed_bytes"] - 2 * 16  # payload heads


def test_info_reports_stored_and_resident_sizes(tmp_path):
    lab = np.zeros((1, 1, 16, 64, 64), np.uint32)
    lab[0, 0, 3:9, 10:40, 5:50] = 7
    p = tmp_path / "z.ng5d"
    w = Ng5dWriter(p, [ArraySpec.make("labels", "labels", np.uint32, lab.shape)])
    w.append("labels", 0, lab[0])
    w.finalize()
    a = open_ng5d(p).info()["arrays"][0]
    resident = len(octree.encode_octree(lab[0, 0]))
    assert a["storage"] == "zstd" and a["resident_bytes"] == resident
    assert a["compressed_bytes"] < resident  # the zstd tier pays on labels


def four_sparse_bricks() -> np.ndarray:
    """Four 4×16×16 bricks mostly at zero: 1 % of voxels set (a list brick), 30 % with
    values 1-15 (sparse), 30 % with values 1-7 and three bright voxels (sparse patched),
    and 60 % (sparse)."""
    rng = np.random.default_rng(21)
    dens = np.repeat([0.01, 0.3, 0.3, 0.6], 16)[None, None, :]
    vol = ((rng.random((4, 16, 64)) < dens)
           * rng.integers(1, 16, (4, 16, 64))).astype(np.uint16)
    vol[:, :, 32:48] = np.minimum(vol[:, :, 32:48], 7)
    vol[:, :, 32:48].flat[[5, 400, 1000]] = 50_000
    return vol


def test_sparse_modes_of_format_2_2_round_trip_and_match_the_voxel_function():
    """List, packed sparse and sparse patched bricks (format 2.2) decode whole, by region
    and voxel by voxel (what the GPU threads run) to the volume, smaller than 2.1's mode 2,
    which still decodes."""
    vol = four_sparse_bricks()
    br = (4, 16, 16)
    blob = codec.encode_bitpack(vol, br)
    old = codec.encode_bitpack(vol, br, sparse_modes=(codec.MODE_SPARSE,))
    v = codec.parse_bitpack(blob, 4, 1024)
    assert list(v.modes) == [codec.MODE_LIST, codec.MODE_SPARSE_PACKED,
                             codec.MODE_SPARSE_PATCHED, codec.MODE_SPARSE_PACKED]
    vo = codec.parse_bitpack(old, 4, 1024)
    assert list(vo.modes) == [codec.MODE_PATCHED] + [codec.MODE_SPARSE] * 3
    # a list of 10-bit positions instead of a dense brick with exceptions, one word of
    # packed prefix counts instead of four, 3-bit values with 3 exceptions, not 16-bit ones
    assert len(blob) < len(old) - 4 * (32 + 3 * 4)
    for p in (v, vo):
        assert np.array_equal(codec.decode_bitpack(p, vol.shape, br, vol.dtype), vol)
        r = (slice(1, 4), slice(3, 14), slice(5, 60))
        assert np.array_equal(codec.decode_bitpack(p, vol.shape, br, vol.dtype, r), vol[r])
    k = codec._kernels()
    for b in range(4):
        got = [k.bp_voxel(i, int(v.modes[b]), int(v.widths[b]), int(v.bases[b]),
                          int(v.offsets[b]), 32, 4, v.data) for i in range(1024)]
        assert np.array_equal(np.array(got), vol[:, :, 16 * b:16 * (b + 1)].ravel())


def test_damaged_sparse_modes_of_format_2_2_are_refused():
    vol = four_sparse_bricks()
    v = codec.parse_bitpack(bytearray(codec.encode_bitpack(vol, (4, 16, 16))), 4, 1024)
    o_list, o_sp, o_pat = (int(v.offsets[b]) for b in range(3))
    codec._check_bitpack(v, 1024)
    cases = [
        (o_sp + 32, 1, "prefix counts do not match"),  # packed count of group 1
        (o_list, 0xFFFF, "list brick's header or values do not fit"),  # count > 1024
        (o_list, 1 << 16, "list brick's header or values do not fit"),  # reserved bits
        (o_list + 1, 0x3FF, "list brick's positions are not increasing"),  # position 0
        (o_pat, 1 << 7, "patched brick's header or exceptions do not fit"),  # width 32+
        (o_pat + 1 + 32 + 1, 1, "exception positions do not match"),  # a rank moved
    ]
    for word, flip, message in cases:
        v.data[word] ^= flip
        with pytest.raises(codec.InputError, match=message):
            codec._check_bitpack(v, 1024)
        v.data[word] ^= flip
    codec._check_bitpack(v, 1024)


def test_damaged_sparse_bricks_are_refused():
    vol = np.zeros((4, 16, 32), np.uint16)
    vol[0:2, 0:10, 0:15] = 500  # 300 bright voxels per brick: too many exceptions for the
    vol[2:4, 0:10, 16:31] = 7  # patched mode, too few for dense: both bricks sparse
    # the word-per-count prefixes of format 2.1 (mode 2)
    buf = bytearray(codec.encode_bitpack(vol, (4, 16, 16), sparse_modes=(codec.MODE_SPARSE,)))
    v = codec.parse_bitpack(buf, 2, 1024)
    assert list(v.modes) == [codec.MODE_SPARSE] * 2
    nmask = 32
    v.data[int(v.offsets[1]) + nmask + 1] += 1  # a prefix count of brick 1
    with pytest.raises(codec.InputError, match="prefix counts do not match"):
        codec._check_bitpack(v, 1024)
    # stored with zstd and inflated lazily: found when the brick is first decoded
    lz = codec.parse_bitpack(codec.LazyBlock(codec.store_zstd(bytes(buf))), 2, 1024)
    assert np.array_equal(codec.decode_bitpack(lz, vol.shape, (4, 16, 16), np.uint16,
                                               (slice(0, 4), slice(0, 16), slice(0, 16))),
                          vol[:, :, :16])
    with pytest.raises(codec.InputError, match="prefix counts do not match"):
        codec.decode_bitpack(lz, vol.shape, (4, 16, 16), np.uint16)
    v.data[int(v.offsets[1]) + nmask + 1] -= 1
    codec._check_bitpack(v, 1024)
    v.offsets[1] = len(v.data) - 2  # brick 1's mask would run past the data
    with pytest.raises(codec.InputError, match="mask lies past the end"):
        codec._check_bitpack(v, 1024)


@pytest.mark.parametrize("grid_x", [2, 1024])  # on the calling thread; on numba's threads
def test_brick_data_is_checked_by_the_first_decode_that_reads_it(grid_x):
    """The parser checks the brick headers; a sparse brick's data is checked by the decode
    that first reads it (in the same pass), once. A damaged one is refused by every decode
    that needs it and by a device upload; the other bricks still decode."""
    from neuroglia5d.io.ng5d_gpu import DeviceVolume

    vol = np.zeros((4, 16, 16 * grid_x), np.uint16)
    vol[0:2, 0:10, 0:15] = 500  # brick 0: sparse
    vol[2:4, 0:10, -15:] = 7  # the last brick: sparse
    br = (4, 16, 16)
    buf = bytearray(codec.encode_bitpack(vol, br, sparse_modes=(codec.MODE_SPARSE,)))
    v = codec.parse_bitpack(buf, grid_x, 1024)
    assert list(v.modes[[0, -1]]) == [codec.MODE_SPARSE] * 2
    assert not v.checked.any()  # nothing checked by the parse
    first = (slice(0, 4), slice(0, 16), slice(0, 16))
    assert np.array_equal(codec.decode_bitpack(v, vol.shape, br, np.uint16, first),
                          vol[first])
    assert v.checked[0] == 1 and not v.checked[1:].any()
    v.data[int(v.offsets[-1]) + 32 + 1] += 1  # a prefix count of the last brick
    for _ in range(2):
        with pytest.raises(codec.InputError, match="prefix counts do not match"):
            codec.decode_bitpack(v, vol.shape, br, np.uint16)
    assert v.checked[-1] == 0
    # the dense or constant bricks between need no check; brick 0 is not checked again
    assert np.array_equal(codec.decode_bitpack(v, vol.shape, br, np.uint16, first),
                          vol[first])
    with pytest.raises(codec.InputError, match="prefix counts do not match"):
        DeviceVolume(codec.parse_bitpack(buf, grid_x, 1024), np)
    v.data[int(v.offsets[-1]) + 32 + 1] -= 1
    assert np.array_equal(codec.decode_bitpack(v, vol.shape, br, np.uint16), vol)
    assert v.checked[[0, -1]].all()
    DeviceVolume(codec.parse_bitpack(buf, grid_x, 1024), np)


def test_randomly_damaged_blocks_are_refused_or_decoded_without_reading_past_them():
    """1-3 damaged bytes in bitpack (2.2 and 2.1 layouts), octree and palette blocks, each
    block ending right before, or starting right after, a page no one may read, in a
    subprocess (a read outside the block ends it with SIGSEGV): every block is refused or
    decodes to the region's shape, and the per-voxel decode of the GPU's flat kernels
    (run on the CPU) gives the same values. With the bitpack checks disabled (parser and
    decode) the same script ends in SIGSEGV (tried by hand)."""
    proc = subprocess.run([sys.executable, str(Path(__file__).with_name(
        "ng5d_damage_fuzz.py")), "7", "1000"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    rows = {r.split()[0]: [int(x) for x in r.split()[1:]] for r in proc.stdout.splitlines()}
    assert set(rows) == {"bitpack", "bitpack-2.1", "octree", "palette"}
    for trials, refused, decoded, differ in rows.values():
        assert trials == refused + decoded == 1000 and refused > 0 and decoded > 0
        # the GPU's per-voxel decode gives what the CPU's brick decode gives, on damaged
        # blocks too (an escape code that no exception names stays the escape code)
        assert differ == 0


def test_brick_headers_that_do_not_fit_are_refused():
    """Every header check of a bitpack block, on one brick of four (constant, dense,
    sparse, patched), names what is wrong."""
    rng = np.random.default_rng(8)
    vol = np.zeros((4, 16, 64), np.uint16)
    vol[:, :, 16:32] = rng.integers(0, 200, (4, 16, 16))  # dense
    vol[0:2, 0:10, 32:47] = 500  # sparse
    vol[:, :, 48:] = rng.integers(0, 20, (4, 16, 16))  # camera-like noise ...
    vol[1, 3, 50] = vol[2, 7, 60] = 3000  # ... with two bright voxels: patched
    v = codec.parse_bitpack(bytearray(codec.encode_bitpack(vol, (4, 16, 16))), 4, 1024)
    assert list(v.modes) == [0, 1, codec.MODE_SPARSE_PACKED, 3]
    end = len(v.data) - 2
    for brick, field, value, message in [
            (0, "modes", 7, "unknown brick mode 7"),
            (1, "widths", 33, "wider than 32 bits"),
            (1, "offsets", end, "dense brick's data lies past"),
            (2, "offsets", end, "sparse brick's mask lies past"),
            (3, "offsets", end, "patched brick's low values lie past")]:
        arr = getattr(v, field)
        keep = arr[brick]
        arr[brick] = value
        with pytest.raises(codec.InputError, match=message):
            codec._check_bitpack(v, 1024)
        arr[brick] = keep
    codec._check_bitpack(v, 1024)
    v.modes[2], v.offsets[2] = codec.MODE_LIST, end + 1  # a list brick's header word
    with pytest.raises(codec.InputError, match="list brick's header lies past"):
        codec._check_bitpack(v, 1024)


def test_inflated_blocks_are_kept_within_the_budget(tmp_path):
    rng = np.random.default_rng(3)
    inten = rng.integers(0, 3000, (4, 1, 8, 32, 32), dtype=np.uint16)
    p = tmp_path / "b.ng5d"
    w = Ng5dWriter(p, [ArraySpec.make("intensity", "intensity", np.uint16, inten.shape)])
    for t in range(4):
        w.append("intensity", t, inten[t])
    w.finalize()
    f = open_ng5d(p)
    one = codec.stored_layout(f.payload("intensity", 0)[16:])[0]  # resident bytes per t
    f.resident_budget = 2 * one
    for k, t in enumerate((0, 1, 2, 0, 3)):  # a new region each time (no decoded-cache hit)
        assert np.array_equal(f.arrays["intensity"][t, k, 7:30], inten[t, 0, k, 7:30])
    assert sorted(k[1] for k in f._parsed) == [0, 3]  # 1 and 2 were used least recently
    assert sum(f._inflated.values()) <= 2 * one


def test_zstd_blocks_inflate_only_the_frames_a_read_needs(tmp_path, monkeypatch):
    monkeypatch.setattr(codec, "FRAME_BYTES", 4096)
    rng = np.random.default_rng(4)
    inten = rng.integers(0, 5000, (1, 1, 32, 64, 64), dtype=np.uint16)
    inten[0, 0, 8:20] = 0  # sparse and constant bricks too
    inten[0, 0, 10, 5, 7] = 99
    # bricks repeated: zstd shrinks the block by over 10 %, so its frames stay compressed
    inten[0, 0, 20:] = np.tile(rng.integers(0, 5000, (4, 16, 16)), (3, 4, 4))
    lab = np.zeros((1, 1, 32, 64, 64), np.uint32)
    lab[0, 0, 4:30, 10:50, 3:60] = rng.integers(1, 9, (26, 40, 57))
    p = tmp_path / "lazy.ng5d"
    w = Ng5dWriter(p, [ArraySpec.make("intensity", "intensity", np.uint16, inten.shape),
                       ArraySpec.make("labels", "labels", np.uint32, lab.shape)])
    w.append("intensity", 0, inten[0])
    w.append("labels", 0, lab[0])
    w.finalize()
    f = open_ng5d(p)
    for name, a in (("intensity", inten), ("labels", lab)):
        assert np.array_equal(f.arrays[name][0, 11], a[0, 0, 11])  # one z-plane
        lz = f.volume(name, 0).lazy
        if name == "intensity":
            assert len(lz.done) > 8 and 0 < lz.done.sum() < len(lz.done) / 2
        else:  # octree records lie in tree order, not by plane: inflated all at once
            assert len(lz.done) > 2 and lz.complete
        assert np.array_equal(f.arrays[name][0, 9:13, 3:40, 50:], a[0, 0, 9:13, 3:40, 50:])
        assert np.array_equal(f.arrays[name][0], a[0, 0])
        assert lz.complete


def test_run_chunks_covers_every_item_once_and_raises_a_helpers_error():
    seen: list[tuple[int, int]] = []
    codec.run_chunks(lambda j0, j1: seen.append((j0, j1)), 100, 3, threads=3)
    covered = np.zeros(100, int)
    for j0, j1 in seen:
        covered[j0:j1] += 1
    assert (covered == 1).all() and len(seen) > 3  # chunks of ceil(100 / 24) = 5
    calls: list[int] = []
    codec.run_chunks(lambda j0, j1: calls.append(j1 - j0), 7, 8, threads=4)
    assert calls == [7]  # fewer items than a chunk: the calling thread alone

    def bad(j0: int, j1: int) -> None:
        if j0 >= 50:
            raise ValueError("chunk failed")

    with pytest.raises(ValueError, match="chunk failed"):
        codec.run_chunks(bad, 100, 1, threads=2)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_decoders_in_many_chunks_on_several_threads(monkeypatch, threads):
    """The parallel loops (``*_decode_par``: chunks interleaved over the threads) cover
    every brick once, for chunk and thread counts that do not divide the bricks."""
    monkeypatch.setattr(codec, "BRICKS_PER_TASK", 3)
    monkeypatch.setattr(codec, "ROWS_PER_TASK", 1)
    monkeypatch.setattr(codec, "COLD_PARALLEL_BRICKS", 0)
    monkeypatch.setattr(codec, "COLD_PARALLEL_ROWS", 0)
    monkeypatch.setattr(codec, "_threads", lambda t: threads)
    rng = np.random.default_rng(5)
    vol = rng.integers(0, 3000, (9, 70, 75), dtype=np.uint16)
    vol[:4] = 17  # constant bricks
    vol[5, ::9, ::7] = 2000  # sparse bricks
    vol[5:, 30:] //= 64
    lab = (rng.random((9, 70, 75)) * 3).astype(np.uint32) * 7
    lab[:, :40] = 1
    br, bl = (4, 16, 16), (8, 8, 8)
    v = codec.parse_bitpack(codec.encode_bitpack(vol, br),
                            int(np.prod(codec.brick_grid(vol.shape, br))), 1024)
    p = codec.parse_palette(codec.encode_palette(lab, bl),
                            int(np.prod(codec.brick_grid(lab.shape, bl))), np.uint32, 512)
    o = octree.parse_octree(octree.encode_octree(lab), lab.shape, np.uint32)
    for r in (None, (slice(1, 8), slice(5, 66), slice(3, 70))):
        want = vol if r is None else vol[r]
        assert np.array_equal(codec.decode_bitpack(v, vol.shape, br, np.uint16, r), want)
        want = lab if r is None else lab[r]
        assert np.array_equal(codec.decode_palette(p, lab.shape, bl, r), want)
        assert np.array_equal(octree.decode_octree(o, lab.shape, r), want)


def test_run_kernel_keeps_a_small_decode_off_sleeping_threads(monkeypatch):
    """numba's threads are used right after a parallel decode (they still spin) or for a
    large decode; a small decode while they sleep, a tiny one, or one started while
    another holds the threads runs on the calling thread."""
    calls: list[tuple[str, tuple[int, ...]]] = []

    def serial(*a: int) -> None:
        calls.append(("serial", a))

    def par(*a: int) -> None:
        calls.append(("par", a))

    monkeypatch.setattr(codec, "_threads", lambda t: 2)
    monkeypatch.setattr(codec, "WARM_SECONDS", 60.0)  # "right after" for this test
    codec._LAST_PARALLEL_END[0] = -1e9  # no parallel decode for a long time
    codec.run_kernel(serial, par, ("x",), 100, 64, 1024)  # small, threads asleep
    codec.run_kernel(serial, par, ("x",), 100, 64, 1024)  # still: the last one was serial
    codec.run_kernel(serial, par, ("x",), 5000, 64, 1024)  # large enough to wake them
    codec.run_kernel(serial, par, ("x",), 100, 64, 1024)  # right after a parallel one
    codec.run_kernel(serial, par, ("x",), 50, 64, 1024)  # at most one chunk
    with codec._PARALLEL:  # another thread's decode holds numba's threads
        codec.run_kernel(serial, par, ("x",), 100, 64, 1024)
    # the parallel loop gets (n, chunk, threads): 8 chunks per thread, of at least
    # min_chunk items (here 64: two chunks of 100 items)
    assert calls == [("serial", ("x", 0, 100)), ("serial", ("x", 0, 100)),
                     ("par", ("x", 5000, 313, 2)), ("par", ("x", 100, 64, 2)),
                     ("serial", ("x", 0, 50)), ("serial", ("x", 0, 100))]


def test_dense_bricks_of_every_width_including_whole_bytes():
    rng = np.random.default_rng(6)
    br = (2, 4, 16)
    vol = np.zeros((2, 4, 16 * 32), np.uint32)
    for w in range(1, 33):  # brick w - 1 holds values of exactly w bits above its base
        hi = (1 << w) - 1
        blk = rng.integers(0, hi, (2, 4, 16), dtype=np.uint64, endpoint=True)
        blk.flat[:2] = (0, hi)
        vol[:, :, 16 * (w - 1):16 * w] = (blk + (0 if w == 32 else 5)).astype(np.uint32)
    v = codec.parse_bitpack(codec.encode_bitpack(vol, br), 32, 128)
    assert v.modes.tolist() == [1] * 32 and v.widths.tolist() == list(range(1, 33))
    assert np.array_equal(codec.decode_bitpack(v, vol.shape, br, np.uint32), vol)
    r = (slice(1, 2), slice(1, 4), slice(100, 300))
    assert np.array_equal(codec.decode_bitpack(v, vol.shape, br, np.uint32, r), vol[r])


def test_decodes_on_several_python_threads_at_once(monkeypatch):
    """napari slices on several threads: concurrent decodes (one holds numba's threads,
    the others run on their own) all give the volume."""
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setattr(codec, "BRICKS_PER_TASK", 2)
    monkeypatch.setattr(codec, "COLD_PARALLEL_BRICKS", 0)
    rng = np.random.default_rng(11)
    vol = rng.integers(0, 4000, (12, 64, 80), dtype=np.uint16)
    br = (4, 16, 16)
    v = codec.parse_bitpack(codec.encode_bitpack(vol, br),
                            int(np.prod(codec.brick_grid(vol.shape, br))), 1024)
    regions = [(slice(z, 12), slice(0, 64 - z), slice(z, 80)) for z in range(8)] * 4

    def one(r: tuple[slice, slice, slice]) -> bool:
        return bool(np.array_equal(codec.decode_bitpack(v, vol.shape, br, np.uint16, r),
                                   vol[r]))

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(one, regions))


def test_interleaved_chunks_cover_every_item_once():
    """The parallel loops' chunk arithmetic: every item in exactly one iteration, and
    thread t's run (iterations t·per … (t+1)·per − 1) takes chunks t, t + threads, …"""
    from neuroglia5d.io._ng5d_kernels import interleaved_chunk, interleaved_len

    for n in range(40):
        for chunk in range(1, 7):
            for threads in range(1, 5):
                seen = np.zeros(n, int)
                for k in range(interleaved_len(n, chunk, threads)):
                    j0, j1 = interleaved_chunk(k, n, chunk, threads)
                    seen[j0:j1] += 1
                assert (seen == 1).all(), (n, chunk, threads)
    # 10 items in chunks of 2 on 2 threads: 5 chunks, 3 iterations per thread
    firsts = [interleaved_chunk(k, 10, 2, 2)[0] for k in range(interleaved_len(10, 2, 2))]
    assert firsts == [0, 4, 8, 2, 6, 10]  # thread 0: chunks 0, 2, 4; thread 1: 1, 3, (none)
