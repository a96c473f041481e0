"""The start method of moreclip's worker processes (DataLoader workers and process pools).

Workers are started by a fork server (spawn where there is none), never by a plain ``fork`` of the
calling process: a process that has already used OpenCV's, OpenMP's or torch's thread pools cannot be
forked safely (the child inherits locks held by threads that do not exist in it, and OpenCV's
``setNumThreads`` then waits forever). Python 3.14 makes the same choice by default on Linux.
"""

from __future__ import annotations

import multiprocessing as mp
from multiprocessing.context import BaseContext

#: modules the fork server imports once, so each worker starts without importing torch again
PRELOAD = ["torch", "numpy", "moreclip.data.dataset"]


def process_context() -> BaseContext:
    """A ``multiprocessing`` context for worker pools: ``forkserver`` (preloading :data:`PRELOAD`), else ``spawn``."""
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
        return ctx
    return mp.get_context("spawn")


def die_with(pid: int) -> None:
    """In a worker: exit at once when process ``pid`` (the one that started the workers) is gone.

    A worker started by the fork server is not a child of its user, so neither ``PR_SET_PDEATHSIG`` nor
    torch's parent check notices a SIGKILLed trainer; and the worker keeps the fork server alive. A daemon
    thread waits on a pidfd of ``pid`` (polls once a second where pidfds are missing) and ends the worker.
    """
    import os
    import threading

    def watch() -> None:
        try:
            import select

            fd = os.pidfd_open(pid)
            select.select([fd], [], [])
        except (AttributeError, OSError):
            import time

            while True:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                except PermissionError:
                    pass
                time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="moreclip-die-with-parent", daemon=True).start()
