"""Activations for gradient-flow blocks: monotone, with a known slope bound ``L``.

A block ``x - h A^T sigma(A x + b)`` follows the gradient of the convex potential
``sum phi(A x + b)`` with ``phi' = sigma``.  That needs ``sigma`` non-decreasing (so
``phi`` is convex) with slope at most ``L`` (so the gradient is ``L ||A||^2``-Lipschitz).
Each entry of the registry states its ``L``; a block refuses an activation without one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

__all__ = ["Activation", "ACTIVATIONS", "get_activation"]


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


def get_activation(name: str | Activation) -> Activation:
    """Look up an activation by name (or pass an :class:`Activation` through).

    Examples
    --------
    >>> get_activation("leaky_relu").slope_bound
    1.0
    >>> get_activation("gelu")
    Traceback (most recent call last):
    ...
    ValueError: unknown activation 'gelu'; choose one of elu, leaky_relu, relu, softplus, tanh (monotone, with a slope bound)
    """
    if isinstance(name, Activation):
        if not (name.slope_bound > 0):
            raise ValueError(f"activation {name.name!r} needs a positive slope bound")
        return name
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(sorted(ACTIVATIONS))} (monotone, with a slope bound)")
    return ACTIVATIONS[name]
