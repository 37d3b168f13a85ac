"""Property tests (hypothesis) over shapes, kernels and boundaries."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from operators import BOUNDARIES, Blur, Downsampling, adjoint_error, estimate_norm, operator_norm
from tests.conftest import dense_matrix

kernel_arrays = st.integers(1, 6).flatmap(
    lambda h: st.integers(1, 6).flatmap(
        lambda w: arrays(np.float64, (h, w), elements=st.floats(0.0, 1.0)).filter(lambda a: a.sum() > 1e-3)
    )
)


@st.composite
def blur_problems(draw):
    k = draw(kernel_arrays)
    side = max(k.shape) + (1 - max(k.shape) % 2)  # kernel side after the centring rule
    H = draw(st.integers(side, side + 9))
    W = draw(st.integers(side, side + 9))
    B = draw(st.integers(1, 2))
    C = draw(st.sampled_from([1, 3]))
    return k / k.sum(), draw(st.sampled_from(BOUNDARIES)), (B, C, H, W)


@given(blur_problems())
def test_blur_adjoint_any_shape_and_kernel(problem):
    k, boundary, shape = problem
    op = Blur(k, boundary)
    assert adjoint_error(op.A, op.A_adjoint, shape) < 1e-10


@given(blur_problems())
def test_blur_certificate_never_below_true_norm(problem):
    k, boundary, shape = problem
    op = Blur(k, boundary)
    one = (1, 1) + shape[-2:]
    cert = operator_norm(op, one)
    assert cert.certified
    true = np.linalg.norm(dense_matrix(op, one), 2)
    assert cert.value >= true * (1 - 1e-12)
    assert estimate_norm(op, one).value <= cert.value * (1 + 1e-9)


@given(blur_problems(), st.floats(0.05, 50.0))
def test_blur_prox_optimality(problem, gamma):
    """The prox output satisfies its optimality condition gamma A^T(Ax - y) + x - z = 0."""
    k, boundary, shape = problem
    op = Blur(k, boundary)
    g = torch.Generator().manual_seed(0)
    z = torch.randn(shape, generator=g, dtype=torch.float64)
    y = torch.randn(shape, generator=g, dtype=torch.float64)
    x = op.prox_l2(z, y, gamma, tol=1e-11, max_iter=500)
    grad = gamma * op.A_adjoint(op.A(x) - y) + x - z
    assert float(grad.norm()) <= 1e-8 * float((gamma * op.A_adjoint(y) + z).norm())


@given(st.integers(1, 4), st.integers(1, 5), st.integers(1, 5), st.sampled_from(BOUNDARIES))
def test_downsampling_adjoint_any_shape(factor, h, w, boundary):
    op = Downsampling(factor, kernel="box:3", boundary=boundary)
    H, W = max(3, h * factor), max(3, w * factor)
    H, W = H + (-H) % factor, W + (-W) % factor
    assert adjoint_error(op.A, op.A_adjoint, (1, 2, H, W)) < 1e-10
