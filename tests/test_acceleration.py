"""Safeguarded Anderson acceleration, batched masks, working precision and inexact proxes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from operators import Blur, kernels
from pnp_stable.anderson import Anderson
from pnp_stable.solvers import _working_precision, pnp_admm, pnp_fbs
from tests.conftest import admm_fixed_point, dense_matrix

SHAPE = (1, 1, 10, 10)


class Smoother:
    """Gaussian smoothing: symmetric, spectrum in [0, 1], so firmly non-expansive (alpha 1/2)."""

    def __init__(self):
        self.op = Blur("gaussian:0.8", boundary="circular")
        self.batch_sizes: list[int] = []

    def __call__(self, x, sigma):
        self.batch_sizes.append(x.shape[0])
        return self.op.A(x)

    def certified_alpha(self):
        return 0.5


class BoxProjection:
    """Half identity, half projection onto [0, 0.3]: firmly non-expansive and non-smooth."""

    def __call__(self, x, sigma):
        return 0.5 * x + 0.5 * x.clamp(0.0, 0.3)

    def certified_alpha(self):
        return 0.5


@pytest.fixture(scope="module")
def problem():
    g = torch.Generator().manual_seed(0)
    A = Blur("box:3", boundary="symmetric")
    y = torch.rand(SHAPE, generator=g, dtype=torch.float64)
    return A, y, dense_matrix(A, SHAPE), dense_matrix(Smoother().op, SHAPE)


@pytest.mark.parametrize("memory", [1, 5])
def test_accelerated_fbs_reaches_the_plain_fixed_point(problem, memory):
    A, y, M, D = problem
    tau = 1.3
    x_plain, r_plain = pnp_fbs(y, A, Smoother(), step=tau, tol=1e-13, max_iter=5000, anderson=False)
    x_acc, r_acc = pnp_fbs(y, A, Smoother(), step=tau, tol=1e-13, max_iter=5000, anderson=memory)
    n = M.shape[1]
    ref = np.linalg.solve(np.eye(n) - D @ (np.eye(n) - tau * M.T @ M), tau * D @ M.T @ y.flatten().numpy())
    np.testing.assert_allclose(x_acc.flatten().numpy(), ref, atol=1e-9)
    torch.testing.assert_close(x_acc, x_plain, atol=1e-9, rtol=0)
    assert r_acc.guaranteed and r_acc.all_converged and r_acc.anderson_accepted[0] > 0
    assert r_acc.iterations[0] < r_plain.iterations[0]
    h = np.array(r_acc.residual_history[0])  # the kept sequence is monotone
    assert np.all(np.diff(h) <= 1e-9 * h[:-1] + 1e-14)
    assert r_plain.anderson_accepted == [] and len(r_plain.residual_history[0]) == r_plain.iterations[0]


def test_accelerated_admm_reaches_the_plain_fixed_point(problem):
    A, y, M, D = problem
    tau = 3.0
    x_plain, r_plain = pnp_admm(y, A, Smoother(), step=tau, tol=1e-13, max_iter=5000, anderson=False)
    x_acc, r_acc = pnp_admm(y, A, Smoother(), step=tau, tol=1e-13, max_iter=5000)
    np.testing.assert_allclose(x_acc.flatten().numpy(), admm_fixed_point(M, D, tau, y.numpy()), atol=1e-9)
    torch.testing.assert_close(x_acc, x_plain, atol=1e-9, rtol=0)
    assert r_acc.guaranteed and r_acc.all_converged and r_acc.iterations[0] < r_plain.iterations[0]
    assert "Anderson" in r_acc.theorem and "Anderson" in r_acc.summary()


def test_inexact_prox_admm_unknown_boundary_reaches_the_direct_solution():
    """Unknown boundary: iterative prox under the summable schedule, accelerated, float64 reference."""
    A = Blur("gaussian:1.0", "unknown")
    g = torch.Generator().manual_seed(3)
    y = torch.rand(1, 1, 16, 16, generator=g, dtype=torch.float64)
    shape = A.input_shape(y.shape)
    M = dense_matrix(A, shape)
    den = Smoother()
    D = dense_matrix(den.op, shape)
    tau = 4.0
    x, rep = pnp_admm(y, A, den, step=tau, tol=1e-11, max_iter=3000)
    np.testing.assert_allclose(x.flatten().numpy(), admm_fixed_point(M, D, tau, y.numpy()), atol=1e-8)
    cond = {c.name: c for c in rep.conditions}
    assert rep.guaranteed and cond["inexact prox within its summable error schedule"].holds
    assert rep.inexact_schedule_met == [True]


def test_inexact_prox_missing_its_schedule_is_reported_not_guaranteed():
    A = Blur(kernels.levin(1), "unknown", prox_max_iter=1)  # one CG step cannot keep up
    y = torch.rand(1, 1, 24, 24, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    _, rep = pnp_admm(y, A, Smoother(), step=20.0, tol=1e-8, max_iter=100)
    cond = {c.name: c for c in rep.conditions}
    assert not rep.guaranteed and not cond["inexact prox within its summable error schedule"].holds
    assert rep.inexact_schedule_met == [False] and "MISSED" in rep.summary()
    assert rep.sample_guaranteed == [False]


def test_safeguard_fires_and_the_run_still_converges(problem):
    """A demanding safeguard (the residual must drop 20-fold) rejects candidates; the fallback
    plain steps keep the run on its guaranteed course to the same fixed point."""
    A, y, _, _ = problem
    den = BoxProjection()
    x_plain, _ = pnp_fbs(y, A, den, tol=1e-12, max_iter=20000, anderson=False)
    x, rep = pnp_fbs(y, A, den, tol=1e-12, max_iter=20000, anderson=Anderson(memory=5, safeguard=0.05))
    assert rep.anderson_rejected[0] > 0 and rep.all_converged and rep.guaranteed and rep.monotone == [True]
    assert len(rep.residual_history[0]) == rep.iterations[0] - rep.anderson_rejected[0]
    torch.testing.assert_close(x, x_plain, atol=1e-9, rtol=0)


def test_step_bound_blocks_candidates_and_leaves_the_plain_iteration(problem):
    """With a vanishing budget no candidate passes test 1: the run is the plain iteration."""
    A, y, _, _ = problem
    x_plain, r_plain = pnp_fbs(y, A, Smoother(), tol=1e-10, max_iter=2000, anderson=False)
    x, rep = pnp_fbs(y, A, Smoother(), tol=1e-10, max_iter=2000, anderson=Anderson(budget=1e-300))
    assert rep.anderson_accepted == [0] and rep.anderson_rejected == [0]
    assert rep.iterations == r_plain.iterations and torch.equal(x, x_plain)


def test_anderson_settings_are_checked(problem):
    A, y, _, _ = problem
    with pytest.raises(ValueError, match="memory must be an integer >= 1"):
        pnp_fbs(y, A, Smoother(), anderson=0)
    with pytest.raises(ValueError, match="memory must be an integer >= 1"):
        Anderson(memory=-2)
    with pytest.raises(ValueError, match=r"safeguard must lie in \(0, 1\]"):
        Anderson(safeguard=1.5)
    with pytest.raises(TypeError, match="anderson must be"):
        pnp_admm(y, A, Smoother(), anderson="fast")


def test_stopped_samples_cost_nothing(problem):
    A, y, _, _ = problem
    den = Smoother()
    batch = torch.cat([torch.zeros_like(y), y, 0.5 * y])  # sample 0 starts at its fixed point
    x, rep = pnp_fbs(batch, A, den, tol=1e-8, max_iter=500)
    assert rep.iterations[0] == 1 and min(rep.iterations[1:]) > 5 and rep.all_converged
    assert den.batch_sizes[0] == 3 and max(den.batch_sizes[1:]) == 2  # only the active ones run
    assert den.batch_sizes[-1] == 1 or rep.iterations[1] == rep.iterations[2]
    for b in (1, 2):
        xb, _ = pnp_fbs(batch[b:b + 1], A, Smoother(), tol=1e-8, max_iter=500)
        torch.testing.assert_close(x[b:b + 1], xb, atol=1e-12, rtol=0)


class Float32Half(torch.nn.Module):
    """A float32 model (x -> x / 2, certified 1/2-averaged) used inside a float64 solve."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(0.5))

    def forward(self, x, sigma):
        return (self.w * x.float()).to(x.dtype)

    def certified_alpha(self):
        return 0.5


def test_rounding_allowance_uses_the_denoiser_precision(problem):
    A, y, _, _ = problem
    den = Float32Half()
    assert _working_precision(den, torch.float64) == torch.float32
    assert _working_precision(Smoother(), torch.float64) == torch.float64
    _, rep = pnp_admm(y, A, den, step=2.0, tol=1e-9, max_iter=300)
    assert rep.monotone == [True] and rep.stop_reason != ["non-monotone"]


def test_failing_condition_is_one_predicate_for_report_and_refusal(problem):
    A, y, _, _ = problem
    with pytest.warns(UserWarning) as caught:
        _, rep = pnp_fbs(y, A, Smoother(), step=2.5, strict=False, max_iter=5)
    cond = {c.name: c for c in rep.conditions}["step"]
    assert not cond.holds and any(cond.detail in str(w.message) for w in caught)
    with pytest.raises(ValueError, match=cond.detail.replace("(", r"\(").replace(")", r"\)").replace("|", r"\|").replace("^", r"\^")):
        pnp_fbs(y, A, Smoother(), step=2.5)
