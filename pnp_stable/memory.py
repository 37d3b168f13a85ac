"""The memory plan of a run: how a photograph of any size is restored within a budget.

Three things grow with the image: the solver's state (iterates, the data prox's conjugate
gradients and FFT buffers), the Anderson history (``2 m`` differences) and the denoiser's
activations (its widest layer, tens of channels per pixel: by far the largest).  The plan keeps
the first as it is, stores the history in scaled float16 when full precision does not leave
the denoiser enough room (a proposal's precision never touches the guarantee,
:class:`~pnp_stable.anderson.Anderson`), and gives the denoiser what is left, evaluated whole
when it fits and otherwise tile by tile with an exact halo (:mod:`denoisers.tiling`: the same
map, so the same certificate).

``max_memory=None`` (the default) plans within :data:`DEFAULT_MAX_MEMORY` or, for an image too
large for it, within its solver state plus room for 512-pixel tiles; an explicit ``max_memory`` is a hard budget, and a
run that cannot fit it is refused before it starts, with the size it needs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from denoisers.tiling import MIN_TILE, TilePlan, TiledDenoiser, parse_memory, plan_tiles, receptive_radius, working_bytes_per_pixel

from .anderson import Anderson

__all__ = ["MemoryPlan", "plan_memory", "DEFAULT_MAX_MEMORY", "PROCESS_BASELINE", "STATE_COPIES"]

#: The default budget of a run: fits a 2-core, 24 GiB machine beside other work.
DEFAULT_MAX_MEMORY = 4 << 30

#: Resident memory of the process before the run's arrays (Python, torch, deepinv, the model),
#: measured at 0.77 GiB.
PROCESS_BASELINE = 832 << 20

#: Image-sized buffers a solver's run holds at its peak besides the Anderson history and the
#: denoiser's activations (iterates, residuals, the data prox's CG vectors and FFT buffers), and
#: the heap's fragmentation while freed memory is kept (:func:`pnp_stable.allocator.freed_memory_kept`),
#: which grows over the first iterations.  From peaks measured on 4-megapixel colour photographs
#: (benchmarks/RESULTS.md, section "speed-photo"): PnP-ADMM about 40 after a converged run (23
#: after 2 iterations); PnP-FBS was measured once, after 2 iterations only (29, not recorded in
#: RESULTS), and scaled alike.
STATE_COPIES = {"pnp-admm": 40, "pnp-fbs": 50, "denoise": 3}

#: Extra image-sized (working dtype) buffers of a data prox solved in float64 for a float32 run:
#: its CG vectors and FFT buffers at twice the width, and the observation in float64.
WIDE_PROX_COPIES = 11

#: Tile core (pixels per side) a grown default budget leaves the denoiser room for.
_DEFAULT_TILE = 512

#: Below this share of what a whole evaluation needs (or 512 MiB), the denoiser gets more room by
#: storing the Anderson history in half precision.
_DENOISER_COMFORT = 512 << 20


@dataclass(frozen=True)
class MemoryPlan:
    """How a run spends its memory budget.

    Attributes
    ----------
    budget : int
        Bytes the run may take (the process included).
    explicit : bool
        Whether the budget was asked for (a hard limit) or is the default.
    state_bytes, history_bytes, denoiser_bytes : int
        Estimated peaks of the solver state, the Anderson history and the denoiser's working memory.
    anderson : Anderson or None
        The acceleration settings, with the history's storage chosen.
    tiles : TilePlan
        How the denoiser is evaluated.
    prox_precision : torch.dtype or None
        float64 when an iterative data prox of a float32 run is solved in float64
        (:func:`pnp_stable.solvers.pnp_admm`); None: the run's dtype.

    Examples
    --------
    >>> import torch
    >>> from denoisers import GradientFlowNet, NonexpansiveDenoiser
    >>> d = NonexpansiveDenoiser(GradientFlowNet(1, width=8, depth=2)).eval()
    >>> plan = plan_memory((1, 1, 64, 64), torch.float32, d, "pnp-admm", Anderson())
    >>> plan.tiles.whole, plan.anderson.storage
    (True, 'full')
    """

    budget: int
    explicit: bool
    state_bytes: int
    history_bytes: int
    denoiser_bytes: int
    anderson: Anderson | None
    tiles: TilePlan
    prox_precision: torch.dtype | None = None

    @property
    def estimate(self) -> int:
        """Estimated peak resident memory of the run (the process baseline included)."""
        return PROCESS_BASELINE + self.state_bytes + self.history_bytes + self.tiles.bytes_per_tile

    def describe(self) -> str:
        """One line for a report.

        Examples
        --------
        >>> import torch
        >>> from denoisers import GradientFlowNet
        >>> p = plan_memory((1, 1, 64, 64), torch.float32, GradientFlowNet(1, width=8, depth=2).eval(), "pnp-fbs", None)
        >>> p.describe().startswith("memory: about")
        True
        """
        how = "whole" if self.tiles.whole else f"in {self.tiles.tiles} tiles of {self.tiles.tile} px (halo {self.tiles.halo})"
        hist = "" if self.anderson is None else f", Anderson history in {'float16' if self.anderson.storage == 'half' else 'full precision'}"
        prox = ", data prox in float64" if self.prox_precision == torch.float64 else ""
        return (f"memory: about {self.estimate / 2**30:.2f} GiB of a {self.budget / 2**30:.2f} GiB budget; denoiser evaluated "
                f"{how}{hist}{prox}")

    def wrap(self, denoiser, progress=None):
        """The denoiser as the plan evaluates it (tiled when needed, with a per-tile hook)."""
        if self.tiles.whole and progress is None:
            return denoiser
        return TiledDenoiser(denoiser, max(self.denoiser_bytes, self.tiles.bytes_per_tile), progress=progress)


def _numel(shape) -> int:
    return int(math.prod(int(s) for s in shape))


def plan_memory(shape, dtype: torch.dtype, denoiser, solver: str, anderson: Anderson | None,
                max_memory=None, *, iterative_prox: bool = False, wide_prox: bool = False) -> MemoryPlan:
    """Plan a run on images of ``shape`` (the solver's domain) within ``max_memory``.

    Parameters
    ----------
    shape : tuple of int
        (B, C, H, W) of the solver's iterates (for an unknown boundary, the extended domain).
    dtype : torch.dtype
        The solve's dtype.
    denoiser
        The resolved denoiser (its width and receptive field set the tiles).
    solver : str
        Registered solver name.
    anderson : Anderson or None
        Requested acceleration; its ``storage`` may be lowered to ``"half"`` by the plan.
    max_memory : int, str or None
        Budget in bytes or as ``"4G"``; None: the default (module notes).
    iterative_prox, wide_prox : bool
        Whether the operator's data prox runs conjugate gradients, and whether the run asks
        for it in float64 (``prox_precision=torch.float64`` of
        :func:`pnp_stable.solvers.pnp_admm`): its wider buffers are then budgeted.

    Raises
    ------
    ValueError
        An explicit budget too small for the solver state plus one smallest tile, with the size
        needed; or a denoiser that cannot be tiled on an image too large for the budget.

    Examples
    --------
    >>> import torch
    >>> from denoisers import GradientFlowNet
    >>> net = GradientFlowNet(3, width=32, depth=8).eval()
    >>> p = plan_memory((1, 3, 3000, 4000), torch.float32, net, "pnp-admm", Anderson())
    >>> p.tiles.tiles > 1, p.estimate <= p.budget, p.anderson.storage
    (True, True, 'half')
    >>> plan_memory((1, 3, 3000, 4000), torch.float32, net, "pnp-admm", Anderson(), max_memory="1G")
    Traceback (most recent call last):
    ...
    ValueError: max_memory = 1.00 GiB is too small for a 1x3x3000x4000 image: the solver state alone needs ...
    """
    explicit = max_memory is not None
    numel = _numel(shape)
    itemsize = torch.empty(0, dtype=dtype).element_size()
    state = STATE_COPIES.get(solver, max(STATE_COPIES.values())) * numel * itemsize
    B, _, H, W = (int(s) for s in shape)
    per_pixel = B * working_bytes_per_pixel(denoiser, dtype)
    whole = per_pixel * H * W

    def history(acc):
        return 0 if acc is None else acc.bytes_per_entry(itemsize) * numel

    def smallest_tile() -> int:
        if whole <= per_pixel * MIN_TILE**2:
            return whole
        try:
            halo = receptive_radius(denoiser)
        except ValueError:
            return whole  # cannot be tiled: it needs the whole image
        return min(whole, per_pixel * (MIN_TILE + 2 * halo) ** 2)

    wide = torch.float64 if wide_prox and iterative_prox and solver == "pnp-admm" and dtype == torch.float32 else None
    if wide is not None:
        state += WIDE_PROX_COPIES * numel * itemsize
    def comfortable_tile() -> int:
        try:
            halo = receptive_radius(denoiser)
        except ValueError:
            return whole
        return min(whole, per_pixel * (_DEFAULT_TILE + 2 * halo) ** 2)

    lean = None if anderson is None else replace(anderson, storage="half")
    floor = PROCESS_BASELINE + state + history(lean) + smallest_tile()
    if explicit:
        budget = parse_memory(max_memory)
        if budget < floor:
            shape_txt = "x".join(str(int(s)) for s in shape)
            raise ValueError(f"max_memory = {budget / 2**30:.2f} GiB is too small for a {shape_txt} image: the solver state alone "
                             f"needs {(PROCESS_BASELINE + state + history(lean)) / 2**30:.2f} GiB (process included) and the "
                             f"denoiser's smallest tile {smallest_tile() / 2**30:.2f} GiB; give at least {math.ceil(floor / 2**27) / 8:.2f} GiB "
                             f"(max_memory='{math.ceil(floor / 2**27) / 8:g}G')")
    else:
        # A default budget grown for a very large image gives the denoiser tiles large enough that
        # their halo costs little, not the smallest that fit.
        budget = max(DEFAULT_MAX_MEMORY, floor - smallest_tile() + comfortable_tile())

    comfort = min(whole, _DENOISER_COMFORT)
    acc = anderson
    room = budget - PROCESS_BASELINE - state - history(acc)
    if acc is not None and acc.storage == "full" and room < comfort:
        acc = lean
        room = budget - PROCESS_BASELINE - state - history(acc)
    tiles = plan_tiles(shape, denoiser, max(room, smallest_tile()), dtype)
    return MemoryPlan(budget, explicit, state, history(acc), max(room, tiles.bytes_per_tile), acc, tiles, wide)
