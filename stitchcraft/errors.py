"""The exceptions stitchcraft raises, all in one tree.

    StitchError                      anything stitchcraft raises on purpose
    ├── InputError                   the user must fix something (CLI exit code 2)
    │   ├── StoryboardError          a storyboard is malformed; carries one Issue per problem
    │   ├── MediaError               a media file is unreadable, truncated or unsupported
    │   └── ConfigError              an option, engine name or path is wrong
    └── RenderError                  a render could not finish (CLI exit code 1)
        ├── FFmpegError              ffmpeg exited non-zero or wrote something unexpected
        ├── EngineError              an engine failed (out of memory, missing weights, ...)
        │   └── EngineUnavailable    an engine cannot run on this machine, and why
        ├── StorageError             a file or folder cannot be written or read (full, read-only, ...)
        └── VerificationError        an output failed its checks and was not published

The library raises these and never prints or exits; the CLI maps them to messages and
exit codes in one place (`stitchcraft.cli`).
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from pathlib import Path


class StitchError(Exception):
    """Base of every error stitchcraft raises on purpose."""


class InputError(StitchError):
    """Bad input the user can fix: exit code 2."""


@dataclass(frozen=True)
class Issue:
    """One problem found in a storyboard, located as precisely as the YAML allows.

    Attributes:
        file: The storyboard file.
        line: 1-based line, or None when the problem has no single place.
        column: 1-based column, or None.
        field: Dotted field path, e.g. ``shots[2].transition.duration``.
        message: What is wrong and what was expected.
    """

    file: Path
    line: int | None
    column: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = str(self.file)
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        field = f" {self.field}:" if self.field else ""
        return f"{where}:{field} {self.message}"


class StoryboardError(InputError):
    """A storyboard failed to load or validate.

    Attributes:
        issues: Every problem found, in file order.
    """

    def __init__(self, issues: list[Issue]):
        self.issues = sorted(issues, key=lambda i: (i.line or 0, i.column or 0, i.field))
        super().__init__("\n".join(str(i) for i in self.issues))


class MediaError(InputError):
    """A media file cannot be used: names the file and the reason."""

    def __init__(self, path: Path | str, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class ConfigError(InputError):
    """A command-line option or configuration value is wrong."""


class RenderError(StitchError):
    """A render could not finish: exit code 1."""


class FFmpegError(RenderError):
    """ffmpeg failed; carries the command's tail of stderr."""

    def __init__(self, message: str, stderr: str = ""):
        self.stderr = stderr
        tail = "\n".join(stderr.strip().splitlines()[-8:])
        super().__init__(f"{message}\n{tail}" if tail else message)


class EngineError(RenderError):
    """An engine failed to produce takes."""


class EngineUnavailable(EngineError):
    """An engine cannot run here; the message says why and how to fix it."""


class ShotFailed(EngineError):
    """Every candidate of a shot failed, each for a reason of its own (a provider's
    refusals, failed jobs); the message names the shot, the engine and the reasons."""

    def __init__(self, message: str, *, shot: str, engine: str):
        super().__init__(message)
        self.shot = shot
        self.engine = engine


class StorageError(RenderError):
    """A file or folder cannot be written or read: names the path and the cause."""

    def __init__(self, path: Path | str, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


_OS_CAUSES = {
    errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted", errno.EISDIR: "is a folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
}


def os_cause(exc: OSError, where: Path | None = None) -> str:
    """Why an OS call failed, in words a user can act on.

    Args:
        where: A folder on the file system written to. A short write reported without
            an errno (numpy's does that) means a full disk when that one is full.
    """
    if exc.errno is None and where is not None:
        import shutil

        try:
            if shutil.disk_usage(where).free < 1 << 20:
                return _OS_CAUSES[errno.ENOSPC]
        except OSError:
            pass
    return _OS_CAUSES.get(exc.errno or 0) or exc.strerror or str(exc)


class VerificationError(RenderError):
    """An output did not match the plan; it was not published."""
