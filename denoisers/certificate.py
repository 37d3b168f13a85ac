r"""Certificates: provable upper bounds, and beside them empirical lower bounds.

A certified architecture implements the small protocol :class:`CertifiedDenoiser`
(``certified_alpha()``, ``certified_part()``, ``channels``); :func:`certify` adds the empirical
side to whatever certified facts the architecture states.  For a gradient-flow denoiser these
are

* per layer: the certified bound of :math:`\|W\|` (float64, every image size; see
  :mod:`denoisers.spectral`), the sub-steps, step size and weight scale :math:`\rho` it fixes
  (:math:`A = \rho W`), :math:`h L \|A\|^2`, and the step's averagedness;
* for the network: the Lipschitz bound (1: every step is non-expansive) and the
  averagedness :math:`\alpha` composed by the rules of :mod:`denoisers.averaged`;
* for an equilibrium (LBEN) denoiser: the bound ``gamma`` its parametrisation guarantees and a
  float64 check of its LMI (:mod:`denoisers.lben`);
* for every architecture, empirical **lower** bounds, from actual pairs of inputs only (so they cannot overshoot):
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

__all__ = ["Certificate", "LayerCertificate", "CertificateViolation", "CertifiedDenoiser", "certify", "is_certified"]


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
        Per-block facts of a gradient-flow network (empty for other architectures).
    method : str
    empirical : dict
        Lower bounds: ``jacobian_lipschitz``, ``pair_lipschitz``, ``pair_alpha``.
    seconds : float
        Time to compute the certified part.
    details : dict
        Other certified facts of the architecture (e.g. an LBEN's LMI check), JSON-able.
    """

    lipschitz_bound: float
    alpha: float
    theta: float
    layers: list[LayerCertificate]
    method: str
    empirical: dict = field(default_factory=dict)
    seconds: float = 0.0
    details: dict = field(default_factory=dict)

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
        ]
        if self.layers:
            lines += ["", f"{'layer':<10} {'||W|| bound':>12} {'grid max':>10} {'substeps':>8} {'h':>8} {'rho':>8} {'h L ||A||^2':>12} {'step alpha':>10}"]
        for key, value in self.details.items():
            lines.append(f"{key:<26}: {value:.6g}" if isinstance(value, float) else f"{key:<26}: {value}")
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


class CertifiedDenoiser:
    """The protocol of a certified denoiser, as a mixin that supplies the optional parts.

    Required
        ``certified_alpha() -> float | None``: the certified averagedness (None: this instance
        carries no certificate, e.g. a wrapper around a baseline); ``certified_part() ->
        Certificate``: the float64 certified facts, without the empirical part; ``channels``.
    Optional (defaults here)
        ``probe_levels()``: noise levels the empirical search visits; ``tighten_for_probing()``:
        make a *copy* evaluate as exactly as it can before it is probed; ``verification_state()``
        / ``adopt_verification_state(state)`` / ``forget_verification()``: what the weights
        loader caches so that a file is verified once (nothing, by default).

    Examples
    --------
    >>> from denoisers import AveragedDenoiser, GradientFlowNet
    >>> isinstance(AveragedDenoiser(GradientFlowNet(1, width=4, depth=1)), CertifiedDenoiser)
    True
    """

    def certified_alpha(self) -> float | None:  # pragma: no cover - every certified class overrides it
        raise NotImplementedError

    def certified_part(self) -> "Certificate":  # pragma: no cover - every certified class overrides it
        raise NotImplementedError

    def probe_levels(self) -> list:
        """Noise levels (None: unconditioned) at which the empirical bounds are searched."""
        return [None]

    def tighten_for_probing(self) -> None:
        """Prepare this (copied) model to be probed; nothing to do by default."""

    def verification_state(self) -> list | None:
        """Certified quantities worth caching across loads (None: recompute every time)."""
        return None

    def adopt_verification_state(self, state) -> bool:
        """Install cached certified quantities; False when they do not fit this model."""
        return False

    def forget_verification(self) -> None:
        """Drop adopted cached quantities (they will be recomputed)."""


def is_certified(model) -> bool:
    """True when ``model`` follows the protocol and this instance carries a certificate.

    Examples
    --------
    >>> from denoisers import AveragedDenoiser, GradientFlowNet
    >>> from denoisers.baselines import DnCNN
    >>> is_certified(AveragedDenoiser(GradientFlowNet(1, width=4, depth=1))), is_certified(DnCNN(1, width=4, depth=2))
    (True, False)
    """
    return isinstance(model, CertifiedDenoiser) and model.certified_alpha() is not None


def _check_certified(model) -> None:
    if not is_certified(model):
        raise TypeError(f"certify takes a certified pnp-stable denoiser; got {type(model).__name__} (baselines carry no certificate)")


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
    runs = [_empirical_at(model, shape, samples=samples, seed=seed, steps=steps, sigma=s) for s in model.probe_levels()]
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
    """Certify a denoiser that follows :class:`CertifiedDenoiser` (see module notes).

    Parameters
    ----------
    model : CertifiedDenoiser
        A gradient-flow (:class:`~denoisers.AveragedDenoiser`, ...) or LBEN denoiser.
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

    _check_certified(model)
    t0 = time.perf_counter()
    work = copy.deepcopy(model).eval()
    cert = work.certified_part()
    cert = Certificate(**{**cert.__dict__, "seconds": time.perf_counter() - t0})
    if not empirical:
        return cert
    shp = shape or (2, work.channels, 32, 32)
    work.tighten_for_probing()
    emp = _empirical(work, shp, samples=samples, seed=seed, steps=steps)
    tol = 1e-9
    if emp["jacobian_lipschitz"] > cert.lipschitz_bound + tol or emp["pair_lipschitz"] > cert.lipschitz_bound + tol:
        raise CertificateViolation(f"empirical Lipschitz {max(emp['jacobian_lipschitz'], emp['pair_lipschitz']):.9f} exceeds "
                                   f"the bound {cert.lipschitz_bound:.9f}")
    if emp["pair_alpha"] > cert.alpha + tol:
        raise CertificateViolation(f"empirical alpha {emp['pair_alpha']:.9f} exceeds the certified {cert.alpha:.9f}")
    return Certificate(**{**cert.__dict__, "empirical": emp})
