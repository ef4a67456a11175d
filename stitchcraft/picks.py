"""Pinned takes (`stitch pick`) and reading a finished render's manifest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import InputError
from .load import LoadedStoryboard


def _picks_file(storyboard: Path) -> Path:
    return storyboard.parent / ".stitchcraft" / "picks.json"


def load_picks(storyboard: Path) -> dict[str, str | int]:
    """Shot id -> pinned take for this storyboard (empty when none)."""
    try:
        data = json.loads(_picks_file(storyboard).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    picks = data.get(storyboard.name, {})
    return {str(k): v for k, v in picks.items()} if isinstance(picks, dict) else {}


def save_pick(storyboard: Path, shot: str, take: str | None) -> None:
    """Pins (or with None unpins) a shot's take; atomic."""
    from .media import atomic_output

    path = _picks_file(storyboard)
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        data = {}
    picks = data.setdefault(storyboard.name, {})
    if take is None:
        picks.pop(shot, None)
    else:
        picks[shot] = int(take) if take.isdigit() else take
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True))


def read_manifest(loaded: LoadedStoryboard, variant: str | None = None) -> dict[str, Any]:
    """The manifest of the storyboard's last render, or one variant's part of it.

    Raises:
        InputError: never rendered, or no such variant in the render.
    """
    output = loaded.resolve(loaded.storyboard.output.path)
    path = output.parent / "manifest.json"
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"no render found ({path} is missing); run `stitch render "
                         f"{loaded.path.name}` first") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path} is not valid JSON ({exc})") from None
    if variant is None:
        return manifest
    for entry in manifest.get("variants", []):
        if entry.get("variant") == variant:
            return entry
    raise InputError(f"the last render has no variant '{variant}'")
