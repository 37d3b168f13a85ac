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
