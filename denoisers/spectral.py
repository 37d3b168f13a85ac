r"""Spectral norms of convolution layers: certified upper bounds, exact grid norms, estimates.

A convolution with weight :math:`W` (c_out x c_in x k x k) has the matrix-valued symbol
:math:`\hat W(\omega) = \sum_{a,b} W_{ab} e^{-i(a\omega_1 + b\omega_2)}`.  On an N x N
circular grid its norm is exactly :math:`\max_\omega \|\hat W(\omega)\|_2` over the N^2 DFT
frequencies (Sedghi, Gupta and Long, 2019); with zero padding the layer is a restriction of
a circular one on a larger grid.  So :math:`S = \sup_{\omega \in [0, 2\pi)^2} \|\hat W(\omega)\|_2`
bounds the layer for **every** image size, circular or zero padding.

Certificate of :math:`S` (:func:`certified_conv_norm`)
    Take the maximiser :math:`\omega^*` and a top singular pair :math:`(u, v)` there;
    :math:`g(\omega) = \mathrm{Re}\, u^H \hat W(\omega) v \le \|\hat W(\omega)\|_2 \le S` with
    equality at :math:`\omega^*`, so :math:`\nabla g(\omega^*) = 0` and, for the nearest point
    :math:`\omega_g` of an M x M grid, :math:`S \le g(\omega_g) + \tfrac12 \|\nabla^2 g\|\,
    |\omega_g - \omega^*|^2`.  With :math:`\|\nabla^2 g\| \le \sum_{ab} \|W_{ab}\|_2 (a^2 + b^2)`
    and :math:`|\omega_g - \omega^*|^2 \le 2 (\pi/M)^2`:

    .. math:: S \le \max_{\text{grid}} \|\hat W\|_2 + (\pi / M)^2 \sum_{a,b} \|W_{ab}\|_2 (a^2 + b^2).

    Everything is computed in float64; the grid maximum uses ``eigvalsh`` of the Gram
    matrices (backward stable), and a 1e-10 relative allowance covers its rounding.  The Gram
    symbol is itself a trigonometric polynomial, :math:`\hat W^H \hat W(\omega) = \sum_d C_d
    e^{-i\omega\cdot d}` with :math:`C_d = \sum_{t-s=d} W_s^T W_t` over (2k-1)^2 offsets, so it
    is evaluated from those taps rather than by a matrix product per frequency.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch

__all__ = ["ConvNormBound", "certified_conv_norm", "conv_norm_on_grid", "power_estimate", "symbol", "symbol_power_step"]

#: Relative allowance for float64 rounding in the eigenvalue computations.
ROUNDING = 1e-10


@dataclass(frozen=True)
class ConvNormBound:
    """A certified bound of a convolution's norm and its parts.

    Attributes
    ----------
    value : float
        Certified upper bound of the norm for every image size (zero or circular padding).
    grid_max : float
        Largest symbol norm on the M x M grid (itself a lower bound of the supremum).
    slack : float
        The curvature term added to ``grid_max`` (plus rounding allowance).
    grid : int
        M.
    """

    value: float
    grid_max: float
    slack: float
    grid: int


def symbol(weight: torch.Tensor, grid: int) -> torch.Tensor:
    """Symbol of a convolution on an M x M grid, half plane (``rfft2``), shape (M, M//2+1, c_out, c_in).

    The half plane suffices: :math:`\\hat W(-\\omega) = \\overline{\\hat W(\\omega)}` for real
    weights, with the same singular values.

    Examples
    --------
    >>> import torch
    >>> symbol(torch.ones(2, 3, 3, 3), 8).shape
    torch.Size([8, 5, 2, 3])
    """
    k = weight.shape[-1]
    if grid < k:
        raise ValueError(f"grid {grid} is smaller than the kernel size {k}")
    return torch.fft.rfft2(weight, s=(grid, grid)).permute(2, 3, 0, 1)


def _gram_taps(weight: torch.Tensor) -> torch.Tensor:
    r"""Taps of the Gram symbol: :math:`\hat W(\omega)^H \hat W(\omega) = \sum_d C_d e^{-i\omega\cdot d}`.

    ``C_d = sum_{t - s = d} W_s^T W_t`` for offsets ``d`` in ``[-(k-1), k-1]^2``, shape
    (2k-1, 2k-1, c, c) with ``c`` the smaller channel count (the other Gram matrix, of the
    adjoint, has the same nonzero eigenvalues).  Evaluating these taps costs a (2k-1)-term sum per
    frequency instead of a c x c matrix product, and the taps are formed once, exactly as sums of
    products in float64.
    """
    W = weight.detach().to("cpu", torch.float64)
    if W.shape[0] < W.shape[1]:
        # hat W hat W^H is the Gram symbol of the adjoint: transposed channels, mirrored taps.
        W = W.transpose(0, 1).flip(-2, -1)
    k = W.shape[-1]
    C = W.new_zeros(2 * k - 1, 2 * k - 1, W.shape[1], W.shape[1])
    for d1 in range(-(k - 1), k):
        s1 = slice(max(0, -d1), min(k, k - d1))
        t1 = slice(max(0, d1), min(k, k + d1))
        for d2 in range(-(k - 1), k):
            s2 = slice(max(0, -d2), min(k, k - d2))
            t2 = slice(max(0, d2), min(k, k + d2))
            C[d1 + k - 1, d2 + k - 1] = torch.einsum("oiab,ojab->ij", W[:, :, s1, s2], W[:, :, t1, t2])
    return C


def _top_eigenvalues(C: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """Largest eigenvalue of the Gram symbol at every frequency ``(rows[m], cols[n])``, shape (m, n).

    Works through the rows in chunks of about 64 MB each, in parallel over torch's threads.
    """
    k = (C.shape[0] + 1) // 2
    d = torch.arange(-(k - 1), k, dtype=torch.float64)
    # Separable evaluation: first sum over the second offset for every column frequency.
    half = torch.einsum("nq,pqij->pnij", torch.exp(-1j * cols[:, None] * d[None, :]), C.to(torch.complex128))
    c = C.shape[-1]
    chunk = max(1, (1 << 22) // max(1, cols.numel() * c * c))

    def block(start: int) -> torch.Tensor:
        phase = torch.exp(-1j * rows[start:start + chunk, None] * d[None, :])
        return torch.linalg.eigvalsh(torch.einsum("mp,pnij->mnij", phase, half))[..., -1]

    starts = range(0, rows.numel(), chunk)
    workers = min(torch.get_num_threads(), len(starts))
    if workers < 2:
        return torch.cat([block(s) for s in starts])
    # A batched eigvalsh runs on one core; the chunks are independent, so spread them over the
    # cores torch may use (the result does not depend on how they are spread).
    with ThreadPoolExecutor(workers) as pool:
        return torch.cat(list(pool.map(block, starts)))


def _grid(n: int, count: int | None = None, *, start: int = 0, step: int = 1) -> torch.Tensor:
    """Frequencies ``2 pi j / n`` for ``j = start, start + step, ...`` (``count`` of them)."""
    count = n if count is None else count
    return 2 * math.pi * torch.arange(start, start + step * count, step, dtype=torch.float64)[:count] / n


def _eigenvalues_on_grid(C: torch.Tensor, n: int) -> torch.Tensor:
    """Top Gram eigenvalues on the n x n grid, half plane: shape (n, n//2+1)."""
    return _top_eigenvalues(C, _grid(n), _grid(n, n // 2 + 1))


def _refine(C: torch.Tensor, coarse: torch.Tensor, n: int) -> torch.Tensor:
    """Top eigenvalues on the 2n x 2n grid, reusing those of the n x n grid it contains."""
    fine = torch.empty(2 * n, n + 1, dtype=torch.float64)
    fine[::2, ::2] = coarse
    fine[1::2, :] = _top_eigenvalues(C, _grid(2 * n, n, start=1, step=2), _grid(2 * n, n + 1))
    fine[::2, 1::2] = _top_eigenvalues(C, _grid(2 * n, n, step=2), _grid(2 * n, n // 2, start=1, step=2))
    return fine


def conv_norm_on_grid(weight: torch.Tensor, n: int) -> float:
    """Exact norm of the circular convolution on an n x n grid (float64).

    Examples
    --------
    >>> import torch
    >>> round(conv_norm_on_grid(torch.ones(1, 1, 3, 3), 8), 9)
    9.0
    """
    if n < weight.shape[-1]:
        raise ValueError(f"grid {n} is smaller than the kernel size {weight.shape[-1]}")
    return math.sqrt(max(float(_eigenvalues_on_grid(_gram_taps(weight), n).max()), 0.0))


def certified_conv_norm(weight: torch.Tensor, grid: int | None = None, *, rel_slack: float = 0.01, max_grid: int = 256) -> ConvNormBound:
    """Certified upper bound of a convolution's norm over all image sizes (see module notes).

    Parameters
    ----------
    weight : torch.Tensor
        Shape (c_out, c_in, k, k), odd k, centred taps.
    grid : int, optional
        Fixed M.  By default M starts at 64 and doubles (up to ``max_grid``) until the slack is
        below ``rel_slack`` times the grid maximum; the slack shrinks as 1/M^2.
    rel_slack, max_grid
        Refinement target and cap of the automatic grid.

    Examples
    --------
    >>> import torch
    >>> W = torch.randn(8, 8, 3, 3, generator=torch.Generator().manual_seed(0))
    >>> b = certified_conv_norm(W)
    >>> conv_norm_on_grid(W, 37) <= b.value <= 1.02 * conv_norm_on_grid(W, 256)
    True
    """
    if weight.ndim != 4 or weight.shape[-1] != weight.shape[-2] or weight.shape[-1] % 2 == 0:
        raise ValueError(f"weight must have shape (c_out, c_in, k, k) with odd k; got {tuple(weight.shape)}")
    W = weight.detach().to("cpu", torch.float64)
    if not bool(torch.isfinite(W).all()):
        raise ValueError("weight contains NaN or Inf: no bound exists")
    k = W.shape[-1]
    off = torch.arange(k, dtype=torch.float64) - k // 2
    curvature = off[:, None] ** 2 + off[None, :] ** 2
    tap_norms = torch.linalg.matrix_norm(W.permute(2, 3, 0, 1), ord=2)
    hessian = float((tap_norms * curvature).sum())
    if grid is not None and grid < k:
        raise ValueError(f"grid {grid} is smaller than the kernel size {k}")
    M = grid if grid is not None else max(64, 2 ** math.ceil(math.log2(2 * k)))
    C = _gram_taps(W)
    eig = _eigenvalues_on_grid(C, M)
    while True:
        grid_max = math.sqrt(max(float(eig.max()), 0.0))
        slack = (math.pi / M) ** 2 * hessian
        if grid is not None or slack <= rel_slack * grid_max or 2 * M > max_grid:
            break
        eig = _refine(C, eig, M)  # the M grid lies inside the 2M one: only new points cost
        M *= 2
    value = (grid_max + slack) * (1 + ROUNDING)
    return ConvNormBound(value=value, grid_max=grid_max, slack=value - grid_max, grid=M)


def _unit(u: torch.Tensor) -> torch.Tensor:
    """Each frequency's vector scaled to unit norm."""
    return u / u.abs().pow(2).sum(-1, keepdim=True).sqrt().clamp_min(1e-30)


def _largest_image_norm(F: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """``max_w ||F(w) u(w)||``: the power-iteration estimate of the norm (a lower bound)."""
    return (F @ u.unsqueeze(-1)).squeeze(-1).abs().pow(2).sum(-1).max().sqrt()


def symbol_power_step(weight: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One warm-started power step per frequency: an **estimate** (lower bound) of the norm.

    Used during training, where a certificate at every step would cost too much.  The vectors
    are updated without gradient; the returned estimate ``max_w ||W_hat(w) u(w)||`` is then a
    differentiable function of the weight (as in spectral normalisation), so a step size
    derived from it passes its dependence on the weights to the optimiser.

    Parameters
    ----------
    weight : torch.Tensor
        (c_out, c_in, k, k).
    u : torch.Tensor
        Complex vectors (M, M//2+1, c_in), one per frequency.

    Returns
    -------
    estimate : torch.Tensor
        0-d tensor, max over frequencies of ``||W_hat u||`` with ``u`` the updated unit vectors.
    u : torch.Tensor
        The updated, normalised vectors (no gradient).

    Examples
    --------
    >>> import torch
    >>> W = torch.ones(1, 1, 3, 3)
    >>> u = torch.ones(8, 5, 1, dtype=torch.complex64)
    >>> round(float(symbol_power_step(W, u)[0]), 4)
    9.0
    """
    with torch.no_grad():
        F = symbol(weight.detach(), u.shape[0]).to(u.dtype)
        u_new = _unit((F.mH @ (F @ u.unsqueeze(-1))).squeeze(-1))
    return _largest_image_norm(symbol(weight, u.shape[0]).to(u.dtype), u_new), u_new


def power_estimate(weight: torch.Tensor, u: torch.Tensor, steps: int) -> tuple[float, torch.Tensor]:
    """``steps`` power iterations per frequency on a fixed weight: an **estimate** of the norm.

    The same iteration as :func:`symbol_power_step`, without gradients, with the symbol formed
    once instead of at every step (used to normalise a freshly drawn weight).

    Parameters
    ----------
    weight : torch.Tensor
        (c_out, c_in, k, k).
    u : torch.Tensor
        Complex starting vectors (M, M//2+1, c_in).
    steps : int
        Power iterations (at least 1).

    Returns
    -------
    estimate : float
        ``max_w ||W_hat(w) u(w)||`` for the final unit vectors (a lower bound of the norm).
    u : torch.Tensor
        The final unit vectors.

    Examples
    --------
    >>> import torch
    >>> u = torch.ones(8, 5, 1, dtype=torch.complex64)
    >>> round(power_estimate(torch.ones(1, 1, 3, 3), u, 3)[0], 4)
    9.0
    """
    if steps < 1:
        raise ValueError(f"steps must be at least 1; got {steps}")
    with torch.no_grad():
        F = symbol(weight.detach(), u.shape[0]).to(u.dtype)
        FhF = F.mH @ F
        for _ in range(steps):
            u = _unit((FhF @ u.unsqueeze(-1)).squeeze(-1))
        return float(_largest_image_norm(F, u)), u
