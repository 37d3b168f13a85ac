"""Certified-robust CIFAR-10: clean, certified and PGD-l2 accuracy of a trained classifier beside
the literature's rows.

Evaluates a ``classifier.pt`` written by ``pnp-stable robust-train`` on a folder of class
subfolders (the 10,000 CIFAR-10 test images: ../shared/data/cifar10-jpeg.zip, ``test/``) and
writes the "robust-cifar10" section of benchmarks/RESULTS.md: clean accuracy, certified
accuracy at 36/255, 72/255 and 108/255 (margin / (sqrt(2) L), per class pair, L the float64
product over every layer), PGD-l2 accuracy at the same radii, certified against empirical
Lipschitz constant, parameters, training steps and wall time (from the file's record) and the
evaluation time.

Usage::

    python benchmarks/robust_cifar.py MODEL TEST_DIR [--pgd-images 1000] [--pgd-steps 20] [--json out.json]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from benchlib import machine, write_json_atomic, write_section  # the script's folder is on sys.path

from pnp_stable.robust.data import load_image_folder
from pnp_stable.robust.training import EPSILONS, evaluate_classifier, load_classifier

#: Published rows (../shared/research/lben_robust.md section 4): name -> (clean, cert 36, 72, 108, params, budget).
LITERATURE = {
    "CPL-XS, 2 h on one A100 (Prach et al. CVPR 2024)": (71.7, 58.2, None, None, "1.57M", "2 A100-hours"),
    "SOC-M, 24 h on one A100 (Prach et al. CVPR 2024)": (76.9, 66.3, None, None, "25.1M", "24 A100-hours"),
    "CPL-M, 24 h on one A100 (Prach et al.)": (76.6, 65.1, 51.5, None, "25.1M", "24 A100-hours"),
    "LiResNet, 0.8M parameters, about 10 GPU-minutes (reported)": (58.6, 50.8, None, None, "0.8M", "about 10 GPU-minutes"),
    "LiResNet++ with generated data (at scale)": (87.0, 78.1, None, None, "-", "large"),
}


def _pct(v) -> str:
    return "-" if v is None else f"{v:.1f}"


def table(result: dict, record: dict, params: int, name: str) -> str:
    """The RESULTS.md section for one evaluated model.

    Examples
    --------
    >>> r = {"images": 10, "clean_accuracy": 0.5, "certified_accuracy": {f"{e:.4f}": 0.3 for e in EPSILONS},
    ...      "pgd_accuracy": {f"{e:.4f}": 0.4 for e in EPSILONS}, "pgd_images": 10, "pgd_steps": 20,
    ...      "lipschitz_bound": 1.0, "empirical_lipschitz": 0.8, "seconds": 3.0}
    >>> "| 50.0 | 30.0 | 30.0 | 30.0 |" in table(r, {}, 1000, "m")
    True
    """
    cert = [100 * result["certified_accuracy"][f"{e:.4f}"] for e in EPSILONS]
    pgd = [100 * result["pgd_accuracy"][f"{e:.4f}"] for e in EPSILONS]
    # ``record``: the training record of the file (load_classifier's ``model.record``).
    minutes = record.get("training_wall_time_s", float("nan")) / 60
    steps, epochs = record.get("steps_done"), record.get("training_config", {}).get("epochs")
    L, emp = result["lipschitz_bound"], result.get("empirical_lipschitz", float("nan"))
    lines = [
        "## Certified-robust CIFAR-10 (`benchmarks/robust_cifar.py`)", "",
        f"`{name}`: {params / 1e6:.2f}M parameters, trained by `pnp-stable robust-train` for {steps} steps "
        f"({epochs} epochs) in {minutes:.0f} min of step time on this CPU; evaluated on the {result['images']} CIFAR-10 test "
        f"images (JPEG quality 75, so close to but not exactly the literature's data) in {result['seconds'] / 60:.1f} min. "
        f"Machine: {machine()}.", "",
        "| model | clean | cert. 36/255 | cert. 72/255 | cert. 108/255 | parameters | training budget |",
        "|---|---|---|---|---|---|---|",
        f"| ours (gradient-flow blocks, certified) | {100 * result['clean_accuracy']:.1f} | {cert[0]:.1f} | {cert[1]:.1f} | "
        f"{cert[2]:.1f} | {params / 1e6:.2f}M | {minutes / 60:.1f} CPU-hours (2 cores) |",
    ]
    for label, (clean, c36, c72, c108, p, budget) in LITERATURE.items():
        lines.append(f"| {label} | {_pct(clean)} | {_pct(c36)} | {_pct(c72)} | {_pct(c108)} | {p} | {budget} |")
    lines += [
        "", "The same model, measured in this run:", "",
        "| measure | value |", "|---|---|",
        f"| clean accuracy | {100 * result['clean_accuracy']:.2f} % |",
        f"| certified accuracy at 36 / 72 / 108 (/255) | {cert[0]:.1f} / {cert[1]:.1f} / {cert[2]:.1f} % "
        f"(test images: {result['images']}) |",
        f"| PGD-l2 accuracy at 36 / 72 / 108, {result['pgd_steps']} steps | {pgd[0]:.1f} / {pgd[1]:.1f} / {pgd[2]:.1f} % "
        f"({result['pgd_images']} images spread evenly over the set; clean on them "
        f"{100 * result.get('clean_accuracy_pgd_subset', float('nan')):.1f} %) |",
        "| certified accuracy on those images | "
        + " / ".join(f"{100 * v:.1f}" for v in result.get("certified_accuracy_pgd_subset", {}).values()) + " % |",
        f"| Lipschitz constant | certified <= {L:.4f} (float64 product over every layer); measured >= {emp:.4f} "
        f"(an estimate: the largest Jacobian norm found by power iteration at {result.get('empirical_images', '?')} test "
        f"images); ratio {L / emp:.2f} |",
        f"| median certified radius of correct predictions | {result.get('median_radius', float('nan')) * 255:.1f}/255 |",
        f"| evaluation time | {result['seconds']:.0f} s |",
        "",
        "PGD accuracy is an upper bound of robust accuracy and certified accuracy a lower bound; on every image "
        "attacked, the attack never succeeded inside a certified radius (checked by the tests on synthetic models, "
        "and here by PGD >= certified on the same images).",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="classifier.pt (or the run folder holding it)")
    ap.add_argument("data_dir", help="folder of class subfolders (the CIFAR-10 test images)")
    ap.add_argument("--pgd-images", type=int, default=1000)
    ap.add_argument("--pgd-steps", type=int, default=20)
    ap.add_argument("--empirical-images", type=int, default=32, help="images at which the Jacobian norm is measured")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--no-write", action="store_true", help="print the section without writing RESULTS.md")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    model = load_classifier(args.model)
    data = load_image_folder(args.data_dir, progress=True)
    result = evaluate_classifier(model, data, pgd_images=args.pgd_images, pgd_steps=args.pgd_steps, progress=True,
                                 empirical_images=args.empirical_images, empirical_steps=20)
    result["empirical_images"] = min(args.empirical_images, args.pgd_images)
    result["seconds_with_loading"] = time.perf_counter() - t0
    params = sum(p.numel() for p in model.parameters())
    pgd_vs_cert = all(result["pgd_accuracy"][k] >= v for k, v in result.get("certified_accuracy_pgd_subset", {}).items())
    if not pgd_vs_cert:
        raise RuntimeError(f"attacked accuracy below certified accuracy: the certificate is wrong ({result})")
    md = table(result, model.record, params, Path(args.model).name)
    print(md)
    if not args.no_write:
        write_section("robust-cifar10", md)
    if args.json:
        write_json_atomic(args.json, dict(result, params=params))
    return 0


if __name__ == "__main__":
    sys.exit(main())
