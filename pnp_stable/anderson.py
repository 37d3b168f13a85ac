r"""Anderson acceleration of a fixed-point map, batched, with the settings of its safeguard.

For a map :math:`T` with residual :math:`g(u) = u - T(u)`, type-II Anderson acceleration
(Walker and Ni 2011) extrapolates from the last ``memory`` differences of the sequence,

.. math:: \gamma = \arg\min_\gamma \|g_k - \Delta G\,\gamma\|, \qquad
          c_k = T(u_k) - \Delta F\,\gamma,

with :math:`\Delta G = [g_{i+1} - g_i]` and :math:`\Delta F = [T(u_{i+1}) - T(u_i)]`.  On its
own it has no global guarantee for non-smooth maps such as a PnP iteration.
:func:`pnp_stable.fixed_point.run_fixed_point` therefore only *proposes* :math:`c_k` and keeps
it under the two tests of :class:`Anderson` (a safeguard in the spirit of Zhang, O'Donoghue and
Boyd, SIAM J. Optim. 2020); the proof is in that module's docstring.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["Anderson", "AndersonHistory"]


@dataclass(frozen=True)
class Anderson:
    """Settings of safeguarded Anderson acceleration.

    Attributes
    ----------
    memory : int
        Number of past differences the extrapolation uses (at least 1).
    safeguard : float
        A candidate ``c`` is accepted only if its residual ``||c - T c||`` is at most
        ``safeguard`` times the residual at the current iterate (in (0, 1]).
    budget : float
        Scale of the summable bound on how far an accepted candidate may lie from the plain
        step: ``||c - T u_k|| <= budget * r_0 * (n + 1) ** -(1 + decay)`` for the ``n``-th
        accepted candidate, with ``r_0`` the first residual.  Any value keeps the proof; a
        generous one (default 100) lets the extrapolation cross slow modes, such as the
        weakly observed border of an unknown-boundary image (with 1, a real photograph took
        63 iterations instead of 21).
    decay : float
        Exponent margin of that bound (> 0 makes the bounds summable).
    regularization : float
        Relative Tikhonov term of the least-squares problem (keeps it well posed when the
        differences are nearly dependent).
    storage : {"full", "half"}
        Precision of the stored differences.  ``"half"`` keeps each difference as float16
        scaled by its largest entry (11 significant bits, no underflow), a quarter of the
        memory of float64 and half of float32: the candidate is only a proposal that the two
        tests accept or not, so its precision changes the speed, never the guarantee.  The
        memory plan of a large photograph chooses it (:mod:`pnp_stable.memory`).

    Examples
    --------
    >>> Anderson(memory=3).memory
    3
    >>> Anderson(memory=0)
    Traceback (most recent call last):
    ...
    ValueError: Anderson memory must be an integer >= 1 (the number of past differences); got 0
    """

    memory: int = 5
    safeguard: float = 1.0
    budget: float = 100.0
    decay: float = 0.1
    regularization: float = 1e-10
    storage: str = "full"

    def __post_init__(self):
        if isinstance(self.memory, bool) or not isinstance(self.memory, int) or self.memory < 1:
            raise ValueError(f"Anderson memory must be an integer >= 1 (the number of past differences); got {self.memory!r}")
        if not (0 < self.safeguard <= 1):
            raise ValueError(f"Anderson safeguard must lie in (0, 1]; got {self.safeguard!r}")
        if not (self.budget > 0 and math.isfinite(self.budget)):
            raise ValueError(f"Anderson budget must be positive and finite; got {self.budget!r}")
        if not (self.decay > 0 and math.isfinite(self.decay)):
            raise ValueError(f"Anderson decay must be positive (it makes the step bounds summable); got {self.decay!r}")
        if not (self.regularization >= 0):
            raise ValueError(f"Anderson regularization must be >= 0; got {self.regularization!r}")
        if self.storage not in ("full", "half"):
            raise ValueError(f"Anderson storage must be 'full' or 'half'; got {self.storage!r}")

    def bytes_per_entry(self, itemsize: int) -> int:
        """Bytes the history takes per entry of one sample (both rings of differences).

        Examples
        --------
        >>> Anderson(memory=5).bytes_per_entry(4), Anderson(memory=5, storage="half").bytes_per_entry(4)
        (40, 20)
        """
        return 2 * self.memory * (2 if self.storage == "half" else itemsize)

    def step_bound(self, r0: torch.Tensor, accepted: torch.Tensor) -> torch.Tensor:
        """The bound on ``||c - T u_k||`` for the next accepted candidate, per sample.

        Examples
        --------
        >>> import torch
        >>> Anderson(budget=1.0, decay=1.0).step_bound(torch.tensor([2.0]), torch.tensor([1]))
        tensor([0.5000])
        """
        return self.budget * r0 * (accepted.to(r0.dtype) + 1) ** (-(1 + self.decay))

    @staticmethod
    def resolve(value) -> "Anderson | None":
        """``True`` / ``None`` / ``False`` / an int memory / an :class:`Anderson`, as settings or None.

        Examples
        --------
        >>> Anderson.resolve(3).memory, Anderson.resolve(False)
        (3, None)
        """
        if value is None or value is False:
            return None
        if value is True:
            return Anderson()
        if isinstance(value, Anderson):
            return value
        if isinstance(value, int):
            return Anderson(memory=value)
        raise TypeError(f"anderson must be True, False, an int memory or an Anderson(...); got {type(value).__name__}")


#: Entries processed at once by the chunked reductions of the history (bounded temporaries).
_CHUNK = 1 << 20


class AndersonHistory:
    """The last ``memory`` differences of the residuals and map values, per sample.

    Each sample keeps its own ring of differences (samples accept candidates at different
    times); slots not yet filled take no part in the least-squares problem.  Inner products
    and the extrapolation run over chunks of entries, so they need no float64 copy of the
    history, and ``storage="half"`` keeps it in scaled float16.

    Parameters
    ----------
    settings : Anderson
    batch : int
        Number of samples.
    size : int
        Number of entries of one flattened sample.
    like : torch.Tensor
        Gives the dtype and device.

    Examples
    --------
    >>> import torch
    >>> h = AndersonHistory(Anderson(memory=2), batch=1, size=3, like=torch.zeros(1))
    >>> idx = torch.tensor([0])
    >>> h.push(idx, torch.tensor([[1.0, 0, 0]]), torch.tensor([[0.5, 0, 0]]))
    >>> h.count.tolist()
    [1]
    """

    def __init__(self, settings: Anderson, batch: int, size: int, like: torch.Tensor):
        self.settings = settings
        m = settings.memory
        self.half = settings.storage == "half"
        dtype = torch.float16 if self.half else like.dtype
        self.dG = torch.zeros(m, batch, size, dtype=dtype, device=like.device)
        self.dF = torch.zeros(m, batch, size, dtype=dtype, device=like.device)
        # Scale of each stored difference (1 unless stored as half).
        self.sG = torch.ones(m, batch, dtype=torch.float64, device=like.device)
        self.sF = torch.ones(m, batch, dtype=torch.float64, device=like.device)
        self.count = torch.zeros(batch, dtype=torch.long, device=like.device)

    def _store(self, ring: torch.Tensor, scales: torch.Tensor, slot: int, b: int, v: torch.Tensor) -> None:
        if not self.half:
            ring[slot, b] = v
            scales[slot, b] = 1.0
            return
        s = float(v.abs().max())
        s = s if s > 0 and s == s and s != float("inf") else 1.0
        for a in range(0, v.numel(), _CHUNK):
            ring[slot, b, a : a + _CHUNK] = (v[a : a + _CHUNK] / s).to(torch.float16)
        scales[slot, b] = s

    def push(self, idx: torch.Tensor, dg: torch.Tensor, df: torch.Tensor) -> None:
        """Store the differences ``dg``, ``df`` (rows of the samples ``idx``), oldest dropped."""
        slots = (self.count[idx] % self.settings.memory).tolist()
        for row, (b, slot) in enumerate(zip(idx.tolist(), slots)):
            self._store(self.dG, self.sG, slot, b, dg[row])
            self._store(self.dF, self.sF, slot, b, df[row])
        self.count[idx] += 1

    def clear(self, idx: torch.Tensor) -> None:
        """Forget the differences of the samples ``idx`` (a restart)."""
        self.count[idx] = 0

    def candidate(self, idx: torch.Tensor, g: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        """Extrapolated points ``f - dF gamma`` for the samples ``idx`` (rows of ``g``, ``f``).

        The least-squares problems are solved by their regularised normal equations in
        float64, sample by sample, from inner products accumulated in float64 over chunks.
        """
        m = self.settings.memory
        out = f.clone()
        f64 = torch.float64
        eye = torch.eye(m, dtype=f64, device=g.device)
        for row, b in enumerate(idx.tolist()):
            n = min(int(self.count[b]), m)
            if n == 0:
                continue
            gram = torch.zeros(n, n, dtype=f64, device=g.device)
            rhs = torch.zeros(n, dtype=f64, device=g.device)
            for a in range(0, g.shape[1], _CHUNK):
                G = self.dG[:n, b, a : a + _CHUNK].to(f64)
                gram += G @ G.T
                rhs += G @ g[row, a : a + _CHUNK].to(f64)
            sG = self.sG[:n, b]
            gram = gram * sG[:, None] * sG[None, :]
            rhs = rhs * sG
            scale = float(gram.diagonal().sum().clamp_min(torch.finfo(f64).tiny))  # trace
            gamma = torch.linalg.solve(gram + eye[:n, :n] * self.settings.regularization * scale, rhs)
            gamma = torch.nan_to_num(gamma, nan=0.0, posinf=0.0, neginf=0.0) * self.sF[:n, b]
            for a in range(0, g.shape[1], _CHUNK):
                piece = out[row, a : a + _CHUNK]
                for i in range(n):
                    piece.sub_(self.dF[i, b, a : a + _CHUNK].to(piece.dtype), alpha=float(gamma[i]))
        return out
