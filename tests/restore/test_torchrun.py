"""Folder restoration under torchrun: 2 CPU processes (gloo, loopback) give the 1-process outputs."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from pnp_stable.restore import save_image

REPO = Path(__file__).resolve().parents[2]


def _run(args, env):
    return subprocess.run(args, capture_output=True, text=True, timeout=300, env=env, cwd=REPO)


def test_two_processes_restore_every_file_once_and_match_one_process(tmp_path):
    rng = np.random.default_rng(0)
    src = tmp_path / "in"
    src.mkdir()
    for i in range(5):
        save_image(src / f"{i}.png", rng.random((20, 20)))
    save_image(src / "c.png", rng.random((20, 20, 3)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]), OMP_NUM_THREADS="1")
    common = ["restore", str(src), "--kernel", "box:3", "--noise", "0.02", "--max-iter", "15", "--batch-size", "1", "--no-progress"]
    two = _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "pnp_stable",
                *common, "-o", str(tmp_path / "two")], env)
    assert two.returncode == 0, two.stderr[-2000:]
    # each rank restored its own half: 3 + 3 of the 6 files, no file twice
    assert "rank 0: 3 restored" in two.stdout and "rank 1: 3 restored" in two.stdout
    one = _run([sys.executable, "-m", "pnp_stable", *common, "-o", str(tmp_path / "one")], env)
    assert one.returncode == 0, one.stderr[-2000:]
    names = sorted(p.name for p in src.iterdir())
    for name in names:
        assert (tmp_path / "two" / name).read_bytes() == (tmp_path / "one" / name).read_bytes(), name
    rows = list(csv.DictReader((tmp_path / "two" / "summary.csv").open()))
    assert [r["file"] for r in rows] == names and {r["status"] for r in rows} == {"done"}
    iters = {r["file"]: r["iterations"] for r in csv.DictReader((tmp_path / "one" / "summary.csv").open())}
    assert {r["file"]: r["iterations"] for r in rows} == iters
