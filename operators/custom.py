"""Bring your own forward model: ``as_operator`` wraps it and checks its adjoint at once."""

from __future__ import annotations

import warnings
from typing import Callable, Sequence

import numpy as np
import torch
from deepinv.physics import LinearPhysics

from ._checks import as_float_tensor, check_finite
from .adjoint import AdjointMismatchError, adjoint_error
from .base import ROUNDING_ALLOWANCE, LinearOperator, OperatorNorm
from .norms import estimate_norm

__all__ = ["as_operator", "CustomOperator", "NotLinearError"]

Fn = Callable[[torch.Tensor], torch.Tensor]


class NotLinearError(ValueError):
    """Raised when a user's forward map fails the linearity check."""


class CustomOperator(LinearOperator):
    """A user's linear map with a checked adjoint.  Build it with :func:`as_operator`.

    Parameters
    ----------
    A, A_adjoint : callable
        Forward map and adjoint on batched tensors.
    in_shape : tuple of int
        The input shape the checks ran on (batch included).
    certificate : OperatorNorm, optional
        A certified norm (exact for dense matrices, or declared by the user).
    source : torch.nn.Module, optional
        Wrapped deepinv physics, kept as a submodule so that ``.to()`` moves it.
    """

    def __init__(self, A: Fn, A_adjoint: Fn, in_shape: tuple[int, ...], *, certificate: OperatorNorm | None = None,
                 source: torch.nn.Module | None = None, noise_model=None, adjoint_error: float = float("nan")):
        super().__init__(noise_model=noise_model)
        self._A, self._AT = A, A_adjoint
        self.in_shape = tuple(in_shape)
        self.certificate = certificate
        self.source = source
        #: Relative adjoint error measured at construction.
        self.adjoint_error = adjoint_error

    def A(self, x: torch.Tensor, **kwargs) -> torch.Tensor:
        return self._A(x)

    def A_adjoint(self, y: torch.Tensor, **kwargs) -> torch.Tensor:
        return self._AT(y)

    def norm_certificate(self, in_shape=None) -> OperatorNorm | None:
        return self.certificate


def _autograd_adjoint(A: Fn, in_shape: tuple[int, ...]) -> Fn:
    """Adjoint of a linear ``A`` as its vector-Jacobian product at 0 (exact for linear maps)."""

    def A_adjoint(y: torch.Tensor) -> torch.Tensor:
        x0 = torch.zeros((y.shape[0],) + in_shape[1:], dtype=y.dtype, device=y.device, requires_grad=True)
        with torch.enable_grad():
            out = A(x0)
            (g,) = torch.autograd.grad(out, x0, grad_outputs=y, create_graph=y.requires_grad)
        return g

    return A_adjoint


def _dense(matrix, in_shape: tuple[int, ...] | None) -> tuple[Fn, Fn, OperatorNorm, tuple[int, ...]]:
    M = as_float_tensor(matrix, "matrix")
    if M.ndim != 2:
        raise ValueError(f"a dense operator must be a 2-D matrix (m, n); got shape {tuple(M.shape)}")
    check_finite(M, "matrix")
    m, n = M.shape
    if in_shape is None:
        in_shape = (1, n)
    if int(np.prod(in_shape[1:])) != n:
        raise ValueError(f"in_shape {in_shape} holds {int(np.prod(in_shape[1:]))} values per sample; the matrix has n = {n} columns")
    tail = tuple(in_shape[1:])

    def A(x):
        return x.reshape(x.shape[0], -1) @ M.to(device=x.device, dtype=x.dtype).T

    def A_adjoint(y):
        return (y.reshape(y.shape[0], m) @ M.to(device=y.device, dtype=y.dtype)).reshape((y.shape[0],) + tail)

    sigma_max = float(torch.linalg.matrix_norm(M, ord=2))
    cert = OperatorNorm(sigma_max * (1 + ROUNDING_ALLOWANCE), "exact", "largest singular value (float64 SVD)", None)
    return A, A_adjoint, cert, tuple(in_shape)


def _run_checks(A: Fn, AT: Fn, in_shape, tol: float, linear_check: bool) -> float:
    """Adjoint (and optionally linearity) checks in float64, falling back to float32."""
    for dtype in (torch.float64, torch.float32):
        try:
            if linear_check:
                _check_linear(A, in_shape, dtype, tol)
            err = adjoint_error(A, AT, in_shape, dtype=dtype)
        except RuntimeError:
            if dtype == torch.float32:
                raise
            continue  # the user's map cannot take float64 inputs
        if dtype == torch.float32:
            warnings.warn("the operator could not run in float64; its adjoint was checked in float32", UserWarning, stacklevel=3)
            tol = max(tol, 1e-4)
        if not err <= tol:
            raise AdjointMismatchError(err, tol, f"tested in {dtype} on inputs of shape {tuple(in_shape)}")
        return err
    raise AssertionError("unreachable")


def _check_linear(A: Fn, in_shape, dtype, tol: float) -> None:
    gen = torch.Generator().manual_seed(1)
    x1 = torch.randn(tuple(in_shape), generator=gen, dtype=dtype)
    x2 = torch.randn(tuple(in_shape), generator=gen, dtype=dtype)
    lhs = A(0.7 * x1 - 1.3 * x2)
    rhs = 0.7 * A(x1) - 1.3 * A(x2)
    scale = max(float(lhs.norm()), float(rhs.norm()), torch.finfo(dtype).tiny)
    err = float((lhs - rhs).norm()) / scale
    if not err <= max(tol, 1e3 * torch.finfo(dtype).eps):
        raise NotLinearError(f"the forward map is not linear: ||A(ax + by) - aAx - bAy|| / ||A(ax + by)|| = {err:.3e}")


def as_operator(
    obj,
    in_shape: Sequence[int] | None = None,
    *,
    tol: float = 1e-6,
    norm_bound: float | None = None,
) -> LinearOperator:
    """Wrap a user's forward model as a checked pnp-stable operator.

    Parameters
    ----------
    obj : LinearPhysics, matrix, callable or (callable, callable)
        * a :class:`deepinv.physics.LinearPhysics` (its ``A``, ``A_adjoint`` and noise model);
        * a dense matrix (m, n) acting on the flattened input (outputs have shape (B, m));
        * a pair ``(A, A_adjoint)`` of callables on batched tensors;
        * a callable ``A`` alone (or ``(A, None)``): the adjoint is derived by autograd.
        A pnp-stable operator is returned unchanged.
    in_shape : sequence of int, optional
        Shape of an input tensor, batch included, e.g. ``(1, 1, 64, 64)``.  Required for
        callables; taken from ``img_size`` for deepinv physics that set it.
    tol : float
        Largest accepted relative adjoint error (see :func:`operators.adjoint_error`).
    norm_bound : float, optional
        A norm bound you can prove.  It is checked against a power-iteration estimate
        (which must not exceed it) and reported as an ``upper_bound`` "declared by the user".

    Returns
    -------
    LinearOperator

    Raises
    ------
    AdjointMismatchError
        When the adjoint test fails, with the measured error.
    NotLinearError
        When a callable without an adjoint is not linear.

    Examples
    --------
    >>> import torch
    >>> op = as_operator(lambda x: x.cumsum(-1), in_shape=(1, 1, 4, 4))
    >>> op.A_adjoint(torch.ones(1, 1, 4, 4))[0, 0, 0].tolist()
    [4.0, 3.0, 2.0, 1.0]
    >>> as_operator((lambda x: x.cumsum(-1), lambda y: y), in_shape=(1, 1, 4, 4))
    Traceback (most recent call last):
    ...
    operators.adjoint.AdjointMismatchError: the adjoint does not match the forward operator: ...
    """
    if isinstance(obj, LinearOperator):
        return obj
    if not tol > 0:
        raise ValueError(f"tol must be positive; got {tol!r}")
    shape = None if in_shape is None else tuple(int(s) for s in in_shape)
    certificate = None
    source = None
    noise_model = None
    linear_check = False
    if isinstance(obj, LinearPhysics):
        source, noise_model = obj, obj.noise_model
        if shape is None:
            # deepinv operators declare their input size as img_size (some as imsize).
            declared = getattr(obj, "img_size", None) or getattr(obj, "imsize", None)
            if declared is None:
                raise ValueError(f"pass in_shape=(B, C, H, W): {type(obj).__name__} does not declare img_size")
            shape = (1,) + tuple(declared)
        A, AT = obj.A, obj.A_adjoint
    elif isinstance(obj, (np.ndarray, torch.Tensor)):
        A, AT, certificate, shape = _dense(obj, shape)
    else:
        pair = obj if isinstance(obj, (tuple, list)) else (obj, None)
        if len(pair) not in (1, 2) or not callable(pair[0]) or (len(pair) == 2 and pair[1] is not None and not callable(pair[1])):
            raise TypeError(
                "as_operator takes a deepinv LinearPhysics, a dense matrix, a callable A, or a pair "
                f"(A, A_adjoint) of callables; got {type(obj).__name__}"
            )
        if shape is None:
            raise ValueError("pass in_shape=(B, C, H, W) (the shape of an input tensor) to check a callable operator")
        A = pair[0]
        AT = pair[1] if len(pair) == 2 and pair[1] is not None else None
        if AT is None:
            AT = _autograd_adjoint(A, shape)
            linear_check = True
    if len(shape) < 2 or min(shape) < 1:
        raise ValueError(f"in_shape must list positive sizes with the batch first; got {shape}")
    err = _run_checks(A, AT, shape, tol, linear_check)
    op = CustomOperator(A, AT, shape, certificate=certificate, source=source, noise_model=noise_model, adjoint_error=err)
    if norm_bound is not None:
        if not (np.isfinite(norm_bound) and norm_bound >= 0):
            raise ValueError(f"norm_bound must be a finite non-negative number; got {norm_bound!r}")
        est = estimate_norm(op, shape, tol=1e-9).value
        if est > norm_bound * (1 + 1e-6):
            raise ValueError(f"norm_bound {norm_bound:g} is below the power-iteration estimate {est:.6g} of the norm, so it cannot be a bound")
        op.certificate = OperatorNorm(float(norm_bound), "upper_bound", "declared by the user (checked against a power-iteration estimate)", None)
    return op

