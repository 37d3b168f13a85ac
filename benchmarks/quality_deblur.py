"""PnP deblurring quality: the Levin kernels (and the GS-PnP protocol's 10) at noise 2.55, 7.65, 12.75 /255.

For every image of the chosen sets, kernel and noise level: blur (circular) plus seeded
Gaussian noise, then restore with

* ``tikhonov``: closed-form gradient Tikhonov, weight by the discrepancy principle;
* ``fbs`` / ``admm``: ``deblur()`` with the shipped certified denoiser and its defaults
  (strength and step tuned on training images: ``benchmarks/tune_deblur.py``);
* ``pnp-tv``: PnP-FBS with deepinv's ``TVDenoiser`` at the same strength (no certificate:
  the run is reported as not guaranteed);
* ``baseline``: PnP-FBS with the matched unconstrained network (``--baseline FILE``);
* ``STEM/fbs``, ``STEM/admm``: another certified model (``--extra STEM.pt``, repeatable; e.g. an
  equilibrium denoiser in training) in each solver its certificate admits (alpha < 1: PnP-FBS;
  alpha <= 1/2: PnP-ADMM too), at the shipped model's tuned strength and step, guaranteed.

Kernels are numbered as in the GS-PnP / Prox-PnP code (PnP_restoration): 1-8 are Levin et
al.'s, 9 a 9x9 uniform, 10 a 25x25 Gaussian of std 1.6.  ``--kernels levin`` (the default)
runs 1-8 on whole images; ``--protocol gspnp`` runs all 10 on 256x256 centre crops, as those
papers' code does, and the table then gives the 8-Levin-kernel means beside the 10-kernel ones.

PSNR / SSIM (outputs clipped to [0, 1]), iterations and convergence per run.  The whole
protocol (8 kernels x 68 images x 3 levels) takes days on a 2-core CPU: ``--limit`` and
``--kernels`` choose a subset, and the table says which.  Every finished run is appended to
``--runs`` (JSON lines, with a fingerprint of the model file and the tuned defaults), and a
rerun reuses the runs whose fingerprint still matches: the protocol can be completed in
chunks (``--max-minutes``) across sessions and machines.  Writes the "deblurring" section
of benchmarks/RESULTS.md.

On a GPU machine the PnP methods run there with ``--device cuda``, and ``--shard K/N``
splits the problems among N processes, each appending to its own ``--runs`` file; joining
those files into the main record (``cat``) and rerunning without ``--shard`` makes the table,
which counts the runs by device.

Usage::

    python benchmarks/quality_deblur.py --data ../shared/data/test --sets set12 --limit 2 --kernels 1,4,8
        [--levels 2.55,7.65,12.75] [--methods tikhonov,fbs,admm,pnp-tv] [--max-iter 200]
        [--runs benchmarks/runs/deblur.jsonl] [--max-minutes 30] [--json out.json]
        [--device cuda] [--shard 0/4]
    python benchmarks/quality_deblur.py --data ../shared/data/test --sets cbsd10 --protocol gspnp
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchlib import append_record, file_digest, image_to_batch, load_records, machine, metrics, write_section  # the script's folder is on sys.path

from denoisers.data import ImageFolder
from operators import Blur
from operators.noise import Gaussian
from pnp_stable import deblur, reconstruct, tikhonov_deblur
from pnp_stable.defaults import defaults_for
from pnp_stable.allocator import retain_freed_memory

_HERE = Path(__file__).resolve().parent

SET_CHANNELS = {"set12": 1, "bsd68": 1, "cbsd10": 3, "cbsd68": 3, "set3c": 3}

#: Kernel number -> spec, numbered as in the GS-PnP / Prox-PnP code: 1-8 Levin et al. (2009),
#: 9 a 9x9 uniform, 10 a 25x25 Gaussian of std 1.6.
PROTOCOL_KERNELS = {**{k: f"levin:{k}" for k in range(1, 9)}, 9: "box:9", 10: "gaussian:1.6,size=25"}
LEVIN_KERNELS = tuple(range(1, 9))

#: Named protocols: kernels and centre crop (None: whole images).
PROTOCOLS = {
    "levin": dict(kernels=LEVIN_KERNELS, crop=None),
    "gspnp": dict(kernels=tuple(PROTOCOL_KERNELS), crop=256),
}


def parse_kernels(text: str) -> list[int]:
    """Kernel numbers from ``--kernels``: a comma list of 1-10, ``levin`` (1-8) or ``all`` (1-10).

    Examples
    --------
    >>> parse_kernels("1,4,9"), parse_kernels("levin") == list(range(1, 9)), len(parse_kernels("all"))
    ([1, 4, 9], True, 10)
    >>> parse_kernels("11")
    Traceback (most recent call last):
    ...
    ValueError: --kernels takes numbers 1-10 (1-8 Levin, 9 box 9x9, 10 Gaussian 1.6 of 25x25), 'levin' or 'all'; got '11'
    """
    if text == "levin":
        return list(LEVIN_KERNELS)
    if text == "all":
        return list(PROTOCOL_KERNELS)
    try:
        kernels = [int(k) for k in text.split(",")]
    except ValueError:
        kernels = [0]
    if not kernels or any(k not in PROTOCOL_KERNELS for k in kernels):
        raise ValueError("--kernels takes numbers 1-10 (1-8 Levin, 9 box 9x9, 10 Gaussian 1.6 of 25x25), 'levin' or 'all'; "
                         f"got {text!r}")
    return kernels


def centre_crop(image: np.ndarray, size: int | None) -> np.ndarray:
    """The ``size x size`` centre of an (H, W, C) image (None: the image itself).

    Examples
    --------
    >>> centre_crop(np.arange(30).reshape(5, 6, 1), 2)[..., 0]
    array([[ 8,  9],
           [14, 15]])
    >>> centre_crop(np.zeros((5, 6, 1)), 8)
    Traceback (most recent call last):
    ...
    ValueError: cannot crop 8x8 from an image of 5x6
    """
    if size is None:
        return image
    h, w = image.shape[:2]
    if size > min(h, w):
        raise ValueError(f"cannot crop {size}x{size} from an image of {h}x{w}")
    top, left = (h - size) // 2, (w - size) // 2
    return image[top : top + size, left : left + size]


def kernel_group_means(runs: list[dict]) -> dict[str, tuple[float, int]]:
    """Mean PSNR and run count over the Levin kernels (1-8) and over all kernels of ``runs``.

    Examples
    --------
    >>> runs = [dict(kernel=k, psnr=float(k)) for k in range(1, 11)]
    >>> kernel_group_means(runs)
    {'levin 1-8': (4.5, 8), 'all': (5.5, 10)}
    """
    levin = [r["psnr"] for r in runs if r["kernel"] in LEVIN_KERNELS]
    return {"levin 1-8": (float(np.mean(levin)), len(levin)) if levin else (float("nan"), 0),
            "all": (float(np.mean([r["psnr"] for r in runs])), len(runs))}

#: Published PnP deblurring results on this protocol (REFERENCE.md section 4): CBSD68, the 8
#: Levin kernels, noise 12.75/255, mean PSNR (dB).  Copied, not re-run.
LITERATURE = (
    ("cbsd68", 12.75, "DRUNet firmly non-expansive by a penalty, PnP-FBS (published; not certified)", 26.03),
    ("cbsd68", 12.75, "Prox-DRS (published)", 26.64),
    ("cbsd68", 12.75, "best convergent-by-penalty method (published)", 27.60),
)




def extra_methods(name: str, model) -> list[str]:
    """The methods an extra certified model runs: each solver its certified alpha admits.

    Examples
    --------
    >>> class Firm:
    ...     def certified_alpha(self): return 0.5
    >>> extra_methods("probe", Firm())
    ['probe/fbs', 'probe/admm']
    """
    alpha = model.certified_alpha()
    return [f"{name}/fbs"] * (alpha < 1) + [f"{name}/admm"] * (alpha <= 0.5)


def run_one(method: str, y: torch.Tensor, op: Blur, kernel: str, noise: float, max_iter: int, baseline=None,
            device: str = "cpu", extras: dict | None = None):
    """(estimate, iterations, converged, guaranteed, stop reason) of one method on one problem.

    The PnP methods run on ``device`` (the closed-form Tikhonov stays on the CPU); the estimate
    comes back on the CPU.

    Examples
    --------
    >>> truth = torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    >>> op = Blur("box:3", boundary="circular")
    >>> x, iterations, converged, guaranteed, stop = run_one("tikhonov", op.A(truth), op, "box:3", 0.01, 10)
    >>> x.shape, iterations, converged, stop
    (torch.Size([1, 1, 32, 32]), 0, True, 'closed form')
    """
    if method == "tikhonov":
        return tikhonov_deblur(y, op, noise_level=noise).x, 0, True, None, "closed form"
    if "/" in method:  # an extra certified model, at the tuned strength and step of its solver
        stem, which = method.rsplit("/", 1)
        model = extras[stem]
        if model.channels != y.shape[1]:
            from denoisers import ChannelwiseDenoiser

            model = ChannelwiseDenoiser(model)
        solver = f"pnp-{which}"
        tuned = defaults_for(solver, y.shape[1])
        step = {"step_factor": tuned.step_factor} if tuned.step_factor is not None else \
            ({"step": tuned.step_for(noise)} if tuned.step_for(noise) is not None else {})
        op_here = op if torch.device(device) == op.kernel.device else copy.deepcopy(op).to(device)
        r = reconstruct(y.to(device), op_here, denoiser=model.to(device), solver=solver, sigma=tuned.strength * noise,
                        max_iter=max_iter, progress=False, **step)
        rep = r.report
        return r.image.cpu(), rep.iterations[0], rep.converged[0], rep.guaranteed, rep.stop_reason[0]
    if method in ("fbs", "admm"):
        r = deblur(y, op.kernel.numpy(), noise, solver=f"pnp-{method}", boundary="circular", max_iter=max_iter, progress=False,
                   device=device)
        rep = r.report
        return r.image.cpu(), rep.iterations[0], rep.converged[0], rep.guaranteed, rep.stop_reason[0]
    if method in ("pnp-tv", "baseline"):
        import warnings

        if method == "pnp-tv":
            from deepinv.models import TVDenoiser

            den = TVDenoiser(n_it_max=50)
        else:
            den = baseline
        tuned = defaults_for("pnp-fbs", y.shape[1])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "no certificate": recorded as guaranteed=False below
            # reconstruct() runs a float32 network on the float64 problem in its own dtype.
            # Module.to moves in place: the problem's operator is copied, so that the methods run after
            # this one (Tikhonov, deblur() with op.kernel) still find it on the CPU.
            op_here = op if torch.device(device) == op.kernel.device else copy.deepcopy(op).to(device)
            r = reconstruct(y.to(device), op_here, denoiser=den.to(device), solver="pnp-fbs", sigma=tuned.strength * noise,
                            step_factor=tuned.step_factor or 1.0, max_iter=max_iter, progress=False, strict=False)
        rep = r.report
        return r.image.cpu(), rep.iterations[0], rep.converged[0], rep.guaranteed, rep.stop_reason[0]
    raise ValueError(f"unknown method {method!r}")


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"K/N"`` -> ``(K, N)``: this process runs problems K, K+N, K+2N, ... (``None``: all).

    Shards let several processes (on a GPU machine, or on more cores) split one protocol, each
    writing its own ``--runs`` record; the records are then joined and the table made without
    ``--shard``.

    Examples
    --------
    >>> parse_shard("1/4"), parse_shard(None)
    ((1, 4), (0, 1))
    >>> parse_shard("4/4")
    Traceback (most recent call last):
    ...
    ValueError: --shard must be K/N with integers 0 <= K < N; got '4/4'
    """
    if text is None:
        return 0, 1
    try:
        k, n = (int(part) for part in text.split("/"))
    except ValueError:
        k, n = -1, 0
    if not 0 <= k < n:
        raise ValueError(f"--shard must be K/N with integers 0 <= K < N; got {text!r}")
    return k, n


def device_note(runs: list[dict]) -> str:
    """Where the runs ran, when not all on the CPU: their seconds are then not comparable.

    Examples
    --------
    >>> device_note([{"device": "cpu"}, {}])
    ''
    >>> device_note([{"device": "cuda"}, {"device": "cpu"}, {}])
    ' Runs by device: cpu 2, cuda 1 (seconds per run mix the devices).'
    """
    from collections import Counter

    c = Counter(r.get("device", "cpu") for r in runs)  # runs recorded before --device ran on the CPU
    if set(c) <= {"cpu"}:
        return ""
    return " Runs by device: " + ", ".join(f"{k} {v}" for k, v in sorted(c.items())) + " (seconds per run mix the devices)."


def _other_stops(runs: list[dict]) -> str:
    """'diverged 2, max_iter 1' for the runs that neither converged nor were closed-form."""
    from collections import Counter

    c = Counter(r.get("stop", "?") for r in runs if not r["converged"])
    return ", ".join(f"{k} {v}" for k, v in sorted(c.items())) or "-"


def setup_fingerprint(method: str, channels: int, baseline_path: str | None, extra_paths: dict | None = None) -> str:
    """What a run's result depends on besides the problem: the model file and the tuned
    defaults.  Cached runs are reused only when it matches (re-exported weights redo them).

    Examples
    --------
    >>> setup_fingerprint("tikhonov", 1, None)
    'tikhonov-gradient-discrepancy'
    >>> setup_fingerprint("fbs", 1, None).split(":")[0], setup_fingerprint("admm", 1, None).split(":")[0]
    ('gray-averaged', 'gray-firm')
    """
    from denoisers import default_pretrained_name
    from denoisers.pretrained import pretrained_path
    from pnp_stable.registry import solver_info

    if method == "tikhonov":
        return "tikhonov-gradient-discrepancy"
    if method in ("fbs", "admm"):
        solver = f"pnp-{method}"
        # The model deblur() runs for this solver (one per solver condition, every level) and
        # the tuned strength and step fix the result.
        name = default_pretrained_name(channels, solver_info(solver).denoiser_alpha)
        return f"{name}:{file_digest(pretrained_path(name))}:{defaults_for(solver, channels)}"
    if method == "pnp-tv":
        return f"tv-n50:{defaults_for('pnp-fbs', channels)}"
    if "/" in method:
        stem, which = method.rsplit("/", 1)
        return f"extra:{file_digest(extra_paths[stem])}:{defaults_for(f'pnp-{which}', channels)}"
    return f"baseline:{file_digest(baseline_path)}:{defaults_for('pnp-fbs', channels)}"


def common_problem_means(runs: list[dict]) -> tuple[int, dict[str, float]]:
    """Mean PSNR of each method over the problems (set, image, kernel, level) that every method
    in ``runs`` ran: a like-for-like comparison when a chunked protocol is partial.

    Returns
    -------
    count : int
        Problems shared by all methods.
    means : dict
        Method -> mean PSNR (dB) on them (empty when no problem is shared).

    Examples
    --------
    >>> runs = [dict(set="s", image=i, kernel=1, level=12.75, method=m, psnr=p)
    ...         for i, m, p in [("a", "fbs", 26.0), ("a", "admm", 25.0), ("b", "fbs", 30.0)]]
    >>> common_problem_means(runs)
    (1, {'fbs': 26.0, 'admm': 25.0})
    """
    by_method: dict[str, dict[tuple, float]] = {}
    for r in runs:
        by_method.setdefault(r["method"], {})[(r["set"], r["image"], r["kernel"], r["level"])] = r["psnr"]
    if not by_method:
        return 0, {}
    shared = set.intersection(*(set(v) for v in by_method.values()))
    if not shared:
        return 0, {}
    return len(shared), {m: float(np.mean([v[p] for p in sorted(shared)])) for m, v in by_method.items()}




def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="folder holding the test sets")
    ap.add_argument("--sets", default="set12")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--kernels", default=None,
                    help="kernel numbers 1-10 (1-8 Levin, 9 box 9x9, 10 Gaussian std 1.6 of 25x25), 'levin' or 'all' "
                         "(default: the protocol's)")
    ap.add_argument("--protocol", choices=sorted(PROTOCOLS), default="levin",
                    help="levin: kernels 1-8 on whole images (default); gspnp: kernels 1-10 on 256x256 centre crops")
    ap.add_argument("--crop", type=int, default=None, help="centre crop side (default: the protocol's)")
    ap.add_argument("--levels", default="2.55,7.65,12.75")
    ap.add_argument("--methods", default="tikhonov,fbs,admm,pnp-tv")
    ap.add_argument("--max-iter", type=int, default=200)
    ap.add_argument("--baseline", default=None, help="weights of the matched unconstrained baseline")
    ap.add_argument("--extra", action="append", default=[],
                    help="weights of another certified model, run in each solver its certificate admits (repeatable)")
    ap.add_argument("--runs", default=str(_HERE / "runs" / "deblur.jsonl"),
                    help="JSON-lines record of finished runs, reused when their setup matches (default: %(default)s)")
    ap.add_argument("--reuse", action="append", default=[],
                    help="another record whose runs count as done (read only; repeatable): shards skip what the main record has")
    ap.add_argument("--max-minutes", type=float, default=None, help="start no new problem after this long (rerun to go on)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--device", default="cpu", help="where the PnP methods run (e.g. cuda; default: %(default)s)")
    ap.add_argument("--shard", default=None,
                    help="K/N: run only problems K, K+N, ... (parallel processes, each with its own --runs); "
                         "writes no table: join the records and rerun without --shard")
    args = ap.parse_args()
    try:
        shard, shards = parse_shard(args.shard)
    except ValueError as err:
        ap.error(str(err))
    retain_freed_memory()  # as the command line does: no page faults on every iteration's buffers
    from tqdm.auto import tqdm

    baseline = None
    if args.baseline:
        from denoisers.weights import load_weights

        baseline = load_weights(args.baseline)
    from denoisers.weights import load_weights

    extra_paths = {Path(f).stem: f for f in args.extra}
    extras = {stem: load_weights(f) for stem, f in extra_paths.items()}
    methods = args.methods.split(",") + (["baseline"] if baseline is not None else []) \
        + [m for stem, model in extras.items() for m in extra_methods(stem, model)]

    def baseline_for(channels: int):
        """The baseline as it runs on images of ``channels``: a gray one per channel on colour."""
        if baseline is None or baseline.config["channels"] == channels:
            return baseline
        from denoisers import ChannelwiseDenoiser

        return ChannelwiseDenoiser(baseline)
    protocol = PROTOCOLS[args.protocol]
    try:
        kernels = parse_kernels(args.kernels) if args.kernels else list(protocol["kernels"])
    except ValueError as err:
        ap.error(str(err))
    args.kernels = ",".join(map(str, kernels))
    crop = args.crop if args.crop is not None else protocol["crop"]
    if crop is not None and crop < 16:
        ap.error(f"--crop must be at least 16 pixels; got {crop}")
    levels = [float(v) for v in args.levels.split(",")]
    record = Path(args.runs)
    record.parent.mkdir(parents=True, exist_ok=True)
    known = [r for path in args.reuse for r in load_records(Path(path))] + load_records(record)
    # Records made before --crop existed ran on whole images (crop None).
    done = {(r["set"], r["image"], r["kernel"], r["level"], r["method"], r["max_iter"], r["setup"], r.get("crop")): r for r in known}
    # The table shows every method with recorded runs on these problems (matching the current
    # model and defaults), not only those computed now: a chunk of one method keeps the others.
    tabled = list(dict.fromkeys(methods + ["tikhonov", "fbs", "admm", "pnp-tv"]))
    runs, t0, stopped = [], time.time(), False
    for name in args.sets.split(","):
        channels = SET_CHANNELS[name]
        folder = ImageFolder(Path(args.data) / name, channels, limit=args.limit)
        jobs = [(i, k, lv) for i in range(len(folder)) for k in kernels for lv in levels]
        setups = {(m, lv): setup_fingerprint(m, channels, args.baseline, extra_paths) for m in tabled for lv in levels}
        if shards > 1:
            jobs = jobs[shard::shards]
        for i, k, lv in tqdm(jobs, desc=name if shards == 1 else f"{name} {shard}/{shards}"):
            keys = {m: (name, folder.files[i].name, k, lv, m, args.max_iter, setups[m, lv], crop) for m in tabled}
            todo = [m for m in methods if keys[m] not in done]
            runs += [done[keys[m]] for m in tabled if keys[m] in done]
            if not todo:
                continue
            if args.max_minutes is not None and time.time() - t0 > 60 * args.max_minutes:
                stopped = True  # no new runs; the recorded ones of the remaining problems still count
                continue
            truth = image_to_batch(centre_crop(folder.images[i], crop))
            noise = lv / 255
            op = Blur(PROTOCOL_KERNELS[k], boundary="circular", noise_model=Gaussian(noise, rng=torch.Generator().manual_seed(0)))
            y = op(truth, seed=100000 * k + 1000 * int(lv * 100) + i)
            for m in todo:
                t1 = time.perf_counter()
                x, its, conv, guar, stop = run_one(m, y, op, PROTOCOL_KERNELS[k], noise, args.max_iter, baseline_for(channels),
                                                   args.device, extras)
                p, s = metrics(x, truth)
                run = dict(set=name, image=folder.files[i].name, kernel=k, level=lv, method=m, psnr=p, ssim=s,
                           iterations=int(its), converged=bool(conv), guaranteed=guar, stop=stop, seconds=time.perf_counter() - t1,
                           max_iter=args.max_iter, setup=setups[m, lv], device=args.device, crop=crop)
                runs.append(run)
                append_record(record, run)  # one line per run: a kill loses at most the run in progress
    if shards > 1:
        print(f"shard {shard}/{shards}: {len(runs)} runs in {record}; join the shards' records and rerun without --shard for the table")
        return
    tabled = [m for m in tabled if any(r["method"] == m for r in runs)]
    expected = sum(len(ImageFolder(Path(args.data) / n, SET_CHANNELS[n], limit=args.limit)) for n in args.sets.split(",")) \
        * len(kernels) * len(levels) * len(tabled)
    partial = len(runs) < expected
    # Describe only the methods this table has.
    tv_note = "; pnp-tv: PnP-FBS with deepinv's TVDenoiser (no certificate)" if "pnp-tv" in methods else ""
    lines = [
        f"`python benchmarks/quality_deblur.py --data DATA/test --sets {args.sets}{f' --limit {args.limit}' if args.limit else ''} "
        f"--protocol {args.protocol} --kernels {args.kernels}{f' --crop {crop}' if crop != protocol['crop'] else ''} "
        f"--levels {args.levels} --methods {args.methods}{' --baseline BASELINE' if args.baseline else ''}"
        f"{''.join(f' --extra {Path(f).name}' for f in args.extra)} --max-iter {args.max_iter}` "
        f"({'a SUBSET of the protocol: ' if args.limit or set(protocol['kernels']) - set(kernels) else ''}"
        f"{len({(r['set'], r['image']) for r in runs})} images{f', {crop}x{crop} centre crops' if crop else ''}, "
        f"kernels {args.kernels} ({', '.join(PROTOCOL_KERNELS[k] for k in kernels)})"
        f"{f'; PARTIAL: {len(runs)} of {expected} runs so far' if partial else ''}; runs recorded in "
        f"`benchmarks/runs/{record.name}` and reused while model and defaults are unchanged). Circular blur, seeded noise; "
        "fbs/admm: deblur() with the shipped certified denoiser and its tuned defaults (gray and colour apart)"
        f"{tv_note}"
        f"{f'; baseline: PnP-FBS with the matched unconstrained network `{Path(args.baseline).name}` (no certificate), same defaults as fbs' if args.baseline else ''}"
        f"{'; STEM/fbs, STEM/admm: the certified model STEM.pt given by --extra, at the shipped models tuned strength and step' if args.extra else ''}"
        ". Mean PSNR (dB) / SSIM; iterations mean (max); 'conv.' counts runs that reached the "
        f"1e-4 residual; 'other stops' counts runs ended otherwise (diverged, non-monotone, non-finite, max_iter); seconds per run (mean). Machine: {machine()}.{device_note(runs)}",
        "",
        "| set | noise /255 | method | runs | PSNR / SSIM | iterations | conv. | other stops | guaranteed | s / run |",
        "|---|---|---|---:|---|---|---|---|---|---:|",
    ]
    for name in args.sets.split(","):
        for lv in levels:
            for m in tabled:
                rs = [r for r in runs if r["set"] == name and r["level"] == lv and r["method"] == m]
                if not rs:
                    continue
                its = [r["iterations"] for r in rs]
                guar = {r["guaranteed"] for r in rs}
                lines.append(f"| {name} | {lv:g} | {m} | {len(rs)} | {np.mean([r['psnr'] for r in rs]):.2f} / "
                             f"{np.mean([r['ssim'] for r in rs]):.3f} | {np.mean(its):.0f} ({max(its)}) | "
                             f"{sum(r['converged'] for r in rs)}/{len(rs)} | {_other_stops(rs)} | "
                             f"{'-' if guar == {None} else ('yes' if guar == {True} else 'no')} | "
                             f"{np.mean([r['seconds'] for r in rs]):.1f} |")
    colour = any(SET_CHANNELS[n] == 3 for n in args.sets.split(","))
    for name, lv, label, psnr in LITERATURE:
        if colour and lv in levels:
            lines.append(f"| {name} | {lv:g} | {label}; kernel set unverified | - | {psnr:.2f} | - | - | - | - | - |")
    if set(kernels) - set(LEVIN_KERNELS) and set(kernels) & set(LEVIN_KERNELS):
        # The published rows may be on either kernel set: give both means from the same runs.
        lines += ["", "Mean PSNR (dB) over the 8 Levin kernels and over all the kernels of these runs (runs in brackets):", "",
                  "| set | noise /255 | method | Levin 1-8 | all kernels |", "|---|---|---|---|---|"]
        for name in args.sets.split(","):
            for lv in levels:
                for m in tabled:
                    rs = [r for r in runs if r["set"] == name and r["level"] == lv and r["method"] == m]
                    if rs:
                        g = kernel_group_means(rs)
                        lines.append(f"| {name} | {lv:g} | {m} | {g['levin 1-8'][0]:.2f} ({g['levin 1-8'][1]}) | "
                                     f"{g['all'][0]:.2f} ({g['all'][1]}) |")
    for name in args.sets.split(","):
        for lv in levels:
            here = [r for r in runs if r["set"] == name and r["level"] == lv]
            common, means = common_problem_means(here)
            if means and len({sum(r["method"] == m for r in here) for m in means}) > 1:
                lines += ["", f"The methods ran on different numbers of problems; on the {common} problems of {name} at noise {lv:g} "
                          "that all of them ran, mean PSNR: " + ", ".join(f"{m} {v:.2f} dB" for m, v in means.items()) + "."]
    print("\n".join(lines))
    if stopped:
        print(f"stopped after --max-minutes {args.max_minutes:g}: rerun the same command to go on", file=sys.stderr)
    # One section per set list, so a chunk on one set does not erase the tables of the others.
    # The GS-PnP protocol (other kernels, crops) gets a section of its own beside the Levin one.
    suffix = "" if args.protocol == "levin" and crop is None else f"-{args.protocol}"
    title = "Levin kernels" if not suffix else f"{args.protocol} protocol: {len(kernels)} kernels{f', {crop}x{crop} crops' if crop else ''}"
    write_section(f"deblurring-{args.sets.replace(',', '-')}{suffix}",
                  f"## PnP deblurring quality ({title}, {args.sets})\n\n" + "\n".join(lines))
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=1))


if __name__ == "__main__":
    main()
