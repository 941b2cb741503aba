"""Deterministic synthetic 4D fluorescence-microscopy data sets with ground truth.

Two kinds of time series ``(T, Z, Y, X)`` are generated from an integer seed, for the demo,
the tests and the benchmarks:

``"nuclei"``
    Compact, textured ellipsoids (XY semi-axes 4–6 µm, Z semi-axis 3–5 µm, random rotation
    about the optical axis) filling about 8 % of the volume; about a fifth of them touch a
    neighbour. They persist through the series (no divisions).
``"microglia"``
    Branching cells: an ellipsoidal soma (radius 3.5–5 µm) with 4–7 primary processes
    (10–25 µm, 2 voxels wide, 1 plane thick) that carry 1–3 thin secondary branches
    (5–12 µm, 1 voxel wide) each. Every branch extends and retracts over time. About a
    quarter of the cells touch a neighbour.

The physical model (all numbers are fields of :class:`Difficulty`, one instance per kind in
:data:`DIFFICULTY`):

* voxel size 0.5 µm in XY and 1.5 µm in Z;
* anisotropic Gaussian PSF, σ_xy = 0.35 µm, σ_z = 1.05 µm;
* background of 10 e⁻ per voxel on average, shaded by vignetting (0.6 at the corners, 1.0 at
  the centre) and by a smooth random field (±40 %, correlation length about 40 µm), plus an
  out-of-focus haze equal to 0.08 × the object signal blurred with a 6 µm Gaussian, plus a
  few bright debris specks (1–2 voxels, not in the ground truth);
* per-object brightness factor (lognormal, clipped to 0.7–1.4) and a smooth internal
  texture of at most ±15 %;
* camera: photo-electrons ``Poisson(signal + background)``, then
  ``ADU = 100 + 2.0 × (photo-electrons + Normal(0, 1.5 e⁻))``, rounded and clipped to uint16;
* drift: the whole scene follows a random walk (steps up to 1.0 µm in XY and 0.3 µm in Z
  per frame) and every object jitters independently by at most 0.3 µm per frame.

The ground truth gives every object its track id (1..N) in every frame where it is visible;
tracks start at frame 0 and end when the object leaves the field of view.

Examples
--------
>>> from neuroglia5d.sample_data import make_sample, write_sample
>>> ds = make_sample("nuclei", shape=(3, 24, 128, 128), seed=1)
>>> ds.raw.shape, ds.raw.dtype.name, ds.labels.dtype.name
((3, 24, 128, 128), 'uint16', 'uint32')
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
from numpy.typing import NDArray
from scipy import ndimage as ndi

from .errors import InputError, ParameterError

__all__ = [
    "DIFFICULTY",
    "DZ_UM",
    "KINDS",
    "PX_UM",
    "Difficulty",
    "SampleDataset",
    "SamplePaths",
    "make_sample",
    "read_ground_truth",
    "touching_fraction",
    "write_sample",
]

PX_UM: float = 0.5
"""Voxel size in X and Y, in µm."""

DZ_UM: float = 1.5
"""Voxel size (plane spacing) in Z, in µm."""

KINDS: tuple[str, ...] = ("nuclei", "microglia")
"""The kinds of sample :func:`make_sample` knows."""

_KIND_CODE = {"nuclei": 1, "microglia": 2}
_UINT16_MAX = 65535
_N_SLABS = 4  # camera noise is drawn in this many z-slabs per frame (fixed: reproducible)
_PARTIAL = ".partial"


@dataclass(frozen=True)
class Difficulty:
    """Every number of the physical model of one kind of sample.

    Ranges are ``(low, high)`` tuples, drawn uniformly unless said otherwise. Fields that do
    not apply to a kind are zero (nuclei have no processes).

    Attributes
    ----------
    kind : str
        ``"nuclei"`` or ``"microglia"``.
    px_um, dz_um : float
        Voxel size in XY and in Z, µm.
    psf_sigma_xy_um, psf_sigma_z_um : float
        Standard deviations of the Gaussian point-spread function, µm.
    camera_offset_adu : float
        Camera offset (bias), ADU.
    camera_gain_adu_per_e : float
        Camera gain, ADU per photo-electron.
    read_noise_e : float
        Gaussian read noise, e⁻ rms.
    background_e : float
        Mean background per voxel (before haze), photo-electrons.
    vignetting_corner_rel : float
        Relative illumination at the corners of the field (1.0 at the centre).
    background_field_amplitude_rel : float
        The background is multiplied by ``1 + amplitude × f`` with ``f`` a smooth random field
        of unit standard deviation (clipped to ±2).
    background_field_corr_um : float
        Correlation length of that field, µm.
    haze_fraction : float
        Out-of-focus haze, as a fraction of the object signal blurred with ``haze_sigma_um``.
    haze_sigma_um : float
        Standard deviation of the haze blur, µm.
    debris_per_10000_um2 : float
        Bright debris specks (1–2 voxels, not in the ground truth) per volume and per
        10 000 µm² of field of view.
    debris_brightness_rel : float
        Brightness of a speck before blurring, relative to ``object_signal_e``.
    object_signal_e : float
        Mean object signal before blurring (nuclei; microglia somata), photo-electrons per
        voxel. It sets the signal-to-noise ratio.
    brightness_range_rel : tuple of float
        Clip range of the per-object lognormal brightness factor.
    brightness_log_sigma : float
        Standard deviation of the log of that factor.
    texture_amplitude_rel : float
        Largest relative deviation of the smooth internal texture (and of the brightness of
        the varicosities along processes).
    texture_wavelength_um : tuple of float
        Range of the texture's wavelengths, µm.
    target_snr : float
        SNR the model is tuned to, ``mean signal / sqrt(signal + background + read_noise²)``
        over the ground-truth voxels at t = 0 (the measured value is
        :attr:`SampleDataset.snr`).
    drift_step_xy_um, drift_step_z_um : float
        Largest per-frame step of the whole-scene random-walk drift, µm.
    jitter_step_um : float
        Largest per-frame change of the independent jitter of each object, µm.
    radius_xy_um, radius_z_um : tuple of float
        Semi-axes of the nucleus / soma ellipsoid in XY and in Z, µm.
    volume_fraction : float
        Target foreground volume fraction (nuclei; 0 for microglia).
    cell_area_um2 : float
        XY area per cell, µm² (microglia; 0 for nuclei).
    touching_fraction : float
        Target fraction of objects that touch another one at t = 0.
    touch_distance_rel : tuple of float
        Nuclei placed against a neighbour: centre distance as a multiple of the sum of the two
        radii along the line joining the centres.
    touch_soma_distance_um : tuple of float
        Microglia placed against a neighbour: soma centre distance, µm.
    primary_processes, secondary_branches : tuple of int
        Number of primary processes per cell and of secondary branches per primary process.
    primary_length_um, secondary_length_um : tuple of float
        Full lengths of primary processes and secondary branches, µm.
    primary_width_vox, secondary_width_vox : int
        Width in XY of primary and secondary processes, voxels (they are 1 plane thick).
    process_elevation_max_deg : float
        Largest elevation of processes out of the XY plane, degrees.
    process_persistence_um : float
        Persistence length of the processes' random walk, µm.
    process_brightness_rel : float
        Process brightness relative to the soma (processes stay visible after the blur).
    extension_mean_rel, extension_amplitude_rel : float
        The drawn fraction of each branch is ``mean + amplitude × sin(ω t + phase)``.
    extension_omega_rad_per_frame : float
        ``ω`` of that oscillation, radians per frame.
    """

    kind: str
    px_um: float = PX_UM
    dz_um: float = DZ_UM
    psf_sigma_xy_um: float = 0.35
    psf_sigma_z_um: float = 1.05
    camera_offset_adu: float = 100.0
    camera_gain_adu_per_e: float = 2.0
    read_noise_e: float = 1.5
    background_e: float = 10.0
    vignetting_corner_rel: float = 0.6
    background_field_amplitude_rel: float = 0.4
    background_field_corr_um: float = 40.0
    haze_fraction: float = 0.08
    haze_sigma_um: float = 6.0
    debris_per_10000_um2: float = 4.0
    debris_brightness_rel: float = 8.0
    object_signal_e: float = 60.0
    brightness_range_rel: tuple[float, float] = (0.7, 1.4)
    brightness_log_sigma: float = 0.2
    texture_amplitude_rel: float = 0.15
    texture_wavelength_um: tuple[float, float] = (2.0, 5.0)
    target_snr: float = 7.0
    drift_step_xy_um: float = 1.0
    drift_step_z_um: float = 0.3
    jitter_step_um: float = 0.3
    radius_xy_um: tuple[float, float] = (4.0, 6.0)
    radius_z_um: tuple[float, float] = (3.0, 5.0)
    volume_fraction: float = 0.0
    cell_area_um2: float = 0.0
    touching_fraction: float = 0.2
    touch_distance_rel: tuple[float, float] = (0.0, 0.0)
    touch_soma_distance_um: tuple[float, float] = (0.0, 0.0)
    primary_processes: tuple[int, int] = (0, 0)
    secondary_branches: tuple[int, int] = (0, 0)
    primary_length_um: tuple[float, float] = (0.0, 0.0)
    secondary_length_um: tuple[float, float] = (0.0, 0.0)
    primary_width_vox: int = 0
    secondary_width_vox: int = 0
    process_elevation_max_deg: float = 0.0
    process_persistence_um: float = 0.0
    process_brightness_rel: float = 0.0
    extension_mean_rel: float = 0.0
    extension_amplitude_rel: float = 0.0
    extension_omega_rad_per_frame: float = 0.0


DIFFICULTY: dict[str, Difficulty] = {
    "nuclei": Difficulty(
        kind="nuclei",
        object_signal_e=72.0,
        target_snr=7.0,
        radius_xy_um=(4.0, 6.0),
        radius_z_um=(3.0, 5.0),
        volume_fraction=0.08,
        touching_fraction=0.2,
        touch_distance_rel=(0.95, 1.0),
    ),
    "microglia": Difficulty(
        kind="microglia",
        object_signal_e=57.0,
        target_snr=6.0,
        radius_xy_um=(3.5, 5.0),
        radius_z_um=(3.5, 5.0),
        cell_area_um2=45.0 * 45.0,
        touching_fraction=0.25,
        touch_soma_distance_um=(18.0, 24.0),
        primary_processes=(4, 7),
        secondary_branches=(1, 3),
        primary_length_um=(10.0, 25.0),
        secondary_length_um=(5.0, 12.0),
        primary_width_vox=2,
        secondary_width_vox=1,
        process_elevation_max_deg=30.0,
        process_persistence_um=15.0,
        process_brightness_rel=1.3,
        extension_mean_rel=0.6,
        extension_amplitude_rel=0.4,
        extension_omega_rad_per_frame=0.6,
    ),
}
"""The model of each kind of sample; the README quotes these numbers."""


@dataclass
class SampleDataset:
    """A generated time series with its ground truth.

    Attributes
    ----------
    kind : str
        ``"nuclei"`` or ``"microglia"``.
    raw : numpy.ndarray
        ``(T, Z, Y, X)`` uint16 image in camera ADU.
    labels : numpy.ndarray
        ``(T, Z, Y, X)`` uint32 ground truth; the label of an object is its track id.
    tracks : numpy.ndarray
        ``(N, 4)`` int64 rows ``(L, B, E, P)`` as in the Cell Tracking Challenge's
        ``man_track.txt``: label, first frame, last frame, parent (always 0).
    px_um, dz_um : float
        Voxel size in XY and in Z, µm.
    seed : int
        The seed the data were generated from.
    difficulty : Difficulty
        The model's numbers.
    snr : float
        Measured signal-to-noise ratio: ``s / sqrt(s + b + read_noise²)`` with ``s`` the mean
        blurred object signal and ``b`` the mean background (with haze) over the ground-truth
        voxels of frame 0, in photo-electrons (NaN when frame 0 has no object).
    """

    kind: str
    raw: NDArray[np.uint16]
    labels: NDArray[np.uint32]
    tracks: NDArray[np.int64]
    px_um: float
    dz_um: float
    seed: int
    difficulty: Difficulty
    snr: float


@dataclass
class SamplePaths:
    """Where :func:`write_sample` put each layout of a sample.

    Attributes
    ----------
    root : Path
        The folder that holds everything below.
    stacks : Path
        Folder with one multi-page ImageJ TIFF z-stack per timepoint, ``NAME_t{t}.tif``.
    planes : Path
        Folder with one 2D TIFF per plane and timepoint, ``NAME_t{t:03d}_z{z:03d}.tif``.
    hyperstack : Path
        One OME-TIFF with axes TZYX.
    ground_truth : Path
        Cell Tracking Challenge folder (``SEG/``, ``TRA/``).
    info : Path
        JSON summary of the sample.
    """

    root: Path
    stacks: Path
    planes: Path
    hyperstack: Path
    ground_truth: Path
    info: Path


# --------------------------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------------------------

_Voxels = tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.intp], NDArray[np.float32]]


def _empty_voxels() -> _Voxels:
    e = np.zeros(0, dtype=np.intp)
    return e, e, e, np.zeros(0, dtype=np.float32)


def _unit(az: float, el: float) -> NDArray[np.float64]:
    """Unit vector ``(z, y, x)`` of azimuth ``az`` (in XY, from +x) and elevation ``el``."""
    return np.array([math.sin(el), math.cos(el) * math.sin(az), math.cos(el) * math.cos(az)])


@dataclass
class _Ellipsoid:
    """Textured ellipsoid; all lengths in µm, vectors ordered ``(z, y, x)``."""

    centre_um: NDArray[np.float64]
    a: float  # semi-axis along the rotated x axis
    b: float  # semi-axis along the rotated y axis
    c: float  # semi-axis along z
    theta: float  # rotation about z, radians
    signal_e: float  # mean signal (brightness factor included)
    k: NDArray[np.float64]  # (3, 3) texture wave vectors, rad/µm
    phase: NDArray[np.float64]  # (3,) texture phases
    texture: float  # texture amplitude (relative)

    def radius_along(self, d: NDArray[np.float64]) -> float:
        """Distance from the centre to the surface along unit vector ``d``, µm."""
        ct, st = math.cos(self.theta), math.sin(self.theta)
        u = (ct * d[2] + st * d[1]) / self.a
        v = (-st * d[2] + ct * d[1]) / self.b
        w = d[0] / self.c
        return 1.0 / math.sqrt(u * u + v * v + w * w)

    def n_voxels(self, spacing: tuple[float, float, float]) -> float:
        """Volume in voxels."""
        return 4.0 / 3.0 * math.pi * self.a * self.b * self.c / (spacing[0] * spacing[1] ** 2)

    def voxels(
        self,
        offset_um: NDArray[np.float64],
        shape: tuple[int, int, int],
        spacing: tuple[float, float, float],
    ) -> _Voxels:
        """Voxels inside the ellipsoid (clipped to ``shape``) and their signal.

        Parameters
        ----------
        offset_um : numpy.ndarray
            Translation ``(z, y, x)`` added to the centre, µm.
        shape : tuple of int
            ``(Z, Y, X)`` of the volume.
        spacing : tuple of float
            ``(dz, px, px)`` voxel size, µm.

        Returns
        -------
        tuple
            Index arrays ``iz, iy, ix`` and the float32 signal of those voxels (e⁻).
        """
        cz, cy, cx = (self.centre_um + offset_um).tolist()
        ct, st = math.cos(self.theta), math.sin(self.theta)
        hx = math.sqrt((self.a * ct) ** 2 + (self.b * st) ** 2)
        hy = math.sqrt((self.a * st) ** 2 + (self.b * ct) ** 2)
        lo: list[int] = []
        hi: list[int] = []
        for cen, half, step, n in (
            (cz, self.c, spacing[0], shape[0]),
            (cy, hy, spacing[1], shape[1]),
            (cx, hx, spacing[2], shape[2]),
        ):
            lo.append(max(0, math.ceil((cen - half) / step)))
            hi.append(min(n - 1, math.floor((cen + half) / step)))
            if hi[-1] < lo[-1]:
                return _empty_voxels()
        dz = np.arange(lo[0], hi[0] + 1) * spacing[0] - cz
        dy = np.arange(lo[1], hi[1] + 1) * spacing[1] - cy
        dx = np.arange(lo[2], hi[2] + 1) * spacing[2] - cx
        u = (ct * dx[None, :] + st * dy[:, None]) / self.a
        v = (-st * dx[None, :] + ct * dy[:, None]) / self.b
        r2 = (u * u + v * v)[None, :, :] + ((dz / self.c) ** 2)[:, None, None]
        iz, iy, ix = np.nonzero(r2 <= 1.0)
        if iz.size == 0:
            return _empty_voxels()
        arg = (
            np.outer(dz[iz], self.k[:, 0])
            + np.outer(dy[iy], self.k[:, 1])
            + np.outer(dx[ix], self.k[:, 2])
            + self.phase[None, :]
        )
        tex = 1.0 + (self.texture / 3.0) * np.cos(arg).sum(axis=1)
        val = (self.signal_e * tex).astype(np.float32)
        return iz + lo[0], iy + lo[1], ix + lo[2], val


@dataclass
class _Branch:
    """One process of a microglia; points in µm relative to the soma centre."""

    pts_um: NDArray[np.float64]  # (n, 3)
    normal_um: NDArray[np.float64]  # (n, 3) unit XY normal of the path
    arclen_um: NDArray[np.float64]  # (n,)
    length_um: float
    parent: int  # index of the parent branch, -1 for a primary process
    attach_um: float  # arc length on the parent where this branch starts
    phase: float  # phase of the extension oscillation
    width_vox: int
    bead_k: float  # varicosity wave number along the branch, rad/µm
    bead_phase: float


@dataclass
class _Microglia:
    soma: _Ellipsoid
    branches: list[_Branch]
    process_signal_e: float
    texture: float
    ext_mean: float
    ext_amp: float
    omega: float

    def n_voxels(self, spacing: tuple[float, float, float]) -> float:
        """Volume of the soma in voxels."""
        return self.soma.n_voxels(spacing)

    def drawn_lengths(self, t: int) -> list[float]:
        """Drawn length of every branch at frame ``t`` (0 when it hangs off an undrawn part)."""
        out: list[float] = []
        for br in self.branches:
            frac = self.ext_mean + self.ext_amp * math.sin(self.omega * t + br.phase)
            length = br.length_um * min(1.0, max(0.0, frac))
            if br.parent >= 0 and br.attach_um > out[br.parent]:
                length = 0.0
            out.append(length)
        return out

    def voxels(
        self,
        offset_um: NDArray[np.float64],
        shape: tuple[int, int, int],
        spacing: tuple[float, float, float],
        t: int,
    ) -> _Voxels:
        """Voxels of the cell at frame ``t`` (processes first, the soma last) and their signal."""
        centre = self.soma.centre_um + offset_um
        sp = np.asarray(spacing)
        parts_z, parts_y, parts_x, parts_v = [], [], [], []
        for br, length in zip(self.branches, self.drawn_lengths(t), strict=True):
            if length <= 0.0:
                continue
            n = int(np.searchsorted(br.arclen_um, length, side="right"))
            if n == 0:
                continue
            pts = br.pts_um[:n] + centre
            s = br.arclen_um[:n]
            val = self.process_signal_e * (
                1.0 + self.texture * np.sin(br.bead_k * s + br.bead_phase)
            )
            offs = (np.arange(br.width_vox) - (br.width_vox - 1) / 2.0) * spacing[1]
            for off in offs:
                q = np.floor((pts + off * br.normal_um[:n]) / sp + 0.5).astype(np.intp)
                ok = (
                    (q[:, 0] >= 0)
                    & (q[:, 0] < shape[0])
                    & (q[:, 1] >= 0)
                    & (q[:, 1] < shape[1])
                    & (q[:, 2] >= 0)
                    & (q[:, 2] < shape[2])
                )
                parts_z.append(q[ok, 0])
                parts_y.append(q[ok, 1])
                parts_x.append(q[ok, 2])
                parts_v.append(val[ok].astype(np.float32))
        sz, sy, sx, sv = self.soma.voxels(offset_um, shape, spacing)
        parts_z.append(sz)
        parts_y.append(sy)
        parts_x.append(sx)
        parts_v.append(sv)
        return (
            np.concatenate(parts_z),
            np.concatenate(parts_y),
            np.concatenate(parts_x),
            np.concatenate(parts_v),
        )


_Object = _Ellipsoid | _Microglia


def _object_voxels(
    obj: _Object,
    offset_um: NDArray[np.float64],
    shape: tuple[int, int, int],
    spacing: tuple[float, float, float],
    t: int,
) -> _Voxels:
    if isinstance(obj, _Microglia):
        return obj.voxels(offset_um, shape, spacing, t)
    return obj.voxels(offset_um, shape, spacing)


def _brightness(rng: np.random.Generator, diff: Difficulty) -> float:
    lo, hi = diff.brightness_range_rel
    return float(np.clip(math.exp(rng.normal(0.0, diff.brightness_log_sigma)), lo, hi))


def _random_ellipsoid(
    rng: np.random.Generator, centre_um: NDArray[np.float64], diff: Difficulty, signal_e: float
) -> _Ellipsoid:
    a = rng.uniform(*diff.radius_xy_um)
    b = rng.uniform(*diff.radius_xy_um)
    if diff.kind == "microglia":  # Z radius similar to the XY one, in µm
        c = float(np.clip(0.5 * (a + b) * rng.uniform(0.85, 1.1), *diff.radius_z_um))
    else:
        c = rng.uniform(*diff.radius_z_um)
    lam = rng.uniform(*diff.texture_wavelength_um, size=3)
    dirs = rng.normal(size=(3, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    return _Ellipsoid(
        centre_um=np.asarray(centre_um, dtype=np.float64),
        a=float(a),
        b=float(b),
        c=float(c),
        theta=float(rng.uniform(0.0, math.pi)),
        signal_e=signal_e * _brightness(rng, diff),
        k=dirs * (2.0 * math.pi / lam)[:, None],
        phase=rng.uniform(0.0, 2.0 * math.pi, size=3),
        texture=diff.texture_amplitude_rel,
    )


def _walk(
    rng: np.random.Generator,
    start: NDArray[np.float64],
    az0: float,
    el0: float,
    length: float,
    diff: Difficulty,
    step: float,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Persistent random walk; returns points, XY normals, azimuths and elevations."""
    n = max(1, math.ceil(length / step))
    el_max = math.radians(diff.process_elevation_max_deg)
    sd = math.sqrt(step / diff.process_persistence_um)
    az = az0 + np.cumsum(rng.normal(0.0, sd, size=n))
    el = np.clip(el0 + np.cumsum(rng.normal(0.0, 0.5 * sd, size=n)), -el_max, el_max)
    d = np.stack([np.sin(el), np.cos(el) * np.sin(az), np.cos(el) * np.cos(az)], axis=1)
    pts = np.vstack([start[None, :], start[None, :] + np.cumsum(step * d, axis=0)])
    az_full = np.concatenate([[az0], az])
    el_full = np.concatenate([[el0], el])
    normal = np.stack([np.zeros_like(az_full), np.cos(az_full), -np.sin(az_full)], axis=1)
    return pts, normal, az_full, el_full


def _random_microglia(
    rng: np.random.Generator, centre_um: NDArray[np.float64], diff: Difficulty
) -> _Microglia:
    soma = _random_ellipsoid(rng, centre_um, diff, diff.object_signal_e)
    step = 0.25 * diff.px_um  # dense enough for 26-connected rasterisation
    el_max = math.radians(diff.process_elevation_max_deg)
    branches: list[_Branch] = []
    n_primary = int(rng.integers(diff.primary_processes[0], diff.primary_processes[1] + 1))
    az_first = rng.uniform(0.0, 2.0 * math.pi)
    for k in range(n_primary):
        az = az_first + 2.0 * math.pi * k / n_primary + rng.normal(0.0, 0.35)
        el = rng.uniform(-0.5 * el_max, 0.5 * el_max)
        d = _unit(az, el)
        start = d * 0.8 * soma.radius_along(d)
        length = rng.uniform(*diff.primary_length_um)
        pts, normal, azs, els = _walk(rng, start, az, el, length, diff, step)
        parent = len(branches)
        branches.append(_new_branch(rng, pts, normal, step, -1, 0.0, diff.primary_width_vox))
        n_sec = int(rng.integers(diff.secondary_branches[0], diff.secondary_branches[1] + 1))
        for _ in range(n_sec):
            i = int(rng.integers(int(0.2 * (len(pts) - 1)), int(0.9 * (len(pts) - 1)) + 1))
            az2 = float(azs[i]) + rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 1.2)
            el2 = float(np.clip(els[i] + rng.normal(0.0, 0.15), -el_max, el_max))
            length2 = rng.uniform(*diff.secondary_length_um)
            pts2, normal2, _, _ = _walk(rng, pts[i], az2, el2, length2, diff, step)
            branches.append(
                _new_branch(rng, pts2, normal2, step, parent, i * step, diff.secondary_width_vox)
            )
    return _Microglia(
        soma=soma,
        branches=branches,
        process_signal_e=soma.signal_e * diff.process_brightness_rel,
        texture=diff.texture_amplitude_rel,
        ext_mean=diff.extension_mean_rel,
        ext_amp=diff.extension_amplitude_rel,
        omega=diff.extension_omega_rad_per_frame,
    )


def _new_branch(
    rng: np.random.Generator,
    pts: NDArray[np.float64],
    normal: NDArray[np.float64],
    step: float,
    parent: int,
    attach_um: float,
    width: int,
) -> _Branch:
    return _Branch(
        pts_um=pts,
        normal_um=normal,
        arclen_um=np.arange(len(pts)) * step,
        length_um=(len(pts) - 1) * step,
        parent=parent,
        attach_um=attach_um,
        phase=float(rng.uniform(0.0, 2.0 * math.pi)),
        width_vox=width,
        bead_k=2.0 * math.pi / rng.uniform(2.0, 4.0),
        bead_phase=float(rng.uniform(0.0, 2.0 * math.pi)),
    )


# --------------------------------------------------------------------------------------------
# Placement (rejection sampling on the frame-0 raster)
# --------------------------------------------------------------------------------------------


class _Canvas:
    """Label and signal volumes of one frame; earlier-drawn objects keep their voxels."""

    def __init__(self, labels: NDArray[np.uint32], signal: NDArray[np.float32]) -> None:
        self.labels = labels
        self.signal = signal

    def free(self, vox: _Voxels) -> _Voxels:
        iz, iy, ix, val = vox
        ok = self.labels[iz, iy, ix] == 0
        return iz[ok], iy[ok], ix[ok], val[ok]

    def draw(self, vox: _Voxels, label: int) -> int:
        iz, iy, ix, val = self.free(vox)
        self.labels[iz, iy, ix] = label
        self.signal[iz, iy, ix] = val
        return int(iz.size)

    def neighbours(self, vox: _Voxels, reach: tuple[int, int, int]) -> set[int]:
        """Labels within ``reach`` voxels (box neighbourhood, per axis) of ``vox``."""
        iz, iy, ix, _ = vox
        if iz.size == 0:
            return set()
        shape = self.labels.shape
        lo = [max(0, int(a.min()) - r) for a, r in zip((iz, iy, ix), reach, strict=True)]
        hi = [
            min(n, int(a.max()) + r + 1) for a, r, n in zip((iz, iy, ix), reach, shape, strict=True)
        ]
        box = np.zeros([h - lo_ for lo_, h in zip(lo, hi, strict=True)], dtype=np.uint8)
        box[iz - lo[0], iy - lo[1], ix - lo[2]] = 1
        for axis, r in enumerate(reach):  # dilation by a box = separable maximum filters
            if r:
                box = ndi.maximum_filter1d(box, 2 * r + 1, axis=axis, mode="constant")
        sub = self.labels[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        found = np.unique(sub[box.view(bool)])
        return {int(v) for v in found if v != 0}


_GAP_REACH = (1, 2, 2)  # a clear gap is >= 1 plane in Z and >= 2 voxels in XY
_TOUCH_REACH = (1, 1, 1)  # 26-connectivity


def _place_objects(
    rng: np.random.Generator, shape: tuple[int, int, int], diff: Difficulty
) -> list[_Object]:
    """Place the objects of frame 0 by rejection sampling on the rasterised frame."""
    spacing = (diff.dz_um, diff.px_um, diff.px_um)
    extent = np.array(shape, dtype=np.float64) * np.array(spacing)
    canvas = _Canvas(np.zeros(shape, np.uint32), np.zeros(shape, np.float32))
    objects: list[_Object] = []
    touching: set[int] = set()
    isolated: list[int] = []
    zero = np.zeros(3)

    if diff.kind == "nuclei":
        target_vox = diff.volume_fraction * float(np.prod(shape))
        mean_vol_vox = (
            4.0
            / 3.0
            * math.pi
            * np.mean(diff.radius_xy_um) ** 2
            * np.mean(diff.radius_z_um)
            / (spacing[0] * spacing[1] * spacing[2])
        )
        max_attempts = 50 * int(target_vox / mean_vol_vox + 10)
    else:
        area = extent[1] * extent[2]
        n_target = max(1, round(area / diff.cell_area_um2))
        max_attempts = 60 * n_target
    fg_vox = 0

    for _ in range(max_attempts):
        if diff.kind == "nuclei" and fg_vox >= target_vox:
            break
        if diff.kind == "microglia" and len(objects) >= n_target:
            break
        want_touch = bool(isolated) and len(touching) < diff.touching_fraction * (len(objects) + 1)
        partner = int(rng.choice(isolated)) if want_touch else 0
        obj: _Object
        if diff.kind == "nuclei":
            obj = _candidate_nucleus(rng, extent, diff, objects, partner)
        else:
            obj = _candidate_microglia(rng, extent, diff, objects, partner)
        vox = canvas.free(_object_voxels(obj, zero, shape, spacing, 0))
        n_vox = vox[0].size
        if n_vox < 0.25 * obj.n_voxels(spacing):  # mostly outside the field or hidden
            continue
        near = canvas.neighbours(vox, _GAP_REACH)
        if partner:
            if near - {partner} or partner not in canvas.neighbours(vox, _TOUCH_REACH):
                continue
        elif near:
            continue
        label = len(objects) + 1
        canvas.draw(vox, label)
        objects.append(obj)
        fg_vox += n_vox
        if partner:
            touching.update((label, partner))
            isolated.remove(partner)
        else:
            isolated.append(label)
    return objects


def _candidate_nucleus(
    rng: np.random.Generator,
    extent: NDArray[np.float64],
    diff: Difficulty,
    objects: list[_Object],
    partner: int,
) -> _Ellipsoid:
    nuc = _random_ellipsoid(rng, np.zeros(3), diff, diff.object_signal_e)
    if partner:
        other = objects[partner - 1]
        assert isinstance(other, _Ellipsoid)
        d = _unit(rng.uniform(0.0, 2.0 * math.pi), rng.uniform(-0.6, 0.6))
        dist = rng.uniform(*diff.touch_distance_rel) * (other.radius_along(d) + nuc.radius_along(d))
        nuc.centre_um = other.centre_um + dist * d
    else:
        margin = 0.5 * np.array([nuc.c, max(nuc.a, nuc.b), max(nuc.a, nuc.b)])
        nuc.centre_um = rng.uniform(-margin, extent + margin)
    return nuc


def _candidate_microglia(
    rng: np.random.Generator,
    extent: NDArray[np.float64],
    diff: Difficulty,
    objects: list[_Object],
    partner: int,
) -> _Microglia:
    rz = float(np.mean(diff.radius_z_um))
    z_lo, z_hi = (rz, extent[0] - rz) if extent[0] > 2.0 * rz else (extent[0] / 2,) * 2
    if partner:
        other = objects[partner - 1]
        assert isinstance(other, _Microglia)
        az = rng.uniform(0.0, 2.0 * math.pi)
        dist = rng.uniform(*diff.touch_soma_distance_um)
        dzz = rng.normal(0.0, 2.0)
        c0 = other.soma.centre_um
        centre = np.array(
            [
                np.clip(c0[0] + dzz, z_lo, z_hi),
                c0[1] + dist * math.sin(az),
                c0[2] + dist * math.cos(az),
            ]
        )
    else:
        centre = np.array(
            [rng.uniform(z_lo, z_hi), rng.uniform(0.0, extent[1]), rng.uniform(0.0, extent[2])]
        )
    return _random_microglia(rng, centre, diff)


# --------------------------------------------------------------------------------------------
# Image formation
# --------------------------------------------------------------------------------------------


def _interp_axis(arr: NDArray[np.float32], axis: int, pos: NDArray[np.float64]) -> NDArray:
    """Linear interpolation of ``arr`` along ``axis`` at fractional indices ``pos``."""
    n = arr.shape[axis]
    pos = np.clip(pos, 0.0, n - 1)
    i0 = np.minimum(np.floor(pos).astype(np.intp), max(n - 2, 0))
    i1 = np.minimum(i0 + 1, n - 1)
    w = (pos - i0).astype(np.float32)
    wshape = [1] * arr.ndim
    wshape[axis] = -1
    w = w.reshape(wshape)
    a0 = np.take(arr, i0, axis=axis)
    a1 = np.take(arr, i1, axis=axis)
    a1 -= a0
    a1 *= w
    a0 += a1
    return a0


def _smooth_field(
    rng: np.random.Generator,
    shape: tuple[int, int, int],
    spacing: tuple[float, float, float],
    corr_um: float,
) -> NDArray[np.float32]:
    """Smooth Gaussian random field of zero mean and unit std, correlation ~``corr_um``."""
    node = corr_um / 4.0
    extent = [n * s for n, s in zip(shape, spacing, strict=True)]
    n_nodes = [math.ceil(e / node) + 7 for e in extent]
    coarse = ndi.gaussian_filter(rng.standard_normal(n_nodes), 2.0, mode="wrap")
    coarse = ((coarse - coarse.mean()) / coarse.std()).astype(np.float32)
    out = coarse
    for axis in (2, 1, 0):  # last axis first: the arrays grow as late as possible
        pos = np.arange(shape[axis]) * spacing[axis] / node + 3.0
        out = _interp_axis(out, axis, pos)
    return np.ascontiguousarray(out, dtype=np.float32)


def _background(
    rng: np.random.Generator, shape: tuple[int, int, int], diff: Difficulty
) -> NDArray[np.float32]:
    """Uneven background in photo-electrons per voxel, mean ``diff.background_e``."""
    _, ny, nx = shape
    yy = (np.arange(ny) - (ny - 1) / 2.0) / max((ny - 1) / 2.0, 1.0)
    xx = (np.arange(nx) - (nx - 1) / 2.0) / max((nx - 1) / 2.0, 1.0)
    r2 = (yy[:, None] ** 2 + xx[None, :] ** 2) / 2.0  # 0 at the centre, 1 at the corners
    vignette = (1.0 - (1.0 - diff.vignetting_corner_rel) * r2).astype(np.float32)
    spacing = (diff.dz_um, diff.px_um, diff.px_um)
    field = _smooth_field(rng, shape, spacing, diff.background_field_corr_um)
    np.clip(field, -2.0, 2.0, out=field)
    field *= np.float32(diff.background_field_amplitude_rel)
    field += np.float32(1.0)
    field *= vignette[None, :, :]
    field *= np.float32(diff.background_e / float(field.mean(dtype=np.float64)))
    return field


def _haze(signal: NDArray[np.float32], diff: Difficulty) -> NDArray[np.float32]:
    """``haze_fraction`` × signal blurred by a wide Gaussian, computed on a coarse grid."""
    nz, ny, nx = signal.shape
    sig_xy = diff.haze_sigma_um / diff.px_um
    sig_z = diff.haze_sigma_um / diff.dz_um
    f = max(1, min(round(sig_xy / 3.0), ny, nx))
    py, px = -ny % f, -nx % f
    s = np.pad(signal, ((0, 0), (0, py), (0, px)), mode="edge") if (py or px) else signal
    coarse = s.reshape(nz, (ny + py) // f, f, (nx + px) // f, f).mean(axis=(2, 4))
    coarse = ndi.gaussian_filter(coarse, (sig_z, sig_xy / f, sig_xy / f), mode="nearest")
    coarse *= np.float32(diff.haze_fraction)
    out = coarse
    for axis, n in ((2, nx), (1, ny)):
        out = _interp_axis(out, axis, (np.arange(n) + 0.5) / f - 0.5)
    return np.ascontiguousarray(out, dtype=np.float32)


def _psf_kernel1d(sigma: float) -> NDArray[np.float64]:
    r = max(1, int(4.0 * sigma + 0.5))
    x = np.arange(-r, r + 1)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def _add_debris(blurred: NDArray[np.float32], rng: np.random.Generator, diff: Difficulty) -> None:
    """Add a few blurred bright specks (1–2 voxels) in place."""
    nz, ny, nx = blurred.shape
    area = ny * nx * diff.px_um**2
    n = max(1, round(diff.debris_per_10000_um2 * area / 1e4))
    kz = _psf_kernel1d(diff.psf_sigma_z_um / diff.dz_um)
    kxy = _psf_kernel1d(diff.psf_sigma_xy_um / diff.px_um)
    kernel = (kz[:, None, None] * kxy[None, :, None] * kxy[None, None, :]).astype(np.float32)
    rz, rxy = len(kz) // 2, len(kxy) // 2
    for _ in range(n):
        amp = diff.debris_brightness_rel * diff.object_signal_e * rng.uniform(0.6, 1.4)
        z, y, x = int(rng.integers(nz)), int(rng.integers(ny)), int(rng.integers(nx))
        spots = [(z, y, x)]
        if rng.random() < 0.5:  # a 2-voxel speck
            if rng.random() < 0.5:
                spots.append((z, min(ny - 1, y + 1), x))
            else:
                spots.append((z, y, min(nx - 1, x + 1)))
        for sz, sy, sx in spots:
            z0, y0, x0 = sz - rz, sy - rxy, sx - rxy
            zs, ys, xs = max(0, z0), max(0, y0), max(0, x0)
            ze, ye, xe = min(nz, sz + rz + 1), min(ny, sy + rxy + 1), min(nx, sx + rxy + 1)
            blurred[zs:ze, ys:ye, xs:xe] += (
                np.float32(amp) * kernel[zs - z0 : ze - z0, ys - y0 : ye - y0, xs - x0 : xe - x0]
            )


def _expected_electrons(
    signal: NDArray[np.float32],
    background: NDArray[np.float32],
    fg: NDArray[np.bool_] | None,
    diff: Difficulty,
    rng: np.random.Generator,
) -> tuple[NDArray[np.float32], float]:
    """Blur the object signal, add background, haze and debris (photo-electrons per voxel).

    Returns the expected photo-electrons and the SNR over ``fg`` (NaN without ``fg``).
    """
    sigma = (
        diff.psf_sigma_z_um / diff.dz_um,
        diff.psf_sigma_xy_um / diff.px_um,
        diff.psf_sigma_xy_um / diff.px_um,
    )
    blurred = ndi.gaussian_filter(signal, sigma, mode="nearest")
    bg = _haze(signal, diff)
    bg += background
    snr = float("nan")
    if fg is not None and fg.any():
        s = float(blurred[fg].mean(dtype=np.float64))
        b = float(bg[fg].mean(dtype=np.float64))
        snr = s / math.sqrt(s + b + diff.read_noise_e**2)
    _add_debris(blurred, rng, diff)
    blurred += bg
    del bg
    np.maximum(blurred, 0.0, out=blurred)
    return blurred, snr


def _camera(
    expected_e: NDArray[np.float32],
    diff: Difficulty,
    rng: np.random.Generator,
    out: NDArray[np.uint16],
) -> None:
    """Shot noise, read noise, gain and offset: write camera ADU into ``out``."""
    electrons = rng.poisson(expected_e).astype(np.float32)
    noise = rng.standard_normal(electrons.shape, dtype=np.float32)
    noise *= np.float32(diff.read_noise_e)
    electrons += noise
    del noise
    electrons *= np.float32(diff.camera_gain_adu_per_e)
    electrons += np.float32(diff.camera_offset_adu)
    np.rint(electrons, out=electrons)
    np.clip(electrons, 0, _UINT16_MAX, out=electrons)
    out[...] = electrons


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def _check_shape(shape: Any) -> tuple[int, int, int, int]:
    try:
        dims = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise ParameterError(f"shape: expected 4 integers (T, Z, Y, X), got {shape!r}") from None
    if len(dims) != 4 or min(dims) < 1 or min(dims[2:]) < 8:
        raise ParameterError(
            f"shape: expected (T, Z, Y, X) with T, Z >= 1 and Y, X >= 8, got {shape!r}"
        )
    return dims[0], dims[1], dims[2], dims[3]


def make_sample(
    kind: str, *, shape: tuple[int, int, int, int] = (5, 32, 256, 256), seed: int = 0,
    difficulty: Difficulty | None = None,
) -> SampleDataset:
    """Generate a synthetic 4D data set with its ground truth.

    The result depends only on ``kind``, ``shape``, ``seed`` and ``difficulty``.

    Parameters
    ----------
    kind : {"nuclei", "microglia"}
        What to draw.
    shape : tuple of int
        ``(T, Z, Y, X)`` in frames and voxels; voxels are 1.5 µm (Z) × 0.5 µm × 0.5 µm.
    seed : int
        Non-negative seed of the random generator.
    difficulty : Difficulty, optional
        The model's settings, instead of ``DIFFICULTY[kind]`` (for example
        ``dataclasses.replace(DIFFICULTY["nuclei"], jitter_step_um=8.0)`` for motile nuclei
        that move up to 8 µm between frames); its ``kind`` must be ``kind``.

    Returns
    -------
    SampleDataset
        Raw camera image (uint16 ADU), ground-truth labels (uint32, label = track id),
        the CTC track table and the measured SNR.

    Raises
    ------
    ParameterError
        Unknown ``kind``, a bad ``shape``, a negative ``seed`` or a ``difficulty`` of
        another kind.
    """
    if kind not in DIFFICULTY:
        raise ParameterError(f"kind: expected one of {', '.join(KINDS)}, got {kind!r}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ParameterError(f"seed: expected a non-negative integer, got {seed!r}")
    n_t, nz, ny, nx = _check_shape(shape)
    vol_shape = (nz, ny, nx)
    diff = DIFFICULTY[kind] if difficulty is None else difficulty
    if diff.kind != kind:
        raise ParameterError(f"difficulty: its kind is {diff.kind!r}, not {kind!r}")
    spacing = (diff.dz_um, diff.px_um, diff.px_um)

    root = np.random.SeedSequence([int(seed), _KIND_CODE[kind]])
    ss_place, ss_motion, ss_bg, *ss_frames = root.spawn(3 + n_t)
    slabs = np.array_split(np.arange(nz), min(_N_SLABS, nz))
    # per frame: one stream for the debris, one per slab for the camera noise
    streams = [ss.spawn(1 + len(slabs)) for ss in ss_frames]
    objects = _place_objects(np.random.default_rng(ss_place), vol_shape, diff)
    motion = np.random.default_rng(ss_motion)
    drift = _scene_drift(motion, n_t, diff)
    jitter = _jitter(motion, n_t, len(objects), diff)
    background = _background(np.random.default_rng(ss_bg), vol_shape, diff)

    labels = np.zeros((n_t, *vol_shape), dtype=np.uint32)
    raw = np.empty((n_t, *vol_shape), dtype=np.uint16)
    last = np.full(len(objects), -1, dtype=np.int64)
    alive = np.ones(len(objects), dtype=bool)
    snr = float("nan")
    pending: list[Future[tuple[NDArray[np.float32], float]]] = []
    noise_jobs: list[Future[None]] = []

    def camera(t: int) -> None:
        """Wait for frame ``t``'s expected photo-electrons, queue its noise slab by slab."""
        nonlocal snr
        expected, frame_snr = pending[t].result()
        if t == 0:
            snr = frame_snr
        for z, ss in zip(slabs, streams[t][1:], strict=True):
            sl = slice(int(z[0]), int(z[-1]) + 1)
            noise_jobs.append(
                pool.submit(_camera, expected[sl], diff, np.random.default_rng(ss), raw[t, sl])
            )

    # Objects are drawn in the main thread; blur, background and camera noise run in threads
    # (NumPy and SciPy release the GIL there). Each frame and slab has its own random stream,
    # so the result does not depend on the number of threads.
    with ThreadPoolExecutor(max_workers=max(1, min(2, os.cpu_count() or 1))) as pool:
        for t in range(n_t):
            signal = np.zeros(vol_shape, dtype=np.float32)
            canvas = _Canvas(labels[t], signal)
            for i, obj in enumerate(objects):
                if not alive[i]:
                    continue
                vox = _object_voxels(obj, drift[t] + jitter[i, t], vol_shape, spacing, t)
                if canvas.draw(vox, i + 1) == 0:
                    alive[i] = False  # left the field: the track ends
                else:
                    last[i] = t
            fg = labels[0] > 0 if t == 0 else None
            rng_t = np.random.default_rng(streams[t][0])
            pending.append(pool.submit(_expected_electrons, signal, background, fg, diff, rng_t))
            del signal
            if t > 0:
                camera(t - 1)
        camera(n_t - 1)
        for job in noise_jobs:
            job.result()

    keep = np.flatnonzero(last >= 0)
    if keep.size < len(objects):  # empty at frame 0: drop and renumber consecutively
        lut = np.zeros(len(objects) + 1, dtype=np.uint32)
        lut[keep + 1] = np.arange(1, keep.size + 1, dtype=np.uint32)
        labels = lut[labels]
    tracks = np.zeros((keep.size, 4), dtype=np.int64)
    tracks[:, 0] = np.arange(1, keep.size + 1)
    tracks[:, 2] = last[keep]
    return SampleDataset(
        kind=kind,
        raw=raw,
        labels=labels,
        tracks=tracks,
        px_um=diff.px_um,
        dz_um=diff.dz_um,
        seed=int(seed),
        difficulty=diff,
        snr=snr,
    )


def _scene_drift(rng: np.random.Generator, n_t: int, diff: Difficulty) -> NDArray[np.float64]:
    """Whole-scene random walk ``(T, 3)`` in µm, zero at frame 0."""
    drift = np.zeros((n_t, 3))
    angle = rng.uniform(0.0, 2.0 * math.pi)
    for t in range(1, n_t):
        angle += rng.normal(0.0, 0.6)  # a slowly turning stage drift
        r = diff.drift_step_xy_um * rng.uniform(0.5, 1.0)
        step = [
            diff.drift_step_z_um * rng.uniform(-1.0, 1.0),
            r * math.sin(angle),
            r * math.cos(angle),
        ]
        drift[t] = drift[t - 1] + step
    return drift


def _jitter(
    rng: np.random.Generator, n_t: int, n_obj: int, diff: Difficulty
) -> NDArray[np.float64]:
    """Independent per-object offsets ``(N, T, 3)`` in µm.

    Zero at frame 0, then uniform in a ball of radius ``jitter_step_um / 2`` around the
    drifted position, so an object moves by at most ``jitter_step_um`` relative to the scene
    from one frame to the next (and the jitter never accumulates).
    """
    out = np.zeros((max(n_obj, 1), n_t, 3))
    if n_t > 1:
        d = rng.normal(size=(max(n_obj, 1), n_t - 1, 3))
        d /= np.linalg.norm(d, axis=2, keepdims=True)
        r = 0.5 * diff.jitter_step_um * rng.random((max(n_obj, 1), n_t - 1, 1)) ** (1.0 / 3.0)
        out[:, 1:] = d * r
    return out[:n_obj]


_OFFSETS_13 = [
    (dz, dy, dx)
    for dz in (-1, 0, 1)
    for dy in (-1, 0, 1)
    for dx in (-1, 0, 1)
    if (dz, dy, dx) > (0, 0, 0)
]


def _shifted(d: int, n: int) -> tuple[slice, slice]:
    """Slices ``a, b`` of an axis of length ``n`` such that ``b`` is ``a`` moved by ``d``."""
    return (slice(0, n - d), slice(d, n)) if d >= 0 else (slice(-d, n), slice(0, n + d))


def _touching_labels(labels: NDArray[np.integer]) -> NDArray[np.integer]:
    """Labels of a 3D label image that touch a different label (26-connectivity)."""
    found: list[NDArray[np.integer]] = []
    nz, ny, nx = labels.shape
    for dz, dy, dx in _OFFSETS_13:
        (az, bz), (ay, by), (ax, bx) = _shifted(dz, nz), _shifted(dy, ny), _shifted(dx, nx)
        a = labels[az, ay, ax]
        b = labels[bz, by, bx]
        m = a != b
        m &= a != 0
        m &= b != 0
        if m.any():
            found.append(np.unique(a[m]))
            found.append(np.unique(b[m]))
    if not found:
        return np.zeros(0, dtype=labels.dtype)
    return np.unique(np.concatenate(found))


def touching_fraction(labels: NDArray[np.integer]) -> float:
    """Fraction of the labels of a 3D label image that touch another label.

    Parameters
    ----------
    labels : numpy.ndarray
        ``(Z, Y, X)`` integer labels, 0 = background.

    Returns
    -------
    float
        Labels with a 26-connected neighbour voxel of a different non-zero label, divided by
        the number of non-zero labels (0.0 when there is none).
    """
    top = int(labels.max(initial=0))
    if top < 10_000_000 and int(labels.min(initial=0)) >= 0:
        flat = labels.ravel().astype(np.intp, copy=False)
        n = int(np.count_nonzero(np.bincount(flat, minlength=1)[1:]))
    else:
        n = int(np.count_nonzero(np.unique(labels)))
    return float(_touching_labels(labels).size / n) if n else 0.0


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def _replace(partial: Path, final: Path) -> None:
    """Move a finished ``partial`` file or folder to ``final``, replacing an older one."""
    if partial.is_dir():
        old = final.with_name(final.name + ".old")
        if final.exists():
            if old.exists():
                shutil.rmtree(old)
            os.replace(final, old)
        os.replace(partial, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(partial, final)


def _write_file(final: Path, write: Callable[[Any], None]) -> None:
    """Write ``final`` through ``final.partial`` (``write`` gets an open binary file)."""
    partial = final.with_name(final.name + _PARTIAL)
    try:
        with open(partial, "wb") as fh:
            write(fh)
        _replace(partial, final)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def _fresh_partial_dir(final: Path) -> Path:
    partial = final.with_name(final.name + _PARTIAL)
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    return partial


def write_sample(ds: SampleDataset, root: str | Path, name: str | None = None) -> SamplePaths:
    """Write a sample in three image layouts plus its ground truth and a JSON summary.

    Layout under ``root`` (``NAME`` defaults to the kind)::

        NAME_stacks/NAME_t{t}.tif             ZYX ImageJ TIFF per timepoint (t not padded)
        NAME_planes/NAME_t{t:03d}_z{z:03d}.tif  YX TIFF per plane and timepoint
        NAME.ome.tif                          OME-TIFF, axes TZYX
        NAME_GT/SEG/man_seg{t:03d}.tif        Cell Tracking Challenge ground truth
        NAME_GT/TRA/man_track{t:03d}.tif
        NAME_GT/TRA/man_track.txt
        NAME_info.json

    Every file or folder is written as ``NAME.partial`` first and renamed when complete; an
    older output of the same name is replaced. Pixel sizes are stored in µm.

    Parameters
    ----------
    ds : SampleDataset
        What :func:`make_sample` returned.
    root : str or Path
        Output folder (created if missing).
    name : str, optional
        Base name of the outputs; default ``ds.kind``.

    Returns
    -------
    SamplePaths
        The paths written.
    """
    root = Path(root)
    name = ds.kind if name is None else name
    if not name or "/" in name or "\\" in name:
        raise ParameterError(f"name: expected a plain file name, got {name!r}")
    root.mkdir(parents=True, exist_ok=True)
    paths = SamplePaths(
        root=root,
        stacks=root / f"{name}_stacks",
        planes=root / f"{name}_planes",
        hyperstack=root / f"{name}.ome.tif",
        ground_truth=root / f"{name}_GT",
        info=root / f"{name}_info.json",
    )
    n_t, nz = ds.raw.shape[:2]
    res = (1.0 / ds.px_um, 1.0 / ds.px_um)

    part = _fresh_partial_dir(paths.stacks)
    for t in range(n_t):
        with open(part / f"{name}_t{t}.tif", "wb") as fh:
            tifffile.imwrite(
                fh,
                ds.raw[t],
                imagej=True,
                resolution=res,
                metadata={"spacing": ds.dz_um, "unit": "um", "axes": "ZYX"},
            )
    _replace(part, paths.stacks)

    part = _fresh_partial_dir(paths.planes)
    for t in range(n_t):
        for z in range(nz):
            with open(part / f"{name}_t{t:03d}_z{z:03d}.tif", "wb") as fh:
                tifffile.imwrite(
                    fh,
                    ds.raw[t, z],
                    imagej=True,
                    resolution=res,
                    metadata={"unit": "um", "axes": "YX"},
                )
    _replace(part, paths.planes)

    _write_file(
        paths.hyperstack,
        lambda fh: tifffile.imwrite(
            fh,
            ds.raw,
            ome=True,
            photometric="minisblack",
            metadata={
                "axes": "TZYX",
                "PhysicalSizeX": ds.px_um,
                "PhysicalSizeXUnit": "µm",
                "PhysicalSizeY": ds.px_um,
                "PhysicalSizeYUnit": "µm",
                "PhysicalSizeZ": ds.dz_um,
                "PhysicalSizeZUnit": "µm",
            },
        ),
    )

    part = _fresh_partial_dir(paths.ground_truth)
    (part / "SEG").mkdir()
    (part / "TRA").mkdir()
    gt_dtype = np.uint16 if int(ds.labels.max(initial=0)) < _UINT16_MAX else np.uint32
    for t in range(n_t):
        mask = ds.labels[t].astype(gt_dtype, copy=False)
        tifffile.imwrite(part / "SEG" / f"man_seg{t:03d}.tif", mask, photometric="minisblack")
        tifffile.imwrite(part / "TRA" / f"man_track{t:03d}.tif", mask, photometric="minisblack")
    lines = "".join(f"{int(r[0])} {int(r[1])} {int(r[2])} {int(r[3])}\n" for r in ds.tracks)
    (part / "TRA" / "man_track.txt").write_text(lines, encoding="ascii")
    _replace(part, paths.ground_truth)

    lab0 = ds.labels[0]
    info = {
        "kind": ds.kind,
        "seed": ds.seed,
        "shape": [int(s) for s in ds.raw.shape],
        "axes": "TZYX",
        "px_um": ds.px_um,
        "dz_um": ds.dz_um,
        "snr": ds.snr if math.isfinite(ds.snr) else None,  # None: no object at t = 0
        "n_objects": int(ds.tracks.shape[0]),
        "touching_fraction_t0": touching_fraction(lab0),
        "foreground_fraction_t0": float(np.count_nonzero(lab0) / lab0.size),
        "difficulty": asdict(ds.difficulty),
    }
    text = json.dumps(info, indent=2, ensure_ascii=False) + "\n"
    _write_file(paths.info, lambda fh: fh.write(text.encode("utf-8")))
    return paths


_FRAME_RE = re.compile(r"(\d+)\.tiff?$", re.IGNORECASE)


def _frames(folder: Path, prefix: str) -> dict[int, Path]:
    out: dict[int, Path] = {}
    if folder.is_dir():
        for p in folder.iterdir():
            m = _FRAME_RE.search(p.name)
            if p.name.startswith(prefix) and m:
                out[int(m.group(1))] = p
    return out


def read_ground_truth(gt_dir: str | Path) -> tuple[NDArray[np.uint32], NDArray[np.int64]]:
    """Read a Cell Tracking Challenge ground-truth folder.

    Parameters
    ----------
    gt_dir : str or Path
        Folder with ``SEG/man_seg*.tif`` and ``TRA/man_track.txt`` (frames missing from
        ``SEG`` are taken from ``TRA/man_track*.tif``, then left empty).

    Returns
    -------
    labels : numpy.ndarray
        ``(T, Z, Y, X)`` uint32 masks (a 2D data set gets ``Z = 1``).
    tracks : numpy.ndarray
        ``(N, 4)`` int64 rows ``(L, B, E, P)``.

    Raises
    ------
    InputError
        The folder has no masks or no readable ``man_track.txt``.
    """
    gt = Path(gt_dir)
    seg = _frames(gt / "SEG", "man_seg")
    tra = _frames(gt / "TRA", "man_track")
    frames = {**tra, **seg}
    if not frames:
        raise InputError(f"{gt}: no SEG/man_seg*.tif or TRA/man_track*.tif masks")
    track_file = gt / "TRA" / "man_track.txt"
    try:
        text = track_file.read_text(encoding="ascii")
        rows = [[int(v) for v in line.split()] for line in text.splitlines() if line.strip()]
        tracks = np.array(rows, dtype=np.int64).reshape(-1, 4)
    except (OSError, ValueError) as exc:
        raise InputError(f"{track_file}: cannot read the track table ({exc})") from None
    first = tifffile.imread(next(iter(frames.values())))
    vol_shape = first.shape if first.ndim == 3 else (1, *first.shape)
    n_t = max(frames) + 1
    labels = np.zeros((n_t, *vol_shape), dtype=np.uint32)
    for t, path in frames.items():
        labels[t] = np.asarray(tifffile.imread(path)).reshape(vol_shape)
    return labels, tracks


if __name__ == "__main__":  # pragma: no cover - a quick look, no command line
    import time

    for _kind in KINDS:
        _t0 = time.perf_counter()
        _ds = make_sample(_kind, shape=(3, 32, 256, 256), seed=0)
        print(
            f"{_kind}: {_ds.tracks.shape[0]} objects, SNR {_ds.snr:.2f}, "
            f"touching {touching_fraction(_ds.labels[0]):.2f}, "
            f"foreground {np.count_nonzero(_ds.labels[0]) / _ds.labels[0].size:.3f}, "
            f"{time.perf_counter() - _t0:.1f} s"
        )
