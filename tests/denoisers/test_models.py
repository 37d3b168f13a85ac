"""Networks, averagedness algebra, the ResNet contrast, and certify()."""

from __future__ import annotations

import pytest
import torch

from denoisers import (
    AveragedDenoiser,
    CertificateViolation,
    GradientFlowNet,
    NonexpansiveDenoiser,
    certify,
    compose_alpha,
    compose_all,
)
from denoisers.baselines import DnCNN, SpectralResNet
from tests.denoisers.test_blocks import _alpha_residual, _pairs


def _averaged_linear(n: int, alpha: float, seed: int) -> torch.Tensor:
    """(1 - alpha) I + alpha Q with Q a random orthogonal matrix: exactly alpha-averaged."""
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    return (1 - alpha) * torch.eye(n, dtype=torch.float64) + alpha * Q


@pytest.mark.parametrize("a1, a2", [(0.3, 0.6), (0.5, 0.5), (0.9, 0.2), (0.95, 0.95)])
def test_composition_rule_holds(a1, a2):
    T1, T2 = _averaged_linear(12, a1, 0), _averaged_linear(12, a2, 1)
    T = T2 @ T1
    alpha = compose_alpha(a1, a2)
    x, y = (torch.randn(200, 12, generator=torch.Generator().manual_seed(s), dtype=torch.float64) for s in (2, 3))
    res, scale = _alpha_residual(lambda z: z @ T.T, x[:, None, None], y[:, None, None], alpha)
    assert float((res / scale).max()) <= 1e-12
    # and the constant is not trivially loose: a smaller one fails for some pair
    res, _ = _alpha_residual(lambda z: z @ T.T, x[:, None, None], y[:, None, None], 0.7 * alpha)
    assert float(res.max()) > 0


def test_composition_monotone_and_nonexpansive_absorbing():
    assert compose_alpha(0.4, 0.5) <= compose_alpha(0.45, 0.5)
    assert compose_alpha(1.0, 0.1) == 1.0
    assert abs(compose_all([0.5] * 4) - 0.8) < 1e-12
    with pytest.raises(ValueError):
        compose_alpha(0.0, 0.5)


def test_lift_and_projection_keep_alpha():
    """P^T T P with P the zero-channel lift: alpha-averaged T stays alpha-averaged."""
    T = _averaged_linear(12, 0.4, 5)  # on 12 = 3 channels x 2 x 2 lifted from 1 channel
    def lifted(z):  # z: (B, 1, 2, 2)
        big = torch.cat([z, z.new_zeros(z.shape[0], 2, 2, 2)], 1).reshape(z.shape[0], 12)
        return (big @ T.T).reshape(z.shape[0], 3, 2, 2)[:, :1]
    x, y = _pairs((1, 2, 2), n=64)
    res, scale = _alpha_residual(lifted, x, y, 0.4)
    assert float((res / scale).max()) <= 1e-12


def test_network_alpha_matches_steps_and_pairs_obey_it():
    torch.manual_seed(0)
    net = GradientFlowNet(1, width=6, depth=3, margin=0.9).double().eval()
    alpha = net.certified_alpha()
    assert abs(alpha - compose_all(net.step_alphas())) < 1e-15 and alpha < 1
    x, y = _pairs((1, 12, 12), n=16)
    with torch.no_grad():
        res, scale = _alpha_residual(net, x, y, alpha)
    assert float((res / scale).max()) <= 1e-10


@pytest.mark.parametrize("target", [0.5, 0.3])
def test_averaged_denoiser_reaches_target_alpha(target):
    d = AveragedDenoiser(GradientFlowNet(1, width=6, depth=3), target_alpha=target).double().eval()
    assert d.certified_alpha() <= target + 1e-12
    x, y = _pairs((1, 10, 10), n=16)
    with torch.no_grad():
        res, scale = _alpha_residual(lambda z: d(z, 0.1), x, y, d.certified_alpha())
    assert float((res / scale).max()) <= 1e-10


def test_heun_network_is_only_nonexpansive_until_relaxed():
    net = GradientFlowNet(1, width=4, depth=2, integrator="heun")
    assert net.eval().certified_alpha() == 1.0
    assert AveragedDenoiser(net, theta=0.5).eval().certified_alpha() == 0.5


def test_denoiser_input_errors():
    d = NonexpansiveDenoiser(GradientFlowNet(1, width=4, depth=1))
    with pytest.raises(ValueError, match="1-channel"):
        d(torch.rand(1, 3, 8, 8), 0.1)
    with pytest.raises(ValueError, match="theta"):
        AveragedDenoiser(theta=0.0)
    with pytest.raises(ValueError, match="target_alpha"):
        AveragedDenoiser(target_alpha=1.0)


def test_ordinary_resnet_lipschitz_grows_with_depth_ours_does_not():
    x = torch.rand(1, 1, 8, 8, dtype=torch.float64) + 0.5
    y = x + 0.01
    ratios = []
    for depth in (1, 2, 4, 6):
        r = SpectralResNet.worst_case(depth)
        with torch.no_grad():
            ratios.append(float((r(x) - r(y)).norm() / (x - y).norm()))
        ours = GradientFlowNet(1, width=4, depth=depth).double().eval()
        with torch.no_grad():
            assert float((ours(x) - ours(y)).norm() / (x - y).norm()) <= 1 + 1e-12
    assert ratios == pytest.approx([2.0, 4.0, 16.0, 64.0], rel=1e-9)


def test_certify_reports_bounds_and_empirical_below_them():
    torch.manual_seed(0)
    d = AveragedDenoiser(GradientFlowNet(1, width=6, depth=3), target_alpha=0.5)
    cert = certify(d, steps=8)
    assert cert.averaged and cert.alpha <= 0.5 + 1e-12 and cert.lipschitz_bound == 1.0
    assert len(cert.layers) == 3 and all(lc.norm_bound >= lc.grid_max for lc in cert.layers)
    emp = cert.empirical
    assert 0 < emp["jacobian_lipschitz"] <= 1 and 0 < emp["pair_alpha"] <= cert.alpha
    assert "certified averagedness" in cert.summary()
    assert d.training  # certify works on a copy


def test_certify_detects_a_wrong_bound(monkeypatch):
    """If a layer bound were too small, the worst-pair search exposes it."""
    from denoisers.blocks import GradientFlowBlock
    from denoisers.spectral import ConvNormBound

    torch.manual_seed(0)
    d = NonexpansiveDenoiser(GradientFlowNet(1, width=4, depth=1, margin=1.0, max_substeps=1))
    with torch.no_grad():
        d.net.blocks[0].weight.mul_(3)
    monkeypatch.setattr(GradientFlowBlock, "certified_norm", lambda self: ConvNormBound(0.3, 0.3, 0.0, 64))
    with pytest.raises(CertificateViolation):
        certify(d, steps=30)


def test_certify_rejects_baselines():
    with pytest.raises(TypeError, match="baselines carry no certificate"):
        certify(DnCNN(1, width=4, depth=2))


def test_dncnn_init_keeps_the_signal_through_depth():
    # BN-free DnCNN with torch's default init shrank the residual branch to ~1e-3 of the input
    # after 18 layers and did not train; He init keeps every hidden layer within a small factor.
    torch.manual_seed(0)
    net = DnCNN(1, width=32, depth=18)
    h = torch.rand(2, 1, 32, 32)
    scales = []
    with torch.no_grad():
        for layer in net.body:
            h = layer(h)
            if isinstance(layer, torch.nn.Conv2d):
                scales.append(float(h.std()))
    assert min(scales[:-1]) > 0.1 * max(scales[:-1])
    assert scales[-1] > 0.01  # the residual (noise estimate) is not stuck at zero


def test_shipped_model_is_traceable_by_torch_func():
    """Jacobian tools built on torch.func can probe a loaded model (nothing mutated, no numpy)."""
    from denoisers import load_pretrained

    d = load_pretrained("gray-averaged-s25", target_alpha=0.5, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 1, 24, 24, generator=g, dtype=torch.float64)
    v = torch.randn(x.shape, generator=g, dtype=torch.float64)
    for sigma in (0.1, torch.tensor(0.1, dtype=torch.float64), torch.tensor([0.05, 0.1], dtype=torch.float64)):
        out, jv = torch.func.jvp(lambda u: d(u, sigma), (x,), (v,))
        fd = (d(x + 1e-6 * v, sigma) - d(x - 1e-6 * v, sigma)) / 2e-6
        torch.testing.assert_close(out, d(x, sigma))
        torch.testing.assert_close(jv, fd, atol=1e-6, rtol=1e-5)
        assert float(jv.norm()) <= float(v.norm()) * (1 + 1e-9)  # non-expansive
    levels = torch.tensor([0.02, 0.2], dtype=torch.float64)
    batched = torch.func.vmap(lambda xi, si: d(xi[None], si)[0])(x, levels)
    looped = torch.cat([d(x[i:i + 1], float(levels[i])) for i in range(2)])
    torch.testing.assert_close(batched, looped)
    with pytest.raises(ValueError, match="sigma must be finite"):
        d(x, torch.tensor([0.1, -1.0], dtype=torch.float64))
