"""deblur() and reconstruct(): input kinds, dtypes, no mutation, errors, registry use."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from operators import Blur
from pnp_stable import deblur, reconstruct, register_solver
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
        (dict(denoiser="default"), ValueError, "no certified denoiser ships"),
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
