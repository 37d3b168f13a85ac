"""Compare training runs at equal CPU time: learning curves and denoising PSNR at several levels.

Every run is scored on the held-out training images of its own configuration (the runs to
compare share data, split and seed, so they share those images; never a test set).  For each
run, at each level: the network alone, and the network with its relaxation ``theta(sigma)``
fitted on the same held-out images (the project's strength calibration).  The shipped models
named with ``--shipped`` are scored on the same images beside them.  Writes a markdown table
to stdout and, with ``--figure``, validation PSNR against training minutes.

Usage::

    python training/compare_runs.py training/runs/range-plain training/runs/range-cond
        --levels 15/255,25/255,50/255 --shipped gray-averaged-s25,gray-averaged-s50 [--figure curves.png]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch


def _level(text: str) -> float:
    num, _, den = text.partition("/")
    return float(num) / (float(den) if den else 1.0)


def load_run(run: Path):
    """(model in eval mode, training config, log entries) of a run folder's last checkpoint."""
    from denoisers.registry import build_model

    ck = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)
    cfg = ck["config"]
    model = build_model(cfg["model"], channels=cfg["channels"], **cfg["model_kwargs"])
    model.load_state_dict(ck["model"])
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]
    return model.eval(), cfg, log, ck


def held_out(cfg: dict):
    """The held-out training images of a run's configuration."""
    from denoisers.training import TrainConfig, _split_folders

    keep = {k: v for k, v in cfg.items() if k in TrainConfig.__dataclass_fields__}
    return _split_folders(TrainConfig(**keep))[1]


def score(model, images, levels) -> list[float]:
    from denoisers.training import validation_psnr

    with torch.no_grad():
        return [validation_psnr(model, images, s) for s in levels]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--levels", default="15/255,25/255,50/255")
    ap.add_argument("--shipped", default="")
    ap.add_argument("--figure", default=None)
    ap.add_argument("--no-fit", action="store_true", help="score the networks alone (skip the fitted theta(sigma) rows)")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    from denoisers.pretrained import load_pretrained
    from denoisers.strength import calibrate_strength

    levels = [_level(v) for v in args.levels.split(",")]
    head = " | ".join(f"{s * 255:g}/255" for s in levels)
    rows, curves, images = [], {}, None
    for run in args.runs:
        model, cfg, log, ck = load_run(run)
        val = held_out(cfg)
        images = val.images if images is None else images
        if [str(f) for f in val.files] != [str(f) for f in held_out(cfg).files]:
            print(f"{run}: another held-out split; not comparable", file=sys.stderr)
            return 2
        minutes = ck["wall_time"] / 60
        rows.append((f"{run.name}: network alone", ck["step"], minutes, score(model, images, levels)))
        if hasattr(model, "strength") and not args.no_fit:
            model.strength = calibrate_strength(model, images, levels)
            rows.append((f"{run.name}: with theta(sigma) fitted on these images", ck["step"], minutes, score(model, images, levels)))
        curves[run.name] = [(e["wall_time"] / 60, e["val_psnr"]) for e in log if "val_psnr" in e]
    for name in filter(None, args.shipped.split(",")):
        rows.append((f"shipped {name}", None, None, score(load_pretrained(name), images, levels)))
    print(f"| model | steps | minutes | {head} |")
    print("|---|---:|---:|" + "---:|" * len(levels))
    for label, steps, minutes, psnrs in rows:
        cells = " | ".join(f"{p:.2f}" for p in psnrs)
        print(f"| {label} | {steps if steps is not None else '-'} | {f'{minutes:.0f}' if minutes is not None else '-'} | {cells} |")
    if args.figure:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
        for name, pts in curves.items():
            if pts:
                ax.plot(*zip(*pts), marker="o", label=name)
        ax.set_xlabel("training minutes (this run)")
        ax.set_ylabel("validation PSNR (dB), held-out training images")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.savefig(args.figure, dpi=100)
    return 0


if __name__ == "__main__":
    sys.exit(main())
