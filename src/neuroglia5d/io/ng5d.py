"""``.ng5d``: a streaming, crash-safe, compressed 4D container (spec: docs/ng5d-format.md).

A file holds one or more arrays (e.g. ``intensity`` and ``labels``) of shape
(T, C, Z, Y, X). Timepoints are appended as self-checking records (one per array and
timepoint) as they are produced; an index and a footer close the file. Without the footer
(a writer that died) the index is rebuilt by scanning the records, and every complete
record is intact. A record can be appended again for the same array and timepoint (an
edit): the latest one wins.

Python interface
----------------
``Ng5dWriter``
    Append-only writer (``append`` → ``finalize``), used by the pipeline.
``open_ng5d(path)``
    Reads the file once into memory (compressed) and returns an :class:`Ng5dFile`, whose
    ``arrays[name]`` are lazy :class:`Ng5dArray` objects that napari can display
    directly: indexing decodes only the bricks that cover the request.
``recover(path)``
    Finalises an unfinished ``NAME.ng5d.partial`` into ``NAME.ng5d``.
"""

from __future__ import annotations

import json
import os
import struct
import threading
import zlib
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..errors import InputError, OutputError
from . import ng5d_codec as codec
from . import ng5d_octree as octree
from .atomic import finalize as _rename_final
from .atomic import os_errors, partial_path, remove
from .writers import SeriesMeta, SeriesWriter

MAGIC = b"NG5D\r\n\x1a\n"
#: written by this version; 1.x files (no storage tier) are still read
VERSION = (2, 2)
READABLE_MAJOR = (1, 2)
REC_MAGIC = b"NG5R"
IDX_MAGIC = b"NG5X"
FOOT_MAGIC = b"NG5F"
#: file start: magic, major, minor, header length
PREAMBLE = struct.Struct("<8sHHI")
#: record header: magic, array, t, codec, payload length, payload crc32, header crc32
RECORD = struct.Struct("<4sIIIQII")
#: index entry: array, t, record offset, payload length, payload crc32, reserved
ENTRY = struct.Struct("<IIQQII")
#: footer: index record offset, crc32 of the offset, magic
FOOTER = struct.Struct("<QI4s")
INDEX_ARRAY = 0xFFFFFFFF
CODEC_IDS = {"bitpack": codec.CODEC_BITPACK, "palette": codec.CODEC_PALETTE,
             "octree": octree.CODEC_OCTREE}
DEFAULT_BRICK = {"bitpack": (4, 16, 16), "palette": (8, 8, 8), "octree": octree.BRICK}
#: codec of each role unless asked otherwise
DEFAULT_CODEC = {"intensity": "bitpack", "labels": "octree"}
LABEL_CODECS = ("octree", "palette")
DEFAULT_STORAGE = codec.STORAGE_ZSTD


class Ng5dError(InputError):
    """A damaged, truncated or unsupported ``.ng5d`` file (one-line message)."""


def _crc(data: bytes | memoryview) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


def record_header(magic: bytes, array: int, t: int, codec_id: int, payload: bytes) -> bytes:
    """The 32-byte header of a record, both checksums filled in."""
    head = RECORD.pack(magic, array, t, codec_id, len(payload), _crc(payload), 0)
    return head[:-4] + struct.pack("<I", _crc(head[:-4]))


def index_and_footer(entries: dict[tuple[int, int], Any], index_offset: int) -> bytes:
    """The index record (entries sorted by array and t) and the footer pointing at it."""
    body = b"".join(ENTRY.pack(a, t, e[0], e[1], e[2], 0)
                    for (a, t), e in sorted(entries.items()))
    return (record_header(IDX_MAGIC, INDEX_ARRAY, 0, 0, body) + body
            + FOOTER.pack(index_offset, _crc(struct.pack("<Q", index_offset)), FOOT_MAGIC))


# --------------------------------------------------------------------------- header
@dataclass(frozen=True)
class ArraySpec:
    """One array of a ``.ng5d`` file.

    Attributes
    ----------
    name : str
        Unique name (``intensity``, ``labels``, ...).
    role : str
        ``intensity`` or ``labels`` (readers use it to pick a layer type).
    dtype : str
        NumPy dtype name.
    shape : tuple of int
        (T, C, Z, Y, X).
    brick : tuple of int
        Brick shape (z, y, x).
    codec : str
        ``bitpack`` (intensity), ``octree`` (labels, the default) or ``palette`` (labels,
        every file before format 2.1).
    storage : str
        ``zstd`` (volume blocks stored as zstd frames, inflated once on load into the
        per-voxel decodable resident form) or ``plain`` (stored as is; every 1.x file).
    """

    name: str
    role: str
    dtype: str
    shape: tuple[int, int, int, int, int]
    brick: tuple[int, int, int] = (0, 0, 0)
    codec: str = ""
    storage: str = DEFAULT_STORAGE

    @classmethod
    def make(cls, name: str, role: str, dtype: Any, shape: Sequence[int],
             brick: Sequence[int] | None = None,
             storage: str = DEFAULT_STORAGE, codec_name: str | None = None) -> ArraySpec:
        """An array spec with the codec and brick its role and dtype call for
        (``codec_name``: ``palette`` instead of ``octree`` for labels)."""
        dt = np.dtype(dtype).name
        cod = DEFAULT_CODEC["labels" if role == "labels" else "intensity"]
        if codec_name is not None:
            ok = LABEL_CODECS if role == "labels" else ("bitpack",)
            if codec_name not in ok:
                raise ValueError(f"{name}: codec {codec_name!r} is not one of {ok} for "
                                 f"role {role!r}")
            cod = codec_name
        allowed = codec.BITPACK_DTYPES if cod == "bitpack" else codec.PALETTE_DTYPES
        if dt not in allowed:
            raise ValueError(f"{name}: dtype {dt} not supported by {cod} ({allowed})")
        shp = tuple(int(s) for s in shape)
        if len(shp) == 4:
            shp = (shp[0], 1, *shp[1:])
        if len(shp) != 5 or min(shp) < 1:
            raise ValueError(f"{name}: shape must be (T, C, Z, Y, X) of positive sizes")
        b = tuple(int(v) for v in (brick or DEFAULT_BRICK[cod]))
        if len(b) != 3 or min(b) < 1:
            raise ValueError(f"{name}: brick must be three positive sizes, got {b}")
        if cod == "octree" and b != octree.BRICK:
            raise ValueError(f"{name}: octree bricks are {octree.BRICK}, got {b}")
        if cod == "palette" and int(np.prod(b)) > 65536:
            raise ValueError(f"{name}: a palette brick holds at most 65536 voxels, got {b}")
        if storage not in codec.STORAGES:
            raise ValueError(f"{name}: storage must be one of {codec.STORAGES}, got {storage!r}")
        return cls(name, role, dt, shp, b, cod, storage)  # type: ignore[arg-type]

    @property
    def n_bricks(self) -> int:
        """Bricks per channel volume."""
        return int(np.prod(codec.brick_grid(self.shape[2:], self.brick)))

    def to_json(self) -> dict[str, Any]:
        """The header entry."""
        return {"name": self.name, "role": self.role, "dtype": self.dtype,
                "shape": list(self.shape), "brick": list(self.brick), "codec": self.codec,
                "storage": self.storage}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ArraySpec:
        """Parse a header entry (raises :class:`Ng5dError` when it is malformed)."""
        try:
            spec = cls(str(d["name"]), str(d["role"]), str(d["dtype"]),
                       tuple(int(v) for v in d["shape"]),  # type: ignore[arg-type]
                       tuple(int(v) for v in d["brick"]), str(d["codec"]),  # type: ignore[arg-type]
                       str(d.get("storage", codec.STORAGE_PLAIN)))
        except (KeyError, TypeError, ValueError) as e:
            raise Ng5dError(f"array entry {d!r} is malformed ({e})") from None
        if spec.codec not in CODEC_IDS or len(spec.shape) != 5 or len(spec.brick) != 3 \
                or min(spec.brick) < 1 or spec.storage not in codec.STORAGES \
                or (spec.codec == "octree" and spec.brick != octree.BRICK):
            raise Ng5dError(f"array {spec.name!r}: unsupported codec or storage, or bad "
                            "shape/brick")
        return spec


def _encode_volume(spec: ArraySpec, vol: np.ndarray) -> bytes:
    if spec.codec == "octree":
        block = octree.encode_octree(vol)
    elif spec.codec == "palette":
        block = codec.encode_palette(vol, spec.brick)
    else:
        block = codec.encode_bitpack(vol, spec.brick)
    if spec.storage == codec.STORAGE_ZSTD:
        return codec.store_zstd(block, codec.ZSTD_LEVELS[spec.codec],
                                min_gain=codec.ZSTD_MIN_GAIN[spec.codec])
    return block


def encode_record_payload(spec: ArraySpec, data: np.ndarray) -> bytes:
    """Payload of one timepoint: ``u32 C``, C ``u64`` block offsets, then the C blocks."""
    a = np.asarray(data)
    if a.ndim == 3:
        a = a[np.newaxis]
    if a.shape != tuple(spec.shape[1:]):
        raise ValueError(f"{spec.name}: timepoint shape {a.shape} != {tuple(spec.shape[1:])}")
    if a.dtype != np.dtype(spec.dtype):
        if not np.can_cast(a.dtype, spec.dtype) and a.size and \
                int(a.max()) > np.iinfo(spec.dtype).max:
            raise ValueError(f"{spec.name}: values do not fit {spec.dtype}")
        a = a.astype(spec.dtype)
    blocks = [_encode_volume(spec, a[c]) for c in range(a.shape[0])]
    head = 4 + 8 * len(blocks)
    head += (-head) % 8
    offs = []
    pos = head
    for b in blocks:
        offs.append(pos)
        pos += len(b) + (-len(b)) % 8
    out = bytearray(struct.pack("<I", len(blocks)) + struct.pack(f"<{len(blocks)}Q", *offs))
    out += b"\0" * (head - len(out))
    for b in blocks:
        out += b
        out += b"\0" * ((-len(out)) % 8)
    return bytes(out)


# --------------------------------------------------------------------------- writer
class Ng5dWriter:
    """Append-only ``.ng5d`` writer.

    Parameters
    ----------
    path : str or Path
        Final file name (``….ng5d``). Data goes to ``….ng5d.partial`` until
        :meth:`finalize` renames it (the project's rule for every output).
    arrays : sequence of ArraySpec
        The arrays the file holds.
    voxel_size_um : tuple of float
        (z, y, x) voxel size in µm.
    offset_zyx : tuple of int
        Position of voxel (0, 0, 0) in the raw data's frame (the crop offset), in voxels.
    time_interval_s : float, optional
        Time between timepoints.
    attributes : dict, optional
        Free JSON metadata (provenance).
    resume : bool
        Continue an existing ``.partial`` written with the same header (its complete
        records are kept, a torn tail is cut off).
    """

    def __init__(self, path: str | Path, arrays: Sequence[ArraySpec], *,
                 voxel_size_um: Sequence[float] = (1.0, 1.0, 1.0),
                 offset_zyx: Sequence[int] = (0, 0, 0),
                 time_interval_s: float | None = None,
                 attributes: dict[str, Any] | None = None, resume: bool = False) -> None:
        self.path = Path(path)
        self.part = partial_path(self.path)
        names = [a.name for a in arrays]
        if len(set(names)) != len(names) or not names:
            raise ValueError("array names must be unique and at least one array given")
        self.arrays = {a.name: a for a in arrays}
        self.index_of = {a.name: i for i, a in enumerate(arrays)}
        self.header = {
            "format": "ng5d", "version": list(VERSION), "axes": ["t", "c", "z", "y", "x"],
            "voxel_size": [float(v) for v in voxel_size_um], "unit": "micrometer",
            "offset_zyx": [int(v) for v in offset_zyx], "time_interval": time_interval_s,
            "time_unit": "second", "arrays": [a.to_json() for a in arrays],
            "attributes": attributes or {}, "software": f"neuroglia5d {__version__}",
        }
        self.entries: dict[tuple[int, int], tuple[int, int, int]] = {}
        self._lock = threading.Lock()
        if resume and self.part.exists():
            self._reopen()
        else:
            self._start()

    def _header_bytes(self) -> bytes:
        hj = json.dumps(self.header, sort_keys=True).encode()
        return PREAMBLE.pack(MAGIC, *VERSION, len(hj)) + hj + struct.pack("<I", _crc(hj))

    def _start(self) -> None:
        with os_errors(self.part):
            self.part.parent.mkdir(parents=True, exist_ok=True)
            self.fh = open(self.part, "wb")  # noqa: SIM115 - kept open while streaming
            self.fh.write(self._header_bytes())
            self.fh.flush()

    def _reopen(self) -> None:
        f = open_ng5d(self.part)
        mine = {k: v for k, v in self.header.items() if k not in ("attributes", "software")}
        theirs = {k: v for k, v in f.header.items() if k not in ("attributes", "software")}
        if mine != theirs:
            raise OutputError(f"{self.part}: partial output is from a different run (header "
                              "differs); remove it or use another --out")
        self.entries = {k: (e.offset, e.length, e.crc) for k, e in f.entries.items()}
        end = f.data_end
        del f
        with os_errors(self.part):
            self.fh = open(self.part, "r+b")  # noqa: SIM115 - kept open while streaming
            self.fh.truncate(end)
            self.fh.seek(end)

    def completed(self, array: str) -> set[int]:
        """Timepoints of ``array`` already in the file."""
        i = self.index_of[array]
        return {t for (a, t) in self.entries if a == i}

    def append(self, array: str, t: int, data: np.ndarray) -> None:
        """Encode and append timepoint ``t`` of ``array`` ((Z, Y, X) or (C, Z, Y, X))."""
        spec = self.arrays[array]
        if not 0 <= t < spec.shape[0]:
            raise ValueError(f"{array}: timepoint {t} outside 0..{spec.shape[0] - 1}")
        payload = encode_record_payload(spec, data)
        self.append_payload(array, t, payload)

    def append_payload(self, array: str, t: int, payload: bytes) -> None:
        """Append an already encoded payload (thread-safe)."""
        i = self.index_of[array]
        crc = _crc(payload)
        head = record_header(REC_MAGIC, i, t, CODEC_IDS[self.arrays[array].codec], payload)
        with self._lock, os_errors(self.part):
            off = self.fh.tell()
            self.fh.write(head)
            self.fh.write(payload)
            self.fh.flush()  # a kill -9 keeps every record written so far
            self.entries[(i, t)] = (off, len(payload), crc)

    def _write_index(self) -> None:
        self.fh.write(index_and_footer(self.entries, self.fh.tell()))

    def missing(self) -> list[tuple[str, int]]:
        """(array, t) pairs not written yet."""
        out = []
        for name, spec in self.arrays.items():
            i = self.index_of[name]
            out += [(name, t) for t in range(spec.shape[0]) if (i, t) not in self.entries]
        return out

    def finalize(self, *, allow_missing: bool = False) -> Path:
        """Write the index and footer, and rename ``.partial`` to the final name."""
        miss = self.missing()
        if miss and not allow_missing:
            raise OutputError(f"{self.path}: {len(miss)} timepoint record(s) missing "
                              f"(first: {miss[0][0]} t={miss[0][1]}); not finalised")
        with self._lock, os_errors(self.part):
            self._write_index()
            self.fh.flush()
            os.fsync(self.fh.fileno())
            self.fh.close()
            _rename_final(self.part, self.path)
        return self.path

    def abort(self) -> None:
        """Close without an index: the ``.partial`` stays readable by scanning."""
        with self._lock:
            if not self.fh.closed:
                self.fh.flush()
                self.fh.close()

    def __enter__(self) -> Ng5dWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is not None:
            self.abort()


# --------------------------------------------------------------------------- reader
@dataclass
class Entry:
    """Where one record's payload lies in the file."""

    offset: int
    length: int
    crc: int


@dataclass
class Ng5dFile:
    """An opened ``.ng5d`` file (all records kept compressed in memory).

    Records stored with the ``zstd`` tier are inflated frame by frame, as decodes need
    them, into the per-voxel decodable resident form; the resident blocks of the most
    recently used records are kept, up to :attr:`resident_budget` bytes.

    Attributes
    ----------
    path : Path
    header : dict
        The JSON header.
    specs : dict of str to ArraySpec
    entries : dict of (array index, t) to Entry
        The latest record of every array and timepoint present.
    complete : bool
        True when the file ends with a valid index and footer.
    data_end : int
        Byte offset after the last valid record (where an appender continues).
    notes : list of str
        What the opener found (e.g. a torn last record).
    """

    path: Path
    header: dict[str, Any]
    specs: dict[str, ArraySpec]
    entries: dict[tuple[int, int], Entry]
    complete: bool
    data_end: int
    buf: Any = field(repr=False, default=None)
    notes: list[str] = field(default_factory=list)
    _verified: set[tuple[int, int]] = field(default_factory=set, repr=False)
    _parsed: OrderedDict[tuple[int, int, int], Any] = field(default_factory=OrderedDict,
                                                            repr=False)
    _inflated: dict[tuple[int, int, int], int] = field(default_factory=dict, repr=False)
    #: bytes of inflated (zstd-stored) resident blocks kept; the least recently used go
    #: first (they inflate again on their next access)
    resident_budget: int = 1 << 30
    _device: dict[tuple[int, int, int], Any] = field(default_factory=dict, repr=False)
    _arrays: dict[str, Ng5dArray] = field(default_factory=dict, repr=False)
    _pending: dict[tuple[int, int], bytes] = field(default_factory=dict, repr=False)

    @property
    def voxel_size_um(self) -> tuple[float, float, float]:
        """(z, y, x) in µm."""
        return tuple(self.header.get("voxel_size", (1.0, 1.0, 1.0)))  # type: ignore[return-value]

    @property
    def offset_zyx(self) -> tuple[int, int, int]:
        """Crop offset of voxel (0, 0, 0) in the raw frame."""
        return tuple(self.header.get("offset_zyx", (0, 0, 0)))  # type: ignore[return-value]

    @property
    def arrays(self) -> dict[str, Ng5dArray]:
        """Lazy array-likes by name."""
        if not self._arrays:
            self._arrays = {n: Ng5dArray(self, n) for n in self.specs}
        return self._arrays

    def array_index(self, name: str) -> int:
        """Position of an array in the header."""
        return list(self.specs).index(name)

    def timepoints(self, name: str) -> list[int]:
        """Timepoints of ``name`` present in the file (or edited in memory)."""
        i = self.array_index(name)
        return sorted({t for (a, t) in self.entries if a == i}
                      | {t for (a, t) in self._pending if a == i})

    def payload(self, name: str, t: int) -> memoryview:
        """The (checksum-verified) payload of a record."""
        i = self.array_index(name)
        if (i, t) in self._pending:
            return memoryview(self._pending[(i, t)])
        e = self.entries.get((i, t))
        if e is None:
            raise Ng5dError(f"{self.path}: {name} t={t} is not in the file "
                            f"({'complete' if self.complete else 'partial'} file)")
        mv = memoryview(self.buf)[e.offset + RECORD.size:e.offset + RECORD.size + e.length]
        if (i, t) not in self._verified:
            head = bytes(self.buf[e.offset:e.offset + RECORD.size])
            ok = len(head) == RECORD.size
            if ok:
                m, a, tt, cid, ln, pcrc, hcrc = RECORD.unpack(head)
                ok = (m == REC_MAGIC and hcrc == _crc(head[:-4]) and a == i and tt == t
                      and ln == e.length and pcrc == e.crc
                      and cid == CODEC_IDS[self.specs[name].codec])
            if not ok:
                raise Ng5dError(f"{self.path}: {name} t={t}: the index points at an invalid "
                                "record (damaged file)")
            if len(mv) != e.length or _crc(mv) != e.crc:
                raise Ng5dError(f"{self.path}: {name} t={t}: checksum mismatch (the record "
                                "is damaged)")
            self._verified.add((i, t))
        return mv

    def volume(self, name: str, t: int, c: int = 0) -> Any:
        """Parsed (not decoded) channel volume of a record."""
        key = (self.array_index(name), t, c)
        v = self._parsed.get(key)
        if v is not None:
            self._parsed.move_to_end(key)
        else:
            spec = self.specs[name]
            mv = self.payload(name, t)
            (n_ch,) = struct.unpack_from("<I", mv, 0)
            if n_ch != spec.shape[1] or not 0 <= c < n_ch:
                raise Ng5dError(f"{self.path}: {name} t={t}: {n_ch} channel(s) in the record, "
                                f"the header says {spec.shape[1]}")
            offs = struct.unpack_from(f"<{n_ch}Q", mv, 4)
            end = offs[c + 1] if c + 1 < n_ch else len(mv)
            block = mv[offs[c]:end]
            try:
                if spec.storage == codec.STORAGE_ZSTD:  # inflated into the resident form,
                    block = codec.LazyBlock(block)      # frame by frame as decodes need it
                nvox = int(np.prod(spec.brick))
                if spec.codec == "octree":
                    v = octree.parse_octree(block, tuple(spec.shape[2:]),  # type: ignore[arg-type]
                                            np.dtype(spec.dtype))
                elif spec.codec == "palette":
                    v = codec.parse_palette(block, spec.n_bricks, np.dtype(spec.dtype), nvox)
                else:
                    v = codec.parse_bitpack(block, spec.n_bricks, nvox)
            except InputError as e:
                raise Ng5dError(f"{self.path}: {name} t={t}: {e} (header does not match "
                                "the data)") from None
            self._parsed[key] = v
            if spec.storage == codec.STORAGE_ZSTD:
                self._inflated[key] = block.rlen  # type: ignore[union-attr]
                self._evict(keep=key)
        return v

    def _evict(self, keep: tuple[int, int, int]) -> None:
        """Drop the least recently used inflated blocks beyond :attr:`resident_budget`."""
        total = sum(self._inflated.values())
        for k in list(self._parsed):
            if total <= self.resident_budget:
                break
            if k != keep and k in self._inflated:
                total -= self._inflated.pop(k)
                del self._parsed[k]

    def decode(self, name: str, t: int, c: int = 0,
               region: tuple[slice, slice, slice] | None = None) -> np.ndarray:
        """Decode a brick-independent region (default: all) of one timepoint on the CPU."""
        spec = self.specs[name]
        v = self.volume(name, t, c)
        zyx = tuple(spec.shape[2:])
        try:  # a lazily inflated block inflates and checks the bricks needed here
            if spec.codec == "octree":
                return octree.decode_octree(v, zyx, region)  # type: ignore[arg-type]
            if spec.codec == "palette":
                return codec.decode_palette(v, zyx, spec.brick, region)  # type: ignore[arg-type]
            return codec.decode_bitpack(v, zyx, spec.brick, spec.dtype, region)  # type: ignore[arg-type]
        except Ng5dError:
            raise
        except InputError as e:
            raise Ng5dError(f"{self.path}: {name} t={t}: {e} (header does not match the "
                            "data)") from None

    def to_device(self, name: str, t: int, c: int = 0,
                  region: tuple[slice, slice, slice] | None = None, xp: Any = None,
                  out: Any = None) -> Any:
        """Decode on the GPU into a CuPy array (the compressed record is uploaded once):
        a new one, or ``out`` (C-contiguous, the region's shape and the array's dtype)."""
        from .ng5d_gpu import DeviceVolume, decode_on_device

        if xp is None:
            import cupy as xp
        key = (self.array_index(name), t, c)
        dv = self._device.get(key)
        if dv is None:
            v = self.volume(name, t, c)
            try:
                if isinstance(v, octree.OctreeVolume):
                    octree.ensure_records(v)
                else:
                    codec.ensure_inflated(v, self.specs[name].brick)
            except InputError as e:
                raise Ng5dError(f"{self.path}: {name} t={t}: {e} (damaged record)") from None
            dv = self._device[key] = DeviceVolume(v, xp)
        spec = self.specs[name]
        return decode_on_device(dv, tuple(spec.shape[2:]), spec.brick, spec.dtype,  # type: ignore[arg-type]
                                region, out=out)

    def write_tile(self, name: str, t: int, region: tuple[slice, slice, slice],
                   values: np.ndarray, c: int = 0) -> None:
        """Replace a region of one timepoint (an edit of the working copy).

        The timepoint is decoded, patched and encoded again, in memory; :meth:`save`
        appends the edited records to the file. Reads see the edit at once.
        """
        spec = self.specs[name]
        full = np.stack([self.decode(name, t, k) for k in range(spec.shape[1])])
        full[(c, *region)] = values
        payload = encode_record_payload(spec, full)
        i = self.array_index(name)
        self._pending[(i, t)] = payload
        for key in [k for k in self._parsed if k[:2] == (i, t)]:
            del self._parsed[key]
            self._inflated.pop(key, None)
        self._device = {k: v for k, v in self._device.items() if k[:2] != (i, t)}
        self._verified.add((i, t))
        if name in self._arrays:
            self._arrays[name]._cache.clear()

    @property
    def dirty(self) -> bool:
        """True when edits are waiting for :meth:`save`."""
        return bool(self._pending)

    def save(self) -> Path:
        """Append the edited records, a new index and footer to the file (crash-safe: the
        previous index stays valid until the new footer is written)."""
        if not self._pending:
            return self.path
        names = list(self.specs)
        with os_errors(self.path), open(self.path, "r+b") as fh:
            fh.seek(0, os.SEEK_END)
            pos = fh.tell()
            for (i, t), payload in sorted(self._pending.items()):
                head = record_header(REC_MAGIC, i, t, CODEC_IDS[self.specs[names[i]].codec],
                                     payload)
                fh.write(head)
                fh.write(payload)
                self.entries[(i, t)] = Entry(pos, len(payload), _crc(payload))
                pos += len(head) + len(payload)
            fh.write(index_and_footer({k: (e.offset, e.length, e.crc)
                                       for k, e in self.entries.items()}, pos))
            fh.flush()
            os.fsync(fh.fileno())
        self.buf = self.path.read_bytes()
        self._pending.clear()
        self._parsed.clear()
        self._inflated.clear()
        self.complete = True
        return self.path

    def info(self) -> dict[str, Any]:
        """Summary for ``neuroglia5d info``: arrays, shape, compression, completeness."""
        arrays = []
        for name, spec in self.specs.items():
            ts = self.timepoints(name)
            comp = sum(self.entries[(self.array_index(name), t)].length for t in ts)
            raw = len(ts) * int(np.prod(spec.shape[1:])) * np.dtype(spec.dtype).itemsize
            bad = []
            resident = 0
            for t in ts:
                try:
                    resident += _resident_bytes(self.payload(name, t), spec.storage)
                except (Ng5dError, InputError):
                    bad.append(t)
            arrays.append({"name": name, "role": spec.role, "dtype": spec.dtype,
                           "shape": list(spec.shape), "brick": list(spec.brick),
                           "codec": spec.codec, "storage": spec.storage,
                           "timepoints_present": len(ts),
                           "timepoints_expected": spec.shape[0], "compressed_bytes": comp,
                           "ratio": raw / comp if comp else None,
                           "resident_bytes": resident,
                           "resident_ratio": raw / resident if resident else None,
                           "checksum_errors": bad})
        return {"path": str(self.path), "version": self.header.get("version"),
                "complete": self.complete, "voxel_size_um": list(self.voxel_size_um),
                "offset_zyx": list(self.offset_zyx), "arrays": arrays, "notes": self.notes,
                "bytes": len(self.buf)}


def _resident_bytes(payload: memoryview, storage: str) -> int:
    """Bytes the volume blocks of a payload take once inflated (kept in memory)."""
    (n_ch,) = struct.unpack_from("<I", payload, 0)
    offs = [*struct.unpack_from(f"<{n_ch}Q", payload, 4), len(payload)]
    if storage != codec.STORAGE_ZSTD:
        return len(payload) - offs[0]
    return sum(codec.stored_layout(payload[offs[c]:offs[c + 1]])[0] for c in range(n_ch))


def _read_header(buf: Any, path: Path) -> tuple[dict[str, Any], int]:
    if len(buf) < PREAMBLE.size:
        raise Ng5dError(f"{path}: too short to be an .ng5d file ({len(buf)} bytes)")
    magic, major, minor, hlen = PREAMBLE.unpack_from(buf, 0)
    if magic != MAGIC:
        raise Ng5dError(f"{path}: not an .ng5d file (wrong magic bytes)")
    if major not in READABLE_MAJOR:
        raise Ng5dError(f"{path}: .ng5d version {major}.{minor} is not supported "
                        f"(this reader: {', '.join(f'{m}.x' for m in READABLE_MAJOR)})")
    end = PREAMBLE.size + hlen + 4
    if len(buf) < end:
        raise Ng5dError(f"{path}: truncated inside the header")
    hj = bytes(buf[PREAMBLE.size:PREAMBLE.size + hlen])
    (crc,) = struct.unpack_from("<I", buf, PREAMBLE.size + hlen)
    if crc != _crc(hj):
        raise Ng5dError(f"{path}: header checksum mismatch (damaged header)")
    try:
        header = json.loads(hj)
    except json.JSONDecodeError as e:
        raise Ng5dError(f"{path}: header is not valid JSON ({e.msg})") from None
    return header, end


def _read_index(buf: Any, start: int) -> tuple[dict[tuple[int, int], Entry], int] | None:
    """Entries from the footer's index, or None when there is no valid footer."""
    n = len(buf)
    if n < start + FOOTER.size:
        return None
    off, ocrc, magic = FOOTER.unpack_from(buf, n - FOOTER.size)
    if magic != FOOT_MAGIC or ocrc != _crc(struct.pack("<Q", off)):
        return None
    if off < start or off + RECORD.size > n - FOOTER.size:
        return None
    m, _a, _t, _c, ln, pcrc, hcrc = RECORD.unpack_from(buf, off)
    if m != IDX_MAGIC or hcrc != _crc(bytes(buf[off:off + RECORD.size - 4])):
        return None
    body = memoryview(buf)[off + RECORD.size:off + RECORD.size + ln]
    if len(body) != ln or _crc(body) != pcrc or ln % ENTRY.size:
        return None
    entries = {}
    for k in range(ln // ENTRY.size):
        arr, t, roff, rlen, crc, _ = ENTRY.unpack_from(body, k * ENTRY.size)
        entries[(arr, t)] = Entry(roff, rlen, crc)
    return entries, off


def scan_records(buf: Any, start: int) -> tuple[dict[tuple[int, int], Entry], int, list[str]]:
    """Rebuild the index by walking the records from ``start``.

    A record counts when its header checksum holds and its payload lies inside the file;
    the walk stops at the first that does not (a torn tail). Index records met on the
    way (from earlier finalisations) are skipped.

    Returns
    -------
    entries : dict
        Latest record per (array, t).
    data_end : int
        Offset after the last complete record.
    notes : list of str
    """
    entries: dict[tuple[int, int], Entry] = {}
    pos, n = start, len(buf)
    notes: list[str] = []
    while pos + RECORD.size <= n:
        m, a, t, _c, ln, pcrc, hcrc = RECORD.unpack_from(buf, pos)
        if m not in (REC_MAGIC, IDX_MAGIC) or hcrc != _crc(bytes(buf[pos:pos + RECORD.size - 4])):
            break
        end = pos + RECORD.size + ln
        if end > n:
            notes.append(f"last record (array {a}, t={t}) is truncated and was ignored")
            break
        if m == REC_MAGIC:
            entries[(a, t)] = Entry(pos, ln, pcrc)
        pos = end
        if m == IDX_MAGIC and pos + FOOTER.size <= n and \
                buf[pos + FOOTER.size - 4:pos + FOOTER.size] == FOOT_MAGIC:
            pos += FOOTER.size
    if pos < n and not notes:
        notes.append(f"{n - pos} trailing byte(s) after the last complete record ignored")
    return entries, pos, notes


def open_ng5d(path: str | Path, *, mmap: bool = False) -> Ng5dFile:
    """Open a ``.ng5d`` (or ``.ng5d.partial``) file.

    The file is read once, in one sequential pass, and kept compressed in memory (or
    memory-mapped with ``mmap=True``); no file handle stays open. Version 1.x files (no
    storage tier) and 2.x files are read.

    Raises
    ------
    Ng5dError
        Wrong magic, unsupported version, damaged header, or a header that does not
        describe valid arrays. Damaged records are reported when they are decoded.
    """
    p = Path(path)
    try:
        if mmap:
            import mmap as _mmap

            with open(p, "rb") as f:
                buf: Any = _mmap.mmap(f.fileno(), 0, access=_mmap.ACCESS_READ)
        else:
            buf = p.read_bytes()
    except FileNotFoundError:
        raise Ng5dError(f"{p}: no such file") from None
    except OSError as e:
        raise Ng5dError(f"{p}: cannot read ({e.strerror})") from None
    header, start = _read_header(buf, p)
    specs = {}
    for d in header.get("arrays", []):
        s = ArraySpec.from_json(d)
        specs[s.name] = s
    if not specs:
        raise Ng5dError(f"{p}: header declares no arrays")
    idx = _read_index(buf, start)
    notes: list[str] = []
    if idx is not None:
        entries, data_end = idx
        complete = True
    else:
        entries, data_end, notes = scan_records(buf, start)
        complete = False
        notes.insert(0, f"no valid footer: index rebuilt by scanning ({len(entries)} "
                        "complete record(s))")
    for (a, t), e in entries.items():
        if a >= len(specs) or t >= list(specs.values())[a].shape[0]:
            raise Ng5dError(f"{p}: record for array {a}, t={t} does not fit the header")
        if e.offset + RECORD.size + e.length > len(buf):
            raise Ng5dError(f"{p}: record for array {a}, t={t} lies past the end of the file")
    return Ng5dFile(p, header, specs, entries, complete, data_end, buf, notes)


def recover(path: str | Path) -> Path:
    """Finalise an unfinished ``NAME.ng5d.partial``: cut a torn tail, write the index and
    footer, and rename it to ``NAME.ng5d``.

    Returns
    -------
    Path
        The final file.
    """
    p = Path(path)
    f = open_ng5d(p)
    final = p.with_name(p.name[:-len(".partial")]) if p.name.endswith(".partial") else p
    entries, end = f.entries, f.data_end
    if f.complete:
        if p != final:
            _rename_final(p, final)
        return final
    del f
    with os_errors(p), open(p, "r+b") as fh:
        fh.truncate(end)
        fh.seek(end)
        fh.write(index_and_footer({k: (e.offset, e.length, e.crc)
                                   for k, e in entries.items()}, end))
        fh.flush()
        os.fsync(fh.fileno())
    if p != final:
        _rename_final(p, final)
    return final


# --------------------------------------------------------------------------- lazy array
def _norm_index(key: Any, shape: tuple[int, ...]) -> list[int | slice]:
    if not isinstance(key, tuple):
        key = (key,)
    if any(k is Ellipsis for k in key):
        i = next(j for j, k in enumerate(key) if k is Ellipsis)
        fill = len(shape) - (len(key) - 1)
        key = key[:i] + (slice(None),) * fill + key[i + 1:]
    key = key + (slice(None),) * (len(shape) - len(key))
    if len(key) != len(shape):
        raise IndexError(f"too many indices for an array of {len(shape)} dimensions")
    out: list[int | slice] = []
    for k, n in zip(key, shape, strict=True):
        if isinstance(k, int | np.integer):
            k = int(k)
            if not -n <= k < n:
                raise IndexError(f"index {k} out of range for size {n}")
            out.append(k % n)
        elif isinstance(k, slice):
            out.append(slice(*k.indices(n)))
        else:
            raise TypeError(f"unsupported index {k!r} (use ints and slices)")
    return out


def _decode_window(k: int | slice) -> tuple[slice, int | slice]:
    """The contiguous range to decode for one axis index, and how to pick from it."""
    if isinstance(k, int):
        return slice(k, k + 1), 0
    idx = range(k.start, k.stop, k.step)
    if len(idx) == 0:
        return slice(0, 0), slice(0, 0)
    lo, hi = min(idx[0], idx[-1]), max(idx[0], idx[-1]) + 1
    first = idx[0] - lo
    stop = idx[-1] - lo + (1 if k.step > 0 else -1)
    return slice(lo, hi), slice(first, stop if stop >= 0 else None, k.step)


class Ng5dArray:
    """A lazy, read-only array-like over one array of an :class:`Ng5dFile`.

    ``shape`` is (T, Z, Y, X) for one channel, (T, C, Z, Y, X) otherwise. Indexing with
    ints and slices decodes only the bricks covering the request (ints and slices with
    steps; the decoded block is then sliced) and returns NumPy. The last few decoded
    requests are cached, since napari asks for the same slice repeatedly.
    """

    def __init__(self, f: Ng5dFile, name: str, cache_size: int = 4) -> None:
        self.file = f
        self.name = name
        self.spec = f.specs[name]
        T, C, Z, Y, X = self.spec.shape
        self.shape: tuple[int, ...] = (T, Z, Y, X) if C == 1 else (T, C, Z, Y, X)
        self.dtype = np.dtype(self.spec.dtype)
        self.ndim = len(self.shape)
        self._cache: OrderedDict[tuple[Any, ...], np.ndarray] = OrderedDict()
        self._cache_size = cache_size

    @property
    def size(self) -> int:
        """Number of voxels."""
        return int(np.prod(self.shape))

    @property
    def nbytes(self) -> int:
        """Decoded size in bytes."""
        return self.size * self.dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        a = self[...]
        return a.astype(dtype) if dtype is not None else a

    def __getitem__(self, key: Any) -> np.ndarray:
        idx = _norm_index(key, self.shape)
        if len(self.shape) == 4:
            idx = [idx[0], 0, *idx[1:]]
        t_i, c_i, z_i, y_i, x_i = idx
        region = []
        post: list[int | slice] = []
        for k in (z_i, y_i, x_i):
            r, p = _decode_window(k)
            region.append(r)
            post.append(p)
        ts = [t_i] if isinstance(t_i, int) else list(range(*t_i.indices(self.spec.shape[0])))
        cs = [c_i] if isinstance(c_i, int) else list(range(*c_i.indices(self.spec.shape[1])))
        reg = tuple(region)
        blocks = [[self._decode(t, c, reg)[tuple(post)] for c in cs] for t in ts]
        shape_tail = blocks[0][0].shape if blocks and blocks[0] else ()
        out = np.empty((len(ts), len(cs), *shape_tail), self.dtype)
        for i, row in enumerate(blocks):
            for j, b in enumerate(row):
                out[i, j] = b
        if isinstance(c_i, int):
            out = out[:, 0]
        if isinstance(t_i, int):
            out = out[0]
        return out

    def _decode(self, t: int, c: int, region: tuple[slice, slice, slice]) -> np.ndarray:
        key = (t, c, *((s.start, s.stop) for s in region))
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        a = self.file.decode(self.name, t, c, region)
        a.flags.writeable = False
        self._cache[key] = a
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return a

    def decode_tile(self, t: int, region: tuple[slice, slice, slice], c: int = 0
                    ) -> np.ndarray:
        """A writable copy of a region of one timepoint (to edit labels in)."""
        return self.file.decode(self.name, t, c, region).copy()

    def to_device(self, t: int, region: tuple[slice, slice, slice] | None = None,
                  c: int = 0, out: Any = None) -> Any:
        """Decode one timepoint (or a region) on the GPU into a CuPy array (``out`` if
        given)."""
        return self.file.to_device(self.name, t, c, region, out=out)


# --------------------------------------------------------------------------- pipeline
class Ng5dSeriesWriter(SeriesWriter):
    """Pipeline output ``--format ng5d``: ``<stem>_labels.ng5d`` (labels as produced) and
    ``<stem>_fused.ng5d`` (intensity and the working copy of the labels, one file)."""

    name = "ng5d"

    def __init__(self, out_dir: Path, meta: SeriesMeta, *, resume: bool = False) -> None:
        super().__init__(out_dir, meta, resume=resume)
        T, Z, Y, X = meta.shape_tzyx
        shape = (T, 1, Z, Y, X)
        common = {"voxel_size_um": meta.spacing_um, "offset_zyx": meta.offset_zyx,
                  "time_interval_s": meta.time_interval_s,
                  "attributes": {"provenance": meta.provenance, "channel": meta.channel},
                  "resume": resume}
        if not resume:
            for f in self.final_paths():
                remove(partial_path(f))
        self.labels = Ng5dWriter(self.out_dir / f"{meta.stem}_labels.ng5d",
                                 [ArraySpec.make("labels", "labels", "uint32", shape)], **common)
        self.fused = Ng5dWriter(self.out_dir / f"{meta.stem}_fused.ng5d",
                                [ArraySpec.make("intensity", "intensity", "uint16", shape),
                                 ArraySpec.make("labels", "labels", "uint32", shape)], **common)

    def final_paths(self) -> list[Path]:
        """``[<stem>_labels.ng5d, <stem>_fused.ng5d]``."""
        return [self.out_dir / f"{self.meta.stem}_labels.ng5d",
                self.out_dir / f"{self.meta.stem}_fused.ng5d"]

    def completed(self) -> set[int]:
        """Timepoints complete in both partial files."""
        done = self.labels.completed("labels")
        return done & self.fused.completed("intensity") & self.fused.completed("labels")

    def read_timepoint(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """Read a finished timepoint back from the partial fused file."""
        f = open_ng5d(self.fused.part)
        return f.decode("intensity", t), f.decode("labels", t)

    def write(self, t: int, intensity: np.ndarray, labels: np.ndarray) -> None:
        """Append timepoint ``t`` to both files (the labels are encoded once)."""
        spec = self.labels.arrays["labels"]
        lab_payload = encode_record_payload(spec, labels)
        self.labels.append_payload("labels", t, lab_payload)
        self.fused.append("intensity", t, intensity)
        self.fused.append_payload("labels", t, lab_payload)

    def finalize(self) -> list[Path]:
        """Write both indexes and rename both files."""
        return [self.labels.finalize(), self.fused.finalize()]

    def abort(self) -> None:
        """Leave both ``.partial`` files readable by scanning."""
        self.labels.abort()
        self.fused.abort()


def convert_arrays(arrays: Iterable[tuple[ArraySpec, Any]], out: Path, *,
                   voxel_size_um: Sequence[float], offset_zyx: Sequence[int] = (0, 0, 0),
                   attributes: dict[str, Any] | None = None,
                   progress: Any = None) -> Path:
    """Write arrays (each indexable as ``a[t]`` → (Z, Y, X) or (C, Z, Y, X)) to ``out``."""
    items = list(arrays)
    w = Ng5dWriter(out, [s for s, _ in items], voxel_size_um=voxel_size_um,
                   offset_zyx=offset_zyx, attributes=attributes)
    with w:
        total = sum(s.shape[0] for s, _ in items)
        done = 0
        for spec, a in items:
            for t in range(spec.shape[0]):
                w.append(spec.name, t, np.asarray(a[t]))
                done += 1
                if progress is not None:
                    progress(done, total)
        return w.finalize()
