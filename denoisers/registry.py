"""Model names for training and weight files: one place that maps a name to a constructor."""

from __future__ import annotations

from typing import Callable

import torch

from .baselines import DnCNN, SpectralResNet
from .models import AveragedDenoiser, GradientFlowNet, NonexpansiveDenoiser

__all__ = ["MODELS", "build_model"]


def _averaged(channels: int, theta: float = 1.0, target_alpha: float | None = None, strength=None, **kw) -> AveragedDenoiser:
    return AveragedDenoiser(GradientFlowNet(channels, **kw), theta=theta, target_alpha=target_alpha, strength=strength)


def _nonexpansive(channels: int, **kw) -> NonexpansiveDenoiser:
    return NonexpansiveDenoiser(GradientFlowNet(channels, **kw))


#: name -> constructor(channels=..., **kwargs)
MODELS: dict[str, Callable[..., torch.nn.Module]] = {
    "averaged": _averaged,
    "nonexpansive": _nonexpansive,
    "dncnn": lambda channels, **kw: DnCNN(channels, **kw),  # unconstrained baseline
    "spectral-resnet": lambda channels, **kw: SpectralResNet(channels, **kw),  # ordinary ResNet, ||A||, ||B|| <= 1
}


def build_model(name: str, *, channels: int, **kwargs) -> torch.nn.Module:
    """Construct a model by registry name.

    Examples
    --------
    >>> type(build_model("averaged", channels=1, width=8, depth=2)).__name__
    'AveragedDenoiser'
    >>> build_model("unet", channels=1)
    Traceback (most recent call last):
    ...
    ValueError: unknown model 'unet'; choose one of averaged, dncnn, nonexpansive, spectral-resnet
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(sorted(MODELS))}")
    return MODELS[name](channels, **kwargs)
