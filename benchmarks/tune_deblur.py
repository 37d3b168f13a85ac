"""Tune the defaults of ``deblur()`` with the shipped denoiser on held-out *training* images.

The knobs that keep every guarantee are the denoiser strength (``sigma = strength x noise``,
through the calibrated relaxation ``theta(sigma)``) and the solver step (PnP-FBS:
``step_factor = tau ||A||^2 < 2``; PnP-ADMM: ``tau > 0``).  For each solver, every point of a
small grid is scored by the mean PSNR over noise levels 2.55, 7.65, 12.75 /255, a few Levin
kernels and centre crops (or, ``--crop 0``, the whole images) of the 12 BSD400 images held out
from training (never a test set); the best point per solver is what :mod:`pnp_stable.defaults`
ships.

Writes the "tuning-cond-gray" or "tuning-cond-colour" (``--channels 3``) section of
benchmarks/RESULTS.md (every grid point and its score), or the one named by ``--section``.

Usage::

    python benchmarks/tune_deblur.py --data ../shared/data/train/bsd400 [--images 3] [--crop 96]
        [--kernels 1,6] [--max-iter 60] [--previous earlier.json] [--json out.json]
    python benchmarks/tune_deblur.py --data ../shared/data/train/cbsd432 --channels 3 ...

``--json`` is rewritten after every grid point; rerunning the same command resumes there.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchlib import image_to_batch, machine, psnr_per_image, write_json_atomic, write_section  # the script's folder is on sys.path

from denoisers.data import ImageFolder
from operators import Blur
from operators.noise import Gaussian
from pnp_stable import deblur
from pnp_stable.allocator import retain_freed_memory
from pnp_stable.defaults import SolverDefaults

NOISES_255 = (2.55, 7.65, 12.75)


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def grids(args) -> dict[str, list[dict]]:
    """The grid points of each solver: strength x step.

    Examples
    --------
    >>> from argparse import Namespace
    >>> g = grids(Namespace(fbs_strengths="0.7,1", fbs_factors="1.9", admm_strengths="3", admm_steps="", admm_step_scales="0.15"))
    >>> g["pnp-fbs"]
    [{'strength': 0.7, 'step_factor': 1.9}, {'strength': 1.0, 'step_factor': 1.9}]
    >>> g["pnp-admm"]
    [{'strength': 3.0, 'step_scale': 0.15}]
    """
    scales = _floats(args.admm_step_scales) if args.admm_step_scales else []
    admm = ([dict(strength=c, step=t) for c, t in itertools.product(_floats(args.admm_strengths), _floats(args.admm_steps))]
            + [dict(strength=c, step_scale=k) for c, k in itertools.product(_floats(args.admm_strengths), scales)])
    return {
        "pnp-fbs": [dict(strength=c, step_factor=f) for c, f in itertools.product(_floats(args.fbs_strengths), _floats(args.fbs_factors))],
        "pnp-admm": admm,
    }


def held_out_crops(folder: str, n: int, crop: int, val_split: int = 12, channels: int = 1) -> torch.Tensor:
    """Centre crops (n, channels, crop, crop) of the last ``n`` of the ``val_split`` images held out from training.

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> from skimage import io
    >>> folder = tempfile.mkdtemp()
    >>> for i in range(4):
    ...     io.imsave(f"{folder}/{i}.png", np.full((40, 48), 60 * i, dtype=np.uint8), check_contrast=False)
    >>> crops = held_out_crops(folder, n=2, crop=16, val_split=3)
    >>> crops.shape, [round(float(c.mean()) * 255) for c in crops]
    (torch.Size([2, 1, 16, 16]), [120, 180])
    """
    crops = []
    for im in held_out_full(folder, n, val_split, channels):
        r0, c0 = (im.shape[-2] - crop) // 2, (im.shape[-1] - crop) // 2
        crops.append(im[..., r0 : r0 + crop, c0 : c0 + crop])
    return torch.cat(crops).contiguous()


def held_out_full(folder: str, n: int, val_split: int = 12, channels: int = 1) -> list[torch.Tensor]:
    """The last ``n`` of the ``val_split`` held-out images, whole: one (1, channels, H, W) tensor each.

    Full-size images are closer to the test conditions than centre crops (boundary share,
    image content at scale); they differ in size, so each is its own batch.

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> from skimage import io
    >>> folder = tempfile.mkdtemp()
    >>> for i, shape in enumerate([(30, 40), (40, 48), (48, 36)]):
    ...     io.imsave(f"{folder}/{i}.png", np.full(shape, 100, dtype=np.uint8), check_contrast=False)
    >>> [tuple(t.shape) for t in held_out_full(folder, n=2, val_split=3)]
    [(1, 1, 40, 48), (1, 1, 48, 36)]
    """
    imgs = ImageFolder(folder, channels).images[-val_split:][-n:]
    return [image_to_batch(im) for im in imgs]


def point_key(row: dict) -> tuple:
    """What identifies a grid point: the solver and its knobs (strength and step).

    Examples
    --------
    >>> point_key({"solver": "pnp-fbs", "strength": 0.7, "step_factor": 1.9, "mean_psnr": 25.0})
    ('pnp-fbs', ('step_factor', 1.9), ('strength', 0.7))
    >>> point_key({"solver": "pnp-admm", "strength": 4.0, "step_scale": 0.2})
    ('pnp-admm', ('step_scale', 0.2), ('strength', 4.0))
    """
    knobs = ("strength", "step_factor", "step", "step_scale")
    return (row["solver"], *sorted((k, row[k]) for k in knobs if k in row))


def recorded_points(path: Path | None, problem_set: dict) -> dict[tuple, dict]:
    """Rows of an earlier (possibly interrupted) run of this round found in ``path``, by
    :func:`point_key`; only rows scored on the same problems count, so a rerun resumes.

    Examples
    --------
    >>> import tempfile
    >>> rec = Path(tempfile.mkdtemp()) / "round.json"
    >>> row = {"solver": "pnp-fbs", "strength": 1.0, "step_factor": 1.9, "per_noise": {"2.55": 30.0},
    ...        "problems": {"images": 2, "crop": 0, "channels": 1}}
    >>> _ = rec.write_text(json.dumps({"rows": [row], "partial": True}))
    >>> found = recorded_points(rec, {"images": 2, "crop": 0, "channels": 1})
    >>> list(found), found[("pnp-fbs", ("step_factor", 1.9), ("strength", 1.0))]["per_noise"]
    ([('pnp-fbs', ('step_factor', 1.9), ('strength', 1.0))], {2.55: 30.0})
    >>> recorded_points(rec, {"images": 3, "crop": 0, "channels": 1})
    {}
    """
    if path is None or not Path(path).exists():
        return {}
    rows = json.loads(Path(path).read_text()).get("rows", [])
    return {point_key(r): _float_levels(r) for r in rows if same_problems(r.get("problems"), problem_set)}


def _float_levels(row: dict) -> dict:
    """A row read back from JSON, whose keys are strings: per_noise keyed by float noise levels again."""
    return {**row, "per_noise": {float(k): v for k, v in row["per_noise"].items()}}




def model_chain(channels: int) -> str:
    """The shipped models deblur() uses for ``channels`` (the averaged one for PnP-FBS, the firmly
    non-expansive one for PnP-ADMM), each named with the digest of its weights: part of what a
    tuning row's score depends on, so rows scored with other weights are not resumed or merged.
    (The weights' digest, not the file's: a re-export that only edits the training record leaves
    every score as it was.)

    Examples
    --------
    >>> model_chain(1).split(",")[0].startswith("gray-averaged:")
    True
    """
    import torch

    from denoisers.pretrained import default_pretrained_name, pretrained_path

    names = (default_pretrained_name(channels), default_pretrained_name(channels, target_alpha=0.5))
    return ",".join(f"{name}:{torch.load(pretrained_path(name), map_location='cpu', weights_only=True)['sha256'][:12]}"
                    for name in names)


def same_problems(recorded: dict | None, current: dict) -> bool:
    """Whether a recorded round was scored on ``current``'s problems (rounds from before the
    ``channels`` key were gray; rounds from before the ``models`` key match no current set,
    whose models are recorded).

    Examples
    --------
    >>> same_problems({"images": 4, "crop": 128}, {"images": 4, "crop": 128, "channels": 1})
    True
    >>> same_problems({"images": 4, "crop": 128}, {"images": 4, "crop": 128, "channels": 3})
    False
    """
    return recorded is not None and {"channels": 1, **recorded} == current




#: Scores closer than this (dB) count as a tie.  Zero: the declared criterion is the mean PSNR
#: on training images, and a tie-break chosen after seeing test images would be tuning on them.
TIE_DB = 0.0


def choose_default(rows: list[dict], tie_db: float = TIE_DB) -> dict:
    """The grid point to ship: the best mean PSNR; among points within ``tie_db`` of it, the
    smallest strength (the least smoothing), then the best score.

    Examples
    --------
    >>> rows = [dict(strength=4, mean_psnr=24.43), dict(strength=3, mean_psnr=24.41), dict(strength=2, mean_psnr=24.3)]
    >>> choose_default(rows)["strength"], choose_default(rows, tie_db=0.05)["strength"]
    (4, 3)
    """
    top = max(r["mean_psnr"] for r in rows)
    return min((r for r in rows if r["mean_psnr"] >= top - tie_db), key=lambda r: (r["strength"], -r["mean_psnr"]))


def per_level_gain(rows: list[dict], default: dict) -> dict[float, float]:
    """For each noise level, how much (dB) the best grid point *at that level* beats ``default``:
    what per-level defaults could gain over one default for all levels, on the same problems.

    Examples
    --------
    >>> a = dict(per_noise={2.55: 30.0, 12.75: 24.0}); b = dict(per_noise={2.55: 29.5, 12.75: 24.3})
    >>> per_level_gain([a, b], a)
    {2.55: 0.0, 12.75: 0.3}
    """
    return {lv: round(max(r["per_noise"][lv] for r in rows) - default["per_noise"][lv], 6) for lv in default["per_noise"]}


def _argv_without_data_and_outputs() -> list[str]:
    """This round's options as given, less --data (a local path), --previous and --json (file names)."""
    out, skip = [], False
    for a in sys.argv[1:]:
        if skip:
            skip = False
            continue
        if a in ("--data", "--previous", "--json", "--section"):
            skip = True
            continue
        if a.split("=")[0] in ("--data", "--previous", "--json", "--section"):
            continue
        out.append(a)
    return out


def _quoted(arg: str) -> str:
    return arg if arg and " " not in arg else repr(arg)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="training folder (BSD400 or CBSD432); its last 12 images are the held-out ones")
    ap.add_argument("--channels", type=int, default=1, choices=(1, 3), help="1: gray defaults (section 'tuning-cond-gray'); 3: colour ('tuning-cond-colour')")
    ap.add_argument("--images", type=int, default=3)
    ap.add_argument("--crop", type=int, default=96, help="centre crop side; 0: the whole images")
    ap.add_argument("--kernels", default="1,6")
    ap.add_argument("--max-iter", type=int, default=60)
    ap.add_argument("--solvers", default="pnp-admm,pnp-fbs")
    ap.add_argument("--fbs-strengths", default="1,2")
    ap.add_argument("--fbs-factors", default="1.9")
    ap.add_argument("--admm-strengths", default="2,3,4")
    ap.add_argument("--admm-steps", default="2,5")
    ap.add_argument("--admm-step-scales", default="", help="also try tau = scale / noise (comma separated scales)")
    ap.add_argument("--section", default=None, help="RESULTS.md section to write (default: 'tuning-cond-gray' or 'tuning-cond-colour')")
    ap.add_argument("--previous", action="append", default=[],
                    help="JSON of an earlier round on the same problems: its rows join the table and the choice")
    ap.add_argument("--json", default=None, help="record (rewritten after every grid point); a rerun on the same "
                    "problems resumes from it")
    args = ap.parse_args()
    retain_freed_memory()  # as the command line does: no page faults on every iteration's buffers
    grid = grids(args)
    # Crops go in one batch; whole images differ in size and go one by one.
    batches = ([held_out_crops(args.data, args.images, args.crop, channels=args.channels)] if args.crop > 0
               else held_out_full(args.data, args.images, channels=args.channels))
    kernels = [int(k) for k in args.kernels.split(",")]
    problems = []
    for k, s in itertools.product(kernels, NOISES_255):
        op = Blur(f"levin:{k}", boundary="circular", noise_model=Gaussian(s / 255, rng=torch.Generator().manual_seed(k)))
        problems.append((k, s, [op(b, seed=1000 * k + int(s * 100) + 100_000 * i) for i, b in enumerate(batches)]))
    # What a row's score depends on: rows of earlier rounds are merged only when it matches.
    problem_set = dict(images=args.images, crop=args.crop, kernels=args.kernels, max_iter=args.max_iter, channels=args.channels,
                       models=model_chain(args.channels))
    command = "python benchmarks/tune_deblur.py " + " ".join(_quoted(a) for a in _argv_without_data_and_outputs())
    resumed = recorded_points(args.json, problem_set)
    rows, t0 = [], time.time()
    for solver in filter(None, args.solvers.split(",")):
        for point in grid[solver]:
            key = point_key(dict(solver=solver, **point))
            if key in resumed:
                rows.append(resumed[key])
                print("recorded:", rows[-1], flush=True)
                continue
            scores, its = [], []
            for k, s, ys in problems:
                opts = {key: v for key, v in point.items() if key not in ("strength", "step_scale")}
                if "step_scale" in point:
                    # The rule deblur() applies, clip included: tune what ships.
                    opts["step"] = SolverDefaults(step_scale=point["step_scale"]).step_for(s / 255)
                values, iterations = [], []
                sigma = point["strength"] * s / 255
                for truth, y in zip(batches, ys):
                    r = deblur(y, f"levin:{k}", s / 255, solver=solver, boundary="circular", sigma=sigma,
                               max_iter=args.max_iter, progress=False, **opts)
                    values += psnr_per_image(r.image, truth).tolist()
                    iterations += list(r.report.iterations)
                scores.append(float(np.mean(values)))
                its.append(float(np.mean(iterations)))
            per_noise = {s: float(np.mean([sc for (k, s2, _), sc in zip(problems, scores) if s2 == s])) for s in NOISES_255}
            rows.append(dict(solver=solver, **point, mean_psnr=float(np.mean(scores)), per_noise=per_noise,
                             mean_iterations=float(np.mean(its)), command=command, problems=problem_set))
            print(rows[-1], flush=True)
            if args.json:
                write_json_atomic(Path(args.json), {"rows": rows, "partial": True})
    done_here = len(rows)
    for prev in args.previous:
        for r in json.loads(Path(prev).read_text())["rows"]:
            if not same_problems(r.get("problems"), problem_set):
                raise SystemExit(f"{prev}: a row was scored on other problems ({r.get('problems')}), not {problem_set}: "
                                 "rounds merge only on the same images, crop, kernels and max-iter")
            rows.append({**_float_levels(r), "problems": problem_set})
    if not rows:
        raise SystemExit("nothing to tabulate: give --solvers or --previous")
    best = {s: choose_default([r for r in rows if r["solver"] == s]) for s in {r["solver"] for r in rows}}
    rounds = list(dict.fromkeys(r["command"] for r in rows))
    what = f"centre {args.crop}x{args.crop} crops" if args.crop > 0 else "the whole images"
    lines = [
        f"Tuning of the `deblur()` defaults on held-out training images: {what} of the last {args.images} of the 12 "
        f"{'BSD400 gray' if args.channels == 1 else 'CBSD432 colour'} images held out from training, Levin kernels {args.kernels}, noise "
        f"{', '.join(f'{s:g}' for s in NOISES_255)} /255, circular boundary, at most {args.max_iter} iterations. "
        "Default (bold): the best mean PSNR. "
        "Models: the shipped noise-conditioned models deblur() uses (PnP-FBS: the averaged one; PnP-ADMM: the one "
        f"trained firmly non-expansive), {model_chain(args.channels)}. "
        f"Mean PSNR (dB) over all problems. Machine: {machine()}. Rounds (each row's round is its number in the table): "
        + "; ".join(f"{i}. `{c} --data DATA`" for i, c in enumerate(rounds, 1)) + ".",
        "",
        "| round | solver | strength (sigma / noise) | step | PSNR 2.55 | PSNR 7.65 | PSNR 12.75 | mean PSNR | mean iterations |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        step = (f"tau ‖A‖² = {r['step_factor']:g}" if "step_factor" in r else
                f"tau = {r['step_scale']:g} / noise" if "step_scale" in r else f"tau = {r['step']:g}")
        mark = " **(default)**" if r is best[r["solver"]] else ""
        pn = r["per_noise"]
        lines.append(f"| {rounds.index(r['command']) + 1} | {r['solver']}{mark} | {r['strength']:g} | {step} | {pn[2.55]:.2f} | {pn[7.65]:.2f} | {pn[12.75]:.2f} | "
                     f"{r['mean_psnr']:.2f} | {r['mean_iterations']:.0f} |")
    section = args.section or ("tuning-cond-gray" if args.channels == 1 else "tuning-cond-colour")
    title = (f"{', '.join(sorted(best))}; {'gray' if args.channels == 1 else 'colour'} training images, "
             + (f"{args.images} crops of {args.crop}x{args.crop}" if args.crop > 0 else f"{args.images} whole images"))
    gains = {s: per_level_gain([r for r in rows if r["solver"] == s], b) for s, b in best.items()}
    lines += ["", "Per-level defaults (the best grid point at each noise level) would gain over the single default, "
              "on these problems: " + "; ".join(
                  f"{s} " + ", ".join(f"{g:.2f} dB at {lv:g}" for lv, g in gains[s].items()) for s in sorted(gains)) + "."]
    write_section(section, f"## Tuning of the deblur() defaults ({title})\n\n" + "\n".join(lines))
    if args.json:
        write_json_atomic(Path(args.json), {"rows": rows, "best": best, "per_level_gain": gains})
    print("best:", json.dumps(best, indent=1))


if __name__ == "__main__":
    main()
