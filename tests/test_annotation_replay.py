"""A scripted session of mixed operations, saved, validated and replayed bit for bit."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage as ndi

from neuroglia5d.annotation import (
    Journal,
    WorkingCopy,
    load_annotations,
    make_header,
    ops_from_document,
    pending_operations,
    read_journal,
    replay,
    save_annotations,
    validate_annotations,
    validate_operation,
)
from neuroglia5d.errors import InputError, ParameterError

SP = (1.5, 0.5, 0.5)


def synthetic(T=4, shape=(8, 48, 48), seed=0):
    """Touching blobs (Voronoi cells of random seeds inside a smooth foreground)."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((T, *shape), np.uint32)
    inten = np.zeros((T, *shape), np.float32)
    nxt = 1
    for t in range(T):
        noise = ndi.gaussian_filter(rng.random(shape), (1, 3, 3))
        fg = noise > np.quantile(noise, 0.45)
        seeds = np.zeros(shape, bool)
        idx = rng.choice(fg.sum(), 18, replace=False)
        seeds[tuple(np.argwhere(fg)[idx].T)] = True
        _, ind = ndi.distance_transform_edt(~seeds, return_indices=True)
        ids = np.zeros(shape, np.uint32)
        ids[seeds] = np.arange(nxt, nxt + seeds.sum())
        nxt += int(seeds.sum())
        lab = ids[tuple(ind)]
        lab[~fg] = 0
        labels[t] = lab
        inten[t] = noise * 1000
    return labels, inten


def brush(t, z, y, x, r=2):
    pts = [(t, z, yy, xx) for yy in range(y - r, y + r + 1) for xx in range(x - r, x + r + 1)]
    return np.array(pts)


def run_session(wc: WorkingCopy, rng: np.random.Generator, n_ops: int) -> dict[str, int]:
    """Random mixed operations; returns how many of each type were recorded."""
    T, Z, Y, X = wc.shape
    kinds = ["merge", "merge", "erase", "split", "split", "temporal", "paint", "restore",
             "relabel", "undo", "undo_redo", "review", "merge_z", "erase_z"]
    tries = 0
    while len(wc.operations) < n_ops and tries < 20 * n_ops:
        tries += 1
        kind = kinds[int(rng.integers(len(kinds)))]
        t = int(rng.integers(T))
        fg = np.argwhere(wc.labels[t] > 0)
        if not len(fg):
            continue
        z, y, x = (int(v) for v in fg[int(rng.integers(len(fg)))])
        try:
            if kind in ("merge", "merge_z"):
                wc.merge(t, brush(t, z, y, x, 3), z_lock=kind == "merge_z")
            elif kind in ("erase", "erase_z"):
                wc.erase(t, brush(t, z, y, x, 0), z_lock=kind == "erase_z")
            elif kind == "split":
                lab = int(wc.labels[t, z, y, x])
                vox = np.argwhere(wc.labels[t] == lab)
                if len(vox) < 10:
                    continue
                a, b = vox[0], vox[-1]
                z_lock = bool(rng.integers(2)) and a[0] == b[0]
                wc.split(t, [np.array([[t, *a]]), np.array([[t, *b]])], z_lock=z_lock)
            elif kind == "temporal":
                clicks = []
                for tt in sorted(rng.choice(T, min(3, T), replace=False)):
                    f2 = np.argwhere(wc.labels[tt] > 0)
                    clicks.append((int(tt), *(int(v) for v in f2[int(rng.integers(len(f2)))])))
                wc.temporal_merge(clicks)
            elif kind == "paint":
                box = (z, z + 1, max(y - 3, 0), min(y + 3, Y), max(x - 3, 0), min(x + 3, X))
                before = wc.labels[t, box[0]:box[1], box[2]:box[3], box[4]:box[5]].copy()
                after = before.copy()
                val = wc.next_id if rng.integers(2) else int(wc.labels[t, z, y, x])
                after[0, 1:4, 1:4] = val
                if rng.integers(2):  # the viewer wrote it already
                    wc.labels[t, box[0]:box[1], box[2]:box[3], box[4]:box[5]] = after
                wc.paint(t, box, before, after)
            elif kind == "restore":
                if rng.integers(2):
                    wc.restore(t, labels=[int(wc.labels[t, z, y, x])])
                else:
                    wc.restore(t, box=(0, Z, max(y - 6, 0), y + 6, max(x - 6, 0), x + 6))
            elif kind == "relabel":
                ids = wc.labels_at(t)
                a, b = rng.choice(ids, 2, replace=False)
                wc.relabel(t, {int(a): int(b), int(b): wc.next_id}, weights_id="rng")
            elif kind == "undo":
                wc.undo()
            elif kind == "undo_redo":
                wc.undo()
                wc.undo()
                wc.redo()
            else:
                wc.mark_reviewed(t, (0, Z, 0, Y // 2, 0, X // 2))
        except ParameterError:
            continue
    counts: dict[str, int] = {}
    for op in wc.operations:
        counts[op.type] = counts.get(op.type, 0) + 1
    return counts


def test_scripted_session_replays_bit_for_bit(tmp_path):
    orig, inten = synthetic()
    work = orig.copy()
    jpath = tmp_path / "ds_auto_annotations.jsonl"
    with Journal(jpath) as journal:
        wc = WorkingCopy(work, original=orig, intensity=inten, spacing_um=SP,
                         offset_zyx=(3, 10, 20), journal=journal)
        counts = run_session(wc, np.random.default_rng(1), 70)
    assert len(wc.operations) >= 60
    for kind in ("merge", "split", "erase", "temporal_merge", "paint", "restore", "relabel",
                 "undo", "redo", "review"):
        assert counts.get(kind, 0) >= 1, (kind, counts)
    assert len({op.t for op in wc.operations if op.t is not None}) == 4
    assert not np.array_equal(work, orig)
    # every journal line is a valid op, in order
    lines = read_journal(jpath)
    assert [d["created_idx"] for d in lines] == list(range(len(wc.operations)))
    for d in lines:
        validate_operation(d)
    # save, validate, reload, replay
    lab_file = tmp_path / "ds_labels.bin"
    lab_file.write_bytes(orig.tobytes())
    path = save_annotations(tmp_path / "ds_auto_annotations.json", wc,
                            make_header(wc, files={"labels": lab_file}, stem="ds"))
    doc = load_annotations(path)
    validate_annotations(doc)
    assert doc["header"]["files"]["labels"]["sha256"] is not None
    assert doc["header"]["offset_zyx"] == [3, 10, 20]
    out = replay(doc, orig)
    assert out.dtype == work.dtype
    assert np.array_equal(out, work)
    # the journal alone replays too
    assert np.array_equal(replay({"header": doc["header"], "operations": lines}, orig), work)
    # replay up to an op reproduces that intermediate state only
    assert not np.array_equal(replay(doc, orig, upto=5), work)


def test_merge_pairs_and_sub_labels_are_saved(tmp_path):
    orig = np.zeros((2, 3, 10, 30), np.uint32)
    orig[:, :, 0:5, 0:5] = 12
    orig[:, :, 0:5, 5:10] = 45
    orig[:, :, 0:5, 12:20] = 60
    work = orig.copy()
    wc = WorkingCopy(work, original=orig)
    wc.merge(0, [(0, 1, 2, 3), (0, 1, 2, 7), (0, 1, 2, 14)])
    wc.temporal_merge([(0, 1, 2, 2), (1, 1, 2, 8)])
    doc = json.loads(save_annotations(tmp_path / "a.json", wc, make_header(wc)).read_text())
    m, tm = doc["operations"]
    assert m["pairs"] == [[12, 45]] and m["labels"] == [12, 45, 60]
    assert tm["sub_labels"] == [[12, 45, 60], [45]] and tm["target_id"] == 12
    assert np.array_equal(replay(doc, orig), work)


def test_second_session_continues_the_record(tmp_path):
    orig, inten = synthetic(T=2, seed=3)
    work = orig.copy()
    wc = WorkingCopy(work, original=orig, intensity=inten, spacing_um=SP)
    run_session(wc, np.random.default_rng(5), 20)
    p = save_annotations(tmp_path / "s_auto_annotations.json", wc, make_header(wc))
    doc = load_annotations(p)
    # reopen: the saved working labels plus the earlier ops
    jpath = tmp_path / "s_auto_annotations.jsonl"
    with Journal(jpath) as j:
        wc2 = WorkingCopy(work, original=orig, intensity=inten, spacing_um=SP, journal=j,
                          prior=ops_from_document(doc), next_id=doc["header"]["next_id"])
        assert wc2.next_id >= wc.next_id
        run_session(wc2, np.random.default_rng(6), 40)
    assert wc2.operations[20].created_idx == 20
    pend = pending_operations(jpath, p)
    assert [d["created_idx"] for d in pend] == list(range(20, len(wc2.operations)))
    p2 = save_annotations(tmp_path / "s_auto_annotations.json", wc2, make_header(wc2))
    assert np.array_equal(replay(p2, orig), work)
    assert pending_operations(jpath, p2) == []


def test_torn_journal_line_and_bad_documents(tmp_path):
    j = tmp_path / "x.jsonl"
    j.write_text('{"type": "review", "source": "user", "created_idx": 0, "time": "", '
                 '"z_lock": false, "t": 0, "box": [0,1,0,1,0,1]}\n{"type": "mer')
    assert len(read_journal(j)) == 1
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"schema_version": "1.0", "header": {}, "operations": []}))
    with pytest.raises(InputError, match=r"bad\.json"):
        load_annotations(bad)
    with pytest.raises(ParameterError, match="type"):
        validate_operation({"type": "explode", "source": "user", "created_idx": 0, "time": "",
                            "z_lock": False})
    with pytest.raises(ParameterError):
        validate_operation({"type": "merge", "source": "user", "created_idx": 0, "time": "",
                            "z_lock": False, "t": 0})  # no labels / stroke
    wc = WorkingCopy(np.zeros((1, 2, 2, 2), np.uint32))
    doc = {"schema_version": "1.0", "header": make_header(wc), "operations": []}
    with pytest.raises(InputError, match="shape"):
        replay(doc, np.zeros((2, 2, 2, 2), np.uint32))


def test_cli_replay_writes_the_corrected_labels(tmp_path):
    from neuroglia5d.cli import main
    from neuroglia5d.io.convert import Outputs, load_outputs, write_outputs

    orig, inten = synthetic(T=2, seed=7)
    lab_path = tmp_path / "cl_labels.ome.tif"
    write_outputs(Outputs({"labels": orig}, SP, (0, 0, 0), {}, "cl"), lab_path, "tif")
    work = orig.copy()
    wc = WorkingCopy(work, original=orig, intensity=inten, spacing_um=SP)
    run_session(wc, np.random.default_rng(8), 15)
    ann = save_annotations(tmp_path / "cl_auto_annotations.json", wc,
                           make_header(wc, files={"labels": lab_path}))
    assert main(["replay", str(ann), str(lab_path)]) == 0
    out = tmp_path / "cl_replayed_labels.ome.tif"
    got = np.asarray(load_outputs(out).arrays["labels"])
    assert np.array_equal(got, work)
    other = tmp_path / "o.ome.tif"
    assert main(["replay", str(ann), str(lab_path), "-o", str(other)]) == 0 and other.exists()
    assert main(["replay", str(tmp_path / "missing.json"), str(lab_path)]) == 2
