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
        Relative fixed-point residual of the governing sequence at every iteration, per sample.
    wall_time : float
        Seconds.

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

    @property
    def all_converged(self) -> bool:
        return all(self.converged)

    def summary(self) -> str:
        """A few human-readable lines."""
        lines = [f"{self.solver}: {'convergence guaranteed' if self.guaranteed else 'NO convergence guarantee'} ({self.theorem})"]
        lines += [f"  [{'ok' if c.holds else 'FAILS'}] {c.name}: {c.detail}" for c in self.conditions]
        for i, (it, reason, res, mono) in enumerate(zip(self.iterations, self.stop_reason, self.final_residual, self.monotone)):
            lines.append(f"  sample {i}: {it} iterations, stopped by {reason}, residual {res:.2e}, monotone {mono}")
        lines.append(f"  wall time {self.wall_time:.2f} s")
        return "\n".join(lines)
