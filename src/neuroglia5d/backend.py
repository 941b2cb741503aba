"""The one place that picks the array backend (NumPy/SciPy on the CPU, CuPy/cupyx on a GPU).

Algorithms are written once against the module returned by :func:`array_module` (``xp``)
and :func:`ndimage_module` (``ndi``); the CPU path is the default. CuPy is imported
lazily and only when a GPU is requested or detected, so importing neuroglia5d never
initialises CUDA.

Examples
--------
>>> import numpy as np
>>> from neuroglia5d import backend
>>> a = backend.to_device(np.zeros((2, 3)), "cpu")
>>> backend.array_module(a).__name__
'numpy'
"""

from __future__ import annotations

import functools
from types import ModuleType
from typing import Any, Literal

import numpy as np

from .errors import ParameterError

Device = Literal["cpu", "gpu"]


@functools.cache
def _cupy() -> ModuleType | None:
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() < 1:
            return None
        return cupy
    except Exception:  # ImportError, CUDA driver errors: no usable GPU
        return None


def gpu_available() -> bool:
    """Return True when CuPy imports and sees at least one CUDA device."""
    return _cupy() is not None


def gpu_memory_bytes() -> tuple[int, int] | None:
    """Return ``(free, total)`` memory of the current GPU in bytes, or None without a GPU."""
    cp = _cupy()
    if cp is None:
        return None
    free, total = cp.cuda.runtime.memGetInfo()
    return int(free), int(total)


def resolve_device(device: str = "auto") -> Device:
    """Turn a user's ``auto|cpu|gpu`` choice into the device that will be used.

    Parameters
    ----------
    device : {"auto", "cpu", "gpu"}
        ``auto`` uses the GPU when CuPy sees one, else the CPU.

    Raises
    ------
    ParameterError
        For an unknown name, or ``gpu`` when no usable CUDA GPU/CuPy is present.
    """
    if device not in ("auto", "cpu", "gpu"):
        raise ParameterError(f"--device: expected auto, cpu or gpu, got {device!r}")
    if device == "cpu":
        return "cpu"
    if device == "gpu":
        if not gpu_available():
            raise ParameterError(
                "--device gpu: no usable CUDA GPU (install cupy-cuda12x and check the driver)"
            )
        return "gpu"
    return "gpu" if gpu_available() else "cpu"


def array_module(a: Any = None, device: Device | None = None) -> ModuleType:
    """Return ``numpy`` or ``cupy`` for an array (or for a device name)."""
    if device == "gpu":
        cp = _cupy()
        if cp is None:
            raise ParameterError("device 'gpu' requested but no usable CUDA GPU is present")
        return cp
    if device == "cpu" or a is None:
        return np
    cp = _cupy() if type(a).__module__.startswith("cupy") else None
    return cp if cp is not None else np


def ndimage_module(xp: ModuleType) -> ModuleType:
    """Return ``scipy.ndimage`` for NumPy or ``cupyx.scipy.ndimage`` for CuPy."""
    if xp is np:
        import scipy.ndimage as ndi

        return ndi
    import cupyx.scipy.ndimage as cndi

    return cndi


def to_device(a: Any, device: Device) -> Any:
    """Move an array to ``device`` (a no-op when it is already there)."""
    if device == "gpu":
        return array_module(device="gpu").asarray(a)
    return to_cpu(a)


def to_cpu(a: Any) -> np.ndarray:
    """Return a NumPy array, copying from the GPU when needed."""
    if type(a).__module__.startswith("cupy"):
        return a.get()
    return np.asarray(a)
