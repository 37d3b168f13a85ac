"""Writing files safely: atomically, and never over an existing file unless asked.

Lives in the lowest package so that ``denoisers`` (weights, checkpoints) and ``pnp_stable``
(outputs, figures) share one implementation.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

__all__ = ["check_output_path", "write_atomic"]


def check_output_path(path: str | os.PathLike, overwrite: bool) -> Path:
    """Refuse to replace an existing file unless ``overwrite``; the folder must exist.

    Examples
    --------
    >>> import tempfile, os
    >>> check_output_path(os.path.join(tempfile.mkdtemp(), "out.png"), overwrite=False).name
    'out.png'
    """
    p = Path(path)
    if p.exists() and not overwrite:
        raise FileExistsError(f"{p} exists; pass --overwrite (overwrite=True) to replace it")
    if not p.parent.exists():
        raise FileNotFoundError(f"output folder {p.parent} does not exist")
    return p


def write_atomic(path: str | os.PathLike, write: Callable[[str], None], *, overwrite: bool = False) -> Path:
    """Write a file through ``write(tmp_path)`` then rename it into place.

    A crash or an exception leaves no half-written file at ``path``.  The temporary file
    keeps the target's suffix, since writers such as matplotlib pick the format from it.

    Examples
    --------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "a.txt")
    >>> _ = write_atomic(p, lambda t: open(t, "w").write("hi"))
    >>> open(p).read()
    'hi'
    """
    p = check_output_path(path, overwrite)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.stem}-", suffix=p.suffix, dir=p.parent)
    os.close(fd)
    try:
        write(tmp)
        # mkstemp creates files readable by the owner only; give the result the permissions an
        # ordinary open() would (0o666 less the umask).
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, p)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return p
