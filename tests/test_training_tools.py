"""training/side_by_side.py: plans, step rates, and a tiny run of two models side by side."""

from __future__ import annotations

import importlib.util
import json
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "training" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_plans_are_checked(tmp_path):
    sbs = _tool("side_by_side")
    ok = tmp_path / "ok.json"
    ok.write_text(json.dumps([{"name": "a", "args": ["d"]}, {"name": "b", "args": ["d"], "steps": "same:a"}]))
    plan = sbs.load_plan(ok)
    assert [r["steps"] for r in plan] == ["auto", "same:a"]
    for bad, match in ((["x"], "non-empty JSON list"), ([{"name": "a"}, {"name": "a"}], "unique name"),
                       ([{"name": "a", "args": ["d", "--steps", "5"]}], "set by this script"),
                       ([{"name": "a", "steps": "same:b"}], "steps must be")):
        f = tmp_path / "bad.json"
        f.write_text(json.dumps(bad))
        with pytest.raises(ValueError, match=match):
            sbs.load_plan(f)


def test_step_rate_skips_the_warm_up():
    sbs = _tool("side_by_side")
    # 10 slow warm-up steps (1 s each), then steps of 0.1 s.
    wall, log = 0.0, []
    for step in range(1, 101):
        wall += 1.0 if step <= 10 else 0.1
        log.append({"step": step, "wall_time": wall})
    assert sbs.step_rate(log, skip=20) == pytest.approx(10.0)
    assert sbs.step_rate(log[:1]) != sbs.step_rate(log[:1])  # nan: too short to say


def test_two_runs_side_by_side_fit_the_budget_and_are_archived(tmp_path):
    from skimage import data, io

    sbs = _tool("side_by_side")
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for i in range(4):
        io.imsave(imgs / f"{i}.png", data.camera()[i * 60 : i * 60 + 40, :40], check_contrast=False)
    tiny = [str(imgs), "--width", "4", "--depth", "1", "--patch", "16", "--batch-size", "2", "--val-split", "1",
            "--sigma", "0", "--sigma-max", "50/255"]
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps([{"name": "cond", "args": tiny + ["--noise-knots", "0,50/255"]},
                                {"name": "same", "args": tiny + ["--theta", "0.5"], "steps": "same:cond"}]))
    archives = tmp_path / "archives"
    archives.mkdir()
    code = sbs.main([str(plan), "--runs-dir", str(tmp_path / "runs"), "--device", "cpu", "--budget-minutes", "0.05",
                     "--calibrate-seconds", "2", "--archive-dir", str(archives)])
    assert code == 0
    steps = {}
    for name in ("cond", "same"):
        run = tmp_path / "runs" / name
        cfg = json.loads((run / "config.json").read_text())
        steps[name] = cfg["steps"]
        assert cfg["steps"] >= 100 and cfg["steps"] % 100 == 0
        # The recorded command resumes the run: it is pnp-stable train's own.
        cmd = json.loads((run / "command.json").read_text())
        assert cmd[:3] == ["-m", "pnp_stable", "train"] and "--device" in cmd
        with tarfile.open(archives / f"{name}.tgz") as tar:
            assert f"{name}/checkpoint.pt" in tar.getnames()
    assert steps["same"] == steps["cond"]
