"""Denoisers built from gradient-flow blocks: non-expansive and averaged by construction.

``GradientFlowNet`` lifts the image by zero channels (an isometry), runs the blocks and
keeps the first channels (the adjoint of the lift), so it is non-expansive, and averaged
when its steps are (see :mod:`denoisers.averaged`).  It is not residual: ``x - N(x)`` would
not be averaged in general.
"""

from __future__ import annotations

import numpy as np
import torch
from deepinv.models import Denoiser
from torch import nn

from operators._checks import check_image_batch

from .averaged import compose_all, euler_step_alpha, relax_alpha
from .blocks import GradientFlowBlock
from .certificate import Certificate, CertificateViolation, CertifiedDenoiser, LayerCertificate

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
    noise_knots : sequence of float, optional
        Condition every block's bias on the noise level, a table learned at these levels and
        interpolated linearly between them (:mod:`denoisers.conditioning`).  Biases do not
        enter the certificate, so it holds for every level.
    **block_kwargs
        Passed to :class:`~denoisers.blocks.GradientFlowBlock` (``kernel_size``,
        ``activation``, ``integrator``, ``time``, ``margin``, ``max_substeps``, ...).

    Examples
    --------
    >>> import torch
    >>> net = GradientFlowNet(1, width=8, depth=2).eval()
    >>> net(torch.rand(1, 1, 16, 16)).shape
    torch.Size([1, 1, 16, 16])
    >>> cond = GradientFlowNet(1, width=8, depth=2, noise_knots=[0.0, 0.1, 0.2]).eval()
    >>> cond(torch.rand(2, 1, 16, 16), sigma=torch.tensor([0.05, 0.15])).shape
    torch.Size([2, 1, 16, 16])
    """

    def __init__(self, channels: int = 1, width: int = 32, depth: int = 8, noise_knots=None, **block_kwargs):
        super().__init__()
        if channels < 1 or width < channels or depth < 1:
            raise ValueError(f"need 1 <= channels <= width and depth >= 1; got channels={channels}, width={width}, depth={depth}")
        self.channels, self.width = int(channels), int(width)
        self.blocks = nn.ModuleList(GradientFlowBlock(width, **block_kwargs) for _ in range(depth))
        self.conditioning = None
        if noise_knots is not None:
            from .conditioning import NoiseConditioning

            self.conditioning = NoiseConditioning(noise_knots, depth, self.blocks[0].hidden)
        #: Constructor arguments, stored so that a weights file can rebuild the model.
        self.config = dict(channels=channels, width=width, depth=depth, **block_kwargs)
        if noise_knots is not None:
            self.config["noise_knots"] = [float(k) for k in noise_knots]

    def forward(self, x: torch.Tensor, sigma=None) -> torch.Tensor:
        """Denoise ``x``; a noise-conditioned network uses ``sigma`` (a float or one per
        sample; None: the unshifted biases), the others ignore it."""
        check_image_batch(x)
        if x.shape[1] != self.channels:
            raise ValueError(f"this network takes {self.channels}-channel images; got {x.shape[1]} channels (shape {tuple(x.shape)})")
        shifts = self.conditioning(sigma, x.shape[0]) if self.conditioning is not None and sigma is not None else None
        z = torch.cat([x, x.new_zeros(x.shape[0], self.width - self.channels, *x.shape[-2:])], 1)
        for i, blk in enumerate(self.blocks):
            z = blk(z) if shifts is None else blk(z, shifts[i].to(z.dtype))
        return z[:, : self.channels]

    def receptive_radius(self) -> int:
        """How far (pixels) an output pixel sees: every sub-step's field evaluations pass through a
        convolution and its transpose, each reaching ``kernel_size // 2`` (eval schedule).

        Examples
        --------
        >>> GradientFlowNet(1, width=4, depth=3).eval().receptive_radius()  # 3 Euler steps, 3x3: 2 each
        6
        """
        total = 0
        for blk in self.blocks:
            sched = blk.certified_schedule() if not self.training else blk.schedule(float(blk.norm_estimate))
            total += sched.substeps * blk.integrator.stages * 2 * (blk.weight.shape[-1] // 2)
        return total

    def working_width(self) -> int:
        """The widest layer (channels): what one evaluation's memory scales with, per pixel."""
        return max([self.width] + [blk.hidden for blk in self.blocks])

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


class NonexpansiveDenoiser(Denoiser, CertifiedDenoiser):
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
        return self.net(x, sigma)

    def certified_alpha(self) -> float:
        """Averagedness from certified bounds; 1.0 means non-expansive only."""
        return self.net.certified_alpha()

    @property
    def channels(self) -> int:
        return self.net.channels

    def receptive_radius(self) -> int:
        """The network's receptive radius (:meth:`GradientFlowNet.receptive_radius`); the
        relaxation ``(1 - theta) I + theta N`` is pixel-wise and adds nothing."""
        return self.net.receptive_radius()

    def working_width(self) -> int:
        return self.net.working_width()

    def relaxation(self) -> float:
        """The ``theta`` of ``(1 - theta) I + theta N`` in use (1: the network alone)."""
        return 1.0

    def certified_part(self) -> Certificate:
        """Per-block certified norm bounds and the schedules they fix (float64; see
        :mod:`denoisers.certificate`), the Lipschitz bound 1 and the composed averagedness."""
        layers = []
        for i, blk in enumerate(self.net.blocks):
            bound = blk.certified_norm()
            sched = blk.schedule(bound.value)
            if sched.step_factor > 2 * blk.integrator.radius:
                raise CertificateViolation(f"block {i}: h L ||A||^2 = {sched.step_factor:.6g} exceeds 2r = {2 * blk.integrator.radius}")
            step_alpha = sched.step_factor / 2 if blk.integrator.averaged else None
            layers.append(LayerCertificate(f"block{i}", bound.value, bound.grid_max, sched.substeps, sched.step, sched.scale,
                                           sched.step_factor, step_alpha, blk.integrator.name, blk.act.slope_bound))
        method = (
            "per-layer sup of the convolution symbol (grid max + curvature bound, float64), sub-steps with "
            "h L ||A||^2 <= 2 r margin; Euler steps alpha = h L ||A||^2 / 2 composed by Combettes-Yamada; "
            "zero-channel lift and projection keep alpha; relaxation multiplies it by theta"
        )
        return Certificate(lipschitz_bound=1.0, alpha=self.certified_alpha(), theta=self.relaxation(), layers=layers, method=method)

    def probe_levels(self) -> list:
        """A noise-conditioned network is probed at its top knot too (its biases change with the
        level, its certificate does not)."""
        cond = self.net.conditioning
        return [None] if cond is None else [None, float(cond.knots[-1])]

    def verification_state(self) -> list:
        """The blocks' certified norm bounds (computing them records them in the blocks)."""
        return [[b.value, b.grid_max, b.slack, b.grid] for b in (blk.certified_norm() for blk in self.net.blocks)]

    def adopt_verification_state(self, state) -> bool:
        from .spectral import ConvNormBound

        try:
            bounds = [ConvNormBound(float(v), float(g), float(sl), int(m)) for v, g, sl, m in state]
        except (TypeError, KeyError, ValueError):
            return False
        if len(bounds) != len(self.net.blocks):
            return False
        for blk, bound in zip(self.net.blocks, bounds):
            blk.adopt_certified_norm(bound)
        return True

    def forget_verification(self) -> None:
        for blk in self.net.blocks:
            blk._certified = None


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
    strength : (sequence of float, sequence of float), optional
        A calibration ``(sigmas, thetas)``: ``forward(x, sigma)`` then relaxes by ``theta(sigma)``
        (piecewise linear in ``sigma``, constant beyond the ends), never above the certified
        ``theta``, so one network serves every noise level below the one it was trained for
        and the certificate (computed with the largest ``theta``) holds for every ``sigma``.
        :func:`denoisers.strength.calibrate_strength` fits it on held-out training images.

    Examples
    --------
    >>> import torch
    >>> d = AveragedDenoiser(GradientFlowNet(1, width=8, depth=2), target_alpha=0.5).eval()
    >>> d.certified_alpha() <= 0.5
    True
    >>> d = AveragedDenoiser(GradientFlowNet(1, width=8, depth=2), strength=([0.0, 0.1], [0.0, 1.0])).eval()
    >>> x = torch.rand(1, 1, 8, 8)
    >>> torch.equal(d(x, 0.0), x)
    True
    """

    def __init__(self, net: GradientFlowNet | None = None, *, theta: float = 1.0, target_alpha: float | None = None,
                 sigma_train: float | None = None, strength: tuple | None = None):
        super().__init__(net, sigma_train=sigma_train)
        if not (0 < theta <= 1):
            raise ValueError(f"theta must lie in (0, 1]; got {theta!r}")
        if target_alpha is not None and not (0 < target_alpha < 1):
            raise ValueError(f"target_alpha must lie in (0, 1); got {target_alpha!r}")
        self.theta = float(theta)
        self.target_alpha = target_alpha
        self.strength = _check_strength(strength)

    def effective_theta(self) -> float:
        """The relaxation used: ``theta``, lowered to reach ``target_alpha`` if one is set."""
        return self.theta_cap(self.target_alpha)

    def theta_cap(self, target_alpha: float | None = None) -> float:
        """The largest relaxation allowed: ``theta``, lowered to reach ``target_alpha`` if given.

        Examples
        --------
        >>> d = AveragedDenoiser(GradientFlowNet(1, width=8, depth=2))
        >>> d.theta_cap() == d.theta and d.theta_cap(0.5) * d.net.certified_alpha() <= 0.5 + 1e-12
        True
        """
        if target_alpha is None:
            return self.theta
        return min(self.theta, target_alpha / self.net.certified_alpha())

    def theta_for(self, sigma) -> float | torch.Tensor:
        """The relaxation applied at noise level ``sigma`` (a float, or a tensor per sample).

        Examples
        --------
        >>> d = AveragedDenoiser(GradientFlowNet(1, width=8, depth=2), strength=([0.0, 0.1], [0.0, 1.0]))
        >>> round(d.theta_for(0.05), 6), d.theta_for(0.5)
        (0.5, 1.0)
        """
        cap = self.effective_theta() if not self.training else self.theta
        if self.strength is None or sigma is None:
            return cap
        if isinstance(sigma, torch.Tensor):
            # In torch, so that function transforms (torch.func.jvp, vmap) can trace through.
            sig = sigma.detach().to(torch.float64).reshape(-1)
            try:
                bad = bool((~torch.isfinite(sig)).any() | (sig < 0).any())
            except RuntimeError:  # inside vmap the values cannot be inspected
                bad = False
            if bad:
                raise ValueError(f"sigma must be finite and >= 0; got {sigma!r}")
            return _interp(sig, *self.strength).clamp_max(cap)
        sig = np.asarray(sigma, dtype=np.float64).reshape(-1)
        if not np.isfinite(sig).all() or (sig < 0).any():
            raise ValueError(f"sigma must be finite and >= 0; got {sigma!r}")
        theta = np.minimum(np.interp(sig, *self.strength), cap)
        return float(theta[0]) if theta.size == 1 else torch.from_numpy(theta)

    def forward(self, x: torch.Tensor, sigma=None, **kwargs) -> torch.Tensor:
        theta = self.theta_for(sigma)
        out = self.net(x, sigma)
        if isinstance(theta, torch.Tensor):  # one relaxation per sample (or one for all)
            if theta.numel() not in (1, x.shape[0]):
                raise ValueError(f"got {theta.numel()} noise levels for a batch of {x.shape[0]}")
            theta = theta.to(x.dtype).to(x.device).view(-1, 1, 1, 1)
            return (1 - theta) * x + theta * out
        return out if theta == 1.0 else (1 - theta) * x + theta * out

    def certified_alpha(self) -> float:
        return relax_alpha(self.net.certified_alpha(), self.effective_theta())

    def relaxation(self) -> float:
        return self.effective_theta()


def _interp(sig: torch.Tensor, sigmas, thetas) -> torch.Tensor:
    """``np.interp(sig, sigmas, thetas)`` in torch (constant beyond the ends).

    Examples
    --------
    >>> _interp(torch.tensor([0.0, 0.05, 1.0], dtype=torch.float64), (0.0, 0.1), (0.0, 1.0)).tolist()
    [0.0, 0.5, 1.0]
    """
    xs = torch.tensor(sigmas, dtype=torch.float64, device=sig.device)
    ys = torch.tensor(thetas, dtype=torch.float64, device=sig.device)
    if xs.numel() == 1:
        return ys.expand_as(sig).clone()
    s = sig.clamp(xs[0], xs[-1])
    hi = torch.searchsorted(xs, s, right=True).clamp(1, xs.numel() - 1)
    x0, x1, y0, y1 = xs[hi - 1], xs[hi], ys[hi - 1], ys[hi]
    return y0 + (s - x0) * (y1 - y0) / (x1 - x0)


def _check_strength(strength) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """Validate a ``(sigmas, thetas)`` calibration: increasing sigmas >= 0, thetas in [0, 1]."""
    if strength is None:
        return None
    try:
        sigmas, thetas = (tuple(float(v) for v in seq) for seq in strength)
    except (TypeError, ValueError):
        raise ValueError(f"strength must be a pair (sigmas, thetas) of number sequences; got {strength!r}") from None
    if len(sigmas) != len(thetas) or len(sigmas) < 1:
        raise ValueError(f"strength needs as many thetas as sigmas (at least one); got {len(sigmas)} and {len(thetas)}")
    if not all(np.isfinite(sigmas)) or sigmas[0] < 0 or any(b <= a for a, b in zip(sigmas, sigmas[1:])):
        raise ValueError(f"strength sigmas must be finite, >= 0 and increasing; got {sigmas}")
    if not all(0 <= t <= 1 for t in thetas):
        raise ValueError(f"strength thetas must lie in [0, 1]; got {thetas}")
    return sigmas, thetas
