"""The common base of pnp-stable's operators, and the record of how a norm was obtained."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from deepinv.physics import LinearPhysics

from ._checks import check_image_batch
from .functional import pcg

__all__ = ["LinearOperator", "OperatorNorm", "NormKind"]

NormKind = Literal["exact", "upper_bound", "estimate"]

#: Relative allowance added to norms computed in float64 so that "exact" values are never
#: below the true norm because of rounding (float64 FFT/SVD errors are ~1e-15 relative).
ROUNDING_ALLOWANCE = 1e-12


@dataclass(frozen=True)
class OperatorNorm:
    """A spectral norm ``||A||_2`` (not squared) and how it was obtained.

    Attributes
    ----------
    value : float
        The number.  For ``"exact"`` it is rounded up by a 1e-12 relative allowance.
    kind : {"exact", "upper_bound", "estimate"}
        ``exact`` and ``upper_bound`` are certificates (``value >= ||A||``); an
        ``estimate`` (power iteration) is a lower bound in exact arithmetic and must
        not be used where a guarantee is claimed.
    method : str
        How it was computed, in words.
    in_shape : tuple of int or None
        The input shape it holds for; ``None`` means every image size.

    Examples
    --------
    >>> OperatorNorm(1.0, "exact", "sum of a non-negative kernel", None).certified
    True
    """

    value: float
    kind: NormKind
    method: str
    in_shape: tuple[int, ...] | None

    @property
    def certified(self) -> bool:
        """True when ``value`` is a guaranteed upper bound of the norm."""
        return self.kind in ("exact", "upper_bound")


class LinearOperator(LinearPhysics):
    """Base class of pnp-stable operators: a :class:`deepinv.physics.LinearPhysics` with
    declared norm certificates and a prox that never changes the operator's state.

    Subclasses implement ``A``, ``A_adjoint`` and, where they can, ``norm_certificate``
    and a faster ``prox_l2``.  The default ``prox_l2`` runs conjugate gradients with an
    optional preconditioner from ``_prox_preconditioner``.

    Parameters
    ----------
    noise_model : deepinv.physics.NoiseModel, optional
        Noise applied by ``forward`` (``physics(x)``); default none.
    prox_tol : float
        Relative residual tolerance of iterative proxes.
    prox_max_iter : int
        Iteration cap of iterative proxes.

    Examples
    --------
    A subclass needs only ``A`` and ``A_adjoint``; the prox then runs conjugate gradients.

    >>> import torch
    >>> class Scale(LinearOperator):
    ...     def A(self, x, **kw):
    ...         return 2 * x
    ...     def A_adjoint(self, y, **kw):
    ...         return 2 * y
    >>> x, info = Scale().prox_l2_info(torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2), 1.0)
    >>> round(x[0, 0, 0, 0].item(), 6), info["method"]  # (4 + 1)^-1 * 2
    (0.4, 'pcg')
    """

    def __init__(self, *, noise_model=None, prox_tol: float = 1e-6, prox_max_iter: int = 100):
        from deepinv.physics import ZeroNoise

        if not (prox_tol > 0):
            raise ValueError(f"prox_tol must be positive; got {prox_tol!r}")
        if int(prox_max_iter) < 1:
            raise ValueError(f"prox_max_iter must be a positive integer; got {prox_max_iter!r}")
        super().__init__(noise_model=noise_model if noise_model is not None else ZeroNoise())
        self.prox_tol = float(prox_tol)
        self.prox_max_iter = int(prox_max_iter)

    # -- norms -----------------------------------------------------------------------
    def norm_certificate(self, in_shape: tuple[int, ...] | None = None) -> OperatorNorm | None:
        """A certified (exact or upper-bound) norm for inputs of ``in_shape``, or None.

        ``in_shape=None`` asks for a bound valid for every image size; operators whose
        bound depends on the size return None then.
        """
        return None

    # -- solver start ---------------------------------------------------------------------
    def initial_estimate(self, y: torch.Tensor) -> torch.Tensor:
        """A start for iterative solvers, on the input domain: ``A^T y`` unless a subclass
        knows better (the unknown-boundary :class:`~operators.Blur` mirrors ``y`` outwards).

        Examples
        --------
        >>> import torch
        >>> from operators import Blur
        >>> Blur("box:3").initial_estimate(torch.ones(1, 1, 8, 8)).shape
        torch.Size([1, 1, 8, 8])
        """
        return self.A_adjoint(y)

    # -- prox of the data term ---------------------------------------------------------
    @property
    def iterative_prox(self) -> bool:
        """True when :meth:`prox_l2_info` runs conjugate gradients (False: a closed form).

        Examples
        --------
        >>> from operators import Blur
        >>> Blur("box:3").iterative_prox, Blur("box:3", boundary="unknown").iterative_prox
        (False, True)
        """
        return True

    def _prox_preconditioner(self, z: torch.Tensor, gamma: torch.Tensor):
        """An SPD approximation of ``(gamma A^T A + I)^{-1}``, or None."""
        return None

    def prox_l2(self, z, y, gamma, **kwargs):
        r"""Proximal operator of the data term, in deepinv's convention.

        .. math:: \operatorname{prox}(z) = \arg\min_x \tfrac{\gamma}{2}\|Ax - y\|^2 + \tfrac12\|x - z\|^2
                  = (\gamma A^\top A + I)^{-1} (\gamma A^\top y + z)

        Unlike deepinv's ``LinearPhysics.prox_l2`` this never changes ``max_iter``, ``tol``
        or ``solver`` on the operator.  See :meth:`prox_l2_info` for the arguments; this
        returns its solution only.
        """
        return self.prox_l2_info(z, y, gamma, **kwargs)[0]

    def prox_l2_info(self, z, y, gamma, *, tol: float | None = None, max_iter: int | None = None,
                     init: torch.Tensor | None = None, atol: float | torch.Tensor = 0.0,
                     **kwargs) -> tuple[torch.Tensor, dict]:
        r"""The prox of :meth:`prox_l2` and how it was computed.

        Parameters
        ----------
        z : torch.Tensor
            Point, shape (B, C, H, W).
        y : torch.Tensor
            Measurements.
        gamma : float or torch.Tensor
            Positive weight; a tensor of shape (B,) or (B, 1, 1, 1) gives one per sample.
        tol, max_iter : optional
            Override ``prox_tol`` / ``prox_max_iter`` for this call (iterative proxes).
        atol : float or torch.Tensor
            Absolute residual tolerance of an iterative solve, one per sample or one for all:
            it stops when the residual is below ``tol * ||b||`` or below ``atol``.
        init : torch.Tensor, optional
            Warm start of an iterative solve (default: the preconditioned right-hand side).

        Returns
        -------
        x : torch.Tensor
            The prox.
        info : dict
            ``method`` ("closed form" or "pcg"), ``iterations``, ``converged``, and
            ``error_bound``: per sample, an upper bound of ``||x - prox(z)||`` (zero for a closed
            form).  For PCG it is the residual norm ``||b - M x||``, which bounds the error
            because ``M = gamma A^T A + I`` has every eigenvalue at least 1.
        """
        check_image_batch(z, "z")
        g = self._gamma(gamma, z)
        b = g * self.A_adjoint(y) + z
        x, info = pcg(
            lambda v: g * self.A_adjoint(self.A(v)) + v,
            b,
            precondition=self._prox_preconditioner(z, g),
            x0=init,
            tol=self.prox_tol if tol is None else tol,
            max_iter=self.prox_max_iter if max_iter is None else max_iter,
            atol=atol,
        )
        # ||x - x*|| = ||M^{-1}(b - M x)|| <= ||b - M x|| since M >= I.
        return x, dict(info, method="pcg", error_bound=info["residual_norm"])

    @staticmethod
    def closed_form(x: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Package a closed-form prox result with its info."""
        return x, {"method": "closed form", "iterations": 0, "converged": True,
                   "error_bound": x.new_zeros(x.shape[0])}

    @staticmethod
    def _gamma(gamma, like: torch.Tensor) -> torch.Tensor:
        g = torch.as_tensor(gamma, dtype=like.dtype, device=like.device)
        if g.ndim == 1 and g.numel() == like.shape[0]:
            g = g.view(-1, 1, 1, 1)
        if not bool(torch.isfinite(g).all()) or bool((g <= 0).any()):
            raise ValueError(f"gamma must be positive and finite; got {gamma!r}")
        return g
