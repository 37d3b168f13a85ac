"""Training loop with exact resume: patches -> noisy -> denoiser -> MSE, Adam, cosine decay.

A run lives in one folder: ``config.json`` (what was asked), ``checkpoint.pt`` (model,
optimiser, schedule, step, wall time; written atomically every ``checkpoint_every`` steps)
and ``log.jsonl`` (one line per step, validation PSNR where measured).  Killing the process
and calling :func:`train` again continues from the last checkpoint and reproduces the
uninterrupted run exactly (batches are a function of ``(seed, step)``).

Under ``torchrun`` (:mod:`torch.distributed` initialised by the caller, e.g. ``pnp-stable
train``), the model runs as :class:`~torch.nn.parallel.DistributedDataParallel`: every rank
draws the same global batch of ``(seed, step)`` and trains on its own contiguous share of it,
so the averaged gradient is the global batch's and a run on N processes follows the
one-process run (up to the order of floating-point sums).  Rank 0 alone validates and writes
the run folder; the stop after ``max_minutes`` is rank 0's decision, broadcast to all.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch

from operators._io import write_atomic

from .data import ImageFolder, NoiseSpec, PatchSampler
from .registry import build_model

__all__ = ["TrainConfig", "TrainResult", "train", "validation_psnr", "export_run", "check_replicas_agree"]


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved as ``config.json``).

    Attributes
    ----------
    train_dir : str
        Folder of training images.  Never a test folder.
    out_dir : str
        Run folder (checkpoint, log, config).
    channels : int
        1 gray, 3 colour.
    model : str
        Registry name (see :func:`denoisers.registry.build_model`).
    model_kwargs : dict
        Architecture arguments (``width``, ``depth``, ``max_substeps``...).
    sigma, sigma_max : float
        Noise level, or range ``[sigma, sigma_max]``, on the [0, 1] scale.
    patch, batch_size, steps, lr, seed
        The usual.
    val_dir : str, optional
        Held-out folder; if omitted, the last ``val_split`` images of ``train_dir`` are held out.
    val_split, val_every, val_crop
        Validation set size, period (steps) and centre-crop side (0: whole images).
    checkpoint_every : int
        Steps between checkpoints.
    threads : int
        torch CPU threads (0: leave as is).
    init : str, optional
        Start from the parameters of this weights file or shipped model name (fine-tuning;
        e.g. a gray model starts a colour run: the blocks act on the lifted state, whose width
        does not depend on the image channels).  Used by fresh runs only; shapes must match.
    """

    train_dir: str
    out_dir: str
    channels: int = 1
    model: str = "averaged"
    model_kwargs: dict = field(default_factory=dict)
    sigma: float = 25 / 255
    sigma_max: float | None = None
    patch: int = 48
    batch_size: int = 32
    steps: int = 2000
    lr: float = 1e-3
    seed: int = 0
    val_dir: str | None = None
    val_split: int = 12
    val_every: int = 200
    val_crop: int = 0
    checkpoint_every: int = 50
    threads: int = 0
    init: str | None = None


@dataclass(frozen=True)
class TrainResult:
    """Where a call to :func:`train` stopped."""

    step: int
    finished: bool
    wall_time: float
    last_loss: float
    last_val_psnr: float | None
    out_dir: Path


def _atomic_torch_save(obj, path: Path) -> None:
    write_atomic(path, lambda tmp: torch.save(obj, tmp), overwrite=True)


def _split_folders(cfg: TrainConfig) -> tuple[ImageFolder, ImageFolder]:
    train = ImageFolder(cfg.train_dir, cfg.channels, min_size=cfg.patch)
    if cfg.val_dir is not None:
        return train, ImageFolder(cfg.val_dir, cfg.channels)
    if not 0 < cfg.val_split < len(train):
        raise ValueError(f"val_split must be between 1 and {len(train) - 1}; got {cfg.val_split}")
    val = ImageFolder.__new__(ImageFolder)
    val.folder, val.files, val.images = train.folder, train.files[-cfg.val_split :], train.images[-cfg.val_split :]
    train.files, train.images = train.files[: -cfg.val_split], train.images[: -cfg.val_split]
    return train, val


def validation_psnr(model: torch.nn.Module, images: list[np.ndarray], sigma: float, *, crop: int = 0, seed: int = 12345) -> float:
    """Mean PSNR (dB) of ``model`` on noisy versions of ``images`` (fixed noise seed), in eval mode.

    Examples
    --------
    >>> import numpy as np, torch
    >>> ident = lambda x, sigma=None: x
    >>> round(validation_psnr(ident, [np.full((8, 8, 1), 128, np.uint8)], 0.0), 1) > 100
    True
    """
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    device, dtype = _model_placement(model)
    g = torch.Generator().manual_seed(seed)
    psnrs = []
    with torch.no_grad():
        for img in images:
            if crop:
                r0, c0 = max(0, (img.shape[0] - crop) // 2), max(0, (img.shape[1] - crop) // 2)
                img = img[r0 : r0 + crop, c0 : c0 + crop]
            x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float() / 255
            # The noise is drawn on the CPU, so every device validates on the same noisy images.
            y = (x + sigma * torch.randn(x.shape, generator=g)).to(device, dtype)
            mse = float(((model(y, sigma).clamp(0, 1) - x.to(device, dtype)) ** 2).mean())
            psnrs.append(10 * math.log10(1 / max(mse, 1e-20)))
    if was_training and hasattr(model, "train"):
        model.train()
    return float(np.mean(psnrs))


def _model_placement(model) -> tuple[torch.device, torch.dtype]:
    """Device and floating dtype of ``model``'s parameters (CPU float32 for a parameter-free callable)."""
    params = getattr(model, "parameters", None)
    first = next((p for p in params() if p.is_floating_point()), None) if callable(params) else None
    return (first.device, first.dtype) if first is not None else (torch.device("cpu"), torch.float32)


def _initial_parameters(model: torch.nn.Module, source: str) -> dict:
    """Copy the parameters and buffers of ``source`` (weights file or shipped name) into
    ``model``; return the source's provenance (what it is and how it was trained)."""
    from .pretrained import pretrained_names, pretrained_path
    from .weights import load_weights

    if Path(source).is_file():
        path = Path(source)
    elif source in pretrained_names():
        path = pretrained_path(source)
    else:
        raise FileNotFoundError(f"init {source!r} is neither a weights file nor a shipped model ({', '.join(pretrained_names())})")
    src, rec = load_weights(path, return_record=True)
    mine, theirs = model.state_dict(), src.state_dict()
    # A noise-conditioned run may start from an unconditioned model: its bias table starts at
    # zero, so it begins as exactly that model.  A spline run may start from a LeakyReLU model:
    # its splines start close to LeakyReLU (denoisers.activations.MonotoneSpline).
    added = {k for k in mine.keys() - theirs.keys() if ".conditioning." in f".{k}" or k.endswith(".act.raw_slopes")}
    theirs = {**theirs, **{k: mine[k] for k in added}}
    if mine.keys() != theirs.keys():
        raise ValueError(f"init {source!r} is a different architecture: parameters {sorted(set(theirs) ^ set(mine))[:6]} "
                         f"are in one model only; build the run with the same model, width and depth")
    wrong = {k: (tuple(theirs[k].shape), tuple(v.shape)) for k, v in mine.items() if theirs[k].shape != v.shape}
    if wrong:
        raise ValueError(f"init {source!r} has parameters of other shapes (theirs, this run's): {wrong}")
    model.load_state_dict(theirs)
    meta = rec.get("metadata", {})
    return {"source": source, "sha256": rec["sha256"], "steps_done": meta.get("steps_done"),
            "training_wall_time_s": meta.get("training_wall_time_s"), "training_config": meta.get("training_config"),
            "init": meta.get("init")}


def _cosine(total: int):
    # Decays the rate from lr to lr / 100 along a half cosine.
    return lambda s: 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(s, total) / total))


def train(cfg: TrainConfig, *, resume: bool = True, max_minutes: float | None = None, progress: bool = True,
          device: str | torch.device | None = None, stop_after: int | None = None) -> TrainResult:
    """Train (or continue training) the model described by ``cfg``.

    Parameters
    ----------
    cfg : TrainConfig
    resume : bool
        Continue from ``out_dir/checkpoint.pt`` when it exists (its config must match).
    max_minutes : float, optional
        Stop cleanly, with a checkpoint, after this much wall time in this call.
    progress : bool
        Show a tqdm bar (loss, PSNR, patches/s).
    device : str or torch.device, optional
        Where to train (default: the CPU), e.g. ``"cuda"``.  Like ``max_minutes`` it is not part
        of the configuration: a run may continue on another device.  Batches are drawn on the
        CPU, so they are the same everywhere; each log line records the device of its step.
        torch's own precision defaults apply (cuDNN may use TF32 convolutions on a GPU); the
        certificate does not depend on them: it is computed from the weights in float64.
    stop_after : int, optional
        Stop cleanly, with a checkpoint, after this many steps in this call.

    Returns
    -------
    TrainResult

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from skimage import data, io
    >>> d = tempfile.mkdtemp()
    >>> for i in range(3):
    ...     io.imsave(f"{d}/{i}.png", data.camera()[i * 50 : i * 50 + 32, :32], check_contrast=False)
    >>> cfg = TrainConfig(train_dir=d, out_dir=d + "/run", model_kwargs=dict(width=4, depth=1),
    ...                   patch=16, batch_size=2, steps=4, val_split=1, val_every=4)
    >>> r = train(cfg, progress=False)
    >>> r.finished, r.step
    (True, 4)
    """
    device = _check_device(device)
    if stop_after is not None and stop_after < 1:
        raise ValueError(f"stop_after must be a number of steps >= 1; got {stop_after}")
    return _train(cfg, resume=resume, max_minutes=max_minutes, progress=progress, device=device, stop_after=stop_after)


def _check_device(device) -> torch.device:
    """The torch device asked for, or a clear error when it is unknown or not present here."""
    try:
        dev = torch.device(device if device is not None else "cpu")
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be a torch device such as 'cpu' or 'cuda'; got {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(dev)!r} was asked for, but this machine has no CUDA GPU that torch can use; train on 'cpu'")
    if dev.type not in ("cpu", "cuda") and not getattr(torch, dev.type, None):
        raise ValueError(f"device {str(dev)!r} is not available in this torch build")
    return dev


def _ranks() -> tuple[int, int]:
    """(rank, world size) of this process: (0, 1) unless torch.distributed is initialised."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def check_replicas_agree(model: torch.nn.Module) -> None:
    """Raise if the ranks of a distributed run hold different weights (nothing to check alone).

    A certificate computed on rank 0 is a certificate of every replica only if they agree:
    the float64 sum and sum of squares of every parameter are compared across ranks (buffers
    hold estimates and cached bounds derived from the parameters, which only rank 0 may have
    computed, e.g. while validating).

    Examples
    --------
    >>> check_replicas_agree(torch.nn.Linear(2, 2))  # alone: nothing to compare
    """
    rank, world = _ranks()
    if world == 1:
        return
    named = [(n, t) for n, t in model.named_parameters() if t.is_floating_point()]
    stats = torch.stack([torch.stack([t.detach().double().sum(), t.detach().double().square().sum()]) for _, t in named])
    lo, hi = stats.clone(), stats.clone()
    torch.distributed.all_reduce(lo, op=torch.distributed.ReduceOp.MIN)
    torch.distributed.all_reduce(hi, op=torch.distributed.ReduceOp.MAX)
    differ = [n for (n, _), a, b in zip(named, lo, hi) if not torch.equal(a, b)]
    if differ:
        raise RuntimeError(f"the {world} ranks hold different weights ({', '.join(differ[:5])}); the run's certificate would "
                           "not cover them all")


def _local_share(batch: tuple[torch.Tensor, ...], rank: int, world: int) -> tuple[torch.Tensor, ...]:
    """Rank ``rank``'s contiguous share of a global batch (every tensor sliced along dim 0)."""
    if world == 1:
        return batch
    n = batch[0].shape[0] // world
    return tuple(t[rank * n:(rank + 1) * n].contiguous() for t in batch)


def _train(cfg: TrainConfig, *, resume: bool, max_minutes: float | None, progress: bool, device: torch.device,
           stop_after: int | None = None) -> TrainResult:
    from tqdm.auto import tqdm

    rank, world = _ranks()
    main = rank == 0
    if cfg.batch_size % world:
        raise ValueError(f"batch_size {cfg.batch_size} does not split evenly over {world} processes; use a multiple of {world}")
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    cfg_dict = asdict(cfg)
    ckpt_path, log_path, cfg_path = out / "checkpoint.pt", out / "log.jsonl", out / "config.json"
    with torch.random.fork_rng(devices=[]):  # seeded initialisation, caller's RNG untouched
        torch.manual_seed(cfg.seed)
        model = build_model(cfg.model, channels=cfg.channels, **cfg.model_kwargs)
    # Moved before the optimiser sees it: a resumed optimiser state is cast to its parameters' device.
    model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _cosine(cfg.steps))
    step, wall, log = 0, 0.0, []
    if resume and ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        # Fields added after a checkpoint was written take their defaults, so older runs resume.
        defaults = {f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}
        saved = {**defaults, **ck["config"], "out_dir": cfg.out_dir}
        if saved != dict(cfg_dict, out_dir=cfg.out_dir):
            diff = {k: (saved.get(k), v) for k, v in cfg_dict.items() if saved.get(k) != v and k != "out_dir"}
            raise ValueError(f"{ckpt_path} was made with a different configuration {diff}; use another out_dir or resume=False")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["schedule"])
        step, wall = int(ck["step"]), float(ck["wall_time"])
        if log_path.exists():
            # Lines past the checkpoint (a kill between writes) are dropped: they will be redone.
            log = [e for e in map(json.loads, log_path.read_text().splitlines()) if e["step"] <= step]
    elif ckpt_path.exists():
        raise FileExistsError(f"{ckpt_path} exists; pass resume=True to continue or choose another out_dir")
    elif cfg.init is not None:
        provenance = _initial_parameters(model, cfg.init)
        if main:
            write_atomic(out / "init.json", lambda tmp: Path(tmp).write_text(json.dumps(provenance, indent=1)), overwrite=True)
    if world > 1:
        # Every rank has read the run folder before rank 0 writes to it.
        torch.distributed.barrier()
    if main:
        cfg_path.write_text(json.dumps(cfg_dict, indent=1))
    train_set, val_set = _split_folders(cfg)
    sampler = PatchSampler(train_set, patch=cfg.patch, batch_size=cfg.batch_size, noise=NoiseSpec(cfg.sigma, cfg.sigma_max), seed=cfg.seed)
    val_sigma = cfg.sigma if cfg.sigma_max is None else 0.5 * (cfg.sigma + cfg.sigma_max)

    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    else:
        net = model

    def checkpoint() -> None:
        if not main:
            return
        _atomic_torch_save(
            {"config": cfg_dict, "model": model.state_dict(), "optimizer": opt.state_dict(), "schedule": sched.state_dict(),
             "step": step, "wall_time": wall},
            ckpt_path,
        )
        text = "".join(json.dumps(e) + "\n" for e in log)
        write_atomic(log_path, lambda tmp: Path(tmp).write_text(text), overwrite=True)

    model.train()
    start, last_val, loss_val = time.perf_counter(), None, float("nan")
    bar = tqdm(total=cfg.steps, initial=step, disable=not progress or not main, desc=f"train {cfg.model}", unit="step")
    first = step
    while step < cfg.steps:
        t0 = time.perf_counter()
        clean, noisy, sigma = (t.to(device, non_blocking=True) for t in _local_share(sampler.batch(step), rank, world))
        loss = torch.mean((net(noisy, sigma) - clean) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        step += 1
        dt = time.perf_counter() - t0
        wall += dt
        if world > 1:  # the global batch's loss, as one process would log it
            total = loss.detach().clone()
            torch.distributed.all_reduce(total)
            loss_val = total.item() / world
        else:
            loss_val = loss.item()
        entry = {"step": step, "loss": loss_val, "psnr": 10 * math.log10(1 / max(loss_val, 1e-20)),
                 "lr": opt.param_groups[0]["lr"], "patches_per_s": cfg.batch_size / dt, "wall_time": wall,
                 "device": device.type}
        if main and (step % cfg.val_every == 0 or step == cfg.steps):
            last_val = validation_psnr(model, val_set.images, val_sigma, crop=cfg.val_crop)
            entry["val_psnr"] = last_val
        log.append(entry)
        bar.update(1)
        bar.set_postfix(loss=f"{loss_val:.2e}", psnr=f"{entry['psnr']:.2f}", val=f"{last_val:.2f}" if last_val else "-",
                        pps=f"{entry['patches_per_s']:.0f}")
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            checkpoint()
        stop = (max_minutes is not None and time.perf_counter() - start > 60 * max_minutes) or \
            (stop_after is not None and step - first >= stop_after)
        if world > 1 and max_minutes is not None:  # clocks differ: rank 0 decides for all
            flag = torch.tensor([float(stop)], device=device)
            torch.distributed.broadcast(flag, 0)
            stop = bool(flag.item())
        if stop:
            break
    bar.close()
    if step % cfg.checkpoint_every:
        checkpoint()
    check_replicas_agree(model)
    if world > 1:
        torch.distributed.barrier()  # the checkpoint is on disk before any rank returns
    finished = step >= cfg.steps
    return TrainResult(step, finished, wall, loss_val, last_val, out)


def export_run(run_dir: str | os.PathLike, path: str | os.PathLike, *, overwrite: bool = False, note: str = "",
               strength_sigmas=None, progress: bool = False) -> Path:
    """Export the model of a run folder to a weights file with its training record.

    The metadata records the configuration (data folder, noise, architecture, schedule),
    steps done and planned, training wall time, the last validation PSNR and ``note``.
    With ``strength_sigmas`` (averaged models only), the relaxation ``theta(sigma)`` is fitted
    at those levels on the run's held-out validation images (training data, never a test
    set; :func:`denoisers.strength.calibrate_strength`) and stored with the architecture.

    Examples
    --------
    >>> export_run("/nonexistent", "/tmp/x.pt")
    Traceback (most recent call last):
    ...
    FileNotFoundError: no checkpoint in /nonexistent
    """
    from .weights import export_weights

    run = Path(run_dir)
    ckpt = run / "checkpoint.pt"
    if not ckpt.is_file():
        raise FileNotFoundError(f"no checkpoint in {run}")
    ck = torch.load(ckpt, map_location="cpu", weights_only=True)
    cfg = ck["config"]
    model = build_model(cfg["model"], channels=cfg["channels"], **cfg["model_kwargs"])
    model.load_state_dict(ck["model"])
    model.eval()
    calibration = None
    if strength_sigmas is not None:
        from .models import AveragedDenoiser
        from .strength import calibrate_strength

        if not isinstance(model, AveragedDenoiser):
            raise ValueError(f"strength calibration needs an averaged model; this run trained {cfg['model']!r}")
        keep = {k: v for k, v in cfg.items() if k in TrainConfig.__dataclass_fields__}
        _, val = _split_folders(TrainConfig(**keep))
        model.strength = calibrate_strength(model, val.images, strength_sigmas, progress=progress)
        calibration = {"images": [str(f) for f in val.files], "sigmas": model.strength[0], "thetas": model.strength[1]}
    log_path = run / "log.jsonl"
    entries = []
    if log_path.exists():
        entries = [e for e in map(json.loads, log_path.read_text().splitlines()) if e["step"] <= ck["step"]]
    vals = [e for e in entries if "val_psnr" in e]
    meta = {
        "training_config": cfg,
        "steps_done": int(ck["step"]),
        "steps_planned": int(cfg["steps"]),
        "training_wall_time_s": float(ck["wall_time"]),
        # Where the steps ran (lines written before devices were logged ran on the CPU).
        "training_devices": sorted({e.get("device", "cpu") for e in entries}),
        "last_validation": vals[-1] if vals else None,
        "sigma": cfg["sigma"],
        "sigma_max": cfg["sigma_max"],
        "note": note,
        "strength_calibration": calibration,
        # A fine-tuned run's budget includes its starting model's (see train(init=)).
        "init": json.loads((run / "init.json").read_text()) if (run / "init.json").is_file() else None,
    }
    return export_weights(model, path, metadata=meta, overwrite=overwrite)
