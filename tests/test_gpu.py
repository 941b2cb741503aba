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
    assert np.allclose(cp.asnumpy(coherence_enhance(cp.asarray(vol), s)),
                       coherence_enhance(vol, s), atol=1e-2)


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
