"""Shared fixtures: small generated datasets (cached per session)."""

from __future__ import annotations

import functools

import pytest

from neuroglia5d.sample_data import SampleDataset, make_sample


@functools.cache
def _sample(kind: str, shape: tuple[int, int, int, int], seed: int) -> SampleDataset:
    return make_sample(kind, shape=shape, seed=seed)


@pytest.fixture(scope="session")
def nuclei_small() -> SampleDataset:
    """Nuclei-like sample, (3, 24, 160, 160), seed 5."""
    return _sample("nuclei", (3, 24, 160, 160), 5)


@pytest.fixture(scope="session")
def microglia_small() -> SampleDataset:
    """Microglia-like sample, (3, 24, 192, 192), seed 5."""
    return _sample("microglia", (3, 24, 192, 192), 5)


def sample(kind: str, shape: tuple[int, int, int, int], seed: int) -> SampleDataset:
    """Cached sample for tests that need another shape."""
    return _sample(kind, shape, seed)
