"""The user-facing API: ``reconstruct`` for any operator, ``deblur`` for images and kernels."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from operators import Blur
from operators.noise import Gaussian

from .defaults import default_strength, defaults_for
from .registry import DEFAULT_SOLVER, get_solver
from .report import ConvergenceReport

__all__ = ["Reconstruction", "RunPlan", "plan_run", "reconstruct", "deblur", "resolve_denoiser", "DEFAULT_BOUNDARY"]

#: The blur boundary model of ``deblur()`` and ``pnp-stable deblur`` unless told otherwise: no
#: padding rule holds at a photograph's frame, and the unknown-boundary model assumes none.
DEFAULT_BOUNDARY = "unknown"


@dataclass(frozen=True)
class Reconstruction:
    """A restored image and the report of the run that produced it.

    Attributes
    ----------
    image : numpy.ndarray or torch.Tensor
        Same kind and layout as the input.
    report : ConvergenceReport
    noise_level : float or None
        The noise level the run used (given or estimated; None where no level applies).
    noise_estimated : bool
        True when ``noise_level`` was estimated from the image (:mod:`pnp_stable.noise_level`).
    """

    image: Any
    report: ConvergenceReport
    noise_level: float | None = None
    noise_estimated: bool = False


def resolve_denoiser(denoiser, *, channels: int = 1, solver: str | None = None):
    """A denoiser callable from a callable, a weights file path, a shipped model name, or ``"default"``.

    ``"default"`` is the shipped certified model for ``channels`` and the averagedness the
    ``solver``'s guarantee needs (see :func:`denoisers.pretrained.default_pretrained_name`): the
    firmly non-expansive model for PnP-ADMM, the averaged one for PnP-FBS.  A shipped model
    named explicitly is relaxed to that averagedness if it does not meet it.

    Examples
    --------
    >>> resolve_denoiser("default", solver="pnp-admm").certified_alpha() <= 0.5
    True
    >>> resolve_denoiser(3)
    Traceback (most recent call last):
    ...
    TypeError: denoiser must be a callable (x, sigma), a weights file path or 'default'; got int
    """
    if isinstance(denoiser, str) and (denoiser == "default" or not Path(denoiser).exists()):
        from denoisers.pretrained import default_pretrained, load_pretrained, pretrained_names

        from .registry import solver_info

        target = solver_info(solver).denoiser_alpha if solver is not None else None
        if denoiser == "default":
            return default_pretrained(channels, target_alpha=target)
        if denoiser not in pretrained_names():
            raise FileNotFoundError(f"{denoiser!r} is neither a weights file nor a shipped model "
                                    f"(shipped: {', '.join(pretrained_names())}; see pnp-stable models)")
        return load_pretrained(denoiser, channels=channels, target_alpha=target)
    if isinstance(denoiser, (str, os.PathLike)):
        from denoisers.weights import load_weights

        return load_weights(Path(denoiser))
    if callable(denoiser):
        return denoiser
    raise TypeError(f"denoiser must be a callable (x, sigma), a weights file path or 'default'; got {type(denoiser).__name__}")


class _DtypeAdapter:
    """Runs a torch denoiser in its own dtype on data of another, keeping its certificate."""

    def __init__(self, module: torch.nn.Module, dtype: torch.dtype):
        self.module, self.dtype = module, dtype

    def __call__(self, x, sigma):
        return self.module(x.to(self.dtype), sigma).to(x.dtype)

    def __getattr__(self, name):
        # certified_alpha and the rest come from the module, and only if it has them.
        attr = getattr(self.module, name)
        if name == "denoise_within":  # an inexact denoiser: its data changes dtype like __call__'s
            def within(x, sigma, atol):
                out, bound, rounding = attr(x.to(self.dtype), sigma, atol)
                return out.to(x.dtype), bound, rounding
            return within
        return attr


def _match_dtype(denoiser, dtype: torch.dtype):
    if isinstance(denoiser, torch.nn.Module):
        params = list(denoiser.parameters())
        if params and params[0].dtype != dtype:
            return _DtypeAdapter(denoiser, params[0].dtype)
    return denoiser


@dataclass(frozen=True)
class RunPlan:
    """Everything a solver run needs beyond the data: resolved once, then used as it is.

    Attributes
    ----------
    solver : str
        Registered solver name.
    denoiser : callable
        The resolved denoiser (a shipped model already relaxed for the solver).
    sigma : float
        Denoiser strength.
    options : dict
        Solver options, the tuned step included.
    """

    solver: str
    denoiser: Any
    sigma: float
    options: dict


def plan_run(denoiser="default", solver: str = DEFAULT_SOLVER, *, noise_level: float | None = None,
             sigma: float | None = None, channels: int = 1, **solver_options) -> RunPlan:
    """Resolve the denoiser, its strength and the solver step for one run.

    With the shipped denoiser (``"default"``) strength and step come from the values tuned on
    training images (:mod:`pnp_stable.defaults`); explicit ``sigma`` and ``step`` /
    ``step_factor`` always win.  With another denoiser the strength defaults to the noise level.

    Examples
    --------
    >>> plan = plan_run("default", "pnp-admm", noise_level=0.01)
    >>> plan.denoiser.certified_alpha() <= 0.5, "step" in plan.options
    (True, True)
    """
    get_solver(solver)  # an unknown name fails before any model is loaded
    options = dict(solver_options)
    sigma = _strength_and_step(denoiser, solver, noise_level, sigma, options, channels=channels)
    den = resolve_denoiser(denoiser, channels=channels, solver=solver)
    return RunPlan(solver, den, sigma, options)


def _strength_and_step(denoiser, solver: str, noise_level: float | None, sigma: float | None, solver_options: dict,
                       channels: int = 1) -> float:
    """The denoiser strength to use, and the tuned step added to ``solver_options`` (in place)."""
    shipped = isinstance(denoiser, str) and denoiser == "default"
    if not shipped:
        return sigma if sigma is not None else (noise_level or 0.0)
    tuned = defaults_for(solver, channels)
    if "step" not in solver_options and "step_factor" not in solver_options:
        if tuned.step_factor is not None:
            solver_options["step_factor"] = tuned.step_factor
        elif tuned.step_for(noise_level) is not None:
            solver_options["step"] = tuned.step_for(noise_level)
    if sigma is not None:
        return sigma
    if noise_level is None:
        raise ValueError("the shipped denoiser needs a strength: pass sigma= (the denoiser's noise level), or give the "
                         "operator a Gaussian noise model so that it can be tuned from its level")
    return default_strength(solver, noise_level, channels)


def _checked_noise_level(value) -> float:
    """``value`` if it is a valid noise level (a finite number >= 0), else a clear error."""
    if not (isinstance(value, (int, float)) and np.isfinite(value) and value >= 0):
        raise ValueError(f"noise_level must be a finite number >= 0 (standard deviation on the [0, 1] scale); got {value!r}")
    return value


def _asks_for_estimate(noise_level) -> bool:
    """None or ``"auto"``: the level is to be estimated from the image."""
    return noise_level is None or (isinstance(noise_level, str) and noise_level == "auto")


def _check_level_argument(noise_level) -> None:
    """A given level must be valid before any work; None / "auto" asks for an estimate."""
    if not _asks_for_estimate(noise_level):
        _checked_noise_level(noise_level)


def _given_or_estimated_noise(noise_level, y: torch.Tensor) -> tuple[float, bool]:
    """``(level, estimated)``: the checked ``noise_level``, or, when it is None or ``"auto"``, the
    level estimated from ``y``."""
    if _asks_for_estimate(noise_level):
        from .noise_level import estimate_noise_level

        return estimate_noise_level(y), True
    return _checked_noise_level(noise_level), False


def _noted_estimate(rec: Reconstruction, level: float, estimated: bool) -> None:
    """Put an estimated noise level first among the report's notes."""
    if estimated and rec.report is not None and hasattr(rec.report, "notes"):
        rec.report.notes.insert(0, f"noise level {level:.4g} ({level * 255:.3g}/255), estimated from the image "
                                   "(deepinv's patch-covariance estimator)")


def _noise_level(operator) -> float | None:
    sigma = getattr(getattr(operator, "noise_model", None), "sigma", None)
    try:
        return float(sigma) if sigma is not None else None
    except (TypeError, ValueError):  # a tensor of levels, one per sample
        return None


def reconstruct(y: torch.Tensor, operator, *, denoiser="default", solver: str = DEFAULT_SOLVER, sigma: float | None = None,
                noise_level: float | None = None, max_iter: int = 200, tol: float = 1e-4, callback=None, progress: bool = True,
                max_memory=None, **solver_options) -> Reconstruction:
    """Solve ``y = A x + noise`` by a registered PnP solver.

    Parameters
    ----------
    y : torch.Tensor
        Measurements (B, C, H, W).
    operator : deepinv.physics.LinearPhysics
        Any linear operator (pnp-stable's carry certified norms; wrap others with
        :func:`operators.as_operator` to have their adjoint checked).
    denoiser : callable, path or "default"
        See :func:`resolve_denoiser`.
    solver : str
        A name from :func:`pnp_stable.available_solvers` (default PnP-ADMM).
    sigma : float, optional
        Denoiser strength passed to ``denoiser(x, sigma)``.  Default: from the noise level of the
        operator's noise model (times the tuned factor of :mod:`pnp_stable.defaults` for the
        shipped denoiser, which also sets the step), else 0.
    noise_level : float, optional
        Noise standard deviation of ``y`` (on the [0, 1] scale) when the operator carries no
        Gaussian noise model that says it.
    max_iter, tol, callback, progress
        Passed to the solver.
    max_memory : int or str, optional
        Memory budget of the run (bytes, or ``"4G"``): the denoiser is evaluated tile by tile
        with an exact halo when the whole image does not fit (:mod:`pnp_stable.memory`).
        Default: 4 GiB, or for a larger image its solver state plus room for 512-pixel tiles.
    **solver_options
        Solver-specific options (``step``, ``strict``...); unknown ones raise TypeError.

    Returns
    -------
    Reconstruction
        The image lives on the operator's input domain: for ``Blur(..., boundary="unknown")``
        that is the extended domain (crop it with ``operator.observed_region``).

    Examples
    --------
    >>> import torch
    >>> from operators import Blur
    >>> class Half:
    ...     def __call__(self, x, sigma): return 0.5 * x
    ...     def certified_alpha(self): return 0.5
    >>> r = reconstruct(torch.rand(1, 1, 16, 16), Blur("box:3"), denoiser=Half(), progress=False)
    >>> r.report.guaranteed
    True
    """
    noise_level = _noise_level(operator) if noise_level is None else _checked_noise_level(noise_level)
    plan = plan_run(denoiser, solver, noise_level=noise_level, sigma=sigma, channels=y.shape[1], **solver_options)
    return _execute(y, operator, plan, max_iter=max_iter, tol=tol, callback=callback, progress=progress, max_memory=max_memory)


def _solver_shape(operator, y: torch.Tensor) -> tuple[int, ...]:
    """Shape of the solver's iterates: the operator's input domain for an observation ``y``."""
    shape_of = getattr(operator, "input_shape", None)
    if callable(shape_of):
        return tuple(shape_of(tuple(y.shape)))
    with torch.no_grad():
        return tuple(operator.A_adjoint(y).shape)  # one adjoint: operators that change the size (super-resolution)


def _execute(y: torch.Tensor, operator, plan: RunPlan, *, max_memory=None, progress: bool = True, **run) -> Reconstruction:
    """Run a resolved plan within its memory plan: nothing is resolved again here."""
    from .allocator import freed_memory_kept
    from .anderson import Anderson
    from .memory import plan_memory
    from .progress import TiledProgress
    from .registry import solver_info

    den = _match_dtype(plan.denoiser, y.dtype)
    options = dict(plan.options)
    takes_anderson = solver_info(plan.solver).source == "built-in" or "anderson" in options
    acc = Anderson.resolve(options.get("anderson", True)) if takes_anderson else None
    mem = plan_memory(_solver_shape(operator, y), y.dtype, den, plan.solver, acc, max_memory,
                      iterative_prox=bool(getattr(operator, "iterative_prox", False)),
                      wide_prox=options.get("prox_precision") == torch.float64)
    if takes_anderson:
        options["anderson"] = mem.anderson if mem.anderson is not None else False
    tracker = None
    if not mem.tiles.whole and progress:
        # A bar over tiles, whose total follows the predicted number of iterations (time left).
        tracker = TiledProgress(mem.tiles.tiles, run.get("max_iter", 200), run.get("tol", 1e-4), desc=plan.solver)
        run["callback"] = tracker.chain(run.get("callback"))
        progress = False
    solver_den = mem.wrap(den, progress=None if tracker is None else tracker.tile_done)
    try:
        # Freed buffers are kept during the run (no page faults on every iteration), then given back.
        with freed_memory_kept():
            x, report = get_solver(plan.solver)(y, operator, solver_den, sigma=plan.sigma, progress=progress, **run, **options)
    finally:
        if tracker is not None:
            tracker.close()
    if report is not None and hasattr(report, "notes") and (not mem.tiles.whole or mem.anderson is not acc):
        report.notes.append(mem.describe())
    return Reconstruction(x, report)


def _execute_on(y: torch.Tensor, operator, plan: RunPlan, device, **run) -> Reconstruction:
    """:func:`_execute` on ``device`` (None: where the data are); the operator and a torch
    denoiser move there in place."""
    if device is not None:
        y, operator = y.to(device), operator.to(device)
        if isinstance(plan.denoiser, torch.nn.Module):
            plan = RunPlan(plan.solver, plan.denoiser.to(device), plan.sigma, plan.options)
    return _execute(y, operator, plan, **run)


def _to_batch(image, channel_axis: int | None) -> tuple[torch.Tensor, dict]:
    """(1, C, H, W) float64 tensor in [0, 1] units, and how to give the result back."""
    if isinstance(image, torch.Tensor):
        if image.ndim != 4:
            raise ValueError(f"a torch image must have shape (B, C, H, W); got {tuple(image.shape)}")
        if not image.is_floating_point():
            raise TypeError(f"a torch image must be float; got {image.dtype}")
        return image.detach().clone(), {"kind": "torch", "dtype": image.dtype}
    arr = np.asarray(image)
    if arr.dtype.kind not in "uif" or arr.dtype == np.bool_:
        raise TypeError(f"image must be a numeric array (uint8 or float); got dtype {arr.dtype}")
    if arr.ndim == 3 and channel_axis is None:
        raise ValueError(f"got a 3-D array of shape {arr.shape}; pass channel_axis=-1 for colour images (H, W, C)")
    if arr.ndim not in (2, 3):
        raise ValueError(f"image must be 2-D (H, W) or 3-D with channel_axis; got shape {arr.shape}")
    if arr.ndim == 3:
        arr = np.moveaxis(arr, channel_axis, -1)
    scale = 255.0 if arr.dtype == np.uint8 else (65535.0 if arr.dtype == np.uint16 else 1.0)
    work = np.float64 if arr.dtype == np.float64 else np.float32  # integer images compute in float32
    t = torch.from_numpy((arr.astype(np.float64) / scale).astype(work))  # a copy: the user's array is never touched
    t = t[None, None] if t.ndim == 2 else t.permute(2, 0, 1)[None]
    return t, {"kind": "numpy", "dtype": arr.dtype, "scale": scale, "channel_axis": channel_axis, "ndim": arr.ndim}


def _from_batch(x: torch.Tensor, how: dict):
    if how["kind"] == "torch":
        return x.to(how["dtype"])
    a = x[0].detach().cpu().numpy()
    a = a[0] if how["ndim"] == 2 else np.moveaxis(np.transpose(a, (1, 2, 0)), -1, how["channel_axis"])
    if how["dtype"].kind in "ui":
        # Integer images cannot hold values outside their range: clip and round (documented).
        return np.clip(np.round(a * how["scale"]), 0, how["scale"]).astype(how["dtype"])
    return a.astype(how["dtype"])


def deblur(image, kernel, noise_level: float | str | None = None, *, solver: str = DEFAULT_SOLVER, denoiser="default", boundary: str = DEFAULT_BOUNDARY,
           channel_axis: int | None = None, sigma: float | None = None, max_iter: int = 200, tol: float = 1e-4,
           callback=None, progress: bool = True, device=None, max_memory=None, **solver_options) -> Reconstruction:
    """Deblur a photograph with a certified PnP solver.

    Parameters
    ----------
    image : numpy.ndarray or torch.Tensor
        (H, W) gray, (H, W, C) colour with ``channel_axis=-1`` (uint8, uint16 or float in
        [0, 1]), or a float tensor (B, C, H, W).  Never modified.
    kernel : array_like or str
        Blur kernel or spec (``"gaussian:1.6"``, ``"levin:3"``; see :mod:`operators.kernels`).
    noise_level : float, "auto" or None
        Standard deviation of the noise on the [0, 1] scale (>= 0).  None or ``"auto"`` (the
        default): estimated from the image (:func:`pnp_stable.noise_level.estimate_noise_level`);
        the report says so and gives the estimate.
    solver : str
        Registered solver name (default PnP-ADMM).
    denoiser : callable, path or "default"
    boundary : str
        Blur boundary model (:class:`operators.Blur`).  The default ``"unknown"`` assumes
        nothing outside the frame: the image is restored on a domain extended by the kernel's
        reach and cropped back.  On photographs it measured best of every model, above
        ``"symmetric"`` on every problem, at 1.3-2.2 times its time (benchmarks/RESULTS.md,
        section "real-photographs").  ``"circular"`` is the fastest and is exact for periodic
        data.
    channel_axis : int, optional
        Axis of the colour channels of a numpy image (scikit-image's convention).
    sigma : float, optional
        Denoiser strength.  Default: with the shipped denoiser, the tuned multiple of
        ``noise_level`` (:mod:`pnp_stable.defaults`, which also sets the solver step unless
        ``step``/``step_factor`` is given); with other denoisers, ``noise_level``.
    max_iter, tol, callback, progress, device, **solver_options
        Run settings; ``device`` moves the computation (e.g. ``"cuda"``).
    max_memory : int or str, optional
        Memory budget (bytes or ``"4G"``), as for :func:`reconstruct`: a photograph of any
        size is restored in bounded memory, the denoiser evaluated in exact tiles.

    Returns
    -------
    Reconstruction
        ``image`` of the input's kind, shape, layout and dtype (integer images are rounded and
        clipped to their range; float images are not clipped), and the convergence ``report``.

    Examples
    --------
    >>> import numpy as np
    >>> class Half:
    ...     def __call__(self, x, sigma): return 0.5 * x
    ...     def certified_alpha(self): return 0.5
    >>> img = np.random.default_rng(0).random((32, 32))
    >>> r = deblur(img, "gaussian:1.0", 0.01, denoiser=Half(), progress=False)
    >>> r.image.shape, r.image.dtype, r.report.guaranteed
    ((32, 32), dtype('float64'), True)

    Without a noise level, it is estimated:

    >>> r = deblur(img, "gaussian:1.0", denoiser=Half(), progress=False)
    >>> r.noise_estimated, r.report.notes[0].startswith("noise level")
    (True, True)
    """
    _check_level_argument(noise_level)
    y, how = _to_batch(image, channel_axis)
    if not bool(torch.isfinite(y).all()):
        raise ValueError("image contains NaN or Inf")
    noise_level, estimated = _given_or_estimated_noise(noise_level, y)
    op = Blur(kernel, boundary=boundary, noise_model=Gaussian(noise_level))
    plan = plan_run(denoiser, solver, noise_level=noise_level, sigma=sigma, channels=y.shape[1], **solver_options)
    rec = _execute_on(y, op, plan, device, max_iter=max_iter, tol=tol, callback=callback, progress=progress,
                      max_memory=max_memory)
    _noted_estimate(rec, noise_level, estimated)
    return Reconstruction(_from_batch(op.observed_region(rec.image), how), rec.report, noise_level, estimated)
