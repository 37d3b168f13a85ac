"""Certified-robust classifiers: certificates against measurements, radii against attacks."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pnp_stable.robust import (LipschitzClassifier, NormBoundedConv1x1, NormBoundedLinear, PixelUnshuffle, PlainClassifier,
                               certified_accuracy, certified_radius, certify_classifier, empirical_lipschitz, matrix_norm_bound,
                               pgd_l2)


def _stiff_model(seed: int) -> LipschitzClassifier:
    """A small classifier whose constraints bind: every free weight inflated well past norm 1."""
    torch.manual_seed(seed)
    net = LipschitzClassifier(widths=(4, 8), blocks=(1, 1), image_size=8)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("weight"):
                p.mul_(4.0)
            elif name.endswith("bias"):
                p.normal_(0, 0.3)
    return net.eval()


@settings(max_examples=4, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_certified_bound_is_above_every_measured_amplification(seed):
    net = _stiff_model(seed)
    cert = certify_classifier(net)
    assert cert.lipschitz_bound == pytest.approx(math.prod(b for _, b in cert.layers))
    x = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(seed))
    assert empirical_lipschitz(net, x[:2], steps=10) <= cert.lipschitz_bound
    y = (x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(seed + 1))).clamp(0, 1)
    with torch.no_grad():
        ratio = (net(x) - net(y)).norm(dim=1) / (x - y).flatten(1).norm(dim=1)
    assert float(ratio.max()) <= cert.lipschitz_bound
    # The head's pair norms really bound the row differences.
    W = net.head.effective_weight().double()
    assert bool(((W[:, None] - W[None]).norm(dim=-1) <= cert.pair_norms).all())


def test_no_attack_succeeds_inside_a_certified_radius_and_attacks_never_beat_the_certificate():
    net = _stiff_model(3)
    cert = certify_classifier(net)
    x = torch.rand(16, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = net(x)
    labels = logits.argmax(1)  # the model's own predictions: every sample starts correct
    radius = certified_radius(logits, cert)
    simple = certified_radius(logits, cert, per_pair=False)
    assert bool((radius >= simple - 1e-12).all()) and bool((radius > 0).all())
    _, inside = pgd_l2(net, x, labels, (0.999 * radius).float(), steps=40, restarts=2)
    assert not bool(inside.any())
    for eps in (float(radius.median()), float(radius.max()), 3 * float(radius.max())):
        _, broken = pgd_l2(net, x, labels, eps, steps=40)
        attacked_accuracy = float((~broken).double().mean())
        assert attacked_accuracy >= certified_accuracy(radius, torch.ones(16, dtype=torch.bool), eps)


def test_attack_finds_what_a_linear_model_makes_certain():
    # Two-class linear model z = (x0 - x1, x1 - x0): the distance to the boundary is |x0 - x1| / sqrt(2).
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[1.0, -1.0], [-1.0, 1.0]]))
    x = torch.tensor([[[[0.7, 0.3]]], [[[0.45, 0.55]]]])
    labels = torch.tensor([0, 1])
    exact = torch.tensor([0.4, 0.1]) / math.sqrt(2)
    _, below = pgd_l2(model, x, labels, 0.98 * exact)
    _, above = pgd_l2(model, x, labels, 1.02 * exact)
    assert not bool(below.any()) and bool(above.all())
    assert torch.equal(x, torch.tensor([[[[0.7, 0.3]]], [[[0.45, 0.55]]]]))  # the input is never changed


def test_layers_are_what_their_bounds_say():
    x = torch.randn(3, 5, 6, 4)
    assert torch.isclose(PixelUnshuffle(2)(x).norm(), x.norm())
    conv = NormBoundedConv1x1(5, 7)
    lin = NormBoundedLinear(9, 4)
    with torch.no_grad():
        conv.weight.mul_(10)
        lin.weight.mul_(0.1)  # below norm 1: left alone
    assert conv.lipschitz_bound() <= 1 + 1e-6
    assert lin.lipschitz_bound() == pytest.approx(float(torch.linalg.matrix_norm(lin.weight.detach().double(), 2)), rel=1e-6)
    A = torch.randn(7, 5, dtype=torch.float64)
    assert matrix_norm_bound(A) >= float(torch.linalg.svdvals(A)[0])
    # The 1x1 convolution's norm over images is its matrix's: the top right singular vector at one pixel attains it.
    w = conv.effective_weight().detach().double()
    v = torch.linalg.svd(w).Vh[0]
    img = torch.zeros(1, 5, 3, 3, dtype=torch.float64)
    img[0, :, 1, 1] = v
    out = torch.nn.functional.conv2d(img, w[:, :, None, None])
    assert float(out.norm()) == pytest.approx(float(torch.linalg.svdvals(w)[0]), rel=1e-9)


def test_unconstrained_baseline_has_no_certificate_and_bad_input_is_refused():
    plain = PlainClassifier(widths=(4, 8), blocks=(1, 1), image_size=8)
    assert plain(torch.rand(2, 3, 8, 8)).shape == (2, 10)
    n_plain = sum(p.numel() for p in plain.parameters())
    n_cert = sum(p.numel() for p in LipschitzClassifier(widths=(4, 8), blocks=(1, 1), image_size=8).parameters())
    assert 0.5 < n_plain / n_cert < 2  # the same size, give or take the block parametrisation
    with pytest.raises(TypeError, match="no certified head"):
        certify_classifier(plain)
    net = LipschitzClassifier(widths=(4, 8), blocks=(1, 1), image_size=8).eval()
    with pytest.raises(ValueError, match="expected images"):
        net(torch.rand(2, 1, 8, 8))
    with pytest.raises(ValueError, match="divisible"):
        LipschitzClassifier(widths=(4, 8, 16), blocks=(1, 1, 1), image_size=6)
    with pytest.raises(ValueError, match="at least the input channels"):
        LipschitzClassifier(widths=(2, 8), blocks=(1, 1), image_size=8)
    with pytest.raises(ValueError, match="eps must be"):
        pgd_l2(net, torch.rand(2, 3, 8, 8), torch.tensor([0, 1]), -0.1)
    with pytest.raises(ValueError, match="labels must have shape"):
        pgd_l2(net, torch.rand(2, 3, 8, 8), torch.tensor([0]), 0.1)


def test_empty_batches_pass_through():
    net = LipschitzClassifier(widths=(4, 8), blocks=(1, 1), image_size=8).eval()
    with torch.no_grad():
        assert net(torch.rand(0, 3, 8, 8)).shape == (0, 10)


def _stiff_lben(seed: int) -> LipschitzClassifier:
    torch.manual_seed(seed)
    net = LipschitzClassifier(widths=(4, 8), blocks=(1, 1), image_size=8, block="lben", lben_atol=1e-3)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith(("weight", ".U", ".V", ".Wo", ".S")):
                p.mul_(3.0)
            elif "bias" in name:
                p.normal_(0, 0.3)
    return net.eval()


def test_equilibrium_classifier_certificate_holds_against_measurements_and_attacks():
    net = _stiff_lben(5)
    cert = certify_classifier(net)
    assert [b for _, b in cert.layers] and cert.lipschitz_bound <= 1 + 1e-6
    # Two equilibrium layers, each evaluated within 1e-3 of its exact map, reach the body's output
    # through non-expansive layers: at most 2e-3 there.
    assert 0 < cert.evaluation_error <= 2e-3 * (1 + 1e-6)
    x = torch.rand(8, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    y = (x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(2))).clamp(0, 1)
    with torch.no_grad():
        lx, ly = net(x), net(y)
    # computed outputs: within the Lipschitz bound, up to twice the evaluation error through the head
    slack = 2 * cert.evaluation_error * net.head.lipschitz_bound()
    assert bool(((lx - ly).norm(dim=1) <= cert.lipschitz_bound * (x - y).flatten(1).norm(dim=1) + slack).all())
    assert empirical_lipschitz(net, x[:1], steps=4) <= cert.lipschitz_bound * 1.05  # a difference-quotient estimate
    labels = lx.argmax(1)
    radius = certified_radius(lx, cert)
    exact_form = certified_radius(lx, dataclasses.replace(cert, evaluation_error=0.0))
    assert bool((radius <= exact_form).all()) and float((exact_form - radius).max()) <= 2 * cert.evaluation_error / cert.body_bound + 1e-12
    keep = radius > 0
    _, inside = pgd_l2(net, x[keep], labels[keep], (0.999 * radius[keep]).float(), steps=15)
    assert not bool(inside.any())


def test_equilibrium_classifier_trains_saves_and_reloads(tmp_path):
    from pnp_stable.robust.training import load_classifier, save_classifier

    net = LipschitzClassifier(widths=(4, 8), blocks=(1, 1), image_size=8, block="lben")
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    x, labels = torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
    before = net.body[1].net.U.detach().clone()
    loss = torch.nn.functional.cross_entropy(net.train()(x), labels)
    loss.backward()
    opt.step()
    assert not torch.equal(before, net.body[1].net.U)  # the implicit gradient reached the equilibrium weights
    save_classifier(net.eval(), tmp_path / "c.pt", name="lben", metadata={})
    again = load_classifier(tmp_path / "c.pt")
    assert again.config["block"] == "lben"
    with torch.no_grad():
        torch.testing.assert_close(again(x), net(x), atol=1e-3, rtol=0)
    with pytest.raises(ValueError, match="block must be"):
        LipschitzClassifier(widths=(4, 8), blocks=(1, 1), image_size=8, block="mlp")


def test_shipped_classifier_loads_with_its_certificate_and_record():
    from pnp_stable.robust import SHIPPED_CLASSIFIERS, load_pretrained_classifier
    from pnp_stable.robust.training import load_classifier

    assert "cifar10-flow-w16" in SHIPPED_CLASSIFIERS
    net = load_pretrained_classifier("cifar10-flow-w16")
    cert = certify_classifier(net)
    assert cert.lipschitz_bound <= 1 + 1e-5 and cert.evaluation_error == 0.0  # 1, up to the rounding allowances
    rec = net.record
    assert rec["steps_done"] == rec["training_config"]["epochs"] * 382 and len(rec["classes"]) == 10
    assert rec["training_wall_time_s"] > 0 and rec["validation"]["clean_accuracy"] > 0.5
    assert load_classifier("cifar10-flow-w16").config == net.config  # by name, as robust-eval takes it
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = net(x)
    radius = certified_radius(logits, cert)
    _, inside = pgd_l2(net, x, logits.argmax(1), (0.999 * radius).float().clamp_min(1e-6), steps=10)
    assert not bool(inside.any())
