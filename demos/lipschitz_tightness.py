"""How tight is each certificate?  Certified Lipschitz bound against the measured lower bound.

For each target ``gamma`` an equilibrium (LBEN) network is built from the same free parameters
(a weights file's, or seeded ones): the construction makes it ``gamma``-Lipschitz, whatever
the parameters.  ``denoisers.certify`` measures a lower bound beside each certificate (the
larger of a Jacobian power iteration and a worst-pair search, on a float64 copy solved to
1e-12).  The shipped gradient-flow model (certified 1-Lipschitz, averaged) stands beside them
at ``gamma = 1``.  A measured value can never exceed its certificate (``certify`` raises if it
does); the gap between them is what the certificate leaves on the table.

Runs in one to three minutes on a 2-core CPU::

    python demos/lipschitz_tightness.py -o lipschitz_tightness.png [--lben WEIGHTS] [--overwrite]
"""

from __future__ import annotations

import argparse
import sys

import torch

from denoisers import certify
from denoisers.lben import LBENDenoiser, LBENNet
from operators._io import write_atomic

GAMMAS = (0.25, 0.5, 0.75, 1.0)


def lben_at(source: LBENNet, gamma: float) -> LBENDenoiser:
    """The network with ``source``'s free parameters, built for the bound ``gamma`` (theta 1).

    Examples
    --------
    >>> net = lben_at(LBENNet(1, hidden=2), 0.5)
    >>> net.certified_part().lipschitz_bound
    0.5
    """
    config = dict(source.config, gamma=float(gamma))
    channels = config.pop("channels")
    net = LBENNet(channels, **config)
    net.load_state_dict(source.state_dict())
    return LBENDenoiser(net, theta=1.0).eval()


def measured(model, side: int, steps: int, seed: int = 0) -> tuple[float, float]:
    """(certified bound, measured lower bound) of ``model`` on ``side x side`` samples.

    Examples
    --------
    >>> cert, low = measured(lben_at(LBENNet(1, hidden=2), 1.0), side=8, steps=2)
    >>> 0 < low <= cert == 1.0
    True
    """
    cert = certify(model, shape=(1, model.channels, side, side), steps=steps, seed=seed)
    return cert.lipschitz_bound, max(cert.empirical["jacobian_lipschitz"], cert.empirical["pair_lipschitz"])


def run(lben: str | None = None, gammas=GAMMAS, side: int = 24, steps: int = 20, with_shipped: bool = True) -> dict:
    """Measure every point of the figure.

    Examples
    --------
    >>> res = run(gammas=(0.5, 1.0), side=8, steps=2, with_shipped=False)
    >>> all(low <= cert for cert, low in zip(res["lben_certified"], res["lben_measured"]))
    True
    """
    if lben is None:
        torch.manual_seed(0)
        source, label = LBENNet(1, hidden=8), "LBEN, seeded parameters (hidden 8)"
    else:
        from denoisers.weights import load_weights

        model = load_weights(lben)
        if not isinstance(model, LBENDenoiser):
            raise ValueError(f"{lben} holds a {type(model).__name__}, not an LBEN denoiser")
        source, label = model.net, f"LBEN, trained parameters ({lben})"
    res = {"gamma": list(gammas), "lben_certified": [], "lben_measured": [], "lben_label": label}
    for g in gammas:
        cert, low = measured(lben_at(source, g), side, steps)
        res["lben_certified"].append(cert)
        res["lben_measured"].append(low)
    if with_shipped:
        from denoisers import load_pretrained

        shipped = load_pretrained("gray-averaged")
        res["shipped"] = measured(shipped, side, steps)
    return res


def plot(res: dict, path: str, overwrite: bool) -> None:
    """Draw :func:`run`'s points to ``path`` (PNG); an existing file is kept unless ``overwrite``.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> out = Path(tempfile.mkdtemp()) / "t.png"
    >>> plot({"gamma": [0.5, 1.0], "lben_certified": [0.5, 1.0], "lben_measured": [0.4, 0.7], "lben_label": "LBEN",
    ...       "shipped": (1.0, 0.9)}, str(out), overwrite=False)
    >>> out.stat().st_size > 1000
    True
    """
    def draw(tmp: str) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        g = res["gamma"]
        fig, ax = plt.subplots(figsize=(6.5, 4.5), constrained_layout=True)
        ax.plot([0, 1.05], [0, 1.05], "k:", label="measured = certified")
        ax.plot(g, res["lben_certified"], "-", color="tab:blue", lw=3, alpha=0.4, label="LBEN: certificate (gamma)")
        ax.plot(g, res["lben_measured"], "o-", color="tab:blue", label=f"{res['lben_label']}: measured lower bound")
        for x, c, m in zip(g, res["lben_certified"], res["lben_measured"]):
            ax.annotate(f"{m / c:.0%}", (x, m), textcoords="offset points", xytext=(6, -12), fontsize=8, color="tab:blue")
        if "shipped" in res:
            c, m = res["shipped"]
            ax.plot([c], [m], "s", color="tab:green", ms=8, label=f"gradient-flow gray-averaged: measured {m:.3f} (certified {c:g})")
        ax.set_xlabel("certified Lipschitz bound")
        ax.set_ylabel("measured Lipschitz lower bound")
        ax.set_xlim(0, 1.08)
        ax.set_ylim(0, 1.08)
        ax.set_title("Certificate against the largest amplification found")
        ax.legend(fontsize=8, loc="upper left")
        ax.grid(True, alpha=0.3)
        fig.savefig(tmp, dpi=110)
        plt.close(fig)

    write_atomic(path, draw, overwrite=overwrite)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", default="lipschitz_tightness.png")
    parser.add_argument("--lben", default=None, help="LBEN weights file (default: seeded parameters)")
    parser.add_argument("--side", type=int, default=24, help="side of the probe images (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=20, help="iterations of each empirical search (default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    try:
        res = run(args.lben, side=args.side, steps=args.steps)
        plot(res, args.output, args.overwrite)
    except (ValueError, OSError) as exc:
        print(f"lipschitz_tightness: error: {exc}", file=sys.stderr)
        return 2
    for g, c, m in zip(res["gamma"], res["lben_certified"], res["lben_measured"]):
        print(f"LBEN gamma {g:.2f}: certified {c:.3f}, measured >= {m:.3f} ({m / c:.0%})")
    c, m = res["shipped"]
    print(f"gradient-flow gray-averaged: certified {c:.3f}, measured >= {m:.3f} ({m / c:.0%})")
    print(f"figure written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
