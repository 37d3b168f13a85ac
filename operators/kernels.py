"""Blur kernels: the standard families, the Levin et al. (2009) set, files and command-line specs.

Every function returns a float64 numpy array that passed :func:`validate`: finite,
non-negative, summing to 1, odd and square with its centre in the middle.

Centring rule
-------------
A kernel of even or unequal sides is zero-padded to the smallest odd square whose middle
entry is the original entry ``((h - 1) // 2, (w - 1) // 2)``, the centre that
``scipy.signal.convolve2d(..., mode="same")`` uses.  So a 4x4 box acts on pixels
``i - 2 .. i + 1``.
"""

from __future__ import annotations

import math
import warnings
from importlib import resources
from pathlib import Path

import numpy as np
import torch

__all__ = ["gaussian", "box", "disk", "motion", "levin", "load", "parse", "validate", "LEVIN_COUNT"]

#: Number of Levin et al. (CVPR 2009) kernels shipped with the package.
LEVIN_COUNT = 8

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
_ARRAY_SUFFIXES = (".npy", ".txt", ".csv")


def _centre_pad(k: np.ndarray) -> np.ndarray:
    h, w = k.shape
    ch, cw = (h - 1) // 2, (w - 1) // 2
    half = max(ch, h - 1 - ch, cw, w - 1 - cw)
    top, left = half - ch, half - cw
    out = np.zeros((2 * half + 1, 2 * half + 1))
    out[top : top + h, left : left + w] = k
    return out


def validate(kernel, *, normalize_tol: float = 1e-6, name: str = "kernel") -> np.ndarray:
    """Check a kernel and bring it to the canonical form.

    Parameters
    ----------
    kernel : array_like, shape (h, w)
        Candidate kernel (numpy array, torch tensor or nested lists).  A torch tensor of
        shape (1, 1, h, w), as deepinv uses, is accepted too.
    normalize_tol : float
        When ``|sum - 1|`` exceeds this, the kernel is divided by its sum with a warning.
    name : str
        Name used in messages.

    Returns
    -------
    numpy.ndarray
        A new float64 array: odd, square, centred, non-negative, summing to 1.

    Raises
    ------
    ValueError
        If the kernel is not 2-D, is empty, holds NaN/Inf or negative values, or sums to 0.

    Examples
    --------
    >>> validate([[1.0, 2.0, 1.0]]).shape
    (3, 3)
    >>> validate([[1.0, -1.0, 1.0]])
    Traceback (most recent call last):
    ...
    ValueError: kernel has negative entries (min -1); blur kernels must be non-negative
    """
    try:
        raw = kernel.detach().cpu().to(torch.float64).numpy() if isinstance(kernel, torch.Tensor) else kernel
        k = np.array(raw, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a 2-D array of real numbers; got {type(kernel).__name__}") from exc
    while k.ndim > 2 and k.shape[0] == 1:
        k = k[0]
    if k.ndim != 2:
        raise ValueError(f"{name} must be 2-D (h, w); got shape {k.shape}")
    if k.size == 0:
        raise ValueError(f"{name} is empty (shape {k.shape})")
    if not np.all(np.isfinite(k)):
        raise ValueError(f"{name} contains NaN or Inf; pass finite values")
    if k.min() < 0:
        raise ValueError(f"{name} has negative entries (min {k.min():.3g}); blur kernels must be non-negative")
    total = k.sum()
    if total <= 0:
        raise ValueError(f"{name} sums to 0; a blur kernel needs positive total mass")
    if abs(total - 1.0) > normalize_tol:
        warnings.warn(f"{name} summed to {total:.6g}; normalised to sum 1", UserWarning, stacklevel=2)
    k = k / total
    h, w = k.shape
    if h % 2 == 0 or w % 2 == 0 or h != w:
        k = _centre_pad(k)
    return k


def gaussian(std: float | tuple[float, float], size: int | None = None) -> np.ndarray:
    """Sampled Gaussian kernel.

    Parameters
    ----------
    std : float or (float, float)
        Standard deviation in pixels, isotropic or (vertical, horizontal).
    size : int, optional
        Side length (odd); default ``2 * ceil(3 * max(std)) + 1``.

    Examples
    --------
    >>> k = gaussian(1.6)
    >>> k.shape, round(float(k.sum()), 12)
    ((11, 11), 1.0)
    """
    sy, sx = (std, std) if np.isscalar(std) else tuple(std)
    for s in (sy, sx):
        if not (np.isfinite(s) and s > 0):
            raise ValueError(f"gaussian std must be a positive finite number; got {std!r}")
    if size is None:
        size = 2 * math.ceil(3 * max(sy, sx)) + 1
    size = _check_size(size, "gaussian size")
    r = np.arange(size) - size // 2
    g = np.exp(-(r[:, None] ** 2) / (2 * sy**2) - (r[None, :] ** 2) / (2 * sx**2))
    return validate(g / g.sum())


def _check_size(size, what: str) -> int:
    if isinstance(size, bool) or not float(size).is_integer() or size < 1:
        raise ValueError(f"{what} must be a positive integer; got {size!r}")
    return int(size)


def box(size: int) -> np.ndarray:
    """Uniform (box) kernel of ``size x size``; even sizes follow the module's centring rule.

    Examples
    --------
    >>> float(box(3)[1, 1]) == 1 / 9
    True
    >>> box(4).shape
    (5, 5)
    """
    size = _check_size(size, "box size")
    return validate(np.full((size, size), 1.0 / size**2))


def _supersample_grid(half: int, factor: int) -> np.ndarray:
    # Sub-pixel offsets at the centres of a factor x factor split of each pixel.
    sub = (np.arange(factor) + 0.5) / factor - 0.5
    return (np.arange(-half, half + 1)[:, None] + sub[None, :]).ravel()


def disk(radius: float, *, supersample: int = 16) -> np.ndarray:
    """Pillbox (out-of-focus) kernel: the area of each pixel inside a disk of ``radius``.

    Areas are measured by supersampling each pixel ``supersample**2`` times.

    Examples
    --------
    >>> k = disk(2.5)
    >>> k.shape, bool(k[2, 2] > k[0, 0])
    ((5, 5), True)
    """
    if not (np.isfinite(radius) and radius >= 0.5):
        raise ValueError(f"disk radius must be a finite number >= 0.5 pixels; got {radius!r}")
    half = math.ceil(radius - 0.5)
    c = _supersample_grid(half, supersample)
    inside = (c[:, None] ** 2 + c[None, :] ** 2) <= radius**2
    n = 2 * half + 1
    area = inside.reshape(n, supersample, n, supersample).mean(axis=(1, 3))
    return validate(area / area.sum())


def motion(length: float, angle: float, *, samples_per_pixel: int = 16) -> np.ndarray:
    """Linear motion blur: a segment of ``length`` pixels at ``angle`` degrees.

    The angle is measured counter-clockwise from the horizontal axis as the image is
    displayed (rows grow downwards).  The segment is sampled densely and splatted
    bilinearly, so sub-pixel lengths and any angle are rendered smoothly.

    Examples
    --------
    >>> k = motion(9, 0)
    >>> k.shape, bool(k[5].sum() > 0.99)
    ((11, 11), True)
    """
    if not (np.isfinite(length) and length >= 1):
        raise ValueError(f"motion length must be a finite number >= 1 pixel; got {length!r}")
    if not np.isfinite(angle):
        raise ValueError(f"motion angle must be finite (degrees); got {angle!r}")
    half = math.ceil(length / 2)
    n = 2 * half + 1
    t = np.linspace(-length / 2, length / 2, max(2, int(samples_per_pixel * length)))
    theta = math.radians(angle)
    cols = half + t * math.cos(theta)
    rows = half - t * math.sin(theta)
    k = np.zeros((n, n))
    r0, c0 = np.floor(rows).astype(int), np.floor(cols).astype(int)
    fr, fc = rows - r0, cols - c0
    for dr, dc, wgt in ((0, 0, (1 - fr) * (1 - fc)), (1, 0, fr * (1 - fc)), (0, 1, (1 - fr) * fc), (1, 1, fr * fc)):
        rr, cc = np.clip(r0 + dr, 0, n - 1), np.clip(c0 + dc, 0, n - 1)
        np.add.at(k, (rr, cc), wgt)
    return validate(k / k.sum())


def levin(index: int) -> np.ndarray:
    """One of the 8 camera-shake kernels of Levin et al. (CVPR 2009), ``index`` in 1..8.

    Examples
    --------
    >>> levin(1).shape
    (19, 19)
    """
    if isinstance(index, bool) or not float(index).is_integer() or not 1 <= index <= LEVIN_COUNT:
        raise ValueError(f"Levin kernel index must be an integer from 1 to {LEVIN_COUNT}; got {index!r}")
    with resources.files("operators").joinpath("data/levin09_kernels.npz").open("rb") as fh:
        with np.load(fh) as data:
            k = data[f"k{int(index)}"]
    return validate(k, normalize_tol=1e-9)


def load(path: str | Path) -> np.ndarray:
    """Read a kernel from ``.npy``, ``.txt``/``.csv`` (whitespace or comma separated) or an image.

    Images (png, jpg, tif, bmp) are read as gray levels; colour images are converted
    with luminance weights.  The result is validated (and normalised, with a warning).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the suffix is unsupported or the content is not a valid kernel.

    Examples
    --------
    >>> import tempfile, os, numpy as np
    >>> p = os.path.join(tempfile.mkdtemp(), "k.npy"); np.save(p, np.ones((3, 3)) / 9)
    >>> load(p).shape
    (3, 3)
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"kernel file not found: {p}")
    suffix = p.suffix.lower()
    try:
        if suffix == ".npy":
            arr = np.load(p, allow_pickle=False)
        elif suffix in (".txt", ".csv"):
            arr = np.loadtxt(p, delimiter="," if suffix == ".csv" else None, ndmin=2)
        elif suffix in _IMAGE_SUFFIXES:
            from skimage import io
            from skimage.color import rgb2gray, rgba2rgb

            arr = io.imread(p)
            if arr.ndim == 3 and arr.shape[-1] == 4:
                arr = rgba2rgb(arr)
            if arr.ndim == 3 and arr.shape[-1] == 3:
                arr = rgb2gray(arr)
        else:
            raise ValueError(
                f"unsupported kernel file type {suffix!r} for {p}; use one of "
                f"{', '.join(_ARRAY_SUFFIXES + _IMAGE_SUFFIXES)}"
            )
    except ValueError as exc:
        if "unsupported kernel file type" in str(exc):
            raise
        raise ValueError(f"could not read a kernel from {p}: {exc}") from exc
    except OSError as exc:
        raise ValueError(f"could not read a kernel from {p}: {exc}") from exc
    return validate(arr, name=f"kernel from {p.name}")


_SPEC_HELP = (
    "kernel specs: 'gaussian:STD', 'gaussian:STD_Y,STD_X', 'gaussian:STD,size=SIDE', 'box:SIZE', 'disk:RADIUS', "
    "'motion:LENGTH,ANGLE_DEG', 'levin:1..8', 'file:PATH'"
)


def parse(spec: str) -> np.ndarray:
    """Build a kernel from a command-line string such as ``gaussian:1.6`` or ``levin:3``.

    A Gaussian takes its side as ``size=SIDE`` after the standard deviation(s): the
    GS-PnP deblurring protocol blurs with a 25 x 25 Gaussian of std 1.6
    (``gaussian:1.6,size=25``), wider than the default ``2 ceil(3 std) + 1 = 11``.

    Examples
    --------
    >>> parse("motion:15,45").shape
    (17, 17)
    >>> parse("gaussian:1.6,size=25").shape
    (25, 25)
    >>> parse("blob:3")
    Traceback (most recent call last):
    ...
    ValueError: unknown kernel family 'blob' in 'blob:3'; kernel specs: ...
    """
    if not isinstance(spec, str) or ":" not in spec:
        raise ValueError(f"cannot parse kernel spec {spec!r}; {_SPEC_HELP}")
    family, _, args = spec.partition(":")
    family = family.strip().lower()
    if family == "file":
        return load(args)
    parts = [a.strip() for a in args.split(",")] if args.strip() else []
    options = dict(p.split("=", 1) for p in parts if "=" in p)
    options = {k.strip().lower(): v for k, v in options.items()}
    if set(options) - {"size"} or (options and family != "gaussian"):
        raise ValueError(f"kernel spec {spec!r} has an unknown option; only 'gaussian' takes one (size=SIDE); {_SPEC_HELP}")
    try:
        values = [float(a) for a in parts if "=" not in a]
        size = float(options["size"]) if "size" in options else None
    except ValueError:
        raise ValueError(f"kernel spec {spec!r} has non-numeric arguments; {_SPEC_HELP}") from None
    arity = {"gaussian": (1, 2), "box": (1,), "disk": (1,), "motion": (2,), "levin": (1,)}
    if family not in arity:
        raise ValueError(f"unknown kernel family {family!r} in {spec!r}; {_SPEC_HELP}")
    if len(values) not in arity[family]:
        raise ValueError(f"kernel spec {spec!r} has {len(values)} argument(s); {_SPEC_HELP}")
    if family == "gaussian":
        return gaussian(values[0] if len(values) == 1 else (values[0], values[1]), size=size)
    if family == "box":
        return box(values[0])
    if family == "disk":
        return disk(values[0])
    if family == "motion":
        return motion(values[0], values[1])
    return levin(values[0])
