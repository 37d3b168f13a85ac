"""The Tikhonov baseline: closed form, discrepancy principle, input checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from operators import Blur
from pnp_stable import tikhonov_deblur
from pnp_stable.classical import _gradient_symbol


def _problem(noise=0.01, shape=(2, 1, 48, 48), kernel="gaussian:1.5"):
    from skimage import data, transform

    img = transform.resize(data.camera(), shape[-2:], anti_aliasing=True)
    x = torch.from_numpy(img).expand(shape).clone()
    op = Blur(kernel)
    y = op.A(x) + noise * torch.randn(shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return op, x, y


def test_closed_form_matches_dense_solve():
    op, _, y = _problem(shape=(1, 1, 10, 12), kernel="gaussian:0.8")  # 7x7 fits 10x12
    lam = 0.37
    n = 120
    eye = torch.eye(n, dtype=torch.float64).reshape(n, 1, 10, 12)
    A = op.A(eye).reshape(n, n).T.numpy()

    def diff(axis):
        D = np.zeros((n, n))
        idx = np.arange(n).reshape(10, 12)
        nxt = np.roll(idx, -1, axis=axis)
        D[idx.ravel(), nxt.ravel()] += 1
        D[idx.ravel(), idx.ravel()] -= 1
        return D

    Dy, Dx = diff(0), diff(1)
    lhs = A.T @ A + lam * (Dy.T @ Dy + Dx.T @ Dx)
    ref = np.linalg.solve(lhs, A.T @ y.flatten().numpy())
    ours = tikhonov_deblur(y, op, weight=lam).x.flatten().numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-8)


def test_gradient_symbol_is_laplacian():
    G = _gradient_symbol(8, 8, torch.float64, "cpu")
    assert G[0, 0] == 0 and math.isclose(float(G.max()), 8.0)


def test_discrepancy_principle_hits_the_noise_level_and_improves_psnr():
    op, x, y = _problem(noise=0.02)
    res = tikhonov_deblur(y, op, noise_level=0.02)
    assert torch.all((res.residual - 0.02).abs() < 1e-3)
    mse_blur = ((y - x) ** 2).mean()
    mse_rest = ((res.x - x) ** 2).mean()
    assert mse_rest < mse_blur
    assert res.weight.shape == (2,)


def test_inputs_not_modified():
    op, _, y = _problem()
    y0 = y.clone()
    tikhonov_deblur(y, op, noise_level=0.01)
    assert torch.equal(y, y0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({}, "pass noise_level"),
        ({"noise_level": -0.1}, "noise_level must be"),
        ({"weight": float("nan")}, "weight must be"),
    ],
)
def test_errors(kwargs, match):
    op, _, y = _problem()
    with pytest.raises(ValueError, match=match):
        tikhonov_deblur(y, op, **kwargs)


def test_rejects_nan_and_non_circular():
    op, _, y = _problem()
    bad = y.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        tikhonov_deblur(bad, op, noise_level=0.01)
    with pytest.raises(ValueError, match="circular"):
        tikhonov_deblur(y, Blur("box:3", boundary="reflect"), noise_level=0.01)
