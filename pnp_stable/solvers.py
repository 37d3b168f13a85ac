r"""PnP forward-backward and PnP-ADMM whose convergence is checked before, during and after.

Before
    The theorem's hypotheses are checked from certified quantities: the operator norm
    (``exact`` or ``upper_bound`` from :func:`operators.operator_norm`) and the denoiser's
    certified averagedness (``denoiser.certified_alpha()``).  A step that breaks them is
    refused with the bound in the message (``strict=False`` warns instead).  A denoiser
    without a certificate runs with a warning and the runtime checks only.
During
    The fixed-point residual of the **governing** sequence (``x`` for FBS, ``z`` for ADMM;
    deepinv measures ADMM on ``x``) is recorded for every sample.  For an averaged iteration
    it cannot increase; a rise beyond float tolerance stops that sample with the reason
    ``"non-monotone"``.  Non-finite values and blow-ups stop it too, keeping the last finite
    iterate.  Each sample stops on its own tolerance, and stopped samples cost nothing.
    Safeguarded Anderson acceleration (``anderson=``, on by default) and inexact proxes keep
    the guarantee; the argument is in :mod:`pnp_stable.fixed_point`.
After
    A :class:`~pnp_stable.report.ConvergenceReport`.

PnP-FBS: :math:`x_{k+1} = D(x_k - \tau A^\top(A x_k - y))`.  With :math:`D`
:math:`\alpha`-averaged (:math:`\alpha < 1`) and :math:`0 < \tau < 2/\|A\|^2` the map is
averaged (composition of averaged maps), so the iterates converge to a fixed point when one
exists (Krasnosel'skii-Mann) and the residual is non-increasing.

Krasnosel'skii-Mann relaxation (``relaxation=lam``): :math:`u_{k+1} = (1 - \lambda) u_k + \lambda T u_k`
converges for :math:`0 < \lambda < 1/\alpha_T` when :math:`T` is :math:`\alpha_T`-averaged (FBS:
:math:`\alpha_T` composed from the denoiser's :math:`\alpha` and the gradient step's
:math:`\tau\|A\|^2/2`; ADMM: :math:`\alpha_T = 1/2`, so :math:`\lambda < 2`).

PnP-ADMM (Douglas-Rachford): :math:`x_k = \mathrm{prox}_{\tau f}(z_k)`,
:math:`z_{k+1} = z_k + D(2 x_k - z_k) - x_k`.  With :math:`D` firmly non-expansive
(:math:`\alpha \le 1/2`), :math:`2D - I` is non-expansive and the map on :math:`z` is
1/2-averaged, for every :math:`\tau > 0`.

Inexact prox (ADMM with an iterative ``prox_l2``: padded and unknown blur boundaries): an
error :math:`e` in :math:`x_k` moves :math:`z_{k+1}` by at most :math:`3\lambda e` (``D`` is
non-expansive), so the map on ``z`` is evaluated with errors that a summable schedule
:math:`3\lambda e_k \le E (k + 1)^{-1.1}` keeps summable (Eckstein and Bertsekas 1992;
Combettes 2004).  The prox's error is bounded by its CG residual (its matrix is at least the
identity), the schedule is checked at every iteration, and a miss is reported as "not
guaranteed".

Each hypothesis is one :class:`~pnp_stable.report.Condition`: the same predicate fills the
report and decides the refusal.
"""

from __future__ import annotations

import math
import warnings

import torch

from denoisers.averaged import compose_alpha
from operators import operator_norm
from operators._checks import check_finite, check_image_batch

from .anderson import Anderson
from .fixed_point import run_fixed_point
from .report import Condition, ConvergenceReport

__all__ = ["pnp_fbs", "pnp_admm", "certified_alpha", "initial_estimate"]

#: Decay margin of the inexact-prox error schedule ``E (k + 1) ** -(1 + margin)``.
SCHEDULE_DECAY = 0.1


def certified_alpha(denoiser) -> float | None:
    """The denoiser's certified averagedness, or None when it carries no certificate.

    Examples
    --------
    >>> certified_alpha(lambda x, sigma: x) is None
    True
    """
    fn = getattr(denoiser, "certified_alpha", None)
    value = fn() if fn is not None else None
    if value is None:  # no method, or a wrapper whose inner denoiser carries no certificate
        return None
    alpha = float(value)
    if not (0 < alpha <= 1):
        raise ValueError(f"the denoiser reports a certified alpha of {alpha}; expected a number in (0, 1]")
    return alpha


def initial_estimate(operator, y: torch.Tensor) -> torch.Tensor:
    """The default start of a solver: the operator's ``initial_estimate(y)`` when it has one
    (pnp-stable operators), else ``A^T y``.

    Examples
    --------
    >>> import torch
    >>> from operators import Blur
    >>> initial_estimate(Blur("box:3", boundary="unknown"), torch.ones(1, 1, 8, 8)).shape
    torch.Size([1, 1, 10, 10])
    """
    start = getattr(operator, "initial_estimate", None)
    return start(y) if callable(start) else operator.A_adjoint(y)


def _working_precision(denoiser, dtype: torch.dtype) -> torch.dtype:
    """The coarser of the solve's dtype and the dtype the denoiser computes in."""
    inner = getattr(denoiser, "dtype", None)
    if not isinstance(inner, torch.dtype) and isinstance(denoiser, torch.nn.Module):
        p = next(iter(denoiser.parameters()), None)
        inner = p.dtype if p is not None else None
    if isinstance(inner, torch.dtype) and inner.is_floating_point and torch.finfo(inner).eps > torch.finfo(dtype).eps:
        return inner
    return dtype


def _enforce(solver: str, conditions: list[Condition], strict: bool) -> None:
    """Refuse (or, with ``strict=False``, warn about) every failing condition that asks for it."""
    for c in conditions:
        if c.holds or c.on_failure == "report":
            continue
        message = f"{solver}: {c.detail}"
        if c.on_failure == "warn":
            warnings.warn(message, UserWarning, stacklevel=3)
        elif strict:
            raise ValueError(message + " (pass strict=False to run anyway, without a guarantee)")
        else:
            warnings.warn(message, UserWarning, stacklevel=3)


def _denoiser_condition(alpha: float | None, limit: float, solver: str, name: str, hint: str) -> Condition:
    """The denoiser hypothesis: certified alpha below (or at) ``limit``."""
    if alpha is None:
        return Condition(name, False, f"the denoiser carries no certificate: {solver} runs without a convergence guarantee "
                         "(runtime checks only)", on_failure="warn")
    ok = alpha < limit if limit == 1.0 else alpha <= limit
    if ok:
        return Condition(name, True, f"certified alpha = {alpha:.6g} {'<' if limit == 1.0 else '<='} {limit:g}")
    return Condition(name, False, hint.format(alpha=alpha))


def _check_inputs(y: torch.Tensor, sigma: float, tol: float, max_iter: int) -> None:
    check_image_batch(y, "y")
    check_finite(y, "y")
    if not (tol > 0):
        raise ValueError(f"tol must be positive; got {tol!r}")
    if int(max_iter) < 1:
        raise ValueError(f"max_iter must be a positive integer; got {max_iter!r}")
    if not (sigma >= 0 and math.isfinite(sigma)):
        raise ValueError(f"sigma (denoiser strength) must be finite and >= 0; got {sigma!r}")


def _subset(t: torch.Tensor, idx: torch.Tensor | None) -> torch.Tensor:
    return t if idx is None else t[idx]


def _finish(report: ConvergenceReport) -> ConvergenceReport:
    """Fold the run's inexact-evaluation record into the conditions and the guarantee."""
    if report.inexact_schedule_met:
        missed = [b for b, ok in enumerate(report.inexact_schedule_met) if not ok]
        report.conditions.append(Condition(
            "inexact prox within its summable error schedule", not missed,
            "every CG residual met 3 lambda e_k <= E (k + 1)^-1.1 (or the working precision's rounding floor)" if not missed else
            f"the prox missed its error schedule on sample(s) {missed} (raise prox_max_iter)", on_failure="report"))
        report.guaranteed = report.guaranteed and not missed
    return report


def pnp_fbs(y: torch.Tensor, operator, denoiser, *, sigma: float = 0.0, step: float | None = None,
            step_factor: float | None = None, x0: torch.Tensor | None = None,
            relaxation: float = 1.0, anderson=True, max_iter: int = 200, tol: float = 1e-4, strict: bool = True,
            callback=None, progress: bool = False) -> tuple[torch.Tensor, ConvergenceReport]:
    r"""PnP forward-backward splitting with checked convergence.

    Parameters
    ----------
    y : torch.Tensor
        Measurements (B, C, H, W).
    operator : deepinv.physics.LinearPhysics
        Forward model; its norm must be certified for a guarantee.
    denoiser : callable ``(x, sigma)``
        pnp-stable denoisers carry ``certified_alpha()``; others run uncertified.
    sigma : float
        Noise level passed to the denoiser.
    step : float, optional
        :math:`\tau`; default :math:`1/\|A\|^2` (certified norm).  Must be below :math:`2/\|A\|^2`.
    step_factor : float, optional
        The step relative to the certified norm, :math:`\tau = \text{step\_factor}/\|A\|^2`
        (in (0, 2)); not together with ``step``.
    x0 : torch.Tensor, optional
        Start (default: :func:`initial_estimate`, ``A^T y`` for most operators).
    relaxation : float
        Krasnosel'skii-Mann relaxation ``lam``; must be below ``1 / alpha_T``.
    anderson : bool, int or Anderson
        Safeguarded Anderson acceleration (default on, memory 5); an int sets the memory;
        False runs the plain iteration.
    max_iter, tol
        Cap on the map evaluations and relative residual tolerance, per sample.
    strict : bool
        Refuse a run whose hypotheses fail (default) or warn.

    Returns
    -------
    x : torch.Tensor
    report : ConvergenceReport

    Examples
    --------
    >>> import torch
    >>> from operators import Blur
    >>> class Shrink:  # x -> x / 2: 1/2-averaged, certified by hand
    ...     def __call__(self, x, sigma): return 0.5 * x
    ...     def certified_alpha(self): return 0.5
    >>> x, rep = pnp_fbs(torch.rand(1, 1, 16, 16), Blur("box:3"), Shrink())
    >>> rep.guaranteed, rep.converged
    (True, [True])
    """
    _check_inputs(y, sigma, tol, max_iter)
    acc = Anderson.resolve(anderson)
    start = initial_estimate(operator, y) if x0 is None else x0
    in_shape = (1,) + tuple(start.shape[1:])
    norm = operator_norm(operator, in_shape)
    limit = 2.0 / norm.value**2 if norm.value > 0 else math.inf
    if step is not None and step_factor is not None:
        raise ValueError("give step or step_factor, not both")
    if step_factor is not None and not (math.isfinite(step_factor) and step_factor > 0):
        raise ValueError(f"step_factor must be a finite number > 0; got {step_factor!r}")
    factor = 1.0 if step_factor is None else float(step_factor)
    tau = (factor / norm.value**2 if norm.value > 0 else factor) if step is None else float(step)
    alpha = certified_alpha(denoiser)
    step_ok = 0 < tau < limit
    lam = float(relaxation)
    grad_alpha = tau * norm.value**2 / 2
    alpha_T = compose_alpha(alpha, grad_alpha) if alpha is not None and 0 < grad_alpha < 1 and alpha < 1 else None
    lam_limit = 1 / alpha_T if alpha_T is not None else 1.0
    lam_ok = 0 < lam < lam_limit or lam == 1.0
    conditions = [
        Condition("operator norm certified", norm.certified, f"||A|| = {norm.value:.6g} ({norm.kind}: {norm.method})",
                  on_failure="report"),
        Condition("step", step_ok, f"tau = {tau:.6g} < 2 / ||A||^2 = {limit:.6g}" if step_ok else
                  f"step tau = {tau:.6g} breaks tau < 2 / ||A||^2 = {limit:.6g} (||A|| = {norm.value:.6g}, {norm.kind})"),
        _denoiser_condition(alpha, 1.0, "PnP-FBS", "denoiser averaged",
                            "PnP-FBS needs an averaged denoiser (alpha < 1); this one is only non-expansive (alpha = {alpha:.6g})"),
        Condition("relaxation", lam_ok and (lam == 1.0 or alpha_T is not None),
                  (f"lambda = {lam:.6g} < 1 / alpha_T = {lam_limit:.6g}" if alpha_T is not None else f"lambda = {lam:.6g}")
                  if lam_ok else f"relaxation lambda = {lam:.6g} breaks 0 < lambda < 1 / alpha_T = {lam_limit:.6g}",
                  on_failure="refuse" if not lam_ok else "report"),
    ]
    _enforce("pnp-fbs", conditions, strict)
    report = ConvergenceReport("pnp-fbs", "Krasnosel'skii-Mann (composition of averaged maps)"
                               + (", safeguarded Anderson acceleration" if acc is not None else ""),
                               conditions, all(c.holds for c in conditions))

    within = _inexact_denoiser(denoiser)
    schedule = _error_schedule(tol, start) if within is not None else None

    def governing_map(x, idx, demand):
        yi = _subset(y, idx)
        v = x - tau * operator.A_adjoint(operator.A(x) - yi)
        if within is None:
            tx, eta, rounding = denoiser(v, sigma), None, None
        else:
            # T = (1 - lam) I + lam D(grad step): D's certified error, scaled by lam, is T's.
            tx, eta, rounding = within(v, sigma, demand / lam)
            eta, rounding = lam * eta.to(x.device), lam * rounding.to(x.device)
        return (tx if lam == 1.0 else (1 - lam) * x + lam * tx), eta, rounding

    with torch.no_grad():
        x = run_fixed_point(governing_map, start, tol=tol, max_iter=max_iter, report=report, anderson=acc,
                            precision=_working_precision(denoiser, y.dtype), error_schedule=schedule,
                            callback=callback, progress=progress)
    return x, _finish(report)


def _inexact_denoiser(denoiser):
    """The denoiser's ``denoise_within(x, sigma, atol) -> (D x, error bound, rounding floor)``
    when it computes ``D`` iteratively with a certified error bound (an equilibrium network),
    else None (an exactly computed denoiser)."""
    return getattr(denoiser, "denoise_within", None)


def _error_schedule(tol: float, start: torch.Tensor):
    """The summable accuracy schedule ``E (k + 1) ** -(1 + margin)`` of inexact evaluations;
    its scale ``E``: the first error may be the size of the stopping tolerance."""
    E = tol * float(start.flatten(1).norm(dim=1).max().clamp_min(1e-12))
    return lambda k: E * (k.to(torch.float64) + 1) ** (-(1 + SCHEDULE_DECAY))


def pnp_admm(y: torch.Tensor, operator, denoiser, *, sigma: float = 0.0, step: float = 1.0, z0: torch.Tensor | None = None,
             relaxation: float = 1.0, anderson=True, max_iter: int = 200, tol: float = 1e-4, strict: bool = True,
             prox_precision: torch.dtype | None = None, callback=None, progress: bool = False) -> tuple[torch.Tensor, ConvergenceReport]:
    r"""PnP-ADMM in Douglas-Rachford form, monitored on the governing sequence ``z``.

    Parameters
    ----------
    y, operator, denoiser, sigma, anderson, max_iter, tol, strict
        As for :func:`pnp_fbs`.
    step : float
        :math:`\tau > 0` of the data prox ``operator.prox_l2(z, y, tau)``; any positive value
        keeps the guarantee and sets the regularisation strength.
    z0 : torch.Tensor, optional
        Start of ``z`` (default: :func:`initial_estimate`).
    relaxation : float
        Krasnosel'skii-Mann relaxation ``lam`` in (0, 2) (the map on ``z`` is 1/2-averaged).
    prox_precision : torch.dtype, optional
        Solve an iterative data prox (conjugate gradients) in this dtype, e.g. ``torch.float64``
        for a float32 run: the prox ``(tau A^T A + I)^{-1}`` computed in float32 stops at a rounding
        floor about ``tau ||A||^2`` times float32's, whose noise in every evaluation stalls the
        accelerated tail (benchmarks/RESULTS.md, section "prox-precision").
        The result is rounded back to the run's dtype and that rounding is added to the error
        bound.  Each iteration then costs more (the conjugate gradients run in float64).
        Default: the run's dtype.

    Returns
    -------
    x : torch.Tensor
        ``prox(z)`` at the last ``z``.
    report : ConvergenceReport

    Examples
    --------
    >>> import torch
    >>> from operators import Blur
    >>> class Shrink:
    ...     def __call__(self, x, sigma): return 0.5 * x
    ...     def certified_alpha(self): return 0.5
    >>> x, rep = pnp_admm(torch.rand(1, 1, 16, 16), Blur("box:3"), Shrink(), step=2.0)
    >>> rep.guaranteed, rep.converged
    (True, [True])
    """
    from operators import LinearOperator

    _check_inputs(y, sigma, tol, max_iter)
    acc = Anderson.resolve(anderson)
    tau = float(step)
    if not (tau > 0 and math.isfinite(tau)):
        raise ValueError(f"step (tau) must be positive and finite; got {step!r}")
    alpha = certified_alpha(denoiser)
    lam = float(relaxation)
    lam_ok = 0 < lam < 2
    checked_prox = isinstance(operator, LinearOperator)
    conditions = [
        Condition("step", True, f"tau = {tau:.6g} > 0 (any positive value)"),
        _denoiser_condition(alpha, 0.5, "PnP-ADMM", "denoiser firmly non-expansive",
                            "PnP-ADMM needs a firmly non-expansive denoiser (alpha <= 1/2); this one has alpha = {alpha:.6g}: "
                            "relax it, e.g. AveragedDenoiser(..., target_alpha=0.5)"),
        Condition("relaxation", lam_ok, f"lambda = {lam:.6g} in (0, 2)" if lam_ok else
                  f"relaxation lambda = {lam:.6g} breaks 0 < lambda < 2"),
        Condition("data prox checked", checked_prox,
                  "exact or with an error bound (pnp-stable operator)" if checked_prox else
                  f"{type(operator).__name__}.prox_l2 reports no error bound; wrap the operator with operators.as_operator "
                  "for a checked prox", on_failure="report"),
    ]
    _enforce("pnp-admm", conditions, strict)
    report = ConvergenceReport("pnp-admm", "Douglas-Rachford (2D - I non-expansive: 1/2-averaged map on z)"
                               + (", safeguarded Anderson acceleration" if acc is not None else ""),
                               conditions, all(c.holds for c in conditions))
    start = initial_estimate(operator, y) if z0 is None else z0
    warm = {"x": None}
    precision = _working_precision(denoiser, y.dtype)
    wide = checked_prox and prox_precision is not None and torch.finfo(prox_precision).eps < torch.finfo(y.dtype).eps
    y_prox = y.to(prox_precision) if wide else y
    # Relative accuracy below which a CG residual is rounding: the prox's own dtype when it is wider.
    floor = 4 * torch.finfo(prox_precision if wide else precision).eps
    within = _inexact_denoiser(denoiser)
    schedule = _error_schedule(tol, start)
    # With both inexact, the data prox and the denoiser share the demand: half each.
    prox_share = 0.5 if within is not None else 1.0

    def prox(z, yi, idx, atol):
        """The data prox and its error bound (per sample), in the prox's precision when wider."""
        prev = warm["x"]
        kw = {} if prev is None else {"init": _subset(prev, idx).to(yi.dtype)}
        x, info = operator.prox_l2_info(z.to(yi.dtype), yi, tau, tol=floor, atol=atol, **kw)
        bound = info["error_bound"].to(torch.float64)
        rounding = floor * info["rhs_norm"].to(torch.float64) if "rhs_norm" in info else torch.zeros_like(bound)
        if x.dtype != z.dtype:
            # Rounding the solution back to the run's dtype moves it: measured, and added.
            narrow = x.to(z.dtype)
            cast = (narrow.to(x.dtype) - x).flatten(1).norm(dim=1)
            x, bound, rounding = narrow, bound + cast, rounding + cast
        return x, bound, rounding

    def governing_map(z, idx, demand):
        yi = _subset(y_prox, idx)
        if checked_prox:
            # x enters T through D(2x - z) - x: D non-expansive, so a prox error counts 3 times.
            x, bound, rnd = prox(z, yi, idx, prox_share * demand / (3 * lam))
            eta = 3 * lam * bound.to(z.device)
            # A CG residual at the precision's floor is rounding, not a missed schedule.
            rounding = 3 * lam * rnd.to(z.device)
        else:
            x, eta, rounding = operator.prox_l2(z, yi, tau), None, None
        if warm["x"] is None or idx is None:
            warm["x"] = x
        else:
            warm["x"][idx] = x
        reflected = x.mul(2).sub_(z)  # 2x - z, one buffer
        if within is None:
            dx = denoiser(reflected, sigma)
        else:
            budget = (1 - prox_share) * demand if checked_prox else demand
            dx, d_eta, d_round = within(reflected, sigma, budget / lam)
            d_eta, d_round = lam * d_eta.to(z.device), lam * d_round.to(z.device)
            eta = d_eta if eta is None else eta + d_eta
            rounding = d_round if rounding is None else rounding + d_round
        del reflected
        # z + lam (D(2x - z) - x), in the denoiser's output buffer when it is a fresh one.
        out = dx.sub_(x) if dx.data_ptr() != z.data_ptr() and dx.data_ptr() != x.data_ptr() else dx - x
        if lam != 1.0:
            out.mul_(lam)
        return out.add_(z), eta, rounding

    with torch.no_grad():
        z = run_fixed_point(governing_map, start, tol=tol, max_iter=max_iter, report=report, anderson=acc,
                            precision=precision, error_schedule=schedule if checked_prox or within is not None else None,
                            callback=callback, progress=progress)
        if checked_prox:
            x = prox(z, y_prox, None, 0.0)[0]
        else:
            x = operator.prox_l2(z, y, tau)
    return x, _finish(report)

