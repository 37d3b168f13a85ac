"""PnP-FBS and PnP-ADMM: fixed points against direct float64 solves, checks before and during."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from operators import Blur, as_operator
from pnp_stable.solvers import pnp_admm, pnp_fbs
from tests.conftest import admm_fixed_point, dense_matrix

SHAPE = (1, 1, 10, 10)


class Smoother:
    """Gaussian smoothing: symmetric with spectrum in [0, 1], hence firmly non-expansive."""

    def __init__(self, alpha=0.5):
        self.op = Blur("gaussian:0.8", boundary="circular")
        self.alpha = alpha

    def __call__(self, x, sigma):
        return self.op.A(x)

    def certified_alpha(self):
        return self.alpha


@pytest.fixture(scope="module")
def problem():
    g = torch.Generator().manual_seed(0)
    A = Blur("box:3", boundary="symmetric")
    y = torch.rand(SHAPE, generator=g, dtype=torch.float64)
    D = dense_matrix(Smoother().op, SHAPE)
    ev = np.linalg.eigvalsh((D + D.T) / 2)
    assert np.allclose(D, D.T) and ev.min() >= -1e-12 and ev.max() <= 1 + 1e-12  # the premise of the tests
    return A, y, dense_matrix(A, SHAPE), D


def test_fbs_fixed_point_solves_the_linear_system(problem):
    A, y, M, D = problem
    tau = 1.3
    x, rep = pnp_fbs(y, A, Smoother(), step=tau, tol=1e-13, max_iter=5000)
    n = M.shape[1]
    ref = np.linalg.solve(np.eye(n) - D @ (np.eye(n) - tau * M.T @ M), tau * D @ M.T @ y.flatten().numpy())
    np.testing.assert_allclose(x.flatten().numpy(), ref, atol=1e-10)
    assert rep.guaranteed and rep.converged == [True] and rep.monotone == [True]
    h = rep.residual_history[0]
    assert len(h) == rep.iterations[0] and h[-1] <= 1e-13


def test_admm_fixed_point_solves_the_linear_system(problem):
    A, y, M, D = problem
    tau = 3.0
    x, rep = pnp_admm(y, A, Smoother(), step=tau, tol=1e-13, max_iter=5000)
    np.testing.assert_allclose(x.flatten().numpy(), admm_fixed_point(M, D, tau, y.numpy()), atol=1e-9)
    assert rep.guaranteed and rep.all_converged and rep.monotone == [True]


def test_fbs_residual_is_monotone(problem):
    A, y, _, _ = problem
    _, rep = pnp_fbs(y, A, Smoother(), tol=1e-10, max_iter=500)
    h = np.array(rep.residual_history[0])
    assert np.all(np.diff(h) <= 1e-9 * h[:-1] + 1e-14)


def test_invalid_step_refused_with_the_bound(problem):
    A, y, _, _ = problem
    with pytest.raises(ValueError, match=r"tau = 3 breaks tau < 2 / \|\|A\|\|\^2 = 2"):
        pnp_fbs(y, A, Smoother(), step=3.0)
    with pytest.warns(UserWarning, match="breaks"):
        _, rep = pnp_fbs(y, A, Smoother(), step=2.5, strict=False, max_iter=5)
    assert not rep.guaranteed


def test_admm_refuses_a_denoiser_that_is_not_firmly_nonexpansive(problem):
    A, y, _, _ = problem
    with pytest.raises(ValueError, match=r"alpha <= 1/2.*target_alpha=0.5"):
        pnp_admm(y, A, Smoother(alpha=0.8))
    with pytest.raises(ValueError, match="only non-expansive"):
        pnp_fbs(y, A, Smoother(alpha=1.0))


def test_divergent_setup_is_stopped_and_reported_not_returned_as_nan(problem):
    A, y, _, _ = problem
    with pytest.warns(UserWarning, match="no certificate"), pytest.warns(RuntimeWarning, match="non-monotone|diverged"):
        x, rep = pnp_fbs(y, A, lambda x, s: 3.0 * x + 0.1, max_iter=1000)
    assert torch.isfinite(x).all()
    assert rep.stop_reason[0] in ("non-monotone", "diverged") and not rep.converged[0]
    assert not rep.guaranteed and rep.iterations[0] < 1000


def test_nan_from_the_denoiser_is_caught(problem):
    A, y, _, _ = problem
    calls = {"n": 0}

    def flaky(x, s):
        calls["n"] += 1
        return x * float("nan") if calls["n"] > 3 else 0.5 * x

    with pytest.warns(UserWarning), pytest.warns(RuntimeWarning, match="non-finite"):
        x, rep = pnp_fbs(y, A, flaky, max_iter=50)
    assert rep.stop_reason == ["non-finite"] and torch.isfinite(x).all()


def test_per_sample_stopping(problem):
    A, y, _, _ = problem
    batch = torch.cat([torch.zeros_like(y), y])  # sample 0 is already at its fixed point
    x, rep = pnp_fbs(batch, A, Smoother(), tol=1e-8, max_iter=500)
    assert rep.iterations[0] == 1 and rep.iterations[1] > 5 and rep.all_converged
    x1, _ = pnp_fbs(y, A, Smoother(), tol=1e-8, max_iter=500)
    torch.testing.assert_close(x[1:], x1, atol=1e-7, rtol=0)


def test_deepinv_operator_runs_without_a_certified_norm(problem):
    from deepinv.physics import Inpainting

    _, y, _, _ = problem
    phys = Inpainting(img_size=(1, 10, 10), mask=0.5)
    x, rep = pnp_fbs(y.float(), phys, Smoother(), step=0.5, max_iter=300, tol=1e-5)
    cond = {c.name: c for c in rep.conditions}
    assert not cond["operator norm certified"].holds and not rep.guaranteed and rep.all_converged
    wrapped = as_operator(torch.eye(100, dtype=torch.float64) * 0.5, in_shape=(1, 100))
    assert wrapped.norm_certificate().certified


def test_bad_inputs(problem):
    A, y, _, _ = problem
    bad = y.clone()
    bad[0, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="NaN or Inf"):
        pnp_fbs(bad, A, Smoother())
    with pytest.raises(ValueError, match="tol must be positive"):
        pnp_fbs(y, A, Smoother(), tol=0)
    with pytest.raises(ValueError, match="sigma"):
        pnp_admm(y, A, Smoother(), sigma=-1.0)
    with pytest.raises(ValueError, match="step"):
        pnp_admm(y, A, Smoother(), step=0.0)


@pytest.mark.parametrize("lam", [0.5, 1.4])
def test_relaxed_forms_reach_the_same_fixed_points(problem, lam):
    A, y, _, _ = problem
    x_fbs, r1 = pnp_fbs(y, A, Smoother(), tol=1e-12, max_iter=5000)
    x_km, r2 = pnp_fbs(y, A, Smoother(), relaxation=lam, tol=1e-12, max_iter=5000)
    torch.testing.assert_close(x_km, x_fbs, atol=1e-9, rtol=0)
    assert r2.guaranteed and r2.monotone == [True]
    xa, _ = pnp_admm(y, A, Smoother(), step=3.0, tol=1e-12, max_iter=5000)
    xk, r3 = pnp_admm(y, A, Smoother(), step=3.0, relaxation=lam, tol=1e-12, max_iter=5000)
    torch.testing.assert_close(xk, xa, atol=1e-8, rtol=0)
    assert r3.guaranteed


def test_relaxation_bounds_refused(problem):
    A, y, _, _ = problem
    with pytest.raises(ValueError, match="relaxation lambda = 2.5 breaks"):
        pnp_admm(y, A, Smoother(), relaxation=2.5)
    # FBS with alpha_D = 1/2 and tau = 1/||A||^2 (alpha = 1/2): alpha_T = 2/3, so lambda < 1.5
    with pytest.raises(ValueError, match=r"1 / alpha_T = 1.5"):
        pnp_fbs(y, A, Smoother(), relaxation=1.6, step=1.0)


def test_deepinv_downsampling_inside_our_solvers():
    from deepinv.physics import Downsampling

    g = torch.Generator().manual_seed(0)
    phys = Downsampling(img_size=(1, 16, 16), factor=2, filter="gaussian", padding="circular")
    y = phys.A(torch.rand(1, 1, 16, 16, generator=g))
    x, rep = pnp_admm(y, phys, Smoother(), step=2.0, max_iter=300, tol=1e-6)
    assert x.shape == (1, 1, 16, 16) and rep.all_converged and rep.monotone == [True]
    x2, rep2 = pnp_fbs(y, phys, Smoother(), step=0.5, max_iter=300, tol=1e-6)
    assert rep2.all_converged and not rep2.guaranteed  # the norm is only estimated


def test_float64_prox_of_a_float32_run_reaches_the_float64_limit():
    """The prox solved in float64 (rounded back, the rounding in its bound) converges to the same
    fixed point as a float64 run, under its guarantee, in no more iterations than the float32 prox."""
    from operators import Blur

    class Shrink:  # x -> 0.4 x + 0.3: firmly non-expansive (alpha = 0.3), certified by hand
        def __call__(self, x, sigma):
            return 0.4 * x + 0.3

        def certified_alpha(self):
            return 0.3

    gen = torch.Generator().manual_seed(0)
    op = Blur("levin:2", boundary="unknown")
    y = torch.rand(1, 1, 24, 26, generator=gen, dtype=torch.float64)
    assert op.iterative_prox and not Blur("levin:2").iterative_prox
    ref, _ = pnp_admm(y, op, Shrink(), step=40.0, tol=1e-9, max_iter=300)
    runs = {}
    for prec in (None, torch.float64):
        x, rep = pnp_admm(y.float(), op, Shrink(), step=40.0, tol=1e-5, prox_precision=prec, max_iter=60)
        assert x.dtype == torch.float32 and rep.guaranteed
        runs[prec] = (float((x.double() - ref).abs().max()), rep.iterations[0], rep.all_converged)
    error, iterations, converged = runs[torch.float64]
    assert converged and error < 1e-4
    # In float32 the prox's rounding floor (about tau ||A||^2 eps32) is noise that stalls the tail.
    assert iterations < runs[None][1]
