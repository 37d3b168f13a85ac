"""The solver registry: decorator, lookup errors, entry-point plugins."""

from __future__ import annotations

import sys

import pytest
import torch

from pnp_stable import registry
from pnp_stable.registry import available_solvers, get_solver, register_solver


def test_builtins_listed_with_guarantees():
    solvers = available_solvers()
    assert {"pnp-fbs", "pnp-admm"} <= set(solvers)
    assert "Krasnosel'skii-Mann" in solvers["pnp-fbs"] and "alpha <= 1/2" in solvers["pnp-admm"]
    assert list(solvers) == sorted(solvers)


def test_decorator_registration_and_duplicates():
    @register_solver("test-adjoint", guarantee="none", replace=True)
    def adjoint(y, operator, denoiser, **options):
        return operator.A_adjoint(y), None

    from operators import Blur

    y = torch.rand(1, 1, 8, 8)
    x, _ = get_solver("test-adjoint")(y, Blur("box:3"), None)
    torch.testing.assert_close(x, Blur("box:3").A_adjoint(y))
    with pytest.raises(ValueError, match="already registered"):
        register_solver("test-adjoint")(adjoint)
    with pytest.raises(ValueError, match="non-empty"):
        register_solver("  ")
    with pytest.raises(TypeError, match="callable"):
        register_solver("x-bad", replace=True)(42)


def test_unknown_name_lists_available():
    with pytest.raises(ValueError, match=r"unknown solver 'nope'; available: .*pnp-admm, .*pnp-fbs"):
        get_solver("nope")


def test_entry_point_plugin(tmp_path, monkeypatch):
    """A solver declared by an installed distribution's entry point is found by name."""
    (tmp_path / "fake_pnp_plugin.py").write_text(
        "def plugin_solver(y, operator, denoiser, **options):\n    return y, None\n"
        "plugin_solver.guarantee = 'none: returns y'\n"
        "plugin_solver.denoiser_alpha = 0.25\n"
        "def broken():\n    raise RuntimeError\n"
    )
    dist = tmp_path / "fake_pnp_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-pnp-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[pnp_stable.solvers]\nplugin-echo = fake_pnp_plugin:plugin_solver\nplugin-missing = fake_pnp_plugin:no_such_name\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    registry._reset_plugins()
    try:
        with pytest.warns(RuntimeWarning, match="plugin-missing"):
            solvers = available_solvers()
        assert solvers["plugin-echo"] == "none: returns y" and "plugin-missing" not in solvers
        y = torch.ones(1, 1, 2, 2)
        assert get_solver("plugin-echo")(y, None, None)[0] is y
        assert registry.solver_info("plugin-echo").denoiser_alpha == 0.25
    finally:
        registry._reset_plugins()
        sys.modules.pop("fake_pnp_plugin", None)


def test_denoiser_alpha_is_recorded_and_checked():
    assert registry.solver_info("pnp-admm").denoiser_alpha == 0.5
    assert registry.solver_info("pnp-fbs").denoiser_alpha is None

    @register_solver("test-alpha", denoiser_alpha=0.4, replace=True)
    def echo(y, operator, denoiser, **options):
        return y, None

    assert registry.solver_info("test-alpha").denoiser_alpha == 0.4
    with pytest.raises(ValueError, match=r"denoiser_alpha must lie in \(0, 1\)"):
        register_solver("test-alpha-bad", denoiser_alpha=1.5)(echo)
    with pytest.raises(ValueError, match="unknown solver"):
        registry.solver_info("nope")
