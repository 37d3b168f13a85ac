"""Blur: forward against scipy, exact adjoints, proxes against direct solves, certified norms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.signal import convolve2d

from operators import BOUNDARIES, Blur, adjoint_error, estimate_norm, kernels, operator_norm
from operators.functional import PAD_MODES
from tests.conftest import dense_matrix

KERNELS = {
    "levin5": kernels.levin(5),  # 13x13, asymmetric
    "box4": kernels.box(4),  # even size, centring rule
    "motion": kernels.motion(7, 30),
    "gauss_aniso": kernels.gaussian((1.2, 0.7)),
}


def _reference(x: np.ndarray, k: np.ndarray, boundary: str) -> np.ndarray:
    if boundary == "circular":
        return convolve2d(x, k, mode="same", boundary="wrap")
    p = k.shape[0] // 2
    return convolve2d(np.pad(x, p, mode=PAD_MODES[boundary]), k, mode="valid")


@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("kname", sorted(KERNELS))
@pytest.mark.parametrize("hw", [(16, 16), (15, 22), (13, 13)])
def test_forward_matches_scipy(boundary, kname, hw):
    k = KERNELS[kname]
    x = np.random.default_rng(0).standard_normal((2, 3) + hw)
    y = Blur(k, boundary).A(torch.from_numpy(x)).numpy()
    for b in range(2):
        for c in range(3):
            np.testing.assert_allclose(y[b, c], _reference(x[b, c], k, boundary), atol=1e-13)


@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("kname", sorted(KERNELS))
@pytest.mark.parametrize("shape", [(1, 1, 13, 13), (2, 3, 16, 21), (3, 1, 31, 14)])
def test_adjoint_float64(boundary, kname, shape):
    op = Blur(KERNELS[kname], boundary)
    assert adjoint_error(op.A, op.A_adjoint, shape) < 1e-10


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_deepinv_adjointness_test_passes(boundary):
    op = Blur(kernels.levin(2), boundary)
    u = torch.randn(2, 3, 24, 20, dtype=torch.float64)
    assert abs(float(op.adjointness_test(u))) < 1e-10


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_A_adjoint_A_is_composition(boundary):
    op = Blur(kernels.levin(3), boundary)
    x = torch.randn(2, 1, 20, 20, dtype=torch.float64)
    torch.testing.assert_close(op.A_adjoint_A(x), op.A_adjoint(op.A(x)), atol=1e-13, rtol=0)


@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("gamma", [0.3, 5.0, torch.tensor([0.5, 20.0])])
def test_prox_matches_direct_solve(boundary, gamma):
    op = Blur(kernels.levin(5), boundary)
    shape = (1, 1, 15, 16)
    M = dense_matrix(op, shape)
    g = torch.Generator().manual_seed(0)
    z = torch.randn((2,) + shape[1:], generator=g, dtype=torch.float64)
    y = torch.randn((2,) + shape[1:], generator=g, dtype=torch.float64)
    x = op.prox_l2(z, y, gamma, tol=1e-12)
    gammas = gamma.tolist() if isinstance(gamma, torch.Tensor) else [gamma] * 2
    n = M.shape[1]
    for b in range(2):
        ref = np.linalg.solve(gammas[b] * M.T @ M + np.eye(n), gammas[b] * M.T @ y[b].flatten().numpy() + z[b].flatten().numpy())
        np.testing.assert_allclose(x[b].flatten().numpy(), ref, atol=1e-9)


def test_prox_never_changes_operator_state():
    op = Blur("levin:1", boundary="reflect")
    before = (op.max_iter, op.tol, op.solver, op.prox_tol, op.prox_max_iter)
    op.prox_l2(torch.zeros(1, 1, 32, 32), torch.ones(1, 1, 32, 32), 2.0, tol=1e-3, max_iter=3)
    assert (op.max_iter, op.tol, op.solver, op.prox_tol, op.prox_max_iter) == before


def test_prox_inputs_not_modified():
    op = Blur("levin:1", boundary="symmetric")
    z, y = torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 32)
    z0, y0 = z.clone(), y.clone()
    op.prox_l2(z, y, 1.0)
    op.A(z), op.A_adjoint(y)
    assert torch.equal(z, z0) and torch.equal(y, y0)


@pytest.mark.parametrize("bad_gamma", [0.0, -1.0, float("nan"), float("inf")])
def test_prox_rejects_bad_gamma(bad_gamma):
    with pytest.raises(ValueError, match="gamma must be positive"):
        Blur("box:3").prox_l2(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8), bad_gamma)


@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("kname", ["levin5", "gauss_aniso", "box4"])
def test_certified_norm_bounds_the_dense_norm(boundary, kname):
    op = Blur(KERNELS[kname], boundary)
    shape = (1, 1, 14, 17)
    true = np.linalg.norm(dense_matrix(op, shape), 2)
    cert = operator_norm(op, shape)
    assert cert.certified
    assert cert.value >= true
    assert cert.value <= true * (1 + 1e-3)  # tight, not just valid
    if cert.kind == "exact":
        assert cert.value <= true * (1 + 1e-9)


def test_circular_norm_closed_form():
    """max |k_hat| over the grid, computed independently with numpy's FFT."""
    k = kernels.levin(4)
    op = Blur(k)
    H, W = 40, 36
    pad = np.zeros((H, W))
    pad[: k.shape[0], : k.shape[1]] = k
    pad = np.roll(pad, (-(k.shape[0] // 2), -(k.shape[1] // 2)), (0, 1))
    expected = np.abs(np.fft.fft2(pad)).max()
    value = op.norm_certificate((1, 1, H, W)).value
    assert expected * (1 - 1e-14) <= value <= expected * (1 + 2e-12)  # the 1e-12 rounding allowance
    # and it is 1 on every grid because the kernel is non-negative with sum 1
    assert abs(operator_norm(op).value - 1) < 1e-11 and operator_norm(op).in_shape is None


def test_symmetric_boundary_symmetric_kernel_is_exactly_one():
    op = Blur(kernels.gaussian(1.5), "symmetric")
    cert = op.norm_certificate()
    assert cert.kind == "exact" and cert.in_shape is None
    # even when the pad is larger than the image (repeated reflection)
    true = np.linalg.norm(dense_matrix(op, (1, 1, 11, 12)), 2)
    assert abs(true - 1) < 1e-12


def test_replicate_norm_exceeds_one_and_is_certified():
    """Edge copies pile weight on corner pixels: the norm can be far above 1."""
    op = Blur(kernels.levin(4), "replicate")
    shape = (1, 1, 48, 48)
    cert = operator_norm(op, shape)
    est = estimate_norm(op, shape)
    assert cert.kind == "upper_bound" and est.kind == "estimate"
    assert est.value > 1.5
    assert est.value <= cert.value <= est.value * (1 + 1e-3)


def test_non_circular_certificate_needs_shape():
    op = Blur(kernels.levin(1), "reflect")
    assert op.norm_certificate() is None
    with pytest.raises(ValueError, match="needs in_shape"):
        operator_norm(op, certified=True)


def test_float32_keeps_dtype_and_agrees_with_float64():
    op = Blur("levin:2", boundary="symmetric")
    x = torch.rand(1, 3, 32, 32, dtype=torch.float64)
    y64 = op.A(x)
    y32 = op.A(x.float())
    assert y32.dtype == torch.float32
    torch.testing.assert_close(y32.double(), y64, atol=1e-6, rtol=0)
    p32 = op.prox_l2(x.float(), y32, 3.0)
    assert p32.dtype == torch.float32


def test_noise_model_is_applied_by_forward():
    from operators.noise import Gaussian

    op = Blur("box:3", noise_model=Gaussian(0.1, rng=torch.Generator().manual_seed(0)))
    x = torch.zeros(1, 1, 64, 64)
    y = op(x, seed=0)
    assert 0.09 < float(y.std()) < 0.11


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_kernel_larger_than_image(boundary):
    op = Blur(kernels.levin(4), boundary)  # 27x27
    with pytest.raises(ValueError, match=r"kernel \(27x27\) is larger than the image \(20x40\)"):
        op.A(torch.zeros(1, 1, 20, 40))
    with pytest.raises(ValueError, match="larger than the image"):
        op.A_adjoint(torch.zeros(1, 1, 40, 20))


@pytest.mark.parametrize(
    "x, err, match",
    [
        (torch.zeros(8, 8), ValueError, r"shape \(B, C, H, W\); got a 2-D"),
        (torch.zeros(1, 8, 8), ValueError, "3-D"),
        (torch.zeros(1, 1, 8, 8, dtype=torch.int64), TypeError, "floating-point"),
        (np.zeros((1, 1, 8, 8)), TypeError, "torch.Tensor"),
    ],
)
def test_bad_inputs(x, err, match):
    with pytest.raises(err, match=match):
        Blur("box:3").A(x)


def test_bad_boundary():
    with pytest.raises(ValueError, match="unknown boundary 'wrap'; choose one of circular"):
        Blur("box:3", boundary="wrap")


def test_user_kernel_not_modified_and_buffer_is_float64():
    k = np.ones((3, 3)) / 9
    op = Blur(k)
    op.kernel.mul_(2)  # even mutating the buffer does not reach the user's array
    assert np.all(k == 1 / 9)
    assert Blur(k).kernel.dtype == torch.float64
    assert set(Blur(k).state_dict()) == {"kernel"}  # the guarantee-relevant state, pinned


@pytest.mark.parametrize("kernel", ["gaussian:1.5", "box:5", "disk:2.5"])
@pytest.mark.parametrize("hw", [(11, 12), (16, 16)])
def test_symmetric_boundary_symmetric_kernel_prox_is_closed_form(kernel, hw):
    """The mirrored circular solve is the exact prox, no iterations, even when the kernel
    reaches past the mirrored copy (radius > H / 2)."""
    op = Blur(kernel, "symmetric")
    assert op.axis_symmetric
    shape = (1, 1) + hw
    M = dense_matrix(op, shape)
    z, y = torch.randn(shape, dtype=torch.float64), torch.randn(shape, dtype=torch.float64)
    x = op.prox_l2(z, y, 30.0, max_iter=1)  # an iterative prox could not converge in 1 step
    ref = np.linalg.solve(30.0 * M.T @ M + np.eye(M.shape[1]), 30.0 * M.T @ y.flatten().numpy() + z.flatten().numpy())
    np.testing.assert_allclose(x.flatten().numpy(), ref, atol=1e-10)


def test_prox_warm_start_and_info():
    """Started at the solution, PCG returns it at once; a nearby start needs fewer steps."""
    op = Blur("levin:1", "reflect")
    g = torch.Generator().manual_seed(0)
    z, y = torch.rand(1, 1, 48, 48, generator=g, dtype=torch.float64), torch.rand(1, 1, 48, 48, generator=g, dtype=torch.float64)
    x, cold = op.prox_l2_info(z, y, 20.0, tol=1e-8)
    assert cold["method"] == "pcg" and cold["converged"] and cold["iterations"] > 3
    near = x + 1e-4 * torch.randn(x.shape, generator=g, dtype=torch.float64)
    _, warm = op.prox_l2_info(z, y, 20.0, tol=1e-8, init=near)
    assert warm["iterations"] < cold["iterations"]
    assert Blur("levin:1").prox_l2_info(z, y, 20.0)[1]["method"] == "closed form"


def test_even_box_is_not_axis_symmetric():
    """The centring rule puts an even kernel off-centre, so no mirror shortcut applies."""
    assert not Blur("box:4", "symmetric").axis_symmetric
    assert Blur("box:4", "symmetric").norm_certificate() is None
