"""Training and evaluation of certified classifiers, with exact resume and a training record.

Conventions of :func:`denoisers.training.train`: a run folder holds ``config.json``,
``log.jsonl`` (one line per step, validation lines added), ``checkpoint.pt`` (model, optimiser,
schedule, step; written atomically every ``checkpoint_every`` steps and when stopped) and, at
the end, ``classifier.pt``, the weights file with its certificate and record.  Every random
draw (batch order, crops, flips) is seeded by ``(seed, epoch)`` or ``(seed, step)``, so a
resumed run equals an uninterrupted one.

Loss: the Lipschitz-margin cross-entropy (Prach and Lampert's form): the true class's logit is
lowered by ``margin`` and the logits are divided by ``temperature`` (the loss scaled back by
it).  A margin of ``2 sqrt(2) eps`` asks for predictions certified at radius ``eps`` when the
network is 1-Lipschitz.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from operators._io import write_atomic

from .certificate import certified_accuracy, certified_radius, certify_classifier, empirical_lipschitz
from .attacks import pgd_l2
from .data import ImageSet, augment, load_image_folder
from .models import LipschitzClassifier, PlainClassifier

__all__ = ["RobustTrainConfig", "robust_train", "evaluate_classifier", "save_classifier", "load_classifier", "margin_cross_entropy",
           "EPSILONS"]

#: The l2 radii of the literature's tables (inputs in [0, 1]).
EPSILONS = (36 / 255, 72 / 255, 108 / 255)
#: "lben": a LipschitzClassifier of equilibrium layers (its configuration says block="lben").
_MODELS = {"lipschitz": LipschitzClassifier, "lben": LipschitzClassifier, "plain": PlainClassifier}
_KIND = "pnp-stable robust classifier"


@dataclass
class RobustTrainConfig:
    """Everything that defines a training run (saved as ``config.json``)."""

    train_dir: str
    out_dir: str
    model: str = "lipschitz"
    widths: list = field(default_factory=lambda: [32, 64, 128])
    blocks: list = field(default_factory=lambda: [2, 2, 2])
    hidden_factor: int = 2
    epochs: float = 10.0
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.0
    margin: float = 2 * math.sqrt(2) * 36 / 255
    temperature: float = 0.25
    seed: int = 0
    val_per_class: int = 100
    val_every: int = 500
    checkpoint_every: int = 100
    limit_per_class: int | None = None
    threads: int = 0


def margin_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, margin: float, temperature: float) -> torch.Tensor:
    """``temperature * CE((z - margin e_y) / temperature, y)``, averaged over the batch.

    Examples
    --------
    >>> z = torch.tensor([[2.0, 0.0]])
    >>> float(margin_cross_entropy(z, torch.tensor([0]), 0.0, 1.0)) == float(F.cross_entropy(z, torch.tensor([0])))
    True
    """
    shifted = logits - margin * F.one_hot(labels, logits.shape[1]).to(logits.dtype)
    return temperature * F.cross_entropy(shifted / temperature, labels)


def _build(name: str, config: dict):
    if name not in _MODELS:
        raise ValueError(f"unknown classifier {name!r}; choose one of {sorted(_MODELS)}")
    return _MODELS[name](**config)


def _split(data: ImageSet, per_class: int, seed: int) -> tuple[ImageSet, ImageSet]:
    """Hold out ``per_class`` training images of each class (seeded) for validation."""
    gen = torch.Generator().manual_seed(10_000 + seed)
    val_idx = []
    for c in range(len(data.classes)):
        idx = torch.nonzero(data.labels == c).flatten()
        if len(idx) <= per_class:
            raise ValueError(f"class {data.classes[c]!r} has {len(idx)} images: too few to hold out {per_class} for validation")
        val_idx.append(idx[torch.randperm(len(idx), generator=gen)[:per_class]])
    val = torch.cat(val_idx).sort().values
    keep = torch.ones(len(data), dtype=torch.bool)
    keep[val] = False
    return (ImageSet(data.images[keep], data.labels[keep], data.classes), ImageSet(data.images[val], data.labels[val], data.classes))


def _atomic_save(obj, path: Path) -> None:
    write_atomic(path, lambda tmp: torch.save(obj, tmp), overwrite=True)


def evaluate_classifier(model, data: ImageSet, *, epsilons=EPSILONS, pgd_images: int = 500, pgd_steps: int = 20,
                        batch_size: int = 500, empirical_images: int = 8, empirical_steps: int = 10, progress: bool = False,
                        device=None) -> dict:
    """Clean accuracy, certified accuracy at ``epsilons`` (certified models), PGD-l2 accuracy at
    the same radii on ``pgd_images`` images spread evenly over the set, certified against empirical Lipschitz
    constant, and the evaluation time.

    Examples
    --------
    >>> net = LipschitzClassifier(widths=(4, 8), blocks=(1, 1), image_size=8)
    >>> data = ImageSet(torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8), torch.tensor([0, 1] * 3), ["a", "b"])
    >>> r = evaluate_classifier(net, data, pgd_images=4, pgd_steps=2)
    >>> r["pgd_accuracy"]["0.1412"] >= r["certified_accuracy"]["0.1412"]
    True
    """
    t0 = time.perf_counter()
    model.eval()
    device = device or next(model.parameters()).device
    certified = hasattr(model.head, "effective_weight")
    cert = certify_classifier(model) if certified else None
    logits = []
    with torch.no_grad():
        for start in tqdm(range(0, len(data), batch_size), desc="evaluating", disable=not progress):
            logits.append(model(data.floats(slice(start, start + batch_size)).to(device)).cpu())
    logits = torch.cat(logits)
    correct = logits.argmax(1) == data.labels
    out = {"images": len(data), "clean_accuracy": float(correct.double().mean())}
    if cert is not None:
        radius = certified_radius(logits, cert)
        out["certified_accuracy"] = {f"{e:.4f}": certified_accuracy(radius, correct, e) for e in epsilons}
        out["lipschitz_bound"] = cert.lipschitz_bound
        out["median_radius"] = float(radius[correct].median()) if bool(correct.any()) else 0.0
    n = min(pgd_images, len(data))
    # Spread over the whole set: folders list images class by class, so the first n would be a
    # few classes only.
    pick = torch.linspace(0, len(data) - 1, n).round().long() if n else torch.zeros(0, dtype=torch.long)
    x, y = data.floats(pick).to(device), data.labels[pick].to(device)
    out["pgd_accuracy"], out["pgd_images"], out["pgd_steps"] = {}, n, pgd_steps
    for e in epsilons if n else ():
        _, broken = pgd_l2(model, x, y, e, steps=pgd_steps)
        out["pgd_accuracy"][f"{e:.4f}"] = float((correct[pick] & ~broken.cpu()).double().mean())
    if cert is not None:
        # The certified accuracy on the attacked subset, for the check attack >= certificate.
        out["certified_accuracy_pgd_subset"] = {f"{e:.4f}": certified_accuracy(radius[pick], correct[pick], e) for e in epsilons}
    out["clean_accuracy_pgd_subset"] = float(correct[pick].double().mean()) if n else float("nan")
    if n and empirical_images:
        out["empirical_lipschitz"] = empirical_lipschitz(model, x[:empirical_images], steps=empirical_steps)
    out["seconds"] = time.perf_counter() - t0
    return out


def save_classifier(model, path: str | Path, *, name: str, metadata: dict | None = None) -> None:
    """Write a classifier with its certificate and record (atomically)."""
    record = {"kind": _KIND, "model": name, "config": model.config, "state_dict": model.state_dict(),
              "metadata": metadata or {}}
    if hasattr(model.head, "effective_weight"):
        cert = certify_classifier(model)
        record["certificate"] = {"lipschitz_bound": cert.lipschitz_bound, "layers": cert.layers}
    _atomic_save(record, Path(path))


def load_classifier(path: str | Path):
    """Load a classifier written by :func:`save_classifier` (a file, a run folder, or a shipped
    name such as ``"cifar10-flow-w16"``), re-deriving its certificate and refusing the file if it
    no longer matches.

    Raises
    ------
    FileNotFoundError, ValueError
        Missing file; not a classifier file, or a corrupt one, or a certificate mismatch.
    """
    from .pretrained import SHIPPED_CLASSIFIERS, shipped_classifier_path

    if isinstance(path, str) and path in SHIPPED_CLASSIFIERS and not Path(path).exists():
        path = shipped_classifier_path(path)
    path = Path(path)
    if path.is_dir():
        path = path / "classifier.pt"
    if not path.is_file():
        raise FileNotFoundError(f"classifier file not found: {path} (shipped classifiers: {', '.join(SHIPPED_CLASSIFIERS)})")
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path} is not a readable classifier file: {exc}") from None
    if not isinstance(record, dict) or record.get("kind") != _KIND:
        raise ValueError(f"{path} is not a pnp-stable robust classifier file (a denoiser's weights? see pnp-stable certify)")
    model = _build(record["model"], record["config"])
    model.load_state_dict(record["state_dict"])
    model.eval()
    stored = record.get("certificate")
    if stored is not None:
        cert = certify_classifier(model)
        if not math.isclose(cert.lipschitz_bound, stored["lipschitz_bound"], rel_tol=1e-9):
            raise ValueError(f"{path}: the certificate re-derived from the weights ({cert.lipschitz_bound}) does not match the "
                             f"stored one ({stored['lipschitz_bound']}); the file was changed")
    model.record = record.get("metadata", {})
    return model


def robust_train(cfg: RobustTrainConfig, *, max_minutes: float | None = None, stop_after: int | None = None, progress: bool = True,
                 device=None) -> dict:
    """Train (or resume) the run ``cfg.out_dir``; returns the final state and, when finished,
    the validation result.  ``max_minutes`` / ``stop_after`` (steps in this call) stop it
    cleanly with a checkpoint; the same call resumes it.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from skimage.io import imsave
    >>> root = Path(tempfile.mkdtemp())
    >>> for c in ("a", "b"):
    ...     (root / "data" / c).mkdir(parents=True)
    ...     for i in range(3):
    ...         imsave(root / "data" / c / f"{i}.png", np.full((8, 8, 3), 40 + 150 * (c == "b"), np.uint8), check_contrast=False)
    >>> cfg = RobustTrainConfig(str(root / "data"), str(root / "run"), widths=[4, 8], blocks=[1, 1], epochs=1, batch_size=2,
    ...                         val_per_class=1, val_every=100)
    >>> r = robust_train(cfg, progress=False)
    >>> r["finished"], (root / "run" / "classifier.pt").is_file()
    (True, True)
    """
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg_path = out / "config.json"
    if cfg_path.is_file():
        saved = json.loads(cfg_path.read_text())
        if saved != json.loads(json.dumps(asdict(cfg))):
            diff = sorted(k for k in saved if saved.get(k) != json.loads(json.dumps(asdict(cfg))).get(k))
            raise ValueError(f"{out} holds a run with another configuration (differs in {diff}); use a new folder")
    else:
        cfg_path.write_text(json.dumps(asdict(cfg), indent=1))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = torch.device(device or "cpu")
    data = load_image_folder(cfg.train_dir, limit_per_class=cfg.limit_per_class, progress=progress)
    train_set, val_set = _split(data, cfg.val_per_class, cfg.seed)
    side = data.images.shape[-1]
    if data.images.shape[-2] != side:
        raise ValueError(f"images must be square; got {tuple(data.images.shape[-2:])}")
    torch.manual_seed(cfg.seed)
    model_cfg = dict(in_channels=data.images.shape[1], classes=len(data.classes), widths=list(cfg.widths), blocks=list(cfg.blocks),
                     hidden_factor=cfg.hidden_factor, image_size=side)
    if cfg.model == "lben":
        model_cfg["block"] = "lben"
    model = _build(cfg.model, model_cfg).to(device)
    steps_per_epoch = max(1, len(train_set) // cfg.batch_size)
    total = max(1, int(round(cfg.epochs * steps_per_epoch)))
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total, pct_start=0.3)
    step, wall = 0, 0.0
    ckpt = out / "checkpoint.pt"
    log_path = out / "log.jsonl"
    if ckpt.is_file():
        state = torch.load(ckpt, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["schedule"])
        step, wall = int(state["step"]), float(state["wall_time"])
        if log_path.is_file():  # drop log lines past the checkpoint (a run killed between the two)
            lines = [ln for ln in log_path.read_text().splitlines() if ln and json.loads(ln)["step"] <= step]
            log_path.write_text("".join(ln + "\n" for ln in lines))

    def checkpoint():
        _atomic_save({"model": model.state_dict(), "optimizer": opt.state_dict(), "schedule": sched.state_dict(),
                      "step": step, "wall_time": wall}, ckpt)

    def validate() -> dict:
        r = evaluate_classifier(model, val_set, pgd_images=0, empirical_images=0, device=device)
        model.train()
        return {k: r[k] for k in ("clean_accuracy", "certified_accuracy") if k in r}

    start, first = time.perf_counter(), step
    bar = tqdm(total=total, initial=step, desc=f"training {cfg.model}", disable=not progress)
    model.train()
    order, epoch_of_order = None, -1
    with open(log_path, "a") as log:
        while step < total:
            if max_minutes is not None and (time.perf_counter() - start) / 60 >= max_minutes:
                break
            if stop_after is not None and step - first >= stop_after:
                break
            epoch, pos = divmod(step, steps_per_epoch)
            if epoch != epoch_of_order:
                order = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(cfg.seed * 100_003 + epoch))
                epoch_of_order = epoch
            idx = order[pos * cfg.batch_size:(pos + 1) * cfg.batch_size]
            gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
            x = augment(train_set.floats(idx), gen).to(device)
            y = train_set.labels[idx].to(device)
            t0 = time.perf_counter()
            logits = model(x)
            loss = margin_cross_entropy(logits, y, cfg.margin, cfg.temperature)
            if not bool(torch.isfinite(loss)):
                raise FloatingPointError(f"the loss became {float(loss)} at step {step}; lower --lr and resume from the checkpoint")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            dt = time.perf_counter() - t0
            wall += dt
            entry = {"step": step, "epoch": step / steps_per_epoch, "loss": float(loss.detach()), "accuracy": float((logits.argmax(1) == y).double().mean()),
                     "lr": sched.get_last_lr()[0], "images_per_s": len(idx) / max(dt, 1e-9), "wall_time": wall}
            if step % cfg.val_every == 0 or step == total:
                entry["validation"] = validate()
            log.write(json.dumps(entry) + "\n")
            log.flush()
            bar.update(1)
            bar.set_postfix(loss=f"{entry['loss']:.3f}")
            if step % cfg.checkpoint_every == 0 or step == total:
                checkpoint()
    bar.close()
    checkpoint()
    finished = step >= total
    result = {"finished": finished, "step": step, "total_steps": total, "wall_time": wall}
    if finished:
        final = evaluate_classifier(model, val_set, pgd_images=min(200, len(val_set)), device=device)
        save_classifier(model.cpu(), out / "classifier.pt", name=cfg.model,
                        metadata={"training_config": asdict(cfg), "steps_done": step, "training_wall_time_s": wall,
                                  "validation": final, "classes": data.classes, "device": str(device)})
        result["validation"] = final
    return result
