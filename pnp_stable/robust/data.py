"""Image classification data: a folder of class subfolders (the ImageFolder layout), in memory.

CIFAR-sized sets fit in memory as one uint8 tensor (50,000 32x32 colour images: 150 MB), so
every epoch reads no file; augmentation (random crops with zero padding, horizontal flips)
runs on whole batches in torch, drawn from a generator seeded by the step, so a resumed run
sees exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

__all__ = ["ImageSet", "load_image_folder", "augment"]


@dataclass
class ImageSet:
    """Images ``(N, C, H, W)`` uint8, labels ``(N,)`` int64, class names in label order."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list

    def __len__(self) -> int:
        return len(self.labels)

    def floats(self, index=slice(None)) -> torch.Tensor:
        """Images as float32 in ``[0, 1]``."""
        return self.images[index].float() / 255.0


def load_image_folder(root: str | Path, *, limit_per_class: int | None = None, progress: bool = True) -> ImageSet:
    """Read a folder of class subfolders (``root/<class>/<image>``), sorted by name.

    torchvision's ``ImageFolder`` lists the files (its extensions, its class order); every image
    must have the size and channels of the first.

    Raises
    ------
    FileNotFoundError
        ``root`` does not exist.
    ValueError
        No class folder with images, an image that cannot be read, or images of mixed sizes.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from skimage.io import imsave
    >>> root = Path(tempfile.mkdtemp())
    >>> for c in ("cat", "dog"):
    ...     (root / c).mkdir()
    ...     imsave(root / c / "0.png", np.zeros((4, 4, 3), np.uint8), check_contrast=False)
    >>> data = load_image_folder(root, progress=False)
    >>> data.images.shape, data.labels.tolist(), data.classes
    (torch.Size([2, 3, 4, 4]), [0, 1], ['cat', 'dog'])
    """
    from PIL import Image
    from torchvision.datasets import ImageFolder

    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root}")
    try:
        listing = ImageFolder(str(root), loader=lambda p: p)
    except FileNotFoundError as exc:  # torchvision: no class folder, or a class folder without images
        raise ValueError(f"{root}: expected class subfolders holding images (root/<class>/<image>): {exc}") from None
    samples = listing.samples
    if limit_per_class is not None:
        kept, count = [], {}
        for path, label in samples:
            if count.get(label, 0) < limit_per_class:
                kept.append((path, label))
                count[label] = count.get(label, 0) + 1
        samples = kept
    arrays, labels = [], []
    for path, label in tqdm(samples, desc=f"reading {root.name}", disable=not progress, unit="img"):
        try:
            with Image.open(path) as im:
                arr = np.asarray(im.convert("RGB"))
        except Exception as exc:  # any decoder error: say which file
            raise ValueError(f"cannot read {path} as an image: {exc}") from None
        if arrays and arr.shape != arrays[0].shape:
            raise ValueError(f"{path} is {arr.shape[1]}x{arr.shape[0]}, the first image {arrays[0].shape[1]}x{arrays[0].shape[0]}: "
                             "every image must have the same size")
        arrays.append(arr)
        labels.append(label)
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    return ImageSet(images, torch.tensor(labels, dtype=torch.int64), list(listing.classes))


def augment(x: torch.Tensor, generator: torch.Generator, *, pad: int = 4) -> torch.Tensor:
    """Random crops of the zero-padded images (shift by up to ``pad`` pixels) and horizontal
    flips, per image, from ``generator``.

    Examples
    --------
    >>> x = torch.rand(5, 3, 8, 8)
    >>> augment(x, torch.Generator().manual_seed(0)).shape
    torch.Size([5, 3, 8, 8])
    """
    B, _, H, W = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (B,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (B,), generator=generator)
    flip = torch.rand(B, generator=generator) < 0.5
    rows = (dy[:, None] + torch.arange(H)[None])  # (B, H)
    cols = (dx[:, None] + torch.arange(W)[None])  # (B, W)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    idx_r = rows[:, None, :, None].expand(B, x.shape[1], H, padded.shape[-1])
    out = padded.gather(2, idx_r)
    idx_c = cols[:, None, None, :].expand(B, x.shape[1], H, W)
    return out.gather(3, idx_c)
