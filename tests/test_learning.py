"""Learning from corrections: features, examples from annotations, meta schedule, tracking
and exports, persistence (values known by construction)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from neuroglia5d.annotation import WorkingCopy, annotations_document, make_header
from neuroglia5d.learning.datasets import corrections_from_annotations
from neuroglia5d.learning.examples import CropSpec, Frame
from neuroglia5d.learning.features import (
    LABEL_FEATURES,
    PAIR_FEATURES,
    crop_around,
    crops_at,
    frame_features,
)
from neuroglia5d.learning.meta import MetaController, plateau_step
from neuroglia5d.learning.session import Learner, _frame_after, _union_find
from neuroglia5d.learning.tracking import (
    ctc_tracks,
    link_series,
    tracks_layer_data,
    write_ctc,
    write_geff,
)
from neuroglia5d.learning.train import ExampleSet, balanced_accuracy, choose_threshold

SP = (1.5, 0.5, 0.5)


def two_boxes() -> np.ndarray:
    lab = np.zeros((6, 20, 30), np.uint32)
    lab[1:5, 5:15, 5:15] = 7  # 4 x 10 x 10
    lab[1:5, 5:15, 15:25] = 3  # touching along x: contact 4 x 10 faces
    lab[2:3, 2:3, 27:28] = 9  # one isolated voxel
    return lab


def test_frame_features_known_values() -> None:
    lab = two_boxes()
    inten = np.zeros(lab.shape, np.float32)
    inten[lab > 0] = 100.0
    inten[1:5, 5:15, 14:16] = 20.0  # dim boundary
    ff = frame_features(lab, inten, SP)
    assert ff.ids.tolist() == [3, 7, 9]
    assert ff.volume_vox.tolist() == [400, 400, 1]
    assert ff.label_x.shape == (3, len(LABEL_FEATURES))
    assert ff.pairs.tolist() == [[3, 7]]  # a < b, the isolated voxel touches nothing
    px = ff.pair_x[0]
    assert px.shape == (len(PAIR_FEATURES),)
    contact = 4 * 10 * SP[0] * SP[1]
    assert np.isclose(np.expm1(px[PAIR_FEATURES.index("log_contact_um2")]), contact)
    # boundary darker than the labels' mean
    assert px[PAIR_FEATURES.index("boundary_mean_rel")] < 0.5
    # centroid distance: 10 voxels along x
    assert np.isclose(px[PAIR_FEATURES.index("centroid_dist_um")], 10 * SP[2])
    row = ff.row(9)
    assert ff.label_x[row, LABEL_FEATURES.index("n_neighbours")] == 0
    assert ff.label_x[ff.row(3), LABEL_FEATURES.index("n_neighbours")] == 1


def test_crop_around_pads_and_subsamples() -> None:
    v = np.arange(4 * 8 * 8, dtype=np.float32).reshape(4, 8, 8)
    c = crop_around([v], (0, 0, 0), (2, 4, 4), (1, 2, 2))
    # centre at the corner: the first half of every axis is padding
    assert c.shape == (1, 2, 4, 4)
    assert c[0, 0].sum() == 0
    assert c[0, 1, 2, 2] == v[0, 0, 0]
    assert c[0, 1, 3, 3] == v[0, 2, 2]


def test_crops_at_matches_crop_around_inside_and_across_borders() -> None:
    rng = np.random.default_rng(3)
    inten = rng.random((10, 30, 34)).astype(np.float32)
    lab = rng.integers(0, 5, inten.shape).astype(np.uint32)
    centres = np.array([[5, 15, 17], [0, 0, 0], [9.6, 29.4, 33.5], [4, 8, 30], [-3, 40, 2]])
    got = crops_at([inten, lab], centres, (4, 8, 8), (1, 2, 2))
    assert got[0].shape == (5, 4, 8, 8) and got[1].dtype == lab.dtype
    for i, c in enumerate(centres):
        want = crop_around([inten, lab], c, (4, 8, 8), (1, 2, 2))
        assert np.array_equal(got[0][i], want[0]) and np.array_equal(got[1][i], want[1])


def test_threshold_from_held_out_examples() -> None:
    y = np.array([1] * 20 + [0] * 20)
    low = np.r_[np.full(20, 0.3), np.full(20, 0.05)]  # positives score low but separate
    thr = choose_threshold(y, low)
    assert thr < 0.5 and (low[:20] >= thr).all() and (low[20:] < thr).all()
    few = np.array([1, 0, 0, 0])  # one held-out positive: drawn most of the way to 0.5
    assert 0.45 < choose_threshold(few, np.array([0.3, 0.05, 0.05, 0.05])) < 0.5
    assert choose_threshold(np.zeros(4), np.full(4, 0.9)) == 0.5


def test_frame_after_ops_matches_a_new_measurement() -> None:
    lab = two_boxes()
    lab[1:5, 5:15, 25:28] = 4  # a third box touching 3
    inten = np.where(lab > 0, 100.0, 10.0).astype(np.float32)
    inten[1:5, 5:15, 10:15] = 150.0
    wc = WorkingCopy(lab[None].copy(), original=lab[None], intensity=inten[None],
                     spacing_um=SP)
    fr = Frame(wc.labels[0], inten, SP, copy=False)
    op_e = wc.relabel(0, {9: 0})
    op_m = wc.relabel(0, {4: 3})
    sp_op = wc.split(0, [[[0, 2, 8, 6]], [[0, 2, 8, 13]]])
    assert op_e is not None and op_m is not None and sp_op.created
    got = _frame_after(fr, wc.labels[0], {9: 0}, {4: 3}, [sp_op]).ff
    want = Frame(wc.labels[0], inten, SP).ff
    assert got.ids.tolist() == want.ids.tolist() == sorted([3, 7, *sp_op.created])
    for k in ("volume_vox", "centroid_um", "bbox", "mean_int", "max_int"):
        assert np.allclose(getattr(got, k), getattr(want, k)), k


def test_meta_learns_fewer_steps_and_logs() -> None:
    meta = MetaController(first_steps=300)
    curve = np.exp(-np.arange(300) / 20.0)  # plateau around step ~60
    assert 40 <= plateau_step(curve) <= 90
    d0 = meta.decide("merge", n_examples=100, new_fraction=1.0, warm=False)
    assert d0.steps == 300
    meta.observe("merge", d0, curve, 0.8, n_examples=100, new_fraction=1.0, warm=False)
    d_a = meta.decide("artefact", n_examples=100, new_fraction=1.0, warm=False)
    meta.observe("artefact", d_a, curve, 0.8, n_examples=100, new_fraction=1.0, warm=False)
    d1 = meta.decide("merge", n_examples=120, new_fraction=0.2, warm=True)
    assert d1.steps < 300  # learnt that ~60 steps suffice
    assert len(meta.log) == 3 and "plateau" in meta.log[-1]["reason"]
    again = MetaController.from_json(meta.to_json())
    assert again.log == meta.log


def test_balanced_accuracy_and_union_find() -> None:
    assert balanced_accuracy(np.array([1, 0, 0, 0]), np.array([0.9, 0.1, 0.2, 0.3])) == 1.0
    assert balanced_accuracy(np.array([1, 0, 0, 0]), np.zeros(4)) == 0.5
    assert _union_find([(5, 3), (3, 9), (11, 12)]) == {5: 3, 9: 3, 12: 11}


def _wc_with_ops() -> tuple[WorkingCopy, np.ndarray]:
    """Two timepoints of boxes; the user erases an artefact, merges an over-split
    object, splits a fused one, links an identity, and reviews a region."""
    lab = np.zeros((2, 8, 64, 64), np.uint32)
    for t in range(2):
        lab[t, 2:6, 4:14, 4:14] = 1      # an object
        lab[t, 2:6, 4:14, 14:24] = 2     # over-split half of object 1's neighbour
        lab[t, 2:6, 4:14, 24:34] = 3     # the other half of it
        lab[t, 2:6, 30:50, 4:14] = 4     # fused: two objects
        lab[t, 3:4, 40:42, 40:42] = 5    # artefact
        lab[t, 2:6, 50:60, 40:50] = 6    # a clean object
    lab[1][lab[1] == 6] = 8              # identity broken at t = 1
    inten = np.where(lab > 0, 100, 10).astype(np.float32)
    inten[:, 2:6, 39:41, 4:14] = 30      # the fused label's dim neck
    wc = WorkingCopy(lab.copy(), original=lab, intensity=inten, spacing_um=SP)
    wc.erase(0, [[0, 3, 40, 40]])
    wc.merge(0, [[0, 3, 8, 18], [0, 3, 8, 28]])
    wc.split(0, [[[0, 3, 33, 8]], [[0, 3, 46, 8]]])
    wc.temporal_merge([[0, 3, 55, 45], [1, 3, 55, 45]])
    wc.mark_reviewed(0, [0, 8, 0, 64, 0, 64])
    return wc, lab


def test_examples_from_annotations() -> None:
    wc, lab = _wc_with_ops()
    doc = annotations_document(wc, make_header(wc))
    inten = wc.intensity
    corr = corrections_from_annotations(doc, lab, inten, spec=CropSpec((4, 8, 8)))
    assert corr.counts == {"artefact": 1, "merge": 1, "split": 1, "track": 1}
    art = corr.examples("artefact")
    assert art is not None and art.n_pos == 1 and len(art) > 1
    mer = corr.examples("merge")
    assert mer is not None and mer.n_pos == 1
    # negatives: the split parts and the pairs left apart in the reviewed region
    assert (mer.y == 0).sum() >= 2
    spl = corr.examples("split")
    assert spl is not None and spl.n_pos == 1
    assert len(corr.boundary) == 1 and corr.boundary[0].target.sum() > 0
    trk = corr.examples("track")
    assert trk is not None and trk.n_pos == 1


def test_undone_ops_give_no_examples() -> None:
    wc, lab = _wc_with_ops()
    wc.undo()  # the review
    wc.undo()  # the temporal merge
    doc = annotations_document(wc, make_header(wc))
    corr = corrections_from_annotations(doc, lab, wc.intensity, spec=CropSpec((4, 8, 8)))
    assert corr.counts["track"] == 0


def test_learner_deferral_and_save_load(tmp_path, monkeypatch) -> None:
    rng = np.random.default_rng(0)
    n = 60
    x = rng.normal(size=(n, len(LABEL_FEATURES))).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.float32)
    c = np.zeros((n, 3, 4, 8, 8), np.float32)
    ex = ExampleSet(x, c, y, [f"k{i}" for i in range(n)])
    from neuroglia5d.learning.datasets import Corrections

    corr = Corrections()
    corr.sets["artefact"].append(ex)
    corr.counts["artefact"] = 6
    corr.counts["merge"] = 2
    le = Learner(CropSpec((4, 8, 8)), min_examples=5, seed=1)
    le.meta.first_steps = 80
    rep = le.train(corr)
    assert "artefact" in rep.rounds and rep.rounds["artefact"]["steps"] == 80
    assert "3 more needed" in rep.deferred["merge"]
    p0 = le.models["artefact"].predict_proba(x, c)
    path = le.save(tmp_path / "w.pt")
    assert (tmp_path / "w.json").exists()
    again = Learner.load(path)
    assert again.spec.size == (4, 8, 8)
    assert np.allclose(again.models["artefact"].predict_proba(x, c), p0)
    assert again.weights_id == le.weights_id
    monkeypatch.setenv("NEUROGLIA5D_WEIGHTS", str(tmp_path / "sets"))
    le.save_named("sparse microglia")
    assert Learner.named_sets() == ["sparse microglia"]
    assert Learner.load_named("sparse microglia").weights_id == le.weights_id


def ball(shape: tuple[int, int, int], c: tuple[float, float, float], r: float) -> np.ndarray:
    zz, yy, xx = np.indices(shape)
    return ((zz - c[0]) * 3) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2 <= r * r


def test_link_series_assignment_and_division() -> None:
    shape = (8, 48, 48)
    lab = np.zeros((3, *shape), np.uint32)
    lab[0][ball(shape, (4, 12, 12), 6)] = 1
    lab[0][ball(shape, (4, 34, 34), 8)] = 2
    # t = 1: IDs shuffled, object 1 moved by 2 voxels
    lab[1][ball(shape, (4, 14, 12), 6)] = 5
    lab[1][ball(shape, (4, 34, 34), 8)] = 1
    # t = 2: object 2 divided into two halves
    lab[2][ball(shape, (4, 14, 12), 6)] = 3
    lab[2][ball(shape, (4, 34, 29), 6)] = 4
    lab[2][ball(shape, (4, 34, 39), 6)] = 7
    # cells that do not divide (the default): the second half starts a new track
    one = lab.copy()
    res1 = link_series(one, None, SP, division_p=0.3)
    assert res1.n_divisions == 0 and res1.parents == {}
    halves = {int(one[2][4, 34, 29]), int(one[2][4, 34, 39])}
    assert 2 in halves and len(halves) == 2 and not (halves - {2}) & set(np.unique(one[1]))
    res = link_series(lab, None, SP, divisions=True, division_p=0.3)
    assert set(np.unique(lab[1])) == {0, 1, 2}
    assert lab[1][4, 14, 12] == 1 and lab[1][4, 34, 34] == 2
    assert lab[2][4, 14, 12] == 1
    kids = {int(lab[2][4, 34, 29]), int(lab[2][4, 34, 39])}
    assert 2 in kids and res.n_divisions == 1
    daughter = (kids - {2}).pop()
    assert res.parents == {daughter: 2}
    data, graph = tracks_layer_data(lab, SP, res.parents)
    assert data.shape == (2 + 2 + 3, 5) and graph == {daughter: [2]}


def test_ctc_and_geff_exports(tmp_path) -> None:
    lab = np.zeros((4, 4, 16, 16), np.uint16)
    lab[0, 1:3, 2:6, 2:6] = 1
    lab[1, 1:3, 2:6, 2:6] = 1
    lab[3, 1:3, 2:6, 2:6] = 1  # gap at t = 2: continues as a new track
    lab[1:, 1:3, 10:14, 10:14] = 2
    out, table = ctc_tracks(lab)
    assert table.tolist() == [[1, 0, 1, 0], [2, 1, 3, 0], [3, 3, 3, 1]]
    assert out[3, 1, 3, 3] == 3
    d = write_ctc(tmp_path / "RES", lab)
    assert sorted(p.name for p in d.iterdir())[:2] == ["mask000.tif", "mask001.tif"]
    assert (d / "res_track.txt").read_text().splitlines()[2] == "3 3 3 1"
    import geff

    g = write_geff(tmp_path / "tracks.geff", lab, SP)
    graph, _ = geff.read(str(g))
    assert graph.number_of_nodes() == 1 + 2 + 1 + 2
    assert graph.number_of_edges() == 1 + 2  # 1: t0-t1; 2: t1-t2-t3


def test_ctc_division_mother_ends_before_daughters() -> None:
    lab = np.zeros((4, 4, 16, 16), np.uint16)
    lab[:, 1:3, 2:6, 2:6] = 1  # the mother keeps her ID after dividing at t = 2
    lab[2:, 1:3, 10:14, 10:14] = 5  # the other daughter
    out, table = ctc_tracks(lab, {5: 1})
    assert table.tolist() == [[1, 0, 1, 0], [5, 2, 3, 1], [6, 2, 3, 1]]
    assert out[2, 1, 3, 3] == 6 and out[1, 1, 3, 3] == 1


def test_poor_series_track_breaks() -> None:
    """``p_break``: labels take a new track ID at a frame and keep it afterwards (one
    broken link per break); with 0 the perfect segmentation keeps every ID."""
    from neuroglia5d.learning.simulate import poor_series

    gt = np.zeros((4, 6, 40, 40), np.uint32)
    for k, (y, x) in enumerate([(5, 5), (5, 25), (25, 5), (25, 25)]):
        gt[:, 1:5, y:y + 10, x:x + 10] = k + 1
    raw = (gt > 0).astype(np.uint16) * 500 + 100
    keep = poor_series(gt, raw, (1.0, 1.0, 1.0), 0, p_merge=0, p_split=0, n_artefacts=0)
    ids = [sorted(set(np.unique(keep[t])) - {0}) for t in range(4)]
    assert all(i == ids[0] for i in ids) and len(ids[0]) == 4
    broken = poor_series(gt, raw, (1.0, 1.0, 1.0), 0, p_merge=0, p_split=0,
                         n_artefacts=0, p_break=1.0)
    # every object changes ID at every frame after the first, and the new IDs are new
    seen: set[int] = set()
    for t in range(4):
        now = set(np.unique(broken[t])) - {0}
        assert len(now) == 4 and not (now & seen)
        seen |= now
    # the objects themselves are untouched
    assert np.array_equal(broken > 0, gt > 0)


def test_boundary_model_on_crops_thinner_than_its_blocks() -> None:
    """A label one voxel thick in Y (smaller than the 1x2x2 pooling block): the boundary
    map still comes back at the crop's shape (it used to raise in the pooling)."""
    from neuroglia5d.learning.train import BoundaryModel

    bm = BoundaryModel(seed=0, step=(1, 2, 2))
    for shape in ((3, 1, 9), (1, 1, 1), (2, 5, 1), (4, 6, 8)):
        inp = np.zeros((2, *shape), np.float32)
        inp[1] = 1.0
        p = bm.predict(inp)
        assert p.shape == shape and np.all((p >= 0) & (p <= 1))


def test_meta_noise_is_not_oscillation_and_lr_stays_bounded() -> None:
    """Minibatch noise on a flat loss does not halve the learning rate; a curve that
    really rises again does, but never below a quarter of the default."""
    from neuroglia5d.learning.meta import _oscillates

    rng = np.random.default_rng(0)
    noisy = 0.3 + 0.15 * rng.random(60)  # flat, noisy minibatch losses
    assert not _oscillates(noisy)
    rising = np.concatenate([np.linspace(1.0, 0.2, 40), np.linspace(0.2, 0.6, 40)])
    assert _oscillates(rising)
    meta = MetaController()
    d = meta.decide("merge", n_examples=50, new_fraction=1.0, warm=False)
    for _ in range(6):
        meta.observe("merge", d, rising, 0.7, n_examples=50, new_fraction=0.3, warm=True)
        d = meta.decide("merge", n_examples=50, new_fraction=0.3, warm=True)
    assert d.lr == pytest.approx(meta.default_lr / 4)
    meta2 = MetaController()
    d = meta2.decide("merge", n_examples=50, new_fraction=1.0, warm=False)
    meta2.observe("merge", d, noisy, 0.7, n_examples=50, new_fraction=0.3, warm=True)
    assert meta2.decide("merge", n_examples=50, new_fraction=0.3, warm=True).lr >= \
        meta2.default_lr


def test_meta_follow_up_when_held_out_accuracy_falls() -> None:
    meta = MetaController(first_steps=200)
    d = meta.decide("split", n_examples=100, new_fraction=1.0, warm=False)
    # a fall within the noise of 9 held-out examples (0.5 / 3): no extra round
    assert meta.follow_up("split", d, 0.95, 0.85, n_val=9) is None
    # a clear fall on 100 held-out examples: one more round of first_steps at the default lr
    extra = meta.follow_up("split", d, 0.98, 0.85, n_val=100)
    assert extra is not None and extra.steps == 200 and extra.lr == meta.default_lr
    assert "fell" in meta.log[-1]["reason"]
    assert meta.follow_up("split", d, 0.90, 0.89, n_val=1000) is None
