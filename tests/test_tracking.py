"""The baseline linker keeps identities over time."""

from __future__ import annotations

import numpy as np

from neuroglia5d.processing.tracking import LinkState, link_frame

SP = (1.0, 1.0, 1.0)


def frame(objs, shape=(5, 60, 60)):
    lab = np.zeros(shape, np.uint32)
    for lid, (y, x) in objs.items():
        lab[1:4, y - 3:y + 4, x - 3:x + 4] = lid
    return lab


def test_moving_objects_keep_their_ids_and_new_ones_get_max_plus_one():
    st = LinkState()
    f0, _ = link_frame(frame({1: (10, 10), 2: (30, 30), 3: (50, 10)}), st, SP, max_dist_um=8)
    assert sorted(np.unique(f0))[1:] == [1, 2, 3]
    # next frame: segmentation numbers differ, everything drifted by 2 voxels, 3 vanished,
    # a new object appeared
    _, mapping = link_frame(frame({5: (12, 12), 4: (32, 32), 9: (20, 50)}), st, SP,
                             max_dist_um=8)
    assert mapping[5] == 1 and mapping[4] == 2
    assert mapping[9] == 4  # never reuses 3
    # frame 2: object 3 does not come back with its old id
    _, mapping = link_frame(frame({1: (14, 14), 2: (50, 10)}), st, SP, max_dist_um=8)
    assert mapping[1] == 1
    assert mapping[2] == 5


def test_fast_drift_is_linked_by_distance_and_then_compensated():
    st = LinkState()
    link_frame(frame({1: (10, 10), 2: (40, 40)}), st, SP, max_dist_um=12)
    # a 9-voxel jump: no overlap (objects are 7 wide), linked by distance
    _, m = link_frame(frame({1: (19, 10), 2: (49, 40)}), st, SP, max_dist_um=12)
    assert m == {1: 1, 2: 2}
    assert np.allclose(st.drift_um, [0, 9, 0])
    # the next jump of the same size overlaps again once the drift is compensated
    _, m = link_frame(frame({7: (28, 10), 8: (58 - 3, 40)}), st, SP, max_dist_um=12)
    assert m[7] == 1 and m[8] == 2
