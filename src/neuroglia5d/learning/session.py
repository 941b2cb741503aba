"""Press T: train the networks on the corrections, then apply them as machine operations.

A :class:`Learner` holds the four networks, the split boundary network, the meta
controller and their histories. :meth:`Learner.train` trains, in the fixed order
artefact, merge, split, tracking, every network whose category has at least
``min_examples`` user corrections (the others are deferred with a message saying how many
more are needed), incrementally from the current weights. :meth:`Learner.apply` runs
inference on every label, adjacent pair and link of a region (a tile) and applies the
predicted changes to a :class:`~neuroglia5d.annotation.WorkingCopy` as machine operations
(``source="model"`` with the weights id): erase of artefacts (a ``relabel`` to 0), merges
(a ``relabel`` onto the smallest ID), splits along the predicted boundary
(``split(..., boundary=...)``), and relinking of identities (``relabel`` at ``t + 1``).

Weights, training history and the meta controller's state are saved as one ``.pt`` file
(:meth:`Learner.save`), beside the data (``<stem>_learning.pt``) or as a named weight set
in the user's folder (:func:`weight_sets_dir`). The crop size adapts to the memory
available (:func:`auto_crop`) and is stored with the weights.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import edt
import numpy as np
from scipy import ndimage as ndi

from ..errors import InputError
from .datasets import CATEGORIES, Corrections, corrections_from_annotations
from .examples import (
    CHANNELS,
    N_FEATURES,
    CropSpec,
    Frame,
    boundary_input,
    label_inputs,
    pair_inputs,
)
from .meta import Decision, MetaController, fixed_schedule
from .train import BoundaryModel, ObjectClassifier

__all__ = ["ApplyReport", "Learner", "TrainReport", "auto_crop", "weight_sets_dir"]

#: (phase, fraction 0..1, message)
Progress = Callable[[str, float, str], None]


def auto_crop(budget_bytes: int | None = None, n_examples: int = 4096) -> CropSpec:
    """The largest crop of ``(8, 16, 16)``, ``(8, 24, 24)`` or ``(12, 32, 32)`` voxels
    (subsampled 1 x 2 x 2) whose batch of ``n_examples`` crops with 4 channels (float32)
    and the network's activations fits the budget: a quarter of the free GPU memory on a
    GPU, an eighth of the available RAM on a CPU (at least the smallest crop)."""
    if budget_bytes is None:
        try:
            import torch

            if torch.cuda.is_available():
                free, _ = torch.cuda.mem_get_info()
                budget_bytes = free // 4
        except ImportError:
            pass
    if budget_bytes is None:
        import psutil

        budget_bytes = psutil.virtual_memory().available // 8
    choice = (8, 16, 16)
    for size in ((8, 16, 16), (8, 24, 24), (12, 32, 32)):
        need = n_examples * 4 * int(np.prod(size)) * 4 * 6  # inputs + activations
        if need <= budget_bytes:
            choice = size
    return CropSpec(size=choice, step=(1, 2, 2))


def weight_sets_dir() -> Path:
    """Folder of the named weight sets (``$NEUROGLIA5D_WEIGHTS`` or
    ``~/.neuroglia5d/weights``)."""
    return Path(os.environ.get("NEUROGLIA5D_WEIGHTS",
                               Path.home() / ".neuroglia5d" / "weights"))


@dataclass
class TrainReport:
    """What a press of T trained: per network the round records, deferred messages."""

    rounds: dict[str, dict[str, Any]] = field(default_factory=dict)
    deferred: dict[str, str] = field(default_factory=dict)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        """One line per network."""
        lines = []
        for k, r in self.rounds.items():
            lines.append(f"{k}: round {r['round']}, {r['steps']} steps at lr {r['lr']:.2g}, "
                         f"loss {r['loss']:.3f}, held-out accuracy {r['val_acc']:.2f}")
        lines += [f"{k}: {msg}" for k, msg in self.deferred.items()]
        return "\n".join(lines)


@dataclass
class ApplyReport:
    """Machine operations made by :meth:`Learner.apply`."""

    erased: int = 0
    merged: int = 0
    split: int = 0
    relinked: int = 0
    divisions: int = 0
    ops: list[Any] = field(default_factory=list)
    seconds: float = 0.0
    parents: dict[int, int] = field(default_factory=dict)
    erased_labels: dict[int, list[int]] = field(default_factory=dict)
    #: wall seconds per phase: waiting for measurements, network inference, erase and
    #: merge ops, splits, linking
    phases: dict[str, float] = field(default_factory=dict)

    def _tick(self, phase: str, since: float) -> float:
        now = time.perf_counter()
        self.phases[phase] = self.phases.get(phase, 0.0) + now - since
        return now

    def summary(self) -> str:
        """One line."""
        return (f"erased {self.erased} artefacts, merged {self.merged} pairs, split "
                f"{self.split} labels, relinked {self.relinked} labels, {self.divisions} "
                f"divisions ({self.seconds:.1f} s)")


class Learner:
    """The networks, their training state and the meta controller.

    Parameters
    ----------
    spec : CropSpec, optional
        Crop size (:func:`auto_crop` by default).
    min_examples : int
        Minimum number of user corrections of a category before its network trains.
    seed : int
        Seed of the initial weights.
    schedule : {"meta", "fixed"}
        Who sets the learning rate and steps of each round.
    max_steps : int, optional
        Cap on the steps of any round.
    """

    def __init__(self, spec: CropSpec | None = None, *, min_examples: int = 5, seed: int = 0,
                 schedule: str = "meta", max_steps: int | None = None) -> None:
        self.spec = spec or auto_crop()
        self.min_examples = int(min_examples)
        self.seed = int(seed)
        self.schedule = schedule
        self.models: dict[str, ObjectClassifier] = {}
        self.boundary: BoundaryModel | None = None
        self.meta = MetaController()
        if max_steps is not None:
            self.cap_steps(max_steps)
        self.n_seen: dict[str, int] = {}
        self.thresholds = {"artefact": 0.5, "merge": 0.5, "split": 0.5, "track": 0.5}
        self.pos_weight_mode = "balanced"
        self.use_crops = True

    def cap_steps(self, max_steps: int) -> None:
        """Limit every round (meta or fixed schedule) to ``max_steps`` steps."""
        self.meta.max_steps = int(max_steps)
        self.meta.first_steps = min(self.meta.first_steps, int(max_steps))
        self.meta.min_steps = min(self.meta.min_steps, int(max_steps))

    # ------------------------------------------------------------------ identity
    @property
    def weights_id(self) -> str:
        """Short hash of the current weights (recorded with every machine op)."""
        h = hashlib.blake2b(digest_size=6)
        for k in sorted(self.models):
            net = getattr(self.models[k], "net", None)
            if net is None:  # another kind of model (a random-forest baseline)
                import pickle

                h.update(pickle.dumps(self.models[k]))
                continue
            for v in net.state_dict().values():
                h.update(v.detach().cpu().numpy().tobytes())
        if self.boundary is not None:
            for v in self.boundary.net.state_dict().values():
                h.update(v.detach().cpu().numpy().tobytes())
        return h.hexdigest()

    # ------------------------------------------------------------------ training
    def _decide(self, name: str, n: int, round_: int) -> tuple[Decision, float, bool]:
        prev = self.n_seen.get(name, 0)
        new_frac = 1.0 if prev == 0 else max(0.0, (n - prev) / max(n, 1))
        warm = name in self.models or (name == "split_boundary" and self.boundary is not None)
        if self.schedule == "fixed":
            return fixed_schedule(name, round_, steps=self.meta.first_steps), new_frac, warm
        return self.meta.decide(name, n_examples=n, new_fraction=new_frac, warm=warm), \
            new_frac, warm

    def train(self, corr: Corrections, *, progress: Progress | None = None,
              cancel: Any = None) -> TrainReport:
        """Train, in order, every network with enough corrections (incrementally)."""
        t0 = time.perf_counter()
        rep = TrainReport()
        todo = []
        for name in CATEGORIES:
            have = corr.counts.get(name, 0)
            ex = corr.examples(name)
            if have < self.min_examples or ex is None or len(np.unique(ex.y)) < 2:
                need = max(self.min_examples - have, 1 if ex is None or
                           len(np.unique(ex.y)) < 2 else 0)
                rep.deferred[name] = (f"deferred: {have} corrections, {need} more needed "
                                      f"(minimum {self.min_examples})" if need else
                                      "deferred: examples of one class only")
                continue
            todo.append((name, ex))
        if "split" in {n for n, _ in todo} and corr.boundary:
            todo.append(("split_boundary", corr.boundary))
        for k, (name, ex) in enumerate(todo):
            if cancel is not None and cancel.is_set():
                break
            n = len(ex)
            round_ = len(self.models[name].history) if name in self.models else (
                len(self.boundary.history) if name == "split_boundary" and self.boundary
                else 0)
            dec, new_frac, warm = self._decide(name, n, round_)
            rep.decisions.append(dec.to_json())

            def prog(s: int, total: int, loss: float, k: int = k, name: str = name) -> None:
                if progress is not None:
                    progress("train", (k + s / total) / len(todo),
                             f"{name}: step {s}/{total}, loss {loss:.3f}")
                if cancel is not None and cancel.is_set():
                    raise KeyboardInterrupt

            acc_before = self.meta.last.get(name, {}).get("val_acc")
            try:
                if name == "split_boundary":
                    if self.boundary is None:
                        self.boundary = BoundaryModel(self.seed)
                    fit = self.boundary.fit_round
                else:
                    if name not in self.models:
                        self.models[name] = ObjectClassifier(
                            name, N_FEATURES[name], CHANNELS[name] if self.use_crops else 0,
                            self.spec.size, self.seed)
                    self.models[name].pos_weight_mode = self.pos_weight_mode
                    fit = self.models[name].fit_round
                rec = fit(ex, dec, progress=prog)
                if self.schedule != "fixed":
                    self.meta.observe(name, dec, rec["_losses_full"], rec["val_acc"],
                                      n_examples=n, new_fraction=new_frac, warm=warm)
                    extra = None if acc_before is None else self.meta.follow_up(
                        name, dec, float(acc_before), float(rec["val_acc"]),
                        int(rec.get("n_val", 0)))
                    if extra is not None:
                        rep.decisions.append(extra.to_json())
                        first = rec["steps"]
                        rec = fit(ex, extra, progress=prog)
                        self.meta.observe(name, extra, rec["_losses_full"], rec["val_acc"],
                                          n_examples=n, new_fraction=new_frac, warm=True)
                        rec["steps"] = first + rec["steps"]  # the press's steps in all
            except KeyboardInterrupt:
                break
            self.n_seen[name] = n
            if name in self.thresholds and name != "track":  # chosen on held-out examples
                self.thresholds[name] = float(getattr(self.models[name], "threshold", 0.5))
            rep.rounds[name] = {k_: v for k_, v in rec.items() if k_ != "_losses_full"}
        rep.seconds = time.perf_counter() - t0
        return rep

    def train_from_annotations(self, doc: dict[str, Any], labels: np.ndarray, intensity: Any,
                               **kw: Any) -> tuple[Corrections, TrainReport]:
        """Build the examples from an annotations document and train."""
        corr = corrections_from_annotations(doc, labels, intensity, spec=self.spec)
        return corr, self.train(corr, **kw)

    # ------------------------------------------------------------------ inference
    def _in_box(self, fr: Frame, box: Sequence[int] | None) -> np.ndarray:
        if box is None:
            return np.ones(len(fr.ff.ids), bool)
        c = fr.ff.centroid_um / np.asarray(fr.spacing)
        lo = np.array([box[0], box[2], box[4]])
        hi = np.array([box[1], box[3], box[5]])
        return np.all((c >= lo) & (c < hi), axis=1)

    def apply(self, wc: Any, *, t_range: tuple[int, int] | None = None,
              box: Sequence[int] | None = None, progress: Progress | None = None,
              relink: bool = True, divisions: bool = False) -> ApplyReport:
        """Run every trained network on the labels of ``box`` (whole frames by default)
        at timepoints ``t_range`` (inclusive; all by default) and apply the predicted
        changes to the working copy ``wc`` as machine operations; ``divisions``: the cells
        divide, the linker may propose divisions (one-to-one links only otherwise)."""
        t_start = time.perf_counter()
        rep = ApplyReport()
        wid = self.weights_id
        n_t = wc.labels.shape[0]
        ta, tb = t_range if t_range is not None else (0, n_t - 1)
        inten = wc.intensity
        frames: dict[int, Frame] = {}

        def measure(t: int) -> Frame:
            # a view of the working copy (no copy): its networks decide before any op at t
            # changes it, a split reads only its own label's voxels, and the linker then
            # sees the labels as the ops left them
            it = None if inten is None else np.asarray(inten[t])
            return Frame(wc.labels[t], it, wc.spacing_um, copy=False)

        # timepoint t + 1 is measured on a second thread while t is decided and changed
        # (ops at t never touch t + 1; numpy releases the GIL in the heavy parts)
        from concurrent.futures import ThreadPoolExecutor

        # (both pools end with the loop, also on an error)
        with ThreadPoolExecutor(1) as pool, ThreadPoolExecutor(2) as planners:
            nxt = pool.submit(measure, ta)
            for t in range(ta, tb + 1):
                if progress is not None:
                    progress("apply", (t - ta) / max(tb - ta + 1, 1), f"timepoint {t}")
                # one measurement per timepoint: every network decides on the same state
                tick = time.perf_counter()
                fr = nxt.result()
                if t < tb:
                    nxt = pool.submit(measure, t + 1)
                frames[t] = fr
                tick = rep._tick("measure", tick)
                if not len(fr.ff.ids):
                    continue
                inside = fr.ff.ids[self._in_box(fr, box)]
                gone: dict[int, int] = {}
                lx = lc = None
                if "artefact" in self.models or "split" in self.models:  # one set of crops
                    lx, lc = label_inputs(fr, inside.tolist(), self.spec)
                if "artefact" in self.models:
                    x, c = lx, lc
                    p = self.models["artefact"].predict_proba(x, c)
                    gone = {int(v): 0 for v, pv in zip(inside, p, strict=True)
                            if pv >= self.thresholds["artefact"]}
                mapping: dict[int, int] = {}
                if "merge" in self.models and len(fr.ff.pairs):
                    ins = set(inside.tolist())
                    pairs = [(int(a), int(b)) for a, b in fr.ff.pairs
                             if (a in ins or b in ins) and a not in gone and b not in gone]
                    if pairs:
                        x, c, _ = pair_inputs(fr, pairs, self.spec)
                        p = self.models["merge"].predict_proba(x, c)
                        mapping = _union_find([pr for pr, pv in zip(pairs, p, strict=True)
                                               if pv >= self.thresholds["merge"]])
                split_ids: list[int] = []
                if "split" in self.models:
                    merged = set(mapping) | set(mapping.values())
                    keep = np.array([int(v) not in gone and int(v) not in merged for v in inside],
                                    bool)
                    cand = [int(v) for v in inside[keep]]
                    if cand and lx is not None and lc is not None:
                        p = self.models["split"].predict_proba(lx[keep], lc[keep])
                        split_ids = [v for v, pv in zip(cand, p, strict=True)
                                     if pv >= self.thresholds["split"]]
                tick = rep._tick("infer", tick)
                changed = False
                split_ops: list[Any] = []
                if gone:
                    op = wc.relabel(t, gone, source="model", weights_id=wid)
                    if op is not None:
                        rep.ops.append(op)
                        rep.erased += len(gone)
                        rep.erased_labels[t] = sorted(gone)
                        changed = True
                if mapping:
                    op = wc.relabel(t, mapping, source="model", weights_id=wid)
                    if op is not None:
                        rep.ops.append(op)
                        rep.merged += len(mapping)
                        changed = True
                tick = rep._tick("erase_merge", tick)
                # these labels were neither erased nor merged: fr holds them; their plans run
                # on two threads, the ops are applied here in order
                plans = planners.map(self._split_plan, [fr] * len(split_ids), split_ids,
                                     [wc.bbox(t, v) for v in split_ids])
                for plan in plans:
                    op = self._split_apply(wc, t, plan, wid)
                    if op is not None:
                        rep.ops.append(op)
                        rep.split += 1
                        split_ops.append(op)
                        changed = True
                if changed:  # the state the linker sees, measured again only where it changed
                    frames[t] = _frame_after(fr, wc.labels[t], gone, mapping, split_ops)
                rep._tick("split", tick)
        tick = time.perf_counter()
        if relink and "track" in self.models and tb > ta:
            from .tracking import link_series

            def do(t: int, mapping: dict[int, int]) -> None:
                op = wc.relabel(t, mapping, source="model", weights_id=wid)
                if op is not None:
                    rep.ops.append(op)
                    rep.relinked += len(mapping)

            res = link_series(wc.labels, inten, wc.spacing_um, model=self.models["track"],
                              spec=self.spec, apply=do, t_range=(ta, tb), frames=frames,
                              divisions=divisions)
            rep.divisions = res.n_divisions
            rep.parents = res.parents
            rep._tick("link", tick)
        if progress is not None:
            progress("apply", 1.0, "done")
        rep.seconds = time.perf_counter() - t_start
        return rep

    def _split_one(self, wc: Any, fr: Frame, t: int, label: int, wid: str) -> Any:
        """Split ``label`` along the predicted boundary (the mean of the boundary
        network's map and the distance-transform shape prior); seeds are the two largest
        parts of the label away from it (without a boundary network the shape prior alone
        gives the seeds and the watershed runs on the working copy's intensity +
        distance). None when no two parts are found."""
        return self._split_apply(wc, t, self._split_plan(fr, label, wc.bbox(t, label)), wid)

    def _split_plan(self, fr: Frame, label: int, bb: Sequence[int] | None
                    ) -> tuple[Sequence[int], np.ndarray, list[np.ndarray]] | None:
        """The boundary map and the two seed regions of a split of ``label`` (box ``bb``)
        (reads only the label's own voxels, so plans of one frame can run side by side
        while the splits before them are applied); None when no two parts are found."""
        if bb is None:
            return None
        box = tuple(slice(bb[2 * i], bb[2 * i + 1]) for i in range(3))
        inp = boundary_input(fr, label, box)
        mask = inp[1] > 0
        # the shape prior: low deep inside the label, high at its necks and rim
        dist = edt.edt(mask, anisotropy=fr.spacing, black_border=False)
        prob = (1.0 - dist / max(float(dist.max()), 1e-6)).astype(np.float32)
        if self.boundary is not None:  # the learned boundary, with the shape prior
            prob = 0.5 * self.boundary.predict(inp) + 0.5 * prob
        for thr in (0.5, 0.3, 0.15):
            core, n = ndi.label(mask & (prob < thr), structure=_FACES)
            if n < 2:
                continue
            sizes = np.bincount(core.ravel())[1:]
            order = np.argsort(-sizes)
            if sizes[order[1]] < max(0.05 * mask.sum(), 5):
                continue
            return bb, prob, [_lattice(np.argwhere(core == order[k] + 1)) for k in range(2)]
        return None

    def _split_apply(self, wc: Any, t: int,
                     plan: tuple[Sequence[int], np.ndarray, list[np.ndarray]] | None,
                     wid: str) -> Any:
        """Record the split of a plan as a machine operation (None without a plan)."""
        if plan is None:
            return None
        bb, prob, seeds = plan
        origin = np.array([bb[0], bb[2], bb[4]])
        strokes = [np.column_stack([np.full(len(s), t), s + origin]) for s in seeds]
        try:
            return wc.split(t, strokes, source="model", weights_id=wid,
                            boundary=None if self.boundary is None else prob.astype(np.float32))
        except Exception:  # a seed fell outside the label after an earlier change
            return None

    # ------------------------------------------------------------------ persistence
    def state(self) -> dict[str, Any]:
        """Everything that :meth:`save` writes."""
        return {"format": "neuroglia5d-learning", "version": 2,
                "crop": {"size": list(self.spec.size), "step": list(self.spec.step)},
                "min_examples": self.min_examples, "seed": self.seed,
                "schedule": self.schedule, "thresholds": self.thresholds,
                "n_seen": self.n_seen,
                "models": {k: m.state() for k, m in self.models.items()},
                "boundary": None if self.boundary is None else self.boundary.state(),
                "meta": self.meta.to_json()}

    def save(self, path: str | Path) -> Path:
        """Write weights, histories and the meta state (``torch.save``), atomically; a
        ``.json`` beside it carries the histories and meta log in readable form."""
        import torch

        from ..io.atomic import atomic_output, atomic_write_text

        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        st = self.state()
        with atomic_output(p) as tmp:
            torch.save(st, tmp)
        side = {"weights_id": self.weights_id, "crop": st["crop"],
                "history": {k: m.history for k, m in self.models.items()},
                "boundary_history": None if self.boundary is None else self.boundary.history,
                "meta_log": self.meta.log}
        atomic_write_text(p.with_suffix(".json"), json.dumps(side, indent=1) + "\n")
        return p

    @classmethod
    def load(cls, path: str | Path) -> Learner:
        """Read a file written by :meth:`save`."""
        import torch

        p = Path(path)
        if not p.is_file():
            raise InputError(f"{p}: no such weights file")
        try:
            st = torch.load(p, map_location="cpu", weights_only=False)
        except Exception as e:
            raise InputError(f"{p}: not a neuroglia5d weights file ({e})") from None
        if not isinstance(st, dict) or st.get("format") != "neuroglia5d-learning":
            raise InputError(f"{p}: not a neuroglia5d weights file")
        le = cls(CropSpec(size=tuple(st["crop"]["size"]), step=tuple(st["crop"]["step"])),
                 min_examples=st["min_examples"], seed=st["seed"], schedule=st["schedule"])
        le.thresholds = dict(st["thresholds"])
        le.n_seen = dict(st["n_seen"])
        le.models = {k: ObjectClassifier.from_state(v) for k, v in st["models"].items()}
        le.boundary = None if st["boundary"] is None else BoundaryModel.from_state(
            st["boundary"])
        le.meta = MetaController.from_json(st["meta"])
        return le

    def save_named(self, name: str) -> Path:
        """Save as a named weight set (e.g. ``"sparse microglia"``)."""
        safe = "".join(ch if ch.isalnum() or ch in "-_ " else "_" for ch in name).strip()
        if not safe:
            raise InputError(f"weight set name {name!r}: empty")
        return self.save(weight_sets_dir() / f"{safe}.pt")

    @classmethod
    def load_named(cls, name: str) -> Learner:
        """Load a named weight set."""
        return cls.load(weight_sets_dir() / f"{name}.pt")

    @staticmethod
    def named_sets() -> list[str]:
        """Names of the saved weight sets."""
        d = weight_sets_dir()
        return sorted(p.stem for p in d.glob("*.pt")) if d.is_dir() else []


def _frame_after(fr: Frame, labels_now: np.ndarray, gone: dict[int, int],
                 merged: dict[int, int], split_ops: Sequence[Any]) -> Frame:
    """The frame after the erasures ``gone``, the merges ``merged`` ({label: root}) and
    the splits ``split_ops``, with the measurements linking needs (IDs, voxel counts,
    centroids, boxes, mean and maximum intensity): erased rows dropped, merged rows
    combined, split labels measured again on their boxes (no pass over the frame)."""
    import copy

    from .features import FrameFeatures, frame_features

    ff = fr.ff
    sp = np.asarray(fr.spacing)
    rows: dict[int, list[Any]] = {}
    for i, v in enumerate(ff.ids.tolist()):
        if v in gone:
            continue
        r = merged.get(v, v)
        vol = float(ff.volume_vox[i])
        cur = rows.get(r)
        row = [vol, ff.centroid_um[i] * vol, ff.bbox[i].copy(), ff.mean_int[i] * vol,
               float(ff.max_int[i])]
        if cur is None:
            rows[r] = row
        else:
            cur[0] += row[0]
            cur[1] = cur[1] + row[1]
            cur[2][::2] = np.minimum(cur[2][::2], row[2][::2])
            cur[2][1::2] = np.maximum(cur[2][1::2], row[2][1::2])
            cur[3] += row[3]
            cur[4] = max(cur[4], row[4])
    for op in split_ops:
        box = op.mask["box"]
        sl = tuple(slice(box[2 * i], box[2 * i + 1]) for i in range(3))
        o = np.array([box[0], box[2], box[4]])
        loc = frame_features(labels_now[sl], None, fr.spacing, normalised=fr.inten[sl],
                             links_only=True)
        for v in [int(op.labels[0]), *[int(c) for c in op.created]]:
            rows.pop(v, None)
            if v not in loc.index:
                continue
            i = loc.row(v)
            vol = float(loc.volume_vox[i])
            bb = loc.bbox[i] + np.repeat(o, 2)
            rows[v] = [vol, (loc.centroid_um[i] + o * sp) * vol, bb, loc.mean_int[i] * vol,
                       float(loc.max_int[i])]
    ids = np.array(sorted(rows), np.int64)
    vol = np.array([rows[v][0] for v in ids], np.float64)
    safe = np.maximum(vol, 1)[:, None]
    out = FrameFeatures(
        ids=ids, volume_vox=vol.astype(np.int64),
        centroid_um=np.array([rows[v][1] for v in ids]).reshape(-1, 3) / safe,
        bbox=np.array([rows[v][2] for v in ids], np.int64).reshape(-1, 6),
        mean_int=np.array([rows[v][3] for v in ids]) / safe[:, 0],
        max_int=np.array([rows[v][4] for v in ids], np.float64),
        label_x=np.zeros((len(ids), 0), np.float32), pairs=np.zeros((0, 2), np.int64),
        pair_x=np.zeros((0, ff.pair_x.shape[1]), np.float32), spacing_um=ff.spacing_um)
    out.index = {int(v): i for i, v in enumerate(ids)}
    new = copy.copy(fr)
    new.labels = labels_now  # the working copy's array, as the linker must see it
    new.ff = out
    return new


_FACES = ndi.generate_binary_structure(3, 1)


def _lattice(vox: np.ndarray) -> np.ndarray:
    """The voxels (N, 3) of a seed region on the even (y, x) lattice (all of them when
    none is): the watershed floods the region from them all the same, and the recorded
    op stays a quarter of the size."""
    keep = (vox[:, 1] % 2 == 0) & (vox[:, 2] % 2 == 0)
    return vox[keep] if keep.any() else vox


def _union_find(pairs: Sequence[tuple[int, int]]) -> dict[int, int]:
    """``{label: smallest label of its group}`` for labels joined by ``pairs``."""
    parent: dict[int, int] = {}

    def find(a: int) -> int:
        while parent.get(a, a) != a:
            a = parent[a]
        return a

    for a, b in pairs:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return {a: find(a) for a in list(parent) if find(a) != a}


def beside_data(stem_path: str | Path) -> Path:
    """``<stem>_learning.pt`` beside the data (``stem_path`` is the data's stem path)."""
    p = Path(stem_path)
    return p.with_name(p.name + "_learning.pt")
