"""The image commands of ``pnp-stable``: ``deblur``, ``denoise``, ``super-resolve`` (one file) and
``restore`` (a folder, also under ``torchrun``).

All four build a :class:`~pnp_stable.restore.RestoreTask` from the same options and run it
through :func:`~pnp_stable.restore.run_task`, so a file restored alone and the same file
restored in a folder get the same treatment.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Callable

from operators.blur import BLUR_BOUNDARIES

from .api import DEFAULT_BOUNDARY
from .registry import DEFAULT_SOLVER
from .tasks import DEFAULT_SR_BOUNDARY, SR_BOUNDARIES

__all__ = ["add_image_commands", "IMAGE_COMMANDS", "task_from_args"]


def _level_or_auto(level: Callable) -> Callable:
    """The ``--noise`` parser: ``auto`` (None: estimate it) or a level."""
    def parse(text: str):
        return None if text.strip().lower() == "auto" else level(text)
    return parse


def _add_noise_and_denoiser(p: argparse.ArgumentParser, level: Callable) -> None:
    p.add_argument("--noise", type=_level_or_auto(level), default=None,
                   help="noise standard deviation in [0, 1] units (e.g. 0.01 or 2.55/255), or auto (the default): "
                        "estimated from each image, and the estimate reported")
    p.add_argument("--max-memory", default=None, metavar="SIZE",
                   help="memory budget of a run, e.g. 4G or 512M: large images are restored with the denoiser evaluated "
                        "in exact tiles (default: 4G, or for a larger image its solver state plus room for 512-pixel tiles)")
    p.add_argument("--denoiser", default="default", help="weights file written by pnp-stable export, or a shipped model name "
                   "(see pnp-stable models; default: the shipped certified model for the image's channels)")


def _add_solver_options(p: argparse.ArgumentParser, level: Callable) -> None:
    p.add_argument("--solver", default=DEFAULT_SOLVER, help="registered solver (see pnp-stable solvers; default: %(default)s)")
    p.add_argument("--sigma", type=level, default=None,
                   help="denoiser strength; default: with the shipped model, the strength tuned for the solver and the "
                        "noise level (pnp_stable/defaults.py); with another denoiser, the noise level")
    p.add_argument("--step", type=float, default=None,
                   help="solver step tau; default: with the shipped model, the tuned step (pnp-admm: 0.15 / noise, "
                        "clipped to [0.5, 50]; pnp-fbs: 1.9 / ||A||^2); otherwise the solver's (pnp-admm 1, pnp-fbs 1 / ||A||^2)")
    p.add_argument("--anderson", type=int, default=5, metavar="MEMORY",
                   help="safeguarded Anderson acceleration memory; 0 runs the plain iteration (default: %(default)s)")
    p.add_argument("--max-iter", type=int, default=200)
    p.add_argument("--tol", type=float, default=1e-4)


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default=None, help="compute on this torch device, e.g. cuda (default: cpu)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--no-progress", action="store_true")


def add_image_commands(sub, level: Callable) -> None:
    """Add ``deblur``, ``denoise``, ``super-resolve`` and ``restore`` to a subparsers object.

    Examples
    --------
    >>> import argparse
    >>> parser = argparse.ArgumentParser()
    >>> add_image_commands(parser.add_subparsers(dest="command"), float)
    >>> parser.parse_args(["restore", "in", "-o", "out", "--noise", "0.01"]).task is None
    True
    """
    db = sub.add_parser("deblur", help="deblur an image file with a PnP solver")
    db.add_argument("input", help="image file (png, jpg, tif, bmp), gray or colour")
    db.add_argument("-o", "--output", required=True, help="restored image file (8-bit, values clipped to [0, 1])")
    db.add_argument("--kernel", required=True, help="kernel spec: gaussian:1.6, levin:3, motion:15,45, file:k.png ...")
    _add_noise_and_denoiser(db, level)
    db.add_argument("--boundary", default=DEFAULT_BOUNDARY, choices=BLUR_BOUNDARIES,
                    help="blur boundary model; 'unknown' assumes nothing outside the frame (default: %(default)s)")
    _add_solver_options(db, level)
    db.add_argument("--report", default=None, help="write the convergence report as JSON")
    db.add_argument("--plot", default=None, help="write a figure: input, result, residual curve")
    _add_run_options(db)

    dn = sub.add_parser("denoise", help="denoise an image file with one pass of the certified denoiser")
    dn.add_argument("input", help="image file (png, jpg, tif, bmp), gray or colour")
    dn.add_argument("-o", "--output", required=True, help="restored image file (8-bit)")
    _add_noise_and_denoiser(dn, level)
    dn.add_argument("--sigma", type=level, default=None, help="denoiser strength (default: the noise level)")
    dn.add_argument("--report", default=None, help="write what was done as JSON")
    _add_run_options(dn)

    sr = sub.add_parser("super-resolve", help="enlarge an image file 2, 3 or 4 times with a PnP solver")
    sr.add_argument("input", help="low-resolution image file, gray or colour")
    sr.add_argument("-o", "--output", required=True, help="high-resolution image file (8-bit)")
    sr.add_argument("--factor", type=int, required=True, help="enlargement factor, e.g. 2, 3, 4")
    sr.add_argument("--kernel", default=None, help="anti-aliasing kernel of the observation model (default: gaussian of "
                    "standard deviation factor / 2)")
    _add_noise_and_denoiser(sr, level)
    sr.add_argument("--boundary", default=DEFAULT_SR_BOUNDARY, choices=SR_BOUNDARIES, help="boundary of the blur (default: %(default)s)")
    _add_solver_options(sr, level)
    sr.add_argument("--report", default=None, help="write the convergence report as JSON")
    sr.add_argument("--plot", default=None, help="write a figure: input, result, residual curve")
    _add_run_options(sr)

    rs = sub.add_parser("restore", help="restore every image of a folder (resumes; runs under torchrun)",
                        description="Restore every image of IN_DIR into OUT_DIR: deblur (--kernel), super-resolve (--factor) "
                                    "or denoise (neither). Images of one size run as a batch; a rerun skips images already "
                                    "done. Several processes: torchrun --nproc_per_node N -m pnp_stable restore ...")
    rs.add_argument("in_dir", help="folder of images (png, jpg, tif, bmp; not its subfolders)")
    rs.add_argument("-o", "--out", required=True, help="output folder (outside IN_DIR): images, reports/, summary.csv")
    rs.add_argument("--task", default=None, choices=("deblur", "denoise", "super-resolve"),
                    help="default: super-resolve with --factor, deblur with --kernel, denoise otherwise")
    rs.add_argument("--kernel", default=None, help="deblur: the blur kernel spec; super-resolve: the anti-aliasing kernel")
    rs.add_argument("--factor", type=int, default=None, help="super-resolution factor (2, 3, 4...)")
    _add_noise_and_denoiser(rs, level)
    rs.add_argument("--boundary", default=None, choices=tuple(dict.fromkeys(BLUR_BOUNDARIES + SR_BOUNDARIES)),
                    help=f"boundary model (default: {DEFAULT_BOUNDARY} for deblur, {DEFAULT_SR_BOUNDARY} for super-resolve)")
    _add_solver_options(rs, level)
    rs.add_argument("--batch-size", type=int, default=4, help="images of one size restored together (default: %(default)s)")
    rs.add_argument("--reference", default=None, metavar="DIR", help="clean images under the same names: reports get the PSNR")
    rs.add_argument("--threads", type=int, default=0, help="torch threads per process (default: the cores shared among the processes)")
    _add_run_options(rs)


def task_from_args(args: argparse.Namespace, kind: str):
    """The :class:`~pnp_stable.restore.RestoreTask` of parsed image-command options.

    Examples
    --------
    >>> ns = argparse.Namespace(noise=0.01, kernel=None, factor=None, denoiser="default", sigma=None)
    >>> task_from_args(ns, "denoise").kind
    'denoise'
    """
    from .restore import RestoreTask

    solver_opts = {}
    if kind != "denoise":
        solver_opts = dict(solver=args.solver, step=args.step, anderson=args.anderson, max_iter=args.max_iter, tol=args.tol,
                           boundary=getattr(args, "boundary", None))
    return RestoreTask(kind, args.noise, kernel=getattr(args, "kernel", None), factor=getattr(args, "factor", None),
                       denoiser=args.denoiser, sigma=args.sigma, max_memory=getattr(args, "max_memory", None), **solver_opts)


def _plot(path, before, after, rep, overwrite: bool) -> None:
    from .io import write_atomic

    def draw(tmp: str) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(1, 3, figsize=(13, 4.4), constrained_layout=True)
        cmap = "gray" if before.ndim == 2 else None
        ax[0].imshow(before, cmap=cmap, vmin=0, vmax=1)
        ax[0].set_title("input")
        ax[1].imshow(after, cmap=cmap, vmin=0, vmax=1)
        ax[1].set_title(f"{rep.solver}: {rep.iterations[0]} iterations, {rep.stop_reason[0]}")
        for a in ax[:2]:
            a.axis("off")
        ax[2].semilogy(rep.residual_history[0])
        ax[2].set_xlabel("iteration")
        ax[2].set_ylabel("relative fixed-point residual")
        ax[2].set_title("guaranteed" if rep.guaranteed else "no guarantee")
        fig.savefig(tmp, dpi=100)
        plt.close(fig)

    write_atomic(path, draw, overwrite=overwrite)


def _run_single(args: argparse.Namespace, kind: str) -> int:
    from .io import check_output_path, write_json
    from .restore import read_image, run_task, save_image

    task = task_from_args(args, kind)
    for p in (args.output, args.report, getattr(args, "plot", None)):  # refuse before any work: nothing half done
        if p:
            check_output_path(p, args.overwrite)
    img = read_image(args.input)
    [res] = run_task(task, [img], progress=not args.no_progress, device=args.device)
    save_image(args.output, res.image, overwrite=args.overwrite)
    rep = res.report
    if args.report:
        payload = dataclasses.asdict(rep) if rep is not None else dict(res.record)
        payload.update(input=str(args.input), task=task.describe())
        if kind == "deblur":  # the keys of the report before the shared path existed
            payload.update(kernel=args.kernel, noise=res.record["noise_level"], solver=args.solver, boundary=args.boundary)
        payload.update(noise_level=res.record["noise_level"], noise_estimated=res.record["noise_estimated"])
        write_json(args.report, payload, overwrite=args.overwrite)
    if getattr(args, "plot", None) and rep is not None:
        _plot(args.plot, img, res.image, rep, args.overwrite)
    if rep is not None:
        print(rep.summary())
    else:
        level = res.record["noise_level"]
        how = " (estimated)" if res.record["noise_estimated"] else ""
        print(f"noise level {level:.4g} ({level * 255:.3g}/255){how}; denoised at strength "
              f"{task.sigma if task.sigma is not None else level:.4g} with the certified denoiser ({res.record['seconds']:.2f} s)")
    print(f"restored image written to {args.output}")
    return 0


def _run_restore(args: argparse.Namespace) -> int:
    from .distributed import process_group, rank_device, share_cores
    from .folder import restore_folder

    kind = args.task or ("super-resolve" if args.factor else "deblur" if args.kernel else "denoise")
    task = task_from_args(args, kind)
    if args.threads < 0:
        raise ValueError(f"--threads must be >= 0; got {args.threads}")
    with process_group(args.device) as group:
        share_cores(args.threads)
        device = rank_device(args.device, group) if args.device else None
        s = restore_folder(args.in_dir, args.out, task, overwrite=args.overwrite, reference_dir=args.reference,
                           batch_size=args.batch_size, progress=not args.no_progress, device=device, group=group)
        who = "" if group.world_size == 1 else f"rank {group.rank}: "
        print(f"{who}{len(s.restored)} restored, {len(s.skipped)} already done (skipped), {len(s.failed)} failed")
        for name in s.failed:
            print(f"{who}  failed: {name}: {s.errors[name]}")
        if group.is_main:
            note = f"; {len(s.missing)} not restored yet (rerun to complete): {', '.join(s.missing[:5])}" if s.missing else ""
            print(f"summary written to {s.summary_csv}{note}")
        failed = len(s.failed) + (len(s.missing) if group.is_main else 0)
    return 1 if failed else 0


#: Command name -> runner, for :func:`pnp_stable.cli.main`.
IMAGE_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "deblur": lambda a: _run_single(a, "deblur"),
    "denoise": lambda a: _run_single(a, "denoise"),
    "super-resolve": lambda a: _run_single(a, "super-resolve"),
    "restore": _run_restore,
}
