"""The shipped certified classifiers, loadable by name.

Each file carries its training record; loading re-derives the float64 certificate from the
weights and refuses the file if it no longer matches (:func:`~pnp_stable.robust.training.load_classifier`).
How each was made: training/README.md; how it measures: benchmarks/RESULTS.md, "robust-cifar10".
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["SHIPPED_CLASSIFIERS", "shipped_classifier_path", "load_pretrained_classifier"]

_HERE = Path(__file__).resolve().parent / "shipped"

#: Name -> one line saying what it is.
SHIPPED_CLASSIFIERS = {
    "cifar10-flow-w16": "CIFAR-10, gradient-flow blocks (widths 16/32/64, 3 blocks per stage, 0.4M parameters), "
                        "Lipschitz <= 1 certified; 20 epochs, 3.2 CPU-hours",
}


def shipped_classifier_path(name: str) -> Path:
    """The file of a shipped classifier.

    Examples
    --------
    >>> shipped_classifier_path("cifar10-flow-w16").name
    'cifar10-flow-w16.pt'
    >>> shipped_classifier_path("resnet")
    Traceback (most recent call last):
    ...
    ValueError: no shipped classifier 'resnet'; shipped: cifar10-flow-w16
    """
    if name not in SHIPPED_CLASSIFIERS:
        raise ValueError(f"no shipped classifier {name!r}; shipped: {', '.join(SHIPPED_CLASSIFIERS)}")
    return _HERE / f"{name}.pt"


def load_pretrained_classifier(name: str = "cifar10-flow-w16"):
    """Load a shipped classifier (certificate re-derived and checked; ``.record`` has its training record).

    Examples
    --------
    >>> import torch
    >>> net = load_pretrained_classifier()
    >>> net(torch.rand(1, 3, 32, 32)).shape, net.record["classes"][:2]
    (torch.Size([1, 10]), ['airplane', 'automobile'])
    """
    from .training import load_classifier

    return load_classifier(shipped_classifier_path(name))
