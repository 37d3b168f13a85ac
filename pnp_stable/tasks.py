"""The image tasks beside ``deblur()``: ``denoise()`` and ``super_resolve()``.

Each takes an image the way :func:`pnp_stable.deblur` does (numpy with ``channel_axis``, or a
float tensor batch), never changes it, and gives the result back in the input's kind, dtype
and layout.  ``denoise`` applies the shipped certified denoiser once at the noise level (the
task it was trained for); ``super_resolve`` solves ``y = S (k * x) + noise`` with a registered
PnP solver, so its result comes with a :class:`~pnp_stable.ConvergenceReport`.
"""

from __future__ import annotations


import torch

from operators import Downsampling
from operators.noise import Gaussian

from .api import (Reconstruction, _check_level_argument, _checked_noise_level, _execute_on, _from_batch,
                  _given_or_estimated_noise, _match_dtype, _noted_estimate, _to_batch, plan_run, resolve_denoiser)
from .registry import DEFAULT_SOLVER

__all__ = ["denoise", "super_resolve", "SR_BOUNDARIES", "DEFAULT_SR_BOUNDARY"]

#: Boundary models of the super-resolution operator (the unknown-boundary model is Blur's only).
SR_BOUNDARIES = ("circular", "reflect", "symmetric", "replicate", "zero")

#: Photographs are not periodic: a reflected boundary avoids the wrap-around seams of
#: ``"circular"`` (which is faster: its prox is a closed form, the others run PCG).
DEFAULT_SR_BOUNDARY = "reflect"


def _checked_batch(image, channel_axis):
    y, how = _to_batch(image, channel_axis)
    if not bool(torch.isfinite(y).all()):
        raise ValueError("image contains NaN or Inf")
    return y, how


def denoise(image, noise_level: float | str | None = None, *, denoiser="default", channel_axis: int | None = None,
            sigma: float | None = None, device=None, max_memory=None) -> Reconstruction:
    """Remove Gaussian noise with one pass of a certified denoiser.

    Parameters
    ----------
    image : numpy.ndarray or torch.Tensor
        As for :func:`pnp_stable.deblur`: (H, W), (H, W, C) with ``channel_axis``, or a float
        tensor (B, C, H, W).  Never modified.
    noise_level : float, "auto" or None
        Standard deviation of the noise on the [0, 1] scale (>= 0); None or ``"auto"`` (the
        default): estimated from the image (``noise_level`` and ``noise_estimated`` of the result).
    denoiser : callable, path or "default"
        See :func:`pnp_stable.api.resolve_denoiser`; ``"default"`` is the shipped averaged model
        for the image's channels.
    channel_axis : int, optional
        Axis of the colour channels of a numpy image.
    sigma : float, optional
        Denoiser strength (default: ``noise_level``, the level the models were trained at).
    device : str or torch.device, optional
        Where to compute.
    max_memory : int or str, optional
        Memory budget (bytes or ``"4G"``): a large image is denoised in exact tiles
        (:mod:`denoisers.tiling`).  Default: 4 GiB.

    Returns
    -------
    Reconstruction
        ``image`` of the input's kind, shape and dtype; ``report`` is None (no iteration ran).

    Examples
    --------
    >>> import numpy as np
    >>> noisy = np.clip(0.5 + 0.1 * np.random.default_rng(0).standard_normal((32, 32)), 0, 1)
    >>> out = denoise(noisy, 0.1).image
    >>> out.shape, out.dtype, float(np.abs(out - 0.5).mean()) < float(np.abs(noisy - 0.5).mean())
    ((32, 32), dtype('float64'), True)
    """
    from .memory import plan_memory

    _check_level_argument(noise_level)
    y, how = _checked_batch(image, channel_axis)
    noise_level, estimated = _given_or_estimated_noise(noise_level, y)
    den = resolve_denoiser(denoiser, channels=y.shape[1])
    if device is not None:
        y = y.to(device)
        if isinstance(den, torch.nn.Module):
            den = den.to(device)
    strength = noise_level if sigma is None else _checked_noise_level(sigma)
    den = _match_dtype(den, y.dtype)
    # One evaluation: no solver state beyond the input and the output.
    mem = plan_memory(tuple(y.shape), y.dtype, den, "denoise", None, max_memory)
    with torch.no_grad():
        x = mem.wrap(den)(y, strength)
    return Reconstruction(_from_batch(x, how), None, noise_level, estimated)


def super_resolve(image, factor: int, noise_level: float | str | None = None, *, kernel=None, boundary: str = DEFAULT_SR_BOUNDARY,
                  solver: str = DEFAULT_SOLVER, denoiser="default", channel_axis: int | None = None, sigma: float | None = None,
                  max_iter: int = 200, tol: float = 1e-4, callback=None, progress: bool = True, device=None,
                  max_memory=None, **solver_options) -> Reconstruction:
    """Super-resolve an image ``factor`` times with a certified PnP solver.

    The observation model is :class:`operators.Downsampling`: an anti-aliasing blur (default a
    Gaussian of standard deviation ``factor / 2``), then keeping every ``factor``-th pixel.

    Parameters
    ----------
    image : numpy.ndarray or torch.Tensor
        The low-resolution image, as for :func:`pnp_stable.deblur`.  Never modified.
    factor : int
        2, 3, 4... the output is ``factor`` times larger along each axis.
    noise_level : float, "auto" or None
        Standard deviation of the noise of ``image`` on the [0, 1] scale (> 0: the shipped
        denoiser's strength is tuned from it); None or ``"auto"`` (the default): estimated.
    kernel : array_like or str, optional
        Anti-aliasing kernel of the observation model.
    boundary : str
        Boundary of that blur (one of :data:`SR_BOUNDARIES`).
    solver, denoiser, channel_axis, sigma, max_iter, tol, callback, progress, device, max_memory, **solver_options
        As for :func:`pnp_stable.deblur`.

    Returns
    -------
    Reconstruction
        ``image`` of the input's kind and dtype, ``factor`` times larger, and the report.

    Examples
    --------
    >>> import numpy as np
    >>> class Half:
    ...     def __call__(self, x, sigma): return 0.5 * x
    ...     def certified_alpha(self): return 0.5
    >>> r = super_resolve(np.full((8, 8), 0.5), 2, 0.01, denoiser=Half(), progress=False)
    >>> r.image.shape, r.report.guaranteed
    ((16, 16), True)
    """
    _check_level_argument(noise_level)
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise ValueError(f"factor must be a positive integer (2, 3, 4...); got {factor!r}")
    if boundary not in SR_BOUNDARIES:
        raise ValueError(f"super-resolution supports the boundaries {', '.join(SR_BOUNDARIES)}; got {boundary!r}")
    if noise_level == 0 and sigma is None and (not isinstance(denoiser, str) or denoiser == "default"):
        raise ValueError("noise_level is 0: the shipped denoiser's strength is tuned from the noise level, so give the "
                         "level of the image's noise (e.g. 1/255 for clean 8-bit images) or an explicit sigma")
    y, how = _checked_batch(image, channel_axis)
    noise_level, estimated = _given_or_estimated_noise(noise_level, y)
    op = Downsampling(factor, kernel, boundary=boundary, noise_model=Gaussian(noise_level))
    plan = plan_run(denoiser, solver, noise_level=noise_level, sigma=sigma, channels=y.shape[1], **solver_options)
    rec = _execute_on(y, op, plan, device, max_iter=max_iter, tol=tol, callback=callback, progress=progress,
                      max_memory=max_memory)
    _noted_estimate(rec, noise_level, estimated)
    return Reconstruction(_from_batch(rec.image, how), rec.report, noise_level, estimated)
