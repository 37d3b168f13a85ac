"""Denoisers that are averaged operators by construction, with certified bounds.

* :class:`GradientFlowNet`: zero-channel lift, blocks ``x - h A^T sigma(Ax + b)`` integrated by
  explicit Runge-Kutta steps whose size is set by the certified ``||A||``, projection back.
* :class:`NonexpansiveDenoiser` (1-Lipschitz) and :class:`AveragedDenoiser`
  (``(1 - theta) I + theta N``, alpha from certified bounds), both deepinv ``Denoiser`` s.
* :func:`load_pretrained`, :func:`available_pretrained`: the shipped certified models.
* :func:`certify`: certified bounds (float64 upper bounds) beside empirical lower bounds.
* :func:`denoisers.training.train`: patch training with exact resume.

Imports ``operators`` only; never ``pnp_stable``.
"""

from .activations import ACTIVATIONS, get_activation
from .averaged import compose_alpha, compose_all, relax_alpha
from .blocks import GradientFlowBlock
from .certificate import Certificate, CertificateViolation, certify
from .integrators import INTEGRATORS, get_integrator
from .channelwise import ChannelwiseDenoiser
from .models import AveragedDenoiser, GradientFlowNet, NonexpansiveDenoiser
from .pretrained import available_pretrained, default_pretrained, default_pretrained_name, load_pretrained, strength_ceiling
from .registry import build_model
from .spectral import certified_conv_norm, conv_norm_on_grid

__all__ = [
    "ACTIVATIONS",
    "AveragedDenoiser",
    "ChannelwiseDenoiser",
    "Certificate",
    "CertificateViolation",
    "GradientFlowBlock",
    "GradientFlowNet",
    "INTEGRATORS",
    "NonexpansiveDenoiser",
    "build_model",
    "certified_conv_norm",
    "certify",
    "compose_alpha",
    "compose_all",
    "conv_norm_on_grid",
    "get_activation",
    "get_integrator",
    "relax_alpha",
    "available_pretrained",
    "default_pretrained",
    "default_pretrained_name",
    "load_pretrained",
    "strength_ceiling",
]
