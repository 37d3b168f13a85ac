"""Train several runs side by side on one device within a fixed time budget.

Made for a GPU lent for a few minutes: every run of a plan starts at once (small models leave
a GPU mostly idle, so runs sharing it lose little), a short calibration measures each run's
step rate *while they all share the device*, and each run is then given the number of steps
that fits the budget, so that its learning-rate schedule ends inside it.  Run folders are
ordinary ``pnp-stable train`` folders: a run that did not finish resumes anywhere with the
same command (recorded in ``command.json`` beside it).  A compressed archive of each run
folder is refreshed every minute, so a machine taken back early still leaves checkpoints.

The plan is a JSON list of runs::

    [{"name": "gray-cond", "args": ["data/bsd400", "--channels", "1", ...]},
     {"name": "gray-dncnn", "args": [...], "steps": "same:gray-cond"}]

``args`` are ``pnp-stable train`` arguments without ``-o``, ``--steps``, ``--max-minutes``,
``--device``, ``--val-every`` and ``--checkpoint-every`` (set here); ``steps`` is ``"auto"``
(default: fit the budget), ``"same:NAME"`` (as many as run NAME; for equal-budget baselines)
or a number.

Example (CPU, tiny)::

    python training/side_by_side.py plan.json --runs-dir /tmp/runs --device cpu \\
        --budget-minutes 0.5 --calibrate-seconds 5 --archive-dir /tmp/archives
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

RESERVED = ("-o", "--out", "--steps", "--max-minutes", "--device", "--val-every", "--checkpoint-every")


def load_plan(path: str | os.PathLike) -> list[dict]:
    """Read and check a plan: unique names, no reserved options, known step rules."""
    plan = json.loads(Path(path).read_text())
    if not isinstance(plan, list) or not plan or not all(isinstance(r, dict) for r in plan):
        raise ValueError(f"{path}: a plan is a non-empty JSON list of runs (objects with a name and args)")
    names = [r.get("name") for r in plan]
    if len(set(names)) != len(names) or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"{path}: every run needs a unique name; got {names}")
    for r in plan:
        bad = [a for a in r.get("args", []) if a in RESERVED]
        if bad:
            raise ValueError(f"run {r['name']}: {bad} are set by this script; remove them from args")
        rule = r.setdefault("steps", "auto")
        if not (rule == "auto" or isinstance(rule, int) or (isinstance(rule, str) and rule[5:] in names and rule.startswith("same:"))):
            raise ValueError(f"run {r['name']}: steps must be 'auto', 'same:NAME' or a number; got {rule!r}")
    return plan


def _command(run: dict, out: Path, *, steps: int, minutes: float, device: str, val_every: int, checkpoint_every: int) -> list[str]:
    return [sys.executable, "-m", "pnp_stable", "train", *run["args"], "-o", str(out), "--steps", str(steps),
            "--max-minutes", f"{minutes:g}", "--device", device, "--val-every", str(val_every),
            "--checkpoint-every", str(checkpoint_every), "--no-progress"]


def _launch(cmds: dict[str, list[str]], dirs: dict[str, Path]) -> dict[str, subprocess.Popen]:
    procs = {}
    for name, cmd in cmds.items():
        dirs[name].mkdir(parents=True, exist_ok=True)
        (dirs[name] / "command.json").write_text(json.dumps(cmd[1:], indent=1))
        err = open(dirs[name] / "stderr.txt", "a")
        procs[name] = subprocess.Popen(cmd, stdout=err, stderr=subprocess.STDOUT)
    return procs


def _wait(procs: dict[str, subprocess.Popen], archive=None, every: float = 60.0) -> dict[str, int]:
    last = time.monotonic()
    while any(p.poll() is None for p in procs.values()):
        time.sleep(2.0)
        if archive is not None and time.monotonic() - last > every:
            archive()
            last = time.monotonic()
    return {n: p.returncode for n, p in procs.items()}


def _log(run_dir: Path) -> list[dict]:
    f = run_dir / "log.jsonl"
    return [json.loads(x) for x in f.read_text().splitlines()] if f.is_file() else []


def step_rate(log: list[dict], skip: int = 20) -> float:
    """Training steps per second of step time, after the first ``skip`` steps (warm-up; at
    most a third of a short log)."""
    skip = min(skip, len(log) // 3)
    if len(log) < skip + 2:
        return float("nan")
    a, b = log[skip], log[-1]
    return (b["step"] - a["step"]) / max(b["wall_time"] - a["wall_time"], 1e-9)


def _pack(dirs: dict[str, Path], archive_dir: Path) -> None:
    # One archive per run (NAME.tgz), replaced atomically: a reader never sees half of one.
    for name, d in dirs.items():
        if d.is_dir():
            tmp = archive_dir / f".{name}.tgz.partial"
            with tarfile.open(tmp, "w:gz") as tar:
                tar.add(d, arcname=d.name)
            os.replace(tmp, archive_dir / f"{name}.tgz")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("plan")
    ap.add_argument("--runs-dir", required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--budget-minutes", type=float, required=True, help="training time each run is planned to take")
    ap.add_argument("--calibrate-seconds", type=float, default=30.0)
    ap.add_argument("--safety", type=float, default=0.85, help="fraction of the calibrated steps to plan")
    ap.add_argument("--validations", type=int, default=8, help="validation points per run")
    ap.add_argument("--archive-dir", default=None, help="write NAME.tgz of each run folder here, refreshed every minute")
    args = ap.parse_args(argv)
    plan = load_plan(args.plan)
    runs_dir = Path(args.runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)

    # 1. Calibration: every run at once, an effectively endless schedule, no validation.
    cal_dirs = {r["name"]: runs_dir / "_calibration" / r["name"] for r in plan}
    t0 = time.monotonic()
    cal = {r["name"]: _command(r, cal_dirs[r["name"]], steps=10**7, minutes=args.calibrate_seconds / 60, device=args.device,
                               val_every=10**7, checkpoint_every=10**7) for r in plan}
    codes = _wait(_launch(cal, cal_dirs))
    rates = {n: step_rate(_log(d)) for n, d in cal_dirs.items()}
    print(f"calibration ({time.monotonic() - t0:.0f} s, all runs at once on {args.device}):", flush=True)
    for n, rate in rates.items():
        print(f"  {n}: exit {codes[n]}, {rate:.2f} steps/s", flush=True)
        if codes[n] != 0:
            print("    " + "\n    ".join((cal_dirs[n] / "stderr.txt").read_text().splitlines()[-15:]), flush=True)
    plan = [r for r in plan if codes[r["name"]] == 0 and rates[r["name"]] == rates[r["name"]]]
    if not plan:
        print("no run survived calibration", flush=True)
        return 1

    # 2. Steps that fit the budget, then the real runs, all at once.
    steps: dict[str, int] = {}
    for r in plan:
        if r["steps"] == "auto":
            steps[r["name"]] = max(100, int(rates[r["name"]] * 60 * args.budget_minutes * args.safety) // 100 * 100)
        elif isinstance(r["steps"], int):
            steps[r["name"]] = r["steps"]
    for r in plan:
        if isinstance(r["steps"], str) and r["steps"].startswith("same:"):
            steps[r["name"]] = steps[r["steps"][5:]]
    dirs = {r["name"]: runs_dir / r["name"] for r in plan}
    cmds = {}
    for r in plan:
        n = steps[r["name"]]
        val_every = max(50, n // args.validations // 50 * 50)
        cmds[r["name"]] = _command(r, dirs[r["name"]], steps=n, minutes=1.2 * args.budget_minutes, device=args.device,
                                   val_every=val_every, checkpoint_every=min(500, val_every))
        print(f"{r['name']}: {n} steps, validation every {val_every}", flush=True)
    archive = (lambda: _pack(dirs, Path(args.archive_dir))) if args.archive_dir else None
    t1 = time.monotonic()
    codes = _wait(_launch(cmds, dirs), archive)
    if archive:
        archive()
    print(f"runs ({(time.monotonic() - t1) / 60:.1f} min):", flush=True)
    for n, d in dirs.items():
        log = _log(d)
        vals = [(e["step"], round(e["val_psnr"], 3)) for e in log if "val_psnr" in e]
        done = log[-1]["step"] if log else 0
        print(f"  {n}: exit {codes[n]}, {done}/{steps[n]} steps, {step_rate(log):.2f} steps/s, validation {vals}", flush=True)
        if codes[n] != 0:
            print("    " + "\n    ".join((d / "stderr.txt").read_text().splitlines()[-15:]), flush=True)
    return 0 if all(c == 0 for c in codes.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
