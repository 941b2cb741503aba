"""napari menu action: export the current (edited) pair, serve it, return/open the link."""

from __future__ import annotations

import json
import urllib.request

import numpy as np
import pytest

from .test_neuroglancer import _read_ts, ng_run  # noqa: F401  (shared session fixture)

pytest.importorskip("napari")


def test_menu_action_exports_the_edited_pair_and_serves_it(make_napari_viewer, ng_run,  # noqa: F811
                                                           tmp_path):
    from napari.layers import Labels

    from neuroglia5d._napari.neuroglancer_action import open_in_neuroglancer, stop_servers

    _, fused, _ = ng_run
    viewer = make_napari_viewer()
    viewer.open(str(fused), plugin="napari-neuroglia5d")
    lab = next(ly for ly in viewer.layers if isinstance(ly, Labels))
    gone = int(np.unique(lab.data[0])[1])
    lab.data[0][lab.data[0] == gone] = 0  # an edit the export must carry
    out = tmp_path / "ng"
    try:
        url = open_in_neuroglancer(viewer, out_dir=out, open_browser=False, block=True)
        assert np.array_equal(_read_ts(out / "t000" / "labels"), lab.data[0])
        m = json.loads((out / "neuroglia5d_ng.json").read_text())
        assert gone not in m["timepoints"][0]["label_ids"]
        assert gone in m["timepoints"][1]["label_ids"]
        assert (out / "t000" / "image" / "info").is_file()
        with urllib.request.urlopen(url) as r:
            assert b"<script" in r.read()
        name = url.rstrip("/").rsplit("/", 1)[1]
        events = url.split("/v/")[0] + f"/events/{name}"
        with urllib.request.urlopen(events, timeout=10) as r:
            st = json.loads(r.readline().decode().removeprefix("data: "))["s"]
        assert str(gone) not in st["layers"][1]["segments"]
    finally:
        stop_servers()


def test_menu_contribution_is_registered():
    from npe2 import PluginManager

    pm = PluginManager.instance()
    pm.discover()
    items = [getattr(i, "command", None) for i in pm.iter_menu("napari/file/io_utilities")]
    assert "napari-neuroglia5d.open_in_neuroglancer" in items
