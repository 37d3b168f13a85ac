"""Exact tiled evaluation: the same map as the whole image, the same certificate, in bounded memory."""

from __future__ import annotations

import pytest
import torch

from denoisers import AveragedDenoiser, ChannelwiseDenoiser, GradientFlowNet, NonexpansiveDenoiser, load_pretrained
from denoisers.lben import LBENDenoiser
from denoisers.tiling import MIN_TILE, TiledDenoiser, parse_memory, plan_tiles, receptive_radius, working_bytes_per_pixel


def _random_net(channels=1, width=4, depth=2, **kw):
    torch.manual_seed(0)
    net = GradientFlowNet(channels, width=width, depth=depth, **kw).double().eval()
    with torch.no_grad():
        for blk in net.blocks:
            blk.bias.normal_()  # biases away from zero: every activation regime is exercised
    return NonexpansiveDenoiser(net).eval()


@pytest.mark.parametrize("name,channels", [("gray-firm", 1), ("colour-averaged", 3)])
def test_tiled_shipped_model_equals_whole_image(name, channels):
    den = load_pretrained(name).eval()
    x = torch.rand(1, channels, 230, 190, generator=torch.Generator().manual_seed(1))
    tiled = TiledDenoiser(den, max_memory=2 * working_bytes_per_pixel(den) * 120 * 120)
    plan = tiled.plan(x.shape)
    assert plan.tiles >= 4 and plan.halo == receptive_radius(den)
    with torch.no_grad():
        whole, pieces = den(x, 0.05), tiled(x, 0.05)
    assert float((whole - pieces).abs().max()) <= 1e-5
    # The certificate is the wrapped model's.
    assert tiled.certified_alpha() == den.certified_alpha()


def test_receptive_radius_is_exact():
    den = _random_net(depth=3, max_substeps=None)
    R = receptive_radius(den)
    assert R == 2 * sum(blk.certified_schedule().substeps for blk in den.net.blocks)
    x = torch.rand(1, 1, 4 * R + 9, 4 * R + 9, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    c = x.shape[-1] // 2
    with torch.no_grad():
        base = den(x)[0, 0, c, c]
        for dist, moves in ((R + 1, False), (R, True)):
            bumped = x.clone()
            bumped[0, 0, c, c + dist] += 1.0
            changed = bool(den(bumped)[0, 0, c, c] != base)
            assert changed == moves, (dist, R)


def test_tiles_at_the_image_border_see_the_same_zero_padding():
    den = _random_net()
    x = torch.rand(2, 1, 97, 131, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    tiled = TiledDenoiser(den, max_memory=2 * working_bytes_per_pixel(den, torch.float64) * (MIN_TILE + 20) ** 2)
    assert tiled.plan(x.shape, torch.float64).tiles > 1
    with torch.no_grad():
        assert torch.allclose(tiled(x, None), den(x), atol=1e-12, rtol=0)


def test_channelwise_and_relaxed_wrappers_keep_the_radius():
    gray = AveragedDenoiser(_random_net().net, theta=0.5)
    assert receptive_radius(ChannelwiseDenoiser(gray)) == receptive_radius(gray) == gray.net.receptive_radius()


def test_equilibrium_denoisers_refuse_tiling_with_a_reason():
    lben = load_pretrained("gray-lben")
    with pytest.raises(ValueError, match="equilibrium network"):
        receptive_radius(lben)
    assert isinstance(lben, LBENDenoiser) or hasattr(lben, "denoise_within")
    with pytest.raises(ValueError, match="equilibrium"):
        plan_tiles((1, 1, 2000, 2000), lben, 2**24)
    # An image that fits is evaluated whole, tiling or not.
    assert plan_tiles((1, 1, 32, 32), lben, 2**30).whole


def test_unknown_receptive_field_is_refused():
    with pytest.raises(ValueError, match="receptive field .* is unknown"):
        plan_tiles((1, 1, 2000, 2000), lambda x, s: x, 2**20)


def test_budget_too_small_for_one_tile_says_what_it_needs():
    den = _random_net()
    with pytest.raises(ValueError, match="too small for one tile.*raise max_memory"):
        plan_tiles((1, 1, 4000, 3000), den, 1000)


@pytest.mark.parametrize("bad", ["", "-1G", "4X", "nan", 0, True, None, "inf"])
def test_parse_memory_rejects_nonsense(bad):
    with pytest.raises(ValueError, match="max_memory must be"):
        parse_memory(bad)


def test_parse_memory_units():
    assert parse_memory("512M") == 512 * 2**20 and parse_memory("2 GiB") == 2**31 and parse_memory(4096) == 4096
