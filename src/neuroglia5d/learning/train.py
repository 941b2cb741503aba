"""Training of the object classifiers and of the split boundary network, with held-out
accuracy per round.

An :class:`ExampleSet` holds feature rows, crops, targets and a stable key per example;
the key decides (by hash) whether the example is held out, so the same examples stay held
out when later rounds add more. Held-out accuracy is the *balanced* accuracy (mean of
the recall of each class), so a network that always answers the majority class scores
0.5.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .meta import Decision
from .networks import device, make_boundary_net, make_classifier, to_tensor

__all__ = ["BoundaryModel", "ExampleSet", "ObjectClassifier", "balanced_accuracy",
           "choose_threshold", "held_out_mask"]

ProgressFn = Callable[[int, int, float], None]


@dataclass
class ExampleSet:
    """Examples of one network: ``x`` (N, F) features, ``c`` (N, C, Z, Y, X) crops, ``y``
    (N,) 0/1 targets, ``keys`` (N,) stable strings (for the held-out split)."""

    x: np.ndarray
    c: np.ndarray
    y: np.ndarray
    keys: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.y)

    @property
    def n_pos(self) -> int:
        """Number of positive examples."""
        return int(np.sum(self.y == 1))

    @classmethod
    def concat(cls, sets: Sequence[ExampleSet]) -> ExampleSet:
        """Concatenate sets with the same feature and crop shapes (empty sets ignored)."""
        sets = [s for s in sets if len(s)]
        if not sets:
            raise ValueError("no examples")
        return cls(np.concatenate([s.x for s in sets]), np.concatenate([s.c for s in sets]),
                   np.concatenate([s.y for s in sets]), [k for s in sets for k in s.keys])


def held_out_mask(keys: Sequence[str], fraction: float = 0.25) -> np.ndarray:
    """True for the examples held out for validation (by a hash of their key)."""
    out = np.zeros(len(keys), bool)
    for i, k in enumerate(keys):
        h = int.from_bytes(hashlib.blake2b(k.encode(), digest_size=4).digest(), "little")
        out[i] = (h % 1000) < fraction * 1000
    return out


def choose_threshold(y: np.ndarray, p: np.ndarray, lo: float = 0.2, hi: float = 0.8,
                     step: float = 0.01) -> float:
    """Decision threshold on held-out predictions: the centre of the run of thresholds
    (between ``lo`` and ``hi``) of the highest balanced accuracy that lies nearest 0.5,
    drawn towards 0.5 by the few examples of the rarer class (weight ``m / (m + 5)`` for
    ``m`` held-out examples of it); 0.5 when the held-out examples lack a class."""
    yb = np.asarray(y).astype(bool)
    pv = np.asarray(p, np.float64)
    if yb.all() or not yb.any():
        return 0.5
    grid = np.round(np.arange(lo, hi + step / 2, step), 6)
    ba = np.array([0.5 * (np.mean(pv[yb] >= t) + np.mean(pv[~yb] < t)) for t in grid])
    best = np.flatnonzero(ba >= ba.max() - 1e-9)
    k = int(best[np.argmin(np.abs(grid[best] - 0.5))])
    a = b = k
    while a - 1 >= 0 and ba[a - 1] >= ba.max() - 1e-9:
        a -= 1
    while b + 1 < len(grid) and ba[b + 1] >= ba.max() - 1e-9:
        b += 1
    m = float(min(yb.sum(), (~yb).sum()))
    return float(0.5 + (0.5 * (grid[a] + grid[b]) - 0.5) * m / (m + 5.0))


def balanced_accuracy(y: np.ndarray, p: np.ndarray) -> float:
    """Mean per-class recall of predictions ``p >= 0.5`` (plain accuracy when one class is
    absent; 0.5 for no examples)."""
    yb = np.asarray(y).astype(bool)
    pred = np.asarray(p) >= 0.5
    if yb.size == 0:
        return 0.5
    if yb.all() or not yb.any():
        return float(np.mean(pred == yb))
    return 0.5 * (float(np.mean(pred[yb])) + float(np.mean(~pred[~yb])))


class ObjectClassifier:
    """A network deciding yes/no on a label, a label pair or a link.

    Parameters
    ----------
    kind : str
        ``artefact``, ``merge``, ``split`` or ``track``.
    n_features : int
        Feature vector length.
    in_channels : int
        Crop channels.
    crop_zyx : sequence of int
        Crop size in voxels (stored with the weights).
    seed : int
        Seed of the initial weights and of the minibatches.
    """

    def __init__(self, kind: str, n_features: int, in_channels: int,
                 crop_zyx: Sequence[int], seed: int = 0,
                 first_stride: Sequence[int] = (2, 2, 2)) -> None:
        import torch

        self.first_stride = tuple(int(v) for v in first_stride)
        self.kind = kind
        self.n_features = n_features
        self.in_channels = in_channels
        self.crop_zyx = tuple(int(v) for v in crop_zyx)
        self.seed = seed
        torch.manual_seed(seed)
        self.dev = device()
        self.net = make_classifier(n_features, in_channels, self.crop_zyx,
                                   first_stride=self.first_stride).to(self.dev)
        self.mean = np.zeros(n_features, np.float32)
        self.std = np.ones(n_features, np.float32)
        self.history: list[dict[str, Any]] = []
        self.n_seen = 0
        self.threshold = 0.5
        #: weight of the positives in the loss: "balanced" (negatives / positives),
        #: "sqrt" (its square root) or "none" (the classes as they come)
        self.pos_weight_mode = "balanced"
        #: standard deviation of the Gaussian jitter added to the standardised features
        self.feature_noise = 0.3

    # ------------------------------------------------------------------ training
    def fit_round(self, data: ExampleSet, decision: Decision, *, batch: int = 48,
                  progress: ProgressFn | None = None, val_fraction: float = 0.25
                  ) -> dict[str, Any]:
        """One training round (``decision.steps`` Adam steps at ``decision.lr``).

        Returns the round's record (also appended to :attr:`history`): losses per step,
        training and held-out balanced accuracy, counts and seconds.
        """
        import torch

        t0 = time.perf_counter()
        val = held_out_mask(data.keys, val_fraction)
        if val.all() or not val.any() or len(np.unique(data.y[~val])) < 2:
            val = np.zeros(len(data), bool)  # too few to hold out: validate on training
        tr = ~val
        if not self.history:  # standardisation from the first round's training data
            self.mean = data.x[tr].mean(0).astype(np.float32)
            self.std = np.maximum(data.x[tr].std(0), 1e-3).astype(np.float32)
        x = to_tensor((data.x - self.mean) / self.std, self.dev)
        c = to_tensor(data.c, self.dev)
        y = to_tensor(data.y, self.dev)
        idx_tr = np.flatnonzero(tr)
        pos = float(np.sum(data.y[tr] == 1))
        neg = float(np.sum(data.y[tr] == 0))
        ratio = neg / max(pos, 1.0)
        pw = torch.tensor({"balanced": ratio, "sqrt": ratio ** 0.5}.get(self.pos_weight_mode,
                                                                          1.0), device=self.dev)
        loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pw)
        opt = torch.optim.Adam(self.net.parameters(), lr=decision.lr, weight_decay=1e-4)
        rng = np.random.default_rng(self.seed + len(self.history))
        losses = np.zeros(decision.steps, np.float32)
        self.net.train()
        for s in range(decision.steps):
            b = rng.choice(idx_tr, size=min(batch, len(idx_tr)), replace=False)
            bt = torch.as_tensor(b, device=self.dev)
            xb = x[bt]
            if self.feature_noise:  # jitter of the standardised features: smoother
                xb = xb + self.feature_noise * torch.randn_like(xb)  # boundaries, less overfit
            cb = c[bt] if self.in_channels else None
            if self.in_channels:  # flips in Y and X: the orientation carries no meaning
                if rng.random() < 0.5:
                    cb = cb.flip(-1)
                if rng.random() < 0.5:
                    cb = cb.flip(-2)
            opt.zero_grad()
            loss = loss_fn(self.net(xb, cb), y[bt])
            loss.backward()
            opt.step()
            losses[s] = float(loss.detach())
            if progress is not None and (s % 10 == 0 or s == decision.steps - 1):
                progress(s + 1, decision.steps, float(losses[s]))
        self.n_seen = len(data)
        p = self.predict_proba(data.x, data.c)
        rec = {
            "round": len(self.history), "lr": decision.lr, "steps": decision.steps,
            "loss": float(np.mean(losses[-max(1, decision.steps // 10):])),
            "losses": losses[:: max(1, decision.steps // 100)].tolist(),
            "train_acc": balanced_accuracy(data.y[tr], p[tr]),
            "val_acc": balanced_accuracy(data.y[val], p[val]) if val.any()
            else balanced_accuracy(data.y, p),
            "n_train": int(tr.sum()), "n_val": int(val.sum()), "n_pos": data.n_pos,
            "seconds": time.perf_counter() - t0, "reason": decision.reason,
        }
        # the decision threshold from the held-out examples (0.5 without any)
        self.threshold = choose_threshold(data.y[val], p[val]) if val.any() else 0.5
        rec["threshold"] = self.threshold
        rec["_losses_full"] = losses
        self.history.append({k: v for k, v in rec.items() if k != "_losses_full"})
        return rec

    # ------------------------------------------------------------------ inference
    def predict_proba(self, x: np.ndarray, c: np.ndarray, batch: int = 512) -> np.ndarray:
        """Probability of the positive class for each row."""
        import torch

        if len(x) == 0:
            return np.zeros(0, np.float32)
        if self.net.training:
            self.net.eval()
        out = []
        with torch.inference_mode():
            for i in range(0, len(x), batch):
                xb = to_tensor((x[i:i + batch] - self.mean) / self.std, self.dev)
                cb = to_tensor(c[i:i + batch], self.dev) if self.in_channels else None
                out.append(torch.sigmoid(self.net(xb, cb)).cpu().numpy())
        return np.concatenate(out)

    # ------------------------------------------------------------------ persistence
    def state(self) -> dict[str, Any]:
        """Everything needed to rebuild the classifier (tensors as numpy)."""
        return {"kind": self.kind, "n_features": self.n_features,
                "in_channels": self.in_channels, "crop_zyx": list(self.crop_zyx),
                "seed": self.seed, "first_stride": list(self.first_stride),
                "mean": self.mean, "std": self.std,
                "history": self.history, "n_seen": self.n_seen, "threshold": self.threshold,
                "weights": {k: v.detach().cpu().numpy() for k, v in
                            self.net.state_dict().items()}}

    @classmethod
    def from_state(cls, st: dict[str, Any]) -> ObjectClassifier:
        """Inverse of :meth:`state`."""
        import torch

        m = cls(st["kind"], int(st["n_features"]), int(st["in_channels"]), st["crop_zyx"],
                int(st["seed"]), st.get("first_stride", (1, 2, 2)))  # older weights
        m.net.load_state_dict({k: torch.as_tensor(np.asarray(v)) for k, v in
                               st["weights"].items()})
        m.net.to(m.dev)
        m.mean = np.asarray(st["mean"], np.float32)
        m.std = np.asarray(st["std"], np.float32)
        m.history = list(st["history"])
        m.n_seen = int(st["n_seen"])
        m.threshold = float(st.get("threshold", 0.5))
        return m


@dataclass
class BoundaryExample:
    """One fused label: ``inp`` (2, Z, Y, X) intensity and mask, ``target`` (Z, Y, X) 0/1
    boundary between the parts the user made, ``key`` stable string."""

    inp: np.ndarray
    target: np.ndarray
    key: str


class BoundaryModel:
    """The split network's boundary predictor (fully convolutional, any crop size).

    It works on the crop averaged over blocks of ``step`` voxels (``(1, 2, 2)``: Y and X
    are finer than Z in light-sheet and confocal stacks, and a quarter of the voxels costs
    a quarter of the time); the boundary map is interpolated back to the crop's voxels.
    """

    def __init__(self, seed: int = 0, step: Sequence[int] = (1, 2, 2), width: int = 8) -> None:
        import torch

        torch.manual_seed(seed)
        self.seed = seed
        self.step = tuple(int(v) for v in step)
        self.width = int(width)
        self.dev = device()
        self.net = make_boundary_net(2, self.width).to(self.dev)
        self.history: list[dict[str, Any]] = []

    def _down(self, x: Any, how: str = "avg") -> Any:
        """(B, C, Z, Y, X) tensor averaged (or max-pooled) over blocks of ``step``."""
        import torch

        if self.step == (1, 1, 1):
            return x
        pool = torch.nn.functional.avg_pool3d if how == "avg" else \
            torch.nn.functional.max_pool3d
        # a crop thinner than a block along an axis (a label one voxel thick) is pooled
        # over what it has there
        k = tuple(min(s, int(n)) for s, n in zip(self.step, x.shape[2:], strict=True))
        return pool(x, k, k, ceil_mode=True)

    def _logits(self, inp: Any) -> Any:
        """Boundary logits (B, Z, Y, X) at the crop's voxels of an input (B, 2, Z, Y, X)."""
        import torch

        out = self.net(self._down(inp))
        if self.step == (1, 1, 1):
            return out
        return torch.nn.functional.interpolate(out[:, None], size=tuple(inp.shape[2:]),
                                               mode="trilinear", align_corners=False)[:, 0]

    def fit_round(self, data: Sequence[BoundaryExample], decision: Decision, *,
                  progress: ProgressFn | None = None) -> dict[str, Any]:
        """Train on whole crops, one per step (voxel-balanced BCE inside the mask)."""
        import torch

        t0 = time.perf_counter()
        val = held_out_mask([d.key for d in data])
        if val.all() or not val.any():
            val = np.zeros(len(data), bool)
        tr = np.flatnonzero(~val)
        opt = torch.optim.Adam(self.net.parameters(), lr=decision.lr)
        rng = np.random.default_rng(self.seed + len(self.history))
        losses = np.zeros(decision.steps, np.float32)
        self.net.train()
        for s in range(decision.steps):
            ex = data[int(rng.choice(tr))]
            inp = self._down(to_tensor(ex.inp[None], self.dev))
            tgt = self._down(to_tensor(ex.target[None, None], self.dev), "max")[:, 0]
            if rng.random() < 0.5:
                inp, tgt = inp.flip(-1), tgt.flip(-1)
            m = inp[:, 1] > 0
            npos = float(tgt[m].sum())
            w = torch.where(tgt > 0, (float(m.sum()) - npos) / max(npos, 1.0), 1.0) * m
            opt.zero_grad()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                self.net(inp), tgt, weight=w, reduction="sum") / max(float(w.sum()), 1.0)
            loss.backward()
            opt.step()
            losses[s] = float(loss.detach())
            if progress is not None and (s % 10 == 0 or s == decision.steps - 1):
                progress(s + 1, decision.steps, float(losses[s]))
        accs = [self._acc(d) for d in (np.array(data, dtype=object)[val] if val.any()
                                       else data)]
        rec = {"round": len(self.history), "lr": decision.lr, "steps": decision.steps,
               "loss": float(np.mean(losses[-max(1, decision.steps // 10):])),
               "losses": losses[:: max(1, decision.steps // 100)].tolist(),
               "val_acc": float(np.mean(accs)) if accs else 0.5,
               "n_train": len(tr), "n_val": int(val.sum()),
               "seconds": time.perf_counter() - t0, "reason": decision.reason,
               "_losses_full": losses}
        self.history.append({k: v for k, v in rec.items() if k != "_losses_full"})
        return rec

    def _acc(self, ex: BoundaryExample) -> float:
        p = self.predict(ex.inp)
        m = ex.inp[1] > 0
        return balanced_accuracy(ex.target[m], p[m])

    def predict(self, inp: np.ndarray) -> np.ndarray:
        """Boundary probability (Z, Y, X) of a (2, Z, Y, X) crop."""
        import torch

        if self.net.training:
            self.net.eval()
        with torch.inference_mode():
            return torch.sigmoid(self._logits(to_tensor(inp[None], self.dev)))[0].cpu().numpy()

    def state(self) -> dict[str, Any]:
        """Weights and history."""
        return {"seed": self.seed, "step": list(self.step), "width": self.width,
                "history": self.history,
                "weights": {k: v.detach().cpu().numpy() for k, v in
                            self.net.state_dict().items()}}

    @classmethod
    def from_state(cls, st: dict[str, Any]) -> BoundaryModel:
        """Inverse of :meth:`state`."""
        import torch

        m = cls(int(st["seed"]), st.get("step", (1, 1, 1)),  # older weights: full
                int(st.get("width", 12)))  # resolution, 12 channels
        m.net.load_state_dict({k: torch.as_tensor(np.asarray(v)) for k, v in
                               st["weights"].items()})
        m.net.to(m.dev)
        m.history = list(st["history"])
        return m
