"""Photographs at the sizes users bring: wall time, iterations and measured peak memory of deblur().

The scene is a bundled scikit-image photograph (``coffee``, or ``--image``) upsampled to the
target size plus the kernel's reach, blurred by Levin kernel 4 on its own support (the valid
convolution: no boundary rule is true at the frame) and given Gaussian noise 0.01, then
quantised to 8 bits as a camera file would be.  Each size runs ``deblur()`` with its defaults
(PnP-ADMM, the shipped certified denoiser, the unknown boundary, the default memory plan) in a
fresh process, through the Python API (``--via api``: no allocator setting) or the command
line (``--via cli``: ``pnp-stable deblur`` on a PNG, which keeps freed memory), so that the peak
resident memory (the kernel's high-water mark, ``VmHWM``) is the run's own.

Runs are appended to ``benchmarks/runs/speed_photo.jsonl`` and the section "speed-photo" of
benchmarks/RESULTS.md is rewritten from all of them.

Usage::

    python benchmarks/speed_photo.py --sizes 0.25,1,4,12 --via api,cli [--noise-arg 0.01|auto] [--max-iter 200]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchlib import append_record, load_records, machine, write_table_section  # the script's folder is on sys.path

_HERE = Path(__file__).resolve().parent
RUNS = _HERE / "runs" / "speed_photo.jsonl"
KERNEL = "levin:4"
NOISE = 0.01
#: Megapixels -> (height, width), 4:3 like a camera sensor.
SIZES = {0.25: (432, 576), 1.0: (864, 1152), 4.0: (1728, 2304), 12.0: (3000, 4000), 24.0: (4240, 5664)}


def make_photo(height: int, width: int, image: str = "coffee", seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(8-bit blurred noisy observation (H, W, 3), sharp scene cropped to the frame, float in [0, 1]).

    Examples
    --------
    >>> y, truth = make_photo(40, 48)
    >>> y.shape, y.dtype, truth.shape
    ((40, 48, 3), dtype('uint8'), (40, 48, 3))
    """
    import torch
    from skimage import data, transform

    from operators import Blur

    op = Blur(KERNEL, boundary="unknown")
    p = op.radius
    src = getattr(data, image)() if not Path(image).exists() else __import__("skimage.io").io.imread(image)
    scene = transform.resize(src.astype(np.float64) / 255.0, (height + 2 * p, width + 2 * p, 3), order=3, anti_aliasing=False)
    scene = np.clip(scene, 0, 1)
    x = torch.from_numpy(np.ascontiguousarray(np.moveaxis(scene, -1, 0)))[None]
    blurred = op.A(x)[0].permute(1, 2, 0).numpy()
    noisy = blurred + NOISE * np.random.default_rng(seed).standard_normal(blurred.shape)
    return np.clip(np.round(noisy * 255), 0, 255).astype(np.uint8), scene[p:-p, p:-p]


def _child(args: argparse.Namespace) -> None:
    """One run in this (fresh) process; prints its record as JSON on the last line."""
    import torch

    from pnp_stable import deblur

    torch.set_num_threads(2)
    H, W = SIZES[args.size]
    with tempfile.TemporaryDirectory() as tmp:
        # Only the 8-bit observation stays in memory during the run: the peak is the run's own.
        y, truth = make_photo(H, W, args.image)
        np.save(Path(tmp) / "truth.npy", truth.astype(np.float32))
        del truth
        noise = None if args.noise_arg == "auto" else float(args.noise_arg)
        import gc

        gc.collect()
        _reset_peak()
        if args.via == "api":
            start = time.perf_counter()
            r = deblur(y, KERNEL, noise, channel_axis=-1, max_iter=args.max_iter, progress=False, max_memory=args.max_memory)
            seconds = time.perf_counter() - start
            out, rep = r.image.astype(np.float64) / 255, r.report
            iterations, converged, guaranteed, notes = rep.iterations[0], rep.converged[0], rep.guaranteed, rep.notes
        else:
            from skimage import io

            src, dst, report = Path(tmp) / "in.png", Path(tmp) / "out.png", Path(tmp) / "r.json"
            io.imsave(src, y, check_contrast=False)
            cmd = ["pnp-stable", "deblur", str(src), "-o", str(dst), "--kernel", KERNEL, "--noise", args.noise_arg,
                   "--max-iter", str(args.max_iter), "--report", str(report), "--no-progress"]
            if args.max_memory:
                cmd += ["--max-memory", args.max_memory]
            start = time.perf_counter()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            seconds = time.perf_counter() - start
            rep = json.loads(report.read_text())
            out = io.imread(dst).astype(np.float64) / 255
            iterations, converged, guaranteed, notes = rep["iterations"][0], rep["converged"][0], rep["guaranteed"], rep["notes"]
        peak = _peak_bytes() if args.via == "api" else None
        truth = np.load(Path(tmp) / "truth.npy")
    psnr = float(10 * np.log10(1 / np.mean((out - truth) ** 2)))
    print(json.dumps(dict(size_mp=args.size, height=H, width=W, via=args.via, noise_arg=args.noise_arg, seconds=seconds,
                          iterations=iterations, converged=converged, guaranteed=guaranteed, psnr=psnr, notes=notes,
                          peak_bytes=peak, max_memory=args.max_memory)))


def _reset_peak() -> None:
    """Start the high-water mark afresh (Linux: writing 5 to clear_refs), so that making the
    photograph does not count."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _peak_bytes() -> int:
    """This process's peak resident memory (VmHWM) since the last reset."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _run(size: float, via: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--child", "--size", str(size), "--via", via, "--image", args.image,
           "--noise-arg", args.noise_arg, "--max-iter", str(args.max_iter)]
    if args.max_memory:
        cmd += ["--max-memory", args.max_memory]
    if via == "cli":
        # The command line runs in a grandchild: measure its peak with GNU time's maximum resident set.
        cmd = ["/usr/bin/time", "-f", "PEAK_KB %M"] + cmd
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    rec = json.loads(done.stdout.strip().splitlines()[-1])
    if via == "cli":
        # The child itself is small; the CLI's process (its child) has the peak: GNU time reports the largest.
        peaks = [int(line.split()[1]) * 1024 for line in done.stderr.splitlines() if line.startswith("PEAK_KB")]
        rec["peak_bytes"] = max(peaks) if peaks else None
    rec.update(machine=machine(), date=time.strftime("%Y-%m-%d"), image=args.image, kernel=KERNEL, noise=NOISE)
    return rec


def table(runs: list[dict]) -> list[str]:
    """Markdown rows of the latest run of each (size, via, noise argument).

    Examples
    --------
    >>> r = dict(size_mp=1.0, height=864, width=1152, via="api", noise_arg="0.01", seconds=30.0, iterations=15,
    ...          converged=True, guaranteed=True, psnr=30.0, peak_bytes=2**30, notes=[])
    >>> table([r])[-1]
    '| 1 | 1152x864 | api | 0.01 | 30.0 | 15 | 2.01 | 1.00 | 30.00 | yes | whole |'
    """
    rows = ["| megapixels | size | via | --noise | wall s | iterations | s / iteration / MP | peak GiB | PSNR | converged, guaranteed | denoiser |",
            "|---:|---|---|---|---:|---:|---:|---:|---:|---|---|"]
    latest = {}
    for r in runs:
        latest[(r["size_mp"], r["via"], r["noise_arg"])] = r
    for key in sorted(latest):
        r = latest[key]
        mp = r["height"] * r["width"] / 1e6
        tiles = next((n.split("evaluated ", 1)[1].split(",")[0] for n in r.get("notes", []) if "evaluated" in n), "whole")
        peak = f"{r['peak_bytes'] / 2**30:.2f}" if r.get("peak_bytes") else "-"
        rows.append(f"| {r['size_mp']:g} | {r['width']}x{r['height']} | {r['via']} | {r['noise_arg']} | {r['seconds']:.1f} | "
                    f"{r['iterations']} | {r['seconds'] / max(r['iterations'], 1) / mp:.2f} | {peak} | {r['psnr']:.2f} | "
                    f"{'yes' if r['guaranteed'] and r['converged'] else 'no'} | {tiles} |")
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="0.25,1,4,12", help="megapixels, from " + ", ".join(f"{s:g}" for s in SIZES))
    ap.add_argument("--via", default="api", help="api, cli or both (api,cli)")
    ap.add_argument("--image", default="coffee", help="a scikit-image data name or an image file")
    ap.add_argument("--noise-arg", default=str(NOISE), help="what deblur() is told: a level, or auto (estimated)")
    ap.add_argument("--max-iter", type=int, default=200)
    ap.add_argument("--max-memory", default=None)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--size", type=float, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        _child(args)
        return 0
    sizes = [float(s) for s in args.sizes.split(",") if s]  # --sizes '': only rewrite the section
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        ap.error(f"unknown sizes {unknown}; choose from {sorted(SIZES)}")
    for size in sizes:
        for via in args.via.split(","):
            rec = _run(size, via, args)
            append_record(RUNS, rec)
            print(json.dumps(rec), flush=True)
    runs = load_records(RUNS)
    description = (
        f"`python benchmarks/speed_photo.py --sizes ... --via ...` (runs in `benchmarks/runs/speed_photo.jsonl`). A bundled "
        f"photograph (`coffee`) upsampled to each size, blurred on its own support by {KERNEL} (no boundary rule true), noise "
        f"{NOISE}, quantised to 8 bits; `deblur()` defaults (PnP-ADMM, shipped certified denoiser, unknown boundary, default "
        "memory plan), colour. Each run in a fresh process; peak = the process's resident high-water mark (VmHWM; for the "
        "command line, GNU time's maximum resident set). `api`: the Python API as a user calls it (no allocator setting); "
        "`cli`: `pnp-stable deblur` on a PNG (keeps freed memory). PSNR against the upsampled scene on the frame. "
        f"Machine: {runs[-1]['machine'] if runs else machine()}."
    )
    write_table_section("speed-photo", "Photographs at full size: time, iterations, peak memory (deblur() defaults)",
                        description, table(runs))
    return 0


if __name__ == "__main__":
    if "--child" not in sys.argv:
        os.environ.setdefault("OMP_NUM_THREADS", "2")
    raise SystemExit(main())
