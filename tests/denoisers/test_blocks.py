"""Blocks, integrators, activations and the certified convolution bound."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from denoisers import ACTIVATIONS, GradientFlowBlock, certified_conv_norm, conv_norm_on_grid, get_integrator
from denoisers.spectral import power_estimate, symbol_power_step


def _pairs(shape, n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((n,) + shape, generator=g, dtype=torch.float64)
    y = x + torch.randn((n,) + shape, generator=g, dtype=torch.float64) * torch.logspace(-3, 0, n, dtype=torch.float64).view(-1, 1, 1, 1)
    return x, y


def _alpha_residual(T, x, y, alpha):
    """||Tx-Ty||^2 - ||x-y||^2 + (1-a)/a ||(I-T)x-(I-T)y||^2 per pair; <= 0 iff the pair obeys alpha."""
    Tx, Ty = T(x), T(y)
    d, dT = (x - y).flatten(1), (Tx - Ty).flatten(1)
    dr = d - dT
    return (dT**2).sum(1) - (d**2).sum(1) + (1 - alpha) / alpha * (dr**2).sum(1), (d**2).sum(1)


@pytest.mark.parametrize("integrator", ["euler", "heun", "rk4"])
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_block_is_nonexpansive_on_random_pairs(integrator, activation):
    torch.manual_seed(0)
    blk = GradientFlowBlock(4, 6, integrator=integrator, activation=activation, time=3.0, margin=1.0)
    with torch.no_grad():
        blk.weight.mul_(2.5)  # ||A|| ~ 2.5: several sub-steps needed
        blk.bias.normal_()
    blk = blk.double().eval()
    assert blk.certified_schedule().substeps > 1
    x, y = _pairs((4, 10, 10))
    with torch.no_grad():
        ratio = (blk(x) - blk(y)).flatten(1).norm(dim=1) / (x - y).flatten(1).norm(dim=1)
    assert float(ratio.max()) <= 1 + 1e-12


@pytest.mark.parametrize("margin", [0.5, 0.95])
def test_euler_step_is_averaged_as_the_formula_says(margin):
    torch.manual_seed(1)
    blk = GradientFlowBlock(3, 5, margin=margin, max_substeps=1, time=10.0).double().eval()
    sched = blk.certified_schedule()
    alpha = sched.step_factor / 2
    assert alpha <= margin + 1e-12
    x, y = _pairs((3, 9, 9), n=16)
    with torch.no_grad():
        res, scale = _alpha_residual(blk, x, y, alpha)
    assert float((res / scale).max()) <= 1e-12


def test_block_refuses_midpoint_and_bad_arguments():
    with pytest.raises(ValueError, match="radius 0"):
        GradientFlowBlock(2, integrator="midpoint")
    with pytest.raises(ValueError, match="unknown activation"):
        GradientFlowBlock(2, activation="gelu")
    with pytest.raises(ValueError, match="margin"):
        GradientFlowBlock(2, margin=1.5)
    with pytest.raises(ValueError, match="odd"):
        GradientFlowBlock(2, kernel_size=4)


def test_substeps_adapt_and_cap():
    blk = GradientFlowBlock(2, time=1.0, margin=1.0)
    assert blk.schedule(1.0).substeps == 1
    assert blk.schedule(3.0).substeps == 5  # T L ||A||^2 / 2 = 4.5 -> 5 steps
    capped = GradientFlowBlock(2, time=1.0, margin=1.0, max_substeps=2).schedule(3.0)
    assert capped.substeps == 2 and abs(capped.step_factor - 2.0) < 1e-12


def test_eval_uses_certified_bound_and_tracks_weight_changes():
    blk = GradientFlowBlock(3).eval()
    first = blk.certified_norm().value
    with torch.no_grad():
        blk.weight.mul_(2)
    second = blk.certified_norm().value
    assert abs(second - 2 * first) < 1e-9 * second
    assert float(blk.norm_bound) == second


def test_training_uses_estimate_and_updates_buffers():
    blk = GradientFlowBlock(3).train()
    u0 = blk.power_vectors.clone()
    blk(torch.rand(1, 3, 8, 8))
    assert not torch.equal(u0, blk.power_vectors)
    assert float(blk.norm_estimate) <= blk.certified_norm().value


def test_state_dict_keys_pinned():
    assert set(GradientFlowBlock(2).state_dict()) == {"weight", "bias", "power_vectors", "norm_estimate", "norm_bound"}


@settings(max_examples=15)
@given(st.integers(1, 6), st.integers(1, 6), st.sampled_from([1, 3, 5]), st.integers(0, 10_000))
def test_certified_conv_bound_sandwich(cout, cin, k, seed):
    """Certified bound >= the exact circular norm on any grid, and only slightly above the sup."""
    W = torch.randn(cout, cin, k, k, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    bound = certified_conv_norm(W)
    for n in (k, k + 1, 17, 40):
        assert conv_norm_on_grid(W, n) <= bound.value
    assert bound.value <= 1.03 * conv_norm_on_grid(W, 256)


def test_certified_bound_covers_zero_padding_on_any_size():
    """A zero-padded layer is a restriction of a circular one: check with its dense matrix."""
    W = torch.randn(3, 2, 3, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    bound = certified_conv_norm(W).value
    for h, w in ((5, 7), (12, 12)):
        n = 2 * h * w
        basis = torch.eye(n, dtype=torch.float64).reshape(n, 2, h, w)
        M = torch.nn.functional.conv2d(basis, W, padding=1).reshape(n, -1)
        assert float(torch.linalg.matrix_norm(M, ord=2)) <= bound


@pytest.mark.parametrize("cout,cin,k,n", [(2, 5, 3, 7), (5, 2, 3, 8), (3, 3, 5, 9), (1, 4, 1, 6)])
def test_grid_norm_equals_dense_circular_operator_norm(cout, cin, k, n):
    """The Gram-tap evaluation gives the exact norm of the circular convolution (dense SVD)."""
    W = torch.randn(cout, cin, k, k, generator=torch.Generator().manual_seed(cout * 10 + cin), dtype=torch.float64)
    size = cin * n * n
    basis = torch.eye(size, dtype=torch.float64).reshape(size, cin, n, n)
    p = k // 2
    padded = torch.nn.functional.pad(basis, (p, p, p, p), mode="circular")
    dense = torch.nn.functional.conv2d(padded, W).reshape(size, -1)
    exact = float(torch.linalg.matrix_norm(dense, ord=2))
    assert conv_norm_on_grid(W, n) == pytest.approx(exact, rel=1e-12)


def test_refined_grid_equals_direct_grid():
    """Refining n -> 2n reuses the n-grid values and computes the others: same as the 2n grid."""
    from denoisers.spectral import _eigenvalues_on_grid, _gram_taps, _refine

    C = _gram_taps(torch.randn(3, 4, 3, 3, generator=torch.Generator().manual_seed(2)))
    direct = _eigenvalues_on_grid(C, 16)
    refined = _refine(C, _eigenvalues_on_grid(C, 8), 8)
    assert refined.shape == direct.shape == (16, 9)
    torch.testing.assert_close(refined, direct, rtol=1e-12, atol=1e-12)


def test_power_estimate_matches_repeated_power_steps():
    W = torch.randn(4, 3, 3, 3, generator=torch.Generator().manual_seed(0))
    u0 = torch.randn(16, 9, 3, dtype=torch.complex64, generator=torch.Generator().manual_seed(1))
    u = u0
    for _ in range(10):
        est, u = symbol_power_step(W, u)
    est_fixed, u_fixed = power_estimate(W, u0, 10)
    assert est_fixed == pytest.approx(float(est), rel=1e-5)
    torch.testing.assert_close(u_fixed, u, rtol=1e-4, atol=1e-5)
    assert est_fixed <= conv_norm_on_grid(W, 16) * (1 + 1e-5)
    with pytest.raises(ValueError, match="at least 1"):
        power_estimate(W, u0, 0)


def test_certified_bound_errors():
    with pytest.raises(ValueError, match="odd k"):
        certified_conv_norm(torch.ones(1, 1, 2, 2))
    with pytest.raises(ValueError, match="NaN"):
        certified_conv_norm(torch.full((1, 1, 3, 3), float("nan")))
    with pytest.raises(ValueError, match="smaller than the kernel"):
        certified_conv_norm(torch.ones(1, 1, 5, 5), grid=4)
    with pytest.raises(ValueError, match="smaller than the kernel"):
        conv_norm_on_grid(torch.ones(1, 1, 5, 5), 3)


def test_power_step_is_a_lower_bound_converging_to_grid_norm():
    W = torch.randn(4, 4, 3, 3, generator=torch.Generator().manual_seed(0))
    u = torch.randn(32, 17, 4, dtype=torch.complex64, generator=torch.Generator().manual_seed(1))
    for _ in range(50):
        est, u = symbol_power_step(W, u)
    exact = conv_norm_on_grid(W, 32)
    assert est <= exact * (1 + 1e-5) and est >= 0.999 * exact


@pytest.mark.parametrize("name", ["euler", "heun", "rk4"])
def test_integrator_order(name):
    m = get_integrator(name)
    order = {"euler": 1, "heun": 2, "rk4": 4}[name]
    errs = []
    for h in (0.1, 0.05):
        x = torch.tensor([1.0], dtype=torch.float64)
        for _ in range(int(round(1 / h))):
            x = m.step(lambda z: -z, x, h)
        errs.append(abs(float(x) - math.exp(-1)))
    assert 0.8 * order <= math.log2(errs[0] / errs[1]) <= 1.3 * order


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_slopes_within_bound(name):
    act = ACTIVATIONS[name]
    t = torch.linspace(-6, 6, 20001, dtype=torch.float64)
    slope = torch.diff(act(t)) / torch.diff(t)
    assert float(slope.min()) >= -1e-12 and float(slope.max()) <= act.slope_bound + 1e-9


@pytest.mark.parametrize("integrator", ["euler", "heun", "rk4"])
def test_block_forward_equals_textbook_steps(integrator):
    """The fused forward (gradient with step -h) equals x + h * sum b_i k_i of the field."""
    torch.manual_seed(3)
    blk = GradientFlowBlock(3, integrator=integrator, time=2.0, margin=1.0).double().eval()
    with torch.no_grad():
        blk.weight.mul_(1.7)
        blk.bias.normal_()
    x = torch.randn(2, 3, 7, 7, dtype=torch.float64)
    sched = blk.certified_schedule()
    m = get_integrator(integrator)
    ref = x
    for _ in range(sched.substeps):
        ks = []
        for i in range(m.stages):
            xi = ref + sum(sched.step * a * k for a, k in zip(m.a[i], ks))
            ks.append(blk.field(xi))
        ref = ref + sched.step * sum(b * k for b, k in zip(m.b, ks))
    with torch.no_grad():
        torch.testing.assert_close(blk(x), ref, atol=1e-13, rtol=0)


def test_capped_training_step_is_scale_invariant():
    """Regression: with the sub-step cap binding, A = rho W with rho = c / ||W|| normalises W.
    The loss is then invariant to scaling W, so its gradient has no radial part; a
    normalisation without gradient let ||W|| run away during training."""
    torch.manual_seed(0)
    blk = GradientFlowBlock(3, max_substeps=1, time=5.0).double().train()
    with torch.no_grad():
        blk.weight.mul_(3.0)
        blk.bias.normal_()
    x = torch.randn(2, 3, 9, 9, dtype=torch.float64)
    target = torch.randn_like(x)
    for _ in range(3):  # settle the power vectors
        blk(x)
    loss = ((blk(x) - target) ** 2).sum()
    assert blk.schedule(float(blk.norm_estimate)).capped
    (gw,) = torch.autograd.grad(loss, [blk.weight])
    radial = float((gw * blk.weight).sum())
    assert abs(radial) <= 1e-6 * float(gw.norm() * blk.weight.norm())


def test_capped_block_keeps_the_guarantee_in_eval():
    torch.manual_seed(1)
    blk = GradientFlowBlock(3, max_substeps=1, time=4.0, margin=0.9).double().eval()
    with torch.no_grad():
        blk.weight.mul_(4.0)
    sched = blk.certified_schedule()
    assert sched.capped and sched.substeps == 1 and sched.step_factor <= 2 * 0.9 + 1e-12
    x, y = _pairs((3, 9, 9), n=16)
    with torch.no_grad():
        res, scale = _alpha_residual(blk, x, y, sched.step_factor / 2)
    assert float((res / scale).max()) <= 1e-12
