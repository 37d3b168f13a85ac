r"""Lipschitz bounded equilibrium networks (Revay, Wang and Manchester) as certified denoisers.

The network maps an image ``x`` to ``y = W_o z + D x + b_y`` through the equilibrium

.. math:: z = \sigma(W z + U x + b),

with ``sigma`` a LeakyReLU of slope ``a`` in [0, 1) (``a = 0``: ReLU) and every linear map a
circular convolution on the image grid (``U``: image to ``n`` hidden channels, ``W_o``: back,
``D = diag(d)`` one scalar per image channel).

Lipschitz bound by construction
-------------------------------
Slopes in [0, 1] give, for two inputs, :math:`\Delta z_i (\Delta v_i - \Delta z_i) \ge 0` with
:math:`v = W z + U x + b`.  Weighted by a positive diagonal :math:`\Lambda` (one weight per
hidden *channel*, so the model is not tied to an image size), this shows
:math:`\|\Delta y\| \le \gamma \|\Delta x\|` as soon as

.. math::

    \begin{bmatrix} 2\Lambda - \Lambda W - W^T\Lambda - W_o^T W_o/\gamma & -\Lambda U - W_o^T D/\gamma \\
    \cdot & \gamma I - D^2/\gamma \end{bmatrix} \succeq 0

(the LBEN LMI extended by the feed-through ``D``; it needs :math:`|d_c| < \gamma`).  With
:math:`Q = \gamma I - D^2/\gamma`, :math:`R = \Lambda U + W_o^T D/\gamma` and the free
parameters ``V``, ``S`` (convolutions) and a margin ``m > 0``, the network *defines*

.. math::

    H = W_o^T W_o/\gamma + R Q^{-1} R^T + V^T V + m I, \qquad
    K = \Lambda (I - W) = H/2 + S - S^T,

so that the Schur complement of the LMI equals :math:`V^T V + m I \succeq m I` for every value
of the parameters: no projection, no power iteration.  The identity holds frequency by
frequency, so the bound holds on every grid, hence for every image size; :meth:`LBENNet.certificate`
checks it in float64 on a grid (and the preconditions ``m > 0``, ``Lambda > 0``, ``|d| < gamma``).

Equilibrium solve (certified convergence)
-----------------------------------------
LeakyReLU is positively homogeneous, so :math:`\zeta = \Lambda^{1/2} z` solves the same kind of
equilibrium with :math:`\tilde K = \Lambda^{-1/2} K \Lambda^{-1/2}`, whose symmetric part is
at least :math:`\mu = (m/2) \min_i \Lambda_{ii}^{-1}`: the inclusion
:math:`0 \in \tilde K \zeta - c + \partial f(\zeta)` (``sigma = prox_f``) is strongly monotone
and Peaceman-Rachford splitting converges for every step ``alpha > 0``.  Every operator is
block circulant, so its resolvent :math:`(I + \alpha \tilde K)^{-1}` is one ``n x n`` inverse per
frequency, applied through the FFT.

A truncated solve is honest: from the last iterate :math:`\zeta` and one more step
:math:`\zeta^+ = \sigma((I - \tilde K)\zeta + c)`, the slope inequality gives
:math:`\|\zeta^+ - \zeta^\star\| \le \|(I - \tilde K)(\zeta - \zeta^+)\| / \mu`, mapped to the
output through the exact grid norm of :math:`W_o \Lambda^{-1/2}` (:attr:`EquilibriumReport.error_bound`).
Here :math:`\mu` is the construction's floor above (less the rounding of :math:`\tilde K` in its
working precision; it is within a few per cent of the grid's exact monotonicity on trained
models); the default step is :math:`\alpha = 1/\sqrt{\mu L}` with :math:`L` the largest
Frobenius norm of :math:`\tilde K` over the frequencies (an upper bound of its grid norm).
Neither needs an eigenvalue problem per frequency.

Gradients
---------
Implicit differentiation: the output is one tracked step from the (detached) equilibrium,
and a hook replaces its incoming gradient ``g`` by :math:`(I - J_f^T)^{-1} g`, solved by the
same splitting on the transposed problem (memory independent of the iteration count).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from deepinv.models import Denoiser
from torch import nn

from operators._checks import check_image_batch

from .certificate import Certificate, CertifiedDenoiser

__all__ = ["LBENNet", "LBENDenoiser", "EquilibriumReport", "EquilibriumNotReached", "conv_symbol", "circular_conv"]

#: Relative float64 allowance in the LMI check (rounding of the per-frequency products).
_LMI_ROUNDING = 1e-9


class EquilibriumNotReached(RuntimeError):
    """The equilibrium solve stopped at ``max_iter`` above its tolerance (``strict=True``)."""


@dataclass(frozen=True)
class EquilibriumReport:
    """How the last forward pass solved its equilibrium (one entry per sample).

    Attributes
    ----------
    iterations : list of int
        Peaceman-Rachford iterations until the relative change fell below ``tol``
        (``max_iter`` when it did not).
    relative_change : list of float
        Last relative change of the iterate.
    converged : list of bool
    error_bound : list of float
        Certified upper bound of ``||y - y*||`` (Euclidean, whole image) between the returned
        output and the exact equilibrium's output.
    """

    iterations: list
    relative_change: list
    converged: list
    error_bound: list


def circular_conv(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Circular ("periodic") cross-correlation, the operator whose symbol :func:`conv_symbol` gives.

    Examples
    --------
    >>> x = torch.zeros(1, 1, 5, 5); x[0, 0, 0, 0] = 1
    >>> w = torch.arange(9.).reshape(1, 1, 3, 3)
    >>> y = circular_conv(x, w)
    >>> y[0, 0, -1, -1].item(), y[0, 0, 1, 0].item()  # the impulse wraps around to the far corner
    (8.0, 1.0)
    """
    r = weight.shape[-1] // 2
    return F.conv2d(F.pad(x, (r, r, r, r), mode="circular"), weight)


def conv_symbol(weight: torch.Tensor, size: tuple[int, int], *, full: bool = False) -> torch.Tensor:
    """Per-frequency matrices of a circular convolution on an ``H x W`` grid.

    Parameters
    ----------
    weight : torch.Tensor
        ``(out, in, k, k)`` with ``k`` odd and at most the grid size.
    size : (int, int)
        Grid ``(H, W)``.
    full : bool
        All ``H W`` frequencies (``fft2`` order) instead of the ``H (W // 2 + 1)`` of ``rfft2``.

    Returns
    -------
    torch.Tensor
        Complex ``(F, out, in)``: :func:`circular_conv` acts on ``rfft2(x)`` (flattened) as a
        batched matrix product.

    Examples
    --------
    >>> w = torch.randn(2, 3, 3, 3, dtype=torch.float64)
    >>> x = torch.randn(1, 3, 6, 8, dtype=torch.float64)
    >>> A = conv_symbol(w, (6, 8))
    >>> y = torch.fft.irfft2(torch.einsum("foi,bif->bof", A, torch.fft.rfft2(x).flatten(-2)).unflatten(-1, (6, 5)), s=(6, 8))
    >>> torch.allclose(y, circular_conv(x, w))
    True
    """
    out_c, in_c, k, k2 = weight.shape
    H, W = size
    if k != k2 or k % 2 == 0 or k > min(H, W):
        raise ValueError(f"need an odd square kernel no larger than the grid; got {tuple(weight.shape[-2:])} on {H}x{W}")
    img = weight.new_zeros(out_c, in_c, H, W)
    img[..., :k, :k] = weight
    img = torch.roll(img, shifts=(-(k // 2), -(k // 2)), dims=(-2, -1))
    # Cross-correlation by w is multiplication by sum_t w_t e^{+i w.t}: the conjugate of the
    # DFT of the kernel placed at offsets t (w is real).
    sym = (torch.fft.fft2(img) if full else torch.fft.rfft2(img)).conj()
    return sym.flatten(-2).permute(2, 0, 1)


def _apply(op: torch.Tensor, xh: torch.Tensor) -> torch.Tensor:
    """Per-frequency matrices ``(F, o, i)`` on spectra ``(B, i, F)``."""
    # One batched matrix product over frequencies, on a contiguous (F, i, B) copy: several
    # times faster on the CPU than einsum over the strided layout.
    return torch.matmul(op, xh.permute(2, 1, 0).contiguous()).permute(2, 1, 0)


def _symbol_at(weight: torch.Tensor, size: tuple[int, int], freqs: torch.Tensor, *, full: bool = False) -> torch.Tensor:
    """:func:`conv_symbol` at the frequencies ``freqs`` only (indices into its flattened list):
    ``sum_t w_t e^{+i omega . t}`` over the kernel taps ``t`` (phases in float64)."""
    out_c, in_c, k, _ = weight.shape
    H, W = size
    cols = W if full else W // 2 + 1
    fy = torch.div(freqs, cols, rounding_mode="floor").to(torch.float64)
    fx = (freqs % cols).to(torch.float64)
    taps = torch.arange(k, dtype=torch.float64, device=freqs.device) - k // 2
    angle = 2 * math.pi * (fy[:, None, None] * taps[None, :, None] / H + fx[:, None, None] * taps[None, None, :] / W)
    complex_dtype = torch.complex64 if weight.dtype == torch.float32 else torch.complex128
    phase = torch.polar(torch.ones_like(angle), angle).to(complex_dtype)  # (F, k, k)
    return torch.einsum("oiab,fab->foi", weight.to(complex_dtype), phase)


@dataclass
class _Operators:
    """Per-frequency operators of one grid (see the module notes for the symbols)."""

    size: tuple[int, int]
    K: torch.Tensor  # (F, n, n): the scaled K~
    Minv: torch.Tensor  # (F, n, n): (I + alpha K~)^{-1}
    Uz: torch.Tensor  # (F, n, c): Lambda^{1/2} U
    Oz: torch.Tensor  # (F, c, n): W_o Lambda^{-1/2}
    sqrt_lam: torch.Tensor  # (n,)
    out_norm: float  # exact grid norm of W_o Lambda^{-1/2}
    mu: float  # certified lower bound of the symmetric part of K~ on this grid (its monotonicity)
    lipschitz: float  # largest norm of K~ on this grid
    alpha: float  # the Peaceman-Rachford step
    key: tuple


class LBENNet(nn.Module):
    r"""Fully convolutional LBEN with feed-through, ``gamma``-Lipschitz by construction.

    Parameters
    ----------
    channels : int
        Image channels.
    hidden : int
        Hidden channels ``n`` of the equilibrium.
    kernel_size : int
        Odd size of every convolution.
    gamma : float
        The Lipschitz bound (in (0, 1] for a PnP denoiser).
    monotonicity : float
        The margin ``m > 0`` of the LMI (larger: faster solves, a stiffer model).
    leak : float
        LeakyReLU slope in [0, 1) (0: ReLU).
    pr_step : float, optional
        Peaceman-Rachford step ``alpha > 0`` (convergence holds for any; speed depends on it).
        Default: ``1 / sqrt(mu L)`` per grid, from certified bounds of the monotonicity ``mu`` and
        norm ``L`` of the operator on that grid (the classical choice for a strongly monotone,
        Lipschitz operator).
    pad : int
        Zero margin added around the image before the (circular) equilibrium and cropped
        after: keeps the far sides of the image apart, and the bound (zero padding is an
        isometry, cropping non-expansive).
    tol, max_iter : float, int
        Stop when the relative change of the iterate is below ``tol`` for every sample.
    strict : bool
        Raise :class:`EquilibriumNotReached` when ``max_iter`` ends above ``tol`` (else warn
        and report the certified error bound of the truncated solve).
    noise_knots : sequence of float, optional
        Condition the bias ``b`` on the noise level (a table learned at these levels; the
        bias does not enter the bound, so it holds for every level).

    Examples
    --------
    >>> net = LBENNet(1, hidden=4).eval()
    >>> x = torch.rand(2, 1, 12, 12)
    >>> y = net(x)
    >>> y.shape, net.certified_lipschitz()
    (torch.Size([2, 1, 12, 12]), 1.0)
    >>> bool((net(x[:1]) - net(x[1:])).norm() <= (x[0] - x[1]).norm() + sum(net.last_report.error_bound))
    True
    """

    def __init__(self, channels: int = 1, hidden: int = 16, kernel_size: int = 3, *, gamma: float = 1.0,
                 monotonicity: float = 0.5, leak: float = 0.0, pr_step: float | None = None, pad: int = 4,
                 tol: float = 1e-4, max_iter: int = 200, strict: bool = True, noise_knots=None):
        super().__init__()
        checks = [
            (channels >= 1 and hidden >= 1, f"need channels >= 1 and hidden >= 1; got {channels}, {hidden}"),
            (kernel_size >= 1 and kernel_size % 2 == 1, f"kernel_size must be odd and positive; got {kernel_size}"),
            (math.isfinite(gamma) and gamma > 0, f"gamma must be a positive finite number; got {gamma!r}"),
            (math.isfinite(monotonicity) and monotonicity > 0, f"monotonicity (the LMI margin m) must be > 0; got {monotonicity!r}"),
            (0 <= leak < 1, f"leak must lie in [0, 1) (the activation's slopes must lie in [0, 1]); got {leak!r}"),
            (pr_step is None or (math.isfinite(pr_step) and pr_step > 0), f"pr_step must be > 0 (or None: automatic); got {pr_step!r}"),
            (pad >= 0, f"pad must be >= 0; got {pad!r}"),
            (tol > 0 and max_iter >= 1, f"need tol > 0 and max_iter >= 1; got {tol!r}, {max_iter!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        c, n, k = int(channels), int(hidden), int(kernel_size)
        self.channels, self.hidden, self.kernel_size = c, n, k
        self.gamma, self.monotonicity, self.leak = float(gamma), float(monotonicity), float(leak)
        self.pr_step, self.pad, self.tol, self.max_iter, self.strict = pr_step and float(pr_step), int(pad), float(tol), int(max_iter), bool(strict)
        scale = 1.0 / math.sqrt(n * k * k)
        self.U = nn.Parameter(torch.randn(n, c, k, k) * scale)
        self.Wo = nn.Parameter(torch.randn(c, n, k, k) * scale)
        self.V = nn.Parameter(torch.randn(n, n, k, k) * scale)
        self.S = nn.Parameter(torch.randn(n, n, k, k) * scale * 0.1)
        #: log of Psi = Lambda^{-1}, one per hidden channel (Lambda > 0 for every value).
        self.log_psi = nn.Parameter(torch.zeros(n))
        #: Feed-through d = gamma tanh(raw), |d| < gamma by construction (raw clamped so that
        #: tanh never rounds to 1).
        self.d_raw = nn.Parameter(torch.full((c,), 0.5))
        self.bias = nn.Parameter(torch.zeros(n))
        self.out_bias = nn.Parameter(torch.zeros(c))
        self.conditioning = None
        if noise_knots is not None:
            from .conditioning import NoiseConditioning

            self.conditioning = NoiseConditioning(noise_knots, 1, n)
        self.config = dict(channels=c, hidden=n, kernel_size=k, gamma=self.gamma, monotonicity=self.monotonicity,
                           leak=self.leak, pr_step=self.pr_step, pad=self.pad, tol=self.tol, max_iter=self.max_iter)
        if noise_knots is not None:
            self.config["noise_knots"] = [float(v) for v in noise_knots]
        self._cache: _Operators | None = None
        self.last_report: EquilibriumReport | None = None
        #: Start an inference solve from the previous one on a batch of the same shape (not a
        #: configuration: the result changes only within the solver's tolerance).
        self.warm_start = True
        self._warm: tuple | None = None
        #: Per sample, the smallest error bound the last solve's precision could certify.
        self.last_rounding: list | None = None
        #: Frequencies per block when building inference operators (bounds the temporaries).
        self.build_block = 4096
        #: Refuse to build operators larger than this (bytes of the two kept n x n per-frequency
        #: tensors), with an error that says why, rather than exhaust the memory.
        self.max_operator_bytes = 8 * 2**30

    # -- parameters in their constrained form -------------------------------------------
    def feedthrough(self) -> torch.Tensor:
        """``d`` (one per image channel), ``|d| < gamma``."""
        return self.gamma * torch.tanh(self.d_raw.clamp(-8.0, 8.0))

    def lambdas(self) -> torch.Tensor:
        """The LMI's diagonal weights ``Lambda`` (one per hidden channel), positive."""
        return torch.exp(-self.log_psi)

    # -- operators ---------------------------------------------------------------------------
    def _symbols(self, size, dtype, *, full: bool = False, freqs: torch.Tensor | None = None):
        """Per-frequency ``U, W_o, V, S`` and the derived ``K = Lambda (I - W)``, ``R``, ``Q``.

        ``freqs``: indices into the flattened frequency list of ``conv_symbol`` (default: all);
        the symbols of a subset are summed over the kernel taps directly, so that the operators
        of a large image can be built a block of frequencies at a time."""
        cast = {"dtype": dtype}
        params = [p.to(**cast) for p in (self.U, self.Wo, self.V, self.S)]
        if freqs is None:
            U, Wo, V, S = (conv_symbol(p, size, full=full) for p in params)
        else:
            U, Wo, V, S = (_symbol_at(p, size, freqs, full=full) for p in params)
        lam = self.lambdas().to(**cast)
        d = self.feedthrough().to(**cast)
        g, m = self.gamma, self.monotonicity
        q = g - d * d / g  # (c,), positive since |d| < gamma
        WoH = Wo.mH
        R = lam[:, None].to(U.dtype) * U + WoH * (d / g).to(U.dtype)  # Lambda U + W_o^T D / gamma
        eye = torch.eye(self.hidden, dtype=U.dtype, device=U.device)
        H = WoH @ Wo / g + (R / q.to(U.dtype)) @ R.mH + V.mH @ V + m * eye
        K = H / 2 + S - S.mH
        return dict(U=U, Wo=Wo, R=R, q=q, K=K, lam=lam, d=d)

    def operator_bytes(self, size: tuple[int, int], dtype: torch.dtype = torch.float32) -> int:
        """Bytes of the per-frequency operators of the padded grid ``size`` (two complex
        ``hidden x hidden`` matrices per frequency); they grow with the pixels and ``hidden**2``.

        Examples
        --------
        >>> LBENNet(1, hidden=4).operator_bytes((10, 10))
        15360
        """
        item = 8 if dtype == torch.float32 else 16
        return 2 * size[0] * (size[1] // 2 + 1) * self.hidden**2 * item

    def _check_operator_memory(self, size, dtype) -> None:
        need = self.operator_bytes(size, dtype)
        if need > self.max_operator_bytes:
            H, W = size[0] - 2 * self.pad, size[1] - 2 * self.pad
            raise ValueError(f"an equilibrium solve on a {H}x{W} image needs {need / 2**30:.1f} GiB of per-frequency operators "
                             f"(hidden {self.hidden}); the limit is {self.max_operator_bytes / 2**30:.1f} GiB "
                             f"(net.max_operator_bytes). Denoise smaller tiles, or use a gradient-flow model for large images")

    def _param_version(self) -> tuple:
        return tuple((p.data_ptr(), p._version) for p in self.parameters())

    def operators(self, size: tuple[int, int], dtype: torch.dtype = torch.float32) -> _Operators:
        """The operators of the padded grid ``size``; cached while the weights do not change and
        no gradient is taken (inference), rebuilt (and differentiable) otherwise."""
        key = (tuple(size), dtype, self.U.device, self.pr_step, self._param_version())
        grad = torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters())
        if not grad and self._cache is not None and self._cache.key == key:
            return self._cache
        H, W = size
        F_count = H * (W // 2 + 1)
        self._check_operator_memory(size, dtype)
        s = torch.exp(self.log_psi.to(dtype) / 2)  # Lambda^{-1/2}
        device = self.U.device
        # In inference the operators are built a block of frequencies at a time into their final
        # tensors: the temporaries of one block (symbols, products) stay small, so the peak is
        # little above what is kept (building all at once peaked at about 4x that).  Training
        # grids are small and need the autograd graph: one block.
        block = F_count if grad else max(1, self.build_block)
        out = None
        for start in range(0, F_count, block):
            stop = min(start + block, F_count)
            freqs = None if block >= F_count else torch.arange(start, stop, device=device)
            sym = self._symbols(size, dtype, freqs=freqs)
            sc = s.to(sym["K"].dtype)
            parts = (sc[:, None] * sym["K"] * sc[None, :], (1 / sc)[:, None] * sym["U"], sym["Wo"] * sc[None, None, :])
            if block >= F_count:
                out = parts
                break
            if out is None:  # the final tensors, filled block by block
                out = tuple(torch.empty((F_count, *t.shape[1:]), dtype=t.dtype, device=t.device) for t in parts)
            for whole, part in zip(out, parts):
                whole[start:stop] = part
        Kt, Uz, Oz = out
        eye = torch.eye(self.hidden, dtype=Kt.dtype, device=Kt.device)
        with torch.no_grad():
            # Certified extremes of the operator on this grid, without per-frequency eigenvalue
            # problems: those took most of the build at photograph sizes (seconds per size on the
            # CPU) and, on CUDA, run one matrix at a time beyond 32 x 32 (they stalled hidden-64
            # training).  The DFT block-diagonalises K~; the largest Frobenius norm over the
            # frequencies bounds its norm from above (in float64; 1e-6 covers the sum's rounding),
            # and the construction bounds its monotonicity from below on every grid:
            # sym(K~) = Lambda^{-1/2} (H/2) Lambda^{-1/2} >= (m/2) min Lambda^{-1}.  The floor is
            # lowered by the rounding of the assembled K~ in its working precision (at most a few
            # units of n eps |K~|_F per entry block).
            lip = max(float(Kt[i:i + block].detach().abs().double().square().sum((-2, -1)).max())
                      for i in range(0, F_count, block)) ** 0.5 * (1 + 1e-6)
            eps = torch.finfo(Kt.real.dtype).eps
            mu = self.monotonicity / 2 * float(torch.exp(self.log_psi.detach().double()).min()) - 4 * self.hidden * eps * lip
            if mu <= 0:
                raise ValueError(f"the equilibrium operator's certified monotonicity is not positive in {Kt.real.dtype} "
                                 f"(margin m = {self.monotonicity} against a norm bound of {lip:.3g}); use float64 or a larger m")
        alpha = self.pr_step if self.pr_step is not None else 1 / math.sqrt(mu * lip)
        if grad:
            Minv = torch.linalg.inv(eye + alpha * Kt)
        else:
            Minv = torch.empty_like(Kt)
            for i in range(0, F_count, block):
                Minv[i:i + block] = torch.linalg.inv(eye + alpha * Kt[i:i + block])
        with torch.no_grad():
            G = (Oz @ Oz.mH).to(torch.complex128)  # (F, c, c): exact grid norm of W_o Lambda^{-1/2}
            out_norm = float(torch.linalg.eigvalsh(G)[:, -1].clamp_min(0).max().sqrt()) * (1 + 1e-6)
        ops = _Operators(tuple(size), Kt, Minv, Uz, Oz, 1 / s, out_norm, mu, lip, alpha, key)
        if not grad:
            self._cache = ops
        return ops

    def train(self, mode: bool = True):
        self._cache, self._warm = None, None
        return super().train(mode)

    # -- equilibrium -------------------------------------------------------------------------
    def _prox(self, u: torch.Tensor, alpha: float) -> torch.Tensor:
        """``prox_{alpha f}`` of the activation (``sigma = prox_f``: slope ``leak`` on negatives)."""
        a = self.leak
        return torch.where(u >= 0, u, u * (a / (a + alpha * (1 - a))))

    def _act(self, v: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(v, self.leak) if self.leak > 0 else F.relu(v)

    def _fourier(self, op: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        H, W = x.shape[-2:]
        xh = torch.fft.rfft2(x).flatten(-2)
        return torch.fft.irfft2(_apply(op, xh).unflatten(-1, (H, W // 2 + 1)), s=(H, W))

    def _solve(self, c: torch.Tensor, Minv: torch.Tensor, prox, alpha: float, u0: torch.Tensor | None = None,
               tol: float | None = None, max_iter: int | None = None):
        """Peaceman-Rachford on ``0 in K zeta - c + d f(zeta)``, with ``Minv = (I + alpha K)^{-1}``
        per frequency and ``prox = prox_{alpha f}``, from ``u0`` (default 0), until the relative
        change is below ``tol`` (default ``self.tol``) or ``max_iter`` (default ``self.max_iter``).
        Returns the iterate, per-sample iterations, last relative change and the splitting
        variable ``u``."""
        tol = self.tol if tol is None else tol
        max_iter = self.max_iter if max_iter is None else max_iter
        const = self._fourier(Minv, alpha * c)
        u = torch.zeros_like(c) if u0 is None else u0
        zeta = prox(u)
        B = c.shape[0]
        iterations = torch.full((B,), max_iter, dtype=torch.long)
        change = torch.full((B,), float("inf"), dtype=torch.float64)
        for it in range(1, max_iter + 1):
            u_half = 2 * zeta - u
            zeta_half = self._fourier(Minv, u_half) + const
            u = 2 * zeta_half - u_half
            new = prox(u)
            diff = (new - zeta).flatten(1).norm(dim=1).double()
            size = new.flatten(1).norm(dim=1).double().clamp_min(1e-30)
            change = (diff / size).cpu()
            zeta = new
            done = change <= tol
            iterations = torch.where(done & (iterations == max_iter), torch.tensor(it), iterations)
            if bool(done.all()):
                break
        return zeta, iterations, change, u

    def _output_bound(self, zeta: torch.Tensor, c: torch.Tensor, ops: _Operators) -> torch.Tensor:
        """Certified bound (per sample, float64, on the CPU) of the output error of one more step
        from ``zeta`` (module notes)."""
        return self._bound_from_residual(zeta - self._act(zeta - self._fourier(ops.K, zeta) + c), ops)

    def _bound_from_residual(self, r: torch.Tensor, ops: _Operators) -> torch.Tensor:
        """``|W_o Lambda^{-1/2}| |(I - K~) r| / mu`` per sample: the output error bound of the
        step whose fixed-point residual is ``r``."""
        K = ops.K.detach()
        return (r - self._fourier(K, r)).flatten(1).norm(dim=1).double().cpu() / ops.mu * ops.out_norm

    def _rounding_floor(self, zeta: torch.Tensor, ops: _Operators) -> torch.Tensor:
        """The smallest bound the working precision can certify (per sample): rounding of the
        iterate, amplified as the bound amplifies the residual."""
        eps = torch.finfo(zeta.dtype).eps
        size = zeta.flatten(1).norm(dim=1).double().cpu()
        return 16 * eps * size * (1 + ops.lipschitz) / ops.mu * ops.out_norm

    def _solve_to_bound(self, c: torch.Tensor, ops: _Operators, u0, atol: torch.Tensor, every: int = 5):
        """Iterate until every sample's certified output error is at most ``atol`` (or its
        rounding floor), checking every ``every`` iterations, at most ``max_iter`` in all."""
        prox = lambda w: self._prox(w, ops.alpha)  # noqa: E731
        done_its, u = 0, u0
        while True:
            chunk = min(every, self.max_iter - done_its)
            zeta, _, change, u = self._solve(c, ops.Minv, prox, ops.alpha, u, tol=0.0, max_iter=chunk)
            done_its += chunk
            met = self._output_bound(zeta, c, ops) <= torch.maximum(atol, self._rounding_floor(zeta, ops))
            if bool(met.all()) or done_its >= self.max_iter:
                its = torch.full((c.shape[0],), done_its, dtype=torch.long)
                return zeta, its, change, u, met

    def forward(self, x: torch.Tensor, sigma=None, *, atol=None) -> torch.Tensor:
        """Denoise ``x`` (B, C, H, W); ``sigma`` conditions the bias of a noise-conditioned model.

        ``atol`` (a float, or one per sample): solve until the *certified* output error bound is
        at most this (or the working precision's floor; ``last_report.error_bound`` has the
        bounds) instead of stopping on the relative change ``tol``."""
        check_image_batch(x)
        if x.shape[1] != self.channels:
            raise ValueError(f"this network takes {self.channels}-channel images; got {x.shape[1]} channels (shape {tuple(x.shape)})")
        if not bool(torch.isfinite(x).all()):
            raise ValueError("x contains NaN or Inf values")
        p = self.pad
        xp = F.pad(x, (p, p, p, p)) if p else x
        size = tuple(xp.shape[-2:])
        if min(size) < self.kernel_size:
            raise ValueError(f"the image ({tuple(x.shape[-2:])}) must be at least {self.kernel_size} pixels on each side")
        dtype = x.dtype
        ops = self.operators(size, dtype)
        b = self.bias.to(dtype)[None].expand(x.shape[0], -1)
        if self.conditioning is not None and sigma is not None:
            b = b + self.conditioning(sigma, x.shape[0])[0].to(dtype)
        sl = ops.sqrt_lam.to(dtype)
        c = self._fourier(ops.Uz, xp) + (sl[None] * b)[:, :, None, None]
        with torch.no_grad():
            # In inference, start from the last solve on a batch of this shape: consecutive PnP
            # iterations denoise nearby images, so few iterations remain.  Any start converges, and
            # the error bound below is computed from where the solve ends.
            warm_key = (tuple(c.shape), ops.key)
            u0 = self._warm[1] if self.warm_start and not self.training and self._warm is not None and self._warm[0] == warm_key else None
            if atol is None:
                zeta, iterations, change, u = self._solve(c.detach(), ops.Minv, lambda w: self._prox(w, ops.alpha), ops.alpha, u0)
                met = change <= self.tol
            else:
                target = torch.as_tensor(atol, dtype=torch.float64).reshape(-1).cpu().expand(x.shape[0])
                if not bool((target >= 0).all()):
                    raise ValueError(f"atol must be >= 0; got {atol!r}")
                zeta, iterations, change, u, met = self._solve_to_bound(c.detach(), ops, u0, target)
            self._warm = (warm_key, u) if self.warm_start and not self.training else None
        # One tracked step from the equilibrium: autograd reaches the weights and x through it.
        v = zeta - self._fourier(ops.K, zeta) + c
        zeta_out = self._act(v)
        with torch.no_grad():
            r = zeta - zeta_out
            error_bound = self._bound_from_residual(r, ops).tolist()
            self.last_rounding = self._rounding_floor(zeta, ops).tolist()
        if zeta_out.requires_grad:
            slope = torch.where(v.detach() > 0, torch.ones_like(v), torch.full_like(v, self.leak))
            zeta_out.register_hook(lambda g: self._backward(g, ops, slope))
        y = self._fourier(ops.Oz, zeta_out) + self.feedthrough().to(dtype)[None, :, None, None] * xp \
            + self.out_bias.to(dtype)[None, :, None, None]
        converged = met.tolist()
        self.last_report = EquilibriumReport(iterations.tolist(), change.tolist(), converged, error_bound)
        if not all(converged):
            goal = f"relative change {max(change.tolist()):.2e} > tol={self.tol:g}" if atol is None else \
                f"certified error above atol={float(torch.as_tensor(atol).max()):.3g}"
            message = (f"the equilibrium solve stopped at max_iter={self.max_iter} with {goal}; "
                       f"certified output error up to {max(error_bound):.2e}")
            if self.strict and not self.training:
                raise EquilibriumNotReached(message + " (raise max_iter, or strict=False to accept the bound)")
            warnings.warn(message, RuntimeWarning, stacklevel=2)
        return y[..., p : y.shape[-2] - p, p : y.shape[-1] - p] if p else y

    def _backward(self, g: torch.Tensor, ops: _Operators, slope: torch.Tensor) -> torch.Tensor:
        """``(I - J_f^T)^{-1} g`` with ``J_f = diag(J) (I - K~)``: solve ``u = J ((I - K~^T) u + g)``
        by the same splitting, return ``g + (I - K~^T) u``."""
        with torch.no_grad():
            KT = ops.K.detach().mH  # K~^T per frequency
            # 0 in K~^T u - g + d f_J(u), with f_J(u) = (1/J - 1) u^2 / 2 (J = 0: u = 0), whose
            # prox with step alpha is u J / (J + alpha (1 - J)); (I + alpha K~^T)^{-1} = Minv^H.
            factor = slope / (slope + ops.alpha * (1 - slope))
            u = self._solve(g, ops.Minv.detach().mH, lambda w: w * factor, ops.alpha)[0]
            return g + u - self._fourier(KT, u)

    # -- certificate ---------------------------------------------------------------------------
    def certified_lipschitz(self) -> float:
        """``gamma``, after checking in float64 the preconditions of the construction
        (``m > 0``, ``Lambda > 0`` and finite, ``|d| < gamma``, finite weights)."""
        with torch.no_grad():
            lam = torch.exp(-self.log_psi.detach().double())
            d = self.gamma * torch.tanh(self.d_raw.detach().double().clamp(-8.0, 8.0))
            finite = all(bool(torch.isfinite(p).all()) for p in self.parameters())
        if not finite or not bool((lam > 0).all()) or not bool(torch.isfinite(lam).all()):
            raise ValueError("the LBEN weights hold NaN/Inf or a non-positive Lambda: no certificate")
        if not bool((d.abs() < self.gamma).all()):
            raise ValueError(f"the feed-through |d| = {d.abs().max():.6g} reached gamma = {self.gamma}: no certificate")
        return self.gamma

    def certified_alpha(self) -> float:
        """Averagedness of the exact equilibrium map: ``(1 + gamma) / 2`` for ``gamma <= 1``
        (1.0: non-expansive only, when ``gamma = 1``)."""
        g = self.certified_lipschitz()
        return 1.0 if g >= 1 else (1 + g) / 2

    def certificate(self, grid: int = 16) -> dict:
        """Float64 check of the LMI on a ``grid x grid`` frequency grid.

        Returns the smallest eigenvalue of the LMI matrix and of its Schur complement (which the
        construction makes ``V^T V + m I``, so at least ``m``), over the grid; raises
        ``ValueError`` if either falls below what the construction guarantees (a bug).

        Examples
        --------
        >>> cert = LBENNet(1, hidden=4).certificate(grid=8)
        >>> cert["gamma"], cert["schur_min_eig"] >= cert["monotonicity"] * (1 - 1e-9), cert["lmi_min_eig"] > 0
        (1.0, True, True)
        """
        gamma = self.certified_lipschitz()
        if grid < self.kernel_size:
            raise ValueError(f"grid must be at least the kernel size {self.kernel_size}; got {grid}")
        with torch.no_grad():
            sym = self._symbols((grid, grid), torch.float64, full=True)
            K, Wo, R, q = sym["K"], sym["Wo"], sym["R"], sym["q"].to(torch.complex128)
            n, c = self.hidden, self.channels
            top = torch.cat([K + K.mH - Wo.mH @ Wo / gamma, -R], dim=2)
            bottom = torch.cat([-R.mH, torch.diag_embed(q).expand(K.shape[0], c, c)], dim=2)
            L = torch.cat([top, bottom], dim=1)
            lmi = float(torch.linalg.eigvalsh((L + L.mH) / 2)[:, 0].min())
            schur = (K + K.mH - Wo.mH @ Wo / gamma) - (R / q) @ R.mH
            schur_min = float(torch.linalg.eigvalsh((schur + schur.mH) / 2)[:, 0].min())
            scale = float(max(torch.linalg.matrix_norm(schur, ord=2).max(), 1.0))
        m = self.monotonicity
        if schur_min < m - _LMI_ROUNDING * scale or not lmi > 0:
            raise ValueError(f"LMI check failed: Schur complement min eigenvalue {schur_min:.3e} (construction: >= m = {m}), "
                             f"LMI min eigenvalue {lmi:.3e}")
        return {"gamma": gamma, "monotonicity": m, "lmi_grid": grid, "lmi_min_eig": lmi, "schur_min_eig": schur_min,
                "lambda_min": float(torch.exp(-self.log_psi.detach().double()).min()),
                "lambda_max": float(torch.exp(-self.log_psi.detach().double()).max()),
                "feedthrough": [float(v) for v in self.feedthrough().detach().double()]}


class LBENDenoiser(Denoiser, CertifiedDenoiser):
    """A PnP denoiser ``(1 - theta) I + theta N`` with ``N`` an :class:`LBENNet`.

    With ``gamma <= 1`` the network is ``(1 + gamma) / 2``-averaged (non-expansive at
    ``gamma = 1``), so the denoiser is ``theta (1 + gamma) / 2``-averaged: ``theta = 1/2`` and
    ``gamma = 1`` give a firmly non-expansive denoiser (PnP-ADMM), any ``theta < 1`` an averaged
    one (PnP-FBS).  ``forward(x, sigma)`` follows deepinv's contract; ``sigma`` conditions the
    bias of a noise-conditioned network and is ignored otherwise.

    Examples
    --------
    >>> d = LBENDenoiser(LBENNet(1, hidden=4), theta=0.5).eval()
    >>> d.certified_alpha()
    0.5
    >>> d(torch.rand(1, 1, 10, 10), 0.1).shape
    torch.Size([1, 1, 10, 10])
    """

    def __init__(self, net: LBENNet | None = None, *, theta: float = 0.99, target_alpha: float | None = None):
        super().__init__()
        if not (0 < theta <= 1):
            raise ValueError(f"theta must lie in (0, 1]; got {theta!r}")
        if target_alpha is not None and not (0 < target_alpha < 1):
            raise ValueError(f"target_alpha must lie in (0, 1); got {target_alpha!r}")
        self.net = net if net is not None else LBENNet()
        self.theta = float(theta)
        # Not part of the weights file: a caller's request (e.g. PnP-ADMM's 1/2), as for AveragedDenoiser.
        self.target_alpha = target_alpha
        #: In denoise_within, finish in float64 the float32 solves whose certified error cannot
        #: reach the demanded accuracy (their rounding floor is above it).
        self.escalate_precision = True

    def effective_theta(self) -> float:
        """The relaxation used: ``theta``, lowered to reach ``target_alpha`` if one is set.

        Examples
        --------
        >>> d = LBENDenoiser(LBENNet(1, hidden=4), theta=0.99, target_alpha=0.5)
        >>> d.effective_theta(), d.certified_alpha()
        (0.5, 0.5)
        """
        if self.target_alpha is None:
            return self.theta
        return min(self.theta, self.target_alpha / self.net.certified_alpha())

    def forward(self, x: torch.Tensor, sigma=None, **kwargs) -> torch.Tensor:
        out = self.net(x, sigma)
        t = self.effective_theta()
        return out if t == 1.0 else (1 - t) * x + t * out

    def denoise_within(self, x: torch.Tensor, sigma, atol) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Denoise with a certified accuracy: ``(D x, error bound, rounding floor)`` per sample,
        the bound at most ``atol`` unless the working precision's floor is larger.

        The PnP solvers use it to run their inexact-evaluation schedule (summable errors keep
        the Krasnosel'skii-Mann guarantee; :mod:`pnp_stable.fixed_point`).

        Examples
        --------
        >>> d = LBENDenoiser(LBENNet(1, hidden=4), theta=0.5).eval()
        >>> y, bound, floor = d.denoise_within(torch.rand(2, 1, 12, 12), 0.1, 1e-3)
        >>> bool((bound <= torch.clamp(floor, min=1e-3)).all())
        True
        """
        t = self.effective_theta()
        atol_net = torch.as_tensor(atol, dtype=torch.float64).reshape(-1).expand(x.shape[0]) / t
        out = self.net(x, sigma, atol=atol_net)
        bound_net = torch.tensor(self.net.last_report.error_bound, dtype=torch.float64)
        floor_net = torch.tensor(self.net.last_rounding, dtype=torch.float64)
        short = bound_net > atol_net
        y = out if t == 1.0 else (1 - t) * x + t * out
        bound, floor = t * bound_net, t * floor_net
        if self.escalate_precision and x.dtype == torch.float32 and bool(short.any()):
            # float32 cannot certify below its rounding floor, and late PnP iterations ask for
            # less: finish those samples in float64 (a float64 copy of the network, kept while
            # the weights do not change), relax in float64, then round back.  The rounding to
            # float32 is added to the bound, so the reported error stays an upper bound.
            idx = torch.nonzero(short).flatten()
            sig = sigma[idx.to(sigma.device)] if isinstance(sigma, torch.Tensor) and sigma.numel() > 1 else sigma
            x64 = x[idx].double()
            net64 = self._float64_net()
            out64 = net64(x64, sig, atol=atol_net[idx])
            y64 = out64 if t == 1.0 else (1 - t) * x64 + t * out64
            rounded = y64.float()
            cast = (rounded.double() - y64).flatten(1).norm(dim=1).detach().cpu()
            y = y.clone()
            y[idx] = rounded
            bound[idx] = t * torch.tensor(net64.last_report.error_bound, dtype=torch.float64) + cast
            floor[idx] = t * torch.tensor(net64.last_rounding, dtype=torch.float64) + cast
        return y, bound, floor

    def _float64_net(self) -> LBENNet:
        # Kept in __dict__, not as a submodule: it must stay out of state_dict and the weights file.
        key = (self.net._param_version(), self.net.U.device)
        if self.__dict__.get("_net64_key") != key:
            import copy

            net64 = copy.deepcopy(self.net).double().eval()
            net64._cache, net64._warm = None, None
            self.__dict__["_net64"], self.__dict__["_net64_key"] = net64, key
        return self.__dict__["_net64"]

    @property
    def channels(self) -> int:
        return self.net.channels

    @property
    def last_report(self) -> EquilibriumReport | None:
        """The network's report of its last equilibrium solve."""
        return self.net.last_report

    def certified_alpha(self) -> float:
        return self.effective_theta() * self.net.certified_alpha()

    def certified_part(self, grid: int = 16) -> Certificate:
        """``gamma`` by construction, the float64 LMI check on a ``grid x grid`` frequency grid,
        and the relaxation: Lipschitz ``1 - theta + theta gamma``, alpha ``theta (1 + gamma) / 2``."""
        lmi = self.net.certificate(grid=max(grid, self.net.kernel_size))
        t = self.effective_theta()
        lip = 1 - t + t * lmi["gamma"]
        method = ("LBEN with feed-through: the LMI's Schur complement is V^T V + m I by construction for every parameter "
                  "value and every frequency (so every image size), hence gamma-Lipschitz at the exact equilibrium; "
                  "checked in float64 on a frequency grid; (1 - theta) I + theta N is theta (1 + gamma) / 2-averaged; "
                  "a truncated solve adds its certified error bound (EquilibriumReport.error_bound)")
        return Certificate(lipschitz_bound=lip, alpha=self.certified_alpha(), theta=t, layers=[], method=method,
                           details=lmi)

    def probe_levels(self) -> list:
        cond = self.net.conditioning
        return [None] if cond is None else [None, float(cond.knots[-1])]

    def tighten_for_probing(self) -> None:
        """Solve to near machine precision, so the probes see the exact equilibrium map."""
        self.net.tol, self.net.max_iter, self.net.strict = 1e-12, 20000, True
