"""The ``pnp-stable`` command line.  Bad input exits with status 2 and one clear line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from ._version import __version__
from .allocator import retain_freed_memory
from .commands import IMAGE_COMMANDS, add_image_commands
from .registry import DEFAULT_SOLVER

__all__ = ["main", "build_parser"]

#: Default noise levels (x/255) of ``pnp-stable export --calibrate-strength``.
STRENGTH_LEVELS_255 = (1, 2.55, 5, 7.65, 10, 12.75, 15, 20, 25, 30, 40, 50)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (subcommands grow with the toolbox).

    Examples
    --------
    >>> build_parser().parse_args(["demo", "--noise", "0.02"]).noise
    0.02
    """
    parser = argparse.ArgumentParser(
        prog="pnp-stable",
        description="Plug-and-Play imaging with certified averaged denoisers.",
    )
    parser.add_argument("--version", action="version", version=f"pnp-stable {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser("demo", help="deblur a bundled photograph and write a figure")
    demo.add_argument("-o", "--output", default="deblur_demo.png", help="figure file (default: %(default)s)")
    demo.add_argument("--image", default="camera", help="bundled image name or a path (default: %(default)s)")
    demo.add_argument("--kernel", default="levin:1", help="kernel spec, e.g. gaussian:1.6, levin:3, motion:15,45 (default: %(default)s)")
    demo.add_argument("--noise", type=float, default=0.01, help="noise standard deviation in [0, 1] units (default: %(default)s)")
    demo.add_argument("--seed", type=int, default=0, help="noise seed (default: %(default)s)")
    demo.add_argument("--solver", default=DEFAULT_SOLVER, help="PnP solver (default: %(default)s)")
    demo.add_argument("--size", type=int, default=256, help="downscale so the longer side is at most this; 0: full size (default: %(default)s)")
    demo.add_argument("--max-iter", type=int, default=200)
    demo.add_argument("--no-progress", action="store_true")
    demo.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    tr = sub.add_parser("train", help="train a denoiser (resumes from OUT/checkpoint.pt)")
    tr.add_argument("train_dir", help="folder of training images (never a test set)")
    tr.add_argument("-o", "--out", required=True, help="run folder: checkpoint, log, config")
    tr.add_argument("--model", default="averaged",
                    help="averaged, nonexpansive (gradient-flow blocks), lben (equilibrium network), or a baseline: dncnn, "
                         "spectral-resnet (default: %(default)s)")
    tr.add_argument("--channels", type=int, default=1, choices=(1, 3))
    tr.add_argument("--sigma", type=_level, default=25 / 255, help="noise level in [0, 1] units, e.g. 0.1 or 25/255")
    tr.add_argument("--sigma-max", type=_level, default=None, help="upper end of a noise range")
    tr.add_argument("--width", type=int, default=32)
    tr.add_argument("--depth", type=int, default=8)
    tr.add_argument("--integrator", default="euler")
    tr.add_argument("--activation", default="leaky_relu")
    tr.add_argument("--margin", type=float, default=0.95)
    tr.add_argument("--max-substeps", type=int, default=None)
    tr.add_argument("--hidden", type=int, default=16, help="lben: hidden channels of the equilibrium (default: %(default)s)")
    tr.add_argument("--kernel-size", type=int, default=3, help="lben: side of the odd convolution kernels (default: %(default)s)")
    tr.add_argument("--gamma", type=float, default=1.0, help="lben: the Lipschitz bound it is built with (default: %(default)s)")
    tr.add_argument("--monotonicity", type=float, default=0.5, help="lben: the LMI margin m > 0 (default: %(default)s)")
    tr.add_argument("--leak", type=float, default=0.0, help="lben: LeakyReLU slope in [0, 1) (default: %(default)s, ReLU)")
    tr.add_argument("--pad", type=int, default=4, help="lben: zero margin around the image (default: %(default)s)")
    tr.add_argument("--eq-tol", type=float, default=1e-4, help="lben: equilibrium tolerance (default: %(default)s)")
    tr.add_argument("--eq-max-iter", type=int, default=200, help="lben: equilibrium iteration cap (default: %(default)s)")
    tr.add_argument("--noise-knots", default=None, metavar="LEVELS",
                    help="condition the blocks' biases on the noise level, learned at these levels, comma separated "
                         "(e.g. 0,10/255,25/255,50/255); the certificate does not depend on them")
    tr.add_argument("--theta", type=float, default=None,
                    help="averaged and lben models: train D = (1 - theta) I + theta N end to end (e.g. 0.5, so that D is "
                         "firmly non-expansive for PnP-ADMM); default: the network alone (averaged), 0.99 (lben)")
    tr.add_argument("--patch", type=int, default=48)
    tr.add_argument("--batch-size", type=int, default=32)
    tr.add_argument("--steps", type=int, default=2000)
    tr.add_argument("--lr", type=float, default=1e-3)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--val-dir", default=None, help="held-out folder (default: hold out --val-split training images)")
    tr.add_argument("--val-split", type=int, default=12)
    tr.add_argument("--val-every", type=int, default=200)
    tr.add_argument("--checkpoint-every", type=int, default=50)
    tr.add_argument("--threads", type=int, default=0)
    tr.add_argument("--init", default=None, metavar="WEIGHTS",
                    help="start from this weights file or shipped model (fine-tuning; same architecture)")
    tr.add_argument("--max-minutes", type=float, default=None, help="stop cleanly after this long (resume later)")
    tr.add_argument("--stop-after", type=int, default=None, metavar="STEPS", help="stop cleanly after this many steps (resume later)")
    tr.add_argument("--device", default=None, help="train on this torch device, e.g. cuda (default: cpu); "
                    "not part of the run's configuration, so a run may resume elsewhere. Several processes or GPUs: "
                    "torchrun --nproc_per_node N -m pnp_stable train ... (each takes its share of every batch)")
    tr.add_argument("--no-progress", action="store_true")
    ex = sub.add_parser("export", help="write a run folder's model as a weights file with its training record")
    ex.add_argument("run", help="run folder of pnp-stable train")
    ex.add_argument("-o", "--output", required=True, help="weights file to write")
    ex.add_argument("--note", default="", help="free text stored in the metadata")
    ex.add_argument("--calibrate-strength", action="store_true",
                    help="fit the relaxation theta(sigma) on the run's held-out training images (averaged models)")
    ex.add_argument("--strength-levels", default=",".join(f"{v:g}/255" for v in STRENGTH_LEVELS_255),
                    help="noise levels of the calibration, comma separated (default: %(default)s)")
    ex.add_argument("--overwrite", action="store_true")

    add_image_commands(sub, _level)

    sub.add_parser("solvers", help="list the registered solvers and what each guarantees")
    mo = sub.add_parser("models", help="list the shipped certified denoisers with their certificates")
    mo.add_argument("--json", dest="json_out", action="store_true", help="print JSON instead of a table")

    ce = sub.add_parser("certify", help="print the certificate of a weights file")
    ce.add_argument("model", help="weights file written by pnp-stable (export_weights)")
    ce.add_argument("--no-empirical", action="store_true", help="skip the empirical lower bounds")
    ce.add_argument("--json", dest="json_out", default=None, help="also write the certificate as JSON to this file")
    ce.add_argument("--overwrite", action="store_true")

    rt = sub.add_parser("robust-train", help="train a certified-robust classifier on a folder of class subfolders (resumes)")
    rt.add_argument("train_dir", help="folder of class subfolders of images (ImageFolder layout; never a test set)")
    rt.add_argument("-o", "--out", required=True, help="run folder: config, log, checkpoint, classifier.pt when finished")
    rt.add_argument("--model", default="lipschitz", choices=("lipschitz", "lben", "plain"),
                    help="lipschitz: certified gradient-flow classifier; lben: certified, of Lipschitz-bounded equilibrium "
                         "layers; plain: the unconstrained baseline (default: %(default)s)")
    rt.add_argument("--widths", default="32,64,128", help="channels per stage (default: %(default)s)")
    rt.add_argument("--blocks", default="2,2,2", help="blocks per stage (default: %(default)s)")
    rt.add_argument("--hidden-factor", type=int, default=2)
    rt.add_argument("--epochs", type=float, default=10.0)
    rt.add_argument("--batch-size", type=int, default=128)
    rt.add_argument("--lr", type=float, default=2e-3, help="peak learning rate of the one-cycle schedule (Adam)")
    rt.add_argument("--weight-decay", type=float, default=0.0)
    rt.add_argument("--margin", type=float, default=2 * 2 ** 0.5 * 36 / 255,
                    help="Lipschitz-margin loss offset (default 2 sqrt(2) 36/255: aims at radius 36/255)")
    rt.add_argument("--temperature", type=float, default=0.25)
    rt.add_argument("--seed", type=int, default=0)
    rt.add_argument("--val-per-class", type=int, default=100, help="training images held out per class for validation")
    rt.add_argument("--val-every", type=int, default=500)
    rt.add_argument("--checkpoint-every", type=int, default=100)
    rt.add_argument("--limit-per-class", type=int, default=None, help="read at most this many images per class")
    rt.add_argument("--threads", type=int, default=0)
    rt.add_argument("--max-minutes", type=float, default=None, help="stop cleanly after this long (rerun to resume)")
    rt.add_argument("--device", default=None)
    rt.add_argument("--no-progress", action="store_true")

    re_ = sub.add_parser("robust-eval", help="clean, certified and PGD-l2 accuracy of a classifier on a folder")
    re_.add_argument("model", help="classifier.pt, the run folder holding it, or a shipped name (cifar10-flow-w16)")
    re_.add_argument("data_dir", help="folder of class subfolders (the same classes as in training)")
    re_.add_argument("--pgd-images", type=int, default=1000, help="images attacked, spread evenly over the folder (default: %(default)s)")
    re_.add_argument("--pgd-steps", type=int, default=20)
    re_.add_argument("--limit-per-class", type=int, default=None)
    re_.add_argument("--json", dest="json_out", default=None, help="also write the result as JSON to this file")
    re_.add_argument("--device", default=None, help="evaluate on this torch device, e.g. cuda (default: cpu)")
    re_.add_argument("--overwrite", action="store_true")
    re_.add_argument("--no-progress", action="store_true")
    return parser


def _int_list(text: str, name: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise ValueError(f"{name} must be comma-separated integers; got {text!r}") from None
    if not values or min(values) < 1:
        raise ValueError(f"{name} must be positive integers; got {text!r}")
    return values


def _run_robust_train(args: argparse.Namespace) -> int:
    from .robust.training import RobustTrainConfig, robust_train

    cfg = RobustTrainConfig(
        train_dir=args.train_dir, out_dir=args.out, model=args.model, widths=_int_list(args.widths, "--widths"),
        blocks=_int_list(args.blocks, "--blocks"), hidden_factor=args.hidden_factor, epochs=args.epochs, batch_size=args.batch_size,
        lr=args.lr, weight_decay=args.weight_decay, margin=args.margin, temperature=args.temperature, seed=args.seed,
        val_per_class=args.val_per_class, val_every=args.val_every, checkpoint_every=args.checkpoint_every,
        limit_per_class=args.limit_per_class, threads=args.threads,
    )
    r = robust_train(cfg, max_minutes=args.max_minutes, progress=not args.no_progress, device=args.device)
    if r["finished"]:
        v = r["validation"]
        cert = ", ".join(f"{float(k) * 255:.0f}/255: {a:.1%}" for k, a in v.get("certified_accuracy", {}).items())
        print(f"finished at step {r['step']} ({r['wall_time'] / 60:.1f} min); held-out accuracy {v['clean_accuracy']:.1%}"
              + (f", certified {cert}" if cert else "") + f"; classifier: {Path(args.out) / 'classifier.pt'}")
    else:
        print(f"stopped at step {r['step']} of {r['total_steps']} (run the same command to resume); run folder {args.out}")
    return 0


def _run_robust_eval(args: argparse.Namespace) -> int:
    from .io import write_json
    from .robust.data import load_image_folder
    from .robust.training import evaluate_classifier, load_classifier

    if args.json_out and Path(args.json_out).exists() and not args.overwrite:
        raise ValueError(f"{args.json_out} exists; pass --overwrite to replace it")
    model = load_classifier(args.model)
    data = load_image_folder(args.data_dir, limit_per_class=args.limit_per_class, progress=not args.no_progress)
    trained_on = model.record.get("classes")
    if trained_on is not None and list(trained_on) != list(data.classes):
        raise ValueError(f"{args.data_dir} has classes {data.classes}; the classifier was trained on {trained_on}")
    if args.device:
        model = model.to(args.device)
    r = evaluate_classifier(model, data, pgd_images=args.pgd_images, pgd_steps=args.pgd_steps, progress=not args.no_progress)
    print(f"{r['images']} images: clean accuracy {r['clean_accuracy']:.2%} ({r['seconds']:.0f} s)")
    for key, acc in r.get("certified_accuracy", {}).items():
        print(f"  eps {float(key) * 255:.0f}/255: certified {acc:.2%}, PGD-l2 ({r['pgd_steps']} steps, {r['pgd_images']} images spread over the set) "
              f"{r['pgd_accuracy'][key]:.2%}")
    if "lipschitz_bound" in r:
        print(f"  Lipschitz: certified <= {r['lipschitz_bound']:.6f} (float64 product over every layer), measured >= "
              f"{r.get('empirical_lipschitz', float('nan')):.4f} (estimate)")
    if args.json_out:
        write_json(args.json_out, r, overwrite=True)  # refused above if it exists unasked
    return 0


def _run_export(args: argparse.Namespace) -> int:
    from denoisers.training import export_run

    try:
        levels = [_level(v) for v in args.strength_levels.split(",")] if args.calibrate_strength else None
    except argparse.ArgumentTypeError as exc:
        raise ValueError(f"--strength-levels: {exc}") from None
    path = export_run(args.run, args.output, overwrite=args.overwrite, note=args.note, strength_sigmas=levels, progress=True)
    print(f"weights written to {path}")
    return 0


def _run_solvers(args: argparse.Namespace) -> int:
    from .registry import available_solvers

    for name, guarantee in available_solvers().items():
        print(f"{name:<12} {guarantee}")
    return 0


def _run_models(args: argparse.Namespace) -> int:
    import dataclasses
    import json

    from denoisers.pretrained import available_pretrained

    models = available_pretrained()
    if args.json_out:
        print(json.dumps({name: dataclasses.asdict(info) for name, info in models.items()}, indent=1))
        return 0
    for name, info in models.items():
        sig = info.sigma_train
        level = f"{sig[0] * 255:g}-{sig[1] * 255:g}/255" if isinstance(sig, tuple) else f"{sig * 255:g}/255"
        val = f"{info.validation_psnr:.2f} dB" if info.validation_psnr is not None else "-"
        print(f"{name}: {'gray' if info.channels == 1 else 'colour'}, trained at noise {level}")
        kind = "firmly non-expansive" if info.alpha <= 0.5 else "averaged"
        print(f"    certified: alpha = {info.alpha:.6f} ({kind}), Lipschitz <= {info.lipschitz_bound:.6f}  "
              f"[float64 upper bounds, re-derived from the weights when loaded]")
        tuned = f" (fine-tuned from {info.init}; {info.total_steps} steps in all)" if info.init else ""
        where = " on a GPU" if "cuda" in info.training_devices else ""
        print(f"    training: {info.steps} steps, {info.training_minutes:.0f} min{where}{tuned}; validation PSNR {val} (held-out training images)")
        print(f"    {info.description}")
    return 0


def _run_certify(args: argparse.Namespace) -> int:
    from denoisers import certify
    from denoisers.weights import load_weights

    from .io import write_json

    model, rec = load_weights(args.model, return_record=True, use_cache=False)  # the command always recomputes
    cert = certify(model, empirical=not args.no_empirical)
    print(f"model {args.model}: {rec['model']} {rec['config']}")
    print(cert.summary())
    if args.json_out:
        write_json(args.json_out, cert.to_dict(), overwrite=args.overwrite)
    return 0


def _level(text: str) -> float:
    """A noise level as a number or a fraction such as ``25/255``."""
    try:
        num, _, den = text.partition("/")
        value = float(num) / (float(den) if den else 1.0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a noise level: {text!r} (use e.g. 0.1 or 25/255)") from None
    if not (value >= 0 and value < float("inf")):
        raise argparse.ArgumentTypeError(f"noise level must be finite and >= 0; got {text!r}")
    return value


def _run_train(args: argparse.Namespace) -> int:
    from denoisers.training import TrainConfig, train

    if args.model == "lben":
        model_kwargs = dict(hidden=args.hidden, kernel_size=args.kernel_size, gamma=args.gamma, monotonicity=args.monotonicity, leak=args.leak, pad=args.pad,
                            tol=args.eq_tol, max_iter=args.eq_max_iter)
    else:
        model_kwargs = dict(width=args.width, depth=args.depth)
    if args.model in ("averaged", "nonexpansive"):  # the baselines have no flow options
        model_kwargs.update(integrator=args.integrator, activation=args.activation, margin=args.margin, max_substeps=args.max_substeps)
    if args.noise_knots and args.model in ("averaged", "nonexpansive", "lben"):
        try:
            model_kwargs["noise_knots"] = [_level(v) for v in args.noise_knots.split(",")]
        except argparse.ArgumentTypeError as exc:
            raise ValueError(f"--noise-knots: {exc}") from None
    if args.theta is not None:
        if args.model not in ("averaged", "lben"):
            raise ValueError(f"--theta relaxes an averaged or lben model; got --model {args.model}")
        model_kwargs["theta"] = args.theta
    cfg = TrainConfig(
        train_dir=args.train_dir, out_dir=args.out, channels=args.channels, model=args.model, model_kwargs=model_kwargs,
        sigma=args.sigma, sigma_max=args.sigma_max, patch=args.patch, batch_size=args.batch_size, steps=args.steps,
        lr=args.lr, seed=args.seed, val_dir=args.val_dir, val_split=args.val_split, val_every=args.val_every,
        checkpoint_every=args.checkpoint_every, threads=args.threads, init=args.init,
    )
    from .distributed import process_group, rank_device, share_cores

    with process_group(args.device) as group:
        if group.distributed and not args.threads:
            share_cores()
        device = rank_device(args.device, group) if args.device else None
        r = train(cfg, max_minutes=args.max_minutes, progress=not args.no_progress, device=device, stop_after=args.stop_after)
    if not group.is_main:
        return 0
    state = "finished" if r.finished else "stopped (run the same command to resume)"
    val = f", validation PSNR {r.last_val_psnr:.2f} dB" if r.last_val_psnr is not None else ""
    procs = f" on {group.world_size} processes" if group.distributed else ""
    print(f"{state} at step {r.step}, {r.wall_time / 60:.1f} min of training{procs}{val}; run folder {r.out_dir}")
    return 0


def _run_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    r = run_demo(args.output, image=args.image, kernel=args.kernel, noise=args.noise, seed=args.seed, solver=args.solver,
                 size=args.size or None, max_iter=args.max_iter, overwrite=args.overwrite, progress=not args.no_progress)
    print(f"blurred   PSNR {r.psnr_blurred:6.2f} dB")
    print(f"Tikhonov  PSNR {r.psnr_tikhonov:6.2f} dB  (classical reference, discrepancy principle)")
    state = "converged" if r.converged else "not converged"
    print(f"{r.solver:<9} PSNR {r.psnr_restored:6.2f} dB  (shipped certified denoiser; {r.iterations} iterations, {state}, "
          f"{'guaranteed' if r.guaranteed else 'NOT guaranteed'}, {r.seconds:.1f} s)")
    print(f"figure written to {r.figure}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pnp-stable`` console script.

    Examples
    --------
    >>> main(["--version"])
    Traceback (most recent call last):
    ...
    SystemExit: 0
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    # This process is ours: solvers and training reuse freed buffers instead of faulting them in anew.
    retain_freed_memory()
    try:
        return {"demo": _run_demo, "train": _run_train, "certify": _run_certify, "export": _run_export,
                "solvers": _run_solvers, **IMAGE_COMMANDS, "models": _run_models, "robust-train": _run_robust_train,
                "robust-eval": _run_robust_eval}[args.command](args)
    except (ValueError, TypeError, OSError) as exc:
        print(f"pnp-stable {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
