"""The generate stage: candidate takes for one segment, through the take store.

A take's id is the hash of its segment, its seed and the takes it conditions on, so a
take that was ever finished is found again and never regenerated. Engines are
created once per render and reused across shots (a diffusion pipeline loads once).

A chained take's colours are anchored to its chain's first take (`colour.grade_for`,
unless the shot says ``colour_anchor: false``): the engine's take is stored as made, and
the anchored take beside it, with an id of its own made from the made take's and the
anchor's. The anchored take is the candidate: what is scored, chosen, shown and chained
from. It is kept as a grade of the made take (`TakeStore.put_graded`: one transform per
frame), encoded only if it is chosen; a take that is a file (a download) is not even
decoded at full size: its grade is worked out from the scan read with its head and tail,
and the candidate is scored from the graded scan.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..engines import Engine, SegmentRequest, Take, engine_class
from ..engines.base import TakeFailure
from ..errors import EngineError, EngineUnavailable, MediaError, ShotFailed, StitchError
from ..plan import Plan, SegmentPlan, ShotPlan, take_id
from ..store import StoredTake, TakeStore, file_digest
from ..storyboard.load import LoadedStoryboard
from .jobs import JobBook, JobJournal

if TYPE_CHECKING:
    from ..storyboard import EngineSettings
    from .colour import Look
    from .executor import Executor, Priority


@dataclass
class Candidate:
    """A take offered for a segment, as the selection sees it."""

    take: StoredTake
    seed: int
    reused: bool


@dataclass
class Conditioning:
    """What a segment's takes start from and end on, by take.

    Attributes:
        previous: The take it continues (chain).
        bridge: The take whose first frame it ends on.
        anchor: The first take of its chain, whose colours a chained take keeps.
        keyframe: The chosen still a shot's first segment animates.
    """

    previous: StoredTake | None = None
    bridge: StoredTake | None = None
    anchor: StoredTake | None = None
    keyframe: StoredTake | None = None

    @property
    def key(self) -> tuple[str | None, ...]:
        return tuple(t.id if t else None for t in (self.previous, self.bridge, self.anchor, self.keyframe))

    @property
    def start(self) -> StoredTake | None:
        """The take its takes start from (a take continued, or a keyframe animated)."""
        return self.previous or self.keyframe


@dataclass(frozen=True)
class Anchoring:
    """How a segment's takes are colour-anchored (see `colour.grade_for`).

    Attributes:
        start: The look of the frames shown just before (the previous take's last).
        target: The look to end on: the chain's first take's, or the shot's reference's.
        key: What the target was measured from (a take id, or a reference's digest).
    """

    start: Look
    target: Look
    key: str

    def take_id(self, made: str) -> str:
        """The anchored take's id, from the id of the take as its engine made it."""
        from ..plan import content_hash
        from .colour import METHOD

        return content_hash({"anchored": made, "to": self.key, "method": METHOD})


@dataclass
class PendingCandidates:
    """The candidates of one segment, some found in the store, some still being made.

    Attributes:
        shot, segment: What they are for.
        seeds: Every candidate's seed, in the order they are offered.
        found: Seed -> candidate already at hand.
        storing: Seed -> the CPU work storing a freshly made take.
        generation: The engine call making the missing ones, None if none are missing.
        asked: How many takes that call was asked for.
        failed: Seed -> a candidate the engine could not make, and why.
        anchoring: Seed -> the CPU work anchoring a take found in the store as made
            but not yet anchored.
    """

    shot: ShotPlan
    segment: SegmentPlan
    seeds: list[int]
    found: dict[int, Candidate] = field(default_factory=dict)
    storing: dict[int, Future[Candidate]] = field(default_factory=dict)
    generation: Future[int] | None = None
    asked: int = 0
    failed: dict[int, TakeFailure] = field(default_factory=dict)
    anchoring: dict[int, Future[Candidate]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def result(self) -> list[Candidate]:
        """Waits for every candidate; in seed order whatever order they finished in,
        without those the engine could not make. Safe to call from several threads
        (the search and a chain's walk ask for the same segment).

        Raises:
            EngineError: the engine failed or made fewer takes than asked.
            ShotFailed: no candidate is left (each failed for a reason of its own).
        """
        with self._lock:
            return self._result()

    def _result(self) -> list[Candidate]:
        if self.generation is not None:
            try:
                made = self.generation.result()
            except MemoryError as exc:
                raise EngineError(f"engine '{self.shot.engine}' ran out of memory on shot "
                                  f"'{self.shot.id}': {exc}") from exc
            except (StitchError, KeyboardInterrupt):
                raise
            except Exception as exc:  # an engine's own failure, said with its shot
                raise EngineError(f"engine '{self.shot.engine}' failed on shot '{self.shot.id}': "
                                  f"{type(exc).__name__}: {exc}") from exc
            finally:
                for work in self.storing.values():  # never leave a take half-handled
                    work.exception()
            for seed, work in self.storing.items():
                self.found[seed] = work.result()
            if made != self.asked or len(self.storing) + len(self.failed) != self.asked:
                raise EngineError(f"engine '{self.shot.engine}' made {made} of {self.asked} takes "
                                  f"for shot '{self.shot.id}'")
            self.generation = None
        for seed, work in self.anchoring.items():
            self.found[seed] = work.result()
        self.anchoring.clear()
        if not self.found:
            reasons = "; ".join(f"seed {seed}: {f.reason}" for seed, f in sorted(self.failed.items()))
            raise ShotFailed(f"shot '{self.shot.id}': engine '{self.shot.engine}' made none of its "
                             f"{len(self.seeds)} candidates ({reasons})",
                             shot=self.shot.id, engine=self.shot.engine)
        return [self.found[seed] for seed in self.seeds if seed in self.found]


@dataclass
class Generator:
    """Makes and caches candidate takes for a render.

    Attributes:
        loaded: The storyboard.
        plan: Its plan.
        store: The take store.
        executor: Where engine calls and storing run (one per render, shared by the
            generators of its variants).
        on_take: Called with (segment, take, reused) as each take becomes available.
        on_stored: Called on a CPU worker with (segment, take, frames, scan,
            conditioning) when a new take is stored and `scored` says its segment will
            be scored, while its frames are in memory (None for a take that is a file:
            such a take's `scan` is read in the same pass as its head and tail).
        scored: Whether the takes of a segment, offered so many, are to be scored.
        extra_seeds: Segment key -> extra candidates asked for by rerolls.
        failures: Segment key -> candidates the engine could not make (one per seed).
        journal: Where hosted engines record their jobs (beside the take store).
    """

    loaded: LoadedStoryboard
    plan: Plan
    store: TakeStore
    executor: Executor = field(default_factory=lambda: _local_executor())
    on_take: Callable[[SegmentPlan, StoredTake, bool], None] | None = None
    on_stored: Callable[[SegmentPlan, StoredTake, np.ndarray | None, np.ndarray | None, Conditioning],
                        None] | None = None
    scored: Callable[[SegmentPlan, int], bool] | None = None
    extra_seeds: dict[str, int] = field(default_factory=dict)
    generated: int = 0
    reused: int = 0
    seen: set[str] = field(default_factory=set)  # takes met in this render already
    failures: dict[str, dict[int, TakeFailure]] = field(default_factory=dict)
    journal: JobJournal | None = None
    _engines: dict[str, Engine] = field(default_factory=dict)
    _memo: dict[tuple[Any, ...], PendingCandidates] = field(default_factory=dict)
    _looks: dict[str, Look] = field(default_factory=dict)
    _lock: threading.RLock = field(default_factory=threading.RLock)

    def __post_init__(self) -> None:
        if self.journal is None:
            self.journal = JobJournal(self.store.root / "jobs")

    def replanned(self, loaded: LoadedStoryboard, plan: Plan) -> Generator:
        """A generator for another plan of the render (a shot moved to a fallback
        engine), sharing this one's executor, engines, counts and failures."""
        return Generator(loaded, plan, self.store, executor=self.executor, on_take=self.on_take,
                         on_stored=self.on_stored, scored=self.scored,
                         extra_seeds=self.extra_seeds,
                         generated=self.generated, reused=self.reused, seen=self.seen,
                         failures=self.failures, journal=self.journal, _engines=self._engines)

    def engine(self, name: str) -> Engine:
        if name not in self._engines:
            self._engines[name] = engine_class(name)(self._settings(name))
        return self._engines[name]

    def check_engines(self) -> None:
        """Raises EngineUnavailable naming every engine this plan needs that cannot run."""
        problems = []
        for name in sorted({s.engine for s in self.plan.shots}):
            cls = engine_class(name)
            available = cls.availability(self._settings(name))
            if not available:
                shots = ", ".join(s.id for s in self.plan.shots if s.engine == name)
                problems.append(f"engine '{name}' (shots {shots}) cannot run here: {available.reason}")
        if problems:
            raise EngineUnavailable("\n".join(problems))

    def preflight(self) -> list[str]:
        """Probes every referenced clip and image before anything is generated, so a
        broken file fails the render at once, named, not halfway through.

        Returns:
            Warnings: clips too short for their shot, left out of its candidates, or
            (with ``short_source: hold``) used with their last frame held.

        Raises:
            MediaError: a file is unreadable, truncated or has no video, or every clip
                of a shot is shorter than the shot and holding is not allowed.
        """
        from ..engines.footage import least_seconds, short_footage_reason, usable_seconds
        from ..media import probe, read_image

        warnings: list[str] = []
        specs = {s.id: s for s in self.loaded.storyboard.shots}
        for shot_id, files in self.loaded.sources.items():
            usable = {}
            for path in files:
                info = probe(path)
                if info.frames < 1:
                    raise MediaError(path, "holds no video frames")
                usable[path] = usable_seconds(info)
            if shot_id not in specs:
                continue  # a variant's override, checked when the variant is planned
            planned = self.plan.shot(shot_id)
            seconds = planned.frames / float(self.plan.fps)
            short = [(p, s) for p, s in usable.items() if s < least_seconds(planned.frames, self.plan.fps)]
            if not short:
                continue
            if self._hold_short(shot_id):
                warnings += [f"shot '{shot_id}': {p.name} has {s:.2f} s of the {seconds:.2f} s the shot "
                             f"lasts; its last frame is held for the rest (short_source: hold)"
                             for p, s in short]
            elif len(short) == len(usable):
                raise MediaError(short[0][0], short_footage_reason(shot_id, seconds, short))
            else:
                warnings += [f"shot '{shot_id}': {p.name} has only {s:.2f} s of the {seconds:.2f} s "
                             "the shot lasts, so it is not a candidate" for p, s in short]
        for shot in self.loaded.storyboard.shots:
            for value in (shot.image_file, shot.reference):
                if value:
                    read_image(self.loaded.resolve(value))
        return warnings

    def _hold_short(self, shot_id: str) -> bool:
        """Whether a shot may use footage shorter than itself, holding its last frame."""
        sb = self.loaded.storyboard
        spec = self.loaded.shot(shot_id)
        return (spec.short_source or sb.defaults.short_source) == "hold"

    def close(self) -> None:
        for engine in self._engines.values():
            engine.close()
        self._engines.clear()

    def candidates(self, shot: ShotPlan, segment: SegmentPlan,
                   conditioning: Conditioning, priority: Priority = (9,)) -> list[Candidate]:
        """Every candidate take of a segment under given conditioning, waiting for the
        ones still being made (see `request`)."""
        return self.request(shot, segment, conditioning, priority).result()

    def request(self, shot: ShotPlan, segment: SegmentPlan, conditioning: Conditioning,
                priority: Priority = (9,)) -> PendingCandidates:
        """Asks for every candidate take of a segment under given conditioning, without
        waiting: takes in the store are found at once, the missing ones are queued on
        the engine's lane in one call (so engines can batch) and stored on a CPU worker
        as each finishes. Asking again for the same thing returns the same request.
        """
        memo_key = (segment.key, conditioning.key, self.extra_seeds.get(segment.key, 0))
        with self._lock:
            pending = self._memo.get(memo_key)
            if pending is None:
                pending = self._memo[memo_key] = self._start(shot, segment, conditioning, priority)
        return pending

    def _start(self, shot: ShotPlan, segment: SegmentPlan, conditioning: Conditioning,
               priority: Priority) -> PendingCandidates:
        engine = self.engine(shot.engine)
        request = self._request(shot, segment, conditioning, engine)
        wanted = shot.candidates + self.extra_seeds.get(segment.key, 0)
        seeds = engine.candidate_seeds(request, wanted, seed_base(shot, segment))
        start, bridge = conditioning.start, conditioning.bridge
        ids = {seed: take_id(segment.hash, seed, condition=start.id if start else None,
                             bridge=bridge.id if bridge else None) for seed in seeds}
        anchoring = self._anchoring(shot, segment, conditioning)
        pending = PendingCandidates(shot=shot, segment=segment, seeds=seeds)
        score = self.on_stored is not None and (self.scored is None or self.scored(segment, len(seeds)))
        for seed, tid in ids.items():
            stored = self.store.get(anchoring.take_id(tid) if anchoring else tid)
            if stored is not None:
                pending.found[seed] = Candidate(stored, seed, reused=True)
                self._count(stored.id, reused=True)
                self._announce(segment, stored, True)
                continue
            made = self.store.get(tid) if anchoring else None
            if made is not None:  # made before, anchored now
                pending.anchoring[seed] = self.executor.cpu(
                    self._store_anchored, made, None, segment, conditioning, anchoring, score,
                    priority=priority)
        missing = [seed for seed in seeds if seed not in pending.found and seed not in pending.anchoring]
        if not missing:
            return pending
        request.seeds = missing
        assert self.journal is not None
        request.jobs = JobBook(self.journal, {seed: ids[seed] for seed in missing}, shot.engine)
        describe = {seed: _describe(request, seed, segment) for seed in missing}

        def on_take(take: Take | TakeFailure) -> Future[Any]:
            # On the engine's lane: check the take, then hand it to a CPU worker.
            if take.seed not in ids or take.seed in pending.found or take.seed in pending.storing \
                    or take.seed in pending.failed:
                raise EngineError(f"engine '{shot.engine}' returned a take for seed {take.seed}, "
                                  "which was not asked for")
            if isinstance(take, TakeFailure):
                pending.failed[take.seed] = take
                with self._lock:
                    self.failures.setdefault(segment.key, {})[take.seed] = take
                done: Future[Any] = Future()
                done.set_result(None)
                return done
            if take.frame_count != segment.frames:
                raise EngineError(f"engine '{shot.engine}' returned {take.frame_count} frames "
                                  f"for shot '{shot.id}', expected {segment.frames}")
            stored = self.executor.cpu(self._store, ids[take.seed], take, shot, segment, conditioning,
                                       describe[take.seed], score, anchoring, priority=priority)
            pending.storing[take.seed] = stored
            return stored

        pending.generation = self.executor.generate(engine, request, priority, on_take)
        pending.asked = len(missing)
        return pending

    def _store(self, tid: str, take: Take, shot: ShotPlan, segment: SegmentPlan,
               conditioning: Conditioning, request: dict[str, Any], score: bool,
               anchoring: Anchoring | None = None) -> Candidate:
        """On a CPU worker: stores a take (and its anchored take), then lets `on_stored`
        look at its frames while they are still in memory (scoring them without decoding
        the file)."""
        from ..scoring.base import scan_size

        scans: list[np.ndarray] = []
        # A file's scan: what scoring reads of it, and what its grade is measured on.
        wanted = take.frames is None and (score or anchoring is not None)
        stored = self.store.put(tid, take, fps=self.plan.fps, engine=shot.engine, request=request,
                                scan_size=scan_size(*take.span_size) if wanted else None,
                                on_scan=scans.append if wanted else None)
        if take.meta.get("job") and self.journal is not None:
            self.journal.remove(tid)  # the download is in the store now
        if anchoring is not None:
            return self._store_anchored(stored, take, segment, conditioning, anchoring, score,
                                        scan=scans[0] if scans else None)
        self._count(stored.id, reused=False)
        if score and self.on_stored is not None:
            self.on_stored(segment, stored, take.frames, scans[0] if scans else None, conditioning)
        self._announce(segment, stored, False)
        return Candidate(stored, take.seed, reused=False)

    def _store_anchored(self, made: StoredTake, take: Take | None, segment: SegmentPlan,
                        conditioning: Conditioning, anchoring: Anchoring, score: bool,
                        scan: np.ndarray | None = None) -> Candidate:
        """On a CPU worker: the anchored take of a take stored as its engine made it,
        kept as a grade of it (`TakeStore.put_graded`, encoded only if chosen), and
        handed to `on_stored` graded. The grade is measured on the frames in memory
        (`take`, when at hand), else on a file's scan (`scan`, when read with its head
        and tail), else on the stored take read again."""
        from ..scoring.base import scan_size, scanned
        from .colour import METHOD, apply_grade, grade_for, measure

        meta = dict(made.meta.get("meta", {}))
        meta["colour_anchor"] = {"made": made.id, "to": anchoring.key, "method": METHOD,
                                 "start": anchoring.start.to_json(), "target": anchoring.target.to_json()}
        request = dict(made.meta.get("request", {}), anchored=made.id)
        frames = take.frames if take is not None else None
        if frames is None and made.meta.get("source") is not None:  # a file: its scan
            if scan is None:
                scan = made.read(size=scan_size(made.width, made.height))
        elif frames is None:
            frames = made.read()
        measured = frames if frames is not None else scan
        assert measured is not None
        grade = grade_for(measure(measured), start=anchoring.start, anchor=anchoring.target)
        lead = take.lead if take is not None and take.lead is not None else made.lead()
        if lead is not None and len(lead):  # the re-made frames before the first, graded as it is
            lead = apply_grade(lead, np.repeat(grade[:1], len(lead), axis=0))
        stored = self.store.put_graded(anchoring.take_id(made.id), made, grade,
                                       label=f"{made.label}, colour anchored", meta=meta,
                                       request=request, lead=lead)
        reused = take is None  # made (and paid for) by an earlier render; only anchored now
        self._count(stored.id, reused=reused)
        if score and self.on_stored is not None:
            # Graded where scoring reads it: the scan (scaled, then graded, as a file's
            # is) and the few lossless ends a frame source keeps (graded as they are
            # read from the store), not every frame at full size (0.9 s a take at 720p).
            scan = scanned(frames) if frames is not None else scan
            assert scan is not None
            self.on_stored(segment, stored, None, apply_grade(scan, grade), conditioning)
        self._announce(segment, stored, reused)
        return Candidate(stored, made.seed, reused=reused)

    def _anchoring(self, shot: ShotPlan, segment: SegmentPlan, conditioning: Conditioning
                   ) -> Anchoring | None:
        """How a chained segment's takes are anchored; None when they are not (not
        chained, or ``colour_anchor: false``)."""
        from ..media import read_image
        from .colour import START_FRAMES, look_of, start_look, take_look

        previous = conditioning.previous
        if previous is None or not segment.condition or segment.bridge_to is not None:
            return None  # a bridge ends on the next shot's look, which its engine matched
        if not self.loaded.colour_anchor(shot.id):
            return None
        spec = self.loaded.shot(shot.id)
        start = start_look(previous.tail(START_FRAMES))
        if spec.reference:
            path = self.loaded.resolve(spec.reference)
            key = "reference:" + file_digest(path)
            with self._lock:
                if key not in self._looks:
                    self._looks[key] = look_of(read_image(path))
            return Anchoring(start, self._looks[key], key)
        root = conditioning.anchor or previous
        with self._lock:
            if root.id not in self._looks:
                self._looks[root.id] = take_look(root.head(), root.middle(), root.tail())
        return Anchoring(start, self._looks[root.id], root.id)

    def _count(self, tid: str, *, reused: bool) -> None:
        with self._lock:
            if reused and tid in self.seen:  # a take a variant shares is not a cache hit
                return
            self.seen.add(tid)
            if reused:
                self.reused += 1
            else:
                self.generated += 1

    def _announce(self, segment: SegmentPlan, stored: StoredTake, reused: bool) -> None:
        if self.on_take is not None:
            with self._lock:
                self.on_take(segment, stored, reused)

    def _request(self, shot: ShotPlan, segment: SegmentPlan, conditioning: Conditioning,
                 engine: Engine) -> SegmentRequest:
        if shot.kind == "keyframe":
            return self._keyframe_request(shot, segment)
        sb = self.loaded.storyboard
        spec = self.loaded.shot(shot.id)
        condition_frames = None
        if conditioning.previous is not None and segment.condition:
            condition_frames = conditioning.previous.last_frames(segment.condition)
        last_frame = conditioning.bridge.head()[0] if conditioning.bridge is not None else None
        steps = spec.steps or sb.defaults.steps
        if self.plan.quality == "draft" and shot.kind == "prompt":
            steps = sb.draft_steps
        kind, image = shot.kind, self.loaded.resolve(spec.image_file) if spec.image_file else None
        if conditioning.keyframe is not None:  # animated from the chosen still
            kind, image = "image", self._still_file(conditioning.keyframe)
        return SegmentRequest(
            shot_id=shot.id, segment=segment.index, kind=kind, frames=segment.frames,
            width=shot.width, height=shot.height, fps=self.plan.fps, seeds=[],
            prompt=self.loaded.prompt(shot.id), negative_prompt=spec.negative_prompt,
            sources=list(self.loaded.sources.get(shot.id, [])),
            image=image,
            title=self.loaded.with_font_resolved(spec.title_card), camera=spec.camera,
            condition_frames=condition_frames, last_frame=last_frame,
            references=list(self.loaded.reference_route(shot.id, quality=self.plan.quality)
                            .engine_references),
            steps=steps, settings=self._settings(shot.engine), hold_short=self._hold_short(shot.id),
        )

    def _keyframe_request(self, shot: ShotPlan, segment: SegmentPlan) -> SegmentRequest:
        """The request of a shot's keyframe: stills from its image engine."""
        spec = self.loaded.keyframe(shot.id, quality=self.plan.quality)
        assert spec is not None, f"shot '{shot.id}' was planned a keyframe it does not have"
        return SegmentRequest(
            shot_id=shot.id, segment=segment.index, kind="keyframe", frames=1, width=shot.width,
            height=shot.height, fps=self.plan.fps, seeds=[], prompt=spec.prompt,
            negative_prompt=spec.negative_prompt, references=list(spec.references),
            settings=self._settings(shot.engine))

    def _still_file(self, still: StoredTake) -> Path:
        """A chosen keyframe as a PNG file (lossless) an engine can read, kept beside
        the store's takes and written once, atomically."""
        from PIL import Image

        from ..media import atomic_output

        path = self.store.root / "stills" / f"{still.id}.png"
        if not path.is_file():
            with atomic_output(path) as partial:
                Image.fromarray(np.ascontiguousarray(still.head()[0])).save(partial, format="PNG")
        return path

    def _settings(self, engine: str) -> EngineSettings:
        """The engine's settings with storyboard-relative paths made absolute."""
        return self.loaded.engine_settings(engine)


# Added to a shot's seed for its keyframe's stills (past any segment's 7919 * index).
KEYFRAME_SEED_OFFSET = 7919 * 1000


def seed_base(shot: ShotPlan, segment: SegmentPlan) -> int:
    """The first candidate seed of a segment (engines add to it: `Engine.candidate_seeds`);
    a keyframe's stills have seeds of their own, clear of its shot's segments'."""
    return shot.seed + (7919 * segment.index if segment.index >= 0 else KEYFRAME_SEED_OFFSET)


def candidate_seeds(shot: ShotPlan, segment: SegmentPlan) -> list[int]:
    """The seeds of a segment's candidates for an engine that keeps the default
    `Engine.candidate_seeds` (rerolls add more)."""
    return [seed_base(shot, segment) + i for i in range(shot.candidates)]


def _local_executor() -> Executor:
    from .executor import LocalExecutor

    return LocalExecutor()


def _describe(request: SegmentRequest, seed: int, segment: SegmentPlan) -> dict[str, Any]:
    return {
        "shot": request.shot_id, "segment": segment.index, "segment_hash": segment.hash,
        "kind": request.kind, "prompt": request.prompt, "seed": seed, "frames": request.frames,
        "size": [request.width, request.height], "steps": request.steps,
        "sources": [str(p) for p in request.sources], "image": str(request.image) if request.image else None,
    }


def storyboard_digests(loaded: LoadedStoryboard) -> dict[Path, str]:
    """Digests of every file whose content decides a take's pixels."""
    sb = loaded.storyboard
    paths: set[Path] = set()
    for shot in sb.shots:
        for value in (shot.image_file, shot.reference):
            if value:
                paths.add(loaded.resolve(value))
        paths.update(loaded.references(shot.id))  # its cast's and the style's images
        if shot.title_card is not None:  # the font a title card is drawn in, unless the default
            font = loaded.with_font_resolved(shot.title_card).font
            if font:
                paths.add(Path(font))
    for files in loaded.sources.values():
        paths.update(files)
    for variant in sb.variants:
        for override in variant.shots.values():
            if override.image:
                paths.add(loaded.resolve(override.image))
    return {p: file_digest(p) for p in sorted(paths) if p.is_file()}


def engine_fingerprints(loaded: LoadedStoryboard, quality: str = "final") -> dict[str, dict[str, Any]]:
    """What beyond a request decides the pixels of each engine a render at `quality`
    uses: the engine's fingerprint (`plan.engine_fingerprint`), and the digests of the
    files it draws on besides the request's (a footage library's clips).
    """
    from ..plan import engine_fingerprint
    from ..storyboard.load import shot_engine

    sb = loaded.storyboard
    names = sorted({shot_engine(sb, shot, quality=quality) for shot in sb.shots})
    fingerprints = {}
    for name in names:
        fingerprint = engine_fingerprint(loaded, name)
        inputs = engine_class(name).input_files(loaded.engine_settings(name))
        if inputs:
            fingerprint["inputs"] = [file_digest(p) for p in inputs]
        fingerprints[name] = fingerprint
    return fingerprints


def default_cache(loaded: LoadedStoryboard) -> Path:
    return folder_cache(loaded.base_dir)


def folder_cache(folder: Path) -> Path:
    """The take store of the storyboards in `folder`: ``$STITCHCRAFT_CACHE``, else
    ``.stitchcraft/cache`` there."""
    return Path(os.environ.get("STITCHCRAFT_CACHE") or folder / ".stitchcraft" / "cache")
