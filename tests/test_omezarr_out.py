"""Tests of the OME-Zarr series writer: values known by construction, NGFF validity, resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import neuroglia5d
from neuroglia5d.errors import OutputError
from neuroglia5d.io import omezarr_out as oz
from neuroglia5d.io.omezarr_out import (
    OmeZarrSeriesWriter,
    downsample_mean,
    pyramid_levels,
    read_fused_omezarr,
)
from neuroglia5d.io.writers import SeriesMeta, writer_class

zarr = pytest.importorskip("zarr")

SRC = Path(neuroglia5d.__file__).resolve().parents[1]
SMALL = (3, 5, 70, 90)  # one pyramid level
PYR = (3, 5, 300, 300)  # three levels: 300, 150, 75
SPACING = (2.0, 0.4, 0.3)
OFFSET = (1, 10, 20)


def make_meta(shape=SMALL, version=None, dt=None, stem="movie", **kw) -> SeriesMeta:
    options = {} if version is None else {"ngff_version": version}
    return SeriesMeta(stem=stem, shape_tzyx=shape, spacing_um=SPACING, offset_zyx=OFFSET,
                      channel=1, time_interval_s=dt, provenance={"tool": "test", "n": 3},
                      options=options, **kw)


def make_data(shape, seed=0) -> tuple[np.ndarray, np.ndarray]:
    """Random uint16 intensity and uint32 labels (IDs above 65535, many distinct values)."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 65536, size=shape, dtype=np.uint16)
    lab = rng.integers(0, 50, size=shape, dtype=np.uint32)
    lab[lab > 0] += 70000  # IDs > 65535 (would be mangled by any uint16 path)
    lab[..., :3, :3] = 4_000_000_000
    return img, lab


def write_all(out: Path, meta: SeriesMeta, img, lab, ts=None, resume=False):
    w = OmeZarrSeriesWriter(out, meta, resume=resume)
    assert w.completed() == set()
    for t in range(meta.shape_tzyx[0]) if ts is None else ts:
        w.write(t, img[t], lab[t])
    return w


def ref_mean(a: np.ndarray, step_z: int = 1) -> np.ndarray:
    """Block mean by explicit loops over blocks: the mean of the voxels inside, half up."""
    z, y, x = a.shape
    out = np.zeros((-(-z // step_z), -(-y // 2), -(-x // 2)), np.uint16)
    for k in range(out.shape[0]):
        for j in range(out.shape[1]):
            for i in range(out.shape[2]):
                blk = a[k * step_z:(k + 1) * step_z, 2 * j:2 * j + 2, 2 * i:2 * i + 2]
                s, n = int(blk.sum(dtype=np.int64)), blk.size
                out[k, j, i] = (2 * s + n) // (2 * n)
    return out


def mean_tzyx(a: np.ndarray) -> np.ndarray:
    """Reference 2x2 block mean (Z kept) of a (T, Z, Y, X) uint16 array, half up."""
    y, x = a.shape[2:]
    p = np.pad(a.astype(np.int64), [(0, 0), (0, 0), (0, y % 2), (0, x % 2)], mode="edge")
    s = p[:, :, 0::2, 0::2] + p[:, :, 1::2, 0::2] + p[:, :, 0::2, 1::2] + p[:, :, 1::2, 1::2]
    return ((s + 2) // 4).astype(np.uint16)


# --------------------------------------------------------------------------- units


def test_registered_and_module_imports_without_zarr():
    assert writer_class("ome.zarr") is OmeZarrSeriesWriter
    assert OmeZarrSeriesWriter.name == "ome.zarr"
    code = ("import sys, neuroglia5d.io.omezarr_out; "
            "print([m for m in ('zarr', 'numcodecs', 'dask', 'ome_zarr') if m in sys.modules])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(SRC)}, check=True)
    assert r.stdout.strip() == "[]"


def test_pyramid_levels():
    assert pyramid_levels((5, 70, 90)) == [((1, 1, 1), (5, 70, 90))]
    assert pyramid_levels((5, 127, 4000)) == [((1, 1, 1), (5, 127, 4000))]
    assert pyramid_levels((5, 128, 131)) == [((1, 1, 1), (5, 128, 131)),
                                              ((1, 2, 2), (5, 64, 66))]
    assert [s for _f, s in pyramid_levels((5, 300, 301))] == [(5, 300, 301), (5, 150, 151),
                                                              (5, 75, 76)]
    # Z halved only while the level has >= 64 planes; at most 4 levels
    lv = pyramid_levels((129, 2048, 2048))
    assert [f for f, _s in lv] == [(1, 1, 1), (2, 2, 2), (4, 4, 4), (4, 8, 8)]
    assert [s for _f, s in lv] == [(129, 2048, 2048), (65, 1024, 1024), (33, 512, 512),
                                   (33, 256, 256)]


@pytest.mark.parametrize("shape", [(4, 6, 8), (5, 7, 9), (1, 1, 1), (3, 2, 5)])
@pytest.mark.parametrize("step_z", [1, 2])
def test_downsample_mean_matches_block_loop(shape, step_z):
    rng = np.random.default_rng(1)
    a = rng.integers(0, 65536, size=shape, dtype=np.uint16)
    a.flat[0] = 65535
    got = downsample_mean(a, step_z)
    assert got.dtype == np.uint16
    np.testing.assert_array_equal(got, ref_mean(a, step_z))


def test_downsample_mean_rounds_half_up_and_keeps_constant():
    a = np.array([[[1, 2], [1, 2]]], np.uint16)  # mean 1.5
    assert downsample_mean(a).item() == 2
    c = np.full((3, 5, 7), 65535, np.uint16)
    assert (downsample_mean(c, 2) == 65535).all()


def test_bad_ngff_version():
    with pytest.raises(OutputError, match="ngff_version"):
        OmeZarrSeriesWriter(Path("."), make_meta(version="0.6"))
    with pytest.raises(OutputError, match="ngff_version"):
        OmeZarrSeriesWriter(Path("."), make_meta(version="latest"))
    # a number read from a config file is accepted
    w = OmeZarrSeriesWriter(Path("."), make_meta(version=0.5))  # type: ignore[arg-type]
    assert w.zarr_format == 3
    assert OmeZarrSeriesWriter(Path("."), make_meta()).ngff_version == "0.4"


# --------------------------------------------------------------------------- round trip


@pytest.mark.parametrize("version", ["0.4", "0.5"])
@pytest.mark.parametrize("shape", [SMALL, PYR], ids=["small", "pyramid"])
def test_write_finalize_roundtrip(tmp_path, version, shape):
    meta = make_meta(shape, version, dt=2.5)
    img, lab = make_data(shape)
    w = write_all(tmp_path, meta, img, lab)
    part = tmp_path / "movie_fused.ome.zarr.partial"
    assert part.is_dir() and not (tmp_path / "movie_fused.ome.zarr").exists()
    assert (part / oz.PROGRESS_NAME).is_file()
    assert w.completed() == {0, 1, 2}
    paths = w.finalize()
    final = tmp_path / "movie_fused.ome.zarr"
    assert paths == [final] == w.final_paths()
    assert not part.exists() and not (final / oz.PROGRESS_NAME).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["movie_fused.ome.zarr"]
    assert (final / (".zattrs" if version == "0.4" else "zarr.json")).is_file()

    root = zarr.open_group(final, mode="r")
    assert root.metadata.zarr_format == (2 if version == "0.4" else 3)
    n_levels = len(pyramid_levels(shape[1:]))
    assert n_levels == (1 if shape == SMALL else 3)
    i0, o0, w0 = root["0"], root["labels/original/0"], root["labels/working/0"]
    assert (i0.dtype, o0.dtype, w0.dtype) == (np.uint16, np.uint32, np.uint32)
    np.testing.assert_array_equal(i0[:], img)
    np.testing.assert_array_equal(o0[:], lab)
    np.testing.assert_array_equal(w0[:], lab)
    assert i0.chunks == (1, 5, min(shape[2], 256), min(shape[3], 256))
    for a in (i0, o0):
        comp = a.compressors[0]
        if version == "0.4":
            assert comp.codec_id == "blosc" and comp.cname == "zstd" and comp.clevel == 5
            assert comp.shuffle == 2  # bit shuffle
        else:
            assert comp.cname.value == "zstd" and comp.clevel == 5
            assert comp.shuffle.value == "bitshuffle"
            assert a.metadata.dimension_names == ("t", "z", "y", "x")

    if n_levels > 1:
        i1, l1 = root["1"][:], root["labels/original/1"][:]
        assert i1.shape == l1.shape == (3, 5, 150, 150)
        assert root["1"].chunks == (1, 5, 150, 150)
        np.testing.assert_array_equal(i1, mean_tzyx(img))
        np.testing.assert_array_equal(l1, lab[:, :, ::2, ::2])
        np.testing.assert_array_equal(root["labels/working/1"][:], l1)
        assert set(np.unique(l1)) <= set(np.unique(lab))  # no averaging artefacts
        np.testing.assert_array_equal(root["2"][:], mean_tzyx(i1))
        np.testing.assert_array_equal(root["labels/working/2"][:], lab[:, :, ::4, ::4])

    attrs = root.attrs.asdict()
    ome = attrs if version == "0.4" else attrs["ome"]
    if version == "0.5":
        assert ome["version"] == "0.5"
    ms = ome["multiscales"][0]
    assert ms["name"] == "movie"
    assert [a["name"] for a in ms["axes"]] == ["t", "z", "y", "x"]
    assert ms["axes"][0] == {"name": "t", "type": "time", "unit": "second"}
    for lvl, ds in enumerate(ms["datasets"]):
        f = 2**lvl
        scale, trans = (tf[tf["type"]] for tf in ds["coordinateTransformations"])
        assert scale == pytest.approx([2.5, 2.0, 0.4 * f, 0.3 * f])
        assert trans == pytest.approx([0, 2.0, 4.0 + (f - 1) / 2 * 0.4, 6.0 + (f - 1) / 2 * 0.3])
    assert ome["omero"]["channels"][0]["window"]["start"] == int(img.min())
    assert ome["omero"]["channels"][0]["window"]["end"] == int(img.max())
    ng = attrs["neuroglia5d"]
    assert ng["provenance"] == {"tool": "test", "n": 3}
    assert ng["channel"] == 1 and ng["offset_zyx"] == list(OFFSET)
    assert ng["spacing_um"] == list(SPACING)
    lab_attrs = root["labels"].attrs.asdict()
    lab_ome = lab_attrs if version == "0.4" else lab_attrs["ome"]
    assert lab_ome["labels"] == ["original", "working"]
    for name in ("original", "working"):
        la = root[f"labels/{name}"].attrs.asdict()
        la = la if version == "0.4" else la["ome"]
        assert la["image-label"] == {"version": version, "source": {"image": "../../"}}
        assert la["multiscales"][0]["datasets"] == ms["datasets"]
        assert la["multiscales"][0]["axes"] == ms["axes"]

    # read_fused_omezarr
    r = read_fused_omezarr(final)
    np.testing.assert_array_equal(r["intensity"][1], img[1])
    np.testing.assert_array_equal(r["labels_original"][2], lab[2])
    np.testing.assert_array_equal(r["labels_working"][:], lab)
    assert r["spacing_um"] == SPACING and r["offset_zyx"] == OFFSET
    assert r["translate_um"] == pytest.approx((2.0, 4.0, 6.0))
    assert r["provenance"] == {"tool": "test", "n": 3}
    assert r["time_interval_s"] == 2.5 and r["ngff_version"] == version
    assert len(r["intensity_levels"]) == len(r["labels_working_levels"]) == n_levels


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_validates_with_ome_zarr_models(tmp_path, version):
    meta = make_meta(PYR, version)
    img, lab = make_data(PYR, seed=3)
    write_all(tmp_path, meta, img, lab).finalize()
    root = zarr.open_group(tmp_path / "movie_fused.ome.zarr", mode="r")
    if version == "0.4":
        from ome_zarr_models.v04.image import Image
        from ome_zarr_models.v04.image_label import ImageLabel
        from ome_zarr_models.v04.labels import Labels
    else:
        from ome_zarr_models.v05.image import Image
        from ome_zarr_models.v05.image_label import ImageLabel
        from ome_zarr_models.v05.labels import Labels
    image = Image.from_zarr(root)
    attrs = image.attributes if version == "0.4" else image.attributes.ome
    assert len(attrs.multiscales[0].datasets) == 3
    Labels.from_zarr(root["labels"])
    for name in ("original", "working"):
        il = ImageLabel.from_zarr(root[f"labels/{name}"])
        la = il.attributes if version == "0.4" else il.attributes.ome
        assert la.image_label.source.image == "../../"
        assert [a.name for a in la.multiscales[0].axes] == ["t", "z", "y", "x"]


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_reads_with_ome_zarr(tmp_path, version):
    from ome_zarr.format import FormatV04, FormatV05
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Multiscales, Reader

    meta = make_meta(PYR, version)  # no time interval: time axis without unit, scale 1
    img, lab = make_data(PYR, seed=4)
    write_all(tmp_path, meta, img, lab).finalize()
    fmt = FormatV04() if version == "0.4" else FormatV05()
    nodes = list(Reader(parse_url(tmp_path / "movie_fused.ome.zarr", fmt=fmt))())
    image = nodes[0]
    assert image.load(Multiscales) is not None
    assert len(image.metadata["axes"]) == 4
    assert image.metadata["axes"][0] == {"name": "t", "type": "time"}
    scale, trans = image.metadata["coordinateTransformations"][0]
    assert scale["scale"] == pytest.approx([1.0, *SPACING])
    assert trans["translation"] == pytest.approx([0.0, *meta.translate_um])
    assert len(image.data) == 3
    np.testing.assert_array_equal(np.asarray(image.data[0][2]), img[2])
    labels = {n.metadata["name"]: n for n in nodes if n.load(Label) is not None}
    assert set(labels) == {"original", "working"}
    for n in labels.values():
        assert len(n.metadata["axes"]) == 4
        np.testing.assert_array_equal(np.asarray(n.data[1][0]), lab[0, :, ::2, ::2])


# --------------------------------------------------------------------------- resume, crash


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_resume_after_dropped_writer(tmp_path, version):
    meta = make_meta(PYR, version)
    img, lab = make_data(PYR, seed=5)
    w = write_all(tmp_path, meta, img, lab, ts=[0, 1])
    del w  # crash: no finalize, no abort
    w2 = OmeZarrSeriesWriter(tmp_path, meta, resume=True)
    assert w2.completed() == {0, 1}
    got_i, got_l = w2.read_timepoint(1)
    assert got_i.dtype == np.uint16 and got_l.dtype == np.uint32
    np.testing.assert_array_equal(got_i, img[1])
    np.testing.assert_array_equal(got_l, lab[1])
    with pytest.raises(OutputError, match="timepoint 2"):
        w2.read_timepoint(2)
    w2.write(2, img[2], lab[2])
    w2.finalize()
    r = read_fused_omezarr(tmp_path / "movie_fused.ome.zarr")
    np.testing.assert_array_equal(r["intensity"][:], img)
    np.testing.assert_array_equal(r["labels_original"][:], lab)
    np.testing.assert_array_equal(r["labels_working"][:], lab)
    np.testing.assert_array_equal(r["labels_working_levels"][1][:], lab[:, :, ::2, ::2])


def test_no_resume_discards_partial(tmp_path):
    meta = make_meta()
    img, lab = make_data(SMALL)
    write_all(tmp_path, meta, img, lab, ts=[0, 1]).abort()
    part = tmp_path / "movie_fused.ome.zarr.partial"
    assert part.is_dir()
    w = OmeZarrSeriesWriter(tmp_path, meta, resume=False)
    assert w.completed() == set()
    with pytest.raises(OutputError, match="not complete"):
        w.read_timepoint(0)
    prog = json.loads((part / oz.PROGRESS_NAME).read_text())
    assert prog["completed"] == [] and prog["shape_tzyx"] == list(SMALL)
    assert zarr.open_group(part, mode="r")["0"][0].max() == 0  # old data gone


def test_resume_without_partial_starts_fresh(tmp_path):
    w = OmeZarrSeriesWriter(tmp_path, make_meta(), resume=True)
    assert w.completed() == set()


def test_resume_partial_without_progress_starts_fresh(tmp_path):
    part = tmp_path / "movie_fused.ome.zarr.partial"
    (part / "0").mkdir(parents=True)  # creation died before the progress record
    (part / "0" / "junk").write_bytes(b"x")
    w = OmeZarrSeriesWriter(tmp_path, make_meta(), resume=True)
    assert w.completed() == set()
    assert not (part / "0" / "junk").exists()


def test_abort_keeps_partial_and_writer_reopens_it(tmp_path):
    img, lab = make_data(SMALL)
    w = write_all(tmp_path, make_meta(), img, lab, ts=[0, 1])
    w.abort()
    assert (tmp_path / "movie_fused.ome.zarr.partial").is_dir()
    assert w.completed() == {0, 1}  # same writer: reopened, not restarted
    w.write(2, img[2], lab[2])
    w.finalize()
    assert w.finalize() == [tmp_path / "movie_fused.ome.zarr"]  # idempotent
    np.testing.assert_array_equal(
        read_fused_omezarr(tmp_path / "movie_fused.ome.zarr")["intensity"][:], img)


def test_resume_shape_mismatch(tmp_path):
    img, lab = make_data(SMALL)
    write_all(tmp_path, make_meta(), img, lab, ts=[0])
    other = make_meta((4, 5, 70, 90))
    w = OmeZarrSeriesWriter(tmp_path, other, resume=True)
    with pytest.raises(OutputError, match=r"different run.*--out elsewhere or remove it"):
        w.completed()
    assert (tmp_path / "movie_fused.ome.zarr.partial" / oz.PROGRESS_NAME).is_file()


def test_finalize_with_missing_timepoints(tmp_path):
    img, lab = make_data(SMALL)
    w = write_all(tmp_path, make_meta(), img, lab, ts=[0, 2])
    with pytest.raises(OutputError, match="1 of 3 timepoints missing"):
        w.finalize()
    assert (tmp_path / "movie_fused.ome.zarr.partial").is_dir()
    assert not (tmp_path / "movie_fused.ome.zarr").exists()
    w.write(1, img[1], lab[1])
    w.finalize()
    assert (tmp_path / "movie_fused.ome.zarr").is_dir()


def test_rewrite_timepoint_and_write_checks(tmp_path):
    img, lab = make_data(SMALL)
    w = write_all(tmp_path, make_meta(), img, lab)
    w.write(1, img[0], lab[0])
    np.testing.assert_array_equal(w.read_timepoint(1)[1], lab[0])
    w.write(1, img[1].astype(np.int32), lab[1].astype(np.int64))  # integer types accepted
    np.testing.assert_array_equal(w.read_timepoint(1)[0], img[1])
    with pytest.raises(ValueError, match="shape"):
        w.write(0, img[0, :2], lab[0])
    with pytest.raises(ValueError, match="range"):
        w.write(0, img[0], lab[0].astype(np.int64) - 1)
    with pytest.raises(ValueError, match="out of range"):
        w.write(3, img[0], lab[0])


def test_old_finished_store_untouched_until_finalize(tmp_path):
    meta = make_meta()
    img, lab = make_data(SMALL, seed=7)
    write_all(tmp_path, meta, img, lab).finalize()
    final = tmp_path / "movie_fused.ome.zarr"
    before = {p.relative_to(final): p.read_bytes() for p in final.rglob("*") if p.is_file()}

    img2, lab2 = make_data(SMALL, seed=8)
    w = write_all(tmp_path, meta, img2, lab2, ts=[0, 1])
    w.write(2, img2[2], lab2[2])
    after = {p.relative_to(final): p.read_bytes() for p in final.rglob("*") if p.is_file()}
    assert after == before
    np.testing.assert_array_equal(read_fused_omezarr(final)["labels_working"][:], lab)
    w.finalize()
    r = read_fused_omezarr(final)
    np.testing.assert_array_equal(r["intensity"][:], img2)
    np.testing.assert_array_equal(r["labels_original"][:], lab2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["movie_fused.ome.zarr"]


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_kill_9_keeps_recorded_timepoints(tmp_path, version):
    meta = make_meta(PYR, version)
    img, lab = make_data(PYR, seed=9)
    np.save(tmp_path / "img.npy", img)
    np.save(tmp_path / "lab.npy", lab)
    out = tmp_path / "out"
    code = textwrap.dedent(f"""
        import os
        from pathlib import Path
        import numpy as np
        from neuroglia5d.io.omezarr_out import OmeZarrSeriesWriter
        from neuroglia5d.io.writers import SeriesMeta
        img = np.load({str(tmp_path / "img.npy")!r})
        lab = np.load({str(tmp_path / "lab.npy")!r})
        meta = SeriesMeta(stem="movie", shape_tzyx={PYR!r}, spacing_um={SPACING!r},
                          offset_zyx={OFFSET!r}, options={{"ngff_version": {version!r}}})
        w = OmeZarrSeriesWriter(Path({str(out)!r}), meta)
        w.write(0, img[0], lab[0])
        w.write(1, img[1], lab[1])
        os.kill(os.getpid(), 9)
    """)
    r = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(SRC)},
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == -9, r.stderr
    assert not (out / "movie_fused.ome.zarr").exists()
    w = OmeZarrSeriesWriter(out, meta, resume=True)
    assert w.completed() == {0, 1}
    for t in (0, 1):
        got_i, got_l = w.read_timepoint(t)
        np.testing.assert_array_equal(got_i, img[t])
        np.testing.assert_array_equal(got_l, lab[t])
    w.write(2, img[2], lab[2])
    w.finalize()
    res = read_fused_omezarr(out / "movie_fused.ome.zarr")
    np.testing.assert_array_equal(res["intensity"][:], img)
    np.testing.assert_array_equal(res["labels_working"][:], lab)
    np.testing.assert_array_equal(res["intensity_levels"][1][:], mean_tzyx(img))
