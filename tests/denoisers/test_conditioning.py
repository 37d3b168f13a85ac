"""Noise-conditioned biases: the output follows the level, the certificate does not move."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from denoisers import AveragedDenoiser, GradientFlowNet, certify
from denoisers.conditioning import NoiseConditioning, hat_weights
from denoisers.weights import export_weights, load_weights
from tests.denoisers.test_training import _cfg, image_dir  # noqa: F401  (fixture)

KNOTS = [0.0, 0.05, 0.1, 0.2]


def _conditioned(seed: int = 0, **kw) -> AveragedDenoiser:
    torch.manual_seed(seed)
    net = GradientFlowNet(1, width=6, depth=3, noise_knots=KNOTS, **kw)
    with torch.no_grad():
        net.conditioning.table.normal_(0, 0.5)  # a trained-looking table
    return AveragedDenoiser(net, target_alpha=0.5).double().eval()


def test_hat_weights_interpolate_a_table_like_numpy():
    knots = torch.tensor(KNOTS, dtype=torch.float64)
    levels = torch.tensor([0.0, 0.01, 0.05, 0.07, 0.1, 0.19, 0.2, 0.5], dtype=torch.float64)
    w = hat_weights(levels, knots)
    assert torch.all(w >= 0) and torch.allclose(w.sum(1), torch.ones(len(levels), dtype=torch.float64))
    table = np.array([1.0, -2.0, 3.0, 0.5])
    np.testing.assert_allclose((w @ torch.from_numpy(table)).numpy(), np.interp(levels.numpy(), KNOTS, table), atol=1e-15)
    with pytest.raises(ValueError, match="increasing"):
        NoiseConditioning([0.1, 0.05], blocks=1, channels=2)


def test_output_follows_the_level_and_certificate_does_not():
    d = _conditioned()
    x = torch.rand(2, 1, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(d(x, 0.02), d(x, 0.15))
    # one level per sample equals separate calls
    both = d(x, torch.tensor([0.02, 0.15], dtype=torch.float64))
    torch.testing.assert_close(both, torch.cat([d(x[:1], 0.02), d(x[1:], 0.15)]))
    # the certificate is that of the same weights without conditioning
    plain = AveragedDenoiser(GradientFlowNet(1, width=6, depth=3), target_alpha=0.5).double().eval()
    plain.net.load_state_dict({k: v for k, v in d.net.state_dict().items() if not k.startswith("conditioning")}, strict=True)
    assert certify(d, empirical=False).alpha == certify(plain, empirical=False).alpha
    cert = certify(d)  # empirical bounds at sigma None and at the top knot stay below it
    assert cert.empirical["pair_alpha"] <= cert.alpha


@pytest.mark.parametrize("sigma", [0.0, 0.03, 0.1, 0.4])
def test_averaged_at_every_level(sigma):
    d = _conditioned(seed=2)
    g = torch.Generator().manual_seed(3)
    x, y = torch.rand(4, 1, 12, 12, dtype=torch.float64, generator=g), torch.rand(4, 1, 12, 12, dtype=torch.float64, generator=g)
    a = d.certified_alpha()
    Tx, Ty = d(x, sigma), d(y, sigma)
    lhs = ((Tx - Ty) ** 2).flatten(1).sum(1) + (1 - a) / a * (((x - Tx) - (y - Ty)) ** 2).flatten(1).sum(1)
    assert torch.all(lhs <= ((x - y) ** 2).flatten(1).sum(1) * (1 + 1e-12))


def test_weights_file_keeps_the_knots_and_the_table(tmp_path):
    d = _conditioned(seed=4).float()
    path = export_weights(d, tmp_path / "c.pt")
    back = load_weights(path)
    assert back.net.config["noise_knots"] == KNOTS
    x = torch.rand(1, 1, 16, 16)
    torch.testing.assert_close(back(x, 0.07), d(x, 0.07))


def test_training_a_conditioned_model_over_a_noise_range(image_dir, tmp_path):  # noqa: F811
    from denoisers.training import train

    cfg = _cfg(image_dir, tmp_path / "run", steps=12, sigma=0.02, sigma_max=0.2,
               model_kwargs=dict(width=6, depth=2, noise_knots=KNOTS))
    r = train(cfg, progress=False)
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["model"]
    assert r.finished and float(state["net.conditioning.table"].abs().max()) > 0  # the table learned


def test_conditioned_run_can_start_from_an_unconditioned_model(image_dir, tmp_path):  # noqa: F811
    from denoisers.training import train

    torch.manual_seed(0)
    start = export_weights(AveragedDenoiser(GradientFlowNet(1, width=6, depth=2)), tmp_path / "s.pt")
    cfg = _cfg(image_dir, tmp_path / "run", steps=1, sigma=0.02, sigma_max=0.2, lr=1e-12,
               model_kwargs=dict(width=6, depth=2, noise_knots=KNOTS), init=str(start))
    train(cfg, progress=False)
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["model"]
    src = load_weights(start).state_dict()
    params = [k for k in src if k.endswith((".weight", ".bias"))]  # (training moves the power-iteration buffers)
    assert params and all(torch.allclose(state[k], src[k], atol=1e-6) for k in params)
    assert float(state["net.conditioning.table"].abs().max()) < 1e-6  # begins as the start model


def test_strength_calibration_runs_the_network_at_the_level():
    from denoisers.strength import optimal_theta

    d = _conditioned(seed=5).float()
    img = np.random.default_rng(0).random((20, 20, 1))
    g = torch.Generator().manual_seed(0)
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float()
    y = x + 0.15 * torch.randn(x.shape, generator=g)
    r = (d.net(y, 0.15) - y).double()
    expected = float(((x - y).double() * r).sum() / (r * r).sum())
    assert optimal_theta(d, [img], 0.15, seed=0) == pytest.approx(min(max(expected, 0.0), 1.0), rel=1e-6)
