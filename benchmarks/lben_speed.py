"""Cost of the shipped equilibrium denoiser (LBEN) next to the shipped gradient-flow one, as ratios.

On one 256x256 gray image (cameraman, noise 25/255, float32, batch 1), timed round-robin in
one run so that load on this shared machine hits both alike:

* ``gray-averaged`` (gradient-flow blocks): one forward;
* ``gray-lben``, cold: one equilibrium solve from zero to the model's tolerance (relative
  change 1e-4), its per-frequency operators already built (they are cached per image size);
* ``gray-lben``, warm: a solve started from the previous one on a nearby input, as PnP calls
  it (the input moves by about 1/255 per pixel, a late PnP iteration's step);
* ``gray-lben``, certified accuracy: solved until the *certified* output error bound is at most
  1e-3 (per image, l2 over the pixels), as the PnP solvers ask late in a run, or at most the
  smallest bound float32 can certify (its rounding floor), whichever is larger.

Also: building the operators of one image size (once per size), their memory, the
equilibrium iterations to a relative change of 1e-5 (issue #28's goal: at most 30), the
operator's conditioning (grid norm / monotonicity), and the PSNR of each output.

Usage::

    python benchmarks/lben_speed.py [--repeats 7] [--size 256] [--json out.json] [--no-write]

Writes the "lben-speed" section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from benchlib import interleaved_medians, machine, psnr, write_section  # the script's folder is on sys.path

from skimage import data

from denoisers import load_pretrained




def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--size", type=int, default=256, help="image side: centre crop of cameraman downsampled to 256x256 (default: %(default)s)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--no-write", action="store_true", help="print, do not write RESULTS.md")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    t_start = time.time()

    cam = data.camera()[::2, ::2] / 255.0  # 256 x 256
    top = (cam.shape[0] - args.size) // 2
    truth = torch.tensor(cam[top:top + args.size, top:top + args.size], dtype=torch.float32)[None, None]
    gen = torch.Generator().manual_seed(0)
    noisy = truth + 25 / 255 * torch.randn(truth.shape, generator=gen)
    nearby = noisy + 1 / 255 * torch.randn(truth.shape, generator=gen)
    sigma = 25 / 255

    ode = load_pretrained("gray-averaged")
    lben = load_pretrained("gray-lben")
    net = lben.net
    pad = 2 * net.pad
    grid = (truth.shape[-2] + pad, truth.shape[-1] + pad)

    t0 = time.perf_counter()
    net._cache = None
    with torch.no_grad():
        ops = net.operators(grid)
    build_s = time.perf_counter() - t0
    op_mb = sum(t.numel() * t.element_size() for t in (ops.K, ops.Minv, ops.Uz, ops.Oz)) / 2**20

    def solve(x, *, warm: bool, tol: float | None = None, atol: float | None = None):
        net.warm_start = warm
        if not warm:
            net._warm = None
        old = net.tol
        if tol is not None:
            net.tol = tol
        try:
            with torch.no_grad():
                out = net(x, sigma) if atol is None else net(x, sigma, atol=atol)
        finally:
            net.tol = old
        return out

    solve(noisy, warm=True)
    previous = net._warm  # the state the previous PnP iteration's solve leaves behind

    def warm_call():
        net._warm = previous
        return solve(nearby, warm=True)

    # Iterations and accuracy (not timed).
    stats = {}
    for name, kw in {"cold, tol 1e-4": dict(warm=False), "cold, tol 1e-5": dict(warm=False, tol=1e-5),
                     "certified error <= 1e-3": dict(warm=False, atol=1e-3)}.items():
        out = solve(noisy, **kw)
        stats[name] = dict(iterations=int(net.last_report.iterations[0]), error_bound=float(net.last_report.error_bound[0]),
                           rounding_floor=float(net.last_rounding[0]), psnr=psnr(lben.theta * out + (1 - lben.theta) * noisy, truth))
    out = warm_call()
    stats["warm (nearby input)"] = dict(iterations=int(net.last_report.iterations[0]), error_bound=float(net.last_report.error_bound[0]),
                                        psnr=psnr(lben.theta * out + (1 - lben.theta) * nearby, truth))
    with torch.no_grad():
        ode_psnr = psnr(ode(noisy, sigma), truth)

    with torch.no_grad():
        times = interleaved_medians({
            "gray-averaged": lambda: ode(noisy, sigma),
            "cold, tol 1e-4": lambda: solve(noisy, warm=False),
            "warm (nearby input)": warm_call,
            "certified error <= 1e-3": lambda: solve(noisy, warm=False, atol=1e-3),
        }, repeats=args.repeats)

    base = times["gray-averaged"]
    rows = [("gray-averaged (gradient-flow, one forward)", times["gray-averaged"], "-", "-", ode_psnr)]
    for name in ("cold, tol 1e-4", "warm (nearby input)", "certified error <= 1e-3"):
        s = stats[name]
        label = name if name != "certified error <= 1e-3" else f"certified error <= max(1e-3, float32 floor {s['rounding_floor']:.2g})"
        rows.append((f"gray-lben, {label}", times[name], s["iterations"], f"{s['error_bound']:.2g}", s["psnr"]))
    rows.append(("gray-lben, cold, tol 1e-5 (iterations only)", float("nan"), stats["cold, tol 1e-5"]["iterations"],
                 f"{stats['cold, tol 1e-5']['error_bound']:.2g}", stats["cold, tol 1e-5"]["psnr"]))
    result = dict(times=times, stats=stats, build_s=build_s, operator_mb=op_mb, kappa=ops.lipschitz / ops.mu,
                  mu=ops.mu, lipschitz=ops.lipschitz, step=ops.alpha, ode_psnr=ode_psnr, grid=grid)
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))

    lines = [
        f"`python benchmarks/lben_speed.py --repeats {args.repeats} --size {args.size}` ({time.time() - t_start:.0f} s). "
        f"Cameraman at {args.size}x{args.size}, "
        f"noise 25/255, float32, batch 1; medians of {args.repeats} interleaved runs; shipped models. {machine()}.",
        "",
        "| call | s / call | ratio to gray-averaged | equilibrium iterations | certified output error bound (l2 over the image) | PSNR (dB) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, t, its, bound, p in rows:
        ts = f"{t:.3f}" if t == t else "-"
        ratio = f"{t / base:.1f}x" if t == t else "-"
        lines.append(f"| {name} | {ts} | {ratio} | {its} | {bound} | {p:.2f} |")
    lines += [
        "",
        f"Per image size, once: building the per-frequency operators of the {grid[0]}x{grid[1]} padded grid took "
        f"{build_s:.2f} s (one {net.hidden}x{net.hidden} inverse per frequency; the step and the bounds come from certified "
        f"bounds, no eigenvalue problem); they hold {op_mb:.0f} MB (grows with the pixel count and hidden^2). Conditioning of the "
        f"equilibrium operator: grid norm / monotonicity = {ops.lipschitz / ops.mu:.0f} (certified bounds; Peaceman-Rachford "
        f"step {ops.alpha:.3f}). The smallest output error float32 can certify here (rounding floor) is "
        f"{stats['certified error <= 1e-3']['rounding_floor']:.2g}.",
    ]
    if not args.no_write:
        write_section("lben-speed", "## Equilibrium denoiser cost (`benchmarks/lben_speed.py`)\n\n" + "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
