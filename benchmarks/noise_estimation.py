"""How well is the noise level of a blurred photograph estimated, and what does the estimate cost in PSNR?

Each full test image is blurred on its own support by a Levin kernel (the valid convolution, as
a camera sees a scene), given Gaussian noise at 2.55, 7.65 and 12.75 /255 (seed per problem),
and stored as a camera stores it: an 8-bit PNG, or a JPEG of quality 90.  The estimator of
``deblur()`` (:func:`pnp_stable.noise_level.estimate_noise_level`) reads the stored image.
Reported: the relative estimation error.  With ``--psnr``, the centre 256x256 crop is also
deblurred twice with ``deblur()``'s defaults, once told the true level (the oracle) and once
estimating it, and the PSNR difference reported.

Runs are appended to ``benchmarks/runs/noise_estimation.jsonl`` and reused when rerun; the section
"noise-estimation" of benchmarks/RESULTS.md is rewritten from them.

Usage::

    python benchmarks/noise_estimation.py --data ../shared/data/test --sets bsd68,cbsd68 --limit 4 --kernels 1,4,8 [--psnr]
"""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

import numpy as np
import torch

from benchlib import append_record, load_records, machine, write_table_section  # the script's folder is on sys.path

from denoisers.data import ImageFolder
from operators import Blur
from pnp_stable import deblur
from pnp_stable.noise_level import estimate_noise_level

_HERE = Path(__file__).resolve().parent
RUNS = _HERE / "runs" / "noise_estimation.jsonl"
SET_CHANNELS = {"bsd68": 1, "cbsd68": 3}
LEVELS = (2.55, 7.65, 12.75)
CROP = 256


def stored(observation: np.ndarray, kind: str) -> np.ndarray:
    """The observation (H, W, C) in [0, 1] as a camera file gives it back: 8-bit PNG or JPEG q90, as floats.

    Examples
    --------
    >>> y = np.full((16, 16, 1), 0.5)
    >>> stored(y, "png").dtype, float(stored(y, "png").max()) == 128 / 255
    (dtype('float64'), True)
    """
    from PIL import Image

    q = np.clip(np.round(observation * 255), 0, 255).astype(np.uint8)
    if kind == "png":
        return q.astype(np.float64) / 255
    buf = io.BytesIO()
    Image.fromarray(q[..., 0] if q.shape[-1] == 1 else q).save(buf, format="JPEG", quality=90)
    out = np.asarray(Image.open(buf)).astype(np.float64) / 255
    return out[..., None] if out.ndim == 2 else out


def problem(scene: np.ndarray, kernel: str, level: float, seed: int) -> np.ndarray:
    """The valid blur of ``scene`` (H, W, C) plus seeded noise, in [0, 1] units (not clipped).

    Examples
    --------
    >>> problem(np.full((40, 40, 1), 0.5), "box:5", 0.0, seed=0).shape  # the kernel's reach is cut off
    (36, 36, 1)
    """
    x = torch.from_numpy(np.moveaxis(scene, -1, 0).copy())[None]
    blurred = Blur(kernel, boundary="unknown").A(x)[0].permute(1, 2, 0).numpy()
    return blurred + level / 255 * np.random.default_rng(seed).standard_normal(blurred.shape)


def _centre(a: np.ndarray, side: int) -> np.ndarray:
    r0, c0 = (a.shape[0] - side) // 2, (a.shape[1] - side) // 2
    return a[r0 : r0 + side, c0 : c0 + side]


def run_problem(scene, kernel, level, seed, kind, with_psnr: bool) -> dict:
    """Estimate the level of one stored problem (and, ``with_psnr``, deblur told and not told it).

    Examples
    --------
    >>> scene = np.random.default_rng(0).random((80, 80, 1))
    >>> rec = run_problem(scene, "box:3", 12.75, seed=0, kind="png", with_psnr=False)
    >>> sorted(rec), rec["estimate"] > 0
    (['estimate', 'estimate_seconds', 'rel_error'], True)
    """
    y = stored(problem(scene, kernel, level, seed), kind)
    t = torch.from_numpy(np.moveaxis(y, -1, 0).copy())[None].float()
    start = time.perf_counter()
    est = estimate_noise_level(t)
    rec = dict(estimate=est, rel_error=est / (level / 255) - 1, estimate_seconds=time.perf_counter() - start)
    if with_psnr:
        p = Blur(kernel, boundary="unknown").radius
        side = min(CROP, y.shape[0], y.shape[1])
        crop = _centre(y, side).astype(np.float32)
        truth = _centre(scene[p:-p, p:-p], side)
        arr = crop[..., 0] if crop.shape[-1] == 1 else crop
        axis = None if crop.shape[-1] == 1 else -1
        for name, noise in (("oracle", level / 255), ("estimated", None)):
            r = deblur(arr, kernel, noise, channel_axis=axis, progress=False)
            out = np.clip(r.image, 0, 1).reshape(truth.shape)
            rec[f"psnr_{name}"] = float(10 * np.log10(1 / np.mean((out - truth) ** 2)))
            rec[f"iterations_{name}"] = r.report.iterations[0]
            if name == "estimated":
                rec["estimate_crop"] = r.noise_level
    return rec


def table(runs: list[dict]) -> list[str]:
    """Markdown rows: per set, file kind and level, the estimation error and the PSNR cost.

    Examples
    --------
    >>> runs = [dict(set="s", kind="png", level=2.55, rel_error=0.05, psnr_oracle=30.0, psnr_estimated=29.9)]
    >>> table(runs)[-1]
    '| s | png | 2.55 | 1 | +5.0 % | 5.0 % (5.0 %) | 1 | -0.10 (-0.10) |'
    """
    rows = ["| set | file | noise /255 | problems | mean error | mean abs error (max) | PSNR runs | PSNR estimated - oracle: mean (worst) |",
            "|---|---|---|---:|---:|---|---:|---|"]
    keys = sorted({(r["set"], r["kind"], r["level"]) for r in runs})
    for s, kind, lv in keys:
        rs = [r for r in runs if (r["set"], r["kind"], r["level"]) == (s, kind, lv)]
        e = np.array([r["rel_error"] for r in rs])
        d = np.array([r["psnr_estimated"] - r["psnr_oracle"] for r in rs if "psnr_estimated" in r])
        dp = f"{d.mean():+.2f} ({d.min():+.2f})" if d.size else "-"
        rows.append(f"| {s} | {kind} | {lv:g} | {len(rs)} | {100 * e.mean():+.1f} % | {100 * np.abs(e).mean():.1f} % "
                    f"({100 * np.abs(e).max():.1f} %) | {d.size} | {dp} |")
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="folder holding the test sets (bsd68/, cbsd68/)")
    ap.add_argument("--sets", default="bsd68,cbsd68")
    ap.add_argument("--limit", type=int, default=4, help="images per set")
    ap.add_argument("--kernels", default="1,4,8", help="Levin kernel numbers")
    ap.add_argument("--levels", default=",".join(f"{v:g}" for v in LEVELS))
    ap.add_argument("--kinds", default="png,jpeg90")
    ap.add_argument("--psnr", action="store_true", help="also deblur (png only): oracle level against the estimate")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    done = {(r["set"], r["image"], r["kernel"], r["level"], r["kind"], "psnr_oracle" in r) for r in load_records(RUNS)}
    for name in args.sets.split(","):
        data = ImageFolder(Path(args.data) / name, SET_CHANNELS[name], limit=args.limit)
        for i, (path, img) in enumerate(zip(data.files, data.images)):
            scene = img.astype(np.float64) / 255
            for k in args.kernels.split(","):
                for lv in (float(v) for v in args.levels.split(",")):
                    for kind in args.kinds.split(","):
                        with_psnr = args.psnr and kind == "png"
                        key = (name, path.name, int(k), lv, kind, with_psnr)
                        if key in done:
                            continue
                        rec = run_problem(scene, f"levin:{k}", lv, seed=1000 * i + int(k), kind=kind, with_psnr=with_psnr)
                        rec.update(set=name, image=path.name, kernel=int(k), level=lv, kind=kind)
                        append_record(RUNS, rec)
                        print(rec, flush=True)
    runs = load_records(RUNS)
    description = (
        f"`python benchmarks/noise_estimation.py --data DATA/test --sets {args.sets} --limit {args.limit} --kernels {args.kernels}"
        f"{' --psnr' if args.psnr else ''}` (a SUBSET: the first {args.limit} image(s) of each set; runs in "
        "`benchmarks/runs/noise_estimation.jsonl`). Each full image blurred on its own support by a Levin kernel, seeded Gaussian "
        "noise, stored as an 8-bit PNG or a JPEG of quality 90; the estimator is `deblur()`'s (deepinv's patch-covariance "
        "estimator on the whole stored image). Error = estimate / true level - 1. PSNR columns: `deblur()` defaults on the "
        "centre 256x256 of the PNG, told the true level or estimating it (from the crop). JPEG removes part of the noise and "
        f"adds artefacts of its own, so its estimates are not the level that was added. Machine: {machine()}."
    )
    write_table_section("noise-estimation", "Noise level estimated from blurred photographs", description, table(runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
