"""Who owns a run, container or InferenceService: ``"<pid>@<host>"`` of its tuner.

Lets a later start tell leftovers of a dead tuner (clean them up) from those of a
live one (leave them), without a coordinator.

    >>> owner_dead(owner_id())
    False
"""

from __future__ import annotations

import os
import socket

import psutil


def owner_id() -> str:
    return f"{os.getpid()}@{socket.gethostname()}"


def owner_dead(owner: str | None, unknown_is_dead: bool = False) -> bool:
    """True when the owner ran on this host and its process is gone.

    Owners on other hosts are never judged dead here. ``unknown_is_dead`` decides
    for a missing or malformed owner.
    """
    if not owner or "@" not in owner:
        return unknown_is_dead
    pid, _, host = owner.partition("@")
    if host != socket.gethostname():
        return False
    if not pid.isdigit():
        return unknown_is_dead
    return not psutil.pid_exists(int(pid))
