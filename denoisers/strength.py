"""Calibrating the relaxation ``theta(sigma)`` that lets one averaged network serve many noise levels.

An averaged denoiser ``D = (1 - theta) I + theta N`` with a fixed certified network ``N`` stays
certified for every ``theta`` up to the certified one, and ``theta`` is a strength knob: small
``theta`` removes little, ``theta = 1`` removes all that ``N`` was trained for.  For a noise
level ``sigma`` the mean-squared-error-optimal ``theta`` has a closed form: with truth ``x``,
noisy ``y`` and ``r = N(y) - y``, ``||x - y - theta r||^2`` is least at
``theta = <x - y, r> / ||r||^2`` (clipped to ``[0, 1]``).  Fitting it on held-out *training*
images, never on a test set, gives the table that :class:`denoisers.AveragedDenoiser` uses.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

__all__ = ["calibrate_strength", "optimal_theta"]


def optimal_theta(model, images: Sequence[np.ndarray], sigma: float, *, seed: int = 0) -> float:
    """The MSE-optimal relaxation of ``model``'s network at noise level ``sigma`` on ``images``.

    Parameters
    ----------
    model : AveragedDenoiser or NonexpansiveDenoiser
        Its network ``model.net`` is applied (without relaxation).
    images : sequence of numpy.ndarray
        uint8 (H, W, C) or float (H, W, C) in [0, 1] images, C = the network's channels.
    sigma : float
        Noise standard deviation on the [0, 1] scale (> 0).
    seed : int
        Seed of the noise (the same noise for every call with the same seed).

    Returns
    -------
    float
        ``theta`` in [0, 1].

    Examples
    --------
    >>> import numpy as np
    >>> from denoisers import AveragedDenoiser, GradientFlowNet
    >>> d = AveragedDenoiser(GradientFlowNet(1, width=4, depth=1))
    >>> 0.0 <= optimal_theta(d, [np.full((16, 16, 1), 0.5)], 0.1) <= 1.0
    True
    """
    if not (np.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be a finite number > 0; got {sigma!r}")
    net = model.net
    was_training = net.training
    net.eval()
    dtype = next(net.parameters()).dtype
    g = torch.Generator().manual_seed(seed)
    dot = norm2 = 0.0
    with torch.no_grad():
        for img in images:
            a = np.asarray(img)
            a = a.astype(np.float64) / 255.0 if a.dtype == np.uint8 else a.astype(np.float64)
            x = torch.from_numpy(a).permute(2, 0, 1)[None].float()
            y = (x + sigma * torch.randn(x.shape, generator=g)).to(dtype)  # the noise draw does not depend on dtype
            x = x.to(dtype)
            r = (net(y, sigma) - y).double()  # a noise-conditioned network needs the level
            dot += float(((x - y).double() * r).sum())
            norm2 += float((r * r).sum())
    net.train(was_training)
    return float(np.clip(dot / norm2, 0.0, 1.0)) if norm2 > 0 else 1.0


def calibrate_strength(model, images: Sequence[np.ndarray], sigmas: Sequence[float], *, seed: int = 0,
                       progress: bool = False) -> tuple[list[float], list[float]]:
    """A ``(sigmas, thetas)`` table for :class:`denoisers.AveragedDenoiser` ``strength=``.

    ``theta`` is fitted per level by :func:`optimal_theta`, then made non-decreasing in
    ``sigma`` (a stronger noise never gets a weaker denoiser) and capped at the model's
    certified ``theta`` (so the certificate is unchanged).

    Examples
    --------
    >>> import numpy as np
    >>> from denoisers import AveragedDenoiser, GradientFlowNet
    >>> d = AveragedDenoiser(GradientFlowNet(1, width=4, depth=1))
    >>> s, t = calibrate_strength(d, [np.full((16, 16, 1), 0.5)], [0.05, 0.1])
    >>> s == [0.0, 0.05, 0.1] and t[0] == 0.0 and t == sorted(t)
    True
    """
    levels = sorted(float(s) for s in sigmas)
    if not levels or levels[0] <= 0 or len(set(levels)) != len(levels):
        raise ValueError(f"sigmas must be distinct numbers > 0; got {list(sigmas)}")
    cap = model.effective_theta() if hasattr(model, "effective_theta") else 1.0
    from tqdm.auto import tqdm

    thetas = [optimal_theta(model, images, s, seed=seed + i) for i, s in enumerate(tqdm(levels, desc="calibrate strength", disable=not progress))]
    thetas = np.minimum(np.maximum.accumulate(thetas), cap)
    # sigma = 0 means "no noise": the identity, which the table reaches by theta = 0.
    return [0.0] + levels, [0.0] + [float(t) for t in thetas]
