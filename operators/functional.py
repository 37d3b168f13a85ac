"""Stateless building blocks of the operators (the counterpart of deepinv's ``physics/functional``).

Conventions
-----------
* Kernels are odd-sized 2-D arrays whose centre is the middle entry (``operators.kernels``
  brings every kernel to that form), and blurring is a true convolution:
  ``y[i, j] = sum_{a, b} k[a, b] x[i - a + p, j - b + q]`` with ``(p, q)`` the centre.
  This is ``scipy.signal.convolve2d(x, k, mode="same")``.
* Non-circular boundaries are "pad, convolve circularly on a grid large enough that nothing
  wraps, crop".  Padding is a gather of source indices, so its adjoint is the matching
  scatter-add; the pair is exact for every mode, including ``symmetric`` which torch lacks.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Callable

import numpy as np
import torch

__all__ = [
    "PAD_MODES",
    "transfer_function",
    "fft_conv",
    "pad_indices",
    "pad",
    "pad_adjoint",
    "next_fast_len",
    "pcg",
    "collatz_wielandt_bound",
]

#: Boundary conditions realised by padding, mapped to the numpy ``np.pad`` mode that
#: produces the same source indices.
PAD_MODES: dict[str, str] = {
    "zero": "constant",
    "replicate": "edge",
    "reflect": "reflect",
    "symmetric": "symmetric",
}


def transfer_function(kernel: torch.Tensor, grid: tuple[int, int], *, real: bool = True) -> torch.Tensor:
    """Frequency response of a centred kernel on a circular grid.

    The kernel is embedded in a zero array of size ``grid`` with its centre moved to
    index (0, 0), then Fourier transformed.

    Parameters
    ----------
    kernel : torch.Tensor
        Odd-sized (h, w) kernel.
    grid : tuple of int
        Grid size (H, W), each at least the kernel size.
    real : bool
        Return the half spectrum of ``rfft2`` (default) or the full ``fft2``.

    Returns
    -------
    torch.Tensor
        Complex tensor of shape (H, W // 2 + 1) or (H, W).

    Examples
    --------
    >>> import torch
    >>> K = transfer_function(torch.ones(3, 3) / 9, (8, 8))
    >>> K.shape, round(float(K.abs().max()), 6)
    (torch.Size([8, 5]), 1.0)
    """
    h, w = kernel.shape[-2:]
    H, W = grid
    if h > H or w > W:
        raise ValueError(f"kernel of size {h}x{w} is larger than the grid {H}x{W}")
    padded = kernel.new_zeros(H, W)
    padded[:h, :w] = kernel
    padded = torch.roll(padded, shifts=(-(h // 2), -(w // 2)), dims=(0, 1))
    return torch.fft.rfft2(padded) if real else torch.fft.fft2(padded)


def fft_conv(x: torch.Tensor, K: torch.Tensor, *, adjoint: bool = False) -> torch.Tensor:
    """Circular convolution (or its adjoint, a correlation) with a precomputed ``rfft2`` response.

    Examples
    --------
    >>> import torch
    >>> x = torch.zeros(1, 1, 5, 5); x[..., 2, 2] = 1
    >>> K = transfer_function(torch.tensor([[0., 1., 0.], [0., 0., 0.], [0., 0., 0.]]), (5, 5))
    >>> fft_conv(x, K)[0, 0, 3, 2].round(decimals=6)  # the impulse moves down one row
    tensor(1.)
    """
    X = torch.fft.rfft2(x)
    X = X * (K.conj() if adjoint else K)
    return torch.fft.irfft2(X, s=x.shape[-2:])


def next_fast_len(n: int) -> int:
    """Smallest 5-smooth integer >= n (an FFT-friendly size).

    Examples
    --------
    >>> next_fast_len(257)
    270
    """
    m = n
    while True:
        r = m
        for p in (2, 3, 5):
            while r % p == 0:
                r //= p
        if r == 1:
            return m
        m += 1


@lru_cache(maxsize=256)
def _pad_index_np(n: int, before: int, after: int, mode: str) -> np.ndarray:
    return np.pad(np.arange(n), (before, after), mode=PAD_MODES[mode])


def pad_indices(n: int, before: int, after: int, mode: str, device=None) -> torch.Tensor:
    """Source index of every padded position along one axis (``mode`` not ``"zero"``).

    Examples
    --------
    >>> pad_indices(4, 2, 2, "symmetric").tolist()
    [1, 0, 0, 1, 2, 3, 3, 2]
    >>> pad_indices(4, 2, 2, "reflect").tolist()
    [2, 1, 0, 1, 2, 3, 2, 1]
    """
    if mode not in PAD_MODES or mode == "zero":
        raise ValueError(f"pad_indices handles {sorted(set(PAD_MODES) - {'zero'})}; got {mode!r}")
    if mode == "reflect" and n == 1 and (before or after):
        raise ValueError("reflect padding needs at least 2 pixels along each padded axis")
    # A copy: the cached numpy array must never alias a tensor that could be edited in place.
    return torch.tensor(_pad_index_np(n, before, after, mode), device=device)


def pad(x: torch.Tensor, pads: tuple[int, int, int, int], mode: str) -> torch.Tensor:
    """Pad the last two axes by ``(top, bottom, left, right)`` with a boundary ``mode``.

    Examples
    --------
    >>> import torch
    >>> pad(torch.arange(3.).reshape(1, 1, 1, 3), (0, 0, 1, 1), "replicate")
    tensor([[[[0., 0., 1., 2., 2.]]]])
    """
    top, bottom, left, right = pads
    if mode == "zero":
        return torch.nn.functional.pad(x, (left, right, top, bottom))
    H, W = x.shape[-2:]
    rows = pad_indices(H, top, bottom, mode, x.device)
    cols = pad_indices(W, left, right, mode, x.device)
    return x.index_select(-2, rows).index_select(-1, cols)


def pad_adjoint(y: torch.Tensor, pads: tuple[int, int, int, int], mode: str) -> torch.Tensor:
    """Exact adjoint of :func:`pad`: every padded value is added back to its source pixel.

    Examples
    --------
    >>> import torch
    >>> pad_adjoint(torch.ones(1, 1, 1, 5), (0, 0, 1, 1), "replicate")
    tensor([[[[2., 1., 2.]]]])
    """
    top, bottom, left, right = pads
    Hp, Wp = y.shape[-2:]
    H, W = Hp - top - bottom, Wp - left - right
    if mode == "zero":
        return y[..., top : top + H, left : left + W]
    rows = pad_indices(H, top, bottom, mode, y.device)
    cols = pad_indices(W, left, right, mode, y.device)
    out = y.new_zeros(*y.shape[:-1], W).index_add(-1, cols, y)
    return out.new_zeros(*y.shape[:-2], H, W).index_add(-2, rows, out)


def pcg(
    apply_A: Callable[[torch.Tensor], torch.Tensor],
    b: torch.Tensor,
    *,
    precondition: Callable[[torch.Tensor], torch.Tensor] | None = None,
    x0: torch.Tensor | None = None,
    tol: float | torch.Tensor = 1e-6,
    max_iter: int = 100,
    atol: float | torch.Tensor = 0.0,
) -> tuple[torch.Tensor, dict]:
    """Batched preconditioned conjugate gradients for a symmetric positive definite ``A``.

    Each sample of the batch (first axis) stops on its own once its residual
    ``||b - A x||`` is below ``tol * ||b||`` or below ``atol``.  deepinv's ``conjugate_gradient`` takes no
    preconditioner, and the circulant preconditioner is what makes non-circular blur proxes
    cost a handful of applications instead of dozens.

    Parameters
    ----------
    apply_A : callable
        The SPD operator.
    b : torch.Tensor
        Right-hand side, batch first.
    precondition : callable, optional
        Applies an SPD approximation of ``A^{-1}``.
    x0 : torch.Tensor, optional
        Initial guess (default: ``precondition(b)`` or zero).
    tol : float or torch.Tensor
        Relative residual tolerance, one for all or one per sample.
    max_iter : int
        Iteration cap.
    atol : float or torch.Tensor
        Absolute residual tolerance, one for all or one per sample (an inexact-prox schedule
        asks for an absolute error bound).

    Returns
    -------
    x : torch.Tensor
        The solution.
    info : dict
        ``iterations`` (int), ``relative_residual`` and ``residual_norm`` (tensors per
        sample, the recursively updated residual), ``rhs_norm`` (``||b||`` per sample),
        ``converged`` (bool).

    Examples
    --------
    >>> import torch
    >>> M = torch.tensor([[4.0, 1.0], [1.0, 3.0]], dtype=torch.float64)
    >>> b = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
    >>> x, info = pcg(lambda v: v @ M, b, tol=1e-12)
    >>> torch.allclose(x @ M, b), info["converged"]
    (True, True)
    """
    P = precondition if precondition is not None else (lambda r: r)
    batch = b.shape[0]
    view = (batch,) + (1,) * (b.ndim - 1)

    def dot(u, v):
        return (u * v).reshape(batch, -1).sum(1)

    bnorm = dot(b, b).sqrt().clamp_min(torch.finfo(b.dtype).tiny)
    # Stop when ||r|| <= max(tol ||b||, atol), per sample.
    limit = torch.maximum(torch.as_tensor(tol, dtype=b.dtype, device=b.device) * bnorm,
                          torch.as_tensor(atol, dtype=b.dtype, device=b.device))
    x = x0.clone() if x0 is not None else P(b)
    r = b - apply_A(x)
    rnorm = dot(r, r).sqrt()
    active = rnorm > limit
    z = P(r)
    p = z
    rz = dot(r, z)
    it = 0
    while bool(active.any()) and it < max_iter:
        it += 1
        Ap = apply_A(p)
        pAp = dot(p, Ap)
        # Samples that already converged take a zero step, so the batch runs in lock-step
        # without disturbing them.
        alpha = torch.where(active, rz / pAp.clamp_min(torch.finfo(b.dtype).tiny), torch.zeros_like(rz))
        x = x + alpha.view(view) * p
        r = r - alpha.view(view) * Ap
        rnorm = dot(r, r).sqrt()
        active = active & (rnorm > limit)
        z = P(r)
        rz_new = dot(r, z)
        beta = rz_new / rz.clamp_min(torch.finfo(b.dtype).tiny)
        p = z + beta.view(view) * p
        rz = rz_new
    return x, {"iterations": it, "relative_residual": rnorm / bnorm, "residual_norm": rnorm, "rhs_norm": bnorm,
               "converged": not bool(active.any())}


def collatz_wielandt_bound(
    apply_B: Callable[[torch.Tensor], torch.Tensor],
    shape: tuple[int, ...],
    *,
    rtol: float = 1e-4,
    max_iter: int = 300,
) -> tuple[float, float, int]:
    r"""Certified upper bound (and lower estimate) of the largest eigenvalue of an entrywise
    non-negative symmetric operator ``B``, such as ``A^T A`` for a non-negative blur.

    For every positive vector ``w``, :math:`\rho(B) \le \max_i (Bw)_i / w_i`
    (Collatz-Wielandt).  Power iteration from ``w = 1`` keeps ``w`` positive and drives the
    bound down to :math:`\rho(B)`; the Rayleigh quotient gives the matching lower estimate,
    and iteration stops when they agree to ``rtol``.  The returned bound includes an
    allowance for float64 rounding of the products, scaled by ``max(w) / min(w)``.

    Parameters
    ----------
    apply_B : callable
        The operator (must map positive vectors to non-negative ones).
    shape : tuple of int
        Shape of its input.
    rtol : float
        Stop when ``(upper - lower) / lower <= rtol``.
    max_iter : int
        Iteration cap (the bound is valid whenever it stops).

    Returns
    -------
    upper : float
        Certified bound of the largest eigenvalue.
    lower : float
        Rayleigh-quotient estimate (a lower bound in exact arithmetic).
    iterations : int

    Examples
    --------
    >>> import torch
    >>> B = torch.tensor([[2.0, 1.0], [1.0, 2.0]], dtype=torch.float64)
    >>> up, lo, _ = collatz_wielandt_bound(lambda w: w @ B, (1, 2))
    >>> round(up, 9), round(lo, 9)
    (3.0, 3.0)
    """
    w = torch.ones(shape, dtype=torch.float64)
    upper, lower = float("inf"), 0.0
    eps = torch.finfo(torch.float64).eps
    n = max(2, w.numel())
    it = 0
    for it in range(1, max_iter + 1):
        Bw = apply_B(w)
        wmin = float(w.min())
        # Rounding of FFT-based products is below ~ log2(n) eps max|Bw| per entry.
        slack = 16 * math.log2(n) * eps * float(Bw.abs().max()) / wmin
        upper = min(upper, float((Bw / w).max()) + slack)
        lower = max(lower, float((w * Bw).sum() / (w * w).sum()))
        if upper - lower <= rtol * lower:
            break
        # Any positive w gives a valid bound, so floor the next one: FFT rounding can push
        # entries of B w to zero or below, and the floor keeps the rounding slack small.
        w = (Bw / float(Bw.max())).clamp_min(1e-6)
    return upper, lower, it
