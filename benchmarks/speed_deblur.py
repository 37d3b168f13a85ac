"""End-to-end deblurring speed with the shipped certified denoiser, time to a 1e-4 residual
next to deepinv's PnP (with and without its Anderson acceleration), and per-iteration time.

Problems, all blurred by Levin kernel 1 with Gaussian noise 0.01:

* 256x256 gray (scikit-image's cameraman), the main job;
* 512x512 colour (scikit-image's astronaut);
* 1024x1024 colour (``--cases colour-1024``: peak memory of a large solve).

The ``unknown`` boundary restores symmetric-blurred data with the unknown-boundary model (the
image on the extended domain, cropped back).

End to end, each case runs ``deblur()`` with its defaults (shipped denoiser, tuned strength
and step, ``tol=1e-4``) in a fresh Python process, so that the seconds include nothing cached
by another case and the peak memory is that of the solve alone.  Reported: time to load and
certify the shipped model (once per process), solve time, iterations, convergence, PSNR and
the growth of the peak resident memory during the solve (Linux ``VmHWM``, reset after the
model is loaded).

To tolerance: our solvers (safeguarded Anderson acceleration on, then off) against deepinv's
``PGD`` and ``ADMM`` (``deepinv.optim.optim_builder``, plain and with its Anderson acceleration)
on the same operator, denoiser, strength and step, each stopped by its own 1e-4 relative
residual test (ours on the governing sequence, deepinv's on ``x``), in one process, alternating.

Per iteration, our PnP-FBS and PnP-ADMM run a fixed number of iterations (no early stop)
interleaved with deepinv's on the same problem; the table gives both times and their ratio.

Memory: the resident set every 10 iterations of 100 ADMM iterations (no early stop): it must
not grow.

Writes the "speed" section of benchmarks/RESULTS.md.

Usage::

    python benchmarks/speed_deblur.py [--iterations 10] [--repeats 2] [--quick] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchlib import machine, write_section  # the script's folder is on sys.path

from operators import Blur, operator_norm
from operators.noise import Gaussian
from pnp_stable import deblur, pnp_admm, pnp_fbs
from pnp_stable.api import plan_run, resolve_denoiser
from pnp_stable.allocator import retain_freed_memory

NOISE = 0.01
KERNEL = "levin:1"
CASES = {"gray-256": (256, 1), "colour-512": (512, 3), "colour-1024": (1024, 3)}


def test_image(case: str) -> np.ndarray:
    """The case's clean image, float64 in [0, 1]: (H, W) gray or (H, W, 3) colour.

    Examples
    --------
    >>> test_image("gray-256").shape, test_image("colour-512").shape
    ((256, 256), (512, 512, 3))
    """
    from skimage import data
    from skimage.transform import resize

    size, channels = CASES[case]
    img = data.camera() if channels == 1 else data.astronaut()
    shape = (size, size) if channels == 1 else (size, size, 3)
    return resize(img / 255.0, shape, anti_aliasing=True)


def blurred(clean: np.ndarray, boundary: str) -> np.ndarray:
    """``clean`` blurred by the case's kernel with seeded noise (float64, same layout).

    Examples
    --------
    >>> clean = test_image("gray-256")
    >>> y = blurred(clean, "circular")
    >>> y.shape == clean.shape, bool((y == blurred(clean, "circular")).all())
    (True, True)
    """
    t = torch.from_numpy(clean)
    t = t[None, None] if t.ndim == 2 else t.permute(2, 0, 1)[None]
    g = torch.Generator().manual_seed(0)
    data_boundary = "symmetric" if boundary == "unknown" else boundary  # the unknown model restores these data
    y = Blur(KERNEL, boundary=data_boundary).A(t) + NOISE * torch.randn(t.shape, generator=g, dtype=t.dtype)
    y = y[0, 0] if clean.ndim == 2 else y[0].permute(1, 2, 0)
    return y.numpy()


def _memory_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def child(case: str, solver: str, boundary: str, max_iter: int | None = None, anderson: bool = True) -> dict:
    """One end-to-end run in this process (called in a fresh interpreter by ``main``).

    ``max_iter`` caps the solver's iterations (default: ``deblur()``'s own), for quick checks;
    ``anderson=False`` runs the plain iteration.

    Examples
    --------
    >>> run = child("gray-256", "pnp-admm", "circular", max_iter=2)
    >>> run["iterations"], run["stop"], run["guaranteed"], run["load_s"] >= 0
    (2, 'max_iter', True, True)
    """
    torch.set_num_threads(2)
    clean = test_image(case)
    y = blurred(clean, boundary)
    channels = CASES[case][1]
    t0 = time.perf_counter()
    resolve_denoiser("default", channels=channels, solver=solver)  # loads and certifies; cached per process
    load_s = time.perf_counter() - t0
    # Reset the high-water mark so that the peak below is the solve's (Linux >= 4.0).
    try:
        Path("/proc/self/clear_refs").write_text("5")
        reset = True
    except OSError:
        reset = False
    base = _memory_kb("VmRSS")
    t0 = time.perf_counter()
    limit = {} if max_iter is None else {"max_iter": max_iter}
    r = deblur(y, KERNEL, NOISE, solver=solver, boundary=boundary, channel_axis=-1 if channels == 3 else None, progress=False,
               anderson=anderson, **limit)
    solve_s = time.perf_counter() - t0
    peak = _memory_kb("VmHWM")
    from skimage.metrics import peak_signal_noise_ratio

    return {"case": case, "solver": solver, "boundary": boundary, "anderson": anderson, "load_s": load_s, "solve_s": solve_s,
            "iterations": r.report.iterations[0], "stop": r.report.stop_reason[0], "guaranteed": r.report.guaranteed,
            "psnr_blurred": peak_signal_noise_ratio(clean, y, data_range=1.0),
            "psnr": peak_signal_noise_ratio(clean, np.clip(r.image, 0, 1), data_range=1.0),
            "peak_growth_mb": (peak - base) / 1024 if reset else None, "rss_mb": base / 1024}


def end_to_end(case: str, solver: str, boundary: str, max_iter: int | None = None, anderson: bool = True,
               verify_in_full: bool = False) -> dict:
    """:func:`child` in a fresh interpreter (2 threads), so that no run inherits another's caches.

    ``verify_in_full`` bypasses the verification cache, so ``load_s`` includes the float64
    certification of the shipped model (what a first run on a machine pays).

    Examples
    --------
    >>> run = end_to_end("gray-256", "pnp-fbs", "circular", max_iter=2)
    >>> run["case"], run["iterations"], run["solve_s"] > 0
    ('gray-256', 2, True)
    """
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", case, solver, boundary]
    if max_iter is not None:
        cmd += ["--child-max-iter", str(max_iter)]
    if not anderson:
        cmd += ["--child-plain"]
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    if verify_in_full:
        env["PNP_STABLE_NO_CACHE"] = "1"
    out = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"end-to-end run {case} {solver} {boundary} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def per_iteration(case: str, iterations: int, repeats: int) -> list[dict]:
    """Seconds per iteration, ours against deepinv's, same operator/denoiser/strength/step.

    Examples
    --------
    >>> rows = per_iteration("gray-256", iterations=1, repeats=1)
    >>> [(r["solver"], r["deepinv"]) for r in rows], all(r["ratio"] > 0 for r in rows)
    ([('pnp-fbs', 'PGD'), ('pnp-admm', 'ADMM')], True)
    """
    from deepinv.optim import optim_builder
    from deepinv.optim.data_fidelity import L2
    from deepinv.optim.prior import PnP

    y, op, channels = _problem(case)
    rows = []
    for solver, deepinv_name in (("pnp-fbs", "PGD"), ("pnp-admm", "ADMM")):
        den, sigma, step, run = _ours(solver, y, op, channels)
        ours = lambda: run(iterations, 1e-30)  # noqa: E731
        prior = PnP(denoiser=lambda v, sigma=None, **kw: den(v, sigma))
        model = optim_builder(iteration=deepinv_name, prior=prior, data_fidelity=L2(),
                              params_algo={"stepsize": step, "g_param": sigma, "lambda": 1.0}, max_iter=iterations,
                              early_stop=False)
        theirs = lambda: model(y, op)  # noqa: E731
        times: dict[str, list[float]] = {"ours": [], "deepinv": []}
        with torch.no_grad():
            ours(), theirs()  # warm-up (first calls allocate FFT plans and buffers)
            for k in range(repeats):
                # Alternate who goes first: on this shared machine the first of a pair ran slower.
                order = (("ours", ours), ("deepinv", theirs)) if k % 2 == 0 else (("deepinv", theirs), ("ours", ours))
                for who, fn in order:
                    t0 = time.perf_counter()
                    fn()
                    times[who].append(time.perf_counter() - t0)
        t_ours, t_theirs = min(times["ours"]) / iterations, min(times["deepinv"]) / iterations
        rows.append({"case": case, "solver": solver, "deepinv": deepinv_name, "iterations": iterations,
                     "ours_s_per_iteration": t_ours, "deepinv_s_per_iteration": t_theirs, "ratio": t_ours / t_theirs})
    return rows


def _problem(case: str):
    """(y, operator, channels) of a case, circular boundary, float32."""
    channels = CASES[case][1]
    op = Blur(KERNEL, boundary="circular", noise_model=Gaussian(NOISE))
    y = torch.from_numpy(blurred(test_image(case), "circular")).float()
    y = y[None, None] if y.ndim == 2 else y.permute(2, 0, 1)[None]
    return y, op, channels


class _Counted:
    """A denoiser that counts its calls (deepinv does not report its iteration count)."""

    def __init__(self, den):
        self.den, self.calls = den, 0

    def __call__(self, v, sigma=None, **kw):
        self.calls += 1
        return self.den(v, sigma)


def _ours(solver: str, y: torch.Tensor, op, channels: int):
    """(denoiser, strength, step, run) of ``solver`` as deblur() plans it; ``run(max_iter, tol,
    anderson)`` solves the case's problem."""
    plan = plan_run("default", solver, noise_level=NOISE, channels=channels)  # what deblur() runs
    sigma, den = plan.sigma, plan.denoiser
    if solver == "pnp-fbs":
        step = plan.options["step_factor"] / operator_norm(op, tuple(y.shape)).value ** 2
        fn = pnp_fbs
    else:
        step = plan.options["step"]
        fn = pnp_admm

    def run(max_iter: int, tol: float, anderson=True):
        return fn(y, op, den, sigma=sigma, step=step, max_iter=max_iter, tol=tol, anderson=anderson)

    return den, sigma, step, run


def to_tolerance(case: str, repeats: int = 1, tol: float = 1e-4, max_iter: int = 300) -> list[dict]:
    """Wall time to a ``tol`` relative residual: ours (accelerated, plain) against deepinv's PnP
    (plain, Anderson), same operator, denoiser, strength and step, alternating in one process.

    Examples
    --------
    >>> rows = to_tolerance("gray-256", tol=0.5, max_iter=3)
    >>> sorted({r["method"] for r in rows})[:2], all(r["seconds"] > 0 for r in rows)
    (['deepinv ADMM', 'deepinv ADMM + Anderson'], True)
    """
    from deepinv.optim import optim_builder
    from deepinv.optim.data_fidelity import L2
    from deepinv.optim.prior import PnP
    from skimage.metrics import peak_signal_noise_ratio

    clean = test_image(case)
    y, op, channels = _problem(case)
    rows = []
    for solver, deepinv_name in (("pnp-admm", "ADMM"), ("pnp-fbs", "PGD")):
        den, sigma, step, run = _ours(solver, y, op, channels)

        def ours(aa):
            x, rep = run(max_iter, tol, aa)
            return x, rep.iterations[0]

        def theirs(anderson):
            counted = _Counted(den)
            model = optim_builder(iteration=deepinv_name, prior=PnP(denoiser=counted), data_fidelity=L2(),
                                  params_algo={"stepsize": step, "g_param": sigma, "lambda": 1.0}, max_iter=max_iter,
                                  early_stop=True, thres_conv=tol, crit_conv="residual", anderson_acceleration=anderson)
            return model(y, op), counted.calls

        contenders = {f"ours {solver} + safeguarded Anderson": lambda: ours(True), f"ours {solver}": lambda: ours(False),
                      f"deepinv {deepinv_name}": lambda: theirs(False), f"deepinv {deepinv_name} + Anderson": lambda: theirs(True)}
        times: dict[str, list[float]] = {k: [] for k in contenders}
        results = {}
        with torch.no_grad():
            contenders[f"ours {solver}"]()  # warm-up: FFT plans, buffers
            for k in range(repeats):
                names = list(contenders) if k % 2 == 0 else list(reversed(contenders))
                for name in names:
                    t0 = time.perf_counter()
                    results[name] = contenders[name]()
                    times[name].append(time.perf_counter() - t0)
        for name, (x, its) in results.items():
            img = x[0, 0].numpy() if channels == 1 else x[0].permute(1, 2, 0).numpy()
            rows.append({"case": case, "solver": solver, "method": name, "seconds": min(times[name]), "iterations": int(its),
                         "psnr": peak_signal_noise_ratio(clean, np.clip(img.astype(np.float64), 0, 1), data_range=1.0)})
    return rows


def memory_over_iterations(case: str = "gray-256", iterations: int = 100) -> list[tuple[int, float]]:
    """(iteration, resident MB) every 10 iterations of a run of PnP-ADMM with no early stop.

    Examples
    --------
    >>> trace = memory_over_iterations(iterations=10)
    >>> trace[0][0], trace[-1][0]
    (1, 10)
    """
    y, op, channels = _problem(case)
    plan = plan_run("default", "pnp-admm", noise_level=NOISE, channels=channels)
    trace = []

    def record(k, x, rel):
        if k == 0 or (k + 1) % 10 == 0:
            trace.append((k + 1, _memory_kb("VmRSS") / 1024))

    pnp_admm(y, op, plan.denoiser, sigma=plan.sigma, step=plan.options["step"], max_iter=iterations,
             tol=1e-30, callback=record)
    return trace


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=10, help="iterations per timed run (per-iteration table)")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per side (best is kept)")
    parser.add_argument("--cases", default="gray-256,colour-512", help=f"comma-separated subset of {', '.join(CASES)}")
    parser.add_argument("--quick", action="store_true", help="gray case, 2 iterations, no RESULTS.md")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", nargs=3, metavar=("CASE", "SOLVER", "BOUNDARY"), help=argparse.SUPPRESS)
    parser.add_argument("--child-max-iter", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-plain", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    retain_freed_memory()  # as the command line does: no page faults on every iteration's buffers
    if args.child:
        print(json.dumps(child(*args.child, max_iter=args.child_max_iter, anderson=not args.child_plain)))
        return 0
    torch.set_num_threads(2)
    cases = ["gray-256"] if args.quick else [c.strip() for c in args.cases.split(",")]
    unknown = set(cases) - set(CASES)
    if unknown:
        parser.error(f"unknown case(s) {sorted(unknown)}; choose from {list(CASES)}")
    iterations = 2 if args.quick else args.iterations
    t_start = time.perf_counter()
    runs = [end_to_end("gray-256", "pnp-admm", "circular", verify_in_full=True, max_iter=2 if args.quick else None)]
    runs[0]["note"] = "first run on a machine: certificate verified in full"
    print(runs[-1], flush=True)
    for case in cases:
        big = CASES[case][0] > 512
        for solver in ("pnp-admm",) if big else ("pnp-admm", "pnp-fbs"):
            for boundary in ("circular",) if big else ("circular", "symmetric", "unknown"):
                for anderson in (True,) if (big or boundary == "unknown") else (True, False):
                    runs.append(end_to_end(case, solver, boundary, anderson=anderson, max_iter=2 if args.quick else None))
                    print(runs[-1], flush=True)
    small = [c for c in cases if CASES[c][0] <= 512]
    tolerance = [row for case in small for row in to_tolerance(case, 1 if args.quick else args.repeats,
                                                                 max_iter=3 if args.quick else 300)]
    per_it = [row for case in small for row in per_iteration(case, iterations, 1 if args.quick else args.repeats)]
    memory = memory_over_iterations(iterations=10 if args.quick else 100)
    wall = time.perf_counter() - t_start

    lines = [
        "## Speed (`benchmarks/speed_deblur.py`)",
        "",
        f"Machine: {machine()}. `python benchmarks/speed_deblur.py --cases {','.join(cases)}` ({wall:.0f} s). Levin kernel 1, "
        "noise 0.01, `deblur()` with its defaults (PnP-ADMM, shipped certified denoiser, tuned strength and step, safeguarded "
        "Anderson acceleration, tol 1e-4), each run in a fresh process. Load: loading the shipped model with its certificate "
        "verified, once per process (from the verification cache, except the first row: verified in full in float64). Peak "
        "memory: growth of the resident set during the solve. unknown: symmetric-blurred data restored with the "
        "unknown-boundary model.",
        "",
        "| image | solver | boundary | Anderson | load (s) | solve (s) | iterations | stop | guaranteed | PSNR blurred -> restored | peak memory growth (MB) |",
        "|---|---|---|---|---:|---:|---:|---|---|---|---:|",
    ]
    for r in runs:
        mem = f"{r['peak_growth_mb']:.0f}" if r["peak_growth_mb"] is not None else "n/a"
        lines.append(f"| {r['case']} | {r['solver']} | {r['boundary']} | {'on' if r['anderson'] else 'off'} | {r['load_s']:.2f}"
                     f"{' (full)' if r.get('note') else ''} | {r['solve_s']:.1f} | "
                     f"{r['iterations']} | {r['stop']} | {'yes' if r['guaranteed'] else 'no'} | "
                     f"{r['psnr_blurred']:.2f} -> {r['psnr']:.2f} | {mem} |")
    lines += [
        "",
        f"To a 1e-4 relative residual (each method's own test: ours on the governing sequence, deepinv's on x), circular "
        f"boundary, same operator, denoiser, strength and step, best of {args.repeats} alternating runs in one process; ratio: "
        "seconds over those of the plain deepinv method (below 1: faster). deepinv's Anderson: its defaults (history 10, "
        "beta 0.9), no safeguard. Iterations: evaluations of the map (deepinv: denoiser calls).",
        "",
        "| image | method | seconds | iterations | PSNR | ratio to deepinv |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in tolerance:
        base = next(t for t in tolerance if t["case"] == r["case"] and t["solver"] == r["solver"] and t["method"].startswith("deepinv")
                    and "Anderson" not in t["method"])
        lines.append(f"| {r['case']} | {r['method']} | {r['seconds']:.2f} | {r['iterations']} | {r['psnr']:.2f} | "
                     f"{r['seconds'] / base['seconds']:.2f} |")
    lines += [
        "",
        f"Per iteration, circular boundary, {iterations} iterations without early stop, best of {args.repeats} "
        "alternating runs per side, same operator, denoiser, strength and step (ratio below 1: ours faster).",
        "",
        "| image | ours | deepinv | ours (s / iteration) | deepinv (s / iteration) | ratio |",
        "|---|---|---|---:|---:|---:|",
    ]
    for r in per_it:
        lines.append(f"| {r['case']} | {r['solver']} | {r['deepinv']} | {r['ours_s_per_iteration']:.3f} | "
                     f"{r['deepinv_s_per_iteration']:.3f} | {r['ratio']:.2f} |")
    lines += ["", "Resident memory during 100 PnP-ADMM iterations without early stop (gray 256x256; iteration: MB): "
              + ", ".join(f"{k}: {mb:.0f}" for k, mb in memory)
              + f"; growth from iteration 10 to {memory[-1][0]}: {memory[-1][1] - memory[min(1, len(memory) - 1)][1]:+.1f} MB."]
    md = "\n".join(lines)
    print(md)
    if not args.quick:
        write_section("speed", md)
    if args.json:
        args.json.write_text(json.dumps({"end_to_end": runs, "to_tolerance": tolerance, "per_iteration": per_it,
                                         "memory": memory}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
