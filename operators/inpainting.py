"""Pixel masking: ``A x = m * x`` with a mask of values in [0, 1]."""

from __future__ import annotations

from typing import Sequence

import torch

from ._checks import as_float_tensor, check_finite, check_image_batch
from .base import ROUNDING_ALLOWANCE, LinearOperator, OperatorNorm

__all__ = ["Inpainting"]


class Inpainting(LinearOperator):
    r"""Keep the pixels where the mask is 1 and zero the rest (soft masks in [0, 1] allowed).

    The output has the input's shape (missing pixels are 0), as in deepinv.  The operator
    is diagonal, so it is self-adjoint, its norm is exactly ``max(mask)``, and the prox of
    the data term is :math:`(\gamma m y + z) / (\gamma m^2 + 1)` pixelwise.

    Parameters
    ----------
    mask : array_like
        Shape (H, W), (C, H, W) or (B, C, H, W), broadcast against the images.
    noise_model, prox_tol, prox_max_iter
        As for :class:`~operators.Blur`.

    Examples
    --------
    >>> import torch
    >>> op = Inpainting(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    >>> op(torch.ones(1, 1, 2, 2))
    tensor([[[[1., 0.],
              [0., 1.]]]])
    """

    def __init__(self, mask, *, noise_model=None, prox_tol: float = 1e-6, prox_max_iter: int = 100):
        super().__init__(noise_model=noise_model, prox_tol=prox_tol, prox_max_iter=prox_max_iter)
        m = as_float_tensor(mask, "mask")
        if m.ndim < 2 or m.ndim > 4:
            raise ValueError(f"mask must have shape (H, W), (C, H, W) or (B, C, H, W); got {tuple(m.shape)}")
        check_finite(m, "mask")
        if bool((m < 0).any()) or bool((m > 1).any()):
            raise ValueError(f"mask values must lie in [0, 1]; got range [{float(m.min()):.3g}, {float(m.max()):.3g}]")
        while m.ndim < 4:
            m = m.unsqueeze(0)
        self.register_buffer("mask", m)

    @classmethod
    def random(cls, img_size: Sequence[int], keep: float, *, generator: torch.Generator | None = None, **kwargs):
        """A binary mask keeping each pixel with probability ``keep`` (same for all channels).

        Examples
        --------
        >>> import torch
        >>> op = Inpainting.random((64, 64), 0.3, generator=torch.Generator().manual_seed(0))
        >>> 0.25 < op.mask.mean().item() < 0.35
        True
        """
        if not 0 < keep <= 1:
            raise ValueError(f"keep must be a fraction in (0, 1]; got {keep!r}")
        H, W = tuple(img_size)[-2:]
        mask = (torch.rand(H, W, generator=generator, dtype=torch.float64) < keep).to(torch.float64)
        return cls(mask, **kwargs)

    def _mask_for(self, x: torch.Tensor, name: str = "x") -> torch.Tensor:
        check_image_batch(x, name)
        try:
            torch.broadcast_shapes(self.mask.shape, x.shape)
        except RuntimeError:
            raise ValueError(
                f"mask of shape {tuple(self.mask.shape)} does not fit {name} of shape {tuple(x.shape)}"
            ) from None
        return self.mask.to(dtype=x.dtype, device=x.device)

    def A(self, x: torch.Tensor, **kwargs) -> torch.Tensor:
        return self._mask_for(x) * x

    def A_adjoint(self, y: torch.Tensor, **kwargs) -> torch.Tensor:
        return self._mask_for(y, "y") * y

    @property
    def iterative_prox(self) -> bool:
        """False: the prox of a mask is a closed form."""
        return False

    def prox_l2_info(self, z, y, gamma, **kwargs):
        r"""Closed-form prox of :math:`\tfrac{\gamma}{2}\|m \odot x - y\|^2`.

        Examples
        --------
        >>> import torch
        >>> op = Inpainting(torch.tensor([[1.0, 0.0]]))
        >>> op.prox_l2(torch.zeros(1, 1, 1, 2), torch.ones(1, 1, 1, 2), 1.0)
        tensor([[[[0.5000, 0.0000]]]])
        """
        m = self._mask_for(z, "z")
        g = self._gamma(gamma, z)
        return self.closed_form((g * m * y + z) / (g * m * m + 1))

    def norm_certificate(self, in_shape=None) -> OperatorNorm:
        """Exactly ``max(mask)``, for every image the mask fits.

        Examples
        --------
        >>> import torch
        >>> Inpainting(torch.tensor([[0.5, 0.25]])).norm_certificate().value
        0.5...
        """
        value = float(self.mask.abs().max()) * (1 + ROUNDING_ALLOWANCE)
        return OperatorNorm(value, "exact", "largest mask value (diagonal operator)", None)
