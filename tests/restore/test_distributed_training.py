"""Training under torchrun: 2 CPU processes (gloo, loopback) with DistributedDataParallel."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def train_dir(tmp_path_factory):
    from skimage import data, io

    d = tmp_path_factory.mktemp("train")
    for i in range(4):
        io.imsave(d / f"{i}.png", data.camera()[i * 60:i * 60 + 40, 100:140], check_contrast=False)
    return d


def _train(train_dir, out, procs, *extra):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]), OMP_NUM_THREADS="1")
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(procs)] if procs > 1 else [sys.executable]
    args = [*launch, "-m", "pnp_stable", "train", str(train_dir), "-o", str(out), "--width", "4", "--depth", "1", "--patch", "16",
            "--batch-size", "4", "--steps", "6", "--val-split", "1", "--val-every", "3", "--checkpoint-every", "2", "--threads", "1",
            "--no-progress", *extra]
    r = subprocess.run(args, capture_output=True, text=True, timeout=300, env=env, cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout


def _state(out):
    return torch.load(out / "checkpoint.pt", weights_only=True)


def test_distributed_run_resumes_exactly_and_follows_the_single_process_run(train_dir, tmp_path):
    text = _train(train_dir, tmp_path / "whole", 2)
    assert "finished at step 6" in text and "on 2 processes" in text
    _train(train_dir, tmp_path / "parts", 2, "--stop-after", "3")
    assert _state(tmp_path / "parts")["step"] == 3
    _train(train_dir, tmp_path / "parts", 2)
    whole, parts = _state(tmp_path / "whole"), _state(tmp_path / "parts")
    assert parts["step"] == whole["step"] == 6
    for k, v in whole["model"].items():
        assert torch.equal(v, parts["model"][k]), k  # a resumed distributed run equals an uninterrupted one
    _train(train_dir, tmp_path / "single", 1)
    single = _state(tmp_path / "single")
    for k, v in whole["model"].items():  # each rank trains on half of the same global batch
        torch.testing.assert_close(v, single["model"][k], rtol=1e-4, atol=1e-5)
    # The exported model's certificate is recomputed from the (synchronised) weights.
    from pnp_stable.cli import main

    assert main(["export", str(tmp_path / "whole"), "-o", str(tmp_path / "m.pt")]) == 0
    assert main(["certify", str(tmp_path / "m.pt"), "--no-empirical"]) == 0


def test_a_batch_that_does_not_split_over_the_processes_is_refused(train_dir, tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]), OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "pnp_stable",
                        "train", str(train_dir), "-o", str(tmp_path / "r"), "--width", "4", "--depth", "1", "--patch", "16",
                        "--batch-size", "3", "--steps", "2", "--val-split", "1", "--no-progress"],
                       capture_output=True, text=True, timeout=300, env=env, cwd=REPO)
    assert r.returncode != 0 and "does not split evenly over 2 processes" in r.stderr


def test_replica_check_passes_alone():
    from denoisers.training import check_replicas_agree

    check_replicas_agree(torch.nn.Linear(3, 3))
