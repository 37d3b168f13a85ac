r"""Noise conditioning that leaves the certificate alone: biases that depend on the noise level.

A gradient-flow block :math:`x \mapsto x - h A^\top \sigma(A x + b)` is non-expansive (and
averaged) for **every** bias :math:`b`: the certificate rests on :math:`\|A\|` and the slope of
:math:`\sigma` only.  So the bias may be any function of the noise level without touching a
certified number.  Here each block's bias is

.. math:: b(s) = b_0 + \sum_k \phi_k(s)\, b_k,

with :math:`\phi_k` the piecewise-linear "hat" functions on the knots :math:`s_0 < \dots < s_K`
(a learned bias table interpolated linearly in the noise level).  Below the first knot and
above the last the table is held constant: a level above the training range is served as the
highest trained one.  The knots are fixed at construction, so a weights file records them.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

__all__ = ["NoiseConditioning", "hat_weights"]


def hat_weights(sigma: torch.Tensor, knots: torch.Tensor) -> torch.Tensor:
    """Weights of the piecewise-linear interpolation at ``sigma`` (one row per level).

    Parameters
    ----------
    sigma : torch.Tensor
        Noise levels, shape (B,).
    knots : torch.Tensor
        Increasing levels, shape (K,).

    Returns
    -------
    torch.Tensor
        (B, K), each row non-negative and summing to 1; levels outside the knots take the
        nearest end.

    Examples
    --------
    >>> import torch
    >>> hat_weights(torch.tensor([0.0, 0.05, 0.3]), torch.tensor([0.0, 0.1, 0.2])).tolist()
    [[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0]]
    """
    s = sigma.reshape(-1, 1).clamp(knots[0], knots[-1])
    if knots.numel() == 1:
        return torch.ones_like(s)
    left, right = knots[:-1], knots[1:]
    up = ((s - left) / (right - left)).clamp(0, 1)  # (B, K-1): how far past each interval's start
    # Hat k rises on interval k-1 and falls on interval k.
    w = torch.zeros(s.shape[0], knots.numel(), dtype=s.dtype, device=s.device)
    w[:, 1:] += up * (s >= left).to(s.dtype) * (s <= right).to(s.dtype)
    w[:, :-1] += (1 - up) * (s >= left).to(s.dtype) * (s <= right).to(s.dtype)
    # A level exactly on an inner knot lies in two intervals: count it once.
    return w / w.sum(1, keepdim=True)


class NoiseConditioning(nn.Module):
    """Per-block bias shifts as a learned, linearly interpolated function of the noise level.

    Parameters
    ----------
    knots : sequence of float
        Increasing noise levels (on the [0, 1] scale) where the table is learned.
    blocks : int
        Number of blocks.
    channels : int
        Hidden channels of each block (the length of its bias).

    Examples
    --------
    >>> import torch
    >>> cond = NoiseConditioning([0.0, 0.1, 0.2], blocks=2, channels=4)
    >>> cond(torch.tensor([0.05, 0.15]), batch=2).shape
    torch.Size([2, 2, 4])
    """

    def __init__(self, knots: Sequence[float], blocks: int, channels: int):
        super().__init__()
        values = [float(k) for k in knots]
        if len(values) < 1 or any(b <= a for a, b in zip(values, values[1:])) or values[0] < 0:
            raise ValueError(f"noise knots must be increasing levels >= 0; got {list(knots)!r}")
        self.register_buffer("knots", torch.tensor(values, dtype=torch.float64))
        # Zero at the start: the conditioned network begins as the unconditioned one.
        self.table = nn.Parameter(torch.zeros(blocks, len(values), channels))

    def forward(self, sigma, batch: int) -> torch.Tensor:
        """Bias shifts of shape (blocks, batch, channels) for ``sigma`` (a float or one per sample)."""
        s = sigma if isinstance(sigma, torch.Tensor) else torch.tensor(float(sigma))
        s = s.to(device=self.table.device, dtype=torch.float64).reshape(-1)
        if s.numel() == 1:
            s = s.expand(batch)
        elif s.numel() != batch:
            raise ValueError(f"got {s.numel()} noise levels for a batch of {batch}")
        w = hat_weights(s, self.knots.to(s.device)).to(self.table.dtype)  # (batch, K)
        return torch.einsum("bk,nkc->nbc", w, self.table)
