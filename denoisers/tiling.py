r"""Exact tiled evaluation of denoisers with a finite receptive field: bounded memory at any size.

A gradient-flow network is a stack of zero-padded convolutions, so an output pixel depends only
on the input pixels within its **receptive radius** ``R`` (the sum of the convolution radii the
signal passes through; :func:`receptive_radius`).  Cut the image into tiles, give each tile a
halo of ``h >= R`` real neighbouring pixels (fewer where the image ends: there the tile's edge is
the image's edge and the network pads it with zeros exactly as the whole-image evaluation does),
evaluate, and keep the tile's core.  Every kept pixel then sees exactly the inputs it sees in the
whole image, so the tiled map **is** the whole-image map, up to float rounding (the summation
order of a convolution may differ between sizes).  Every certificate (Lipschitz bound,
averagedness) is a property of that map and carries over unchanged.

This is not overlap-and-blend tiling (``deepinv.distributed``'s ``overlap_tiling``): blending
tile outputs with weights makes a different operator, a convex combination of tile maps whose
halos are too small to be exact, and its Lipschitz and averagedness constants are not those of
the certified network.

Equilibrium (LBEN) denoisers solve a fixed point that couples every pixel to every other: their
receptive field is the whole image, no finite halo is exact, and :func:`receptive_radius`
refuses them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["receptive_radius", "working_bytes_per_pixel", "TilePlan", "plan_tiles", "TiledDenoiser", "parse_memory",
           "MIN_TILE"]

#: Smallest tile core the planner accepts (pixels per side): below it the halo costs more than the core.
MIN_TILE = 64


def receptive_radius(denoiser) -> int:
    """How far (in pixels, along each axis) an output pixel of ``denoiser`` can see.

    Parameters
    ----------
    denoiser : torch.nn.Module or callable
        A gradient-flow denoiser (or a wrapper of one: relaxation, channel-wise, dtype adapter).

    Returns
    -------
    int
        ``R`` such that changing the input farther than ``R`` pixels away (in either axis)
        leaves an output pixel unchanged.

    Raises
    ------
    ValueError
        For denoisers without a finite receptive field (equilibrium / LBEN models), or whose
        receptive field is unknown (a plain callable).

    Examples
    --------
    >>> from denoisers import GradientFlowNet, NonexpansiveDenoiser
    >>> receptive_radius(NonexpansiveDenoiser(GradientFlowNet(1, width=4, depth=3)).eval())
    6
    """
    fn = getattr(denoiser, "receptive_radius", None)
    if callable(fn):
        return int(fn())
    name = type(getattr(denoiser, "module", denoiser)).__name__
    if getattr(denoiser, "denoise_within", None) is not None:
        raise ValueError(f"{name} is an equilibrium network: every output pixel depends on every input pixel, so no finite "
                         "halo makes tiles exact; it cannot be evaluated tile by tile (give it an image that fits in memory, "
                         "or use a gradient-flow denoiser)")
    raise ValueError(f"the receptive field of {name} is unknown, so tiles cannot be made exact; give the denoiser a "
                     "receptive_radius() method or evaluate it whole")


def working_bytes_per_pixel(denoiser, dtype: torch.dtype = torch.float32) -> int:
    """Peak working memory of one evaluation, per pixel and sample (bytes), for tile planning.

    Six buffers of the network's widest layer (``working_width()``; 64 channels when the
    denoiser does not say): measured at about five (``benchmarks/speed_photo.py`` records the
    peaks), rounded up.

    Examples
    --------
    >>> from denoisers import GradientFlowNet
    >>> working_bytes_per_pixel(GradientFlowNet(1, width=32, depth=2))
    768
    """
    fn = getattr(denoiser, "working_width", None)
    width = int(fn()) if callable(fn) else 64
    itemsize = torch.empty(0, dtype=dtype).element_size()
    return 6 * width * itemsize


_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20,
          "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30, "t": 1 << 40, "tb": 1 << 40, "tib": 1 << 40}


def parse_memory(value) -> int:
    """A memory size in bytes from an int (bytes) or a string such as ``"4G"``, ``"512MiB"``, ``"1.5GB"``.

    Units are binary (``G`` = GiB = 2**30 bytes), as ``free -h`` shows them.

    Examples
    --------
    >>> parse_memory("4G") == 4 * 2**30, parse_memory(1000), parse_memory("1.5 GiB") == 3 * 2**29
    (True, 1000, True)
    >>> parse_memory("lots")
    Traceback (most recent call last):
    ...
    ValueError: max_memory must be a positive number of bytes or a size such as '4G' or '512M'; got 'lots'
    """
    err = ValueError(f"max_memory must be a positive number of bytes or a size such as '4G' or '512M'; got {value!r}")
    if isinstance(value, bool):
        raise err
    if isinstance(value, (int, float)):
        number, unit = float(value), ""
    elif isinstance(value, str):
        s = value.strip().lower().replace(" ", "")
        i = len(s)
        while i and s[i - 1].isalpha():
            i -= 1
        try:
            number, unit = float(s[:i]), s[i:]
        except ValueError:
            raise err from None
        if unit not in _UNITS:
            raise err
    else:
        raise err
    size = number * _UNITS[unit]
    if not (math.isfinite(size) and size >= 1):
        raise err
    return int(size)


@dataclass(frozen=True)
class TilePlan:
    """How a denoiser is evaluated on an image: tile core size, halo, and the count.

    Attributes
    ----------
    tile : int
        Side of a tile's core (pixels); the image's larger side when it is evaluated whole.
    halo : int
        Real neighbouring pixels added on every side (the receptive radius).
    tiles : int
        Tiles per evaluation (1: whole image).
    bytes_per_tile : int
        Estimated peak working memory of one tile's evaluation.
    """

    tile: int
    halo: int
    tiles: int
    bytes_per_tile: int

    @property
    def whole(self) -> bool:
        """True when the image is evaluated in one piece."""
        return self.tiles == 1


def _count(H: int, W: int, tile: int) -> int:
    return math.ceil(H / tile) * math.ceil(W / tile)


def plan_tiles(shape, denoiser, budget: int, dtype: torch.dtype = torch.float32) -> TilePlan:
    """The largest tiles whose evaluation fits ``budget`` bytes.

    Parameters
    ----------
    shape : tuple of int
        (B, C, H, W) of the images the denoiser will see.
    denoiser
        See :func:`receptive_radius`.
    budget : int
        Bytes the denoiser's working memory may take.
    dtype : torch.dtype
        The dtype it computes in.

    Raises
    ------
    ValueError
        When even a :data:`MIN_TILE` tile does not fit, or the denoiser cannot be tiled and the
        whole image does not fit.

    Examples
    --------
    >>> from denoisers import GradientFlowNet
    >>> net = GradientFlowNet(1, width=8, depth=2).eval()
    >>> plan_tiles((1, 1, 64, 64), net, 2**30).whole
    True
    >>> p = plan_tiles((1, 1, 4000, 3000), net, 2**28); p.tiles > 1, p.bytes_per_tile <= 2**28
    (True, True)
    """
    B, _, H, W = (int(s) for s in shape)
    per_pixel = B * working_bytes_per_pixel(denoiser, dtype)
    whole_bytes = per_pixel * H * W
    if whole_bytes <= budget:
        return TilePlan(max(H, W), 0, 1, whole_bytes)
    halo = receptive_radius(denoiser)  # raises for models that cannot be tiled
    side = int(math.isqrt(max(budget // per_pixel, 0)))  # side of the largest square (core + halo) that fits
    tile = side - 2 * halo
    if tile < MIN_TILE:
        need = per_pixel * (MIN_TILE + 2 * halo) ** 2
        raise ValueError(f"a memory budget of {budget / 2**20:.0f} MiB for the denoiser is too small for one tile: the "
                         f"smallest tile ({MIN_TILE}x{MIN_TILE} plus a halo of {halo} pixels, batch {B}) needs "
                         f"{need / 2**20:.0f} MiB; raise max_memory")
    tile = min(tile, max(H, W))
    # Even out the tiles: the same count with the smallest core (less wasted halo on the last row).
    n = _count(H, W, tile)
    while tile > MIN_TILE and _count(H, W, tile - 8) == n:
        tile -= 8
    return TilePlan(tile, halo, n, per_pixel * (min(tile, H) + 2 * halo) * (min(tile, W) + 2 * halo))


class TiledDenoiser:
    """A denoiser evaluated tile by tile with an exact halo: the same map in bounded memory.

    Certificates are those of the wrapped denoiser (``certified_alpha`` and every other
    attribute are passed through): the map is unchanged (module notes).

    Parameters
    ----------
    denoiser : callable ``(x, sigma)``
        A denoiser with a finite receptive field (:func:`receptive_radius`).
    max_memory : int or str
        Budget of one evaluation's working memory (bytes, or a size such as ``"1G"``).
    progress : callable, optional
        Called with the number of tiles done after each tile (a progress bar's ``update``).

    Examples
    --------
    >>> import torch
    >>> from denoisers import GradientFlowNet, NonexpansiveDenoiser
    >>> d = NonexpansiveDenoiser(GradientFlowNet(1, width=8, depth=2)).eval()
    >>> x = torch.rand(1, 1, 200, 180)
    >>> tiled = TiledDenoiser(d, max_memory="2M")
    >>> tiled.plan(x.shape).tiles > 1
    True
    >>> with torch.no_grad():
    ...     float((tiled(x, 0.1) - d(x, 0.1)).abs().max()) <= 1e-5
    True
    """

    def __init__(self, denoiser, max_memory, *, progress=None):
        self.denoiser = denoiser
        self.max_memory = parse_memory(max_memory)
        self.progress = progress
        self._plans: dict = {}

    def __getattr__(self, name):
        # certified_alpha, relaxation, channels...: the wrapped denoiser's (and only if it has them).
        if name == "denoiser":
            raise AttributeError(name)
        return getattr(self.denoiser, name)

    @property
    def dtype(self) -> torch.dtype | None:
        """The dtype the wrapped denoiser computes in (None when it does not say)."""
        inner = getattr(self.denoiser, "dtype", None)
        if isinstance(inner, torch.dtype):
            return inner
        if isinstance(self.denoiser, torch.nn.Module):
            p = next(iter(self.denoiser.parameters()), None)
            return p.dtype if p is not None else None
        return None

    def _dtype(self, x: torch.Tensor) -> torch.dtype:
        return self.dtype or x.dtype

    def plan(self, shape, dtype: torch.dtype = torch.float32) -> TilePlan:
        """The :class:`TilePlan` for images of ``shape`` (cached per shape)."""
        key = (tuple(int(s) for s in shape), dtype)
        if key not in self._plans:
            self._plans[key] = plan_tiles(shape, self.denoiser, self.max_memory, dtype)
        return self._plans[key]

    def __call__(self, x: torch.Tensor, sigma=None) -> torch.Tensor:
        plan = self.plan(x.shape, self._dtype(x))
        if plan.whole:
            out = self.denoiser(x, sigma)
            if self.progress is not None:
                self.progress(1)
            return out
        H, W = x.shape[-2:]
        t, h = plan.tile, plan.halo
        out = torch.empty_like(x)
        for r0 in range(0, H, t):
            r1 = min(r0 + t, H)
            a0, a1 = max(r0 - h, 0), min(r1 + h, H)
            for c0 in range(0, W, t):
                c1 = min(c0 + t, W)
                b0, b1 = max(c0 - h, 0), min(c1 + h, W)
                piece = self.denoiser(x[..., a0:a1, b0:b1].contiguous(), sigma)
                out[..., r0:r1, c0:c1] = piece[..., r0 - a0 : r1 - a0, c0 - b0 : c1 - b0]
                del piece
                if self.progress is not None:
                    self.progress(1)
        return out
