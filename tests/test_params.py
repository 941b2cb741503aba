"""Tests of the parameters: names, units, defaults, validation and ``parameters.json``.

Values are known by construction: the defaults and units the manual states, files
written by hand in the original suite's key names, and a synthetic dataset whose signal
sits in a known XY region (so the crop offset recorded in the provenance is known).
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import tifffile

from neuroglia5d import __version__
from neuroglia5d.errors import ParameterError
from neuroglia5d.params import (
    ALGORITHMS,
    CHANNEL_SPECS,
    GLOBAL_SPECS,
    ChannelParams,
    Parameters,
    load_parameters,
    parameter_table,
    parse_overrides,
    spec_for,
)

# every parameter the manual names, with its unit ("" = dimensionless)
MANUAL_UNITS = {
    "px_um": "µm",
    "dz_um": "µm",
    "ch1_minDist_um": "µm",
    "ch1_maxSize_um": "µm",
    "sparsity_ch1": "%",
    "bilat_ch1": "",
    "CED_ch1": "",
    "seed_merge_tol": "",
    "Taccum": "frames",
    "maxT": "frames",
    "winXYZum": "µm",
}

DEFAULTS = {
    "px_um": 0.5,
    "dz_um": 1.5,
    "seed_merge_tol": 0.3,
    "Taccum": 1,
    "maxT": 0,
    "winXYZum": 100.0,
    "algorithm": "auto",
    "stitch_threshold": 0.25,
    "ram_budget_gb": 0.0,
    "ch1_minDist_um": 8.0,
    "ch1_maxSize_um": 40.0,
    "sparsity_ch1": 75.0,
    "bilat_ch1": 0.0,
    "CED_ch1": 0,
}

PER_CHANNEL = ("ch{c}_minDist_um", "ch{c}_maxSize_um", "sparsity_ch{c}", "bilat_ch{c}",
               "CED_ch{c}")


def _one_line_error(exc: pytest.ExceptionInfo[BaseException], *names: str) -> str:
    msg = str(exc.value)
    assert "\n" not in msg, msg
    for n in names:
        assert n in msg, (n, msg)
    return msg


# --------------------------------------------------------------------------- names, units
@pytest.mark.parametrize("key", sorted(MANUAL_UNITS))
def test_manual_parameter_has_its_unit(key: str) -> None:
    assert spec_for(key).unit == MANUAL_UNITS[key]
    rows = {k: (unit, help_) for k, unit, help_, _ in parameter_table(1)}
    assert rows[key][0] == MANUAL_UNITS[key]
    assert rows[key][1].strip()  # every parameter explains itself


def test_defaults_are_the_documented_values() -> None:
    d = Parameters().to_dict()
    assert d == DEFAULTS
    assert set(d) == {s.key for s in GLOBAL_SPECS} | {s.key_for(1) for s in CHANNEL_SPECS}
    p = Parameters()
    assert p.anisotropy == pytest.approx(3.0)
    assert p.spacing_um == (1.5, 0.5, 0.5)
    assert p.channel(1) == ChannelParams()


@pytest.mark.parametrize("c", [2, 3, 7])
def test_per_channel_keys_exist_for_every_channel(c: int) -> None:
    for tmpl in PER_CHANNEL:
        key = tmpl.format(c=c)
        assert spec_for(key).unit == MANUAL_UNITS[tmpl.format(c=1)]
    d = Parameters().with_channels(c).to_dict()
    for cc in range(1, c + 1):
        for tmpl in PER_CHANNEL:
            assert tmpl.format(c=cc) in d
    assert f"ch{c + 1}_minDist_um" not in d
    assert len(parameter_table(c)) == len(GLOBAL_SPECS) + c * len(CHANNEL_SPECS)


def test_channel_without_own_values_takes_channel_1s() -> None:
    p = Parameters().updated({"ch1_minDist_um": 6.0, "ch3_maxSize_um": 20.0,
                              "CED_ch2": 2})
    assert len(p.channels) == 3
    assert p.channel(1).minDist_um == 6.0
    assert p.channel(2).minDist_um == 6.0 and p.channel(2).CED == 2
    assert p.channel(3).minDist_um == 6.0 and p.channel(3).maxSize_um == 20.0
    assert p.channel(1).CED == 0 and p.channel(3).CED == 0
    assert p.channel(5) == p.channel(1)  # beyond the list: channel 1's
    with pytest.raises(ParameterError):
        p.channel(0)


def test_per_channel_values_differ_between_channels() -> None:
    p = Parameters.from_dict({"ch1_minDist_um": 5, "ch2_minDist_um": 12,
                              "sparsity_ch1": 60, "sparsity_ch2": 90})
    assert (p.channel(1).minDist_um, p.channel(2).minDist_um) == (5.0, 12.0)
    assert (p.channel(1).sparsity, p.channel(2).sparsity) == (60.0, 90.0)
    d = p.to_dict()
    assert d["ch2_minDist_um"] == 12.0 and d["sparsity_ch2"] == 90.0


# --------------------------------------------------------------------------- JSON
def test_save_and_load_round_trip_with_exact_key_names(tmp_path: Path) -> None:
    p = Parameters().updated({"px_um": 0.31, "dz_um": 2.0, "ch1_minDist_um": 6.5,
                              "ch2_maxSize_um": 25.0, "CED_ch2": 3, "Taccum": 2,
                              "maxT": 4, "winXYZum": 0, "algorithm": "branching"})
    f = p.save(tmp_path / "parameters.json")
    assert f == tmp_path / "parameters.json"
    assert not (tmp_path / "parameters.json.partial").exists()
    raw = json.loads(f.read_text(encoding="utf-8"))
    expected_keys = set(DEFAULTS) | {k.format(c=2) for k in PER_CHANNEL}
    assert set(raw) == expected_keys
    assert raw["px_um"] == 0.31 and raw["CED_ch2"] == 3 and raw["Taccum"] == 2
    assert raw["ch2_minDist_um"] == 6.5  # channel 2 started from channel 1's value
    q = load_parameters(f)
    assert q == p
    assert q.explicit == frozenset(expected_keys)


def test_save_onto_a_folder_is_a_clear_error(tmp_path: Path) -> None:
    from neuroglia5d.errors import OutputError

    target = tmp_path / "parameters.json"
    target.mkdir()
    (target / "keep.txt").write_text("older")
    with pytest.raises(OutputError) as exc:
        Parameters().save(target)
    _one_line_error(exc, str(target), "folder")
    assert (target / "keep.txt").read_text() == "older"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["parameters.json"]  # no .partial


def test_save_replaces_an_older_file_atomically(tmp_path: Path) -> None:
    f = tmp_path / "parameters.json"
    Parameters().save(f)
    Parameters.from_dict({"px_um": 0.25}).save(f)
    assert load_parameters(f).px_um == 0.25
    assert sorted(p.name for p in tmp_path.iterdir()) == ["parameters.json"]


def test_file_from_the_original_suite_loads_and_warns_about_unknown_keys(
        tmp_path: Path) -> None:
    suite = {
        "px_um": 0.2075, "dz_um": 1.0, "ch1_minDist_um": 7, "ch1_maxSize_um": 35,
        "sparsity_ch1": 80, "bilat_ch1": 1.0, "CED_ch1": 2, "seed_merge_tol": 0.5,
        "Taccum": 3, "maxT": 0, "winXYZum": 50,
        "ch2_minDist_um": 4, "ch2_maxSize_um": 12, "sparsity_ch2": 90, "bilat_ch2": 0,
        "CED_ch2": 0,
        "gpuDevice": 0, "exportZarr": True,
    }
    f = tmp_path / "parameters.json"
    f.write_text(json.dumps(suite), encoding="utf-8")
    with pytest.warns(UserWarning) as rec:
        p = load_parameters(f)
    msgs = [str(w.message) for w in rec]
    assert len(msgs) == 1
    assert "'exportZarr'" in msgs[0] and "'gpuDevice'" in msgs[0] and str(f) in msgs[0]
    assert p.px_um == 0.2075 and p.dz_um == 1.0 and p.Taccum == 3 and p.maxT == 0
    assert p.seed_merge_tol == 0.5 and p.winXYZum == 50.0
    assert p.channel(1) == ChannelParams(7.0, 35.0, 80.0, 1.0, 2)
    assert p.channel(2) == ChannelParams(4.0, 12.0, 90.0, 0.0, 0)
    assert isinstance(p.channel(1).CED, int) and isinstance(p.Taccum, int)
    # --strict: the same keys are an error naming them
    with pytest.raises(ParameterError) as exc:
        load_parameters(f, strict=True)
    _one_line_error(exc, "gpuDevice", "exportZarr", "strict", str(f))


def test_known_keys_give_no_warning(tmp_path: Path) -> None:
    f = Parameters().save(tmp_path / "p.json", provenance={"software": "neuroglia5d"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p = load_parameters(f, strict=True)
    assert p == Parameters()
    assert p.provenance == {"software": "neuroglia5d"}


@pytest.mark.parametrize("value", [0, 1, 2, 3])
def test_ced_accepts_its_four_levels(value: int) -> None:
    for given in (value, float(value)):
        ced = Parameters.from_dict({"CED_ch1": given}).channel(1).CED
        assert type(ced) is int
        assert ced == value


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("CED_ch1", 4, "<= 3"),
        ("CED_ch1", -1, ">= 0"),
        ("CED_ch1", 1.5, "whole number"),
        ("CED_ch2", True, "must be a number"),
        ("CED_ch1", "2", "must be a number"),
        ("px_um", 0, "> 0"),
        ("px_um", -0.5, "> 0"),
        ("dz_um", "1.5", "must be a number"),
        ("dz_um", None, "must be a number"),
        ("ch1_minDist_um", 0, "> 0"),
        ("ch3_maxSize_um", [40], "must be a number"),
        ("sparsity_ch1", 100, "<= 99.9"),
        ("sparsity_ch1", -1, ">= 0"),
        ("bilat_ch1", 6, "<= 5"),
        ("seed_merge_tol", 1.5, "<= 1"),
        ("Taccum", 0, ">= 1"),
        ("Taccum", 2.5, "whole number"),
        ("maxT", -1, ">= 0"),
        ("winXYZum", -3, ">= 0"),
        ("algorithm", "magic", "must be one of"),
        ("algorithm", 1, "must be a string"),
        ("ram_budget_gb", -1, ">= 0"),
    ],
)
def test_wrong_type_or_range_is_a_one_line_error(tmp_path: Path, key: str, value: object,
                                                 fragment: str) -> None:
    with pytest.raises(ParameterError) as exc:
        Parameters.from_dict({key: value})
    _one_line_error(exc, repr(key), fragment)
    # the same from a file names the file too
    f = tmp_path / "bad.json"
    f.write_text(json.dumps({key: value}), encoding="utf-8")
    with pytest.raises(ParameterError) as exc:
        load_parameters(f)
    _one_line_error(exc, str(f), repr(key), fragment)


@pytest.mark.parametrize("text", ['{"maxT": NaN}', '{"Taccum": Infinity}',
                                  '{"px_um": -Infinity}', '{"CED_ch1": NaN}'])
def test_non_finite_numbers_are_parameter_errors(tmp_path: Path, text: str) -> None:
    # Python's json accepts NaN/Infinity; an int parameter used to crash in int(nan)
    f = tmp_path / "p.json"
    f.write_text(text, encoding="utf-8")
    with pytest.raises(ParameterError) as exc:
        load_parameters(f)
    key = next(iter(json.loads(text)))
    _one_line_error(exc, repr(key), "finite")


def test_max_size_below_min_dist_is_an_error() -> None:
    with pytest.raises(ParameterError) as exc:
        Parameters.from_dict({"ch2_minDist_um": 10, "ch2_maxSize_um": 9})
    _one_line_error(exc, "ch2_maxSize_um", "ch2_minDist_um")
    with pytest.raises(ParameterError):
        Parameters.from_dict({"ch0_minDist_um": 5})


def test_maxT_zero_means_automatic() -> None:
    assert spec_for("maxT").lo == 0
    assert "0 = automatic" in spec_for("maxT").help
    assert Parameters.from_dict({"maxT": 0}).maxT == 0
    assert Parameters.from_dict({"maxT": 5}).maxT == 5


@pytest.mark.parametrize(
    ("text", "fragment"),
    [("{not json", "not valid JSON (line 1"), ("[1, 2]", "expected a JSON object")],
)
def test_unreadable_parameter_files(tmp_path: Path, text: str, fragment: str) -> None:
    f = tmp_path / "p.json"
    f.write_text(text, encoding="utf-8")
    with pytest.raises(ParameterError) as exc:
        load_parameters(f)
    _one_line_error(exc, str(f), fragment)


def test_missing_or_binary_parameter_file(tmp_path: Path) -> None:
    with pytest.raises(ParameterError) as exc:
        load_parameters(tmp_path / "nope.json")
    _one_line_error(exc, "nope.json", "not found")
    f = tmp_path / "bin.json"
    f.write_bytes(bytes(range(128, 256)))
    with pytest.raises(ParameterError) as exc:
        load_parameters(f)
    _one_line_error(exc, "bin.json")


def test_parse_overrides() -> None:
    got = parse_overrides(["ch1_minDist_um=6", "algorithm=watershed", " Taccum =2",
                           "CED_ch2=3"])
    assert got == {"ch1_minDist_um": 6, "algorithm": "watershed", "Taccum": 2, "CED_ch2": 3}
    p = Parameters().updated(got, strict=True, source="--set")
    assert p.channel(1).minDist_um == 6.0 and p.Taccum == 2 and p.channel(2).CED == 3
    assert p.explicit == frozenset(got)
    with pytest.raises(ParameterError) as exc:
        parse_overrides(["ch1_minDistance=6"])
    _one_line_error(exc, "ch1_minDistance")
    with pytest.raises(ParameterError) as exc:
        parse_overrides(["px_um"])
    _one_line_error(exc, "KEY=VALUE")
    with pytest.raises(ParameterError) as exc:
        Parameters().updated(parse_overrides(["px_um=abc"]), strict=True, source="--set")
    _one_line_error(exc, "--set", "'px_um'")


def test_ram_budget_defaults_from_available_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    import psutil

    monkeypatch.setattr(psutil, "virtual_memory", lambda: SimpleNamespace(available=8 * 2**30))
    assert Parameters().ram_budget_gb == 0
    assert Parameters().ram_budget_bytes() == 4 * 2**30
    monkeypatch.setattr(psutil, "virtual_memory", lambda: SimpleNamespace(available=3000))
    assert Parameters().ram_budget_bytes() == 1500
    assert Parameters.from_dict({"ram_budget_gb": 2}).ram_budget_bytes() == 2 * 2**30


def test_algorithm_choices() -> None:
    assert ALGORITHMS[0] == "auto"
    for a in ALGORITHMS:
        assert Parameters.from_dict({"algorithm": a}).algorithm == a


# --------------------------------------------------------------------------- provenance
def _blob_movie(t: int = 2, z: int = 12, y: int = 128, x: int = 128) -> np.ndarray:
    """Noise plus bright balls whose XY extent is rows 45..75, columns 55..85 (by design)."""
    rng = np.random.default_rng(7)
    raw = rng.normal(100, 4, (t, z, y, x))
    zz, yy, xx = np.mgrid[:z, :y, :x]
    for cy, cx in ((53, 63), (67, 77), (53, 77)):
        ball = ((zz - 6) * 3) ** 2 + (yy - cy) ** 2 + (xx - cx) ** 2 <= 8**2
        raw[:, ball] += 900
    return np.clip(raw, 0, 65535).astype(np.uint16)


def test_saved_parameters_record_provenance(tmp_path: Path) -> None:
    from neuroglia5d.pipeline import segment
    from neuroglia5d.processing.background import signal_bbox_xy

    movie = _blob_movie()
    src = tmp_path / "in" / "blobs"
    src.mkdir(parents=True)
    for t in range(len(movie)):
        tifffile.imwrite(src / f"blobs_t{t}.tif", movie[t], imagej=True,
                         resolution=(1 / 0.5, 1 / 0.5),
                         metadata={"axes": "ZYX", "spacing": 1.5, "unit": "um"})
    params = Parameters().updated({"ch1_minDist_um": 7.0, "algorithm": "watershed"})
    (res,) = segment(src, tmp_path / "out", params, device="cpu")
    pj = tmp_path / "out" / "blobs" / "parameters.json"
    assert res.out_dir == pj.parent
    saved = json.loads(pj.read_text(encoding="utf-8"))
    # the parameters themselves, under the suite's key names
    assert saved["ch1_minDist_um"] == 7.0 and saved["algorithm"] == "watershed"
    assert saved["px_um"] == 0.5 and saved["dz_um"] == 1.5
    prov = saved["provenance"]
    assert prov["software"] == "neuroglia5d" and prov["version"] == __version__
    # the algorithm calibration chose (forced here) for every channel
    assert prov["calibration"]["ch1"]["algorithm"] == "watershed"
    assert prov["calibration"]["ch1"]["algorithm"] == res.calibration[1].algorithm
    # the XY crop offset: the signal is at rows 45..75 / cols 55..85, margin 8 px
    y0, y1, x0, x1 = signal_bbox_xy(movie[0])
    assert prov["crop"]["offset_zyx"] == [0, y0, x0]
    assert list(res.crop_offset_zyx) == [0, y0, x0]
    assert abs(y0 - (45 - 8)) <= 2 and abs(x0 - (55 - 8)) <= 2
    assert abs(y1 - (76 + 8)) <= 2 and abs(x1 - (86 + 8)) <= 2
    # one sha256 per input file, equal to hashlib's
    sums = prov["input_sha256"]
    files = sorted(src.iterdir())
    assert len(sums) == len(files) == 2
    by_name = {Path(k).name: v for k, v in sums.items()}
    for f in files:
        assert by_name[f.name] == hashlib.sha256(f.read_bytes()).hexdigest()
    # the file reads back as parameters (provenance kept aside, never a warning)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        back = load_parameters(pj, strict=True)
    assert back == params
    assert back.provenance["input_sha256"] == sums
    assert math.isclose(back.px_um, 0.5)
