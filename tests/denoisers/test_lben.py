"""LBEN denoisers: the bound by construction, the equilibrium, its error bound and its gradients.

Every check compares with an independent float64 reference: dense operator matrices built from
circular convolutions applied to basis images, or the equilibrium equation evaluated with
spatial convolutions (not the FFT path the network uses).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from denoisers.lben import EquilibriumNotReached, LBENDenoiser, LBENNet, circular_conv, conv_symbol


def _net(seed=0, *, channels=1, hidden=4, gamma=1.0, leak=0.1, pad=0, **kw) -> LBENNet:
    """A float64 LBEN with every part of the parametrisation away from its initial value."""
    torch.manual_seed(seed)
    net = LBENNet(channels, hidden=hidden, gamma=gamma, leak=leak, pad=pad, tol=1e-12, max_iter=5000, **kw).double()
    with torch.no_grad():
        for p in (net.U, net.Wo, net.V, net.S):
            p.copy_(torch.randn_like(p) * 0.4)
        net.log_psi.copy_(torch.randn_like(net.log_psi) * 0.5)
        net.d_raw.copy_(torch.randn_like(net.d_raw))
        net.bias.copy_(torch.randn_like(net.bias) * 0.1)
        net.out_bias.copy_(torch.randn_like(net.out_bias) * 0.1)
    return net.eval()


def _adjoint(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Adjoint of the circular cross-correlation: the flipped, transposed kernel."""
    return circular_conv(x, weight.transpose(0, 1).flip(-1, -2))


def _spatial_K(net: LBENNet, z: torch.Tensor) -> torch.Tensor:
    """``K z = Lambda (I - W) z`` from its definition, with spatial convolutions."""
    g, m = net.gamma, net.monotonicity
    lam = net.lambdas().detach()[None, :, None, None]
    d = net.feedthrough().detach()[None, :, None, None]
    q = g - d * d / g
    Wo_z = circular_conv(z, net.Wo)
    Rt_z = _adjoint(lam * z, net.U) + d * Wo_z / g  # R^T z
    R_QRt_z = lam * circular_conv(Rt_z / q, net.U) + _adjoint(d * (Rt_z / q), net.Wo) / g
    H_z = _adjoint(Wo_z, net.Wo) / g + R_QRt_z + _adjoint(circular_conv(z, net.V), net.V) + m * z
    return H_z / 2 + circular_conv(z, net.S) - _adjoint(z, net.S)


def _dense(apply, shape_in) -> torch.Tensor:
    """Matrix of a linear map on tensors of ``shape_in`` (float64)."""
    n = int(np.prod(shape_in))
    cols = [apply(torch.eye(n, dtype=torch.float64)[i].reshape(shape_in)).reshape(-1) for i in range(n)]
    return torch.stack(cols, 1)


@settings(max_examples=15, deadline=None)
@given(h=st.integers(3, 9), w=st.integers(3, 9), k=st.sampled_from([1, 3]), seed=st.integers(0, 10**6))
def test_symbol_is_the_circular_convolution(h, w, k, seed):
    g = torch.Generator().manual_seed(seed)
    weight = torch.randn(2, 3, k, k, generator=g, dtype=torch.float64)
    x = torch.randn(2, 3, h, w, generator=g, dtype=torch.float64)
    A = conv_symbol(weight, (h, w))
    xh = torch.fft.rfft2(x).flatten(-2)
    y = torch.fft.irfft2(torch.einsum("foi,bif->bof", A, xh).unflatten(-1, (h, w // 2 + 1)), s=(h, w))
    torch.testing.assert_close(y, circular_conv(x, weight), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("seed, channels, gamma", [(0, 1, 1.0), (1, 3, 0.7), (2, 1, 0.3)])
def test_lmi_holds_on_dense_matrices_for_any_parameters(seed, channels, gamma):
    """The extended LBEN LMI, assembled from dense matrices of the spatial operators on a 5x5
    grid, is positive definite, with Schur complement V^T V + m I (so at least m)."""
    net = _net(seed, channels=channels, hidden=3, gamma=gamma)
    n, c, size = net.hidden, channels, (5, 5)
    with torch.no_grad():
        K = _dense(lambda z: _spatial_K(net, z[None])[0], (n, *size))
        Wo = _dense(lambda z: circular_conv(z[None], net.Wo)[0], (n, *size))
        U = _dense(lambda x: circular_conv(x[None], net.U)[0], (c, *size))
        V = _dense(lambda z: circular_conv(z[None], net.V)[0], (n, *size))
        lam = net.lambdas().repeat_interleave(25)
        d = net.feedthrough().repeat_interleave(25)
    Lam = torch.diag(lam)
    W = torch.eye(len(lam), dtype=torch.float64) - torch.linalg.solve(Lam, K)
    D = torch.diag(d)
    top = torch.cat([2 * Lam - Lam @ W - W.T @ Lam - Wo.T @ Wo / gamma, -Lam @ U - Wo.T @ D / gamma], 1)
    bottom = torch.cat([(-Lam @ U - Wo.T @ D / gamma).T, gamma * torch.eye(len(d), dtype=torch.float64) - D @ D / gamma], 1)
    L = torch.cat([top, bottom], 0)
    assert torch.linalg.eigvalsh(L).min() > 0
    Q = bottom[:, len(lam):]
    schur = top[:, : len(lam)] - top[:, len(lam):] @ torch.linalg.solve(Q, top[:, len(lam):].T)
    expected = V.T @ V + net.monotonicity * torch.eye(len(lam), dtype=torch.float64)
    torch.testing.assert_close(schur, expected, rtol=1e-9, atol=1e-9)
    cert = net.certificate(grid=7)
    assert cert["schur_min_eig"] >= net.monotonicity * (1 - 1e-9) and cert["lmi_min_eig"] > 0


@pytest.mark.parametrize("leak, channels", [(0.0, 1), (0.2, 3)])
def test_equilibrium_solves_the_spatial_equation(leak, channels):
    """z = sigma(W z + U x + b) and y = W_o z + D x + b_y, with W from its definition."""
    net = _net(3, channels=channels, leak=leak)
    x = torch.rand(2, channels, 9, 10, dtype=torch.float64)
    with torch.no_grad():
        y = net(x)
        ops = net.operators((9, 10), torch.float64)
        # Recover z from the solve: rerun the forward pieces.
        c = net._fourier(ops.Uz, x) + (ops.sqrt_lam * net.bias)[None, :, None, None]
        zeta = net._solve(c, ops.Minv, lambda u: net._prox(u, ops.alpha), ops.alpha)[0]
        z = zeta / ops.sqrt_lam[None, :, None, None]
        lam = net.lambdas()[None, :, None, None]
        Wz = z - _spatial_K(net, z) / lam
        v = Wz + circular_conv(x, net.U) + net.bias[None, :, None, None]
        act = torch.nn.functional.leaky_relu(v, leak)
        y_ref = circular_conv(z, net.Wo) + net.feedthrough()[None, :, None, None] * x + net.out_bias[None, :, None, None]
    torch.testing.assert_close(z, act, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(y, y_ref, rtol=1e-9, atol=1e-9)
    assert all(net.last_report.converged) and max(net.last_report.error_bound) < 1e-5


@pytest.mark.parametrize("gamma", [1.0, 0.4])
def test_no_pair_beats_gamma(gamma):
    """Random pairs and a gradient-ascent worst pair stay below the bound (plus the solves'
    certified errors), and the ascent gets within reach of it (the bound is not vacuous)."""
    net = _net(4, gamma=gamma, hidden=4)
    net.tol = 1e-9  # the certified error bounds of the solves enter the comparison
    for p in net.parameters():
        p.requires_grad_(False)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(8, 1, 8, 8, generator=g, dtype=torch.float64)
    dx = 0.3 * torch.randn(8, 1, 8, 8, generator=g, dtype=torch.float64)
    best = 0.0
    for _ in range(15):
        dx.requires_grad_(True)
        y1, e1 = net(x), torch.tensor(net.last_report.error_bound)
        y2, e2 = net(x + dx), torch.tensor(net.last_report.error_bound)
        ratio = (y1 - y2).flatten(1).norm(dim=1) / dx.flatten(1).norm(dim=1)
        slack = ((e1 + e2) / dx.detach().flatten(1).norm(dim=1)).max()
        assert float(ratio.detach().max()) <= gamma * (1 + 1e-9) + float(slack)
        best = max(best, float(ratio.max()))
        (grad,) = torch.autograd.grad(ratio.sum(), dx)
        dx = (dx + 0.05 * grad / grad.flatten(1).norm(dim=1).view(-1, 1, 1, 1).clamp_min(1e-12) * dx.flatten(1).norm(dim=1).view(-1, 1, 1, 1)).detach()
    assert best > 0.3 * gamma


def test_truncated_solve_reports_an_honest_error_bound():
    net = _net(5, hidden=4)
    net.warm_start = False  # else the truncated solve would start from the exact one
    x = torch.rand(2, 1, 10, 10, dtype=torch.float64)
    with torch.no_grad():
        exact = net(x)
    net.max_iter, net.strict = 3, True
    with pytest.raises(EquilibriumNotReached, match="max_iter=3"):
        with torch.no_grad():
            net(x)
    net.strict = False
    with pytest.warns(RuntimeWarning, match="certified output error up to"):
        with torch.no_grad():
            rough = net(x)
    rep = net.last_report
    actual = (rough - exact).flatten(1).norm(dim=1)
    assert not any(rep.converged) and rep.iterations == [3, 3]
    assert all(a <= b for a, b in zip(actual.tolist(), rep.error_bound))
    assert all(a > 0 for a in actual.tolist())  # truncated for real


def test_implicit_gradient_matches_autograd_through_the_unrolled_solve():
    net = _net(6, channels=1, hidden=3, leak=0.3)
    x = torch.rand(2, 1, 7, 8, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(2, 1, 7, 8, dtype=torch.float64)
    net.train()
    loss = (net(x) * weights).sum()
    implicit = torch.autograd.grad(loss, [x, *net.parameters()], allow_unused=True)

    # Reference: the same forward with autograd through every Peaceman-Rachford iteration.
    ops = net.operators((7, 8), torch.float64)
    c = net._fourier(ops.Uz, x) + (ops.sqrt_lam * net.bias)[None, :, None, None]
    zeta = net._solve(c, ops.Minv, lambda u: net._prox(u, ops.alpha), ops.alpha)[0]
    zeta = torch.nn.functional.leaky_relu(zeta - net._fourier(ops.K, zeta) + c, net.leak)
    y = net._fourier(ops.Oz, zeta) + net.feedthrough()[None, :, None, None] * x + net.out_bias[None, :, None, None]
    unrolled = torch.autograd.grad((y * weights).sum(), [x, *net.parameters()], allow_unused=True)
    for (name, _), a, b in zip([("x", None), *net.named_parameters()], implicit, unrolled):
        if b is None:
            assert a is None or float(a.abs().max()) == 0, name
            continue
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-8, msg=f"gradient of {name}")


def test_noise_conditioning_moves_the_output_not_the_certificate():
    net = LBENNet(1, hidden=4, noise_knots=[0.0, 0.1, 0.2]).eval()
    with torch.no_grad():
        net.conditioning.table.copy_(torch.randn_like(net.conditioning.table))
    x = torch.rand(2, 1, 10, 10)
    with torch.no_grad():
        a, b = net(x, 0.05), net(x, torch.tensor([0.15, 0.15]))
    assert not torch.allclose(a, b)
    assert net.certified_lipschitz() == 1.0 and net.config["noise_knots"] == [0.0, 0.1, 0.2]


def test_operators_are_cached_in_inference_and_rebuilt_when_the_weights_change():
    net = LBENNet(1, hidden=4).eval()
    x = torch.rand(1, 1, 12, 12)
    with torch.no_grad():
        net(x)
        first = net._cache
        net(x)
        assert net._cache is first
        net.V.mul_(1.5)  # an in-place change (as an optimiser step makes)
        net(x)
        assert net._cache is not first


def test_zero_margin_keeps_the_bound_and_the_shape():
    net = _net(7, pad=3, gamma=0.8)
    x, x2 = torch.rand(2, 1, 1, 9, 9, dtype=torch.float64).unbind(0)
    with torch.no_grad():
        y, e = net(x), net.last_report.error_bound[0]
        y2, e2 = net(x2), net.last_report.error_bound[0]
    assert y.shape == x.shape
    assert float((y - y2).norm()) <= 0.8 * float((x - x2).norm()) + e + e2


def test_denoiser_relaxation_sets_the_certified_averagedness():
    assert LBENDenoiser(LBENNet(1, hidden=2), theta=0.5).certified_alpha() == 0.5
    assert LBENDenoiser(LBENNet(1, hidden=2, gamma=0.5), theta=1.0).certified_alpha() == 0.75
    d = LBENDenoiser(LBENNet(1, hidden=2), theta=0.5).eval()
    x = torch.rand(1, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(d(x), 0.5 * x + 0.5 * d.net(x))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(gamma=-1.0), "gamma must be"),
        (dict(monotonicity=0.0), "monotonicity"),
        (dict(leak=1.0), "leak must lie"),
        (dict(kernel_size=4), "kernel_size must be odd"),
        (dict(pr_step=0.0), "pr_step"),
        (dict(pad=-1), "pad must be"),
    ],
)
def test_bad_construction_is_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LBENNet(1, hidden=2, **kwargs)


def test_bad_input_is_refused():
    net = LBENNet(1, hidden=2, pad=0).eval()
    with pytest.raises(ValueError, match="1-channel images; got 3"):
        net(torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="NaN or Inf"):
        net(torch.full((1, 1, 8, 8), float("nan")))
    with pytest.raises(ValueError, match="at least 3 pixels"):
        net(torch.rand(1, 1, 2, 8))
    with pytest.raises(ValueError, match="shape"):
        net(torch.rand(8, 8))


def test_certificate_refuses_broken_weights():
    net = LBENNet(1, hidden=2)
    with torch.no_grad():
        net.log_psi[0] = float("inf")  # Lambda = exp(-inf) = 0: not positive
    with pytest.raises(ValueError, match="non-positive Lambda"):
        net.certified_lipschitz()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = LBENNet(1, hidden=2)
    with torch.no_grad():
        net.V[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN/Inf"):
        net.certificate(grid=4)


def test_weights_round_trip_recomputes_the_certificate(tmp_path):
    from denoisers.weights import WeightsError, export_weights, load_weights

    d = LBENDenoiser(LBENNet(1, hidden=3, noise_knots=[0.0, 0.2]), theta=0.5)
    with torch.no_grad():
        d.net.conditioning.table.normal_()
        d.net.log_psi.normal_()
    path = export_weights(d, tmp_path / "lben.pt", metadata={"note": "test"})
    loaded, rec = load_weights(path, return_record=True)
    x = torch.rand(2, 1, 12, 12)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, 0.1), d.eval()(x, 0.1))
    assert rec["model"] == "lben" and rec["certificate"]["alpha"] == 0.5
    assert rec["certificate"]["details"]["schur_min_eig"] >= 0.5 * (1 - 1e-9)
    # A file whose stored certificate claims more than the weights give is refused.
    tampered = torch.load(path, weights_only=True)
    tampered["certificate"]["lipschitz_bound"] = 0.5
    torch.save(tampered, tmp_path / "claims.pt")
    with pytest.raises(WeightsError, match="Lipschitz bound"):
        load_weights(tmp_path / "claims.pt")
    # The weights of another architecture under this name do not load.
    foreign = dict(tampered, model="averaged", config={"channels": 1, "width": 4, "depth": 1})
    torch.save(foreign, tmp_path / "foreign.pt")
    with pytest.raises(WeightsError):
        load_weights(tmp_path / "foreign.pt")


def test_certify_probes_the_exact_map_and_catches_a_false_bound(monkeypatch):
    from denoisers import CertificateViolation, certify

    torch.manual_seed(8)
    d = LBENDenoiser(LBENNet(1, hidden=3), theta=1.0)
    cert = certify(d, steps=8, shape=(1, 1, 10, 10))
    assert cert.lipschitz_bound == 1.0 and cert.details["schur_min_eig"] >= 0.5 * (1 - 1e-9)
    assert 0 < cert.empirical["pair_lipschitz"] <= 1 and 0 < cert.empirical["jacobian_lipschitz"] <= 1
    assert "LBEN" in cert.method and "schur_min_eig" in cert.summary()
    # Were the construction to claim gamma = 0.05, the probes would expose it.
    monkeypatch.setattr(LBENNet, "certified_lipschitz", lambda self: 0.05)
    monkeypatch.setattr(LBENNet, "certificate", lambda self, grid=16: {"gamma": 0.05})
    with pytest.raises(CertificateViolation, match="exceeds the bound"):
        certify(d, steps=8, shape=(1, 1, 10, 10))


def test_warm_start_saves_iterations_and_keeps_the_result():
    """A second solve on a nearby input starts from the first one's state; the output stays
    within the certified error bounds of a cold solve."""
    torch.manual_seed(9)
    net = LBENNet(1, hidden=4, tol=1e-6).eval()
    x = torch.rand(2, 1, 16, 16)
    x2 = x + 0.01 * torch.randn_like(x)
    with torch.no_grad():
        net(x)
        warm, warm_its, warm_err = net(x2), net.last_report.iterations, net.last_report.error_bound
        net.warm_start = False
        cold, cold_its, cold_err = net(x2), net.last_report.iterations, net.last_report.error_bound
    assert sum(warm_its) < sum(cold_its)
    gap = (warm - cold).flatten(1).norm(dim=1)
    assert all(g <= a + b for g, a, b in zip(gap.tolist(), warm_err, cold_err))


@pytest.mark.parametrize("solver, theta, kwargs", [("pnp-fbs", 0.9, {"sigma": 0.05}), ("pnp-admm", 0.5, {"sigma": 0.05, "step": 1.0})])
def test_pnp_solvers_run_the_equilibrium_under_their_inexact_schedule(solver, theta, kwargs):
    """The solvers ask the equilibrium for certified accuracies on a summable schedule; the
    run keeps its guarantee, and every evaluation met what it was asked."""
    from operators import Blur
    from pnp_stable import reconstruct

    torch.manual_seed(10)
    d = LBENDenoiser(LBENNet(1, hidden=3, max_iter=2000), theta=theta).eval()
    asked = []
    within = d.denoise_within

    def spy(x, sigma, atol):
        out, bound, rounding = within(x, sigma, atol)
        asked.append((torch.as_tensor(atol).double().reshape(-1), bound, rounding))
        return out, bound, rounding

    d.denoise_within = spy
    truth = torch.rand(1, 1, 24, 24, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    op = Blur("box:3", boundary="circular")
    r = reconstruct(op.A(truth), op, denoiser=d, solver=solver, max_iter=300, tol=1e-4, progress=False, **kwargs)
    assert r.report.guaranteed and r.report.converged == [True]
    assert r.report.inexact_schedule_met == [True]
    assert len(asked) >= 3 and all(bool((b <= torch.maximum(a, f) * (1 + 1e-12)).all()) for a, b, f in asked)
    demands = [float(a.max()) for a, _, _ in asked]
    assert demands[-1] < demands[0]  # the schedule tightens


def test_channelwise_lben_keeps_the_certified_accuracy():
    from denoisers import ChannelwiseDenoiser

    torch.manual_seed(11)
    colour = ChannelwiseDenoiser(LBENDenoiser(LBENNet(1, hidden=3), theta=0.5).eval())
    x = torch.rand(2, 3, 12, 12)
    y, bound, rounding = colour.denoise_within(x, 0.1, torch.tensor([1e-3, 1e-2]))
    assert y.shape == x.shape and bound.shape == (2,)
    assert bool((bound <= torch.maximum(torch.tensor([1e-3, 1e-2], dtype=torch.float64), rounding) + 1e-12).all())
    from denoisers.baselines import DnCNN

    assert ChannelwiseDenoiser(DnCNN(1, width=2, depth=2)).denoise_within is None


def test_shipped_lben_is_certified_relaxes_for_admm_and_restores_a_photograph():
    """The shipped equilibrium model: its record, its certificate as re-derived on load, the
    relaxation PnP-ADMM asks for, and real work on a photograph (denoising and deblur())."""
    from skimage import data
    from skimage.metrics import peak_signal_noise_ratio as psnr

    from denoisers import available_pretrained, load_pretrained
    from operators import Blur
    from pnp_stable import deblur

    info = available_pretrained()["gray-lben"]
    d = load_pretrained("gray-lben")
    assert isinstance(d, LBENDenoiser) and d.net.hidden == 32
    assert d.certified_alpha() == pytest.approx(0.99) and info.lipschitz_bound <= 1 + 1e-12
    assert info.sigma_train == (0.0, pytest.approx(50 / 255)) and info.total_steps > info.steps and "cuda" in info.training_devices
    firm = load_pretrained("gray-lben", target_alpha=0.5)
    assert firm.certified_alpha() <= 0.5
    assert firm.certified_part().alpha <= 0.5 and d.certified_alpha() == pytest.approx(0.99)  # the copies are separate

    truth = data.camera()[180:244, 220:284].astype(np.float64) / 255
    rng = np.random.default_rng(0)
    noisy = truth + 25 / 255 * rng.standard_normal(truth.shape)
    with torch.no_grad():
        out = d(torch.tensor(noisy, dtype=torch.float32)[None, None], 25 / 255)[0, 0].double().numpy()
    assert psnr(truth, out.clip(0, 1), data_range=1) > psnr(truth, noisy.clip(0, 1), data_range=1) + 5
    assert np.isfinite(d.last_report.error_bound).all()

    blurred = Blur("gaussian:1.6", boundary="circular").A(torch.tensor(truth)[None, None])[0, 0].numpy()
    y = blurred + 0.01 * rng.standard_normal(truth.shape)
    for solver in ("pnp-fbs", "pnp-admm"):
        r = deblur(y, "gaussian:1.6", 0.01, solver=solver, denoiser="gray-lben", boundary="circular", max_iter=30, progress=False)
        assert r.report.guaranteed, solver
        assert psnr(truth, r.image, data_range=1) > psnr(truth, y.clip(0, 1), data_range=1) + 1, solver


def test_operators_built_by_frequency_blocks_equal_the_whole_build_and_large_grids_are_refused():
    from denoisers.lben import _symbol_at

    torch.manual_seed(12)
    w = torch.randn(3, 2, 3, 3, dtype=torch.float64)
    for full in (False, True):
        whole = conv_symbol(w, (9, 12), full=full)
        torch.testing.assert_close(_symbol_at(w, (9, 12), torch.arange(whole.shape[0]), full=full), whole, rtol=0, atol=1e-12)
    net = LBENNet(1, hidden=5, noise_knots=[0.0, 0.2]).eval()
    x = torch.rand(1, 1, 14, 11)
    with torch.no_grad():
        net.build_block = 10**9
        a = net.operators((22, 19))
        ref = net(x, 0.1)
        net._cache, net._warm, net.build_block = None, None, 13  # 13 does not divide the frequency count
        b = net.operators((22, 19))
        out = net(x, 0.1)
    for name in ("K", "Minv", "Uz", "Oz"):
        torch.testing.assert_close(getattr(b, name), getattr(a, name), rtol=0, atol=1e-5)
    assert (b.mu, b.alpha) == pytest.approx((a.mu, a.alpha), rel=1e-6)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)
    assert net.operator_bytes((22, 19)) == 2 * 22 * 10 * 25 * 8
    net.max_operator_bytes = net.operator_bytes((22, 19)) - 1
    net._cache = None
    with pytest.raises(ValueError, match=r"needs .* GiB of per-frequency operators .*Denoise smaller tiles"):
        net(x, 0.1)


def test_demands_below_the_float32_floor_are_finished_in_float64():
    torch.manual_seed(13)
    d = LBENDenoiser(LBENNet(1, hidden=4, max_iter=3000), theta=0.9).eval()
    x = torch.rand(2, 1, 12, 12)
    keys = set(d.state_dict())
    y, bound, floor = d.denoise_within(x, 0.1, torch.tensor([1e-9, 1e-2]))
    assert y.dtype == torch.float32 and float(bound[0]) <= 1e-9 + float(floor[0]) and float(floor[0]) < 1e-6
    assert float(bound[1]) <= 1e-2
    import copy

    net64 = copy.deepcopy(d.net).double()
    net64.tol, net64.max_iter = 1e-14, 20000
    with torch.no_grad():
        ref = LBENDenoiser(net64, theta=0.9).eval()(x.double(), 0.1)
    err = (y.double() - ref).flatten(1).norm(dim=1)
    assert float(err[0]) <= float(bound[0]) + 1e-10  # the float32 rounding of the output is inside the bound
    assert set(d.state_dict()) == keys  # the float64 copy is not part of the weights
    d.escalate_precision = False
    _, bound32, floor32 = d.denoise_within(x, 0.1, torch.tensor([1e-9, 1e-2]))
    assert float(bound32[0]) > 1e-9 and float(floor32[0]) > 1e-9  # float32 alone stops at its floor
