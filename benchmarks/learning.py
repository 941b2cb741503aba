"""Learning from corrections: does training on K corrections fix the rest of the data?

For each generator seed (not used in development) a nuclei sample is segmented poorly
(:func:`neuroglia5d.learning.simulate.poor_series`: merges of touching nuclei, over-splits,
spurious labels, then the baseline linker with track breaks; at least 50 errors of each
kind in the whole series). A simulated proofreader uses the ground truth
to make K corrections of each kind (erase, merge, split, temporal merge) through the
working copy's user operations on the left half of the field (x < X/2), exactly as the
annotation dock records them. The networks train on the resulting annotations document
and are applied to the right half (x >= X/2 + margin), which the proofreader never
touched. A random forest (scikit-learn, as ilastik and GALA do) trained on the same
per-label / per-pair / per-link features is applied the same way.

Reported per K (mean ± standard deviation over the seeds), on the untouched half:

* over-split / under-split (merged) objects and VI split / merge (bits) before and after;
* artefact precision and recall of the labels each method erased;
* Cell Tracking Challenge TRA (py-ctcmetrics) of the baseline linker on the poor
  segmentation, and after each method (segmentation fixes + its linker);
* training + inference seconds on this CPU;
* meta network vs a fixed schedule (every round as long as the meta controller's first,
  200 steps, at the same learning rate): five presses of T, each after
  K/5 more corrections of each kind; total optimiser steps and mean held-out accuracy.

Tracking on motile nuclei (a second table): on the data above nuclei move with the scene
and by at most 0.3 µm against each other between frames, and the baseline linker (overlap,
then distance) makes no linking error of its own there. Here every nucleus moves by up to
8 µm against the scene between frames (``jitter_step_um=8``), the segmentation is exact,
and every broken track comes from the baseline linker (about 60 per series). The
proofreader makes K temporal merges on the left half; the tracking network (and a forest
on the same per-link features) relinks the right half. Reported: TRA and the broken links
left on the untouched half.

Run ``python benchmarks/learning.py`` (``--quick`` for a smoke run); ``--timing`` measures
T-to-applied on a 64 x 512 x 512 x 20 tile; ``--motile-only`` runs only the tracking
table on motile nuclei.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from neuroglia5d.annotation import WorkingCopy, annotations_document, make_header
from neuroglia5d.learning.datasets import CATEGORIES, corrections_from_annotations
from neuroglia5d.learning.evaluate import tra_score
from neuroglia5d.learning.examples import CropSpec
from neuroglia5d.learning.session import Learner
from neuroglia5d.learning.simulate import (
    error_counts,
    half_tiles,
    match_labels,
    poor_series,
    proofread,
)
from neuroglia5d.learning.tracking import link_series
from neuroglia5d.processing.tracking import LinkState, link_frame
from neuroglia5d.sample_data import DIFFICULTY, make_sample

SP = (1.5, 0.5, 0.5)
MARGIN = 16  # voxels between the proofread half and the evaluated half


class ForestModel:
    """A random forest on the feature vectors, with the classifier's interface."""

    def __init__(self, kind: str, crop: tuple[int, int, int], seed: int) -> None:
        from sklearn.ensemble import RandomForestClassifier

        self.kind = kind
        self.crop_zyx = crop
        self.rf = RandomForestClassifier(n_estimators=200, class_weight="balanced",
                                         min_samples_leaf=1, random_state=seed, n_jobs=1)

    def fit(self, x: np.ndarray, y: np.ndarray) -> None:
        self.rf.fit(x, y)

    def predict_proba(self, x: np.ndarray, c: Any = None) -> np.ndarray:
        if len(x) == 0:
            return np.zeros(0)
        return self.rf.predict_proba(x)[:, list(self.rf.classes_).index(1.0)]


def broken_links(gt: np.ndarray, seg: np.ndarray) -> int:
    """Ground-truth objects whose (single) label changes ID from t to t + 1."""
    n = 0
    for t in range(gt.shape[0] - 1):
        m0, m1 = match_labels(gt[t], seg[t]), match_labels(gt[t + 1], seg[t + 1])
        for g, ps in m0.pieces.items():
            q = m1.pieces.get(g, [])
            if len(ps) == 1 and len(q) == 1 and ps[0] != q[0]:
                n += 1
    return n


def relink_baseline(labels: np.ndarray) -> np.ndarray:
    """The pipeline's baseline linker over a series (new array)."""
    out = labels.copy()
    st = LinkState()
    for t in range(out.shape[0]):
        out[t], _ = link_frame(out[t].copy(), st, SP, max_dist_um=6.0)
    return out


def artefact_pr(gt: np.ndarray, seg: np.ndarray, erased: dict[int, list[int]],
                x0: int) -> tuple[float, float]:
    """Precision and recall of the erased labels (centroid in x >= x0) as artefacts."""
    tp = fp = n_true = 0
    for t in range(gt.shape[0]):
        m = match_labels(gt[t], seg[t])
        cols = {int(v): float(np.mean(np.nonzero(seg[t] == v)[2])) for v in m.main}
        true = {v for v, g in m.main.items() if g == 0 and cols[v] >= x0}
        pred = {v for v in erased.get(t, []) if cols.get(v, 0) >= x0}
        tp += len(true & pred)
        fp += len(pred - true)
        n_true += len(true)
    prec = tp / (tp + fp) if tp + fp else 1.0
    rec = tp / n_true if n_true else 1.0
    return prec, rec


def forest_learner(doc: dict[str, Any], seg: np.ndarray, raw: np.ndarray, spec: CropSpec,
                   seed: int) -> Learner:
    """A Learner whose classifiers are random forests (no boundary network: splits use
    the working copy's intensity + distance watershed)."""
    corr = corrections_from_annotations(doc, seg, raw, spec=spec)
    le = Learner(spec, min_examples=5, seed=seed)
    for name in CATEGORIES:
        ex = corr.examples(name)
        if corr.counts[name] < le.min_examples or ex is None or len(np.unique(ex.y)) < 2:
            continue
        m = ForestModel(name, spec.size, seed)
        m.fit(ex.x, ex.y)
        le.models[name] = m  # type: ignore[assignment]
    return le


def evaluate(method: str, le: Learner, gt: np.ndarray, seg: np.ndarray, raw: np.ndarray,
             x0: int) -> dict[str, Any]:
    part = (slice(None), slice(None), slice(None), slice(x0, None))
    wc = WorkingCopy(seg.copy(), original=seg, intensity=raw, spacing_um=SP)
    box = [0, seg.shape[1], 0, seg.shape[2], x0, seg.shape[3]]
    t0 = time.perf_counter()
    rep = le.apply(wc, box=box, relink="track" in le.models)
    secs = time.perf_counter() - t0
    after = error_counts(gt[part], wc.labels[part])
    prec, rec = artefact_pr(gt, seg, rep.erased_labels, x0)
    fixed_baseline_link = relink_baseline(wc.labels)
    return {
        "method": method, "errors": after.__dict__, "apply_s": secs,
        "art_precision": prec, "art_recall": rec,
        "tra_own_linker": tra_score(gt[part], wc.labels[part], rep.parents),
        "tra_baseline_linker": tra_score(gt[part], fixed_baseline_link[part]),
    }


def meta_vs_fixed(gt: np.ndarray, seg: np.ndarray, raw: np.ndarray, k_total: int,
                  seed: int, spec: CropSpec, x_split: int) -> dict[str, Any]:
    """Five presses of T after k_total/5 more corrections each: meta vs fixed schedule.

    ``to_target``: cumulative steps at the first press where the mean held-out accuracy
    reaches the fixed schedule's final one (within 0.01); None when it never does."""
    out: dict[str, Any] = {}
    for schedule in ("fixed", "meta"):
        wc = WorkingCopy(seg.copy(), original=seg, intensity=raw, spacing_um=SP)
        le = Learner(spec, min_examples=1, seed=seed, schedule=schedule)
        cum, accs = [], []
        for _ in range(5):
            proofread(wc, gt, k=max(k_total // 5, 1),
                      tiles=half_tiles(seg.shape, x_split=x_split),
                      rng=np.random.default_rng(seed))
            doc = annotations_document(wc, make_header(wc))
            _, rep = le.train_from_annotations(doc, seg, raw)
            cum.append((cum[-1] if cum else 0) + sum(r["steps"] for r in rep.rounds.values()))
            accs.append(float(np.mean([r["val_acc"] for r in rep.rounds.values()]))
                        if rep.rounds else 0.5)
        out[schedule] = {"steps": cum[-1], "cum_steps": cum, "acc": accs,
                         "meta_log": le.meta.log if schedule == "meta" else []}
    target = out["fixed"]["acc"][-1]
    for schedule in ("fixed", "meta"):
        o = out[schedule]
        hit = [c for c, a in zip(o["cum_steps"], o["acc"], strict=True) if a >= target - 0.01]
        o["to_target"] = hit[0] if hit else None
    out["target_acc"] = target
    return out


def poor_input(seed: int, shape: tuple[int, int, int, int]
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ground truth, raw and the poor segmentation of a nuclei sample: at least 50 errors
    of each kind in the whole series (the issue's setting): merged touching nuclei,
    over-splits, spurious labels, and track breaks of the linker."""
    ds = make_sample("nuclei", shape=shape, seed=seed)
    seg = poor_series(ds.labels, ds.raw, SP, seed, p_merge=0.7, p_split=0.3, n_artefacts=16,
                      p_break=0.06)
    return ds.labels, ds.raw, seg


def meta_only_seed(seed: int, k: int, shape: tuple[int, int, int, int],
                   spec: CropSpec) -> dict[str, Any]:
    """The meta-vs-fixed comparison of :func:`run_seed` alone."""
    gt, raw, seg = poor_input(seed, shape)
    return meta_vs_fixed(gt, seg, raw, k, seed, spec, shape[-1] // 2)


def run_seed(seed: int, ks: list[int], shape: tuple[int, int, int, int], spec: CropSpec,
             do_meta: bool) -> dict[str, Any]:
    gt, raw, seg = poor_input(seed, shape)
    x_split = shape[-1] // 2
    x0 = x_split + MARGIN
    part = (slice(None), slice(None), slice(None), slice(x0, None))
    whole = error_counts(gt, seg)
    res: dict[str, Any] = {
        "seed": seed,
        "errors_whole": {**whole.__dict__, "broken_links": broken_links(gt, seg)},
        "before": error_counts(gt[part], seg[part]).__dict__,
        "tra_input": tra_score(gt[part], seg[part]),
        "k": {},
    }
    for k in ks:
        wc = WorkingCopy(seg.copy(), original=seg, intensity=raw, spacing_um=SP)
        log = proofread(wc, gt, k=k, tiles=half_tiles(seg.shape, x_split=x_split),
                        rng=np.random.default_rng(seed))
        doc = annotations_document(wc, make_header(wc))
        t0 = time.perf_counter()
        le = Learner(spec, min_examples=5, seed=seed)
        _, rep = le.train_from_annotations(doc, seg, raw)
        train_s = time.perf_counter() - t0
        nn = evaluate("networks", le, gt, seg, raw, x0)
        nn["train_s"] = train_s
        nn["val_acc"] = {n: r["val_acc"] for n, r in rep.rounds.items()}
        t0 = time.perf_counter()
        rf_le = forest_learner(doc, seg, raw, spec, seed)
        rf_train = time.perf_counter() - t0
        rf = evaluate("forest", rf_le, gt, seg, raw, x0)
        rf["train_s"] = rf_train
        res["k"][k] = {"counts": log.counts, "networks": nn, "forest": rf}
        print(f"  seed {seed} K={k}: corrections {log.counts}; networks {nn['errors']}; "
              f"forest {rf['errors']}", file=sys.stderr, flush=True)
    if do_meta:
        res["meta"] = meta_vs_fixed(gt, seg, raw, max(ks), seed, spec, x_split)
    return res


MOTILE_JITTER_UM = 8.0


def run_motile_seed(seed: int, ks: list[int], shape: tuple[int, int, int, int],
                    spec: CropSpec) -> dict[str, Any]:
    """Tracking alone: motile nuclei, exact segmentation linked by the baseline linker."""
    diff = dataclasses.replace(DIFFICULTY["nuclei"], jitter_step_um=MOTILE_JITTER_UM)
    ds = make_sample("nuclei", shape=shape, seed=seed, difficulty=diff)
    gt, raw = ds.labels, ds.raw
    seg = poor_series(gt, raw, SP, seed, p_merge=0.0, p_split=0.0, n_artefacts=0)
    x_split = shape[-1] // 2
    x0 = x_split + MARGIN
    part = (slice(None), slice(None), slice(None), slice(x0, None))
    res: dict[str, Any] = {"seed": seed, "broken_whole": broken_links(gt, seg),
                           "broken_before": broken_links(gt[part], seg[part]),
                           "tra_input": tra_score(gt[part], seg[part]), "k": {}}
    # the method's linker with no network (its overlap/distance prior alone, 15 µm reach)
    prior = seg.copy()
    pr = link_series(prior, raw, SP)
    res["prior"] = {"tra": tra_score(gt[part], prior[part], pr.parents),
                    "broken": broken_links(gt[part], prior[part])}
    for k in ks:
        wc = WorkingCopy(seg.copy(), original=seg, intensity=raw, spacing_um=SP)
        log = proofread(wc, gt, k=k, tiles=half_tiles(seg.shape, x_split=x_split),
                        rng=np.random.default_rng(seed))
        doc = annotations_document(wc, make_header(wc))
        out: dict[str, Any] = {"counts": log.counts}
        for method in ("networks", "forest"):
            t0 = time.perf_counter()
            if method == "networks":
                le = Learner(spec, min_examples=5, seed=seed)
                le.train_from_annotations(doc, seg, raw)
            else:
                le = forest_learner(doc, seg, raw, spec, seed)
            wc2 = WorkingCopy(seg.copy(), original=seg, intensity=raw, spacing_um=SP)
            box = [0, seg.shape[1], 0, seg.shape[2], x0, seg.shape[3]]
            rep = le.apply(wc2, box=box, relink="track" in le.models)
            out[method] = {"tra": tra_score(gt[part], wc2.labels[part], rep.parents),
                           "broken": broken_links(gt[part], wc2.labels[part]),
                           "seconds": time.perf_counter() - t0,
                           "trained": "track" in le.models}
        res["k"][k] = out
        print(f"  motile seed {seed} K={k}: {log.counts['track']} temporal merges; "
              f"TRA input {res['tra_input']:.4f}, networks {out['networks']['tra']:.4f}, "
              f"forest {out['forest']['tra']:.4f}", file=sys.stderr, flush=True)
    return res


def motile_table(results: list[dict[str, Any]], ks: list[int]) -> str:
    rows = ["| K | method | TRA | broken links left | train + apply s |",
            "|---|---|---|---|---|",
            f"| – | baseline linker (input) | "
            f"{_ms([r['tra_input'] for r in results], '{:.4f}')} | "
            f"{_ms([r['broken_before'] for r in results])} | – |",
            f"| – | method's linker, no network (prior only) | "
            f"{_ms([r['prior']['tra'] for r in results], '{:.4f}')} | "
            f"{_ms([r['prior']['broken'] for r in results])} | – |"]
    for k in ks:
        for m in ("networks", "forest"):
            e = [r["k"][k][m] for r in results]
            rows.append(f"| {k} | {m} | {_ms([x['tra'] for x in e], '{:.4f}')} | "
                        f"{_ms([x['broken'] for x in e])} | "
                        f"{_ms([x['seconds'] for x in e])} |")
    return "\n".join(rows)


def _ms(vals: list[float], fmt: str = "{:.1f}") -> str:
    a = np.asarray(vals, dtype=float)
    return f"{fmt.format(a.mean())} ± {fmt.format(a.std())}"


def table(results: list[dict[str, Any]], ks: list[int]) -> str:
    rows = ["| K | method | over-split | under-split | VI split | VI merge | artefact P / R "
            "| TRA (own linker) | TRA (baseline linker) | train + apply s |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    b = [r["before"] for r in results]
    rows.append("| – | poor segmentation (input) | "
                f"{_ms([x['over_split'] for x in b])} | {_ms([x['under_split'] for x in b])} | "
                f"{_ms([x['vi_split'] for x in b], '{:.3f}')} | "
                f"{_ms([x['vi_merge'] for x in b], '{:.3f}')} | – | – | "
                f"{_ms([r['tra_input'] for r in results], '{:.3f}')} | – |")
    for k in ks:
        for m in ("networks", "forest"):
            e = [r["k"][k][m] for r in results]
            rows.append(
                f"| {k} | {m} | {_ms([x['errors']['over_split'] for x in e])} | "
                f"{_ms([x['errors']['under_split'] for x in e])} | "
                f"{_ms([x['errors']['vi_split'] for x in e], '{:.3f}')} | "
                f"{_ms([x['errors']['vi_merge'] for x in e], '{:.3f}')} | "
                f"{_ms([x['art_precision'] for x in e], '{:.2f}')} / "
                f"{_ms([x['art_recall'] for x in e], '{:.2f}')} | "
                f"{_ms([x['tra_own_linker'] for x in e], '{:.3f}')} | "
                f"{_ms([x['tra_baseline_linker'] for x in e], '{:.3f}')} | "
                f"{_ms([x['train_s'] + x['apply_s'] for x in e])} |")
    out = "\n".join(rows)
    if any("meta" in r for r in results):
        out += "\n\n" + meta_table(results)
    return out


def meta_table(results: list[dict[str, Any]]) -> str:
    metas = [r["meta"] for r in results if "meta" in r]
    out = ""
    if metas:
        out += ("| schedule | total steps over 5 presses of T | steps to the fixed "
                "schedule's final accuracy | mean held-out accuracy after press 1 … 5 |\n"
                "|---|---|---|---|\n")
        for s in ("fixed", "meta"):
            accs = np.array([m[s]["acc"] for m in metas])
            reach = [m[s]["to_target"] for m in metas]
            got = [v for v in reach if v is not None]
            rtxt = (_ms(got, "{:.0f}") if got else "–") + (
                f" (reached in {len(got)}/{len(reach)} seeds)")
            out += (f"| {s} | {_ms([m[s]['steps'] for m in metas], '{:.0f}')} | {rtxt} | "
                    + " / ".join(f"{a:.2f}" for a in accs.mean(0)) + " |\n")
        diff = [m["meta"]["acc"][-1] - m["fixed"]["acc"][-1] for m in metas]
        out += ("\nheld-out accuracy after the fifth press, meta - fixed, per seed: "
                + ", ".join(f"{d:+.3f}" for d in diff) + "\n")
    return out


def timing(spec: CropSpec) -> dict[str, float]:
    """T-to-applied on a 64 x 512 x 512 x 20 tile: examples + incremental training round +
    inference and application on the whole tile."""
    shape = (20, 64, 512, 512)
    t0 = time.perf_counter()
    ds = make_sample("nuclei", shape=shape, seed=500)
    seg = poor_series(ds.labels, ds.raw, SP, 500, p_split=0.15, n_artefacts=16)
    prep = time.perf_counter() - t0
    wc = WorkingCopy(seg.copy(), original=seg, intensity=ds.raw, spacing_um=SP)
    proofread(wc, ds.labels, k=10, tiles=half_tiles(seg.shape, x_split=256, tile_yx=128),
              rng=np.random.default_rng(0))
    doc = annotations_document(wc, make_header(wc))
    le = Learner(spec, min_examples=5, seed=0)
    le.train_from_annotations(doc, seg, ds.raw)  # the first press (not timed)
    wc2 = WorkingCopy(seg.copy(), original=seg, intensity=ds.raw, spacing_um=SP)
    t0 = time.perf_counter()
    _, rep = le.train_from_annotations(doc, seg, ds.raw)  # a later press: incremental
    t_train = time.perf_counter() - t0
    ar = le.apply(wc2)
    total = time.perf_counter() - t0
    return {"prepare_s": prep, "train_s": t_train, "examples_s": t_train - rep.seconds,
            "training_s": rep.seconds, "apply_s": ar.seconds, "T_to_applied_s": total,
            "steps": sum(r["steps"] for r in rep.rounds.values()),
            **{f"apply_{k}_s": v for k, v in ar.phases.items()}, "applied": ar.summary()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[101, 102, 103, 104, 105])
    ap.add_argument("--k", type=int, nargs="+", default=[5, 10, 20])
    ap.add_argument("--shape", type=int, nargs=4, default=[6, 24, 192, 384])
    ap.add_argument("--quick", action="store_true", help="one seed, K = 5, small data")
    ap.add_argument("--no-meta", action="store_true")
    ap.add_argument("--timing", action="store_true", help="only the 64x512x512x20 timing")
    ap.add_argument("--motile-only", action="store_true",
                    help="only the tracking table on motile nuclei")
    ap.add_argument("--meta-only", action="store_true",
                    help="only the meta network vs fixed schedule table")
    ap.add_argument("--json", type=Path, help="write the raw results here")
    args = ap.parse_args(argv)
    spec = CropSpec((8, 16, 16), (1, 2, 2))
    if args.timing:
        print(json.dumps(timing(spec), indent=1))
        return 0
    if args.quick:
        args.seeds, args.k, args.shape = args.seeds[:1], [5], [4, 16, 128, 256]
    results = []
    t0 = time.perf_counter()
    if args.meta_only:
        metas = [{"meta": meta_only_seed(s, max(args.k), tuple(args.shape), spec)}
                 for s in args.seeds]
        print(f"meta network vs fixed schedule, seeds {args.seeds}; "
              f"{time.perf_counter() - t0:.0f} s\n")
        print(meta_table(metas))
        if args.json:
            args.json.write_text(json.dumps(metas, indent=1, default=float))
        return 0
    if not args.motile_only:
        for s in args.seeds:
            results.append(run_seed(s, args.k, tuple(args.shape), spec, not args.no_meta))
        w = results[0]["errors_whole"]
        print(f"learning benchmark: nuclei {tuple(args.shape)} (T, Z, Y, X), seeds "
              f"{args.seeds}; errors in the whole poor segmentation of seed {args.seeds[0]}: "
              f"{w['over_split']} over-split, {w['under_split']} merged, {w['artefacts']} "
              f"artefacts, {w['broken_links']} broken links; "
              f"{time.perf_counter() - t0:.0f} s\n")
        print(table(results, args.k))
    t1 = time.perf_counter()
    motile = [run_motile_seed(s, args.k, tuple(args.shape), spec) for s in args.seeds]
    print(f"\ntracking on motile nuclei (up to {MOTILE_JITTER_UM:g} µm between frames, exact "
          f"segmentation, broken links of the baseline linker in the whole series: "
          f"{', '.join(str(m['broken_whole']) for m in motile)}); "
          f"{time.perf_counter() - t1:.0f} s\n")
    print(motile_table(motile, args.k))
    if args.json:
        args.json.write_text(json.dumps({"main": results, "motile": motile}, indent=1,
                                        default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
