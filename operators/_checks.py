"""Input checks shared by every operator: one place, one wording.

Errors say what came in and what is expected, in the manner of scikit-image's
``_shared/utils.py``.  These checks only look at shapes and dtypes, which is
free; scanning values for NaN/Inf costs a full pass over the data and belongs
at the public API boundary (``deblur``, ``reconstruct``), not in ``A``.
"""

from __future__ import annotations

from typing import Sequence

import torch

__all__ = ["check_image_batch", "as_float_tensor", "check_finite", "check_shape4"]


def check_image_batch(x: torch.Tensor, name: str = "x") -> None:
    """Raise unless ``x`` is a real floating tensor of shape (B, C, H, W).

    Parameters
    ----------
    x : torch.Tensor
        Tensor to check.
    name : str
        Name used in the error message.

    Examples
    --------
    >>> import torch
    >>> check_image_batch(torch.zeros(1, 1, 4, 4))
    >>> check_image_batch(torch.zeros(4, 4))
    Traceback (most recent call last):
    ...
    ValueError: x must have shape (B, C, H, W); got a 2-D tensor of shape (4, 4)
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (B, C, H, W); got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(
            f"{name} must have shape (B, C, H, W); got a {x.ndim}-D tensor of shape {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise TypeError(
            f"{name} must be a floating-point tensor (float32 or float64); got {x.dtype}. "
            "Convert integer images with x.float() / 255."
        )


def check_shape4(shape: Sequence[int], name: str = "in_shape") -> tuple[int, int, int, int]:
    """Return ``shape`` as a 4-tuple of positive ints, or raise a clear error.

    Examples
    --------
    >>> check_shape4((1, 3, 8, 8))
    (1, 3, 8, 8)
    """
    try:
        shape = tuple(int(s) for s in shape)
    except TypeError as exc:
        raise TypeError(f"{name} must be a sequence of 4 ints (B, C, H, W); got {shape!r}") from exc
    if len(shape) != 4 or min(shape) < 1:
        raise ValueError(f"{name} must be 4 positive ints (B, C, H, W); got {shape}")
    return shape  # type: ignore[return-value]


def as_float_tensor(value, name: str, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Convert an array-like of real numbers to a float tensor (a copy; the input is never aliased).

    Examples
    --------
    >>> as_float_tensor([[1, 2]], "mask")
    tensor([[1., 2.]], dtype=torch.float64)
    """
    if isinstance(value, torch.Tensor):
        t = value.detach().clone()
    else:
        try:
            t = torch.as_tensor(value).clone()
        except (TypeError, ValueError, RuntimeError) as exc:
            raise TypeError(f"{name} must be an array of real numbers; got {type(value).__name__}") from exc
    if t.is_complex():
        raise TypeError(f"{name} must be real; got {t.dtype}")
    return t.to(dtype)


def check_finite(t: torch.Tensor, name: str) -> None:
    """Raise ValueError when ``t`` holds NaN or Inf.

    Examples
    --------
    >>> import torch
    >>> check_finite(torch.tensor([1.0, float("nan")]), "kernel")
    Traceback (most recent call last):
    ...
    ValueError: kernel contains NaN or Inf (1 of 2 entries); pass finite values
    """
    bad = ~torch.isfinite(t)
    if bool(bad.any()):
        raise ValueError(f"{name} contains NaN or Inf ({int(bad.sum())} of {t.numel()} entries); pass finite values")
