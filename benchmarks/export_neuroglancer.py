"""Benchmark: Neuroglancer export of a 4D dataset (default T=10, 64×512×512 voxels).

The input is one of our fused outputs: a generated sample (``make_sample``, kind
``--kind``, seed ``--seed``; the ground-truth labels stand in for the pipeline's) written
as ``<stem>_fused.ng5d`` together with ``<stem>_labelStats.csv`` (the statistics the
pipeline writes, measured here with :func:`label_stats`). Then ``export_neuroglancer``
writes everything the ``export-neuroglancer`` command writes (volumes and pyramids,
segment properties, centroid annotations, meshes, skeletons and SWC) with a tqdm
progress bar. Printed (and saved as JSON with ``--json``): wall time, time per step,
input size (uncompressed arrays and the .ng5d on disk), export size and file count.

Usage::

    python benchmarks/export_neuroglancer.py --out /tmp/ngbench [--shape 10,64,512,512]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np


def _du(path: Path) -> tuple[int, int]:
    """(bytes, files) under ``path``."""
    if path.is_file():
        return path.stat().st_size, 1
    n = b = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            b += os.stat(os.path.join(root, f)).st_size
            n += 1
    return b, n


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="work folder (input and export)")
    p.add_argument("--shape", default="10,64,512,512", help="T,Z,Y,X")
    p.add_argument("--kind", default="nuclei", choices=("nuclei", "microglia"))
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--no-meshes", action="store_true")
    p.add_argument("--no-skeletons", action="store_true")
    p.add_argument("--json", help="write the results here")
    a = p.parse_args(argv)

    from tqdm import tqdm

    from neuroglia5d.io.convert import Outputs, write_outputs
    from neuroglia5d.neuroglancer.export import export_neuroglancer
    from neuroglia5d.processing.stats import concat_tables, label_stats, table_to_csv
    from neuroglia5d.sample_data import DZ_UM, PX_UM, make_sample

    shape = tuple(int(v) for v in a.shape.split(","))
    work = Path(a.out)
    work.mkdir(parents=True, exist_ok=True)
    stem = f"bench_{a.kind}"
    fused = work / f"{stem}_fused.ng5d"
    spacing = (DZ_UM, PX_UM, PX_UM)
    if not fused.exists():
        t0 = time.perf_counter()
        print(f"generating {a.kind} {shape} ...", file=sys.stderr)
        ds = make_sample(a.kind, shape=shape, seed=a.seed)  # type: ignore[arg-type]
        tables = [label_stats(ds.labels[t], ds.raw[t], spacing, t=t) for t in range(shape[0])]
        (work / f"{stem}_labelStats.csv").write_text(table_to_csv(concat_tables(tables)))
        write_outputs(Outputs({"intensity": ds.raw, "labels": ds.labels}, spacing, (0, 0, 0),
                              {"benchmark": "export_neuroglancer"}, stem), fused, "ng5d")
        print(f"input written in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        raw_bytes = ds.raw.nbytes + ds.labels.nbytes
        del ds
    else:
        raw_bytes = int(np.prod(shape)) * (2 + 4)

    bar = tqdm(unit="step", desc="export", file=sys.stderr, dynamic_ncols=True)

    def progress(done: int, total: int, step: str) -> None:
        bar.total = total
        bar.set_postfix_str(step, refresh=False)
        bar.update(done - bar.n)

    res = export_neuroglancer(fused, work / "ng", meshes=not a.no_meshes,
                              skeletons=not a.no_skeletons, progress=progress)
    bar.close()
    out_bytes, out_files = _du(res.out_dir)
    in_bytes, _ = _du(fused)
    n_labels = sum(len(tp["label_ids"]) for tp in res.manifest["timepoints"])
    result = {
        "shape_tzyx": list(shape), "kind": a.kind, "seed": a.seed,
        "labels_total": n_labels,
        "input_uncompressed_bytes": int(raw_bytes), "input_ng5d_bytes": in_bytes,
        "export_bytes": out_bytes, "export_files": out_files,
        "seconds": round(res.seconds, 1),
        "seconds_per_step": {k: round(v, 1) for k, v in res.timings.items()},
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python "
                   f"{platform.python_version()}",
    }
    print(json.dumps(result, indent=1))
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
