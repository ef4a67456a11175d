"""Pinned takes (`stitch pick`) and reading a finished render's manifest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import InputError
from .storyboard.load import LoadedStoryboard

if TYPE_CHECKING:
    from .report.manifest import Manifest


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


def read_manifest(loaded: LoadedStoryboard) -> Manifest:
    """The manifest of this storyboard's last render.

    Raises:
        InputError: never rendered, unreadable, or the manifest beside the output belongs
            to another storyboard.
    """
    from .outputs import cut_paths, manifest_path
    from .report.manifest import Manifest

    path = manifest_path(cut_paths(loaded, "final", variants=[])[0].path)
    if not path.exists():
        raise InputError(f"no render found ({path} is missing); run `stitch render "
                         f"{loaded.path.name}` first")
    manifest = Manifest.read(path)
    if Path(manifest.storyboard).resolve() != loaded.path.resolve():
        raise InputError(f"{path} is the render of {manifest.storyboard}, not of "
                         f"{loaded.path}; render this storyboard first")
    return manifest


def check_pick(loaded: LoadedStoryboard, shot: str, take: str) -> str | int:
    """The pin `take` means for `shot`, checked against the last render's candidates
    (or, before any render, against the number of candidates the shot asks for).

    Raises:
        InputError: no such candidate.
    """
    sb = loaded.storyboard
    shot_id, _, part = shot.partition("#")  # "<shot>#keyframe" pins the shot's keyframe
    spec = loaded.shot(shot_id)
    keyframe = loaded.keyframe(shot_id) if part else None
    try:
        record = read_manifest(loaded).shots[shot_id]
        segment = record.keyframe if part else record.segments[0]
        candidates = [c.id for c in segment.candidates] if segment is not None else None
    except (InputError, KeyError, IndexError):
        candidates = None
    if take.isdigit():
        index = int(take)
        count = len(candidates) if candidates is not None else (
            keyframe.candidates if keyframe else spec.candidates or sb.defaults.candidates)
        if index >= count:
            raise InputError(f"shot '{shot}' has takes 0-{count - 1}, so no take {index}"
                             + ("" if candidates is not None else " (no render yet)"))
        return index
    if candidates is None:
        raise InputError(f"no render of {loaded.path.name} yet, so no take ids to pick from; "
                         "pick by number, or render first")
    matches = [c for c in candidates if c.startswith(take)]
    if len(matches) != 1:
        shown = ", ".join(c[:10] for c in candidates)
        raise InputError(f"shot '{shot}': '{take}' {'matches no take' if not matches else 'matches several takes'}"
                         f" (takes: {shown})")
    return take
