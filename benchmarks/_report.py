"""Helpers shared by the benchmark scripts: interleaved timing and RESULTS.md sections."""

from __future__ import annotations

import platform
import statistics
import time
from pathlib import Path
from typing import Callable

import torch

RESULTS = Path(__file__).with_name("RESULTS.md")


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
