"""pnp-stable: Plug-and-Play imaging whose convergence is checked, not hoped for.

* :func:`pnp_fbs`, :func:`pnp_admm`: PnP solvers that check the convergence theorem's
  hypotheses from certificates, monitor the governing sequence, and return a
  :class:`ConvergenceReport` (solver registry, ``deblur()`` and ``reconstruct()``: issue #4).
* :func:`deblur` (images and kernels) and :func:`reconstruct` (any operator): run a registered
  solver and return the image with its report.
* :func:`denoise` (one pass of the certified denoiser) and :func:`super_resolve` (PnP on
  :class:`operators.Downsampling`): the other tasks of the command line.
* :func:`pnp_stable.folder.restore_folder`: a whole folder, batched and resumable, also under
  ``torchrun`` (:mod:`pnp_stable.distributed`).
* :func:`tikhonov_deblur`: the closed-form classical baseline (Tikhonov/Wiener).
* :func:`register_solver`, :func:`get_solver`, :func:`available_solvers`: the solver registry
  (plugins through the entry-point group ``pnp_stable.solvers``).
* :func:`retain_freed_memory`: a process-wide glibc setting that keeps iterative solvers from
  page-faulting their buffers in at every iteration (the command line sets it).
* ``pnp-stable`` command line: ``--version``, ``demo``, ``solvers``, ``models``, ``train``, ``export``,
  ``certify``, ``deblur``, ``denoise``, ``super-resolve``, ``restore``, ``robust-train``, ``robust-eval``.
* :mod:`pnp_stable.robust`: certified-robust classifiers from the same certified layers.
"""

from ._version import __version__
from .allocator import retain_freed_memory
from .api import Reconstruction, deblur, reconstruct
from .classical import TikhonovResult, tikhonov_deblur
from .report import Condition, ConvergenceReport
from .registry import available_solvers, get_solver, register_solver
from .solvers import pnp_admm, pnp_fbs
from .tasks import denoise, super_resolve

__all__ = ["__version__", "deblur", "denoise", "super_resolve", "reconstruct", "Reconstruction", "tikhonov_deblur", "TikhonovResult", "pnp_fbs", "pnp_admm", "ConvergenceReport", "Condition",
           "available_solvers", "get_solver", "register_solver", "retain_freed_memory"]
