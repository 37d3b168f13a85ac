"""Operator norms: certified values when an operator can give one, labelled estimates otherwise."""

from __future__ import annotations

import math
from typing import Sequence

import torch
from deepinv.physics import LinearPhysics

from .base import LinearOperator, OperatorNorm

__all__ = ["operator_norm", "estimate_norm"]


def _check_shape(shape) -> tuple[int, ...]:
    try:
        out = tuple(int(s) for s in shape)
    except TypeError:
        raise TypeError(f"in_shape must be a sequence of ints, batch first; got {shape!r}") from None
    if len(out) < 2 or min(out) < 1:
        raise ValueError(f"in_shape must list positive sizes with the batch first, e.g. (1, 1, 64, 64); got {out}")
    return out


def estimate_norm(
    op: LinearPhysics,
    in_shape: Sequence[int],
    *,
    tol: float = 1e-7,
    max_iter: int = 1000,
    seed: int = 0,
) -> OperatorNorm:
    """Power iteration on ``A^T A`` in float64: an estimate (a lower bound), never a certificate.

    Parameters
    ----------
    op : deepinv.physics.LinearPhysics
        Any linear operator with ``A`` and ``A_adjoint``.
    in_shape : sequence of int
        Input shape, batch first, usually (B, C, H, W); the norm depends on the image size.
    tol : float
        Stop when the relative change of the estimate is below ``tol``.
    max_iter : int
        Iteration cap.
    seed : int
        Seed of the starting vector (private generator).

    Returns
    -------
    OperatorNorm
        ``kind="estimate"``.  Float64 is used unless the operator cannot run in it, in which
        case the method string says which dtype was used.

    Examples
    --------
    >>> from operators import Blur
    >>> est = estimate_norm(Blur("gaussian:1.0"), (1, 1, 16, 16))
    >>> est.kind, round(est.value, 4)
    ('estimate', 1.0)
    """
    shape = _check_shape(in_shape)
    gen = torch.Generator().manual_seed(seed)
    start = torch.randn(shape, generator=gen, dtype=torch.float64)
    try:
        op.A(start)
        dtype = torch.float64
    except RuntimeError:
        # Operators that hold float32 tensors and cannot mix dtypes.
        dtype = torch.float32
    x = start.to(dtype)
    x = x / x.norm()
    sq = 0.0
    iters = 0
    for iters in range(1, max_iter + 1):
        Ax = op.A(x)
        new_sq = float(torch.sum(Ax * Ax))  # Rayleigh quotient <x, A^T A x> with ||x|| = 1
        x = op.A_adjoint(Ax)
        nrm = float(x.norm())
        if nrm == 0.0:
            return OperatorNorm(0.0, "estimate", "power iteration hit the null space: A x = 0", shape)
        x = x / nrm
        if abs(new_sq - sq) <= tol * new_sq:
            sq = new_sq
            break
        sq = new_sq
    method = (
        f"power iteration on A^T A in {str(dtype).replace('torch.', '')}, seed {seed}, "
        f"{iters} iterations, relative change <= {tol:g} (a lower bound of the norm)"
    )
    return OperatorNorm(math.sqrt(sq), "estimate", method, shape)


def operator_norm(
    op: LinearPhysics,
    in_shape: Sequence[int] | None = None,
    *,
    certified: bool = False,
    tol: float = 1e-7,
    max_iter: int = 1000,
    seed: int = 0,
) -> OperatorNorm:
    """The spectral norm ``||A||_2`` of ``op`` and how it was obtained.

    A certified value (``exact`` or ``upper_bound``) is returned when the operator provides
    one; otherwise a power-iteration ``estimate``, unless ``certified=True``.

    Parameters
    ----------
    op : deepinv.physics.LinearPhysics
        pnp-stable operators carry certificates; other deepinv operators get estimates.
    in_shape : sequence of int, optional
        Input shape (B, C, H, W).  Some certificates hold for every size and need none.
    certified : bool
        Raise ValueError instead of falling back to an estimate.
    tol, max_iter, seed
        Power-iteration settings (see :func:`estimate_norm`).

    Examples
    --------
    >>> from operators import Blur
    >>> operator_norm(Blur("levin:1")).kind
    'exact'
    """
    if in_shape is not None:
        in_shape = _check_shape(in_shape)
    if isinstance(op, LinearOperator):
        cert = op.norm_certificate(in_shape)
        if cert is not None:
            return cert
    if certified:
        reason = "it needs in_shape" if isinstance(op, LinearOperator) and in_shape is None else "it has no certificate"
        raise ValueError(
            f"no certified norm for {type(op).__name__}: {reason}; a power-iteration estimate "
            "is a lower bound and cannot certify convergence"
        )
    if in_shape is None:
        raise ValueError(f"in_shape is required to estimate the norm of {type(op).__name__}")
    return estimate_norm(op, in_shape, tol=tol, max_iter=max_iter, seed=seed)
