"""Real-browser test: headless Debian Chromium opens the bundled Neuroglancer client served by
``neuroglia5d serve`` and must draw our segmentation (precomputed export, and the pipeline's
OME-Zarr through ``zarr://``).

Each view paints every selected label pure red (opaque) in a single xy panel at one screen
pixel per voxel, with the image and annotations hidden; the number of red pixels must match
the number of labelled voxels of the shown plane (known from our arrays) within 15 %.
Chromium draws WebGL with SwiftShader (no GPU).
"""

from __future__ import annotations

import io
import shutil
import time

import numpy as np
import pytest

from neuroglia5d.io.convert import load_outputs

from .test_neuroglancer import ng_run  # noqa: F401  (session fixture shared with that module)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER),
                                reason="Debian chromium + chromium-driver not installed "
                                       "(make sysdeps-browser)")


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    o = webdriver.ChromeOptions()
    for a in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
              "--disable-component-update", "--disable-sync", "--window-size=800,800",
              "--enable-unsafe-swiftshader", "--force-device-scale-factor=1"):
        o.add_argument(a)
    o.binary_location = CHROMIUM
    drv = webdriver.Chrome(options=o, service=Service(DRIVER))
    yield drv
    drv.quit()


def _red_pixels(drv) -> int:
    from PIL import Image

    im = np.asarray(Image.open(io.BytesIO(drv.get_screenshot_as_png())).convert("RGB"))
    im = im[50:].astype(int)  # below the top bar and the layer chips
    return int(((im[..., 0] > 200) & (im[..., 1] < 60) & (im[..., 2] < 60)).sum())


def _paint_red(state: dict, seg_index: int, *, skeletons_only: bool = False) -> dict:
    """One xy panel, 1 px per voxel, the segmentation opaque red, everything else hidden."""
    for i, layer in enumerate(state["layers"]):
        if i != seg_index:
            layer["visible"] = False
    seg = state["layers"][seg_index]
    subs = {"default": not skeletons_only, "bounds": True, "properties": True,
            "skeletons": skeletons_only}
    seg["source"] = {"url": seg["source"], "subsources": subs,
                     "enableDefaultSubsources": False}
    seg.update(segmentDefaultColor="#ff0000", selectedAlpha=1.0)
    state.update(layout="xy", crossSectionScale=1.0, showAxisLines=False, showScaleBar=False,
                 showDefaultAnnotations=False)
    return state


def _wait_for(drv, url: str, expected: int, timeout: float = 40.0) -> int:
    """Open ``url`` and poll screenshots until the red area matches ``expected`` (or time out)."""
    drv.get("about:blank")
    drv.get(url)
    t_end = time.monotonic() + timeout
    red = 0
    while time.monotonic() < t_end:
        time.sleep(1.0)
        red = _red_pixels(drv)
        if expected and abs(red - expected) <= 0.15 * expected:
            break
    return red


def test_precomputed_export_renders_in_chromium(ng_run, browser):  # noqa: F811
    from neuroglia5d.neuroglancer.link import export_state, load_manifest
    from neuroglia5d.neuroglancer.serve import start_server

    _, fused, exp = ng_run
    lab = np.asarray(load_outputs(fused).arrays["labels"][1])
    z = int(np.argmax((lab > 0).sum(axis=(1, 2))))
    s = start_server(exp.out_dir.parent, port=0)
    try:
        st = export_state(load_manifest(exp.out_dir), f"{s.data_url}/{exp.out_dir.name}", 1)
        st["position"][2] = z + 0.5
        expected = int((lab[z] > 0).sum())
        red = _wait_for(browser, s.register_state("paint", _paint_red(st, 1)), expected)
        assert abs(red - expected) <= 0.15 * expected, (red, expected)
        # the client reports the layers it opened: image, labels, centroids
        names = browser.execute_script(
            "return viewer.layerManager.managedLayers.map(l => l.name)")
        assert names == ["intensity t001", "labels t001", "centroids t001"], (
            st["layers"][0], browser.execute_script("return document.body.innerText")[-300:])
        text = browser.execute_script("return document.body.innerText")
        assert "Error" not in text and "Cannot" not in text, text[-300:]
        # skeletons alone draw too (their 2D projection near the plane)
        st = export_state(load_manifest(exp.out_dir), f"{s.data_url}/{exp.out_dir.name}", 1)
        st["position"][2] = z + 0.5
        sk = _wait_for(browser, s.register_state("skel", _paint_red(st, 1,
                                                                     skeletons_only=True)),
                       0, timeout=8)
        assert sk > 20
    finally:
        s.stop()


def test_pipeline_omezarr_renders_through_zarr_url(ng_run, browser):  # noqa: F811
    from neuroglia5d.neuroglancer.link import omezarr_state
    from neuroglia5d.neuroglancer.serve import start_server

    res, _, _ = ng_run
    store = res.out_dir / f"{res.stem}_fused.ome.zarr"
    o = load_outputs(store)
    labels = o.arrays["labels"]
    lab = np.asarray(labels[1])
    z = int(np.argmax((lab > 0).sum(axis=(1, 2))))
    s = start_server(res.out_dir, port=0)
    try:
        ids = [int(i) for i in np.unique(lab) if i]
        st = omezarr_state(f"{s.data_url}/{store.name}", o.spacing_um, labels.shape,
                           offset_zyx=o.offset_zyx, t=1, label_ids=ids)
        st["position"][2] = o.offset_zyx[0] + z + 0.5
        expected = int((lab[z] > 0).sum())
        red = _wait_for(browser, s.register_state("paint", _paint_red(st, 1)), expected)
        assert abs(red - expected) <= 0.15 * expected, (red, expected)
        text = browser.execute_script("return document.body.innerText")
        assert "Error" not in text and "Cannot" not in text, text[-300:]
    finally:
        s.stop()
