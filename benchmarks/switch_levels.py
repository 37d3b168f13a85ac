"""Measure where ``denoiser="default"`` should hand over from one shipped model to the next.

Each shipped model serves every strength up to its training level through its calibrated
relaxation ``theta(sigma)``, so several models can serve one strength.  This script denoises
the 12 images held out from training (never a test set) at a grid of noise levels with each
candidate model, at the strength equal to the noise, and records the mean PSNR.  The models
``denoisers.pretrained._DEFAULT`` lists for a channel count are the upper envelope of this
table: at each level the best model; where the best model changes, the switch level is the
crossing of the two PSNR curves (linear between grid levels), rounded down to 0.5/255.

Writes the "model-switch-gray" or "model-switch-colour" section of benchmarks/RESULTS.md.

Usage::

    python benchmarks/switch_levels.py --data ../shared/data/train/bsd400 --channels 1 \
        --models gray-averaged-s25,gray-averaged-s50 --levels 20,25,28,30,33,36,40,45,50 --json out.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from _report import machine, write_section  # noqa: E402  (script folder is on sys.path)

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from denoisers import load_pretrained  # noqa: E402
from denoisers.data import ImageFolder  # noqa: E402
from denoisers.training import validation_psnr  # noqa: E402
from operators._io import write_atomic  # noqa: E402
from pnp_stable.allocator import retain_freed_memory  # noqa: E402

#: Switch levels are rounded down to this grid (/255): a model keeps a strength it was measured to win.
SWITCH_STEP_255 = 0.5


def held_out_images(folder: str, channels: int, val_split: int = 12) -> list[np.ndarray]:
    """The last ``val_split`` images of a training folder (sorted by name): the ones training held out.

    Examples
    --------
    >>> import tempfile
    >>> from skimage import io
    >>> folder = tempfile.mkdtemp()
    >>> for i in range(5):
    ...     io.imsave(f"{folder}/{i}.png", np.full((8, 8), 50 * i, dtype=np.uint8), check_contrast=False)
    >>> [int(im.mean()) for im in held_out_images(folder, 1, val_split=2)]
    [150, 200]
    """
    return ImageFolder(folder, channels).images[-val_split:]


def crossing(levels: list[float], first: list[float], second: list[float]) -> float | None:
    """The level where ``second`` starts to beat ``first``: linear between the grid levels around
    the first sign change of ``first - second`` from >= 0 to < 0 (``None`` if ``second`` never wins,
    ``levels[0]`` if it wins from the start).

    Examples
    --------
    >>> crossing([30, 33], [25.78, 25.01], [25.28, 25.08])  # gray 25 -> 50, measured in session 5
    32.63...
    >>> crossing([1, 2, 3], [5, 5, 5], [4, 4, 4]) is None
    True
    """
    diff = np.asarray(first, float) - np.asarray(second, float)
    if diff[0] < 0:
        return float(levels[0])
    for i in range(1, len(levels)):
        if diff[i] < 0:
            lo, hi = levels[i - 1], levels[i]
            return float(lo + (hi - lo) * diff[i - 1] / (diff[i - 1] - diff[i]))
    return None


def envelope_chain(levels: list[float], table: dict[str, list[float]]) -> list[tuple[str, float | None]]:
    """The default-model chain ``[(name, up_to), ..., (last, None)]`` of a PSNR table.

    At each level the best model serves; where the best model changes, ``up_to`` is the exact
    crossing of the two curves (see :func:`crossing`), on the /255 scale of ``levels``.

    Examples
    --------
    >>> envelope_chain([25, 30, 33, 36], {"a": [27, 26, 25, 24], "b": [26, 25.5, 25.2, 25], "c": [20, 20, 20, 20]})
    [('a', 32.14...), ('b', None)]
    """
    names = list(table)
    best = [max(names, key=lambda n: table[n][i]) for i in range(len(levels))]
    chain: list[tuple[str, float | None]] = []
    for i, name in enumerate(best):
        if chain and chain[-1][0] == name:
            continue
        if chain:
            prev = chain[-1][0]
            # The crossing of the two curves over the grid interval where the best changed.
            lo = i - 1
            chain[-1] = (prev, crossing(levels[lo:i + 1], table[prev][lo:i + 1], table[name][lo:i + 1]))
        chain.append((name, None))
    return chain


def shipped_switch(level_255: float) -> float:
    """A measured crossing (/255) rounded down to the switch grid (:data:`SWITCH_STEP_255`).

    Examples
    --------
    >>> shipped_switch(32.63), shipped_switch(44.0)
    (32.5, 44.0)
    """
    return math.floor(level_255 / SWITCH_STEP_255 + 1e-9) * SWITCH_STEP_255


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="training folder (BSD400 or CBSD432); its last 12 images are the held-out ones")
    ap.add_argument("--channels", type=int, default=1, choices=(1, 3))
    ap.add_argument("--models", required=True, help="shipped model names, comma separated (a gray model on colour runs per channel)")
    ap.add_argument("--levels", default="20,25,28,30,33,36,40,45,50", help="noise levels (/255)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    retain_freed_memory()  # as the command line does: no page faults on every iteration's buffers
    levels = [float(v) for v in args.levels.split(",")]
    models = args.models.split(",")
    images = held_out_images(args.data, args.channels)
    table: dict[str, list[float]] = {}
    t0 = time.time()
    for name in models:
        model = load_pretrained(name, channels=args.channels)
        table[name] = [validation_psnr(model, images, lv / 255) for lv in levels]
        print(name, [f"{v:.2f}" for v in table[name]], flush=True)
    chain = envelope_chain(levels, table)
    shipped = [(n, None if up is None else shipped_switch(up)) for n, up in chain]
    kind = "gray" if args.channels == 1 else "colour"
    what = "BSD400" if args.channels == 1 else "CBSD432"
    command = (f"python benchmarks/switch_levels.py --data DATA --channels {args.channels} --models {args.models} "
               f"--levels {args.levels}")
    lines = [
        f"## Which shipped model serves which strength ({kind})",
        "",
        f"Mean PSNR (dB) on the 12 held-out {what} training images, noise seeded, each model at the strength equal "
        f"to the noise (its calibrated theta). Command: `{command}`. Machine: {machine()}; {time.time() - t0:.0f} s.",
        "",
        "| model | " + " | ".join(f"{lv:g}" for lv in levels) + " |",
        "|---|" + "---|" * len(levels),
    ]
    for name in models:
        row = table[name]
        cells = [f"**{v:.2f}**" if v == max(table[m][i] for m in models) else f"{v:.2f}" for i, v in enumerate(row)]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "Default chain (crossings rounded down to 0.5/255): " + "; ".join(
        f"{n} up to {up:g}/255 (crossing {raw:.2f})" if up is not None else f"{n} above"
        for (n, up), (_, raw) in zip(shipped, chain)) + "."]
    write_section(f"model-switch-{kind}", "\n".join(lines))
    if args.json:
        payload = dict(channels=args.channels, levels=levels, psnr=table, chain=chain, shipped_chain=shipped,
                       command=command, machine=machine())
        # Atomic: a killed run leaves the previous record whole.
        write_atomic(Path(args.json), lambda tmp: Path(tmp).write_text(json.dumps(payload, indent=1)), overwrite=True)
    print("chain:", shipped)


if __name__ == "__main__":
    main()
