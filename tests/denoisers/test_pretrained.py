"""The shipped certified denoisers: records, verified loading, copies, failure modes, quality."""

from __future__ import annotations

import numpy as np
import pytest
import torch


from denoisers import ChannelwiseDenoiser, GradientFlowNet, AveragedDenoiser, available_pretrained, default_pretrained, load_pretrained
from denoisers import pretrained as pretrained_mod
from denoisers.certificate import certify
from denoisers.weights import WeightsError

NAME = "gray-averaged-s25"


def test_every_shipped_model_has_a_certificate_and_a_training_record():
    infos = available_pretrained()
    assert NAME in infos
    for name, info in infos.items():
        assert info.alpha < 1 and info.lipschitz_bound <= 1 + 1e-12, name
        # Per-level models carry a strength table; noise-conditioned ones were trained over a range.
        assert info.steps > 0 and info.training_minutes > 0 and (info.strength_calibrated or isinstance(info.sigma_train, tuple))
        rec = torch.load(pretrained_mod.pretrained_path(name), weights_only=True)
        cfg = rec["metadata"]["training_config"]
        assert "test" not in str(cfg["train_dir"]).split("/")  # never trained on a test folder
        assert cfg["channels"] == info.channels


def test_load_verifies_and_returns_private_copies():
    a = load_pretrained(NAME)
    b = load_pretrained(NAME)
    assert a is not b and not a.training
    with torch.no_grad():
        a.net.blocks[0].bias.add_(1.0)
    assert not torch.equal(a.net.blocks[0].bias, b.net.blocks[0].bias)
    assert torch.equal(load_pretrained(NAME).net.blocks[0].bias, b.net.blocks[0].bias)


def test_target_alpha_and_dtype():
    d = load_pretrained(NAME, target_alpha=0.5)
    assert d.certified_alpha() <= 0.5
    d64 = load_pretrained(NAME, dtype=torch.float64)
    x = torch.rand(1, 1, 24, 24, dtype=torch.float64)
    torch.testing.assert_close(d64(x, 0.05).float(), load_pretrained(NAME)(x.float(), 0.05), rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="target_alpha"):
        load_pretrained(NAME, target_alpha=1.5)
    with pytest.raises(ValueError, match="dtype"):
        load_pretrained(NAME, dtype=torch.float16)


def test_unknown_missing_and_corrupt_files(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="no shipped model named 'unet'; available: .*gray-averaged-s25"):
        load_pretrained("unet")
    monkeypatch.setattr(pretrained_mod, "SHIPPED_DIR", tmp_path)
    pretrained_mod._verified.cache_clear()
    try:
        with pytest.raises(FileNotFoundError, match="weights file not found"):
            load_pretrained(NAME)
        with pytest.raises(FileNotFoundError, match="missing from the installation"):
            available_pretrained()
        (tmp_path / f"{NAME}.pt").write_bytes(b"not torch")
        with pytest.raises(WeightsError, match="corrupt"):
            load_pretrained(NAME)
    finally:
        pretrained_mod._verified.cache_clear()


def test_tampered_shipped_file_is_refused(tmp_path, monkeypatch):
    src = pretrained_mod.pretrained_path(NAME)
    rec = torch.load(src, weights_only=True)
    rec["state"]["net.blocks.3.weight"].mul_(1.01)  # changes the weights behind the checksum's back
    torch.save(rec, tmp_path / f"{NAME}.pt")
    monkeypatch.setattr(pretrained_mod, "SHIPPED_DIR", tmp_path)
    pretrained_mod._verified.cache_clear()
    try:
        with pytest.raises(WeightsError, match="checksum"):
            load_pretrained(NAME)
    finally:
        pretrained_mod._verified.cache_clear()
    assert src.is_file()  # the shipped file itself is untouched


def test_shipped_model_denoises_and_is_non_expansive_on_pairs():
    from skimage import data, transform

    truth = torch.from_numpy(transform.resize(data.camera() / 255.0, (96, 96), anti_aliasing=True)).float()[None, None]
    g = torch.Generator().manual_seed(0)
    sigma = 25 / 255
    y = truth + sigma * torch.randn(truth.shape, generator=g)
    d = load_pretrained(NAME)
    with torch.no_grad():
        out = d(y, sigma)
    gain = 10 * torch.log10(((y - truth) ** 2).mean() / ((out - truth) ** 2).mean())
    assert float(gain) > 5.0  # a trained denoiser, not an untrained smoother
    y2 = truth + sigma * torch.randn(truth.shape, generator=g)
    with torch.no_grad():
        out2 = d(y2, sigma)
    assert float((out - out2).norm()) <= float((y - y2).norm()) * (1 + 1e-5)


def test_channelwise_wrapper_matches_per_channel_and_keeps_alpha():
    torch.manual_seed(0)
    gray = AveragedDenoiser(GradientFlowNet(1, width=4, depth=2), strength=([0.0, 0.1], [0.0, 1.0])).double().eval()
    colour = ChannelwiseDenoiser(gray)
    x = torch.rand(2, 3, 10, 10, dtype=torch.float64)
    out = colour(x, torch.tensor([0.02, 0.08]))
    for b, s in enumerate((0.02, 0.08)):
        for c in range(3):
            torch.testing.assert_close(out[b, c], gray(x[b : b + 1, c : c + 1], s)[0, 0], rtol=0, atol=1e-8)  # batched conv order
    assert colour.certified_alpha() == gray.certified_alpha()
    # The averagedness inequality on the product space, on random pairs.
    a = colour.certified_alpha()
    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        u, v = torch.rand(1, 3, 10, 10, generator=g, dtype=torch.float64), torch.rand(1, 3, 10, 10, generator=g, dtype=torch.float64)
        Tu, Tv = colour(u, 0.1), colour(v, 0.1)
        lhs = float(((Tu - Tv) ** 2).sum() + (1 - a) / a * (((u - Tu) - (v - Tv)) ** 2).sum())
        assert lhs <= float(((u - v) ** 2).sum()) * (1 + 1e-12)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        colour(torch.rand(3, 10, 10), 0.1)


def test_channelwise_wrapper_of_an_uncertified_denoiser_has_no_certificate():
    from denoisers.baselines import DnCNN

    from denoisers.certificate import is_certified
    from pnp_stable.solvers import certified_alpha

    colour = ChannelwiseDenoiser(DnCNN(1, width=4, depth=2).eval())
    # The protocol's answer is None (no certificate), not an error; solvers run it uncertified.
    assert colour.certified_alpha() is None and certified_alpha(colour) is None and not is_certified(colour)
    with pytest.raises(TypeError, match="certify takes a certified"):
        certify(colour)
    assert colour(torch.rand(1, 3, 8, 8), 0.1).shape == (1, 3, 8, 8)


def test_default_pretrained_by_channels():
    assert default_pretrained(3).net.channels == 3
    assert default_pretrained(1).net.channels == 1
    assert isinstance(load_pretrained(NAME, channels=3), ChannelwiseDenoiser)
    with pytest.raises(ValueError, match="cannot serve 2 channels"):
        load_pretrained(NAME, channels=2)
    with pytest.raises(ValueError, match="channels must be 1 or 3"):
        default_pretrained(2)


def test_fine_tuned_models_count_the_steps_of_their_starting_models(tmp_path, monkeypatch):
    from denoisers.weights import export_weights

    model = AveragedDenoiser(GradientFlowNet(3, width=4, depth=1)).eval()
    chain = {"source": "colour-start", "steps_done": 300, "init": {"source": NAME, "steps_done": 1000, "init": None}}
    export_weights(model, tmp_path / "tuned.pt", metadata={"steps_done": 50, "training_wall_time_s": 60.0, "sigma": 0.1,
                                                          "sigma_max": None, "init": chain})
    monkeypatch.setattr(pretrained_mod, "SHIPPED_DIR", tmp_path)
    monkeypatch.setitem(pretrained_mod._SHIPPED, "tuned", ("tuned.pt", "a fine-tuned test model"))
    info = pretrained_mod._info("tuned")
    assert (info.init, info.steps, info.total_steps, info.channels) == ("colour-start", 50, 1350, 3)


def test_default_model_is_chosen_by_the_solvers_condition():
    pick = pretrained_mod.default_pretrained_name
    assert (pick(1), pick(1, 0.5), pick(1, 0.3), pick(1, 0.9)) == ("gray-averaged", "gray-firm", "gray-firm", "gray-averaged")
    assert (pick(3), pick(3, 0.5)) == ("colour-averaged", "colour-firm")
    for bad in (0.0, 1.0, -0.5):
        with pytest.raises(ValueError, match="target_alpha"):
            pick(1, bad)
    with pytest.raises(ValueError, match="channels must be 1 or 3"):
        pick(2)


@pytest.mark.parametrize("key", sorted(pretrained_mod._DEFAULT_MODELS))
def test_default_models_are_noise_conditioned_over_the_whole_range_and_certified(key):
    channels, firm = key
    name = pretrained_mod._DEFAULT_MODELS[key]
    info = available_pretrained()[name]
    model = load_pretrained(name, dtype=torch.float64)
    assert info.channels == model.net.channels == channels
    assert info.sigma_train == (0.0, pytest.approx(50 / 255))
    knots = model.net.conditioning.knots
    assert float(knots[0]) == 0.0 and float(knots[-1]) == pytest.approx(50 / 255)
    # The certificate, re-derived in float64 on load, is the solver's condition as trained.
    assert (model.certified_alpha() <= 0.5) if firm else (0.5 < model.certified_alpha() < 1)
    assert model.strength is None and model.effective_theta() == (0.5 if firm else 1.0)
    assert info.steps > 0 and info.total_steps > info.steps and info.init is not None


@pytest.mark.parametrize("name", [n for n in sorted(pretrained_mod._SHIPPED) if n.endswith(("-s25", "-s50"))])
def test_strength_ceiling_is_where_the_relaxation_reaches_its_cap(name):
    # Above the ceiling the relaxed model is one fixed operator: same theta, same output.
    level = pretrained_mod.strength_ceiling(name, target_alpha=0.5)
    d = load_pretrained(name, target_alpha=0.5, dtype=torch.float64)
    cap = d.effective_theta()
    assert level is not None and 0 < level < 50 / 255
    assert d.theta_for(level) == cap and d.theta_for(level * (1 - 1e-6)) < cap
    x = torch.rand(1, d.net.channels, 24, 24, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        assert torch.equal(d(x, level), d(x, 3 * level)) and not torch.equal(d(x, level), d(x, 0.9 * level))


def test_strength_ceiling_without_a_binding_cap_and_bad_alpha():
    # The sigma-50 gray model never reaches its own certified theta on its table (0.98 < 1) ...
    assert pretrained_mod.strength_ceiling("gray-averaged-s50") is None
    # ... while the sigma-25 one reaches theta = 1 at 30/255 and stays there.
    assert pretrained_mod.strength_ceiling(NAME) == pytest.approx(30 / 255)
    assert pretrained_mod.strength_ceiling(NAME, 0.3) < pretrained_mod.strength_ceiling(NAME, 0.5)
    for bad in (0.0, 1.0, -0.5):
        with pytest.raises(ValueError, match="target_alpha"):
            pretrained_mod.strength_ceiling(NAME, bad)
    with pytest.raises(ValueError, match="no shipped model"):
        pretrained_mod.strength_ceiling("unet")
