"""What :func:`pnp_stable.retain_freed_memory` buys: the same deblurring with glibc's default
allocator and with freed memory retained, side by side.

The setting is process-wide and lasting, so each contender runs in a fresh child process; the
children alternate (default, retained, default, ...) so that load on a shared machine hits both
alike.  Each child times one ``deblur()`` after a warm-up call and reports wall, user and system
seconds and minor page faults.  Writes the "allocator" section of benchmarks/RESULTS.md.

Usage::

    python benchmarks/allocator.py [--repeats 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchlib import machine, write_section  # the script's folder is on sys.path

from operators._io import write_atomic

#: The workloads: (label, image, channels, solver, iterations).
WORKLOADS = (
    ("astronaut 256x256 colour, PnP-ADMM", "astronaut", 3, "pnp-admm", 20),
    ("camera 256x256 gray, PnP-FBS", "camera", 1, "pnp-fbs", 20),
)

_CHILD = """
import json, resource, sys, time
import numpy as np
from skimage.transform import resize
from pnp_stable import deblur, retain_freed_memory
from pnp_stable.io import load_image
image, channels, solver, iterations, retain = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5] == "1"
applied = retain_freed_memory() if retain else False
x = load_image(image).astype(np.float32)
x = resize(x, (256, 256) + x.shape[2:], anti_aliasing=True)
if channels == 3 and x.ndim == 2:
    x = np.stack([x] * 3, axis=-1)
if channels == 1 and x.ndim == 3:
    x = x.mean(axis=-1)
run = lambda n: deblur(x, "levin:1", 0.05, solver=solver, boundary="circular", max_iter=n, tol=1e-12, progress=False,
                       channel_axis=-1 if channels == 3 else None)
run(2)
r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
run(iterations)
wall, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps(dict(wall=wall, user=r1.ru_utime - r0.ru_utime, sys=r1.ru_stime - r0.ru_stime,
                      faults=r1.ru_minflt - r0.ru_minflt, applied=applied)))
"""


def run_child(image: str, channels: int, solver: str, iterations: int, retain: bool) -> dict:
    """One timed deblur() in a fresh interpreter; ``retain`` calls retain_freed_memory() first.

    Examples
    --------
    >>> r = run_child("camera", 1, "pnp-fbs", 1, retain=True)
    >>> sorted(r)
    ['applied', 'faults', 'sys', 'user', 'wall']
    """
    out = subprocess.run([sys.executable, "-c", _CHILD, image, str(channels), solver, str(iterations), "1" if retain else "0"],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def summarise(runs: list[dict]) -> dict:
    """Medians of a contender's runs.

    Examples
    --------
    >>> summarise([dict(wall=2.0, user=3.0, sys=1.0, faults=10, applied=False), dict(wall=4.0, user=5.0, sys=1.0, faults=30, applied=False)])
    {'wall': 3.0, 'user': 4.0, 'sys': 1.0, 'faults': 20.0, 'applied': False}
    """
    keys = ("wall", "user", "sys", "faults")
    return {**{k: float(statistics.median(r[k] for r in runs)) for k in keys}, "applied": all(r["applied"] for r in runs)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3, help="runs per contender and workload (alternating)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error("--repeats must be at least 1")
    t0, rows = time.time(), []
    for label, image, channels, solver, iterations in WORKLOADS:
        runs = {False: [], True: []}
        for _ in range(args.repeats):
            for retain in (False, True):
                runs[retain].append(run_child(image, channels, solver, iterations, retain))
        default, retained = summarise(runs[False]), summarise(runs[True])
        rows.append(dict(workload=label, iterations=iterations, default=default, retained=retained,
                         ratio=retained["wall"] / default["wall"]))
        print(rows[-1], flush=True)
    lines = [
        "## Allocator: freed memory retained against glibc's default (`benchmarks/allocator.py`)",
        "",
        f"`python benchmarks/allocator.py --repeats {args.repeats}`: one `deblur()` (Levin kernel 1, noise 0.05, circular "
        "boundary, a fixed number of iterations) in a fresh process with glibc's default allocator and with "
        "`retain_freed_memory()` (what the command line and the benchmark scripts call), alternating; medians of "
        f"{args.repeats} runs each. Ratio = retained / default wall time (below 1: faster). Machine: {machine()}; "
        f"{time.time() - t0:.0f} s.",
        "",
        "| workload | iterations | default: wall (s) | user | sys | page faults | retained: wall (s) | user | sys | page faults | ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        d, k = r["default"], r["retained"]
        lines.append(f"| {r['workload']} | {r['iterations']} | {d['wall']:.2f} | {d['user']:.1f} | {d['sys']:.1f} | {d['faults']:.0f} | "
                     f"{k['wall']:.2f} | {k['user']:.1f} | {k['sys']:.1f} | {k['faults']:.0f} | {r['ratio']:.2f} |")
    if not all(r["retained"]["applied"] for r in rows):
        lines += ["", "The C library here is not glibc: the setting did nothing."]
    write_section("allocator", "\n".join(lines))
    if args.json:
        write_atomic(Path(args.json), lambda tmp: Path(tmp).write_text(json.dumps(rows, indent=1)), overwrite=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
