"""pnp_stable.retain_freed_memory: a process-wide glibc setting, so it runs in child processes."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from pnp_stable import allocator, retain_freed_memory

_GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

# A child that frees and re-allocates a 64 MB buffer 20 times and counts its minor page faults.
_CHURN = """
import resource, sys, torch
from pnp_stable import retain_freed_memory
applied = retain_freed_memory() if sys.argv[1] == "1" else False
torch.empty(16_000_000).fill_(1.0)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    torch.empty(16_000_000).fill_(1.0)
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _churn(retain: bool) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", _CHURN, "1" if retain else "0"], capture_output=True, text=True, check=True)
    applied, faults = out.stdout.split()
    return applied, int(faults)


@pytest.mark.skipif(not _GLIBC, reason="the setting exists on glibc only (elsewhere it returns False: tested below)")
def test_retained_memory_stops_the_page_faults_of_a_reused_buffer():
    applied, retained = _churn(True)
    _, default = _churn(False)
    # Default glibc unmaps a 64 MB block on free and faults its ~15600 pages in again each time.
    assert applied == "True"
    assert default > 20 * 10_000
    # Retained: at most the one buffer's first touch (measured: 15625 against 312520).
    assert retained < default / 10


def test_retain_freed_memory_is_a_no_op_off_glibc(monkeypatch):
    monkeypatch.setattr(allocator, "_glibc", lambda: None)
    assert retain_freed_memory() is False


@pytest.mark.parametrize("bad", [0, -5, 2**31, 1.5, True, "1GB"])
def test_retain_freed_memory_refuses_a_bad_threshold(bad):
    with pytest.raises(ValueError, match="threshold_bytes must be an int"):
        retain_freed_memory(bad)


def test_the_command_line_retains_freed_memory(monkeypatch, capsys):
    from pnp_stable import cli

    calls = []
    monkeypatch.setattr(cli, "retain_freed_memory", lambda: calls.append(True) or True)
    assert cli.main(["solvers"]) == 0
    assert calls == [True]


# The scoped form: few faults inside the run, glibc's behaviour back (and the memory returned) after it.
_SCOPED = """
import resource, torch
from pnp_stable.allocator import freed_memory_kept

def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        torch.empty(16_000_000).fill_(1.0)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

with freed_memory_kept():
    inside = faults()
print(inside, faults())
"""


@pytest.mark.skipif(not _GLIBC, reason="the setting exists on glibc only")
def test_freed_memory_is_kept_during_a_run_only():
    out = subprocess.run([sys.executable, "-c", _SCOPED], capture_output=True, text=True, check=True)
    inside, after = (int(v) for v in out.stdout.split())
    _, default = _churn(False)
    assert default > 20 * 10_000 and inside < default / 10  # kept: the 64 MB block is reused, not faulted in again
    assert after > inside  # handed back after the run: the block is faulted in again


def test_scoped_setting_leaves_a_process_that_chose_its_own(monkeypatch):
    calls = []
    monkeypatch.setattr(allocator, "_process_chose", True)
    monkeypatch.setattr(allocator, "_set_thresholds", lambda libc, v: calls.append(v))
    with allocator.freed_memory_kept():
        pass
    assert calls == []
