"""Certified denoisers that ship with pnp-stable.

Each shipped model is a weights file in ``denoisers/shipped/`` (written by
``pnp-stable export``) that carries its architecture, its certificate and the record of its
training (command, data, steps, wall time, validation).  Loading re-derives the certificate
from the weights and refuses the file if it no longer matches (:func:`load_weights`), so a
shipped model is exactly the certified one.  The verified model is cached per process; every
call returns a fresh copy that the caller may change freely.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .weights import load_weights

__all__ = ["PretrainedInfo", "available_pretrained", "load_pretrained", "default_pretrained", "default_pretrained_name", "pretrained_names", "pretrained_path",
           "strength_ceiling"]

SHIPPED_DIR = Path(__file__).with_name("shipped")


@dataclass(frozen=True)
class PretrainedInfo:
    """What a shipped model is: channels, training noise, certificate and training record.

    Attributes
    ----------
    name, file : str
    channels : int
        1 (gray) or 3 (colour).
    sigma_train : float or (float, float)
        Training noise level (or range) on the [0, 1] scale.
    alpha : float
        Certified averagedness of the network (float64 upper bound, from the file's record).
    lipschitz_bound : float
        Certified Lipschitz constant (<= 1).
    steps : int
        Training steps done.
    training_minutes : float
        Training wall time.
    validation_psnr : float or None
        PSNR (dB) on held-out training images at the training noise level.
    strength_calibrated : bool
        Whether the model carries a ``theta(sigma)`` table for lower noise levels.
    description : str
    init : str or None
        The model it was fine-tuned from (``pnp-stable train --init``); ``steps`` and
        ``training_minutes`` count the fine-tuning only, ``total_steps`` both.
    total_steps : int
        Training steps including those of the models it was fine-tuned from.
    training_devices : tuple of str
        Where its own training steps ran (``"cpu"``, ``"cuda"``).
    """

    name: str
    file: str
    channels: int
    sigma_train: float | tuple[float, float]
    alpha: float
    lipschitz_bound: float
    steps: int
    training_minutes: float
    validation_psnr: float | None
    strength_calibrated: bool
    description: str
    init: str | None = None
    total_steps: int = 0
    training_devices: tuple[str, ...] = ("cpu",)


#: Shipped models: name -> (file in ``shipped/``, one-line description).
_SHIPPED: dict[str, tuple[str, str]] = {
    "gray-averaged": (
        "gray-averaged.pt",
        "gray, noise-conditioned: one model for every level 0-50/255 (BSD400 minus 12 held-out images); "
        "certified averaged, for PnP-FBS",
    ),
    "gray-firm": (
        "gray-firm.pt",
        "gray, noise-conditioned (0-50/255), trained end to end as D = (I + N) / 2: certified firmly "
        "non-expansive (alpha <= 1/2) at full strength, for PnP-ADMM",
    ),
    "colour-averaged": (
        "colour-averaged.pt",
        "colour, noise-conditioned: one model for every level 0-50/255 (CBSD432 minus 12 held-out images); "
        "certified averaged, for PnP-FBS",
    ),
    "colour-firm": (
        "colour-firm.pt",
        "colour, noise-conditioned (0-50/255), trained end to end as D = (I + N) / 2: certified firmly "
        "non-expansive (alpha <= 1/2) at full strength, for PnP-ADMM",
    ),
    "gray-lben": (
        "gray-lben.pt",
        "gray, noise-conditioned (0-50/255) Lipschitz-bounded equilibrium network (LBEN, hidden 32): Lipschitz <= 1 by "
        "construction, relaxed to alpha 0.99, for PnP-FBS (target_alpha=0.5 relaxes it for PnP-ADMM); about 0.4 dB below "
        "gray-averaged and slower per call on a CPU",
    ),
    # The per-level models that preceded them (kept loadable by name; no default uses them).
    "gray-averaged-s25": (
        "gray-averaged-s25.pt",
        "gray, trained at noise 25/255 on BSD400 (minus 12 held-out images); theta(sigma) calibrated for lower levels",
    ),
    "gray-averaged-s50": (
        "gray-averaged-s50.pt",
        "gray, fine-tuned from gray-averaged-s25 at noise 50/255 on BSD400 (minus 12 held-out images); "
        "theta(sigma) calibrated for lower levels",
    ),
    "colour-averaged-s25": (
        "colour-averaged-s25.pt",
        "colour, fine-tuned from gray-averaged-s25 at noise 25/255 on CBSD432 (minus 12 held-out images); "
        "theta(sigma) calibrated for lower levels",
    ),
    "colour-averaged-s50": (
        "colour-averaged-s50.pt",
        "colour, fine-tuned from colour-averaged-s25 at noise 50/255 on CBSD432 (minus 12 held-out images); "
        "theta(sigma) calibrated for lower levels",
    ),
}

#: The model behind ``denoiser="default"``: by image channels, and by whether the solver needs
#: a firmly non-expansive denoiser (alpha <= 1/2, PnP-ADMM) or an averaged one (PnP-FBS).  Each
#: is noise-conditioned, so one model serves every strength from 0 to 50/255 (above, it acts
#: as at 50/255); training/README.md has the learning curves that chose them.
_DEFAULT_MODELS: dict[tuple[int, bool], str] = {
    (1, False): "gray-averaged",
    (1, True): "gray-firm",
    (3, False): "colour-averaged",
    (3, True): "colour-firm",
}


def pretrained_names() -> tuple[str, ...]:
    """Names of the shipped models, sorted (without reading any file).

    Examples
    --------
    >>> "gray-averaged-s25" in pretrained_names()
    True
    """
    return tuple(sorted(_SHIPPED))


def pretrained_path(name: str) -> Path:
    """Path of the weights file of the shipped model ``name``.

    Examples
    --------
    >>> pretrained_path("gray-averaged-s25").name
    'gray-averaged-s25.pt'
    >>> pretrained_path("unet")
    Traceback (most recent call last):
    ...
    ValueError: no shipped model named 'unet'; available: colour-averaged, colour-averaged-s25, colour-averaged-s50, colour-firm, gray-averaged, gray-averaged-s25, gray-averaged-s50, gray-firm, gray-lben
    """
    if name not in _SHIPPED:
        raise ValueError(f"no shipped model named {name!r}; available: {', '.join(sorted(_SHIPPED))}")
    return SHIPPED_DIR / _SHIPPED[name][0]


def _info(name: str) -> PretrainedInfo:
    path = pretrained_path(name)
    if not path.is_file():
        raise FileNotFoundError(f"the weights of {name!r} are missing from the installation ({path}); reinstall pnp-stable")
    # Reading the record runs no code (weights_only) and does not certify: that is load_pretrained's job.
    rec = torch.load(path, map_location="cpu", weights_only=True)
    meta, cert, cfg = rec.get("metadata", {}), rec.get("certificate", {}), rec.get("config", {})
    sigma = meta.get("sigma")
    sigma_max = meta.get("sigma_max")
    val = meta.get("last_validation") or {}
    init = meta.get("init")
    total, link = int(meta.get("steps_done", 0)), init
    while link:  # a chain of fine-tunings
        total += int(link.get("steps_done") or 0)
        link = link.get("init")
    return PretrainedInfo(
        name=name, file=path.name, channels=int(cfg.get("channels", 1)),
        sigma_train=(sigma, sigma_max) if sigma_max is not None else sigma,
        alpha=float(cert.get("alpha", float("nan"))), lipschitz_bound=float(cert.get("lipschitz_bound", float("nan"))),
        steps=int(meta.get("steps_done", 0)), training_minutes=float(meta.get("training_wall_time_s", 0.0)) / 60,
        validation_psnr=val.get("val_psnr"), strength_calibrated="strength" in cfg, description=_SHIPPED[name][1],
        init=init["source"] if init else None, total_steps=total,
        training_devices=tuple(meta.get("training_devices", ("cpu",))),
    )


def available_pretrained() -> dict[str, PretrainedInfo]:
    """The shipped models, by name, with their certificates and training records.

    Examples
    --------
    >>> info = available_pretrained()["gray-averaged-s25"]
    >>> info.channels, info.alpha < 1, info.lipschitz_bound <= 1
    (1, True, True)
    """
    return {name: _info(name) for name in sorted(_SHIPPED)}


@functools.lru_cache(maxsize=None)
def _verified(name: str):
    # Certification takes seconds; do it once per process and hand out copies.
    return load_weights(pretrained_path(name))


def load_pretrained(name: str, *, channels: int | None = None, target_alpha: float | None = None,
                    dtype: torch.dtype = torch.float32, device=None):
    """Load a shipped certified denoiser, verified against its stored certificate.

    Parameters
    ----------
    name : str
        A name from :func:`available_pretrained`.
    channels : int, optional
        Channels of the images to denoise.  A gray model asked for 3 channels runs on each
        channel (:class:`denoisers.channelwise.ChannelwiseDenoiser`, same certificate).
    target_alpha : float, optional
        Relax the model to this certified averagedness (e.g. 0.5, firmly non-expansive, for
        PnP-ADMM).
    dtype : torch.dtype
        Parameter dtype (float32 or float64; the certificate does not depend on it).
    device : optional
        Where to put the model.

    Returns
    -------
    AveragedDenoiser or ChannelwiseDenoiser
        In eval mode; a private copy.

    Raises
    ------
    ValueError
        Unknown name, or ``channels`` the model cannot serve.
    denoisers.weights.WeightsError
        The file is corrupt or no longer certifies.

    Examples
    --------
    >>> import torch
    >>> d = load_pretrained("gray-averaged-s25", target_alpha=0.5)
    >>> d.certified_alpha() <= 0.5
    True
    >>> d(torch.rand(1, 1, 32, 32), 25 / 255).shape
    torch.Size([1, 1, 32, 32])
    """
    model = copy.deepcopy(_verified(name))
    if target_alpha is not None:
        if not 0 < target_alpha < 1:
            raise ValueError(f"target_alpha must lie in (0, 1); got {target_alpha!r}")
        model.target_alpha = float(target_alpha)
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.float32 or torch.float64; got {dtype}")
    # .float()/.double() leave the complex power-iteration buffers alone (.to(dtype) would not).
    model = model.double() if dtype == torch.float64 else model.float()
    model = model.to(device).eval()
    if channels is None or channels == model.net.channels:
        return model
    if channels == 3 and model.net.channels == 1:
        from .channelwise import ChannelwiseDenoiser

        return ChannelwiseDenoiser(model)
    raise ValueError(f"{name} denoises {model.net.channels}-channel images; it cannot serve {channels} channels")


def _training_level(name: str) -> float:
    """The highest noise level the shipped model ``name`` was trained at."""
    level = _info(name).sigma_train
    return float(max(level) if isinstance(level, tuple) else level)


def strength_ceiling(name: str, target_alpha: float | None = None) -> float | None:
    """The largest denoiser strength the shipped model ``name`` delivers when relaxed to ``target_alpha``.

    The model relaxes its network by ``theta(sigma)``, a calibrated non-decreasing table, never
    above its cap (the certified ``theta``, lowered further to reach ``target_alpha``).  Above
    the returned level ``theta`` sits at the cap, so a larger ``sigma`` gives exactly the same
    denoiser: asking for more strength does nothing.

    Parameters
    ----------
    name : str
        A shipped model.
    target_alpha : float, optional
        The averagedness the model is relaxed to (e.g. 0.5 for PnP-ADMM); ``None``: the model as
        certified.

    Returns
    -------
    float or None
        The level (noise standard deviation on the [0, 1] scale) from which ``theta`` is at the
        cap; ``None`` when the cap is never reached.

    Examples
    --------
    >>> level = strength_ceiling("gray-averaged-s25", target_alpha=0.5)
    >>> 10 / 255 < level < 13 / 255
    True
    >>> d = load_pretrained("gray-averaged-s25", target_alpha=0.5)
    >>> d.theta_for(level) == d.theta_for(1.0) == d.effective_theta()
    True
    """
    if target_alpha is not None and not 0 < target_alpha < 1:
        raise ValueError(f"target_alpha must lie in (0, 1); got {target_alpha!r}")
    model = _verified(name)
    if getattr(model, "strength", None) is None:
        return None
    cap = model.theta_cap(target_alpha)
    sigmas, thetas = (np.asarray(v, dtype=np.float64) for v in model.strength)
    reached = np.nonzero(thetas >= cap)[0]
    if reached.size == 0:
        return None
    i = int(reached[0])
    if i == 0:
        return float(sigmas[0])
    # theta is piecewise linear in sigma: the cap is crossed inside segment (i - 1, i).
    s0, s1, t0, t1 = sigmas[i - 1], sigmas[i], thetas[i - 1], thetas[i]
    level = float(s0 + (cap - t0) * (s1 - s0) / (t1 - t0))
    # Rounding may leave np.interp a hair below the cap there; step up until it is exactly reached.
    while np.interp(level, sigmas, thetas) < cap:
        level = float(np.nextafter(level, np.inf))
    return level


def default_pretrained_name(channels: int = 1, target_alpha: float | None = None) -> str:
    """Name of the shipped model that serves ``channels``-channel images by default.

    Parameters
    ----------
    channels : int
        1 (gray) or 3 (colour).
    target_alpha : float, optional
        The averagedness the solver needs.  At or below 1/2 (PnP-ADMM) the firmly non-expansive
        model, trained at that averagedness, serves; otherwise (PnP-FBS, or ``None``) the
        averaged model.  Every default model is noise-conditioned: the same model serves every
        strength.

    Examples
    --------
    >>> default_pretrained_name(1), default_pretrained_name(1, target_alpha=0.5)
    ('gray-averaged', 'gray-firm')
    >>> default_pretrained_name(3, target_alpha=0.5)
    'colour-firm'
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3; got {channels}")
    if target_alpha is not None and not 0 < target_alpha < 1:
        raise ValueError(f"target_alpha must lie in (0, 1); got {target_alpha!r}")
    return _DEFAULT_MODELS[channels, target_alpha is not None and target_alpha <= 0.5]


def default_pretrained(channels: int = 1, *, target_alpha: float | None = None,
                       dtype: torch.dtype = torch.float32, device=None):
    """The default certified denoiser for ``channels``-channel images and a solver's condition.

    See :func:`default_pretrained_name` for the choice; ``target_alpha`` is also enforced on
    the model (relaxing it further if it were needed: the firmly non-expansive models meet 1/2
    as trained).

    Examples
    --------
    >>> import torch
    >>> d = default_pretrained(3, target_alpha=0.5)
    >>> d.certified_alpha() <= 0.5, d(torch.rand(1, 3, 16, 16), 0.05).shape
    (True, torch.Size([1, 3, 16, 16]))
    """
    name = default_pretrained_name(channels, target_alpha)
    return load_pretrained(name, channels=channels, target_alpha=target_alpha, dtype=dtype, device=device)
