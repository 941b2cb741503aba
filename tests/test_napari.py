"""The napari plugin: readers, pairing, writers, the segment and save widgets (real Qt)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

napari = pytest.importorskip("napari")

from neuroglia5d import segment  # noqa: E402
from neuroglia5d.io.tiff_out import read_ome_tiff_series  # noqa: E402
from neuroglia5d.sample_data import write_sample  # noqa: E402

from .conftest import sample  # noqa: E402

PLUGIN = "napari-neuroglia5d"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    ds = sample("nuclei", (3, 12, 64, 64), 6)
    root = tmp_path_factory.mktemp("nap")
    paths = write_sample(ds, root / "data")
    res = segment(paths.hyperstack, root / "out", formats="tif,ome.zarr,ng5d")[0]
    return res, paths


def layer_by(viewer, kind):
    return [ly for ly in viewer.layers if ly.__class__.__name__ == kind]


@pytest.mark.parametrize("ext", [".ng5d", ".ome.zarr", ".ome.tif"])
def test_each_fused_format_opens_as_a_pair(make_napari_viewer, run_dir, ext):
    res, _ = run_dir
    viewer = make_napari_viewer()
    viewer.open(str(res.out_dir / f"{res.stem}_fused{ext}"), plugin=PLUGIN)
    (img,), (lab,) = layer_by(viewer, "Image"), layer_by(viewer, "Labels")
    ref = read_ome_tiff_series(res.out_dir / f"{res.stem}_fused.ome.tif")["series"]
    assert np.array_equal(np.asarray(lab.data), ref["labels"])
    assert np.array_equal(np.asarray(img.data[...]), ref["intensity"])
    assert tuple(lab.scale) == (1.0, 1.5, 0.5, 0.5) == tuple(img.scale)
    oz, oy, ox = res.crop_offset_zyx
    assert tuple(lab.translate) == (0.0, oz * 1.5, oy * 0.5, ox * 0.5)
    meta = lab.metadata["neuroglia5d"]
    assert meta["role"] == "working" and meta["original"] is not None
    assert "volume_um3" in lab.features.columns and "index" in lab.features.columns


def test_opening_the_labels_file_finds_the_fastest_fused_copy(make_napari_viewer, run_dir):
    res, _ = run_dir
    viewer = make_napari_viewer()
    viewer.open(str(res.out_dir / f"{res.stem}_labels.ome.tif"), plugin=PLUGIN)
    (lab,) = layer_by(viewer, "Labels")
    assert lab.metadata["neuroglia5d"]["source"].endswith("_fused.ng5d")
    assert len(layer_by(viewer, "Image")) == 1


def test_reader_declines_other_paths(tmp_path):
    from neuroglia5d._napari.reader import get_reader

    (tmp_path / "x.png").write_bytes(b"\x89PNG")
    assert get_reader(str(tmp_path / "x.png")) is None
    (tmp_path / "other.ome.zarr").mkdir()
    assert get_reader(str(tmp_path / "other.ome.zarr")) is None  # not ours: ome-zarr's
    assert get_reader(str(tmp_path / "missing.ng5d")) is None


def test_damaged_file_is_a_notification_not_a_crash(make_napari_viewer, tmp_path):
    from neuroglia5d._napari.reader import read

    bad = tmp_path / "bad_fused.ng5d"
    bad.write_bytes(b"not an ng5d file at all")
    seen = []
    from napari.utils.notifications import notification_manager

    notification_manager.notification_ready.connect(lambda n: seen.append(str(n.message)))
    assert read(str(bad)) == []
    assert any("not an .ng5d file" in m for m in seen)


def test_navigation_reads_no_file(make_napari_viewer, run_dir, tmp_path):
    res, _ = run_dir
    copy = tmp_path / "copy"
    shutil.copytree(res.out_dir, copy)
    viewer = make_napari_viewer()
    viewer.open(str(copy / f"{res.stem}_fused.ng5d"), plugin=PLUGIN)
    fds = {os.readlink(f"/proc/self/fd/{f}") for f in os.listdir("/proc/self/fd")
           if os.path.exists(f"/proc/self/fd/{f}")}
    assert not any(str(copy) in f for f in fds)  # no handle of the dataset left open
    shutil.rmtree(copy)  # from here on, any read would fail
    for t in range(3):
        for z in range(0, 12, 3):
            viewer.dims.set_current_step(0, t)
            viewer.dims.set_current_step(1, z)
    img = viewer.screenshot(canvas_only=True)
    assert img.shape[0] > 0


def test_screenshot_after_opening_sample_data_shows_labels(make_napari_viewer):
    viewer = make_napari_viewer(show=True)  # a hidden canvas renders nothing
    viewer.open_sample(PLUGIN, "nuclei")
    assert [ly.__class__.__name__ for ly in viewer.layers] == ["Image", "Labels"]
    viewer.layers[0].visible = False  # only the labels: coloured pixels must appear
    viewer.dims.set_current_step(1, 16)
    shot = viewer.screenshot(canvas_only=True)
    lit = shot[..., :3].max(axis=-1) > 20  # the background is black
    assert lit.mean() > 0.03
    gt = viewer.layers[1].data[viewer.dims.current_step[0], viewer.dims.current_step[1]]
    assert lit.mean() > 0.3 * (gt > 0).mean()  # labels cover a comparable share of the view
    viewer.layers[1].visible = False
    shot = viewer.screenshot(canvas_only=True)
    assert (shot[..., :3].max(axis=-1) > 20).mean() < 0.001


def test_segment_widget_matches_the_cli_and_shows_layers(make_napari_viewer, qtbot, run_dir,
                                                         tmp_path):
    from neuroglia5d._napari.segment_widget import SegmentWidget

    res, paths = run_dir
    viewer = make_napari_viewer()
    w = SegmentWidget(viewer)
    w.input_edit.setText(str(paths.hyperstack))
    w.out_edit.setText(str(tmp_path / "w"))
    for f, b in w.format_boxes.items():
        b.setChecked(f == "tif")
    worker = w.run()
    with qtbot.waitSignal(worker.finished, timeout=120_000):
        pass
    qtbot.waitUntil(lambda: w.last_result is not None, timeout=10_000)
    out = w.last_result[0]
    a = read_ome_tiff_series(out.out_dir / f"{out.stem}_labels.ome.tif")["series"]["labels"]
    b = read_ome_tiff_series(res.out_dir / f"{res.stem}_labels.ome.tif")["series"]["labels"]
    assert np.array_equal(a, b)
    labs = layer_by(viewer, "Labels")
    assert len(labs) == 1 and np.array_equal(np.asarray(labs[0].data), b)


def test_segment_widget_cancel_leaves_no_partial_files(make_napari_viewer, qtbot, run_dir,
                                                       tmp_path):
    from neuroglia5d._napari.segment_widget import SegmentWidget

    _, paths = run_dir
    viewer = make_napari_viewer()
    w = SegmentWidget(viewer)
    w.input_edit.setText(str(paths.hyperstack))
    out = tmp_path / "c"
    w.out_edit.setText(str(out))
    w.cancel_event.set()
    worker = w.run()
    w.cancel()
    with qtbot.waitSignal(worker.finished, timeout=120_000):
        pass
    qtbot.waitUntil(lambda: "cancelled" in w.status.text(), timeout=10_000)
    assert not list(out.rglob("*.partial"))
    assert not list(out.rglob("*_labels.*"))


def test_parameters_round_trip_through_the_widget(make_napari_viewer, tmp_path):
    from neuroglia5d._napari.segment_widget import SegmentWidget
    from neuroglia5d.params import Parameters, load_parameters

    w = SegmentWidget(make_napari_viewer())
    p = Parameters().updated({"ch1_minDist_um": 6.5, "CED_ch1": 2, "ch2_minDist_um": 9.0,
                              "algorithm": "branching"})
    w.set_parameters(p)
    assert w.fields["CED_ch1"].toolTip().startswith("CED_ch1:")
    w.save_parameters(tmp_path / "parameters.json")
    back = load_parameters(tmp_path / "parameters.json")
    assert back.channel(1).minDist_um == 6.5 and back.channel(1).CED == 2
    assert back.channel(2).minDist_um == 9.0 and back.algorithm == "branching"


@pytest.mark.parametrize("formats", [["ng5d"], ["ome.zarr"], ["tif"]])
def test_save_then_reopen_returns_the_edit(make_napari_viewer, run_dir, tmp_path, formats):
    from neuroglia5d._napari.save_widget import SaveWidget

    res, _ = run_dir
    copy = tmp_path / "s"
    shutil.copytree(res.out_dir, copy)
    original = (copy / f"{res.stem}_labels.ome.tif").read_bytes()
    viewer = make_napari_viewer()
    viewer.open(str(copy / f"{res.stem}_fused.ome.tif"), plugin=PLUGIN)
    (lab,) = layer_by(viewer, "Labels")
    lab.data[1, 3:6, 10:20, 10:20] = 999
    w = SaveWidget(viewer)
    for f, b in w.boxes.items():
        b.setChecked(f in formats)
    written = w.save()
    # the ticked format, plus the fused copies that already existed (all three here)
    assert {p.name for p in written} == {f"{res.stem}_fused{e}"
                                         for e in (".ng5d", ".ome.zarr", ".ome.tif")}
    edited = np.asarray(lab.data).copy()
    for p in written:
        v2 = make_napari_viewer()
        v2.open(str(p), plugin=PLUGIN)
        (lab2,) = layer_by(v2, "Labels")
        assert np.array_equal(np.asarray(lab2.data), edited), p
        from neuroglia5d.io.convert import load_outputs

        assert np.array_equal(np.asarray(load_outputs(p).arrays["labels"][...]), edited), p
    assert (copy / f"{res.stem}_labels.ome.tif").read_bytes() == original  # never touched
    assert not list(Path(copy).rglob("*.partial"))


def test_writer_contributions_save_layers(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    data = np.zeros((2, 4, 16, 16), np.uint32)
    data[:, 1:3, 4:9, 4:9] = 5
    viewer.add_labels(data, scale=(1, 1.5, 0.5, 0.5), name="seg")
    viewer.add_image(np.full((2, 4, 16, 16), 300, np.uint16), scale=(1, 1.5, 0.5, 0.5),
                     name="img")
    out = tmp_path / "x_fused.ng5d"
    viewer.layers.save(str(out), plugin=PLUGIN)
    from neuroglia5d.io.ng5d import open_ng5d

    f = open_ng5d(out)
    assert np.array_equal(f.arrays["labels"][...], data)
    assert f.voxel_size_um == (1.5, 0.5, 0.5)
    only = tmp_path / "y_labels.tif"
    napari.save_layers(str(only), [viewer.layers["seg"]], plugin=PLUGIN)
    assert np.array_equal(read_ome_tiff_series(only)["series"]["labels"], data)


def test_console_api_open_segment_save(make_napari_viewer, run_dir, tmp_path):
    import neuroglia5d

    res, _ = run_dir
    copy = tmp_path / "api"
    shutil.copytree(res.out_dir, copy)
    viewer = make_napari_viewer()
    img, lab = neuroglia5d.open_pair(copy / f"{res.stem}_labels.ng5d", viewer)
    assert img is not None and lab.metadata["neuroglia5d"]["role"] == "working"
    ref = np.asarray(lab.data).copy()
    raw = viewer.add_image(np.asarray(img.data[...]), scale=img.scale, name="again")
    seg = neuroglia5d.segment_layer(raw, viewer=viewer, folder=copy)
    assert seg.data.shape == ref.shape and seg.data.max() > 0
    lab.data[0, 0:2, 0:5, 0:5] = 4321
    written = neuroglia5d.save(viewer, formats=("ng5d",))
    names = {p.name for p in written}
    assert f"{res.stem}_fused.ng5d" in names and "again_fused.ng5d" in names
    from neuroglia5d.io.ng5d import open_ng5d

    back = open_ng5d(copy / f"{res.stem}_fused.ng5d").arrays["labels"][...]
    assert back[0, 0, 0, 0] == 4321


def test_tiles_switch_keep_edits_and_save_the_whole_copy(make_napari_viewer, run_dir,
                                                         tmp_path):
    from neuroglia5d._napari.save_widget import SaveWidget
    from neuroglia5d._napari.tile_widget import TileWidget

    res, _ = run_dir
    copy = tmp_path / "t"
    shutil.copytree(res.out_dir, copy)
    viewer = make_napari_viewer()
    viewer.open(str(copy / f"{res.stem}_fused.ng5d"), plugin=PLUGIN)
    (lab,) = layer_by(viewer, "Labels")
    whole = np.asarray(lab.data).copy()
    T, Z = whole.shape[:2]
    tw = TileWidget(viewer)
    tw.budget.setValue(T * Z * 40 * 40 * 6 / 2**20)  # forces several tiles
    state = tw.apply()
    assert len(state.grid.tiles) > 1
    t0 = state.grid.tiles[0]
    assert lab.data.shape == (T, Z, *t0.shape_yx)
    assert lab.translate[-1] == pytest.approx(res.crop_offset_zyx[2] * 0.5 + t0.x0 * 0.5)
    lab.data[1, 2, 0:3, 0:3] = 4242  # an edit in tile 0
    tw.switch(len(state.grid.tiles) - 1)
    tw.switch(0)
    assert (lab.data[1, 2, 0:3, 0:3] == 4242).all()  # kept across switches
    w = SaveWidget(viewer)
    for f, b in w.boxes.items():
        b.setChecked(f == "ng5d")
    w.save()
    from neuroglia5d.io.ng5d import open_ng5d

    saved = open_ng5d(copy / f"{res.stem}_fused.ng5d").arrays["labels"][...]
    expect = whole.copy()
    expect[1, 2, t0.y0:t0.y0 + 3, t0.x0:t0.x0 + 3] = 4242
    assert np.array_equal(saved, expect)


def test_ctrl_s_is_ours_while_the_save_dock_is_open(make_napari_viewer, qtbot, run_dir,
                                                   tmp_path, monkeypatch):
    from napari._qt.qt_viewer import QtViewer
    from napari._qt.widgets.qt_keyboard_settings import ShortcutEditor
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QApplication

    from neuroglia5d._napari.save_widget import SaveWidget

    napari_saves: list[bool] = []
    monkeypatch.setattr(QtViewer, "_save_layers_dialog",
                        lambda self, selected=False: napari_saves.append(selected))
    res, _ = run_dir
    copy = tmp_path / "k"
    shutil.copytree(res.out_dir, copy)
    (copy / f"{res.stem}_fused.ng5d").unlink()
    viewer = make_napari_viewer(show=True)
    viewer.open(str(copy / f"{res.stem}_fused.ome.tif"), plugin=PLUGIN)
    win = viewer.window._qt_window
    win.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is win, timeout=5000)
    canvas = viewer.window._qt_viewer.canvas.native

    def press() -> None:
        qtbot.keyClick(canvas, Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier)
        qtbot.wait(50)

    press()  # without our dock, napari's "Save Selected Layers..." gets Ctrl+S
    assert napari_saves == [True]
    assert not (copy / f"{res.stem}_fused.ng5d").exists()

    dock, w = viewer.window.add_plugin_dock_widget(PLUGIN, "Save working copy")
    assert isinstance(w, SaveWidget)
    for f, b in w.boxes.items():
        b.setChecked(f == "ng5d")
    press()  # ours fires, napari's does not
    assert napari_saves == [True]
    assert (copy / f"{res.stem}_fused.ng5d").exists()
    assert w.status.text().startswith("saved ")
    # focus in the dock: still ours
    (copy / f"{res.stem}_fused.ng5d").unlink()
    w.boxes["tif"].setFocus()
    qtbot.keyClick(w.boxes["tif"], Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier)
    qtbot.wait(50)
    assert (copy / f"{res.stem}_fused.ng5d").exists() and napari_saves == [True]

    # listed in napari's shortcut settings, with its key
    editor = ShortcutEditor()
    viewer_actions = editor.key_bindings_strs[editor.VIEWER_KEYBINDINGS]
    assert "neuroglia5d:save" in viewer_actions
    from neuroglia5d._napari.shortcuts import current_shortcuts

    assert [str(k) for k in current_shortcuts("neuroglia5d:save")] == ["Ctrl+S"]

    # closing the dock gives napari its binding back
    viewer.window.remove_dock_widget(dock)
    qtbot.wait(50)
    assert not w.key_override.installed
    press()
    assert napari_saves == [True, True]


def test_adopt_a_labels_layer_from_another_tool_then_save(make_napari_viewer, tmp_path):
    from neuroglia5d._napari.save_widget import SaveWidget
    from neuroglia5d.io.ng5d import open_ng5d

    viewer = make_napari_viewer()
    img = np.arange(2 * 4 * 16 * 16, dtype=np.uint16).reshape(2, 4, 16, 16)
    lab = np.zeros((2, 4, 16, 16), np.uint32)
    lab[:, 1:3, 2:7, 2:7] = 3
    viewer.add_image(img, scale=(1, 2.0, 0.5, 0.5), name="raw")
    viewer.add_labels(lab, scale=(1, 2.0, 0.5, 0.5), name="cellpose masks")
    w = SaveWidget(viewer)
    assert [w.adopt_labels.itemText(i) for i in range(w.adopt_labels.count())] == \
        ["cellpose masks"]
    w.adopt_folder.setText(str(tmp_path / "missing"))
    assert w.adopt() is None and "not an existing folder" in w.status.text()
    w.adopt_folder.setText(str(tmp_path))
    w.adopt_stem.setText("cp")
    layer = w.adopt()
    assert layer is viewer.layers["cellpose masks"]
    assert layer.metadata["neuroglia5d"]["role"] == "working"
    layer.data[1, 2, 10, 10] = 9
    for f, b in w.boxes.items():
        b.setChecked(f == "ng5d")
    (out,) = w.save()
    assert out == tmp_path / "cp_fused.ng5d"
    f = open_ng5d(out)
    assert np.array_equal(f.arrays["labels"][...], layer.data)
    assert np.array_equal(f.arrays["intensity"][...], img)
    assert f.voxel_size_um == (2.0, 0.5, 0.5)
    # restore would return to the adopted state, not the later edit
    assert layer.metadata["neuroglia5d"]["original"][1, 2, 10, 10] == 0
