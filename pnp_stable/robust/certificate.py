"""Certified Lipschitz bounds of a classifier, certified radii and certified accuracy.

The bound of :class:`~pnp_stable.robust.models.LipschitzClassifier` is a float64 product over
*every* layer as it evaluates (lift, each gradient-flow block at its certified step, each
space-to-depth, each 1x1 convolution, the flattening and the head): nothing is dropped and no
power iteration enters it.  The certified l2 radius of an input whose logits are ``z`` and
whose predicted class is ``y`` is

* the simple form ``(z_y - max_{j != y} z_j) / (sqrt(2) L)``, or
* the per-pair form ``min_{j != y} (z_y - z_j) / (L_body ||w_y - w_j||)``, with ``w`` the head's
  rows and ``L_body`` the bound of everything before the head: ``z_y - z_j`` is
  ``L_body ||w_y - w_j||``-Lipschitz, and ``||w_y - w_j|| <= sqrt(2) ||W||`` makes it the tighter.

No perturbation of l2 norm below the radius changes the prediction.

Layers evaluated to a certified accuracy rather than exactly (equilibrium layers, solved
iteratively) make the computed body differ from the certified map by at most
``evaluation_error``: each layer's error bound times the bound of the layers after it.  Both
the observed input and any perturbed one are evaluated that way, so the radius gives up
``2 evaluation_error / L_body`` (a computed gap ``g`` means an exact gap of at least
``g - ||w_y - w_j|| evaluation_error``, at either point).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from denoisers import GradientFlowBlock

from .layers import _SVD_SLACK

__all__ = ["ClassifierCertificate", "certify_classifier", "certified_radius", "certified_accuracy", "empirical_lipschitz"]


@dataclass
class ClassifierCertificate:
    """Certified l2 Lipschitz bounds of a classifier (float64 upper bounds).

    Attributes
    ----------
    lipschitz_bound : float
        Of the logits map ``x -> z``.
    body_bound : float
        Of everything before the head.
    pair_norms : torch.Tensor
        ``(classes, classes)`` float64 upper bounds of ``||w_i - w_j||`` for the head's rows.
    layers : list of (str, float)
        Each layer's bound, in order.
    evaluation_error : float
        Upper bound of the l2 distance between the computed body output and the certified
        map's (0 when every layer evaluates exactly).
    """

    lipschitz_bound: float
    body_bound: float
    pair_norms: torch.Tensor
    layers: list = field(default_factory=list)
    evaluation_error: float = 0.0


def _block_bound(block: GradientFlowBlock) -> float:
    # At the certified step every Euler sub-step of a margin-1 block satisfies
    # h L ||A||^2 <= 2 r: the step of a cocoercive gradient, non-expansive.
    sched = block.certified_schedule()
    limit = 2 * block.integrator.radius * block.margin
    if block.margin > 1 or sched.step_factor > limit * (1 + 1e-12):
        raise ValueError(f"block step factor {sched.step_factor} exceeds the non-expansive limit {limit}")
    return 1.0


def certify_classifier(model: nn.Module) -> ClassifierCertificate:
    """Certify a :class:`~pnp_stable.robust.models.LipschitzClassifier` (as it evaluates in
    ``eval()`` mode; the model is switched to it and left there).

    Raises
    ------
    TypeError
        The model has a layer without a certified bound (e.g. the unconstrained baseline).

    Examples
    --------
    >>> from pnp_stable.robust import LipschitzClassifier
    >>> cert = certify_classifier(LipschitzClassifier(widths=(8, 16), blocks=(1, 1), image_size=8))
    >>> cert.lipschitz_bound <= 1 + 1e-6, len(cert.layers)
    (True, 7)
    """
    if not hasattr(model, "body") or not hasattr(model, "head") or not hasattr(model.head, "effective_weight"):
        raise TypeError(f"{type(model).__name__} has no certified head: only LipschitzClassifier-like models certify")
    model.eval()
    layers, errors = [], []
    with torch.no_grad():
        for i, layer in enumerate(model.body):
            if isinstance(layer, GradientFlowBlock):
                bound = _block_bound(layer)
            elif hasattr(layer, "lipschitz_bound"):
                bound = float(layer.lipschitz_bound())
            else:
                raise TypeError(f"layer {i} ({type(layer).__name__}) has no certified Lipschitz bound")
            layers.append((f"{i}:{type(layer).__name__}", bound))
            errors.append(float(layer.evaluation_error_bound()) if hasattr(layer, "evaluation_error_bound") else 0.0)
        body = math.prod(b for _, b in layers)
        # An error made at layer k reaches the body's output through the layers after it.
        bounds = [b for _, b in layers]
        evaluation_error = sum(e * math.prod(bounds[k + 1:]) for k, e in enumerate(errors)) * (1 + 1e-12)
        W = model.head.effective_weight().detach().to("cpu", torch.float64)
        head = model.head.lipschitz_bound()
        diffs = W[:, None, :] - W[None, :, :]
        pair = torch.linalg.vector_norm(diffs, dim=-1) * (1 + _SVD_SLACK)
    layers.append(("head:NormBoundedLinear", head))
    return ClassifierCertificate(lipschitz_bound=body * head, body_bound=body, pair_norms=pair, layers=layers,
                                 evaluation_error=evaluation_error)


def certified_radius(logits: torch.Tensor, certificate: ClassifierCertificate, *, per_pair: bool = True) -> torch.Tensor:
    """Certified l2 radius of each prediction (float64, per sample; 0 where the top two tie).

    Examples
    --------
    >>> cert = ClassifierCertificate(1.0, 1.0, torch.full((2, 2), 2 ** 0.5, dtype=torch.float64).fill_diagonal_(0))
    >>> certified_radius(torch.tensor([[1.0, 0.0]]), cert).tolist()
    [0.7071067811865475]
    """
    z = logits.detach().to("cpu", torch.float64)
    pred = z.argmax(1)
    top = z.gather(1, pred[:, None])
    gaps = top - z  # (B, classes), >= 0
    if per_pair:
        norms = certificate.pair_norms[pred]  # (B, classes): ||w_y - w_j||
        ratio = gaps / (certificate.body_bound * norms)
        ratio[torch.arange(z.shape[0]), pred] = math.inf
        radius = ratio.min(1).values
    else:
        gaps[torch.arange(z.shape[0]), pred] = math.inf
        radius = gaps.min(1).values / (math.sqrt(2) * certificate.lipschitz_bound)
    if certificate.evaluation_error:
        radius = radius - 2 * certificate.evaluation_error / certificate.body_bound
    return radius.clamp_min(0.0)


def certified_accuracy(radius: torch.Tensor, correct: torch.Tensor, eps: float) -> float:
    """Share of samples predicted correctly with a certified radius above ``eps``.

    Examples
    --------
    >>> certified_accuracy(torch.tensor([0.5, 0.1, 0.9]), torch.tensor([True, True, False]), 0.2)
    0.3333333333333333
    """
    ok = correct.to("cpu").bool() & (radius.to("cpu") > eps)
    return float(ok.double().mean())


def empirical_lipschitz(model: nn.Module, x: torch.Tensor, *, steps: int = 20, seed: int = 0) -> float:
    """A lower bound (an *estimate* of the constant, never a certificate): the largest Jacobian
    norm of the logits found by power iteration on ``J^T J`` at the inputs ``x``.

    Examples
    --------
    >>> from pnp_stable.robust import LipschitzClassifier
    >>> net = LipschitzClassifier(widths=(8, 16), blocks=(1, 1), image_size=8).eval()
    >>> 0 < empirical_lipschitz(net, torch.rand(2, 3, 8, 8), steps=5) <= certify_classifier(net).lipschitz_bound
    True
    """
    model.eval()
    with torch.no_grad():
        model(x[:1])  # fills the layers' certified-norm caches outside the function transforms
    # Equilibrium layers solve iteratively (outside autograd, with a backward hook): forward-mode
    # cannot pass them, so J v is a central difference there and J^T u comes from autograd.
    solves = any(hasattr(m, "evaluation_error_bound") for m in model.modules())
    jvp, vjp = (_difference_jvp, _autograd_vjp) if solves else (_functional_jvp, _functional_vjp)
    gen = torch.Generator().manual_seed(seed)
    best = 0.0
    for xi in x:
        xi = xi[None].detach()
        v = torch.randn(xi.shape, generator=gen, dtype=xi.dtype).to(xi.device)
        v = v / v.norm()
        for _ in range(steps):
            w = vjp(model, xi, jvp(model, xi, v))  # J^T J v
            sigma = float(w.detach().norm()) ** 0.5
            v = w / w.norm().clamp_min(1e-30)
        best = max(best, float(jvp(model, xi, v).detach().norm()), sigma if steps else 0.0)
    return best


def _functional_jvp(model, x, v):
    return torch.func.jvp(model, (x,), (v,))[1]


def _functional_vjp(model, x, u):
    return torch.func.vjp(model, x)[1](u)[0]


def _difference_jvp(model, x, v, h: float = 1e-2):
    with torch.no_grad():
        return (model(x + h * v) - model(x - h * v)) / (2 * h)


def _autograd_vjp(model, x, u):
    x = x.detach().requires_grad_(True)
    return torch.autograd.grad(model(x), x, u)[0]
