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


def _write(path: Path, arrays: dict[str, tuple[str, np.ndarray, tuple | None]],
           times: dict[str, list[int]] | None = None, finish: bool = True) -> Path:
    """Write every (role, full TCZYX array, brick) timepoint by timepoint; return the path."""
    specs = [ArraySpec.make(n, role, a.dtype.name, a.shape, brick=brick)
             for n, (role, a, brick) in arrays.items()]
    w = Ng5dWriter(str(path), specs, voxel_size_um=(1.5, 0.5, 0.5), offset_zyx=(0, 3, 4))
    for name, (_, a, _) in arrays.items():
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


def _check(tmp_path: Path, arrays: dict, name: str = "f.ng5d") -> dict:
    out = read_ng5d(_write(tmp_path / name, arrays))
    assert out["complete"] is True
    for n, (role, a, brick) in arrays.items():
        assert _same(out["arrays"][n], a), n
        assert out["present"][n] == list(range(a.shape[0]))
        h = next(s for s in out["header"]["arrays"] if s["name"] == n)
        assert h["codec"] == {"intensity": "bitpack", "labels": "palette"}[role]
        assert h["brick"] == list(brick or DEFAULT_BRICK[role])
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


@pytest.mark.parametrize("brick", BRICKS)
@pytest.mark.parametrize("dtype", ["uint32", "uint64"])
def test_labels_roundtrip(tmp_path: Path, dtype: str, brick: tuple | None) -> None:
    a = np.zeros(SHAPE, dtype=dtype)
    hi = 2**40 if dtype == "uint64" else 2**32 - 400
    a[0] = RNG.integers(hi, hi + 400, SHAPE[1:], dtype=dtype)  # many (> 300) distinct values
    a[1, 0, 2:5, 4:12, 6:20] = 7  # few values: one object on background
    a[1, 0, 5:, :, :4] = np.iinfo(dtype).max
    a[2] = np.iinfo(dtype).max  # all max
    assert len(np.unique(a[0])) > 300
    _check(tmp_path, {"labels": ("labels", a, brick)})


def test_two_channels_and_two_arrays(tmp_path: Path) -> None:
    shape = (2, 2, 5, 18, 20)
    inten = RNG.integers(0, 5000, shape, dtype=np.uint16)
    inten[1, 1] = 0
    labels = RNG.integers(0, 3, shape).astype(np.uint32) * 100_000
    labels[0, 0] = 0
    out = _check(tmp_path, {"intensity": ("intensity", inten, None),
                            "labels": ("labels", labels, (3, 5, 7))})
    h = out["header"]
    assert h["format"] == "ng5d" and h["axes"] == ["t", "c", "z", "y", "x"]
    assert h["voxel_size"] == [1.5, 0.5, 0.5] and h["offset_zyx"] == [0, 3, 4]
    assert [s["name"] for s in h["arrays"]] == ["intensity", "labels"]


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "uint32", "float32"])
def test_sparse_volume(tmp_path: Path, dtype: str) -> None:
    a = np.zeros((2, 1, 9, 33, 35), dtype=dtype)
    idx = RNG.integers(0, a[0].size, 12)
    a[0].reshape(-1)[idx] = np.array([5, 200, 1, 3, 77, 9, 2, 250, 4, 8, 100, 6], dtype=dtype)
    a[1, 0, 4, 20, 30] = 1
    path = _write(tmp_path / "s.ng5d", {"v": ("intensity", a, None)})
    out = read_ng5d(path)
    assert _same(out["arrays"]["v"], a)
    assert 2 in _bitpack_modes(path), "expected the writer to pick the sparse mode somewhere"


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
    _check(tmp_path, {"a": ("labels", a, None), "b": ("labels", b, (1, 1, 1))})
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
        ArraySpec.make("a", "labels", np.uint32, (1, 1, 2, 200, 200), (2, 200, 200))
