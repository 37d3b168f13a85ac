"""Tuned defaults of ``deblur()`` with the shipped denoiser: denoiser strength and solver step.

With a fixed certified denoiser the regularisation is set by two knobs that keep every
guarantee: the denoiser strength ``sigma`` (through the calibrated relaxation
``theta(sigma)`` of :class:`denoisers.AveragedDenoiser`) and the solver step ``tau``
(PnP-FBS: ``tau = step_factor / ||A||^2`` with ``step_factor < 2``; PnP-ADMM: any
``tau > 0``).  The values below were tuned by ``benchmarks/tune_deblur.py`` on held-out
*training* images, never on a test set: gray images on BSD400 (``benchmarks/RESULTS.md``,
section "tuning" for PnP-FBS, "tuning-gray-admm" for PnP-ADMM), colour images on CBSD432 (sections "tuning-colour" and "tuning-colour-12" for
PnP-FBS, "tuning-colour-admm" for PnP-ADMM).  Colour has its own defaults because it is served
by other models (the colour sigma-25 and sigma-50 models), so the best strength differs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["SolverDefaults", "DEFAULTS", "COLOUR_DEFAULTS", "defaults_for", "capped_strength", "default_strength"]


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
    keep_first_model : bool
        Lower the strength to what the first shipped model still delivers under the solver's
        relaxation (:func:`capped_strength`), so that a relaxation cap keeps that model instead
        of switching to the next.  Inside PnP-ADMM (alpha = 1/2) the capped sigma-25 models
        deblurred better than the capped sigma-50 ones on training crops.  Left out of the repr:
        it changes only which model runs, and benchmark records name the model.
    """

    strength: float = 1.0
    step_factor: float | None = None
    step: float | None = None
    step_scale: float | None = None
    step_range: tuple[float, float] = (0.5, 50.0)
    keep_first_model: bool = field(default=False, repr=False)

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
    # ADMM's alpha = 1/2 relaxation caps the sigma-25 model from 11.4/255 up; keeping that model
    # there beat switching to the capped sigma-50 one (section "tuning-gray-admm", 12 crops:
    # 23.99 against 23.47 dB at noise 12.75, mean 25.88 against 25.73 for the earlier default).
    "pnp-admm": SolverDefaults(strength=4.0, step_scale=0.15, keep_first_model=True),
}


#: Colour images, tuned on CBSD432 held-out training crops; solvers not listed use the gray ones.
COLOUR_DEFAULTS: dict[str, SolverDefaults] = {
    "pnp-fbs": SolverDefaults(strength=0.7, step_factor=1.9),
    # ADMM relaxes the denoiser to alpha = 1/2, which caps its strength: at noise 7.65 and 12.75
    # the cap binds and every strength from 2 up gives the colour sigma-25 model at the cap.
    # Strength 2.65 keeps that model up to noise 12.8/255; from 3 x 12.75 = 38.25/255 on the
    # default goes to colour-averaged-s50, whose capped form scored 0.54 dB lower at 12.75
    # (section "tuning-colour-admm"; the earlier rounds' strength 3 predates that model).
    "pnp-admm": SolverDefaults(strength=2.65, step_scale=0.15),
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


def capped_strength(sigma: float, solver: str, channels: int = 1) -> float:
    """``sigma``, lowered to the ceiling of the first default model when ``solver`` caps it there.

    A solver that needs a firmly non-expansive denoiser (PnP-ADMM) relaxes the shipped model
    to alpha = 1/2, which caps its strength: from :func:`denoisers.strength_ceiling` up, the
    first model of the default chain (:func:`denoisers.default_pretrained_name`) gives the same
    denoiser whatever ``sigma``.  When that ceiling lies below the model's switch level, a
    strength above the ceiling is lowered to it: the denoiser is unchanged, but the strength now
    says what is applied and no longer switches to the next model.  Otherwise ``sigma`` is
    returned as it is.

    Parameters
    ----------
    sigma : float
        Denoiser strength (noise level on the [0, 1] scale).
    solver : str
        A registered solver name.
    channels : int
        1 (gray) or 3 (colour).

    Examples
    --------
    >>> capped_strength(0.2, "pnp-fbs")
    0.2
    >>> 10 / 255 < capped_strength(0.2, "pnp-admm") < 13 / 255
    True
    >>> capped_strength(0.01, "pnp-admm")
    0.01
    """
    from denoisers import default_pretrained_name, strength_ceiling

    from .registry import solver_info

    target = solver_info(solver).denoiser_alpha
    if target is None:
        return sigma
    first = default_pretrained_name(channels)
    ceiling = strength_ceiling(first, target)
    # Keep the first model only where the chain would still pick it at the ceiling itself.
    if ceiling is None or sigma <= ceiling or default_pretrained_name(channels, ceiling) != first:
        return sigma
    return ceiling


def default_strength(solver: str, noise_level: float, channels: int = 1) -> float:
    """The tuned denoiser strength of ``solver`` with the shipped denoiser at ``noise_level``.

    ``strength x noise_level``, lowered by :func:`capped_strength` where the defaults say so.

    Examples
    --------
    >>> round(default_strength("pnp-fbs", 0.05), 6)
    0.0425
    """
    tuned = defaults_for(solver, channels)
    sigma = tuned.strength * noise_level
    return capped_strength(sigma, solver, channels) if tuned.keep_first_model else sigma
