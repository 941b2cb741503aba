"""Conversion between .tif, .ome.zarr and .ng5d (all directions), via the CLI."""

from __future__ import annotations

import itertools
import subprocess
import sys

import numpy as np
import pytest

from neuroglia5d.io.convert import load_outputs

CLI = [sys.executable, "-m", "neuroglia5d.cli"]


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    from neuroglia5d import segment
    from neuroglia5d.sample_data import write_sample

    from .conftest import sample

    ds = sample("nuclei", (2, 12, 64, 64), 4)
    root = tmp_path_factory.mktemp("conv")
    paths = write_sample(ds, root / "data")
    return segment(paths.hyperstack, root / "out", formats="tif")[0]


def arrays(path):
    o = load_outputs(path)
    return {k: np.asarray(v[...] if hasattr(v, "file") else v[:]) for k, v in o.arrays.items()}


def test_fused_round_trip_through_every_format(outputs, tmp_path):
    src = outputs.out_dir / f"{outputs.stem}_fused.ome.tif"
    ref = arrays(src)
    chain = [src, tmp_path / "a_fused.ng5d", tmp_path / "b_fused.ome.zarr",
             tmp_path / "c_fused.ng5d", tmp_path / "d_fused.ome.tif"]
    for a, b in itertools.pairwise(chain):
        proc = subprocess.run([*CLI, "convert", str(a), str(b), "-q"], capture_output=True,
                              text=True)
        assert proc.returncode == 0, proc.stderr
        got = arrays(b)
        assert got.keys() == ref.keys()
        for k in ref:
            assert np.array_equal(got[k], ref[k]), (b, k)
        o = load_outputs(b)
        assert o.spacing_um == (1.5, 0.5, 0.5)
        assert tuple(o.offset_zyx) == tuple(outputs.crop_offset_zyx)


def test_labels_file_converts_and_zarr_needs_a_fused_file(outputs, tmp_path):
    src = outputs.out_dir / f"{outputs.stem}_labels.ome.tif"
    ref = arrays(src)["labels"]
    out = tmp_path / "x_labels.ng5d"
    assert subprocess.run([*CLI, "convert", str(src), str(out), "-q"]).returncode == 0
    assert np.array_equal(arrays(out)["labels"], ref)
    proc = subprocess.run([*CLI, "convert", str(src), str(tmp_path / "y.ome.zarr")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "needs intensity and labels" in proc.stderr
    assert not (tmp_path / "y.ome.zarr").exists()


def test_info_describes_each_format(outputs, tmp_path):
    src = outputs.out_dir / f"{outputs.stem}_fused.ome.tif"
    ng = tmp_path / "z_fused.ng5d"
    subprocess.run([*CLI, "convert", str(src), str(ng), "-q"], check=True)
    out = subprocess.run([*CLI, "info", str(ng)], capture_output=True, text=True).stdout
    assert "complete" in out and "bitpack" in out and "octree" in out
    assert "timepoints 2/2" in out and "checksums ok" in out
    out = subprocess.run([*CLI, "info", str(src)], capture_output=True, text=True).stdout
    assert "intensity: uint16" in out and "labels: uint32" in out
