"""Helpers of the benchmark scripts whose mistakes would corrupt recorded results."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _import_script(name: str):
    # The scripts import their helper ``_report`` from their folder, then drop that folder from
    # sys.path (so that it cannot shadow the packages): put it back for every import.
    sys.path.insert(0, str(BENCH))
    try:
        return importlib.import_module(name)
    finally:
        while str(BENCH) in sys.path:
            sys.path.remove(str(BENCH))


@pytest.fixture(scope="module")
def bench():
    """Import a benchmark script as a module."""
    return _import_script


def test_recorded_deblur_runs_survive_a_cut_line(bench, tmp_path):
    qd = bench("quality_deblur")
    rec = tmp_path / "runs.jsonl"
    rec.write_text(json.dumps({"set": "set12", "psnr": 30.0}) + "\n" + '{"set": "set12", "ps')  # killed mid-write
    assert qd.load_runs(rec) == [{"set": "set12", "psnr": 30.0}]
    assert qd.load_runs(tmp_path / "none.jsonl") == []


def test_run_fingerprints_follow_model_and_defaults(bench, tmp_path):
    qd = bench("quality_deblur")
    fbs, admm = qd.setup_fingerprint("fbs", 1, None), qd.setup_fingerprint("admm", 1, None)
    assert fbs != admm and "gray-averaged-s25" in fbs  # different tuned defaults
    assert qd.setup_fingerprint("tikhonov", 1, None) == qd.setup_fingerprint("tikhonov", 3, None)
    # The model follows the strength the tuned defaults call the denoiser with.
    assert qd.setup_fingerprint("admm", 1, None, 12.75) == admm
    assert "gray-averaged-s50" in qd.setup_fingerprint("fbs", 1, None, 50.0)
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    a.write_bytes(b"one")
    b.write_bytes(b"two")
    assert qd.setup_fingerprint("baseline", 1, str(a)) != qd.setup_fingerprint("baseline", 1, str(b))


def test_speed_problems_are_seeded(bench):
    sd = bench("speed_deblur")
    gray = sd.test_image("gray-256")
    assert gray.shape == (256, 256) and 0 <= gray.min() and gray.max() <= 1
    y1, y2 = sd.blurred(gray, "circular"), sd.blurred(gray, "circular")
    assert np.array_equal(y1, y2) and not np.array_equal(y1, gray)
    assert gray.flags.writeable and np.array_equal(gray, sd.test_image("gray-256"))  # input untouched


def test_divergences_are_counted_not_hidden(bench):
    qd = bench("quality_deblur")
    runs = [{"converged": True, "stop": "tol"}, {"converged": False, "stop": "diverged"},
            {"converged": False, "stop": "diverged"}, {"converged": False, "stop": "max_iter"}]
    assert qd._other_stops(runs) == "diverged 2, max_iter 1"
    assert qd._other_stops(runs[:1]) == "-"
