"""Certified-robust image classification with the toolbox's certified layers (issue #29).

* :class:`LipschitzClassifier`: gradient-flow blocks, isometric downsampling, norm-bounded
  channel mixing and head; :class:`PlainClassifier`: the same layout without constraints.
* :func:`certify_classifier`: the float64 product of every layer's certified bound;
  :func:`certified_radius`, :func:`certified_accuracy`; :func:`empirical_lipschitz` (an estimate).
* :func:`load_pretrained_classifier`: the shipped certified CIFAR-10 classifier.
* :func:`pgd_l2`: the l2 PGD attack (torch only); :func:`smallest_adversarial_distance`.

Imports ``denoisers`` (the blocks); nothing imports it but ``pnp_stable``'s command line.
"""

from .attacks import margin_loss, pgd_l2, smallest_adversarial_distance
from .certificate import ClassifierCertificate, certified_accuracy, certified_radius, certify_classifier, empirical_lipschitz
from .layers import ChannelLift, EquilibriumLayer, Flatten, NormBoundedConv1x1, NormBoundedLinear, PixelUnshuffle, matrix_norm_bound
from .models import CIFAR10_MEAN, LipschitzClassifier, PlainClassifier
from .pretrained import SHIPPED_CLASSIFIERS, load_pretrained_classifier

__all__ = ["LipschitzClassifier", "PlainClassifier", "CIFAR10_MEAN", "ClassifierCertificate", "certify_classifier", "certified_radius",
           "certified_accuracy", "empirical_lipschitz", "pgd_l2", "margin_loss", "smallest_adversarial_distance", "ChannelLift",
           "PixelUnshuffle", "NormBoundedConv1x1", "NormBoundedLinear", "Flatten", "matrix_norm_bound", "EquilibriumLayer",
           "load_pretrained_classifier", "SHIPPED_CLASSIFIERS"]
