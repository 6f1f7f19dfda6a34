"""One process per run directory: a lock file held for the whole job.

The lock (`.moleblend-run.lock`) is created with `O_EXCL`, so of two processes starting a job in one directory
exactly one gets it; it holds the owner's pid and host, so that a lock left by a killed process on this host is
recognised (its pid is gone) and taken over, with a log line. A lock of another host cannot be checked: it is
reported with its owner, and removing it is left to the user.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import Self

logger = logging.getLogger(__name__)
LOCK_FILE = ".moleblend-run.lock"


class RunLockedError(FileExistsError):
    """Another process holds the run directory's lock."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    return True


def _holder(path: Path) -> dict | None:
    try:
        holder = json.loads(path.read_text())
    except (OSError, ValueError):  # being written right now, or damaged: treated as held
        return None
    return holder if isinstance(holder, dict) and isinstance(holder.get("pid"), int) else None


class RunLock:
    """The lock of one run directory; `release()` (or leaving the `with` block) gives it up."""

    def __init__(self, path: Path, owner: dict):
        self.path, self.owner = path, owner

    @classmethod
    def acquire(cls, directory: str | Path) -> RunLock:
        """Take the lock of `directory` (which must exist) or raise `RunLockedError` naming its holder."""
        path = Path(directory) / LOCK_FILE
        owner = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        for _ in range(3):
            try:
                descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = _holder(path)
                if (
                    holder is not None
                    and holder.get("host") == owner["host"]
                    and holder["pid"] != owner["pid"]
                    and not _alive(holder["pid"])
                ):
                    logger.warning(
                        "%s: taking over the lock of process %d, which is gone (it did not end cleanly)",
                        directory,
                        holder["pid"],
                    )
                    path.unlink(missing_ok=True)
                    continue
                raise RunLockedError(_refusal(directory, path, holder)) from None
            with os.fdopen(descriptor, "w") as handle:
                handle.write(json.dumps(owner))
            return cls(path, owner)
        raise RunLockedError(_refusal(directory, path, _holder(path)))

    def release(self) -> None:
        """Remove the lock if it is still ours (a lock taken over from us is left to its new owner)."""
        holder = _holder(self.path)
        if holder is not None and holder.get("pid") == self.owner["pid"] and holder.get("host") == self.owner["host"]:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _refusal(directory: str | Path, path: Path, holder: dict | None) -> str:
    if holder is None:
        return (
            f"{directory} is in use by another moleblend job (lock {path}); if no job uses it any more, "
            "remove that file"
        )
    where = "this host" if holder.get("host") == socket.gethostname() else f"host {holder.get('host')}"
    return (
        f"{directory} is in use by another moleblend job (process {holder['pid']} on {where}, since "
        f"{holder.get('since')}); wait for it to end or choose another --output-dir (if that process is gone, "
        f"remove {path})"
    )
