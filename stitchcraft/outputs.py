"""Where a render writes, and the checks that keep it from destroying anything.

Every file a render publishes (the cuts of the main output and of each variant, and
beside the main cut its manifest and report) is named here, in one place. The checks
run before anything is generated:

- no two cuts of one storyboard share a path, and no cut is one of the storyboard's own
  inputs (`check_outputs`, part of validation);
- an output that another storyboard rendered is not silently replaced
  (`claim_outputs`);
- every output folder and the cache can really be written (`check_writable`), so a
  read-only or full disk fails in the first second, not after an hour of generation.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import InputError, Issue, StorageError, os_cause

if TYPE_CHECKING:
    from .storyboard import Storyboard, Variant
    from .storyboard.load import LoadedStoryboard
    from .yamlsource import FieldPath

MANIFEST_SUFFIX = ".manifest.json"
REPORT_SUFFIX = ".report.html"


@dataclass(frozen=True)
class CutPath:
    """One cut a render writes.

    Attributes:
        variant: The variant's name, None for the main cut.
        path: The resolved file.
        field: Where in the storyboard the path comes from (for messages).
    """

    variant: str | None
    path: Path
    field: FieldPath


def variant_output(sb: Storyboard, variant: Variant | None, base: Path, quality: str) -> dict[str, Any]:
    """The output settings a cut is assembled with, and its resolved path (``resolved``).

    A variant without its own path writes ``<main stem>-<variant><suffix>`` beside the
    main cut; a draft adds ``.draft`` before the suffix. ``~`` means the home folder.
    """
    from .storyboard.load import resolve_path

    settings = sb.output.model_dump()
    if variant is not None:
        settings.update({k: v for k, v in variant.output.model_dump().items() if v is not None})
        if variant.output.path is None:
            main = Path(sb.output.path)
            settings["path"] = str(main.with_name(f"{main.stem}-{variant.name}{main.suffix}"))
    path = resolve_path(base, settings["path"])
    if quality == "draft":
        path = path.with_name(f"{path.stem}.draft{path.suffix}")
    settings["resolved"] = Path(os.path.normpath(path))
    return settings


def cut_paths(loaded: LoadedStoryboard, quality: str, variants: list[str] | None = None) -> list[CutPath]:
    """The cuts a render of `loaded` writes: the main one first, then each variant.

    Args:
        variants: Only these variants (None: all of them).
    """
    sb = loaded.storyboard
    paths = [CutPath(None, variant_output(sb, None, loaded.base_dir, quality)["resolved"],
                     ("output", "path"))]
    for index, variant in enumerate(sb.variants):
        if variants is not None and variant.name not in variants:
            continue
        field: FieldPath = (("variants", index, "output", "path") if variant.output.path
                            else ("variants", index, "name"))
        paths.append(CutPath(variant.name, variant_output(sb, variant, loaded.base_dir, quality)["resolved"],
                             field))
    return paths


def manifest_path(cut: Path) -> Path:
    """The manifest beside a main cut: ``teaser.mp4`` -> ``teaser.manifest.json``."""
    return cut.with_name(cut.stem + MANIFEST_SUFFIX)


def report_path(cut: Path) -> Path:
    """The report beside a main cut: ``teaser.mp4`` -> ``teaser.report.html``."""
    return cut.with_name(cut.stem + REPORT_SUFFIX)


def input_files(loaded: LoadedStoryboard) -> dict[Path, FieldPath]:
    """Every file the storyboard reads, resolved, with the field that names it."""
    sb = loaded.storyboard
    found: dict[Path, FieldPath] = {}

    def add(value: str | None, path: FieldPath) -> None:
        if value:
            found.setdefault(_same(loaded.resolve(value)), path)

    def shot_files(prefix: FieldPath, shot: Any) -> None:
        add(shot.image_file, prefix + ("image",))
        add(getattr(shot, "reference", None), prefix + ("reference",))
        for key in ("text", "title"):
            styled = getattr(shot, key, None)
            if styled is not None and not isinstance(styled, str):
                add(styled.font, prefix + (key, "font"))

    for index, shot in enumerate(sb.shots):
        shot_files(("shots", index), shot)
        for clip in loaded.sources.get(shot.id, []):
            found.setdefault(_same(clip), ("shots", index, "source"))
    for vindex, variant in enumerate(sb.variants):
        for shot_id, override in variant.shots.items():
            shot_files(("variants", vindex, "shots", shot_id), override)
            for clip in loaded.sources.get(f"{variant.name}/{shot_id}", []):
                found.setdefault(_same(clip), ("variants", vindex, "shots", shot_id, "source"))
        if variant.audio is not None:
            add(variant.audio.music, ("variants", vindex, "audio", "music"))
            add(variant.audio.voiceover, ("variants", vindex, "audio", "voiceover"))
    add(sb.audio.music, ("audio", "music"))
    add(sb.audio.voiceover, ("audio", "voiceover"))
    add(sb.subtitles, ("subtitles",))
    add(sb.logo, ("logo",))
    return found


def check_outputs(loaded: LoadedStoryboard) -> list[Issue]:
    """Output paths that would destroy a file: two cuts on one path, a cut on an input,
    a cut on a folder, or a cut where the manifest or report would go.
    """
    at = loaded.located.issue
    issues: list[Issue] = []
    inputs = input_files(loaded)
    for quality in ("final", "draft"):
        taken: dict[Path, CutPath] = {}
        for cut in cut_paths(loaded, quality):
            path = _same(cut.path)
            name = f"variant '{cut.variant}'" if cut.variant else "the main cut"
            label = f"{name}{' (draft)' if quality == 'draft' else ''}"
            if path in taken:
                other = taken[path]
                other_name = f"variant '{other.variant}'" if other.variant else "the main cut"
                issues.append(at(cut.field, f"{label} would be written to {cut.path}, "
                                            f"where {other_name} goes; give it its own output.path"))
                continue
            taken[path] = cut
            if path in inputs and quality == "final":
                from .yamlsource import format_path

                issues.append(at(cut.field, f"{label} would overwrite {cut.path}, which "
                                            f"{format_path(inputs[path])} reads; write the cut elsewhere"))
            elif cut.path.is_dir():
                issues.append(at(cut.field, f"{cut.path} is a folder; output.path names the video file"))
        main = cut_paths(loaded, quality, variants=[])[0].path
        for extra in (manifest_path(main), report_path(main)):
            if _same(extra) in taken:
                issues.append(at(("output", "path"), f"{extra} is where the render's "
                                                     f"{'manifest' if extra.suffix == '.json' else 'report'} "
                                                     "goes; it cannot be a cut"))
    return issues


def published_by_renders(folder: Path) -> set[Path]:
    """Cuts that a stitchcraft manifest in `folder` lists: earlier renders' own outputs,
    which a glob or folder source must never offer back as footage."""
    found: set[Path] = set()
    try:
        manifests = sorted(folder.glob(f"*{MANIFEST_SUFFIX}"))
    except OSError:
        return found
    for manifest in manifests:
        data = _read_manifest(manifest)
        if data is None:
            continue
        paths = [data.get("output")] + [v.get("output") for v in data.get("variants", [])
                                        if isinstance(v, dict)]
        found.update(_same(Path(p)) for p in paths if isinstance(p, str))
    return found


def claim_outputs(loaded: LoadedStoryboard, cuts: list[CutPath]) -> None:
    """Refuses to replace a cut, manifest or report that another storyboard rendered.

    Raises:
        InputError: an output belongs to another storyboard that still exists.
    """
    me = _same(loaded.path)
    main = cuts[0].path
    manifests = {manifest_path(main)}
    manifests.update(p for cut in cuts for p in cut.path.parent.glob(f"*{MANIFEST_SUFFIX}")
                     if cut.path.parent.is_dir())
    mine = {_same(c.path) for c in cuts} | {_same(manifest_path(main)), _same(report_path(main))}
    for manifest in sorted(manifests):
        data = _read_manifest(manifest)
        if data is None or not isinstance(data.get("storyboard"), str):
            continue
        owner = _same(Path(data["storyboard"]))
        if owner == me or not owner.is_file():
            continue
        theirs = {_same(Path(p)) for p in [data.get("output")] + [
            v.get("output") for v in data.get("variants", []) if isinstance(v, dict)] if isinstance(p, str)}
        stem = manifest.name.removesuffix(MANIFEST_SUFFIX)
        theirs |= {_same(manifest), _same(manifest.with_name(stem + REPORT_SUFFIX))}
        clash = sorted(mine & theirs)
        if clash:
            raise InputError(f"{clash[0]} was rendered from {owner}, another storyboard; "
                             f"give {loaded.path.name} its own output.path (or delete {clash[0]})")


def check_writable(cuts: list[CutPath], cache: Path) -> None:
    """Makes sure every output folder and the cache folder can be written, before any
    work is done: creates them, and writes and removes one small file in each.

    Raises:
        StorageError: a folder cannot be made or written, or a path is in the way.
    """
    for cut in cuts:
        if cut.path.is_dir():
            raise StorageError(cut.path, "is a folder, so the cut cannot be written there")
    folders = dict.fromkeys([c.path.parent for c in cuts] + [cache])
    for folder in folders:
        _probe_folder(folder)


def _probe_folder(folder: Path) -> None:
    if folder.exists() and not folder.is_dir():
        raise StorageError(folder, "is a file, not a folder")
    probe = folder / f".stitchcraft-write-test.{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(probe, "wb") as handle:
            handle.write(b"\0" * 4096)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        where = folder if exc.filename in (None, str(probe)) else Path(exc.filename)
        raise StorageError(where, f"cannot write: {os_cause(exc)}") from None
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()


def _read_manifest(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "stitchcraft" in data else None


def _same(path: Path) -> Path:
    """A path in the form two spellings of one file share."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        return Path(os.path.abspath(path))
