"""Imported first by the extraction fork server (`_WorkerPool` preloads it): ties the fork server's
life to the process that started it, so killing that process (SIGKILL included) takes the fork server
down, and with it the workers forked from it (each worker asks for the same, `_init_worker`).

Only the fork server acts on it: the starting process names itself in DFPANEL_EXTRACT_PARENT, and
this module does something only in a direct child of that process.
"""

from __future__ import annotations

import os
import signal

PARENT_ENV = "DFPANEL_EXTRACT_PARENT"
PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGKILL) -> bool:
    """Linux: have the kernel send `sig` to this process when its parent exits (prctl
    PR_SET_PDEATHSIG). False where that is not available (other systems)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    return True


def _guard() -> None:
    parent = os.environ.get(PARENT_ENV)
    if parent and parent == str(os.getppid()):
        die_with_parent()
        if os.getppid() != int(parent):  # the parent died before prctl took effect
            os._exit(1)


_guard()
