"""The adjoint test: ``<A x, y> = <x, A^T y>`` for independent random ``x`` and ``y``, in float64."""

from __future__ import annotations

from typing import Callable, Sequence

import torch

__all__ = ["AdjointMismatchError", "adjoint_error", "check_adjoint"]


class AdjointMismatchError(ValueError):
    """Raised when an operator's adjoint disagrees with its forward map.

    Attributes
    ----------
    relative_error : float
        The measured estimate of ``||A - B^T||_F / ||A||_F`` (see :func:`adjoint_error`).
    tol : float
        The tolerance it exceeded.
    """

    def __init__(self, relative_error: float, tol: float, detail: str = ""):
        self.relative_error = float(relative_error)
        self.tol = float(tol)
        msg = (
            f"the adjoint does not match the forward operator: relative error "
            f"{self.relative_error:.3e} exceeds the tolerance {self.tol:.1e}"
        )
        super().__init__(msg + (f" ({detail})" if detail else ""))


def adjoint_error(
    A: Callable[[torch.Tensor], torch.Tensor],
    A_adjoint: Callable[[torch.Tensor], torch.Tensor],
    in_shape: Sequence[int],
    *,
    dtype: torch.dtype = torch.float64,
    device=None,
    trials: int = 4,
    seed: int = 0,
) -> float:
    r"""Relative adjoint error, a Monte-Carlo estimate of :math:`\|A - B^\top\|_F / \|A\|_F`.

    With independent standard Gaussian ``x`` and ``y``,
    :math:`\mathbb{E}\,|y^\top M x|^2 = \|M\|_F^2`, so

    .. math:: \frac{\sqrt{\sum_t (\langle A x_t, y_t\rangle - \langle x_t, B y_t\rangle)^2}}
                   {\sqrt{\sum_t \langle A x_t, y_t\rangle^2}}

    over ``trials`` pairs estimates the relative error of the claimed adjoint ``B``.  It is
    scale-free: about 1 for an unrelated ``B``, about machine precision for an exact one.

    Parameters
    ----------
    A, A_adjoint : callable
        Forward map and claimed adjoint.
    in_shape : sequence of int
        Shape of an input tensor, batch included.
    dtype : torch.dtype
        Precision of the test (float64 unless the operator cannot run in it).
    device : torch.device, optional
        Where to draw the vectors.
    trials : int
        Number of independent pairs.
    seed : int
        Seed of the private generator (global RNG state is left alone).

    Examples
    --------
    >>> import torch
    >>> M = torch.randn(5, 3, dtype=torch.float64)
    >>> adjoint_error(lambda x: x @ M.T, lambda y: y @ M, (2, 3)) < 1e-14
    True
    """
    gen = torch.Generator(device="cpu").manual_seed(seed)
    num = den = 0.0
    for _ in range(trials):
        x = torch.randn(tuple(in_shape), generator=gen, dtype=dtype).to(device)
        Ax = A(x)
        y = torch.randn(tuple(Ax.shape), generator=gen, dtype=dtype).to(Ax.device)
        ATy = A_adjoint(y)
        if ATy.shape != x.shape:
            raise AdjointMismatchError(
                float("inf"), 0.0, f"A_adjoint returned shape {tuple(ATy.shape)} for an input of shape {tuple(x.shape)}"
            )
        lhs = torch.sum(Ax * y).item()
        rhs = torch.sum(x * ATy).item()
        num += (lhs - rhs) ** 2
        den += lhs**2
    if den == 0.0:
        return 0.0 if num == 0.0 else float("inf")  # A = 0: only B = 0 matches
    return (num / den) ** 0.5


def check_adjoint(
    A: Callable[[torch.Tensor], torch.Tensor],
    A_adjoint: Callable[[torch.Tensor], torch.Tensor],
    in_shape: Sequence[int],
    *,
    tol: float = 1e-6,
    dtype: torch.dtype = torch.float64,
    device=None,
) -> float:
    """Run :func:`adjoint_error` and raise :class:`AdjointMismatchError` above ``tol``.

    Returns
    -------
    float
        The measured relative error.

    Examples
    --------
    >>> import torch
    >>> check_adjoint(lambda x: 2 * x, lambda y: 3 * y, (1, 4))
    Traceback (most recent call last):
    ...
    operators.adjoint.AdjointMismatchError: the adjoint does not match the forward operator: ...
    """
    err = adjoint_error(A, A_adjoint, in_shape, dtype=dtype, device=device)
    if not err <= tol:
        raise AdjointMismatchError(err, tol, f"tested in {dtype} on inputs of shape {tuple(in_shape)}")
    return err
