"""The shot planner: a storyboard becomes an exact plan on one frame grid.

Pure code: no processes, and no files but what engines read to say who they are.
Everything the planner needs from outside (engine capabilities and fingerprints,
digests of referenced files) is passed in; the defaults ask the engine registry.

Timeline semantics. Every shot fills ``frames = round(duration * fps)`` frames. A
shot's transition is how it begins: a transition of T frames overlaps the last T
frames of the previous shot with the first T frames of this one, so the programme is
``sum(frames) - sum(T)`` frames long. A fade in on the first shot and the ending fade
overlap nothing. Shot k starts at ``start[k-1] + frames[k-1] - T[k]``.

Segments. An engine makes at most ``max_frames`` frames per call, in counts allowed
by its frame rule (8k+1, 4k+1, ...). A longer shot is split into segments; every
segment after the first continues from the tail of the one before (chained). A
chained segment conditions on ``condition`` frames of the previous take; the engine
generates ``generate = rule.fit(condition + frames)`` frames, drops the conditioned
ones (the duplicated join) and returns ``frames`` new frames.

Matches. A shot with ``continuity: match`` conditions on nothing: its takes are made as
early and with the same identities as a cut's. Its first segment only records the shot
it `matches`, whose chosen take its first frames are judged against at the cut (the
select stage scores that seam), so the plan orders it after that shot.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .engines.base import Capabilities
from .errors import ConfigError, StoryboardError
from .storyboard import Shot
from .storyboard.load import LoadedStoryboard, shot_engine, transition_frames
from .timeline import seconds_to_frames

if TYPE_CHECKING:
    from .storyboard.cast import KeyframeSpec

PLAN_VERSION = 1
KEYFRAME = -1  # the index of a keyframe's segment: it comes before the shot's first


@dataclass(frozen=True)
class SegmentPlan:
    """One engine call's worth of a shot.

    Attributes:
        shot_id: The shot it belongs to.
        index: Its place within the shot.
        start: First frame within the shot.
        frames: New frames it contributes.
        condition: Frames of the previous take it conditions on (0: none).
        generate: Frames the engine generates (rule-compliant, before dropping).
        chained: Continues from the previous segment or shot.
        bridge_to: Shot id whose first frame this segment must end on.
        hash: Content hash of everything known before rendering that decides its
            pixels; a take's id adds its seed and the ids of the takes it conditions on.
        matches: Shot id whose chosen take this segment's first frames are chosen to
            continue (``continuity: match``): judged at the cut, never conditioned on,
            so it is not part of `hash`.
    """

    shot_id: str
    index: int
    start: int
    frames: int
    condition: int
    generate: int
    chained: bool
    bridge_to: str | None
    hash: str
    matches: str | None = None

    @property
    def key(self) -> str:
        return f"{self.shot_id}#keyframe" if self.index == KEYFRAME else f"{self.shot_id}#{self.index}"


@dataclass(frozen=True)
class ShotPlan:
    """A shot placed on the timeline.

    Attributes:
        id: Shot id.
        kind: prompt, source, image or title.
        engine: Engine making its takes.
        start: First frame on the programme timeline.
        frames: Frames it fills, overlaps included.
        transition_in: Frames overlapped with the previous shot (0 for a cut).
        transition_type: Type of the incoming transition.
        fade_in: Frames of fade in from black (first shot only).
        candidates: Takes wanted per segment.
        offered: Takes its engine makes per segment for those (`Engine.offered`: one for
            a title card), 0 when not known (then `candidates`); see `takes_made`.
        seed: Base seed; candidate i uses seed + i.
        width, height: Size takes are made at.
        segments: Engine calls, in order.
        depends_on: Shots whose chosen takes must exist first (chain, bridge); a
            shot that only matches another does not wait for it (`SegmentPlan.matches`).
        continuity: How it joins the shot before: cut, chain, bridge or match.
        keyframe: The still its first segment animates, made first by an image engine
            and chosen from its candidates: a plan of kind ``keyframe`` with one
            one-frame segment (index `KEYFRAME`, key ``<shot>#keyframe``); None when
            the shot starts from none.
    """

    id: str
    kind: str
    engine: str
    start: int
    frames: int
    transition_in: int
    transition_type: str
    fade_in: int
    candidates: int
    seed: int
    width: int
    height: int
    segments: tuple[SegmentPlan, ...]
    depends_on: tuple[str, ...] = ()
    continuity: str = "cut"
    keyframe: ShotPlan | None = None
    offered: int = 0

    @property
    def end(self) -> int:
        return self.start + self.frames

    @property
    def takes_made(self) -> int:
        """Takes made per segment and conditioning, as the plan counts them (rerolls
        aside; footage offers a take per clip or scene, known once its clips are read)."""
        return self.offered or self.candidates


@dataclass(frozen=True)
class Plan:
    """The whole storyboard, resolved to frames.

    Attributes:
        beam: The beam width `takes` and `gpu_seconds` are counted for.
        takes: Segment key -> takes the render makes for it: its candidates once per
            partial cut of the beam it is generated from (`beam_takes`).
        gpu_seconds: Engine -> estimated GPU seconds of those takes (H100-class).
    """

    title: str
    fps: Fraction
    width: int
    height: int
    quality: str
    shots: tuple[ShotPlan, ...]
    order: tuple[str, ...]
    total_frames: int
    ending: int
    gpu_seconds: dict[str, float] = field(default_factory=dict)
    beam: int = 1
    takes: dict[str, int] = field(default_factory=dict)

    def shot(self, shot_id: str) -> ShotPlan:
        for shot in self.shots:
            if shot.id == shot_id:
                return shot
        raise KeyError(shot_id)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["fps"] = str(self.fps)
        data["duration"] = float(Fraction(self.total_frames) / self.fps)
        return data


CapabilityLookup = Callable[[str], Capabilities]


def storyboard_capabilities(loaded: LoadedStoryboard) -> CapabilityLookup:
    """Engine name -> what it can make with the storyboard's settings for it."""
    from .engines import engine_class

    return lambda name: engine_class(name).capabilities_for(loaded.engine_settings(name))


def plan_storyboard(loaded: LoadedStoryboard, *, quality: str = "final",
                    digests: Mapping[Path, str] | None = None,
                    capabilities: CapabilityLookup | None = None,
                    fingerprints: Mapping[str, Mapping[str, Any]] | None = None,
                    title_size: tuple[int, int] | None = None,
                    memory_limit: int | None = None, beam: int | None = None) -> Plan:
    """Resolves a validated storyboard into a plan.

    Args:
        loaded: The validated storyboard.
        quality: ``final``, or ``draft`` to route generated shots to the draft engine.
        digests: Content digest of each referenced file (image, reference, sources);
            files without one are hashed by path.
        capabilities: Engine name -> its capabilities (default: each engine's, with
            the storyboard's settings for it).
        fingerprints: Engine name -> what besides the request decides its pixels;
            an engine left out gets `engine_fingerprint` (the render adds the digests
            of the files engines draw on: `generate.engine_fingerprints`).
        title_size: Make title cards at this size instead of the output's (a variant
            of another shape redraws its titles rather than cropping them).
        memory_limit: Bytes the render may hold in memory; defaults to this machine's
            physical memory (`machine_memory`).
        beam: The beam width to count takes and GPU time for (default: the
            storyboard's ``scoring.beam``).

    Raises:
        ConfigError: a shot cannot be planned with its engine (e.g. the frame rule
            cannot fit a chained segment inside the engine's maximum).
        StoryboardError: the render would need more memory than `memory_limit`
            (checked before any segment is planned).
        ValueError: a footage shot's sources were never resolved (`resolve_sources`),
            so its takes would have no identity of their own.
    """
    sb = loaded.storyboard
    unresolved = [s.id for s in sb.shots if s.kind == "source" and s.id not in loaded.sources]
    if unresolved:
        raise ValueError(f"the sources of shot(s) {', '.join(unresolved)} are not resolved; "
                         "plan a storyboard from load_storyboard, or call resolve_sources first")
    fps = sb.output.frame_rate
    width, height = sb.output.dimensions
    capabilities = capabilities or storyboard_capabilities(loaded)
    check_memory(loaded, quality=quality, capabilities=capabilities, title_size=title_size,
                 limit=machine_memory() if memory_limit is None else memory_limit)
    digests = digests or {}
    shots: list[ShotPlan] = []
    start = 0
    per_take: dict[str, float] = {}  # segment key -> GPU seconds of one take
    for index, shot in enumerate(sb.shots):
        engine = shot_engine(sb, shot, quality=quality)
        caps = capabilities(engine)
        frames = seconds_to_frames(shot.duration, fps)
        transition = shot.transition or sb.defaults.transition
        t = transition_frames(transition, fps)
        fade_in = 0
        if index == 0:
            fade_in = t if transition.type == "fade" else 0
            t = 0
        start = start - t if index else 0
        gen_w, gen_h = _take_size(shot, width, height, caps, title_size)
        candidates = shot.candidates or sb.defaults.candidates
        seed = shot.seed if shot.seed is not None else sb.defaults.seed + 1000 * index
        given = (fingerprints or {}).get(engine)
        fingerprint = dict(given if given is not None else engine_fingerprint(loaded, engine))
        if quality == "draft" and shot.kind == "prompt":
            fingerprint["steps"] = sb.draft_steps
        base = {
            "plan": PLAN_VERSION, "engine": engine, "engine_fingerprint": fingerprint,
            "kind": shot.kind, "prompt": loaded.prompt(shot.id), "negative_prompt": shot.negative_prompt,
            "size": [gen_w, gen_h], "fps": str(fps), "camera": shot.camera,
            "steps": shot.steps or sb.defaults.steps,
            "title": shot.title_card.model_dump() if shot.title_card else None,
            "image": _digest(loaded, shot.image_file, digests),
            "reference": _digest(loaded, shot.reference, digests),
            "sources": [digests.get(p, str(p)) for p in loaded.sources.get(shot.id, [])],
        }
        if shot.title_card is not None:
            # The font the card is drawn in unless it is the engine's default (the card's
            # own, or one found for text the default cannot draw), by its content.
            drawn_in = loaded.with_font_resolved(shot.title_card).font
            if drawn_in:
                base["title_font"] = digests.get(Path(drawn_in), drawn_in)
        route = loaded.reference_route(shot.id, quality=quality)  # references, keyframe
        sent = route.engine_references
        own = [loaded.resolve(shot.reference)] if shot.reference else []
        if sent and list(sent) != own:  # a cast's or a style's images too (`reference` has its own)
            base["references"] = [digests.get(p, str(p)) for p in sent]
        if shot.kind == "source":  # holding a short clip's last frame changes its pixels
            base["short_source"] = shot.short_source or sb.defaults.short_source
        bridge_to = None
        depends: list[str] = []
        if shot.continuity in ("chain", "bridge") and index > 0:
            depends.append(sb.shots[index - 1].id)
        if shot.continuity == "bridge" and index + 1 < len(sb.shots):
            bridge_to = sb.shots[index + 1].id
            depends.append(bridge_to)
        matches = sb.shots[index - 1].id if shot.continuity == "match" and index > 0 else None
        segments = _segments(shot, index, frames, caps, base, bridge_to, caps.frame_limit(float(fps)),
                             matches)
        keyframe = route.keyframe
        shots.append(ShotPlan(
            keyframe=_keyframe_plan(loaded, shot.id, keyframe, start=start, seed=seed,
                                    size=_fit_size(width, height, capabilities(keyframe.engine).size_multiple),
                                    digests=digests, fingerprints=fingerprints) if keyframe else None,
            id=shot.id, kind=shot.kind, engine=engine, start=start, frames=frames,
            transition_in=t, transition_type=transition.type if (t or fade_in) else "cut",
            fade_in=fade_in, candidates=candidates, seed=seed, width=gen_w, height=gen_h,
            segments=tuple(segments), depends_on=tuple(depends), continuity=shot.continuity,
            offered=_offered(engine, shot, candidates),
        ))
        if caps.seconds_per_frame:
            scale = (gen_w * gen_h) / (1280 * 720)
            per_take.update({s.key: s.generate * caps.seconds_per_frame * scale for s in segments})
        still = shots[-1].keyframe
        if still is not None and capabilities(still.engine).seconds_per_frame:
            per_take[still.segments[0].key] = (capabilities(still.engine).seconds_per_frame
                                               * still.width * still.height / (1280 * 720))
        start += frames
    total = start
    ending = seconds_to_frames(sb.ending.duration, fps) if sb.ending and sb.ending.type == "fade" else 0
    plan = Plan(title=sb.title, fps=fps, width=width, height=height, quality=quality,
                shots=tuple(shots), order=generation_order(shots), total_frames=total,
                ending=ending, beam=beam or sb.scoring.beam)
    takes = beam_takes(plan, plan.beam, sb.scoring.beam_generate)
    gpu: dict[str, float] = {}
    for planned in [*shots, *(s.keyframe for s in shots if s.keyframe is not None)]:
        for segment in planned.segments:
            if segment.key in per_take:
                gpu[planned.engine] = gpu.get(planned.engine, 0.0) + per_take[segment.key] * takes[segment.key]
    return replace(plan, takes=takes, gpu_seconds=gpu)


def _offered(engine: str, shot: Shot, wanted: int) -> int:
    """`Engine.offered`, 0 for an engine known only by its capabilities (a test's)."""
    from .engines import engine_class

    try:
        return engine_class(engine).offered(shot, wanted)
    except ConfigError:
        return 0


def _keyframe_plan(loaded: LoadedStoryboard, shot_id: str, spec: KeyframeSpec, *, start: int, seed: int,
                   size: tuple[int, int], digests: Mapping[Path, str],
                   fingerprints: Mapping[str, Mapping[str, Any]] | None) -> ShotPlan:
    """The plan of a shot's keyframe: one still, made by its image engine."""
    given = (fingerprints or {}).get(spec.engine)
    content = {
        "plan": PLAN_VERSION, "engine": spec.engine, "kind": "keyframe",
        "engine_fingerprint": dict(given if given is not None else engine_fingerprint(loaded, spec.engine)),
        "prompt": spec.prompt, "negative_prompt": spec.negative_prompt, "size": list(size),
        "references": [digests.get(p, str(p)) for p in spec.references],
    }
    segment = SegmentPlan(shot_id=shot_id, index=KEYFRAME, start=0, frames=1, condition=0, generate=1,
                          chained=False, bridge_to=None, hash=content_hash(content))
    return ShotPlan(id=shot_id, kind="keyframe", engine=spec.engine, start=start, frames=1,
                    transition_in=0, transition_type="cut", fade_in=0, candidates=spec.candidates,
                    seed=seed, width=size[0], height=size[1], segments=(segment,))


def beam_takes(plan: Plan, width: int, generate: int | None = None) -> dict[str, int]:
    """Segment key -> the takes a render with beam `width` makes for it: its candidates,
    once per partial cut it is generated from (a chained or bridged segment continues a
    different take under each; at most ``scoring.beam_generate`` of them). An upper
    bound where partial cuts share a take; rerolls are not counted."""
    from .select.beam import conditionings
    from .select.units import build_units

    units = build_units(plan)
    return {unit.segment.key: unit.shot.takes_made * under
            for unit, under in zip(units, conditionings(units, width, generate), strict=True)}


def _segments(shot: Shot, index: int, frames: int, caps: Capabilities, base: dict[str, Any],
              bridge_to: str | None, max_frames: int | None,
              matches: str | None = None) -> list[SegmentPlan]:
    rule = caps.frame_rule
    chained_shot = shot.continuity in ("chain", "bridge") and index > 0
    chain_condition = max(1, caps.condition_frames) if caps.image_to_video else 0
    limit = rule.floor(max_frames) if max_frames else None
    if limit is None:
        sizes = [frames]
    else:
        first_condition = chain_condition if chained_shot else 0
        first_room = limit - first_condition
        later_room = limit - chain_condition
        if first_room < 1 or (frames > first_room and later_room < 1):
            raise ConfigError(f"shot '{shot.id}': engine cannot fit {chain_condition} conditioning "
                              f"frames inside its {max_frames}-frame limit")
        if frames <= first_room:
            sizes = [frames]
        else:
            count = 1 + -(-(frames - first_room) // later_room)
            # Spread frames evenly so no segment is a tiny remainder.
            per = -(-frames // count)
            sizes = []
            left = frames
            for i in range(count):
                room = first_room if i == 0 else later_room
                size = min(per, room, left)
                sizes.append(size)
                left -= size
            while left > 0:  # rounding left a remainder: top up segments with room
                for i in range(count):
                    room = (first_room if i == 0 else later_room) - sizes[i]
                    extra = min(room, left)
                    sizes[i] += extra
                    left -= extra
    segments = []
    offset = 0
    for i, size in enumerate(sizes):
        chained = chained_shot if i == 0 else True
        condition = chain_condition if chained else 0
        generate = rule.fit(condition + size)
        last = i == len(sizes) - 1
        content = dict(base, segment=i, frames=size, condition=condition, generate=generate,
                       chained=chained, bridge=bridge_to if last else None)
        segments.append(SegmentPlan(
            shot_id=shot.id, index=i, start=offset, frames=size, condition=condition,
            generate=generate, chained=chained, bridge_to=bridge_to if last else None,
            hash=content_hash(content), matches=matches if i == 0 else None,
        ))
        offset += size
    return segments


def generation_order(shots: list[ShotPlan]) -> tuple[str, ...]:
    """Shots in an order where each comes after the shots it depends on and the shot it
    matches (the select stage walks this order, and judges a match against a take
    already chosen)."""
    order: list[str] = []
    placed: set[str] = set()
    pending = [s for s in shots]
    while pending:
        progressed = False
        for shot in list(pending):
            after = (*shot.depends_on, *(s.matches for s in shot.segments if s.matches))
            if all(d in placed for d in after):
                order.append(shot.id)
                placed.add(shot.id)
                pending.remove(shot)
                progressed = True
        if not progressed:
            raise ConfigError("shots depend on each other in a cycle: "
                              + ", ".join(s.id for s in pending))
    return tuple(order)


def content_hash(content: Mapping[str, Any]) -> str:
    """A stable sha256 of JSON-able content."""
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def take_id(segment_hash: str, seed: int, *, condition: str | None = None,
            bridge: str | None = None) -> str:
    """The content hash of one take: its segment, its seed, the takes it conditions on."""
    return content_hash({"segment": segment_hash, "seed": seed, "condition": condition,
                         "bridge": bridge})


def engine_fingerprint(loaded: LoadedStoryboard, engine: str) -> dict[str, Any]:
    """What besides a request decides engine `engine`'s pixels under this storyboard's
    settings for it: the engine's own `Engine.fingerprint`."""
    from .engines import engine_class

    return engine_class(engine).fingerprint(loaded.engine_settings(engine))


def _digest(loaded: LoadedStoryboard, value: str | None, digests: Mapping[Path, str]) -> str | None:
    if value is None:
        return None
    path = loaded.resolve(value)
    return digests.get(path, str(path))


def _take_size(shot: Shot, width: int, height: int, caps: Capabilities,
               title_size: tuple[int, int] | None) -> tuple[int, int]:
    """The size a shot's takes are made at."""
    if title_size is not None and shot.kind == "title":
        return title_size
    return _fit_size(width, height, caps.size_multiple)


# --- memory ---------------------------------------------------------------------------
# A take is a uint8 array of all its frames (engines yield whole takes), and at the peak
# a shot's frames are held twice: as the engine made them, and as a candidate's copy or
# the shot joined from its segments.
TAKE_COPIES = 2


def machine_memory() -> int:
    """This machine's physical memory in bytes (16 GiB when it cannot be asked)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return 16 * 2**30


def check_memory(loaded: LoadedStoryboard, *, quality: str, capabilities: CapabilityLookup,
                 title_size: tuple[int, int] | None, limit: int) -> None:
    """Refuses a storyboard with a shot whose takes cannot be held in `limit` bytes.

    Raises:
        StoryboardError: at the first such shot's duration, with the figure and the
            longest shot that would fit.
    """
    sb = loaded.storyboard
    fps = sb.output.frame_rate
    width, height = sb.output.dimensions
    for index, shot in enumerate(sb.shots):
        caps = capabilities(shot_engine(sb, shot, quality=quality))
        frames = seconds_to_frames(shot.duration, fps)
        take_w, take_h = _take_size(shot, width, height, caps, title_size)
        frame_bytes = take_w * take_h * 3
        held = TAKE_COPIES * frames * frame_bytes
        if held > limit:
            most = Fraction(limit // (TAKE_COPIES * frame_bytes)) / fps
            raise StoryboardError([loaded.located.issue(("shots", index, "duration"), (
                f"shot '{shot.id}' is {frames} frames of {take_w}x{take_h}: making it holds about "
                f"{_bytes(held)} in memory, more than this machine's {_bytes(limit)}; split it "
                f"into shots of at most {math.floor(most * 10) / 10:g} s, or lower output.size "
                "or output.fps"))])


def _bytes(size: int) -> str:
    return f"{size / 2**30:.1f} GiB" if size >= 2**30 else f"{size / 2**20:.1f} MiB"


def _fit_size(width: int, height: int, multiple: int) -> tuple[int, int]:
    # Round up: the cut then crops a few pixels instead of upscaling.
    if multiple <= 2:
        return width, height
    return -(-width // multiple) * multiple, -(-height // multiple) * multiple
