"""The meta network: sets the learning rate and the number of steps of each training round.

It watches every round of every network (loss curve, held-out accuracy) and learns, by
ridge regression on what it has seen, how many optimiser steps a round needs before the
training loss stops improving (the *plateau step*), as a function of the round's context:
which network it is (a per-network offset), the number of examples, the fraction of them
that are new since the last round, whether
the network starts from saved weights, and the last held-out accuracy. The next round gets
``1.5 x`` the predicted plateau step (within ``[min_steps, max_steps]``); the learning rate
is halved when the last loss curve oscillated and raised by half when it was still falling
steadily at the end, and stays within a factor 4 of the default. When a round leaves the
held-out accuracy lower than the network's last round by more than the noise of its
held-out examples (new corrections not yet learnt), it adds a round of ``first_steps``
at the default rate (:meth:`MetaController.follow_up`).
Every decision is appended to :attr:`MetaController.log` with its reason, and the whole
state (observations, coefficients, log) round-trips through JSON, so it is saved beside
the weights and continues across sessions.

A fixed schedule (:func:`fixed_schedule`) is the baseline the benchmark compares with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["NETWORKS", "Decision", "MetaController", "fixed_schedule", "plateau_step"]

#: networks the controller tells apart (a per-network offset of the regression)
NETWORKS: tuple[str, ...] = ("artefact", "merge", "split", "track", "split_boundary")


@dataclass
class Decision:
    """Learning rate and steps chosen for one round of one network, and why."""

    network: str
    round: int
    lr: float
    steps: int
    reason: str

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"network": self.network, "round": self.round, "lr": self.lr,
                "steps": self.steps, "reason": self.reason}


def plateau_step(losses: np.ndarray, frac: float = 0.05) -> int:
    """First step at which the smoothed loss is within ``frac`` of its total drop from the
    end (the number of steps that were actually useful)."""
    x = np.asarray(losses, dtype=np.float64)
    if x.size < 4:
        return int(x.size)
    k = max(1, x.size // 20)
    sm = np.convolve(x, np.ones(k) / k, mode="valid")
    drop = sm[0] - sm.min()
    if drop <= 1e-9:
        return 1
    ok = np.flatnonzero(sm <= sm.min() + frac * drop)
    return int(ok[0] + k)


def _oscillates(losses: np.ndarray) -> bool:
    """The loss curve rose again at the end: the mean of its last fifth is 30 % above the
    lowest mean of any fifth of it (windows of a fifth of the round, at least 5 steps, so
    the noise of single minibatches does not count as oscillation)."""
    x = np.asarray(losses, dtype=np.float64)
    if x.size < 20:
        return False
    k = max(5, x.size // 5)
    sm = np.convolve(x, np.ones(k) / k, mode="valid")
    return bool(sm[-1] > 1.3 * sm.min())


@dataclass
class MetaController:
    """Chooses ``(lr, steps)`` per round and network, learning from the rounds it sees.

    Parameters
    ----------
    default_lr : float
        Learning rate of a network's first round (Adam).
    first_steps : int
        Steps of a network's first round, before anything was learnt.
    min_steps, max_steps : int
        Range of steps it may choose.
    ridge : float
        Ridge penalty of the regression.
    """

    default_lr: float = 3e-3
    first_steps: int = 200
    min_steps: int = 30
    max_steps: int = 1500
    ridge: float = 1.0
    observations: list[dict[str, float]] = field(default_factory=list)
    log: list[dict[str, Any]] = field(default_factory=list)
    last: dict[str, dict[str, Any]] = field(default_factory=dict)

    @staticmethod
    def _context(n_examples: int, new_fraction: float, warm: bool, last_acc: float,
                 network: str = "") -> np.ndarray:
        onehot = [float(network == n) for n in NETWORKS]
        return np.array([1.0, math.log1p(n_examples), new_fraction, float(warm), last_acc,
                         *onehot])

    def _predict_log_plateau(self, ctx: np.ndarray) -> float | None:
        if len(self.observations) < 2:
            return None
        if len(self.observations[0]["ctx"]) != len(ctx):  # older state: start afresh
            return None
        x = np.array([o["ctx"] for o in self.observations], dtype=np.float64)
        y = np.array([math.log(max(o["plateau"], 1)) for o in self.observations])
        a = x.T @ x + self.ridge * np.eye(x.shape[1])
        a[0, 0] -= self.ridge  # no penalty on the intercept
        coef = np.linalg.solve(a, x.T @ y)
        return float(ctx @ coef)

    def decide(self, network: str, *, n_examples: int, new_fraction: float,
               warm: bool) -> Decision:
        """The next round's learning rate and steps for ``network``."""
        prev = self.last.get(network)
        rnd = 0 if prev is None else int(prev["round"]) + 1
        last_acc = 0.5 if prev is None else float(prev["val_acc"])
        ctx = self._context(n_examples, new_fraction, warm, last_acc, network)
        lr = self.default_lr if prev is None else float(prev["lr"])
        reasons = []
        pred = None if prev is None else self._predict_log_plateau(ctx)
        if prev is None:
            steps = self.first_steps
            reasons.append(f"first round of {network}: {steps} steps")
        elif pred is None:
            steps = int(prev["steps"])
            reasons.append(f"no model yet ({len(self.observations)} rounds seen): "
                           f"{steps} steps")
        else:
            plateau = math.exp(pred)
            steps = round(1.5 * plateau)
            reasons.append(f"predicted plateau at {plateau:.0f} steps "
                           f"(n={n_examples}, new={new_fraction:.2f}, warm={warm})")
        if prev is not None:
            if prev["oscillated"]:
                lr *= 0.5
                reasons.append("last loss oscillated: lr x0.5")
            elif prev["plateau"] >= 0.9 * prev["steps"]:
                lr *= 1.5
                reasons.append("last loss still falling at the end: lr x1.5")
        # within a factor 4 of the default: a rate halved round after round would leave
        # the later rounds too slow to learn the new corrections at all
        lr = float(min(max(lr, self.default_lr / 4), self.default_lr * 4))
        steps = int(min(max(steps, self.min_steps), self.max_steps))
        d = Decision(network, rnd, lr, steps, "; ".join(reasons))
        self.log.append(d.to_json())
        return d

    def follow_up(self, network: str, decision: Decision, acc_before: float,
                  acc_after: float, n_val: int) -> Decision | None:
        """Another round in the same press when the held-out accuracy fell from the
        network's last round by more than its noise on ``n_val`` held-out examples
        (``max(0.02, 0.5 / sqrt(n_val))``: new corrections it has not yet learnt):
        ``first_steps`` steps at the default learning rate; None otherwise."""
        if acc_after >= acc_before - max(0.02, 0.5 / math.sqrt(max(n_val, 1))):
            return None
        d = Decision(network, decision.round + 1, self.default_lr, self.first_steps,
                     f"held-out accuracy fell from {acc_before:.3f} to {acc_after:.3f}: "
                     f"another {self.first_steps} steps at lr {self.default_lr:g}")
        self.log.append(d.to_json())
        return d

    def observe(self, network: str, decision: Decision, losses: np.ndarray, val_acc: float,
                *, n_examples: int, new_fraction: float, warm: bool) -> None:
        """Record the outcome of a round (its loss per step and held-out accuracy)."""
        prev = self.last.get(network)
        last_acc = 0.5 if prev is None else float(prev["val_acc"])
        ps = plateau_step(losses)
        self.observations.append({
            "ctx": self._context(n_examples, new_fraction, warm, last_acc, network).tolist(),
            "plateau": float(ps), "network": network})
        self.last[network] = {"round": decision.round, "lr": decision.lr,
                              "steps": decision.steps, "plateau": ps,
                              "oscillated": _oscillates(losses), "val_acc": float(val_acc)}
        if self.log and self.log[-1].get("network") == network:
            self.log[-1].update(plateau=ps, val_acc=float(val_acc))

    def to_json(self) -> dict[str, Any]:
        """JSON-ready state."""
        return {"default_lr": self.default_lr, "first_steps": self.first_steps,
                "min_steps": self.min_steps, "max_steps": self.max_steps, "ridge": self.ridge,
                "observations": self.observations, "log": self.log, "last": self.last}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> MetaController:
        """Inverse of :meth:`to_json`."""
        return cls(**d)


def fixed_schedule(network: str, round_: int, lr: float = 3e-3, steps: int = 300
               ) -> Decision:
    """The baseline: the same learning rate and steps every round."""
    return Decision(network, round_, lr, steps, "fixed schedule")
