"""Neuroglancer export: independent read-back (tensorstore, kimimaro/osteoid, navis), CLI,
links and the local server (CORS, ranges). The browser test is in test_neuroglancer_browser.py.
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from neuroglia5d.cli import main
from neuroglia5d.io.convert import load_outputs
from neuroglia5d.neuroglancer import precomputed as pc
from neuroglia5d.processing.stats import read_stats_csv
from neuroglia5d.sample_data import write_sample

from .conftest import sample

ts = pytest.importorskip("tensorstore")


@pytest.fixture(scope="session")
def ng_run(tmp_path_factory):
    """A pipeline run (tif, ome.zarr, ng5d) on a small microglia sample, and its export."""
    from neuroglia5d.neuroglancer.export import export_neuroglancer
    from neuroglia5d.pipeline import segment

    ds = sample("microglia", (2, 24, 160, 160), 5)
    root = tmp_path_factory.mktemp("ng")
    paths = write_sample(ds, root / "data")
    res = segment(paths.hyperstack, root / "out", formats="tif,ome.zarr,ng5d")[0]
    fused = res.out_dir / f"{res.stem}_fused.ng5d"
    exp = export_neuroglancer(fused, root / "out" / "ng")
    return res, fused, exp


def _read_ts(path: Path, scale: int = 0) -> np.ndarray:
    t = ts.open({"driver": "neuroglancer_precomputed", "kvstore": f"file://{path}",
                 "scale_index": scale}).result()
    return np.asarray(t.read().result())[..., 0].transpose(2, 1, 0)  # (x,y,z) -> (z,y,x)


def test_volumes_read_back_bit_exact_with_tensorstore(ng_run):
    _, fused, exp = ng_run
    o = load_outputs(fused)
    lab, img = np.asarray(o.arrays["labels"]), np.asarray(o.arrays["intensity"])
    for t in range(lab.shape[0]):
        d = exp.out_dir / f"t{t:03d}"
        assert np.array_equal(_read_ts(d / "labels"), lab[t])
        assert np.array_equal(_read_ts(d / "image"), img[t])
        info = json.loads((d / "labels" / "info").read_text())
        assert info["scales"][0]["encoding"] == "compressed_segmentation"
        assert info["scales"][0]["resolution"] == [500.0, 500.0, 1500.0]  # nm, x y z
        # coarser label levels hold only labels of the full level (mode, not mean)
        for s in range(1, len(info["scales"])):
            coarse = _read_ts(d / "labels", s)
            assert set(np.unique(coarse)) <= set(np.unique(lab[t]))


def test_every_input_format_exports_the_same_labels(ng_run, tmp_path):
    from neuroglia5d.neuroglancer.export import export_neuroglancer

    res, fused, _ = ng_run
    ref = np.asarray(load_outputs(fused).arrays["labels"])
    for name in (f"{res.stem}_fused.ome.zarr", f"{res.stem}_labels.ome.tif"):
        e = export_neuroglancer(res.out_dir / name, tmp_path / name, meshes=False,
                                skeletons=False)
        assert np.array_equal(_read_ts(e.out_dir / "t001" / "labels"), ref[1])
        # a labels-only file takes its intensity from the fused partner
        assert (e.out_dir / "t000" / "image" / "info").is_file()


def test_downsample_mode_keeps_the_majority_and_thin_objects():
    a = np.zeros((2, 4, 4), np.uint32)
    a[:, :2, :2] = 7                      # block fully 7
    a[0, 2:, :2] = 3                      # 4 of 8 voxels 3, 4 zero: tie -> non-zero
    a[:, :2, 2:] = [[5, 6], [6, 6]]       # 6 wins 6:2
    out = pc.downsample_mode(a, (2, 2, 2))
    assert out.tolist() == [[[7, 6], [3, 0]]]
    assert pc.downsample_mean(np.arange(8, dtype=np.uint16).reshape(2, 2, 2),
                              (2, 2, 2)).tolist() == [[[4]]]  # 3.5 rounds to even


def test_segment_properties_and_centroid_annotations_match_the_statistics(ng_run):
    from neuroglancer.read_precomputed_annotations import AnnotationReader

    res, _, exp = ng_run
    tb = read_stats_csv(res.out_dir / f"{res.stem}_labelStats.csv")
    for t in (0, 1):
        sel = tb["t"] == t
        ids = tb["label"][sel]
        info = json.loads((exp.out_dir / f"t{t:03d}" / "labels" / "segment_properties"
                           / "info").read_text())
        assert info["inline"]["ids"] == [str(i) for i in ids]
        props = {p["id"]: p for p in info["inline"]["properties"]}
        assert np.allclose(props["volume_um3"]["values"], tb["volume_um3"][sel], rtol=1e-6)
        assert props["volume_um3"]["type"] == "number"
        d = exp.out_dir / f"t{t:03d}" / "centroids"
        # record size = what Neuroglancer expects: 3 float32 + 11 four-byte properties
        assert (d / "spatial0" / "0_0_0").stat().st_size == 8 + len(ids) * (12 + 44 + 8)
        r = AnnotationReader(f"file://{d}/")
        for k, lid in enumerate(ids):
            a = r.by_id[int(lid)]
            p = dict(zip([s.id for s in r.properties], a.props, strict=True))
            assert int(p["label"]) == lid
            assert [list(x) for x in a.segments] == [[lid]]  # "segment" relationship
            assert p["volume_um3"] == pytest.approx(tb["volume_um3"][sel][k], rel=1e-6)
            # point: voxel-centred voxel coordinates (x, y, z) of the centroid
            want = [tb["centroid_x_um"][sel][k] / 0.5 + 0.5, tb["centroid_y_um"][sel][k] / 0.5
                    + 0.5, tb["centroid_z_um"][sel][k] / 1.5 + 0.5]
            assert np.allclose(a.point, want, atol=1e-3)


def test_skeletons_parse_with_osteoid_and_swc_with_navis(ng_run):
    import navis
    from osteoid import Skeleton

    _, fused, exp = ng_run
    lab = np.asarray(load_outputs(fused).arrays["labels"][0])
    d = exp.out_dir / "t000"
    ids = [int(i) for i in np.unique(lab) if i]
    info = json.loads((d / "labels" / "skeletons" / "info").read_text())
    for lid in ids:
        s = Skeleton.from_precomputed((d / "labels" / "skeletons" / str(lid)).read_bytes(),
                                      segid=lid, vertex_attributes=info["vertex_attributes"])
        assert len(s.vertices) > 1
        # every vertex (nm, voxel-centred) falls in a voxel of its own label
        vox = np.floor(s.vertices / [500.0, 500.0, 1500.0]).astype(int)  # x y z
        inside = lab[vox[:, 2], vox[:, 1], vox[:, 0]] == lid
        assert inside.mean() >= 0.95
        assert (s.radius > 0).all()
        n = navis.read_swc(str(d / "swc" / f"label_{lid}.swc"))
        assert n.n_nodes == len(s.vertices)
        assert float(n.cable_length) > 5.0  # µm: microglia processes are long


def test_meshes_decode_and_lie_on_their_label(ng_run):
    from neuroglia5d.neuroglancer.meshes import decode_fragment

    _, fused, exp = ng_run
    lab = np.asarray(load_outputs(fused).arrays["labels"][0])
    mdir = exp.out_dir / "t000" / "labels" / "mesh"
    for lid in (int(i) for i in np.unique(lab) if i):
        frags = json.loads((mdir / f"{lid}:0").read_text())["fragments"]
        v, f = decode_fragment((mdir / frags[0]).read_bytes())
        assert len(f) > 10 and f.max() < len(v)
        zz, yy, xx = np.nonzero(lab == lid)
        lo = np.array([xx.min(), yy.min(), zz.min()]) * [500, 500, 1500]
        hi = (np.array([xx.max(), yy.max(), zz.max()]) + 1) * [500, 500, 1500]
        assert (v >= lo - 1).all() and (v <= hi + 1).all()


def test_cli_export_and_errors(ng_run, tmp_path, capsys):
    res, _, _ = ng_run
    out = tmp_path / "e"
    rc = main(["export-neuroglancer", str(res.out_dir / f"{res.stem}_fused.ome.zarr"),
               str(out), "--no-meshes", "--no-skeletons", "-q"])
    assert rc == 0 and (out / "neuroglia5d_ng.json").is_file()
    assert main(["export-neuroglancer", str(tmp_path / "missing.ng5d"), str(tmp_path / "x")]
                ) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing.ng5d" in err[0]
    # never a half-written output, never replacing a folder that is not an export
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("x")
    assert main(["export-neuroglancer", str(res.out_dir), str(tmp_path / "busy")]) == 2
    assert (tmp_path / "busy" / "keep.txt").read_text() == "x"
    assert not (tmp_path / "busy.partial").exists()


def test_ng_link_writes_states_and_urls(ng_run, tmp_path, capsys):
    _, _, exp = ng_run
    assert main(["ng-link", str(exp.out_dir), "--base-url", "https://data.example.org/ds"]) == 0
    links = (exp.out_dir / "links.txt").read_text().split()
    assert len(links) == 2
    st = json.loads(urllib.parse.unquote(links[1].split("#!", 1)[1]))
    assert st == json.loads((exp.out_dir / "state_t001.json").read_text())
    srcs = [layer["source"] for layer in st["layers"]]
    assert srcs == ["precomputed://https://data.example.org/ds/t001/" + n
                    for n in ("image", "labels", "centroids")]
    assert st["dimensions"]["z"] == [1.5e-6, "m"]
    assert main(["ng-link", str(tmp_path), "--base-url", "https://x"]) == 2


def test_server_cors_ranges_client_and_default_link(ng_run):
    from neuroglia5d.neuroglancer.serve import start_server

    _, _, exp = ng_run
    s = start_server(exp.out_dir.parent, port=0)
    try:
        f = exp.out_dir / "t000" / "labels" / "info"
        url = f"{s.data_url}/ng/t000/labels/info"
        with urllib.request.urlopen(url) as r:
            assert r.headers["Access-Control-Allow-Origin"] == "*"
            assert r.read() == f.read_bytes()
        req = urllib.request.Request(url, headers={"Range": "bytes=5-14"})
        with urllib.request.urlopen(req) as r:
            assert r.status == 206 and r.read() == f.read_bytes()[5:15]
            assert r.headers["Content-Range"] == f"bytes 5-14/{f.stat().st_size}"
        for bad in (f"{s.data_url}/%2e%2e/%2e%2e/etc/passwd", f"{s.data_url}/ng/nothing"):
            with pytest.raises(urllib.error.HTTPError):
                urllib.request.urlopen(bad)
        with urllib.request.urlopen(s.viewer_url) as r:
            assert b"<script" in r.read()
        # "/" redirects to the export's first timepoint, whose state the client receives
        # from /events/<name>, with sources pointing at this server
        with urllib.request.urlopen(s.url + "/") as r:
            assert r.url == f"{s.url}/v/ng-t000/" and b"<script" in r.read()
        with urllib.request.urlopen(f"{s.url}/events/ng-t000", timeout=10) as r:
            assert r.headers["Content-Type"] == "text/event-stream"
            msg = json.loads(r.readline().decode().removeprefix("data: "))
        assert msg["k"] == "s"
        assert msg["s"]["layers"][1]["source"] == f"precomputed://{s.data_url}/ng/t000/labels"
    finally:
        s.stop()


def test_kimimaro_skeletons_are_an_alternative(ng_run):
    import navis

    from neuroglia5d.neuroglancer.skeletons import skeletonize_labels, swc_text

    _, fused, _ = ng_run
    lab = np.asarray(load_outputs(fused).arrays["labels"][0])
    sk = skeletonize_labels(lab, (1.5, 0.5, 0.5), offset_zyx=(2, 0, 0))
    assert sorted(sk) == [int(i) for i in np.unique(lab) if i]
    for lid, s in sk.items():
        v = np.round(s.vertices / [1.5, 0.5, 0.5]).astype(int) - [2, 0, 0]
        assert (lab[v[:, 0], v[:, 1], v[:, 2]] == lid).mean() >= 0.95
        n = navis.read_swc(swc_text(s))
        assert n.n_nodes == len(s.vertices)


def test_serve_command_prints_working_links(ng_run):
    import subprocess
    import sys

    _, _, exp = ng_run
    p = subprocess.Popen([sys.executable, "-m", "neuroglia5d.cli", "serve",
                          str(exp.out_dir.parent), "--port", "0"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        while not lines or not lines[-1].startswith("open "):
            line = p.stdout.readline()
            assert line, "serve exited: " + "".join(lines)
            lines.append(line)
        views = [ln.split(": ", 1)[1].split(" ... ") for ln in lines
                 if ln.startswith("export ng")]
        assert len(views) == 1 and views[0][0].endswith("/v/ng-t000/")
        assert views[0][1].strip().endswith("/v/ng-t001/")
        with urllib.request.urlopen(views[0][0]) as r:
            assert b"<script" in r.read()
    finally:
        p.terminate()
        p.wait(timeout=10)


def test_labels_without_a_centre_line_get_their_centroid():
    from neuroglia5d.neuroglancer.skeletons import fill_missing

    lab = np.zeros((4, 6, 6), np.uint32)
    lab[1:3, 2:4, 2:4] = 9  # a 2x2x2 cube: centre at voxel (1.5, 2.5, 2.5)
    out = fill_missing({}, lab, (1.5, 0.5, 0.5), (10, 0, 0))
    assert list(out) == [9] and len(out[9].edges) == 0
    assert np.allclose(out[9].vertices, [[(1.5 + 10) * 1.5, 2.5 * 0.5, 2.5 * 0.5]])
