"""Noise models: reproducible for a seed, correct statistics, invalid levels rejected."""

from __future__ import annotations

import pytest
import torch

from operators.noise import Gaussian, Poisson


@pytest.mark.parametrize("make", [lambda g: Gaussian(0.05, rng=g), lambda g: Poisson(50.0, rng=g)], ids=["gaussian", "poisson"])
def test_reproducible_for_a_seed(make):
    x = torch.full((2, 3, 32, 32), 0.4)
    a = make(torch.Generator().manual_seed(7))(x)
    b = make(torch.Generator().manual_seed(7))(x)
    c = make(torch.Generator().manual_seed(8))(x)
    assert torch.equal(a, b) and not torch.equal(a, c)
    noise = make(torch.Generator().manual_seed(0))
    assert torch.equal(noise(x, seed=3), noise(x, seed=3))
    assert not torch.equal(noise(x, seed=3), noise(x, seed=4))


def test_gaussian_statistics():
    x = torch.zeros(1, 1, 256, 256, dtype=torch.float64)
    y = Gaussian(0.1, rng=torch.Generator().manual_seed(0))(x)
    assert y.dtype == torch.float64
    assert abs(float(y.std()) - 0.1) < 0.002 and abs(float(y.mean())) < 0.002


def test_poisson_statistics():
    x = torch.full((1, 1, 256, 256), 0.5, dtype=torch.float64)
    y = Poisson(40.0, rng=torch.Generator().manual_seed(0))(x)
    # y = P(peak x) / peak: mean x, variance x / peak
    assert abs(float(y.mean()) - 0.5) < 0.005
    assert abs(float(y.var()) - 0.5 / 40) < 0.001
    assert torch.allclose(y * 40, torch.round(y * 40))


def test_input_not_modified():
    x = torch.rand(1, 1, 8, 8)
    x0 = x.clone()
    Gaussian(0.1)(x)
    Poisson(10.0)(x)
    assert torch.equal(x, x0)


@pytest.mark.parametrize("sigma", [-0.1, float("nan"), float("inf")])
def test_gaussian_rejects_bad_sigma(sigma):
    with pytest.raises(ValueError, match="sigma must be a finite number >= 0"):
        Gaussian(sigma)
    with pytest.raises(ValueError, match="sigma"):
        Gaussian(0.1)(torch.zeros(1, 1, 2, 2), sigma=sigma)


def test_gaussian_zero_is_allowed_and_exact():
    x = torch.rand(1, 1, 4, 4)
    assert torch.equal(Gaussian(0.0)(x), x)


@pytest.mark.parametrize("peak", [0.0, -5.0, float("nan"), float("inf")])
def test_poisson_rejects_bad_peak(peak):
    with pytest.raises(ValueError, match="peak must be a finite number > 0"):
        Poisson(peak)


def test_poisson_rejects_negative_or_nan_signal():
    with pytest.raises(ValueError, match="non-negative"):
        Poisson(10.0)(torch.tensor([[[[-0.1, 0.5]]]]))
    with pytest.raises(ValueError, match="NaN"):
        Poisson(10.0)(torch.tensor([[[[float("nan"), 0.5]]]]))


def test_type_errors():
    with pytest.raises(TypeError, match="number"):
        Gaussian("a lot")
    with pytest.raises(ValueError, match="single number"):
        Gaussian(torch.ones(2))
