"""Deblurring real photographs: no boundary rule is true, so which boundary model serves best?

A photograph's frame cuts a scene that goes on beyond it.  To imitate that, each full test
image (BSD68 gray, CBSD68 colour: 481x321) is blurred by a Levin kernel on its own support
(the *valid* convolution: every blurred pixel sees only real scene pixels), the centre 256x256
of the blur is cropped (the largest crop every kernel allows), and seeded Gaussian noise is
added.  The sharp reference is the matching 256x256 of the scene.  No padding rule holds at
the crop's border, while the unknown-boundary model (``Blur(boundary="unknown")``) is exact.

Methods, each scored on the 256x256 frame (PSNR / SSIM, outputs clipped to [0, 1]):

* ``blurred``: the observation itself;
* ``tikhonov``: closed-form gradient Tikhonov with reflective boundaries (the observation
  mirrored to 512x512, circular solve, crop), weight by the discrepancy principle;
* ``circular``, ``symmetric``, ``reflect``, ``replicate``, ``zero``, ``unknown``:
  ``deblur()`` with its defaults (PnP-ADMM, the shipped certified denoiser, safeguarded
  Anderson acceleration) and that ``boundary``.

Runs are appended to ``--runs`` (JSON lines) and reused when rerun, so the protocol can be
completed in chunks (``--max-minutes``).  Writes the section "real-photographs" of
benchmarks/RESULTS.md.

Usage::

    python benchmarks/real_photo.py --data ../shared/data/test --sets bsd68,cbsd68 --limit 3 --kernels 1,4,8
        [--levels 2.55,7.65,12.75] [--methods blurred,tikhonov,circular,...,unknown] [--max-minutes 40]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchlib import append_record, image_to_batch, load_records, machine, metrics, write_section  # the script's folder is on sys.path

from denoisers.data import ImageFolder
from operators import Blur
from pnp_stable import deblur, tikhonov_deblur
from pnp_stable.allocator import retain_freed_memory

_HERE = Path(__file__).resolve().parent

SET_CHANNELS = {"bsd68": 1, "cbsd68": 3, "set12": 1, "cbsd10": 3}
BOUNDARY_METHODS = ("circular", "symmetric", "reflect", "replicate", "zero", "unknown")
METHODS = ("blurred", "tikhonov") + BOUNDARY_METHODS
CROP = 256


def photograph(scene: torch.Tensor, kernel: str, noise: float, seed: int, crop: int = CROP) -> tuple[torch.Tensor, torch.Tensor]:
    """(observation, sharp reference): the valid blur of the whole scene, centre-cropped, plus noise.

    Examples
    --------
    >>> scene = torch.rand(1, 1, 60, 70, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    >>> y, truth = photograph(scene, "box:5", 0.0, seed=0, crop=32)
    >>> y.shape, truth.shape
    (torch.Size([1, 1, 32, 32]), torch.Size([1, 1, 32, 32]))
    >>> full = Blur("box:5", "unknown").A(scene)  # the same pixels, blurred from the real scene
    >>> bool(torch.allclose(y, full[..., 12:44, 17:49]))
    True
    """
    op = Blur(kernel, boundary="unknown")
    blurred = op.A(scene)
    H, W = blurred.shape[-2:]
    side = min(crop, H, W)
    r0, c0 = (H - side) // 2, (W - side) // 2
    p = op.radius
    y = blurred[..., r0 : r0 + side, c0 : c0 + side]
    truth = scene[..., r0 + p : r0 + p + side, c0 + p : c0 + p + side]
    g = torch.Generator().manual_seed(seed)
    return y + noise * torch.randn(y.shape, generator=g, dtype=y.dtype), truth


def mirrored_tikhonov(y: torch.Tensor, kernel: str, noise: float) -> torch.Tensor:
    """Gradient Tikhonov with reflective boundaries: mirror to 2H x 2W, circular solve, crop.

    Examples
    --------
    >>> y = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    >>> mirrored_tikhonov(y, "box:3", 0.01).shape
    torch.Size([1, 1, 16, 16])
    """
    m = torch.cat([y, y.flip(-2)], -2)
    m = torch.cat([m, m.flip(-1)], -1)
    x = tikhonov_deblur(m, Blur(kernel, boundary="circular"), noise_level=noise).x
    return x[..., : y.shape[-2], : y.shape[-1]]


def run_one(method: str, y: torch.Tensor, kernel: str, noise: float, max_iter: int) -> dict:
    """Restore ``y`` with ``method``: the estimate and how the run went.

    Examples
    --------
    >>> y = torch.rand(1, 1, 16, 16, dtype=torch.float64)
    >>> run_one("blurred", y, "box:3", 0.01, 10)["iterations"]
    0
    """
    if method == "blurred":
        return dict(x=y, iterations=0, converged=True, guaranteed=None, stop="input")
    if method == "tikhonov":
        return dict(x=mirrored_tikhonov(y, kernel, noise), iterations=0, converged=True, guaranteed=None, stop="closed form")
    if method not in BOUNDARY_METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    r = deblur(y.float(), kernel, noise, boundary=method, max_iter=max_iter, progress=False)
    rep = r.report
    return dict(x=r.image.double(), iterations=rep.iterations[0], converged=rep.converged[0], guaranteed=rep.guaranteed,
                stop=rep.stop_reason[0], anderson_accepted=(rep.anderson_accepted or [0])[0])


def table(runs: list[dict], sets: list[str], levels: list[float], methods: list[str]) -> list[str]:
    """Markdown rows: per set, level and method, mean PSNR / SSIM, gains, iterations, seconds.

    Examples
    --------
    >>> runs = [dict(set="s", image="a", kernel=1, level=2.55, method=m, psnr=p, ssim=0.5, iterations=0, seconds=1.0,
    ...              converged=True, guaranteed=None) for m, p in (("blurred", 20.0), ("tikhonov", 22.0))]
    >>> table(runs, ["s"], [2.55], ["blurred", "tikhonov"])[-1]
    '| s | 2.55 | tikhonov | 1 | 22.00 / 0.500 | +2.00 (+2.00) | 0.00 | - | - | 1.0 |'
    """
    rows = ["| set | noise /255 | method | runs | PSNR / SSIM | gain over blurred: mean (min) | over Tikhonov: min "
            "| iterations mean (max) | guaranteed | s / run |", "|---|---|---|---:|---|---|---|---|---|---:|"]
    for name in sets:
        for lv in levels:
            here = [r for r in runs if r["set"] == name and r["level"] == lv]
            base = {(r["image"], r["kernel"]): r["psnr"] for r in here if r["method"] == "blurred"}
            tik = {(r["image"], r["kernel"]): r["psnr"] for r in here if r["method"] == "tikhonov"}
            for m in methods:
                rs = [r for r in here if r["method"] == m]
                if not rs:
                    continue
                gain = [r["psnr"] - base[r["image"], r["kernel"]] for r in rs if (r["image"], r["kernel"]) in base]
                over = [r["psnr"] - tik[r["image"], r["kernel"]] for r in rs if (r["image"], r["kernel"]) in tik]
                its = [r["iterations"] for r in rs]
                guar = {r["guaranteed"] for r in rs}
                rows.append(
                    f"| {name} | {lv:g} | {m} | {len(rs)} | {np.mean([r['psnr'] for r in rs]):.2f} / "
                    f"{np.mean([r['ssim'] for r in rs]):.3f} | "
                    + (f"{np.mean(gain):+.2f} ({min(gain):+.2f})" if gain else "-") + " | "
                    + (f"{min(over):.2f}" if over else "-") + " | "
                    + (f"{np.mean(its):.0f} ({max(its)})" if max(its) else "-") + " | "
                    + ("-" if guar == {None} else ("yes" if guar == {True} else f"{sum(r['guaranteed'] is True for r in rs)}/{len(rs)}"))
                    + f" | {np.mean([r['seconds'] for r in rs]):.1f} |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="folder holding the test sets")
    ap.add_argument("--sets", default="bsd68,cbsd68")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--kernels", default="1,2,3,4,5,6,7,8")
    ap.add_argument("--levels", default="2.55,7.65,12.75")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--max-iter", type=int, default=200)
    ap.add_argument("--runs", default=str(_HERE / "runs" / "real_photo.jsonl"))
    ap.add_argument("--max-minutes", type=float, default=None, help="start no new problem after this long (rerun to go on)")
    ap.add_argument("--section", default="real-photographs", help="RESULTS.md section to write (a comparison run writes its own)")
    args = ap.parse_args()
    retain_freed_memory()
    from tqdm.auto import tqdm

    methods = args.methods.split(",")
    for m in methods:
        if m not in METHODS:
            ap.error(f"unknown method {m!r}; choose from {', '.join(METHODS)}")
    sets, kernels = args.sets.split(","), [int(k) for k in args.kernels.split(",")]
    levels = [float(v) for v in args.levels.split(",")]
    record = Path(args.runs)
    record.parent.mkdir(parents=True, exist_ok=True)
    done = {(r["set"], r["image"], r["kernel"], r["level"], r["method"], r["max_iter"]): r for r in load_records(record)}
    runs, t0, stopped = [], time.time(), False
    for name in sets:
        channels = SET_CHANNELS[name]
        folder = ImageFolder(Path(args.data) / name, channels, limit=args.limit)
        jobs = [(i, k, lv) for i in range(len(folder)) for k in kernels for lv in levels]
        for i, k, lv in tqdm(jobs, desc=name):
            keys = {m: (name, folder.files[i].name, k, lv, m, args.max_iter) for m in methods}
            runs += [done[keys[m]] for m in methods if keys[m] in done]
            todo = [m for m in methods if keys[m] not in done]
            if not todo:
                continue
            if args.max_minutes is not None and time.time() - t0 > 60 * args.max_minutes:
                stopped = True
                continue
            scene = image_to_batch(folder.images[i])
            y, truth = photograph(scene, f"levin:{k}", lv / 255, seed=100000 * k + 1000 * int(lv * 100) + i)
            for m in todo:
                t1 = time.perf_counter()
                out = run_one(m, y, f"levin:{k}", lv / 255, args.max_iter)
                p, s = metrics(out.pop("x"), truth)
                run = dict(set=name, image=folder.files[i].name, kernel=k, level=lv, method=m, psnr=p, ssim=s,
                           seconds=time.perf_counter() - t1, max_iter=args.max_iter, **out)
                runs.append(run)
                append_record(record, run)
    images = {(r["set"], r["image"]) for r in runs}
    lines = [
        f"`python benchmarks/real_photo.py --data DATA/test --sets {args.sets}{f' --limit {args.limit}' if args.limit else ''} "
        f"--kernels {args.kernels} --levels {args.levels}"
        f"{f' --methods {args.methods} --runs benchmarks/runs/{Path(args.runs).name} --section {args.section}' if args.section != 'real-photographs' else ''}` ({'a SUBSET: ' if args.limit or len(kernels) < 8 else ''}"
        f"{len(images)} images, Levin kernels {args.kernels}; runs in `benchmarks/runs/{record.name}`). Each full image is blurred "
        f"on its own support (valid convolution), the centre {CROP}x{CROP} cropped and seeded noise added, so no padding rule "
        "is true at the frame. Boundary rows: `deblur()` defaults (PnP-ADMM, shipped certified denoiser, Anderson) with that "
        "`boundary`; tikhonov: gradient Tikhonov with reflective boundaries, discrepancy principle. PSNR / SSIM on the frame; "
        f"gains per problem in dB. Machine: {machine()}.",
        "",
    ] + table(runs, sets, levels, methods)
    print("\n".join(lines))
    if stopped:
        print(f"stopped after --max-minutes {args.max_minutes:g}: rerun the same command to go on", file=sys.stderr)
    title = "## Deblurring real photographs (no boundary rule is true)"
    if args.section != "real-photographs":
        title += f": {args.section}"
    write_section(args.section, title + "\n\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
