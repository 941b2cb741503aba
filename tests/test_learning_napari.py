"""The learning panel: T trains in a thread worker, applies machine ops, refreshes, saves
weights beside the data and shows the Tracks layer (napari under Xvfb)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("torch")

from neuroglia5d.annotation import WorkingCopy
from neuroglia5d.learning.simulate import half_tiles, poor_series, proofread
from neuroglia5d.sample_data import make_sample

SP = (1.5, 0.5, 0.5)


def _fake_dock(tmp_path) -> SimpleNamespace:
    ds = make_sample("nuclei", shape=(2, 12, 96, 128), seed=4)
    seg = poor_series(ds.labels, ds.raw, SP, 2, p_split=0.5, n_artefacts=8)
    wc = WorkingCopy(seg.copy(), original=seg, intensity=ds.raw, spacing_um=SP)
    proofread(wc, ds.labels, k=5, tiles=half_tiles(seg.shape, x_split=128, tile_yx=48),
              rng=np.random.default_rng(0))
    refreshed: list = []
    return SimpleNamespace(wc=wc, folder=tmp_path, stem="s", current_t=lambda: 0,
                           _after_op=refreshed.append, refreshed=refreshed, seg=seg)


def test_press_t_trains_applies_and_saves(make_napari_viewer, qtbot, tmp_path,
                                          monkeypatch) -> None:
    from neuroglia5d._napari.learning_panel import LearningPanel

    monkeypatch.setenv("NEUROGLIA5D_WEIGHTS", str(tmp_path / "sets"))
    viewer = make_napari_viewer()
    dock = _fake_dock(tmp_path)
    panel = LearningPanel(viewer, dock=dock)
    panel.learner = None
    panel._ensure_learner().cap_steps(30)
    panel.scope.setCurrentIndex(1)  # all timepoints
    assert not panel.divisions.isChecked()  # nuclei do not divide unless the user says so
    worker = panel.train_and_apply()
    assert worker is not None
    qtbot.waitUntil(lambda: panel.worker is None, timeout=120_000)
    assert panel.last_train is not None and panel.last_train.rounds
    assert panel.last_apply is not None and panel.last_apply.ops
    assert len(dock.refreshed) == len(panel.last_apply.ops)
    assert all(op.source == "model" for op in panel.last_apply.ops)
    assert (tmp_path / "s_learning.pt").exists()
    assert panel.progress.value() == 1000 and panel.history
    if "track" in panel.learner.models:
        assert "tracks (learned)" in viewer.layers
        assert panel.last_apply.divisions == 0 and not panel.last_apply.parents
    # the machine ops are undone like the user's
    n_user = len(dock.wc.history) - len(panel.last_apply.ops)
    while len(dock.wc.history) > n_user:
        dock.wc.undo()
    panel.save_named("dense nuclei")
    assert panel.load_set.findText("dense nuclei") > 0
