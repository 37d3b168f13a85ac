"""Downsampling and Inpainting against dense float64 references."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from operators import BOUNDARIES, Downsampling, Inpainting, adjoint_error, kernels, operator_norm
from tests.conftest import dense_matrix


@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("factor", [1, 2, 3])
def test_downsampling_adjoint(boundary, factor):
    op = Downsampling(factor, kernel=kernels.gaussian(1.0), boundary=boundary)
    assert adjoint_error(op.A, op.A_adjoint, (2, 3, 12 * factor // max(1, factor - 1) if factor > 1 else 12, 18)) < 1e-10


def test_downsampling_is_blur_then_decimation():
    op = Downsampling(2, kernel="levin:5")
    x = torch.randn(1, 2, 20, 24, dtype=torch.float64)
    torch.testing.assert_close(op.A(x), op.blur.A(x)[..., ::2, ::2])
    assert op.A(x).shape == (1, 2, 10, 12)


@pytest.mark.parametrize("boundary", ["circular", "reflect", "zero"])
@pytest.mark.parametrize("factor", [2, 3])
def test_downsampling_prox_matches_direct_solve(boundary, factor):
    op = Downsampling(factor, kernel=kernels.gaussian(0.8), boundary=boundary)
    shape = (1, 1, 6 * factor, 4 * factor)
    M = dense_matrix(op, shape)
    g = torch.Generator().manual_seed(0)
    z = torch.randn(shape, generator=g, dtype=torch.float64)
    y = torch.randn(op.A(z).shape, generator=g, dtype=torch.float64)
    x = op.prox_l2(z, y, 7.0, tol=1e-12)
    ref = np.linalg.solve(7.0 * M.T @ M + np.eye(M.shape[1]), 7.0 * M.T @ y.flatten().numpy() + z.flatten().numpy())
    np.testing.assert_allclose(x.flatten().numpy(), ref, atol=1e-9)


@pytest.mark.parametrize("kernel", ["levin:5", "gaussian:1.0", "box:3"])
@pytest.mark.parametrize("factor", [2, 4])
def test_downsampling_norm_exact_on_grid(kernel, factor):
    op = Downsampling(factor, kernel=kernel)
    shape = (1, 1, 16, 20)
    true = np.linalg.norm(dense_matrix(op, shape), 2)
    cert = operator_norm(op, shape)
    assert cert.kind == "exact"
    assert true <= cert.value <= true * (1 + 1e-9)


def test_downsampling_norm_other_boundaries_bounded():
    op = Downsampling(2, kernel="levin:5", boundary="replicate")
    shape = (1, 1, 16, 16)
    true = np.linalg.norm(dense_matrix(op, shape), 2)
    cert = operator_norm(op, shape)
    assert cert.kind == "upper_bound" and cert.value >= true


def test_downsampling_errors():
    with pytest.raises(ValueError, match="positive integer"):
        Downsampling(0)
    with pytest.raises(ValueError, match="positive integer"):
        Downsampling(1.5)
    with pytest.raises(ValueError, match="not a multiple of the factor 2"):
        Downsampling(2).A(torch.zeros(1, 1, 15, 16))


# -- Inpainting ----------------------------------------------------------------------------


@pytest.mark.parametrize("mask_shape", [(9, 11), (3, 9, 11), (1, 3, 9, 11), (2, 1, 9, 11)])
def test_inpainting_adjoint_and_norm(mask_shape):
    g = torch.Generator().manual_seed(0)
    mask = torch.rand(mask_shape, generator=g, dtype=torch.float64)
    op = Inpainting(mask)
    shape = (2, 3, 9, 11)
    assert adjoint_error(op.A, op.A_adjoint, shape) < 1e-12
    cert = operator_norm(op)
    true = np.linalg.norm(dense_matrix(op, (1,) + shape[1:]), 2) if mask_shape[0] != 2 else float(mask.max())
    assert cert.kind == "exact" and true <= cert.value <= true * (1 + 1e-9)


def test_inpainting_prox_closed_form():
    mask = (torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(0)) > 0.5).double()
    op = Inpainting(mask)
    M = dense_matrix(op, (1, 1, 8, 8))
    z, y = torch.randn(1, 1, 8, 8, dtype=torch.float64), torch.randn(1, 1, 8, 8, dtype=torch.float64)
    ref = np.linalg.solve(2.5 * M.T @ M + np.eye(64), 2.5 * M.T @ y.flatten().numpy() + z.flatten().numpy())
    np.testing.assert_allclose(op.prox_l2(z, y, 2.5).flatten().numpy(), ref, atol=1e-12)


def test_inpainting_random_is_reproducible():
    a = Inpainting.random((32, 32), 0.5, generator=torch.Generator().manual_seed(3))
    b = Inpainting.random((32, 32), 0.5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a.mask, b.mask)
    assert set(a.mask.unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize(
    "mask, match",
    [
        (torch.zeros(4), "shape"),
        (torch.tensor([[0.0, 1.5]]), r"in \[0, 1\]"),
        (torch.tensor([[0.0, -0.1]]), r"in \[0, 1\]"),
        (torch.tensor([[0.0, float("nan")]]), "NaN"),
    ],
)
def test_inpainting_mask_errors(mask, match):
    with pytest.raises(ValueError, match=match):
        Inpainting(mask)


def test_inpainting_shape_mismatch_names_both_shapes():
    op = Inpainting(torch.ones(8, 8))
    with pytest.raises(ValueError, match=r"mask of shape \(1, 1, 8, 8\) does not fit x of shape \(1, 1, 8, 9\)"):
        op.A(torch.zeros(1, 1, 8, 9))
    with pytest.raises(ValueError, match="keep must be"):
        Inpainting.random((8, 8), 0.0)


def test_inpainting_mask_is_a_copy():
    m = torch.ones(4, 4)
    op = Inpainting(m)
    m[0, 0] = 0.0
    assert op.mask[0, 0, 0, 0] == 1.0
