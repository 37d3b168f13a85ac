"""PnP-ADMM on the unknown boundary with its data prox in float32 against float64, side by side.

The problems of ``real_photo.py`` (each full test image blurred on its own support by a Levin
kernel, the centre 256x256 cropped, seeded noise), run by ``deblur()`` with its defaults except
``prox_precision``, float32 then float64, in one process.  Reported: iterations to the 1e-4
residual, PSNR, and whether every run converged under its guarantee.

Runs are appended to ``benchmarks/runs/prox_precision.jsonl`` and reused; the section
"prox-precision" of benchmarks/RESULTS.md is rewritten from them.

Usage::

    python benchmarks/prox_precision.py --data ../shared/data/test --sets bsd68,cbsd68 --limit 3 --kernels 1,4,8
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from benchlib import append_record, image_to_batch, load_records, machine, metrics, write_table_section  # the script's folder is on sys.path
from real_photo import SET_CHANNELS, photograph

from denoisers.data import ImageFolder
from pnp_stable import deblur
from pnp_stable.allocator import retain_freed_memory

_HERE = Path(__file__).resolve().parent
RUNS = _HERE / "runs" / "prox_precision.jsonl"
PRECISIONS = {"float32": torch.float32, "float64": torch.float64}


def table(runs: list[dict]) -> list[str]:
    """Markdown rows per set and level: iterations and PSNR of both precisions.

    Examples
    --------
    >>> r = dict(set="s", level=2.55, float32=[30, 27.0, True], float64=[20, 27.01, True])
    >>> table([r])[-1]
    '| s | 2.55 | 1 | 30.0 (30) | 20.0 (20) | 27.00 | 27.01 | yes |'
    """
    rows = ["| set | noise /255 | problems | iterations, float32 prox: mean (max) | float64 prox: mean (max) | PSNR float32 | "
            "PSNR float64 | all converged, guaranteed |", "|---|---|---:|---|---|---:|---:|---|"]
    for s, lv in sorted({(r["set"], r["level"]) for r in runs}):
        rs = [r for r in runs if (r["set"], r["level"]) == (s, lv)]
        it32, it64 = [r["float32"][0] for r in rs], [r["float64"][0] for r in rs]
        ok = all(r["float32"][2] and r["float64"][2] for r in rs)
        rows.append(f"| {s} | {lv:g} | {len(rs)} | {np.mean(it32):.1f} ({max(it32)}) | {np.mean(it64):.1f} ({max(it64)}) | "
                    f"{np.mean([r['float32'][1] for r in rs]):.2f} | {np.mean([r['float64'][1] for r in rs]):.2f} | "
                    f"{'yes' if ok else 'no'} |")
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="folder holding the test sets")
    ap.add_argument("--sets", default="bsd68,cbsd68")
    ap.add_argument("--limit", type=int, default=3)
    ap.add_argument("--kernels", default="1,4,8")
    ap.add_argument("--levels", default="2.55,7.65,12.75")
    args = ap.parse_args(argv)
    retain_freed_memory()
    torch.set_num_threads(2)
    done = {(r["set"], r["image"], r["kernel"], r["level"]) for r in load_records(RUNS)}
    for name in args.sets.split(","):
        folder = ImageFolder(Path(args.data) / name, SET_CHANNELS[name], limit=args.limit)
        for i in range(len(folder)):
            for k in (int(v) for v in args.kernels.split(",")):
                for lv in (float(v) for v in args.levels.split(",")):
                    if (name, i, k, lv) in done:
                        continue
                    scene = image_to_batch(folder.images[i])
                    # The seeds of real_photo.py: the same problems.
                    y, truth = photograph(scene, f"levin:{k}", lv / 255, seed=100000 * k + 1000 * int(lv * 100) + i)
                    rec = dict(set=name, image=i, kernel=k, level=lv)
                    for label, prec in PRECISIONS.items():
                        r = deblur(y.float(), f"levin:{k}", lv / 255, progress=False, prox_precision=prec)
                        p, _ = metrics(r.image.double(), truth)
                        rec[label] = [r.report.iterations[0], round(p, 3), bool(r.report.guaranteed and r.report.converged[0])]
                    append_record(RUNS, rec)
                    print(rec, flush=True)
    runs = load_records(RUNS)
    description = (
        f"`python benchmarks/prox_precision.py --data DATA/test --sets {args.sets} --limit {args.limit} --kernels {args.kernels}` "
        "(a SUBSET, the problems of section \"real-photographs\": each full image blurred on its own support, the centre 256x256 "
        "cropped, seeded noise; runs in `benchmarks/runs/prox_precision.jsonl`). `deblur()` defaults (PnP-ADMM, shipped "
        "certified denoiser, unknown boundary, Anderson) with `prox_precision` float32, then float64, on the same problem in "
        "one process. Iterations to the 1e-4 relative residual of z (each float64 iteration costs more: its conjugate "
        f"gradients run in float64; docs/photographs.md). Machine: {machine()}."
    )
    write_table_section("prox-precision", "Unknown boundary: the data prox in float32 or float64 (PnP-ADMM)", description, table(runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
