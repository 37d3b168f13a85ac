"""Helpers shared by the benchmark scripts: images as batches, PSNR/SSIM, interleaved timing,
run records (JSON lines that survive a kill) and RESULTS.md sections.

The scripts run as ``python benchmarks/NAME.py``, which puts this folder on ``sys.path``; no
script is named after a package, so ``import operators`` etc. always find the packages.
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

RESULTS = Path(__file__).with_name("RESULTS.md")


def write_table_section(name: str, title: str, description: str, rows: list[str], path: Path | None = None) -> None:
    """Write the section ``name`` of RESULTS.md as a heading, one paragraph and a table.

    Examples
    --------
    >>> import tempfile
    >>> results = Path(tempfile.mkdtemp()) / "RESULTS.md"
    >>> write_table_section("demo", "Demo", "What ran.", ["| a |", "|---|", "| 1 |"], results)
    >>> results.read_text().splitlines()[4:8]
    ['<!-- demo:start -->', '## Demo', '', 'What ran.']
    """
    write_section(name, "\n".join([f"## {title}", "", description, "", *rows]), path)


def machine() -> str:
    """One line describing where the numbers were taken.

    Examples
    --------
    >>> "torch threads" in machine()
    True
    """
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, Python {platform.python_version()}"


def interleaved_medians(fns: dict[str, Callable[[], object]], *, repeats: int, warmup: int = 2) -> dict[str, float]:
    """Median wall time (s) of each callable, timed round-robin so that load spikes on a
    shared machine hit all contenders alike.

    Examples
    --------
    >>> t = interleaved_medians({"sum": lambda: sum(range(1000)), "noop": lambda: None}, repeats=3, warmup=1)
    >>> sorted(t), all(v >= 0 for v in t.values())
    (['noop', 'sum'], True)
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in samples.items()}


def file_digest(path: str | Path, length: int = 16) -> str:
    """The first ``length`` hex digits of a file's sha256: how records tell weights files apart.

    Examples
    --------
    >>> import tempfile
    >>> f = Path(tempfile.mkdtemp()) / "w.pt"
    >>> _ = f.write_bytes(b"")
    >>> file_digest(f, 12)
    'e3b0c44298fc'
    """
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:length]


def write_section(name: str, body: str, path: Path | None = None) -> None:
    """Replace (or append) the section ``name`` of RESULTS.md (or ``path``), leaving the others alone.

    The file is replaced atomically, so a killed run never leaves it half written.

    Examples
    --------
    >>> import tempfile
    >>> results = Path(tempfile.mkdtemp()) / "RESULTS.md"
    >>> write_section("speed", "old table", results)
    >>> write_section("speed", "new table", results)
    >>> text = results.read_text()
    >>> "new table" in text, "old table" in text
    (True, False)
    """
    path = RESULTS if path is None else Path(path)
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = path.read_text() if path.exists() else "# Benchmark results\n\nEach section is written by the script it names; rerun the script to refresh it.\n"
    block = f"{start}\n{body.rstrip()}\n{end}"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        text = head + block + tail
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def image_to_batch(image: np.ndarray, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """A (H, W) or (H, W, C) image as a (1, C, H, W) tensor in [0, 1] units (uint8 is divided by 255).

    Examples
    --------
    >>> image_to_batch(np.full((4, 5, 3), 255, np.uint8)).shape, float(image_to_batch(np.full((2, 2), 255, np.uint8)).max())
    (torch.Size([1, 3, 4, 5]), 1.0)
    """
    a = np.ascontiguousarray(image)
    t = torch.from_numpy(a).to(dtype)
    if a.dtype == np.uint8:
        t = t / 255
    return t[None, None] if t.ndim == 2 else t.permute(2, 0, 1)[None].contiguous()


def batch_to_image(batch: torch.Tensor) -> np.ndarray:
    """The first image of a (B, C, H, W) batch as float64 (H, W) or (H, W, C).

    Examples
    --------
    >>> batch_to_image(torch.zeros(1, 1, 4, 5)).shape, batch_to_image(torch.zeros(1, 3, 4, 5)).shape
    ((4, 5), (4, 5, 3))
    """
    a = batch[0].detach().cpu().double().numpy()
    return a[0] if a.shape[0] == 1 else np.transpose(a, (1, 2, 0))


def psnr_per_image(x: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """PSNR (dB) of each image of a batch, peak 1, estimates clipped to [0, 1] first.

    Examples
    --------
    >>> truth = torch.zeros(2, 1, 4, 4)
    >>> psnr_per_image(truth + torch.tensor([0.1, 2.0]).view(2, 1, 1, 1), truth)
    tensor([20.,  0.])
    """
    mse = ((x.clamp(0, 1) - truth) ** 2).flatten(1).mean(1)
    return 10 * torch.log10(1 / mse)


def psnr(x: torch.Tensor, truth: torch.Tensor) -> float:
    """Mean PSNR (dB) over a batch (one number), as :func:`psnr_per_image`.

    Examples
    --------
    >>> psnr(torch.full((1, 1, 4, 4), 0.1), torch.zeros(1, 1, 4, 4))
    20.0
    """
    return float(psnr_per_image(x, truth).mean())


def metrics(estimate, truth) -> tuple[float, float]:
    """PSNR (dB) and SSIM of one image against the truth (scikit-image, data range 1), the
    estimate clipped to [0, 1]; each a numpy image (H, W[, C]) or a (1, C, H, W) tensor.

    Examples
    --------
    >>> p, s = metrics(np.full((16, 16), 0.1), np.zeros((16, 16)))
    >>> round(p, 6), s < 1
    (20.0, True)
    """
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    est = batch_to_image(estimate) if isinstance(estimate, torch.Tensor) else np.asarray(estimate, np.float64)
    ref = batch_to_image(truth) if isinstance(truth, torch.Tensor) else np.asarray(truth, np.float64)
    est = np.clip(est, 0, 1)
    ssim = structural_similarity(ref, est, data_range=1.0, channel_axis=-1 if ref.ndim == 3 else None)
    return float(peak_signal_noise_ratio(ref, est, data_range=1.0)), float(ssim)


def load_records(path: str | Path) -> list[dict]:
    """The runs recorded in a JSON-lines file (a line cut by a kill is ignored; no file: none).

    Examples
    --------
    >>> import tempfile
    >>> runs = Path(tempfile.mkdtemp()) / "runs.jsonl"
    >>> _ = runs.write_text('{"psnr": 25.0}\\n{"psnr": 2')  # the second line was cut
    >>> load_records(runs)
    [{'psnr': 25.0}]
    """
    path, runs = Path(path), []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                runs.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return runs


def append_record(path: str | Path, run: dict) -> None:
    """Add one run to a JSON-lines file: a kill loses at most the run being written, and a line
    cut by an earlier kill is closed first, so the new record starts on a line of its own.

    Examples
    --------
    >>> import tempfile
    >>> runs = Path(tempfile.mkdtemp()) / "runs.jsonl"
    >>> _ = runs.write_text('{"psnr": 2')
    >>> append_record(runs, {"psnr": 30.0}); load_records(runs)
    [{'psnr': 30.0}]
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cut = path.exists() and path.stat().st_size and not path.read_bytes().endswith(b"\n")
    with path.open("a") as fh:
        fh.write(("\n" if cut else "") + json.dumps(run) + "\n")


def write_json_atomic(path: str | Path, payload: dict) -> None:
    """Write a JSON file through a temporary file and a rename: a killed run leaves the previous one whole.

    Examples
    --------
    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "r.json"
    >>> write_json_atomic(p, {"a": 1}); json.loads(p.read_text())
    {'a': 1}
    """
    from operators._io import write_atomic

    text = json.dumps(payload, indent=1)
    write_atomic(path, lambda tmp: Path(tmp).write_text(text), overwrite=True)
