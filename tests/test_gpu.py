"""The CuPy path gives the NumPy path's answer (skipped without a CUDA GPU).

The filters (background subtraction, isolated-voxel removal, smoothing, bilateral and
coherence-enhancing diffusion) are written once against ``xp``; on this CPU-only CI they
run, and are tested, with ``xp = numpy`` in the other test files.
"""

from __future__ import annotations

import numpy as np
import pytest

from neuroglia5d.backend import gpu_available

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not gpu_available(), reason="needs a CUDA GPU with CuPy")]


def test_background_subtraction_matches_numpy(nuclei_small):
    import cupy as cp

    from neuroglia5d.processing.background import subtract_background

    vol = nuclei_small.raw[0].astype(np.float32)
    cpu, rep_c = subtract_background(vol.copy(), target_sparsity=0.8, object_diameter_px=16,
                                     anisotropy=3.0)
    gpu, rep_g = subtract_background(cp.asarray(vol), target_sparsity=0.8,
                                     object_diameter_px=16, anisotropy=3.0)
    assert rep_c.offset_sigma == rep_g.offset_sigma
    assert np.allclose(cp.asnumpy(gpu), cpu, atol=1e-2)


def test_ced_matches_numpy():
    import cupy as cp

    from neuroglia5d.processing.enhance import CEDSettings, coherence_enhance

    rng = np.random.default_rng(0)
    vol = rng.random((8, 64, 64)).astype(np.float32) * 100
    s = CEDSettings.level(1)
    gpu = cp.asnumpy(coherence_enhance(cp.asarray(vol), s))
    cpu = coherence_enhance(vol, s)
    # float32 on both; where two eigenvector candidates are nearly as good, rounding can
    # pick the other one (seen on an H100: 2 of 32768 voxels off by 0.011 of 100)
    assert np.linalg.norm(gpu - cpu) / np.linalg.norm(cpu) < 1e-5
    assert np.abs(gpu - cpu).max() < 0.05


@pytest.mark.parametrize("kind", ["nuclei", "microglia"])
def test_process_channel_gpu_equals_cpu(kind, request):
    from neuroglia5d.params import Parameters
    from neuroglia5d.processing.timepoint import process_channel

    ds = request.getfixturevalue(f"{kind}_small")
    p = Parameters()
    cpu, cal = process_channel(ds.raw[0].astype(np.float32), p, 1, None, t=0,
                               offset_zyx=(0, 0, 0), device="cpu")
    gpu, cal_g = process_channel(ds.raw[0].astype(np.float32), p, 1, None, t=0,
                                 offset_zyx=(0, 0, 0), device="gpu")
    assert cal.algorithm == cal_g.algorithm
    assert len(cpu.table["label"]) == len(gpu.table["label"])
    assert np.mean(cpu.labels == gpu.labels) > 0.999
    assert np.abs(cpu.intensity.astype(int) - gpu.intensity.astype(int)).max() <= 1


def test_ng5d_kernels_on_the_gpu_match_the_cpu_decoder():
    """The checks run under the CUDA simulator in test_ng5d.py, here on the device."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).with_name("ng5d_gpu_check.py")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env["NG5D_XP"] = "cupy"
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["True", "40"]  # as in test_ng5d.py


@pytest.mark.parametrize("storage", ["zstd", "plain"])
def test_to_device_decodes_a_written_file_like_the_cpu(tmp_path, nuclei_small, storage):
    import cupy as cp

    from neuroglia5d.io.ng5d import ArraySpec, Ng5dWriter, open_ng5d

    raw = nuclei_small.raw.astype(np.uint16)
    lab = nuclei_small.labels.astype(np.uint32)
    T, Z, Y, X = raw.shape
    specs = [ArraySpec.make("intensity", "intensity", np.uint16, (T, 1, Z, Y, X),
                            storage=storage),
             ArraySpec.make("labels", "labels", np.uint32, (T, 1, Z, Y, X), storage=storage)]
    w = Ng5dWriter(tmp_path / "g.ng5d", specs)
    for t in range(T):
        w.append("intensity", t, raw[t][None])
        w.append("labels", t, lab[t][None])
    path = w.finalize()
    f = open_ng5d(path)
    region = (slice(3, Z - 2), slice(17, Y - 9), slice(8, X - 31))
    for name, ref in (("intensity", raw), ("labels", lab)):
        for t in range(T):
            assert np.array_equal(cp.asnumpy(f.to_device(name, t)), ref[t])
            assert np.array_equal(cp.asnumpy(f.to_device(name, t, region=region)),
                                  ref[t][region])
        buf = cp.zeros(ref[0][region].shape, ref.dtype)
        assert f.to_device(name, T - 1, region=region, out=buf) is buf
        assert np.array_equal(cp.asnumpy(buf), ref[T - 1][region])
