"""Blur then keep one pixel in ``factor`` along each axis (super-resolution forward model)."""

from __future__ import annotations

import math

import torch

from ._checks import check_image_batch, check_shape4
from .base import ROUNDING_ALLOWANCE, LinearOperator, OperatorNorm
from .blur import BOUNDARIES, Blur
from .functional import transfer_function

__all__ = ["Downsampling"]


class Downsampling(LinearOperator):
    r"""``A x = S (k * x)``: anti-aliasing blur, then decimation by ``factor``.

    Inputs are (B, C, H, W) with H and W multiples of ``factor``; outputs are
    (B, C, H / factor, W / factor).

    Parameters
    ----------
    factor : int
        Decimation factor (>= 1).
    kernel : array_like or str, optional
        Anti-aliasing kernel; default a Gaussian of standard deviation ``factor / 2``.
    boundary : str
        Boundary of the blur (see :class:`~operators.Blur`).
    noise_model, prox_tol, prox_max_iter
        As for :class:`~operators.Blur`.

    Notes
    -----
    With a circular boundary, :math:`S C C^\top S^\top` is a circulant on the coarse grid
    whose symbol is the alias sum :math:`d(m) = f^{-2} \sum_l |\hat k(m + l H/f)|^2`.
    This gives the exact norm :math:`\sqrt{\max_m d(m)}` and, by the Woodbury identity, a
    closed-form prox.  Other boundaries use PCG preconditioned by that circular solve, and
    the norm bound of the blur (decimation has norm 1).

    Examples
    --------
    >>> import torch
    >>> op = Downsampling(2)
    >>> op(torch.rand(1, 3, 32, 32)).shape
    torch.Size([1, 3, 16, 16])
    """

    def __init__(self, factor: int, kernel=None, boundary: str = "circular", *, noise_model=None,
                 prox_tol: float = 1e-6, prox_max_iter: int = 100):
        super().__init__(noise_model=noise_model, prox_tol=prox_tol, prox_max_iter=prox_max_iter)
        if isinstance(factor, bool) or not float(factor).is_integer() or factor < 1:
            raise ValueError(f"factor must be a positive integer; got {factor!r}")
        self.factor = int(factor)
        if boundary not in BOUNDARIES:
            raise ValueError(f"Downsampling supports the boundaries {', '.join(BOUNDARIES)}; got {boundary!r} "
                             "(the unknown-boundary model is available for Blur only)")
        if kernel is None:
            kernel = f"gaussian:{self.factor / 2}" if self.factor > 1 else [[1.0]]
        self.blur = Blur(kernel, boundary=boundary)
        self._symbols: dict = {}

    @property
    def boundary(self) -> str:
        return self.blur.boundary

    def extra_repr(self) -> str:
        return f"factor={self.factor}"

    def _check(self, x: torch.Tensor) -> None:
        check_image_batch(x)
        H, W = x.shape[-2:]
        if H % self.factor or W % self.factor:
            raise ValueError(f"image size {H}x{W} is not a multiple of the factor {self.factor}; crop or pad the image")

    def A(self, x: torch.Tensor, **kwargs) -> torch.Tensor:
        self._check(x)
        f = self.factor
        return self.blur.A(x)[..., ::f, ::f]

    def _upsample_zeros(self, y: torch.Tensor) -> torch.Tensor:
        f = self.factor
        up = y.new_zeros(*y.shape[:-2], y.shape[-2] * f, y.shape[-1] * f)
        up[..., ::f, ::f] = y
        return up

    def A_adjoint(self, y: torch.Tensor, **kwargs) -> torch.Tensor:
        check_image_batch(y, "y")
        return self.blur.A_adjoint(self._upsample_zeros(y))

    def initial_estimate(self, y: torch.Tensor) -> torch.Tensor:
        """A start on the fine grid: ``y`` interpolated bicubically.

        ``A^T y`` is zero off the sampled pixels and darker by ``factor**2`` on average, a
        poor start for a solver.  Coarse pixel ``i`` is fine pixel ``factor * i`` (what
        :meth:`A` keeps), so the interpolation puts it there, and the last ``factor - 1`` rows
        and columns repeat the edge.

        Examples
        --------
        >>> import torch
        >>> op = Downsampling(2)
        >>> y = torch.rand(1, 1, 4, 4)
        >>> x0 = op.initial_estimate(y)
        >>> x0.shape, torch.allclose(x0[..., ::2, ::2], y)
        (torch.Size([1, 1, 8, 8]), True)
        """
        check_image_batch(y, "y")
        f = self.factor
        if f == 1:
            return y.clone()
        H, W = y.shape[-2:]
        size = (f * (H - 1) + 1, f * (W - 1) + 1)
        fine = torch.nn.functional.interpolate(y, size=size, mode="bicubic", align_corners=True)
        return torch.nn.functional.pad(fine, (0, f - 1, 0, f - 1), mode="replicate")

    # -- circular closed forms -------------------------------------------------------
    def _alias_symbol(self, grid: tuple[int, int], dtype, device) -> torch.Tensor:
        """Symbol ``d`` of ``S C C^T S^T`` on the coarse grid (full FFT layout)."""
        key = (tuple(grid), dtype, torch.device(device))
        d = self._symbols.get(key)
        if d is None:
            H, W = grid
            f = self.factor
            K = transfer_function(self.blur.kernel.to(device=device, dtype=dtype), (H, W), real=False)
            power = (K.real**2 + K.imag**2).reshape(f, H // f, f, W // f)
            d = power.sum(dim=(0, 2)) / f**2
            self._symbols[key] = d
        return d

    def _circular_solve(self, b: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
        """``(gamma A_c^T A_c + I)^{-1} b`` by Woodbury, for the circular version of ``A``."""
        f = self.factor
        circ = self.blur if self.boundary == "circular" else Blur(self.blur.kernel, "circular")
        d = self._alias_symbol(b.shape[-2:], b.dtype, b.device)
        coarse = circ.A(b)[..., ::f, ::f]
        coarse = torch.fft.ifft2(torch.fft.fft2(coarse) / (1 + gamma * d)).real
        return b - gamma * circ.A_adjoint(self._upsample_zeros(coarse))

    def _prox_preconditioner(self, z, gamma):
        return lambda r: self._circular_solve(r, gamma)

    @property
    def iterative_prox(self) -> bool:
        """False for the circular closed form."""
        return self.boundary != "circular"

    def prox_l2_info(self, z, y, gamma, **kwargs):
        r"""Prox of :math:`\tfrac{\gamma}{2}\|Ax-y\|^2`: closed form for circular, PCG otherwise.

        Examples
        --------
        >>> import torch
        >>> op = Downsampling(2)
        >>> x, info = op.prox_l2_info(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 4, 4), 1.0)
        >>> x.abs().max().item(), info["method"]
        (0.0, 'closed form')
        """
        if self.boundary != "circular":
            return super().prox_l2_info(z, y, gamma, **kwargs)
        self._check(z)
        g = self._gamma(gamma, z)
        return self.closed_form(self._circular_solve(g * self.A_adjoint(y) + z, g))

    def norm_certificate(self, in_shape=None) -> OperatorNorm | None:
        """Exact on a given grid for circular boundaries; otherwise the blur's bound.

        Examples
        --------
        >>> Downsampling(2).norm_certificate((1, 1, 16, 16)).kind
        'exact'
        """
        if self.boundary == "circular" and in_shape is not None:
            shape = check_shape4(in_shape)
            H, W = shape[-2:]
            if H % self.factor or W % self.factor:
                raise ValueError(f"in_shape {H}x{W} is not a multiple of the factor {self.factor}")
            d = self._alias_symbol((H, W), torch.float64, "cpu")
            value = math.sqrt(float(d.max())) * (1 + ROUNDING_ALLOWANCE)
            return OperatorNorm(value, "exact", f"alias-sum symbol on the {H}x{W} grid", shape)
        blur = self.blur.norm_certificate(in_shape)
        if blur is None:
            return None
        return OperatorNorm(blur.value, "upper_bound", f"||decimation|| = 1 times the blur's bound ({blur.method})", blur.in_shape)
