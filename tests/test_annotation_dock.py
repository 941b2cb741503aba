"""The annotation dock driven as a user would: napari mouse events on the working layer,
keys through the viewer's key map handler (real Qt under Xvfb)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

napari = pytest.importorskip("napari")
pytest.importorskip("neuroglia5d.annotation")

from napari.utils.interactions import (  # noqa: E402
    mouse_move_callbacks,
    mouse_press_callbacks,
    mouse_release_callbacks,
)

from neuroglia5d._napari.annotation_dock import AnnotationDock  # noqa: E402

PLUGIN = "napari-neuroglia5d"
SPACING = (2.0, 0.5, 0.5)  # anisotropic (z, y, x) µm
SHAPE = (3, 8, 48, 64)  # T, Z, Y, X
OFFSET = (1, 5, 7)  # crop offset in the raw frame (z, y, x): the layers are translated


def make_labels() -> np.ndarray:
    """Known objects (half-open boxes, (z, y, x)):

    * 1 and 2: two touching boxes (x 8-20 | 20-32) at every t -> merge them;
    * 3 / 7 / 8: one object with a different ID at t = 0 / 1 / 2 -> temporal merge;
    * 4: a dumbbell (two boxes joined by a thin bridge) -> split;
    * 5: a small box -> erase.
    """
    lab = np.zeros(SHAPE, np.uint32)
    for t in range(SHAPE[0]):
        lab[t, 2:6, 6:18, 8:20] = 1
        lab[t, 2:6, 6:18, 20:32] = 2
        lab[t, 2:6, 28:40, 4:14] = (3, 7, 8)[t]
        lab[t, 1:7, 26:42, 36:46] = 4
        lab[t, 1:7, 26:42, 54:64] = 4
        lab[t, 3:5, 32:36, 46:54] = 4
        lab[t, 2:5, 8:14, 44:52] = 5
    return lab


def make_intensity(lab: np.ndarray) -> np.ndarray:
    from scipy import ndimage as ndi

    img = np.zeros(lab.shape, np.float32)
    for t in range(lab.shape[0]):
        d = ndi.distance_transform_edt(lab[t] > 0, sampling=SPACING)
        img[t] = 100 + 400 * d
    return img.astype(np.uint16)


def write_series(folder: Path, stem: str = "s") -> Path:
    """``<stem>_labels.ome.tif``, ``<stem>_fused.ome.tif`` and ``<stem>_labelStats.csv``."""
    from neuroglia5d.io.convert import Outputs, write_outputs
    from neuroglia5d.processing.stats import concat_tables, label_stats, table_to_csv

    lab = make_labels()
    img = make_intensity(lab)
    folder.mkdir(parents=True)
    write_outputs(Outputs({"labels": lab}, SPACING, OFFSET, {}, stem),
                  folder / f"{stem}_labels.ome.tif", "tif")
    write_outputs(Outputs({"intensity": img, "labels": lab}, SPACING, OFFSET, {}, stem),
                  folder / f"{stem}_fused.ome.tif", "tif")
    tb = concat_tables([label_stats(lab[t], img[t], SPACING, t=t, offset_zyx=OFFSET)
                        for t in range(SHAPE[0])])
    (folder / f"{stem}_labelStats.csv").write_text(table_to_csv(tb))
    return folder


@pytest.fixture()
def series(tmp_path):
    """``s_labels.ome.tif``, ``s_fused.ome.tif`` and ``s_labelStats.csv`` in a folder."""
    return write_series(tmp_path / "out")


@dataclass
class Ev:
    """A napari mouse event as the canvas delivers it."""

    type: str
    position: tuple[float, ...]
    is_dragging: bool = False
    modifiers: tuple[str, ...] = ()
    button: int = 1
    dims_displayed: tuple[int, ...] = (2, 3)
    view_direction: tuple[float, ...] | None = None
    pos: tuple[int, int] = (0, 0)
    handled: bool = False
    delta: tuple[float, float] = (0.0, 0.0)
    dims_point: list[float] = field(default_factory=list)


def world(layer, t, z, y, x):
    """World coordinates of voxel (t, z, y, x) of the layer's data (tile frame)."""
    return tuple(float(v) for v in layer.data_to_world((t, z, y, x)))


def drag(layer, points, modifiers=(), **kw):
    """Press at the first point, move through the others, release at the last."""
    from napari.utils._proxies import ReadOnlyWrapper

    mouse_press_callbacks(layer, ReadOnlyWrapper(Ev("mouse_press", points[0],
                                                    modifiers=modifiers, **kw)))
    for p in points[1:]:
        mouse_move_callbacks(layer, ReadOnlyWrapper(Ev("mouse_move", p, is_dragging=True,
                                                       modifiers=modifiers, **kw)))
    mouse_release_callbacks(layer, ReadOnlyWrapper(Ev("mouse_release", points[-1],
                                                      modifiers=modifiers, **kw)))


def click(layer, point, modifiers=(), **kw):
    drag(layer, [point], modifiers, **kw)


def press(viewer, key):
    """A key press through the viewer's key map handler (as the canvas dispatches it)."""
    handler = viewer.window._qt_viewer._key_map_handler
    assert handler.press_key(key), key
    handler.release_key(key)


def open_dock(make_napari_viewer, folder, **kw):
    viewer = make_napari_viewer(**kw)
    viewer.open(str(folder / "s_fused.ome.tif"), plugin=PLUGIN)
    lab = next(ly for ly in viewer.layers if ly.__class__.__name__ == "Labels")
    assert tuple(lab.translate)[1:] == tuple(o * s for o, s in zip(OFFSET, SPACING, strict=True))
    viewer.layers.selection.active = lab
    # through the plugin's widget contribution (Plugins > Annotation dock)
    _, dock = viewer.window.add_plugin_dock_widget(PLUGIN, "Annotation dock")
    assert isinstance(dock, AnnotationDock) and dock.layer is lab
    return viewer, lab, dock


def set_t(viewer, t, z=4):
    viewer.dims.current_step = (t, z, *tuple(viewer.dims.current_step[2:]))


def journal(folder):
    path = folder / "s_auto_annotations.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def assert_display_current(layer):
    """What the layer shows (its coloured slice) is what a full refresh would show."""
    shown = np.array(layer._slice.image.view)
    layer.refresh()
    assert np.array_equal(shown, layer._slice.image.view)


def user_ops(folder):
    return [o for o in journal(folder) if o["type"] != "review"]


# ---------------------------------------------------------------------------- tests
def test_merge_stroke_merges_whole_labels_and_shows_stats(make_napari_viewer, series, qtbot):
    viewer, lab, dock = open_dock(make_napari_viewer, series)
    set_t(viewer, 1)
    press(viewer, "m")
    assert dock.brush == "merge" and "brush" in dock.messages[-1]
    before = np.asarray(lab.data).copy()
    # across label 1 (x 8-20) into label 2 (x 20-32) at y 12, z 4, t 1
    drag(lab, [world(lab, 1, 4, 12, 14), world(lab, 1, 4, 12, 18), world(lab, 1, 4, 12, 26)])
    data = np.asarray(lab.data)
    # the whole 3D labels merged (all z), at t=1 only; the smallest ID kept
    assert not (data[1] == 2).any()
    assert np.array_equal(data[1] == 1, (before[1] == 1) | (before[1] == 2))
    assert np.array_equal(data[0], before[0]) and np.array_equal(data[2], before[2])
    (op,) = user_ops(series)
    assert op["type"] == "merge" and op["t"] == 1 and sorted(op["labels"]) == [1, 2]
    assert [sorted(p) for p in op["pairs"]] == [[1, 2]]
    assert all(s[0] == 1 and s[1] == 4 for s in op["stroke"])  # (t, z, y, x) voxels
    assert {s[2] for s in op["stroke"]} >= {12}
    # the stats panel listed both labels under the stroke, with their CSV volumes
    text = dock.panel.text()
    vol1 = 4 * 12 * 12 * np.prod(SPACING)
    assert f"{vol1:.3g}" in text or f"{int(vol1)}" in text
    # after the merge (in the frame after it) the merged label is re-measured on its
    # crop: 2x the volume
    qtbot.waitUntil(lambda: not dock._stats_due, timeout=5000)
    row = dock.stats.get(1, 1)
    assert row["volume_um3"] == pytest.approx(2 * vol1)
    # napari's hover features follow (label 1: vol1, 2 vol1, vol1 over t = 0, 1, 2)
    f = lab.features.set_index("index")
    assert f.loc[1, "volume_um3"] == pytest.approx(4 / 3 * vol1, abs=1e-3)
    assert f.loc[1, "timepoints"] == 3 and f.loc[2, "timepoints"] == 2
    assert f.loc[2, "volume_um3"] == pytest.approx(vol1, abs=1e-3)
    qtbot.waitUntil(lambda: dock.panel.topo is not None, timeout=5000)  # once it pauses
    assert dock.panel.topo["components"] == 1
    assert "components 1" in dock.panel.topology.text()
    assert dock.messages[-1].startswith("merge")


def test_z_lock_erase_undo_redo_keys(make_napari_viewer, series):
    viewer, lab, dock = open_dock(make_napari_viewer, series)
    set_t(viewer, 0, z=3)
    before = np.asarray(lab.data).copy()
    press(viewer, "z")
    assert dock.z_lock and "Z-lock ON" in dock.messages[-1]
    # the message floats over the canvas (a Qt label, not a scene redraw)
    from qtpy.QtWidgets import QLabel

    canvas = viewer.window._qt_viewer.canvas.native
    shown = canvas.findChild(QLabel, "neuroglia5d_canvas_status")
    assert shown is not None and shown.text().startswith("Z-lock ON")
    press(viewer, "e")
    drag(lab, [world(lab, 0, 3, 10, 46), world(lab, 0, 3, 10, 50)])  # label 5, plane 3
    data = np.asarray(lab.data)
    assert not (data[0, 3] == 5).any()  # gone in plane 3 only
    assert_display_current(lab)
    assert (data[0, 2] == 5).sum() == (before[0, 2] == 5).sum()
    (op,) = user_ops(series)
    assert op["type"] == "erase" and op["z_lock"] is True and op["labels"] == [5]
    # Ctrl+Z is ours while the dock is active; napari's Labels history does not run
    called = []
    lab.undo = lambda: called.append("napari undo")  # type: ignore[method-assign]
    press(viewer, "Control-Z")
    assert called == [] and np.array_equal(np.asarray(lab.data), before)
    assert user_ops(series)[-1]["type"] == "undo"
    press(viewer, "Control-Shift-Z")
    assert not (np.asarray(lab.data)[0, 3] == 5).any()
    assert user_ops(series)[-1]["type"] == "redo"
    press(viewer, "z")
    assert not dock.z_lock and "Z-lock OFF" in dock.messages[-1]
    # Space held: drags move the camera, the brush does nothing
    handler = viewer.window._qt_viewer._key_map_handler
    assert handler.press_key("Space") and lab.mouse_pan
    drag(lab, [world(lab, 0, 2, 10, 46)])
    assert (np.asarray(lab.data)[0] == 5).any()
    handler.release_key("Space")
    assert not lab.mouse_pan
    # whole-label erase now: label 5 gone in every plane of t=0
    drag(lab, [world(lab, 0, 2, 10, 46)])
    assert not (np.asarray(lab.data)[0] == 5).any()
    assert (np.asarray(lab.data)[1] == 5).any()
    # removing the dock gives napari its keys and mouse back
    viewer.window.remove_dock_widget(dock)
    assert dock.layer is None and dock._on_drag not in lab.mouse_drag_callbacks
    from qtpy.QtWidgets import QApplication

    QApplication.processEvents()  # (the label is deleted later)
    assert canvas.findChild(QLabel, "neuroglia5d_canvas_status") is None
    press(viewer, "Control-Z")
    assert called == ["napari undo"]


def test_split_temporal_merge_and_restore(make_napari_viewer, series):
    viewer, lab, dock = open_dock(make_napari_viewer, series)
    set_t(viewer, 0)
    press(viewer, "s")
    drag(lab, [world(lab, 0, 4, 34, 40)])  # seed in the left lobe of label 4
    assert "split seed 1" in dock.messages[-1]
    drag(lab, [world(lab, 0, 4, 34, 58)])  # seed in the right lobe
    preview = viewer.layers["annotation stroke"]  # both seeds stay shown until Enter
    assert preview.opacity > 0 and preview.data[34, 40] and preview.data[34, 58]
    assert viewer.layers.selection.active is lab
    press(viewer, "Enter")
    assert preview.opacity == 0
    data = np.asarray(lab.data)
    left, right = int(data[0, 4, 34, 40]), int(data[0, 4, 34, 58])
    assert left == 4 and right == 9  # the next unused ID (max over the copy is 8)
    op = user_ops(series)[-1]
    assert op["type"] == "split" and op["created"] == [9] and len(op["seeds"]) == 2
    # temporal merge: the object 3 / 7 / 8 clicked at t = 0, 1, 2
    press(viewer, "g")
    assert dock.temporal and "temporal merge ON" in dock.messages[-1]
    for t in range(3):
        set_t(viewer, t)
        click(lab, world(lab, t, 4, 34, 8))
        assert f"at t={t}" in dock.messages[-1]
    press(viewer, "g")
    data = np.asarray(lab.data)
    assert all(data[t, 4, 34, 8] == 3 for t in range(3))
    assert not np.isin(data, [7, 8]).any()
    op = user_ops(series)[-1]
    assert op["type"] == "temporal_merge" and op["sub_labels"] == [[3], [7], [8]]
    # restore label 4 at t=0 (R under the cursor) to the original segmentation
    viewer.cursor.position = world(lab, 0, 4, 34, 58)
    set_t(viewer, 0)
    press(viewer, "r")
    orig = make_labels()
    assert (np.asarray(lab.data)[0] == 4).sum() == (orig[0] == 4).sum()
    assert user_ops(series)[-1]["type"] == "restore"


def test_napari_paint_is_recorded(make_napari_viewer, series):
    # the dock opened before the data attaches when the working copy arrives
    viewer = make_napari_viewer()
    _, dock = viewer.window.add_plugin_dock_widget(PLUGIN, "Annotation dock")
    assert dock.layer is None and dock.target.text() == "no working copy open"
    viewer.open(str(series / "s_fused.ome.tif"), plugin=PLUGIN)
    lab = next(ly for ly in viewer.layers if ly.__class__.__name__ == "Labels")
    assert dock.layer is lab and dock.wc.intensity is not None
    set_t(viewer, 2, z=5)
    lab.mode = "paint"
    assert dock.brush == "none"
    lab.selected_label = 11
    lab.brush_size = 3
    drag(lab, [world(lab, 2, 5, 44, 20), world(lab, 2, 5, 44, 30)])
    data = np.asarray(lab.data)
    assert (data[2, 5] == 11).sum() > 0 and not (data[[0, 1]] == 11).any()
    op = user_ops(series)[-1]
    assert op["type"] == "paint" and op["t"] == 2
    assert np.array_equal(dock.wc.labels, data)
    assert len(lab._undo_history) == 0  # nothing left for napari's own undo
    # our undo takes the paint back
    press(viewer, "Control-Z")
    assert not (np.asarray(lab.data) == 11).any()
    # restore buttons: the layer's selected label, then the region on screen, at t=2
    lab.mode = "erase"
    drag(lab, [world(lab, 2, 5, 34, 40), world(lab, 2, 5, 34, 42)])
    assert user_ops(series)[-1]["type"] == "paint"
    dock.set_brush("erase")
    drag(lab, [world(lab, 2, 3, 10, 46)])  # label 5 erased at t=2
    orig = make_labels()
    assert not np.array_equal(np.asarray(lab.data)[2], orig[2])
    lab.selected_label = 5
    dock.restore_label_button.click()
    assert np.array_equal(np.asarray(lab.data)[2] == 5, orig[2] == 5)
    assert not np.array_equal(np.asarray(lab.data)[2], orig[2])  # the erased pixels of 4
    dock.restore_region_button.click()
    assert np.array_equal(np.asarray(lab.data)[2], orig[2])
    assert [o["type"] for o in user_ops(series)[-2:]] == ["restore", "restore"]
    assert user_ops(series)[-1]["box"] == [0, SHAPE[1], 0, SHAPE[2], 0, SHAPE[3]]


def test_tiles_offset_and_write_back(make_napari_viewer, series, qtbot):
    from neuroglia5d._napari.tile_widget import TileWidget

    viewer, lab, _dock = open_dock(make_napari_viewer, series)
    tiles = TileWidget(viewer)
    tiles.budget.setValue(3 * 8 * 48 * 40 * 6 / 2**20)  # forces 2+ tiles along X
    state = tiles.apply()
    assert state is not None and len(state.grid.tiles) >= 2
    last = len(state.grid.tiles) - 1
    tiles.switch(last)
    qtbot.wait(20)
    y0, x0 = state.grid.tiles[last].y0, state.grid.tiles[last].x0
    assert x0 > 0
    # the tile looked at is recorded as reviewed, in whole-array voxels
    reviews = [o for o in journal(series) if o["type"] == "review"]
    assert any(o["box"][4] == x0 and o["box"][5] == SHAPE[3] for o in reviews)
    set_t(viewer, 0)
    press(viewer, "e")
    # label 4's right lobe (x 54-64 of the whole array) seen through the last tile
    drag(lab, [world(lab, 0, 4, 34 - y0, 58 - x0)])
    op = user_ops(series)[-1]
    assert op["type"] == "erase" and op["labels"] == [4]
    assert {(s[2], s[3]) for s in op["stroke"]} >= {(34, 58)}  # whole array, not tile
    assert not (state.full_labels[0] == 4).any()
    assert_display_current(lab)
    # napari's own brush on this tile: recorded in whole-array voxels too
    lab.mode = "paint"
    lab.selected_label = 11
    lab.brush_size = 1
    drag(lab, [world(lab, 0, 4, 40 - y0, 50 - x0)])
    op = user_ops(series)[-1]
    assert op["type"] == "paint" and op["box"][2] <= 40 < op["box"][3]
    assert op["box"][4] <= 50 < op["box"][5]
    assert state.full_labels[0, 4, 40, 50] == 11
    tiles.switch(0)  # writes the first tile back ... the erase must survive it
    tiles.switch(last)
    assert not (state.full_labels[0] == 4).any() and not (np.asarray(lab.data)[0] == 4).any()
    assert state.full_labels[0, 4, 40, 50] == 11


def test_real_qt_keys_and_alt_click_4d_render(make_napari_viewer, series, qtbot):
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QApplication

    viewer, lab, dock = open_dock(make_napari_viewer, series, show=True)
    win = viewer.window._qt_window
    win.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is win, timeout=5000)
    canvas = viewer.window._qt_viewer.canvas.native
    # real key events on the canvas: E (erase brush), Ctrl+Z (ours, not napari's)
    set_t(viewer, 1)
    before = np.asarray(lab.data).copy()
    qtbot.keyClick(canvas, Qt.Key.Key_E)
    assert dock.brush == "erase"
    drag(lab, [world(lab, 1, 3, 10, 46)])
    assert not (np.asarray(lab.data)[1] == 5).any()
    called = []
    lab.undo = lambda: called.append("napari undo")  # type: ignore[method-assign]
    qtbot.keyClick(canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    qtbot.wait(50)
    assert called == [] and np.array_equal(np.asarray(lab.data), before)
    assert dock.messages[-1].startswith("undo")
    # Alt+click: the 4D render of label 1 in its own viewer
    dock._render_factory = lambda: make_napari_viewer(show=True)
    click(lab, world(lab, 1, 4, 12, 14), modifiers=("Alt",))
    assert "4D render of label 1" in dock.messages[-1]
    rv = dock.render_viewer
    (layer,) = [ly for ly in rv.layers if ly.name == "4D render of 1"]
    assert layer.data.shape[0] == 3 and rv.dims.ndisplay == 3
    assert set(np.unique(layer.data)) == {0, 1, 2}  # background, other labels, tracked
    shot = rv.screenshot(canvas_only=True, flash=False)
    rgb = shot[..., :3].astype(int)
    green = (rgb[..., 1] > 120) & (rgb[..., 0] < 80) & (rgb[..., 2] < 80)
    red = (rgb[..., 0] > 120) & (rgb[..., 1] < 80) & (rgb[..., 2] < 80)
    assert green.sum() > 50 and red.sum() > 10
    # in the 3D view the label hit by the mouse ray is rendered (label 2 here, t=2)
    viewer.dims.ndisplay = 3
    set_t(viewer, 2)
    click(lab, world(lab, 2, 4, 12, 26), modifiers=("Alt",), view_direction=(0, 1, 0, 0),
          dims_displayed=(1, 2, 3))
    assert "4D render of label 2" in dock.messages[-1]
    assert "4D render of 2" in rv.layers


def test_save_hook_and_replay_offer(make_napari_viewer, series):
    from neuroglia5d._napari.save_widget import SaveWidget

    viewer, lab, dock = open_dock(make_napari_viewer, series)
    save = SaveWidget(viewer)
    set_t(viewer, 0)
    press(viewer, "m")
    drag(lab, [world(lab, 0, 4, 12, 14), world(lab, 0, 4, 12, 26)])
    written = save.save()
    names = [p.name for p in written]
    assert "s_auto_annotations.json" in names
    from neuroglia5d import annotation

    if hasattr(annotation, "save_session"):  # the core's topology tables and pictures
        assert any(n.startswith("s_topologyAdvanced_") and n.endswith(".csv") for n in names)
    doc = json.loads((series / "s_auto_annotations.json").read_text())
    assert [o["type"] for o in doc["operations"] if o["type"] != "review"] == ["merge"]
    schema = Path(__file__).parents[1] / "docs" / "annotations.schema.json"
    if schema.exists():
        import jsonschema

        jsonschema.validate(doc, json.loads(schema.read_text()))
    # an edit after the save, then the session ends without saving
    press(viewer, "e")
    drag(lab, [world(lab, 0, 3, 10, 46)])
    expected = np.asarray(lab.data).copy()
    dock.detach()
    _viewer2, lab2, dock2 = open_dock(make_napari_viewer, series)
    assert dock2.replay_box.isVisibleTo(dock2)
    assert [o["type"] for o in dock2.pending if o["type"] != "review"] == ["erase"]
    assert not np.array_equal(np.asarray(lab2.data), expected)
    assert dock2.replay_pending() == 1
    assert np.array_equal(np.asarray(lab2.data), expected)
    # the dock's own save: working copy + annotations; replaying them on the original
    # segmentation gives the saved labels bit for bit (both sessions' operations)
    written = dock2.save()
    assert {"s_fused.ng5d", "s_auto_annotations.json"} <= {p.name for p in written}
    from neuroglia5d.annotation import replay

    doc = json.loads((series / "s_auto_annotations.json").read_text())
    assert [o["type"] for o in doc["operations"] if o["type"] != "review"] == ["merge", "erase"]
    assert np.array_equal(replay(doc, make_labels()), np.asarray(lab2.data))
    idx = [o["created_idx"] for o in doc["operations"]]
    assert idx == sorted(idx) and len(set(idx)) == len(idx)
    # an unsaved edit, reopened and discarded: set aside, never offered again; edits are
    # refused while the choice is open
    dock2.set_brush("erase")
    drag(lab2, [world(lab2, 0, 4, 34, 8)])  # label 3 at t=0
    dock2.detach()
    _, lab3, dock3 = open_dock(make_napari_viewer, series)
    assert [o["type"] for o in dock3.pending if o["type"] != "review"] == ["erase"]
    dock3.set_brush("erase")
    drag(lab3, [world(lab3, 1, 4, 34, 8)])
    assert "refused" in dock3.messages[-1] and (np.asarray(lab3.data)[1] == 7).any()
    moved = dock3.discard_pending()
    assert moved is not None and moved.exists() and "discarded" in moved.name
    drag(lab3, [world(lab3, 1, 4, 34, 8)])  # label 7 at t=1
    assert not (np.asarray(lab3.data)[1] == 7).any()
    dock3.detach()
    _, _lab4, dock4 = open_dock(make_napari_viewer, series)
    pend = [o for o in dock4.pending if o["type"] != "review"]
    assert [(o["type"], o["t"], o["labels"]) for o in pend] == [("erase", 1, [7])]
    idx = [o["created_idx"] for o in journal(series)]
    assert idx == sorted(idx) and len(set(idx)) == len(idx)


def test_ctrl_s_saves_annotations_with_or_without_the_save_dock(make_napari_viewer, series,
                                                                qtbot):
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QApplication

    viewer, lab, _dock = open_dock(make_napari_viewer, series, show=True)
    win = viewer.window._qt_window
    win.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is win, timeout=5000)
    canvas = viewer.window._qt_viewer.canvas.native

    def ctrl_s() -> None:
        qtbot.keyClick(canvas, Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier)
        qtbot.wait(50)

    set_t(viewer, 0)
    press(viewer, "m")
    drag(lab, [world(lab, 0, 4, 12, 14), world(lab, 0, 4, 12, 26)])
    fused = series / "s_fused.ome.tif"
    before = fused.stat().st_mtime_ns
    ctrl_s()  # the annotation dock alone: its own save (the fused copy present, rewritten)
    doc = series / "s_auto_annotations.json"
    assert doc.exists() and fused.stat().st_mtime_ns != before
    assert [o["type"] for o in json.loads(doc.read_text())["operations"]
            if o["type"] != "review"] == ["merge"]
    doc.unlink()
    # with the Save dock open, Ctrl+S is the Save dock's (its ticked formats) and the
    # annotations come through its save hook
    sdock, save = viewer.window.add_plugin_dock_widget(PLUGIN, "Save working copy")
    for f, b in save.boxes.items():
        b.setChecked(f == "ome.zarr")
    ctrl_s()
    assert doc.exists() and (series / "s_fused.ome.zarr").exists()
    assert not (series / "s_fused.ng5d").exists()
    assert save.status.text().startswith("saved ")
    # Save dock closed: the annotation dock's save again
    viewer.window.remove_dock_widget(sdock)
    qtbot.wait(50)
    doc.unlink()
    ctrl_s()
    assert doc.exists()


def test_second_working_copy_chosen_in_the_dock(make_napari_viewer, series, tmp_path):
    """Two series open: the dock edits the one picked in its Working copy box, with that
    series' journal; removing it moves the dock to the other."""
    other = write_series(tmp_path / "other", stem="u")
    viewer, lab, dock = open_dock(make_napari_viewer, series)
    viewer.open(str(other / "u_fused.ome.tif"), plugin=PLUGIN)
    lab_u = next(ly for ly in viewer.layers if ly.__class__.__name__ == "Labels"
                 and ly is not lab)
    items = [dock.layer_box.itemText(i) for i in range(dock.layer_box.count())]
    assert items == [lab.name, lab_u.name] and dock.layer_box.isEnabled()
    assert dock.layer is lab  # the first stays attached
    dock.layer_box.setCurrentText(lab_u.name)
    assert dock.layer is lab_u and dock.journal_path.parent == other
    set_t(viewer, 1)
    press(viewer, "e")
    click(lab_u, world(lab_u, 1, 3, 10, 46))  # label 5 of u
    assert not (np.asarray(lab_u.data)[1] == 5).any()
    assert (np.asarray(lab.data)[1] == 5).any()  # s untouched
    ops_u = [json.loads(line) for line in
             (other / "u_auto_annotations.jsonl").read_text().splitlines() if line.strip()]
    assert [o["type"] for o in ops_u if o["type"] != "review"] == ["erase"]
    assert not (series / "s_auto_annotations.jsonl").exists() or user_ops(series) == []
    viewer.layers.remove(lab_u)
    assert dock.layer is lab and dock.layer_box.count() == 1


def test_idle_time_measures_topology_for_the_save(make_napari_viewer, series, qtbot,
                                                   monkeypatch):
    """While the user is idle the dock measures every label's topology (all timepoints)
    in small slices; an edit makes its labels' rows stale and another pass follows."""
    import neuroglia5d._napari.annotation_dock as ad
    from neuroglia5d.annotation.session import _topology_cache

    monkeypatch.setattr(ad, "IDLE_TOPOLOGY_DELAY_MS", 50)
    viewer, lab, dock = open_dock(make_napari_viewer, series)
    dock._postpone_idle_work()
    qtbot.waitUntil(lambda: dock.idle_done, timeout=30_000)
    cache = _topology_cache(dock.wc)
    want = {(t, i) for t in range(SHAPE[0]) for i in dock.wc.labels_at(t)}
    assert set(cache) == want and len(want) == 3 * 5
    vol1 = 4 * 12 * 12 * np.prod(SPACING)
    assert cache[(0, 1)]["volume_um3"] == pytest.approx(vol1)
    set_t(viewer, 0)
    press(viewer, "m")
    drag(lab, [world(lab, 0, 4, 12, 14), world(lab, 0, 4, 12, 26)])  # 1 + 2 at t = 0
    assert not dock.idle_done
    qtbot.waitUntil(lambda: dock.idle_done, timeout=30_000)
    row = cache[(0, 1)]  # measured again in idle time, after the merge
    assert dock.wc.changed_at[(0, 1)] < row["_stamp"]
    assert row["volume_um3"] == pytest.approx(2 * vol1) and (0, 2) not in \
        {(t, i) for t in range(SHAPE[0]) for i in dock.wc.labels_at(t)}


def test_edits_wait_while_another_thread_changes_the_copy(make_napari_viewer, series):
    """The learning panel's T applies operations from a thread worker: meanwhile the
    dock refuses edits and napari's painting is off on the working layer."""
    viewer, lab, dock = open_dock(make_napari_viewer, series)
    set_t(viewer, 0)
    press(viewer, "e")
    dock.set_busy("learning (T) is running")
    assert not lab.editable
    click(lab, world(lab, 0, 3, 10, 46))  # label 5
    assert (np.asarray(lab.data)[0] == 5).any()
    assert "refused: learning (T) is running" in dock.messages[-1]
    dock.set_busy(None)
    assert lab.editable
    click(lab, world(lab, 0, 3, 10, 46))
    assert not (np.asarray(lab.data)[0] == 5).any()
