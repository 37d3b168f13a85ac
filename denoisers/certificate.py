r"""Certificates: provable upper bounds, and beside them empirical lower bounds.

:func:`certify` reports, for a gradient-flow denoiser,

* per layer: the certified bound of :math:`\|W\|` (float64, every image size; see
  :mod:`denoisers.spectral`), the sub-steps, step size and weight scale :math:`\rho` it fixes
  (:math:`A = \rho W`), :math:`h L \|A\|^2`, and the step's averagedness;
* for the network: the Lipschitz bound (1: every step is non-expansive) and the
  averagedness :math:`\alpha` composed by the rules of :mod:`denoisers.averaged`;
* empirical **lower** bounds, from actual pairs of inputs only (so they cannot overshoot):
  a Jacobian power iteration at data points measured by finite-difference pairs, and a
  gradient-ascent search for the worst pair :math:`(x, y)` for both the Lipschitz ratio and
  the averagedness ratio :math:`\|\Delta r\|^2 / (\|\Delta r\|^2 + \|x - y\|^2 - \|Tx - Ty\|^2)`
  with :math:`r = x - Tx`.

An empirical value above its certified bound is a bug and raises
:class:`CertificateViolation`.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import torch

from .models import AveragedDenoiser, NonexpansiveDenoiser

__all__ = ["Certificate", "LayerCertificate", "CertificateViolation", "certify"]


class CertificateViolation(AssertionError):
    """An empirical lower bound exceeded a certified upper bound: the certificate is wrong."""


@dataclass(frozen=True)
class LayerCertificate:
    """Certified facts about one block."""

    name: str
    norm_bound: float
    grid_max: float
    substeps: int
    step: float
    scale: float
    step_factor: float
    step_alpha: float | None
    integrator: str
    slope_bound: float


@dataclass(frozen=True)
class Certificate:
    """The certificate of a model, with its empirical counterpart.

    Attributes
    ----------
    lipschitz_bound, alpha : float
        Certified (upper bounds).  ``alpha == 1`` means non-expansive only (not averaged).
    theta : float
        Relaxation ``D = (1 - theta) I + theta N`` applied on top of the network.
    layers : list of LayerCertificate
    method : str
    empirical : dict
        Lower bounds: ``jacobian_lipschitz``, ``pair_lipschitz``, ``pair_alpha``.
    seconds : float
        Time to compute the certified part.
    """

    lipschitz_bound: float
    alpha: float
    theta: float
    layers: list[LayerCertificate]
    method: str
    empirical: dict = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def averaged(self) -> bool:
        return self.alpha < 1.0

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        """Human-readable multi-line report (what ``pnp-stable certify`` prints)."""
        lines = [
            f"certified Lipschitz bound : {self.lipschitz_bound:.6f}",
            f"certified averagedness    : alpha = {self.alpha:.6f}" + ("  (averaged)" if self.averaged else "  (non-expansive only)"),
            f"relaxation theta          : {self.theta:.6f}",
            f"method                    : {self.method}",
            f"certification time        : {self.seconds:.2f} s",
            "",
            f"{'layer':<10} {'||W|| bound':>12} {'grid max':>10} {'substeps':>8} {'h':>8} {'rho':>8} {'h L ||A||^2':>12} {'step alpha':>10}",
        ]
        for lc in self.layers:
            sa = f"{lc.step_alpha:.4f}" if lc.step_alpha is not None else "n/e"
            lines.append(f"{lc.name:<10} {lc.norm_bound:12.6f} {lc.grid_max:10.6f} {lc.substeps:8d} {lc.step:8.4f} {lc.scale:8.5f} {lc.step_factor:12.6f} {sa:>10}")
        if self.empirical:
            e = self.empirical
            lines += [
                "",
                "empirical lower bounds (from actual input pairs):",
                f"  Lipschitz, Jacobian power iteration : {e['jacobian_lipschitz']:.6f}  (gap {self.lipschitz_bound - e['jacobian_lipschitz']:.2e})",
                f"  Lipschitz, worst pair found         : {e['pair_lipschitz']:.6f}",
                f"  alpha, worst pair found             : {e['pair_alpha']:.6f}  (gap {self.alpha - e['pair_alpha']:.2e})",
            ]
        return "\n".join(lines)


def _network(model):
    if isinstance(model, NonexpansiveDenoiser):
        return model.net
    raise TypeError(f"certify takes a pnp-stable gradient-flow denoiser; got {type(model).__name__} (baselines carry no certificate)")


def _pair_stats(T, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Lipschitz ratio and averagedness lower bound of one pair (per sample)."""
    Tx, Ty = T(x), T(y)
    d = (x - y).flatten(1)
    dT = (Tx - Ty).flatten(1)
    dr = d - dT
    dd, dTT, drr = (d * d).sum(1), (dT * dT).sum(1), (dr * dr).sum(1)
    lip = (dTT / dd.clamp_min(1e-30)).sqrt()
    alpha = drr / (drr + dd - dTT).clamp_min(1e-30)
    return lip, alpha


def _empirical(model, shape, *, samples: torch.Tensor | None, seed: int, steps: int) -> dict:
    """Empirical lower bounds; a noise-conditioned network is probed at its top knot too (its
    biases change with the level, its certificate does not) and the largest values are kept."""
    cond = getattr(model.net, "conditioning", None)
    levels = [None] if cond is None else [None, float(cond.knots[-1])]
    runs = [_empirical_at(model, shape, samples=samples, seed=seed, steps=steps, sigma=s) for s in levels]
    return {key: max(r[key] for r in runs) for key in runs[0]}


def _empirical_at(model, shape, *, samples: torch.Tensor | None, seed: int, steps: int, sigma=None) -> dict:
    g = torch.Generator().manual_seed(seed)
    x0 = samples.detach().double() if samples is not None else torch.rand(shape, generator=g, dtype=torch.float64)
    # float32 -> float64 is exact, so the certified bounds carry over (the blocks match cached
    # bounds by weight values) and nothing is certified again.
    model = model.double()

    def T(z):
        return model(z, sigma)

    # Jacobian power iteration, each estimate measured on a genuine finite-difference pair.
    v = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    eps, jac = 1e-4, 0.0
    for _ in range(steps):
        v = v / v.flatten(1).norm(dim=1).view(-1, *[1] * (v.ndim - 1))
        lip, _ = _pair_stats(T, x0 + eps * v, x0)
        jac = max(jac, float(lip.detach().max()))
        xr = x0.clone().requires_grad_(True)
        with torch.enable_grad():
            out = T(xr)
            Jv = (T(x0 + eps * v) - T(x0)) / eps
            (v,) = torch.autograd.grad(out, xr, grad_outputs=Jv)
    # Worst-pair search by gradient ascent on each ratio.
    best = {}
    for key, idx in (("pair_lipschitz", 0), ("pair_alpha", 1)):
        x = x0.clone().requires_grad_(True)
        y = (x0 + 0.05 * torch.randn(x0.shape, generator=g, dtype=torch.float64)).requires_grad_(True)
        opt = torch.optim.Adam([x, y], lr=1e-2)
        top = 0.0
        for _ in range(steps):
            with torch.enable_grad():
                stat = _pair_stats(T, x, y)[idx]
                top = max(top, float(stat.detach().max()))
                opt.zero_grad()
                (-stat.sum()).backward()
            opt.step()
        best[key] = top
    return {"jacobian_lipschitz": jac, **best}


def certify(model, *, empirical: bool = True, samples: torch.Tensor | None = None, shape: tuple[int, ...] | None = None,
            seed: int = 0, steps: int = 20) -> Certificate:
    """Certify a gradient-flow denoiser (see module notes).

    Parameters
    ----------
    model : NonexpansiveDenoiser or AveragedDenoiser
        Certified in eval mode, on a float64 copy (the model itself is not changed).
    empirical : bool
        Also compute the empirical lower bounds.
    samples : torch.Tensor, optional
        Data points (B, C, H, W) for the empirical part (default: uniform noise images).
    shape : tuple, optional
        Shape of the default samples (default (2, C, 32, 32)).
    seed, steps
        Seed and iteration count of the empirical searches.

    Returns
    -------
    Certificate

    Raises
    ------
    CertificateViolation
        If an empirical lower bound exceeds a certified bound.

    Examples
    --------
    >>> from denoisers import AveragedDenoiser, GradientFlowNet
    >>> cert = certify(AveragedDenoiser(GradientFlowNet(1, width=8, depth=2)), steps=3)
    >>> cert.averaged and cert.empirical["pair_alpha"] <= cert.alpha
    True
    """
    import copy

    net = _network(model)
    t0 = time.perf_counter()
    work = copy.deepcopy(model).eval()
    net = work.net
    layers = []
    for i, blk in enumerate(net.blocks):
        bound = blk.certified_norm()
        sched = blk.schedule(bound.value)
        if sched.step_factor > 2 * blk.integrator.radius:
            raise CertificateViolation(f"block {i}: h L ||A||^2 = {sched.step_factor:.6g} exceeds 2r = {2 * blk.integrator.radius}")
        step_alpha = sched.step_factor / 2 if blk.integrator.averaged else None
        layers.append(LayerCertificate(f"block{i}", bound.value, bound.grid_max, sched.substeps, sched.step, sched.scale,
                                       sched.step_factor, step_alpha, blk.integrator.name, blk.act.slope_bound))
    theta = work.effective_theta() if isinstance(work, AveragedDenoiser) else 1.0
    alpha = work.certified_alpha()
    method = (
        "per-layer sup of the convolution symbol (grid max + curvature bound, float64), sub-steps with "
        "h L ||A||^2 <= 2 r margin; Euler steps alpha = h L ||A||^2 / 2 composed by Combettes-Yamada; "
        "zero-channel lift and projection keep alpha; relaxation multiplies it by theta"
    )
    cert = Certificate(lipschitz_bound=1.0, alpha=alpha, theta=theta, layers=layers, method=method, seconds=time.perf_counter() - t0)
    if not empirical:
        return cert
    shp = shape or (2, net.channels, 32, 32)
    emp = _empirical(work, shp, samples=samples, seed=seed, steps=steps)
    tol = 1e-9
    if emp["jacobian_lipschitz"] > cert.lipschitz_bound + tol or emp["pair_lipschitz"] > cert.lipschitz_bound + tol:
        raise CertificateViolation(f"empirical Lipschitz {max(emp['jacobian_lipschitz'], emp['pair_lipschitz']):.9f} exceeds the bound 1")
    if emp["pair_alpha"] > cert.alpha + tol:
        raise CertificateViolation(f"empirical alpha {emp['pair_alpha']:.9f} exceeds the certified {cert.alpha:.9f}")
    return Certificate(**{**cert.__dict__, "empirical": emp})
