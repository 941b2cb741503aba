"""Conformance: files written by neuroglia5d, read by an independent reader built from the spec."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from neuroglia5d.io.ng5d import ArraySpec, Ng5dWriter
from tests import ng5d_spec_reader as spec_reader
from tests.ng5d_spec_reader import read_ng5d

RNG = np.random.default_rng(1234)
DEFAULT_BRICK = {"intensity": [4, 16, 16], "labels": [8, 8, 8]}
DEFAULT_CODEC = {"intensity": "bitpack", "labels": "octree"}


def _write(path: Path, arrays: dict[str, tuple], times: dict[str, list[int]] | None = None,
           finish: bool = True, storage: str = "zstd") -> Path:
    """Write every (role, full TCZYX array, brick[, codec]) timepoint by timepoint; return the path.

    The codec defaults to the role's (`bitpack` for intensity, `octree` for labels).
    """
    specs = [ArraySpec.make(n, v[0], v[1].dtype.name, v[1].shape, brick=v[2], storage=storage,
                            codec_name=v[3] if len(v) > 3 else None)
             for n, v in arrays.items()]
    w = Ng5dWriter(str(path), specs, voxel_size_um=(1.5, 0.5, 0.5), offset_zyx=(0, 3, 4))
    for name, (_, a, *_) in arrays.items():
        for t in (times or {}).get(name, range(a.shape[0])):
            vol = a[t, 0] if a.shape[1] == 1 and t % 2 else a[t]  # both ZYX and CZYX inputs
            w.append(name, t, vol)
    if finish:
        w.finalize()
        return path
    w.abort()
    return Path(str(path) + ".partial")


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """Bit-exact equality (floats compared by their bits)."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    return a.tobytes() == b.tobytes()


def _check(tmp_path: Path, arrays: dict, name: str = "f.ng5d", storage: str = "zstd") -> dict:
    path = _write(tmp_path / name, arrays, storage=storage)
    assert struct.unpack_from("<HH", path.read_bytes(), 8) == (2, 2)  # format 2.2
    out = read_ng5d(path)
    assert out["complete"] is True and out["header"]["version"] == [2, 2]
    for n, (role, a, brick, *codec) in arrays.items():
        assert _same(out["arrays"][n], a), n
        assert out["present"][n] == list(range(a.shape[0]))
        h = next(s for s in out["header"]["arrays"] if s["name"] == n)
        assert h["codec"] == (codec[0] if codec else DEFAULT_CODEC[role])
        assert h["brick"] == list(brick or DEFAULT_BRICK[role])
        assert h["storage"] == storage
    return out


def _float_volume(shape: tuple[int, ...]) -> np.ndarray:
    a = (RNG.standard_normal(shape) * 1e3).astype(np.float32)
    flat = a.reshape(-1)
    specials = [-0.0, 0.0, np.inf, -np.inf, 1e-45, -1e-45, 3.4028235e38, -3.4028235e38, -1.0]
    flat[: len(specials)] = np.array(specials, dtype=np.float32)
    return a


SHAPE = (3, 1, 7, 19, 23)
BRICKS = [None, (4, 16, 16), (8, 8, 8), (3, 5, 7)]


@pytest.mark.parametrize("brick", BRICKS)
@pytest.mark.parametrize("dtype", ["uint8", "uint16", "uint32", "float32"])
def test_intensity_roundtrip(tmp_path: Path, dtype: str, brick: tuple | None) -> None:
    if dtype == "float32":
        a = _float_volume(SHAPE)
        a[1] = -7.25  # a constant timepoint
    else:
        info = np.iinfo(dtype)
        a = RNG.integers(0, int(info.max), SHAPE, dtype=dtype, endpoint=True)  # noisy, dense
        a[1] = 0  # all zero
        a[2, 0, :3] = info.max  # all max in part
        a[2, 0, 3:] = RNG.integers(0, 4, a[2, 0, 3:].shape)  # small range
    _check(tmp_path, {"intensity": ("intensity", a, brick)})


@pytest.mark.parametrize(("codec", "brick"), [("octree", None), ("octree", (8, 8, 8)),
                                              *[("palette", b) for b in BRICKS]])
@pytest.mark.parametrize("dtype", ["uint32", "uint64"])
def test_labels_roundtrip(tmp_path: Path, dtype: str, codec: str, brick: tuple | None) -> None:
    a = np.zeros(SHAPE, dtype=dtype)
    hi = 2**40 if dtype == "uint64" else 2**32 - 400
    a[0] = RNG.integers(hi, hi + 400, SHAPE[1:], dtype=dtype)  # many (> 300) distinct values
    a[1, 0, 2:5, 4:12, 6:20] = 7  # few values: one object on background
    a[1, 0, 5:, :, :4] = np.iinfo(dtype).max
    a[2] = np.iinfo(dtype).max  # all max
    assert len(np.unique(a[0])) > 300
    _check(tmp_path, {"labels": ("labels", a, brick, codec)})


def test_two_channels_and_two_arrays(tmp_path: Path) -> None:
    shape = (2, 2, 5, 18, 20)
    inten = RNG.integers(0, 5000, shape, dtype=np.uint16)
    inten[1, 1] = 0
    labels = RNG.integers(0, 3, shape).astype(np.uint32) * 100_000
    labels[0, 0] = 0
    out = _check(tmp_path, {"intensity": ("intensity", inten, None),
                            "labels": ("labels", labels, None),
                            "labels_p": ("labels", labels[::-1], (3, 5, 7), "palette")})
    h = out["header"]
    assert h["format"] == "ng5d" and h["axes"] == ["t", "c", "z", "y", "x"]
    assert h["voxel_size"] == [1.5, 0.5, 0.5] and h["offset_zyx"] == [0, 3, 4]
    assert [s["name"] for s in h["arrays"]] == ["intensity", "labels", "labels_p"]


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "uint32", "float32"])
def test_sparse_volume(tmp_path: Path, dtype: str) -> None:
    a = np.zeros((2, 1, 9, 33, 35), dtype=dtype)
    idx = RNG.integers(0, a[0].size, 12)
    a[0].reshape(-1)[idx] = np.array([5, 200, 1, 3, 77, 9, 2, 250, 4, 8, 100, 6], dtype=dtype)
    a[1, 0, 4, 20, 30] = 1
    path = _write(tmp_path / "s.ng5d", {"v": ("intensity", a, None)})
    out = read_ng5d(path)
    assert _same(out["arrays"]["v"], a)
    assert 6 in _bitpack_modes(path), "expected the writer to pick the list mode somewhere"


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
def test_sparse_modes_of_format_2_2(tmp_path: Path, dtype: str) -> None:
    """Background-subtracted-like bricks, mostly zero: the writer picks the list, sparse
    (packed prefix counts) and sparse patched modes of format 2.2."""
    dens = np.repeat([0.01, 0.3, 0.3, 0.6], 16)[None, None, None, None, :]
    a = ((RNG.random((2, 1, 8, 16, 64)) < dens) * RNG.integers(1, 16, (2, 1, 8, 16, 64)))
    a[..., 32:48] = np.minimum(a[..., 32:48], 7)
    a[..., 32:48].flat[[5, 400, 1000, 3000]] = 250 if dtype == "uint8" else 50_000
    a = (a / 3).astype(dtype) if dtype == "float32" else a.astype(dtype)
    path = _write(tmp_path / "s22.ng5d", {"v": ("intensity", a, (4, 16, 16))})
    assert _same(read_ng5d(path)["arrays"]["v"], a)
    if dtype != "float32":  # (float32's order-preserving map: no voxel at the minimum)
        assert {4, 5, 6} <= _bitpack_modes(path)


def test_sparse_mode_of_format_2_1_still_decodes() -> None:
    """A block in 2.1's sparse layout (a word per prefix count), as 2.1 writers wrote it."""
    from neuroglia5d.io import ng5d_codec as c

    dens = np.repeat([0.01, 0.3, 0.6, 0.1], 16)[None, None, :]
    a = ((RNG.random((8, 16, 64)) < dens) * RNG.integers(1, 900, (8, 16, 64))).astype(np.uint16)
    block = c.encode_bitpack(a, (4, 16, 16), sparse_modes=(c.MODE_SPARSE,))
    modes = spec_reader._sections(block, 0, [("u4", 2), ("u1", 8)])[1]
    assert set(modes.tolist()) == {2}
    assert _same(spec_reader.decode_block("bitpack", block, a.shape, (4, 16, 16), np.uint16), a)


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
def test_patched_bricks(tmp_path: Path, dtype: str) -> None:
    """Camera-like noise with bright voxels: the writer picks the patched mode (2.1)."""
    a = RNG.poisson(30, (2, 1, 9, 33, 35)).astype(np.float64)
    a.reshape(-1)[RNG.integers(0, a.size, 40)] = 250 if dtype == "uint8" else 50_000
    a = (a / 3).astype(dtype) if dtype == "float32" else a.astype(dtype)
    path = _write(tmp_path / "p.ng5d", {"v": ("intensity", a, None)})
    assert _same(read_ng5d(path)["arrays"]["v"], a)
    if dtype != "float32":
        assert 3 in _bitpack_modes(path), "expected the writer to pick the patched mode"


def test_noisy_dense_and_mixed_modes(tmp_path: Path) -> None:
    a = np.zeros((1, 1, 8, 32, 32), dtype=np.uint16)
    a[0, 0, :4] = RNG.integers(0, 65535, (4, 32, 32), endpoint=True)  # dense bricks
    a[0, 0, 4:, :16] = 9  # constant bricks
    path = _write(tmp_path / "m.ng5d", {"v": ("intensity", a, None)})
    assert _same(read_ng5d(path)["arrays"]["v"], a)
    assert {0, 1} <= _bitpack_modes(path)


@pytest.mark.parametrize(("role", "dtype"), [("intensity", "uint8"), ("intensity", "float32"),
                                             ("labels", "uint64"), ("labels", "uint32")])
def test_single_voxel(tmp_path: Path, role: str, dtype: str) -> None:
    a = np.full((1, 1, 1, 1, 1), 3, dtype=dtype)
    if dtype == "float32":
        a[:] = -2.5
    _check(tmp_path, {"v": (role, a, None)})


def test_large_palette_wide_words(tmp_path: Path) -> None:
    """> 65536 distinct labels (32-bit lut) and bricks of 1 voxel (> 32767 words: 32-bit words)."""
    a = RNG.permutation(np.arange(2**33, 2**33 + 70_000, dtype=np.uint64))
    a = a.reshape(1, 1, 7, 100, 100)
    b = RNG.permutation(np.arange(40_000, dtype=np.uint32)).reshape(1, 1, 1, 200, 200)
    path = tmp_path / "f.ng5d"
    _check(tmp_path, {"a": ("labels", a, None, "palette"),
                      "b": ("labels", b, (1, 1, 1), "palette")})
    buf = path.read_bytes()
    heads = {}
    for (arr, _), (pos, length, _) in _records(buf).items():
        payload = buf[pos + 32:pos + 32 + length]
        block = spec_reader._inflate(payload[struct.unpack_from("<Q", payload, 4)[0]:])
        heads[arr] = struct.unpack_from("<8I", block)
    assert heads[0][6] == 32 and heads[1][5] == 32, "expected 32-bit lut and 32-bit words"


def test_unfinished_file(tmp_path: Path) -> None:
    a = RNG.integers(0, 1000, (4, 1, 6, 10, 12), dtype=np.uint16)
    lab = RNG.integers(0, 5, (4, 1, 6, 10, 12)).astype(np.uint32)
    part = _write(tmp_path / "u.ng5d", {"a": ("intensity", a, None), "l": ("labels", lab, None)},
                  times={"a": [0, 2], "l": [3]}, finish=False)
    assert part.name == "u.ng5d.partial" and not (tmp_path / "u.ng5d").exists()
    out = read_ng5d(part)
    assert out["complete"] is False
    assert out["present"] == {"a": [0, 2], "l": [3]}
    exp_a, exp_l = np.zeros_like(a), np.zeros_like(lab)
    exp_a[[0, 2]], exp_l[3] = a[[0, 2]], lab[3]
    assert _same(out["arrays"]["a"], exp_a) and _same(out["arrays"]["l"], exp_l)
    # A torn last record is ignored by the scan; the records before it stay readable.
    buf = part.read_bytes()
    torn = tmp_path / "torn.ng5d.partial"
    torn.write_bytes(buf[:-5])
    out = read_ng5d(torn)
    assert out["complete"] is False and out["present"] == {"a": [0, 2], "l": []}
    # A finished file without its footer is read by scanning (skipping the index record).
    full = _write(tmp_path / "f.ng5d", {"a": ("intensity", a, None)})
    cut = tmp_path / "cut.ng5d"
    cut.write_bytes(full.read_bytes()[:-16])
    out = read_ng5d(cut)
    assert out["complete"] is False and _same(out["arrays"]["a"], a)


@pytest.mark.parametrize("finish", [True, False])
def test_latest_record_wins(tmp_path: Path, finish: bool) -> None:
    shape = (3, 1, 5, 9, 11)
    first = RNG.integers(0, 255, shape, dtype=np.uint8)
    second = RNG.integers(0, 255, shape[2:], dtype=np.uint8)
    lab1 = np.full(shape, 4, dtype=np.uint64)
    lab2 = RNG.integers(0, 9, shape[2:]).astype(np.uint64)
    specs = [ArraySpec.make("i", "intensity", "uint8", shape),
             ArraySpec.make("l", "labels", "uint64", shape)]
    path = tmp_path / "r.ng5d"
    w = Ng5dWriter(str(path), specs, voxel_size_um=(1.5, 0.5, 0.5), offset_zyx=(0, 3, 4))
    for t in range(3):
        w.append("i", t, first[t])
        w.append("l", t, lab1[t])
    w.append("i", 1, second)
    w.append("l", 0, lab2)
    if finish:
        w.finalize()
    else:
        w.abort()
        path = Path(str(path) + ".partial")
    out = read_ng5d(path)
    assert out["complete"] is finish
    exp, exp_l = first.copy(), lab1.copy()
    exp[1, 0], exp_l[0, 0] = second, lab2
    assert _same(out["arrays"]["i"], exp) and _same(out["arrays"]["l"], exp_l)


@pytest.mark.parametrize("finish", [True, False])
def test_flipped_payload_byte(tmp_path: Path, finish: bool) -> None:
    a = RNG.integers(0, 60000, (3, 1, 4, 8, 8), dtype=np.uint16)
    lab = RNG.integers(0, 3, (3, 1, 4, 8, 8)).astype(np.uint32)
    path = _write(tmp_path / "x.ng5d", {"img": ("intensity", a, None),
                                        "seg": ("labels", lab, None)}, finish=finish)
    buf = bytearray(path.read_bytes())
    pos, length, _ = _records(bytes(buf))[(1, 2)]  # "seg" at t=2
    buf[pos + 32 + length // 2] ^= 0x10
    path.write_bytes(bytes(buf))
    with pytest.raises(ValueError, match=r"seg.*t=2"):
        read_ng5d(path)


def _records(buf: bytes) -> dict[tuple[int, int], tuple[int, int, int]]:
    hlen = struct.unpack_from("<I", buf, 12)[0]
    return spec_reader._scan(buf, 16 + hlen + 4)


def _bitpack_modes(path: Path) -> set[int]:
    """Brick modes used in every bitpack record of a single-array, single-channel file."""
    buf = path.read_bytes()
    modes: set[int] = set()
    for pos, length, _ in _records(buf).values():
        payload = buf[pos + 32:pos + 32 + length]
        block = spec_reader._inflate(payload[struct.unpack_from("<Q", payload, 4)[0]:])
        nb = struct.unpack_from("<I", block)[0]
        modes |= set(spec_reader._sections(block, 0, [("u4", 2), ("u1", nb)])[1].tolist())
    return modes


def test_scan_skips_an_earlier_index_and_footer(tmp_path: Path) -> None:
    """§1.3: records appended after an index record and its footer are found by the scan."""
    a = RNG.integers(0, 200, (2, 1, 3, 5, 6), dtype=np.uint8)
    path = _write(tmp_path / "e.ng5d", {"a": ("intensity", a, None)})
    buf = path.read_bytes()
    pos, length, _ = _records(buf)[(0, 1)]
    head = bytearray(buf[pos:pos + 28])
    head[8:12] = struct.pack("<I", 0)  # the record of t=1, re-appended as an edit of t=0
    edit = bytes(head) + struct.pack("<I", zlib.crc32(head)) + buf[pos + 32:pos + 32 + length]
    path.write_bytes(buf + edit)
    out = read_ng5d(path)
    assert out["complete"] is False
    assert _same(out["arrays"]["a"], a[[1, 1]])


def test_palette_bricks_are_limited_to_65536_voxels(tmp_path: Path) -> None:
    """§1.2: so a brick never holds more than 65536 values and ext_width stays <= 16."""
    from neuroglia5d.io.ng5d import ArraySpec

    with pytest.raises(ValueError, match="at most 65536 voxels"):
        ArraySpec.make("a", "labels", np.uint32, (1, 1, 2, 200, 200), (2, 200, 200),
                       codec_name="palette")


# --- §2.5 codec `octree`, blocks built by hand from the spec's text -------------------------


def _stream(entries: list[int], w: int) -> bytes:
    """§2.5 byte bit stream of `w`-bit entries, least significant bit first."""
    acc = sum(int(v) << (j * w) for j, v in enumerate(entries))
    return acc.to_bytes(-(-len(entries) * w // 8), "little")


def _block(sections: list[np.ndarray]) -> bytes:
    """§2.2: sections one after another, each starting at a multiple of 8 bytes."""
    out = b""
    for s in sections:
        out += b"\0" * (-len(out) % 8) + np.ascontiguousarray(s).tobytes()
    return out


def _bitset(nodes: list[int], nn: int) -> tuple[np.ndarray, np.ndarray]:
    """(words, ranks) of the §2.5 bit set holding `nodes` among `nn` nodes."""
    words = np.zeros(-(-nn // 64), dtype="<u8")
    for i in nodes:
        words[i // 64] |= np.uint64(1) << np.uint64(i % 64)
    counts = [bin(int(v)).count("1") for v in words]
    return words, np.array([sum(counts[:k]) for k in range(len(words))], dtype="<u4")


def _record(lw: int, zf: int, table: list[int], wg: int, m1: int, m2: list[int],
            v: list[int]) -> bytes:
    m = len(table)
    head = bytes([lw | zf << 3 | min(m, 15) << 4]) + (struct.pack("<H", m) if m >= 15 else b"")
    return head + _stream(table, wg) + bytes([m1, *m2]) + _stream(v, 1 << lw)


def _octree_block(pal: np.ndarray, u: int, top: tuple[int, int, int], nn: int, nup: int,
                  split: list[int], other: list[int], other_vals: list[int], wg: int,
                  records: list[bytes]) -> bytes:
    sp, sp_rank = _bitset(split, nn)
    ot, ot_rank = _bitset(other, nn) if other else (np.zeros(0, "<u8"), np.zeros(0, "<u4"))
    sup = sum(i < nup for i in split)
    offs = np.cumsum([0] + [len(r) for r in records])
    rb, nr = int(offs[-1]), len(records)
    base = np.array([offs[8 * k] for k in range(-(-nr // 8))] + [rb], dtype="<u4")
    values = _stream(other_vals, wg) + bytes(8)
    head = np.array([len(pal), u, *top, nn, nup, sup, nr, len(other), wg, rb], dtype="<u4")
    recs = np.frombuffer(b"".join(records) + bytes(8), dtype=np.uint8)
    return _block([head, pal, sp, sp_rank, ot, ot_rank, np.frombuffer(values, np.uint8), base,
                   recs])


def _cell(c1: int, c2: int | None = None) -> tuple[slice, slice, slice]:
    """In-brick slices of 4³ cell c1 (or of 2³ cell c2 inside it)."""
    o = [4 * (c1 >> 2 & 1), 4 * (c1 >> 1 & 1), 4 * (c1 & 1)]
    if c2 is None:
        return tuple(slice(s, s + 4) for s in o)  # type: ignore[return-value]
    o = [o[0] + 2 * (c2 >> 2 & 1), o[1] + 2 * (c2 >> 1 & 1), o[2] + 2 * (c2 & 1)]
    return tuple(slice(s, s + 2) for s in o)  # type: ignore[return-value]


def test_octree_block_built_by_hand() -> None:
    """U = 1 over a 2×3×2 brick grid: split/uniform/`other` nodes, two mixed bricks."""
    pal = np.array([0, 7, 300, 70_000, 4_000_000_000], dtype="<u4")  # npal 5: wg = 3
    # Record 0: w = 1, zf = 1, table [3] -> L = [0, 3]; 4³ cell 5 mixed, its 2³ cells 2, 6 mixed.
    cell2, cell6 = [1, 0, 0, 1, 0, 1, 1, 0], [0, 0, 0, 0, 0, 0, 0, 1]
    rec0 = _record(0, 1, [3], 3, 0b0010_0000, [0b0100_0100],
                   [1, 0, 0, 0, 0, 0, 0,  # uniform 4³ cells 0, 1, 2, 3, 4, 6, 7
                    1, 0, 1, 1, 0, 0,  # uniform 2³ cells 0, 1, 3, 4, 5, 7 of cell 5
                    *cell2, *cell6])
    loc0 = np.zeros((8, 8, 8), dtype=np.int64)
    loc0[_cell(0)] = 1
    for c2, v in zip([0, 1, 3, 4, 5, 7], [1, 0, 1, 1, 0, 0], strict=True):
        loc0[_cell(5, c2)] = v
    loc0[_cell(5, 2)] = np.reshape(cell2, (2, 2, 2))
    loc0[_cell(5, 6)] = np.reshape(cell6, (2, 2, 2))
    # Record 1: w = 2, zf = 0, table [1, 4, 2] = L; 4³ cells 0 (2³ cell 7 mixed) and 3 (2³
    # cells 0, 1 mixed) mixed.
    v7, v30, v31 = [0, 1, 2, 2, 1, 0, 2, 2], [0, 0, 0, 0, 0, 0, 0, 2], [1, 2, 1, 2, 1, 2, 1, 2]
    rec1 = _record(1, 0, [1, 4, 2], 3, 0b0000_1001, [0b1000_0000, 0b0000_0011],
                   [2, 1, 0, 2, 1, 0,  # uniform 4³ cells 1, 2, 4, 5, 6, 7
                    0, 1, 2, 0, 1, 2, 1,  # uniform 2³ cells 0-6 of cell 0
                    2, 2, 1, 0, 0, 1,  # uniform 2³ cells 2-7 of cell 3
                    *v7, *v30, *v31])
    loc1 = np.zeros((8, 8, 8), dtype=np.int64)
    for c1, v in zip([1, 2, 4, 5, 6, 7], [2, 1, 0, 2, 1, 0], strict=True):
        loc1[_cell(c1)] = v
    for c2, v in enumerate([0, 1, 2, 0, 1, 2, 1]):
        loc1[_cell(0, c2)] = v
    for c2, v in zip(range(2, 8), [2, 2, 1, 0, 0, 1], strict=True):
        loc1[_cell(3, c2)] = v
    for c1, c2, vox in [(0, 7, v7), (3, 0, v30), (3, 1, v31)]:
        loc1[_cell(c1, c2)] = np.reshape(vox, (2, 2, 2))
    # Volume 9×17×16: bricks gz, gy, gx = 2, 3, 2; U = 1: top tz, ty, tx = 1, 2, 1.
    # Node 0 (top, bricks y 0-1) split, children 2-9; node 1 (top, bricks y 2-3) uniform
    # palette[2] via `other`. Children c = 4dz + 2dy + dx: 2 (brick 0,0,0) mixed, record 0;
    # 4 (0,1,0) palette[3]; 5 (0,1,1) mixed, record 1; 7 (1,0,1) palette[1]; others 0.
    block = _octree_block(pal, 1, (1, 2, 1), nn=10, nup=2, split=[0, 2, 5],
                          other=[1, 4, 7], other_vals=[2, 3, 1], wg=3, records=[rec0, rec1])
    exp = np.zeros((16, 24, 16), dtype=np.uint32)  # whole bricks, cut to the volume below
    exp[:, 16:] = pal[2]
    exp[0:8, 0:8, 0:8] = pal[np.array([0, 3])[loc0]]
    exp[0:8, 8:16, 0:8] = pal[3]
    exp[0:8, 8:16, 8:16] = pal[np.array([1, 4, 2])[loc1]]
    exp[8:16, 0:8, 8:16] = pal[1]
    exp = exp[:9, :17, :16]
    out = spec_reader.decode_block("octree", block, (9, 17, 16), (8, 8, 8), np.uint32)
    assert _same(out, exp)
    assert {int(v) for v in np.unique(out)} == {0, 7, 300, 70_000, 4_000_000_000}


def test_octree_block_u0_long_table() -> None:
    """U = 0 (top nodes are bricks), uint64 palette, m ≥ 15 (u16 m), w = 8, all 4³ cells mixed."""
    pal = np.array([0, *range(2**33, 2**33 + 24)], dtype="<u8")  # npal 25: wg = 5
    table = list(range(24, 4, -1))  # m = 20 -> L = [0, 24, 23, ..., 5]
    v = [(8 * c1 + c2) % 21 for c1 in range(8) for c2 in range(8)]
    rec = _record(3, 1, table, 5, 0xFF, [0] * 8, v)
    # Volume 8×5×11: bricks 1×1×2; node 0 uniform palette[17], node 1 the mixed brick.
    block = _octree_block(pal, 0, (1, 1, 2), nn=2, nup=0, split=[1], other=[0],
                          other_vals=[17], wg=5, records=[rec])
    lut = np.array([0, *table])
    loc = np.zeros((8, 8, 8), dtype=np.int64)
    for c1 in range(8):
        for c2 in range(8):
            loc[_cell(c1, c2)] = v[8 * c1 + c2]
    exp = np.concatenate([np.full((8, 8, 8), pal[17]), pal[lut[loc]]], axis=2)[:, :5, :11]
    out = spec_reader.decode_block("octree", block, (8, 5, 11), (8, 8, 8), np.uint64)
    assert _same(out, exp.astype(np.uint64))


# --- §2.5 codec `octree`: neuroglia5d's writer against the spec reader ---------------------

OCTREE_SHAPES = [(1, 1, 1), (3, 17, 9), (8, 8, 8), (20, 33, 70), (40, 64, 72)]
LABEL_KINDS = ["zero", "single", "boxes", "voronoi", "noisy_few", "many"]


def _label_volume(rng: np.random.Generator, kind: str, zyx: tuple[int, int, int],
                  dtype: str) -> np.ndarray:
    """A (Z, Y, X) label volume of one kind; uint64 labels above 2**32 (0 stays background)."""
    top = int(np.iinfo(dtype).max)
    base = 2**40 if dtype == "uint64" else 0

    def labels(n: int) -> np.ndarray:  # n distinct labels, some at the top of the dtype
        v = (rng.choice(min(top - base, 10**6), size=min(n, top), replace=False) + base)
        v = v.astype(dtype)
        v[: min(2, v.size)] = np.array([top, top - 1], dtype=dtype)[: min(2, v.size)]
        return v

    a = np.zeros(zyx, dtype=dtype)
    if kind == "single":
        a[tuple(int(rng.integers(0, s)) for s in zyx)] = labels(1)[0]
    elif kind == "boxes":  # large uniform regions, some of them covering whole tree nodes
        a[:] = labels(1)[0] if rng.random() < 0.5 else 0
        for v in labels(6):
            lo = [int(rng.integers(0, s)) for s in zyx]
            hi = [int(rng.integers(lo_ + 1, s + 1)) for lo_, s in zip(lo, zyx, strict=True)]
            a[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = v
    elif kind == "voronoi":  # a segmentation: boundaries through bricks, 4³ and 2³ cells
        n = int(rng.integers(2, 40))
        seeds = rng.random((n, 3)) * np.array(zyx)
        grid = np.stack(np.indices(zyx), -1).reshape(-1, 1, 3) + 0.5
        near = np.argmin(((grid - seeds) ** 2).sum(-1), axis=1)
        a[:] = labels(n)[near].reshape(zyx)
        a[rng.random(zyx) < 0.3] = 0 if rng.random() < 0.5 else a.reshape(-1)[0]
    elif kind == "noisy_few":
        a[:] = labels(3)[rng.integers(0, 3, zyx)]
    elif kind == "many":  # every voxel its own label where the dtype allows (w = 16 bricks)
        a[:] = rng.integers(0, top, zyx, dtype=dtype, endpoint=True)
        a[: zyx[0] // 2] |= np.array(base, dtype=dtype)
    return a


@pytest.mark.parametrize("kind", LABEL_KINDS)
@pytest.mark.parametrize("dtype", ["uint8", "uint16", "uint32", "uint64"])
def test_octree_writer_matches_spec_reader(tmp_path: Path, dtype: str, kind: str) -> None:
    """Random label volumes of every shape, two timepoints each, decode bit-exactly."""
    rng = np.random.default_rng([LABEL_KINDS.index(kind), np.dtype(dtype).itemsize])
    arrays = {}
    for s, zyx in enumerate(OCTREE_SHAPES):
        a = np.stack([_label_volume(rng, kind, zyx, dtype) for _ in range(2)])[:, None]
        arrays[f"l{s}"] = ("labels", a, None)
    _check(tmp_path, arrays, storage="plain" if kind in ("boxes", "many") else "zstd")


def _octree_records(path: Path) -> list[tuple[int, tuple[int, ...], list[tuple[int, int, int]]]]:
    """(array, block head, [(lw, zf, m) of every record]) of every octree volume block."""
    buf = path.read_bytes()
    hdr = spec_reader.json.loads(buf[16:16 + struct.unpack_from("<I", buf, 12)[0]])
    out = []
    for (arr, _), (pos, length, _) in _records(buf).items():
        payload = buf[pos + 32:pos + 32 + length]
        spec = hdr["arrays"][arr]
        for ch in range(spec["shape"][1]):
            start = struct.unpack_from("<Q", payload, 4 + 8 * ch)[0]
            block = spec_reader._inflate(payload[start:])
            head = spec_reader._sections(block, 0, [("u4", 12)])[0]
            npal, nn, nr, no, wg, rb = (int(head[k]) for k in (0, 5, 8, 9, 10, 11))
            nw = -(-nn // 64)
            nwo = nw if no else 0
            base, recs = spec_reader._sections(block, 0, [
                ("u4", 12), (np.dtype(spec["dtype"]).str[1:], npal), ("u8", nw), ("u4", nw),
                ("u8", nwo), ("u4", nwo), ("u1", -(-no * wg // 8) + 8),
                ("u4", -(-nr // 8) + 1), ("u1", rb + 8)])[-2:]
            offs = spec_reader._record_offsets(recs, base, nr, rb, wg)
            fields = []
            for r in range(nr):
                b0 = int(recs[offs[r]])
                fields.append((b0 & 7, b0 >> 3 & 1, b0 >> 4))
            out.append((arr, tuple(int(v) for v in head), fields))
    return out


def test_octree_writer_exercises_the_format(tmp_path: Path) -> None:
    """Volumes like those above reach the spec's branches: split and uniform nodes above the
    bricks, `other` bits, local widths 1 to 16, zf = 0 and 1, m in byte 0 and in the u16."""
    rng = np.random.default_rng(7)
    zyx = (40, 64, 72)
    arrays = {k: ("labels", np.stack([_label_volume(rng, k, zyx, "uint32")])[:, None], None)
              for k in ("boxes", "voronoi", "many")}
    arrays["m"] = ("labels", rng.integers(0, 300, (1, 1, *zyx)).astype(np.uint16), None)
    octant = np.zeros((1, 1, 64, 64, 64), dtype=np.uint16)
    octant[0, 0, 32:, :32, 32:] = 5  # 4×4×4 bricks of 5, the rest 0: no brick is mixed
    arrays["octant"] = ("labels", octant, None)
    path = _write(tmp_path / "x.ng5d", arrays, storage="zstd")
    out = read_ng5d(path)
    for n, (_, a, _) in arrays.items():
        assert _same(out["arrays"][n], a), n
    blocks = _octree_records(path)
    heads = [h for _, h, _ in blocks]
    fields = [f for _, _, fs in blocks for f in fs]
    assert any(h[7] > 0 for h in heads), "no split node above the bricks"
    (oct_head,) = [h for a, h, _ in blocks if a == list(arrays).index("octant")]
    assert oct_head[8] == 0 and oct_head[5] < 8**3, "octant not coded above the bricks"
    assert oct_head[:1] + oct_head[9:10] == (2, 1), "one uniform node of palette[1] via other"
    assert {lw for lw, _, _ in fields} >= {0, 1, 2, 3, 4}
    assert {zf for _, zf, _ in fields} == {0, 1}
    assert any(m == 15 for _, _, m in fields) and any(m < 15 for _, _, m in fields)


def test_unknown_codec_is_rejected(tmp_path: Path) -> None:
    """§1.1: minor versions add codecs; a reader rejects an array whose codec it does not know."""
    lab = np.zeros((1, 1, 4, 5, 6), dtype=np.uint8)
    buf = bytearray(_write(tmp_path / "c.ng5d", {"seg": ("labels", lab, None)}).read_bytes())
    hlen = struct.unpack_from("<I", buf, 12)[0]
    head = bytes(buf[16:16 + hlen]).replace(b'"octree"', b'"octrex"')
    buf[16:16 + hlen] = head
    struct.pack_into("<I", buf, 16 + hlen, zlib.crc32(head))
    (tmp_path / "c.ng5d").write_bytes(bytes(buf))
    with pytest.raises(ValueError, match="seg: unknown codec 'octrex'"):
        read_ng5d(tmp_path / "c.ng5d")
