"""Command line: ``neuroglia5d segment|sample|info|convert|recover|params|replay``.

Errors a user can cause print one line (``neuroglia5d: error: ...``) and exit with a
non-zero status; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import traceback
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._version import __version__
from .errors import Cancelled, Neuroglia5DError, ParameterError

_PROG = "neuroglia5d"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, exit 2 (argparse's own convention)
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also used to render the README's option list)."""
    p = _Parser(prog=_PROG, description="Segment 3D/4D fluorescence microscopy into instance "
                                        "labels (neuroglia5d).")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    s = sub.add_parser(
        "segment", help="segment raw TIFF datasets",
        description="Segment raw TIFF datasets into 4D instance labels. Each dataset's outputs "
                    "go to OUT/<stem>/: <stem>_labels.ome.tif, <stem>_fused.ome.tif (and/or "
                    "<stem>_fused.ome.zarr), <stem>_labelStats.csv, <stem>_nnDistHist.csv/.png, "
                    "<stem>_rejected_t0.tif and parameters.json.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="dataset: a folder of z-stacks (one TIFF per timepoint), a folder of "
                        "plane TIFFs, a name pattern with {t} and {z} (quote it), or one "
                        "multi-dimensional TIFF (ImageJ hyperstack or OME-TIFF); several "
                        "inputs run as a batch")
    s.add_argument("--out", "-o", required=True, metavar="DIR", help="output folder")
    s.add_argument("--params", metavar="JSON", help="parameters.json (the original suite's "
                                                    "key names); defaults otherwise")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one parameter, e.g. --set ch1_minDist_um=6 (repeatable)")
    s.add_argument("--dataset-type", default="auto",
                   choices=("auto", "stacks", "planes", "hyperstack"),
                   help="input layout (default: detected, and reported)")
    s.add_argument("--axes", metavar="AXES", help="axes of the input, e.g. TZCYX (overrides "
                                                  "the file metadata)")
    for name in ("z-axis", "channel-axis"):
        s.add_argument(f"--{name}", f"--{name.replace('-', '_')}", type=int, default=None,
                       dest=name.replace("-", "_"), metavar="N",
                       help=f"0-based {name.split('-')[0]} axis of each file's array "
                            "(Cellpose convention)")
    s.add_argument("--format", default="tif", metavar="FMT[,FMT]",
                   help="output formats: tif, ome.zarr, ng5d (comma-separated; default tif)")
    s.add_argument("--ngff-version", default="0.4", choices=("0.4", "0.5"),
                   help="OME-Zarr version (0.4: zarr v2, read by most tools; 0.5: zarr v3)")
    s.add_argument("--device", default="auto", choices=("auto", "cpu", "gpu"),
                   help="where the filters run (auto: a CUDA GPU through CuPy if present)")
    s.add_argument("--scheduler", metavar="ADDRESS",
                   help="run timepoints on a dask.distributed cluster: a scheduler address "
                        "(tcp://host:8786) or 'local' for a local multi-process cluster")
    s.add_argument("--resume", action="store_true",
                   help="reuse finished timepoints of an interrupted run in --out")
    s.add_argument("--strict", action="store_true",
                   help="unknown keys in the parameter file are errors, not warnings")
    s.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    s.add_argument("--debug", action="store_true", help="show tracebacks on errors")

    g = sub.add_parser("sample", help="generate a sample dataset with ground truth",
                       description="Write a generated 4D dataset (raw TIFFs in the three "
                                   "layouts, Cell Tracking Challenge ground truth).")
    g.add_argument("kind", choices=("microglia", "nuclei"))
    g.add_argument("--out", "-o", required=True, metavar="DIR")
    g.add_argument("--shape", default="5,32,256,256", metavar="T,Z,Y,X")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--debug", action="store_true")

    i = sub.add_parser("info", help="describe an output file (.ng5d, .ome.tif, .ome.zarr)",
                       description="Arrays, shape, voxel size, compression per array, "
                                   "timepoints complete and checksum status of a file.")
    i.add_argument("file", metavar="FILE")
    i.add_argument("--json", action="store_true", help="print JSON instead of text")
    i.add_argument("--debug", action="store_true")

    c = sub.add_parser("convert", help="convert between .tif, .ome.zarr and .ng5d",
                       description="Convert one of our outputs (…_fused or …_labels) to "
                                   "another format; the output's extension chooses it.")
    c.add_argument("src", metavar="IN")
    c.add_argument("dst", metavar="OUT")
    c.add_argument("--ngff-version", default="0.4", choices=("0.4", "0.5"))
    c.add_argument("--quiet", "-q", action="store_true")
    c.add_argument("--debug", action="store_true")

    r = sub.add_parser("recover", help="finalise an interrupted NAME.ng5d.partial",
                       description="Rebuild the index of an unfinished .ng5d (every complete "
                                   "timepoint is kept, a torn last record is cut off) and "
                                   "rename it to its final name.")
    r.add_argument("file", metavar="FILE.partial")
    r.add_argument("--debug", action="store_true")

    e = sub.add_parser("export-neuroglancer", help="export an output to Neuroglancer "
                                                   "precomputed (image, labels, meshes, ...)",
                       description="Write a Neuroglancer precomputed dataset of one of our "
                                   "outputs: intensity, labels (compressed_segmentation, mode "
                                   "pyramid), segment properties from <stem>_labelStats.csv, "
                                   "centroid annotations, meshes, skeletons (+ SWC). One "
                                   "dataset per timepoint under OUT_DIR/tNNN/.")
    e.add_argument("input", metavar="INPUT", help="<stem>_fused or <stem>_labels (.ng5d, "
                                                  ".ome.zarr, .tif), or an output folder")
    e.add_argument("out_dir", metavar="OUT_DIR")
    e.add_argument("--no-meshes", action="store_true", help="skip meshes")
    e.add_argument("--no-skeletons", action="store_true", help="skip skeletons and SWC")
    e.add_argument("--base-url", metavar="URL", help="also write states and links for data "
                                                      "hosted at URL (as ng-link)")
    e.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    e.add_argument("--debug", action="store_true")

    v = sub.add_parser("serve", help="serve outputs and the Neuroglancer client on localhost",
                       description="Serve DIR over HTTP (CORS, range requests) with the "
                                   "Neuroglancer client of the neuroglancer package (offline), "
                                   "and print viewer URLs for the exports and OME-Zarr found.")
    v.add_argument("dir", metavar="DIR")
    v.add_argument("--port", type=int, default=9000, help="TCP port (default 9000)")
    v.add_argument("--host", default="127.0.0.1", help="address to bind (default localhost)")
    v.add_argument("--verbose", action="store_true", help="log every request")
    v.add_argument("--debug", action="store_true")

    k = sub.add_parser("ng-link", help="write Neuroglancer states and shareable links",
                       description="For an export that will be hosted at URL (S3, GCS, "
                                   "nginx, ...): write state_tNNN.json, links.txt and "
                                   "index.html into DIR and print the links.")
    k.add_argument("dir", metavar="DIR", help="an export-neuroglancer folder")
    k.add_argument("--base-url", required=True, metavar="URL", help="where DIR will be hosted")
    k.add_argument("--viewer-url", metavar="URL", help="Neuroglancer client for the links "
                                                        "(default: the public demo client)")
    k.add_argument("--debug", action="store_true")

    q = sub.add_parser("params", help="write a parameters.json with every default",
                       description="Print (or write) every parameter with its default, unit "
                                   "and meaning.")
    q.add_argument("--out", "-o", metavar="JSON", help="write parameters.json here")
    q.add_argument("--channels", type=int, default=1, help="number of channels")
    q.add_argument("--debug", action="store_true")

    rp = sub.add_parser("replay", help="replay recorded label corrections",
                        description="Apply the operations of <stem>_auto_annotations.json to "
                                    "the segmentation's labels (<stem>_labels.*) and write the "
                                    "corrected labels (bit for bit the saved working labels).")
    rp.add_argument("annotations", metavar="ANNOTATIONS.json")
    rp.add_argument("labels", metavar="LABELS", help="<stem>_labels (.tif, .ome.zarr, .ng5d)")
    rp.add_argument("--out", "-o", metavar="OUT", help="output labels (.tif or .ng5d; default "
                                                       "<stem>_replayed_labels.ome.tif next "
                                                       "to ANNOTATIONS.json)")
    rp.add_argument("--debug", action="store_true")

    tr = sub.add_parser("train", help="train the correction networks on an annotations file",
                        description="Train the artefact, merge, split and tracking networks "
                                    "on the corrections recorded in ANNOTATIONS.json "
                                    "(incrementally from <stem>_learning.pt when it exists).")
    tr.add_argument("annotations", metavar="ANNOTATIONS.json")
    tr.add_argument("--labels", help="labels the corrections were made on (default: the "
                                     "header's)")
    tr.add_argument("--intensity", help="intensity file (default: the header's)")
    tr.add_argument("--weights", "-o", help="weights file (default <stem>_learning.pt)")
    tr.add_argument("--name", help="also save as this named weight set")
    tr.add_argument("--min-examples", type=int, default=5,
                    help="corrections a network needs before it trains")
    tr.add_argument("--schedule", choices=("meta", "fixed"), default="meta")
    tr.add_argument("--max-steps", type=int, help="cap on the optimiser steps of a round")
    tr.add_argument("--debug", action="store_true")

    ap = sub.add_parser("apply", help="apply trained correction networks to labels",
                        description="Run the networks of WEIGHTS (a .pt file or a named "
                                    "weight set) on INPUT's labels; write the corrected "
                                    "labels and the machine operations.")
    ap.add_argument("weights", metavar="WEIGHTS")
    ap.add_argument("input", metavar="INPUT", help="labels (.tif, .ome.zarr, .ng5d)")
    ap.add_argument("--intensity", help="intensity file (default: INPUT's, if it has one)")
    ap.add_argument("--out", "-o", help="output labels (.tif or .ng5d)")
    ap.add_argument("--t-range", type=int, nargs=2, metavar=("T0", "T1"))
    ap.add_argument("--divisions", action="store_true",
                    help="the cells divide: the linker may propose divisions (default: "
                         "one-to-one links only)")
    ap.add_argument("--ctc", metavar="DIR", help="also export tracks in the CTC format")
    ap.add_argument("--geff", metavar="PATH", help="also export tracks as GEFF (zarr)")
    ap.add_argument("--debug", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    debug = bool(getattr(args, "debug", False))
    _route_warnings()
    try:
        if args.command == "segment":
            return _cmd_segment(args)
        if args.command == "sample":
            return _cmd_sample(args)
        if args.command in ("export-neuroglancer", "serve", "ng-link"):
            return _cmd_neuroglancer(args)
        if args.command == "info":
            return _cmd_info(args)
        if args.command == "convert":
            return _cmd_convert(args)
        if args.command == "recover":
            return _cmd_recover(args)
        if args.command == "replay":
            return _cmd_replay(args)
        if args.command == "train":
            return _cmd_train(args)
        if args.command == "apply":
            return _cmd_apply(args)
        return _cmd_params(args)
    except Neuroglia5DError as e:
        if debug:
            traceback.print_exc()
        print(f"{_PROG}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"{_PROG}: interrupted; finished timepoints are kept as .partial (use --resume)",
              file=sys.stderr)
        return 130
    except Exception as e:  # a bug: one line unless --debug
        if debug:
            traceback.print_exc()
        else:
            print(f"{_PROG}: internal error: {type(e).__name__}: {e} (run with --debug for "
                  "the traceback)", file=sys.stderr)
        return 1


def _route_warnings() -> None:
    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: Any = None, line: str | None = None) -> None:
        print(f"{_PROG}: warning: {message}", file=sys.stderr)

    warnings.showwarning = show  # type: ignore[assignment]


def _cmd_segment(args: argparse.Namespace) -> int:
    from .params import Parameters, load_parameters, parse_overrides
    from .pipeline import segment

    params = load_parameters(args.params, strict=args.strict) if args.params else Parameters()
    if args.set:
        params = params.updated(parse_overrides(args.set), strict=True, source="--set")
    bar = _Bar(disabled=args.quiet)
    cancel = threading.Event()
    try:
        results = segment(args.inputs, args.out, params, dataset_type=args.dataset_type,
                          formats=args.format, device=args.device, scheduler=args.scheduler,
                          resume=args.resume, strict=args.strict, axes=args.axes,
                          z_axis=args.z_axis, channel_axis=args.channel_axis,
                          format_options={"ngff_version": args.ngff_version},
                          progress=bar.update, cancel=cancel)
    except KeyboardInterrupt:
        cancel.set()
        raise Cancelled("interrupted; finished timepoints are kept as .partial (use --resume)"
                        ) from None
    finally:
        bar.close()
    for r in results:
        print(r.summary())
        print(f"  outputs in {r.out_dir}:")
        for o in r.outputs:
            print(f"    {o.name}")
    return 0


class _Bar:
    """tqdm progress bar over timepoints, one per dataset (stderr)."""

    def __init__(self, disabled: bool) -> None:
        self.disabled = disabled
        self.bar: Any = None

    def update(self, p: Any) -> None:
        if self.disabled:
            return
        from tqdm import tqdm

        if p.stage == "open":
            self.close()
            print(p.message, file=sys.stderr)
        elif p.stage == "timepoint":
            if self.bar is None:
                self.bar = tqdm(total=p.total, initial=p.done, unit="tp", file=sys.stderr,
                                desc="segment", dynamic_ncols=True)
            else:
                self.bar.update(p.done - self.bar.n)
        elif p.stage in ("calibrate", "finalize"):
            print(p.message, file=sys.stderr)
        elif p.stage == "done":
            self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _cmd_sample(args: argparse.Namespace) -> int:
    from .sample_data import make_sample, write_sample

    try:
        shape = tuple(int(v) for v in args.shape.split(","))
    except ValueError:
        raise ParameterError(f"--shape {args.shape!r}: expected T,Z,Y,X integers") from None
    if len(shape) != 4:
        raise ParameterError(f"--shape {args.shape!r}: expected four numbers T,Z,Y,X")
    ds = make_sample(args.kind, shape=shape, seed=args.seed)  # type: ignore[arg-type]
    paths = write_sample(ds, args.out)
    print(f"{args.kind}: {shape} seed {args.seed}, SNR {ds.snr:.1f}, "
          f"{int(ds.labels[0].max())} objects")
    for name in ("stacks", "planes", "hyperstack", "ground_truth", "info"):
        print(f"  {name}: {getattr(paths, name)}")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from .io.convert import format_of, load_outputs

    path = Path(args.file)
    if format_of(path) == "ng5d":
        from .io.ng5d import open_ng5d

        info = open_ng5d(path).info()
    else:
        o = load_outputs(path)
        info = {"path": str(path), "format": format_of(path), "complete": True,
                "voxel_size_um": list(o.spacing_um), "offset_zyx": list(o.offset_zyx),
                "arrays": [{"name": n, "dtype": str(a.dtype), "shape": list(a.shape)}
                           for n, a in o.arrays.items()]}
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{info['path']}: {'complete' if info['complete'] else 'UNFINISHED (.partial)'}")
    print(f"  voxel size (z, y, x): {info['voxel_size_um']} µm; crop offset (z, y, x): "
          f"{info['offset_zyx']} voxels")
    for a in info["arrays"]:
        line = f"  {a['name']}: {a['dtype']} {a['shape']}"
        if "codec" in a:
            ratio = f"{a['ratio']:.1f}x" if a["ratio"] else "-"
            bad = a["checksum_errors"]
            if a.get("storage") == "zstd" and a.get("resident_ratio"):
                ratio += f" on disk, {a['resident_ratio']:.1f}x in memory"
            line += (f", {a['codec']} bricks {a['brick']}, {a['compressed_bytes']} bytes "
                     f"({ratio}), timepoints {a['timepoints_present']}/"
                     f"{a['timepoints_expected']}, checksums "
                     + ("ok" if not bad else f"FAILED at t={bad}"))
        print(line)
    for n in info.get("notes", []):
        print(f"  note: {n}")
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from .io.convert import convert

    bar = None
    if not args.quiet:
        from tqdm import tqdm

        bar = tqdm(unit="tp", file=sys.stderr, desc="convert", dynamic_ncols=True)

    def progress(done: int, total: int) -> None:
        if bar is not None:
            bar.total = total
            bar.update(done - bar.n)

    try:
        out = convert(args.src, args.dst, progress=progress, ngff_version=args.ngff_version)
    finally:
        if bar is not None:
            bar.close()
    print(f"wrote {out}")
    return 0


def _cmd_recover(args: argparse.Namespace) -> int:
    from .io.ng5d import open_ng5d, recover

    f = open_ng5d(args.file)
    kept = {n: len(f.timepoints(n)) for n in f.specs}
    notes = list(f.notes)
    del f
    out = recover(args.file)
    print(f"recovered {out}: " + ", ".join(f"{n} {k} timepoint(s)" for n, k in kept.items()))
    for n in notes:
        print(f"  note: {n}")
    return 0


def _cmd_replay(args: argparse.Namespace) -> int:
    from .annotation import load_annotations, replay
    from .io.convert import Outputs, format_of, load_outputs, write_outputs

    doc = load_annotations(args.annotations)
    src = load_outputs(args.labels)
    if "labels" not in src.arrays:
        raise ParameterError(f"LABELS {args.labels}: holds no labels")
    out_labels = replay(doc, src.arrays["labels"])
    ann = Path(args.annotations)
    stem = ann.name.removesuffix(".json").removesuffix("_auto_annotations")
    out = Path(args.out) if args.out else ann.with_name(f"{stem}_replayed_labels.ome.tif")
    fmt = format_of(out)
    if fmt not in ("tif", "ng5d"):
        raise ParameterError(f"--out {out}: labels alone are written as .tif or .ng5d")
    head = doc["header"]
    write_outputs(Outputs({"labels": out_labels}, tuple(head["spacing_um"]),
                          tuple(head["offset_zyx"]), {"replayed_from": str(ann)}, stem),
                  out, fmt)
    n = len(doc["operations"])
    print(f"replayed {n} operation(s) on {args.labels}; wrote {out}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from .learning.commands import run_train

    run_train(args.annotations, labels=args.labels, intensity=args.intensity,
              weights=args.weights, name=args.name, min_examples=args.min_examples,
              schedule=args.schedule, max_steps=args.max_steps)
    return 0


def _cmd_apply(args: argparse.Namespace) -> int:
    from .learning.commands import run_apply

    run_apply(args.weights, args.input, intensity=args.intensity, out=args.out,
              t_range=args.t_range, ctc=args.ctc, geff_path=args.geff,
              divisions=args.divisions)
    return 0


def _cmd_neuroglancer(args: argparse.Namespace) -> int:
    if args.command == "serve":
        from .neuroglancer.serve import serve_forever

        serve_forever(args.dir, port=args.port, host=args.host, verbose=args.verbose)
        return 0
    if args.command == "ng-link":
        from .neuroglancer.link import DEFAULT_VIEWER, write_links

        urls = write_links(args.dir, args.base_url, viewer_url=args.viewer_url or DEFAULT_VIEWER)
        print(f"wrote state_t*.json, links.txt and index.html in {args.dir}")
        for t, u in enumerate(urls):
            print(f"t={t}: {u}")
        return 0
    from .neuroglancer.export import export_neuroglancer

    bar: Any = None

    def progress(done: int, total: int, step: str) -> None:
        nonlocal bar
        if args.quiet:
            return
        if bar is None:  # created on the first step, so input errors print one line
            from tqdm import tqdm

            bar = tqdm(total=total, unit="step", file=sys.stderr, desc="export",
                       dynamic_ncols=True)
        bar.set_postfix_str(step, refresh=False)
        bar.update(done - bar.n)

    try:
        res = export_neuroglancer(args.input, args.out_dir, meshes=not args.no_meshes,
                                  skeletons=not args.no_skeletons, progress=progress)
    finally:
        if bar is not None:
            bar.close()
    m = res.manifest
    print(f"wrote {res.out_dir}: {m['shape_tzyx'][0]} timepoint(s) of {m['shape_tzyx'][1:]} "
          f"voxels, {res.bytes_written / 2**20:.1f} MiB in {res.seconds:.1f} s")
    if args.base_url:
        from .neuroglancer.link import write_links

        print(f"t=0: {write_links(res.out_dir, args.base_url)[0]}")
    return 0


def _cmd_params(args: argparse.Namespace) -> int:
    from .params import Parameters, parameter_table

    if args.channels < 1:
        raise ParameterError(f"--channels {args.channels}: expected a number >= 1")
    p = Parameters().with_channels(args.channels)
    if args.out:
        p.save(Path(args.out))
        print(f"wrote {args.out}")
        return 0
    for key, unit, help_, default in parameter_table(args.channels):
        print(f"{key} = {json.dumps(default)}" + (f" [{unit}]" if unit else "") + f"\n    {help_}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
