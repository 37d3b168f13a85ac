"""The noise level of a photograph, estimated when the user does not know it.

The estimator is deepinv's :class:`~deepinv.models.PatchCovarianceNoiseEstimator` (Chen, Zhu
and Heng, ICCV 2015): the noise variance is read off the smallest eigenvalues of the
covariance of the image's patches, which texture and edges do not reach.  Measured on blurred
8-bit photographs (``benchmarks/noise_estimation.py``, section "noise-estimation" of
benchmarks/RESULTS.md) it is within a few per cent of the true level from 2.55/255 up.
(deepinv's wavelet estimator needs PyWavelets and over-estimates at high signal-to-noise,
as its documentation says; scikit-image's ``estimate_sigma`` needs PyWavelets too.)  On sharp,
finely textured images at low noise it over-estimates (cameraman at 0.01: 0.027), as texture
then passes for noise: give the level where it is known.

JPEG compression removes part of the noise and adds artefacts of its own, so on JPEG files the
estimate is what is left, which is what the restoration sees.
"""

from __future__ import annotations

import torch

__all__ = ["estimate_noise_level", "MIN_ESTIMATE", "MIN_SIDE"]

#: Smallest image side the estimator accepts: it needs a few thousand patches.
MIN_SIDE = 32

#: Larger images are estimated on their centre MAX_SIDE x MAX_SIDE.
MAX_SIDE = 1536

#: Floor of an estimate: half a grey level of an 8-bit image.  A clean (or synthetic) image reads
#: as nearly noise-free, and the defaults that scale with the noise level stay sensible.
MIN_ESTIMATE = 0.5 / 255


def estimate_noise_level(image: torch.Tensor) -> float:
    """Standard deviation of the Gaussian noise of ``image`` on the [0, 1] scale, estimated.

    Parameters
    ----------
    image : torch.Tensor
        (B, C, H, W), float, [0, 1] units.  Colour channels are pooled; a batch gives the mean
        of its samples' estimates.

    Returns
    -------
    float
        The estimate, at least :data:`MIN_ESTIMATE`.

    Raises
    ------
    ValueError
        An image smaller than :data:`MIN_SIDE` on a side, or a flat image (a single value:
        nothing to estimate from).

    Examples
    --------
    >>> import torch
    >>> from skimage import data
    >>> from operators import Blur
    >>> blurred = Blur("levin:4", boundary="unknown").A(torch.from_numpy(data.camera() / 255.0)[None, None].float())
    >>> noisy = blurred + 0.03 * torch.randn(blurred.shape, generator=torch.Generator().manual_seed(0))
    >>> abs(estimate_noise_level(noisy) / 0.03 - 1) < 0.1
    True
    """
    from deepinv.models import PatchCovarianceNoiseEstimator

    if not isinstance(image, torch.Tensor) or image.ndim != 4 or not image.is_floating_point():
        raise TypeError(f"estimate_noise_level takes a float tensor (B, C, H, W); got {getattr(image, 'shape', type(image))}")
    H, W = image.shape[-2:]
    if min(H, W) < MIN_SIDE:
        raise ValueError(f"the image ({H}x{W}) is too small to estimate its noise level (at least {MIN_SIDE}x{MIN_SIDE}); "
                         "pass the noise level")
    if not bool(torch.isfinite(image).all()):
        raise ValueError("image contains NaN or Inf")
    flat = image.flatten(1)
    if bool((flat.amax(1) == flat.amin(1)).any()):
        raise ValueError("the image is flat (one value everywhere): there is no noise to estimate; pass the noise level")
    # A centre crop of a large photograph holds patches enough (millions) at a fraction of the time.
    r0, c0 = max(0, (H - MAX_SIDE) // 2), max(0, (W - MAX_SIDE) // 2)
    crop = image[..., r0 : r0 + MAX_SIDE, c0 : c0 + MAX_SIDE]
    with torch.no_grad():
        levels = PatchCovarianceNoiseEstimator()(crop.to(torch.float32).cpu())
    value = float(levels.reshape(-1).mean())
    return max(value, MIN_ESTIMATE)
