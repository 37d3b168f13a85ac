"""Denoisers built from gradient-flow blocks: non-expansive and averaged by construction.

``GradientFlowNet`` lifts the image by zero channels (an isometry), runs the blocks and
keeps the first channels (the adjoint of the lift), so it is non-expansive, and averaged
when its steps are (see :mod:`denoisers.averaged`).  It is not residual: ``x - N(x)`` would
not be averaged in general.
"""

from __future__ import annotations

import torch
from deepinv.models import Denoiser
from torch import nn

from operators._checks import check_image_batch

from .averaged import compose_all, euler_step_alpha, relax_alpha
from .blocks import GradientFlowBlock

__all__ = ["GradientFlowNet", "NonexpansiveDenoiser", "AveragedDenoiser"]


class GradientFlowNet(nn.Module):
    """Zero-channel lift, ``depth`` gradient-flow blocks, projection to the first channels.

    Parameters
    ----------
    channels : int
        Image channels (1 gray, 3 colour).
    width : int
        Channels of the lifted state.
    depth : int
        Number of blocks.
    **block_kwargs
        Passed to :class:`~denoisers.blocks.GradientFlowBlock` (``kernel_size``,
        ``activation``, ``integrator``, ``time``, ``margin``, ``max_substeps``, ...).

    Examples
    --------
    >>> import torch
    >>> net = GradientFlowNet(1, width=8, depth=2).eval()
    >>> net(torch.rand(1, 1, 16, 16)).shape
    torch.Size([1, 1, 16, 16])
    """

    def __init__(self, channels: int = 1, width: int = 32, depth: int = 8, **block_kwargs):
        super().__init__()
        if channels < 1 or width < channels or depth < 1:
            raise ValueError(f"need 1 <= channels <= width and depth >= 1; got channels={channels}, width={width}, depth={depth}")
        self.channels, self.width = int(channels), int(width)
        self.blocks = nn.ModuleList(GradientFlowBlock(width, **block_kwargs) for _ in range(depth))
        #: Constructor arguments, stored so that a weights file can rebuild the model.
        self.config = dict(channels=channels, width=width, depth=depth, **block_kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image_batch(x)
        if x.shape[1] != self.channels:
            raise ValueError(f"this network takes {self.channels}-channel images; got {x.shape[1]} channels (shape {tuple(x.shape)})")
        z = torch.cat([x, x.new_zeros(x.shape[0], self.width - self.channels, *x.shape[-2:])], 1)
        for blk in self.blocks:
            z = blk(z)
        return z[:, : self.channels]

    def step_alphas(self) -> list[float]:
        """Certified averagedness of every sub-step, in order (1.0 for non-Euler steps)."""
        alphas = []
        for blk in self.blocks:
            sched = blk.certified_schedule()
            a = euler_step_alpha(sched.step_factor) if blk.integrator.averaged else 1.0
            alphas += [a] * sched.substeps
        return alphas

    def certified_alpha(self) -> float:
        """Averagedness of the whole network from certified bounds (1.0: non-expansive only)."""
        return compose_all(self.step_alphas())


class NonexpansiveDenoiser(Denoiser):
    """A 1-Lipschitz denoiser: the gradient-flow network itself.

    ``forward(x, sigma)`` follows deepinv's contract; ``sigma`` is accepted and ignored (the
    network is trained for ``sigma_train``), so the certificate holds for every ``sigma``.

    Parameters
    ----------
    net : GradientFlowNet, optional
        The network (default: a fresh gray one).
    sigma_train : float, optional
        Noise level(s) it was trained for, as metadata.

    Examples
    --------
    >>> import torch
    >>> d = NonexpansiveDenoiser(GradientFlowNet(1, width=8, depth=2)).eval()
    >>> d(torch.rand(1, 1, 16, 16), 0.1).shape
    torch.Size([1, 1, 16, 16])
    """

    def __init__(self, net: GradientFlowNet | None = None, *, sigma_train: float | None = None):
        super().__init__()
        self.net = net if net is not None else GradientFlowNet()
        self.sigma_train = sigma_train

    def forward(self, x: torch.Tensor, sigma=None, **kwargs) -> torch.Tensor:
        return self.net(x)

    def certified_alpha(self) -> float:
        """Averagedness from certified bounds; 1.0 means non-expansive only."""
        return self.net.certified_alpha()


class AveragedDenoiser(NonexpansiveDenoiser):
    r"""An averaged denoiser :math:`D = (1 - \theta) I + \theta N`.

    Its averagedness is :math:`\theta \alpha_N`, with :math:`\alpha_N` the certified constant
    of the network (1 when its steps are only non-expansive, e.g. Heun or RK4).

    Parameters
    ----------
    net : GradientFlowNet, optional
    theta : float
        Relaxation in (0, 1] (default 1: the network alone, averaged through its Euler margins).
    target_alpha : float, optional
        Choose ``theta`` to reach this averagedness (e.g. 0.5 for PnP-ADMM); overrides ``theta``
        when the network alone does not reach it.
    sigma_train : float, optional

    Examples
    --------
    >>> import torch
    >>> d = AveragedDenoiser(GradientFlowNet(1, width=8, depth=2), target_alpha=0.5).eval()
    >>> d.certified_alpha() <= 0.5
    True
    """

    def __init__(self, net: GradientFlowNet | None = None, *, theta: float = 1.0, target_alpha: float | None = None,
                 sigma_train: float | None = None):
        super().__init__(net, sigma_train=sigma_train)
        if not (0 < theta <= 1):
            raise ValueError(f"theta must lie in (0, 1]; got {theta!r}")
        if target_alpha is not None and not (0 < target_alpha < 1):
            raise ValueError(f"target_alpha must lie in (0, 1); got {target_alpha!r}")
        self.theta = float(theta)
        self.target_alpha = target_alpha

    def effective_theta(self) -> float:
        """The relaxation used: ``theta``, lowered to reach ``target_alpha`` if one is set."""
        if self.target_alpha is None:
            return self.theta
        return min(self.theta, self.target_alpha / self.net.certified_alpha())

    def forward(self, x: torch.Tensor, sigma=None, **kwargs) -> torch.Tensor:
        theta = self.effective_theta() if not self.training else self.theta
        out = self.net(x)
        return out if theta == 1.0 else (1 - theta) * x + theta * out

    def certified_alpha(self) -> float:
        return relax_alpha(self.net.certified_alpha(), self.effective_theta())
