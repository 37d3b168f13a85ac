"""Reading images and writing outputs safely (atomically, never overwriting unasked)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from operators._io import check_output_path, write_atomic

__all__ = ["load_image", "BUNDLED_IMAGES", "write_atomic", "write_json", "check_output_path"]

#: Images that scikit-image ships (no network needed), usable by name.
BUNDLED_IMAGES = ("camera", "astronaut", "coffee", "chelsea", "moon", "brick", "grass", "gravel", "text", "coins", "clock", "rocket")


def load_image(source: str | os.PathLike) -> np.ndarray:
    """Read an image file, or a bundled scikit-image picture by name, as floats in [0, 1].

    Parameters
    ----------
    source : str or path
        A path to png/jpg/tif/bmp, or one of :data:`BUNDLED_IMAGES`.

    Returns
    -------
    numpy.ndarray
        float64, shape (H, W) for gray or (H, W, 3) for colour (alpha dropped).

    Raises
    ------
    FileNotFoundError
        If the path does not exist.
    ValueError
        If the file is not a readable image.

    Examples
    --------
    >>> load_image("camera").shape
    (512, 512)
    """
    from skimage import data, io, util

    name = os.fspath(source)
    if name in BUNDLED_IMAGES and not Path(name).exists():
        img = getattr(data, name)()
    else:
        path = Path(name)
        if not path.is_file():
            raise FileNotFoundError(f"image not found: {path} (or use a bundled image: {', '.join(BUNDLED_IMAGES)})")
        try:
            img = io.imread(path)
        except Exception as exc:  # imageio/PIL raise many types for non-images
            raise ValueError(f"{path} is not a readable image ({type(exc).__name__}: {exc})") from None
    img = np.asarray(img)
    if img.ndim == 3 and img.shape[-1] == 4:
        img = img[..., :3]
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[-1] != 3) or img.dtype.kind not in "uif" or img.size == 0:
        raise ValueError(f"{name} is not a gray or RGB image (array of shape {img.shape}, dtype {img.dtype})")
    return util.img_as_float64(img) if img.dtype.kind in "ui" else np.clip(img.astype(np.float64), 0, 1)


def write_json(path: str | os.PathLike, payload: dict, *, overwrite: bool = False) -> Path:
    """Write ``payload`` as indented JSON, atomically (never over an existing file unless asked).

    Examples
    --------
    >>> import tempfile
    >>> p = write_json(Path(tempfile.mkdtemp()) / "r.json", {"a": 1})
    >>> json.loads(p.read_text())
    {'a': 1}
    """
    text = json.dumps(payload, indent=1)
    return write_atomic(path, lambda tmp: Path(tmp).write_text(text), overwrite=overwrite)
