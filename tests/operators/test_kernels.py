"""Kernel families, validation, files and command-line specs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.signal import convolve2d

from operators import Blur, kernels

LEVIN_SIZES = (19, 17, 15, 27, 13, 21, 23, 23)


def _is_canonical(k: np.ndarray) -> bool:
    return (
        k.dtype == np.float64
        and k.ndim == 2
        and k.shape[0] == k.shape[1]
        and k.shape[0] % 2 == 1
        and k.min() >= 0
        and abs(k.sum() - 1) < 1e-12
    )


@pytest.mark.parametrize(
    "k",
    [
        kernels.gaussian(1.6),
        kernels.gaussian((2.0, 0.5)),
        kernels.box(5),
        kernels.box(4),
        kernels.disk(3.2),
        kernels.motion(15, 45),
        kernels.motion(7.5, 200),
    ],
)
def test_families_are_canonical(k):
    assert _is_canonical(k)


@pytest.mark.parametrize("i", range(1, 9))
def test_levin_kernels_shipped(i):
    k = kernels.levin(i)
    assert _is_canonical(k)
    assert k.shape == (LEVIN_SIZES[i - 1],) * 2


def test_gaussian_matches_closed_form():
    k = kernels.gaussian(1.3, size=9)
    r = np.arange(9) - 4
    g = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * 1.3**2))
    np.testing.assert_allclose(k, g / g.sum(), rtol=1e-14)
    # Second moment of a sampled wide Gaussian is close to std^2.
    k = kernels.gaussian(2.0)
    r = np.arange(k.shape[0]) - k.shape[0] // 2
    assert abs((k.sum(1) * r**2).sum() - 4.0) < 0.05


def test_disk_area_and_symmetry():
    k = kernels.disk(4.0)
    np.testing.assert_allclose(k, k.T, atol=1e-15)
    np.testing.assert_allclose(k, k[::-1], atol=1e-15)
    # Interior pixels are fully covered, so equal to 1 / (pi r^2) up to supersampling error.
    assert abs(k[4, 4] - 1 / (np.pi * 16)) / k[4, 4] < 0.01


def test_motion_direction_and_length():
    horizontal = kernels.motion(9, 0)
    c = horizontal.shape[0] // 2
    assert horizontal[c].sum() > 0.999
    diag = kernels.motion(9, 45)
    # 45 degrees counter-clockwise on screen: up and to the right (rows decrease).
    assert diag[c - 3, c + 3] > 0 and diag[c + 3, c + 3] == 0
    vertical = kernels.motion(9, 90)
    np.testing.assert_allclose(vertical, horizontal.T, atol=1e-12)


def test_even_kernel_follows_scipy_same_centring():
    """A 4x4 box padded by the centring rule blurs exactly as scipy's mode='same'."""
    raw = np.random.default_rng(0).random((4, 6))
    x = np.random.default_rng(1).standard_normal((20, 21))
    with pytest.warns(UserWarning, match="normalised"):
        k = kernels.validate(raw)
    assert k.shape == (7, 7)
    ours = Blur(k, boundary="zero").A(torch.from_numpy(x)[None, None])[0, 0].numpy()
    ref = convolve2d(x, raw / raw.sum(), mode="same", boundary="fill")
    np.testing.assert_allclose(ours, ref, atol=1e-13)


def test_validate_returns_new_array_and_leaves_input_alone():
    raw = np.ones((3, 3))
    with pytest.warns(UserWarning):
        out = kernels.validate(raw)
    assert np.all(raw == 1) and out is not raw


def test_validate_accepts_deepinv_layout():
    k = torch.ones(1, 1, 3, 3) / 9
    assert kernels.validate(k).shape == (3, 3)


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.ones((3, 3, 3)), "must be 2-D"),
        (np.zeros((0, 3)), "empty"),
        ([[1.0, np.nan, 1.0]], "NaN or Inf"),
        ([[1.0, np.inf, 1.0]], "NaN or Inf"),
        ([[1.0, -0.5, 1.0]], "negative"),
        (np.zeros((3, 3)), "sums to 0"),
        ("abc", "real numbers"),
    ],
)
def test_validate_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        kernels.validate(bad)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: kernels.gaussian(0), "positive"),
        (lambda: kernels.gaussian(-1), "positive"),
        (lambda: kernels.gaussian(float("nan")), "positive"),
        (lambda: kernels.box(0), "positive integer"),
        (lambda: kernels.box(2.5), "positive integer"),
        (lambda: kernels.disk(0.1), ">= 0.5"),
        (lambda: kernels.motion(0.5, 0), ">= 1"),
        (lambda: kernels.motion(5, float("inf")), "finite"),
        (lambda: kernels.levin(0), "1 to 8"),
        (lambda: kernels.levin(9), "1 to 8"),
    ],
)
def test_family_argument_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("gaussian:1.6", kernels.gaussian(1.6)),
        ("gaussian:2,0.5", kernels.gaussian((2.0, 0.5))),
        ("box:5", kernels.box(5)),
        ("disk:3", kernels.disk(3)),
        ("motion:15,45", kernels.motion(15, 45)),
        ("levin:3", kernels.levin(3)),
        (" Levin:3", kernels.levin(3)),
        ("gaussian:1.6,size=25", kernels.gaussian(1.6, size=25)),
        ("gaussian:2,0.5, size=9", kernels.gaussian((2.0, 0.5), size=9)),
    ],
)
def test_parse_specs(spec, expected):
    np.testing.assert_array_equal(kernels.parse(spec), expected)


@pytest.mark.parametrize(
    "spec, match",
    [
        ("gaussian", "cannot parse"),
        ("blob:3", "unknown kernel family"),
        ("gaussian:a", "non-numeric"),
        ("motion:15", "1 argument"),
        ("box:", "0 argument"),
        (3.0, "cannot parse"),
        ("gaussian:1.6,size=a", "non-numeric"),
        ("gaussian:1.6,side=25", "unknown option"),
        ("box:9,size=9", "unknown option"),
    ],
)
def test_parse_errors(spec, match):
    with pytest.raises(ValueError, match=match):
        kernels.parse(spec)


def test_wide_gaussian_is_the_default_one_with_its_tail():
    # The GS-PnP protocol's 25 x 25 Gaussian: the default 11 x 11 kernel, renormalised, is its
    # centre; the rest is the tail beyond 3 std (a little over 0.1 % of the mass at std 1.6).
    wide, narrow = kernels.parse("gaussian:1.6,size=25"), kernels.gaussian(1.6)
    centre = wide[7:18, 7:18]
    np.testing.assert_allclose(centre / centre.sum(), narrow, rtol=1e-12)
    assert 1e-4 < 1 - centre.sum() < 1e-2


def test_load_formats(tmp_path):
    from skimage import io

    k = kernels.motion(9, 30)
    np.save(tmp_path / "k.npy", k)
    np.savetxt(tmp_path / "k.txt", k)
    np.savetxt(tmp_path / "k.csv", k, delimiter=",")
    for name in ("k.npy", "k.txt", "k.csv"):
        np.testing.assert_allclose(kernels.load(tmp_path / name), k, atol=1e-15)
    img = np.round(k / k.max() * 255).astype(np.uint8)
    io.imsave(tmp_path / "k.png", img, check_contrast=False)
    io.imsave(tmp_path / "k_rgb.png", np.stack([img] * 3, -1), check_contrast=False)
    with pytest.warns(UserWarning, match="normalised"):
        from_png = kernels.load(tmp_path / "k.png")
    np.testing.assert_allclose(from_png, img / img.sum(), atol=1e-12)
    with pytest.warns(UserWarning):
        np.testing.assert_allclose(kernels.load(tmp_path / "k_rgb.png"), from_png, atol=1e-6)
    np.testing.assert_allclose(kernels.parse(f"file:{tmp_path / 'k.npy'}"), k, atol=1e-15)


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        kernels.load(tmp_path / "missing.npy")
    (tmp_path / "k.bin").write_bytes(b"\x00\x01")
    with pytest.raises(ValueError, match="unsupported kernel file type"):
        kernels.load(tmp_path / "k.bin")
    (tmp_path / "bad.png").write_text("this is not an image")
    with pytest.raises(ValueError, match="could not read a kernel"):
        kernels.load(tmp_path / "bad.png")
    (tmp_path / "bad.npy").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="could not read a kernel"):
        kernels.load(tmp_path / "bad.npy")
    (tmp_path / "neg.txt").write_text("1 -1 1\n1 1 1\n1 1 1\n")
    with pytest.raises(ValueError, match="negative"):
        kernels.load(tmp_path / "neg.txt")
