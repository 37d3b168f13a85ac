"""Verify once: the certificate of a weights file is remembered per digest and code version."""

from __future__ import annotations

import json

import pytest
import torch

from denoisers import AveragedDenoiser, GradientFlowNet, certify
from denoisers.weights import WeightsError, export_weights, load_weights, verification_cache_path


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("PNP_STABLE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("PNP_STABLE_NO_CACHE", raising=False)
    return tmp_path / "cache"


@pytest.fixture
def weights(tmp_path):
    torch.manual_seed(0)
    return export_weights(AveragedDenoiser(GradientFlowNet(1, width=6, depth=2), target_alpha=0.5), tmp_path / "m.pt")


def _bounds(model):
    return [blk.certified_norm().value for blk in model.net.blocks]


def test_second_load_uses_the_cache_and_gives_the_same_certificate(cache_dir, weights):
    first = load_weights(weights)
    assert first.verification["source"].startswith("computed") and verification_cache_path().is_file()
    second = load_weights(weights)
    assert second.verification["source"].startswith("verification cache")
    assert _bounds(second) == _bounds(first)
    assert certify(second, empirical=False).alpha == certify(first, empirical=False).alpha
    x = torch.rand(1, 1, 16, 16)
    torch.testing.assert_close(second(x, 0.1), first(x, 0.1), atol=0, rtol=0)


def test_cache_can_be_bypassed(cache_dir, weights, monkeypatch):
    load_weights(weights)
    assert load_weights(weights, use_cache=False).verification["source"].startswith("computed")
    monkeypatch.setenv("PNP_STABLE_NO_CACHE", "1")
    assert load_weights(weights).verification["source"].startswith("computed")


def test_other_weights_are_verified_anew(cache_dir, weights, tmp_path):
    load_weights(weights)
    torch.manual_seed(1)
    other = export_weights(AveragedDenoiser(GradientFlowNet(1, width=6, depth=2), target_alpha=0.5), tmp_path / "o.pt")
    assert load_weights(other).verification["source"].startswith("computed")
    assert len(json.loads(verification_cache_path().read_text())) == 2


def test_damaged_or_lying_cache_falls_back_to_a_full_verification(cache_dir, weights):
    load_weights(weights)
    path = verification_cache_path()
    data = json.loads(path.read_text())
    for entry in data.values():  # a cache that claims much smaller norms
        entry["bounds"] = [[v * 0.5, g * 0.5, s, m] for v, g, s, m in entry["bounds"]]
    path.write_text(json.dumps(data))
    model = load_weights(weights)
    assert model.verification["source"].startswith("computed")  # the file's certificate disagreed: recomputed
    path.write_text("{not json")
    assert load_weights(weights).verification["source"].startswith("computed")


def test_a_modified_weights_file_is_still_refused_with_a_warm_cache(cache_dir, weights):
    load_weights(weights)
    rec = torch.load(weights, weights_only=True)
    rec["certificate"]["alpha"] = 0.1  # claims more than the weights give
    torch.save(rec, weights)
    with pytest.raises(WeightsError, match="differs from the stored"):
        load_weights(weights)
