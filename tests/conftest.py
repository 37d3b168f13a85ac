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


def admm_fixed_point(M: np.ndarray, D: np.ndarray, tau: float, y: np.ndarray) -> np.ndarray:
    """The float64 limit ``x = prox(z*)`` of PnP-ADMM with the linear denoiser ``D`` and data ``M x = y``.

    ``prox(z) = P z + c`` with ``P = (tau M^T M + I)^-1`` and ``c = tau P M^T y``; the fixed point of
    ``z = z + D(2 prox(z) - z) - prox(z)`` solves ``(D (2P - I) - P) z = c - 2 D c``.
    """
    n = M.shape[1]
    P = np.linalg.inv(tau * M.T @ M + np.eye(n))
    c = P @ (tau * M.T @ y.ravel())
    z = np.linalg.solve(D @ (2 * P - np.eye(n)) - P, c - 2 * D @ c)
    return P @ z + c


@pytest.fixture
def gen():
    """A seeded torch generator (each test gets a fresh one)."""
    return torch.Generator().manual_seed(1234)
