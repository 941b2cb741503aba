"""Sample data for napari's File > Open Sample: generated 4D datasets with ground truth."""

from __future__ import annotations

from typing import Any

#: shape (T, Z, Y, X) of the samples shown in napari: small enough to generate in ~1 s
SAMPLE_SHAPE = (5, 32, 256, 256)


def _sample(kind: str, seed: int = 0) -> list[tuple[Any, dict[str, Any], str]]:
    from ..sample_data import make_sample

    ds = make_sample(kind, shape=SAMPLE_SHAPE, seed=seed)
    scale = (1.0, ds.dz_um, ds.px_um, ds.px_um)
    common = {"scale": scale, "axis_labels": ("t", "z", "y", "x"),
              "units": ("", "µm", "µm", "µm")}
    return [
        (ds.raw, {"name": f"{kind} raw", "colormap": "gray", **common}, "image"),
        (ds.labels, {"name": f"{kind} ground truth", "opacity": 0.5, **common}, "labels"),
    ]


def microglia_sample() -> list[tuple[Any, dict[str, Any], str]]:
    """Microglia-like branching cells over time: raw intensity and ground-truth labels."""
    return _sample("microglia")


def nuclei_sample() -> list[tuple[Any, dict[str, Any], str]]:
    """Nuclei-like ellipsoids over time: raw intensity and ground-truth labels."""
    return _sample("nuclei")
