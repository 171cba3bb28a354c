"""Factories for the statistics tests: seeded generators and per-experiment moments."""

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest

from ramplight.core.stats import SampleMoments


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20240601)


@pytest.fixture
def moments_per_row() -> Callable[[npt.NDArray[np.float64]], list[SampleMoments]]:
    """Moments of each row of an (experiments, units) array: one simulated experiment per row."""

    def build(values: npt.NDArray[np.float64]) -> list[SampleMoments]:
        n = values.shape[1]
        sums = values.sum(axis=1)
        sums_sq = np.einsum("ij,ij->i", values, values)
        return [SampleMoments(n=n, sum=float(s), sum_sq=float(q)) for s, q in zip(sums, sums_sq, strict=True)]

    return build
