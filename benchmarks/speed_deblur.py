"""End-to-end deblurring speed with the shipped certified denoiser, and per-iteration time
next to deepinv's PnP with the same denoiser (issue #5, benchmark c).

Two problems, both blurred by Levin kernel 1 with Gaussian noise 0.01:

* 256x256 gray (scikit-image's cameraman), the size of the issue's goal (a 1e-4 relative
  residual in under 20 s on this CPU);
* 512x512 colour (scikit-image's astronaut).

End to end, each case runs ``deblur()`` with its defaults (shipped denoiser, tuned strength
and step, ``tol=1e-4``) in a fresh Python process, so that the seconds include nothing cached
by another case and the peak memory is that of the solve alone.  Reported: time to load and
certify the shipped model (once per process), solve time, iterations, convergence, PSNR and
the growth of the peak resident memory during the solve (Linux ``VmHWM``, reset after the
model is loaded).

Per iteration, our PnP-FBS and PnP-ADMM run a fixed number of iterations (no early stop)
interleaved with deepinv's ``PGD`` and ``ADMM`` (``deepinv.optim.optim_builder``) on the same
operator, denoiser, strength and step; the table gives both times and their ratio.

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

from _report import machine, write_section  # noqa: E402  (script folder is on sys.path)

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from operators import Blur, operator_norm  # noqa: E402
from operators.noise import Gaussian  # noqa: E402
from pnp_stable import deblur, pnp_admm, pnp_fbs  # noqa: E402
from pnp_stable.api import resolve_denoiser  # noqa: E402
from pnp_stable.defaults import default_strength, defaults_for  # noqa: E402
from pnp_stable.allocator import retain_freed_memory  # noqa: E402

NOISE = 0.01
KERNEL = "levin:1"
CASES = {"gray-256": (256, 1), "colour-512": (512, 3)}


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
    y = Blur(KERNEL, boundary=boundary).A(t) + NOISE * torch.randn(t.shape, generator=g, dtype=t.dtype)
    y = y[0, 0] if clean.ndim == 2 else y[0].permute(1, 2, 0)
    return y.numpy()


def _memory_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def child(case: str, solver: str, boundary: str, max_iter: int | None = None) -> dict:
    """One end-to-end run in this process (called in a fresh interpreter by ``main``).

    ``max_iter`` caps the solver's iterations (default: ``deblur()``'s own), for quick checks.

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
               **limit)
    solve_s = time.perf_counter() - t0
    peak = _memory_kb("VmHWM")
    from skimage.metrics import peak_signal_noise_ratio

    return {"case": case, "solver": solver, "boundary": boundary, "load_s": load_s, "solve_s": solve_s,
            "iterations": r.report.iterations[0], "stop": r.report.stop_reason[0], "guaranteed": r.report.guaranteed,
            "psnr_blurred": peak_signal_noise_ratio(clean, y, data_range=1.0),
            "psnr": peak_signal_noise_ratio(clean, np.clip(r.image, 0, 1), data_range=1.0),
            "peak_growth_mb": (peak - base) / 1024 if reset else None, "rss_mb": base / 1024}


def end_to_end(case: str, solver: str, boundary: str, max_iter: int | None = None) -> dict:
    """:func:`child` in a fresh interpreter (2 threads), so that no run inherits another's caches.

    Examples
    --------
    >>> run = end_to_end("gray-256", "pnp-fbs", "circular", max_iter=2)
    >>> run["case"], run["iterations"], run["solve_s"] > 0
    ('gray-256', 2, True)
    """
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", case, solver, boundary]
    if max_iter is not None:
        cmd += ["--child-max-iter", str(max_iter)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False, env={**os.environ, "OMP_NUM_THREADS": "2"})
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

    clean = test_image(case)
    channels = CASES[case][1]
    op = Blur(KERNEL, boundary="circular", noise_model=Gaussian(NOISE))
    yn = blurred(clean, "circular")
    y = torch.from_numpy(yn).float()
    y = y[None, None] if y.ndim == 2 else y.permute(2, 0, 1)[None]
    rows = []
    for solver, deepinv_name in (("pnp-fbs", "PGD"), ("pnp-admm", "ADMM")):
        tuned = defaults_for(solver, channels)
        sigma = default_strength(solver, NOISE, channels)
        den = resolve_denoiser("default", channels=channels, solver=solver, sigma=sigma)  # the model deblur() picks
        if solver == "pnp-fbs":
            step = tuned.step_factor / operator_norm(op, tuple(y.shape)).value ** 2
            ours = lambda: pnp_fbs(y, op, den, sigma=sigma, step=step, max_iter=iterations, tol=1e-30)  # noqa: E731
        else:
            step = tuned.step_for(NOISE)
            ours = lambda: pnp_admm(y, op, den, sigma=sigma, step=step, max_iter=iterations, tol=1e-30)  # noqa: E731
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=10, help="iterations per timed run (per-iteration table)")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per side (best is kept)")
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated subset of {', '.join(CASES)}")
    parser.add_argument("--quick", action="store_true", help="gray case, 2 iterations, no RESULTS.md")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", nargs=3, metavar=("CASE", "SOLVER", "BOUNDARY"), help=argparse.SUPPRESS)
    parser.add_argument("--child-max-iter", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    retain_freed_memory()  # as the command line does: no page faults on every iteration's buffers
    if args.child:
        print(json.dumps(child(*args.child, max_iter=args.child_max_iter)))
        return 0
    torch.set_num_threads(2)
    cases = ["gray-256"] if args.quick else [c.strip() for c in args.cases.split(",")]
    unknown = set(cases) - set(CASES)
    if unknown:
        parser.error(f"unknown case(s) {sorted(unknown)}; choose from {list(CASES)}")
    iterations = 2 if args.quick else args.iterations
    t_start = time.perf_counter()
    runs = []
    for case in cases:
        for solver in ("pnp-fbs", "pnp-admm"):
            for boundary in ("circular", "symmetric"):
                runs.append(end_to_end(case, solver, boundary))
                print(runs[-1], flush=True)
    per_it = [row for case in cases for row in per_iteration(case, iterations, 1 if args.quick else args.repeats)]
    wall = time.perf_counter() - t_start

    lines = [
        "## Speed (`benchmarks/speed_deblur.py`)",
        "",
        f"Machine: {machine()}. `python benchmarks/speed_deblur.py` ({wall:.0f} s). Levin kernel 1, noise 0.01, "
        "`deblur()` with its defaults (shipped certified denoiser, tuned strength and step, tol 1e-4), each run in a fresh "
        "process. Load: loading and certifying the shipped model, once per process. Peak memory: growth of the resident "
        "set during the solve. Goal (issue #5): 256x256 gray to a 1e-4 residual in under 20 s.",
        "",
        "| image | solver | boundary | load (s) | solve (s) | iterations | stop | guaranteed | PSNR blurred -> restored | peak memory growth (MB) |",
        "|---|---|---|---:|---:|---:|---|---|---|---:|",
    ]
    for r in runs:
        mem = f"{r['peak_growth_mb']:.0f}" if r["peak_growth_mb"] is not None else "n/a"
        lines.append(f"| {r['case']} | {r['solver']} | {r['boundary']} | {r['load_s']:.1f} | {r['solve_s']:.1f} | "
                     f"{r['iterations']} | {r['stop']} | {'yes' if r['guaranteed'] else 'no'} | "
                     f"{r['psnr_blurred']:.2f} -> {r['psnr']:.2f} | {mem} |")
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
    md = "\n".join(lines)
    print(md)
    if not args.quick:
        write_section("speed", md)
    if args.json:
        args.json.write_text(json.dumps({"end_to_end": runs, "per_iteration": per_it}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
