"""Tests of the synthetic sample generator: values known by construction."""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import tifffile
from scipy import ndimage as ndi

from neuroglia5d.errors import InputError, ParameterError
from neuroglia5d.sample_data import (
    DIFFICULTY,
    DZ_UM,
    KINDS,
    PX_UM,
    Difficulty,
    SampleDataset,
    make_sample,
    read_ground_truth,
    touching_fraction,
    write_sample,
)

SMALL = (4, 24, 128, 128)


@pytest.fixture(scope="module")
def small() -> dict[str, SampleDataset]:
    return {kind: make_sample(kind, shape=SMALL, seed=3) for kind in KINDS}


def _presence(labels: np.ndarray, n: int) -> np.ndarray:
    """(N, T) bool: label i+1 present in frame t."""
    return np.stack(
        [
            np.bincount(labels[t].ravel(), minlength=n + 1)[1 : n + 1] > 0
            for t in range(len(labels))
        ],
        axis=1,
    )


def _border_labels(labels: np.ndarray) -> set[int]:
    out: set[int] = set()
    for vol in labels:
        for face in (vol[0], vol[-1], vol[:, 0], vol[:, -1], vol[:, :, 0], vol[:, :, -1]):
            out |= {int(v) for v in np.unique(face)}
    return out


def test_constants_and_difficulty() -> None:
    assert PX_UM == 0.5
    assert DZ_UM == 1.5
    assert set(DIFFICULTY) == {"nuclei", "microglia"}
    for kind, diff in DIFFICULTY.items():
        assert isinstance(diff, Difficulty)
        assert diff.kind == kind
        assert diff.dz_um / diff.px_um == pytest.approx(3.0)
        assert diff.psf_sigma_z_um / diff.psf_sigma_xy_um == pytest.approx(3.0)
        assert diff.background_e == pytest.approx(10.0)
        with pytest.raises(AttributeError):
            diff.px_um = 1.0  # type: ignore[misc]
    assert DIFFICULTY["microglia"].primary_width_vox == 2
    assert DIFFICULTY["microglia"].secondary_width_vox == 1


@pytest.mark.parametrize("kind", KINDS)
def test_dtypes_and_shapes(small: dict[str, SampleDataset], kind: str) -> None:
    ds = small[kind]
    assert ds.kind == kind
    assert ds.raw.shape == SMALL and ds.raw.dtype == np.uint16
    assert ds.labels.shape == SMALL and ds.labels.dtype == np.uint32
    assert ds.tracks.dtype == np.int64 and ds.tracks.ndim == 2 and ds.tracks.shape[1] == 4
    assert (ds.px_um, ds.dz_um, ds.seed) == (0.5, 1.5, 3)
    assert ds.difficulty is DIFFICULTY[kind]
    n = ds.tracks.shape[0]
    assert n >= 1
    # every object is present at t = 0 and the labels are 1..N
    np.testing.assert_array_equal(np.unique(ds.labels[0]), np.arange(0, n + 1))
    np.testing.assert_array_equal(ds.tracks[:, 0], np.arange(1, n + 1))
    assert (ds.tracks[:, 1] == 0).all() and (ds.tracks[:, 3] == 0).all()
    # the camera offset is 100 ADU and the background ~10 e- at 2 ADU/e-
    bg = ds.raw[0][ds.labels[0] == 0]
    assert 110 <= np.median(bg) <= 135


def test_determinism() -> None:
    shape = (2, 12, 96, 96)
    for kind in KINDS:
        a = make_sample(kind, shape=shape, seed=7)
        b = make_sample(kind, shape=shape, seed=7)
        c = make_sample(kind, shape=shape, seed=8)
        np.testing.assert_array_equal(a.raw, b.raw)
        np.testing.assert_array_equal(a.labels, b.labels)
        np.testing.assert_array_equal(a.tracks, b.tracks)
        assert a.snr == b.snr
        assert not np.array_equal(a.raw, c.raw)
        assert not np.array_equal(a.labels, c.labels)


@pytest.mark.parametrize("kind", KINDS)
def test_labels_consistent_with_tracks(kind: str) -> None:
    # long enough, and small enough, for some objects to drift out of the field
    ds = make_sample(kind, shape=(16, 12, 96, 96), seed=0)
    n = ds.tracks.shape[0]
    present = _presence(ds.labels, n)
    for lab, b, e, p in ds.tracks:
        frames = np.flatnonzero(present[lab - 1])
        assert frames[0] == b == 0
        assert frames[-1] == e
        np.testing.assert_array_equal(frames, np.arange(b, e + 1))  # no gaps
        assert p == 0
    assert ds.labels.max() == n


def test_tracks_end_when_objects_leave() -> None:
    ds = make_sample("nuclei", shape=(20, 12, 64, 64), seed=0)
    assert (ds.tracks[:, 2] < 19).any()


def test_nuclei_touching_and_volume_fraction() -> None:
    ds = make_sample("nuclei", shape=(1, 32, 256, 256), seed=0)
    lab = ds.labels[0]
    n = ds.tracks.shape[0]
    assert n >= 15
    assert 0.1 <= touching_fraction(lab) <= 0.35
    assert 0.06 <= np.count_nonzero(lab) / lab.size <= 0.10
    # sizes: ellipsoids with semi-axes 4–6 µm (XY) and 3–5 µm (Z) are 536–2011 voxels
    sizes = np.bincount(lab.ravel())[1:]
    assert 500 <= np.median(sizes) <= 2100
    assert sizes.max() <= 2200


def test_touching_fraction_helper() -> None:
    lab = np.zeros((3, 10, 10), np.uint32)
    lab[1, 1:3, 1:3] = 1
    lab[1, 3:5, 3:5] = 2  # diagonal contact with 1 (26-connectivity)
    lab[1, 7:9, 7:9] = 3
    assert touching_fraction(lab) == pytest.approx(2 / 3)
    assert touching_fraction(np.zeros((2, 2, 2), np.uint16)) == 0.0


def test_microglia_has_thin_processes() -> None:
    ds = make_sample("microglia", shape=(1, 24, 256, 256), seed=0)
    fg = ds.labels[0] > 0
    square = np.ones((3, 3), bool)
    opened = np.stack([ndi.binary_opening(p, structure=square) for p in fg])
    removed = 1.0 - opened.sum() / fg.sum()
    edt = np.stack([ndi.distance_transform_edt(p) for p in fg])
    thin = float(np.mean(edt[fg] <= 1.0))
    assert removed >= 0.15, removed  # 1–2 voxel wide processes vanish under a 3x3 opening
    assert thin >= 0.30, thin
    # 1-voxel-wide parts: voxels with no foreground neighbour on either side along y or x
    pad = np.pad(fg, ((0, 0), (1, 1), (1, 1)))
    core = pad[:, 1:-1, 1:-1]
    alone_y = core & ~pad[:, :-2, 1:-1] & ~pad[:, 2:, 1:-1]
    alone_x = core & ~pad[:, 1:-1, :-2] & ~pad[:, 1:-1, 2:]
    assert np.count_nonzero(alone_y | alone_x) >= 0.02 * fg.sum()


def test_microglia_processes_change_over_time(small: dict[str, SampleDataset]) -> None:
    ds = small["microglia"]
    n = ds.tracks.shape[0]
    counts = np.stack([np.bincount(v.ravel(), minlength=n + 1)[1:] for v in ds.labels])
    full = ds.tracks[:, 2] == SMALL[0] - 1
    assert full.any()
    assert (counts[:, full].max(axis=0) > counts[:, full].min(axis=0)).all()
    # the processes (what a 3x3 opening in XY removes) grow and shrink
    square = np.ones((1, 3, 3), bool)
    thin = np.stack(
        [
            np.bincount(v[(v > 0) & ~ndi.binary_opening(v > 0, square)], minlength=n + 1)[1:]
            for v in ds.labels
        ]
    )
    spread = thin.max(axis=0) - thin.min(axis=0)
    assert (spread[full] >= 0.2 * thin[:, full].max(axis=0)).any()


def test_nuclei_drift() -> None:
    ds = make_sample("nuclei", shape=SMALL, seed=1)
    n = ds.tracks.shape[0]
    border = _border_labels(ds.labels)
    inner = [i for i in range(1, n + 1) if i not in border]
    assert len(inner) >= 5
    scale = np.array([ds.dz_um, ds.px_um, ds.px_um])
    cents = [np.array(ndi.center_of_mass(v > 0, v, inner)) * scale for v in ds.labels]
    moved = []
    for t in range(SMALL[0] - 1):
        step = np.median(cents[t + 1] - cents[t], axis=0)
        xy = float(np.hypot(step[1], step[2]))
        assert xy <= 1.2
        assert abs(step[0]) <= 0.6
        moved.append(xy)
    assert max(moved) >= 0.3  # the scene drifts
    # the whole-foreground centroid moves too
    whole = [np.array(ndi.center_of_mass(v > 0)) * scale for v in ds.labels]
    assert any(np.hypot(*(whole[t + 1] - whole[t])[1:]) > 0.05 for t in range(SMALL[0] - 1))


def test_motile_nuclei_difficulty() -> None:
    """A Difficulty with a larger per-object jitter: nuclei move relative to each other by
    up to ``jitter_step_um`` between frames (0.3 µm by default)."""
    import dataclasses

    def spread(ds: SampleDataset) -> float:
        border = _border_labels(ds.labels)
        inner = [i for i in range(1, ds.tracks.shape[0] + 1) if i not in border]
        scale = np.array([ds.dz_um, ds.px_um, ds.px_um])
        c0, c1 = (np.array(ndi.center_of_mass(v > 0, v, inner)) * scale
                  for v in ds.labels[:2])
        d = c1 - c0
        d -= np.median(d, axis=0)  # the scene's drift
        return float(np.max(np.linalg.norm(d, axis=1)))

    calm = make_sample("nuclei", shape=SMALL, seed=3)
    motile = make_sample("nuclei", shape=SMALL, seed=3, difficulty=dataclasses.replace(
        DIFFICULTY["nuclei"], jitter_step_um=8.0))
    assert spread(calm) < 1.0
    assert 2.5 < spread(motile) < 9.0
    with pytest.raises(ParameterError, match="difficulty"):
        make_sample("nuclei", shape=SMALL, difficulty=DIFFICULTY["microglia"])


@pytest.mark.parametrize("kind", KINDS)
def test_snr(small: dict[str, SampleDataset], kind: str) -> None:
    ds = small[kind]
    target = DIFFICULTY[kind].target_snr
    assert target - 1.5 <= ds.snr <= target + 1.5
    # objects are brighter than the background in the image itself
    raw0 = ds.raw[0].astype(float)
    fg = ds.labels[0] > 0
    assert raw0[fg].mean() > raw0[~fg].mean() + 20


def _natural_key(p: Path) -> list[int | str]:
    return [int(s) if s.isdigit() else s for s in re.split(r"(\d+)", p.name)]


def test_write_and_read_back(tmp_path: Path) -> None:
    ds = make_sample("nuclei", shape=(11, 3, 32, 40), seed=2)
    paths = write_sample(ds, tmp_path / "out")
    assert paths.root == tmp_path / "out"
    assert not list(paths.root.rglob("*.partial"))

    # one ZYX stack per timepoint, t not zero-padded: natural sort gives time order
    stacks = sorted(paths.stacks.glob("*.tif"), key=_natural_key)
    assert [p.name for p in stacks] == [f"nuclei_t{t}.tif" for t in range(11)]
    for t, p in enumerate(stacks):
        with tifffile.TiffFile(p) as tif:
            np.testing.assert_array_equal(tif.asarray(), ds.raw[t])
            assert tif.is_imagej
            assert tif.imagej_metadata["spacing"] == pytest.approx(1.5)
            assert tif.imagej_metadata["unit"] == "um"
            xres = tif.pages[0].tags["XResolution"].value
            assert xres[0] / xres[1] == pytest.approx(2.0)  # pixels per µm

    planes = sorted(paths.planes.glob("*.tif"))
    assert len(planes) == 11 * 3
    assert planes[0].name == "nuclei_t000_z000.tif"
    back = np.stack([tifffile.imread(p) for p in planes]).reshape(ds.raw.shape)
    np.testing.assert_array_equal(back, ds.raw)

    assert paths.hyperstack.name == "nuclei.ome.tif"
    with tifffile.TiffFile(paths.hyperstack) as tif:
        assert tif.is_ome
        assert tif.series[0].axes == "TZYX"
        np.testing.assert_array_equal(tif.asarray(), ds.raw)
        pixels = tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]["Pixels"]
    assert pixels["PhysicalSizeX"] == pytest.approx(0.5)
    assert pixels["PhysicalSizeY"] == pytest.approx(0.5)
    assert pixels["PhysicalSizeZ"] == pytest.approx(1.5)

    gt = paths.ground_truth
    assert (gt / "SEG" / "man_seg010.tif").is_file()
    assert (gt / "TRA" / "man_track010.tif").is_file()
    assert tifffile.imread(gt / "SEG" / "man_seg000.tif").dtype == np.uint16
    text = (gt / "TRA" / "man_track.txt").read_text().splitlines()
    assert len(text) == ds.tracks.shape[0] and len(text[0].split()) == 4
    labels, tracks = read_ground_truth(gt)
    assert labels.dtype == np.uint32
    np.testing.assert_array_equal(labels, ds.labels)
    np.testing.assert_array_equal(tracks, ds.tracks)

    info = json.loads(paths.info.read_text(encoding="utf-8"))
    assert info["kind"] == "nuclei" and info["seed"] == 2
    assert info["shape"] == [11, 3, 32, 40]
    assert info["n_objects"] == ds.tracks.shape[0]
    assert info["snr"] == pytest.approx(ds.snr)
    assert info["difficulty"] == json.loads(json.dumps(asdict(ds.difficulty)))
    assert 0.0 <= info["touching_fraction_t0"] <= 1.0
    assert 0.0 < info["foreground_fraction_t0"] < 1.0

    # writing again replaces the outputs (custom name, shorter series: no stale files)
    short = make_sample("nuclei", shape=(2, 3, 32, 40), seed=2)
    write_sample(short, tmp_path / "out")
    assert len(list(paths.stacks.glob("*.tif"))) == 2
    named = write_sample(short, tmp_path / "out", name="demo")
    assert named.hyperstack.name == "demo.ome.tif"
    assert (named.stacks / "demo_t1.tif").is_file()


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ParameterError):
        make_sample("cells")
    with pytest.raises(ParameterError):
        make_sample("nuclei", shape=(2, 4, 64))  # type: ignore[arg-type]
    with pytest.raises(ParameterError):
        make_sample("nuclei", shape=(0, 4, 64, 64))
    with pytest.raises(ParameterError):
        make_sample("nuclei", seed=-1)
    with pytest.raises(InputError):
        read_ground_truth(tmp_path)
