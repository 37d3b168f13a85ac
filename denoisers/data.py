"""Training data: image folders, random patches with flips and rotations, Gaussian noise.

Every batch is a pure function of ``(seed, step)``, so a resumed run draws exactly the batches
the uninterrupted run would have drawn, with no generator state to save.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = ["IMAGE_SUFFIXES", "ImageFolder", "PatchSampler", "NoiseSpec"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def _to_channels(img: np.ndarray, channels: int, name: str) -> np.ndarray:
    """uint8 (H, W, channels) from a gray or RGB(A) uint8 image."""
    from skimage.color import rgb2gray

    if img.ndim == 3 and img.shape[-1] == 4:
        img = img[..., :3]
    if img.ndim == 2:
        if channels == 3:
            raise ValueError(f"{name} is gray but the model takes colour (3-channel) images; use channels=1")
        return img[..., None]
    if img.ndim == 3 and img.shape[-1] == 3:
        if channels == 1:
            return np.round(rgb2gray(img) * 255).astype(np.uint8)[..., None]
        return img
    raise ValueError(f"{name} is not a gray or RGB image (shape {img.shape})")


class ImageFolder:
    """All images of a folder, loaded once as uint8 arrays of shape (H, W, channels).

    Parameters
    ----------
    folder : path
        Folder with png/jpg/tif/bmp files (not recursive).
    channels : int
        1 (colour images are converted to gray) or 3.
    min_size : int
        Smallest accepted side (images must hold a patch).
    limit : int, optional
        Use only the first ``limit`` files (sorted by name).

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from skimage import io
    >>> d = tempfile.mkdtemp(); io.imsave(d + "/a.png", np.zeros((40, 50), np.uint8), check_contrast=False)
    >>> ImageFolder(d, channels=1).images[0].shape
    (40, 50, 1)
    """

    def __init__(self, folder: str | Path, channels: int, *, min_size: int = 1, limit: int | None = None):
        from skimage import io

        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"image folder not found: {folder}")
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3; got {channels}")
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if limit is not None:
            files = files[:limit]
        if not files:
            raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
        self.folder, self.files, self.images = folder, files, []
        for p in files:
            try:
                img = io.imread(p)
            except Exception as exc:  # many reader exception types
                raise ValueError(f"{p} is not a readable image ({type(exc).__name__})") from None
            if img.dtype != np.uint8:
                raise ValueError(f"{p}: expected 8-bit images, got {img.dtype}")
            img = _to_channels(img, channels, str(p))
            if min(img.shape[:2]) < min_size:
                raise ValueError(f"{p} ({img.shape[0]}x{img.shape[1]}) is smaller than the patch size {min_size}")
            self.images.append(np.ascontiguousarray(img))

    def __len__(self) -> int:
        return len(self.images)


@dataclass(frozen=True)
class NoiseSpec:
    """Gaussian noise level of training pairs: fixed (``low == high``) or uniform in a range.

    Levels are on the [0, 1] scale (``25 / 255`` for "noise 25").

    Examples
    --------
    >>> NoiseSpec(25 / 255).high == 25 / 255
    True
    """

    low: float
    high: float | None = None

    def __post_init__(self):
        high = self.low if self.high is None else self.high
        object.__setattr__(self, "high", high)
        if not (0 <= self.low <= high) or not np.isfinite(high):
            raise ValueError(f"noise levels must satisfy 0 <= low <= high < inf; got {self.low!r}, {self.high!r}")


class PatchSampler:
    """Deterministic random patches: ``batch(step)`` depends only on ``seed`` and ``step``.

    Each patch comes from a random image at a random position, with one of the 8
    flip/rotation symmetries, and gets Gaussian noise of a level drawn from ``noise``.

    Parameters
    ----------
    data : ImageFolder
    patch : int
        Patch side.
    batch_size : int
    noise : NoiseSpec
    seed : int

    Examples
    --------
    >>> import numpy as np
    >>> class Fake: images = [np.zeros((20, 20, 1), np.uint8)]
    >>> s = PatchSampler(Fake(), patch=8, batch_size=2, noise=NoiseSpec(0.1), seed=0)
    >>> clean, noisy, sigma = s.batch(5)
    >>> clean.shape, bool(torch.equal(noisy, s.batch(5)[1]))
    (torch.Size([2, 1, 8, 8]), True)
    """

    def __init__(self, data: ImageFolder, *, patch: int, batch_size: int, noise: NoiseSpec, seed: int = 0):
        if patch < 1 or batch_size < 1:
            raise ValueError(f"patch and batch_size must be positive; got {patch}, {batch_size}")
        small = [i for i, im in enumerate(data.images) if min(im.shape[:2]) < patch]
        if small:
            raise ValueError(f"{len(small)} image(s) are smaller than the patch size {patch}")
        self.data, self.patch, self.batch_size, self.noise, self.seed = data, patch, batch_size, noise, seed

    def generator(self, step: int) -> torch.Generator:
        # A distinct, reproducible stream per (seed, step).
        return torch.Generator().manual_seed((self.seed * 1_000_003 + step) % (2**63 - 1))

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Clean patches, noisy patches (B, C, P, P) float32 in [0, 1] plus noise, and the levels (B,)."""
        g = self.generator(step)
        P, B = self.patch, self.batch_size
        idx = torch.randint(len(self.data.images), (B,), generator=g).tolist()
        out = []
        for i in idx:
            img = self.data.images[i]
            r = int(torch.randint(img.shape[0] - P + 1, (1,), generator=g))
            c = int(torch.randint(img.shape[1] - P + 1, (1,), generator=g))
            t = torch.from_numpy(img[r : r + P, c : c + P]).permute(2, 0, 1)
            sym = int(torch.randint(8, (1,), generator=g))
            t = torch.rot90(t, sym % 4, dims=(1, 2))
            if sym >= 4:
                t = t.flip(2)
            out.append(t)
        clean = torch.stack(out).float() / 255.0
        sigma = self.noise.low + (self.noise.high - self.noise.low) * torch.rand(B, generator=g)
        noisy = clean + sigma.view(B, 1, 1, 1) * torch.randn(clean.shape, generator=g)
        return clean, noisy, sigma
