"""Pipeline benchmark: neuroglia5d vs a scikit-image script vs pyclesperanto.

For each generated dataset (both kinds, seeds the tests and tuning never use) and each
method, a fresh Python process imports what it needs, records its resident set size (the
post-import baseline) and resets the kernel's high-water mark, then segments every
timepoint of the dataset's OME-TIFF; the high-water mark (``VmHWM``) gives the peak, so
short spikes inside C code are counted too. Reported per method:

* seconds per timepoint (wall time of the whole run / timepoints; for neuroglia5d this is
  the complete pipeline, reading the TIFF and writing the OME-TIFF outputs included; the
  baselines only read and segment);
* peak memory: the largest RSS increase over the post-import baseline (neuroglia5d with
  ``Taccum=1``, ``maxT=1``), also as a multiple of one raw timepoint;
* accuracy against the ground truth over all timepoints: F1 at IoU 0.5, mean IoU of the
  matched pairs, and the Cell Tracking Challenge SEG measure.

Run ``make bench`` (installs PoCL for pyclesperanto) or
``python benchmarks/pipeline.py [--shape 2,64,512,512] [--seeds 101 102]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
METHODS = ("neuroglia5d", "skimage_script", "clesperanto_voronoi_otsu")

_CHILD = r"""
import json, os, sys, time
sys.path.insert(0, {here!r})
import numpy as np
method, src, out, diameter = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
if method == "neuroglia5d":
    import neuroglia5d.pipeline, neuroglia5d.processing.timepoint, neuroglia5d.io.tiff_out
    import skimage.segmentation, skimage.measure, scipy.spatial, edt, cc3d, fastremap
    import matplotlib.figure
else:
    import baselines
    if method == "skimage_script":
        import scipy.ndimage, skimage.feature, skimage.filters, skimage.measure
        import skimage.segmentation
    else:
        import pyclesperanto
def vm(key):
    # this process's own counters (VmHWM is reset at exec, unlike ru_maxrss, which a child
    # inherits from the parent that started it)
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)
base = vm("VmRSS")
# reset the high-water mark to the current RSS (Linux >= 4.0: write 5 to clear_refs)
try:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
except OSError:
    pass
t0 = time.perf_counter()
if method == "neuroglia5d":
    from neuroglia5d import segment
    res = segment(src, out, {{"Taccum": 1, "maxT": 1, "ch1_minDist_um": diameter}},
                  formats="tif")[0]
    n_t = res.n_timepoints
    result = str(res.out_dir / (res.stem + "_labels.ome.tif"))
else:
    from neuroglia5d.io.datasets import open_dataset
    fn = getattr(baselines, method)
    data = open_dataset(src)
    n_t = data.n_timepoints
    labs = []
    for t in range(n_t):
        raw = data.read_timepoint(t)[0]
        labs.append(fn(raw, (1.5, 0.5, 0.5), diameter))
        del raw
    result = os.path.join(out, "labels.npy")
    os.makedirs(out, exist_ok=True)
    np.save(result, np.stack(labs))
secs = time.perf_counter() - t0
peak_rss = vm("VmHWM")
print(json.dumps({{"seconds": secs, "timepoints": n_t, "peak_bytes": peak_rss - base,
                  "result": result}}))
"""


def run_method(method: str, src: Path, out: Path, diameter: float) -> dict:
    """Run one method in a fresh process; return its timing, memory and label path."""
    code = _CHILD.format(here=str(HERE))
    proc = subprocess.run([sys.executable, "-c", code, method, str(src), str(out),
                           str(diameter)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{method} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def load_labels(method: str, result: str, shape: tuple[int, ...]) -> np.ndarray:
    """Labels of a run in the full raw frame."""
    if method != "neuroglia5d":
        return np.load(result)
    from neuroglia5d.io.tiff_out import read_ome_tiff_series

    d = read_ome_tiff_series(result)
    lab = d["series"]["labels"]
    full = np.zeros(shape, np.uint32)
    _, oy, ox = d["offset_zyx"]
    full[:, :, oy:oy + lab.shape[2], ox:ox + lab.shape[3]] = lab
    return full


def main() -> int:
    """Run the benchmark and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="2,64,512,512", help="T,Z,Y,X of each dataset")
    ap.add_argument("--seeds", type=int, nargs="+", default=[101, 102],
                    help="dataset seeds (never used by tests or tuning)")
    ap.add_argument("--kinds", nargs="+", default=["nuclei", "microglia"])
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()

    from neuroglia5d.metrics import score_series
    from neuroglia5d.sample_data import make_sample, write_sample

    shape = tuple(int(v) for v in args.shape.split(","))
    diameter = 8.0  # ch1_minDist_um default; the baselines get the same expected diameter
    rows = []
    with tempfile.TemporaryDirectory(prefix="ng5d-bench-") as tmp:
        for kind in args.kinds:
            for seed in args.seeds:
                ds = make_sample(kind, shape=shape, seed=seed)  # type: ignore[arg-type]
                paths = write_sample(ds, Path(tmp) / f"{kind}{seed}")
                raw_t_bytes = int(np.prod(shape[1:])) * 2
                for method in args.methods:
                    out = Path(tmp) / f"out_{kind}{seed}_{method}"
                    t0 = time.perf_counter()
                    r = run_method(method, paths.hyperstack, out, diameter)
                    pred = load_labels(method, r["result"], ds.labels.shape)
                    sc = score_series(ds.labels, pred)
                    rows.append({"kind": kind, "seed": seed, "method": method,
                                 "s_per_timepoint": r["seconds"] / r["timepoints"],
                                 "peak_mb": r["peak_bytes"] / 2**20,
                                 "peak_x_raw": r["peak_bytes"] / raw_t_bytes,
                                 "f1": sc.f1, "mean_iou": sc.mean_iou, "seg": sc.seg,
                                 "n_true": sc.n_true, "n_pred": sc.n_pred})
                    print(f"{kind} seed {seed} {method}: {r['seconds']:.1f} s, "
                          f"F1 {sc.f1:.3f} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    print(f"\nDatasets: {shape} (T,Z,Y,X) uint16 per kind, seeds {args.seeds}; "
          f"one raw timepoint = {np.prod(shape[1:]) * 2 / 2**20:.0f} MB; "
          f"{os.cpu_count()} CPU cores, no GPU.\n")
    print("| dataset | method | s / timepoint | peak MB | peak / raw timepoint | F1@0.5 | "
          "mean matched IoU | SEG |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for kind in args.kinds:
        for method in args.methods:
            sel = [r for r in rows if r["kind"] == kind and r["method"] == method]
            if not sel:
                continue

            def mean(key: str, sel: list[dict] = sel) -> float:
                return float(np.mean([r[key] for r in sel]))

            print(f"| {kind} | {method} | {mean('s_per_timepoint'):.2f} | "
                  f"{max(r['peak_mb'] for r in sel):.0f} | "
                  f"{max(r['peak_x_raw'] for r in sel):.1f}x | {mean('f1'):.3f} | "
                  f"{mean('mean_iou'):.3f} | {mean('seg'):.3f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
