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
    # As `python benchmarks/NAME.py` does, the scripts' folder goes on sys.path; no script is
    # named after a package, so this cannot shadow one (test_no_script_shadows_a_package).
    if str(BENCH) not in sys.path:
        sys.path.append(str(BENCH))
    return importlib.import_module(name)


@pytest.fixture(scope="module")
def bench():
    """Import a benchmark script as a module."""
    return _import_script


def test_recorded_deblur_runs_survive_a_cut_line(bench, tmp_path):
    qd = bench("quality_deblur")
    rec = tmp_path / "runs.jsonl"
    rec.write_text(json.dumps({"set": "set12", "psnr": 30.0}) + "\n" + '{"set": "set12", "ps')  # killed mid-write
    assert bench("benchlib").load_records(rec) == [{"set": "set12", "psnr": 30.0}]
    assert bench("benchlib").load_records(tmp_path / "none.jsonl") == []


def test_run_fingerprints_follow_model_and_defaults(bench, tmp_path):
    qd = bench("quality_deblur")
    fbs, admm = qd.setup_fingerprint("fbs", 1, None), qd.setup_fingerprint("admm", 1, None)
    assert fbs.startswith("gray-averaged:") and admm.startswith("gray-firm:")  # each solver's own model and defaults
    assert qd.setup_fingerprint("tikhonov", 1, None) == qd.setup_fingerprint("tikhonov", 3, None)
    from pnp_stable.defaults import defaults_for

    for method, name in (("fbs", "colour-averaged"), ("admm", "colour-firm")):  # colour: colour models and defaults
        fp = qd.setup_fingerprint(method, 3, None)
        assert fp.startswith(name + ":") and fp.endswith(str(defaults_for(f"pnp-{method}", 3)))
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


def test_tuning_choice_breaks_ties_towards_less_smoothing(bench):
    td = bench("tune_deblur")
    rows = [dict(strength=4.0, mean_psnr=24.43), dict(strength=3.0, mean_psnr=24.40), dict(strength=2.0, mean_psnr=24.30)]
    assert td.choose_default(rows)["strength"] == 4.0  # the declared criterion: best mean PSNR
    assert td.choose_default(rows, tie_db=0.05)["strength"] == 3.0
    assert td.choose_default(rows, tie_db=1.0)["strength"] == 2.0


def test_shipped_defaults_are_the_tuned_choice_on_record(bench):
    # pnp_stable.defaults must ship what benchmarks/tune_deblur.py chose on training images.
    from pnp_stable.defaults import defaults_for

    td = bench("tune_deblur")
    # The noise-conditioned models (one per image type and solver condition) were tuned on the
    # held-out training crops of each set, both solvers in each record.
    # Rounds on 4 crops explored; the rounds on all 12 held-out crops decide.
    deciding = ((1, "tuning-cond-gray-12.json", ("pnp-fbs", "pnp-admm")), (3, "tuning-cond-colour-12.json", ("pnp-fbs", "pnp-admm")))
    for channels, record, solvers in deciding:
        rows = json.loads((BENCH / "runs" / record).read_text())["rows"]
        for solver in solvers:
            scored = [r for r in rows if r["solver"] == solver]
            # Each record holds rounds on its own images only (gray BSD400 / colour CBSD432).
            assert scored and all(r["problems"].get("channels", 1) == channels for r in scored)
            # Rounds that recorded their model chain must have used today's shipped models.
            assert all(r["problems"].get("models", td.model_chain(channels)) == td.model_chain(channels) for r in scored)
            best = td.choose_default(scored)
            shipped = defaults_for(solver, channels)
            assert shipped.strength == best["strength"]
            assert shipped.step_factor == best.get("step_factor")
            assert shipped.step_scale == best.get("step_scale")


def test_tuning_rounds_merge_only_on_the_same_problems(bench, tmp_path, monkeypatch):
    td = bench("tune_deblur")
    prev = tmp_path / "round.json"
    row = {"solver": "pnp-fbs", "strength": 1.0, "step_factor": 1.9, "mean_psnr": 20.0, "mean_iterations": 10,
           "per_noise": {"2.55": 21.0, "7.65": 20.0, "12.75": 19.0}, "command": "python x", "problems":
           {"images": 2, "crop": 32, "kernels": "1", "max_iter": 5}}
    prev.write_text(json.dumps({"rows": [row]}))
    monkeypatch.setattr(sys, "argv", ["tune_deblur.py", "--data", "nowhere", "--images", "3", "--crop", "32",
                                      "--kernels", "1", "--max-iter", "5", "--solvers", "", "--previous", str(prev)])
    monkeypatch.setattr(td, "held_out_crops", lambda *a, **k: __import__("torch").zeros(3, 1, 32, 32))
    with pytest.raises(SystemExit, match="other problems"):
        td.main()


def test_tuning_crops_held_out_images_in_their_channels(bench, tmp_path):
    import torch
    from skimage import io

    td = bench("tune_deblur")
    rng = np.random.default_rng(0)
    for i in range(5):
        io.imsave(tmp_path / f"{i}.png", rng.integers(0, 256, (40, 50, 3), dtype=np.uint8), check_contrast=False)
    colour = td.held_out_crops(str(tmp_path), 2, 16, val_split=3, channels=3)
    gray = td.held_out_crops(str(tmp_path), 2, 16, val_split=3)
    assert colour.shape == (2, 3, 16, 16) and gray.shape == (2, 1, 16, 16) and colour.dtype == torch.float64
    last = io.imread(tmp_path / "4.png")[12:28, 17:33].astype(np.float64) / 255  # centre crop of the last image
    assert np.allclose(colour[1].permute(1, 2, 0).numpy(), last)
    assert not td.same_problems({"images": 2, "crop": 16}, {"images": 2, "crop": 16, "channels": 3})
    assert td.same_problems({"images": 2, "crop": 16, "channels": 3}, {"images": 2, "crop": 16, "channels": 3})


def test_tuning_records_its_command_without_local_paths(bench, monkeypatch):
    td = bench("tune_deblur")
    monkeypatch.setattr(sys, "argv", ["tune_deblur.py", "--data", "/home/me/bsd", "--images", "4", "--json=/tmp/o.json",
                                      "--previous", "r1.json", "--admm-steps", ""])
    assert td._argv_without_data_and_outputs() == ["--images", "4", "--admm-steps", ""]
    assert td._quoted("") == "''" and td._quoted("1,6") == "1,6"


@pytest.mark.parametrize("method", ["tikhonov", "fbs", "admm", "pnp-tv", "baseline"])
def test_every_deblurring_method_runs_on_the_float64_problem(bench, method):
    # The protocol's problems are float64; a float32 network (the baseline) must still run.
    import torch

    from denoisers.baselines import DnCNN
    from operators import Blur
    from operators.noise import Gaussian

    qd = bench("quality_deblur")
    truth = torch.rand(1, 1, 24, 24, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    op = Blur("box:3", boundary="circular", noise_model=Gaussian(0.05, rng=torch.Generator().manual_seed(0)))
    y = op(truth, seed=1)
    baseline = DnCNN(channels=1, width=4, depth=3) if method == "baseline" else None
    x, its, conv, guar, stop = qd.run_one(method, y, op, "box:3", 0.05, 3, baseline)
    assert x.shape == truth.shape and x.dtype == torch.float64 and bool(torch.isfinite(x).all())
    assert guar is (None if method == "tikhonov" else method in ("fbs", "admm"))
    assert isinstance(stop, str) and (its == 0) == (method == "tikhonov")


def _public_functions(module) -> list[str]:
    """Functions a script defines for others to call (``main`` is the command line)."""
    import inspect

    return [name for name, fn in inspect.getmembers(module, inspect.isfunction)
            if fn.__module__ == module.__name__ and not name.startswith("_") and name != "main"]


@pytest.mark.parametrize("script", sorted(p.stem for p in BENCH.glob("*.py")))
def test_benchmark_docstring_examples_pass(bench, script):
    # pytest collects doctests from the packages only; the scripts' examples are checked here.
    import doctest

    module = bench(script)
    lacking = [name for name in _public_functions(module) if ">>>" not in (getattr(module, name).__doc__ or "")]
    assert not lacking, f"{script}.py: public functions without a docstring example: {lacking}"
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
    assert result.attempted >= len(_public_functions(module))


def test_per_level_gain_is_what_the_best_point_per_level_adds(bench):
    td = bench("tune_deblur")
    rows = [dict(strength=s, per_noise={2.55: p1, 12.75: p2}) for s, p1, p2 in ((1, 30.0, 24.0), (2, 30.4, 23.0), (3, 29.0, 24.2))]
    gain = td.per_level_gain(rows, rows[0])
    assert gain == pytest.approx({2.55: 0.4, 12.75: 0.2})
    assert min(td.per_level_gain(rows, r)[2.55] for r in rows) == 0.0


def test_tuning_on_whole_images_resumes_from_its_record(bench, tmp_path, monkeypatch):
    """--crop 0 deblurs each whole image on its own; a rerun scores only the points not yet recorded."""
    from skimage import io

    td = bench("tune_deblur")
    data = tmp_path / "train"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i, shape in enumerate([(40, 44), (36, 48), (44, 40)]):
        io.imsave(data / f"{i}.png", rng.integers(0, 256, shape, dtype=np.uint8), check_contrast=False)
    record = tmp_path / "round.json"
    sections = []
    monkeypatch.setattr(td, "write_section", lambda name, body, path=None: sections.append(name))
    calls = []
    real_deblur = td.deblur
    monkeypatch.setattr(td, "deblur", lambda y, *a, **k: calls.append(tuple(y.shape)) or real_deblur(y, *a, **k))

    def tune(strengths: str) -> None:
        monkeypatch.setattr(sys, "argv", ["tune_deblur.py", "--data", str(data), "--images", "2", "--crop", "0", "--kernels", "1",
                                          "--max-iter", "3", "--solvers", "pnp-fbs", "--fbs-strengths", strengths,
                                          "--json", str(record)])
        td.main()

    tune("1")
    assert sorted(set(calls)) == [(1, 1, 36, 48), (1, 1, 44, 40)] and len(calls) == 2 * 3  # 2 images x 3 noise levels
    first = json.loads(record.read_text())
    assert first["rows"][0]["problems"]["crop"] == 0 and sections == ["tuning-cond-gray"]
    calls.clear()
    tune("1,2")
    assert len(calls) == 2 * 3  # only strength 2 was scored
    rows = json.loads(record.read_text())["rows"]
    assert [r["strength"] for r in rows] == [1.0, 2.0] and rows[0]["mean_psnr"] == first["rows"][0]["mean_psnr"]


def test_deblur_chunks_table_every_recorded_method_and_survive_a_cut_record(bench, tmp_path, monkeypatch, capsys):
    """A chunk of one method keeps the other methods' recorded runs in the table (with a
    like-for-like line on their common problems), and a record cut by a kill does not swallow
    the next run."""
    from skimage import io

    qd = bench("quality_deblur")
    (tmp_path / "set12").mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        io.imsave(tmp_path / "set12" / f"{i}.png", rng.integers(0, 256, (48, 48), dtype=np.uint8), check_contrast=False)
    record = tmp_path / "runs.jsonl"
    monkeypatch.setattr(qd, "write_section", lambda name, body, path=None: None)

    def chunk(methods: str, limit: str) -> str:
        monkeypatch.setattr(sys, "argv", ["quality_deblur.py", "--data", str(tmp_path), "--sets", "set12", "--kernels", "1",
                                          "--levels", "12.75", "--methods", methods, "--max-iter", "3", "--limit", limit,
                                          "--runs", str(record)])
        qd.main()
        return capsys.readouterr().out

    chunk("tikhonov,fbs", "1")
    record.write_text(record.read_text() + '{"set": "set12", "ps')  # a kill cut the last line
    out = chunk("tikhonov", "2")
    rows = {line.split("|")[3].strip(): int(line.split("|")[4]) for line in out.splitlines() if line.startswith("| set12 |")}
    assert rows == {"tikhonov": 2, "fbs": 1}  # fbs kept from the first chunk
    assert "on the 1 problems of set12 at noise 12.75 that all of them ran" in out
    assert len(bench("benchlib").load_records(record)) == 3  # 2 from the first chunk, 1 new tikhonov run: none lost to the cut line


def test_gspnp_protocol_runs_ten_kernels_on_centre_crops_in_a_section_of_its_own(bench, tmp_path, monkeypatch, capsys):
    """Kernels 9 (box 9x9) and 10 (25x25 Gaussian) join the Levin ones, on centre crops; the
    table gives Levin-only and all-kernel means; crop runs never stand in for whole-image ones."""
    from skimage import io

    qd = bench("quality_deblur")
    (tmp_path / "set12").mkdir()
    io.imsave(tmp_path / "set12" / "0.png", np.random.default_rng(0).integers(0, 256, (40, 44), dtype=np.uint8),
              check_contrast=False)
    record, sections = tmp_path / "runs.jsonl", {}
    monkeypatch.setattr(qd, "write_section", lambda name, body, path=None: sections.setdefault(name, body))

    def run(*extra: str) -> str:
        monkeypatch.setattr(sys, "argv", ["quality_deblur.py", "--data", str(tmp_path), "--sets", "set12", "--levels", "12.75",
                                          "--methods", "tikhonov", "--runs", str(record), *extra])
        qd.main()
        return capsys.readouterr().out

    out = run("--protocol", "gspnp", "--kernels", "1,9,10", "--crop", "32")
    runs = bench("benchlib").load_records(record)
    assert [(r["kernel"], r["crop"]) for r in runs] == [(1, 32), (9, 32), (10, 32)]
    assert list(sections) == ["deblurring-set12-gspnp"] and "box:9, gaussian:1.6,size=25" in out
    levin_row = next(line for line in out.splitlines() if line.startswith("| set12 | 12.75 | tikhonov | ") and line.count("|") == 6)
    levin, every = (float(cell.split("(")[0]) for cell in levin_row.split("|")[4:6])
    assert levin == pytest.approx(runs[0]["psnr"], abs=0.006)
    assert every == pytest.approx(np.mean([r["psnr"] for r in runs]), abs=0.006)
    run("--kernels", "1")  # whole images: a new run, not the crop's
    assert [r.get("crop") for r in bench("benchlib").load_records(record)] == [32, 32, 32, None]
    with pytest.raises(SystemExit):
        run("--kernels", "0,11")


def test_allocator_benchmark_child_times_one_deblur(bench):
    import platform

    ab = bench("allocator")
    row = ab.run_child("camera", 1, "pnp-fbs", 1, retain=True)
    assert sorted(row) == ["applied", "faults", "sys", "user", "wall"]
    assert row["wall"] > 0 and row["faults"] >= 0
    assert row["applied"] == (platform.system() == "Linux" and platform.libc_ver()[0] == "glibc")


def test_tuning_scores_each_point_at_the_strength_deblur_uses(bench, tmp_path, monkeypatch):
    # A grid point must be scored at sigma = strength x noise, the rule deblur() applies (no cap).
    import types

    import torch

    td = bench("tune_deblur")
    asked = []

    def spy(y, kernel, noise, *, sigma, **kw):
        asked.append((round(noise * 255, 2), sigma, kw.get("step")))
        return types.SimpleNamespace(image=y, report=types.SimpleNamespace(iterations=[1] * y.shape[0]))

    monkeypatch.setattr(td, "deblur", spy)
    monkeypatch.setattr(td, "write_section", lambda *a, **k: None)
    monkeypatch.setattr(td, "held_out_crops", lambda *a, **k: torch.full((1, 1, 32, 32), 0.5, dtype=torch.float64))
    out = tmp_path / "t.json"
    monkeypatch.setattr(sys, "argv", ["tune_deblur.py", "--data", "nowhere", "--images", "1", "--crop", "32", "--kernels", "1",
                                      "--max-iter", "1", "--solvers", "pnp-admm", "--admm-strengths", "4", "--admm-steps", "",
                                      "--admm-step-scales", "0.2", "--json", str(out)])
    td.main()
    assert [lv for lv, _, _ in asked] == [2.55, 7.65, 12.75]
    for level, sigma, step in asked:
        assert sigma == pytest.approx(4 * level / 255) and step == td.SolverDefaults(step_scale=0.2).step_for(level / 255)
    (row,) = json.loads(out.read_text())["rows"]
    assert td.point_key(row) == ("pnp-admm", ("step_scale", 0.2), ("strength", 4.0))


def test_deblur_shards_split_the_problems_and_join_into_one_table(bench, tmp_path, monkeypatch, capsys):
    """--shard K/N processes run disjoint problems that together cover the protocol; their
    joined records make the table without running anything again."""
    from skimage import io

    qd = bench("quality_deblur")
    (tmp_path / "set12").mkdir()
    rng = np.random.default_rng(1)
    for i in range(3):
        io.imsave(tmp_path / "set12" / f"{i}.png", rng.integers(0, 256, (40, 40), dtype=np.uint8), check_contrast=False)
    sections = []
    monkeypatch.setattr(qd, "write_section", lambda name, body, path=None: sections.append(body))

    def run(record: Path, *extra: str) -> str:
        monkeypatch.setattr(sys, "argv", ["quality_deblur.py", "--data", str(tmp_path), "--sets", "set12", "--kernels", "1,2",
                                          "--levels", "12.75", "--methods", "tikhonov", "--runs", str(record), *extra])
        qd.main()
        return capsys.readouterr().out

    parts = [tmp_path / f"shard{k}.jsonl" for k in range(2)]
    for k, part in enumerate(parts):
        assert "join the shards' records" in run(part, "--shard", f"{k}/2")
    assert sections == []  # a shard writes no table
    keys = [{(r["image"], r["kernel"]) for r in bench("benchlib").load_records(part)} for part in parts]
    assert len(keys[0]) == 3 and len(keys[1]) == 3 and not keys[0] & keys[1]  # 6 problems, split 3 + 3
    assert {r["device"] for part in parts for r in bench("benchlib").load_records(part)} == {"cpu"}
    joined = tmp_path / "runs.jsonl"
    joined.write_text("".join(part.read_text() for part in parts))
    monkeypatch.setattr(qd, "run_one", lambda *a, **k: pytest.fail("a recorded run was run again"))
    out = run(joined)
    assert "| set12 | 12.75 | tikhonov | 6 |" in out and "PARTIAL" not in out and len(sections) == 1
    # A shard reuses the runs of the main record (--reuse) rather than redoing them.
    run(tmp_path / "shard-again.jsonl", "--shard", "0/2", "--reuse", str(joined))
    assert bench("benchlib").load_records(tmp_path / "shard-again.jsonl") == []
    with pytest.raises(SystemExit):
        run(joined, "--shard", "2/2")
    assert "--shard must be K/N" in capsys.readouterr().err


def test_parallel_deblur_script_runs_every_problem_once(tmp_path):
    """benchmarks/parallel_deblur.sh starts N shards whose records together hold each problem once."""
    import os
    import subprocess

    from skimage import io

    (tmp_path / "set12").mkdir()
    rng = np.random.default_rng(2)
    for i in range(2):
        io.imsave(tmp_path / "set12" / f"shard-test-{i}.png", rng.integers(0, 256, (32, 32), dtype=np.uint8), check_contrast=False)
    out = tmp_path / "out"
    args = ["--data", str(tmp_path), "--sets", "set12", "--kernels", "1", "--levels", "2.55,12.75", "--methods", "tikhonov"]
    env = {**os.environ, "PYTHONPATH": str(BENCH.parent)}
    done = subprocess.run(["bash", str(BENCH / "parallel_deblur.sh"), "2", str(out), *args], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr + "".join(p.read_text() for p in out.glob("*.log"))
    runs = [json.loads(line) for part in sorted(out.glob("shard-*.jsonl")) for line in part.read_text().splitlines()]
    assert sorted((r["image"], r["level"]) for r in runs) == [(f"shard-test-{i}.png", lv) for i in range(2) for lv in (2.55, 12.75)]
    bad = subprocess.run(["bash", str(BENCH / "parallel_deblur.sh"), "0", str(out)], capture_output=True, text=True)
    assert bad.returncode == 2 and "N a positive integer" in bad.stderr


def test_denoising_table_takes_an_extra_certified_model(bench, tmp_path, monkeypatch, capsys):
    """--extra tabulates a model that is not shipped (an LBEN here) beside the shipped ones."""
    import torch
    from skimage import io

    from denoisers.lben import LBENDenoiser, LBENNet
    from denoisers.weights import export_weights

    qd = bench("quality_denoise")
    rng = np.random.default_rng(0)
    for folder in ("test/set12", "train"):
        (tmp_path / folder).mkdir(parents=True)
        io.imsave(tmp_path / folder / "0.png", rng.integers(0, 256, (24, 24), dtype=np.uint8), check_contrast=False)
    torch.manual_seed(0)
    extra = export_weights(LBENDenoiser(LBENNet(1, hidden=2), theta=0.5), tmp_path / "probe-lben.pt")
    sections = {}
    monkeypatch.setattr(qd, "write_section", lambda name, body, path=None: sections.setdefault(name, body))
    monkeypatch.setattr(sys, "argv", ["quality_denoise.py", "--data", str(tmp_path / "test"), "--train", str(tmp_path / "train"),
                                      "--sets", "set12", "--levels", "25", "--extra", str(extra)])
    qd.main()
    row = next(line for line in sections["denoising-set12"].splitlines() if line.startswith("| set12 | probe-lben"))
    assert "LBENDenoiser, certified alpha 0.5000" in row and "s per image" in row


def test_deblur_table_runs_an_extra_certified_model_in_the_solvers_it_admits(bench, tmp_path, monkeypatch, capsys):
    import torch
    from skimage import io

    from denoisers.lben import LBENDenoiser, LBENNet
    from denoisers.weights import export_weights

    qd = bench("quality_deblur")
    (tmp_path / "set12").mkdir()
    io.imsave(tmp_path / "set12" / "0.png", np.random.default_rng(0).integers(0, 256, (24, 24), dtype=np.uint8),
              check_contrast=False)
    torch.manual_seed(0)
    extra = export_weights(LBENDenoiser(LBENNet(1, hidden=2, max_iter=3000), theta=0.5), tmp_path / "probe.pt")
    record = tmp_path / "runs.jsonl"
    monkeypatch.setattr(qd, "write_section", lambda name, body, path=None: None)
    monkeypatch.setattr(sys, "argv", ["quality_deblur.py", "--data", str(tmp_path), "--sets", "set12", "--kernels", "1",
                                      "--levels", "12.75", "--methods", "tikhonov", "--extra", str(extra),
                                      "--max-iter", "100", "--runs", str(record)])
    qd.main()
    runs = {r["method"]: r for r in bench("benchlib").load_records(record)}
    assert set(runs) == {"tikhonov", "probe/fbs", "probe/admm"}
    assert runs["probe/fbs"]["guaranteed"] and runs["probe/admm"]["guaranteed"]
    assert runs["probe/admm"]["setup"].startswith("extra:")
    assert "--extra probe.pt" in capsys.readouterr().out


def test_lben_speed_reports_what_the_solves_did(tmp_path):
    """The equilibrium cost benchmark on a small crop: the certified-accuracy solve meets its
    bound, a tighter tolerance costs iterations, a warm start saves them."""
    mod = _import_script("lben_speed")
    out = tmp_path / "speed.json"
    assert mod.main(["--repeats", "1", "--size", "48", "--no-write", "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    s = r["stats"]
    certified = s["certified error <= 1e-3"]
    assert certified["error_bound"] <= max(1e-3, certified["rounding_floor"])
    assert s["cold, tol 1e-5"]["iterations"] > s["cold, tol 1e-4"]["iterations"] >= s["warm (nearby input)"]["iterations"]
    assert r["kappa"] > 1 and r["operator_mb"] > 0 and set(r["times"]) >= {"gray-averaged", "cold, tol 1e-4"}


def test_no_script_shadows_a_package():
    import pkgutil

    others = [p for p in sys.path if Path(p or ".").resolve() != BENCH]
    installed = {m.name for m in pkgutil.iter_modules(others)} | set(sys.builtin_module_names) | set(sys.stdlib_module_names)
    scripts = {p.stem for p in BENCH.glob("*.py")}
    assert scripts.isdisjoint(installed | {"operators", "denoisers", "pnp_stable", "deepinv"}), scripts & installed


def test_shared_helpers_keep_their_promises(bench):
    import doctest

    import torch

    lib = bench("benchlib")
    assert doctest.testmod(lib).failed == 0
    rng = np.random.default_rng(0)
    gray, colour = rng.integers(0, 256, (6, 7), dtype=np.uint8), rng.random((6, 7, 3))
    for img in (gray, colour):
        back = lib.batch_to_image(lib.image_to_batch(img))
        np.testing.assert_allclose(back, img / 255.0 if img.dtype == np.uint8 else img)
    x, t = torch.rand(1, 3, 16, 16, dtype=torch.float64), torch.rand(1, 3, 16, 16, dtype=torch.float64)
    p, _ = lib.metrics(x, t)
    assert abs(p - lib.psnr(x, t)) < 1e-9 and abs(p - lib.metrics(lib.batch_to_image(x), lib.batch_to_image(t))[0]) < 1e-12


def test_robust_cifar_table_from_an_evaluated_classifier(tmp_path, capsys):
    from skimage.io import imsave

    from pnp_stable.robust.models import LipschitzClassifier
    from pnp_stable.robust.training import save_classifier

    rng = np.random.default_rng(0)
    for c, name in enumerate(["cat", "dog"]):
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(4):
            imsave(tmp_path / "data" / name / f"{i}.png", (rng.random((8, 8, 3)) * 255).astype(np.uint8), check_contrast=False)
    net = LipschitzClassifier(widths=(4, 8), blocks=(1, 1), image_size=8, classes=2)
    save_classifier(net, tmp_path / "c.pt", name="lipschitz", metadata={"steps_done": 3, "training_wall_time_s": 60.0,
                                                                      "training_config": {"epochs": 1}, "classes": ["cat", "dog"]})
    rc = _import_script("robust_cifar")
    out = tmp_path / "r.json"
    assert rc.main([str(tmp_path / "c.pt"), str(tmp_path / "data"), "--pgd-images", "4", "--pgd-steps", "2", "--no-write",
                    "--json", str(out)]) == 0
    text = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["images"] == 8 and "| ours (gradient-flow blocks, certified) |" in text and "CPL-XS" in text
    assert f"certified <= {result['lipschitz_bound']:.4f}" in text and "3 steps (1 epochs)" in text
