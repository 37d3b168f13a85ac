"""Gaussian denoising quality: PSNR and SSIM on Set12, BSD68 (gray) and CBSD68 (colour).

Rows, at noise 15, 25, 50 /255 (noise seeded per image and level, outputs clipped to [0, 1]):

* ours, averaged: the default certified model of PnP-FBS (noise-conditioned, alpha < 1),
  called as the solvers call it, ``denoiser(y, sigma)``;
* ours, firmly non-expansive: the default model of PnP-ADMM (noise-conditioned, trained as
  ``(I + N) / 2``, alpha <= 1/2), called the same way;
* the matched unconstrained baseline, if ``--baseline FILE`` gives its weights;
* any other certified model, with ``--extra FILE`` (repeatable; e.g. an equilibrium (LBEN)
  denoiser in training), its seconds per image beside it;
* TV (scikit-image ``denoise_tv_chambolle``), its weight tuned per level on the 12 BSD400
  images held out from training (``--train``), never on a test set;
* the literature rows of REFERENCE.md (copied, not re-run).

One model per image type and solver condition serves every level (``default_pretrained_name``);
the table says which model served which set.  Writes the "denoising" section of
benchmarks/RESULTS.md.

Usage::

    python benchmarks/quality_denoise.py --data ../shared/data/test --train ../shared/data/train/bsd400
        [--sets set12,bsd68,cbsd68] [--levels 15,25,50] [--limit N] [--baseline FILE] [--extra FILE ...] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from benchlib import batch_to_image, image_to_batch, machine, metrics, write_section  # the script's folder is on sys.path

from denoisers import available_pretrained, default_pretrained, default_pretrained_name
from denoisers.data import ImageFolder
from pnp_stable.allocator import retain_freed_memory

#: Published PSNRs (dB) from REFERENCE.md section 4: (model, set) -> {level: psnr}.
LITERATURE = {
    ("DnCNN (unconstrained)", "bsd68"): {15: 31.73, 25: 29.23, 50: 26.23},
    ("DnCNN", "set12"): {15: 32.86, 25: 30.44, 50: 27.18},
    ("DRUNet (unconstrained)", "bsd68"): {15: 31.91, 25: 29.48, 50: 26.59},
    ("DnCNN colour", "cbsd68"): {15: 33.90, 25: 31.24, 50: 27.95},
    ("CRR-NN (convex, certified)", "bsd68"): {15: 30.55, 25: 28.10},
    ("WCRR-NN (weakly convex, certified)", "bsd68"): {15: 31.21, 25: 28.68},
    ("DRUNet firmly non-expansive by a penalty (not certified)", "cbsd68"): {15: 32.21, 25: 29.99},
}
SET_CHANNELS = {"set12": 1, "bsd68": 1, "cbsd68": 3}
TV_WEIGHTS = (0.02, 0.03, 0.05, 0.07, 0.1, 0.14, 0.2, 0.28)




def _noisy(truth: np.ndarray, level: float, seed: int) -> np.ndarray:
    return truth + level * np.random.default_rng(seed).standard_normal(truth.shape)


def _as_float(img: np.ndarray) -> np.ndarray:
    a = img.astype(np.float64) / 255.0
    return a[..., 0] if a.shape[-1] == 1 else a


def tune_tv(train_images: list[np.ndarray], level: float) -> float:
    """TV weight with the best mean PSNR on training images at ``level``.

    Examples
    --------
    >>> from skimage import data
    >>> tune_tv([data.camera()[::8, ::8] / 255.0], 25 / 255) in TV_WEIGHTS
    True
    """
    from skimage.restoration import denoise_tv_chambolle

    best, best_w = -np.inf, TV_WEIGHTS[0]
    for w in TV_WEIGHTS:
        score = np.mean([metrics(denoise_tv_chambolle(_noisy(x, level, 7 + i), weight=w), x)[0] for i, x in enumerate(train_images)])
        if score > best:
            best, best_w = score, w
    return best_w






def _baseline_sentence(baseline, steps: int | None) -> str:
    """How the matched baseline was made (empty without one)."""
    if baseline is None:
        return ""
    cfg = baseline.config
    return (f"Matched unconstrained baseline: {type(baseline).__name__} width {cfg.get('width')}, depth {cfg.get('depth')}, "
            f"no batch normalisation, same data and patches, {steps} steps in all, no certificate "
            "(training/README.md); compared on the gray sets only. ")


def _certificate_cost(results: dict, sets: list[str], levels: list[float]) -> list[str]:
    """Sentences: what the certificate costs, baseline minus ours, where the baseline ran."""
    out = []
    for name in sets:
        gaps = [(lv, results[(name, lv)]["baseline"][0] - results[(name, lv)]["averaged"][0],
                 results[(name, lv)]["baseline"][0] - results[(name, lv)]["firm"][0])
                for lv in levels if "baseline" in results[(name, lv)]]
        if gaps:
            out.append(f"- {name}, baseline minus ours (averaged / firmly non-expansive), dB: "
                       + ", ".join(f"sigma {lv:g}: {a:+.2f} / {b:+.2f}" for lv, a, b in gaps) + ".")
    if out:
        out = ["", "Cost of the certificate (positive: the unconstrained baseline is better):", ""] + out
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="folder holding set12/, bsd68/, cbsd68/")
    ap.add_argument("--train", required=True, help="BSD400 training folder (its last 12 images tune TV)")
    ap.add_argument("--sets", default="set12,bsd68,cbsd68")
    ap.add_argument("--levels", default="15,25,50")
    ap.add_argument("--limit", type=int, default=None, help="first N images of each set (quick runs)")
    ap.add_argument("--baseline", default=None, help="weights of the matched unconstrained baseline")
    ap.add_argument("--extra", action="append", default=[], help="weights of another certified model to tabulate (repeatable)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    retain_freed_memory()  # as the command line does: no page faults on every iteration's buffers
    from skimage.restoration import denoise_tv_chambolle
    from tqdm.auto import tqdm

    levels = [float(v) for v in args.levels.split(",")]
    train_gray = [_as_float(im) for im in ImageFolder(args.train, 1).images[-12:]]
    tv_w = {lv: tune_tv(train_gray, lv / 255) for lv in levels}
    baseline, baseline_sigma, baseline_range, rec_steps = None, None, False, None
    if args.baseline:
        from denoisers.weights import load_weights

        baseline, rec = load_weights(args.baseline, return_record=True)
        baseline_sigma = rec["metadata"].get("sigma")
        baseline_range = rec["metadata"].get("sigma_max") is not None
        rec_steps, link = rec["metadata"].get("steps_done") or 0, rec["metadata"].get("init")
        while link:  # steps of the models it was fine-tuned from count too
            rec_steps, link = rec_steps + (link.get("steps_done") or 0), link.get("init")
    from denoisers.weights import load_weights

    extras = {Path(f).stem: load_weights(f) for f in args.extra}
    extra_seconds: dict[str, list[float]] = {k: [] for k in extras}
    info = available_pretrained()
    results, t0 = {}, time.time()
    served: dict[str, set[str]] = {}
    for name in args.sets.split(","):
        ch = SET_CHANNELS[name]
        folder = ImageFolder(Path(args.data) / name, ch, limit=args.limit)
        # The models deblur() uses for this image type: PnP-FBS's and PnP-ADMM's.
        models = {"averaged": default_pretrained(ch), "firm": default_pretrained(ch, target_alpha=0.5)}
        served[name] = {default_pretrained_name(ch), default_pretrained_name(ch, target_alpha=0.5)}
        for lv in levels:
            sig = lv / 255
            acc = {k: [] for k in ("averaged", "firm", "TV", "baseline", *extras)}
            for i, img in enumerate(tqdm(folder.images, desc=f"{name} sigma {lv:g}")):
                truth = _as_float(img)
                y = _noisy(truth, sig, 1000 * int(lv) + i)
                yt = image_to_batch(y, torch.float32)
                with torch.no_grad():
                    for key, model in models.items():
                        acc[key].append(metrics(batch_to_image(model(yt, sig)), truth))
                acc["TV"].append(metrics(denoise_tv_chambolle(y, weight=tv_w[lv], channel_axis=-1 if ch == 3 else None), truth))
                # A gray baseline is compared on gray sets only: run per channel it would not be matched.
                if baseline is not None and baseline.config["channels"] == ch:
                    with torch.no_grad():
                        acc["baseline"].append(metrics(batch_to_image(baseline(yt, sig)), truth))
                for key, model in extras.items():
                    if model.channels == ch:
                        with torch.no_grad():
                            t1 = time.perf_counter()
                            out = model(yt, sig)
                            extra_seconds[key].append(time.perf_counter() - t1)
                        acc[key].append(metrics(batch_to_image(out), truth))
            results[(name, lv)] = {k: (float(np.mean([p for p, _ in v])), float(np.mean([s for _, s in v]))) for k, v in acc.items() if v}
            results[(name, lv)]["models"] = sorted(served[name])
            print(name, lv, results[(name, lv)], flush=True)
    shipped = ", ".join(f"{n} ({i.steps} steps, certified alpha {i.alpha:.4f})" for n, i in info.items())
    lines = [
        f"`python benchmarks/quality_denoise.py --data DATA/test --train DATA/train/bsd400 --sets {args.sets} --levels {args.levels}"
        f"{f' --limit {args.limit}' if args.limit else ''}{' --baseline FILE' if baseline is not None else ''}"
        f"{''.join(f' --extra {Path(f).name}' for f in args.extra)}` "
        f"({time.time() - t0:.0f} s). Shipped: {shipped}. {_baseline_sentence(baseline, rec_steps)}"
        "PSNR (dB) / SSIM, noise seeded per image, outputs clipped to [0, 1]. 'averaged' is PnP-FBS's default model, "
        "'firmly non-expansive' PnP-ADMM's, each called as the solvers call it (denoiser(y, sigma)); one noise-conditioned "
        "model of each kind serves every level: "
        + "; ".join(f"{s}: {', '.join(sorted(m))}" for s, m in served.items())
        + ". TV weights tuned on 12 held-out BSD400 training "
        f"images: {', '.join(f'{lv:g}: {w:g}' for lv, w in tv_w.items())}. Literature rows are copied from REFERENCE.md. "
        f"Machine: {machine()}.",
        "",
        "| set | method | " + " | ".join(f"sigma {lv:g}" for lv in levels) + " |",
        "|---|---|" + "---|" * len(levels),
    ]
    labels = {"averaged": "ours, certified averaged (PnP-FBS's)", "firm": "ours, certified firmly non-expansive (PnP-ADMM's)",
              "baseline": "matched unconstrained baseline" + (f" (DnCNN, trained at {255 * baseline_sigma:.3g}/255 only)"
                                                             if baseline_sigma and not baseline_range else " (DnCNN)"),
              "TV": "TV (scikit-image, tuned)"}
    for key, model in extras.items():
        secs = f", {np.mean(extra_seconds[key]):.2f} s per image" if extra_seconds[key] else ""
        labels[key] = f"{key} ({type(model).__name__}, certified alpha {model.certified_alpha():.4f}{secs})"
    for name in args.sets.split(","):
        for key, label in labels.items():
            if all(key in results[(name, lv)] for lv in levels):
                cells = [f"{results[(name, lv)][key][0]:.2f} / {results[(name, lv)][key][1]:.3f}" for lv in levels]
                lines.append(f"| {name} | {label} | " + " | ".join(cells) + " |")
        for (model, set_name), vals in LITERATURE.items():
            if set_name == name:
                lines.append(f"| {name} | {model} (published) | " + " | ".join(f"{vals[int(lv)]:.2f}" if int(lv) in vals else "-" for lv in levels) + " |")
    lines += _certificate_cost(results, args.sets.split(","), levels)
    write_section(f"denoising-{args.sets.replace(',', '-')}", f"## Denoising quality ({args.sets})\n\n" + "\n".join(lines))
    if args.json:
        Path(args.json).write_text(json.dumps({f"{k[0]}@{k[1]:g}": v for k, v in results.items()}, indent=1))


if __name__ == "__main__":
    main()
