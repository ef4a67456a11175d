"""Managing a take store: what it holds, what it weighs, and pruning it.

A take's age is the time since a render last used it: every render marks the takes it
offered (`mark_used`, the take folder's modification time), so a take in daily use is
never "older than 30 days", however long ago it was made. What a storyboard uses is
what the manifests of its last renders list (every candidate, chosen or not, and those a
pin set aside, of the main cut and its variants, final and draft), so a re-render finds
all of it again.

Pruning never deletes the take a kept colour grade was made from (a graded take not
encoded yet reads its pictures there; a hosted one was paid for), nor a take whose hosted job is
journaled as possibly still running, nor such a journal entry (``submitting``, ``submitted``, or failed but left running at
the provider), nor a downloaded video not yet stored (the only copy of a paid take).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import InputError

if TYPE_CHECKING:
    from .store import TakeStore
    from .storyboard.load import LoadedStoryboard

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_age(text: str) -> float:
    """Seconds in an age such as ``30d``, ``12h``, ``90m``, ``2w`` or ``45s``.

    Raises:
        InputError: not a number followed by one of s, m, h, d, w.
    """
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if not match:
        raise InputError(f"--older-than {text!r}: expected a number and a unit (s, m, h, d, w), "
                         "such as 30d")
    return float(match[1]) * _UNITS[match[2]]


def mark_used(take_dirs: Iterable[Path]) -> None:
    """Records that a render used these takes now (best effort: a read-only cache is
    still usable, its takes only look older)."""
    for directory in dict.fromkeys(take_dirs):
        with contextlib.suppress(OSError):
            os.utime(directory)


@dataclass(frozen=True)
class TakeEntry:
    """One take as `stitch cache ls` shows it."""

    id: str
    engine: str
    label: str
    frames: int
    size: str
    bytes: int
    used: float  # when a render last used it (epoch seconds)
    path: Path
    needs: str | None = None  # for a colour grade: the take its engine made (paid for, and read)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "engine": self.engine, "label": self.label, "frames": self.frames,
                "size": self.size, "bytes": self.bytes, "used": self.used, "path": str(self.path),
                "grade_of": self.needs}


def list_takes(store: TakeStore) -> list[TakeEntry]:
    """Every take entry, most recently used first (entries are not checked)."""
    entries = []
    for directory in (store.root / "takes").glob("*/*"):
        try:
            meta = json.loads((directory / "meta.json").read_text())
            used = directory.lstat().st_mtime
        except (OSError, ValueError):
            continue  # unfinished or damaged: `stitch cache --check` deals with those
        graded = meta.get("graded")
        needs = graded.get("made") if isinstance(graded, dict) else None
        entries.append(TakeEntry(directory.name, str(meta.get("engine", "?")), str(meta.get("label", "")),
                                 int(meta.get("frames", 0)), f"{meta.get('width')}x{meta.get('height')}",
                                 _bytes(directory), used, directory, needs if isinstance(needs, str) else None))
    return sorted(entries, key=lambda e: (-e.used, e.id))


def disk_usage(store: TakeStore) -> dict[str, int]:
    """Bytes by part of the store, and of the assembly's work folder beside it."""
    root = store.root
    return {"takes": _bytes(root / "takes"), "pairs": _bytes(root / "pairs"),
            "jobs": _bytes(root / "jobs"), "damaged": _bytes(store.damaged),
            "scratch": _bytes(store.tmp), "assembly": _bytes(root.parent / "work")}


def used_by(loaded: LoadedStoryboard) -> set[str]:
    """The take ids the manifests of a storyboard's last renders list (final and draft)."""
    from .outputs import cut_paths, manifest_path

    ids: set[str] = set()
    for quality in ("final", "draft"):
        main = cut_paths(loaded, quality, variants=[])[0].path
        try:
            manifest = json.loads(manifest_path(main).read_text())
        except (OSError, ValueError):
            continue
        _collect_ids(manifest, ids)
    return ids


def _collect_ids(node: Any, ids: set[str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("id", "chosen") and isinstance(value, str):
                ids.add(value)
            elif key == "set_aside" and isinstance(value, list):  # made, left out by a pin
                ids.update(v for v in value if isinstance(v, str))
            else:
                _collect_ids(value, ids)
    elif isinstance(node, list):
        for value in node:
            _collect_ids(value, ids)


@dataclass
class Pruned:
    """What a prune deleted (or, in a dry run, would delete).

    Attributes:
        takes: Take ids deleted.
        jobs: Journal entries of finished hosted jobs deleted (take ids).
        bytes: Bytes freed.
        kept_running: Take ids kept because their hosted job may still be running.
    """

    takes: list[str] = field(default_factory=list)
    jobs: list[str] = field(default_factory=list)
    bytes: int = 0
    kept_running: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"takes": self.takes, "jobs": self.jobs, "bytes": self.bytes,
                "kept_running": self.kept_running}


def _may_still_run(entry: dict[str, Any]) -> bool:
    """Whether a journaled job may still run (and be billed), or holds a paid video."""
    state = entry.get("state")
    return state in ("submitting", "submitted", "downloaded") or bool(entry.get("left_running"))


def prune(store: TakeStore, *, older_than: float | None = None, keep: set[str] | None = None,
          dry_run: bool = False, now: float | None = None) -> Pruned:
    """Deletes takes unused for `older_than` seconds and/or not in `keep`.

    A take goes when every given rule says so: with both, a take is deleted when no
    listed storyboard uses it and no render used it for `older_than`.

    Args:
        older_than: Seconds since a render last used a take (None: any age).
        keep: Take ids that must stay, those the listed storyboards use (None: no list).
        dry_run: Only say what would go.

    Raises:
        InputError: neither rule given.
    """
    if older_than is None and keep is None:
        raise InputError("say what to prune: --older-than AGE and/or --unused STORYBOARD...")
    from .generate.jobs import JobJournal

    now = time.time() if now is None else now
    journal = JobJournal(store.root / "jobs")
    entries = {e["take"]: e for e in journal.entries() if isinstance(e.get("take"), str)}
    pruned = Pruned()

    def goes(take_id: str, changed: float) -> bool:
        return (keep is None or take_id not in keep) and (older_than is None or now - changed > older_than)

    takes = list_takes(store)
    needed = {t.needs for t in takes if t.needs and not goes(t.id, t.used)}
    for take in takes:
        if not goes(take.id, take.used) or take.id in needed:
            continue
        if take.id in entries and _may_still_run(entries[take.id]):
            pruned.kept_running.append(take.id)
            continue
        pruned.takes.append(take.id)
        pruned.bytes += take.bytes
        if not dry_run:
            shutil.rmtree(take.path, ignore_errors=True)
    for take_id, entry in entries.items():
        if _may_still_run(entry):
            if goes(take_id, float(entry.get("updated_at", now))) and take_id not in pruned.kept_running:
                pruned.kept_running.append(take_id)
            continue
        if goes(take_id, float(entry.get("updated_at", now))):
            pruned.jobs.append(take_id)
            pruned.bytes += sum(_bytes(p) for p in (journal.path(take_id), journal.video(take_id)))
            if not dry_run:
                journal.remove(take_id)
    return pruned


def stores_of(storyboards: Sequence[LoadedStoryboard]) -> list[Path]:
    """The default take stores of storyboards, each once."""
    from .generate import default_cache

    return list(dict.fromkeys(default_cache(s) for s in storyboards))


def _bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(folder, name)).st_size
    return total
