"""Live statistics, topology tables, pictures and the Ctrl+S writer."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from neuroglia5d.annotation import (
    TOPOLOGY4D_COLUMNS,
    TOPOLOGY_COLUMNS,
    WorkingCopy,
    live_stats,
    merged_topology,
    refresh_stats_table,
    save_session,
    topology_table,
    validate_annotations,
)
from neuroglia5d.io.atomic import atomic_write_text
from neuroglia5d.processing.stats import STATS_COLUMNS, read_stats_csv, table_to_csv

SP = (2.0, 0.5, 0.5)


def torus(shape, center, big_r=9, small_r=3):
    zz, yy, xx = np.indices(shape).astype(float)
    z, y, x = zz * SP[0] - center[0], yy * SP[1] - center[1], xx * SP[2] - center[2]
    return (np.sqrt(x**2 + y**2) - big_r) ** 2 + z**2 <= small_r**2


def scene():
    """t=0: a torus (4) and two touching boxes (7 | 8); t=1: the torus cut open (no loop),
    the boxes moved by 2 voxels in x; t=2: the torus again."""
    shape = (20, 64, 96)
    lab = np.zeros((3, *shape), np.uint32)
    inten = np.zeros(lab.shape, np.float32)
    for t in range(3):
        tor = torus(shape, (20, 16, 16))
        if t == 1:
            tor[:, 29:36, 40:60] = False  # cut the ring
        lab[t][tor] = 4
        dx = 2 * (t == 1)
        lab[t, 8:12, 10:30, 70 + dx:80 + dx] = 7
        lab[t, 8:12, 10:30, 80 + dx:90 + dx] = 8
        inten[t] = (lab[t] > 0) * 100.0 + 10.0
    return lab, inten


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_live_stats_and_merged_topology_on_crops():
    lab, inten = scene()
    wc = WorkingCopy(lab, intensity=inten, spacing_um=SP, offset_zyx=(1, 2, 3))
    tb = live_stats(wc, 0, [7, 8, 99])
    assert tb["label"].tolist() == [7, 8]
    assert tb["volume_um3"][0] == pytest.approx(4 * 20 * 10 * SP[0] * SP[1] * SP[2])
    assert tb["bbox_x0"].tolist() == [73, 83]  # raw frame: + offset
    assert tb["mean_intensity"][0] == pytest.approx(110.0)
    assert tb["nn_dist_um"][0] == pytest.approx(10 * SP[2])  # centroids 10 voxels apart
    full = refresh_stats_table(wc, None)
    assert sorted(set(full["t"].tolist())) == [0, 1, 2]
    # with the whole table, the torus counts as a neighbour too
    tb2 = live_stats(wc, 0, [7], table=full)
    assert tb2["nn_dist_um"][0] == pytest.approx(full["nn_dist_um"][
        (full["t"] == 0) & (full["label"] == 7)][0])
    topo = merged_topology(wc, 0, [7, 8])
    assert topo["components"] == 1 and topo["loops"] == 0
    assert merged_topology(wc, 0, [4])["loops"] == 1
    assert merged_topology(wc, 0, [123]) is None


def test_save_session_writes_every_file(tmp_path):
    lab, inten = scene()
    orig = lab.copy()
    wc = WorkingCopy(lab, original=orig, intensity=inten, spacing_um=SP)
    # a labelStats.csv from the segmentation
    atomic_write_text(tmp_path / "ds_labelStats.csv", table_to_csv(refresh_stats_table(wc, None)))
    (tmp_path / "ds_labels.ome.tif").write_bytes(b"not really a tif, only hashed")
    wc.merge(0, [(0, 9, 15, 79), (0, 9, 15, 81)])  # 7 + 8 -> 7 at t=0
    wc.erase(2, [(2, 9, 15, 85)])  # 8 gone at t=2
    written = save_session(wc, tmp_path, "ds", t=0, z_range=(0, 19), stamp="250102030405")
    names = [p.name for p in written]
    assert names == ["ds_auto_annotations.json", "ds_labelStats.csv",
                     "ds_topologyAdvanced_250102030405.csv",
                     "ds_topologyAdvanced4D_250102030405.csv", "ds_interactive_Z000-019.png"]
    assert not list(tmp_path.glob("*.partial"))
    doc = json.loads(written[0].read_text())
    validate_annotations(doc)
    assert doc["header"]["stem"] == "ds" and "labels" in doc["header"]["files"]
    assert [o["type"] for o in doc["operations"]] == ["merge", "erase"]
    # label stats: the merged label is the sum, erased rows are gone, others unchanged
    st = read_stats_csv(written[1])
    rows = {(int(t), int(label)): i for i, (t, label) in enumerate(zip(st["t"], st["label"],
                                                                       strict=True))}
    vox = SP[0] * SP[1] * SP[2]
    assert st["volume_um3"][rows[(0, 7)]] == pytest.approx(2 * 800 * vox)
    assert (0, 8) not in rows and (2, 8) not in rows and (1, 8) in rows
    assert list(read_csv(written[1])[0]) == list(STATS_COLUMNS)
    # topology at t=0
    topo = {int(r["label"]): r for r in read_csv(written[2])}
    assert list(read_csv(written[2])[0]) == list(TOPOLOGY_COLUMNS)
    assert sorted(topo) == [4, 7]
    assert topo[4]["loops"] == "1" and topo[4]["euler"] == "0"
    assert topo[7]["components"] == "1" and topo[7]["loops"] == "0"
    # dynamics: the torus lost its loop at t=1 and got it back at t=2
    dyn = {int(r["label"]): r for r in read_csv(written[3])}
    assert list(read_csv(written[3])[0]) == list(TOPOLOGY4D_COLUMNS)
    d4 = dyn[4]
    assert d4["timepoints_present"] == "3" and d4["loop_changes"] == "2"
    assert float(d4["loops_mean"]) == pytest.approx(2 / 3)
    assert d4["euler_changes"] == "2" and float(d4["connectivity_stability"]) == 1.0
    assert float(d4["centroid_speed_um_per_t"]) < 1.0
    d8 = dyn[8]  # present at t=1 only (merged at 0, erased at 2)
    assert d8["timepoints_present"] == "1" and d8["first_t"] == "1"
    d7 = dyn[7]
    assert float(d7["net_displacement_um"]) == pytest.approx(5 * SP[2])  # 7+8 at 0, 7 at 2
    # picture: 96 wide, the labels coloured
    import matplotlib.image as mpimg

    img = mpimg.imread(io.BytesIO(written[4].read_bytes()))
    assert img.shape[1] == 200  # at least 200 pixels wide
    assert img[..., :3].std() > 0.05
    assert wc.dirty == {}


def test_topology_cache_follows_edits(tmp_path):
    lab, inten = scene()
    wc = WorkingCopy(lab, intensity=inten, spacing_um=SP)
    rows = {r["label"]: r for r in topology_table(wc, 0)}
    assert rows[4]["loops"] == 1
    # erase a slab of the torus through a paint edit: the cached row must be recomputed
    box = (0, 20, 29, 36, 40, 60)
    before = lab[0, 0:20, 29:36, 40:60].copy()
    after = before.copy()
    after[after == 4] = 0
    wc.paint(0, box, before, after)
    rows = {r["label"]: r for r in topology_table(wc, 0)}
    assert rows[4]["loops"] == 0
    wc.undo()
    assert {r["label"]: r for r in topology_table(wc, 0)}[4]["loops"] == 1
