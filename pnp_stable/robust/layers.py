"""Layers of the certified classifiers, each with a certified float64 Lipschitz bound.

Every layer here exposes ``lipschitz_bound() -> float``: a float64 *upper* bound of its l2
Lipschitz constant as it evaluates in ``eval()`` mode, for every input size it accepts.  The
classifier's certificate is the product of these bounds (:mod:`pnp_stable.robust.certificate`);
no power-iteration estimate enters it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ChannelLift", "PixelUnshuffle", "NormBoundedLinear", "NormBoundedConv1x1", "Flatten", "EquilibriumLayer",
           "matrix_norm_bound"]

#: Relative allowance on a float64 SVD's largest singular value (backward stable: the computed
#: value is within a few units of n eps of the exact one; this is far above that).
_SVD_SLACK = 1e-10


def matrix_norm_bound(weight: torch.Tensor) -> float:
    """Certified upper bound of a matrix's spectral norm: its largest singular value computed in
    float64 from the values the layer uses, plus a rounding allowance.

    Examples
    --------
    >>> round(matrix_norm_bound(torch.diag(torch.tensor([3.0, 1.0]))), 6)
    3.0
    """
    w = weight.detach().to("cpu", torch.float64).reshape(weight.shape[0], -1)
    if not bool(torch.isfinite(w).all()):
        raise ValueError("weight contains NaN or Inf: no bound exists")
    return float(torch.linalg.matrix_norm(w, ord=2)) * (1 + _SVD_SLACK)


class ChannelLift(nn.Module):
    """Append zero channels: ``(B, c, H, W) -> (B, channels, H, W)``; an isometry (Lipschitz 1).

    Examples
    --------
    >>> ChannelLift(3, 8)(torch.ones(1, 3, 2, 2)).shape, ChannelLift(3, 8).lipschitz_bound()
    (torch.Size([1, 8, 2, 2]), 1.0)
    """

    def __init__(self, in_channels: int, channels: int):
        super().__init__()
        if channels < in_channels:
            raise ValueError(f"a lift cannot drop channels: {in_channels} -> {channels}")
        self.in_channels, self.channels = int(in_channels), int(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, (0, 0, 0, 0, 0, self.channels - self.in_channels))

    def lipschitz_bound(self) -> float:
        return 1.0


class PixelUnshuffle(nn.Module):
    """Space to depth (``torch.nn.functional.pixel_unshuffle``): a permutation of the entries,
    so an exact isometry; halves the resolution, multiplies the channels by ``factor**2``.

    Examples
    --------
    >>> x = torch.randn(2, 3, 4, 4)
    >>> y = PixelUnshuffle(2)(x)
    >>> y.shape, bool(torch.isclose(y.norm(), x.norm()))
    (torch.Size([2, 12, 2, 2]), True)
    """

    def __init__(self, factor: int = 2):
        super().__init__()
        self.factor = int(factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % self.factor or x.shape[-2] % self.factor:
            raise ValueError(f"image sides {tuple(x.shape[-2:])} must be multiples of {self.factor}")
        if x.shape[0] == 0:  # torch returns the wrong channel count for an empty batch
            f = self.factor
            return x.new_empty(0, x.shape[1] * f * f, x.shape[2] // f, x.shape[3] // f)
        return F.pixel_unshuffle(x, self.factor)

    def lipschitz_bound(self) -> float:
        return 1.0


class _NormBounded(nn.Module):
    """A matrix ``W`` used as ``W / max(1, ||W||_2)``: spectral norm at most 1.

    The norm is exact (an SVD, differentiable) in training as in evaluation, so the
    normalisation the optimiser sees is the one the certificate bounds; the certificate
    itself is the float64 norm of the normalised matrix the layer actually applies."""

    def __init__(self, out_features: int, in_features: int, *, bias: bool = True):
        super().__init__()
        w = torch.empty(out_features, in_features)
        nn.init.orthogonal_(w)
        self.weight = nn.Parameter(w)
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def effective_weight(self) -> torch.Tensor:
        norm = torch.linalg.matrix_norm(self.weight, ord=2)
        return self.weight / torch.clamp(norm, min=1.0)

    def lipschitz_bound(self) -> float:
        with torch.no_grad():
            return matrix_norm_bound(self.effective_weight())


class NormBoundedLinear(_NormBounded):
    """Linear layer with spectral norm at most 1 (``W / max(1, ||W||_2)``).

    Examples
    --------
    >>> lin = NormBoundedLinear(6, 3)
    >>> with torch.no_grad():
    ...     _ = lin.weight.mul_(5.0)
    >>> lin(torch.randn(4, 6)).shape, lin.lipschitz_bound() <= 1 + 1e-6
    (torch.Size([4, 3]), True)
    """

    def __init__(self, in_features: int, out_features: int, *, bias: bool = True):
        super().__init__(out_features, in_features, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.effective_weight(), self.bias)


class NormBoundedConv1x1(_NormBounded):
    """1x1 convolution (channel mixing) with spectral norm at most 1: per pixel the same
    matrix, so the layer's norm over images of any size is the matrix's.

    Examples
    --------
    >>> conv = NormBoundedConv1x1(12, 6)
    >>> conv(torch.randn(2, 12, 4, 4)).shape, conv.lipschitz_bound() <= 1 + 1e-6
    (torch.Size([2, 6, 4, 4]), True)
    """

    def __init__(self, in_channels: int, out_channels: int, *, bias: bool = True):
        super().__init__(out_channels, in_channels, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.effective_weight()
        return F.conv2d(x, w[:, :, None, None], self.bias)


class Flatten(nn.Module):
    """``(B, C, H, W) -> (B, C H W)``: a reshape, an isometry.

    Examples
    --------
    >>> Flatten()(torch.zeros(2, 3, 4, 4)).shape
    torch.Size([2, 48])
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)

    def lipschitz_bound(self) -> float:
        return 1.0


class EquilibriumLayer(nn.Module):
    """A Lipschitz-bounded equilibrium layer (:class:`denoisers.LBENNet`) on feature maps:
    ``(B, C, H, W) -> (B, C, H, W)``, the exact map 1-Lipschitz by construction.

    The equilibrium is solved iteratively.  In ``eval()`` mode every solve runs until its
    *certified* output error is at most ``atol`` (l2, per sample) and raises
    :class:`denoisers.lben.EquilibriumNotReached` otherwise, so every evaluation that returns is
    within ``atol`` of the exact map; :meth:`evaluation_error_bound` reports it and the
    classifier's certificate spends it (:func:`pnp_stable.robust.certify_classifier`).  Float32
    rounding is not part of that bound, as for every other layer (within ``atol`` up to the
    solve's rounding floor).

    Parameters
    ----------
    channels, hidden, kernel_size : int
        Feature channels, hidden channels of the equilibrium, odd kernel side.
    monotonicity : float
        The LMI margin ``m`` (larger: faster solves, a stiffer layer).
    pad : int
        Zero margin of the (circular) equilibrium.
    atol : float
        Certified error of each evaluation in ``eval()`` mode.
    max_iter : int
        Iteration cap of a solve.

    Examples
    --------
    >>> layer = EquilibriumLayer(4, 4).eval()
    >>> y = layer(torch.rand(2, 4, 6, 6))
    >>> y.shape, layer.lipschitz_bound(), max(layer.net.last_report.error_bound) <= layer.atol
    (torch.Size([2, 4, 6, 6]), 1.0, True)
    """

    def __init__(self, channels: int, hidden: int, kernel_size: int = 3, *, monotonicity: float = 1.0, pad: int = 1,
                 atol: float = 1e-3, max_iter: int = 500):
        super().__init__()
        from denoisers.lben import LBENNet

        if not (atol > 0):
            raise ValueError(f"atol must be > 0; got {atol!r}")
        self.atol = float(atol)
        self.net = LBENNet(channels, hidden, kernel_size, gamma=1.0, monotonicity=monotonicity, pad=pad, max_iter=max_iter,
                           strict=True)
        # Certification and attacks evaluate many unrelated batches: no warm start between them.
        self.net.warm_start = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x) if self.training else self.net(x, atol=self.atol)

    def lipschitz_bound(self) -> float:
        """1 (the ``gamma`` of the construction, its preconditions checked in float64)."""
        return float(self.net.certified_lipschitz())

    def evaluation_error_bound(self) -> float:
        """Largest l2 distance between an ``eval()`` output and the exact equilibrium map's."""
        return self.atol
