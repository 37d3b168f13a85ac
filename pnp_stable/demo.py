"""The main job: blur a bundled photograph, restore it, and write a figure with the numbers.

Until the certified denoisers ship (issue #3/#5) the restoration is the classical
Tikhonov baseline of :mod:`pnp_stable.classical`; it stays as the reference afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from operators import Blur, kernels
from operators.noise import Gaussian

from .classical import tikhonov_deblur
from .io import load_image, write_atomic

__all__ = ["DemoResult", "run_demo", "psnr"]


def psnr(estimate: np.ndarray, truth: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB for images in [0, 1] (via scikit-image).

    Examples
    --------
    >>> import numpy as np
    >>> round(psnr(np.full((4, 4), 0.1), np.zeros((4, 4))), 2)
    20.0
    """
    from skimage.metrics import peak_signal_noise_ratio

    return float(peak_signal_noise_ratio(truth, estimate, data_range=1.0))


@dataclass(frozen=True)
class DemoResult:
    """Numbers of one demo run: PSNRs in dB, the Tikhonov weight, the figure path."""

    psnr_blurred: float
    psnr_restored: float
    weight: float
    figure: Path


def _to_batch(img: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(img))
    return t[None, None] if t.ndim == 2 else t.permute(2, 0, 1)[None]


def _to_image(t: torch.Tensor) -> np.ndarray:
    a = t[0].detach().cpu().numpy()
    return a[0] if a.shape[0] == 1 else np.transpose(a, (1, 2, 0))


def run_demo(
    output: str | Path = "deblur_demo.png",
    *,
    image: str = "camera",
    kernel: str = "levin:1",
    noise: float = 0.01,
    seed: int = 0,
    overwrite: bool = False,
) -> DemoResult:
    """Blur ``image`` with ``kernel``, add Gaussian noise, restore it, save a figure.

    Parameters
    ----------
    output : path
        Figure file (png, pdf, svg...), written atomically.
    image : str
        A bundled scikit-image name (see :data:`pnp_stable.io.BUNDLED_IMAGES`) or a path.
    kernel : str
        Kernel spec (see :func:`operators.kernels.parse`).
    noise : float
        Noise standard deviation on the [0, 1] scale.
    seed : int
        Seed of the noise.
    overwrite : bool
        Replace an existing ``output``.

    Examples
    --------
    >>> import tempfile, os
    >>> out = os.path.join(tempfile.mkdtemp(), "demo.png")
    >>> r = run_demo(out, image="camera", kernel="gaussian:1.6", noise=0.01)
    >>> r.psnr_restored > r.psnr_blurred
    True
    """
    truth = load_image(image)
    op = Blur(kernels.parse(kernel), boundary="circular", noise_model=Gaussian(noise, rng=torch.Generator().manual_seed(seed)))
    x = _to_batch(truth)
    y = op(x, seed=seed)
    res = tikhonov_deblur(y, op, noise_level=noise)
    blurred, restored = _to_image(y), _to_image(res.x)
    result_psnr = (psnr(np.clip(blurred, 0, 1), truth), psnr(np.clip(restored, 0, 1), truth))

    def draw(path: str) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        cmap = "gray" if truth.ndim == 2 else None
        fig, axes = plt.subplots(1, 3, figsize=(12, 4.4), constrained_layout=True)
        panels = (
            (blurred, f"blurred + noise {noise:g}\nPSNR {result_psnr[0]:.2f} dB"),
            (restored, f"Tikhonov (discrepancy principle)\nPSNR {result_psnr[1]:.2f} dB"),
            (truth, "ground truth"),
        )
        for ax, (img, title) in zip(axes, panels):
            ax.imshow(np.clip(img, 0, 1), cmap=cmap, vmin=0, vmax=1)
            ax.set_title(title)
            ax.axis("off")
        inset = axes[0].inset_axes((0.0, 0.0, 0.25, 0.25))
        inset.imshow(op.kernel.numpy(), cmap="magma")
        inset.set_xticks([])
        inset.set_yticks([])
        inset.set_title(kernel, fontsize=8, color="white", y=0.98, pad=-10)
        fig.suptitle(f"pnp-stable demo: {image}, kernel {kernel}")
        fig.savefig(path, dpi=100)
        plt.close(fig)

    path = write_atomic(output, draw, overwrite=overwrite)
    return DemoResult(result_psnr[0], result_psnr[1], float(res.weight[0]), path)
