"""Housekeeping: telling our own leftovers from a live render's work, and clearing them.

A render killed outright (SIGKILL, power loss) cannot tidy up after itself: it leaves
``*.partial.*`` files beside its outputs, scratch folders in the take store, audio
scratch in the work folder, and ffmpeg children that run on. To let a later start tell
those from the files of a render still running beside it, every temporary name carries
its owner's tag, ``stitchtmp-<machine>-<pid>-<start>``, and every ffmpeg child is
started with ``STITCHCRAFT_OWNER=<machine>:<pid>:<start>`` in its environment:

- ``pid`` and ``start`` (its start time) name the process, so that a reused pid is
  not mistaken for the owner;
- ``machine`` names where that pid means something: a hash of the host name, the pid
  namespace and the boot. A cache shared by several hosts or containers holds names
  from other machines, whose owners cannot be seen from here.

An owner on this machine is alive when a process with its pid exists and started at
its start time. Whatever belongs to a dead owner is garbage; whatever belongs to a live
one, to another machine, or carries no tag at all is not ours to judge and is left
alone (`remove_stale` can age out the last two in folders that hold only scratch).

Process start times come from ``/proc`` (Linux). Elsewhere the start reads 0, an owner
is alive while its pid is, and orphaned children are not looked for.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import signal
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

__all__ = ["OWNER_ENV", "Owner", "Swept", "kill_orphans", "owner_env", "owner_of",
           "owner_tag", "remove_stale", "sweep"]

OWNER_ENV = "STITCHCRAFT_OWNER"
_TAG = re.compile(r"(?:^|\.)stitchtmp-(?P<machine>[0-9a-f]{8})-(?P<pid>\d+)-(?P<start>\d+)"
                  r"(?=\.|$)")
_PROC = Path("/proc")


class Owner(NamedTuple):
    """The process a temporary name or a child belongs to."""

    machine: str
    pid: int
    start: int


def _start_time(pid: int) -> int | None:
    """When process `pid` started (clock ticks after boot); 0 where /proc is missing,
    None when there is no such process."""
    if not _PROC.is_dir():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return 0
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        return 0
    # The command name (field 2) may hold spaces and parentheses; start time is field 22.
    fields = stat[stat.rfind(")") + 2:].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return 0


def _machine() -> str:
    """Where pids mean the same: host, pid namespace and boot, hashed."""
    parts = [socket.gethostname()]
    with contextlib.suppress(OSError):
        parts.append(os.readlink("/proc/self/ns/pid"))
    with contextlib.suppress(OSError):
        parts.append(Path("/proc/sys/kernel/random/boot_id").read_text().strip())
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:8]


def _own() -> Owner:
    pid = os.getpid()
    if not _OWN or _OWN[0].pid != pid:  # computed again after a fork
        _OWN[:] = [Owner(_machine(), pid, _start_time(pid) or 0)]
    return _OWN[0]


_OWN: list[Owner] = []


def owner_tag() -> str:
    """This process's tag, to embed between dots in every temporary name it makes."""
    own = _own()
    return f"stitchtmp-{own.machine}-{own.pid}-{own.start}"


def owner_env() -> dict[str, str]:
    """The environment for a child process: ours, with the owner variable set to us."""
    own = _own()
    return {**os.environ, OWNER_ENV: f"{own.machine}:{own.pid}:{own.start}"}


def owner_of(name: str) -> Owner | None:
    """The owner named by a temporary name's tag; None for a name without one."""
    match = _TAG.search(name)
    return Owner(match["machine"], int(match["pid"]), int(match["start"])) if match else None


def _alive(owner: Owner) -> bool | None:
    """Whether an owner still runs (a reused pid does not count); None when it is on
    another machine and cannot be seen from here."""
    if owner.machine != _own().machine:
        return None
    now = _start_time(owner.pid)
    if now is None:
        return False
    return owner.start == 0 or now == 0 or now == owner.start


@dataclass
class Swept:
    """What a sweep cleared.

    Attributes:
        removed: Files and folders of dead owners that were deleted.
        killed: Process ids of orphaned ffmpeg children that were ended.
    """

    removed: list[Path] = field(default_factory=list)
    killed: list[int] = field(default_factory=list)


def remove_stale(folder: Path, *, unknown_older_than: float | None = None) -> list[Path]:
    """Deletes the entries directly in `folder` whose tag names a dead owner.

    Args:
        folder: A folder stitchcraft writes temporary names into (missing is fine).
        unknown_older_than: Also delete entries whose owner cannot be judged (no tag,
            left by an older stitchcraft; or another machine's) when their last change
            is older than this many seconds. Only for folders that hold nothing but
            scratch.

    Returns:
        What was deleted.
    """
    removed: list[Path] = []
    try:
        entries = list(Path(folder).iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return removed
    now = time.time()
    for entry in entries:
        owner = owner_of(entry.name)
        alive = _alive(owner) if owner is not None else None
        if alive is None:
            if unknown_older_than is None:
                continue
            try:
                alive = now - entry.lstat().st_mtime <= unknown_older_than
            except FileNotFoundError:
                continue
        if not alive and _remove(entry):
            removed.append(entry)
    return removed


def _remove(entry: Path) -> bool:
    try:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    except FileNotFoundError:
        return False  # another process cleared it first
    return True


def kill_orphans() -> list[int]:
    """Ends the ffmpeg processes started by a stitchcraft process that no longer runs.

    Reads ``/proc/*/environ`` (only this user's processes are readable) for
    ``STITCHCRAFT_OWNER``. A process without it, not named ffmpeg, or whose owner is
    alive or on another machine (another container's pid namespace) is never touched.
    Does nothing where there is no /proc.

    Returns:
        The process ids signalled.
    """
    if not _PROC.is_dir():
        return []
    own = os.getpid()
    prefix = f"{OWNER_ENV}=".encode()
    killed: list[int] = []
    for entry in _PROC.iterdir():
        if not entry.name.isdigit() or int(entry.name) == own:
            continue
        pid = int(entry.name)
        started = _start_time(pid)
        try:
            environ = (entry / "environ").read_bytes()
            command = (entry / "comm").read_text().strip()
        except OSError:
            continue  # gone, or not ours to read
        value = next((v[len(prefix):] for v in environ.split(b"\0") if v.startswith(prefix)), None)
        if value is None or not command.startswith("ffmpeg"):
            continue
        try:
            machine, owner_pid, owner_start = value.decode().split(":")
            owner = Owner(machine, int(owner_pid), int(owner_start))
        except ValueError:
            continue
        if _alive(owner) is not False:
            continue
        if started is None or _start_time(pid) != started:
            continue  # it ended, and the pid may already be someone else's
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
    return killed


def sweep(folders: Iterable[Path]) -> Swept:
    """Clears what killed renders left: dead owners' temporary files in `folders` (each
    scanned one level deep, never recursively) and their orphaned ffmpeg processes.

    Safe while other renders run: their files and children have a live owner.

    Args:
        folders: Folders stitchcraft writes temporary names into: output folders, the
            assembly work folders (`stitchcraft.assemble.scratch_folders`).
    """
    swept = Swept()
    for folder in dict.fromkeys(Path(f) for f in folders):
        swept.removed += remove_stale(folder)
    swept.killed = kill_orphans()
    return swept
