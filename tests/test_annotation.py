"""Working copy operations on small volumes with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from neuroglia5d.annotation import Operation, WorkingCopy, decode_array, encode_array
from neuroglia5d.errors import ParameterError

SP = (2.0, 0.5, 0.5)


def blocks(T: int = 3) -> np.ndarray:
    """1 | 2 side by side (x), 3 apart, 4 on the x border, at every timepoint."""
    lab = np.zeros((T, 6, 20, 20), np.uint32)
    lab[:, :, 0:10, 0:5] = 1
    lab[:, :, 0:10, 5:10] = 2
    lab[:, :, 12:20, 12:20] = 3
    lab[:, 2:4, 0:10, 15:20] = 4
    return lab


def stroke(t, pts):
    return np.array([(t, *p) for p in pts], np.int64)


def check_boxes(wc: WorkingCopy) -> None:
    """The cached boxes equal find_objects on the current labels."""
    for t, cached in wc._boxes.items():
        truth = {}
        for i, sl in enumerate(ndi.find_objects(wc.labels[t])):
            if sl is not None:
                truth[i + 1] = (sl[0].start, sl[0].stop, sl[1].start, sl[1].stop, sl[2].start,
                                sl[2].stop)
        assert cached == truth, f"boxes at t={t}"


def test_merge_records_only_adjacent_pairs_and_keeps_smallest_id():
    lab = blocks()
    wc = WorkingCopy(lab, original=lab.copy(), spacing_um=SP)
    assert wc.next_id == 5
    assert wc.bbox(1, 3) == (0, 6, 12, 20, 12, 20)
    op = wc.merge(1, stroke(1, [(3, 5, 2), (3, 5, 7), (3, 15, 15)]))
    assert op is not None and op.type == "merge"
    assert op.labels == [1, 2, 3]
    assert op.pairs == [[1, 2]]  # 3 touches neither
    assert set(np.unique(lab[1])) == {0, 1, 4}
    assert (lab[0] == blocks()[0]).all()  # other timepoints untouched
    assert wc.bbox(1, 1) == (0, 6, 0, 20, 0, 20)
    assert wc.bbox(1, 2) is None
    assert {b[0] for b in op.changed_boxes} == {1}
    check_boxes(wc)
    assert wc.merge(1, stroke(1, [(3, 5, 2)])) is None  # one label: nothing to do
    assert len(wc.history) == 1


def test_merge_pairs_use_3d_faces_not_diagonals():
    lab = np.zeros((1, 4, 8, 8), np.uint32)
    lab[0, 0, 0, 0] = 1
    lab[0, 1, 1, 1] = 2  # only a corner with 1
    lab[0, 1, 1, 2] = 3  # face with 2
    wc = WorkingCopy(lab)
    op = wc.merge(0, stroke(0, [(0, 0, 0), (1, 1, 1), (1, 1, 2)]))
    assert op.pairs == [[2, 3]]
    assert set(np.unique(lab)) == {0, 1}


def test_z_locked_merge_and_erase_act_on_one_plane():
    lab = blocks(1)
    wc = WorkingCopy(lab, spacing_um=SP)
    op = wc.merge(0, stroke(0, [(2, 5, 2), (2, 5, 7), (3, 5, 7)]), z_lock=True)
    assert op.z_lock and op.z == 2 and op.pairs == [[1, 2]]
    assert (lab[0, 2, 0:10, 0:10] == 1).all()
    assert (lab[0, 3, 0:10, 5:10] == 2).all() and (lab[0, 0, 0:10, 5:10] == 2).all()
    check_boxes(wc)
    op = wc.erase(0, stroke(0, [(4, 15, 15)]), z_lock=True)
    assert op.labels == [3]
    assert (lab[0, 4] != 3).all() and (lab[0, 5, 12:20, 12:20] == 3).all()
    check_boxes(wc)


def test_erase_removes_whole_labels_touching_the_border():
    lab = blocks(2)
    wc = WorkingCopy(lab)
    op = wc.erase(1, stroke(1, [(2, 0, 19), (9, 0, 0)]))  # (9, 0, 0) is outside: ignored
    assert op.labels == [4]
    assert not (lab[1] == 4).any() and (lab[0] == 4).sum() == 2 * 10 * 5
    assert wc.bbox(1, 4) is None
    check_boxes(wc)
    assert wc.erase(1, stroke(1, [(0, 11, 11)])) is None  # background


def dumbbell(T: int = 1) -> np.ndarray:
    lab = np.zeros((T, 8, 16, 40), np.uint32)
    lab[:, 1:7, 2:14, 2:16] = 5  # left ball (box)
    lab[:, 1:7, 2:14, 24:38] = 5  # right
    lab[:, 3:5, 7:9, 16:24] = 5  # thin neck
    return lab


def test_split_divides_a_dumbbell_at_its_neck():
    lab = dumbbell()
    before = lab.copy()
    wc = WorkingCopy(lab, spacing_um=(1.0, 0.5, 0.5))
    op = wc.split(0, [stroke(0, [(4, 8, 5), (4, 8, 6)]), stroke(0, [(4, 8, 33)])])
    assert op.labels == [5] and op.created == [6] and wc.next_id == 7
    assert (lab[0, 1:7, 2:14, 2:16] == 5).all()
    assert (lab[0, 1:7, 2:14, 24:38] == 6).all()
    assert ((lab > 0) == (before > 0)).all()  # no voxel lost or added
    neck = lab[0, 3:5, 7:9, 16:24]
    assert set(np.unique(neck)) == {5, 6}
    # mask stored: part index per voxel of the box
    parts = decode_array(op.mask)
    assert op.mask["box"] == [1, 7, 2, 14, 2, 38]
    assert parts.shape == (6, 12, 36) and set(np.unique(parts)) == {0, 1, 2}
    check_boxes(wc)


def test_split_follows_dim_gap_in_the_intensity():
    # one straight bar, uniformly thick: the distance has no neck; the intensity has a gap
    lab = np.zeros((1, 6, 10, 40), np.uint32)
    lab[0, 1:5, 2:8, 2:38] = 9
    img = np.full(lab.shape, 100.0, np.float32)
    img[0, :, :, 27:29] = 5.0  # a dim plane at x = 27-28
    wc = WorkingCopy(lab, intensity=img, spacing_um=(1.0, 0.5, 0.5))
    op = wc.split(0, [stroke(0, [(3, 5, 4)]), stroke(0, [(3, 5, 36)])])
    new = op.created[0]
    assert (lab[0, 1:5, 2:8, 2:27] == 9).all()
    assert (lab[0, 1:5, 2:8, 29:38] == new).all()


def test_split_with_a_given_boundary_and_z_lock():
    lab = np.zeros((2, 4, 10, 20), np.uint32)
    lab[:, :, 2:8, 2:18] = 3
    wc = WorkingCopy(lab)
    boundary = np.zeros((4, 6, 16), np.float32)
    boundary[:, :, 4] = 1.0  # a wall at x = 2 + 4 = 6
    op = wc.split(1, [stroke(1, [(1, 4, 3)]), stroke(1, [(1, 4, 15)])], boundary=boundary,
                  z_lock=True, weights_id="w1")
    assert op.z == 1 and op.weights_id == "w1"
    new = op.created[0]
    assert (lab[1, 1, 2:8, 7:18] == new).all() and (lab[1, 1, 2:8, 2:6] == 3).all()
    assert (lab[1, 0] != new).all() and (lab[0] == 3).sum() == 4 * 6 * 16
    check_boxes(wc)


def test_split_needs_two_parts_on_one_label():
    wc = WorkingCopy(blocks(1))
    with pytest.raises(ParameterError, match="at least two"):
        wc.split(0, [stroke(0, [(1, 1, 1)])])
    with pytest.raises(ParameterError, match="touch label"):
        wc.split(0, [stroke(0, [(1, 1, 1)]), stroke(0, [(1, 11, 11)])])
    with pytest.raises(ParameterError, match="no label"):
        wc.split(0, [stroke(0, [(1, 11, 11)]), stroke(0, [(1, 11, 10)])])


def test_temporal_merge_gives_one_identity_and_records_sub_labels():
    orig = np.zeros((3, 4, 10, 30), np.uint32)
    orig[0, :, 0:5, 0:5] = 12
    orig[0, :, 0:5, 5:10] = 45
    orig[1, :, 0:5, 0:5] = 12
    orig[1, :, 5:10, 20:30] = 7  # will be 'the same object' at t=1? no: t=2 below
    orig[2, :, 0:5, 0:5] = 67
    orig[2, :, 0:5, 5:10] = 89
    orig[2, :, 0:5, 10:15] = 12
    lab = orig.copy()
    wc = WorkingCopy(lab, original=orig)
    wc.merge(0, stroke(0, [(1, 2, 2), (1, 2, 7)]))  # 12 + 45 -> 12 at t=0
    wc.merge(2, stroke(2, [(1, 2, 2), (1, 2, 7), (1, 2, 12)]))  # 67+89+12 -> 12 at t=2
    # relabel t=2's fused label so the clicks below really change IDs
    wc.relabel(2, {12: 50}, weights_id="test")
    op = wc.temporal_merge([(0, 1, 2, 2), (1, 1, 2, 2), (2, 1, 2, 2)])
    assert op.labels == [12, 12, 50]
    assert op.sub_labels == [[12, 45], [12], [12, 67, 89]]
    assert op.target_id == 12
    assert (lab[2, :, 0:5, 0:15] == 12).all() and not (lab[2] == 50).any()


def test_temporal_merge_moves_an_unrelated_label_holding_the_target_id():
    lab = np.zeros((2, 2, 10, 10), np.uint32)
    lab[0, :, 0:3, 0:3] = 4
    lab[1, :, 0:3, 0:3] = 8  # the same object at t=1, under another ID
    lab[1, :, 6:9, 6:9] = 4  # another object that happens to carry ID 4 at t=1
    wc = WorkingCopy(lab)
    op = wc.temporal_merge([(0, 0, 1, 1), (1, 0, 1, 1)])
    nid = op.created[0]
    assert nid == 9 and op.mapping == [[1, 4, 9]]
    assert (lab[1, :, 0:3, 0:3] == 4).all() and (lab[1, :, 6:9, 6:9] == 9).all()
    check_boxes(wc)
    with pytest.raises(ParameterError, match="background"):
        wc.temporal_merge([(0, 0, 1, 1), (1, 0, 5, 5)])


def test_undo_redo_restore_exact_voxels_and_ids_are_never_reused():
    lab = dumbbell(2)
    lab[:, 0, 0, 0:3] = [1, 2, 3]
    start = lab.copy()
    wc = WorkingCopy(lab, original=start.copy())
    wc.merge(0, stroke(0, [(0, 0, 0), (0, 0, 1), (0, 0, 2)]))
    op = wc.split(1, [stroke(1, [(4, 8, 5)]), stroke(1, [(4, 8, 33)])])
    assert op.created == [6]
    after = lab.copy()
    wc.erase(1, stroke(1, [(4, 8, 33)]))
    assert wc.undo().target == 2
    assert (lab == after).all()
    wc.undo()
    wc.undo()
    assert (lab == start).all()
    assert wc.undo() is None
    check_boxes(wc)
    wc.redo()
    wc.redo()
    assert (lab == after).all()
    check_boxes(wc)
    wc.undo()
    # a new split after an undone one gets a fresh ID, not the undone 6
    op = wc.split(1, [stroke(1, [(4, 8, 5)]), stroke(1, [(4, 8, 33)])])
    assert op.created == [7]
    assert wc.redo() is None and wc.redo_stack == []
    types = [o.type for o in wc.operations]
    assert types == ["merge", "split", "erase", "undo", "undo", "undo", "redo", "redo", "undo",
                     "split"]
    assert [o.created_idx for o in wc.operations] == list(range(10))


def test_restore_label_and_region():
    orig = blocks(1)
    lab = orig.copy()
    wc = WorkingCopy(lab, original=orig)
    wc.merge(0, stroke(0, [(3, 5, 2), (3, 5, 7)]))
    wc.erase(0, stroke(0, [(3, 15, 15)]))
    op = wc.restore(0, labels=[2])  # the voxels that were 2 come back
    assert op.labels == [2]
    assert (lab[0, :, 0:10, 5:10] == 2).all() and (lab[0, :, 0:10, 0:5] == 1).all()
    assert not (lab == 3).any()
    op = wc.restore(0, box=(0, 6, 10, 20, 10, 20))
    assert (lab == orig).all()
    check_boxes(wc)
    assert wc.restore(0, box=(0, 6, 10, 20, 10, 20)) is None
    with pytest.raises(ParameterError):
        WorkingCopy(orig.copy()).restore(0, labels=[1])


def test_paint_records_viewer_edits_and_undoes_them():
    lab = blocks(1)
    start = lab.copy()
    wc = WorkingCopy(lab)
    box = (2, 3, 0, 4, 0, 4)
    before = lab[0, 2:3, 0:4, 0:4].copy()
    after = before.copy()
    after[0, 1:3, 1:3] = 77
    lab[0, 2:3, 0:4, 0:4] = after  # napari already painted into the array
    op = wc.paint(0, box, before, after)
    assert op.created == [77] and op.labels == [1, 77] and wc.next_id == 78
    assert (decode_array(op.mask) == after).all()
    assert wc.bbox(0, 77) == (2, 3, 1, 3, 1, 3)
    wc.undo()
    assert (lab == start).all() and wc.bbox(0, 77) is None
    op2 = wc.paint(0, box, before, after)  # not applied yet: applied here
    assert (lab[0, 2:3, 0:4, 0:4] == after).all()
    assert op2.created == []  # 77 was issued before: not new any more
    with pytest.raises(ParameterError, match="neither"):
        wc.paint(0, box, before, np.zeros_like(before))


def test_relabel_applies_a_mapping_at_once():
    lab = blocks(1)
    wc = WorkingCopy(lab)
    op = wc.relabel(0, {1: 2, 2: 1, 3: 0, 4: 100}, weights_id="m1")
    assert op.source == "model" and op.created == [100]
    assert (lab[0, :, 0:10, 0:5] == 2).all() and (lab[0, :, 0:10, 5:10] == 1).all()
    assert not (lab == 3).any() and (lab == 100).sum() == 2 * 10 * 5
    check_boxes(wc)
    assert wc.next_id == 101


def test_review_and_listeners_and_json_round_trip():
    wc = WorkingCopy(blocks(1))
    seen = []
    wc.listeners.append(seen.append)
    op = wc.mark_reviewed(0, (0, 6, 0, 20, 0, 20))
    assert op.type == "review" and seen == [op] and wc.history == []
    m = wc.merge(0, stroke(0, [(3, 5, 2), (3, 5, 7)]))
    d = m.to_json()
    assert d["type"] == "merge" and d["pairs"] == [[1, 2]] and "mask" not in d
    back = Operation.from_json(d)
    assert back.to_json() == d


def test_array_codec_round_trip():
    a = np.arange(60, dtype=np.uint32).reshape(3, 4, 5)
    e = encode_array(a, (0, 3, 0, 4, 0, 5))
    assert e["box"] == [0, 3, 0, 4, 0, 5]
    assert (decode_array(e) == a).all() and decode_array(e).dtype == np.uint32


def test_bad_inputs_are_parameter_errors():
    with pytest.raises(ParameterError, match="labels"):
        WorkingCopy(np.zeros((4, 4, 4), np.uint32))
    with pytest.raises(ParameterError, match="original"):
        WorkingCopy(np.zeros((1, 4, 4, 4), np.uint32), original=np.zeros((1, 4, 4, 3)))
    wc = WorkingCopy(np.zeros((1, 4, 4, 4), np.uint32))
    with pytest.raises(ParameterError, match="t=3"):
        wc.bbox(3, 1)
