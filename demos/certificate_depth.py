"""Lipschitz constant against depth: an ordinary ResNet versus the gradient-flow network.

An ordinary residual block ``x + B relu(A x)`` with ``||A||, ||B|| <= 1`` (certified here) is
only 2-Lipschitz, so depth ``d`` allows ``2^d``; the gradient-flow network is certified
1-Lipschitz at every depth.  For each depth the figure shows:

* ordinary ResNet, adversarial weights (every convolution the identity): measured ``2^d``;
* ordinary ResNet, random weights: measured lower bound (worst pair found);
* gradient-flow network, random weights: its certificate (1) and the measured lower bound.

Runs in well under a minute on a laptop CPU::

    python demos/certificate_depth.py -o certificate_depth.png [--max-depth 8] [--overwrite]
"""

from __future__ import annotations

import argparse
import sys

import torch

from denoisers import GradientFlowNet, NonexpansiveDenoiser, certify
from denoisers.baselines import SpectralResNet
from operators._io import write_atomic


def worst_pair_ratio(net, shape, steps: int = 25, seed: int = 0) -> float:
    """Largest ||N(x) - N(y)|| / ||x - y|| found by gradient ascent on the pair (a lower bound).

    Examples
    --------
    >>> double = lambda z: 2 * z
    >>> round(worst_pair_ratio(double, (1, 1, 4, 4), steps=2), 6)
    2.0
    """
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g, dtype=torch.float64).requires_grad_(True)
    y = (x.detach() + 0.05 * torch.randn(shape, generator=g, dtype=torch.float64)).requires_grad_(True)
    opt = torch.optim.Adam([x, y], lr=1e-2)
    best = 0.0
    for _ in range(steps):
        ratio = (net(x) - net(y)).norm() / (x - y).norm()
        best = max(best, float(ratio.detach()))
        opt.zero_grad()
        (-ratio).backward()
        opt.step()
    return best


def run(max_depth: int = 8, width: int = 8, side: int = 24, steps: int = 25) -> dict:
    """Measure every curve of the figure; returns lists indexed by depth 1..max_depth.

    Examples
    --------
    >>> res = run(max_depth=2, width=2, side=8, steps=2)
    >>> res["depth"], [round(v, 6) for v in res["resnet_adversarial"]]
    ([1, 2], [2.0, 4.0])
    >>> all(m <= c for m, c in zip(res["ours_measured"], res["ours_certified"]))
    True
    """
    torch.manual_seed(0)
    depths = list(range(1, max_depth + 1))
    shape = (1, 1, side, side)
    out = {"depth": depths, "resnet_adversarial": [], "resnet_random": [], "ours_certified": [], "ours_measured": []}
    for d in depths:
        x = torch.rand(shape, dtype=torch.float64) + 0.5  # positive: relu passes, each block doubles
        adv = SpectralResNet.worst_case(d)
        with torch.no_grad():
            out["resnet_adversarial"].append(float((adv(x) - adv(x + 0.01)).norm() / (0.01 * x.numel() ** 0.5)))
        rand = SpectralResNet(1, width=width, depth=d).double()
        out["resnet_random"].append(worst_pair_ratio(lambda z, n=rand: n(z), shape, steps))
        ours = NonexpansiveDenoiser(GradientFlowNet(1, width=width, depth=d))
        cert = certify(ours, empirical=False)
        out["ours_certified"].append(cert.lipschitz_bound)
        net = ours.net.double().eval()
        out["ours_measured"].append(worst_pair_ratio(lambda z, n=net: n(z), shape, steps))
    return out


def plot(res: dict, path: str, overwrite: bool) -> None:
    """Draw :func:`run`'s curves to ``path`` (PNG); an existing file is kept unless ``overwrite``.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> out = Path(tempfile.mkdtemp()) / "depth.png"
    >>> plot(run(max_depth=2, width=2, side=8, steps=2), str(out), overwrite=False)
    >>> out.stat().st_size > 1000
    True
    """
    def draw(tmp: str) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        d = res["depth"]
        fig, ax = plt.subplots(figsize=(7, 4.5), constrained_layout=True)
        ax.semilogy(d, [2.0**k for k in d], "k:", label="worst case of a ResNet, $2^d$")
        ax.semilogy(d, res["resnet_adversarial"], "o-", color="tab:red", label="ResNet, identity weights (measured)")
        ax.semilogy(d, res["resnet_random"], "s-", color="tab:orange", label="ResNet, random weights (lower bound)")
        ax.semilogy(d, res["ours_certified"], "-", color="tab:blue", lw=3, alpha=0.5, label="ours: certificate")
        ax.semilogy(d, res["ours_measured"], "^-", color="tab:blue", label="ours: measured (lower bound)")
        ax.set_xlabel("depth (blocks)")
        ax.set_ylabel("Lipschitz constant")
        ax.set_title("Ordinary ResNet with ||A||, ||B|| <= 1 versus gradient-flow blocks")
        ax.legend(fontsize=8)
        ax.grid(True, which="both", alpha=0.3)
        fig.savefig(tmp, dpi=110)
        plt.close(fig)

    write_atomic(path, draw, overwrite=overwrite)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", default="certificate_depth.png")
    parser.add_argument("--max-depth", type=int, default=8)
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    try:
        res = run(args.max_depth, args.width)
        plot(res, args.output, args.overwrite)
    except (ValueError, OSError) as exc:
        print(f"certificate_depth: error: {exc}", file=sys.stderr)
        return 2
    for i, d in enumerate(res["depth"]):
        print(f"depth {d}: ResNet identity {res['resnet_adversarial'][i]:8.2f}, ResNet random >= {res['resnet_random'][i]:.3f}, "
              f"ours certified {res['ours_certified'][i]:.3f}, measured >= {res['ours_measured'][i]:.3f}")
    print(f"figure written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
