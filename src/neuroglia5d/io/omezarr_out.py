"""OME-Zarr output: one multiscale store per series, intensity plus two label images.

Layout of ``<out>/<stem>_fused.ome.zarr`` (NGFF 0.4 on zarr format 2 by default, NGFF 0.5 on
zarr format 3 with ``options={"ngff_version": "0.5"}``)::

    <stem>_fused.ome.zarr/          image group, uint16 intensity, ``multiscales`` (+ ``omero``)
        0/ 1/ ...                   pyramid levels, (T, Z, Y, X)
        labels/                     ``"labels": ["original", "working"]``
            original/0/ 1/ ...      uint32 labels as segmented (never edited)
            working/0/ 1/ ...       uint32 labels, the copy the user edits later

All three images share the same axes (``t`` in s, ``z``/``y``/``x`` in µm) and coordinate
transformations: a per-level ``scale`` and a ``translation`` equal to the crop offset
(``offset_zyx * spacing_um``), so the output overlays the raw data in napari. Intensity
levels are block means; label levels are nearest (strided) samples, never averaged.

While writing, the store is ``<stem>_fused.ome.zarr.partial`` and holds
``neuroglia5d_progress.json`` with the timepoints already complete; it is updated
atomically after all chunks of a timepoint are on disk, so after a crash (even ``kill -9``)
every recorded timepoint is complete and ``--resume`` continues from there. Every chunk holds
one timepoint only, so an interrupted timepoint never damages a recorded one.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..errors import InputError, OutputError
from . import atomic
from .writers import SeriesMeta, SeriesWriter

if TYPE_CHECKING:
    import zarr

__all__ = [
    "DEFAULT_NGFF_VERSION",
    "LABEL_NAMES",
    "NGFF_VERSIONS",
    "PROGRESS_NAME",
    "OmeZarrSeriesWriter",
    "downsample_labels",
    "downsample_mean",
    "pyramid_levels",
    "read_fused_omezarr",
]

#: supported ``ngff_version`` option values -> zarr format on disk
NGFF_VERSIONS: dict[str, int] = {"0.4": 2, "0.5": 3}
DEFAULT_NGFF_VERSION = "0.4"
#: label images under ``labels/``; both hold the pipeline's labels at write time
LABEL_NAMES: tuple[str, str] = ("original", "working")
#: progress record inside the ``.partial`` store
PROGRESS_NAME = "neuroglia5d_progress.json"
#: pyramid: at most this many levels in all (level 0 included)
MAX_LEVELS = 4
#: pyramid: no further level once a level's min(Y, X) is below this (pixels)
MIN_LEVEL_YX = 128
#: pyramid: Z is halved too only while the level has at least this many planes
MIN_Z_TO_DOWNSAMPLE = 64
#: chunk shape (Z, Y, X), clipped to each level's shape; T chunk is always 1
CHUNK_ZYX: tuple[int, int, int] = (32, 256, 256)
#: Blosc compressor settings (with bit shuffle)
BLOSC_CNAME = "zstd"
BLOSC_CLEVEL = 5

_AXES = ("t", "z", "y", "x")


# --------------------------------------------------------------------------- pyramid


def pyramid_levels(shape_zyx: Sequence[int]) -> list[tuple[tuple[int, int, int], tuple[int, ...]]]:
    """Downsampling factors and shapes of the pyramid levels of a (Z, Y, X) volume.

    Level 0 is full resolution. Each further level halves Y and X (and Z when the previous
    level has at least :data:`MIN_Z_TO_DOWNSAMPLE` planes), rounding sizes up, as long as
    the previous level's min(Y, X) is at least :data:`MIN_LEVEL_YX` pixels and there are
    fewer than :data:`MAX_LEVELS` levels.

    Parameters
    ----------
    shape_zyx : sequence of int
        Full-resolution shape (Z, Y, X) in voxels.

    Returns
    -------
    list of (factor_zyx, shape_zyx)
        Per level: the cumulative downsampling factor (z, y, x) relative to level 0, and the
        level's shape in voxels.
    """
    z, y, x = (int(s) for s in shape_zyx)
    levels: list[tuple[tuple[int, int, int], tuple[int, ...]]] = [((1, 1, 1), (z, y, x))]
    while len(levels) < MAX_LEVELS:
        (fz, fy, fx), (lz, ly, lx) = levels[-1]
        if min(ly, lx) < MIN_LEVEL_YX:
            break
        sz = 2 if lz >= MIN_Z_TO_DOWNSAMPLE else 1
        levels.append(((fz * sz, fy * 2, fx * 2),
                       (math.ceil(lz / sz), math.ceil(ly / 2), math.ceil(lx / 2))))
    return levels


def downsample_mean(vol: np.ndarray, step_z: int = 1) -> np.ndarray:
    """Halve Y and X (and Z by ``step_z``) of a uint16 volume by block means.

    Each output voxel is the mean of its ``step_z``x2x2 block, rounded half up. Along an
    odd-sized axis the last block is only partly inside the volume; its mean is taken over
    the voxels inside (output sizes are rounded up).

    Parameters
    ----------
    vol : ndarray of uint16, shape (Z, Y, X)
        Intensity volume.
    step_z : {1, 2}
        Downsampling factor along Z.

    Returns
    -------
    ndarray of uint16, shape (ceil(Z / step_z), ceil(Y / 2), ceil(X / 2))
    """
    if step_z not in (1, 2):
        raise ValueError(f"step_z must be 1 or 2, got {step_z}")
    a = np.asarray(vol)
    pad = [(0, a.shape[0] % step_z), (0, a.shape[1] % 2), (0, a.shape[2] % 2)]
    if any(p[1] for p in pad):
        # replicating the edge voxel makes the block mean the mean of the voxels inside
        a = np.pad(a, pad, mode="edge")
    out_shape = (a.shape[0] // step_z, a.shape[1] // 2, a.shape[2] // 2)
    acc = np.zeros(out_shape, dtype=np.uint32)
    for dz in range(step_z):
        for dy in (0, 1):
            for dx in (0, 1):
                acc += a[dz::step_z, dy::2, dx::2]
    n = step_z * 4
    acc += n // 2
    acc //= n
    return acc.astype(np.uint16)


def downsample_labels(labels: np.ndarray, step_z: int = 1) -> np.ndarray:
    """Halve Y and X (and Z by ``step_z``) of a label volume by nearest sampling.

    Takes ``labels[::step_z, ::2, ::2]``, so every output value is an input label (no
    averaging artefacts); sizes are rounded up.

    Parameters
    ----------
    labels : ndarray, shape (Z, Y, X)
        Label volume.
    step_z : {1, 2}
        Downsampling factor along Z.

    Returns
    -------
    ndarray, shape (ceil(Z / step_z), ceil(Y / 2), ceil(X / 2))
        A strided view of ``labels``.
    """
    return labels[::step_z, ::2, ::2]


# --------------------------------------------------------------------------- metadata


def _ngff_version(options: dict[str, Any]) -> str:
    """The NGFF version requested by the format options, or raise."""
    v = options.get("ngff_version", DEFAULT_NGFF_VERSION)
    v = DEFAULT_NGFF_VERSION if v is None else str(v)
    if v not in NGFF_VERSIONS:
        raise OutputError(
            f"ngff_version {options.get('ngff_version')!r}: unsupported OME-Zarr version "
            f"(choose from {', '.join(NGFF_VERSIONS)})"
        )
    return v


def _json_safe(obj: Any) -> Any:
    """A JSON round trip of ``obj`` (non-serialisable leaves become strings)."""
    return json.loads(json.dumps(obj, default=str))


def _axes(meta: SeriesMeta) -> list[dict[str, str]]:
    t: dict[str, str] = {"name": "t", "type": "time"}
    if meta.time_interval_s:
        t["unit"] = "second"
    return [t] + [{"name": n, "type": "space", "unit": "micrometer"} for n in _AXES[1:]]


def _datasets(meta: SeriesMeta, levels: Sequence[tuple[tuple[int, int, int], Any]]
              ) -> list[dict[str, Any]]:
    dt = float(meta.time_interval_s) if meta.time_interval_s else 1.0
    out = []
    for i, (factors, _shape) in enumerate(levels):
        scale = [dt] + [float(s) * f for s, f in zip(meta.spacing_um, factors, strict=True)]
        # downsampled voxel centres sit in the middle of their block (as NGFF tools do)
        trans = [0.0] + [float(o) * float(s) + (f - 1) / 2 * float(s) for o, s, f in
                         zip(meta.offset_zyx, meta.spacing_um, factors, strict=True)]
        out.append({"path": str(i), "coordinateTransformations": [
            {"type": "scale", "scale": scale},
            {"type": "translation", "translation": trans},
        ]})
    return out


def _multiscale(meta: SeriesMeta, levels: Sequence[Any], version: str, name: str,
                method: str) -> dict[str, Any]:
    ms: dict[str, Any] = {
        "axes": _axes(meta),
        "datasets": _datasets(meta, levels),
        "name": name,
        "type": method,
        "metadata": {"method": f"neuroglia5d {method} downsampling"},
    }
    if version == "0.4":
        ms["version"] = "0.4"
    return ms


def _ome(version: str, content: dict[str, Any]) -> dict[str, Any]:
    """Group attributes in the layout of ``version`` (0.5 nests them under ``ome``)."""
    if version == "0.4":
        return dict(content)
    return {"ome": {"version": version, **content}}


def _omero(meta: SeriesMeta, lo: int, hi: int) -> dict[str, Any]:
    return {
        "name": meta.stem,
        "channels": [{
            "label": f"ch{meta.channel}",
            "color": "FFFFFF",
            "active": True,
            "coefficient": 1,
            "family": "linear",
            "inverted": False,
            "window": {"min": 0, "max": 65535, "start": int(lo), "end": int(max(hi, lo + 1))},
        }],
        "rdefs": {"defaultT": 0, "defaultZ": meta.shape_tzyx[1] // 2, "model": "greyscale"},
    }


@contextlib.contextmanager
def _read_errors(path: Path) -> Iterator[None]:
    try:
        yield
    except OSError as e:
        raise OutputError(f"{path}: cannot read ({e.strerror or e})") from None


# --------------------------------------------------------------------------- writer


class OmeZarrSeriesWriter(SeriesWriter):
    """Streams one series into a multiscale OME-Zarr store with ``original``/``working`` labels.

    Parameters
    ----------
    out_dir : Path
        Output folder; the store is ``out_dir / f"{meta.stem}_fused.ome.zarr"``.
    meta : SeriesMeta
        Series description; ``meta.options["ngff_version"]`` is ``"0.4"`` (default, zarr
        format 2) or ``"0.5"`` (zarr format 3).
    resume : bool
        Continue an existing ``.partial`` store of the same shape instead of starting over.

    Raises
    ------
    OutputError
        When ``ngff_version`` is not supported.

    Notes
    -----
    Nothing touches the disk before the first :meth:`completed`, :meth:`write`,
    :meth:`read_timepoint` or :meth:`finalize` call. An existing finished store is left as
    it is until :meth:`finalize` replaces it.
    """

    name: ClassVar[str] = "ome.zarr"

    def __init__(self, out_dir: Path, meta: SeriesMeta, *, resume: bool = False) -> None:
        super().__init__(out_dir, meta, resume=resume)
        self.ngff_version = _ngff_version(meta.options)
        self.zarr_format = NGFF_VERSIONS[self.ngff_version]
        if len(meta.shape_tzyx) != 4 or min(meta.shape_tzyx) < 1:
            raise ValueError(f"shape_tzyx must be 4 positive sizes, got {meta.shape_tzyx}")
        self.shape_tzyx: tuple[int, int, int, int] = tuple(  # type: ignore[assignment]
            int(s) for s in meta.shape_tzyx)
        self.final_path = self.out_dir / f"{meta.stem}_fused.ome.zarr"
        self.partial_path = atomic.partial_path(self.final_path)
        self.levels = pyramid_levels(self.shape_tzyx[1:])
        self._root: zarr.Group | None = None
        # image name ("image", "original", "working") -> one array per level
        self._arrays: dict[str, list[zarr.Array]] = {}
        self._done: set[int] = set()
        self._range: list[int] | None = None  # intensity [min, max] over written timepoints
        self._finalized = False
        self._started = False  # the .partial was opened or created by this writer

    # ---------------------------------------------------------------- public API

    def final_paths(self) -> list[Path]:
        """Path of the store once finalised."""
        return [self.final_path]

    def completed(self) -> set[int]:
        """Timepoints already complete in the ``.partial`` store.

        With ``resume=True`` and an existing ``.partial`` whose progress record matches this
        series, the recorded timepoints; otherwise a fresh ``.partial`` is started (an old
        one deleted) and the set is empty.

        Raises
        ------
        OutputError
            When the ``.partial`` to resume is from a different run or damaged.
        """
        self._open()
        return set(self._done)

    def read_timepoint(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """Read back a completed timepoint from level 0 of the ``.partial`` store.

        Returns
        -------
        intensity : ndarray of uint16, shape (Z, Y, X)
        labels : ndarray of uint32, shape (Z, Y, X)
            From ``labels/working``.

        Raises
        ------
        OutputError
            When ``t`` is not a completed timepoint.
        """
        self._open()
        if t not in self._done:
            raise OutputError(f"{self.partial_path}: timepoint {t} is not complete")
        with _read_errors(self.partial_path):
            img = np.asarray(self._arrays["image"][0][t])
            lab = np.asarray(self._arrays[LABEL_NAMES[1]][0][t])
        return img, lab

    def write(self, t: int, intensity: np.ndarray, labels: np.ndarray) -> None:
        """Write timepoint ``t`` to every pyramid level of the three images, then record it.

        Parameters
        ----------
        t : int
            Timepoint index, 0 <= t < T.
        intensity : ndarray, shape (Z, Y, X)
            Intensity (uint16, or any integer type with values in the uint16 range).
        labels : ndarray, shape (Z, Y, X)
            Labels (uint32, or any integer type with values in the uint32 range).

        Raises
        ------
        OutputError
            When the store cannot be written (disk full, permission denied, ...).
        """
        self._open()
        T, Z, Y, X = self.shape_tzyx
        if not 0 <= t < T:
            raise ValueError(f"timepoint {t} out of range 0..{T - 1}")
        img = _as_dtype(intensity, np.uint16, "intensity", (Z, Y, X))
        lab = _as_dtype(labels, np.uint32, "labels", (Z, Y, X))
        if t in self._done:
            # about to overwrite: it is no longer complete until written again
            self._done.discard(t)
            self._write_progress()
        imgs, labs = [img], [lab]
        for i in range(1, len(self.levels)):
            step_z = self.levels[i][0][0] // self.levels[i - 1][0][0]
            imgs.append(downsample_mean(imgs[-1], step_z))
            labs.append(downsample_labels(labs[-1], step_z))
        with atomic.os_errors(self.partial_path):
            for i in range(len(self.levels)):
                self._arrays["image"][i][t] = imgs[i]
                for name in LABEL_NAMES:
                    self._arrays[name][i][t] = labs[i]
        lo, hi = (int(img.min()), int(img.max())) if img.size else (0, 0)
        self._range = [lo, hi] if self._range is None else [min(self._range[0], lo),
                                                             max(self._range[1], hi)]
        self._done.add(int(t))
        self._write_progress()

    def finalize(self) -> list[Path]:
        """Write the final metadata and rename the store from ``.partial``.

        Returns
        -------
        list of Path
            ``[final_path]``.

        Raises
        ------
        OutputError
            When timepoints are missing (the ``.partial`` is kept), or on a write error.
        """
        if self._finalized:
            return [self.final_path]
        self._open()
        T = self.shape_tzyx[0]
        missing = sorted(set(range(T)) - self._done)
        if missing:
            shown = ", ".join(str(t) for t in missing[:10]) + (", ..." if len(missing) > 10
                                                                else "")
            raise OutputError(
                f"{self.partial_path}: {len(missing)} of {T} timepoints missing "
                f"(t = {shown}); not finalised, kept as .partial for --resume"
            )
        with atomic.os_errors(self.final_path):
            self._write_metadata(final=True)
            # rename first, then drop the progress record: a crash in between leaves a
            # complete store (with a stray record), never a complete .partial without one
            atomic.finalize(self.partial_path, self.final_path)
            (self.final_path / PROGRESS_NAME).unlink(missing_ok=True)
        self._finalized = True
        self._root = None
        self._arrays = {}
        return [self.final_path]

    def abort(self) -> None:
        """Stop writing; every recorded timepoint stays complete in the ``.partial``.

        Nothing is buffered, so this only drops the open handles; a later call on this
        writer reopens the same ``.partial``.
        """
        self._root = None
        self._arrays = {}

    # ---------------------------------------------------------------- internals

    def _open(self) -> None:
        """Open (resume) or create the ``.partial`` store, once."""
        if self._root is not None:
            return
        if self._finalized:
            raise OutputError(f"{self.final_path}: already finalised")
        part = self.partial_path
        # after abort() this writer reopens its own .partial, never deletes it
        if (self.resume or self._started) and part.is_dir():
            prog = self._read_progress()
            if prog is not None:
                self._resume_from(prog)
                self._started = True
                return
        with atomic.os_errors(part):
            atomic.remove(part)
            if part.exists():
                raise OutputError(f"{part}: cannot remove the old partial output")
            self._create()
        self._started = True

    def _read_progress(self) -> dict[str, Any] | None:
        """The ``.partial``'s progress record, or None when there is none (creation died)."""
        p = self.partial_path / PROGRESS_NAME
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            raise OutputError(f"{p}: cannot read the progress record ({e}); "
                              "remove the partial output or run without --resume") from None
        if not isinstance(data, dict):
            raise OutputError(f"{p}: damaged progress record; remove the partial output "
                              "or run without --resume")
        return data

    def _resume_from(self, prog: dict[str, Any]) -> None:
        import zarr

        part = self.partial_path
        shape = prog.get("shape_tzyx")
        version = prog.get("ngff_version", self.ngff_version)
        if shape is None or [int(s) for s in shape] != list(self.shape_tzyx) \
                or version != self.ngff_version:
            raise OutputError(
                f"{part}: the partial output is from a different run (shape {shape}, NGFF "
                f"{version}; this run: shape {list(self.shape_tzyx)}, NGFF "
                f"{self.ngff_version}); use --out elsewhere or remove it"
            )
        try:
            done = {int(t) for t in prog.get("completed", [])}
            root = zarr.open_group(str(part), mode="r+", zarr_format=self.zarr_format)
            arrays = self._lookup_arrays(root)
        except (KeyError, ValueError, TypeError, OSError, zarr.errors.BaseZarrError) as e:
            raise OutputError(f"{part}: damaged partial output ({type(e).__name__}: {e}); "
                              "remove it or run without --resume") from None
        if not done <= set(range(self.shape_tzyx[0])):
            raise OutputError(f"{part}: damaged progress record (timepoints out of range); "
                              "remove it or run without --resume")
        rng = prog.get("intensity_range")
        self._range = [int(rng[0]), int(rng[1])] if rng else None
        self._root, self._arrays, self._done = root, arrays, done

    def _lookup_arrays(self, root: zarr.Group) -> dict[str, list[zarr.Array]]:
        """The arrays of an existing store, checked against the expected shapes."""
        import zarr

        groups = {"image": root, **{n: root["labels"][n] for n in LABEL_NAMES}}
        out: dict[str, list[zarr.Array]] = {}
        for name, g in groups.items():
            if not isinstance(g, zarr.Group):
                raise ValueError(f"{name} is not a group")
            arrs = []
            for i, (_f, shape) in enumerate(self.levels):
                a = g[str(i)]
                if not isinstance(a, zarr.Array) or a.shape != (self.shape_tzyx[0], *shape):
                    raise ValueError(f"{name}/{i} has the wrong shape")
                arrs.append(a)
            out[name] = arrs
        return out

    def _create(self) -> None:
        """Create a fresh ``.partial`` store with all arrays (zero-filled) and metadata."""
        import zarr

        self.out_dir.mkdir(parents=True, exist_ok=True)
        root = zarr.open_group(str(self.partial_path), mode="w", zarr_format=self.zarr_format)
        labels = root.create_group("labels")
        groups = {"image": root, **{n: labels.create_group(n) for n in LABEL_NAMES}}
        arrays: dict[str, list[zarr.Array]] = {}
        T = self.shape_tzyx[0]
        for name, g in groups.items():
            dtype = np.uint16 if name == "image" else np.uint32
            arrays[name] = [
                g.create_array(str(i), shape=(T, *shape), dtype=dtype, fill_value=0,
                               chunks=(1, *(min(c, s) for c, s in zip(CHUNK_ZYX, shape,
                                                                         strict=True))),
                               **self._array_kwargs())
                for i, (_f, shape) in enumerate(self.levels)
            ]
        self._root, self._arrays = root, arrays
        self._done, self._range = set(), None
        self._write_metadata(final=False)
        # last: a .partial without a progress record is an unfinished creation
        self._write_progress()

    def _array_kwargs(self) -> dict[str, Any]:
        if self.zarr_format == 2:
            import numcodecs

            return {"compressors": numcodecs.Blosc(cname=BLOSC_CNAME, clevel=BLOSC_CLEVEL,
                                                   shuffle=numcodecs.Blosc.BITSHUFFLE),
                    "chunk_key_encoding": {"name": "v2", "separator": "/"}}
        from zarr.codecs import BloscCodec

        return {"compressors": BloscCodec(cname=BLOSC_CNAME, clevel=BLOSC_CLEVEL,
                                          shuffle="bitshuffle"),
                "dimension_names": _AXES}

    def _write_metadata(self, *, final: bool) -> None:
        """(Re)write the group attributes of the image, ``labels`` and label images."""
        assert self._root is not None
        meta, v = self.meta, self.ngff_version
        image: dict[str, Any] = {
            "multiscales": [_multiscale(meta, self.levels, v, meta.stem, "mean")],
        }
        if final and self._range is not None:
            image["omero"] = _omero(meta, *self._range)
        attrs = _ome(v, image)
        attrs["neuroglia5d"] = _json_safe({
            "provenance": meta.provenance,
            "channel": int(meta.channel),
            "offset_zyx": [int(o) for o in meta.offset_zyx],
            "spacing_um": [float(s) for s in meta.spacing_um],
            "time_interval_s": meta.time_interval_s,
            "labels": {"original": "labels as segmented, never edited",
                       "working": "labels to edit"},
        })
        self._root.attrs.put(attrs)
        labels = self._root["labels"]
        labels.attrs.put(_ome(v, {"labels": list(LABEL_NAMES)}))
        for name in LABEL_NAMES:
            labels[name].attrs.put(_ome(v, {
                "multiscales": [_multiscale(meta, self.levels, v, name, "nearest")],
                "image-label": {"version": v, "source": {"image": "../../"}},
            }))

    def _write_progress(self) -> None:
        """Atomically replace the progress record (temporary file + ``os.replace``)."""
        p = self.partial_path / PROGRESS_NAME
        tmp = p.with_name(p.name + ".tmp")
        data = {
            "completed": sorted(self._done),
            "shape_tzyx": list(self.shape_tzyx),
            "stem": self.meta.stem,
            "ngff_version": self.ngff_version,
            "intensity_range": self._range,
        }
        with atomic.os_errors(p):
            tmp.write_text(json.dumps(data), encoding="utf-8")
            os.replace(tmp, p)


def _as_dtype(a: np.ndarray, dtype: type[np.integer[Any]], what: str,
              shape: tuple[int, int, int]) -> np.ndarray:
    """``a`` as ``dtype``, checking shape and (for unsafe casts) the value range."""
    a = np.asarray(a)
    if a.shape != shape:
        raise ValueError(f"{what}: shape {a.shape}, expected {shape}")
    if a.dtype == dtype:
        return a
    if not np.issubdtype(a.dtype, np.integer) and a.dtype != np.bool_:
        raise ValueError(f"{what}: dtype {a.dtype}, expected {np.dtype(dtype)}")
    if not np.can_cast(a.dtype, dtype) and a.size:
        info = np.iinfo(dtype)
        if int(a.min()) < info.min or int(a.max()) > info.max:
            raise ValueError(f"{what}: values outside the {np.dtype(dtype)} range")
    return a.astype(dtype)


# --------------------------------------------------------------------------- reading


def read_fused_omezarr(path: str | Path, mode: str = "r") -> dict[str, Any]:
    """Open a fused OME-Zarr store (finished or ``.partial``) lazily.

    Parameters
    ----------
    path : str or Path
        The ``*_fused.ome.zarr`` folder (NGFF 0.4 or 0.5).
    mode : {"r", "r+"}
        ``"r+"`` to edit ``labels/working`` in place.

    Returns
    -------
    dict
        ``intensity`` (uint16), ``labels_original`` and ``labels_working`` (uint32): level-0
        zarr arrays (T, Z, Y, X), read on indexing; ``*_levels``: the same for every pyramid
        level; ``spacing_um`` (z, y, x) in µm; ``offset_zyx`` in voxels; ``translate_um``
        (z, y, x) in µm; ``time_interval_s`` (s or None); ``provenance``; ``channel``;
        ``name``; ``ngff_version``.

    Raises
    ------
    InputError
        When ``path`` is not such a store.
    """
    import zarr

    path = Path(path)
    try:
        root = zarr.open_group(str(path), mode=mode)
        attrs = root.attrs.asdict()
        ome = attrs.get("ome", attrs)
        version = str(ome.get("version") or ome["multiscales"][0].get("version", "0.4"))

        def levels(g: zarr.Group) -> list[zarr.Array]:
            ms = g.attrs.asdict()
            ms = ms.get("ome", ms)["multiscales"][0]
            return [g[d["path"]] for d in ms["datasets"]]  # type: ignore[misc]

        intensity = levels(root)
        labs = {n: levels(root["labels"][n]) for n in LABEL_NAMES}  # type: ignore[arg-type]
        ms0 = ome["multiscales"][0]
        tfs = {tf["type"]: tf for tf in ms0["datasets"][0]["coordinateTransformations"]}
    except (KeyError, IndexError, TypeError, ValueError, OSError,
            zarr.errors.BaseZarrError) as e:
        raise InputError(f"{path}: not a neuroglia5d OME-Zarr output "
                         f"({type(e).__name__}: {e})") from None
    ng = attrs.get("neuroglia5d", {})
    spacing = tuple(float(s) for s in ng.get("spacing_um", tfs["scale"]["scale"][1:]))
    if "offset_zyx" in ng:
        offset = tuple(int(o) for o in ng["offset_zyx"])
    else:
        tr = tfs.get("translation", {}).get("translation", [0, 0, 0, 0])[1:]
        offset = tuple(round(t / s) for t, s in zip(tr, spacing, strict=True))
    t_unit = next((a.get("unit") for a in ms0["axes"] if a["name"] == "t"), None)
    dt = ng.get("time_interval_s", tfs["scale"]["scale"][0] if t_unit else None)
    return {
        "intensity": intensity[0],
        "labels_original": labs["original"][0],
        "labels_working": labs["working"][0],
        "intensity_levels": intensity,
        "labels_original_levels": labs["original"],
        "labels_working_levels": labs["working"],
        "spacing_um": spacing,
        "offset_zyx": offset,
        "translate_um": tuple(o * s for o, s in zip(offset, spacing, strict=True)),
        "time_interval_s": dt,
        "provenance": ng.get("provenance", {}),
        "channel": ng.get("channel", 1),
        "name": ms0.get("name"),
        "ngff_version": version,
    }
