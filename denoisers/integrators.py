r"""Explicit Runge-Kutta methods and their circle-contractivity radii.

For a vector field :math:`-F` with :math:`F` cocoercive (the gradient of a convex function
with :math:`\beta`-Lipschitz gradient), :math:`-F` satisfies the circle condition with
radius :math:`\rho = \beta / 2`, and a method with circle-contractivity radius :math:`r`
gives a non-expansive step for :math:`h \rho \le r`, i.e. :math:`h \beta \le 2 r`
(Dahlquist and Jeltsch; Sherry et al.).  Euler, Heun and classical RK4 have :math:`r = 1`;
the explicit midpoint rule has :math:`r = 0` and so guarantees nothing: blocks refuse it.

Only Euler steps carry an averagedness constant here, :math:`\alpha = h\beta/2`
(Baillon-Haddad); Heun and RK4 steps are certified non-expansive, and a network built from
them is made averaged by relaxation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

__all__ = ["Integrator", "INTEGRATORS", "get_integrator"]

Field = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Integrator:
    """An explicit Runge-Kutta method given by its Butcher tableau.

    Attributes
    ----------
    name : str
    radius : float
        Circle-contractivity radius ``r``.
    a : tuple of tuples
        Strictly lower-triangular stage coefficients.
    b : tuple
        Weights.
    averaged : bool
        Whether a step has a proven averagedness constant ``h beta / 2`` (Euler only).
    """

    name: str
    radius: float
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    averaged: bool = False

    @property
    def stages(self) -> int:
        """Vector-field evaluations per step."""
        return len(self.b)

    def step(self, field: Field, x: torch.Tensor, h: float | torch.Tensor) -> torch.Tensor:
        """One step ``x -> x + h sum_i b_i k_i`` of ``dx/dt = field(x)`` (``h`` may be a 0-d tensor).

        Examples
        --------
        >>> import torch
        >>> get_integrator("rk4").step(lambda x: -x, torch.tensor([1.0]), 0.1)
        tensor([0.9048])
        """
        if isinstance(h, torch.Tensor):  # a step that carries a gradient (training)
            def axpy(a, b, c):
                return a + c * b
        else:
            def axpy(a, b, c):
                return a.add(b, alpha=c)  # fused: no scaled temporary
        ks: list[torch.Tensor] = []
        for i in range(self.stages):
            xi = x
            for j, aij in enumerate(self.a[i]):
                if aij:
                    xi = axpy(xi, ks[j], h * aij)
            ks.append(field(xi))
        out = x
        for bi, ki in zip(self.b, ks):
            if bi:
                out = axpy(out, ki, h * bi)
        return out


INTEGRATORS: dict[str, Integrator] = {
    m.name: m
    for m in (
        Integrator("euler", 1.0, ((),), (1.0,), averaged=True),
        Integrator("heun", 1.0, ((), (1.0,)), (0.5, 0.5)),
        Integrator("rk4", 1.0, ((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)), (1 / 6, 1 / 3, 1 / 3, 1 / 6)),
        Integrator("midpoint", 0.0, ((), (0.5,)), (0.0, 1.0)),
    )
}


def get_integrator(name: str | Integrator) -> Integrator:
    """Look up an integrator; refuse those with no circle-contractivity (``r = 0``).

    Examples
    --------
    >>> get_integrator("heun").radius
    1.0
    >>> get_integrator("midpoint")
    Traceback (most recent call last):
    ...
    ValueError: integrator 'midpoint' has circle-contractivity radius 0: no step size makes it non-expansive; use euler, heun or rk4
    """
    m = name if isinstance(name, Integrator) else INTEGRATORS.get(name)
    if m is None:
        raise ValueError(f"unknown integrator {name!r}; choose one of {', '.join(k for k, v in INTEGRATORS.items() if v.radius > 0)}")
    if not m.radius > 0:
        ok = ", ".join(k for k, v in INTEGRATORS.items() if v.radius > 0)
        raise ValueError(f"integrator {m.name!r} has circle-contractivity radius 0: no step size makes it non-expansive; use {ok.replace(', rk4', ' or rk4')}")
    return m
