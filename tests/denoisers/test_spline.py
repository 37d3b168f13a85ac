"""The learnable monotone spline activation: slopes in [0, L] whatever its parameters, and the
block certificate that rests on them."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from denoisers import AveragedDenoiser, GradientFlowBlock, GradientFlowNet
from denoisers.activations import MonotoneSpline, build_activation
from denoisers.weights import export_weights, load_weights


def _reference(act: MonotoneSpline, t: torch.Tensor) -> torch.Tensor:
    """sum_j s_j clamp(t - t_j, 0, delta), continued with the end slopes, in float64 (channel-wise)."""
    s = act.slopes().detach().to(torch.float64)
    K = s.shape[1]
    delta = 2 * act.span / K
    knots = -act.span + delta * torch.arange(K + 1, dtype=torch.float64)
    tt = t.to(torch.float64).unsqueeze(-1)  # (..., C, N, 1)
    pieces = (tt - knots[:-1]).clamp(0, delta) * s[:, None, :]
    out = pieces.sum(-1)
    out = out + s[:, :1] * (tt[..., 0] - knots[0]).clamp(max=0) + s[:, -1:] * (tt[..., 0] - knots[-1]).clamp(min=0)
    return out


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), scale=st.floats(0.1, 30.0), intervals=st.integers(1, 24))
def test_spline_matches_the_integral_of_its_slopes_and_keeps_them_in_bounds(seed, scale, intervals):
    g = torch.Generator().manual_seed(seed)
    act = MonotoneSpline(3, intervals=intervals, span=1.5).double()
    with torch.no_grad():
        act.raw_slopes.copy_(scale * torch.randn(act.raw_slopes.shape, generator=g, dtype=torch.float64))
    t = torch.linspace(-4, 4, 4001, dtype=torch.float64).repeat(3, 1)  # (C, N), beyond both ends
    with torch.no_grad():
        y = act(t[None])[0]
    torch.testing.assert_close(y, _reference(act, t), rtol=0, atol=1e-12)
    slope = y.diff(dim=1) / t.diff(dim=1)
    assert float(slope.min()) >= -1e-9 and float(slope.max()) <= act.slope_bound + 1e-9


def test_spline_starts_close_to_leaky_relu_and_learns():
    act = MonotoneSpline(2, intervals=16, span=2.0)
    t = torch.linspace(-3, 3, 601).view(1, 1, -1).expand(1, 2, -1)
    assert float((act(t) - torch.nn.functional.leaky_relu(t, 0.01)).abs().max()) < 0.05
    act(t).square().sum().backward()
    assert act.raw_slopes.grad is not None and float(act.raw_slopes.grad.abs().sum()) > 0


def test_spline_block_obeys_its_averagedness_with_any_slopes():
    torch.manual_seed(4)
    blk = GradientFlowBlock(4, 6, activation="spline:8", margin=0.9, max_substeps=1, time=5.0)
    with torch.no_grad():
        blk.act.raw_slopes.normal_(0, 6)  # slopes spread over (0, 1), many near both ends
        blk.bias.normal_()
    blk = blk.double().eval()
    alpha = blk.certified_schedule().step_factor / 2
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 4, 9, 9, generator=g, dtype=torch.float64)
    y = x + torch.randn(16, 4, 9, 9, generator=g, dtype=torch.float64) * torch.logspace(-3, 0, 16, dtype=torch.float64).view(-1, 1, 1, 1)
    with torch.no_grad():
        d, dT = (x - y).flatten(1), (blk(x) - blk(y)).flatten(1)
    res = (dT**2).sum(1) - (d**2).sum(1) + (1 - alpha) / alpha * ((d - dT) ** 2).sum(1)
    assert float((res / (d**2).sum(1)).max()) <= 1e-12


def test_spline_model_round_trips_with_its_certificate(tmp_path):
    torch.manual_seed(0)
    model = AveragedDenoiser(GradientFlowNet(1, width=6, depth=2, activation="spline:4", noise_knots=[0.0, 0.1]))
    with torch.no_grad():
        for blk in model.net.blocks:
            blk.act.raw_slopes.normal_()
    model.eval()
    path = export_weights(model, tmp_path / "spline.pt")
    loaded = load_weights(path)
    x = torch.rand(2, 1, 12, 12)
    torch.testing.assert_close(loaded(x, 0.05), model(x, 0.05), rtol=0, atol=0)
    assert loaded.certified_alpha() == model.certified_alpha() < 1


@pytest.mark.parametrize("bad", ["spline:0", "spline:x", "spline:-2"])
def test_spline_spec_errors(bad):
    with pytest.raises(ValueError, match="spline:K"):
        build_activation(bad, 4)
