"""The ``pnp-stable`` command line.  Bad input exits with status 2 and one clear line."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from ._version import __version__

__all__ = ["main", "build_parser"]


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
    demo.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    return parser


def _run_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    r = run_demo(args.output, image=args.image, kernel=args.kernel, noise=args.noise, seed=args.seed, overwrite=args.overwrite)
    print(f"blurred  PSNR {r.psnr_blurred:6.2f} dB")
    print(f"restored PSNR {r.psnr_restored:6.2f} dB  (Tikhonov, weight {r.weight:.3g} by the discrepancy principle)")
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
    try:
        return {"demo": _run_demo}[args.command](args)
    except (ValueError, TypeError, FileNotFoundError, FileExistsError) as exc:
        print(f"pnp-stable {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
