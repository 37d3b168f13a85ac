r"""The checked fixed-point loop shared by the PnP solvers: batched, safeguarded, accelerated.

A solver hands :func:`run_fixed_point` its governing map :math:`T` (averaged when the solver's
conditions hold) and a start.  The loop evaluates :math:`T` on the active samples only, in one
batched call per pass, and records for every sample the relative fixed-point residual
:math:`\|u_k - T u_k\| / \|T u_k\|` of the sequence it keeps.

Safeguarded Anderson acceleration, and why convergence survives it
--------------------------------------------------------------------
Let :math:`T` be averaged with a fixed point.  At iterate :math:`u_k` the plain
(Krasnosel'skii-Mann) step is :math:`T u_k`.  Anderson proposes a candidate :math:`c_k`
(:mod:`pnp_stable.anderson`); it is **accepted** as :math:`u_{k+1}` only if

1. :math:`\|c_k - T u_k\| \le \varepsilon_n = b\, r_0\, (n + 1)^{-(1 + \delta)}` for the
   :math:`n`-th accepted candidate (``Anderson.budget``, ``Anderson.decay``), and
2. its residual does not exceed the current one, :math:`\|c_k - T c_k\| \le s\,\|u_k - T u_k\|`
   (``Anderson.safeguard`` :math:`s \le 1`; this needs :math:`T c_k`, which is the next pass's
   evaluation anyway);

otherwise the plain step :math:`u_{k+1} = T u_k` is taken.  Every accepted step is a plain step
with an error :math:`e_k = c_k - T u_k` whose norms are summable by test 1
(:math:`\sum_n \varepsilon_n \le b\, r_0\, (1 + 1/\delta)`), so the sequence is a
Krasnosel'skii-Mann iteration with summable errors, which converges to a fixed point of
:math:`T` (Combettes 2004, Theorem 5.2; finite dimension).  Test 2 makes the residual sequence
non-increasing at accepted steps by construction; at plain steps it is non-increasing by the
averagedness of :math:`T`, and that is what the monotonicity check verifies: a rise after a
plain step means a certificate is wrong.

Inexact evaluations
-------------------
A map computed inexactly (an iterative prox) reports a bound :math:`\eta_k` on
:math:`\|\tilde T u_k - T u_k\|`.  The loop demands that the bounds of the kept sequence be
summable, :math:`\eta_k \le E\,(k+1)^{-(1 + \delta)}` (the caller's schedule), which again
gives a Krasnosel'skii-Mann iteration with summable errors.  The monotonicity check then allows
for them: as :math:`v \mapsto \|v - T v\|` is 2-Lipschitz,
:math:`\tilde r_{k+1} \le \tilde r_k + 3\eta_k + \eta_{k+1}` after a plain step.

Floating point
--------------
Residual rises within a rounding allowance are not flagged.  The allowance uses the machine
precision of the computation that actually runs (a float32 denoiser inside a float64 solve
computes in float32).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Callable

import torch

from .anderson import Anderson, AndersonHistory
from .report import ConvergenceReport

__all__ = ["run_fixed_point", "FixedPointMap", "STOP_REASONS"]

#: Stop reasons, in the order of their integer codes inside the loop.
STOP_REASONS = ("running", "tol", "max_iter", "non-monotone", "non-finite", "diverged")
_RUNNING, _TOL, _MAX_ITER, _NON_MONOTONE, _NON_FINITE, _DIVERGED = range(6)

#: A governing map: ``T(u, idx, demand) -> (T u, error_bound, rounding)``.  ``u`` holds the
#: samples ``idx`` of the batch (``idx`` is None for the whole batch); ``demand`` is None, or the
#: per-sample accuracy the error schedule asks of this evaluation; ``error_bound`` is None for
#: an exactly computed map, else a per-sample bound on ``||T~ u - T u||``; ``rounding`` (None or
#: per sample) is the part of that error the working precision cannot resolve, which is
#: allowed beside the schedule as rounding is everywhere else.
FixedPointMap = Callable[[torch.Tensor, "torch.Tensor | None", "torch.Tensor | None"],
                         "tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]"]


@dataclass
class _State:
    """Per-sample state of the loop, every field batch-first."""

    base: torch.Tensor        # current iterate u_k (flattened)
    base_f: torch.Tensor      # T u_k
    base_r: torch.Tensor      # ||u_k - T u_k|| (float64)
    base_eta: torch.Tensor    # error bound of T u_k
    point: torch.Tensor       # the point the next pass evaluates
    candidate: torch.Tensor   # bool: that point is an Anderson candidate
    reason: torch.Tensor      # code into STOP_REASONS (running while 0)
    evaluations: torch.Tensor
    kept: torch.Tensor        # length of the kept sequence (residual history)
    accepted: torch.Tensor
    rejected: torch.Tensor
    monotone: torch.Tensor
    schedule_met: torch.Tensor
    last_rel: torch.Tensor    # relative residual of the last kept iterate


#: Entries per chunk of the float64 norms (a bounded temporary instead of a float64 copy of the image).
_NORM_CHUNK = 1 << 20


def _norm(t: torch.Tensor) -> torch.Tensor:
    """Row norms accumulated in float64, chunk by chunk."""
    if t.dtype == torch.float64 or t.shape[1] <= _NORM_CHUNK:
        return t.to(torch.float64).norm(dim=1)
    acc = torch.zeros(t.shape[0], dtype=torch.float64, device=t.device)
    for piece in t.split(_NORM_CHUNK, dim=1):
        acc += piece.to(torch.float64).square().sum(dim=1)
    return acc.sqrt()


def run_fixed_point(
    T: FixedPointMap,
    u0: torch.Tensor,
    *,
    tol: float,
    max_iter: int,
    report: ConvergenceReport,
    precision: torch.dtype | None = None,
    anderson: Anderson | None = None,
    error_schedule: Callable[[torch.Tensor], torch.Tensor] | None = None,
    callback=None,
    progress: bool = False,
) -> torch.Tensor:
    r"""Iterate ``u <- T u`` (safeguarded-Anderson accelerated if asked) per sample until its
    relative residual is below ``tol``, and fill ``report``.

    Parameters
    ----------
    T : callable
        The governing map, see :data:`FixedPointMap`.
    u0 : torch.Tensor
        Start, batch first.
    tol : float
        Stop a sample when ``||u - T u|| / ||T u|| <= tol``.
    max_iter : int
        Cap on the evaluations of ``T`` per sample (rejected candidates included).
    report : ConvergenceReport
        Filled in place: iterations (evaluations), stop reasons, residual history of the kept
        sequence, monotonicity, Anderson counts, inexact-evaluation schedule.
    precision : torch.dtype, optional
        The dtype the map computes in, for the rounding allowance (default ``u0.dtype``).
    anderson : Anderson, optional
        Safeguarded Anderson acceleration (None: plain iteration).
    error_schedule : callable, optional
        ``k -> bound`` per sample (``k`` = position in the kept sequence): the summable
        schedule that the map's error bounds must meet; each evaluation is passed its bound
        as ``demand``.  A sample stops on ``tol`` only when ``(r + error) / ||T u|| <= tol``.
    callback : callable, optional
        ``callback(k, x, rel)`` after every pass, with the current output ``T u`` of every
        sample and the last relative residuals.
    progress : bool
        Show a tqdm bar.

    Returns
    -------
    torch.Tensor
        ``T u`` at the last kept iterate of each sample.

    Examples
    --------
    >>> import torch
    >>> from pnp_stable.report import ConvergenceReport
    >>> rep = ConvergenceReport("demo", "Banach", [], True)
    >>> half = lambda u, idx, demand: (0.5 * u + 1.0, None, None)  # contraction, fixed point 2
    >>> u = run_fixed_point(half, torch.zeros(2, 3), tol=1e-10, max_iter=100, report=rep,
    ...                     anderson=Anderson(memory=2))
    >>> torch.allclose(u, torch.full((2, 3), 2.0)), rep.converged, rep.anderson_accepted
    (True, [True, True], [1, 1])
    """
    from tqdm.auto import tqdm

    B = u0.shape[0]
    shape = u0.shape
    dev = u0.device
    flat0 = u0.reshape(B, -1)
    eps = torch.finfo(precision if precision is not None else u0.dtype).eps
    eps = max(eps, torch.finfo(u0.dtype).eps)
    history = torch.full((max_iter, B), float("nan"), dtype=torch.float64, device=dev)
    ref = _norm(flat0)
    scale0 = ref.clamp_min(1.0)
    zeros_b = torch.zeros(B, dtype=torch.long, device=dev)
    st = _State(
        base=flat0.clone(), base_f=flat0.clone(), base_r=torch.full((B,), float("inf"), dtype=torch.float64, device=dev),
        base_eta=torch.zeros(B, dtype=torch.float64, device=dev), point=flat0.clone(),
        candidate=torch.zeros(B, dtype=torch.bool, device=dev),
        reason=zeros_b.clone(), evaluations=zeros_b.clone(), kept=zeros_b.clone(), accepted=zeros_b.clone(),
        rejected=zeros_b.clone(), monotone=torch.ones(B, dtype=torch.bool, device=dev),
        schedule_met=torch.ones(B, dtype=torch.bool, device=dev),
        last_rel=torch.full((B,), float("nan"), dtype=torch.float64, device=dev),
    )
    r0 = torch.zeros(B, dtype=torch.float64, device=dev)
    aa = AndersonHistory(anderson, B, flat0.shape[1], flat0) if anderson is not None else None
    t0 = time.perf_counter()
    bar = tqdm(total=max_iter, disable=not progress, desc=report.solver, unit="it")
    for k in range(max_iter):
        idx = torch.nonzero(st.reason == _RUNNING).flatten()  # one host synchronisation per pass
        if idx.numel() == 0:
            break
        whole = idx.numel() == B
        pts = st.point if whole else st.point[idx]
        demand = error_schedule(st.kept[idx]) if error_schedule is not None else None
        out, eta, rounding = T(pts.reshape((idx.numel(),) + tuple(shape[1:])), None if whole else idx, demand)
        f = out.reshape(idx.numel(), -1)
        eta = torch.zeros(idx.numel(), dtype=torch.float64, device=dev) if eta is None else eta.to(torch.float64).reshape(-1)
        st.evaluations[idx] += 1
        first = st.kept[idx] == 0
        g = pts - f  # the residual u - T u of the evaluated points
        r = _norm(g)
        size = _norm(f).clamp_min(torch.finfo(torch.float64).tiny)
        finite = torch.isfinite(f).all(dim=1) & torch.isfinite(r)
        blown = size > 1e8 * scale0[idx]
        cand = st.candidate[idx]
        base_r = st.base_r[idx]
        # Rounding allowance of a residual, plus the inexact-evaluation terms (module docstring).
        slack = 1e3 * eps * torch.maximum(size, ref[idx]) + 3 * st.base_eta[idx] + eta
        good = finite & ~blown
        accept_cand = cand & good & (r <= anderson.safeguard * base_r if anderson is not None else torch.zeros_like(good))
        reject_cand = cand & ~accept_cand
        plain = ~cand
        rises = plain & ~first & good & (r > base_r * (1 + 1e-6) + slack)
        keep = accept_cand | (plain & good)
        # Stop reasons of plain steps (a failed candidate only falls back to the plain step).
        reason = torch.where(plain & ~finite, _NON_FINITE, torch.where(plain & finite & blown, _DIVERGED, 0))
        reason = torch.where(rises, _NON_MONOTONE, reason)
        if demand is not None:
            allowed = demand if rounding is None else demand + rounding.to(torch.float64).reshape(-1)
            st.schedule_met[idx] &= ~keep | (eta <= allowed)
        # Bookkeeping of the kept sequence.
        rel = r / size
        st.last_rel[idx] = torch.where(keep, rel, st.last_rel[idx])
        kidx = idx[keep]
        history[st.kept[kidx], kidx] = rel[keep]
        if aa is not None:
            # Differences between consecutive kept iterates feed the extrapolation; row by row,
            # so that no temporary holds more than one image.
            for j in torch.nonzero(keep & ~first).flatten().tolist():
                b = int(idx[j])
                dg = st.base[b] - st.base_f[b]
                dg.neg_().add_(g[j])  # g_new - g_old
                aa.push(idx[j : j + 1], dg[None], (f[j] - st.base_f[b])[None])
                del dg
        st.kept[kidx] += 1
        st.accepted[idx] += accept_cand.long()
        st.rejected[idx] += reject_cand.long()
        st.monotone[idx] &= ~rises
        r0[idx] = torch.where(first & keep, r, r0[idx])
        for j in torch.nonzero(keep).flatten().tolist():
            b = int(idx[j])
            st.base[b].copy_(pts[j])
            st.base_f[b].copy_(f[j])
        del g
        st.base_r[idx] = torch.where(keep, r, base_r)
        st.base_eta[idx] = torch.where(keep, eta, st.base_eta[idx])
        if aa is not None:
            aa.clear(idx[reject_cand])
        # The computed residual is within eta of the true one: stop on the bound.
        reason = torch.where((reason == 0) & keep & ((r + eta) / size <= tol), _TOL, reason)
        reason = torch.where((reason == 0) & (st.evaluations[idx] >= max_iter), _MAX_ITER, reason)
        st.reason[idx] = reason
        # The next point: an Anderson candidate where one passes test 1, else the plain step.
        del pts, f, out
        use_cand = torch.zeros_like(keep)
        ready = (reason == 0) & (aa.count[idx] > 0) if aa is not None else torch.zeros_like(keep)
        for j in range(idx.numel()):
            b = int(idx[j])
            if bool(ready[j]):
                rb = idx[j : j + 1]
                gb = st.base[b] - st.base_f[b]
                c = aa.candidate(rb, gb[None], st.base_f[b][None])[0]
                del gb
                dist = _norm(c[None].sub(st.base_f[b][None]))
                if bool(torch.isfinite(c).all()) and bool(dist <= anderson.step_bound(r0[rb], st.accepted[rb])):
                    st.point[b].copy_(c)
                    use_cand[j] = True
                    continue
            st.point[b].copy_(st.base_f[b])
        st.candidate[idx] = use_cand
        bar.update(1)
        if progress and B == 1:
            bar.set_postfix(residual=f"{float(rel[0]):.2e}")
        if callback is not None:
            callback(k, st.base_f.reshape(shape), st.last_rel)
    bar.close()
    reasons = [STOP_REASONS[c] for c in st.reason.tolist()]
    kept = st.kept.tolist()
    hist = history.T.cpu().tolist()
    report.iterations = st.evaluations.tolist()
    report.stop_reason = reasons
    report.converged = [r == "tol" for r in reasons]
    report.monotone = st.monotone.tolist()
    report.residual_history = [h[:n] for h, n in zip(hist, kept)]
    report.final_residual = [h[n - 1] if n else float("nan") for h, n in zip(hist, kept)]
    report.anderson_accepted = st.accepted.tolist() if anderson is not None else []
    report.anderson_rejected = st.rejected.tolist() if anderson is not None else []
    report.wall_time = time.perf_counter() - t0
    if error_schedule is not None:
        report.inexact_schedule_met = st.schedule_met.tolist()
    for b, r in enumerate(reasons):
        if r in ("non-finite", "diverged", "non-monotone"):
            warnings.warn(
                f"{report.solver}: sample {b} stopped at iteration {report.iterations[b]} ({r})"
                + ("; the residual of an averaged iteration rose, so a certificate or the operator is wrong" if r == "non-monotone" else ""),
                RuntimeWarning, stacklevel=3,
            )
    return st.base_f.reshape(shape)
