"""Output formats as interchangeable writers, and the background writing thread.

Every output format is one module with one :class:`SeriesWriter` subclass, registered in
:data:`FORMATS` by its ``--format`` name. The pipeline opens one writer per format and
channel, hands it each finished timepoint (in increasing ``t``) from a background thread,
and finalises it when the series is complete. A writer keeps everything under
``NAME.partial`` until :meth:`SeriesWriter.finalize`, keeps every finished timepoint
readable if the process dies, and on ``resume`` reports which timepoints an existing
``.partial`` already holds.
"""

from __future__ import annotations

import importlib
import queue
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..errors import OutputError

#: ``--format`` name -> "module:Class" (imported lazily)
FORMATS: dict[str, str] = {
    "tif": "neuroglia5d.io.tiff_out:TiffSeriesWriter",
    "ome.zarr": "neuroglia5d.io.omezarr_out:OmeZarrSeriesWriter",
    "ng5d": "neuroglia5d.io.ng5d:Ng5dSeriesWriter",
}
FORMAT_ALIASES = {"tiff": "tif", "ome.tif": "tif", "zarr": "ome.zarr", "omezarr": "ome.zarr",
                  "ome-zarr": "ome.zarr"}


@dataclass(frozen=True)
class SeriesMeta:
    """What a writer needs to know about the series it writes.

    Attributes
    ----------
    stem : str
        Output stem, with the channel suffix for channels after the first
        (``movie``, ``movie_ch2``).
    shape_tzyx : tuple of int
        Output shape (T, Z, Y, X) of the cropped volumes.
    spacing_um : tuple of float
        Voxel size (z, y, x) in µm.
    offset_zyx : tuple of int
        Position of the crop in the full raw frame, in voxels (napari ``translate`` is
        ``offset * spacing``).
    channel : int
        1-based channel number.
    time_interval_s : float or None
        Time between output frames, when known.
    provenance : dict
        JSON-serialisable provenance to embed in the file metadata.
    options : dict
        Format options (e.g. ``{"ngff_version": "0.5"}`` for OME-Zarr).
    """

    stem: str
    shape_tzyx: tuple[int, int, int, int]
    spacing_um: tuple[float, float, float]
    offset_zyx: tuple[int, int, int] = (0, 0, 0)
    channel: int = 1
    time_interval_s: float | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def translate_um(self) -> tuple[float, float, float]:
        """Crop offset in µm (z, y, x)."""
        return tuple(o * s for o, s in zip(self.offset_zyx, self.spacing_um,
                                           strict=True))  # type: ignore[return-value]


class SeriesWriter(ABC):
    """Base class of a streaming output format (one channel's labels and intensity).

    Subclasses implement the methods below; the pipeline calls, in this order:
    ``__init__`` → (``completed`` / ``read_timepoint`` when resuming) → ``write`` for every
    timepoint not yet completed, in increasing ``t`` → ``finalize``; or ``abort`` on
    error or cancel (which must leave finished timepoints in the ``.partial`` outputs).
    """

    #: ``--format`` name
    name: ClassVar[str] = ""

    def __init__(self, out_dir: Path, meta: SeriesMeta, *, resume: bool = False) -> None:
        self.out_dir = Path(out_dir)
        self.meta = meta
        self.resume = resume

    @abstractmethod
    def final_paths(self) -> list[Path]:
        """Paths of the outputs once finalised."""

    def completed(self) -> set[int]:
        """Timepoints already complete in an existing ``.partial`` (resume), else empty."""
        return set()

    @abstractmethod
    def read_timepoint(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """Read back ``(intensity, labels)`` of a completed timepoint of the ``.partial``."""

    @abstractmethod
    def write(self, t: int, intensity: np.ndarray, labels: np.ndarray) -> None:
        """Append timepoint ``t`` (uint16 and uint32 (Z, Y, X) arrays)."""

    @abstractmethod
    def finalize(self) -> list[Path]:
        """Complete the files and rename them from ``.partial``; return the final paths."""

    def abort(self) -> None:  # noqa: B027 - optional hook, most writers buffer nothing
        """Stop writing, keep what is complete in the ``.partial`` outputs."""


def normalise_formats(formats: str | Sequence[str]) -> list[str]:
    """Parse ``--format tif,ome.zarr`` into known format names, or raise."""
    items = formats.split(",") if isinstance(formats, str) else list(formats)
    out: list[str] = []
    for item in items:
        f = item.strip().lower().lstrip(".")
        f = FORMAT_ALIASES.get(f, f)
        if not f:
            continue
        if f not in FORMATS:
            raise OutputError(
                f"--format {item!r}: unknown format (choose from {', '.join(FORMATS)})"
            )
        if f not in out:
            out.append(f)
    if not out:
        raise OutputError("--format: give at least one output format")
    return out


def writer_class(name: str) -> type[SeriesWriter]:
    """Import and return the writer class registered for ``name``."""
    mod, cls = FORMATS[name].split(":")
    return getattr(importlib.import_module(mod), cls)  # type: ignore[no-any-return]


class BackgroundWriter:
    """Runs writer calls on one background thread, holding at most ``max_pending`` jobs.

    ``submit`` blocks while ``max_pending`` jobs are queued or running, which bounds the
    memory held by finished-but-unwritten timepoints (the ``maxT`` parameter). An
    exception raised by a job is re-raised in the caller at the next ``submit`` or at
    ``join``; later jobs are then skipped.
    """

    def __init__(self, max_pending: int) -> None:
        self._q: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._slots = threading.Semaphore(max(1, max_pending))
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="neuroglia5d-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            job = self._q.get()
            if job is None:
                return
            try:
                if self._error is None:
                    job()
            except BaseException as e:
                self._error = e
            finally:
                del job  # drop the job's arrays before freeing its slot
                self._slots.release()

    def submit(self, job: Callable[[], None]) -> None:
        """Queue a job; blocks while ``max_pending`` jobs are in flight."""
        self.raise_pending()
        self._slots.acquire()
        self._q.put(job)

    def raise_pending(self) -> None:
        """Re-raise the first error a job raised, if any."""
        if self._error is not None:
            err, self._error = self._error, None
            raise err

    def join(self) -> None:
        """Wait for all queued jobs, stop the thread, and raise a job's error if any."""
        self._q.put(None)
        self._thread.join()
        self.raise_pending()
