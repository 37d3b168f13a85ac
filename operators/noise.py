"""Noise models: deepinv's, with their levels checked and their randomness made reproducible.

They are :class:`deepinv.physics.NoiseModel` objects, so they plug into any operator
(``Blur(k, noise_model=Gaussian(0.01))``) and into deepinv's own physics.
"""

from __future__ import annotations

import math

import torch
from deepinv.physics import GaussianNoise, PoissonNoise

from ._checks import check_finite

__all__ = ["Gaussian", "Poisson"]


def _check_level(value, name: str, *, allow_zero: bool) -> float:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} must be a single number; got a tensor of shape {tuple(value.shape)}")
        value = value.item()
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number; got {type(value).__name__}") from None
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}; got {value!r}")
    return v


class Gaussian(GaussianNoise):
    r"""Additive white Gaussian noise :math:`y = z + \sigma \epsilon`, images in [0, 1].

    Parameters
    ----------
    sigma : float
        Standard deviation on the [0, 1] scale (``25 / 255`` for "noise 25"); must be >= 0.
    rng : torch.Generator, optional
        Generator for reproducible draws; ``forward(x, seed=s)`` reseeds it.

    Examples
    --------
    >>> import torch
    >>> noise = Gaussian(0.1, rng=torch.Generator().manual_seed(0))
    >>> x = torch.zeros(1, 1, 4, 4)
    >>> torch.equal(noise(x, seed=3), noise(x, seed=3))
    True
    >>> Gaussian(-1.0)
    Traceback (most recent call last):
    ...
    ValueError: sigma must be a finite number >= 0; got -1.0
    """

    def __init__(self, sigma: float = 0.1, rng: torch.Generator | None = None):
        super().__init__(sigma=_check_level(sigma, "sigma", allow_zero=True), rng=rng)

    def forward(self, x: torch.Tensor, sigma=None, seed: int | None = None, **kwargs) -> torch.Tensor:
        if sigma is not None:
            _check_level(sigma, "sigma", allow_zero=True)
        return super().forward(x, sigma=sigma, seed=seed, **kwargs)


class Poisson(PoissonNoise):
    r"""Poisson (photon) noise at a given peak: :math:`y = \mathcal{P}(\text{peak}\, z) / \text{peak}`.

    A larger ``peak`` (photons at intensity 1) means less noise.  Inputs must be
    non-negative and finite.

    Parameters
    ----------
    peak : float
        Expected photon count at intensity 1; must be > 0.
    rng : torch.Generator, optional
        Generator for reproducible draws.

    Examples
    --------
    >>> import torch
    >>> noise = Poisson(100.0, rng=torch.Generator().manual_seed(0))
    >>> y = noise(torch.full((1, 1, 64, 64), 0.5), seed=1)
    >>> abs(y.mean().item() - 0.5) < 0.01
    True
    """

    def __init__(self, peak: float = 100.0, rng: torch.Generator | None = None):
        self.peak = _check_level(peak, "peak", allow_zero=False)
        super().__init__(gain=1.0 / self.peak, normalize=True, clip_positive=False, rng=rng)

    def forward(self, x: torch.Tensor, seed: int | None = None, **kwargs) -> torch.Tensor:
        check_finite(x, "the clean signal given to Poisson noise")
        if bool((x < 0).any()):
            raise ValueError(f"Poisson noise needs a non-negative signal; got a minimum of {float(x.min()):.3g}")
        return super().forward(x, seed=seed, **kwargs)
