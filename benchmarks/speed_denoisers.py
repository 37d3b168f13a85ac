"""Cost of the constrained denoiser next to unconstrained networks, in one run, as ratios.

* forward time per megapixel (256x256 gray, float32, batch 1) of the default averaged
  gradient-flow net (width 32, 8 blocks, one sub-step each), of a plain stack with the very
  same convolutions (conv, LeakyReLU, transposed conv per block; no Euler update) and of a
  DnCNN of equal FLOPs (16 + 2 layers of 32 channels);
* memory of each forward (growth of the resident-set high-water mark, fresh process per
  model, 1024x1024; a lower bound of the working memory);
* certification time (certified part, and with the empirical lower bounds);
* training throughput (patches/s, 48x48, batch 32).

Goals (issue #3): certify a default model in under 10 s; the constrained forward within
1.3x of the plain conv stack.  Writes the "denoisers" section of benchmarks/RESULTS.md.

Usage::

    python benchmarks/speed_denoisers.py [--quick] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from benchlib import interleaved_medians, machine, write_section  # the script's folder is on sys.path

from denoisers import AveragedDenoiser, GradientFlowNet, certify
from denoisers.baselines import DnCNN

_HERE = Path(__file__).resolve().parent

DEFAULT = dict(width=32, depth=8, max_substeps=1)


class PlainStack(nn.Module):
    """The gradient-flow net's convolutions without the Euler update: z -> A^T act(A z + b)."""

    def __init__(self, net: GradientFlowNet):
        super().__init__()
        self.net = net

    def forward(self, x, sigma=None):
        z = torch.cat([x, x.new_zeros(x.shape[0], self.net.width - 1, *x.shape[-2:])], 1)
        for blk in self.net.blocks:
            z = F.conv_transpose2d(F.leaky_relu(F.conv2d(z, blk.weight, blk.bias, padding=1), 0.01), blk.weight, padding=1)
        return z[:, :1]


def build(name: str):
    """One contender, seeded: ``"ours"``, ``"plain"`` (same convolutions, no Euler update) or ``"dncnn"``.

    Examples
    --------
    >>> build("plain")(torch.rand(1, 1, 16, 16), 0.1).shape
    torch.Size([1, 1, 16, 16])
    """
    torch.manual_seed(0)
    if name == "ours":
        return AveragedDenoiser(GradientFlowNet(1, **DEFAULT)).eval()
    if name == "plain":
        return PlainStack(GradientFlowNet(1, **DEFAULT)).eval()
    if name == "dncnn":
        return DnCNN(1, width=32, depth=18).eval()
    raise ValueError(name)


def peak_memory_mb(name: str, side: int) -> float:
    """Growth (MB) of the resident-set high-water mark across one forward, in a fresh process
    after a warm-up (a lower bound of the forward's peak working memory).

    Examples
    --------
    >>> peak_memory_mb("dncnn", 32) >= 0
    True
    """
    code = f"""
import resource, sys, torch
torch.set_num_threads(2)
sys.path.insert(0, {str(_HERE)!r})
import speed_denoisers
m = speed_denoisers.build({name!r})
with torch.no_grad():
    m(torch.rand(1, 1, 16, 16), 0.1)
    x = torch.rand(1, 1, {side}, {side})
    r0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    m(x, 0.1)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - r0)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.split()[-1]) / 1024


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, no RESULTS.md")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    repeats = 3 if args.quick else 10
    t_start = time.perf_counter()
    models = {k: build(k) for k in ("ours", "plain", "dncnn")}
    x = torch.rand(1, 1, 256, 256)
    with torch.no_grad():
        models["ours"](x, 0.1)  # certify once: eval mode caches the bounds
        t = interleaved_medians(
            {k: (lambda m=m: m(x, 0.1)) for k, m in models.items()},
            repeats=repeats,
        )
    mpix = 256 * 256 / 1e6
    mem = {k: peak_memory_mb(k, 1024) for k in models}
    t0 = time.perf_counter()
    cert = certify(build("ours"), empirical=False)
    t_cert = time.perf_counter() - t0
    t0 = time.perf_counter()
    certify(build("ours"), empirical=True)
    t_cert_emp = time.perf_counter() - t0
    # training throughput: 3 timed steps after 1 warm-up
    tput = {}
    for name in ("ours", "dncnn"):
        m = build(name).train()
        opt = torch.optim.Adam(m.parameters(), 1e-3)
        xb = torch.rand(32, 1, 48, 48)
        times = []
        for i in range(4):
            t0 = time.perf_counter()
            loss = ((m(xb, 0.1) - xb) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            if i:
                times.append(time.perf_counter() - t0)
        tput[name] = 32 / (sum(times) / len(times))
    wall = time.perf_counter() - t_start
    rows = {
        "forward_s_per_mpix": {k: v / mpix for k, v in t.items()},
        "memory_growth_mb_1024": mem,
        "certify_s": t_cert,
        "certify_with_empirical_s": t_cert_emp,
        "certified_alpha": cert.alpha,
        "train_patches_per_s": tput,
    }
    md = "\n".join([
        "## Denoisers (`benchmarks/speed_denoisers.py`)",
        "",
        f"Machine: {machine()}. Default averaged net: width 32, 8 Euler blocks, one sub-step each (~150k MAC/pixel); "
        f"median of {repeats} interleaved runs. Total {wall:.0f} s.",
        "",
        "| model | forward (s / megapixel) | ratio to plain stack | memory growth, 1024x1024 forward (MB) | training (patches/s) |",
        "|---|---:|---:|---:|---:|",
        f"| ours, averaged gradient-flow net | {rows['forward_s_per_mpix']['ours']:.3f} | {t['ours'] / t['plain']:.2f} | {mem['ours']:.0f} | {tput['ours']:.0f} |",
        f"| plain stack, same convolutions | {rows['forward_s_per_mpix']['plain']:.3f} | 1.00 | {mem['plain']:.0f} | - |",
        f"| DnCNN, equal FLOPs, unconstrained | {rows['forward_s_per_mpix']['dncnn']:.3f} | {t['dncnn'] / t['plain']:.2f} | {mem['dncnn']:.0f} | {tput['dncnn']:.0f} |",
        "",
        f"Certification of the default model: {t_cert:.2f} s (certified part; alpha = {cert.alpha:.4f}), "
        f"{t_cert_emp:.2f} s with the empirical lower bounds. Goal: under 10 s.",
    ])
    print(md)
    if not args.quick:
        write_section("denoisers", md)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
