"""Shared fixtures and float64 references for the test suite."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, settings

# Property tests are sized for the 2-core CI machine; no deadline since timings vary.
settings.register_profile("ci", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=300, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def dense_matrix(op, in_shape) -> np.ndarray:
    """The matrix of a linear operator in float64, built column by column from A e_i."""
    n = int(np.prod(in_shape[1:]))
    basis = torch.eye(n, dtype=torch.float64).reshape((n,) + tuple(in_shape[1:]))
    cols = op.A(basis).reshape(n, -1)
    return cols.T.numpy()


@pytest.fixture
def gen():
    """A seeded torch generator (each test gets a fresh one)."""
    return torch.Generator().manual_seed(1234)


@pytest.fixture(autouse=True, scope="session")
def _private_verification_cache(tmp_path_factory):
    """Tests remember verified certificates in a folder of their own, never the user's cache."""
    os.environ["PNP_STABLE_CACHE_DIR"] = str(tmp_path_factory.mktemp("pnp-stable-cache"))
    yield
