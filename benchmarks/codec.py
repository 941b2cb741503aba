"""Codec benchmark: the ``.ng5d`` volume codecs against general-purpose alternatives.

What is measured, for every volume and codec, in one run:

* **ratio**: raw bytes / compressed bytes (for Zarr: the stored chunk bytes, metadata
  excluded; for TIFF: the whole in-memory file);
* **decode GB/s**: bytes of *decoded output* (the volume's ``nbytes``) / seconds, best of
  at least ``--repeats`` timed calls (more, up to 200, until 0.3 s were spent: short
  decodes are noisy) after one untimed warm-up call (which JIT-compiles the numba
  kernels and is also used to check that the decoded volume equals the original). The
  two ``.ng5d`` tiers and the two Blosc2 codecs are timed call by call in turn, so that
  on a shared machine they see the same load; for them the table also gives the
  **median** call (the targets use it: a best call can be a lucky one) and the **CPU
  time of one call on one thread** (median of as many calls, timed in turn as well, with
  numba and Blosc2 set to one thread: ``time.process_time``, which the other work on a
  shared machine disturbs far less than wall time).
  Every decoder gets the same thread count (``--threads``, default 2): numba's
  ``set_num_threads`` for ``.ng5d``, ``nthreads`` for Blosc2, ``maxworkers`` for
  tifffile, ``threading.max_workers`` for Zarr. compressed_segmentation and the
  ``np.copyto`` ceiling are single-threaded by construction. Every decoder allocates its
  output as a new NumPy array (Blosc2 through ``dst=``); only the memory-copy ceiling
  writes into a preallocated one.

Volumes (``neuroglia5d.sample_data.make_sample``, timepoint 0):

* camera intensity (uint16) of the ``nuclei`` and ``microglia`` kinds, ``--shape``
  (default 64×512×512, ``--quick`` 32×256×256), seed ``--seed`` (default 201);
* the same intensity after the project's background subtraction
  (``subtract_background(..., target_sparsity=0.75, object_diameter_px=16, anisotropy=3)``,
  rounded and clipped to uint16);
* the ground-truth labels (uint32) of both kinds;
* the napari sample data (shape 5×32×256×256, seed 0, timepoint 0): intensity and labels.

Codecs: ``.ng5d`` bitpack (bricks 4×16×16, intensity) and octree (bricks 8×8×8, labels;
format 2.1), in its two tiers: **resident** (the per-voxel decodable block a reader keeps in
memory, parsed and validated once, and decodes on every access, on the CPU or the GPU;
timed as the decode of the parsed block, which is what every slice or tile read costs)
and **from file** (the zstd storage tier written to disk, which a reader inflates once per
timepoint; timed as inflate + parse + decode, the cost of a timepoint's first access);
Blosc2 LZ4 + byte shuffle and Blosc2 Zstd + bitshuffle (both clevel 5); TIFF LZW
(tifffile, no predictor); Zarr v3 with its default codecs and chunking (in a
MemoryStore); compressed_segmentation (labels, 8×8×8 blocks); for labels also the
format 2.0 labels codec ``palette`` (resident block, for reference); ``np.copyto`` as the
ceiling.

Also: ``.ng5d`` decoding of a 25 % tile (all Z, the first half of Y and of X, brick
aligned) against the whole timepoint, and, when CuPy sees a GPU, ``.ng5d`` decoding on the
device against a device-to-device ``cupy.copyto``. A final block checks the targets the
format was designed for and prints PASS or FAIL for each.

Run::

    python benchmarks/codec.py --quick              # 32×256×256, about a minute
    python benchmarks/codec.py                      # 64×512×512, a few minutes
    python benchmarks/codec.py --threads 8 --repeats 9 --json codec.json
"""

from __future__ import annotations

import argparse
import importlib.metadata
import io
import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

BRICK_BITPACK = (4, 16, 16)
BRICK_PALETTE = (8, 8, 8)
CSEG_BLOCK = (8, 8, 8)
BLOSC_CLEVEL = 5
#: napari's File > Open Sample data (``neuroglia5d._napari.samples``): shape and seed
SAMPLE_SHAPE = (5, 32, 256, 256)
SAMPLE_SEED = 0

CODEC_LABELS = {
    "ng5d": ".ng5d resident (CPU)",
    "ng5d-file": ".ng5d from file (CPU)",
    "ng5d-palette": ".ng5d 2.0 palette, resident (CPU)",
    "lz4": "Blosc2 LZ4+shuffle",
    "zstd": "Blosc2 Zstd+bitshuffle",
    "tiff": "TIFF LZW (tifffile)",
    "zarr": "Zarr v3 default",
    "cseg": "compressed_segmentation",
    "memcpy": "memory copy (np.copyto)",
    "ng5d-gpu": ".ng5d (GPU)",
    "gpu-copy": "device copy (cupy.copyto)",
}

Decoder = Callable[[], Any]


@dataclass
class Volume:
    """One benchmark volume."""

    name: str
    kind: str  # "intensity" or "labels"
    data: np.ndarray


@dataclass
class Row:
    """One table row: a codec on a volume."""

    volume: str
    codec: str
    label: str
    raw_bytes: int
    compressed_bytes: int
    seconds: float
    note: str = ""
    #: median wall time of a call (codecs timed in turn only)
    seconds_median: float | None = None
    #: median CPU time of a call on one thread (codecs timed in turn only)
    cpu1_seconds: float | None = None

    @property
    def ratio(self) -> float:
        return self.raw_bytes / self.compressed_bytes

    @property
    def gbps(self) -> float:
        return self.raw_bytes / self.seconds / 1e9

    @property
    def gbps_median(self) -> float:
        return self.raw_bytes / (self.seconds_median or self.seconds) / 1e9


@dataclass
class Tile:
    """``.ng5d`` decode of a 25 % tile against the whole timepoint."""

    volume: str
    region: list[int]
    seconds_tile: float
    seconds_whole: float

    @property
    def speedup(self) -> float:
        return self.seconds_whole / self.seconds_tile


@dataclass
class Target:
    """One checked design target."""

    target: str
    volume: str
    ng5d: float
    reference: float
    passed: bool
    what: str = field(default="")


# --------------------------------------------------------------------------- timing
#: timed calls go on past ``--repeats`` until this much time was spent (short decodes are
#: noisy on a busy machine), up to MAX_CALLS
MIN_SECONDS = 0.3
MAX_CALLS = 200


def one_call(fn: Decoder) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def best_time(fn: Decoder, repeats: int) -> float:
    """Best wall time of ``fn`` (already warmed up) over at least ``repeats`` calls."""
    times: list[float] = []
    while len(times) < repeats or (sum(times) < MIN_SECONDS and len(times) < MAX_CALLS):
        times.append(one_call(fn))
    return min(times)


def measure(vol: Volume, codec: str, size: int, dec: Decoder, repeats: int,
            note: str = "") -> Row:
    """Warm up ``dec``, check its output against the volume, then time it."""
    check(vol, codec, dec)
    secs = best_time(dec, repeats)
    return Row(vol.name, codec, CODEC_LABELS[codec], vol.data.nbytes, size, secs, note)


def check(vol: Volume, codec: str, dec: Decoder) -> None:
    """Warm-up call, whose output must be the volume."""
    out = np.asarray(dec())
    if out.shape != vol.data.shape or not np.array_equal(out, vol.data):
        raise AssertionError(f"{CODEC_LABELS[codec]} did not round-trip {vol.name}")


def round_robin(decoders: list[Decoder], repeats: int, clock: Callable[[], float]
                ) -> list[list[float]]:
    """Call the decoders in turn, timing each call with ``clock``: at least ``repeats``
    rounds, more until every decoder ran ``MIN_SECONDS`` (up to ``MAX_CALLS`` rounds)."""
    times: list[list[float]] = [[] for _ in decoders]
    while (len(times[0]) < repeats
           or (min(sum(t) for t in times) < MIN_SECONDS and len(times[0]) < MAX_CALLS)):
        for k, dec in enumerate(decoders):
            t0 = clock()
            dec()
            times[k].append(clock() - t0)
    return times


def measure_interleaved(vol: Volume, entries: list[tuple[str, int, Decoder, str]],
                        repeats: int, single: list[Decoder], set_threads: Callable[[int], None],
                        threads: int) -> list[Row]:
    """Time several decoders of one volume call by call in turn (round robin), so that on
    a shared machine every decoder sees the same load: best and median wall time with
    ``threads`` threads, then the median CPU time of the ``single`` decoders (the same
    codecs set up for one thread) with ``set_threads(1)``."""
    for codec, _, dec, _ in entries:
        check(vol, codec, dec)
    times = round_robin([e[2] for e in entries], repeats, time.perf_counter)
    set_threads(1)
    try:
        for dec in single:
            dec()  # warm-up (Blosc2 contexts, numba's thread pool)
        cpu = round_robin(single, repeats, time.process_time)
    finally:
        set_threads(threads)
    return [Row(vol.name, codec, CODEC_LABELS[codec], vol.data.nbytes, size, min(t), note,
                float(np.median(t)), float(np.median(c)))
            for (codec, size, _, note), t, c in zip(entries, times, cpu, strict=True)]


def set_codec_threads(n: int) -> None:
    """Thread count of numba (``.ng5d``) and Blosc2."""
    import blosc2
    import numba

    numba.set_num_threads(n)
    blosc2.set_nthreads(n)


# --------------------------------------------------------------------------- codecs
def n_bricks(shape: tuple[int, ...], brick: tuple[int, int, int]) -> int:
    from neuroglia5d.io import ng5d_codec as c

    return int(np.prod(c.brick_grid(shape, brick)))  # type: ignore[arg-type]


def ng5d_encode(vol: Volume) -> tuple[bytes, tuple[int, int, int]]:
    """The resident ``.ng5d`` block of a volume and its brick shape."""
    from neuroglia5d.io import ng5d_codec as c
    from neuroglia5d.io import ng5d_octree as o

    if vol.kind == "labels":
        return o.encode_octree(vol.data), o.BRICK
    return c.encode_bitpack(vol.data, BRICK_BITPACK), BRICK_BITPACK


def ng5d_parser(vol: Volume, brick: tuple[int, int, int]) -> Callable[[Any], Any]:
    """``parse(block)``: what a reader does on the first read of a timepoint (the brick
    counts come from the file's header, worked out once when the file is opened)."""
    from neuroglia5d.io import ng5d_codec as c
    from neuroglia5d.io import ng5d_octree as o

    shape: tuple[int, int, int] = vol.data.shape  # type: ignore[assignment]
    dtype = vol.data.dtype
    if vol.kind == "labels":
        return lambda blob: o.parse_octree(blob, shape, dtype)
    nb = n_bricks(shape, brick)
    nvox = int(np.prod(brick))
    return lambda blob: c.parse_bitpack(blob, nb, nvox)


def ng5d_parse(vol: Volume, blob: Any, brick: tuple[int, int, int]) -> Any:
    """The parsed resident block of a volume."""
    return ng5d_parser(vol, brick)(blob)


def ng5d_file_decoder(vol: Volume, stored: bytes, brick: tuple[int, int, int]) -> Decoder:
    """Inflate the storage tier, then parse + decode it all on the CPU."""
    from neuroglia5d.io import ng5d_codec as c

    parse = ng5d_parser(vol, brick)

    def dec() -> np.ndarray:
        return ng5d_decoder(vol, c.inflate_zstd(stored).data, brick, parse=parse)()

    return dec


def ng5d_decoder(vol: Volume, blob: Any, brick: tuple[int, int, int],
                 region: tuple[slice, slice, slice] | None = None,
                 parse: Callable[[Any], Any] | None = None) -> Decoder:
    """Decode (all of it, or ``region``) of a resident block on the CPU; the block is
    parsed once up front, as a reader does, or with ``parse`` on every call."""
    from neuroglia5d.io import ng5d_codec as c
    from neuroglia5d.io import ng5d_octree as o

    shape: tuple[int, int, int] = vol.data.shape  # type: ignore[assignment]
    dtype = vol.data.dtype
    if parse is None:
        parsed = ng5d_parser(vol, brick)(blob)
        if vol.kind == "labels":
            return lambda: o.decode_octree(parsed, shape, region=region)
        return lambda: c.decode_bitpack(parsed, shape, brick, dtype, region=region)
    if vol.kind == "labels":
        return lambda: o.decode_octree(parse(blob), shape, region=region)
    return lambda: c.decode_bitpack(parse(blob), shape, brick, dtype, region=region)


def palette_codec(vol: Volume) -> tuple[int, Decoder]:
    """The format 2.0 labels codec's resident block (reference row)."""
    from neuroglia5d.io import ng5d_codec as c

    blob = c.encode_palette(vol.data, BRICK_PALETTE)
    shape: tuple[int, int, int] = vol.data.shape  # type: ignore[assignment]
    p = c.parse_palette(blob, n_bricks(shape, BRICK_PALETTE), vol.data.dtype,
                        int(np.prod(BRICK_PALETTE)))
    return len(blob), lambda: c.decode_palette(p, shape, BRICK_PALETTE)


def blosc2_codec(vol: Volume, threads: int, zstd: bool) -> tuple[int, Decoder]:
    import blosc2

    a = vol.data
    cparams = blosc2.CParams(
        typesize=a.itemsize,
        codec=blosc2.Codec.ZSTD if zstd else blosc2.Codec.LZ4,
        filters=[blosc2.Filter.BITSHUFFLE if zstd else blosc2.Filter.SHUFFLE],
        clevel=BLOSC_CLEVEL, nthreads=threads)
    blob = blosc2.compress2(a.tobytes(), cparams=cparams)
    dparams = blosc2.DParams(nthreads=threads)

    def dec() -> np.ndarray:
        # into a fresh NumPy array, like every other decoder here: letting Blosc2 return a
        # new ``bytes`` object instead costs it 2-5× at 32 MiB (page faults on each call)
        out = np.empty(a.shape, a.dtype)
        blosc2.decompress2(blob, dst=out, dparams=dparams)
        return out

    return len(blob), dec


def tiff_codec(vol: Volume, threads: int) -> tuple[int, Decoder]:
    import tifffile

    buf = io.BytesIO()
    tifffile.imwrite(buf, vol.data, compression="lzw")
    blob = buf.getvalue()
    return len(blob), lambda: tifffile.imread(io.BytesIO(blob), maxworkers=threads)


def zarr_codec(vol: Volume) -> tuple[int, Decoder, str]:
    import zarr
    import zarr.storage

    stored: dict[str, Any] = {}
    arr = zarr.create_array(store=zarr.storage.MemoryStore(store_dict=stored),
                            shape=vol.data.shape, dtype=vol.data.dtype)
    arr[:] = vol.data
    size = sum(len(v) for k, v in stored.items() if k.rsplit("/", 1)[-1] != "zarr.json")
    comp = ", ".join(type(c).__name__ + (f"(level={c.level})" if hasattr(c, "level") else "")
                     for c in arr.compressors)
    note = f"{comp}; chunks {'×'.join(map(str, arr.chunks))}"
    return size, lambda: arr[:], note


def cseg_codec(vol: Volume) -> tuple[int, Decoder]:
    import compressed_segmentation as cseg

    a = vol.data
    blob = cseg.compress(a, block_size=CSEG_BLOCK, order="C")
    return len(blob), lambda: cseg.decompress(blob, a.shape, a.dtype, block_size=CSEG_BLOCK,
                                              order="C")


def memcpy_codec(vol: Volume) -> tuple[int, Decoder]:
    dst = np.empty_like(vol.data)

    def dec() -> np.ndarray:
        np.copyto(dst, vol.data)
        return dst

    return vol.data.nbytes, dec


# --------------------------------------------------------------------------- volumes
def to_u16(a: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(a), 0, np.iinfo(np.uint16).max).astype(np.uint16)


def make_volumes(shape: tuple[int, int, int], seed: int, log: Callable[[str], None]
                 ) -> list[Volume]:
    """The benchmark volumes (see the module docstring)."""
    from neuroglia5d.processing.background import subtract_background
    from neuroglia5d.sample_data import make_sample

    dims = "×".join(map(str, shape))
    vols: list[Volume] = []
    for kind in ("nuclei", "microglia"):
        t0 = time.perf_counter()
        ds = make_sample(kind, shape=(1, *shape), seed=seed)
        raw = np.ascontiguousarray(ds.raw[0])
        bg = subtract_background(raw.astype(np.float32), target_sparsity=0.75,
                                 object_diameter_px=16.0, anisotropy=3.0)[0]
        vols += [Volume(f"{kind} raw {dims} u16", "intensity", raw),
                 Volume(f"{kind} bg-subtracted {dims} u16", "intensity", to_u16(bg)),
                 Volume(f"{kind} labels {dims} u32", "labels",
                        np.ascontiguousarray(ds.labels[0]))]
        log(f"generated {kind} {dims} seed {seed} in {time.perf_counter() - t0:.1f} s")
    sdims = "×".join(map(str, SAMPLE_SHAPE[1:]))
    for kind in ("nuclei", "microglia"):
        ds = make_sample(kind, shape=SAMPLE_SHAPE, seed=SAMPLE_SEED)
        vols += [Volume(f"sample data {kind} raw {sdims} u16", "intensity",
                        np.ascontiguousarray(ds.raw[0])),
                 Volume(f"sample data {kind} labels {sdims} u32", "labels",
                        np.ascontiguousarray(ds.labels[0]))]
    return vols


# --------------------------------------------------------------------------- benchmark
def bench_volume(vol: Volume, threads: int, repeats: int) -> tuple[list[Row], Tile]:
    """All CPU codecs on one volume, plus the ``.ng5d`` tile timing."""
    from neuroglia5d.io import ng5d_codec as c

    blob, brick = ng5d_encode(vol)
    name = "octree" if vol.kind == "labels" else "bitpack"
    level = c.ZSTD_LEVELS[name]
    stored = c.store_zstd(blob, level, min_gain=c.ZSTD_MIN_GAIN[name])
    entries = [("ng5d", len(blob), ng5d_decoder(vol, blob, brick),
                f"bricks {'×'.join(map(str, brick))}; kept in memory"),
               ("ng5d-file", len(stored), ng5d_file_decoder(vol, stored, brick),
                f"zstd level {level} frames of {c.FRAME_BYTES // 1024} KiB (verbatim when "
                f"zstd saves < {c.ZSTD_MIN_GAIN[name]:.0%} of a frame or of the block); "
                "on disk")]
    single = [e[2] for e in entries]  # numba's thread count is set around the calls
    for zstd, name in ((False, "lz4"), (True, "zstd")):
        size, dec = blosc2_codec(vol, threads, zstd)
        entries.append((name, size, dec, ""))
        single.append(blosc2_codec(vol, 1, zstd)[1])
    # the rows the targets compare, timed in turn (fair on a shared machine)
    rows = measure_interleaved(vol, entries, repeats, single, set_codec_threads, threads)
    size, dec = tiff_codec(vol, threads)
    rows.append(measure(vol, "tiff", size, dec, repeats))
    size, dec, note = zarr_codec(vol)
    rows.append(measure(vol, "zarr", size, dec, repeats, note))
    if vol.kind == "labels":
        size, dec = cseg_codec(vol)
        rows.append(measure(vol, "cseg", size, dec, repeats, "single-threaded"))
        size, dec = palette_codec(vol)
        rows.append(measure(vol, "ng5d-palette", size, dec, repeats, "bricks 8×8×8"))
    size, dec = memcpy_codec(vol)
    rows.append(measure(vol, "memcpy", size, dec, repeats, "single-threaded"))

    # 25 % tile: all of Z, the first half of Y and X, rounded down to whole bricks
    nz, ny, nx = vol.data.shape
    ty = max(brick[1], (ny // 2) // brick[1] * brick[1])
    tx = max(brick[2], (nx // 2) // brick[2] * brick[2])
    region = (slice(0, nz), slice(0, ty), slice(0, tx))
    tile_dec = ng5d_decoder(vol, blob, brick, region)
    if not np.array_equal(tile_dec(), vol.data[region]):
        raise AssertionError(f".ng5d tile decode differs on {vol.name}")
    whole_dec = ng5d_decoder(vol, blob, brick)
    # interleave the two so that both see the same machine state
    tt: list[float] = []
    tw: list[float] = []
    while len(tt) < repeats or (sum(tw) < MIN_SECONDS and len(tt) < MAX_CALLS):
        tt.append(one_call(tile_dec))
        tw.append(one_call(whole_dec))
    return rows, Tile(vol.name, [nz, ty, tx], min(tt), min(tw))


def find_gpu() -> Any | None:
    """``cupy`` when it imports and sees a device, else None."""
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() < 1:
            return None
        return cupy
    except Exception:
        return None


def gpu_name(cp: Any) -> str:
    props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    name = props["name"]
    return name.decode() if isinstance(name, bytes) else str(name)


def bench_gpu(vols: list[Volume], cp: Any, repeats: int) -> list[Row]:
    """``.ng5d`` decoding on the device, and a device-to-device copy, per volume."""
    from neuroglia5d.io.ng5d_gpu import DeviceVolume, decode_on_device

    sync = cp.cuda.Device().synchronize
    rows: list[Row] = []
    for vol in vols:
        blob, brick = ng5d_encode(vol)
        dv = DeviceVolume(ng5d_parse(vol, blob, brick), cp)
        shape = vol.data.shape
        # into a given device buffer, as the copy below writes into one
        buf = cp.empty(shape, vol.data.dtype)

        def dec(dv: Any = dv, shape: Any = shape, brick: Any = brick, vol: Volume = vol,
                buf: Any = buf) -> None:
            sync()
            decode_on_device(dv, shape, brick, vol.data.dtype, out=buf)
            sync()

        dec()  # JIT-compiles the kernel
        if not np.array_equal(cp.asnumpy(buf), vol.data):
            raise AssertionError(f".ng5d GPU decode differs on {vol.name}")
        secs = best_time(dec, repeats)
        rows.append(Row(vol.name, "ng5d-gpu", CODEC_LABELS["ng5d-gpu"], vol.data.nbytes,
                        len(blob), secs, f"device holds {dv.nbytes} B compressed; "
                        "decodes into a given buffer"))
        del dv, buf

        src = cp.asarray(vol.data)
        dst = cp.empty_like(src)

        def copy(src: Any = src, dst: Any = dst) -> None:
            sync()
            cp.copyto(dst, src)
            sync()

        copy()
        secs = best_time(copy, repeats)
        rows.append(Row(vol.name, "gpu-copy", CODEC_LABELS["gpu-copy"], vol.data.nbytes,
                        vol.data.nbytes, secs))
        del src, dst
        cp.get_default_memory_pool().free_all_blocks()
    return rows


# --------------------------------------------------------------------------- targets
def check_targets(vols: list[Volume], rows: list[Row], tiles: list[Tile],
                  gpu_rows: list[Row] | None = None) -> list[Target]:
    by = {(r.volume, r.codec): r for r in rows + (gpu_rows or [])}
    out: list[Target] = []
    for v in vols:
        zs = by[(v.name, "zstd")]
        for codec, tier in (("ng5d-file", "on disk"), ("ng5d", "resident")):
            ng = by[(v.name, codec)]
            if v.kind == "labels":
                out.append(Target(f"(a) labels ratio ≥ Blosc2-Zstd+bitshuffle ({tier})",
                                  v.name, ng.ratio, zs.ratio, ng.ratio >= zs.ratio, "ratio"))
                cs = by[(v.name, "cseg")]
                out.append(Target(f"(b) labels ratio ≥ 3 × compressed_segmentation ({tier})",
                                  v.name, ng.ratio, 3 * cs.ratio, ng.ratio >= 3 * cs.ratio,
                                  "ratio"))
            else:
                out.append(Target(f"(c) intensity ratio ≥ Blosc2-Zstd+bitshuffle ({tier})",
                                  v.name, ng.ratio, zs.ratio, ng.ratio >= zs.ratio, "ratio"))
    for v in vols:
        zs = by[(v.name, "zstd")]
        for codec, tier in (("ng5d", "resident, every access"),
                            ("ng5d-file", "from file, once per timepoint")):
            ng = by[(v.name, codec)]
            out.append(Target(f"(d) CPU decode GB/s, median call, ≥ Blosc2-Zstd+bitshuffle "
                              f"({tier})", v.name, ng.gbps_median, zs.gbps_median,
                              ng.gbps_median >= zs.gbps_median, "GB/s"))
            assert ng.cpu1_seconds is not None and zs.cpu1_seconds is not None
            out.append(Target(f"(d1) CPU time of a decode on one thread ≤ Blosc2-Zstd+"
                              f"bitshuffle's ({tier})", v.name, ng.cpu1_seconds * 1e3,
                              zs.cpu1_seconds * 1e3, ng.cpu1_seconds <= zs.cpu1_seconds,
                              "ms"))
    for t in tiles:
        out.append(Target("(e) 25 % tile ≥ 3 × faster than whole", t.volume, t.speedup,
                          3.0, t.speedup >= 3.0, "speed-up"))
    for v in vols:
        if (v.name, "ng5d-gpu") in by:
            pct = 100 * by[(v.name, "ng5d-gpu")].gbps / by[(v.name, "gpu-copy")].gbps
            out.append(Target("(f) GPU decode ≥ 25 % of a device-to-device copy's GB/s",
                              v.name, pct, 25.0, pct >= 25.0, "%"))
    return sorted(out, key=lambda t: t.target)  # stable: volumes keep their order


# --------------------------------------------------------------------------- output
def machine_line(threads: int, cp: Any | None) -> str:
    import blosc2
    import numba

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass

    def ver(dist: str) -> str:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "?"

    gpu = f"; GPU {gpu_name(cp)}" if cp is not None else ""
    load = f", load average {os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else ""
    return (f"machine: {os.cpu_count()} CPUs ({cpu}){load}, threads used {threads}; "
            f"numba {numba.__version__}, blosc2 {blosc2.__version__}, numpy {np.__version__}, "
            f"zarr {ver('zarr')}, tifffile {ver('tifffile')}, "
            f"compressed-segmentation {ver('compressed-segmentation')}{gpu}")


def markdown_table(header: list[str], body: list[list[str]], right: set[int]) -> str:
    """A Markdown table; columns whose index is in ``right`` are right-aligned."""
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---:" if i in right else "---" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="64,512,512", help="Z,Y,X of the generated volumes")
    ap.add_argument("--quick", action="store_true", help="use 32,256,256 (overrides --shape)")
    ap.add_argument("--seed", type=int, default=201, help="seed of the generated volumes")
    ap.add_argument("--threads", type=int, default=2, help="decode threads for every codec")
    ap.add_argument("--repeats", type=int, default=7,
                    help="timed decodes at least (best and median are kept)")
    ap.add_argument("--no-gpu", action="store_true", help="skip the GPU rows")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args(argv)

    shape = (32, 256, 256) if args.quick else tuple(int(s) for s in args.shape.split(","))
    if len(shape) != 3 or min(shape) < 1:
        ap.error(f"--shape: expected Z,Y,X, got {args.shape!r}")
    if args.threads < 1 or args.repeats < 1:
        ap.error("--threads and --repeats must be at least 1")

    import blosc2
    import numba
    import zarr

    import neuroglia5d.io  # noqa: F401  (sets numba's OpenMP spin before its threads start)

    if args.threads > numba.config.NUMBA_NUM_THREADS:
        ap.error(f"--threads {args.threads}: numba allows at most "
                 f"{numba.config.NUMBA_NUM_THREADS} here")
    numba.set_num_threads(args.threads)
    blosc2.set_nthreads(args.threads)
    # before zarr's first use: its thread pool is created once, from this setting
    zarr.config.set({"threading.max_workers": args.threads})

    cp = None if args.no_gpu else find_gpu()
    head = machine_line(args.threads, cp)
    print(head, flush=True)

    def log(msg: str) -> None:
        print(f"  .. {msg}", flush=True)

    vols = make_volumes(shape, args.seed, log)  # type: ignore[arg-type]
    rows: list[Row] = []
    tiles: list[Tile] = []
    for vol in vols:
        t0 = time.perf_counter()
        r, t = bench_volume(vol, args.threads, args.repeats)
        rows += r
        tiles.append(t)
        log(f"{vol.name}: {time.perf_counter() - t0:.1f} s")
    gpu_rows: list[Row] = []
    gpu_line = "GPU rows skipped (no GPU: CuPy missing or no device)"
    if args.no_gpu:
        gpu_line = "GPU rows skipped (--no-gpu)"
    elif cp is not None:
        gpu_rows = bench_gpu(vols, cp, args.repeats)
        gpu_line = f"GPU: {gpu_name(cp)} (times include a device synchronize before and after)"

    print()
    print(f"GB/s of decoded output, best and median of ≥ {args.repeats} decodes (more "
          f"until {MIN_SECONDS} s were spent), {args.threads} threads; CPU ms: median CPU "
          f"time of one decode on one thread (codecs timed in turn only)")
    print()
    all_rows = rows + gpu_rows
    body = []
    for vol in vols:
        for r in (r for r in all_rows if r.volume == vol.name):
            med = f"{r.gbps_median:.2f}" if r.seconds_median is not None else "–"
            cpu1 = f"{r.cpu1_seconds * 1e3:.1f}" if r.cpu1_seconds is not None else "–"
            body.append([r.volume, r.label, f"{r.ratio:.2f}", f"{r.gbps:.2f}", med, cpu1,
                         f"{r.compressed_bytes / 1e3:,.1f}", r.note])
    print(markdown_table(["volume", "codec", "ratio", "GB/s best", "GB/s median",
                          "CPU ms, 1 thread", "compressed kB", "note"],
                         body, {2, 3, 4, 5, 6}))
    print()
    print("Notes: ratio = raw bytes / compressed bytes. On incompressible data (ratio near 1) "
          "LZ4+shuffle is essentially a memory copy (Blosc2 stores such blocks verbatim). "
          "The np.copyto ceiling and compressed_segmentation run on one thread.")
    print()
    print(".ng5d tile vs whole timepoint (CPU):")
    for t in tiles:
        print(f"- {t.volume}: tile {'×'.join(map(str, t.region))} "
              f"{t.seconds_tile * 1e3:.2f} ms, whole {t.seconds_whole * 1e3:.2f} ms, "
              f"speed-up {t.speedup:.2f}×")
    print()
    print(gpu_line)
    print()
    targets = check_targets(vols, rows, tiles, gpu_rows)
    print("targets:")
    print()
    print(markdown_table(
        ["target", "volume", ".ng5d", "reference", "result"],
        [[t.target, t.volume, f"{t.ng5d:.2f} {t.what}", f"{t.reference:.2f} {t.what}",
          "PASS" if t.passed else "FAIL"] for t in targets], {2, 3}))
    npass = sum(t.passed for t in targets)
    print()
    print(f"{npass}/{len(targets)} PASS")
    if hasattr(os, "getloadavg"):
        print(f"(load average at the end: {os.getloadavg()[0]:.2f}; timings are only "
              f"meaningful on an otherwise idle machine)")

    if args.json:
        def row_dict(r: Row) -> dict[str, Any]:
            return {**asdict(r), "ratio": r.ratio, "decode_gbps": r.gbps,
                    "decode_gbps_median": r.gbps_median}

        result = {
            "machine": head, "shape": list(shape), "seed": args.seed,
            "threads": args.threads, "repeats": args.repeats,
            "rows": [row_dict(r) for r in rows],
            "tiles": [{**asdict(t), "speedup": t.speedup} for t in tiles],
            "gpu": {"line": gpu_line, "rows": [row_dict(r) for r in gpu_rows]},
            "targets": [asdict(t) for t in targets],
        }
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
