"""Layout rules: import order, package data, version, console script."""

from __future__ import annotations

import subprocess
import sys

import pytest

import pnp_stable


@pytest.mark.parametrize(
    "package, forbidden",
    [("operators", ("denoisers", "pnp_stable")), ("denoisers", ("pnp_stable",))],
)
def test_import_order(package, forbidden):
    """operators <- denoisers <- pnp_stable: a lower package never imports a higher one."""
    code = f"import sys, {package}; print(sorted(m for m in {forbidden!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_version_is_pep440():
    from packaging.version import Version

    assert Version(pnp_stable.__version__) >= Version("0.1.0")


def test_console_version():
    out = subprocess.run([sys.executable, "-m", "pnp_stable.cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == f"pnp-stable {pnp_stable.__version__}"


def test_levin_kernels_are_package_data():
    from importlib import resources

    assert resources.files("operators").joinpath("data/levin09_kernels.npz").is_file()
