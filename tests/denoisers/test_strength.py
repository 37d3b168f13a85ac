"""The noise-level relaxation theta(sigma): exact blending, certificate, closed-form calibration."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from denoisers import AveragedDenoiser, GradientFlowNet
from denoisers.averaged import relax_alpha
from denoisers.strength import calibrate_strength, optimal_theta
from denoisers.weights import export_weights, load_weights

TABLE = ([0.0, 0.05, 0.1], [0.0, 0.4, 0.9])


def _model(**kw) -> AveragedDenoiser:
    torch.manual_seed(0)
    return AveragedDenoiser(GradientFlowNet(1, width=4, depth=2), **kw).double().eval()


def test_forward_blends_exactly_with_interpolated_theta():
    d = _model(strength=TABLE)
    x = torch.rand(1, 1, 12, 12, dtype=torch.float64)
    n = d.net(x)
    for sigma, theta in [(0.0, 0.0), (0.025, 0.2), (0.075, 0.65), (0.1, 0.9), (0.3, 0.9)]:
        assert d.theta_for(sigma) == pytest.approx(theta, abs=1e-15)
        torch.testing.assert_close(d(x, sigma), (1 - theta) * x + theta * n, rtol=0, atol=1e-14)


def test_per_sample_sigma_tensor():
    d = _model(strength=TABLE)
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64)
    out = d(x, torch.tensor([0.025, 0.1]))
    torch.testing.assert_close(out[0], d(x[:1], 0.025)[0])
    torch.testing.assert_close(out[1], d(x[1:], 0.1)[0])
    with pytest.raises(ValueError, match="3 noise levels for a batch of 2"):
        d(x, torch.tensor([0.1, 0.1, 0.1]))


def test_theta_never_exceeds_the_certified_cap_and_certificate_is_unchanged():
    plain = _model()
    capped = _model(strength=([0.0, 0.1], [0.0, 1.0]), target_alpha=0.5)
    assert capped.theta_for(0.5) == pytest.approx(capped.effective_theta())
    assert capped.certified_alpha() <= 0.5
    with_table = _model(strength=TABLE)
    assert with_table.certified_alpha() == plain.certified_alpha() == relax_alpha(plain.net.certified_alpha(), 1.0)


@pytest.mark.parametrize(
    "table, match",
    [
        (([0.1, 0.05], [0.1, 0.2]), "increasing"),
        (([0.0, 0.1], [0.0, 1.5]), r"\[0, 1\]"),
        (([0.0], [0.0, 1.0]), "as many thetas"),
        ((["a"], [0.1]), "pair"),
        (([-0.1, 0.1], [0.0, 1.0]), ">= 0"),
    ],
)
def test_bad_tables_are_refused(table, match):
    with pytest.raises(ValueError, match=match):
        _model(strength=table)


@pytest.mark.parametrize("sigma", [-0.1, float("nan")])
def test_bad_sigma_is_refused(sigma):
    with pytest.raises(ValueError, match="sigma must be finite"):
        _model(strength=TABLE)(torch.rand(1, 1, 8, 8, dtype=torch.float64), sigma)


def test_optimal_theta_is_the_least_squares_minimiser():
    d = _model()
    rng = np.random.default_rng(1)
    imgs = [np.clip(rng.random((20, 20, 1)) * 0.3 + 0.4, 0, 1) for _ in range(2)]
    theta = optimal_theta(d, imgs, 0.1, seed=3)

    # Brute force in float64 with the same noise: the MSE over a fine theta grid is least at theta.
    g = torch.Generator().manual_seed(3)
    pairs = []
    for a in imgs:
        x = torch.from_numpy(a).permute(2, 0, 1)[None].float()
        y = x + 0.1 * torch.randn(x.shape, generator=g)
        pairs.append((x.double(), y.double(), d.net(y.double()).detach()))
    grid = np.linspace(0, 1, 2001)
    mse = [sum(float(((x - (1 - t) * y - t * n) ** 2).sum()) for x, y, n in pairs) for t in grid]
    assert abs(grid[int(np.argmin(mse))] - theta) <= 1e-3


def test_calibration_is_monotone_and_round_trips_through_a_weights_file(tmp_path):
    d = _model()
    imgs = [np.full((16, 16, 1), 0.5)]
    sig, th = calibrate_strength(d, imgs, [0.1, 0.02, 0.05])
    assert sig == [0.0, 0.02, 0.05, 0.1] and th[0] == 0.0 and th == sorted(th) and max(th) <= 1
    d.strength = (tuple(sig), tuple(th))
    path = export_weights(d.float(), tmp_path / "m.pt")
    back = load_weights(path)
    assert back.strength == (tuple(sig), tuple(th))
    x = torch.rand(1, 1, 16, 16)
    torch.testing.assert_close(back(x, 0.03), d.float()(x, 0.03))
    with pytest.raises(ValueError, match="distinct numbers > 0"):
        calibrate_strength(d, imgs, [0.0, 0.1])
