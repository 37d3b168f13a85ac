"""Demos run and write their figures (tiny settings)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

DEMOS = Path(__file__).resolve().parents[1] / "demos"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, DEMOS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_certificate_depth_demo(tmp_path, capsys):
    demo = _load("certificate_depth")
    res = demo.run(max_depth=3, width=2, side=8, steps=3)
    assert res["resnet_adversarial"] == pytest.approx([2.0, 4.0, 8.0], rel=1e-9)
    assert all(m <= c + 1e-12 for m, c in zip(res["ours_measured"], res["ours_certified"]))
    out = tmp_path / "f.png"
    assert demo.main(["-o", str(out), "--max-depth", "2", "--width", "2"]) == 0
    assert out.stat().st_size > 1000
    assert demo.main(["-o", str(out), "--max-depth", "2", "--width", "2"]) == 2  # no overwrite unasked
    assert "exists" in capsys.readouterr().err


def test_deblur_demo(tmp_path, capsys):
    demo = _load("deblur")
    assert demo.main(["camera", "--size", "64", "--kernel", "gaussian:1.2", "--noise", "0.02", "-o", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "guaranteed" in out and (tmp_path / "deblur_camera.png").stat().st_size > 1000
    blurred, tik, ours = (float(out.split(tag)[1].split("dB")[0].split()[-1]) for tag in ("blurred", "Tikhonov", "pnp-admm"))
    assert ours > blurred + 1.0
    assert demo.main(["camera", "--size", "64", "-o", str(tmp_path)]) == 2  # no overwrite unasked
    assert demo.main(["no_such_image.png", "-o", str(tmp_path)]) == 2


def test_custom_operator_demo(tmp_path, capsys):
    demo = _load("custom_operator")
    res = demo.run("camera", noise=0.01, size=64, max_iter=100)
    rep = res["report"]
    # The default solver; its prox on the user's operator is a CG solve with a checked error bound.
    assert rep.solver == "pnp-admm" and rep.guaranteed and rep.converged[0]
    assert {c.name: c.holds for c in rep.conditions}["inexact prox within its summable error schedule"]
    assert res["psnr_restored"] > res["psnr_bicubic"]
    fbs = demo.run("camera", noise=0.01, size=64, max_iter=100, solver="pnp-fbs")["report"]
    assert fbs.guaranteed and any("declared by the user" in c.detail for c in fbs.conditions)
    out = tmp_path / "c.png"
    assert demo.main(["camera", "--size", "48", "-o", str(out)]) == 0
    assert out.stat().st_size > 1000


def test_denoise_demo(tmp_path, capsys):
    demo = _load("denoise")
    res = demo.run("camera", levels=(25,), size=64)
    row = res["rows"][0]
    assert row["psnr_averaged"] > row["psnr_noisy"] + 3 and row["psnr_firm"] > row["psnr_noisy"] + 3
    assert res["alpha"] < 1 and res["alpha_firm"] <= 0.5
    out = tmp_path / "d.png"
    assert demo.main(["camera", "--levels", "15", "--size", "48", "-o", str(out)]) == 0
    assert out.stat().st_size > 1000
    assert demo.main(["camera", "--levels", "-5", "--size", "48", "-o", str(tmp_path / "e.png")]) == 2


@pytest.mark.parametrize("name", sorted(p.stem for p in DEMOS.glob("*.py")))
def test_demo_docstring_examples_pass(name):
    # pytest collects doctests from the packages only; the demos' examples are checked here.
    import doctest
    import inspect

    demo = _load(name)
    public = [n for n, fn in inspect.getmembers(demo, inspect.isfunction)
              if fn.__module__ == demo.__name__ and not n.startswith("_") and n != "main"]
    lacking = [n for n in public if ">>>" not in (getattr(demo, n).__doc__ or "")]
    assert not lacking, f"demos/{name}.py: public functions without a docstring example: {lacking}"
    result = doctest.testmod(demo, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted >= len(public)


def test_lipschitz_tightness_demo(tmp_path, capsys):
    demo = _load("lipschitz_tightness")
    res = demo.run(gammas=(0.5, 1.0), side=8, steps=2, with_shipped=False)
    assert res["lben_certified"] == [0.5, 1.0]
    assert all(0 < low <= cert for cert, low in zip(res["lben_certified"], res["lben_measured"]))
    out = tmp_path / "t.png"
    assert demo.main(["-o", str(out), "--side", "8", "--steps", "2"]) == 0
    assert out.stat().st_size > 1000 and "gradient-flow gray-averaged" in capsys.readouterr().out
    assert demo.main(["-o", str(out), "--side", "8", "--steps", "2"]) == 2  # no overwrite unasked
    not_lben = tmp_path / "dncnn.pt"
    from denoisers.baselines import DnCNN
    from denoisers.weights import export_weights

    export_weights(DnCNN(1, width=2, depth=2), not_lben)
    assert demo.main(["-o", str(tmp_path / "u.png"), "--lben", str(not_lben), "--side", "8", "--steps", "2"]) == 2
    assert "not an LBEN denoiser" in capsys.readouterr().err


def test_robust_radius_demo(tmp_path, capsys):
    import numpy as np
    import torch
    from skimage.io import imsave

    from pnp_stable.robust import LipschitzClassifier
    from pnp_stable.robust.training import save_classifier

    demo = _load("robust_radius")
    for c in ("a", "b"):
        (tmp_path / "data" / c).mkdir(parents=True)
        for i in range(3):
            imsave(tmp_path / "data" / c / f"{i}.png", np.random.default_rng(i).integers(0, 255, (8, 8, 3)).astype(np.uint8),
                   check_contrast=False)
    torch.manual_seed(0)
    model = tmp_path / "clf.pt"
    save_classifier(LipschitzClassifier(classes=2, widths=(4, 8), blocks=(1, 1), image_size=8), model, name="lipschitz")
    out = tmp_path / "r.png"
    assert demo.main([str(model), str(tmp_path / "data"), "-o", str(out), "--images", "6"]) == 0
    printed = capsys.readouterr().out
    assert out.stat().st_size > 1000 and "every attack distance >= its certified radius: True" in printed
    assert demo.main([str(model), str(tmp_path / "data"), "-o", str(out), "--images", "6"]) == 2  # no overwrite unasked
    assert demo.main([str(tmp_path / "missing.pt"), str(tmp_path / "data"), "-o", str(tmp_path / "x.png")]) == 2
