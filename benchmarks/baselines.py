"""The two baselines the pipeline benchmark compares against.

``skimage_script``
    What a typical scikit-image user writes for 3D nuclei/cells: Gaussian smoothing, Otsu
    threshold, Euclidean distance transform (with the voxel anisotropy), seeds from
    ``peak_local_max`` with a minimum distance of half the expected diameter, a watershed,
    then ``regionprops`` to measure the objects.
``clesperanto_voronoi_otsu``
    pyclesperanto's ``voronoi_otsu_labeling`` (runs on the CPU through PoCL here), with
    its spot and outline sigmas set from the expected diameter, on the volume rescaled to
    isotropic voxels and the labels scaled back.
"""

from __future__ import annotations

import numpy as np


def skimage_script(raw: np.ndarray, spacing_um: tuple[float, float, float],
                   diameter_um: float) -> np.ndarray:
    """Otsu + distance transform + peak_local_max + watershed + regionprops."""
    import scipy.ndimage as ndi
    from skimage.feature import peak_local_max
    from skimage.filters import gaussian, threshold_otsu
    from skimage.measure import regionprops
    from skimage.segmentation import watershed

    img = gaussian(raw.astype(np.float32), sigma=(0.5, 1.0, 1.0), preserve_range=True)
    mask = img > threshold_otsu(img)
    dist = ndi.distance_transform_edt(mask, sampling=spacing_um)
    r = 0.5 * diameter_um
    min_distance = max(1, round(0.5 * r / spacing_um[1]))
    coords = peak_local_max(dist, min_distance=min_distance, labels=mask.astype(np.int32),
                            exclude_border=False)
    markers = np.zeros(mask.shape, np.int32)
    markers[tuple(coords.T)] = np.arange(1, len(coords) + 1)
    labels = watershed(-dist, markers, mask=mask)
    regionprops(labels, intensity_image=raw)  # the measurement step of such a script
    return labels.astype(np.uint32)


def clesperanto_voronoi_otsu(raw: np.ndarray, spacing_um: tuple[float, float, float],
                             diameter_um: float) -> np.ndarray:
    """pyclesperanto ``voronoi_otsu_labeling`` on an isotropic rescaling of the volume."""
    import pyclesperanto as cle

    zf = spacing_um[0] / spacing_um[1]
    gpu = cle.push(raw.astype(np.float32))
    iso = cle.scale(gpu, factor_x=1.0, factor_y=1.0, factor_z=zf, resize=True)
    r_px = 0.5 * diameter_um / spacing_um[1]
    lab = cle.voronoi_otsu_labeling(iso, spot_sigma=0.5 * r_px, outline_sigma=1.0)
    back = cle.scale(lab, factor_x=1.0, factor_y=1.0, factor_z=1.0 / zf, resize=True,
                     interpolate=False)
    out = np.asarray(cle.pull(back)).astype(np.uint32)
    # the rescaled stack may differ by a plane; crop or pad to the raw shape
    fixed = np.zeros(raw.shape, np.uint32)
    z = min(raw.shape[0], out.shape[0])
    fixed[:z] = out[:z, : raw.shape[1], : raw.shape[2]]
    return fixed
