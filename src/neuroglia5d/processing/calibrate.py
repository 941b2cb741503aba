"""Calibration at the first timepoint: choose the algorithm that fits the morphology.

The choice is locked for the whole series (and saved in ``parameters.json``'s provenance).

* z sampling too coarse for true 3D (an object of ``minDist_um`` spans fewer than
  :data:`MIN_PLANES_3D` planes) → ``stitch2d``;
* a large share of the foreground in thin structures (voxels farther than
  :data:`THIN_RADIUS_UM` from any part at least that thick, i.e. removed by a
  morphological opening of that radius) → ``branching``;
* otherwise → ``watershed``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

MIN_PLANES_3D = 2.5
THIN_RADIUS_UM = 1.0
THIN_FRACTION_BRANCHING = 0.08


@dataclass(frozen=True)
class Calibration:
    """The locked choice for one channel.

    Attributes
    ----------
    algorithm : str
        ``watershed``, ``branching`` or ``stitch2d``.
    thin_fraction : float
        Share of the foreground in structures thinner than ``2 * THIN_RADIUS_UM``.
    planes_per_object : float
        ``minDist_um / dz_um``.
    reason : str
        One line explaining the choice.
    forced : bool
        True when the user chose the algorithm (``algorithm`` parameter).
    """

    algorithm: str
    thin_fraction: float
    planes_per_object: float
    reason: str
    forced: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (for the provenance block)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibration:
        """Inverse of :meth:`to_dict`."""
        return cls(**{k: d[k] for k in ("algorithm", "thin_fraction", "planes_per_object",
                                        "reason", "forced") if k in d})


def thin_fraction(mask: np.ndarray, spacing_um: tuple[float, float, float],
                  radius_um: float = THIN_RADIUS_UM, dist_um: np.ndarray | None = None) -> float:
    """Fraction of ``mask`` removed by an opening with a ball of ``radius_um`` (µm).

    The erosion is a threshold of the anisotropic distance transform (``dist_um``, the
    distance of every mask voxel to the background, computed when omitted); the dilation
    uses the ellipsoid of that radius in voxels, so only boolean volumes are allocated.
    """
    import edt
    import scipy.ndimage as ndi

    n = int(mask.sum())
    if n == 0:
        return 0.0
    d_in = dist_um if dist_um is not None else edt.edt(
        np.ascontiguousarray(mask), anisotropy=spacing_um, black_border=False, parallel=2)
    thick = d_in > radius_um
    thick &= mask
    if not thick.any():
        return 1.0
    sp = np.asarray(spacing_um, dtype=np.float64)
    half = np.floor(radius_um / sp + 1e-9).astype(int)
    grid = np.ogrid[tuple(slice(-h, h + 1) for h in half)]
    ball = sum((g * s_) ** 2 for g, s_ in zip(grid, sp, strict=True)) <= radius_um ** 2
    opened = ndi.binary_dilation(thick, structure=ball)
    kept = int(np.count_nonzero(opened & mask))
    return 1.0 - kept / n


def calibrate(mask: np.ndarray, spacing_um: tuple[float, float, float], min_dist_um: float,
              forced: str = "auto", dist_um: np.ndarray | None = None) -> Calibration:
    """Choose the segmentation algorithm from the first timepoint's foreground mask.

    Parameters
    ----------
    mask : numpy.ndarray
        (Z, Y, X) boolean foreground of the first timepoint.
    spacing_um : tuple of float
        Voxel size (z, y, x) in µm.
    min_dist_um : float
        Expected minimum object diameter in µm.
    forced : str
        ``auto`` to decide, or an algorithm name to lock it without deciding.
    dist_um : numpy.ndarray, optional
        Distance transform of the mask in µm, when already computed.
    """
    planes = min_dist_um / spacing_um[0]
    tf = thin_fraction(mask, spacing_um, dist_um=dist_um)
    if forced != "auto":
        return Calibration(forced, tf, planes, f"chosen by the user (algorithm={forced})",
                           forced=True)
    if planes < MIN_PLANES_3D:
        return Calibration("stitch2d", tf, planes,
                           f"an object of {min_dist_um:g} µm spans only {planes:.1f} z-planes "
                           f"(< {MIN_PLANES_3D}): per-plane 2D stitched across z")
    if tf > THIN_FRACTION_BRANCHING:
        return Calibration("branching", tf, planes,
                           f"{100 * tf:.0f}% of the foreground is thinner than "
                           f"{2 * THIN_RADIUS_UM:g} µm (> {100 * THIN_FRACTION_BRANCHING:.0f}%):"
                           " branching cells")
    return Calibration("watershed", tf, planes,
                       f"{100 * tf:.0f}% of the foreground is thin (<= "
                       f"{100 * THIN_FRACTION_BRANCHING:.0f}%): compact cells or nuclei")
