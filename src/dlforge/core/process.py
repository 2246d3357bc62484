"""Process hygiene shared by the commands that start worker processes."""

from __future__ import annotations

import gc
import os
import signal
import sys
from collections.abc import Iterable
from importlib import import_module


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (no orphaned workers)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() == 1:  # the parent was already gone before prctl
        os._exit(1)


def interrupt_on_sigterm() -> None:
    """Treat SIGTERM (docker stop, kubelet, systemd) as Ctrl-C: shut down gracefully."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def preload(modules: Iterable[str]) -> None:
    """Import ``modules`` with the garbage collector paused, then collect once and
    freeze all that is left: for a process's start, before its work.

    CPython's collector goes over every object each time the objects that outlived
    a collection have grown by a quarter: a process importing torch, Lightning and
    MLflow makes many such passes over an ever larger heap
    (``benchmarks/bench_startup.py`` measures what skipping them saves). Here one
    pass at the end frees what the start-up left unreachable, and what is left,
    modules that live as long as the process, is frozen (:func:`gc.freeze`): later
    collections skip it. Collection is as usual afterwards. Only for a process of
    its own (a command, a worker), not a program that calls dlforge: what it holds at
    the time would never be collected.
    """
    gc.disable()
    try:
        for module in modules:
            import_module(module)
    finally:
        gc.collect()
        gc.freeze()
        gc.enable()
