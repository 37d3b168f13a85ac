r"""Averagedness algebra: composition and relaxation rules, in float64.

* :math:`T` is :math:`\alpha`-averaged (:math:`0 < \alpha < 1`) when
  :math:`T = (1 - \alpha) I + \alpha R` with :math:`R` non-expansive; :math:`\alpha = 1`
  means non-expansive only.
* Composition (Combettes and Yamada, 2015): :math:`\alpha_1, \alpha_2` give
  :math:`\alpha = (\alpha_1 + \alpha_2 - 2\alpha_1\alpha_2) / (1 - \alpha_1\alpha_2)`.
  It is non-decreasing in each argument, so upper bounds in give an upper bound out.
* Relaxation: :math:`(1 - \theta) I + \theta T` with :math:`T` :math:`\alpha`-averaged is
  :math:`\theta\alpha`-averaged.
* Lifting by an isometry :math:`P` and projecting by :math:`P^\top` keeps :math:`\alpha`.
"""

from __future__ import annotations

from typing import Iterable

__all__ = ["compose_alpha", "compose_all", "relax_alpha", "euler_step_alpha"]


def compose_alpha(a1: float, a2: float) -> float:
    """Averagedness constant of ``T2 o T1`` (symmetric in its arguments).

    Examples
    --------
    >>> compose_alpha(0.5, 0.5)
    0.6666666666666666
    >>> compose_alpha(0.3, 1.0)
    1.0
    """
    for a in (a1, a2):
        if not (0 < a <= 1):
            raise ValueError(f"averagedness constants lie in (0, 1]; got {a!r}")
    if a1 == 1.0 or a2 == 1.0:
        return 1.0
    return min(1.0, (a1 + a2 - 2 * a1 * a2) / (1 - a1 * a2))


def compose_all(alphas: Iterable[float]) -> float:
    """Averagedness of a composition of many operators.

    Examples
    --------
    >>> round(compose_all([0.5, 0.5, 0.5]), 6)
    0.75
    """
    out = None
    for a in alphas:
        out = a if out is None else compose_alpha(out, a)
    if out is None:
        raise ValueError("compose_all needs at least one constant")
    return out


def relax_alpha(alpha: float, theta: float) -> float:
    """Averagedness of ``(1 - theta) I + theta T`` for ``T`` alpha-averaged.

    Examples
    --------
    >>> relax_alpha(1.0, 0.5)
    0.5
    """
    if not (0 < theta <= 1):
        raise ValueError(f"theta must lie in (0, 1]; got {theta!r}")
    return theta * alpha


def euler_step_alpha(step_factor: float) -> float:
    """Averagedness of ``x - h F(x)`` with ``F`` (1/beta)-cocoercive, given ``h beta``.

    Examples
    --------
    >>> euler_step_alpha(1.9)
    0.95
    """
    if not (0 <= step_factor <= 2):
        raise ValueError(f"h * beta = {step_factor!r} exceeds 2: the step is not non-expansive")
    return max(step_factor / 2, 1e-300)
