"""User operators through as_operator, and the certified/estimated norm split."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from deepinv.physics import BlurFFT
from deepinv.physics import Downsampling as DIDownsampling
from deepinv.physics import Inpainting as DIInpainting

from operators import (
    AdjointMismatchError,
    Blur,
    CustomOperator,
    NotLinearError,
    as_operator,
    estimate_norm,
    operator_norm,
)


def test_dense_matrix_operator_exact_norm():
    M = torch.randn(30, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    op = as_operator(M, in_shape=(1, 1, 4, 4))
    x = torch.randn(3, 1, 4, 4, dtype=torch.float64)
    torch.testing.assert_close(op.A(x), x.reshape(3, -1) @ M.T)
    assert op.adjoint_error < 1e-12
    cert = operator_norm(op)
    sv = float(np.linalg.svd(M.numpy(), compute_uv=False)[0])
    assert cert.kind == "exact" and sv <= cert.value <= sv * (1 + 1e-9)


def test_dense_numpy_matrix_and_shape_mismatch():
    M = np.random.default_rng(0).standard_normal((5, 6))
    op = as_operator(M)
    assert op.A(torch.ones(2, 6, dtype=torch.float64)).shape == (2, 5)
    with pytest.raises(ValueError, match="n = 6 columns"):
        as_operator(M, in_shape=(1, 1, 2, 2))
    with pytest.raises(ValueError, match="2-D matrix"):
        as_operator(np.ones((2, 2, 2)))
    M[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        as_operator(M)


def test_callable_pair_checked():
    k = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)

    def A(x):
        return torch.nn.functional.conv1d(x.reshape(-1, 1, x.shape[-1]), k.view(1, 1, 3).to(x.dtype)).reshape(x.shape[0], 1, 1, -1)

    def AT(y):
        return torch.nn.functional.conv_transpose1d(y.reshape(-1, 1, y.shape[-1]), k.view(1, 1, 3).to(y.dtype)).reshape(y.shape[0], 1, 1, -1)

    op = as_operator((A, AT), in_shape=(1, 1, 1, 10))
    assert isinstance(op, CustomOperator) and op.adjoint_error < 1e-12


def test_wrong_adjoint_raises_with_measured_error():
    def A(x):
        return torch.roll(x, 1, -1)

    with pytest.raises(AdjointMismatchError) as info:
        as_operator((A, A), in_shape=(1, 1, 8, 8))  # the adjoint of a shift is the opposite shift
    assert info.value.relative_error > 0.1
    assert "relative error" in str(info.value)


def test_tolerance_is_configurable():
    def A(x):
        return x

    def AT(y):
        return y * (1 + 1e-5)

    with pytest.raises(AdjointMismatchError):
        as_operator((A, AT), in_shape=(1, 1, 4, 4))
    op = as_operator((A, AT), in_shape=(1, 1, 4, 4), tol=1e-4)
    assert 1e-6 < op.adjoint_error < 1e-4


def test_autograd_adjoint_derived():
    W = torch.randn(5, 12, generator=torch.Generator().manual_seed(2), dtype=torch.float64)

    def A(x):
        return (x.reshape(x.shape[0], -1) @ W.T).reshape(x.shape[0], 1, 1, 5)

    op = as_operator(A, in_shape=(2, 1, 3, 4))
    y = torch.randn(3, 1, 1, 5, dtype=torch.float64)
    torch.testing.assert_close(op.A_adjoint(y), (y.reshape(3, 5) @ W).reshape(3, 1, 3, 4))
    # also works under no_grad, as solvers call it
    with torch.no_grad():
        torch.testing.assert_close(op.A_adjoint(y), (y.reshape(3, 5) @ W).reshape(3, 1, 3, 4))


def test_nonlinear_callable_rejected():
    with pytest.raises(NotLinearError, match="not linear"):
        as_operator(lambda x: x**2, in_shape=(1, 1, 4, 4))
    with pytest.raises(NotLinearError):
        as_operator(lambda x: x + 1.0, in_shape=(1, 1, 4, 4))


def test_float32_only_operator_checked_in_float32_with_warning():
    W = torch.randn(4, 4)

    def A(x):
        return (x.reshape(x.shape[0], -1) @ W.T).reshape(x.shape)  # fails on float64 input

    def AT(y):
        return (y.reshape(y.shape[0], -1) @ W).reshape(y.shape)

    with pytest.warns(UserWarning, match="float32"):
        op = as_operator((A, AT), in_shape=(1, 1, 2, 2))
    assert op.adjoint_error < 1e-4


@pytest.mark.parametrize(
    "physics",
    [
        BlurFFT(img_size=(1, 16, 16), filter=torch.ones(1, 1, 3, 3) / 9),
        DIDownsampling(img_size=(1, 16, 16), factor=2, filter="gaussian", padding="circular"),
        DIInpainting(img_size=(1, 16, 16), mask=0.5),
    ],
    ids=["BlurFFT", "Downsampling", "Inpainting"],
)
def test_deepinv_physics_wrapped(physics):
    op = as_operator(physics)
    assert op.adjoint_error < 1e-6
    x = torch.rand(2, 1, 16, 16)
    torch.testing.assert_close(op.A(x), physics.A(x))
    est = operator_norm(op, (1, 1, 16, 16))
    assert est.kind == "estimate" and est.value > 0
    with pytest.raises(ValueError, match="no certified norm"):
        operator_norm(op, (1, 1, 16, 16), certified=True)


def test_deepinv_physics_without_img_size_needs_in_shape():
    from deepinv.physics import Blur as DIBlur

    with pytest.raises(ValueError, match="pass in_shape"):
        as_operator(DIBlur(filter=torch.ones(1, 1, 3, 3) / 9))


def test_ours_returned_unchanged():
    op = Blur("box:3")
    assert as_operator(op) is op


def test_bad_objects():
    with pytest.raises(TypeError, match="as_operator takes"):
        as_operator(42, in_shape=(1, 1, 2, 2))
    with pytest.raises(ValueError, match="pass in_shape"):
        as_operator(lambda x: x)


def test_declared_norm_bound_checked():
    def A(x):
        return 3.0 * x

    op = as_operator((A, A), in_shape=(1, 1, 4, 4), norm_bound=3.5)
    cert = operator_norm(op)
    assert cert.kind == "upper_bound" and cert.value == 3.5 and "declared" in cert.method
    with pytest.raises(ValueError, match="cannot be a bound"):
        as_operator((A, A), in_shape=(1, 1, 4, 4), norm_bound=2.0)


def test_estimate_is_labelled_and_below_certificate():
    op = Blur("levin:3", boundary="reflect")
    shape = (1, 1, 32, 32)
    est, cert = estimate_norm(op, shape), operator_norm(op, shape)
    assert est.kind == "estimate" and not est.certified and "lower bound" in est.method
    assert est.value <= cert.value
    # fixed seed: the estimate is reproducible
    assert estimate_norm(op, shape).value == est.value


def test_operator_norm_shape_errors():
    with pytest.raises(ValueError, match="in_shape is required"):
        operator_norm(as_operator(BlurFFT(img_size=(1, 8, 8), filter=torch.ones(1, 1, 3, 3) / 9)))
    with pytest.raises(ValueError, match="positive sizes"):
        operator_norm(Blur("box:3"), (0, 1, 8, 8))
