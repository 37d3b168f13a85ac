"""Classifiers built from the certified gradient-flow blocks, and an unconstrained baseline.

:class:`LipschitzClassifier` composes layers that are each certified in float64:

* a zero-channel lift (isometry) of the centred image,
* stages of :class:`denoisers.GradientFlowBlock` s ``x - h A^T sigma(A x + b)`` (Euler steps of a
  convex potential's gradient flow, non-expansive at the certified step), or of Lipschitz-bounded
  equilibrium layers (:class:`~pnp_stable.robust.layers.EquilibriumLayer`, ``block="lben"``),
* between stages, space-to-depth (an exact isometry) and a channel-mixing 1x1 convolution of
  spectral norm at most 1,
* a flattening and a linear head of spectral norm at most 1.

Its Lipschitz constant (l2, input to logits) is at most the product of the layers' bounds
(:func:`pnp_stable.robust.certify_classifier`).  :class:`PlainClassifier` has the same layout
and size with ordinary residual blocks and no constraint: the baseline it is compared with.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from denoisers import GradientFlowBlock

from .layers import ChannelLift, EquilibriumLayer, Flatten, NormBoundedConv1x1, NormBoundedLinear, PixelUnshuffle

__all__ = ["LipschitzClassifier", "PlainClassifier", "CIFAR10_MEAN"]

#: Channel means of the CIFAR-10 training images (RGB, [0, 1] scale); subtracting a constant is
#: an isometry, dividing by a standard deviation is not (it would multiply the bound), so only
#: the mean is removed.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)


def _check_layout(in_channels: int, classes: int, widths, blocks, image_size: int) -> None:
    if len(widths) != len(blocks) or not widths:
        raise ValueError(f"widths and blocks must be non-empty and of equal length; got {widths} and {blocks}")
    if in_channels < 1 or classes < 2:
        raise ValueError(f"need in_channels >= 1 and classes >= 2; got {in_channels}, {classes}")
    if widths[0] < in_channels:
        raise ValueError(f"the first width ({widths[0]}) must be at least the input channels ({in_channels})")
    if image_size % 2 ** (len(widths) - 1):
        raise ValueError(f"image_size {image_size} must be divisible by 2**{len(widths) - 1} (one halving per stage)")


class LipschitzClassifier(nn.Module):
    """A classifier whose logits are certified Lipschitz in the input (l2).

    Parameters
    ----------
    in_channels, classes : int
    widths : sequence of int
        State channels of each stage; each later stage starts with a space-to-depth halving.
    blocks : sequence of int
        Gradient-flow blocks per stage.
    hidden_factor : int
        Hidden channels of each block's convolution ``A``, as a multiple of its width.
    activation : str
        The blocks' activation (its slope bound enters the step): ``relu`` or ``leaky_relu``.
    image_size : int
        Side of the (square) training images; the head is sized for it.
    mean : sequence of float
        Subtracted per channel (an isometry).
    block : str
        ``"flow"``: gradient-flow blocks; ``"lben"``: equilibrium layers (``hidden_factor x width``
        hidden channels, solved in evaluation to a certified error ``lben_atol``, which the
        certificate accounts for).
    lben_atol, lben_monotonicity : float
        Of the equilibrium layers.

    Examples
    --------
    >>> net = LipschitzClassifier(widths=(8, 16), blocks=(1, 1), image_size=8).eval()
    >>> net(torch.rand(2, 3, 8, 8)).shape
    torch.Size([2, 10])
    >>> LipschitzClassifier(widths=(4, 8), blocks=(1, 1), image_size=8, block="lben").eval()(torch.rand(1, 3, 8, 8)).shape
    torch.Size([1, 10])
    """

    def __init__(self, in_channels: int = 3, classes: int = 10, *, widths=(32, 64, 128), blocks=(2, 2, 2),
                 hidden_factor: int = 2, activation: str = "relu", image_size: int = 32, mean=CIFAR10_MEAN,
                 block: str = "flow", lben_atol: float = 1e-3, lben_monotonicity: float = 1.0):
        super().__init__()
        widths, blocks = tuple(int(w) for w in widths), tuple(int(b) for b in blocks)
        _check_layout(in_channels, classes, widths, blocks, image_size)
        if len(mean) != in_channels:
            raise ValueError(f"mean needs one value per input channel ({in_channels}); got {len(mean)}")
        if block not in ("flow", "lben"):
            raise ValueError(f"block must be 'flow' (gradient-flow blocks) or 'lben' (equilibrium layers); got {block!r}")
        self.config = dict(in_channels=in_channels, classes=classes, widths=list(widths), blocks=list(blocks),
                           hidden_factor=hidden_factor, activation=activation, image_size=image_size, mean=list(mean))
        if block == "lben":  # only then, so that the configurations of flow models stay as they were
            self.config.update(block=block, lben_atol=lben_atol, lben_monotonicity=lben_monotonicity)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).reshape(1, -1, 1, 1))
        layers: list[nn.Module] = [ChannelLift(in_channels, widths[0])]
        for i, (width, count) in enumerate(zip(widths, blocks)):
            if i:
                layers += [PixelUnshuffle(2), NormBoundedConv1x1(4 * widths[i - 1], width)]
            if block == "lben":
                layers += [EquilibriumLayer(width, hidden_factor * width, monotonicity=lben_monotonicity, atol=lben_atol)
                           for _ in range(count)]
            else:
                # margin 1: each Euler step is exactly at the non-expansive limit h ||A||^2 L <= 2.
                layers += [GradientFlowBlock(width, hidden_factor * width, activation=activation, margin=1.0, max_substeps=1)
                           for _ in range(count)]
        side = image_size // 2 ** (len(widths) - 1)
        self.body = nn.Sequential(*layers, Flatten())
        self.head = NormBoundedLinear(widths[-1] * side * side, classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The input of the head (flattened last-stage state)."""
        return self.body(x - self.mean)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.config["in_channels"]:
            raise ValueError(f"expected images (B, {self.config['in_channels']}, H, W); got shape {tuple(x.shape)}")
        return self.head(self.features(x))


class _Residual(nn.Module):
    """``x + B relu(A x + b)``: an ordinary residual block (no constraint)."""

    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.a = nn.Conv2d(width, hidden, 3, padding=1)
        self.b = nn.Conv2d(hidden, width, 3, padding=1, bias=False)
        nn.init.zeros_(self.b.weight)  # start at the identity, as the flow blocks do (small steps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.b(F.relu(self.a(x)))


class PlainClassifier(nn.Module):
    """The unconstrained baseline: :class:`LipschitzClassifier`'s layout and size with free
    residual blocks, 1x1 convolutions and head (no certificate).

    Examples
    --------
    >>> PlainClassifier(widths=(8, 16), blocks=(1, 1), image_size=8)(torch.rand(2, 3, 8, 8)).shape
    torch.Size([2, 10])
    """

    def __init__(self, in_channels: int = 3, classes: int = 10, *, widths=(32, 64, 128), blocks=(2, 2, 2),
                 hidden_factor: int = 2, image_size: int = 32, mean=CIFAR10_MEAN, **_unused):
        super().__init__()
        widths, blocks = tuple(int(w) for w in widths), tuple(int(b) for b in blocks)
        _check_layout(in_channels, classes, widths, blocks, image_size)
        self.config = dict(in_channels=in_channels, classes=classes, widths=list(widths), blocks=list(blocks),
                           hidden_factor=hidden_factor, image_size=image_size, mean=list(mean))
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).reshape(1, -1, 1, 1))
        layers: list[nn.Module] = [nn.Conv2d(in_channels, widths[0], 3, padding=1)]
        for i, (width, count) in enumerate(zip(widths, blocks)):
            if i:
                layers += [nn.PixelUnshuffle(2), nn.Conv2d(4 * widths[i - 1], width, 1)]
            layers += [_Residual(width, hidden_factor * width) for _ in range(count)]
        side = image_size // 2 ** (len(widths) - 1)
        self.body = nn.Sequential(*layers, nn.Flatten())
        self.head = nn.Linear(widths[-1] * side * side, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x - self.mean))
