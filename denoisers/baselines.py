"""Baselines trained by the same pipeline, with no guarantee: what the constraint is measured against.

* :class:`DnCNN`: the unconstrained residual network (Zhang et al., 2017) at a chosen size,
  without batch norm by default (it does not change the function class at inference).
* :class:`SpectralResNet`: an ordinary ResNet ``x + B sigma(A x)`` whose convolutions are
  divided by their certified norms, so ``||A||, ||B|| <= 1`` exactly; each block is then only
  2-Lipschitz and depth ``d`` allows ``2^d``, the contrast drawn by Sherry et al.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from deepinv.models import Denoiser
from torch import nn

from operators._checks import check_image_batch

from .spectral import certified_conv_norm

__all__ = ["DnCNN", "SpectralResNet"]


class DnCNN(Denoiser):
    """Unconstrained residual denoiser: ``x - f(x)`` with ``f`` a plain conv stack.

    Parameters
    ----------
    channels, width, depth : int
        Image channels, features, convolution layers (>= 2).

    Examples
    --------
    >>> import torch
    >>> DnCNN(1, width=8, depth=3)(torch.rand(1, 1, 16, 16), 0.1).shape
    torch.Size([1, 1, 16, 16])
    """

    def __init__(self, channels: int = 1, width: int = 32, depth: int = 17):
        super().__init__()
        if depth < 2:
            raise ValueError(f"depth must be >= 2; got {depth}")
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU()]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU()]
        layers.append(nn.Conv2d(width, channels, 3, padding=1))
        self.body = nn.Sequential(*layers)
        # Without batch normalisation, torch's default convolution init shrinks the signal by
        # about 3x in the first layers and the gradient of a deep stack with it: an 18-layer
        # DnCNN then sat at the identity for 250 steps.  He initialisation keeps the activation
        # scale through the ReLUs (He et al., 2015), as BN-free DnCNN variants do.
        for conv in self.body:
            if isinstance(conv, nn.Conv2d):
                nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
                nn.init.zeros_(conv.bias)
        self.config = dict(channels=channels, width=width, depth=depth)

    def forward(self, x: torch.Tensor, sigma=None, **kwargs) -> torch.Tensor:
        check_image_batch(x)
        return x - self.body(x)


class SpectralResNet(Denoiser):
    """Ordinary ResNet blocks ``x + B relu(A x)`` with ``||A||, ||B|| <= 1`` (certified).

    The normalisation divides each weight by its certified norm bound, so the constraint is a
    guarantee, unlike ``torch.nn.utils.spectral_norm`` (a power-iteration estimate of the
    reshaped kernel).  Zero-channel lift and projection as in the gradient-flow network.

    Examples
    --------
    >>> import torch
    >>> SpectralResNet(1, width=4, depth=2)(torch.rand(1, 1, 8, 8)).shape
    torch.Size([1, 1, 8, 8])

    The certified normalisation is recomputed whenever a weight changes (about 0.3 s per
    32-channel layer), so training this baseline is slow: it is for the Lipschitz-versus-depth
    comparison, not for speed.
    """

    def __init__(self, channels: int = 1, width: int = 32, depth: int = 8):
        super().__init__()
        self.channels, self.width = channels, width
        self.A = nn.ParameterList(nn.Parameter(0.3 * torch.randn(width, width, 3, 3)) for _ in range(depth))
        self.B = nn.ParameterList(nn.Parameter(0.3 * torch.randn(width, width, 3, 3)) for _ in range(depth))
        self.config = dict(channels=channels, width=width, depth=depth)
        self._bounds: dict = {}

    @classmethod
    def worst_case(cls, depth: int) -> "SpectralResNet":
        """One channel, every convolution the identity (norm 1): on positive inputs each block
        doubles its input, so the network is exactly ``2^depth``-Lipschitz there.

        Examples
        --------
        >>> import torch
        >>> net = SpectralResNet.worst_case(3)
        >>> x = torch.ones(1, 1, 4, 4, dtype=torch.float64)
        >>> float((net(x + 0.1) - net(x)).norm() / (0.1 * x).norm())
        8.0
        """
        net = cls(1, width=1, depth=depth).double()
        with torch.no_grad():
            for p in list(net.A) + list(net.B):
                p.zero_()
                p[0, 0, p.shape[-2] // 2, p.shape[-1] // 2] = 1.0
        return net

    def _normalised(self, w: torch.Tensor) -> torch.Tensor:
        # The certified bound is recomputed only when the weight changed (it costs ~0.3 s for
        # 32 channels); the division keeps its gradient.
        key = (id(w), w._version, w.data_ptr(), w.dtype)
        bound = self._bounds.get(key)
        if bound is None:
            bound = certified_conv_norm(w).value
            self._bounds = {k: v for k, v in self._bounds.items() if k[0] != id(w)}
            self._bounds[key] = bound
        return w / max(bound, 1.0)

    def forward(self, x: torch.Tensor, sigma=None, **kwargs) -> torch.Tensor:
        check_image_batch(x)
        z = torch.cat([x, x.new_zeros(x.shape[0], self.width - self.channels, *x.shape[-2:])], 1)
        for a, b in zip(self.A, self.B):
            z = z + F.conv2d(F.relu(F.conv2d(z, self._normalised(a), padding=1)), self._normalised(b), padding=1)
        return z[:, : self.channels]
