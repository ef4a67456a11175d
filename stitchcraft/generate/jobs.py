"""The job journal: what was submitted to a provider, so a take is never paid for twice.

A hosted take costs money the moment it is submitted. The journal holds one small JSON
file per take id, written atomically (and synced) at each step:

- ``submitting``: the request is about to be sent (provider, model, request summary);
- ``submitted``: the provider answered with its job id;
- ``downloaded``: the finished video is beside the entry (``<take id>.mp4``);
- ``failed``: the provider failed or refused the job, its finished video expired before
  it was downloaded, or it passed the engine's timeout (the reason). A job past its
  timeout that the provider could not cancel is marked ``left_running``: it may still
  finish, and is billed if it does, so the next render asks once whether it has and
  collects its video for free.

A render that starts again finds the entry by take id: a ``submitted`` job is polled
instead of submitted again (a render that gave up polling it on transient errors leaves
it ``submitted`` for that reason), a ``downloaded`` video is used as it is. An entry left at
``submitting`` (the render was killed while the request was in flight) is not
resubmitted silently: the POST may have reached the provider and been billed; the
render says so. A ``failed`` entry stays failed too (a moderation refusal would be
refused again, and paid for again where a provider bills refusals); ``--resubmit``
clears both kinds, so the next render submits them afresh. Once the take is in the
take store its entry is removed.

Keys never reach the journal: it records what was asked, not how.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The journals this process has written to, so an interrupted command can say which
# remote jobs it leaves running.
_OPENED: set[Path] = set()


class JobJournal:
    """Job entries under `root` (the take store's ``jobs`` folder)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._lock = threading.Lock()

    def path(self, take_id: str) -> Path:
        return self.root / f"{take_id}.json"

    def video(self, take_id: str) -> Path:
        return self.root / f"{take_id}.mp4"

    def read(self, take_id: str) -> dict[str, Any]:
        """The entry of a take, empty when there is none (or it is unreadable)."""
        try:
            value = json.loads(self.path(take_id).read_text())
        except (OSError, ValueError):
            return {}
        return value if isinstance(value, dict) else {}

    def update(self, take_id: str, **fields: Any) -> dict[str, Any]:
        """Merges `fields` into a take's entry and writes it durably."""
        with self._lock:
            entry = self.read(take_id)
            entry.update(fields, take=take_id, updated_at=time.time())
            self.root.mkdir(parents=True, exist_ok=True)
            _OPENED.add(self.root)
            tmp = self.path(take_id).with_suffix(".json.tmp")
            with open(tmp, "w") as out:
                json.dump(entry, out, indent=1, sort_keys=True)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path(take_id))
            return entry

    def remove(self, take_id: str) -> None:
        """Drops a take's entry and download (the take is in the store now)."""
        with self._lock:
            for path in (self.path(take_id), self.video(take_id)):
                path.unlink(missing_ok=True)

    def entries(self) -> list[dict[str, Any]]:
        """Every entry, oldest first."""
        if not self.root.is_dir():
            return []
        found = [self.read(p.stem) for p in self.root.glob("*.json")]
        return sorted((e for e in found if e), key=lambda e: e.get("updated_at", 0))

    def in_flight(self) -> list[dict[str, Any]]:
        """Entries whose job may still be running at the provider."""
        return [e for e in self.entries() if e.get("state") in ("submitting", "submitted")]

    def clear_unfinished(self) -> int:
        """Removes entries left at ``submitting`` or ``failed`` (``--resubmit``), so
        their takes are submitted again; returns how many."""
        unfinished = [e["take"] for e in self.entries() if e.get("state") in ("submitting", "failed")]
        for take_id in unfinished:
            self.remove(take_id)
        return len(unfinished)


@dataclass
class JobBook:
    """One segment's view of the journal: entries by candidate seed.

    Attributes:
        journal: The render's journal.
        takes: Seed -> take id.
        engine: The engine making them, recorded in each entry.
    """

    journal: JobJournal
    takes: Mapping[int, str]
    engine: str

    def entry(self, seed: int) -> dict[str, Any]:
        return self.journal.read(self.takes[seed])

    def video(self, seed: int) -> Path:
        return self.journal.video(self.takes[seed])

    def submitting(self, seed: int, *, provider: str, model: str, request: dict[str, Any]) -> None:
        self.journal.update(self.takes[seed], state="submitting", engine=self.engine,
                            provider=provider, model=model, request=request, job=None,
                            reason=None)

    def submitted(self, seed: int, job_id: str) -> None:
        self.journal.update(self.takes[seed], state="submitted", job=job_id, submitted_at=time.time())

    def downloaded(self, seed: int) -> None:
        self.journal.update(self.takes[seed], state="downloaded")

    def failed(self, seed: int, reason: str, *, left_running: bool = False) -> None:
        """Marks a take's job failed; `left_running`: it passed its timeout and could not
        be cancelled, so it may still finish (and be billed)."""
        self.journal.update(self.takes[seed], state="failed", reason=reason,
                            left_running=left_running)

    def forget(self, seed: int) -> None:
        """Drops an entry whose submission surely never reached the provider."""
        self.journal.remove(self.takes[seed])


def left_running() -> list[dict[str, Any]]:
    """Remote jobs this process submitted (or was submitting) and has not collected:
    an interrupted render leaves them running at the provider, to be collected by the
    next render of the same storyboard."""
    return [entry for root in sorted(_OPENED) for entry in JobJournal(root).in_flight()]
