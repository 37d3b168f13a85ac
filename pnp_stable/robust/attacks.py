"""Projected gradient descent in l2 (PGD-l2), written with torch alone.

The attack maximises the margin loss ``max_{j != y} z_j - z_y`` inside the l2 ball of radius
``eps`` around each image, intersected with the box ``[0, 1]``; it stops early per image once
that image is misclassified, and reports the adversarial examples it found.  An attack gives
*upper* bounds of robustness (an example it finds is a real one); the certified radius gives
lower bounds.  Both meet in :func:`pgd_l2`'s tests: no attack succeeds inside a certified radius.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["pgd_l2", "margin_loss", "smallest_adversarial_distance"]


def margin_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``max_{j != y} z_j - z_y`` per sample: positive exactly when the sample is misclassified
    (ties aside).

    Examples
    --------
    >>> margin_loss(torch.tensor([[2.0, 0.5, 1.0]]), torch.tensor([0])).tolist()
    [-1.0]
    """
    true = logits.gather(1, labels[:, None]).squeeze(1)
    other = logits.clone()
    other[torch.arange(len(labels)), labels] = -torch.inf
    return other.max(1).values - true


def _batch_norm(v: torch.Tensor) -> torch.Tensor:
    return v.flatten(1).norm(dim=1).clamp_min(1e-12).reshape(-1, *([1] * (v.ndim - 1)))


def pgd_l2(model: nn.Module, x: torch.Tensor, labels: torch.Tensor, eps: float | torch.Tensor, *, steps: int = 50,
           step_size: float | None = None, restarts: int = 1, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """l2 PGD: adversarial examples within ``eps`` of ``x`` (in ``[0, 1]``), per sample.

    Parameters
    ----------
    model : torch.nn.Module
        Returns logits; used in its current mode (call ``eval()`` first).
    x : torch.Tensor
        Images ``(B, C, H, W)`` in ``[0, 1]``; never changed.
    labels : torch.Tensor
        ``(B,)`` true classes.
    eps : float or torch.Tensor
        l2 radius (one per sample if a tensor), ``>= 0``.
    steps, restarts : int
        Iterations per start; random starts (the first from ``x`` itself).
    step_size : float, optional
        Default ``2.5 eps / steps``.
    seed : int
        Random starts.

    Returns
    -------
    (x_adv, success) : torch.Tensor, torch.Tensor
        The worst point found per sample (``x`` where nothing better was found) and whether it
        is misclassified.

    Examples
    --------
    >>> lin = torch.nn.Linear(2, 2, bias=False)
    >>> with torch.no_grad():
    ...     _ = lin.weight.copy_(torch.eye(2))
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), lin)
    >>> x = torch.tensor([[[[0.6, 0.4]]]])
    >>> _, ok = pgd_l2(model, x, torch.tensor([0]), 0.05)
    >>> _, ok2 = pgd_l2(model, x, torch.tensor([0]), 0.5)
    >>> bool(ok), bool(ok2)
    (False, True)
    """
    if x.ndim != 4:
        raise ValueError(f"x must be a batch of images (B, C, H, W); got shape {tuple(x.shape)}")
    if labels.shape != (x.shape[0],):
        raise ValueError(f"labels must have shape ({x.shape[0]},); got {tuple(labels.shape)}")
    eps_t = torch.as_tensor(eps, dtype=x.dtype, device=x.device).reshape(-1)
    if bool((eps_t < 0).any()) or not bool(torch.isfinite(eps_t).all()):
        raise ValueError(f"eps must be finite and >= 0; got {eps!r}")
    eps_t = eps_t.expand(x.shape[0]).reshape(-1, 1, 1, 1)
    alpha = step_size if step_size is not None else None
    gen = torch.Generator(device="cpu").manual_seed(seed)
    x = x.detach()
    best = x.clone()
    best_loss = torch.full((x.shape[0],), -torch.inf, dtype=x.dtype, device=x.device)
    success = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    for r in range(restarts):
        if r == 0:
            delta = torch.zeros_like(x)
        else:
            d = torch.randn(x.shape, generator=gen, dtype=x.dtype).to(x.device)
            u = torch.rand((x.shape[0], 1, 1, 1), generator=gen, dtype=x.dtype).to(x.device)
            delta = d / _batch_norm(d) * eps_t * u
        for _ in range(steps):
            active = ~success
            if not bool(active.any()):
                break
            delta.requires_grad_(True)
            adv = (x + delta).clamp(0, 1)
            loss = margin_loss(model(adv), labels)
            (grad,) = torch.autograd.grad(loss.sum(), delta)
            with torch.no_grad():
                better = loss.detach() > best_loss
                best[better] = adv.detach()[better]
                best_loss = torch.where(better, loss.detach(), best_loss)
                success |= loss.detach() > 0
                size = alpha if alpha is not None else 2.5 * eps_t / steps
                step = size * grad / _batch_norm(grad)
                delta = delta.detach() + step * active.reshape(-1, 1, 1, 1)
                delta = delta * torch.clamp(eps_t / _batch_norm(delta), max=1.0)  # back into the ball
                delta = (x + delta).clamp(0, 1) - x  # and into the box (stays in the ball)
        with torch.no_grad():
            adv = x + delta.detach()
            loss = margin_loss(model(adv), labels)
            better = loss > best_loss
            best[better] = adv[better]
            best_loss = torch.where(better, loss, best_loss)
            success |= loss > 0
    return best, success


def smallest_adversarial_distance(model: nn.Module, x: torch.Tensor, labels: torch.Tensor, *, hi: float = 2.0,
                                  bisections: int = 8, steps: int = 30) -> torch.Tensor:
    """Per sample, the smallest l2 radius at which :func:`pgd_l2` found an adversarial example
    (bisection on the radius, up to ``hi``; ``inf`` where none was found at ``hi``).  An upper
    bound of the true distance to the nearest adversarial example.

    Examples
    --------
    >>> lin = torch.nn.Linear(2, 2, bias=False)
    >>> with torch.no_grad():
    ...     _ = lin.weight.copy_(torch.eye(2))
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), lin)
    >>> d = smallest_adversarial_distance(model, torch.tensor([[[[0.6, 0.4]]]]), torch.tensor([0]), hi=1.0)
    >>> 0.14 < float(d) < 0.16  # exact: 0.2 / sqrt(2)
    True
    """
    lo_r = torch.zeros(x.shape[0], dtype=torch.float64)
    hi_r = torch.full((x.shape[0],), float(hi), dtype=torch.float64)
    _, found = pgd_l2(model, x, labels, hi, steps=steps)
    found = found.cpu()
    for _ in range(bisections):
        mid = (lo_r + hi_r) / 2
        _, ok = pgd_l2(model, x, labels, mid.to(x.dtype).to(x.device), steps=steps)
        ok = ok.cpu()
        hi_r = torch.where(ok, mid, hi_r)
        lo_r = torch.where(ok, lo_r, mid)
    return torch.where(found, hi_r, torch.full_like(hi_r, float("inf")))
