"""Timelines for editors: the last render's cut as OpenTimelineIO, FCP X XML, FCP 7 XML
(Premiere's route) or a CMX 3600 EDL, with its takes copied beside it.

Stages: read the manifest -> check it against the plan -> collect the cut (`collect_cut`)
-> place its media in ``<timeline>_media/`` (`place_media`) -> build the OTIO timeline
(`build_timeline`, pure) -> shape it for the format -> write, read back, publish.

The timeline model. One video track on the cut's frame grid, starting at frame 0, so a
clip's record-in is its shot's ``start``. A shot's transition is how it begins (as in
the plan): an OTIO `Transition` with ``in_offset`` 0 and ``out_offset`` T sits where the
shot starts, and the shot before it is trimmed T frames short, the frames it shows under
the transition being its handle. A transition never changes a track's length, so the
track lasts the plan's ``sum(frames) - sum(T)`` and every clip's `visible_range` is its
shot's planned frames. The fade in from black is a transition from a zero-length `Gap`,
the ending fade one into a zero-length `Gap` (``in_offset`` E: the last clip keeps its
frames). Captions are markers on their shot's clip, in its source time. Each clip's
takes are media references (`Clip.media_references`): ``take-<n>`` for the shot's
candidate n (as `stitch pick` numbers them), the active key naming the take the cut
shows; scores, seeds and prompts sit under ``metadata["stitchcraft"]``.

The formats carry what they can: FCP 7 XML and the EDL hold the active take only, the
FCP X adapter drops transitions, and the EDL adapter reads neither a fade from nothing
nor a fade into a gap back, so those become CMX's black (``BL``) events.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, InputError

if TYPE_CHECKING:
    from ..store import TakeStore
    from ..storyboard import Text
    from ..storyboard.load import LoadedStoryboard
    from .manifest import CandidateRecord, CutRecord, Manifest, SegmentRecord, ShotRecord

NAMESPACE = "stitchcraft"
INSTALL = "pip install 'stitchcraft[export]'"


@dataclass(frozen=True)
class Format:
    """A timeline format: the OTIO adapter that writes it and the package holding it.

    Attributes:
        urls: How its media are addressed: ``relative`` (to the timeline's folder, so
            the folder can move), ``file`` (absolute file URLs) or ``localhost``
            (``file://localhost/...``, as Premiere writes FCP 7 XML).
    """

    adapter: str
    suffix: str
    package: str
    urls: str


FORMATS = {
    "otio": Format("otio_json", ".otio", "opentimelineio", "relative"),
    "fcpxml": Format("fcpx_xml", ".fcpxml", "otio-fcpx-xml-adapter", "file"),
    "fcp7": Format("fcp_xml", ".xml", "otio-fcp-adapter", "localhost"),
    "edl": Format("cmx_3600", ".edl", "otio-cmx3600-adapter", "relative"),
}


@dataclass(frozen=True)
class TakeMedia:
    """A take as an editor gets it: a file, and where in it the take begins.

    Attributes:
        take: The take's id.
        path: The file (the store's take.mp4, or the footage a file-backed take spans).
        start: Frames into `path` where the take's first frame is (on the cut's grid).
        available: Frames `path` holds.
        prompt: The prompt it was made from, if any.
    """

    take: str
    path: Path
    start: int
    available: int
    prompt: str | None = None


@dataclass(frozen=True)
class Caption:
    """A caption over programme frames ``start .. end``."""

    text: Text
    start: int
    end: int


@dataclass(frozen=True)
class CutShot:
    """A shot of the cut as the timeline places it.

    Attributes:
        transition: The incoming transition's type (``cut`` for none).
        shown: The take the cut shows.
        alternates: Candidate number -> its take, for a one-segment shot (several
            segments' candidates fill only part of the shot: metadata only).
    """

    record: ShotRecord
    id: str
    transition: str
    color: str
    shown: TakeMedia
    alternates: dict[int, TakeMedia]
    captions: tuple[Caption, ...]
    prompt: str | None


@dataclass(frozen=True)
class Cut:
    """What a timeline is built from: the shots, the fades and the cut's facts."""

    title: str
    fps: Fraction
    shots: tuple[CutShot, ...]
    fade_in: int
    fade_in_color: str
    ending: int
    ending_color: str
    total_frames: int
    facts: dict[str, Any]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExportResult:
    """A written timeline: where, what it holds, and what its format could not carry."""

    format: str
    path: Path
    media: Path
    clips: int
    transitions: int
    markers: int
    files: int
    linked: int
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "path": str(self.path), "media": str(self.media)}


def export_timeline(loaded: LoadedStoryboard, fmt: str, *, output: Path | None = None,
                    variant: str | None = None) -> ExportResult:
    """Writes the last render's cut (or a variant's) as a timeline an editor opens.

    Args:
        loaded: The storyboard rendered.
        fmt: A key of `FORMATS`.
        output: The timeline file (default: beside the cut, the format's suffix).
        variant: Export this variant's cut instead of the main one.

    Raises:
        ConfigError: an unknown format, or its package is not installed.
        InputError: no render, a stale one, or takes gone from the take store.
    """
    spec = _format(fmt)
    otio = _require(spec)
    from ..picks import read_manifest
    from ..store import TakeStore

    # 1. The render as its manifest records it.
    manifest = read_manifest(loaded)
    record = manifest.cut(variant)
    # 2. The shots, takes and captions, checked against the plan.
    cut = collect_cut(loaded, manifest, record, TakeStore(Path(manifest.cache)))
    target = output or Path(record.output).with_suffix(spec.suffix)
    folder = target.with_name(f"{target.stem}_media")
    # 3. The takes, beside the timeline.
    placed, linked = place_media(_media_names(cut), folder)
    # 4. The timeline, shaped for the format.
    timeline = build_timeline(cut, _addresses(placed, target.parent, spec.urls))
    notes = [*cut.notes, *_shape(otio, timeline, fmt)]
    transitions = sum(1 for t in timeline.video_tracks()[0] if isinstance(t, otio.schema.Transition))
    markers = sum(len(c.markers) for c in timeline.find_clips())
    # 5. Written (the EDL writer edits what it is given), read back, then published.
    text = otio.adapters.write_to_string(copy.deepcopy(timeline), spec.adapter)
    back = otio.adapters.read_from_string(text, spec.adapter)
    clips = [c for c in back.find_clips() if not _is_black(c)]
    if len(clips) != len(cut.shots):
        raise ConfigError(f"the {spec.adapter} adapter read back {len(clips)} clips of the "
                          f"{len(cut.shots)} written; {target} was not written")
    from ..media import atomic_output

    with atomic_output(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return ExportResult(fmt, target, folder, len(clips), transitions, markers, len(placed),
                        linked, notes)


def _format(fmt: str) -> Format:
    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, not '{fmt}'")
    return FORMATS[fmt]


def _require(spec: Format) -> Any:
    """The `opentimelineio` module, with the adapter `spec` needs.

    Raises:
        ConfigError: either is not installed; says how to install them.
    """
    try:
        import opentimelineio as otio
    except ImportError:
        raise ConfigError(f"exporting timelines needs OpenTimelineIO: {INSTALL}") from None
    try:
        otio.adapters.from_name(spec.adapter)
    except Exception:  # OTIO raises its own NotSupportedError for an adapter it lacks
        raise ConfigError(f"the {spec.adapter} adapter is not installed ({spec.package}): "
                          f"{INSTALL}") from None
    return otio


# --- the cut ---------------------------------------------------------------------------

def collect_cut(loaded: LoadedStoryboard, manifest: Manifest, record: CutRecord,
                store: TakeStore) -> Cut:
    """The cut a manifest records, with each take's file and in-point, its captions and
    transitions.

    Raises:
        InputError: the storyboard changed since the render (its plan no longer matches
            the manifest), or a take is no longer in the take store.
    """
    from ..plan import plan_storyboard
    from ..timeline import parse_fps

    derived = _derived(loaded, record.variant)
    sb = derived.storyboard
    fps = parse_fps(manifest.fps)
    # No memory check: that is the render's, made on the machine that rendered.
    plan = plan_storyboard(derived, quality=manifest.quality, memory_limit=1 << 62)
    planned = {(s.id, s.start, s.frames, s.transition_in) for s in plan.shots}
    recorded = {(k, s.start, s.frames, s.transition_in) for k, s in record.shots.items()}
    if planned != recorded:
        raise InputError(f"{loaded.path} has changed since its last render (its shots no longer "
                         f"match {manifest.output}); render it again, then export")
    shots = []
    notes = []
    for index, shot in enumerate(plan.shots):
        entry = record.shots[shot.id]
        spec = sb.shots[index]
        shown = _shown(store, entry, fps, shot.id)
        alternates = {}
        if len(entry.segments) == 1:
            for number, candidate in enumerate(entry.segments[0].candidates):
                media = _media(store, candidate.id, fps)
                if media is not None:
                    alternates[number] = media
                else:
                    notes.append(f"shot '{shot.id}': take {number} ({candidate.id[:10]}) is no "
                                 "longer in the take store, so it is not offered")
                if candidate.id == entry.chosen and candidate.short_by_frames:
                    notes.append(f"shot '{shot.id}': its footage is {candidate.short_by_frames} "
                                 "frames shorter than the shot (the render held its last frame)")
        transition = spec.transition or sb.defaults.transition
        shots.append(CutShot(
            record=entry, id=shot.id, transition=shot.transition_type if index else "cut",
            color=transition.color, shown=shown, alternates=alternates,
            captions=tuple(_captions(spec.caption, entry, fps)),
            prompt=shown.prompt or derived.prompt(shot.id)))
    first = sb.shots[0].transition or sb.defaults.transition
    return Cut(title=sb.title, fps=fps, shots=tuple(shots), fade_in=plan.shots[0].fade_in,
               fade_in_color=first.color, ending=plan.ending,
               ending_color=sb.ending.color if sb.ending else "black", total_frames=plan.total_frames,
               facts={"storyboard": manifest.storyboard, "output": record.output,
                      "variant": record.variant, "fps": manifest.fps, "quality": manifest.quality},
               notes=tuple(notes))


def _derived(loaded: LoadedStoryboard, variant: str | None) -> LoadedStoryboard:
    """The storyboard a cut was rendered from: a variant's changes applied."""
    if variant is None:
        return loaded
    for spec in loaded.storyboard.variants:
        if spec.name == variant:
            return loaded.for_variant(spec)
    raise InputError(f"{loaded.path} no longer has a variant '{variant}'; render it again")


def _shown(store: TakeStore, entry: ShotRecord, fps: Fraction, shot_id: str) -> TakeMedia:
    """The take a shot shows: a joined take is named by its folder, a file-backed one
    is the chosen candidate whose span is that file."""
    shown = Path(entry.take)
    for take_id in (shown.parent.name, entry.chosen):
        media = _media(store, take_id, fps)
        if media is not None and _same_file(media.path, shown):
            return media
    raise InputError(f"shot '{shot_id}': its take {entry.chosen[:10]} is no longer in the take "
                     f"store {store.root}; render again, then export")


def _media(store: TakeStore, take_id: str, fps: Fraction) -> TakeMedia | None:
    """A stored take's file and in-point, or None when the store no longer has it."""
    from ..media import probe
    from ..timeline import seconds_to_frames

    stored = store.get(take_id)
    if stored is None:
        return None
    span = stored.span
    if span.start is None:  # the store's own file: exactly the take's frames
        start, available = 0, span.frames
    else:
        start = seconds_to_frames(span.start, fps)
        available = seconds_to_frames(probe(span.path).duration, fps)
    request = stored.meta.get("request")
    prompt = request.get("prompt") if isinstance(request, dict) else None
    return TakeMedia(stored.id, span.path, start, available, prompt)


def _same_file(one: Path, other: Path) -> bool:
    try:
        return one.resolve() == other.resolve()
    except OSError:
        return False


def _captions(text: Text | None, entry: ShotRecord, fps: Fraction) -> list[Caption]:
    """A shot's caption on programme frames: from ``start`` seconds into the shot, for
    ``duration`` seconds or to the shot's end, as the assembly draws it (rounded once
    to frames here)."""
    from ..timeline import seconds_to_frames

    if text is None:
        return []
    begin = entry.start + seconds_to_frames(text.start, fps)
    end = entry.start + entry.frames
    if text.duration:
        end = min(end, begin + seconds_to_frames(text.duration, fps))
    return [Caption(text, begin, end)] if end > begin else []


# --- media -----------------------------------------------------------------------------

def _media_names(cut: Cut) -> list[tuple[Path, str]]:
    """Each file the timeline references and the name it gets in the media folder:
    a stored take by its id and shot, footage by its own name."""
    names = []
    for shot in cut.shots:
        for media in (shot.shown, *shot.alternates.values()):
            stored = media.path.name == "take.mp4"
            names.append((media.path, f"{media.take[:8]}_{_safe(shot.id)}.mp4" if stored
                          else _safe(media.path.name)))
    return names


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip(".-") or "take"


def place_media(files: Iterable[tuple[Path, str]], folder: Path) -> tuple[dict[Path, Path], int]:
    """Hard-links (or, across file systems, copies) files into `folder`, each once.

    A file already there with the source's size and modification time is kept; a
    different one of that name is replaced whole (written under a temporary name).

    Args:
        files: (source file, wanted name); a name taken by another source gets a number.

    Returns:
        Source -> its file in `folder`, and how many of them were linked, not copied.
    """
    placed: dict[Path, Path] = {}
    taken: set[str] = set()
    linked = 0
    folder.mkdir(parents=True, exist_ok=True)
    for source, name in files:
        source = source.resolve()
        if source in placed:
            continue
        stem, suffix = os.path.splitext(name)
        number = 1
        while name in taken:
            number += 1
            name = f"{stem}_{number}{suffix}"
        taken.add(name)
        destination = folder / name
        placed[source] = destination
        if _is_copy_of(destination, source):
            linked += destination.stat().st_ino == source.stat().st_ino
            continue
        partial = folder / f".{name}.{os.getpid()}.partial"
        try:
            try:
                os.link(source, partial)
                linked += 1
            except OSError:  # another file system, or links not allowed: copy
                shutil.copy2(source, partial)
            os.replace(partial, destination)
        finally:
            partial.unlink(missing_ok=True)
    return placed, linked


def _is_copy_of(destination: Path, source: Path) -> bool:
    try:
        there, here = destination.stat(), source.stat()
    except FileNotFoundError:
        return False
    return there.st_size == here.st_size and there.st_mtime_ns == here.st_mtime_ns


def _addresses(placed: Mapping[Path, Path], base: Path, style: str) -> dict[Path, str]:
    """Source -> the URL the timeline gives its copy."""
    if style == "relative":
        return {s: Path(os.path.relpath(p, base.resolve())).as_posix() for s, p in placed.items()}
    urls = {s: p.resolve().as_uri() for s, p in placed.items()}
    if style == "localhost":
        urls = {s: "file://localhost" + u[len("file://"):] for s, u in urls.items()}
    return urls


# --- the timeline ----------------------------------------------------------------------

def build_timeline(cut: Cut, urls: Mapping[Path, str]) -> Any:
    """The cut as an OTIO timeline (see the module docstring for the model).

    Args:
        urls: Each take's file (resolved) -> the URL its media reference gets.
    """
    import opentimelineio as otio

    rate = float(cut.fps)

    def frames(count: int) -> Any:
        return otio.opentime.RationalTime(count, rate)

    def span(start: int, count: int) -> Any:
        return otio.opentime.TimeRange(frames(start), frames(count))

    timeline = otio.schema.Timeline(name=cut.title, global_start_time=frames(0),
                                    metadata={NAMESPACE: cut.facts})
    track = otio.schema.Track(name="V1", kind=otio.schema.TrackKind.Video)
    timeline.tracks.append(track)
    if cut.fade_in:
        track.append(otio.schema.Gap(source_range=span(0, 0)))
        track.append(otio.schema.Transition(
            name=f"fade in from {cut.fade_in_color}", transition_type=otio.schema.TransitionTypes.SMPTE_Dissolve,
            in_offset=frames(0), out_offset=frames(cut.fade_in),
            metadata={NAMESPACE: {"type": "fade", "color": cut.fade_in_color}}))
    for index, shot in enumerate(cut.shots):
        entry = shot.record
        if index and entry.transition_in:
            dissolve = shot.transition == "dissolve"
            track.append(otio.schema.Transition(
                name=shot.transition, in_offset=frames(0), out_offset=frames(entry.transition_in),
                transition_type=otio.schema.TransitionTypes.SMPTE_Dissolve if dissolve
                else otio.schema.TransitionTypes.Custom,
                metadata={NAMESPACE: {"type": shot.transition, "color": shot.color}}))
        following = cut.shots[index + 1].record.transition_in if index + 1 < len(cut.shots) else 0
        clip = otio.schema.Clip(name=shot.id, source_range=span(shot.shown.start, entry.frames - following),
                                metadata={NAMESPACE: _shot_facts(shot, urls)})
        references = {f"take-{n}": _reference(otio, media, urls, span) for n, media in shot.alternates.items()}
        active = next((f"take-{n}" for n, m in shot.alternates.items() if m == shot.shown), "DEFAULT_MEDIA")
        references.setdefault(active, _reference(otio, shot.shown, urls, span))
        clip.set_media_references(references, active)
        for caption in shot.captions:
            clip.markers.append(otio.schema.Marker(
                name=caption.text.content, color=otio.schema.MarkerColor.YELLOW,
                marked_range=span(shot.shown.start + caption.start - entry.start, caption.end - caption.start),
                metadata={NAMESPACE: {"caption": caption.text.model_dump(mode="json"),
                                      "start": caption.start, "end": caption.end}}))
        track.append(clip)
    if cut.ending:
        track.append(otio.schema.Transition(
            name=f"fade out to {cut.ending_color}", transition_type=otio.schema.TransitionTypes.SMPTE_Dissolve,
            in_offset=frames(min(cut.ending, cut.shots[-1].record.frames)), out_offset=frames(0),
            metadata={NAMESPACE: {"type": "fade", "color": cut.ending_color}}))
        track.append(otio.schema.Gap(source_range=span(0, 0)))
    return timeline


def _reference(otio: Any, media: TakeMedia, urls: Mapping[Path, str], span: Any) -> Any:
    return otio.schema.ExternalReference(
        target_url=urls[media.path.resolve()], available_range=span(0, media.available),
        metadata={NAMESPACE: {"take": media.take, "in_point": media.start}})


def _shot_facts(shot: CutShot, urls: Mapping[Path, str]) -> dict[str, Any]:
    """What an editor needs to judge and swap a shot's takes."""
    entry = shot.record
    facts: dict[str, Any] = {
        "shot": shot.id, "engine": entry.engine, "kind": entry.kind, "continuity": entry.continuity,
        "start": entry.start, "frames": entry.frames, "transition_in": entry.transition_in,
        "transition": shot.transition, "take": shot.shown.take, "chosen": entry.chosen,
        "prompt": shot.prompt,
        "segments": [_segment_facts(s, shot, urls) for s in entry.segments],
    }
    if entry.keyframe is not None:
        facts["keyframe"] = _segment_facts(entry.keyframe, None, urls)
    return facts


def _segment_facts(segment: SegmentRecord, shot: CutShot | None,
                   urls: Mapping[Path, str]) -> dict[str, Any]:
    alternates = shot.alternates if shot is not None and len(shot.record.segments) == 1 else {}
    return {"index": segment.index, "chosen": segment.chosen,
            "candidates": [_candidate_facts(n, c, segment, alternates, urls)
                           for n, c in enumerate(segment.candidates)],
            "failed": [asdict(f) for f in segment.failed]}


def _candidate_facts(number: int, candidate: CandidateRecord, segment: SegmentRecord,
                     alternates: Mapping[int, TakeMedia], urls: Mapping[Path, str]) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "number": number, "id": candidate.id, "engine": candidate.engine, "seed": candidate.seed,
        "label": candidate.label, "chosen": candidate.id == segment.chosen,
        "score": candidate.score if candidate.scored else None, "components": candidate.components,
        "frames": candidate.frames, "source": candidate.source}
    media = alternates.get(number)
    if media is not None:
        facts.update(media_key=f"take-{number}", file=urls[media.path.resolve()], in_point=media.start,
                     prompt=media.prompt)
    return facts


# --- formats ---------------------------------------------------------------------------

def _shape(otio: Any, timeline: Any, fmt: str) -> list[str]:
    """Shapes `timeline` (in place) for what `fmt`'s adapter writes and reads back, and
    says what the format leaves out."""
    track = timeline.video_tracks()[0]
    if fmt == "edl":
        _for_cmx(otio, track)
        return ["a CMX 3600 EDL holds only the takes shown: alternates, scores and prompts are "
                "in the .otio export"]
    if fmt == "fcp7":
        for index, item in enumerate(track):
            # The adapter calls a transition starting at its cut 'start-black' (a fade
            # from black); within the track it is a plain one that starts at the cut.
            if isinstance(item, otio.schema.Transition) and 0 < index < len(track) - 1 and all(
                    isinstance(track[i], otio.schema.Clip) for i in (index - 1, index + 1)):
                item.metadata["fcp_xml"] = {"alignment": "start"}
        return ["FCP 7 XML holds only the takes shown: alternates, scores and prompts are in the "
                ".otio export"]
    if fmt == "fcpxml":
        joins = sum(1 for t in track if isinstance(t, otio.schema.Transition))
        return [f"the FCP X adapter writes no transitions: the {joins} dissolves and fades are "
                "left out (each dissolve is a cut where it starts)"] if joins else []
    return []


def _for_cmx(otio: Any, track: Any) -> None:
    """CMX 3600 as its adapter reads it back: a fade in dissolves from a zero-length
    black event, a fade out is a black (``BL``) event at the end, and every source
    file gets a reel name of its own (at most 8 letters and digits)."""
    if isinstance(track[0], otio.schema.Gap) and len(track) > 1 and isinstance(track[1], otio.schema.Transition):
        black = otio.schema.Clip(name="black", source_range=track[0].source_range,
                                 media_reference=otio.schema.GeneratorReference(generator_kind="black"),
                                 metadata={"cmx_3600": {"reel": "BL"}})
        track[0] = black
    if isinstance(track[-1], otio.schema.Gap) and isinstance(track[-2], otio.schema.Transition):
        fade = track[-2]
        length = fade.in_offset
        last = track[-3]
        last.source_range = otio.opentime.TimeRange(last.source_range.start_time,
                                                     last.source_range.duration - length)
        fade.in_offset, fade.out_offset = otio.opentime.RationalTime(0, length.rate), length
        track[-1] = otio.schema.Gap(source_range=otio.opentime.TimeRange(
            otio.opentime.RationalTime(0, length.rate), length))
    reels: dict[str, str] = {}
    for clip in track.find_clips():
        if _is_black(clip):
            continue
        url = clip.media_reference.target_url
        if url not in reels:
            base = re.sub(r"[^A-Za-z0-9]+", "", os.path.splitext(os.path.basename(url))[0])[:8] or "AX"
            reel, number = base, 1
            while reel in reels.values():
                number += 1
                reel = f"{base[:8 - len(str(number))]}{number}"
            reels[url] = reel
        clip.metadata["cmx_3600"] = {"reel": reels[url]}


def _is_black(clip: Any) -> bool:
    """A black filler clip (the EDL's ``BL``), not a shot."""
    import opentimelineio as otio

    return isinstance(clip.media_reference, otio.schema.GeneratorReference)


__all__ = ["FORMATS", "Cut", "CutShot", "ExportResult", "TakeMedia", "build_timeline", "collect_cut",
           "export_timeline", "place_media"]
