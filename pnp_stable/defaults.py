"""Tuned defaults of ``deblur()`` with the shipped denoiser: denoiser strength and solver step.

With a fixed certified denoiser the regularisation is set by two knobs that keep every
guarantee: the denoiser strength ``sigma`` (the noise level the noise-conditioned model is
told) and the solver step ``tau`` (PnP-FBS: ``tau = step_factor / ||A||^2`` with
``step_factor < 2``; PnP-ADMM: any ``tau > 0``).  Each solver gets the default model trained
for its condition (:func:`denoisers.default_pretrained_name`: firmly non-expansive for
PnP-ADMM, averaged for PnP-FBS), so no relaxation caps the strength.  The values below were
tuned by ``benchmarks/tune_deblur.py`` on held-out *training* images, never on a test set:
gray on BSD400, colour on CBSD432: rounds on 4 crops explored the grid (``benchmarks/RESULTS.md``,
sections "tuning-cond-gray" and "tuning-cond-colour"), and a round on all 12 held-out crops of
each set decided (sections "tuning-cond-gray-12" and "tuning-cond-colour-12").

:func:`pnp_stable.api.plan_run` is the one place that turns these into a run's plan; the
benchmark scripts call it too.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SolverDefaults", "DEFAULTS", "COLOUR_DEFAULTS", "defaults_for", "default_strength"]


@dataclass(frozen=True)
class SolverDefaults:
    """Defaults of one solver with the shipped denoiser.

    Attributes
    ----------
    strength : float
        Denoiser strength as a multiple of the noise level: ``sigma = strength * noise_level``.
    step_factor : float or None
        PnP-FBS: ``tau * ||A||^2`` (below 2).  None: the solver's own default.
    step : float or None
        PnP-ADMM: ``tau``.  None: the solver's own default.
    step_scale : float or None
        PnP-ADMM: ``tau = step_scale / noise_level`` (clipped to ``step_range``): the best ``tau``
        of the tuning grid falls like ``1 / noise`` (the tuned rule gives 20 at 2.55/255, 6.7 at
        7.65, 4 at 12.75).
    step_range : (float, float)
        Clip of the noise-scaled step.
    """

    strength: float = 1.0
    step_factor: float | None = None
    step: float | None = None
    step_scale: float | None = None
    step_range: tuple[float, float] = (0.5, 50.0)

    def step_for(self, noise_level: float | None) -> float | None:
        """The ADMM step for ``noise_level`` (``step``, or the noise-scaled rule, or None).

        Examples
        --------
        >>> SolverDefaults(step_scale=0.1).step_for(0.01)
        10.0
        >>> SolverDefaults(step_scale=0.1).step_for(0.0)
        50.0
        """
        if self.step is not None or self.step_scale is None or noise_level is None:
            return self.step
        lo, hi = self.step_range
        return float(min(hi, max(lo, self.step_scale / noise_level))) if noise_level > 0 else hi


#: Gray images, tuned on BSD400 held-out training crops; solvers not listed use ``SolverDefaults()``.
DEFAULTS: dict[str, SolverDefaults] = {
    "pnp-fbs": SolverDefaults(strength=0.85, step_factor=1.9),
    "pnp-admm": SolverDefaults(strength=4.0, step_scale=0.4),
}

#: Colour images, tuned on CBSD432 held-out training crops; solvers not listed use the gray ones.
COLOUR_DEFAULTS: dict[str, SolverDefaults] = {
    "pnp-fbs": SolverDefaults(strength=0.85, step_factor=1.9),
    "pnp-admm": SolverDefaults(strength=4.0, step_scale=0.5),
}


def defaults_for(solver: str, channels: int = 1) -> SolverDefaults:
    """The tuned defaults of ``solver`` for ``channels``-channel images (neutral ones for
    solvers that were not tuned).

    Parameters
    ----------
    solver : str
        A registered solver name.
    channels : int
        1 (gray) or 3 (colour).

    Examples
    --------
    >>> defaults_for("pnp-fbs").step_factor < 2
    True
    >>> defaults_for("pnp-admm", channels=3).strength > 0
    True
    >>> defaults_for("my-solver").step_for(0.01) is None
    True
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (gray) or 3 (colour); got {channels}")
    if channels == 3 and solver in COLOUR_DEFAULTS:
        return COLOUR_DEFAULTS[solver]
    return DEFAULTS.get(solver, SolverDefaults())


def default_strength(solver: str, noise_level: float, channels: int = 1) -> float:
    """The tuned denoiser strength of ``solver`` with the shipped denoiser at ``noise_level``:
    ``strength x noise_level``.

    Examples
    --------
    >>> default_strength("pnp-fbs", 0.05) == defaults_for("pnp-fbs").strength * 0.05
    True
    """
    return defaults_for(solver, channels).strength * noise_level
