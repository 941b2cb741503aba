"""Optional enhancement: coherence-enhancing diffusion (``CED_chN``) and edge-preserving
smoothing per z-plane (``bilat_chN``).

Both are array code for NumPy or CuPy. The diffusion works tile by tile (XY tiles with a
halo) so its memory stays bounded on large volumes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..backend import array_module, ndimage_module

#: (diffusion steps, time step, recompute the tensor every n steps) per CED level
CED_LEVELS: dict[int, tuple[int, float, int]] = {1: (10, 0.2, 5), 2: (20, 0.2, 5),
                                                 3: (40, 0.2, 8)}


def _grad(u: Any, axis: int, h: float) -> Any:
    """Central difference along ``axis`` with spacing ``h`` (one-sided at the borders)."""
    xp = array_module(u)
    return xp.gradient(u, h, axis=axis)


def _eig_smallest(j11: Any, j22: Any, j33: Any, j12: Any, j13: Any,
                  j23: Any) -> tuple[Any, Any, Any]:
    """Eigenvalues (largest, middle, smallest) and the unit eigenvector of the smallest,
    for a field of symmetric 3x3 matrices (closed form, vectorised)."""
    xp = array_module(j11)
    q = (j11 + j22 + j33) / 3.0
    p1 = j12 * j12 + j13 * j13 + j23 * j23
    p2 = (j11 - q) ** 2 + (j22 - q) ** 2 + (j33 - q) ** 2 + 2.0 * p1
    p = xp.sqrt(p2 / 6.0)
    safe = xp.where(p > 1e-20, p, 1.0)
    b11, b22, b33 = (j11 - q) / safe, (j22 - q) / safe, (j33 - q) / safe
    b12, b13, b23 = j12 / safe, j13 / safe, j23 / safe
    detb = (b11 * (b22 * b33 - b23 * b23) - b12 * (b12 * b33 - b23 * b13)
            + b13 * (b12 * b23 - b22 * b13))
    r = xp.clip(detb / 2.0, -1.0, 1.0)
    phi = xp.arccos(r) / 3.0
    e1 = q + 2.0 * p * xp.cos(phi)
    e3 = q + 2.0 * p * xp.cos(phi + 2.0 * math.pi / 3.0)
    e2 = 3.0 * q - e1 - e3
    # eigenvector of e3: cross product of two rows of (J - e3 I), the best-conditioned pair
    a11, a22, a33 = j11 - e3, j22 - e3, j33 - e3
    rows = ((a11, j12, j13), (j12, a22, j23), (j13, j23, a33))

    def cross(u: tuple[Any, Any, Any], v: tuple[Any, Any, Any]) -> tuple[Any, Any, Any]:
        return (u[1] * v[2] - u[2] * v[1], u[2] * v[0] - u[0] * v[2],
                u[0] * v[1] - u[1] * v[0])

    cands = [cross(rows[0], rows[1]), cross(rows[0], rows[2]), cross(rows[1], rows[2])]
    norms = [c[0] ** 2 + c[1] ** 2 + c[2] ** 2 for c in cands]
    norms_a = xp.stack(norms)
    best = xp.argmax(norms_a, axis=0)
    # choices as one stacked array: CuPy's choose takes no list of arrays
    v = [xp.choose(best, xp.stack([c[i] for c in cands])) for i in range(3)]
    n = xp.sqrt(xp.choose(best, norms_a))
    ok = n > 1e-30
    n = xp.where(ok, n, 1.0)
    v = [xp.where(ok, vi / n, 1.0 if i == 0 else 0.0) for i, vi in enumerate(v)]
    return e1, e2, (e3, v[0], v[1], v[2])


@dataclass(frozen=True)
class CEDSettings:
    """Coherence-enhancing diffusion settings.

    Attributes
    ----------
    steps : int
        Explicit diffusion steps.
    dt : float
        Time step (voxel² units); stable below about 0.25.
    recompute : int
        Steps between re-estimations of the diffusion tensor.
    sigma : float
        Noise scale of the gradient, in XY voxels.
    rho : float
        Integration scale of the structure tensor, in XY voxels (about the gap to bridge).
    alpha : float
        Diffusivity across structures (small: edges are kept).
    """

    steps: int
    dt: float = 0.2
    recompute: int = 4
    sigma: float = 0.7
    rho: float = 2.5
    alpha: float = 0.01

    @classmethod
    def level(cls, level: int) -> CEDSettings:
        """Settings of the manual's levels 1 (gentle), 2 (normal), 3 (aggressive)."""
        if level not in CED_LEVELS:
            raise ValueError(f"CED level must be 1, 2 or 3, got {level}")
        steps, dt, rec = CED_LEVELS[level]
        return cls(steps=steps, dt=dt, recompute=rec)

    @property
    def length_px(self) -> float:
        """Diffusion length along structures, ``sqrt(2 * steps * dt)`` voxels."""
        return math.sqrt(2.0 * self.steps * self.dt)


def coherence_enhance(vol: Any, settings: CEDSettings, *, anisotropy: float = 1.0,
                      tile_xy: int = 192) -> Any:
    """Coherence-enhancing diffusion (Weickert) in 3D: smooth along filaments, not across.

    The structure tensor of the smoothed gradient gives, at every voxel, the direction of
    least intensity change (the filament axis) and a coherence measure; intensity then
    diffuses along that axis with diffusivity up to 1 where the structure is line-like,
    and with ``alpha`` in every other direction, so gaps along thin processes fill while
    their cross-section stays sharp.

    Parameters
    ----------
    vol : array
        (Z, Y, X) non-negative intensity.
    settings : CEDSettings
        Strength (see :meth:`CEDSettings.level`).
    anisotropy : float
        ``dz_um / px_um``: z derivatives use this spacing.
    tile_xy : int
        XY tile size; tiles overlap by a halo wide enough to make the result identical to
        an untiled run within floating-point error.

    Returns
    -------
    array
        Float32 volume of the same shape.
    """
    halo = math.ceil(3 * settings.rho + 3 * settings.sigma + settings.steps + 2)
    return apply_tiled_xy(lambda t: _ced(t, settings, anisotropy), vol, tile_xy, halo)


def _ced(u0: Any, s: CEDSettings, anisotropy: float) -> Any:
    xp = array_module(u0)
    ndi = ndimage_module(xp)
    u = u0.astype(xp.float32, copy=True)
    hz = float(anisotropy)
    scale = float(xp.max(u)) if u.size else 0.0
    if scale <= 0:
        return u
    u /= scale
    sig = (s.sigma / hz, s.sigma, s.sigma)
    rho = (s.rho / hz, s.rho, s.rho)
    d = None
    for step in range(s.steps):
        if step % s.recompute == 0:
            us = ndi.gaussian_filter(u, sig, mode="nearest")
            gz, gy, gx = _grad(us, 0, hz), _grad(us, 1, 1.0), _grad(us, 2, 1.0)
            del us
            comps = [gz * gz, gy * gy, gx * gx, gz * gy, gz * gx, gy * gx]
            del gz, gy, gx
            comps = [ndi.gaussian_filter(c, rho, mode="nearest") for c in comps]
            e1, e2, (e3, vz, vy, vx) = _eig_smallest(*comps)
            del comps, e1
            kappa = (e2 - e3) ** 2
            del e2, e3
            # coherence threshold relative to the strongest structures of this tile
            cref = float(xp.percentile(kappa[kappa > 0], 99.0)) if bool((kappa > 0).any()) \
                else 1.0
            c_const = 1e-4 * max(cref, 1e-30)
            lam = s.alpha + (1.0 - s.alpha) * xp.exp(-c_const / xp.maximum(kappa, 1e-30))
            del kappa
            # D = alpha I + (lam - alpha) v v^T
            w = lam - s.alpha
            d = (w * vz * vz + s.alpha, w * vy * vy + s.alpha, w * vx * vx + s.alpha,
                 w * vz * vy, w * vz * vx, w * vy * vx)
            del w, lam, vz, vy, vx
        assert d is not None
        dzz, dyy, dxx, dzy, dzx, dyx = d
        uz, uy, ux = _grad(u, 0, hz), _grad(u, 1, 1.0), _grad(u, 2, 1.0)
        jz = dzz * uz + dzy * uy + dzx * ux
        jy = dzy * uz + dyy * uy + dyx * ux
        jx = dzx * uz + dyx * uy + dxx * ux
        del uz, uy, ux
        div = _grad(jz, 0, hz) + _grad(jy, 1, 1.0) + _grad(jx, 2, 1.0)
        u += s.dt * div
    xp.maximum(u, 0, out=u)
    u *= scale
    return u


def apply_tiled_xy(func: Callable[[Any], Any], vol: Any, tile: int, halo: int) -> Any:
    """Apply a local filter to XY tiles with a halo, and stitch the tile centres.

    ``func`` maps a (Z, y, x) array to a float32 array of the same shape.
    """
    xp = array_module(vol)
    _, Y, X = vol.shape
    if tile + 2 * halo >= Y and tile + 2 * halo >= X:
        return func(vol)
    out = xp.empty(vol.shape, xp.float32)
    for y0 in range(0, Y, tile):
        for x0 in range(0, X, tile):
            y1, x1 = min(Y, y0 + tile), min(X, x0 + tile)
            ya, xa = max(0, y0 - halo), max(0, x0 - halo)
            yb, xb = min(Y, y1 + halo), min(X, x1 + halo)
            res = func(vol[:, ya:yb, xa:xb])
            out[:, y0:y1, x0:x1] = res[:, y0 - ya:y1 - ya, x0 - xa:x1 - xa]
    return out


# --------------------------------------------------------------------------- bilateral
def bilateral_planes(vol: Any, strength: float, *, range_sigma: float) -> Any:
    """Edge-preserving (bilateral) smoothing of every z-plane.

    Parameters
    ----------
    vol : array
        (Z, Y, X) intensity.
    strength : float
        Spatial sigma in XY pixels (``bilat_chN``); 0 returns a float32 copy.
    range_sigma : float
        Intensity sigma (same units as ``vol``): differences much larger than this are
        edges and are not averaged across.

    Returns
    -------
    array
        Float32 smoothed volume.
    """
    xp = array_module(vol)
    v = vol.astype(xp.float32, copy=False)
    if strength <= 0:
        return v.copy()
    r = max(1, math.ceil(2.0 * strength))
    pad = xp.pad(v, ((0, 0), (r, r), (r, r)), mode="reflect")
    Y, X = v.shape[1:]
    num = xp.zeros_like(v)
    den = xp.zeros_like(v)
    inv_s = -0.5 / (strength * strength)
    inv_r = -0.5 / max(range_sigma * range_sigma, 1e-12)
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            ws = math.exp((dy * dy + dx * dx) * inv_s)
            if ws < 1e-3:
                continue
            nb = pad[:, r + dy:r + dy + Y, r + dx:r + dx + X]
            w = xp.exp((nb - v) ** 2 * inv_r) * ws
            num += w * nb
            den += w
    return num / den


def smoothing_sigma_voxels(sigma_um: float, spacing_um: tuple[float, float, float]
                           ) -> tuple[float, float, float]:
    """Gaussian sigma in voxels (z, y, x) for an isotropic physical sigma in µm."""
    return tuple(float(sigma_um / s) for s in spacing_um)  # type: ignore[return-value]


