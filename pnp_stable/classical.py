r"""The classical reference: Tikhonov (Wiener-type) deblurring with a gradient penalty.

.. math:: \hat x_\lambda = \arg\min_x \tfrac12\|Ax - y\|^2 + \tfrac{\lambda}{2}\|\nabla x\|^2
          = (A^\top A + \lambda \nabla^\top\nabla)^{-1} A^\top y

For a circular :class:`operators.Blur` both terms are diagonal in Fourier, so this is one
FFT solve.  When ``weight`` is not given it follows Morozov's discrepancy principle: the
largest ``lambda`` whose residual :math:`\|A\hat x_\lambda - y\|^2` does not exceed the
expected noise energy :math:`N\sigma^2`, found per image by bisection on
:math:`\log\lambda` (the residual grows with :math:`\lambda`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from operators import Blur
from operators._checks import check_finite, check_image_batch

__all__ = ["tikhonov_deblur", "TikhonovResult"]


@dataclass(frozen=True)
class TikhonovResult:
    """Output of :func:`tikhonov_deblur`.

    Attributes
    ----------
    x : torch.Tensor
        Restored images, shape (B, C, H, W).
    weight : torch.Tensor
        The regularisation weight used for each image, shape (B,).
    residual : torch.Tensor
        ``||A x - y|| / sqrt(N)`` per image (compare with the noise level).
    """

    x: torch.Tensor
    weight: torch.Tensor
    residual: torch.Tensor


def _gradient_symbol(H: int, W: int, dtype, device) -> torch.Tensor:
    """Fourier symbol of ``D^T D`` for circular forward differences, rfft layout."""
    wy = 2 * math.pi * torch.fft.fftfreq(H, dtype=dtype, device=device)
    wx = 2 * math.pi * torch.fft.rfftfreq(W, dtype=dtype, device=device)
    return (2 - 2 * torch.cos(wy))[:, None] + (2 - 2 * torch.cos(wx))[None, :]


def tikhonov_deblur(
    y: torch.Tensor,
    blur: Blur,
    *,
    noise_level: float | None = None,
    weight: float | None = None,
) -> TikhonovResult:
    """Deblur with a gradient-penalised least-squares fit (closed form, circular blur).

    Parameters
    ----------
    y : torch.Tensor
        Blurred, noisy images, shape (B, C, H, W), float.
    blur : operators.Blur
        The blur, with ``boundary="circular"``.
    noise_level : float, optional
        Noise standard deviation; sets the weight by the discrepancy principle.
    weight : float, optional
        Explicit regularisation weight (overrides ``noise_level``).

    Returns
    -------
    TikhonovResult

    Examples
    --------
    >>> import torch
    >>> from operators import Blur
    >>> op = Blur("gaussian:1.5")
    >>> x = torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    >>> y = op(x) + 0.01 * torch.randn(1, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    >>> res = tikhonov_deblur(y, op, noise_level=0.01)
    >>> abs(res.residual.item() - 0.01) < 0.002
    True
    """
    check_image_batch(y, "y")
    check_finite(y, "y")
    if not isinstance(blur, Blur) or blur.boundary != "circular":
        raise ValueError("tikhonov_deblur needs an operators.Blur with boundary='circular'")
    if weight is None and noise_level is None:
        raise ValueError("pass noise_level (to choose the weight by the discrepancy principle) or weight")
    H, W = y.shape[-2:]
    K = blur.response((H, W), y.dtype, y.device)
    K2 = K.real**2 + K.imag**2
    G = _gradient_symbol(H, W, y.dtype, y.device)
    Y = torch.fft.rfft2(y)
    ATY = K.conj() * Y

    def solve(lam: torch.Tensor) -> torch.Tensor:
        return torch.fft.irfft2(ATY / (K2 + lam.view(-1, 1, 1, 1) * G + 1e-12), s=(H, W))

    def residual(x: torch.Tensor) -> torch.Tensor:
        r = blur.A(x) - y
        return (r.reshape(r.shape[0], -1).pow(2).mean(1)).sqrt()

    B = y.shape[0]
    if weight is not None:
        if not (math.isfinite(weight) and weight >= 0):
            raise ValueError(f"weight must be a finite number >= 0; got {weight!r}")
        lam = torch.full((B,), float(weight), dtype=y.dtype, device=y.device)
    else:
        if not (math.isfinite(noise_level) and noise_level >= 0):
            raise ValueError(f"noise_level must be a finite number >= 0; got {noise_level!r}")
        lo = torch.full((B,), -12.0, dtype=y.dtype, device=y.device)
        hi = torch.full((B,), 4.0, dtype=y.dtype, device=y.device)
        for _ in range(40):  # bisection on log10(lambda): 16 decades / 2^40
            mid = (lo + hi) / 2
            too_big = residual(solve(10**mid)) > noise_level
            hi = torch.where(too_big, mid, hi)
            lo = torch.where(too_big, lo, mid)
        lam = 10**lo
    x = solve(lam)
    return TikhonovResult(x=x, weight=lam, residual=residual(x))
