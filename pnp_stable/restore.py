"""One restoration task, run on a batch of images of equal size: the path that the single-file
commands (``deblur``, ``denoise``, ``super-resolve``) and folder restoration share.

A :class:`RestoreTask` holds everything but the images; :func:`run_task` restores a list of
same-shaped images as one batch (each sample stops on its own in the solvers) and returns, per
image, the result and a JSON-ready record of what was done.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .api import DEFAULT_BOUNDARY, deblur
from .io import load_image, write_atomic
from .registry import DEFAULT_SOLVER
from .report import ConvergenceReport
from .tasks import DEFAULT_SR_BOUNDARY, denoise, super_resolve

__all__ = ["RestoreTask", "ImageResult", "run_task", "TASKS", "save_image", "read_image", "image_psnr"]

#: The tasks solved with a shipped certified denoiser.
TASKS = ("deblur", "denoise", "super-resolve")


@dataclass(frozen=True)
class RestoreTask:
    """What to do to every image: the task and its settings (the command-line options).

    Attributes
    ----------
    kind : str
        ``"deblur"``, ``"denoise"`` or ``"super-resolve"``.
    noise : float or None
        Noise standard deviation on the [0, 1] scale; None: estimated from each image (images
        then run one at a time, each with its own level).
    kernel : str, optional
        Blur kernel spec (deblur: required; super-resolve: the anti-aliasing kernel).
    factor : int, optional
        Super-resolution factor.
    boundary : str, optional
        Boundary model; None takes the task's default (deblur ``"unknown"``, super-resolve
        ``"reflect"``).
    solver, denoiser, sigma, step, anderson, max_iter, tol, max_memory
        As for ``pnp-stable deblur`` (``anderson`` 0 switches acceleration off; the solver
        settings do not apply to ``denoise``).

    Examples
    --------
    >>> RestoreTask("deblur", 0.01, kernel="gaussian:1.6").resolved_boundary
    'unknown'
    >>> RestoreTask("super-resolve", 0.01)
    Traceback (most recent call last):
    ...
    ValueError: super-resolve needs a factor (2, 3, 4...)
    """

    kind: str
    noise: float | None
    kernel: str | None = None
    factor: int | None = None
    boundary: str | None = None
    solver: str = DEFAULT_SOLVER
    denoiser: str = "default"
    sigma: float | None = None
    step: float | None = None
    anderson: int = 5
    max_iter: int = 200
    tol: float = 1e-4
    max_memory: int | str | None = None

    def __post_init__(self):
        if self.kind not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}; got {self.kind!r}")
        if self.noise is not None and not (isinstance(self.noise, (int, float)) and np.isfinite(self.noise) and self.noise >= 0):
            raise ValueError(f"noise must be a finite number >= 0 (standard deviation on the [0, 1] scale), or None to "
                             f"estimate it; got {self.noise!r}")
        if self.max_memory is not None:
            from denoisers.tiling import parse_memory

            parse_memory(self.max_memory)
        if self.kind == "deblur" and not self.kernel:
            raise ValueError("deblur needs a kernel (e.g. gaussian:1.6, levin:3, file:k.png)")
        if self.kind == "super-resolve" and not self.factor:
            raise ValueError("super-resolve needs a factor (2, 3, 4...)")
        if self.factor is not None and (isinstance(self.factor, bool) or not isinstance(self.factor, int) or self.factor < 1):
            raise ValueError(f"factor must be a positive integer; got {self.factor!r}")
        if self.kind == "denoise" and (self.kernel or self.factor):
            raise ValueError("denoise takes neither a kernel nor a factor")
        if self.anderson < 0:
            raise ValueError(f"anderson must be a memory >= 1, or 0 to switch acceleration off; got {self.anderson}")

    @property
    def resolved_boundary(self) -> str | None:
        """The boundary model this task runs with (None for denoising)."""
        if self.kind == "denoise":
            return None
        return self.boundary or (DEFAULT_BOUNDARY if self.kind == "deblur" else DEFAULT_SR_BOUNDARY)

    def describe(self) -> dict:
        """The settings as a JSON-ready dict (what every per-image report records)."""
        d = dataclasses.asdict(self)
        d["boundary"] = self.resolved_boundary
        return d

    def _solver_options(self) -> dict:
        options: dict[str, Any] = {"anderson": self.anderson if self.anderson > 0 else False}
        if self.step is not None:
            options["step"] = self.step
        return options


@dataclass
class ImageResult:
    """The restored image (float32 in [0, 1], clipped, the input's layout), its record, and the
    report of the batch it ran in (None for denoising)."""

    image: np.ndarray
    record: dict
    report: ConvergenceReport | None = None


def run_task(task: RestoreTask, images: list[np.ndarray], *, progress: bool = False, device=None) -> list[ImageResult]:
    """Restore images of one shape as one batch.

    Parameters
    ----------
    task : RestoreTask
    images : list of numpy.ndarray
        Same shape, (H, W) or (H, W, 3), floats in [0, 1].  Never modified.
    progress : bool
        The solver's own progress bar.
    device : str or torch.device, optional

    Returns
    -------
    list of ImageResult
        In the order of ``images``.  The record holds the iterations, stop reason, residual
        and guarantee of that image's run, and the batch's wall time shared equally.

    Examples
    --------
    >>> import numpy as np
    >>> task = RestoreTask("denoise", 0.1)
    >>> [r.image.shape for r in run_task(task, [np.full((16, 16), 0.5)] * 2)]
    [(16, 16), (16, 16)]
    """
    if not images:
        return []
    shape = images[0].shape
    if any(im.shape != shape for im in images):
        raise ValueError(f"a batch needs images of one shape; got {sorted({im.shape for im in images})}")
    if len(shape) not in (2, 3) or (len(shape) == 3 and shape[-1] != 3):
        raise ValueError(f"images must be (H, W) gray or (H, W, 3) colour; got {shape}")
    if task.noise is None and len(images) > 1:
        # Each image has its own estimated level: one run each.
        return [r for im in images for r in run_task(task, [im], progress=progress, device=device)]
    stack = np.stack([np.asarray(im, dtype=np.float32) for im in images])  # a copy: inputs are never touched
    batch = torch.from_numpy(stack[:, None] if len(shape) == 2 else np.moveaxis(stack, -1, 1).copy())
    start = time.perf_counter()
    if task.kind == "denoise":
        rec = denoise(batch, task.noise, denoiser=task.denoiser, sigma=task.sigma, device=device, max_memory=task.max_memory)
    elif task.kind == "deblur":
        rec = deblur(batch, task.kernel, task.noise, solver=task.solver, denoiser=task.denoiser, boundary=task.resolved_boundary,
                     sigma=task.sigma, max_iter=task.max_iter, tol=task.tol, progress=progress, device=device,
                     max_memory=task.max_memory, **task._solver_options())
    else:
        rec = super_resolve(batch, task.factor, task.noise, kernel=task.kernel, boundary=task.resolved_boundary, solver=task.solver,
                            denoiser=task.denoiser, sigma=task.sigma, max_iter=task.max_iter, tol=task.tol, progress=progress,
                            device=device, max_memory=task.max_memory, **task._solver_options())
    seconds = time.perf_counter() - start
    out = rec.image.detach().to("cpu", torch.float32).clamp(0, 1).numpy()
    out = out[:, 0] if len(shape) == 2 else np.moveaxis(out, 1, -1)
    results = []
    for i in range(len(images)):
        record: dict[str, Any] = {"task": task.describe(), "input_shape": list(shape), "output_shape": list(out[i].shape),
                                  "batch_size": len(images), "seconds": seconds / len(images),
                                  "noise_level": rec.noise_level, "noise_estimated": rec.noise_estimated}
        rep = rec.report
        if rep is not None:
            record.update(solver=rep.solver, theorem=rep.theorem, guaranteed=bool(rep.sample_guaranteed[i]),
                          iterations=int(rep.iterations[i]), converged=bool(rep.converged[i]), stop_reason=rep.stop_reason[i],
                          final_residual=float(rep.final_residual[i]), residual_history=[float(v) for v in rep.residual_history[i]],
                          conditions=[dataclasses.asdict(c) for c in rep.conditions])
        results.append(ImageResult(np.ascontiguousarray(out[i]), record, rep))
    return results


def read_image(path: str | os.PathLike) -> np.ndarray:
    """An image file as float32 in [0, 1], (H, W) or (H, W, 3) (see :func:`pnp_stable.io.load_image`).

    Examples
    --------
    >>> read_image("camera").dtype
    dtype('float32')
    """
    return load_image(path).astype(np.float32)


def save_image(path: str | os.PathLike, image: np.ndarray, *, overwrite: bool = False) -> Path:
    """Write a [0, 1] image as an 8-bit file, atomically (never over an existing file unless asked).

    Examples
    --------
    >>> import tempfile, os, numpy as np
    >>> p = save_image(os.path.join(tempfile.mkdtemp(), "x.png"), np.zeros((4, 4)))
    >>> read_image(p).shape
    (4, 4)
    """
    from skimage import io, util

    data = util.img_as_ubyte(np.clip(np.asarray(image, dtype=np.float64), 0, 1))
    return write_atomic(path, lambda tmp: io.imsave(tmp, data, check_contrast=False), overwrite=overwrite)


def image_psnr(restored: np.ndarray, reference: np.ndarray) -> float:
    """PSNR in dB of ``restored`` against ``reference`` (both in [0, 1], same shape).

    Examples
    --------
    >>> import numpy as np
    >>> round(image_psnr(np.full((4, 4), 0.1), np.zeros((4, 4))), 6)
    20.0
    """
    from .demo import psnr

    if restored.shape != reference.shape:
        raise ValueError(f"reference has shape {reference.shape}, the result {restored.shape}")
    return psnr(np.asarray(restored, np.float64), np.asarray(reference, np.float64))
