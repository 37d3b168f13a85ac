"""The unknown-boundary blur: valid convolution on an extended domain, against float64 references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy.signal import convolve2d

from operators import BLUR_BOUNDARIES, Blur, Downsampling, adjoint_error, estimate_norm, kernels, operator_norm
from tests.conftest import dense_matrix

KERNELS = {"levin5": kernels.levin(5), "box4": kernels.box(4), "motion": kernels.motion(7, 30), "gauss": kernels.gaussian(1.2)}


def _extended(op: Blur, observed: tuple[int, ...]) -> tuple[int, ...]:
    return op.input_shape(observed)


@pytest.mark.parametrize("kname", sorted(KERNELS))
@pytest.mark.parametrize("hw", [(16, 16), (15, 22)])
def test_forward_is_scipy_valid_convolution(kname, hw):
    k = KERNELS[kname]
    op = Blur(k, "unknown")
    shape = _extended(op, (2, 3) + hw)
    x = np.random.default_rng(0).standard_normal(shape)
    y = op.A(torch.from_numpy(x)).numpy()
    assert y.shape == (2, 3) + hw
    for b in range(2):
        for c in range(3):
            np.testing.assert_allclose(y[b, c], convolve2d(x[b, c], k, mode="valid"), atol=1e-13)


@pytest.mark.parametrize("kname", sorted(KERNELS))
@pytest.mark.parametrize("observed", [(1, 1, 13, 13), (2, 3, 16, 21), (3, 1, 31, 14)])
def test_adjoint_float64(kname, observed):
    op = Blur(KERNELS[kname], "unknown")
    assert adjoint_error(op.A, op.A_adjoint, _extended(op, observed)) < 1e-10
    u = torch.randn(_extended(op, observed), dtype=torch.float64)
    assert abs(float(op.adjointness_test(u))) < 1e-10  # deepinv's own test agrees


@pytest.mark.parametrize("gamma", [0.3, 5.0, torch.tensor([0.5, 20.0])])
def test_prox_matches_direct_solve(gamma):
    op = Blur(kernels.levin(5), "unknown")
    shape = _extended(op, (1, 1, 15, 16))
    M = dense_matrix(op, shape)
    g = torch.Generator().manual_seed(0)
    z = torch.randn((2,) + shape[1:], generator=g, dtype=torch.float64)
    y = torch.randn(2, 1, 15, 16, generator=g, dtype=torch.float64)
    x, info = op.prox_l2_info(z, y, gamma, tol=1e-12, max_iter=2000)
    gammas = gamma.tolist() if isinstance(gamma, torch.Tensor) else [gamma] * 2
    n = M.shape[1]
    for b in range(2):
        ref = np.linalg.solve(gammas[b] * M.T @ M + np.eye(n), gammas[b] * M.T @ y[b].flatten().numpy() + z[b].flatten().numpy())
        err = np.linalg.norm(x[b].flatten().numpy() - ref)
        assert err < 1e-9
        assert err <= float(info["error_bound"][b]) + 1e-12  # the reported bound holds


def test_prox_error_bound_holds_for_an_early_stop():
    """Stopped after two CG steps, the reported bound still bounds the true error."""
    op = Blur(kernels.levin(2), "unknown")
    shape = _extended(op, (1, 1, 18, 18))
    M = dense_matrix(op, shape)
    g = torch.Generator().manual_seed(1)
    z = torch.randn(shape, generator=g, dtype=torch.float64)
    y = torch.randn(1, 1, 18, 18, generator=g, dtype=torch.float64)
    x, info = op.prox_l2_info(z, y, 30.0, tol=1e-14, max_iter=2)
    ref = np.linalg.solve(30 * M.T @ M + np.eye(M.shape[1]), 30 * M.T @ y.flatten().numpy() + z.flatten().numpy())
    err = np.linalg.norm(x.flatten().numpy() - ref)
    assert 1e-6 < err <= float(info["error_bound"][0]) and not info["converged"]


@pytest.mark.parametrize("kname", ["levin5", "box4", "gauss"])
def test_certified_norm_holds_for_every_size(kname):
    op = Blur(KERNELS[kname], "unknown")
    cert = operator_norm(op)
    assert cert.certified and cert.kind == "upper_bound" and cert.in_shape is None
    shape = _extended(op, (1, 1, 14, 17))
    true = np.linalg.norm(dense_matrix(op, shape), 2)
    assert true <= cert.value <= 1 + 1e-9
    assert estimate_norm(op, shape).value <= cert.value


def test_initial_estimate_does_not_darken_the_border():
    op = Blur(kernels.levin(4), "unknown")  # 27x27: a wide border
    y = torch.full((1, 1, 40, 40), 0.7, dtype=torch.float64)
    start = op.initial_estimate(y)
    assert start.shape == _extended(op, y.shape)
    torch.testing.assert_close(start, torch.full_like(start, 0.7))
    assert float(op.A_adjoint(y).min()) < 0.01  # what the plain adjoint would start from at a corner
    torch.testing.assert_close(op.observed_region(start), y)


def test_shapes_helpers_are_identities_for_other_boundaries():
    op = Blur("box:5", "reflect")
    x = torch.rand(1, 1, 9, 9)
    assert op.input_shape(x.shape) == tuple(x.shape) and op.observed_region(x) is x


def test_kernel_larger_than_the_image_is_refused_with_the_sizes():
    op = Blur(kernels.levin(4), "unknown")  # 27x27
    with pytest.raises(ValueError, match=r"kernel \(27x27\) is larger than the image \(20x40\)"):
        op.A_adjoint(torch.zeros(1, 1, 20, 40))
    with pytest.raises(ValueError, match=r"must be at least 53x53 \(an observation at least 27x27\)"):
        op.A(torch.zeros(1, 1, 46, 80))
    with pytest.raises(ValueError, match="larger than the image"):
        op.initial_estimate(torch.zeros(1, 1, 26, 40))


def test_unknown_boundary_is_a_blur_option_not_a_downsampling_one():
    assert "unknown" in BLUR_BOUNDARIES
    with pytest.raises(ValueError, match="unknown boundary 'wrap'; choose one of .*unknown"):
        Blur("box:3", boundary="wrap")
    with pytest.raises(ValueError, match="Blur only"):
        Downsampling(2, boundary="unknown")


def test_deepinv_solver_runs_on_it():
    """deepinv's own PGD accepts the operator as a LinearPhysics (start given explicitly)."""
    from deepinv.optim import optim_builder
    from deepinv.optim.data_fidelity import L2
    from deepinv.optim.prior import Tikhonov

    op = Blur(kernels.levin(1), "unknown")
    x = torch.rand(_extended(op, (1, 1, 32, 32)), generator=torch.Generator().manual_seed(0))
    y = op.A(x)
    model = optim_builder(iteration="PGD", prior=Tikhonov(), data_fidelity=L2(),
                          params_algo={"stepsize": 0.9, "lambda": 0.01}, max_iter=30, early_stop=False)
    with torch.no_grad():
        xhat = model(y, op, init=op.initial_estimate(y))
    assert xhat.shape == x.shape and torch.isfinite(xhat).all()
    f = lambda z: 0.5 * float(((op.A(z) - y) ** 2).sum()) + 0.005 * float((z**2).sum())
    assert f(xhat) < f(op.initial_estimate(y))
    # deepinv's L2 data fidelity calls our prox
    z = torch.rand(x.shape, dtype=torch.float64)
    p = L2().prox(z, y.double(), op, gamma=2.0)
    grad = 2.0 * op.A_adjoint(op.A(p) - y.double()) + p - z
    assert float(grad.norm()) < 1e-5 * float(z.norm())


@st.composite
def problems(draw):
    h, w = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    k = draw(st.lists(st.floats(0.0, 1.0), min_size=h * w, max_size=h * w).filter(lambda v: sum(v) > 1e-3))
    k = np.array(k).reshape(h, w)
    side = max(k.shape) + (1 - max(k.shape) % 2)
    H, W = draw(st.integers(side, side + 8)), draw(st.integers(side, side + 8))
    return k / k.sum(), (draw(st.integers(1, 2)), draw(st.sampled_from([1, 3])), H, W)


@given(problems())
def test_adjoint_and_norm_any_shape_and_kernel(problem):
    k, observed = problem
    op = Blur(k, "unknown")
    shape = op.input_shape(observed)
    assert adjoint_error(op.A, op.A_adjoint, shape) < 1e-10
    one = (1, 1) + shape[-2:]
    assert np.linalg.norm(dense_matrix(op, one), 2) <= operator_norm(op).value * (1 + 1e-12)
