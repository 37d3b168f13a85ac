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
    iterate.  Each sample stops on its own tolerance.
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
"""

from __future__ import annotations

import math
import time
import warnings
from typing import Callable

import torch

from denoisers.averaged import compose_alpha
from operators import operator_norm
from operators._checks import check_finite, check_image_batch

from .report import Condition, ConvergenceReport

__all__ = ["pnp_fbs", "pnp_admm", "certified_alpha"]


def certified_alpha(denoiser) -> float | None:
    """The denoiser's certified averagedness, or None when it carries no certificate.

    Examples
    --------
    >>> certified_alpha(lambda x, sigma: x) is None
    True
    """
    fn = getattr(denoiser, "certified_alpha", None)
    if fn is None:
        return None
    alpha = float(fn())
    if not (0 < alpha <= 1):
        raise ValueError(f"the denoiser reports a certified alpha of {alpha}; expected a number in (0, 1]")
    return alpha


def _refuse(message: str, strict: bool) -> None:
    if strict:
        raise ValueError(message + " (pass strict=False to run anyway, without a guarantee)")
    warnings.warn(message, UserWarning, stacklevel=3)


def _norms(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).norm(dim=1)


def _iterate(step: Callable[[torch.Tensor], torch.Tensor], u0: torch.Tensor, *, tol: float, max_iter: int,
             report: ConvergenceReport, callback=None, progress: bool = False) -> torch.Tensor:
    """Run ``u <- step(u)`` per sample until its relative residual is below ``tol``."""
    from tqdm.auto import tqdm

    B = u0.shape[0]
    eps = torch.finfo(u0.dtype).eps
    u = u0.clone()
    active = torch.ones(B, dtype=torch.bool, device=u.device)
    prev_abs = torch.full((B,), float("inf"), dtype=u.dtype, device=u.device)
    history: list[list[float]] = [[] for _ in range(B)]
    iters = [0] * B
    reasons = ["max_iter"] * B
    monotone = [True] * B
    scale0 = _norms(u0).clamp_min(1.0)
    ref = _norms(u0)
    t0 = time.perf_counter()
    bar = tqdm(total=max_iter, disable=not progress, desc=report.solver, unit="it")
    for k in range(max_iter):
        new = step(u)
        finite = torch.isfinite(new.flatten(1)).all(dim=1)
        diff = _norms(new - u)
        size = _norms(new).clamp_min(torch.finfo(u.dtype).tiny)
        rel = diff / size
        # Float tolerance of a residual: rounding of ||u_{k+1} - u_k|| is ~ eps times the size
        # of the quantities it is computed from (the iterate, or the data through A^T y).
        slack = 1e3 * eps * torch.maximum(size, ref)
        for b in torch.nonzero(active).flatten().tolist():
            iters[b] = k + 1
            if not bool(finite[b]):
                reasons[b], active[b] = "non-finite", False
                continue
            if float(size[b]) > 1e8 * float(scale0[b]):
                reasons[b], active[b] = "diverged", False
                continue
            history[b].append(float(rel[b]))
            if float(diff[b]) > float(prev_abs[b]) * (1 + 1e-6) + float(slack[b]):
                monotone[b] = False
                reasons[b], active[b] = "non-monotone", False
                u[b] = new[b]
                continue
            prev_abs[b] = diff[b]
            u[b] = new[b]
            if float(rel[b]) <= tol:
                reasons[b], active[b] = "tol", False
        bar.update(1)
        if B == 1 and history[0]:
            bar.set_postfix(residual=f"{history[0][-1]:.2e}")
        if callback is not None:
            callback(k, u, rel)
        if not bool(active.any()):
            break
    bar.close()
    report.iterations = iters
    report.stop_reason = reasons
    report.converged = [r == "tol" for r in reasons]
    report.monotone = monotone
    report.residual_history = history
    report.final_residual = [h[-1] if h else float("nan") for h in history]
    report.wall_time = time.perf_counter() - t0
    for b, r in enumerate(reasons):
        if r in ("non-finite", "diverged", "non-monotone"):
            warnings.warn(
                f"{report.solver}: sample {b} stopped at iteration {iters[b]} ({r})"
                + ("; the residual of an averaged iteration rose, so a certificate or the operator is wrong" if r == "non-monotone" else ""),
                RuntimeWarning, stacklevel=3,
            )
    return u


def _check_inputs(y: torch.Tensor, sigma: float, tol: float, max_iter: int) -> None:
    check_image_batch(y, "y")
    check_finite(y, "y")
    if not (tol > 0):
        raise ValueError(f"tol must be positive; got {tol!r}")
    if int(max_iter) < 1:
        raise ValueError(f"max_iter must be a positive integer; got {max_iter!r}")
    if not (sigma >= 0 and math.isfinite(sigma)):
        raise ValueError(f"sigma (denoiser strength) must be finite and >= 0; got {sigma!r}")


def pnp_fbs(y: torch.Tensor, operator, denoiser, *, sigma: float = 0.0, step: float | None = None,
            step_factor: float | None = None, x0: torch.Tensor | None = None,
            relaxation: float = 1.0, max_iter: int = 200, tol: float = 1e-4, strict: bool = True, callback=None, progress: bool = False
            ) -> tuple[torch.Tensor, ConvergenceReport]:
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
        Start (default ``A^T y``).
    relaxation : float
        Krasnosel'skii-Mann relaxation ``lam``; must be below ``1 / alpha_T``.
    max_iter, tol
        Iteration cap and relative residual tolerance per sample.
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
    in_shape = (1,) + tuple(operator.A_adjoint(y[:1]).shape[1:])
    norm = operator_norm(operator, in_shape)
    limit = 2.0 / norm.value**2 if norm.value > 0 else math.inf
    if step is not None and step_factor is not None:
        raise ValueError("give step or step_factor, not both")
    if step_factor is not None and not (math.isfinite(step_factor) and step_factor > 0):
        raise ValueError(f"step_factor must be a finite number > 0; got {step_factor!r}")
    factor = 1.0 if step_factor is None else float(step_factor)
    tau = (factor / norm.value**2 if norm.value > 0 else factor) if step is None else float(step)
    alpha = certified_alpha(denoiser)
    conditions = [
        Condition("operator norm certified", norm.certified, f"||A|| = {norm.value:.6g} ({norm.kind}: {norm.method})"),
        Condition("step", 0 < tau < limit, f"tau = {tau:.6g} < 2 / ||A||^2 = {limit:.6g}"),
        Condition("denoiser averaged", alpha is not None and alpha < 1,
                  "no certificate (runtime checks only)" if alpha is None else f"certified alpha = {alpha:.6g} < 1"),
    ]
    if not (0 < tau < limit):
        _refuse(f"step tau = {tau:.6g} breaks tau < 2 / ||A||^2 = {limit:.6g} (||A|| = {norm.value:.6g}, {norm.kind})", strict)
    if alpha is None:
        warnings.warn("the denoiser carries no certificate: PnP-FBS runs without a convergence guarantee", UserWarning, stacklevel=2)
    elif alpha >= 1:
        _refuse(f"PnP-FBS needs an averaged denoiser (alpha < 1); this one is only non-expansive (alpha = {alpha:.6g})", strict)
    lam = float(relaxation)
    grad_alpha = tau * norm.value**2 / 2
    alpha_T = compose_alpha(alpha, grad_alpha) if alpha is not None and 0 < grad_alpha < 1 and alpha < 1 else None
    lam_limit = 1 / alpha_T if alpha_T is not None else 1.0
    conditions.append(Condition("relaxation", 0 < lam < lam_limit or (lam == 1.0 and alpha_T is not None),
                                f"lambda = {lam:.6g} < 1 / alpha_T = {lam_limit:.6g}" if alpha_T is not None else f"lambda = {lam:.6g}"))
    if not (0 < lam < lam_limit or lam == 1.0):
        _refuse(f"relaxation lambda = {lam:.6g} breaks 0 < lambda < 1 / alpha_T = {lam_limit:.6g}", strict)
    report = ConvergenceReport("pnp-fbs", "Krasnosel'skii-Mann (composition of averaged maps)", conditions,
                               all(c.holds for c in conditions))

    def step_map(x):
        tx = denoiser(x - tau * operator.A_adjoint(operator.A(x) - y), sigma)
        return tx if lam == 1.0 else (1 - lam) * x + lam * tx

    start = operator.A_adjoint(y) if x0 is None else x0
    with torch.no_grad():
        x = _iterate(step_map, start, tol=tol, max_iter=max_iter, report=report, callback=callback, progress=progress)
    return x, report


def pnp_admm(y: torch.Tensor, operator, denoiser, *, sigma: float = 0.0, step: float = 1.0, z0: torch.Tensor | None = None,
             relaxation: float = 1.0, max_iter: int = 200, tol: float = 1e-4, strict: bool = True, callback=None, progress: bool = False
             ) -> tuple[torch.Tensor, ConvergenceReport]:
    r"""PnP-ADMM in Douglas-Rachford form, monitored on the governing sequence ``z``.

    Parameters
    ----------
    y, operator, denoiser, sigma, max_iter, tol, strict
        As for :func:`pnp_fbs`.
    step : float
        :math:`\tau > 0` of the data prox ``operator.prox_l2(z, y, tau)``; any positive value
        keeps the guarantee and sets the regularisation strength.
    z0 : torch.Tensor, optional
        Start of ``z`` (default ``A^T y``).
    relaxation : float
        Krasnosel'skii-Mann relaxation ``lam`` in (0, 2) (the map on ``z`` is 1/2-averaged).

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
    _check_inputs(y, sigma, tol, max_iter)
    tau = float(step)
    if not (tau > 0 and math.isfinite(tau)):
        raise ValueError(f"step (tau) must be positive and finite; got {step!r}")
    alpha = certified_alpha(denoiser)
    conditions = [
        Condition("step", True, f"tau = {tau:.6g} > 0 (any positive value)"),
        Condition("denoiser firmly non-expansive", alpha is not None and alpha <= 0.5,
                  "no certificate (runtime checks only)" if alpha is None else f"certified alpha = {alpha:.6g} <= 1/2"),
    ]
    if alpha is None:
        warnings.warn("the denoiser carries no certificate: PnP-ADMM runs without a convergence guarantee", UserWarning, stacklevel=2)
    elif alpha > 0.5:
        _refuse(f"PnP-ADMM needs a firmly non-expansive denoiser (alpha <= 1/2); this one has alpha = {alpha:.6g}: "
                "relax it, e.g. AveragedDenoiser(..., target_alpha=0.5)", strict)
    lam = float(relaxation)
    conditions.append(Condition("relaxation", 0 < lam < 2, f"lambda = {lam:.6g} in (0, 2)"))
    if not (0 < lam < 2):
        _refuse(f"relaxation lambda = {lam:.6g} breaks 0 < lambda < 2", strict)
    report = ConvergenceReport("pnp-admm", "Douglas-Rachford (2D - I non-expansive: 1/2-averaged map on z)", conditions,
                               all(c.holds for c in conditions))
    prox_state = {"x": None}

    def step_map(z):
        x = operator.prox_l2(z, y, tau) if prox_state["x"] is None else operator.prox_l2(z, y, tau, **_warm(operator, prox_state["x"]))
        prox_state["x"] = x
        return z + lam * (denoiser(2 * x - z, sigma) - x)

    start = operator.A_adjoint(y) if z0 is None else z0
    with torch.no_grad():
        z = _iterate(step_map, start, tol=tol, max_iter=max_iter, report=report, callback=callback, progress=progress)
        x = operator.prox_l2(z, y, tau)
    return x, report


def _warm(operator, x) -> dict:
    """Warm start for iterative proxes of pnp-stable operators (deepinv's take no ``init``)."""
    from operators import LinearOperator

    return {"init": x} if isinstance(operator, LinearOperator) else {}
