"""The headless pipeline: raw TIFF datasets in, labels, intensity and statistics out.

:func:`segment` is what the command line, the Python API and the napari widget call. For
each dataset it

1. opens the input (:mod:`neuroglia5d.io.datasets`) and settles the voxel size;
2. reads the first output timepoint, finds the XY crop, and runs the calibration that
   locks the algorithm for every channel;
3. processes every output timepoint (``Taccum`` raw frames each) channel by channel
   (:func:`neuroglia5d.processing.timepoint.process_channel`), locally or on a dask
   cluster, links labels across time, and hands the results to the writers on a
   background thread (at most ``maxT`` timepoints waiting);
4. writes ``<stem>_labelStats.csv``, ``<stem>_nnDistHist.csv``/``.png``,
   ``<stem>_rejected_t0.tif`` and ``parameters.json`` (with provenance), then renames
   every ``.partial`` output.

Outputs of a dataset go to ``OUT/<stem>/``. Everything is written as ``NAME.partial``
first; ``resume=True`` reuses finished timepoints of an interrupted run.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ._version import __version__
from .backend import Device, resolve_device
from .errors import Cancelled, InputError, OutputError, ParameterError
from .io.atomic import (
    atomic_write_bytes,
    atomic_write_text,
    check_free_space,
    ensure_output_dir,
    finalize,
    os_errors,
    partial_path,
    remove,
)
from .io.datasets import Dataset, open_dataset
from .io.writers import BackgroundWriter, SeriesMeta, SeriesWriter, normalise_formats, writer_class
from .params import Parameters, load_parameters
from .processing.background import accumulate_frames, signal_bbox_xy
from .processing.calibrate import Calibration
from .processing.stats import (
    STATS_COLUMNS,
    LabelTable,
    concat_tables,
    histogram_csv,
    histogram_png,
    nn_histogram,
    read_stats_csv,
    table_to_csv,
)
from .processing.timepoint import ChannelResult, process_channel
from .processing.tracking import LinkState, link_frame, remember


# --------------------------------------------------------------------------- progress
@dataclass(frozen=True)
class Progress:
    """A progress report from a running job.

    Attributes
    ----------
    stage : str
        ``open``, ``calibrate``, ``timepoint``, ``finalize`` or ``done``.
    done, total : int
        Units done and expected in this stage (timepoints for ``timepoint``).
    message : str
        One line for the user.
    result : dict or None
        With ``timepoint`` reports: the finished timepoint's arrays, for live display
        (``{"stem", "channel", "t", "intensity", "labels", "shape_tzyx", "spacing_um",
        "offset_zyx"}``; labels already carry their track IDs).
    """

    stage: str
    done: int
    total: int
    message: str = ""
    result: dict[str, Any] | None = None


ProgressCallback = Callable[[Progress], None]


@dataclass
class DatasetResult:
    """Summary of one segmented dataset.

    Attributes
    ----------
    stem : str
        Dataset stem.
    out_dir : Path
        Folder holding the outputs.
    outputs : list of Path
        Every file written.
    n_timepoints : int
        Output timepoints.
    labels_per_timepoint : dict of int to list of int
        Per channel, the number of labels at each timepoint.
    seconds : float
        Wall time.
    calibration : dict of int to Calibration
        The locked algorithm per channel.
    crop_offset_zyx : tuple of int
        XY crop offset in the raw frame.
    notes : list of str
        Warnings raised on the way.
    """

    stem: str
    out_dir: Path
    outputs: list[Path]
    n_timepoints: int
    labels_per_timepoint: dict[int, list[int]]
    seconds: float
    calibration: dict[int, Calibration]
    crop_offset_zyx: tuple[int, int, int]
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """A few lines for the terminal."""
        lines = [f"{self.stem}: {self.n_timepoints} timepoint(s) in {self.seconds:.1f} s "
                 f"({self.seconds / max(1, self.n_timepoints):.2f} s per timepoint) -> "
                 f"{self.out_dir}"]
        for c, counts in self.labels_per_timepoint.items():
            cal = self.calibration[c]
            arr = np.asarray(counts)
            lines.append(f"  channel {c}: algorithm {cal.algorithm} ({cal.reason}); labels per "
                         f"timepoint min {arr.min()} / mean {arr.mean():.1f} / max {arr.max()}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


# --------------------------------------------------------------------------- public API
def segment(
    inputs: str | Path | Sequence[str | Path],
    out: str | Path,
    params: Parameters | str | Path | dict[str, Any] | None = None,
    *,
    dataset_type: str = "auto",
    formats: str | Sequence[str] = ("tif",),
    device: str = "auto",
    scheduler: str | None = None,
    resume: bool = False,
    strict: bool = False,
    axes: str | None = None,
    z_axis: int | None = None,
    channel_axis: int | None = None,
    format_options: dict[str, Any] | None = None,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> list[DatasetResult]:
    """Segment one or more raw TIFF datasets into 4D instance labels.

    Parameters
    ----------
    inputs : path or sequence of paths
        Datasets (folders, TIFF files or ``{t}``/``{z}`` name patterns).
    out : path
        Output folder; each dataset's outputs go to ``out/<stem>/``.
    params : Parameters, path to parameters.json, dict, or None
        Parameters (defaults when None).
    dataset_type : {"auto", "stacks", "planes", "hyperstack"}
        Input layout.
    formats : str or sequence of str
        Output formats: ``tif`` and/or ``ome.zarr``.
    device : {"auto", "cpu", "gpu"}
        Where the filters run.
    scheduler : str, optional
        ``local`` for a local multi-process dask cluster, or the address of a running
        dask.distributed scheduler; timepoints then run on its workers.
    resume : bool
        Reuse finished timepoints of an interrupted run in ``out``.
    strict : bool
        Unknown keys in a parameter file are errors instead of warnings.
    axes, z_axis, channel_axis
        Explicit input axes (see :func:`neuroglia5d.io.datasets.open_dataset`).
    format_options : dict, optional
        Options for the writers, e.g. ``{"ngff_version": "0.5"}``.
    progress : callable, optional
        Receives :class:`Progress` reports.
    cancel : threading.Event, optional
        Set it to stop after the current timepoint; outputs stay ``.partial``.

    Returns
    -------
    list of DatasetResult
    """
    p = _resolve_params(params, strict)
    fmts = normalise_formats(formats)
    _return_freed_memory_promptly()
    dev = resolve_device(device)
    sources = [inputs] if isinstance(inputs, str | Path) else list(inputs)
    if not sources:
        raise InputError("no input given")
    out_path = Path(out)
    if out_path.exists() and not out_path.is_dir():
        raise OutputError(f"--out {out_path}: is a file, not a folder")
    datasets = [open_dataset(s, dataset_type, axes=axes, z_axis=z_axis,
                             channel_axis=channel_axis) for s in sources]
    out_dir = ensure_output_dir(out_path)
    stems = [d.stem for d in datasets]
    dup = {s for s in stems if stems.count(s) > 1}
    if dup:
        raise InputError(f"two inputs share the output name {sorted(dup)[0]!r}; rename one")
    client = _dask_client(scheduler) if scheduler else None
    try:
        return [
            _segment_dataset(ds, out_dir / ds.stem, p, fmts, dev, resume=resume,
                             client=client, format_options=format_options or {},
                             progress=progress, cancel=cancel)
            for ds in datasets
        ]
    finally:
        if client is not None:
            _close_client(client)


def _return_freed_memory_promptly() -> None:
    """On glibc, serve allocations of 1 MiB and more by mmap so freed volumes go back to
    the system at once instead of lingering in a fragmented heap (peak memory per
    timepoint then stays that of the arrays alive). Harmless elsewhere (no-op)."""
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):  # not glibc
        return


def _resolve_params(params: Parameters | str | Path | dict[str, Any] | None,
                    strict: bool) -> Parameters:
    if params is None:
        return Parameters()
    if isinstance(params, Parameters):
        return params
    if isinstance(params, dict):
        return Parameters.from_dict(params, strict=strict)
    return load_parameters(params, strict=strict)


def effective_parameters(ds: Dataset, p: Parameters) -> tuple[Parameters, str, list[str]]:
    """Fill the voxel size from the file metadata where the user did not set it.

    Returns
    -------
    params : Parameters
        With ``px_um``/``dz_um`` settled and one channel entry per input channel.
    source : str
        Where the voxel size came from (``parameters``, ``metadata`` or ``default``).
    notes : list of str
        Disagreements worth telling the user.
    """
    notes: list[str] = []
    upd: dict[str, float] = {}
    src = []
    for key, meta_val in (("px_um", ds.px_um), ("dz_um", ds.dz_um)):
        if key in p.explicit:
            src.append("parameters")
            if meta_val and not math.isclose(meta_val, getattr(p, key), rel_tol=1e-3):
                notes.append(f"{key}={getattr(p, key):g} µm from the parameters differs from "
                             f"the file metadata ({meta_val:g} µm); using the parameters")
        elif meta_val:
            upd[key] = float(meta_val)
            src.append("metadata")
        else:
            src.append("default")
    out = p
    if upd:
        expl = p.explicit
        out = replace(p, **upd, explicit=expl)
    out = out.with_channels(ds.n_channels)
    source = src[0] if src[0] == src[1] else f"px: {src[0]}, dz: {src[1]}"
    return out, source, notes


def channel_stem(stem: str, channel: int) -> str:
    """Output stem of a channel: ``stem`` for channel 1, ``stem_chN`` otherwise."""
    return stem if channel == 1 else f"{stem}_ch{channel}"


# --------------------------------------------------------------------------- one dataset
@dataclass
class _RunState:
    """What a resumed run must find again (kept in ``<stem>_run.partial/state.json``)."""

    params: dict[str, Any]
    shape: list[int]
    crop: list[int]
    calibration: dict[str, dict[str, Any]]
    next_id: dict[str, int] = field(default_factory=dict)
    done: list[int] = field(default_factory=list)


class _Run:
    """Bookkeeping of one dataset's run: staging folder, writers, link state."""

    def __init__(self, ds: Dataset, out_dir: Path, params: Parameters, fmts: list[str],
                 device: Device, resume: bool, format_options: dict[str, Any]) -> None:
        self.ds = ds
        self.out_dir = out_dir
        self.params = params
        self.fmts = fmts
        self.device = device
        self.resume = resume
        self.format_options = format_options
        self.staging = out_dir / f"{ds.stem}_run.partial"
        self.n_out = ds.n_timepoints // params.Taccum
        self.notes: list[str] = []
        self.writers: dict[int, list[SeriesWriter]] = {}
        self.links: dict[int, LinkState] = {}
        self.tables: dict[int, list[LabelTable]] = {}
        self.counts: dict[int, list[int]] = {}
        self.prefetch = True

    # state file ------------------------------------------------------------
    def load_state(self) -> _RunState | None:
        f = self.staging / "state.json"
        if not (self.resume and f.exists()):
            return None
        try:
            d = json.loads(f.read_text(encoding="utf-8"))
            return _RunState(**d)
        except (json.JSONDecodeError, TypeError):
            return None

    def save_state(self, st: _RunState) -> None:
        atomic_write_text(self.staging / "state.json", json.dumps(st.__dict__))


def _segment_dataset(ds: Dataset, out_dir: Path, p0: Parameters, fmts: list[str],
                     device: Device, *, resume: bool, client: Any,
                     format_options: dict[str, Any], progress: ProgressCallback | None,
                     cancel: threading.Event | None) -> DatasetResult:
    t_start = time.perf_counter()
    report = progress or (lambda _p: None)
    params, vox_source, notes = effective_parameters(ds, p0)
    if ds.n_timepoints < params.Taccum:
        raise ParameterError(f"Taccum={params.Taccum} is larger than the {ds.n_timepoints} "
                             f"timepoint(s) of {ds.source}")
    # room for the outputs (uncropped bound): intensity + labels twice per format
    n_out = ds.n_timepoints // params.Taccum
    per_t = int(np.prod(ds.shape[1:])) * (2 + 4 + 4)
    check_free_space(out_dir.parent, int(per_t * n_out * len(fmts) * 1.05))
    ensure_output_dir(out_dir)
    run = _Run(ds, out_dir, params, fmts, device, resume, format_options)
    run.notes += notes
    if ds.n_timepoints % params.Taccum:
        run.notes.append(f"{ds.n_timepoints % params.Taccum} trailing raw frame(s) do not fill "
                         f"a Taccum={params.Taccum} window and are not used")
    report(Progress("open", 0, run.n_out, ds.description))
    # input checksums run in the background while we work
    hasher = ThreadPoolExecutor(1)
    checksums: Future[dict[str, str]] = hasher.submit(ds.checksums)

    state = run.load_state()
    if state is not None and (state.shape != list(ds.shape) or
                              state.params != params.to_dict(provenance={})):
        raise OutputError(f"{run.staging}: an interrupted run with other inputs or parameters "
                          "is there; remove it or run without --resume")
    with os_errors(run.staging):
        run.staging.mkdir(parents=True, exist_ok=True)
    # ---- first timepoint: crop and calibration
    if state is not None:
        crop = tuple(state.crop)
        calib = {int(k[2:]): Calibration.from_dict(v) for k, v in state.calibration.items()}
        first = []
    else:
        report(Progress("calibrate", 0, 1, "reading the first timepoint"))
        box = [_read_frames(ds, 0, params.Taccum)]
        crop = signal_bbox_xy(box[0][0] if len(box[0]) == 1 else np.max(box[0], axis=0))
        first = [_compute_timepoint(ds, 0, params, {}, crop, device, frames=box)]
        calib = {c: cal for c, (_, cal) in first[0].items()}
    y0, y1, x0, x1 = crop
    offset = (0, int(y0), int(x0))
    shape_out = (run.n_out, ds.shape[2], int(y1 - y0), int(x1 - x0))
    st = state or _RunState(params=params.to_dict(provenance={}), shape=list(ds.shape),
                            crop=list(crop),
                            calibration={f"ch{c}": v.to_dict() for c, v in calib.items()})
    run.save_state(st)
    # ---- writers, resume point
    prov_base = _provenance(ds, params, vox_source, crop, calib, device, {})
    done_all: set[int] | None = None
    for c in range(1, ds.n_channels + 1):
        meta = SeriesMeta(stem=channel_stem(ds.stem, c), shape_tzyx=shape_out,
                          spacing_um=params.spacing_um, offset_zyx=offset, channel=c,
                          provenance=prov_base, options=format_options)
        run.writers[c] = [writer_class(f)(out_dir, meta, resume=resume) for f in fmts]
        for w in run.writers[c]:
            d = w.completed() if resume else set()
            done_all = d if done_all is None else done_all & d
        run.links[c] = LinkState()
        run.tables[c] = []
        run.counts[c] = []
    done = done_all or set()
    done &= set(st.done)
    t_first = min(set(range(run.n_out)) - done, default=run.n_out)
    if t_first > 0:
        _prime_from_partial(run, t_first, st)
    # ---- main loop
    max_pending = params.maxT or _auto_max_t(params, shape_out, ds.n_channels)
    run.prefetch = max_pending > 1
    bg = BackgroundWriter(max_pending)
    report(Progress("timepoint", t_first, run.n_out,
                    f"{ds.stem}: {run.n_out - t_first} timepoint(s) to process"))
    try:
        results = _iterate_results(run, t_first, crop, calib, first, client)
        for t, res in results:
            if cancel is not None and cancel.is_set():
                raise Cancelled(f"{ds.stem}: cancelled at timepoint {t}; finished timepoints "
                                f"are kept in .partial outputs (use --resume)")
            linked = _link_and_queue(run, t, res, bg, st, offset)
            del res  # the writer holds what it needs; free the rest before the next timepoint
            for c, (inten, lab) in linked.items():
                report(Progress("timepoint", t + 1, run.n_out,
                                f"{ds.stem}: timepoint {t + 1}/{run.n_out}",
                                result={"stem": channel_stem(ds.stem, c), "channel": c, "t": t,
                                        "intensity": inten, "labels": lab,
                                        "shape_tzyx": shape_out,
                                        "spacing_um": params.spacing_um,
                                        "offset_zyx": offset}))
            del linked
        bg.join()
    except BaseException:
        with contextlib.suppress(BaseException):  # the first error is the one to report
            bg.join()
        for ws in run.writers.values():
            for w in ws:
                w.abort()
        hasher.shutdown(wait=False, cancel_futures=True)
        raise
    # ---- finalise
    report(Progress("finalize", 0, 1, f"{ds.stem}: writing final files"))
    outputs: list[Path] = []
    for ws in run.writers.values():
        for w in ws:
            outputs += w.finalize()
    sums = checksums.result()
    hasher.shutdown()
    prov = _provenance(ds, params, vox_source, crop, calib, device, sums)
    prov["outputs"] = [str(o.name) for o in outputs]
    outputs += _write_tables(run, params)
    outputs.append(params.save(out_dir / "parameters.json", provenance=prov))
    remove(run.staging)
    seconds = time.perf_counter() - t_start
    result = DatasetResult(stem=ds.stem, out_dir=out_dir, outputs=outputs,
                           n_timepoints=run.n_out, labels_per_timepoint=run.counts,
                           seconds=seconds, calibration=calib, crop_offset_zyx=offset,
                           notes=run.notes)
    report(Progress("done", run.n_out, run.n_out, result.summary()))
    return result


def _auto_max_t(params: Parameters, shape_out: tuple[int, int, int, int], n_ch: int) -> int:
    """Timepoints the writer may buffer: what fits in a quarter of the RAM budget (1..8)."""
    per_t = int(np.prod(shape_out[1:])) * 6 * n_ch
    return int(np.clip(params.ram_budget_bytes() // 4 // max(per_t, 1), 1, 8))


def _read_frames(ds: Dataset, t_out: int, taccum: int) -> np.ndarray:
    """The ``Taccum`` raw frames of output timepoint ``t_out`` as (n, C, Z, Y, X)."""
    frames = [ds.read_timepoint(t_out * taccum + k) for k in range(taccum)]
    return np.stack(frames) if taccum > 1 else frames[0][np.newaxis]


def _compute_timepoint(ds: Dataset, t: int, params: Parameters,
                       calib: dict[int, Calibration], crop: Sequence[int], device: Device,
                       frames: list[np.ndarray] | None = None
                       ) -> dict[int, tuple[ChannelResult, Calibration]]:
    """Everything of one output timepoint, all channels (runs locally or on a worker).

    With an empty ``calib`` the calibration pass runs (first timepoint). ``frames``, a
    one-element list holding the raw ``(n, C, Z, Y, X)`` frames when already read, is
    emptied so the raw data is freed as soon as the channels are extracted.
    """
    raw = frames.pop() if frames else _read_frames(ds, t, params.Taccum)
    y0, y1, x0, x1 = crop
    vols = []
    for c in range(ds.n_channels):
        vols.append(accumulate_frames([f[c, :, y0:y1, x0:x1] for f in raw]))
    del raw
    out: dict[int, tuple[ChannelResult, Calibration]] = {}
    for c in range(1, ds.n_channels + 1):
        # passed as a temporary, so process_channel holds the only reference and frees the
        # float volume as soon as it has its uint16 intensity
        out[c] = process_channel(vols.pop(0), params, c, calib.get(c), t=t,
                                 offset_zyx=(0, int(y0), int(x0)), device=device,
                                 want_rejected=(t == 0))
    return out


def _iterate_results(run: _Run, t_first: int, crop: Sequence[int],
                     calib: dict[int, Calibration],
                     first: list[dict[int, tuple[ChannelResult, Calibration]]], client: Any
                     ) -> Any:
    """Yield ``(t, results)`` in increasing ``t`` (local, or on a dask cluster).

    ``first`` holds the first timepoint's results when the calibration computed them; it
    is emptied so they are not kept alive for the rest of the run.
    """
    ds, params = run.ds, run.params
    todo = list(range(t_first, run.n_out))
    if not todo:
        return
    if first and todo[0] == 0:
        yield 0, first.pop()
        todo = todo[1:]
    if client is not None:
        yield from _iterate_dask(client, run, todo, crop, calib)
        return
    # local; with maxT > 1 the next timepoint is read while this one is processed
    reader = ThreadPoolExecutor(1) if run.prefetch else None
    try:
        nxt = reader.submit(_read_frames, ds, todo[0], params.Taccum) if reader else None
        for i, t in enumerate(todo):
            frames = [nxt.result()] if nxt is not None else None
            nxt = reader.submit(_read_frames, ds, todo[i + 1], params.Taccum) \
                if reader is not None and i + 1 < len(todo) else None
            yield t, _compute_timepoint(ds, t, params, calib, crop, run.device, frames=frames)
    finally:
        if reader is not None:
            reader.shutdown(wait=True, cancel_futures=True)


def _iterate_dask(client: Any, run: _Run, todo: list[int], crop: Sequence[int],
                  calib: dict[int, Calibration]) -> Any:
    """Run timepoints on dask workers, at most a few per worker in flight, in order."""
    ds, params = run.ds, run.params
    n_workers = max(1, len(client.scheduler_info().get("workers", {})))
    window = 2 * n_workers
    pending: dict[int, Any] = {}
    it = iter(todo)
    for t in it:
        pending[t] = client.submit(_compute_timepoint, ds, t, params, calib, crop, "cpu",
                                   pure=False, key=f"neuroglia5d-{ds.stem}-{t}")
        if len(pending) >= window:
            break
    for t in todo:
        fut = pending.pop(t)
        res = fut.result()
        fut.release()
        nxt = next(it, None)
        if nxt is not None:
            pending[nxt] = client.submit(_compute_timepoint, ds, nxt, params, calib, crop,
                                         "cpu", pure=False,
                                         key=f"neuroglia5d-{ds.stem}-{nxt}")
        yield t, res


def _link_and_queue(run: _Run, t: int, res: dict[int, tuple[ChannelResult, Calibration]],
                    bg: BackgroundWriter, st: _RunState, offset: tuple[int, int, int]
                    ) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Link labels to the previous timepoint and queue every write of timepoint ``t``.

    Returns the linked ``(intensity, labels)`` of every channel (read-only views for
    progress reports).
    """
    params = run.params
    jobs: list[Callable[[], None]] = []
    linked: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for c, (r, _cal) in res.items():
        ch = params.channel(c)
        labels, mapping = link_frame(r.labels, run.links[c], params.spacing_um,
                                     max_dist_um=ch.minDist_um)
        table = dict(r.table)
        table["label"] = np.array([mapping[int(i)] for i in table["label"]], np.int64)
        order = np.argsort(table["label"], kind="stable")
        table = {k: v[order] for k, v in table.items()}
        run.tables[c].append(table)
        run.counts[c].append(len(table["label"]))
        run.notes += [f"t={t} ch{c}: {n}" for n in r.notes if t == 0]
        st.next_id[f"ch{c}"] = run.links[c].next_id
        linked[c] = (r.intensity, labels)
        stem_c = channel_stem(run.ds.stem, c)
        stats_file = run.staging / f"stats_ch{c}_t{t:05d}.csv"
        jobs += [_bind_write(w, t, r.intensity, labels) for w in run.writers[c]]
        jobs.append(_bind_text(stats_file, table_to_csv(table)))
        if t == 0 and r.rejected is not None:
            # staged with the run; moved next to the outputs when the series is complete
            jobs.append(_bind_rejected(run.staging / f"{stem_c}_rejected_t0.tif", r.rejected,
                                       run.ds.shape[2:], offset, params))
    # jobs run in order on one thread: when t's jobs are through, every earlier t is too
    st.done = sorted({*st.done, t})
    st_snapshot = json.dumps(st.__dict__)

    def all_jobs() -> None:
        for j in jobs:
            j()
        # the state records t as done only once every output of t is on disk
        atomic_write_text(run.staging / "state.json", st_snapshot)

    bg.submit(all_jobs)
    return linked


def _bind_write(w: SeriesWriter, t: int, intensity: np.ndarray,
                labels: np.ndarray) -> Callable[[], None]:
    return lambda: w.write(t, intensity, labels)


def _bind_text(path: Path, text: str) -> Callable[[], None]:
    def job() -> None:
        atomic_write_text(path, text)

    return job


def _bind_rejected(path: Path, codes: np.ndarray, full_zyx: Sequence[int],
                   offset: tuple[int, int, int], params: Parameters) -> Callable[[], None]:
    def job() -> None:
        import tifffile

        full = np.zeros(tuple(full_zyx), np.uint8)
        _, oy, ox = offset
        full[:, oy:oy + codes.shape[1], ox:ox + codes.shape[2]] = codes
        part = partial_path(path)
        with os_errors(path):
            tifffile.imwrite(part, full, imagej=True, compression="zlib",
                             resolution=(1 / params.px_um, 1 / params.px_um),
                             metadata={"spacing": params.dz_um, "unit": "um", "axes": "ZYX",
                                       "Info": "neuroglia5d rejected labels at t=0: 1 small "
                                               "fragment, 2 oversize, 3 isolated"})
            part.replace(path)

    return job


def _prime_from_partial(run: _Run, t_first: int, st: _RunState) -> None:
    """Resume: restore link state and tables of the timepoints already finished."""
    for c, ws in run.writers.items():
        _, labels = ws[0].read_timepoint(t_first - 1)
        state = run.links[c]
        state.next_id = int(st.next_id.get(f"ch{c}", int(labels.max()) + 1))
        remember(state, labels, run.params.spacing_um)
        for t in range(t_first):
            tb = read_stats_csv(run.staging / f"stats_ch{c}_t{t:05d}.csv")
            run.tables[c].append(tb)
            run.counts[c].append(len(tb["label"]))
    run.notes.append(f"resumed: timepoints 0..{t_first - 1} reused from the partial outputs")


def _write_tables(run: _Run, params: Parameters) -> list[Path]:
    out: list[Path] = []
    for c, tables in run.tables.items():
        stem_c = channel_stem(run.ds.stem, c)
        table = concat_tables(tables)
        out.append(atomic_write_text(run.out_dir / f"{stem_c}_labelStats.csv",
                                     table_to_csv(table)))
        edges, counts = nn_histogram(table["nn_dist_um"])
        out.append(atomic_write_text(run.out_dir / f"{stem_c}_nnDistHist.csv",
                                     histogram_csv(edges, counts)))
        marks = {"winXYZum": params.winXYZum} if params.winXYZum > 0 else None
        png = histogram_png(edges, counts, title=f"{stem_c}: nearest-neighbour distance "
                                                 f"({len(table['label'])} labels)", marks=marks)
        out.append(atomic_write_bytes(run.out_dir / f"{stem_c}_nnDistHist.png", png))
        staged = run.staging / f"{stem_c}_rejected_t0.tif"
        if staged.exists():
            out.append(finalize(staged, run.out_dir / staged.name))
    return out


def _provenance(ds: Dataset, params: Parameters, vox_source: str, crop: Sequence[int],
                calib: dict[int, Calibration], device: Device,
                checksums: dict[str, str]) -> dict[str, Any]:
    y0, y1, x0, x1 = (int(v) for v in crop)
    return {
        "software": "neuroglia5d",
        "version": __version__,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "input": str(ds.source),
        "dataset_type": ds.kind,
        "input_shape_tczyx": list(ds.shape),
        "voxel_size_source": vox_source,
        "crop": {"offset_zyx": [0, y0, x0], "shape_zyx": [ds.shape[2], y1 - y0, x1 - x0],
                 "full_shape_zyx": list(ds.shape[2:])},
        "calibration": {f"ch{c}": cal.to_dict() for c, cal in calib.items()},
        "device": device,
        "stats_columns": list(STATS_COLUMNS),
        "input_sha256": checksums,
    }


# --------------------------------------------------------------------------- dask
def _dask_client(scheduler: str) -> Any:
    try:
        from distributed import Client, LocalCluster
    except ImportError:  # pragma: no cover - distributed is a dependency
        raise ParameterError("--scheduler needs dask.distributed (pip install distributed)"
                             ) from None
    if scheduler == "local":
        import os

        n = max(1, min(4, os.cpu_count() or 1))
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                               dashboard_address=None)
        return Client(cluster)
    try:
        return Client(scheduler, timeout="10s")
    except OSError as e:
        raise ParameterError(f"--scheduler {scheduler}: cannot connect ({e})") from None


def _close_client(client: Any) -> None:
    cluster = getattr(client, "cluster", None)
    client.close()
    if cluster is not None:
        cluster.close()
