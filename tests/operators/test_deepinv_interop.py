"""Our operators inside deepinv's machinery, and deepinv's norms agreeing with ours."""

from __future__ import annotations

import pytest
import torch
from deepinv.optim import optim_builder
from deepinv.optim.data_fidelity import L2
from deepinv.optim.prior import Tikhonov
from deepinv.physics import BlurFFT

from operators import Blur, Downsampling, Inpainting, kernels, operator_norm
from operators.noise import Gaussian


def test_same_forward_as_deepinv_blurfft():
    """deepinv's BlurFFT and ours share the convention (true convolution, centre k // 2)."""
    k = torch.from_numpy(kernels.levin(2))
    ours = Blur(k)
    theirs = BlurFFT(img_size=(1, 32, 32), filter=k[None, None].float())
    x = torch.rand(2, 1, 32, 32)
    torch.testing.assert_close(ours.A(x), theirs.A(x), atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "op",
    [Blur("levin:1"), Blur("levin:1", boundary="reflect"), Downsampling(2), Inpainting(torch.rand(32, 32).round())],
    ids=["blur-circular", "blur-reflect", "downsampling", "inpainting"],
)
def test_deepinv_pgd_with_our_operator(op):
    """deepinv's PGD runs on our operators and decreases its objective."""
    x = torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    y = op.A(x)
    model = optim_builder(
        iteration="PGD",
        prior=Tikhonov(),
        data_fidelity=L2(),
        params_algo={"stepsize": 0.9, "lambda": 0.01},
        max_iter=30,
        early_stop=False,
    )
    with torch.no_grad():
        xhat = model(y, op)
    assert torch.isfinite(xhat).all()
    f = lambda z: 0.5 * float(((op.A(z) - y) ** 2).sum()) + 0.005 * float((z**2).sum())
    assert f(xhat) < f(op.A_adjoint(y))


def test_deepinv_l2_prox_uses_ours_and_is_exact():
    op = Blur("levin:3", boundary="symmetric")
    z, y = torch.rand(1, 1, 32, 32, dtype=torch.float64), torch.rand(1, 1, 32, 32, dtype=torch.float64)
    x = L2().prox(z, y, op, gamma=2.0)
    # optimality of argmin gamma/2 ||Ax - y||^2 + 1/2 ||x - z||^2
    grad = 2.0 * op.A_adjoint(op.A(x) - y) + x - z
    assert float(grad.norm()) < 1e-5 * float(z.norm())


def test_deepinv_norm_agrees_with_certificate():
    op = Blur("levin:6", boundary="replicate")
    x = torch.rand(1, 1, 40, 40, dtype=torch.float64)
    sq = float(op.compute_sqnorm(x, max_iter=500, tol=1e-9, verbose=False))
    cert = operator_norm(op, (1, 1, 40, 40))
    assert sq**0.5 <= cert.value <= sq**0.5 * (1 + 1e-3)


def test_composition_with_deepinv_operator_algebra():
    blur = Blur("gaussian:1.0")
    mask = Inpainting(torch.ones(16, 16))
    composed = mask * blur  # deepinv composition: mask after blur
    x = torch.rand(1, 1, 16, 16, dtype=torch.float64)
    torch.testing.assert_close(composed.A(x), mask.A(blur.A(x)))
    torch.testing.assert_close(composed.A_adjoint(x), blur.A_adjoint(mask.A_adjoint(x)))


def test_noise_models_inside_deepinv_physics():
    from deepinv.physics import Denoising

    phys = Denoising(noise_model=Gaussian(0.2, rng=torch.Generator().manual_seed(0)))
    y = phys(torch.zeros(1, 1, 64, 64), seed=1)
    assert 0.18 < float(y.std()) < 0.22
