"""Raw TIFF inputs in the suite's three dataset layouts.

``stacks``
    A folder with one multi-page TIFF z-stack per timepoint (natural sort: ``t2`` before
    ``t10``). Each file is ZYX, or ZCYX/CZYX with channels.
``planes``
    One 2D TIFF per z-plane: a folder whose file names carry ``t<N>`` and ``z<N>`` tokens,
    a folder of per-timepoint sub-folders of planes, a folder of planes of a single
    timepoint, or a name pattern with ``{t}`` and ``{z}`` fields (``img_t{t}_z{z}.tif``).
``hyperstack``
    One multi-dimensional TIFF (ImageJ hyperstack or OME-TIFF) with any of the T, Z, C axes.

:func:`open_dataset` inspects the headers once (in parallel threads), checks that every
file agrees in shape and dtype, reads the voxel size from ImageJ or OME metadata, and
returns a :class:`Dataset` whose :meth:`Dataset.read_timepoint` loads one timepoint as a
``(C, Z, Y, X)`` array, reading its files in parallel.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..errors import InputError

DatasetType = Literal["stacks", "planes", "hyperstack"]
DATASET_TYPES: tuple[str, ...] = ("auto", "stacks", "planes", "hyperstack")
TIFF_SUFFIXES = (".tif", ".tiff")
_THREADS = max(2, min(8, (os.cpu_count() or 2)))


def natural_key(s: str) -> list[Any]:
    """Sort key that orders embedded numbers numerically (``t2`` < ``t10``)."""
    return [int(tok) if tok.isdigit() else tok.lower() for tok in re.split(r"(\d+)", s)]


def stem_of(path: Path) -> str:
    """Output stem of an input: file name without (``.ome``)``.tif``, or the folder name."""
    name = path.name
    for suf in (".ome.tiff", ".ome.tif", ".tiff", ".tif"):
        if name.lower().endswith(suf):
            return name[: -len(suf)]
    return name


@dataclass
class Dataset:
    """A raw 4D (T, C, Z, Y, X) dataset on disk, read one timepoint at a time.

    Attributes
    ----------
    kind : {"stacks", "planes", "hyperstack"}
        The dataset layout.
    source : Path
        The input path as given (folder, file or pattern).
    stem : str
        Name used for the outputs (``<stem>_labels.ome.tif``, ...).
    shape : tuple of int
        ``(T, C, Z, Y, X)``.
    dtype : numpy.dtype
        Pixel type of the raw data.
    files : list of Path
        Every input file (for checksums).
    px_um, dz_um : float or None
        Voxel size from the file metadata, in µm, when present.
    description : str
        One line saying what was found (shown to the user).
    """

    kind: DatasetType
    source: Path
    stem: str
    shape: tuple[int, int, int, int, int]
    dtype: np.dtype
    files: list[Path]
    px_um: float | None = None
    dz_um: float | None = None
    description: str = ""
    # stacks: files[t]; planes: grid[t][z] -> Path; hyperstack: page index map
    _grid: list[list[Path]] = field(default_factory=list, repr=False)
    _file_axes: str = ""
    _page_index: np.ndarray | None = field(default=None, repr=False)

    @property
    def n_timepoints(self) -> int:
        """Number of timepoints T."""
        return self.shape[0]

    @property
    def n_channels(self) -> int:
        """Number of channels C."""
        return self.shape[1]

    @property
    def timepoint_nbytes(self) -> int:
        """Bytes of one raw timepoint (all channels)."""
        return int(np.prod(self.shape[1:])) * self.dtype.itemsize

    def read_timepoint(self, t: int) -> np.ndarray:
        """Read timepoint ``t`` as a ``(C, Z, Y, X)`` array (files read in parallel)."""
        if not 0 <= t < self.shape[0]:
            raise IndexError(f"timepoint {t} out of range 0..{self.shape[0] - 1}")
        if self.kind == "stacks":
            arr = _read_tiff(self._grid[t][0])
            return _to_czyx(arr, self._file_axes, self._grid[t][0], self.shape[1:])
        if self.kind == "planes":
            out = np.empty(self.shape[1:], self.dtype)
            paths = self._grid[t]

            def one(z: int) -> None:
                plane = _read_tiff(paths[z])
                out[:, z] = _to_czyx(plane, self._file_axes, paths[z],
                                     (self.shape[1], 1, *self.shape[3:]))[:, 0]

            with ThreadPoolExecutor(_THREADS) as ex:
                list(ex.map(one, range(len(paths))))
            return out
        return self._read_hyperstack_timepoint(t)

    def _read_hyperstack_timepoint(self, t: int) -> np.ndarray:
        import tifffile

        assert self._page_index is not None
        idx = self._page_index[t]  # (C, Z) page numbers
        out = np.empty(self.shape[1:], self.dtype)
        path = self.files[0]
        try:
            with _tifffile_errors(path), tifffile.TiffFile(path) as tif:
                pages = tif.series[0].pages
                for c in range(idx.shape[0]):
                    for z in range(idx.shape[1]):
                        page = pages[int(idx[c, z])]
                        if page is None:
                            raise InputError(f"{path}: page {idx[c, z]} is missing (truncated)")
                        out[c, z] = page.asarray()
        except InputError:
            raise
        except Exception as e:  # tifffile raises many kinds on damaged files
            raise InputError(f"{path}: cannot read timepoint {t} ({_short(e)})") from None
        return out

    def checksums(self) -> dict[str, str]:
        """SHA-256 of every input file, keyed by path (read in parallel threads)."""
        with ThreadPoolExecutor(_THREADS) as ex:
            digests = list(ex.map(sha256_file, self.files))
        return {str(p): d for p, d in zip(self.files, digests, strict=True)}


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------- open
def open_dataset(
    source: str | Path,
    dataset_type: str = "auto",
    *,
    axes: str | None = None,
    z_axis: int | None = None,
    channel_axis: int | None = None,
) -> Dataset:
    """Inspect an input and return a :class:`Dataset`.

    Parameters
    ----------
    source : str or Path
        A folder (``stacks`` or ``planes``), a TIFF file (``hyperstack``) or a name pattern
        with ``{t}``/``{z}`` fields (``planes``).
    dataset_type : {"auto", "stacks", "planes", "hyperstack"}
        Layout; ``auto`` detects it (see :func:`detect_dataset_type`).
    axes : str, optional
        Axes of the whole dataset, e.g. ``"TZCYX"``; overrides the file metadata. For
        ``stacks`` and ``planes`` the letters other than T (and Z for planes) describe
        each file.
    z_axis, channel_axis : int, optional
        Cellpose-style 0-based axis numbers in each file's array (an alternative to
        ``axes``); remaining non-YX axes of a hyperstack are time.

    Raises
    ------
    InputError
        For a missing path, an unreadable, empty or truncated TIFF, or files that disagree
        in shape or dtype; the message names the file.
    """
    src = Path(source)
    if dataset_type not in DATASET_TYPES:
        raise InputError(
            f"--dataset-type: expected one of {', '.join(DATASET_TYPES)}, got {dataset_type!r}"
        )
    if axes is not None:
        axes = axes.upper()
        if not re.fullmatch(r"[TZCYX]+", axes) or len(set(axes)) != len(axes) or not axes.endswith(
            "YX"
        ):
            raise InputError(f"--axes {axes!r}: use distinct letters from T, Z, C ending in YX")
    kind = detect_dataset_type(src) if dataset_type == "auto" else dataset_type
    if kind == "hyperstack":
        ds = _open_hyperstack(src, axes, z_axis, channel_axis)
    elif kind == "stacks":
        ds = _open_stacks(src, axes, z_axis, channel_axis)
    else:
        ds = _open_planes(src, axes, channel_axis)
    how = "detected" if dataset_type == "auto" else "as given"
    ds.description = f"dataset type {kind!r} ({how}): {ds.description}"
    return ds


def detect_dataset_type(src: Path) -> DatasetType:
    """Guess the layout of ``src`` (see the module docstring); raise when impossible."""
    if _is_pattern(src):
        return "planes"
    if not src.exists():
        raise InputError(f"{src}: no such file or folder")
    if src.is_file():
        if not src.name.lower().endswith(TIFF_SUFFIXES):
            raise InputError(f"{src}: not a TIFF file (.tif/.tiff expected)")
        return "hyperstack"
    subdirs = sorted(d for d in src.iterdir() if d.is_dir() and _tiffs_in(d))
    files = _tiffs_in(src)
    if not files and subdirs:
        return "planes"  # one sub-folder of planes per timepoint
    if not files:
        raise InputError(f"{src}: folder holds no .tif/.tiff files")
    if all(_tz_tokens(f.name) is not None for f in files):
        return "planes"
    n_pages = _n_pages(files[0])
    return "stacks" if n_pages > 1 else "planes"


def _is_pattern(src: Path) -> bool:
    return "{t}" in src.name or "{z}" in src.name or any(ch in src.name for ch in "*?[")


def _tiffs_in(folder: Path) -> list[Path]:
    try:
        entries = list(folder.iterdir())
    except OSError as e:
        raise InputError(f"{folder}: cannot list folder ({e.strerror})") from None
    files = [p for p in entries if p.is_file() and p.name.lower().endswith(TIFF_SUFFIXES)
             and not p.name.startswith(".")]
    return sorted(files, key=lambda p: natural_key(p.name))


_T_RE = re.compile(r"(?:^|[^a-z])t(\d+)", re.IGNORECASE)
_Z_RE = re.compile(r"(?:^|[^a-z])z(\d+)", re.IGNORECASE)


def _tz_tokens(name: str) -> tuple[int, int] | None:
    stem = stem_of(Path(name))
    t, z = _T_RE.findall(stem), _Z_RE.findall(stem)
    if t and z:
        return int(t[-1]), int(z[-1])
    return None


def _short(e: BaseException) -> str:
    msg = str(e).strip().splitlines()
    return (msg[0] if msg else type(e).__name__)[:160]


def _tiff_info(path: Path) -> tuple[tuple[int, ...], np.dtype, str, int, dict[str, Any]]:
    """Return (series shape, dtype, axes, number of pages, metadata) of a TIFF's first series."""
    import tifffile

    try:
        size = path.stat().st_size
        if size == 0:
            raise InputError(f"{path}: empty file (0 bytes)")
        with _tifffile_errors(path), tifffile.TiffFile(path) as tif:
            if not tif.series:
                raise InputError(f"{path}: TIFF holds no image")
            s = tif.series[0]
            meta = _voxel_metadata(tif)
            shape, dtype, axes = tuple(s.shape), np.dtype(s.dtype), s.axes
            if 0 in shape:
                raise InputError(f"{path}: empty image (shape {shape})")
            npages = len(s.pages)
            # a truncated file: every byte of image data must lie inside the file
            last = s.pages[-1] if npages else None
            if last is not None and hasattr(last, "dataoffsets"):
                ends = [o + n for o, n in zip(last.dataoffsets, last.databytecounts,
                                              strict=False)]
                if ends and max(ends) > size:
                    raise InputError(f"{path}: TIFF is truncated (image data ends past the file)")
            dataoffset = getattr(s, "dataoffset", None)
            if dataoffset is not None and dataoffset + s.nbytes > size:
                raise InputError(f"{path}: TIFF is truncated (image data ends past the file)")
            if _last_ifd_end(tif) > size:
                raise InputError(f"{path}: TIFF is truncated (its last directory ends past "
                                 "the file)")
    except InputError:
        raise
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except Exception as e:
        raise InputError(f"{path}: not a readable TIFF ({_short(e)})") from None
    return shape, dtype, axes, npages, meta


_DAMAGE_RE = re.compile(r"offset|corrupt|truncat|missing|out of range|incomplete", re.I)


def _last_ifd_end(tif: Any) -> int:
    """End offset of the file's last IFD and of the tag values it points to.

    Writers put the directories of later pages (and their tag values) after the image
    data, so a file cut by a few bytes loses them while every pixel still reads; tifffile
    reads such a file without complaint. Returns 0 when the layout cannot be inspected.
    """
    try:
        return _last_ifd_end_unchecked(tif)
    except OSError:
        raise
    except Exception:  # an unexpected layout or tifffile internals that moved: no check
        return 0


def _last_ifd_end_unchecked(tif: Any) -> int:
    import struct

    import tifffile

    fmt = tif.tiff
    fh = tif.filehandle
    offset = int(tif.pages[-1].offset)  # len(pages) walks the whole IFD chain
    fh.seek(offset)
    raw = fh.read(fmt.tagnosize)
    if len(raw) < fmt.tagnosize:
        return offset + fmt.tagnosize
    n = struct.unpack(fmt.tagnoformat, raw)[0]
    end = offset + fmt.tagnosize + n * fmt.tagsize + fmt.offsetsize
    entries = fh.read(n * fmt.tagsize)
    if len(entries) < n * fmt.tagsize:
        return end
    for i in range(n):
        _code, dtype, count, value = struct.unpack(
            fmt.tagheaderformat, entries[i * fmt.tagsize:(i + 1) * fmt.tagsize])
        valueformat = tifffile.TIFF.DATA_FORMATS.get(dtype)
        if valueformat is None:
            continue
        valuesize = count * struct.calcsize(valueformat)
        if valuesize > fmt.tagoffsetthreshold:
            valueoffset = struct.unpack(fmt.offsetformat, value)[0]
            end = max(end, valueoffset + valuesize)
    return end


class _TifffileErrors(logging.Handler):
    """Collects tifffile's damaged-file diagnostics logged by one thread.

    tifffile logs, rather than raises, when an IFD, a tag value or the ImageJ/OME metadata
    lies past the end of a truncated file, and then reads a different (wrong) image; the
    records turn that into an :class:`InputError`. While attached, the handler also keeps
    tifffile's messages off stderr (the user gets one clear line instead).
    """

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.thread = threading.get_ident()
        self.errors: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            msg = record.getMessage()
            if _DAMAGE_RE.search(msg):
                self.errors.append(msg)


@contextlib.contextmanager
def _tifffile_errors(path: Path) -> Iterator[None]:
    """Raise :class:`InputError` when tifffile logs an error while the block reads ``path``."""
    logger = logging.getLogger("tifffile")
    handler = _TifffileErrors()
    logger.addHandler(handler)
    try:
        yield
    except InputError:
        raise
    except Exception:
        if handler.errors:  # tifffile's own diagnosis says more than the exception
            raise _damaged(path, handler.errors[0]) from None
        raise
    finally:
        logger.removeHandler(handler)
    if handler.errors:
        raise _damaged(path, handler.errors[0])


def _damaged(path: Path, message: str) -> InputError:
    # keep tifffile's diagnosis, without its "<tifffile.TiffFile 'name'>" prefixes and
    # "raised TiffFileError('...')" wrapping: the path comes first
    msg = message.strip().splitlines()[0]
    inner = re.search(r"Error\((['\"])(.*)\1\)", msg)
    if inner:
        msg = inner.group(2)
    msg = re.sub(r"^(<[^>]*>\s*)+", "", msg)
    return InputError(f"{path}: damaged or truncated TIFF ({msg[:160]})")


def _read_tiff(path: Path) -> np.ndarray:
    import tifffile

    try:
        with _tifffile_errors(path):
            arr = tifffile.imread(path)
    except InputError:
        raise
    except FileNotFoundError:
        raise InputError(f"{path}: no such file (was it moved during the run?)") from None
    except Exception as e:
        raise InputError(f"{path}: cannot read TIFF ({_short(e)})") from None
    if arr.size == 0:
        raise InputError(f"{path}: empty image")
    return arr


def _n_pages(path: Path) -> int:
    return _tiff_info(path)[3]


_UNIT_TO_UM = {"µm": 1.0, "um": 1.0, "micron": 1.0, "microns": 1.0, "micrometer": 1.0,
               "\\u00b5m": 1.0, "nm": 1e-3, "nanometer": 1e-3, "mm": 1e3, "millimeter": 1e3}


def _voxel_metadata(tif: Any) -> dict[str, Any]:
    """Voxel size (µm) from OME-XML or ImageJ metadata; empty when there is none."""
    meta: dict[str, Any] = {}
    if tif.is_ome and tif.ome_metadata:
        try:
            root = ET.fromstring(tif.ome_metadata)
            px = next(el for el in root.iter() if el.tag.endswith("Pixels"))
            for ax, key in (("X", "px_x"), ("Y", "px_y"), ("Z", "dz")):
                v = px.get(f"PhysicalSize{ax}")
                if v is not None:
                    unit = px.get(f"PhysicalSize{ax}Unit", "µm")
                    scale = _UNIT_TO_UM.get(unit.lower() if unit != "µm" else unit)
                    if scale is not None:
                        meta[key] = float(v) * scale
            meta["axes_hint"] = px.get("DimensionOrder")
        except (ET.ParseError, StopIteration, ValueError):
            pass
    elif tif.is_imagej and tif.imagej_metadata is not None:
        ij = tif.imagej_metadata
        unit = str(ij.get("unit", "")).lower()
        scale = _UNIT_TO_UM.get(unit)
        page = tif.pages.first
        xres = page.tags.get("XResolution")
        if scale is not None and xres is not None:
            num, den = xres.value
            if num > 0:
                meta["px_x"] = den / num * scale
        if scale is not None and "spacing" in ij:
            meta["dz"] = float(ij["spacing"]) * scale
    return meta


def _axes_from_indices(ndim: int, z_axis: int | None, channel_axis: int | None,
                       rest: str) -> str:
    """Axes string for a file of ``ndim`` dims given Cellpose-style z/channel axis numbers."""
    letters: list[str | None] = [None] * ndim
    for name, ax in (("Z", z_axis), ("C", channel_axis)):
        if ax is None:
            continue
        a = ax + ndim if ax < 0 else ax
        if not 0 <= a < ndim or letters[a] is not None:
            raise InputError(f"--{name.lower()}_axis {ax}: out of range for a {ndim}-D image")
        letters[a] = name
    free = [i for i, v in enumerate(letters) if v is None]
    if len(free) < 2:
        raise InputError("--z_axis/--channel_axis leave fewer than two axes for Y and X")
    letters[free[-2]], letters[free[-1]] = "Y", "X"
    fill = iter(rest)
    for i in free[:-2]:
        try:
            letters[i] = next(fill)
        except StopIteration:
            raise InputError(f"cannot name axis {i} of a {ndim}-D image; pass --axes") from None
    return "".join(c for c in letters if c)


def _normalise_axes(axes: str, path: Path) -> str:
    """Map tifffile's axes letters to ours (Q/I/S... become errors unless trivially handled)."""
    out = axes.upper().replace("I", "Z").replace("Q", "Z")
    if "S" in out:  # RGB samples
        out = out.replace("S", "C")
    if len(set(out)) != len(out) or not set(out) <= set("TZCYX") or not out.endswith("YX"):
        raise InputError(f"{path}: cannot interpret image axes {axes!r}; pass --axes (e.g. TZCYX)")
    return out


def _to_czyx(arr: np.ndarray, axes: str, path: Path,
             want: Sequence[int]) -> np.ndarray:
    """Rearrange one file's array (axes without T) to (C, Z, Y, X) and check its shape."""
    if arr.ndim != len(axes):
        raise InputError(f"{path}: image has {arr.ndim} axes, expected {len(axes)} ({axes})")
    full = axes
    for ax in "CZ":
        if ax not in full:
            arr = arr[np.newaxis]
            full = ax + full
    arr = np.moveaxis(arr, [full.index(a) for a in "CZYX"], range(4))
    if tuple(arr.shape) != tuple(want):
        raise InputError(
            f"{path}: shape (C,Z,Y,X)={tuple(arr.shape)} differs from the first file's "
            f"{tuple(want)}"
        )
    return arr


def _open_stacks(src: Path, axes: str | None, z_axis: int | None,
                 channel_axis: int | None) -> Dataset:
    if not src.is_dir():
        raise InputError(f"{src}: the 'stacks' dataset type needs a folder of z-stacks")
    files = _tiffs_in(src)
    if not files:
        raise InputError(f"{src}: folder holds no .tif/.tiff files")
    with ThreadPoolExecutor(_THREADS) as ex:
        infos = list(ex.map(_tiff_info, files))
    shape0, dtype0, axes0, _, meta = infos[0]
    for f, (shp, dt, _ax, _, _) in zip(files, infos, strict=True):
        if shp != shape0:
            raise InputError(f"{f}: shape {shp} differs from {files[0].name}'s {shape0}")
        if dt != dtype0:
            raise InputError(f"{f}: dtype {dt} differs from {files[0].name}'s {dtype0}")
    if axes is not None:
        file_axes = axes.replace("T", "")
    elif z_axis is not None or channel_axis is not None:
        file_axes = _axes_from_indices(len(shape0), z_axis, channel_axis, "Z")
    else:
        file_axes = _normalise_axes(axes0, files[0])
        if "T" in file_axes:  # ImageJ may call a plain stack's frames T
            if "Z" in file_axes:
                raise InputError(f"{files[0]}: a z-stack per timepoint cannot have its own T axis")
            file_axes = file_axes.replace("T", "Z")
    if len(file_axes) != len(shape0):
        raise InputError(f"{files[0]}: axes {file_axes!r} do not match its shape {shape0}")
    c = shape0[file_axes.index("C")] if "C" in file_axes else 1
    z = shape0[file_axes.index("Z")] if "Z" in file_axes else 1
    y, x = shape0[-2], shape0[-1]
    ds = Dataset("stacks", src, stem_of(src), (len(files), c, z, y, x), dtype0, files,
                 px_um=meta.get("px_x"), dz_um=meta.get("dz"),
                 description=f"{len(files)} z-stack files ({file_axes}, {z}x{y}x{x}, "
                             f"{c} channel(s), {dtype0}) in {src}")
    ds._grid = [[f] for f in files]
    ds._file_axes = file_axes
    return ds


def _open_planes(src: Path, axes: str | None, channel_axis: int | None) -> Dataset:
    grid: dict[int, dict[int, Path]] = {}
    if _is_pattern(src):
        folder = src.parent
        if not folder.is_dir():
            raise InputError(f"{src}: folder {folder} does not exist")
        rx = re.escape(src.name)
        rx = rx.replace(r"\{t\}", r"(?P<t>\d+)").replace(r"\{z\}", r"(?P<z>\d+)")
        rx = rx.replace(r"\*", ".*").replace(r"\?", ".")
        pat = re.compile("^" + rx + "$")
        for f in _tiffs_in(folder):
            m = pat.match(f.name)
            if m:
                gd = m.groupdict()
                t = int(gd["t"]) if gd.get("t") else 0
                z = int(gd["z"]) if gd.get("z") else len(grid.get(t, {}))
                grid.setdefault(t, {})[z] = f
        stem = folder.name
    else:
        if not src.is_dir():
            raise InputError(f"{src}: the 'planes' dataset type needs a folder or a pattern")
        files = _tiffs_in(src)
        subdirs = sorted((d for d in src.iterdir() if d.is_dir() and _tiffs_in(d)),
                         key=lambda d: natural_key(d.name))
        if not files and subdirs:
            for t, d in enumerate(subdirs):
                grid[t] = dict(enumerate(_tiffs_in(d)))
        elif files and all(_tz_tokens(f.name) is not None for f in files):
            for f in files:
                tz = _tz_tokens(f.name)
                assert tz is not None
                if tz[1] in grid.get(tz[0], {}):
                    raise InputError(f"{f}: duplicate plane t={tz[0]} z={tz[1]}")
                grid.setdefault(tz[0], {})[tz[1]] = f
        elif files:
            grid[0] = dict(enumerate(files))
        stem = src.name
    if not grid:
        raise InputError(f"{src}: no TIFF planes found")
    ts = sorted(grid)
    nz = len(grid[ts[0]])
    rows: list[list[Path]] = []
    for t in ts:
        zs = sorted(grid[t])
        if len(zs) != nz:
            raise InputError(
                f"{src}: timepoint {t} has {len(zs)} planes but timepoint {ts[0]} has {nz}"
            )
        rows.append([grid[t][z] for z in zs])
    first = rows[0][0]
    all_files = [p for r in rows for p in r]
    with ThreadPoolExecutor(_THREADS) as ex:
        infos = list(ex.map(_tiff_info, all_files))
    shape0, dtype0, axes0, _, meta = infos[0]
    for f, (shp, dt, _a, _, _) in zip(all_files, infos, strict=True):
        if shp != shape0:
            raise InputError(f"{f}: shape {shp} differs from {first.name}'s {shape0}")
        if dt != dtype0:
            raise InputError(f"{f}: dtype {dt} differs from {first.name}'s {dtype0}")
    if axes is not None:
        file_axes = axes.replace("T", "").replace("Z", "")
    elif channel_axis is not None:
        file_axes = _axes_from_indices(len(shape0), None, channel_axis, "")
    else:
        file_axes = _normalise_axes(axes0, first)
        if len(shape0) == 3 and axes0[:1].upper() in ("Q", "I"):
            # a plane's unnamed leading axis can only be its channels
            file_axes = "C" + file_axes[1:]
    if "Z" in file_axes or "T" in file_axes or len(file_axes) != len(shape0):
        raise InputError(f"{first}: expected a 2D plane (YX or CYX), got shape {shape0}")
    c = shape0[file_axes.index("C")] if "C" in file_axes else 1
    y, x = shape0[-2], shape0[-1]
    ds = Dataset("planes", src, stem, (len(rows), c, nz, y, x), dtype0, all_files,
                 px_um=meta.get("px_x"), dz_um=meta.get("dz"),
                 description=f"{len(rows)} timepoint(s) x {nz} plane files ({y}x{x}, "
                             f"{c} channel(s), {dtype0}) from {src}")
    ds._grid = rows
    ds._file_axes = file_axes
    return ds


def _open_hyperstack(src: Path, axes: str | None, z_axis: int | None,
                     channel_axis: int | None) -> Dataset:
    if not src.exists():
        raise InputError(f"{src}: no such file")
    if not src.is_file():
        raise InputError(f"{src}: the 'hyperstack' dataset type needs one TIFF file")
    shape, dtype, axes0, npages, meta = _tiff_info(src)
    if axes is not None:
        full = axes
    elif z_axis is not None or channel_axis is not None:
        full = _axes_from_indices(len(shape), z_axis, channel_axis, "T")
    else:
        full = _normalise_axes(axes0, src)
    if len(full) != len(shape):
        raise InputError(f"{src}: axes {full!r} do not match its shape {shape}")
    # pages are stored in order of the non-YX axes (the file's own order)
    lead = full[:-2]
    lead_shape = shape[:-2]
    if int(np.prod(lead_shape)) != npages:
        raise InputError(
            f"{src}: {npages} pages do not match shape {shape} (truncated file, or pass --axes)"
        )
    sizes = {a: (lead_shape[lead.index(a)] if a in lead else 1) for a in "TCZ"}
    page_ids = np.arange(npages).reshape(lead_shape) if lead_shape else np.zeros((), int)
    for a in "TCZ":
        if a not in lead:
            page_ids = page_ids[..., np.newaxis]
            lead += a
    page_index = np.moveaxis(page_ids, [lead.index(a) for a in "TCZ"], range(3))
    y, x = shape[-2], shape[-1]
    t, c, z = sizes["T"], sizes["C"], sizes["Z"]
    ds = Dataset("hyperstack", src, stem_of(src), (t, c, z, y, x), dtype, [src],
                 px_um=meta.get("px_x"), dz_um=meta.get("dz"),
                 description=f"hyperstack {src.name} ({full} {shape}, {dtype})")
    ds._page_index = np.ascontiguousarray(page_index)
    ds._file_axes = full
    return ds
