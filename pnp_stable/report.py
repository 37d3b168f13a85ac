"""What a solver run guarantees and what it did: conditions checked, residuals, stop reasons."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Condition", "ConvergenceReport"]


@dataclass(frozen=True)
class Condition:
    """One hypothesis of a convergence theorem, and whether it holds.

    Examples
    --------
    >>> Condition("step", True, "tau = 1.0 < 2 / ||A||^2 = 2.0").holds
    True
    """

    name: str
    holds: bool
    detail: str
    #: What a failure does before the run: ``"refuse"`` (raise; a warning with ``strict=False``),
    #: ``"warn"`` (run with a warning, no guarantee) or ``"report"`` (run; the report says it).
    on_failure: str = "refuse"


@dataclass
class ConvergenceReport:
    """The record of one solver run (one entry per batch sample where it varies).

    Attributes
    ----------
    solver, theorem : str
        Which iteration ran and which result its guarantee rests on.
    conditions : list of Condition
        The theorem's hypotheses as checked before the run, from certified quantities.
    guaranteed : bool
        All conditions hold with certificates (not estimates).
    iterations, converged, final_residual, monotone, stop_reason : lists, one per sample
        ``stop_reason`` is ``"tol"``, ``"max_iter"``, ``"non-monotone"``, ``"non-finite"`` or ``"diverged"``.
    residual_history : list of list of float
        Relative fixed-point residual of the governing sequence at every kept iterate, per
        sample (with Anderson acceleration, rejected candidates are not part of the sequence,
        so a history can be shorter than ``iterations``, which counts every evaluation).
    wall_time : float
        Seconds.
    anderson_accepted, anderson_rejected : list of int
        Per sample, Anderson candidates accepted and rejected by the safeguard (empty without
        acceleration).
    inexact_schedule_met : list of bool
        Per sample, whether every evaluation of an inexactly computed map (an iterative prox)
        met its summable error schedule (empty when the map is exact).  A miss voids the
        guarantee of that sample (:attr:`sample_guaranteed`).
    notes : list of str
        How the run was set up where it matters to the reader: an estimated noise level, the
        memory plan of a tiled evaluation.

    Examples
    --------
    >>> r = ConvergenceReport("pnp-fbs", "Krasnosel'skii-Mann", [Condition("c", True, "")], True)
    >>> r.all_converged
    True
    """

    solver: str
    theorem: str
    conditions: list[Condition]
    guaranteed: bool
    iterations: list[int] = field(default_factory=list)
    converged: list[bool] = field(default_factory=list)
    final_residual: list[float] = field(default_factory=list)
    monotone: list[bool] = field(default_factory=list)
    stop_reason: list[str] = field(default_factory=list)
    residual_history: list[list[float]] = field(default_factory=list)
    wall_time: float = 0.0
    anderson_accepted: list[int] = field(default_factory=list)
    anderson_rejected: list[int] = field(default_factory=list)
    inexact_schedule_met: list[bool] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def all_converged(self) -> bool:
        return all(self.converged)

    @property
    def sample_guaranteed(self) -> list[bool]:
        """Per sample: the theorem's conditions hold and every inexact evaluation met its schedule."""
        met = self.inexact_schedule_met or [True] * len(self.iterations)
        return [self.guaranteed and m for m in met]

    def summary(self) -> str:
        """A few human-readable lines."""
        lines = [f"{self.solver}: {'convergence guaranteed' if self.guaranteed else 'NO convergence guarantee'} ({self.theorem})"]
        lines += [f"  [{'ok' if c.holds else 'FAILS'}] {c.name}: {c.detail}" for c in self.conditions]
        for i, (it, reason, res, mono) in enumerate(zip(self.iterations, self.stop_reason, self.final_residual, self.monotone)):
            line = f"  sample {i}: {it} iterations, stopped by {reason}, residual {res:.2e}, monotone {mono}"
            if self.anderson_accepted:
                line += f", Anderson {self.anderson_accepted[i]} accepted / {self.anderson_rejected[i]} rejected"
            if self.inexact_schedule_met and not self.inexact_schedule_met[i]:
                line += ", inexact prox MISSED its error schedule (not guaranteed)"
            lines.append(line)
        lines += [f"  {note}" for note in self.notes]
        lines.append(f"  wall time {self.wall_time:.2f} s")
        return "\n".join(lines)
