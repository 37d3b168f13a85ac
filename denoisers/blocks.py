r"""The constrained block: explicit Runge-Kutta steps of a convex-potential gradient flow.

.. math:: \dot x = -A^\top \sigma(A x + b)

integrated over a time span ``T`` in ``n`` sub-steps of size ``h = T / n``, with ``n`` the
smallest count such that :math:`h L \|A\|^2 \le 2 r \cdot \text{margin}` (``L``: activation
slope bound, ``r``: the integrator's circle-contractivity radius).  Each sub-step is then
non-expansive, and for Euler :math:`\alpha = h L \|A\|^2 / 2 \le \text{margin}`-averaged.

With ``max_substeps`` the count is capped, so inference cost stays bounded: when the weight
``W`` would need more sub-steps, the block uses ``A = rho W`` with
:math:`\rho = \sqrt{2 r\,\text{margin}\, n / (T L)} / \|W\|` (a spectral normalisation), so
the guarantee holds with ``n`` steps.  The bias stays in natural units; scaling ``h`` instead
would divide the effective bias by ``||W||`` and starve the network of thresholds as the
norm grows.

Training uses a warm-started per-frequency power step (an estimate, as in the authors'
adaptive scheme); evaluation always uses the certified bound of the current weights
(recomputed whenever they change), so a model in ``eval()`` mode is exactly the certified one.
"""

from __future__ import annotations

import contextlib
import math
import threading
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .activations import build_activation
from .integrators import get_integrator
from .spectral import ConvNormBound, certified_conv_norm, power_estimate, symbol_power_step

__all__ = ["GradientFlowBlock", "StepSchedule", "weights_to_be_loaded"]

_init_state = threading.local()


@contextlib.contextmanager
def weights_to_be_loaded():
    """Blocks built inside skip normalising their random initial weight (30 power steps per
    block), because a state dict will replace it.  Loading a weights file uses this.

    Examples
    --------
    >>> with weights_to_be_loaded():
    ...     blk = GradientFlowBlock(4)
    >>> blk.weight.shape
    torch.Size([4, 4, 3, 3])
    """
    before = getattr(_init_state, "skip", False)
    _init_state.skip = True
    try:
        yield
    finally:
        _init_state.skip = before


@dataclass(frozen=True)
class StepSchedule:
    """Sub-step count and size of a block, and the quantity that governs them.

    Attributes
    ----------
    substeps : int
    step : float
        ``h``.
    norm : float
        The ``||W||`` used (certified bound in eval, estimate in training).
    step_factor : float
        ``h L ||A||^2`` with ``A = scale * W``; non-expansive when ``<= 2 r``.
    scale : float
        ``rho`` in ``A = rho W``: 1, or below 1 when ``max_substeps`` binds.
    """

    @property
    def capped(self) -> bool:
        return self.scale < 1.0

    substeps: int
    step: float
    norm: float
    step_factor: float
    scale: float = 1.0


class GradientFlowBlock(nn.Module):
    """One gradient-flow block ``x -> Phi_T(x)`` on (B, channels, H, W) tensors.

    Parameters
    ----------
    channels : int
        State channels.
    hidden : int, optional
        Output channels of ``A`` (default: ``channels``).
    kernel_size : int
        Odd size of the convolution ``A`` (zero padding).
    activation : str
        Name in :data:`denoisers.activations.ACTIVATIONS`, or ``"spline"`` / ``"spline:K"``:
        a learnable monotone spline per hidden channel with slopes in [0, 1] by construction.
    integrator : str
        ``"euler"``, ``"heun"`` or ``"rk4"``.
    time : float
        Integration time ``T``.
    margin : float
        In (0, 1]: sub-steps satisfy ``h L ||A||^2 <= 2 r margin``; below 1 makes Euler
        steps averaged.
    max_substeps : int, optional
        Cap on sub-steps (then ``h`` shrinks and the integrated time is below ``T``).
    certify_grid : int, optional
        Frequency grid of the certified norm bound (default: refined automatically).
    power_grid : int
        Frequency grid of the training-time power iteration.

    Examples
    --------
    >>> import torch
    >>> blk = GradientFlowBlock(4).eval()
    >>> x, y = torch.randn(2, 1, 4, 8, 8).unbind(0)
    >>> bool((blk(x) - blk(y)).norm() <= (x - y).norm())
    True
    """

    def __init__(
        self,
        channels: int,
        hidden: int | None = None,
        *,
        kernel_size: int = 3,
        activation: str = "leaky_relu",
        integrator: str = "euler",
        time: float = 1.0,
        margin: float = 0.95,
        max_substeps: int | None = None,
        certify_grid: int | None = None,
        power_grid: int = 32,
    ):
        super().__init__()
        if kernel_size % 2 == 0 or kernel_size < 1:
            raise ValueError(f"kernel_size must be odd and positive; got {kernel_size}")
        if not (0 < margin <= 1):
            raise ValueError(f"margin must lie in (0, 1]; got {margin!r}")
        if not (time > 0 and math.isfinite(time)):
            raise ValueError(f"time must be positive and finite; got {time!r}")
        if max_substeps is not None and int(max_substeps) < 1:
            raise ValueError(f"max_substeps must be a positive integer or None; got {max_substeps!r}")
        self.hidden = int(hidden or channels)
        self.act = build_activation(activation, self.hidden)
        self.integrator = get_integrator(integrator)
        self.channels = int(channels)
        self.time = float(time)
        self.margin = float(margin)
        self.max_substeps = None if max_substeps is None else int(max_substeps)
        self.certify_grid = certify_grid
        weight = torch.randn(self.hidden, self.channels, kernel_size, kernel_size)
        # Start at ||A|| = 1 (estimated), so one sub-step suffices at initialisation.
        u = torch.randn(power_grid, power_grid // 2 + 1, self.channels, dtype=torch.complex64)
        if not getattr(_init_state, "skip", False):
            est, u = power_estimate(weight, u, 30)
            weight = weight / est
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(torch.zeros(self.hidden))
        # Guarantee-relevant state lives in buffers, so it is saved and moved with the model.
        self.register_buffer("power_vectors", u)
        self.register_buffer("norm_estimate", torch.tensor(1.0, dtype=torch.float64))
        self.register_buffer("norm_bound", torch.tensor(float("nan"), dtype=torch.float64))
        self._certified: tuple | None = None  # (weight version key, ConvNormBound)

    def extra_repr(self) -> str:
        return (
            f"{self.channels}->{self.hidden}, k={self.weight.shape[-1]}, act={self.act.name}, "
            f"integrator={self.integrator.name}, T={self.time:g}, margin={self.margin:g}, max_substeps={self.max_substeps}"
        )

    # -- the vector field --------------------------------------------------------------------
    def gradient(self, x: torch.Tensor, scale: float | torch.Tensor = 1.0, bias_shift: torch.Tensor | None = None) -> torch.Tensor:
        """``A^T sigma(A x + b)`` with ``A = scale * W``, the gradient of the potential
        (zero padding; ``A^T`` is the exact adjoint).  ``bias_shift`` (batch, hidden) is added
        to the bias per sample (noise conditioning; any bias keeps the certificate)."""
        p = self.weight.shape[-1] // 2
        A = self.weight if isinstance(scale, float) and scale == 1.0 else scale * self.weight
        if bias_shift is None:
            z = F.conv2d(x, A, self.bias, padding=p)
        else:
            z = F.conv2d(x, A, None, padding=p) + (self.bias + bias_shift)[:, :, None, None]
        return F.conv_transpose2d(self.act(z), A, padding=p)

    def field(self, x: torch.Tensor) -> torch.Tensor:
        """The vector field ``-A^T sigma(A x + b)`` as evaluated (certified scale in eval)."""
        scale = 1.0 if self.training else self.certified_schedule().scale
        return -self.gradient(x, scale)

    # -- norms and schedules -------------------------------------------------------------------
    def _weight_key(self) -> tuple:
        w = self.weight
        return (w._version, w.data_ptr(), w.dtype, w.device)

    def adopt_certified_norm(self, bound: ConvNormBound) -> None:
        """Take ``bound`` as the certified norm of the current weights (a bound verified for
        exactly these weights before, e.g. by the verification cache of weight files)."""
        w64 = self.weight.detach().to("cpu", torch.float64)
        self._certified = (self._weight_key(), w64.clone(), bound)
        self.norm_bound.fill_(bound.value)

    def certified_norm(self) -> ConvNormBound:
        """Certified bound of ``||A||`` for the current weights (cached until they change)."""
        key = self._weight_key()
        if self._certified is not None and self._certified[0] == key:
            return self._certified[2]
        # The bound depends only on the weight values: a copy, a move or a dtype change of the
        # same weights (deepcopy, .to(float64)) reuses it instead of certifying again.
        w64 = self.weight.detach().to("cpu", torch.float64)
        if self._certified is not None and torch.equal(self._certified[1], w64):
            bound = self._certified[2]
        else:
            bound = certified_conv_norm(self.weight, self.certify_grid)
        self._certified = (key, w64.clone(), bound)
        # Write the buffer only when it changes: an unchanged model then mutates nothing, so
        # function transforms (torch.func.jvp / vjp / vmap) can trace it.
        # (Compared in the buffer's own dtype: Module.float() casts it to float32.)
        if float(self.norm_bound) != float(torch.tensor(bound.value, dtype=self.norm_bound.dtype)):
            self.norm_bound.fill_(bound.value)
        return bound

    def schedule(self, norm: float) -> StepSchedule:
        """Sub-steps, step size and weight scale for a given ``||W||`` (see the module notes).

        Examples
        --------
        >>> GradientFlowBlock(2, margin=1.0).schedule(2.0)
        StepSchedule(substeps=2, step=0.5, norm=2.0, step_factor=2.0, scale=1.0)
        >>> round(GradientFlowBlock(2, margin=1.0, max_substeps=1).schedule(2.0).scale, 9)
        0.707106781
        """
        beta = self.act.slope_bound * norm**2
        limit = 2 * self.integrator.radius * self.margin
        if beta == 0:
            return StepSchedule(1, self.time, norm, 0.0)
        n = max(1, math.ceil(self.time * beta / limit - 1e-12))
        scale = 1.0
        if self.max_substeps is not None and n > self.max_substeps:
            n = self.max_substeps
            scale = math.sqrt(limit * n / (self.time * beta))
        h = self.time / n
        factor = h * beta * scale**2
        if factor > limit:  # rounding guard: shrink the scale a hair, never the other way
            scale *= math.sqrt(limit / factor) * (1 - 1e-15)
            factor = h * beta * scale**2
        return StepSchedule(n, h, norm, factor, scale)

    def certified_schedule(self) -> StepSchedule:
        """The schedule evaluation uses: from the certified norm bound."""
        return self.schedule(self.certified_norm().value)

    def forward(self, x: torch.Tensor, bias_shift: torch.Tensor | None = None) -> torch.Tensor:
        if self.training:
            est, u = symbol_power_step(self.weight, self.power_vectors)
            self.power_vectors.copy_(u)
            self.norm_estimate.fill_(float(est.detach()))
            sched = self.schedule(float(est.detach()))
            scale = sched.scale
            if sched.capped:
                # rho = sqrt(2 r margin n / (T L)) / ||W|| normalises W: it must carry its
                # gradient, or the optimiser, blind to the normalisation, inflates ||W||.
                scale = math.sqrt(2 * self.integrator.radius * self.margin * sched.substeps / (self.time * self.act.slope_bound)) / est
        else:
            sched = self.certified_schedule()
            scale = sched.scale

        def grad(z):
            return self.gradient(z, scale, bias_shift)

        # Runge-Kutta steps are linear in h, so stepping the gradient with -h is stepping
        # the field -gradient with h, without a negation pass over the state.
        for _ in range(sched.substeps):
            x = self.integrator.step(grad, x, -sched.step)
        return x
