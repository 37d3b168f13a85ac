"""Restore a whole folder: batches of equal-sized images, atomic outputs, resume, and a summary.

Layout of the output folder::

    OUT_DIR/<name>.png               restored images (8-bit PNG, lossless)
    OUT_DIR/reports/<name>.json      what was done to each image (and PSNR with a reference)
    OUT_DIR/reports/<name>.failed.json   why an image could not be restored
    OUT_DIR/summary.csv              one row per input image, rewritten at the end of every run

An image is done when its restored file exists; a rerun skips it (resume) unless ``overwrite``.
Its report is written before the image, both atomically, so a crash leaves either nothing or a
report without an image, which the rerun redoes.  Under ``torchrun`` each rank takes a disjoint
shard of the sorted file list (:mod:`pnp_stable.distributed`) and rank 0 writes the summary
once every rank is done.
"""

from __future__ import annotations

import csv
import io as _stringio
import json
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from operators._io import write_atomic

from .distributed import ProcessGroup, shard
from .io import write_json
from .restore import RestoreTask, image_psnr, read_image, run_task, save_image

__all__ = ["IMAGE_SUFFIXES", "FolderSummary", "list_images", "output_names", "restore_folder", "SUMMARY_FIELDS"]

#: Files taken as images (by suffix, case-insensitive).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")

#: Columns of summary.csv.
SUMMARY_FIELDS = ("file", "output", "status", "height", "width", "channels", "iterations", "converged", "guaranteed",
                  "stop_reason", "seconds", "psnr", "error")


@dataclass
class FolderSummary:
    """What a run of :func:`restore_folder` did on this rank, and the folder's state after it.

    Attributes
    ----------
    restored, skipped, failed : list of str
        Input file names restored by this rank in this run, skipped as already done, and
        those that could not be read or restored (with :attr:`errors`).
    errors : dict
        File name -> one-line reason.
    summary_csv : Path or None
        Written by rank 0.
    missing : list of str
        After the run (rank 0 only): inputs with neither a result nor a failure record, e.g. the
        shard of a rank that died; a rerun completes them.
    """

    restored: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    summary_csv: Path | None = None
    missing: list[str] = field(default_factory=list)


def list_images(in_dir: str | os.PathLike) -> list[Path]:
    """The image files of a folder (not its subfolders), sorted by name.

    Raises
    ------
    FileNotFoundError
        If the folder does not exist.
    ValueError
        If it holds no image file.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp()); _ = (d / "b.PNG").write_bytes(b""); _ = (d / "a.txt").write_text("")
    >>> [p.name for p in list_images(d)]
    ['b.PNG']
    """
    folder = Path(in_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"input folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        others = sum(1 for p in folder.iterdir())
        what = "is empty" if not others else f"has no image files ({others} other entries; images end in {', '.join(IMAGE_SUFFIXES)})"
        raise ValueError(f"input folder {folder} {what}")
    return files


def output_names(files: list[Path]) -> dict[Path, str]:
    """The output stem of each input: its stem, or stem plus suffix where two inputs share a stem.

    Examples
    --------
    >>> from pathlib import Path
    >>> sorted(output_names([Path("a.png"), Path("a.jpg"), Path("b.png")]).values())
    ['a_jpg', 'a_png', 'b']
    """
    count: dict[str, int] = defaultdict(int)
    for p in files:
        count[p.stem] += 1
    return {p: p.stem if count[p.stem] == 1 else f"{p.stem}_{p.suffix.lstrip('.').lower()}" for p in files}


def _check_folders(in_dir: Path, out_dir: Path) -> None:
    src, dst = in_dir.resolve(), out_dir.resolve()
    if dst == src or src in dst.parents:
        raise ValueError(f"output folder {out_dir} is inside the input folder {in_dir}; choose a folder outside it, so that "
                         "results are never taken for inputs")


def _probe_shape(path: Path) -> tuple | None:
    """(H, W) or (H, W, 3) from the file's header, or None if it cannot say (then the image runs alone)."""
    try:
        from PIL import Image

        with Image.open(path) as im:
            w, h = im.size
            gray = im.mode in ("1", "L", "I", "I;16", "I;16B", "I;16L", "F", "LA")
            return (h, w) if gray else (h, w, 3)
    except Exception:  # anything PIL cannot read is left to read_image, which says why
        return None


def _reference(ref_dir: Path | None, stem: str) -> Path | None:
    if ref_dir is None:
        return None
    for suffix in IMAGE_SUFFIXES:
        for cand in (ref_dir / f"{stem}{suffix}", ref_dir / f"{stem}{suffix.upper()}"):
            if cand.is_file():
                return cand
    return None


def restore_folder(in_dir: str | os.PathLike, out_dir: str | os.PathLike, task: RestoreTask, *, overwrite: bool = False,
                   reference_dir: str | os.PathLike | None = None, batch_size: int = 4, progress: bool = True, device=None,
                   group: ProcessGroup | None = None) -> FolderSummary:
    """Restore every image of ``in_dir`` into ``out_dir`` (see the module docstring for the layout).

    Parameters
    ----------
    in_dir, out_dir : path
        ``out_dir`` is created if needed and must not lie inside ``in_dir``.
    task : RestoreTask
    overwrite : bool
        Restore images already done, replacing their files.
    reference_dir : path, optional
        Clean images under the same stems: each report then holds the PSNR.
    batch_size : int
        Images of one size restored together (the solvers stop each one on its own).
    progress : bool
        A progress bar over this rank's images.
    device : str or torch.device, optional
    group : ProcessGroup, optional
        This process's rank (default: alone).

    Returns
    -------
    FolderSummary

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np
    >>> src, dst = pathlib.Path(tempfile.mkdtemp()), pathlib.Path(tempfile.mkdtemp()) / "out"
    >>> _ = save_image(src / "a.png", np.full((16, 16), 0.5))
    >>> s = restore_folder(src, dst, RestoreTask("denoise", 0.05), progress=False)
    >>> s.restored, (dst / "a.png").is_file(), (dst / "summary.csv").is_file()
    (['a.png'], True, True)
    >>> restore_folder(src, dst, RestoreTask("denoise", 0.05), progress=False).skipped
    ['a.png']
    """
    from tqdm.auto import tqdm

    group = group or ProcessGroup()
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    files = list_images(in_dir)
    _check_folders(in_dir, out_dir)
    ref_dir = Path(reference_dir) if reference_dir is not None else None
    if ref_dir is not None and not ref_dir.is_dir():
        raise FileNotFoundError(f"reference folder not found: {ref_dir}")
    names = output_names(files)
    reports = out_dir / "reports"
    reports.mkdir(parents=True, exist_ok=True)  # every rank: a rank must never wait on another to create it
    summary = FolderSummary()

    pending: list[Path] = []
    for path in shard(files, group):
        if (out_dir / f"{names[path]}.png").exists() and not overwrite:
            summary.skipped.append(path.name)
        else:
            pending.append(path)
    # Equal shapes run together; a file whose header cannot be read runs alone and fails clearly.
    groups: dict[object, list[Path]] = defaultdict(list)
    for path in pending:
        groups[_probe_shape(path) or ("alone", path)].append(path)
    bar = tqdm(total=len(pending), desc="restore" if group.world_size == 1 else f"restore (rank {group.rank})",
               unit="image", disable=not progress, position=group.rank if group.world_size > 1 else None)

    def fail(path: Path, reason: str) -> None:
        summary.failed.append(path.name)
        summary.errors[path.name] = reason
        write_json(reports / f"{names[path]}.failed.json", overwrite=True, payload={"file": path.name, "error": reason, "task": task.describe()})

    def finish(path: Path, image: np.ndarray, record: dict) -> None:
        name = names[path]
        record = dict(record, file=path.name, output=f"{name}.png")
        ref = _reference(ref_dir, path.stem)
        if ref is not None:
            try:
                saved = np.round(np.clip(image, 0, 1) * 255) / 255  # the PSNR of what is written, 8-bit
                record["psnr"] = image_psnr(saved, read_image(ref))
                record["reference"] = ref.name
            except ValueError as exc:
                record["reference_error"] = str(exc)
        write_json(reports / f"{name}.json", record, overwrite=True)
        save_image(out_dir / f"{name}.png", image, overwrite=True)  # pending, or overwrite asked
        failed = reports / f"{name}.failed.json"
        if failed.exists():
            failed.unlink()
        summary.restored.append(path.name)

    def run(paths: list[Path]) -> None:
        loaded, images = [], []
        for path in paths:
            try:
                images.append(read_image(path))
                loaded.append(path)
            except (OSError, ValueError) as exc:
                fail(path, str(exc))
                bar.update(1)
        shapes = {im.shape for im in images}
        if len(shapes) > 1:  # the header said one size and the pixels another: run them one by one
            for path, im in zip(loaded, images):
                run_loaded([path], [im])
            return
        run_loaded(loaded, images)

    def run_loaded(paths: list[Path], images: list[np.ndarray]) -> None:
        if not paths:
            return
        try:
            results = run_task(task, images, device=device)
        except Exception as exc:  # one image's failure must not sink its batch or the folder
            if len(paths) > 1:
                for path, im in zip(paths, images):
                    run_loaded([path], [im])
                return
            fail(paths[0], f"{type(exc).__name__}: {exc}")
            bar.update(1)
            return
        for path, res in zip(paths, results):
            finish(path, res.image, res.record)
            bar.update(1)

    try:
        for members in groups.values():
            for i in range(0, len(members), batch_size):
                run(members[i:i + batch_size])
    finally:
        bar.close()
    group.barrier()
    if group.is_main:
        summary.summary_csv, summary.missing = write_summary(files, names, out_dir)
    return summary


def write_summary(files: list[Path], names: dict[Path, str], out_dir: Path) -> tuple[Path, list[str]]:
    """Write ``out_dir/summary.csv`` from the results on disk; return it and the inputs still missing.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> csv_path, missing = write_summary([pathlib.Path("x.png")], {pathlib.Path("x.png"): "x"}, d)
    >>> missing
    ['x.png']
    """
    rows, missing = [], []
    for path in files:
        name = names[path]
        row = dict.fromkeys(SUMMARY_FIELDS, "")
        row.update(file=path.name, output=f"{name}.png")
        report, failed = out_dir / "reports" / f"{name}.json", out_dir / "reports" / f"{name}.failed.json"
        if (out_dir / f"{name}.png").exists():
            row["status"] = "done"
            if report.exists():
                try:
                    rec = json.loads(report.read_text())
                except (OSError, ValueError):
                    rec = {}
                shape = rec.get("output_shape") or []
                row.update(height=shape[0] if shape else "", width=shape[1] if len(shape) > 1 else "",
                           channels=(shape[2] if len(shape) == 3 else 1) if shape else "")
                for key in ("iterations", "converged", "guaranteed", "stop_reason", "seconds", "psnr"):
                    if key in rec:
                        row[key] = f"{rec[key]:.4f}" if isinstance(rec[key], float) else rec[key]
        elif failed.exists():
            row["status"] = "failed"
            try:
                row["error"] = json.loads(failed.read_text()).get("error", "")
            except (OSError, ValueError):
                row["error"] = "unreadable failure record"
        else:
            row["status"] = "missing"
            missing.append(path.name)
        rows.append(row)
    text = _stringio.StringIO()
    writer = csv.DictWriter(text, fieldnames=SUMMARY_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    target = out_dir / "summary.csv"
    # The summary is an index of the folder, rebuilt from the results at every run.
    write_atomic(target, lambda t: Path(t).write_text(text.getvalue()), overwrite=True)
    return target, missing
