"""Tests of the raw TIFF inputs: the three dataset layouts, axes, metadata and bad files.

Every array is known by construction: frames filled with their own timepoint number (so
a wrong order shows), arrays written with ``tifffile`` and compared voxel for voxel, and
one generated sample written in all three layouts.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import tifffile

from neuroglia5d.errors import InputError
from neuroglia5d.io.datasets import (
    DATASET_TYPES,
    detect_dataset_type,
    natural_key,
    open_dataset,
    sha256_file,
    stem_of,
)
from neuroglia5d.sample_data import make_sample, write_sample

RNG = np.random.default_rng(11)


def _one_line(exc: pytest.ExceptionInfo[BaseException], *names: str) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and msg.strip() == msg, msg
    for n in names:
        assert n in msg, (n, msg)
    return msg


def _truncate(path: Path, n: int) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:-n])


def _tpz_movie(t: int, z: int, y: int = 6, x: int = 7, c: int | None = None) -> np.ndarray:
    """(T, Z, [C,] Y, X) uint16 whose value encodes t, z (and c): 1000 t + 10 z + c."""
    shape = (t, z, y, x) if c is None else (t, z, c, y, x)
    a = np.zeros(shape, np.uint16)
    a += (1000 * np.arange(t)).reshape((t,) + (1,) * (len(shape) - 1)).astype(np.uint16)
    a += (10 * np.arange(z)).reshape((1, z) + (1,) * (len(shape) - 2)).astype(np.uint16)
    if c is not None:
        a += np.arange(c).reshape(1, 1, c, 1, 1).astype(np.uint16)
    return a


# --------------------------------------------------------------------------- basics
def test_natural_key_orders_numbers_numerically() -> None:
    names = ["img_t10.tif", "img_t2.tif", "img_t1.tif", "IMG_t11.tif", "img_t0.tif"]
    assert sorted(names, key=natural_key) == ["img_t0.tif", "img_t1.tif", "img_t2.tif",
                                              "img_t10.tif", "IMG_t11.tif"]


@pytest.mark.parametrize(
    ("name", "stem"),
    [("movie.ome.tif", "movie"), ("movie.OME.TIFF", "movie"), ("a.b.tif", "a.b"),
     ("stack.tiff", "stack"), ("folder", "folder"), ("run_01", "run_01")],
)
def test_stem_of(name: str, stem: str) -> None:
    assert stem_of(Path("/data") / name) == stem


# --------------------------------------------------------------------------- three layouts
@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory):
    ds = make_sample("nuclei", shape=(3, 8, 32, 40), seed=5)
    paths = write_sample(ds, tmp_path_factory.mktemp("sample"))
    return ds, paths


def test_three_layouts_of_one_sample_read_back_identical(sample) -> None:
    ds, paths = sample
    opened = {
        "stacks": open_dataset(paths.stacks),
        "planes": open_dataset(paths.planes),
        "hyperstack": open_dataset(paths.hyperstack),
    }
    for kind, d in opened.items():
        assert d.kind == kind, d.description
        assert d.shape == (3, 1, 8, 32, 40)
        assert d.dtype == np.uint16
        assert d.n_timepoints == 3 and d.n_channels == 1
        assert d.timepoint_nbytes == 8 * 32 * 40 * 2
        for t in range(3):
            np.testing.assert_array_equal(d.read_timepoint(t)[0], ds.raw[t])
    assert opened["stacks"].stem == "nuclei_stacks"
    assert opened["planes"].stem == "nuclei_planes"
    assert opened["hyperstack"].stem == "nuclei"
    assert len(opened["stacks"].files) == 3
    assert len(opened["planes"].files) == 3 * 8
    assert opened["hyperstack"].files == [paths.hyperstack]
    # voxel size from metadata: ImageJ (stacks), OME (hyperstack); planes carry no spacing
    assert opened["stacks"].px_um == pytest.approx(0.5)
    assert opened["stacks"].dz_um == pytest.approx(1.5)
    assert opened["hyperstack"].px_um == pytest.approx(0.5)
    assert opened["hyperstack"].dz_um == pytest.approx(1.5)
    assert opened["planes"].px_um == pytest.approx(0.5)
    assert opened["planes"].dz_um is None
    with pytest.raises(IndexError):
        opened["stacks"].read_timepoint(3)
    with pytest.raises(IndexError):
        opened["hyperstack"].read_timepoint(-1)


def test_detection_is_reported_and_explicit_type_is_honoured(sample) -> None:
    _, paths = sample
    assert detect_dataset_type(paths.stacks) == "stacks"
    assert detect_dataset_type(paths.planes) == "planes"
    assert detect_dataset_type(paths.hyperstack) == "hyperstack"
    d = open_dataset(paths.stacks)
    assert "'stacks' (detected)" in d.description and str(paths.stacks) in d.description
    d = open_dataset(paths.stacks, "stacks")
    assert "'stacks' (as given)" in d.description
    d = open_dataset(paths.hyperstack, "hyperstack")
    assert "'hyperstack' (as given)" in d.description
    assert set(DATASET_TYPES) == {"auto", "stacks", "planes", "hyperstack"}


def test_explicit_type_that_does_not_fit_is_an_error(sample) -> None:
    _, paths = sample
    with pytest.raises(InputError) as exc:
        open_dataset(paths.stacks, "hyperstack")
    _one_line(exc, str(paths.stacks), "hyperstack")
    with pytest.raises(InputError) as exc:
        open_dataset(paths.hyperstack, "stacks")
    _one_line(exc, str(paths.hyperstack), "stacks")
    with pytest.raises(InputError) as exc:
        open_dataset(paths.stacks, "planes")  # each file is a z-stack, not a plane
    _one_line(exc, "nuclei_t0.tif", "2D plane")
    with pytest.raises(InputError) as exc:
        open_dataset(paths.stacks, "movie")
    _one_line(exc, "--dataset-type", "'movie'")


def test_checksums_are_sha256_of_every_file(sample) -> None:
    _, paths = sample
    d = open_dataset(paths.planes)
    sums = d.checksums()
    assert len(sums) == 24
    for f in d.files:
        assert sums[str(f)] == hashlib.sha256(f.read_bytes()).hexdigest()
        assert sha256_file(f, chunk=100) == sums[str(f)]


# --------------------------------------------------------------------------- natural sort
def test_stacks_natural_sort(tmp_path: Path) -> None:
    movie = _tpz_movie(12, 3)
    folder = tmp_path / "run"
    folder.mkdir()
    for t in range(12):  # t not zero-padded: plain sorting would put t10 before t2
        tifffile.imwrite(folder / f"run_t{t}.tif", movie[t], imagej=True,
                         metadata={"axes": "ZYX"})
    (folder / "notes.txt").write_text("not an image")
    d = open_dataset(folder)
    assert d.kind == "stacks" and d.shape == (12, 1, 3, 6, 7)
    assert [f.name for f in d.files] == [f"run_t{t}.tif" for t in range(12)]
    for t in range(12):
        np.testing.assert_array_equal(d.read_timepoint(t)[0], movie[t])


def test_planes_natural_sort_by_t_and_z_tokens(tmp_path: Path) -> None:
    movie = _tpz_movie(11, 12)
    folder = tmp_path / "planes"
    folder.mkdir()
    for t in range(11):
        for z in range(12):
            tifffile.imwrite(folder / f"cell_t{t}_z{z}.tif", movie[t, z])
    d = open_dataset(folder)
    assert d.kind == "planes" and d.shape == (11, 1, 12, 6, 7)
    for t in (0, 2, 9, 10):
        np.testing.assert_array_equal(d.read_timepoint(t)[0], movie[t])


def test_planes_name_pattern(tmp_path: Path) -> None:
    movie = _tpz_movie(11, 3)
    folder = tmp_path / "exp7"
    folder.mkdir()
    for t in range(11):
        for z in range(3):
            tifffile.imwrite(folder / f"img_{t}-{z}.tif", movie[t, z])
    tifffile.imwrite(folder / "dark_frame.tif", np.zeros((6, 7), np.uint16))  # ignored
    d = open_dataset(str(folder / "img_{t}-{z}.tif"))
    assert d.kind == "planes" and d.shape == (11, 1, 3, 6, 7)
    assert d.stem == "exp7"
    for t in range(11):
        np.testing.assert_array_equal(d.read_timepoint(t)[0], movie[t])
    assert all("dark" not in f.name for f in d.files)


def test_planes_in_one_sub_folder_per_timepoint(tmp_path: Path) -> None:
    movie = _tpz_movie(11, 2)
    for t in range(11):
        sub = tmp_path / "tl" / f"tp{t}"
        sub.mkdir(parents=True)
        for z in range(2):
            tifffile.imwrite(sub / f"plane{z}.tif", movie[t, z])
    d = open_dataset(tmp_path / "tl")
    assert d.kind == "planes" and d.shape == (11, 1, 2, 6, 7)
    for t in range(11):
        np.testing.assert_array_equal(d.read_timepoint(t)[0], movie[t])


def test_planes_with_channels(tmp_path: Path) -> None:
    movie = _tpz_movie(2, 3, c=2)  # T Z C Y X
    for axes_meta in (True, False):
        folder = tmp_path / f"cyx_{axes_meta}"
        folder.mkdir()
        for t in range(2):
            for z in range(3):
                if axes_meta:
                    tifffile.imwrite(folder / f"p_t{t}_z{z}.tif", movie[t, z], imagej=True,
                                     metadata={"axes": "CYX"})
                else:  # no axes in the file: a plane's leading axis is its channels
                    tifffile.imwrite(folder / f"p_t{t}_z{z}.tif", movie[t, z],
                                     photometric="minisblack")
        d = open_dataset(folder)
        assert d.shape == (2, 2, 3, 6, 7), axes_meta
        for t in range(2):
            np.testing.assert_array_equal(d.read_timepoint(t), movie[t].transpose(1, 0, 2, 3))
        d = open_dataset(folder, channel_axis=0)
        np.testing.assert_array_equal(d.read_timepoint(1), movie[1].transpose(1, 0, 2, 3))


def test_stacks_with_channels(tmp_path: Path) -> None:
    movie = _tpz_movie(3, 4, c=2)  # T Z C Y X
    folder = tmp_path / "mc"
    folder.mkdir()
    for t in range(3):
        tifffile.imwrite(folder / f"mc_t{t}.tif", movie[t], imagej=True,
                         resolution=(1 / 0.25, 1 / 0.25),
                         metadata={"axes": "ZCYX", "spacing": 0.8, "unit": "um"})
    d = open_dataset(folder)
    assert d.kind == "stacks" and d.shape == (3, 2, 4, 6, 7)
    assert d.px_um == pytest.approx(0.25) and d.dz_um == pytest.approx(0.8)
    for t in range(3):
        np.testing.assert_array_equal(d.read_timepoint(t), movie[t].transpose(1, 0, 2, 3))


# --------------------------------------------------------------------------- hyperstacks
def test_imagej_hyperstack_tzcyx_with_voxel_size(tmp_path: Path) -> None:
    movie = _tpz_movie(3, 4, c=2)  # T Z C Y X
    f = tmp_path / "hs.tif"
    tifffile.imwrite(f, movie, imagej=True, resolution=(1 / 0.4, 1 / 0.4),
                     metadata={"axes": "TZCYX", "spacing": 2.0, "unit": "um"})
    d = open_dataset(f)
    assert d.kind == "hyperstack" and d.shape == (3, 2, 4, 6, 7) and d.stem == "hs"
    assert d.px_um == pytest.approx(0.4) and d.dz_um == pytest.approx(2.0)
    for t in range(3):
        np.testing.assert_array_equal(d.read_timepoint(t), movie[t].transpose(1, 0, 2, 3))


@pytest.mark.parametrize("axes", ["TCZYX", "TZYX", "CZYX", "ZYX", "TYX"])
def test_ome_tiff_any_of_t_z_c(tmp_path: Path, axes: str) -> None:
    sizes = {"T": 3, "C": 2, "Z": 4, "Y": 6, "X": 7}
    shape = tuple(sizes[a] for a in axes)
    arr = RNG.integers(0, 4000, shape, dtype=np.uint16)
    f = tmp_path / "m.ome.tif"
    tifffile.imwrite(f, arr, ome=True, photometric="minisblack",
                     metadata={"axes": axes, "PhysicalSizeX": 0.3, "PhysicalSizeY": 0.3,
                               "PhysicalSizeZ": 1.7})
    d = open_dataset(f)
    want = tuple(sizes[a] if a in axes else 1 for a in "TCZYX")
    assert d.shape == want and d.stem == "m"
    assert d.px_um == pytest.approx(0.3)
    full = arr  # the axes present are in TCZYX order: insert the missing ones
    for a in "TCZ":
        if a not in axes:
            full = np.expand_dims(full, "TCZ".index(a))
    for t in range(want[0]):
        np.testing.assert_array_equal(d.read_timepoint(t), full[t])


def test_ome_physical_size_in_nanometres(tmp_path: Path) -> None:
    f = tmp_path / "nm.ome.tif"
    tifffile.imwrite(f, np.ones((2, 3, 4, 5), np.uint16), ome=True,
                     metadata={"axes": "TZYX", "PhysicalSizeX": 250.0,
                               "PhysicalSizeXUnit": "nm", "PhysicalSizeZ": 2000.0,
                               "PhysicalSizeZUnit": "nm"})
    d = open_dataset(f)
    assert d.px_um == pytest.approx(0.25) and d.dz_um == pytest.approx(2.0)


def test_no_metadata_means_no_voxel_size(tmp_path: Path) -> None:
    f = tmp_path / "plain.tif"
    tifffile.imwrite(f, np.ones((4, 5, 6), np.uint16), photometric="minisblack")
    d = open_dataset(f)
    assert d.shape == (1, 1, 4, 5, 6)
    assert d.px_um is None and d.dz_um is None


# --------------------------------------------------------------------------- explicit axes
@pytest.fixture
def plain_tczyx(tmp_path: Path) -> tuple[Path, np.ndarray]:
    arr = RNG.integers(0, 60000, (3, 2, 4, 6, 7), dtype=np.uint16)  # T C Z Y X
    f = tmp_path / "plain5d.tif"
    tifffile.imwrite(f, arr, photometric="minisblack")  # no axes in the file
    return f, arr


def test_axes_are_needed_when_the_file_has_none(plain_tczyx) -> None:
    f, _ = plain_tczyx
    with pytest.raises(InputError) as exc:
        open_dataset(f)
    _one_line(exc, str(f), "--axes")


@pytest.mark.parametrize("axes", ["TCZYX", "tczyx"])
def test_explicit_axes_string(plain_tczyx, axes: str) -> None:
    f, arr = plain_tczyx
    d = open_dataset(f, axes=axes)
    assert d.shape == (3, 2, 4, 6, 7)
    for t in range(3):
        np.testing.assert_array_equal(d.read_timepoint(t), arr[t])


def test_explicit_axes_other_order(tmp_path: Path) -> None:
    arr = RNG.integers(0, 60000, (4, 3, 2, 6, 7), dtype=np.uint16)  # Z T C Y X
    f = tmp_path / "ztc.tif"
    tifffile.imwrite(f, arr, photometric="minisblack")
    d = open_dataset(f, axes="ZTCYX")
    assert d.shape == (3, 2, 4, 6, 7)
    for t in range(3):
        np.testing.assert_array_equal(d.read_timepoint(t), arr[:, t].transpose(1, 0, 2, 3))


@pytest.mark.parametrize(("z_axis", "channel_axis"), [(2, 1), (-3, -4)])
def test_z_and_channel_axis_numbers(plain_tczyx, z_axis: int, channel_axis: int) -> None:
    f, arr = plain_tczyx
    d = open_dataset(f, z_axis=z_axis, channel_axis=channel_axis)
    assert d.shape == (3, 2, 4, 6, 7)
    for t in range(3):
        np.testing.assert_array_equal(d.read_timepoint(t), arr[t])


def test_z_axis_on_stacks(tmp_path: Path) -> None:
    movie = _tpz_movie(3, 4, c=2).transpose(0, 2, 1, 3, 4)  # T C Z Y X
    folder = tmp_path / "czyx"
    folder.mkdir()
    for t in range(3):
        tifffile.imwrite(folder / f"s_t{t}.tif", movie[t], photometric="minisblack")
    d = open_dataset(folder, z_axis=1, channel_axis=0)
    assert d.kind == "stacks" and d.shape == (3, 2, 4, 6, 7)
    np.testing.assert_array_equal(d.read_timepoint(2), movie[2])
    d = open_dataset(folder, axes="TCZYX")
    np.testing.assert_array_equal(d.read_timepoint(1), movie[1])


@pytest.mark.parametrize("axes", ["TZC", "TZZYX", "TZQYX", "YXZ"])
def test_invalid_axes_strings(plain_tczyx, axes: str) -> None:
    f, _ = plain_tczyx
    with pytest.raises(InputError) as exc:
        open_dataset(f, axes=axes)
    _one_line(exc, "--axes")


def test_axes_that_do_not_match_the_shape(plain_tczyx) -> None:
    f, _ = plain_tczyx
    with pytest.raises(InputError) as exc:
        open_dataset(f, axes="TZYX")
    _one_line(exc, str(f), "TZYX")
    with pytest.raises(InputError) as exc:
        open_dataset(f, z_axis=7)
    _one_line(exc, "--z_axis 7")


# --------------------------------------------------------------------------- bad input
def test_missing_path(tmp_path: Path) -> None:
    for p in (tmp_path / "nope", tmp_path / "nope.tif"):
        with pytest.raises(InputError) as exc:
            open_dataset(p)
        _one_line(exc, str(p), "no such")
    with pytest.raises(InputError) as exc:
        open_dataset(tmp_path / "nofolder" / "x_t{t}_z{z}.tif")
    _one_line(exc, "nofolder")


def test_not_a_tiff(tmp_path: Path) -> None:
    f = tmp_path / "fake.tif"
    f.write_bytes(b"this is not a TIFF file at all")
    with pytest.raises(InputError) as exc:
        open_dataset(f)
    _one_line(exc, str(f), "not a readable TIFF")
    g = tmp_path / "movie.avi"
    g.write_bytes(b"RIFF")
    with pytest.raises(InputError) as exc:
        open_dataset(g)
    _one_line(exc, str(g), "not a TIFF")


def test_zero_byte_file(tmp_path: Path) -> None:
    f = tmp_path / "zero.tif"
    f.write_bytes(b"")
    with pytest.raises(InputError) as exc:
        open_dataset(f)
    _one_line(exc, str(f), "empty")


@pytest.mark.filterwarnings("ignore:.*zero-size.*")
def test_empty_stack(tmp_path: Path) -> None:
    f = tmp_path / "empty.tif"
    tifffile.imwrite(f, np.zeros((0, 8, 8), np.uint16))
    with pytest.raises(InputError) as exc:
        open_dataset(f)
    _one_line(exc, str(f), "empty image")
    folder = tmp_path / "nothing"
    folder.mkdir()
    (folder / "readme.txt").write_text("x")
    with pytest.raises(InputError) as exc:
        open_dataset(folder)
    _one_line(exc, str(folder), "no .tif")


def _check_truncated(f: Path, movie: np.ndarray, cut: int) -> None:
    """A cut file gives a one-line error naming it, or (a few unreferenced trailing bytes
    cut) exactly the original pixels: never a different image."""
    _truncate(f, cut)
    try:
        d = open_dataset(f)
        got = [d.read_timepoint(t) for t in range(d.n_timepoints)]
    except InputError as e:
        msg = str(e)
        assert "\n" not in msg and str(f) in msg, msg
        return
    assert cut < 100, f"{cut} bytes cut off {f.name} went unnoticed"
    assert d.shape == (movie.shape[0], 1, *movie.shape[1:])
    for t, arr in enumerate(got):
        np.testing.assert_array_equal(arr[0], movie[t])


@pytest.mark.parametrize("cut", [1, 17, 20, 100, 2000, 20000])
def test_truncated_imagej_hyperstack(tmp_path: Path, cut: int) -> None:
    movie = _tpz_movie(3, 4, y=32, x=32)
    f = tmp_path / "cut.tif"
    tifffile.imwrite(f, movie, imagej=True, metadata={"axes": "TZYX"})
    _check_truncated(f, movie, cut)


@pytest.mark.parametrize("cut", [1, 17, 100, 2000, 20000])
def test_truncated_ome_tiff_is_not_read_as_another_image(tmp_path: Path, cut: int) -> None:
    # the OME-XML lies at the end: cut, tifffile used to fall back to a plain 12-page stack
    movie = _tpz_movie(3, 4, y=32, x=32)
    f = tmp_path / "cut.ome.tif"
    tifffile.imwrite(f, movie, ome=True, metadata={"axes": "TZYX"})
    _check_truncated(f, movie, cut)
    if cut == 1:  # here the OME-XML itself is cut: the error must say so
        with pytest.raises(InputError) as exc:
            open_dataset(f)
        _one_line(exc, str(f), "truncated")


@pytest.mark.parametrize("short", [1, 3, 12])
def test_truncated_file_loses_the_end_of_its_last_directory(tmp_path: Path,
                                                            short: int) -> None:
    # cut inside the last page's directory (classic TIFF: 2 + 12 n + 4 bytes): every pixel
    # is still there and tifffile reads it without a word, but the file is damaged
    movie = _tpz_movie(3, 4, y=32, x=32)
    f = tmp_path / "cut.tif"
    tifffile.imwrite(f, movie, imagej=True, metadata={"axes": "TZYX"})
    with tifffile.TiffFile(f) as tif:
        last = tif.pages[-1]
        end = last.offset + 2 + 12 * len(last.tags) + 4
    f.write_bytes(f.read_bytes()[:end - short])
    with pytest.raises(InputError) as exc:
        open_dataset(f)
    _one_line(exc, str(f), "truncated")


def test_truncated_file_in_a_stacks_folder(sample, tmp_path: Path) -> None:
    _, paths = sample
    folder = tmp_path / "nuclei_stacks"
    folder.mkdir()
    for f in paths.stacks.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    _truncate(folder / "nuclei_t2.tif", 300)
    with pytest.raises(InputError) as exc:
        open_dataset(folder)
    _one_line(exc, "nuclei_t2.tif")


def test_truncated_file_in_a_planes_folder(sample, tmp_path: Path) -> None:
    _, paths = sample
    folder = tmp_path / "nuclei_planes"
    folder.mkdir()
    for f in paths.planes.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    _truncate(folder / "nuclei_t001_z005.tif", 50)
    with pytest.raises(InputError) as exc:
        open_dataset(folder)
    _one_line(exc, "nuclei_t001_z005.tif")


def test_damaged_compressed_data_fails_when_read(tmp_path: Path) -> None:
    folder = tmp_path / "z"
    folder.mkdir()
    movie = RNG.integers(0, 4000, (3, 4, 16, 16), dtype=np.uint16)
    for t in range(3):
        tifffile.imwrite(folder / f"z_t{t}.tif", movie[t], compression="zlib",
                         photometric="minisblack")
    f = folder / "z_t1.tif"
    with tifffile.TiffFile(f) as tif:
        off, n = tif.pages[-1].dataoffsets[0], tif.pages[-1].databytecounts[0]
    data = bytearray(f.read_bytes())
    data[off:off + n] = b"\0" * n
    f.write_bytes(bytes(data))
    d = open_dataset(folder)  # headers are fine
    np.testing.assert_array_equal(d.read_timepoint(0)[0], movie[0])
    with pytest.raises(InputError) as exc:
        d.read_timepoint(1)
    _one_line(exc, str(f))


def test_inconsistent_shapes_across_timepoints(tmp_path: Path) -> None:
    folder = tmp_path / "s"
    folder.mkdir()
    tifffile.imwrite(folder / "s_t1.tif", np.zeros((4, 8, 8), np.uint16), photometric="minisblack")
    tifffile.imwrite(folder / "s_t2.tif", np.zeros((4, 8, 8), np.uint16), photometric="minisblack")
    tifffile.imwrite(folder / "s_t10.tif", np.zeros((5, 8, 8), np.uint16), photometric="minisblack")
    with pytest.raises(InputError) as exc:
        open_dataset(folder)
    _one_line(exc, "s_t10.tif", "(5, 8, 8)", "s_t1.tif")


def test_inconsistent_dtypes_across_timepoints(tmp_path: Path) -> None:
    folder = tmp_path / "s"
    folder.mkdir()
    tifffile.imwrite(folder / "s_t1.tif", np.zeros((4, 8, 8), np.uint16), photometric="minisblack")
    tifffile.imwrite(folder / "s_t2.tif", np.zeros((4, 8, 8), np.uint8), photometric="minisblack")
    with pytest.raises(InputError) as exc:
        open_dataset(folder)
    _one_line(exc, "s_t2.tif", "uint8", "uint16")


def test_inconsistent_planes(tmp_path: Path) -> None:
    folder = tmp_path / "p"
    folder.mkdir()
    for t in range(2):
        for z in range(3):
            shape = (8, 9) if (t, z) == (1, 2) else (8, 8)
            tifffile.imwrite(folder / f"p_t{t}_z{z}.tif", np.zeros(shape, np.uint16))
    with pytest.raises(InputError) as exc:
        open_dataset(folder)
    _one_line(exc, "p_t1_z2.tif", "(8, 9)")
    (folder / "p_t1_z2.tif").unlink()  # now timepoint 1 lacks a plane
    with pytest.raises(InputError) as exc:
        open_dataset(folder)
    _one_line(exc, str(folder), "timepoint 1 has 2 planes")
    tifffile.imwrite(folder / "p_t1_z2.tif", np.zeros((8, 8), np.float32))
    with pytest.raises(InputError) as exc:
        open_dataset(folder)
    _one_line(exc, "p_t1_z2.tif", "float32")


def test_file_removed_after_opening(tmp_path: Path) -> None:
    folder = tmp_path / "s"
    folder.mkdir()
    for t in range(2):
        tifffile.imwrite(folder / f"s_t{t}.tif", np.zeros((3, 8, 8), np.uint16),
                         photometric="minisblack")
    d = open_dataset(folder)
    assert d.kind == "stacks"
    (folder / "s_t1.tif").unlink()
    with pytest.raises(InputError) as exc:
        d.read_timepoint(1)
    _one_line(exc, "s_t1.tif")
