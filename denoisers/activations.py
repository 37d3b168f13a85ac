"""Activations for gradient-flow blocks: monotone, with a known slope bound ``L``.

A block ``x - h A^T sigma(A x + b)`` follows the gradient of the convex potential
``sum phi(A x + b)`` with ``phi' = sigma``.  That needs ``sigma`` non-decreasing (so
``phi`` is convex) with slope at most ``L`` (so the gradient is ``L ||A||^2``-Lipschitz).
Each entry of the registry states its ``L``; a block refuses an activation without one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Activation", "ACTIVATIONS", "get_activation", "MonotoneSpline", "SPLINE", "build_activation"]

#: Name of the learnable activation (one :class:`MonotoneSpline` per block).
SPLINE = "spline"


@dataclass(frozen=True)
class Activation:
    """A monotone activation and its slope bound.

    Attributes
    ----------
    name : str
        Registry key.
    fn : callable
        Elementwise function on tensors.
    slope_bound : float
        ``L`` with ``0 <= sigma'(t) <= L`` for all ``t`` (where it exists).
    """

    name: str
    fn: Callable[[torch.Tensor], torch.Tensor]
    slope_bound: float

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        return self.fn(t)


def _leaky(t: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(t, 0.01)


#: Built-in activations.  Slopes: ReLU in {0, 1}; LeakyReLU(0.01) in [0.01, 1];
#: softplus' = logistic in (0, 1); tanh' = 1 - tanh^2 in (0, 1]; ELU' = e^t in (0, 1] for t < 0.
ACTIVATIONS: dict[str, Activation] = {
    a.name: a
    for a in (
        Activation("relu", F.relu, 1.0),
        Activation("leaky_relu", _leaky, 1.0),
        Activation("softplus", F.softplus, 1.0),
        Activation("tanh", torch.tanh, 1.0),
        Activation("elu", F.elu, 1.0),
    )
}


class MonotoneSpline(nn.Module):
    r"""Learnable monotone linear spline, one per channel, with slopes in :math:`[0, L]` by construction.

    On the uniform knots :math:`t_0 < \dots < t_K` of ``[-span, span]`` the function is
    piecewise linear with slope :math:`s_{c,j} = L\,\mathrm{sigmoid}(p_{c,j})` on interval
    ``j`` of channel ``c``, continued linearly with the end slopes beyond the knots, and
    :math:`\sigma_c(t_0) = 0`.  Every slope lies in :math:`[0, L]` whatever the parameters, so
    the block's certificate (which uses ``L`` only) holds through training: the spline is the
    derivative of a convex, :math:`L`-smooth potential (CRR-NN's parametrisation of a learned
    ridge profile, here inside a gradient-flow block).

    It starts as a close approximation of LeakyReLU(0.01) (slopes 0.01 left of 0, 0.99 right).

    Parameters
    ----------
    channels : int
        One spline per channel (dimension 1 of the input).
    intervals : int
        Number of linear pieces between the end knots.
    span : float
        The knots cover ``[-span, span]``.
    slope_bound : float
        ``L``.

    Examples
    --------
    >>> import torch
    >>> act = MonotoneSpline(2, intervals=4, span=2.0)
    >>> t = torch.linspace(-3, 3, 7).view(1, 1, 7, 1).expand(1, 2, 7, 1)
    >>> y = act(t)
    >>> bool((y.diff(dim=2) >= 0).all()), act.slope_bound
    (True, 1.0)
    """

    def __init__(self, channels: int, intervals: int = 16, span: float = 2.0, slope_bound: float = 1.0):
        super().__init__()
        if channels < 1 or intervals < 1 or not (span > 0 and math.isfinite(span)) or not (slope_bound > 0):
            raise ValueError(f"need channels >= 1, intervals >= 1, span > 0 and slope_bound > 0; "
                             f"got {channels}, {intervals}, {span!r}, {slope_bound!r}")
        self.name, self.slope_bound = SPLINE, float(slope_bound)
        self.intervals, self.span = int(intervals), float(span)
        centres = -span + (torch.arange(intervals, dtype=torch.float64) + 0.5) * (2 * span / intervals)
        start = torch.where(centres > 0, 0.99, 0.01).to(torch.float32)
        # sigmoid(p) = start / L: the LeakyReLU-like start, inside (0, L).
        raw = torch.log(start / (self.slope_bound - start)) if self.slope_bound > 0.99 else torch.zeros(intervals)
        self.raw_slopes = nn.Parameter(raw.repeat(channels, 1))

    def extra_repr(self) -> str:
        return f"channels={self.raw_slopes.shape[0]}, intervals={self.intervals}, span={self.span:g}, L={self.slope_bound:g}"

    def slopes(self) -> torch.Tensor:
        """Slopes (channels, intervals), each in [0, L]."""
        return self.slope_bound * torch.sigmoid(self.raw_slopes)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        C, K = self.raw_slopes.shape
        if t.ndim < 2 or t.shape[1] != C:
            raise ValueError(f"this spline has {C} channels; got input of shape {tuple(t.shape)}")
        delta = 2 * self.span / K
        s = self.slopes().to(t.dtype)
        # Value at each interval's left knot: the integral of the slopes before it.
        left = torch.cumsum(s * delta, dim=1) - s * delta
        u = (t + self.span) / delta
        j = u.detach().floor().clamp_(0, K - 1).long()
        shape = [1, C] + [1] * (t.ndim - 2)
        flat = j + (torch.arange(C, device=t.device) * K).view(shape)
        # Linear within interval j (and beyond the ends with the end slopes).
        return left.reshape(-1)[flat] + s.reshape(-1)[flat] * (u - j.to(t.dtype)) * delta


def build_activation(name: str | Activation, channels: int) -> Activation | MonotoneSpline:
    """The activation of one block: a shared built-in, or a fresh learnable spline for ``"spline"``
    (``"spline:K"`` for ``K`` intervals).

    Examples
    --------
    >>> type(build_activation("spline:8", 4)).__name__, build_activation("relu", 4).name
    ('MonotoneSpline', 'relu')
    """
    if isinstance(name, str) and (name == SPLINE or name.startswith(SPLINE + ":")):
        count = name.partition(":")[2]
        try:
            return MonotoneSpline(channels, intervals=int(count) if count else 16)
        except ValueError:
            raise ValueError(f"activation {name!r}: write 'spline' or 'spline:K' with K a positive number of intervals") from None
    return get_activation(name)


def get_activation(name: str | Activation) -> Activation:
    """Look up an activation by name (or pass an :class:`Activation` through).

    Examples
    --------
    >>> get_activation("leaky_relu").slope_bound
    1.0
    >>> get_activation("gelu")
    Traceback (most recent call last):
    ...
    ValueError: unknown activation 'gelu'; choose one of elu, leaky_relu, relu, softplus, tanh (monotone, with a slope bound), or 'spline' (learnable, slopes in [0, 1])
    """
    if isinstance(name, Activation):
        if not (name.slope_bound > 0):
            raise ValueError(f"activation {name.name!r} needs a positive slope bound")
        return name
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(sorted(ACTIVATIONS))} (monotone, with a slope bound), "
                         f"or 'spline' (learnable, slopes in [0, 1])")
    return ACTIVATIONS[name]
