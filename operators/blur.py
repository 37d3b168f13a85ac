"""Convolution blur with a choice of boundary condition, exact adjoints and certified norms."""

from __future__ import annotations

import numpy as np
import torch

from . import kernels as _kernels
from ._checks import check_image_batch, check_shape4
from .base import ROUNDING_ALLOWANCE, LinearOperator, OperatorNorm
from .functional import PAD_MODES, collatz_wielandt_bound, fft_conv, next_fast_len, pad, pad_adjoint, transfer_function

__all__ = ["Blur", "BOUNDARIES", "BLUR_BOUNDARIES", "UNKNOWN"]

#: Boundary rules under which the blurred image has the shape of the sharp one (a periodic
#: image, or one extended by a padding rule); :class:`Downsampling` accepts these.
BOUNDARIES = ("circular",) + tuple(PAD_MODES)

#: The unknown-boundary model: no rule is assumed outside the frame; the sharp image lives on
#: a domain larger than the observation by the kernel's reach, and only the "valid" part of its
#: blur is observed (Reeves 2005; Almeida and Figueiredo 2013).
UNKNOWN = "unknown"

#: Every ``boundary`` that :class:`Blur` accepts.
BLUR_BOUNDARIES = BOUNDARIES + (UNKNOWN,)


def _as_kernel(kernel) -> np.ndarray:
    """Accept a kernel array or a spec string (``"gaussian:1.6"``) and validate it."""
    return _kernels.parse(kernel) if isinstance(kernel, str) else _kernels.validate(kernel)


class Blur(LinearOperator):
    r"""Blur by a convolution kernel, the same kernel on every channel.

    ``A x = k * x`` on images of shape (B, C, H, W), any size at least the kernel's.

    * ``boundary="circular"``: periodic image, computed by FFT.  The prox of the data term
      has a closed form and the norm is exact.
    * ``"symmetric"``, ``"reflect"``, ``"replicate"``, ``"zero"``: the image is extended
      beyond its border (half-sample mirror, whole-sample mirror, edge copy, zeros), blurred,
      and cropped back to H x W (no wrap-around ringing).  The adjoint is exact.  The prox
      has a closed form for ``"symmetric"`` with an axis-symmetric kernel (Gaussian, box,
      disk); otherwise it runs conjugate gradients preconditioned by the circular solve, which
      differs from the true one only near the border (pass ``init=`` to warm-start it).
    * ``"unknown"``: no rule at all.  A photograph's scene goes on beyond its frame, and the
      pixels near the border were blurred from pixels nobody recorded.  The sharp image ``x``
      therefore lives on a domain larger than the observation by the kernel's reach ``p`` on
      every side, ``(H + 2p) x (W + 2p)`` for an ``H x W`` observation, and ``A`` keeps only the
      *valid* part of the blur (``scipy.signal.convolve2d(x, k, mode="valid")``).  Solvers
      recover ``x`` on the extended domain; :meth:`observed_region` crops it back to the
      observation's frame.  The prox runs PCG; :meth:`initial_estimate` starts solvers from the
      observation mirrored outwards (``A^T y`` would be dark near the border).

    Parameters
    ----------
    kernel : array_like or str
        2-D non-negative kernel (normalised to sum 1 with a warning if needed; see
        :mod:`operators.kernels` for the centring rule), or a spec such as ``"levin:3"``.
    boundary : str
        One of ``"circular"``, ``"zero"``, ``"replicate"``, ``"reflect"``, ``"symmetric"``,
        ``"unknown"``.
    noise_model : deepinv.physics.NoiseModel, optional
        Noise added by ``forward``.
    prox_tol, prox_max_iter
        Stopping rule of the iterative prox (non-circular boundaries).

    Notes
    -----
    Certified norms (:meth:`norm_certificate`), all for non-negative kernels summing to 1:

    * circular: exactly :math:`\max_\omega |\hat k(\omega)| = \sum k = 1` on every grid;
    * symmetric boundary and a kernel symmetric in each axis: the operator is diagonalised
      by the DCT-II (Ng, Chan and Tang, 1999), so the norm is exactly 1 (the constant image
      attains it);
    * zero and unknown boundaries: a restriction of a circular convolution on a larger grid,
      so at most 1 for every size (and, for zero, the bound below for a given size);
    * otherwise, for a given image size (zero, replicate, reflect, symmetric with an asymmetric kernel): ``A`` is
      entrywise non-negative, so :math:`\|A\|^2 = \rho(A^\top A) \le \max_i (A^\top A w)_i / w_i`
      for every positive ``w`` (Collatz-Wielandt); power steps from ``w = 1`` tighten it to
      the true norm.  The first step is Schur's test.  It holds for the given image size.

    Examples
    --------
    >>> import torch
    >>> op = Blur("gaussian:1.0", boundary="symmetric")
    >>> y = op(torch.rand(2, 3, 32, 32))
    >>> y.shape
    torch.Size([2, 3, 32, 32])
    >>> op.norm_certificate().value <= 1 + 1e-9
    True

    With an unknown boundary the sharp image is larger than the observation:

    >>> op = Blur("box:5", boundary="unknown")
    >>> op.A(torch.rand(1, 1, 36, 36)).shape, op.A_adjoint(torch.rand(1, 1, 32, 32)).shape
    (torch.Size([1, 1, 32, 32]), torch.Size([1, 1, 36, 36]))
    """

    def __init__(
        self,
        kernel,
        boundary: str = "circular",
        *,
        noise_model=None,
        prox_tol: float = 1e-6,
        prox_max_iter: int = 100,
    ):
        super().__init__(noise_model=noise_model, prox_tol=prox_tol, prox_max_iter=prox_max_iter)
        if boundary not in BLUR_BOUNDARIES:
            raise ValueError(f"unknown boundary {boundary!r}; choose one of {', '.join(BLUR_BOUNDARIES)}")
        self.boundary = boundary
        self.register_buffer("kernel", torch.from_numpy(_as_kernel(kernel)))
        # Frequency responses depend only on (grid, dtype, device): derived data, not state.
        self._responses: dict = {}

    # -- helpers ---------------------------------------------------------------------------
    @property
    def radius(self) -> int:
        """Half the kernel side: how far the blur reaches from a pixel."""
        return self.kernel.shape[-1] // 2

    @property
    def extends_domain(self) -> bool:
        """True for the unknown-boundary model, whose sharp image is larger than the observation."""
        return self.boundary == UNKNOWN

    def input_shape(self, observed_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of the sharp image that an observation of ``observed_shape`` comes from.

        Examples
        --------
        >>> Blur("box:5", boundary="unknown").input_shape((1, 3, 32, 40))
        (1, 3, 36, 44)
        >>> Blur("box:5").input_shape((1, 3, 32, 40))
        (1, 3, 32, 40)
        """
        shape = tuple(int(s) for s in observed_shape)
        if not self.extends_domain:
            return shape
        e = 2 * self.radius
        return shape[:-2] + (shape[-2] + e, shape[-1] + e)

    def observed_region(self, x: torch.Tensor) -> torch.Tensor:
        """The part of a sharp image that lies in the observation's frame (a view).

        For the unknown-boundary model this crops the kernel's reach off every side; for the
        other boundaries it is ``x`` itself.

        Examples
        --------
        >>> import torch
        >>> Blur("box:5", boundary="unknown").observed_region(torch.zeros(1, 1, 36, 36)).shape
        torch.Size([1, 1, 32, 32])
        """
        if not self.extends_domain:
            return x
        p = self.radius
        return x[..., p : x.shape[-2] - p, p : x.shape[-1] - p]

    def initial_estimate(self, y: torch.Tensor) -> torch.Tensor:
        """A start for iterative solvers on the sharp image's domain.

        ``A^T y`` for the boundaries that keep the shape.  For the unknown boundary ``A^T y``
        fades to zero over the kernel's reach (border pixels are seen by few observations), so
        the start is the observation extended outwards by a half-sample mirror.

        Examples
        --------
        >>> import torch
        >>> op = Blur("box:3", boundary="unknown")
        >>> op.initial_estimate(torch.ones(1, 1, 8, 8)).min().item()  # no dark border
        1.0
        """
        if not self.extends_domain:
            return self.A_adjoint(y)
        self._check_observation(y, "y")
        p = self.radius
        return pad(y, (p, p, p, p), "symmetric")

    @property
    def axis_symmetric(self) -> bool:
        """True when the kernel is unchanged by flipping either axis (Gaussian, box, disk...)."""
        k = self.kernel
        return bool(torch.equal(k, k.flip(0))) and bool(torch.equal(k, k.flip(1)))

    def extra_repr(self) -> str:
        k = self.kernel.shape[-1]
        return f"kernel={k}x{k}, boundary={self.boundary!r}"

    def _check(self, x: torch.Tensor, name: str = "x") -> None:
        """Check an image on the sharp image's domain."""
        if not self.extends_domain:
            return self._check_observation(x, name)
        check_image_batch(x, name)
        k = self.kernel.shape[-1]
        H, W = x.shape[-2:]
        if k > H - 2 * self.radius or k > W - 2 * self.radius:
            raise ValueError(
                f"the blur kernel ({k}x{k}) is larger than the image: with boundary='unknown' the sharp "
                f"image {name} ({H}x{W}) is the observation extended by {self.radius} pixels on every side, "
                f"so it must be at least {2 * k - 1}x{2 * k - 1} (an observation at least {k}x{k})"
            )

    def _check_observation(self, y: torch.Tensor, name: str = "y") -> None:
        """Check an image on the observation's domain (for shape-keeping boundaries, both domains)."""
        check_image_batch(y, name)
        k = self.kernel.shape[-1]
        H, W = y.shape[-2:]
        if k > H or k > W:
            raise ValueError(
                f"the blur kernel ({k}x{k}) is larger than the image ({H}x{W}); "
                "use a smaller kernel or a larger image"
            )

    def response(self, grid: tuple[int, int], dtype: torch.dtype, device) -> torch.Tensor:
        """``rfft2`` frequency response of the kernel on a circular ``grid``, cached.

        Examples
        --------
        >>> import torch
        >>> Blur("box:3").response((8, 8), torch.float64, "cpu").shape
        torch.Size([8, 5])
        """
        key = (tuple(grid), dtype, torch.device(device))
        K = self._responses.get(key)
        if K is None:
            K = transfer_function(self.kernel.to(device=device, dtype=dtype), tuple(grid))
            self._responses[key] = K
        return K

    def _padded_grid(self, H: int, W: int) -> tuple[int, int]:
        p = self.radius
        return next_fast_len(H + 2 * p), next_fast_len(W + 2 * p)

    # -- the operator ------------------------------------------------------------------------
    def A(self, x: torch.Tensor, **kwargs) -> torch.Tensor:
        """Blur ``x`` of shape (B, C, H, W)."""
        self._check(x)
        H, W = x.shape[-2:]
        if self.boundary == "circular":
            return fft_conv(x, self.response((H, W), x.dtype, x.device))
        p = self.radius
        if self.extends_domain:
            # The valid part of a convolution never reaches across the border, so a circular
            # convolution on any grid at least as large as x gives it exactly.
            Nh, Nw = next_fast_len(H), next_fast_len(W)
            u = torch.nn.functional.pad(x, (0, Nw - W, 0, Nh - H))
            v = fft_conv(u, self.response((Nh, Nw), x.dtype, x.device))
            return v[..., p : H - p, p : W - p]
        u = pad(x, (p, p, p, p), self.boundary)
        Nh, Nw = self._padded_grid(H, W)
        u = torch.nn.functional.pad(u, (0, Nw - u.shape[-1], 0, Nh - u.shape[-2]))
        v = fft_conv(u, self.response((Nh, Nw), x.dtype, x.device))
        return v[..., p : p + H, p : p + W]

    def A_adjoint(self, y: torch.Tensor, **kwargs) -> torch.Tensor:
        """Exact adjoint of :meth:`A`."""
        self._check_observation(y, "y")
        H, W = y.shape[-2:]
        if self.boundary == "circular":
            return fft_conv(y, self.response((H, W), y.dtype, y.device), adjoint=True)
        p = self.radius
        Nh, Nw = self._padded_grid(H, W)
        if self.extends_domain:
            # Zero-fill y into the extended frame and correlate: the full correlation, whose
            # support (H + 2p) x (W + 2p) fits the grid without wrapping.
            z = torch.nn.functional.pad(y, (p, Nw - W - p, p, Nh - H - p))
            w = fft_conv(z, self.response((Nh, Nw), y.dtype, y.device), adjoint=True)
            return w[..., : H + 2 * p, : W + 2 * p]
        z = torch.nn.functional.pad(y, (p, Nw - W - p, p, Nh - H - p))
        w = fft_conv(z, self.response((Nh, Nw), y.dtype, y.device), adjoint=True)
        return pad_adjoint(w[..., : H + 2 * p, : W + 2 * p], (p, p, p, p), self.boundary)

    def A_adjoint_A(self, x: torch.Tensor, **kwargs) -> torch.Tensor:
        if self.boundary == "circular":
            self._check(x)
            K = self.response(x.shape[-2:], x.dtype, x.device)
            X = torch.fft.rfft2(x) * (K.real**2 + K.imag**2)
            return torch.fft.irfft2(X, s=x.shape[-2:])
        return self.A_adjoint(self.A(x))

    # -- prox ----------------------------------------------------------------------------------
    def _circular_solve(self, b: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
        """``(gamma A_c^T A_c + I)^{-1} b`` for the circular version ``A_c`` of this blur."""
        K = self.response(b.shape[-2:], b.dtype, b.device)
        B = torch.fft.rfft2(b) / (gamma * (K.real**2 + K.imag**2) + 1)
        return torch.fft.irfft2(B, s=b.shape[-2:])

    def _mirror_solve(self, b: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
        """Exact ``(gamma A^T A + I)^{-1} b`` for a symmetric boundary and an axis-symmetric kernel.

        Then ``A`` is the circular blur of the mirrored 2H x 2W image restricted to one
        quadrant, and the circular blur maps mirror-symmetric images to mirror-symmetric
        ones, so the circular solve on the mirrored grid, cropped, is the solution.
        """
        e = torch.cat([b, b.flip(-2)], -2)
        e = torch.cat([e, e.flip(-1)], -1)
        return self._circular_solve(e, gamma)[..., : b.shape[-2], : b.shape[-1]]

    def _prox_preconditioner(self, z, gamma):
        return lambda r: self._circular_solve(r, gamma)

    @property
    def iterative_prox(self) -> bool:
        """False for the closed forms (circular; symmetric with an axis-symmetric kernel)."""
        return not (self.boundary == "circular" or (self.boundary == "symmetric" and self.axis_symmetric))

    def prox_l2_info(self, z, y, gamma, **kwargs):
        r"""Prox of :math:`\tfrac{\gamma}{2}\|Ax-y\|^2` and how it was computed.

        Closed form for circular boundaries and for a symmetric boundary with an
        axis-symmetric kernel; otherwise PCG preconditioned by the circular solve, which
        takes ``init=`` as a warm start (a PnP loop passes its previous iterate).

        Examples
        --------
        >>> import torch
        >>> op = Blur("gaussian:1.0")
        >>> x, info = op.prox_l2_info(torch.zeros(1, 1, 16, 16), torch.ones(1, 1, 16, 16), 1e6)
        >>> torch.allclose(x, torch.ones_like(x), atol=1e-4), info["method"]
        (True, 'closed form')
        """
        if self.boundary == "symmetric" and self.axis_symmetric:
            self._check(z, "z")
            g = self._gamma(gamma, z)
            return self.closed_form(self._mirror_solve(g * self.A_adjoint(y) + z, g))
        if self.boundary != "circular":
            return super().prox_l2_info(z, y, gamma, **kwargs)
        self._check(z, "z")
        self._check(y, "y")
        g = self._gamma(gamma, z)
        K = self.response(z.shape[-2:], z.dtype, z.device)
        # All in Fourier: three FFTs instead of four.
        X = (g * K.conj() * torch.fft.rfft2(y) + torch.fft.rfft2(z)) / (g * (K.real**2 + K.imag**2) + 1)
        return self.closed_form(torch.fft.irfft2(X, s=z.shape[-2:]))

    # -- norms ---------------------------------------------------------------------------------
    def norm_certificate(self, in_shape=None) -> OperatorNorm | None:
        """Certified norm; see the class Notes for which rule applies.

        Examples
        --------
        >>> Blur("levin:2", boundary="replicate").norm_certificate((1, 1, 64, 64)).kind
        'upper_bound'
        """
        k = self.kernel.detach().to("cpu", torch.float64)
        mass = float(k.abs().sum())
        if self.boundary == "circular":
            if in_shape is None:
                return OperatorNorm(mass * (1 + ROUNDING_ALLOWANCE), "exact", "sup of |k_hat| = sum of the non-negative kernel", None)
            H, W = check_shape4(in_shape)[-2:]
            value = float(transfer_function(k, (H, W)).abs().max())
            return OperatorNorm(value * (1 + ROUNDING_ALLOWANCE), "exact", f"max |k_hat| over the {H}x{W} DFT grid", tuple(in_shape))
        if self.boundary == "symmetric" and self.axis_symmetric:
            return OperatorNorm(mass * (1 + ROUNDING_ALLOWANCE), "exact", "DCT-II diagonalisation (axis-symmetric kernel, symmetric boundary)", None)
        if self.extends_domain:
            # Valid part of a circular convolution on a grid holding the whole extended image.
            return OperatorNorm(mass * (1 + ROUNDING_ALLOWANCE), "upper_bound",
                                "valid part of a convolution (restriction of a circular one): <= sum |k|", None)
        if in_shape is None:
            if self.boundary == "zero":
                return OperatorNorm(mass * (1 + ROUNDING_ALLOWANCE), "upper_bound", "restriction of a circular convolution: <= sum |k|", None)
            return None
        shape = check_shape4(in_shape)
        abs_op = Blur(k.abs().numpy(), boundary=self.boundary)
        upper, lower, iters = collatz_wielandt_bound(
            lambda w: abs_op.A_adjoint(abs_op.A(w)), (1, 1) + shape[-2:]
        )
        method = (
            f"Collatz-Wielandt bound on |A|^T |A| after {iters} power steps "
            f"(estimate {np.sqrt(lower):.6f}; the first step is Schur's test)"
        )
        value = float(np.sqrt(upper))
        if self.boundary == "zero" and value > mass:
            value, method = mass * (1 + ROUNDING_ALLOWANCE), "restriction of a circular convolution: <= sum |k|"
        return OperatorNorm(value, "upper_bound", method, shape)
