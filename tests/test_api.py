"""deblur() and reconstruct(): input kinds, dtypes, no mutation, errors, registry use."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from operators import Blur
from pnp_stable import deblur, reconstruct, register_solver
from pnp_stable.defaults import defaults_for
from tests.test_solvers import Smoother


@pytest.fixture(scope="module")
def photo():
    from skimage import data, transform

    return transform.resize(data.camera(), (40, 40), anti_aliasing=True)


def test_deblur_gray_float_improves_and_keeps_kind(photo):
    k = "gaussian:1.2"
    y = Blur(k, "symmetric").A(torch.from_numpy(photo)[None, None])[0, 0].numpy()
    y0 = y.copy()
    r = deblur(y, k, 0.0, denoiser=Smoother(), solver="pnp-fbs", max_iter=100, progress=False)
    assert isinstance(r.image, np.ndarray) and r.image.shape == y.shape and r.image.dtype == y.dtype
    assert np.array_equal(y, y0)  # input untouched
    assert r.report.guaranteed and r.report.stop_reason[0] in ("tol", "max_iter")


def test_deblur_colour_uint8_and_channel_axis(photo):
    rgb = (np.stack([photo] * 3, axis=0) * 255).astype(np.uint8)  # channels first
    r = deblur(rgb, "box:3", 0.01, channel_axis=0, denoiser=Smoother(), solver="pnp-admm", step=2.0, max_iter=30, progress=False)
    assert r.image.shape == rgb.shape and r.image.dtype == np.uint8
    with pytest.raises(ValueError, match="channel_axis=-1"):
        deblur(np.moveaxis(rgb, 0, -1), "box:3", 0.01, denoiser=Smoother(), progress=False)


def test_deblur_torch_in_torch_out(photo):
    x = torch.from_numpy(photo).float()[None, None].repeat(2, 1, 1, 1)
    r = deblur(x, "box:3", 0.01, denoiser=Smoother(), max_iter=20, progress=False)
    assert isinstance(r.image, torch.Tensor) and r.image.shape == x.shape and r.image.dtype == torch.float32
    assert len(r.report.iterations) == 2


@pytest.mark.parametrize(
    "kwargs, err, match",
    [
        (dict(noise_level=-0.1), ValueError, "noise_level must be"),
        (dict(noise_level=float("nan")), ValueError, "noise_level must be"),
        (dict(denoiser="no-such-model"), FileNotFoundError, "neither a weights file nor a shipped model"),
        (dict(denoiser=42), TypeError, "denoiser must be"),
        (dict(solver="pnp-fsb"), ValueError, "unknown solver"),
        (dict(boundary="wrap"), ValueError, "unknown boundary"),
        (dict(kernel="blob:3"), ValueError, "unknown kernel family"),
        (dict(kernel="gaussian:30"), ValueError, "larger than the image"),
        (dict(bogus_option=1), TypeError, "bogus_option"),
    ],
)
def test_deblur_bad_inputs(photo, kwargs, err, match):
    args = dict(kernel="box:3", noise_level=0.01, denoiser=Smoother(), progress=False)
    args.update(kwargs)
    image = args.pop("image", photo)
    with pytest.raises(err, match=match):
        deblur(image, args.pop("kernel"), args.pop("noise_level"), **args)


@pytest.mark.parametrize(
    "image, err, match",
    [
        (np.array(["a", "b"]), TypeError, "numeric"),
        (np.zeros((2, 2, 2, 2)), ValueError, "2-D"),
        (np.full((8, 8), np.nan), ValueError, "NaN"),
        (torch.zeros(8, 8), ValueError, r"\(B, C, H, W\)"),
        (torch.zeros(1, 1, 8, 8, dtype=torch.int32), TypeError, "float"),
    ],
)
def test_deblur_bad_images(image, err, match):
    with pytest.raises(err, match=match):
        deblur(image, "box:3", 0.01, denoiser=Smoother(), progress=False)


def test_weights_file_as_denoiser(tmp_path, photo):
    from denoisers import AveragedDenoiser, GradientFlowNet
    from denoisers.weights import export_weights

    torch.manual_seed(0)
    p = export_weights(AveragedDenoiser(GradientFlowNet(1, width=4, depth=1), target_alpha=0.5), tmp_path / "d.pt")
    r = deblur(photo.astype(np.float32), "box:3", 0.01, denoiser=str(p), solver="pnp-admm", max_iter=5, progress=False)
    assert r.report.guaranteed and r.image.dtype == np.float32


def test_reconstruct_uses_registered_solvers(photo):
    seen = {}

    @register_solver("test-recording", guarantee="none", replace=True)
    def recording(y, operator, denoiser, **options):
        seen.update(options)
        return y, None

    y = torch.from_numpy(photo)[None, None]
    r = reconstruct(y, Blur("box:3"), denoiser=Smoother(), solver="test-recording", sigma=0.2, progress=False)
    assert r.image is y and seen["sigma"] == 0.2


def test_dtype_adapter_keeps_or_lacks_the_certificate(photo):
    from denoisers.baselines import DnCNN
    from pnp_stable.api import _match_dtype
    from pnp_stable.solvers import certified_alpha

    plain = _match_dtype(DnCNN(1, width=4, depth=2), torch.float64)
    assert certified_alpha(plain) is None
    x = torch.rand(1, 1, 8, 8, dtype=torch.float64)
    assert plain(x, 0.1).dtype == torch.float64


# -- the shipped denoiser as the default ---------------------------------------------------------


def _blurred(truth: np.ndarray, kernel: str, noise: float, seed: int = 0) -> np.ndarray:
    from operators.noise import Gaussian

    op = Blur(kernel, boundary="circular", noise_model=Gaussian(noise, rng=torch.Generator().manual_seed(seed)))
    t = torch.from_numpy(truth)
    t = t[None, None] if t.ndim == 2 else t.permute(2, 0, 1)[None]
    y = op(t, seed=seed)[0]
    return y[0].numpy() if truth.ndim == 2 else y.permute(1, 2, 0).numpy()


@pytest.fixture(scope="module")
def small_camera() -> np.ndarray:
    from pnp_stable.demo import fit_size
    from pnp_stable.io import load_image

    return fit_size(load_image("camera"), 64)


@pytest.mark.parametrize("solver", ["pnp-fbs", "pnp-admm"])
def test_deblur_default_denoiser_restores_with_guarantee(small_camera, solver):
    from pnp_stable.demo import psnr

    y = _blurred(small_camera, "gaussian:1.2", 0.02)
    r = deblur(y, "gaussian:1.2", 0.02, solver=solver, boundary="circular", progress=False)
    rep = r.report
    assert rep.guaranteed and all(rep.converged) and all(rep.monotone)
    assert psnr(np.clip(r.image, 0, 1), small_camera) > psnr(np.clip(y, 0, 1), small_camera) + 1.0
    alpha = next(c for c in rep.conditions if "denoiser" in c.name)
    assert alpha.holds


def test_deblur_default_uses_tuned_strength_and_step(small_camera, monkeypatch):
    from pnp_stable import defaults as defaults_mod

    seen = {}

    def spy(y, operator, denoiser, **kw):
        seen.update(kw, alpha=denoiser.certified_alpha())
        return y, None

    from pnp_stable.registry import register_solver

    register_solver("test-spy", guarantee="none", denoiser_alpha=0.3, replace=True)(spy)
    monkeypatch.setitem(defaults_mod.DEFAULTS, "test-spy", defaults_mod.SolverDefaults(strength=2.5, step=7.0))
    y = _blurred(small_camera, "box:3", 0.04)
    deblur(y, "box:3", 0.04, solver="test-spy", progress=False)
    assert seen["sigma"] == pytest.approx(0.1) and seen["step"] == 7.0 and seen["alpha"] <= 0.3 + 1e-12
    seen.clear()
    deblur(y, "box:3", 0.04, solver="test-spy", sigma=0.05, step=1.5, progress=False)  # explicit values win
    assert seen["sigma"] == 0.05 and seen["step"] == 1.5


def test_deblur_colour_uses_the_colour_defaults(small_camera, monkeypatch):
    # Colour images are served by other models than gray ones, so they have their own tuned
    # defaults: deblur() must take those for 3 channels and the gray ones for 1.
    from pnp_stable import defaults as defaults_mod
    from pnp_stable.registry import register_solver

    seen = {}

    def spy(y, operator, denoiser, **kw):
        seen.update(kw, channels=y.shape[1])
        return y, None

    register_solver("test-spy-colour", guarantee="none", denoiser_alpha=0.3, replace=True)(spy)
    monkeypatch.setitem(defaults_mod.DEFAULTS, "test-spy-colour", defaults_mod.SolverDefaults(strength=1.0, step=3.0))
    monkeypatch.setitem(defaults_mod.COLOUR_DEFAULTS, "test-spy-colour", defaults_mod.SolverDefaults(strength=2.0, step=5.0))
    rgb = np.stack([small_camera] * 3, axis=-1)
    deblur(_blurred(rgb, "box:3", 0.04), "box:3", 0.04, solver="test-spy-colour", channel_axis=-1, progress=False)
    assert seen["channels"] == 3 and seen["sigma"] == pytest.approx(0.08) and seen["step"] == 5.0
    deblur(_blurred(small_camera, "box:3", 0.04), "box:3", 0.04, solver="test-spy-colour", progress=False)
    assert seen["channels"] == 1 and seen["sigma"] == pytest.approx(0.04) and seen["step"] == 3.0


def test_defaults_for_colour_falls_back_to_gray_and_checks_channels(monkeypatch):
    from pnp_stable import defaults as defaults_mod

    monkeypatch.setitem(defaults_mod.DEFAULTS, "gray-only", defaults_mod.SolverDefaults(strength=1.5))
    assert defaults_mod.defaults_for("gray-only", 3).strength == 1.5  # no colour entry: the gray one
    assert defaults_mod.defaults_for("pnp-admm", 3) is defaults_mod.COLOUR_DEFAULTS["pnp-admm"]
    with pytest.raises(ValueError, match="channels must be 1"):
        defaults_mod.defaults_for("pnp-fbs", 2)


@pytest.mark.parametrize("solver, name", [("pnp-admm", "gray-firm"), ("pnp-fbs", "gray-averaged")])
@pytest.mark.parametrize("sigma", [2 / 255, 40 / 255])
def test_deblur_default_model_is_the_one_trained_for_the_solvers_condition(small_camera, monkeypatch, solver, name, sigma):
    # One noise-conditioned model per solver condition serves every strength: no switch, no cap.
    from denoisers import default_pretrained_name
    from denoisers import pretrained as pretrained_mod
    from pnp_stable.registry import solver_info

    asked = []
    real = pretrained_mod.load_pretrained

    def spy(name, *args, **kwargs):
        asked.append(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(pretrained_mod, "load_pretrained", spy)
    y = _blurred(small_camera, "box:3", 0.02)
    r = deblur(y, "box:3", 0.02, solver=solver, sigma=sigma, max_iter=2, progress=False)
    assert asked == [name] == [default_pretrained_name(1, solver_info(solver).denoiser_alpha)]
    assert r.report.guaranteed


def test_deblur_default_colour_uses_the_colour_model(small_camera):
    from pnp_stable.api import resolve_denoiser

    rgb = np.stack([small_camera, small_camera[::-1], small_camera[:, ::-1]], -1)
    y = _blurred(rgb, "gaussian:1.0", 0.02)
    r = deblur(y, "gaussian:1.0", 0.02, channel_axis=-1, boundary="circular", progress=False)
    assert r.image.shape == rgb.shape and r.report.guaranteed
    colour = resolve_denoiser("default", channels=3)
    assert colour.net.channels == 3 and colour.certified_alpha() < 1


def test_resolve_denoiser_shipped_name_and_relaxation():
    from pnp_stable.api import resolve_denoiser

    assert resolve_denoiser("gray-averaged-s25", solver="pnp-admm").certified_alpha() <= 0.5
    assert resolve_denoiser("default", solver="pnp-fbs").certified_alpha() < 1


def test_reconstruct_default_needs_a_strength():
    y = torch.rand(1, 1, 16, 16)
    with pytest.raises(ValueError, match="needs a strength"):
        reconstruct(y, Blur("box:3"), progress=False)
    from operators.noise import Gaussian

    r = reconstruct(y, Blur("box:3", noise_model=Gaussian(0.05)), progress=False, max_iter=5)
    assert r.report.guaranteed


@pytest.mark.parametrize("channels", [1, 3])
def test_admm_default_denoiser_is_firm_at_full_strength(channels):
    # PnP-ADMM's default model meets alpha <= 1/2 as trained: the plan applies no further
    # relaxation, so the strength acts in full at every level (no ceiling).
    from pnp_stable.api import plan_run

    plan = plan_run("default", "pnp-admm", noise_level=12.75 / 255, channels=channels)
    den = plan.denoiser
    assert den.certified_alpha() <= 0.5 and den.effective_theta() == den.theta == 0.5
    assert plan.sigma == pytest.approx(defaults_for("pnp-admm", channels).strength * 12.75 / 255)
    x = torch.rand(1, channels, 24, 24)
    with torch.no_grad():
        assert not torch.equal(den(x, 10 / 255), den(x, 40 / 255))  # the level is heard


def test_default_strength_is_the_tuned_multiple_of_the_noise(monkeypatch):
    from pnp_stable import defaults as defaults_mod

    monkeypatch.setitem(defaults_mod.DEFAULTS, "pnp-admm", defaults_mod.SolverDefaults(strength=4.0, step_scale=0.2))
    assert defaults_mod.default_strength("pnp-admm", 12.75 / 255) == pytest.approx(51 / 255)


def _scene_crop(photo: np.ndarray, kernel: str, boundary: str, margin: int = 8):
    """Blur the whole scene with ``boundary``, then crop: the frame of a photograph."""
    full = Blur(kernel, boundary).A(torch.from_numpy(photo)[None, None])[0, 0].numpy()
    s = np.s_[margin:-margin, margin:-margin]
    return full[s], photo[s]


@pytest.mark.parametrize("scene_boundary", ["circular", "symmetric"])
def test_unknown_boundary_fits_whatever_lies_beyond_the_frame(photo, scene_boundary):
    """The valid part of the blur is exact for every scene, so the unknown model restores a crop
    better than the blurred input and better than a padding rule the scene does not follow."""
    y, truth = _scene_crop(photo, "gaussian:1.2", scene_boundary)
    psnr = lambda a: 10 * np.log10(1 / np.mean((a - truth) ** 2))
    opts = dict(denoiser=Smoother(), step=50.0, max_iter=300, progress=False)
    r = deblur(y, "gaussian:1.2", 0.0, boundary="unknown", **opts)
    assert r.image.shape == y.shape and r.report.solver == "pnp-admm" and r.report.guaranteed
    wrong = "symmetric" if scene_boundary == "circular" else "circular"
    assert psnr(r.image) > psnr(y) + 1.0
    assert psnr(r.image) > psnr(deblur(y, "gaussian:1.2", 0.0, boundary=wrong, **opts).image)


def test_unknown_boundary_colour_uint8_and_torch_batches(photo):
    rgb = (np.stack([photo] * 3, axis=-1) * 255).astype(np.uint8)
    r = deblur(rgb, "box:3", 0.01, boundary="unknown", channel_axis=-1, denoiser=Smoother(), step=2.0, max_iter=30, progress=False)
    assert r.image.shape == rgb.shape and r.image.dtype == np.uint8 and r.report.guaranteed
    x = torch.from_numpy(photo)[None, None].repeat(2, 3, 1, 1)
    r = deblur(x, "box:3", 0.01, boundary="unknown", denoiser=Smoother(), solver="pnp-fbs", max_iter=20, progress=False)
    assert r.image.shape == x.shape and len(r.report.iterations) == 2


def test_unknown_boundary_kernel_larger_than_the_photo(photo):
    with pytest.raises(ValueError, match="larger than the image"):
        deblur(photo[:10, :10], "gaussian:3", 0.01, boundary="unknown", denoiser=Smoother(), progress=False)


def test_default_solver_is_admm_everywhere(photo):
    from pnp_stable.cli import build_parser
    from pnp_stable.registry import DEFAULT_SOLVER

    assert DEFAULT_SOLVER == "pnp-admm"
    y = torch.from_numpy(photo)[None, None]
    assert reconstruct(y, Blur("box:3"), denoiser=Smoother(), max_iter=5, progress=False).report.solver == DEFAULT_SOLVER
    assert deblur(photo, "box:3", 0.01, denoiser=Smoother(), max_iter=5, progress=False).report.solver == DEFAULT_SOLVER
    parser = build_parser()
    assert parser.parse_args(["deblur", "a.png", "-o", "b.png", "--kernel", "box:3", "--noise", "0.01"]).solver == DEFAULT_SOLVER
    assert parser.parse_args(["demo"]).solver == DEFAULT_SOLVER


def test_reconstruct_noise_level_sets_the_shipped_strength(photo):
    from pnp_stable.api import plan_run

    y = torch.from_numpy(photo).float()[None, None]
    r = reconstruct(y, Blur("box:3"), noise_level=0.02, max_iter=3, progress=False)
    assert r.report.guaranteed
    plan = plan_run("default", noise_level=0.02)
    tuned = defaults_for("pnp-admm")
    assert plan.sigma == pytest.approx(tuned.strength * 0.02) and plan.options["step"] == pytest.approx(tuned.step_scale / 0.02)
    with pytest.raises(ValueError, match="noise_level must be"):
        reconstruct(y, Blur("box:3"), noise_level=-1.0, progress=False)


def test_default_boundary_is_the_unknown_model(photo):
    from pnp_stable.api import DEFAULT_BOUNDARY
    from pnp_stable.cli import build_parser

    assert DEFAULT_BOUNDARY == "unknown"
    assert build_parser().parse_args(["deblur", "a.png", "-o", "b.png", "--kernel", "box:3", "--noise", "0.01"]).boundary == "unknown"
    y, _ = _scene_crop(photo, "gaussian:1.2", "circular")
    r = deblur(y, "gaussian:1.2", 0.0, denoiser=Smoother(), step=50.0, max_iter=300, progress=False)
    ref = deblur(y, "gaussian:1.2", 0.0, boundary="unknown", denoiser=Smoother(), step=50.0, max_iter=300, progress=False)
    assert r.image.shape == y.shape and np.array_equal(r.image, ref.image)


def test_deblur_resolves_the_plan_once(photo, monkeypatch):
    import pnp_stable.api as api

    calls = {"resolve": 0, "strength": 0}
    real_resolve, real_strength = api.resolve_denoiser, api._strength_and_step

    def counting_resolve(*a, **k):
        calls["resolve"] += 1
        return real_resolve(*a, **k)

    def counting_strength(*a, **k):
        calls["strength"] += 1
        return real_strength(*a, **k)

    monkeypatch.setattr(api, "resolve_denoiser", counting_resolve)
    monkeypatch.setattr(api, "_strength_and_step", counting_strength)
    r = deblur(photo, "box:3", 0.02, boundary="circular", max_iter=2, progress=False)
    assert calls == {"resolve": 1, "strength": 1} and r.report.solver == "pnp-admm"
