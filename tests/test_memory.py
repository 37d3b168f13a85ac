"""The memory plan of a run: budgets, tiles, the Anderson history's precision, and the tiled progress bar."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from denoisers import GradientFlowNet, NonexpansiveDenoiser
from pnp_stable import deblur
from pnp_stable.anderson import Anderson, AndersonHistory
from pnp_stable.fixed_point import run_fixed_point
from pnp_stable.memory import DEFAULT_MAX_MEMORY, PROCESS_BASELINE, plan_memory
from pnp_stable.progress import TiledProgress, predicted_iterations
from pnp_stable.report import ConvergenceReport


def _net(channels=3):
    return NonexpansiveDenoiser(GradientFlowNet(channels, width=32, depth=8)).eval()


def test_a_12_megapixel_photo_is_planned_lean():
    plan = plan_memory((1, 3, 3026, 4026), torch.float32, _net(), "pnp-admm", Anderson(), iterative_prox=True)
    assert plan.estimate <= plan.budget and plan.tiles.tiles > 1 and plan.tiles.halo == 16
    # Full precision would not leave the denoiser room enough: the history is stored as float16,
    # and the data prox stays in float32.
    assert plan.anderson.storage == "half" and plan.anderson.memory == 5 and plan.prox_precision is None


def test_a_float64_prox_is_budgeted_when_asked_for():
    shape = (1, 3, 890, 1178)
    narrow = plan_memory(shape, torch.float32, _net(), "pnp-admm", Anderson(), iterative_prox=True)
    wide = plan_memory(shape, torch.float32, _net(), "pnp-admm", Anderson(), iterative_prox=True, wide_prox=True)
    assert narrow.prox_precision is None and wide.prox_precision == torch.float64
    assert wide.state_bytes > narrow.state_bytes and wide.estimate <= wide.budget
    # Closed-form proxes have nothing to widen.
    assert plan_memory(shape, torch.float32, _net(), "pnp-admm", Anderson(), wide_prox=True).prox_precision is None


def test_small_images_keep_everything_as_it_was():
    plan = plan_memory((1, 1, 256, 256), torch.float32, _net(1), "pnp-admm", Anderson())
    assert plan.tiles.whole and plan.anderson == Anderson()


def test_default_budget_grows_for_images_that_cannot_fit_it():
    plan = plan_memory((1, 3, 6000, 8000), torch.float32, _net(), "pnp-admm", Anderson())
    assert plan.budget > DEFAULT_MAX_MEMORY and plan.estimate <= plan.budget


def test_explicit_budget_is_a_hard_limit():
    plan = plan_memory((1, 3, 3000, 4000), torch.float32, _net(), "pnp-admm", Anderson(), max_memory="8G")
    assert plan.estimate <= 8 * 2**30 and plan.explicit
    with pytest.raises(ValueError, match=r"too small for a 1x3x3000x4000 image.*max_memory='[0-9.]+G'"):
        plan_memory((1, 3, 3000, 4000), torch.float32, _net(), "pnp-admm", Anderson(), max_memory="2G")


def test_half_precision_history_proposes_nearly_the_same_candidate():
    gen = torch.Generator().manual_seed(0)
    size = 3 * 1000
    like = torch.zeros(1, dtype=torch.float64)
    full = AndersonHistory(Anderson(memory=3), 2, size, like)
    half = AndersonHistory(Anderson(memory=3, storage="half"), 2, size, like)
    idx = torch.tensor([0, 1])
    for _ in range(4):  # more pushes than slots: the ring wraps
        dg = torch.randn(2, size, generator=gen, dtype=torch.float64) * 1e-6
        df = torch.randn(2, size, generator=gen, dtype=torch.float64) * 1e-6
        full.push(idx, dg, df)
        half.push(idx, dg, df)
    g = torch.randn(2, size, generator=gen, dtype=torch.float64) * 1e-6
    f = torch.rand(2, size, generator=gen, dtype=torch.float64)
    a, b = full.candidate(idx, g, f), half.candidate(idx, g, f)
    assert half.dG.dtype == torch.float16
    assert float((a - b).norm() / (a - f).norm()) < 5e-3  # the extrapolation step agrees to float16 precision


def test_half_precision_history_keeps_the_fixed_point():
    M = torch.tensor([[0.9, 0.3], [-0.2, 0.7]], dtype=torch.float64)
    c = torch.tensor([1.0, -2.0], dtype=torch.float64)

    def T(u, idx, demand):
        return u @ M.T + c, None, None

    results = []
    for storage in ("full", "half"):
        rep = ConvergenceReport("t", "Banach", [], True)
        u = run_fixed_point(T, torch.zeros(3, 2, dtype=torch.float64), tol=1e-12, max_iter=200, report=rep,
                            anderson=Anderson(memory=2, storage=storage))
        assert rep.converged == [True] * 3
        results.append(u)
    exact = torch.linalg.solve(torch.eye(2, dtype=torch.float64) - M, c)
    for u in results:
        assert torch.allclose(u, exact.expand(3, 2), atol=1e-9)


def test_deblur_in_tiles_matches_the_whole_image_run():
    img = np.random.default_rng(0).random((150, 170)).astype(np.float32)
    same = dict(progress=False, prox_precision=torch.float64, tol=1e-5)  # the same run but for the tiles
    whole = deblur(img, "levin:2", 0.02, **same)
    budget = PROCESS_BASELINE + (14 << 20)  # the denoiser gets a few MiB: several tiles
    tiled = deblur(img, "levin:2", 0.02, max_memory=budget, **same)
    note = " ".join(tiled.report.notes)
    assert "tiles" in note and tiled.report.guaranteed and tiled.report.all_converged
    assert np.abs(tiled.image - whole.image).max() < 1e-3
    assert "tiles" not in " ".join(whole.report.notes)


def test_deblur_refuses_a_budget_it_cannot_keep():
    with pytest.raises(ValueError, match="too small"):
        deblur(np.zeros((64, 64)), "levin:2", 0.02, progress=False, max_memory="10M")


def test_progress_total_follows_the_predicted_iterations():
    p = TiledProgress(tiles=3, max_iter=100, tol=1e-4, disable=True)
    for k, r in enumerate([1e-1, 1e-2, 1e-3]):
        for _ in range(3):
            p.tile_done()
        p.iteration_done(k, None, [r])
    # Residual falls 10x per iteration: one more iteration reaches 1e-4.
    assert p.done == 9 and p.total == 9 + 3 * predicted_iterations([1e-1, 1e-2, 1e-3], 1e-4, 96)
    assert p.total == 12
    p.close()
