"""Tests of the command line ``neuroglia5d segment|sample|params``.

Error cases run the real command in a subprocess and check what a user sees: a non-zero
exit status and exactly one line on stderr, ``neuroglia5d: error: ...``, naming the file or
parameter (a traceback only with ``--debug``), and that an older output in ``--out`` is
left byte for byte as it was. Successful runs use a small generated sample whose number of
objects is known.
"""

from __future__ import annotations

import collections
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from neuroglia5d.cli import build_parser, main
from neuroglia5d.params import Parameters, load_parameters, parameter_table
from neuroglia5d.sample_data import make_sample, write_sample

SHAPE = (3, 12, 64, 64)
OUTPUT_SUFFIXES = ("_labels.ome.tif", "_fused.ome.tif", "_labelStats.csv", "_nnDistHist.csv",
                   "_nnDistHist.png", "_rejected_t0.tif")


def cli(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real command line in a fresh interpreter."""
    return subprocess.run([sys.executable, "-m", "neuroglia5d.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=180, cwd=cwd)


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *names: str) -> str:
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("neuroglia5d: error: "), lines[0]
    for n in names:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every path under ``folder`` with its bytes (None for folders)."""
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(folder.rglob("*"))}


def n_labels(path: Path) -> list[int]:
    lab = tifffile.imread(path)
    return [len(np.unique(v)) - 1 for v in lab]


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory):
    ds = make_sample("nuclei", shape=SHAPE, seed=0)
    paths = write_sample(ds, tmp_path_factory.mktemp("sample"))
    n_gt = [len(np.unique(v)) - 1 for v in ds.labels]
    return ds, paths, n_gt


@pytest.fixture(scope="module")
def first_run(sample, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run of the stacks layout (``OUT/nuclei_stacks/``), for the
    'older output is never overwritten' tests (each copies it)."""
    _, paths, _ = sample
    out = tmp_path_factory.mktemp("first") / "out"
    assert main(["segment", str(paths.stacks), "--out", str(out), "-q"]) == 0
    return out


# --------------------------------------------------------------------------- help, params
def test_help_explains_each_option() -> None:
    proc = cli("--help")
    assert proc.returncode == 0
    for word in ("segment", "sample", "params"):
        assert word in proc.stdout
    proc = cli("segment", "--help")
    assert proc.returncode == 0
    text = proc.stdout
    for opt in ("--out", "--params", "--set", "--dataset-type", "--axes", "--z-axis",
                "--z_axis", "--channel-axis", "--channel_axis", "--format", "--strict",
                "--debug", "--resume", "--quiet"):
        assert opt in text, opt
    # every option of segment carries its own explanation
    sub = build_parser()._subparsers._group_actions[0].choices["segment"]  # type: ignore
    for action in sub._actions:
        assert action.help, action.option_strings
    assert "stacks" in text and "planes" in text and "hyperstack" in text
    assert "{t}" in text and "{z}" in text


def test_params_prints_every_key_with_its_unit(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["params", "--channels", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = parameter_table(2)
    assert {"px_um", "dz_um", "ch1_minDist_um", "ch2_minDist_um", "sparsity_ch2",
            "CED_ch2", "bilat_ch1", "seed_merge_tol", "Taccum", "maxT",
            "winXYZum"} <= {r[0] for r in rows}
    for key, unit, help_, default in rows:
        (line,) = [ln for ln in lines if ln.startswith(f"{key} = ")]
        assert line.startswith(f"{key} = {json.dumps(default)}")
        if unit:
            assert line.endswith(f"[{unit}]"), line
        assert f"    {help_}" in lines
    px = next(ln for ln in lines if ln.startswith("px_um = "))
    assert px == "px_um = 0.5 [µm]"
    assert next(ln for ln in lines if ln.startswith("sparsity_ch1")).endswith("[%]")


def test_params_out_writes_the_defaults(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "x.json"
    proc = cli("params", "--out", f)
    assert proc.returncode == 0, proc.stderr
    assert load_parameters(f, strict=True) == Parameters()
    assert set(json.loads(f.read_text(encoding="utf-8"))) == set(Parameters().to_dict())
    g = tmp_path / "two.json"
    assert main(["params", "--out", str(g), "--channels", "2"]) == 0
    assert load_parameters(g) == Parameters().with_channels(2)
    # bad values of the command's own options
    assert main(["params", "--channels", "0"]) != 0
    assert main(["params", "--out", str(tmp_path)]) != 0  # a folder, not a file
    err = capsys.readouterr().err.splitlines()
    assert [ln for ln in err if ln.startswith("neuroglia5d: error: ")] == err
    assert "--channels 0" in err[0] and str(tmp_path) in err[1]


def test_sample_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sample", "nuclei", "--out", str(tmp_path), "--shape", "2,6,32,32"]) == 0
    assert (tmp_path / "nuclei_stacks" / "nuclei_t1.tif").is_file()
    assert main(["sample", "nuclei", "--out", str(tmp_path), "--shape", "2,6,32"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--shape" in err[0]


# --------------------------------------------------------------------------- segment
def test_segment_with_defaults_real_command(sample, tmp_path: Path) -> None:
    _, paths, n_gt = sample
    out = tmp_path / "out"
    proc = cli("segment", paths.stacks, "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert "dataset type 'stacks' (detected)" in proc.stderr
    d = out / "nuclei_stacks"
    names = {p.name for p in d.iterdir()}
    assert names == {"nuclei_stacks" + s for s in OUTPUT_SUFFIXES} | {"parameters.json"}
    counts = n_labels(d / "nuclei_stacks_labels.ome.tif")
    assert len(counts) == SHAPE[0]
    assert all(abs(c - g) <= 1 for c, g in zip(counts, n_gt, strict=True)), (counts, n_gt)
    saved = json.loads((d / "parameters.json").read_text(encoding="utf-8"))
    assert {k: v for k, v in saved.items() if k != "provenance"} == Parameters().to_dict()
    sums = saved["provenance"]["input_sha256"]
    assert len(sums) == SHAPE[0]
    for f in paths.stacks.iterdir():
        (digest,) = [v for k, v in sums.items() if Path(k).name == f.name]
        assert digest == hashlib.sha256(f.read_bytes()).hexdigest()
    assert saved["provenance"]["dataset_type"] == "stacks"


def test_batch_of_three_layouts_gives_identical_labels(sample, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    _, paths, _ = sample
    out = tmp_path / "out"
    rc = main(["segment", str(paths.stacks), str(paths.planes), str(paths.hyperstack),
               "--out", str(out), "-q", "--set", "ch1_minDist_um=7", "--set", "CED_ch1=0"])
    assert rc == 0
    stems = ("nuclei_stacks", "nuclei_planes", "nuclei")
    assert sorted(p.name for p in out.iterdir()) == sorted(stems)
    labels = []
    for stem in stems:
        saved = load_parameters(out / stem / "parameters.json")
        assert saved.channel(1).minDist_um == 7.0
        assert saved.provenance["input"] == str(
            {"nuclei_stacks": paths.stacks, "nuclei_planes": paths.planes,
             "nuclei": paths.hyperstack}[stem])
        labels.append(tifffile.imread(out / stem / f"{stem}_labels.ome.tif"))
    np.testing.assert_array_equal(labels[0], labels[1])
    np.testing.assert_array_equal(labels[0], labels[2])
    printed = capsys.readouterr().out
    for stem in stems:
        assert f"outputs in {out / stem}" in printed


def test_voxel_size_from_metadata_and_from_set(sample, tmp_path: Path) -> None:
    ds, _, _ = sample
    f = tmp_path / "meta.tif"
    tifffile.imwrite(f, ds.raw, imagej=True, resolution=(1 / 0.4, 1 / 0.4),
                     metadata={"axes": "TZYX", "spacing": 2.0, "unit": "um"})
    assert main(["segment", str(f), "--out", str(tmp_path / "a"), "-q"]) == 0
    saved = load_parameters(tmp_path / "a" / "meta" / "parameters.json")
    assert (saved.px_um, saved.dz_um) == (pytest.approx(0.4), pytest.approx(2.0))
    assert saved.provenance["voxel_size_source"] == "metadata"
    assert main(["segment", str(f), "--out", str(tmp_path / "b"), "-q",
                 "--set", "px_um=0.5"]) == 0
    saved = load_parameters(tmp_path / "b" / "meta" / "parameters.json")
    assert (saved.px_um, saved.dz_um) == (0.5, pytest.approx(2.0))
    assert saved.provenance["voxel_size_source"] == "px: parameters, dz: metadata"


def test_multichannel_hyperstack_has_one_pass_and_outputs_per_channel(sample,
                                                                     tmp_path: Path) -> None:
    ds, _, n_gt = sample
    f = tmp_path / "two.tif"
    both = np.stack([ds.raw, ds.raw], axis=2)  # T Z C Y X: the same image in both channels
    tifffile.imwrite(f, both, imagej=True, resolution=(2.0, 2.0),
                     metadata={"axes": "TZCYX", "spacing": 1.5, "unit": "um"})
    # channel 2 discards every object wider than 8.5 µm: its own parameters must apply
    rc = main(["segment", str(f), "--out", str(tmp_path / "out"), "-q",
               "--set", "ch2_maxSize_um=8.5"])
    assert rc == 0
    d = tmp_path / "out" / "two"
    names = {p.name for p in d.iterdir()}
    for stem in ("two", "two_ch2"):
        for suffix in OUTPUT_SUFFIXES:
            assert stem + suffix in names
    assert "two_ch3_labels.ome.tif" not in names
    c1 = n_labels(d / "two_labels.ome.tif")
    c2 = n_labels(d / "two_ch2_labels.ome.tif")
    assert all(abs(c - g) <= 1 for c, g in zip(c1, n_gt, strict=True)), (c1, n_gt)
    assert sum(c2) < sum(c1)
    rejected2 = tifffile.imread(d / "two_ch2_rejected_t0.tif")
    assert rejected2.shape == SHAPE[1:] and int((rejected2 == 2).sum()) > 0  # 2: oversize
    saved = json.loads((d / "parameters.json").read_text(encoding="utf-8"))
    assert saved["ch2_maxSize_um"] == 8.5 and saved["ch1_maxSize_um"] == 40.0
    assert set(saved["provenance"]["calibration"]) == {"ch1", "ch2"}
    stats2 = (d / "two_ch2_labelStats.csv").read_text(encoding="utf-8").splitlines()
    assert len(stats2) - 1 == sum(c2)


@pytest.mark.parametrize(
    ("axis_args", "with_c"),
    [(["--axes", "TZYX"], False), (["--z-axis", "1"], False), (["--z_axis", "1"], False),
     (["--axes", "TZCYX"], True), (["--z_axis", "1", "--channel_axis", "2"], True),
     (["--z-axis", "1", "--channel-axis", "2"], True)],
)
def test_explicit_axes_on_the_command_line(sample, tmp_path: Path, axis_args: list[str],
                                           with_c: bool) -> None:
    ds, _, n_gt = sample
    f = tmp_path / "noaxes.tif"
    data = ds.raw[:, :, np.newaxis] if with_c else ds.raw  # T Z (C) Y X
    tifffile.imwrite(f, data, photometric="minisblack")  # no axes, no voxel size
    assert main(["segment", str(f), "--out", str(tmp_path / "out"), "-q", *axis_args]) == 0
    counts = n_labels(tmp_path / "out" / "noaxes" / "noaxes_labels.ome.tif")
    assert len(counts) == SHAPE[0]
    assert all(abs(c - g) <= 1 for c, g in zip(counts, n_gt, strict=True)), (counts, n_gt)


def test_explicit_dataset_type_is_reported(sample, tmp_path: Path) -> None:
    _, paths, _ = sample
    proc = cli("segment", paths.hyperstack, "--out", tmp_path / "o", "--dataset-type",
               "hyperstack")
    assert proc.returncode == 0, proc.stderr
    assert "dataset type 'hyperstack' (as given)" in proc.stderr


# --------------------------------------------------------------------------- bad input
def _truncated_copy(src: Path, dst: Path, cut: int) -> Path:
    dst.write_bytes(src.read_bytes()[:-cut])
    return dst


def _bad_inputs(tmp: Path, paths) -> dict[str, tuple[list[str], tuple[str, ...]]]:
    """name -> (arguments after ``segment``, strings the error line must contain)."""
    garbage = tmp / "garbage.tif"
    garbage.write_bytes(b"II*\0 this is not really a TIFF")
    trunc = _truncated_copy(paths.hyperstack, tmp / "trunc.ome.tif", 100)
    shapes = tmp / "shapes"
    shapes.mkdir()
    dtypes = tmp / "dtypes"
    dtypes.mkdir()
    for t in range(3):
        z = 5 if t == 2 else 4
        tifffile.imwrite(shapes / f"s_t{t}.tif", np.ones((z, 16, 16), np.uint16),
                         photometric="minisblack")
        dt = np.uint8 if t == 1 else np.uint16
        tifffile.imwrite(dtypes / f"d_t{t}.tif", np.ones((4, 16, 16), dt),
                         photometric="minisblack")
    empty = tmp / "empty.tif"
    with pytest.warns(UserWarning):
        tifffile.imwrite(empty, np.zeros((0, 16, 16), np.uint16))
    no_tiffs = tmp / "no_tiffs"
    no_tiffs.mkdir()
    bad_params = tmp / "bad_params.json"
    bad_params.write_text('{"ch1_minDist_um": 8, "CED_ch1": 7}', encoding="utf-8")
    unknown_params = tmp / "unknown.json"
    unknown_params.write_text('{"px_um": 0.5, "gpuDevice": 0}', encoding="utf-8")
    a_file = tmp / "not_a_folder"
    a_file.write_text("x")
    stem_file = tmp / "out_with_file"
    stem_file.mkdir()
    (stem_file / "nuclei").write_text("x")  # where the dataset's folder would go
    out = str(tmp / "out")
    ok = str(paths.hyperstack)
    return {
        "missing path": ([str(tmp / "nope"), "--out", out], ("nope", "no such")),
        "missing file": ([str(tmp / "nope.tif"), "--out", out], ("nope.tif",)),
        "not a tiff": ([str(garbage), "--out", out], ("garbage.tif",)),
        "truncated": ([str(trunc), "--out", out], ("trunc.ome.tif", "truncated")),
        "shapes": ([str(shapes), "--out", out], ("s_t2.tif", "shape")),
        "dtypes": ([str(dtypes), "--out", out], ("d_t1.tif", "uint8")),
        "empty stack": ([str(empty), "--out", out], ("empty.tif", "empty")),
        "empty folder": ([str(no_tiffs), "--out", out], ("no_tiffs",)),
        "bad --set": ([ok, "--out", out, "--set", "px_um=-1"], ("px_um",)),
        "bad --set type": ([ok, "--out", out, "--set", "Taccum=two"], ("Taccum",)),
        "unknown --set": ([ok, "--out", out, "--set", "ch1_minDistance_um=3"],
                          ("ch1_minDistance_um",)),
        "bad file": ([ok, "--out", out, "--params", str(bad_params)],
                     ("bad_params.json", "CED_ch1")),
        "missing params": ([ok, "--out", out, "--params", str(tmp / "nope.json")],
                           ("nope.json",)),
        "strict": ([ok, "--out", out, "--params", str(unknown_params), "--strict"],
                   ("gpuDevice",)),
        "Taccum too large": ([ok, "--out", out, "--set", "Taccum=4"], ("Taccum",)),
        "out is a file": ([ok, "--out", str(a_file)], ("not_a_folder",)),
        "out/stem is a file": ([ok, "--out", str(stem_file)], ("out_with_file/nuclei",)),
        "bad axes": ([ok, "--out", out, "--axes", "TZC"], ("--axes",)),
    }


BAD_CASES = ["missing path", "missing file", "not a tiff", "truncated", "shapes", "dtypes",
             "empty stack", "empty folder", "bad --set", "bad --set type", "unknown --set",
             "bad file", "missing params", "strict", "Taccum too large", "out is a file",
             "out/stem is a file", "bad axes"]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_is_one_clear_line(sample, tmp_path: Path, case: str) -> None:
    _, paths, _ = sample
    args, names = _bad_inputs(tmp_path, paths)[case]
    proc = cli("segment", *args, "-q")
    assert_one_line_error(proc, *names)
    out = tmp_path / "out"
    files = [p for p in out.rglob("*") if p.is_file()] if out.is_dir() else []
    assert files == []  # nothing written, not even a partial file


@pytest.mark.parametrize("case", ["truncated", "bad file"])
def test_debug_shows_the_traceback(sample, tmp_path: Path, case: str) -> None:
    _, paths, _ = sample
    args, names = _bad_inputs(tmp_path, paths)[case]
    proc = cli("segment", *args, "-q", "--debug")
    assert proc.returncode != 0
    assert "Traceback (most recent call last)" in proc.stderr
    last = proc.stderr.splitlines()[-1]
    assert last.startswith("neuroglia5d: error: ") and all(n in last for n in names)


def test_batch_with_two_inputs_of_one_stem(sample, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    _, paths, _ = sample
    pattern = paths.planes / "nuclei_t{t}_z{z}.tif"  # its stem is the folder's name
    out = tmp_path / "out"
    assert main(["segment", str(paths.planes), str(pattern), "--out", str(out), "-q"]) != 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "'nuclei_planes'" in err[0], err
    assert [p for p in out.rglob("*") if p.is_file()] == []


def test_name_pattern_on_the_command_line(sample, tmp_path: Path) -> None:
    _, paths, n_gt = sample
    pattern = paths.planes / "nuclei_t{t}_z{z}.tif"
    proc = cli("segment", pattern, "--out", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    assert "dataset type 'planes' (detected)" in proc.stderr
    counts = n_labels(tmp_path / "out" / "nuclei_planes" / "nuclei_planes_labels.ome.tif")
    assert all(abs(c - g) <= 1 for c, g in zip(counts, n_gt, strict=True)), (counts, n_gt)


def test_unknown_key_in_file_is_a_warning_without_strict(sample, tmp_path: Path) -> None:
    _, paths, _ = sample
    f = tmp_path / "suite.json"
    f.write_text('{"px_um": 0.5, "ch1_minDist_um": 7, "gpuDevice": 0}', encoding="utf-8")
    proc = cli("segment", paths.hyperstack, "--out", tmp_path / "out", "--params", f, "-q")
    assert proc.returncode == 0, proc.stderr
    warn = [ln for ln in proc.stderr.splitlines() if "gpuDevice" in ln]
    assert len(warn) == 1 and warn[0].startswith("neuroglia5d: warning: ")
    assert load_parameters(tmp_path / "out" / "nuclei" / "parameters.json").channel(
        1).minDist_um == 7.0


def test_no_disk_space(sample, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                       capsys: pytest.CaptureFixture[str]) -> None:
    _, paths, _ = sample
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _p: usage(2**40, 2**40 - 4096, 4096))
    out = tmp_path / "out"
    rc = main(["segment", str(paths.stacks), "--out", str(out), "-q"])
    assert rc != 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("neuroglia5d: error: ") and "disk space" in err[0]
    assert str(out) in err[0]
    # nothing written: at most the dataset's empty folder
    assert [p for p in out.rglob("*") if p.is_file()] == []
    assert {p.name for p in out.iterdir()} <= {"nuclei_stacks"}


# --------------------------------------------------------------------------- older outputs
def _copy_first_run(first_run: Path, tmp_path: Path) -> tuple[Path, dict[str, bytes | None]]:
    out = tmp_path / "out"
    shutil.copytree(first_run, out)
    before = snapshot(out)
    assert "nuclei_stacks/nuclei_stacks_labels.ome.tif" in before
    return out, before


def test_broken_input_of_the_same_stem_leaves_older_outputs(sample, first_run: Path,
                                                            tmp_path: Path) -> None:
    _, paths, _ = sample
    out, before = _copy_first_run(first_run, tmp_path)
    broken = tmp_path / "elsewhere" / "nuclei_stacks"  # same stem as the first run
    broken.mkdir(parents=True)
    for f in paths.stacks.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    _truncated_copy(paths.stacks / "nuclei_t1.tif", broken / "nuclei_t1.tif", 500)
    assert_one_line_error(cli("segment", broken, "--out", out, "-q"), "nuclei_t1.tif")
    assert snapshot(out) == before


@pytest.mark.parametrize("bad", [["--set", "CED_ch1=9"], ["--set", "sparsity_ch1=abc"],
                                 ["--set", "nonsense=1"]])
def test_invalid_parameter_leaves_older_outputs(sample, first_run: Path, tmp_path: Path,
                                                bad: list[str]) -> None:
    _, paths, _ = sample
    out, before = _copy_first_run(first_run, tmp_path)
    key = bad[1].split("=")[0]
    assert_one_line_error(cli("segment", paths.stacks, "--out", out, "-q", *bad), key)
    assert snapshot(out) == before


def _fails_at_last_timepoint(ds_raw: np.ndarray, folder: Path) -> Path:
    """The stacks of ``ds_raw`` (zlib) whose last file has valid headers but bad data."""
    folder.mkdir(parents=True)
    for t in range(len(ds_raw)):
        tifffile.imwrite(folder / f"nuclei_t{t}.tif", ds_raw[t], compression="zlib",
                         photometric="minisblack")
    last = folder / f"nuclei_t{len(ds_raw) - 1}.tif"
    with tifffile.TiffFile(last) as tif:
        off, n = tif.pages[-1].dataoffsets[0], tif.pages[-1].databytecounts[0]
    data = bytearray(last.read_bytes())
    data[off:off + n] = b"\0" * n
    last.write_bytes(bytes(data))
    return last


def _mid_run_failure(sample, first_run: Path, tmp_path: Path
                     ) -> tuple[dict[str, bytes | None], dict[str, bytes | None]]:
    ds, _, _ = sample
    out, before = _copy_first_run(first_run, tmp_path)
    # same stem, other data (flipped) and other parameters; fails at the last timepoint,
    # after earlier timepoints were processed and queued for writing
    broken = tmp_path / "elsewhere" / "nuclei_stacks"
    last = _fails_at_last_timepoint(ds.raw[:, :, ::-1].copy(), broken)
    proc = cli("segment", broken, "--out", out, "-q", "--set", "ch1_maxSize_um=8.5")
    assert_one_line_error(proc, last.name)
    return before, snapshot(out)


def test_failure_mid_run_leaves_older_outputs(sample, first_run: Path,
                                              tmp_path: Path) -> None:
    before, after = _mid_run_failure(sample, first_run, tmp_path)
    finals = {k: v for k, v in before.items() if not k.endswith("_rejected_t0.tif")}
    for name, data in finals.items():
        assert after.get(name) == data, f"{name} changed"
    # what the failed run left is only .partial (kept for --resume), nothing final
    new = set(after) - set(before)
    assert all(".partial" in name for name in new), sorted(new)


def test_failure_mid_run_leaves_older_rejected_file(sample, first_run: Path,
                                                    tmp_path: Path) -> None:
    before, after = _mid_run_failure(sample, first_run, tmp_path)
    name = "nuclei_stacks/nuclei_stacks_rejected_t0.tif"
    assert after[name] == before[name]
