"""Forward operators for imaging inverse problems, with exact adjoints and certified norms.

Every operator is a :class:`deepinv.physics.LinearPhysics`, so deepinv's solvers accept
them and pnp-stable's solvers accept deepinv's.

* :class:`Blur`, :class:`Downsampling`, :class:`Inpainting`: built-in forward models.
* :mod:`operators.kernels`: blur kernel families, the Levin et al. set, files, specs.
* :mod:`operators.noise`: Gaussian and Poisson noise with checked levels.
* :func:`as_operator`: wrap your own model; its adjoint is checked in float64 at once.
* :func:`operator_norm`: the norm with how it was obtained (exact, upper bound, estimate).

This package imports nothing from ``denoisers`` or ``pnp_stable``.
"""

from . import kernels, noise
from .adjoint import AdjointMismatchError, adjoint_error, check_adjoint
from .base import LinearOperator, OperatorNorm
from .blur import BLUR_BOUNDARIES, BOUNDARIES, Blur
from .custom import CustomOperator, NotLinearError, as_operator
from .downsampling import Downsampling
from .inpainting import Inpainting
from .norms import estimate_norm, operator_norm

__all__ = [
    "AdjointMismatchError",
    "BLUR_BOUNDARIES",
    "BOUNDARIES",
    "Blur",
    "CustomOperator",
    "Downsampling",
    "Inpainting",
    "LinearOperator",
    "NotLinearError",
    "OperatorNorm",
    "adjoint_error",
    "as_operator",
    "check_adjoint",
    "estimate_norm",
    "kernels",
    "noise",
    "operator_norm",
]
