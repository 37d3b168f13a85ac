"""pnp-stable: Plug-and-Play imaging whose convergence is checked, not hoped for.

* :func:`tikhonov_deblur`: the closed-form classical baseline (Tikhonov/Wiener).
* ``pnp-stable`` command line: ``--version``, ``demo``, ``train``, ``export``, ``certify``.
"""

from ._version import __version__
from .classical import TikhonovResult, tikhonov_deblur

__all__ = ["__version__", "tikhonov_deblur", "TikhonovResult"]
