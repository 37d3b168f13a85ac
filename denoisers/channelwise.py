"""Applying a gray denoiser to every channel of a colour image, certificate included.

If ``D`` is alpha-averaged on one channel, ``(D x_1, ..., D x_C)`` is alpha-averaged on the
product space: the defining inequality
``||Tx - Ty||^2 + (1 - alpha)/alpha ||(I - T)x - (I - T)y||^2 <= ||x - y||^2`` holds channel
by channel and adds up.  So the wrapper keeps ``certified_alpha()`` exactly.
"""

from __future__ import annotations

import torch
from deepinv.models import Denoiser

from .certificate import Certificate, CertifiedDenoiser, is_certified

__all__ = ["ChannelwiseDenoiser"]


class ChannelwiseDenoiser(Denoiser, CertifiedDenoiser):
    """Run a one-channel denoiser on each channel of a (B, C, H, W) batch.

    Parameters
    ----------
    denoiser : torch.nn.Module
        A gray denoiser ``(x, sigma) -> x`` (for example a shipped pnp-stable model).

    Examples
    --------
    >>> import torch
    >>> from denoisers import AveragedDenoiser, GradientFlowNet
    >>> gray = AveragedDenoiser(GradientFlowNet(1, width=4, depth=1)).eval()
    >>> colour = ChannelwiseDenoiser(gray)
    >>> colour(torch.rand(2, 3, 8, 8), 0.1).shape
    torch.Size([2, 3, 8, 8])
    >>> colour.certified_alpha() == gray.certified_alpha()
    True
    """

    def __init__(self, denoiser: torch.nn.Module):
        super().__init__()
        self.denoiser = denoiser

    def forward(self, x: torch.Tensor, sigma=None, **kwargs) -> torch.Tensor:
        if x.ndim != 4:
            raise ValueError(f"expected a (B, C, H, W) batch; got shape {tuple(x.shape)}")
        b, c = x.shape[:2]
        if isinstance(sigma, torch.Tensor) and sigma.numel() > 1:
            # One level per image becomes one level per (image, channel) pair.
            sigma = sigma.reshape(-1).repeat_interleave(c)
        out = self.denoiser(x.reshape(b * c, 1, *x.shape[-2:]), sigma)
        return out.reshape(x.shape)

    @property
    def channels(self) -> int:
        return 3

    def receptive_radius(self) -> int:
        """The gray denoiser's (channels are denoised apart)."""
        return self.denoiser.receptive_radius()

    def working_width(self) -> int:
        """The gray denoiser's; its batch holds one image per channel, hence the factor 3."""
        return 3 * self.denoiser.working_width()

    @property
    def denoise_within(self):
        """The gray denoiser's certified-accuracy call, channel by channel (None when it has
        none): per image, the bound is the root sum of squares of its channels' bounds."""
        fn = getattr(self.denoiser, "denoise_within", None)
        if fn is None:
            return None

        def within(x, sigma, atol):
            b, c = x.shape[:2]
            if isinstance(sigma, torch.Tensor) and sigma.numel() > 1:
                sigma = sigma.reshape(-1).repeat_interleave(c)
            # Each channel gets atol / sqrt(c), so that the image's bound is at most atol.
            per = torch.as_tensor(atol, dtype=torch.float64).reshape(-1).expand(b).repeat_interleave(c) / c**0.5
            out, bound, rounding = fn(x.reshape(b * c, 1, *x.shape[-2:]), sigma, per)
            return out.reshape(x.shape), bound.reshape(b, c).norm(dim=1), rounding.reshape(b, c).norm(dim=1)
        return within

    def certified_alpha(self) -> float | None:
        """The gray denoiser's certified averagedness (it holds on the product space), or None
        when that one carries no certificate (an unconstrained baseline): solvers then run it
        uncertified.

        Examples
        --------
        >>> from denoisers.baselines import DnCNN
        >>> ChannelwiseDenoiser(DnCNN(1, width=4, depth=2)).certified_alpha() is None
        True
        """
        return self.denoiser.certified_alpha() if is_certified(self.denoiser) else None

    def certified_part(self) -> Certificate:
        if not is_certified(self.denoiser):
            raise TypeError(f"{type(self.denoiser).__name__} carries no certificate")
        return self.denoiser.certified_part()

    def probe_levels(self) -> list:
        return self.denoiser.probe_levels()

    def tighten_for_probing(self) -> None:
        self.denoiser.tighten_for_probing()
