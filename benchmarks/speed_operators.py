"""Speed of the operators next to deepinv's, in one run, as ratios.

Times A, A^T and the data-term prox of ``Blur`` (circular and symmetric boundary) against
deepinv's ``BlurFFT`` and ``Blur`` on 256x256 and 1024x1024 images, gray and colour, and
counts the PCG iterations of the non-circular prox.  Writes the "operators" section of
benchmarks/RESULTS.md.

Goals (issue #2): circular blur no slower than deepinv's BlurFFT; the non-circular prox
within 20 forward applications.

Usage::

    python benchmarks/speed_operators.py [--quick] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from deepinv.physics import Blur as DIBlur
from deepinv.physics import BlurFFT

from benchlib import interleaved_medians, machine, write_section  # the script's folder is on sys.path

from operators import Blur, kernels

KERNEL = "levin:1"  # 19x19 camera shake, asymmetric
SYMMETRIC_KERNEL = "gaussian:1.6"  # 11x11, axis-symmetric: closed-form prox with a symmetric boundary
GAMMA = 50.0


def admm_prox_iterations(op: Blur, y: torch.Tensor, steps: int = 20) -> float:
    """Mean PCG iterations per prox inside a PnP-ADMM loop that warm-starts each prox from
    the previous iterate; the denoiser is a fixed Gaussian smoothing (a stand-in).

    Examples
    --------
    >>> op = Blur(KERNEL, "symmetric")
    >>> y = op.A(torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(0)))
    >>> 0 < admm_prox_iterations(op, y, steps=2) <= op.prox_max_iter
    True
    """
    smooth = Blur(kernels.gaussian(1.0), "symmetric")
    z = y.clone()
    x = None
    its = []
    for _ in range(steps):
        x, info = op.prox_l2_info(z, y, GAMMA, init=x)
        its.append(info["iterations"])
        z = z + smooth.A(2 * x - z) - x
    return sum(its) / len(its)


def run(sizes, channels, repeats: int) -> tuple[list[dict], list[dict]]:
    """Time every operator of both libraries on each size and channel count.

    Returns
    -------
    rows : list of dict
        One per (image, boundary, operation): ours and deepinv's median milliseconds.
    prox_rows : list of dict
        PCG iterations and cost in forward applications of the non-circular prox.

    Examples
    --------
    >>> rows, prox_rows = run([32], [1], repeats=1)
    >>> len(rows), len(prox_rows)
    (6, 2)
    """
    torch.manual_seed(0)
    k = torch.from_numpy(kernels.parse(KERNEL)).float()
    rows, prox_rows = [], []
    for n in sizes:
        for c in channels:
            x = torch.rand(1, c, n, n)
            ours_c = Blur(k, "circular")
            ours_s = Blur(k, "symmetric")
            ours_g = Blur(SYMMETRIC_KERNEL, "symmetric")
            theirs_fft = BlurFFT(img_size=(c, n, n), filter=k[None, None])
            theirs_pad = DIBlur(filter=k[None, None], padding="reflect")
            y = ours_c.A(x)
            t = interleaved_medians(
                {
                    "ours_A": lambda: ours_c.A(x),
                    "fft_A": lambda: theirs_fft.A(x),
                    "ours_AT": lambda: ours_c.A_adjoint(y),
                    "fft_AT": lambda: theirs_fft.A_adjoint(y),
                    "ours_prox": lambda: ours_c.prox_l2(x, y, GAMMA),
                    "fft_prox": lambda: theirs_fft.prox_l2(x, y, GAMMA),
                    "sym_A": lambda: ours_s.A(x),
                    "pad_A": lambda: theirs_pad.A(x),
                    "sym_AT": lambda: ours_s.A_adjoint(y),
                    "pad_AT": lambda: theirs_pad.A_adjoint(y),
                    "gauss_A": lambda: ours_g.A(x),
                    "gauss_prox": lambda: ours_g.prox_l2(x, y, GAMMA),
                },
                repeats=repeats,
            )
            for what in ("A", "AT", "prox"):
                rows.append(dict(size=n, channels=c, boundary="circular", op=what, ours_ms=1e3 * t[f"ours_{what}"],
                                 deepinv="BlurFFT", deepinv_ms=1e3 * t[f"fft_{what}"]))
            for what in ("A", "AT"):
                rows.append(dict(size=n, channels=c, boundary="symmetric / reflect", op=what, ours_ms=1e3 * t[f"sym_{what}"],
                                 deepinv="Blur (conv2d)", deepinv_ms=1e3 * t[f"pad_{what}"]))
            # Iterative proxes are slow at 1024^2: time them once each, to the same tolerance.
            t0 = time.perf_counter()
            _, info = ours_s.prox_l2_info(x, y, GAMMA)
            t_sym_prox = time.perf_counter() - t0
            t0 = time.perf_counter()
            theirs_pad.prox_l2(x, y, GAMMA, tol=ours_s.prox_tol, max_iter=ours_s.prox_max_iter)
            t_pad_prox = time.perf_counter() - t0
            rows.append(dict(size=n, channels=c, boundary="symmetric / reflect", op="prox", ours_ms=1e3 * t_sym_prox,
                             deepinv="Blur (conv2d), CG", deepinv_ms=1e3 * t_pad_prox))
            warm = admm_prox_iterations(ours_s, y)
            # Each PCG iteration applies A, A^T and the preconditioner (about one more forward).
            prox_rows.append(dict(size=n, channels=c, kernel=KERNEL, cold_iterations=info["iterations"],
                                  cold_forward_units=t_sym_prox / t["sym_A"], warm_iterations=warm,
                                  warm_forward_units_estimate=warm * (t["sym_A"] + t["sym_AT"] + t["ours_prox"]) / t["sym_A"]))
            prox_rows.append(dict(size=n, channels=c, kernel=SYMMETRIC_KERNEL, cold_iterations=0,
                                  cold_forward_units=t["gauss_prox"] / t["gauss_A"], warm_iterations=0,
                                  warm_forward_units_estimate=t["gauss_prox"] / t["gauss_A"]))
            print(f"{n}x{n}x{c}: done", file=sys.stderr)
    return rows, prox_rows


def to_markdown(rows: list[dict], prox_rows: list[dict], repeats: int, wall: float) -> str:
    """The "operators" section of RESULTS.md from :func:`run`'s rows.

    Examples
    --------
    >>> row = dict(size=32, channels=1, boundary="circular", op="A", ours_ms=1.0, deepinv="BlurFFT", deepinv_ms=2.0)
    >>> table = to_markdown([row], [], repeats=1, wall=0.1)
    >>> table.splitlines()[0], "| 32x32x1 | circular | A | 1.00 | BlurFFT | 2.00 | 0.50 |" in table
    ('## Operators (`benchmarks/speed_operators.py`)', True)
    """
    lines = [
        "## Operators (`benchmarks/speed_operators.py`)",
        "",
        f"Machine: {machine()}. Kernel {KERNEL} (19x19), float32, batch 1, median of {repeats} interleaved runs "
        f"(iterative proxes: one run); prox weight gamma = {GAMMA:g}, PCG relative tolerance 1e-6. Total {wall:.0f} s.",
        "Ratio = ours / deepinv (below 1: ours faster). Non-circular rows: ours uses the symmetric boundary "
        "(FFT on the padded grid), deepinv's `Blur` reflect padding (direct conv2d); deepinv's prox is its CG.",
        "",
        "| image | boundary | op | ours (ms) | deepinv | deepinv (ms) | ratio |",
        "|---|---|---|---:|---|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['size']}x{r['size']}x{r['channels']} | {r['boundary']} | {r['op']} | {r['ours_ms']:.2f} | "
            f"{r['deepinv']} | {r['deepinv_ms']:.2f} | {r['ours_ms'] / r['deepinv_ms']:.2f} |"
        )
    lines += [
        "",
        "Non-circular prox cost with the symmetric boundary, in forward applications (prox time / time of A). "
        "Cold: one prox from the default start. Warm: mean over a 20-step PnP-ADMM loop that starts each prox "
        "at the previous iterate (forward units estimated as iterations x (A + A^T + preconditioner) / A).",
        "",
        "| image | kernel | cold PCG its | cold (x forward) | warm PCG its | warm (x forward) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in prox_rows:
        lines.append(
            f"| {r['size']}x{r['size']}x{r['channels']} | {r['kernel']} | {r['cold_iterations']} | {r['cold_forward_units']:.1f} | "
            f"{r['warm_iterations']:.1f} | {r['warm_forward_units_estimate']:.1f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="256x256 only, fewer repeats (smoke run; does not write RESULTS.md)")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    sizes, repeats = ((256,), 3) if args.quick else ((256, 1024), 15)
    t0 = time.perf_counter()
    rows, prox_rows = run(sizes, (1, 3), repeats)
    wall = time.perf_counter() - t0
    md = to_markdown(rows, prox_rows, repeats, wall)
    print(md)
    if not args.quick:
        write_section("operators", md)
    if args.json:
        args.json.write_text(json.dumps({"timings": rows, "prox": prox_rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
