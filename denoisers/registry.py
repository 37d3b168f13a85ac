"""Architectures by name: one registry entry per model family, for training and weights files.

An entry says how to build a model from its configuration, which class its instances have,
which configuration rebuilds a given instance, and whether it carries a certificate (the
certified facts themselves come from the model, through :class:`denoisers.certificate.CertifiedDenoiser`).
Adding an architecture is one :func:`register` call; training (``pnp-stable train --model``),
``export_weights`` / ``load_weights`` and ``pnp-stable certify`` then know it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .baselines import DnCNN, SpectralResNet
from .lben import LBENDenoiser, LBENNet
from .models import AveragedDenoiser, GradientFlowNet, NonexpansiveDenoiser

__all__ = ["Architecture", "MODELS", "architecture_of", "build_model", "register"]


@dataclass(frozen=True)
class Architecture:
    """One model family.

    Attributes
    ----------
    name : str
        Registry name (stored in weights files, ``--model`` on the command line).
    build : callable
        ``build(channels, **config) -> model``.
    model_type : type
        The class of the models ``build`` makes (matched exactly when exporting).
    config : callable
        ``config(model) -> dict``: the keyword arguments that rebuild ``model`` (with
        ``channels``).
    certified : bool
        Whether its models carry a certificate (a weights file of a baseline may not claim one).
    summary : str
        One line for help texts.
    """

    name: str
    build: Callable[..., torch.nn.Module]
    model_type: type
    config: Callable[[torch.nn.Module], dict]
    certified: bool
    summary: str = ""


#: name -> Architecture
MODELS: dict[str, Architecture] = {}


def register(arch: Architecture) -> Architecture:
    """Add an architecture (a name may be registered once).

    Examples
    --------
    >>> register(MODELS["dncnn"])
    Traceback (most recent call last):
    ...
    ValueError: an architecture named 'dncnn' is already registered
    """
    if arch.name in MODELS:
        raise ValueError(f"an architecture named {arch.name!r} is already registered")
    MODELS[arch.name] = arch
    return arch


def architecture_of(model: torch.nn.Module) -> Architecture:
    """The registry entry whose class is exactly ``type(model)``.

    Examples
    --------
    >>> architecture_of(build_model("lben", channels=1, hidden=2)).name
    'lben'
    >>> architecture_of(torch.nn.Identity())
    Traceback (most recent call last):
    ...
    TypeError: no registered architecture builds Identity models; registered: averaged, dncnn, lben, nonexpansive, spectral-resnet
    """
    for arch in MODELS.values():
        if type(model) is arch.model_type:
            return arch
    raise TypeError(f"no registered architecture builds {type(model).__name__} models; registered: {', '.join(sorted(MODELS))}")


def build_model(name: str, *, channels: int, **kwargs) -> torch.nn.Module:
    """Construct a model by registry name.

    Examples
    --------
    >>> type(build_model("averaged", channels=1, width=8, depth=2)).__name__
    'AveragedDenoiser'
    >>> build_model("unet", channels=1)
    Traceback (most recent call last):
    ...
    ValueError: unknown model 'unet'; choose one of averaged, dncnn, lben, nonexpansive, spectral-resnet
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(sorted(MODELS))}")
    return MODELS[name].build(channels, **kwargs)


def _averaged(channels: int, theta: float = 1.0, target_alpha: float | None = None, strength=None, **kw) -> AveragedDenoiser:
    return AveragedDenoiser(GradientFlowNet(channels, **kw), theta=theta, target_alpha=target_alpha, strength=strength)


def _averaged_config(model: AveragedDenoiser) -> dict:
    config = dict(model.net.config, theta=model.theta, target_alpha=model.target_alpha)
    if model.strength is not None:
        config["strength"] = [list(model.strength[0]), list(model.strength[1])]
    return config


register(Architecture("averaged", _averaged, AveragedDenoiser, _averaged_config, True,
                      "gradient-flow blocks, (1 - theta) I + theta N, averaged by construction"))
register(Architecture("nonexpansive", lambda channels, **kw: NonexpansiveDenoiser(GradientFlowNet(channels, **kw)),
                      NonexpansiveDenoiser, lambda m: dict(m.net.config), True, "gradient-flow blocks, 1-Lipschitz"))
register(Architecture("lben", lambda channels, theta=0.99, **kw: LBENDenoiser(LBENNet(channels, **kw), theta=theta),
                      LBENDenoiser, lambda m: dict(m.net.config, theta=m.theta), True,
                      "equilibrium network (LBEN), gamma-Lipschitz by construction"))
register(Architecture("dncnn", lambda channels, **kw: DnCNN(channels, **kw), DnCNN, lambda m: dict(m.config), False,
                      "unconstrained baseline"))
register(Architecture("spectral-resnet", lambda channels, **kw: SpectralResNet(channels, **kw), SpectralResNet,
                      lambda m: dict(m.config), False, "ordinary ResNet with ||A||, ||B|| <= 1 (baseline)"))
