"""Running under ``torchrun``: this process's rank, its shard of the work, and a barrier.

``torchrun --nproc_per_node N -m pnp_stable restore ...`` starts N processes with ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK`` in their environment.  :func:`process_group` joins them
through :mod:`torch.distributed` (gloo on CPU, nccl on GPU); without those variables it is a
group of one and nothing is initialised, so the same code runs alone.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass
from typing import Iterator, Sequence, TypeVar

import torch
import torch.distributed as dist

__all__ = ["ProcessGroup", "process_group", "shard", "rank_device", "share_cores"]

T = TypeVar("T")

#: How long a barrier waits for the slowest rank: a shard of a large folder can take hours.
BARRIER_TIMEOUT = datetime.timedelta(hours=48)


@dataclass(frozen=True)
class ProcessGroup:
    """This process's place among the ranks of a job.

    Attributes
    ----------
    rank, world_size, local_rank : int
    distributed : bool
        True when :mod:`torch.distributed` was initialised (``world_size > 1``).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    distributed: bool = False

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes what all ranks share (summaries, checkpoints)."""
        return self.rank == 0

    def barrier(self) -> None:
        """Wait until every rank gets here (nothing to wait for when alone)."""
        if self.distributed:
            dist.barrier()


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer (set by torchrun)") from None


def rank_device(device: str | torch.device | None, group: ProcessGroup) -> torch.device:
    """The device this rank computes on: ``cuda`` becomes ``cuda:LOCAL_RANK`` (one GPU per process).

    Examples
    --------
    >>> rank_device("cuda", ProcessGroup(rank=1, world_size=2, local_rank=1))
    device(type='cuda', index=1)
    >>> rank_device(None, ProcessGroup())
    device(type='cpu')
    >>> rank_device("gpu0", ProcessGroup())
    Traceback (most recent call last):
    ...
    ValueError: device must be a torch device such as 'cpu', 'cuda' or 'cuda:1'; got 'gpu0'
    """
    try:
        dev = torch.device(device if device is not None else "cpu")
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be a torch device such as 'cpu', 'cuda' or 'cuda:1'; got {device!r}") from None
    if dev.type == "cuda" and dev.index is None:
        return torch.device("cuda", group.local_rank)
    return dev


@contextlib.contextmanager
def process_group(device: str | torch.device | None = None) -> Iterator[ProcessGroup]:
    """Join the job's ranks for the duration of a ``with`` block.

    Parameters
    ----------
    device : str or torch.device, optional
        Where this job computes: the backend is nccl for CUDA, gloo otherwise.

    Yields
    ------
    ProcessGroup
        Rank 0 of 1 when not started by torchrun.

    Examples
    --------
    >>> with process_group() as group:
    ...     group.rank, group.world_size
    (0, 1)
    """
    world = _env_int("WORLD_SIZE", 1)
    rank, local = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"RANK={rank} and WORLD_SIZE={world} do not describe a rank of a job")
    if world == 1 or (dist.is_available() and dist.is_initialized()):
        already = world > 1
        yield ProcessGroup(dist.get_rank() if already else 0, dist.get_world_size() if already else 1, local, already)
        return
    cuda = torch.device(device if device is not None else "cpu").type == "cuda"
    if cuda:
        torch.cuda.set_device(local)
    dist.init_process_group("nccl" if cuda else "gloo", timeout=BARRIER_TIMEOUT)
    try:
        yield ProcessGroup(rank, world, local, True)
    finally:
        dist.destroy_process_group()


def shard(items: Sequence[T], group: ProcessGroup) -> list[T]:
    """This rank's share of ``items``: every ``world_size``-th item from its rank on.

    The shares of all ranks are disjoint and together hold every item exactly once, provided
    every rank sees ``items`` in the same order.

    Examples
    --------
    >>> shard(list("abcde"), ProcessGroup(rank=1, world_size=2))
    ['b', 'd']
    """
    return list(items[group.rank::group.world_size])


def share_cores(threads: int = 0) -> int:
    """Set torch's CPU threads: ``threads`` if given, else this machine's cores divided among the
    job's processes on it (``LOCAL_WORLD_SIZE``, set by torchrun; 1 when alone).  Processes that
    each take every core oversubscribe them, several times slower than sharing.

    Returns
    -------
    int
        The threads set.

    Examples
    --------
    >>> share_cores(1)
    1
    """
    if threads < 0:
        raise ValueError(f"threads must be >= 0 (0: share the cores); got {threads}")
    local = max(1, _env_int("LOCAL_WORLD_SIZE", 1))
    n = threads or max(1, (os.cpu_count() or 1) // local)
    torch.set_num_threads(n)
    return n
