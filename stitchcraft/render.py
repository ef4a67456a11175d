"""The render: plan -> generate -> score -> select -> assemble -> verify -> report.

This module wires the stages together; each stage lives in its own module. It never
prints: progress goes to a `Reporter` the caller provides.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

from .errors import ConfigError, ShotFailed, StitchError
from .generate import Generator, default_cache, engine_fingerprints, storyboard_digests
from .generate.executor import executor_for
from .outputs import (
    CutPath,
    check_writable,
    claim_outputs,
    cut_paths,
    manifest_path,
    report_path,
    variant_output,
)
from .plan import Plan, SegmentPlan, plan_storyboard
from .report.manifest import (
    CandidateRecord,
    CutRecord,
    FailedRecord,
    Manifest,
    SegmentRecord,
    ShotRecord,
)
from .select.choose import CutChooser, Selection
from .store import StoredTake, TakeStore
from .storyboard import Variant, parse_size
from .storyboard.load import LoadedStoryboard

if TYPE_CHECKING:
    from concurrent.futures import Future

    from .assemble import CutSpec
    from .batch import Shared
    from .engines.base import Engine
    from .generate import Candidate
    from .provenance import SigningIdentity
    from .select.units import Unit

T = TypeVar("T")


class Reporter(Protocol):
    """Where a render says what it is doing (the CLI draws bars or log lines)."""

    def stage(self, name: str, total: int | None = None) -> None: ...
    def advance(self, detail: str = "") -> None: ...
    def log(self, message: str) -> None: ...
    def warn(self, message: str) -> None: ...


class SilentReporter:
    def stage(self, name: str, total: int | None = None) -> None: pass
    def advance(self, detail: str = "") -> None: pass
    def log(self, message: str) -> None: pass
    def warn(self, message: str) -> None: pass


@dataclass
class RenderOptions:
    """How to render.

    Attributes:
        cache: Take store folder (default ``.stitchcraft/cache`` beside the storyboard).
        quality: ``final``, or ``draft`` (fast engine, fewer steps, ``.draft`` output).
        variants: Variant names to render besides the main cut; None for all.
        beam: Beam width override (else the storyboard's ``scoring.beam``).
        reroll: Rounds of new candidates for seams below the threshold.
        picks: Shot id -> pinned take (index or id prefix), over the storyboard's.
        max_cost: Refuse to start when the hosted takes to make are estimated above
            this many USD (None: no limit).
        resubmit: Submit again the hosted takes whose earlier submission was cut off
            or failed (the journal otherwise keeps them from being paid for twice).
        shared: A batch's executor and loaded engines, kept across its storyboards
            (None: the render makes its own and closes them when it ends).
        executor: Where engine calls run when not `shared`: ``local`` or ``ray``.
        address: The Ray cluster of the ``ray`` executor (None: a local instance).
    """

    cache: Path | None = None
    quality: str = "final"
    variants: list[str] | None = None
    beam: int | None = None
    reroll: int = 0
    picks: dict[str, str | int] = field(default_factory=dict)
    max_cost: float | None = None
    resubmit: bool = False
    shared: Shared | None = None
    executor: str = "local"
    address: str | None = None


@dataclass
class RenderedCut:
    """A cut the render wrote and verified (the main one, or a variant's)."""

    variant: str | None
    path: Path
    frames: int
    duration: float
    width: int
    height: int


@dataclass
class RenderResult:
    outputs: list[RenderedCut]
    manifest: Path
    report: Path
    generated: int
    reused: int
    warnings: list[str]
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": True,
            "outputs": [{"variant": o.variant, "path": str(o.path), "frames": o.frames,
                         "duration": o.duration, "size": f"{o.width}x{o.height}"} for o in self.outputs],
            "manifest": str(self.manifest), "report": str(self.report),
            "takes_generated": self.generated, "takes_reused": self.reused,
            "warnings": self.warnings, "seconds": round(self.seconds, 2), "timings": self.timings,
        }


def render(loaded: LoadedStoryboard, options: RenderOptions | None = None,
           reporter: Reporter | None = None) -> RenderResult:
    """Renders a validated storyboard and its variants.

    Raises:
        StitchError: the subclasses say what failed (see `stitchcraft.errors`).
    """
    options = options or RenderOptions()
    reporter = reporter or SilentReporter()
    clock = _Clock()
    wanted = _wanted_variants(loaded, options)
    loaded = loaded.for_quality(options.quality)
    sb = loaded.storyboard
    # 1. Options and outputs: nothing is generated until every output can be written
    #    without destroying a file; what killed renders left behind is cleared.
    store = TakeStore(options.cache or default_cache(loaded), on_warning=reporter.warn)
    cuts_to_write = cut_paths(loaded, options.quality, variants=sorted(wanted))
    claim_outputs(loaded, cuts_to_write)
    check_writable(cuts_to_write, store.root)
    _sweep(store, cuts_to_write, reporter)
    # 2. Plan, each shot whose engine cannot run here moved to its first fallback that can.
    reporter.stage("plan")
    fallbacks: list[dict[str, str]] = []
    loaded = _route_unavailable(loaded, options.quality, fallbacks, reporter)
    plan = _plan(loaded, options.quality)
    reporter.log(f"plan: {len(plan.shots)} shots, {plan.total_frames} frames "
                 f"({float(plan.total_frames / plan.fps):.2f} s) at {plan.fps} fps")
    _hosted_budget(loaded, plan, store, options, cuts_to_write, reporter)
    clock.lap("plan")
    # A bad certificate fails now, not after generating; nothing is written for a
    # storyboard the plan refuses (the development signer is made here when missing).
    from .provenance import signing_identity

    signer = signing_identity(store.root)
    # 3. Engines that cannot run and broken media fail now, before any model loads.
    shared = options.shared
    executor = shared.executor if shared else executor_for(options.executor, options.address)
    busy_before = executor.stats()
    generator = Generator(loaded, plan, store, executor=executor)
    if shared:  # the batch's engines, by name and settings (a mapping the generator only indexes)
        generator._engines = cast("dict[str, Engine]", shared.engines_for(loaded))
    generator.check_engines()
    from .fonts import undrawable_text

    warnings = generator.preflight() + undrawable_text(loaded, wanted)
    from .scoring import ScoreBook

    book = ScoreBook(sb.scoring, store)
    warnings += book.warnings
    for warning in warnings:
        reporter.warn(warning)
    clock.lap("check")
    from .report import ThumbnailJob

    # The report's thumbnails, made beside the stages below; and what the main cut's
    # early assembly still renders when its takes are chosen (joined after the assembly).
    with ThumbnailJob() as thumbnails, contextlib.ExitStack() as behind:
        # 4. Generate, score and select: the main cut, then each variant that differs.
        reporter.stage("generate & score")  # no total: footage offers every scene it finds

        def took(segment: SegmentPlan, take: StoredTake, reused: bool) -> None:
            thumbnails.add([take])
            reporter.advance(f"{segment.shot_id}: {'cached' if reused else 'made'} "
                             f"{take.label or take.id[:10]}")

        generator.on_take = took
        try:
            while True:  # a shot whose every candidate failed moves to its next fallback engine
                try:
                    cuts = _select_cuts(loaded, plan, generator, book, options, reporter, wanted, behind,
                                        warnings)
                    break
                except ShotFailed as failure:
                    loaded = _fall_back(loaded, failure.shot, failure.engine, str(failure),
                                        options.quality, fallbacks, reporter, failure)
                    plan = _plan(loaded, options.quality)
                    generator = generator.replanned(loaded, plan)
                    generator.check_engines()
        finally:
            if shared is None:  # a batch closes its executor and engines after its last storyboard
                executor.close()
                generator.close()
        _encode_chosen(cuts)
        clock.lap("generate & select")
        warnings += _short_takes(cuts, reporter) + store.warnings
        # 5. Assemble every cut.
        thumbnails.add(_listed_takes(cuts))  # joined takes, and any not announced
        outputs = _assemble_all(loaded, cuts, options, reporter, warnings, work_folder(store), signer)
        clock.lap("assemble")
        thumbs = thumbnails.result()
    # 6. Manifest and report.
    reporter.stage("report")
    busy = {k: round(v - busy_before.get(k, 0.0), 3) for k, v in executor.stats().items()}
    timings = {**clock.laps, "engine busy": busy["generate"], "store & score busy": busy["cpu"],
               "scoring": book.stats()["seconds"]}
    manifest_path, report_path = _write_manifest(loaded, cuts, outputs, store, book, options,
                                                 warnings, generator, timings, thumbs, fallbacks)
    from .cache import mark_used

    mark_used(take.dir for take in _listed_takes(cuts))  # their age for `stitch cache prune`
    clock.lap("report")
    timings["report"] = clock.laps["report"]
    return RenderResult(outputs=outputs, manifest=manifest_path, report=report_path,
                        generated=generator.generated, reused=generator.reused,
                        warnings=warnings, seconds=clock.total(), timings=timings)


class _Clock:
    """Wall time per stage of a render."""

    def __init__(self) -> None:
        self.began = self.last = time.monotonic()
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.monotonic()
        self.laps[name] = round(now - self.last, 3)
        self.last = now

    def total(self) -> float:
        return time.monotonic() - self.began


def _wanted_variants(loaded: LoadedStoryboard, options: RenderOptions) -> set[str]:
    """The variants to render besides the main cut.

    Raises:
        ConfigError: an unknown quality or variant name.
    """
    if options.quality not in ("final", "draft"):
        raise ConfigError(f"--quality must be final or draft, not '{options.quality}'")
    from .storyboard.matrix import main_name

    names = {v.name for v in loaded.storyboard.variants}
    wanted = set(options.variants) if options.variants is not None else names
    wanted.discard(main_name(loaded.storyboard))  # a matrix's first combination is the main cut
    unknown = wanted - names
    if unknown:
        raise ConfigError(f"no variant named {', '.join(sorted(unknown))} "
                          f"(variants: {', '.join(sorted(names)) or 'none'})")
    return wanted


def _select_cuts(loaded: LoadedStoryboard, plan: Plan, generator: Generator, book: Any,
                 options: RenderOptions, reporter: Reporter, wanted: set[str],
                 behind: contextlib.ExitStack,
                 warnings: list[str]) -> list[tuple[Variant | None, Selection, LoadedStoryboard]]:
    """The chosen cut of the main storyboard and of each wanted variant. A variant that
    changes no content and no title shares the main cut's selection. The main cut's
    early assembly may leave a piece rendering: `behind` waits for it on exit, and then
    adds what its pieces met to `warnings`."""
    sb = loaded.storyboard
    main = _choose(loaded, plan, generator, book, options, reporter, behind=behind, warnings=warnings)
    cuts: list[tuple[Variant | None, Selection, LoadedStoryboard]] = [(None, main, loaded)]
    for variant in sb.variants:
        if variant.name not in wanted:
            continue
        derived = loaded.for_variant(variant)
        # Titles are redrawn for a frame of another size rather than cropped.
        size = parse_size(variant_output(sb, variant, loaded.base_dir, options.quality)["size"])
        title_size = size if size != sb.output.dimensions and any(
            s.kind == "title" for s in derived.storyboard.shots) else None
        if derived is loaded and title_size is None:
            cuts.append((variant, main, loaded))
            continue
        vplan = plan_storyboard(derived, quality=options.quality, digests=storyboard_digests(derived),
                                fingerprints=engine_fingerprints(derived, options.quality),
                                title_size=title_size)
        vgen = Generator(derived, vplan, generator.store, executor=generator.executor,
                         on_take=generator.on_take, seen=generator.seen, _engines=generator._engines)
        cuts.append((variant, _choose(derived, vplan, vgen, book, options, reporter), derived))
        generator.generated += vgen.generated
        generator.reused += vgen.reused
    return cuts


def _sweep(store: TakeStore, cuts: list[CutPath], reporter: Reporter) -> None:
    """Clears what killed renders left behind: their half-written outputs, take and
    assembly scratch, and their orphaned ffmpeg processes (never a live render's)."""
    from .assemble import scratch_folders
    from .housekeeping import sweep

    cleared = store.clean_tmp()
    swept = sweep([*(c.path.parent for c in cuts), *scratch_folders(work_folder(store))])
    if cleared or swept.removed or swept.killed:
        reporter.log(f"cleaned up after an interrupted render: {len(cleared) + len(swept.removed)} "
                     f"scratch files, {len(swept.killed)} orphaned ffmpeg processes")


def work_folder(store: TakeStore) -> Path:
    """Where assembly caches its segments: beside the take store."""
    return store.root.parent / "work"


def _choose(loaded: LoadedStoryboard, plan: Plan, generator: Generator, book: Any,
            options: RenderOptions, reporter: Reporter, *,
            behind: contextlib.ExitStack | None = None, warnings: list[str] | None = None) -> Selection:
    """The chosen cut of a storyboard; with `behind`, its pieces are assembled as soon
    as their takes are known (`_EarlyAssembly`, beam 1 without rerolls only), the one in
    progress when the cut is chosen left to finish beside what follows (`behind` waits
    for it on exit, then says what the pieces met and adds it to `warnings`)."""
    picks = {s.id: s.pick for s in loaded.storyboard.shots if s.pick is not None}
    picks.update(options.picks)
    width = options.beam or loaded.storyboard.scoring.beam
    ahead = None
    if behind is not None and width == 1 and options.reroll == 0:
        ahead = _EarlyAssembly(loaded, plan, work_folder(generator.store), options.quality,
                               quiet=generator.executor.quiet)
        # Callbacks run last first: the piece `close` leaves in progress is waited for,
        # then what the pieces met is said.
        behind.callback(_said_behind, ahead.warnings, reporter, warnings)
        behind.callback(ahead.join)
    try:
        selection = CutChooser(loaded, plan, generator, book, width=width, reroll=options.reroll,
                               picks=picks, log=reporter,
                               on_decided=ahead.decided if ahead else None).choose()
    except BaseException:
        if ahead is not None:
            ahead.close(failed=True)
        raise
    if ahead is not None:
        ahead.finish(selection.chosen)
        ahead.close()
    return selection


def _said_behind(found: list[str], reporter: Reporter, warnings: list[str] | None) -> None:
    """Says what the early assembly's pieces met (a damaged cached piece rendered again),
    and adds it to the render's `warnings` (the manifest's)."""
    for warning in found:
        reporter.warn(warning)
    if warnings is not None:
        warnings.extend(found)


def _encode_chosen(cuts: list[tuple[Variant | None, Selection, LoadedStoryboard]]) -> None:
    """Encodes the chosen takes kept as colour grades (`TakeStore.encode`), side by side,
    for the assembly, which reads takes as files (most were encoded while the cut was
    still being chosen: `_EarlyAssembly`)."""
    from concurrent.futures import ThreadPoolExecutor

    graded = {t.id: t for _, selection, _ in cuts for t in selection.shot_takes.values()
              if t is not None and not t.encoded}
    if not graded:
        return
    with ThreadPoolExecutor(max_workers=min(len(graded), os.cpu_count() or 1)) as pool:
        for future in [pool.submit(_encode, take) for take in graded.values()]:
            future.result()


def _encode(take: StoredTake) -> StoredTake:
    assert take.store is not None, "a graded take is encoded in its store"
    return take.store.encode(take)


def _short_takes(cuts: list[tuple[Variant | None, Selection, LoadedStoryboard]],
                 reporter: Reporter) -> list[str]:
    """One warning per chosen take whose footage ran short and holds its last frame."""
    warnings: list[str] = []
    seen: set[str] = set()
    for _, selection, _ in cuts:
        for unit, candidate in zip(selection.units, selection.chosen, strict=True):
            meta = candidate.take.meta.get("meta", {})
            short = meta.get("short_by_frames")
            if short and candidate.take.id not in seen:
                seen.add(candidate.take.id)
                warnings.append(f"shot '{unit.shot.id}': the chosen take holds its last frame for "
                                f"{short} of {candidate.take.frames} frames ({Path(meta.get('source', '')).name} "
                                "is shorter than the shot)")
                reporter.warn(warnings[-1])
    return warnings


# --- variants -------------------------------------------------------------------------

# --- assembly -------------------------------------------------------------------------

def _assemble_all(loaded: LoadedStoryboard, cuts: list[tuple[Variant | None, Selection, LoadedStoryboard]],
                  options: RenderOptions, reporter: Reporter, warnings: list[str],
                  work: Path, signer: SigningIdentity) -> list[RenderedCut]:
    from .assemble import assemble
    from .provenance import Credentials, credit_cut

    outputs: list[RenderedCut] = []
    if signer.warning:
        warnings.append(signer.warning)
        reporter.warn(signer.warning)
    for variant, selection, derived in cuts:
        cut, destination = _cut_spec(loaded, variant, derived, selection.plan, selection.shot_takes,
                                     options.quality)
        name = variant.name if variant else "main"
        reporter.stage(f"assemble {name}", 100)
        last = [0]

        def progress(stage: str, fraction: float, _last: list[int] = last) -> None:
            step = int(fraction * 100)
            while _last[0] < step:
                _last[0] += 1
                reporter.advance(stage)

        credentials = Credentials(credit_cut(loaded, variant.name if variant else None, selection, destination),
                                  signer, destination)
        for warning in filter(None, [credentials.warning]):
            warnings.append(warning)
            reporter.warn(warning)
        result = assemble(cut, destination, workdir=work, progress=progress,
                          tags=credentials.tags(), seal=credentials.seal)
        for warning in result.warnings:
            warnings.append(f"{name}: {warning}")
            reporter.warn(f"{name}: {warning}")
        reporter.log(f"wrote {result.path} ({result.frames} frames, {result.duration:.2f} s, "
                     f"{result.width}x{result.height})")
        outputs.append(RenderedCut(variant.name if variant else None, result.path, result.frames,
                              result.duration, result.width, result.height))
    return outputs


def _cut_spec(loaded: LoadedStoryboard, variant: Variant | None, derived: LoadedStoryboard,
              plan: Plan, takes: Mapping[str, StoredTake | None], quality: str) -> tuple[CutSpec, Path]:
    """What the assembly renders for one cut, and where to: the chosen take of each shot
    (a shot not chosen yet, None, gets a placeholder that `prerender` never reads).

    Raises:
        ConfigError: a variant changes the frame rate.
    """
    from .assemble import CutClip, CutSpec, CutTransition
    from .storyboard import Output
    from .timeline import parse_fps

    sb = loaded.storyboard
    settings = variant_output(sb, variant, loaded.base_dir, quality)
    out = Output.model_validate({k: v for k, v in settings.items() if k != "resolved"})
    width, height = out.dimensions
    fps = parse_fps(out.fps)
    if fps != plan.fps:
        raise ConfigError(f"variant '{variant.name if variant else ''}' changes the frame rate; "
                          "render a separate storyboard for another rate")
    dsb = derived.storyboard
    clips = []
    for index, shot in enumerate(plan.shots):
        spec = dsb.shots[index]
        transition = spec.transition or dsb.defaults.transition
        frames = shot.fade_in if index == 0 else shot.transition_in
        kind = transition.type if frames else "cut"
        take = takes.get(shot.id)
        clips.append(CutClip(
            shot_id=shot.id, path=take.video if take is not None else Path(os.devnull),
            frames=shot.frames, start=take.span.start if take is not None else None,
            transition=CutTransition(kind, frames, transition.color),
            fit=spec.fit or out.fit, text=derived.with_font_resolved(spec.caption),
            use_audio=dsb.audio.take_audio, volume_db=spec.volume))
    ending = None
    if dsb.ending and dsb.ending.type == "fade" and plan.ending:
        ending = CutTransition("fade", plan.ending, dsb.ending.color)
    audio = dsb.audio
    cut = CutSpec(
        clips=clips, fps=fps, width=width, height=height, codec=out.codec, preset=out.preset,
        crf=out.crf, ending=ending,
        music=derived.resolve(audio.music) if audio.music else None,
        voiceover=derived.resolve(audio.voiceover) if audio.voiceover else None,
        loudness=audio.loudness, true_peak=audio.true_peak, music_volume_db=audio.music_volume,
        duck_db=audio.duck, music_fade=audio.music_fade,
        subtitles=derived.resolve(dsb.subtitles) if dsb.subtitles else None,
        subtitles_mode=dsb.subtitles_mode,
        logo=derived.resolve(dsb.logo) if dsb.logo else None,
    )
    return cut, Path(settings["resolved"])


class _EarlyAssembly:
    """Renders the main cut's pieces while the rest of the cut is still being chosen.

    With a beam of 1 and no rerolls, each chain's choices are known as soon as its
    candidates are scored (`CutChooser.on_decided`, the choices the search then makes);
    every piece whose takes are then known is rendered into the assembly's cache, so
    that the assembly finds most of its pieces done. The pieces render one at a time on
    a thread of their own at a lower CPU priority (its ffmpeg processes inherit it): they
    fill the time the render spends waiting for engines, and never hold back the takes
    still to be stored and scored. A shot of several segments waits (its take is joined
    at the end). A chosen take kept as a colour grade is encoded first, on threads of
    their own at the same lower priority, and its pieces wait for it.

    Each such job starts only once the generator's CPU workers are idle (`quiet`): a
    lower priority does not keep a Python thread off the interpreter lock, and takes
    landing together (a level of chains, all in flight at once) are each chain's
    critical path. It waits `_YIELD_SECONDS` at most, so that work beside this render's
    (a batch sharing the executor) never starves it.
    """

    def __init__(self, loaded: LoadedStoryboard, plan: Plan, work: Path, quality: str, *,
                 quiet: Callable[[float], bool] = lambda timeout: True):
        from concurrent.futures import ThreadPoolExecutor

        from .select.units import build_units

        self.loaded, self.plan, self.work, self.quality = loaded, plan, work, quality
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="assemble-ahead",
                                       initializer=_lower_priority)
        self.encoder = ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="encode-ahead",
                                          initializer=_lower_priority)
        self.units = build_units(plan)
        self.takes: dict[str, StoredTake | None] = {s.id: None for s in plan.shots}
        self.waiting: dict[int, StoredTake] = {}  # unit -> its take, until the chained one after it
        self.started: set[tuple[int, int, int, bool]] = set()
        self.encodings: dict[str, Future[StoredTake]] = {}
        self.lock = threading.RLock()  # an encode done already calls back at once
        self.given_up = False
        self.quiet = quiet
        self.abandoned = threading.Event()  # the render failed: nothing more is started
        self.heard: set[int] = set()  # units whose choice is known here
        self.warnings: list[str] = []  # what its pieces met (`prerender`), said once they are done

    def decided(self, index: int, candidate: Candidate) -> None:
        from .select.join import blend_length

        unit = self.units[index]
        if len(unit.shot.segments) != 1 or unit.is_keyframe or self.given_up:
            return
        with self.lock:
            if index in self.heard:
                return
            self.heard.add(index)
            if not candidate.take.encoded:  # needed as a file whether it waits or not
                self._encode_ahead(candidate.take)
            # A shot a chained shot continues shows its end cross-faded into that shot's
            # first frames (`join.shot_takes`): it waits for them, and is left to the
            # assembly when there is a fade.
            condition = unit.condition
            earlier = self.waiting.pop(condition, None) if condition is not None else None
            if earlier is not None and not blend_length(candidate.take, self.loaded.blend(unit.shot.id),
                                                        earlier.frames):
                assert condition is not None
                self._place(self.units[condition].shot.id, earlier)
            following = unit.following
            if following is not None and self.units[following].condition == index \
                    and self._may_fade_into(self.units[following]):
                self.waiting[index] = candidate.take
            else:
                self._place(unit.shot.id, candidate.take)
            self._prerender()

    def _may_fade_into(self, unit: Unit) -> bool:
        """Whether a chained unit's join may be cross-faded (its engine keeps leads and
        the shot blends), so the take before it waits for it."""
        from .engines import engine_class

        return self.loaded.blend(unit.shot.id) != 0 and engine_class(unit.shot.engine).CAPABILITIES.keeps_lead

    def _place(self, shot_id: str, take: StoredTake) -> None:
        """Puts a shot's take in the cut; a grade's pieces wait for its encode."""
        self.takes[shot_id] = take
        if not take.encoded:
            self._encode_ahead(take).add_done_callback(lambda done: self._encoded(shot_id, take.id, done))

    def _encode_ahead(self, take: StoredTake) -> Future[StoredTake]:
        if take.id not in self.encodings:
            self.encodings[take.id] = self.encoder.submit(self._when_quiet, self._encode_yielding, take)
        return self.encodings[take.id]

    def _encode_yielding(self, take: StoredTake) -> StoredTake:
        """Encodes a grade, pausing between frames whenever takes are being stored and
        scored (a lower priority does not keep its thread off the interpreter lock: an
        encode run through a level's takes doubled their storing time), for
        `_YIELD_SECONDS` in all at most."""
        assert take.store is not None, "a graded take is encoded in its store"
        deadline = time.monotonic() + _YIELD_SECONDS

        def between_frames() -> None:
            while not self.abandoned.is_set() and time.monotonic() < deadline and not self.quiet(0.25):
                pass

        return take.store.encode(take, between_frames=between_frames)

    def _encoded(self, shot_id: str, take_id: str, encoding: Future[StoredTake]) -> None:
        if encoding.cancelled() or encoding.exception() is not None:
            return  # the assembly meets the same problem and reports it
        with self.lock:
            placed = self.takes.get(shot_id)
            if placed is not None and placed.id == take_id and not self.given_up:
                self.takes[shot_id] = encoding.result()
                self._prerender()

    def _prerender(self) -> None:
        """Submits every piece whose takes are known and files (under `lock`)."""
        from .assemble import prerender

        shown = {shot: take if take is not None and take.encoded else None
                 for shot, take in self.takes.items()}
        cut, _ = _cut_spec(self.loaded, None, self.loaded, self.plan, shown, self.quality)
        known = [shown[s.id] is not None for s in self.plan.shots]
        try:
            prerender(cut, known, workdir=self.work, started=self.started, warnings=self.warnings,
                      submit=lambda piece: self.pool.submit(self._when_quiet, piece))
        except (StitchError, OSError, ValueError):
            # Working ahead is an optimisation: the assembly meets the same problem
            # and reports it where it belongs. The chain's walk goes on.
            self.given_up = True

    def _when_quiet(self, work: Callable[..., T], *args: Any) -> T:
        from concurrent.futures import CancelledError

        deadline = time.monotonic() + _YIELD_SECONDS
        while not self.abandoned.is_set() and not self.quiet(0.25) and time.monotonic() < deadline:
            pass
        if self.abandoned.is_set():
            raise CancelledError()
        return work(*args)

    def finish(self, chosen: Sequence[Candidate]) -> None:
        """Hears the choices of the whole cut (the search's, one per unit) that no walk
        ahead told yet: a chain's last choice, made by its walk and by the search from
        the same scores, often reached the search first, and the cut went on without its
        encode and pieces started here. Call before `close`."""
        for index, candidate in enumerate(chosen):
            self.decided(index, candidate)

    def close(self, *, failed: bool = False) -> None:
        """Drops the pieces not started (the assembly renders them) and lets the one in
        progress finish beside what comes next (the assembly waits for it if it gets
        there first: see `join`); lets the encodes finish (the assembly needs them)
        unless the render `failed`, and then waits for the piece too."""
        if failed:
            self.abandoned.set()
        self.encoder.shutdown(wait=True, cancel_futures=failed)
        self.pool.shutdown(wait=failed, cancel_futures=True)

    def join(self) -> None:
        """Waits for the piece left in progress by `close`."""
        self.pool.shutdown(wait=True)


# The longest a job of `_EarlyAssembly` waits for the generator's CPU workers to idle.
_YIELD_SECONDS = 20.0


def _lower_priority() -> None:
    """Lowers this thread's CPU priority (and that of the processes it starts), where
    the system allows it (Linux: niceness is per thread and inherited by children)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    except (AttributeError, OSError):
        pass


# --- manifest and report ----------------------------------------------------------------

def _write_manifest(loaded: LoadedStoryboard, cuts: list[tuple[Variant | None, Selection, LoadedStoryboard]],
                    outputs: list[RenderedCut], store: TakeStore, book: Any, options: RenderOptions,
                    warnings: list[str], generator: Generator, timings: dict[str, float],
                    thumbnails: dict[str, list[bytes]],
                    fallbacks: list[dict[str, str]]) -> tuple[Path, Path]:
    records = [CutRecord(variant=variant.name if variant else None, output=str(output.path),
                         frames=output.frames, duration=output.duration,
                         size=f"{output.width}x{output.height}", shots=_shot_records(selection),
                         weak_seams=selection.weak_seams)
               for (variant, selection, _), output in zip(cuts, outputs, strict=True)]
    main = records[0]
    manifest = Manifest(
        storyboard=str(loaded.path), title=loaded.storyboard.title, quality=options.quality,
        fps=str(cuts[0][1].plan.fps), output=main.output, cache=str(store.root), shots=main.shots,
        weak_seams=main.weak_seams, seam_threshold=loaded.storyboard.scoring.seam_threshold,
        drift=_drift_curve(cuts[0][1]), variants=records[1:], warnings=warnings,
        scoring=book.stats(), takes_generated=generator.generated, takes_reused=generator.reused,
        timings=timings, cost=_spent(records), fallbacks=fallbacks)
    path = manifest_path(outputs[0].path)
    manifest.write(path)
    from .report import write_report

    report = report_path(outputs[0].path)
    write_report(manifest.to_json(), report, thumbnails)
    return path, report


def _listed_takes(cuts: list[tuple[Variant | None, Selection, LoadedStoryboard]]) -> list[StoredTake]:
    """Every take the manifest lists for any segment of any cut: those offered, and those
    a pin set aside (each gets thumbnails in the report, and counts as used for `stitch
    cache prune`, since the shot may be pinned to it again)."""
    return [candidate.take for _, selection, _ in cuts
            for i in range(len(selection.units)) for candidate in selection.listed(i)]


def _plan(loaded: LoadedStoryboard, quality: str) -> Plan:
    return plan_storyboard(loaded, quality=quality, digests=storyboard_digests(loaded),
                           fingerprints=engine_fingerprints(loaded, quality))


def _route_unavailable(loaded: LoadedStoryboard, quality: str, fallbacks: list[dict[str, str]],
                       reporter: Reporter) -> LoadedStoryboard:
    """Moves each shot whose engine cannot run here (no key, no GPU) to its first
    fallback engine that can; shots without one are left to fail the engine check."""
    from .engines import engine_class
    from .storyboard.load import shot_engine, shot_fallbacks

    for shot in loaded.storyboard.shots:
        engine = shot_engine(loaded.storyboard, shot, quality=quality)
        available = engine_class(engine).availability(loaded.engine_settings(engine))
        if not available and shot_fallbacks(loaded.storyboard, shot, quality=quality):
            loaded = _fall_back(loaded, shot.id, engine, available.reason, quality, fallbacks, reporter)
    return loaded


def _fall_back(loaded: LoadedStoryboard, shot_id: str, engine: str, why: str, quality: str,
               fallbacks: list[dict[str, str]], reporter: Reporter,
               failure: Exception | None = None) -> LoadedStoryboard:
    """The storyboard with a shot moved to its next fallback engine that can run here,
    recorded in `fallbacks`.

    Raises:
        `failure` (or EngineUnavailable): no fallback is left to try.
    """
    from .engines import engine_class
    from .errors import EngineUnavailable
    from .storyboard.load import shot_fallbacks, with_engine

    sb = loaded.storyboard
    spec = loaded.shot(shot_id)
    tried = {engine} | {f["to"] for f in fallbacks if f["shot"] == shot_id} | \
        {f["from"] for f in fallbacks if f["shot"] == shot_id}
    for candidate in shot_fallbacks(sb, spec, quality=quality):
        if candidate in tried:
            continue
        available = engine_class(candidate).availability(loaded.engine_settings(candidate))
        if not available:
            fallbacks.append({"shot": shot_id, "from": candidate, "to": "", "reason": available.reason})
            continue
        fallbacks.append({"shot": shot_id, "from": engine, "to": candidate, "reason": why})
        reporter.warn(f"shot '{shot_id}': engine '{engine}' {'failed' if failure else 'cannot run here'} "
                      f"({why}); falling back to '{candidate}'")
        return with_engine(loaded, shot_id, candidate)
    if failure is not None:
        raise failure
    raise EngineUnavailable(f"shot '{shot_id}': engine '{engine}' cannot run here ({why}) and no "
                            "fallback engine can either")


def _hosted_budget(loaded: LoadedStoryboard, plan: Plan, store: TakeStore, options: RenderOptions,
                   cuts: list[CutPath], reporter: Reporter) -> None:
    """What the hosted takes to make will cost, said before anything is submitted.

    Raises:
        ConfigError: the estimate is above ``--max-cost``.
    """
    from .cost import estimate, previous_render
    from .generate.jobs import JobJournal

    found = estimate(loaded, plan, beam=options.beam, store=store,
                     previous=previous_render(cuts[0].path), resubmit=options.resubmit)
    for line in found.lines():
        reporter.log(line)
    if options.max_cost is not None and found.usd > options.max_cost:
        raise ConfigError(f"the hosted takes this render would make are estimated at ${found.usd:.2f}, "
                          f"over --max-cost {options.max_cost:g} ("
                          + "; ".join(found.lines()[:-1]) + "); nothing was submitted. Raise "
                          "--max-cost, lower candidates or beam, or pin takes")
    # Only a render that goes ahead forgets the cut-off and failed submissions.
    if options.resubmit:
        cleared = JobJournal(store.root / "jobs").clear_unfinished()
        if cleared:
            reporter.log(f"--resubmit: {cleared} hosted take(s) whose earlier submission was cut "
                         "off or failed will be submitted again")


def _spent(records: list[CutRecord]) -> dict[str, float]:
    """Estimated USD of the hosted takes the cuts list (`offered`: those a pin set aside
    too, which were made for it) and of those this render made rather than found in the
    cache (`made`), each take once."""
    seen: dict[str, CandidateRecord] = {}
    for record in records:
        for shot in record.shots.values():
            for segment in [*([shot.keyframe] if shot.keyframe else []), *shot.segments]:
                for candidate in segment.candidates:
                    seen.setdefault(candidate.id, candidate)
    return {"offered": round(sum(c.cost for c in seen.values()), 4),
            "made": round(sum(c.cost for c in seen.values() if not c.cached), 4),
            "billed_seconds": round(sum(c.billed_seconds for c in seen.values() if not c.cached), 3)}


def _drift_curve(selection: Selection) -> list[dict[str, Any]]:
    """Colour drift of each chained take against the first take of its chain."""
    points = []
    for i, unit in enumerate(selection.units):
        root = unit.chain_root
        drift = selection.gains[i]["raw"].get("drift") if root is not None else None
        if root is not None and drift and "delta_e" in drift:
            points.append({"shot": unit.shot.id, "segment": unit.segment.index,
                           "chain": selection.units[root].shot.id, "delta_e": round(drift["delta_e"], 3)})
    return points


def _shot_records(selection: Selection) -> dict[str, ShotRecord]:
    shots: dict[str, ShotRecord] = {}
    keyframes: dict[str, SegmentRecord] = {}
    for i, unit in enumerate(selection.units):
        chosen_id = selection.chosen[i].take.id
        if unit.is_keyframe:
            keyframes[unit.shot.id] = _segment_record(selection, i)
            continue
        entry = shots.setdefault(unit.shot.id, ShotRecord(
            engine=unit.shot.engine, kind=unit.shot.kind, start=unit.shot.start,
            frames=unit.shot.frames, transition_in=unit.shot.transition_in, chosen=chosen_id,
            take=str(selection.shot_takes[unit.shot.id].video), segments=[],
            continuity=unit.shot.continuity))
        entry.segments.append(_segment_record(selection, i))
    for shot_id, keyframe in keyframes.items():
        shots[shot_id].keyframe = keyframe
    return shots


def _segment_record(selection: Selection, i: int) -> SegmentRecord:
    """A unit's candidates, scores and failures as the manifest records them. A unit a
    pin narrowed lists every take made for it, in the engine's order (the numbers
    `stitch takes` shows and a pin counts in); those the pin set aside were not scored."""
    unit = selection.units[i]
    chosen_id = selection.chosen[i].take.id  # encoded by now (a runner-up may be a grade only)
    scores = {c.take.id: score for c, score in zip(selection.offered[i], selection.scored[i], strict=True)}
    candidates = []
    for candidate in selection.listed(i):
        take = candidate.take
        made = take.meta.get("meta", {})
        score = scores.get(take.id)  # None: set aside by a pin
        judged: dict[str, Any] = {"scored": False} if score is None else {
            "scored": bool(score["parts"]), "score": round(score["score"], 4),
            "components": score["parts"], "details": score["raw"], "seams": score["seams"]}
        candidates.append(CandidateRecord(
            id=take.id, engine=take.engine, seed=candidate.seed, label=take.label,
            path=str(take.video) if take.encoded or take.id == chosen_id else "",
            frames=take.frames, cached=candidate.reused,
            source=made.get("source"), short_by_frames=made.get("short_by_frames", 0),
            provider=made.get("provider"), job=made.get("job"),
            billed_seconds=float(made.get("billed_seconds", 0.0)), cost=float(made.get("cost", 0.0)),
            **judged))
    failed = [FailedRecord(f.seed, f.meta.get("engine", unit.shot.engine), f.reason, f.meta.get("job"))
              for f in (selection.failed[i] if selection.failed else [])]
    return SegmentRecord(unit.segment.index, unit.segment.hash, selection.chosen[i].take.id,
                         candidates, failed, selection.set_aside[i] if selection.set_aside else [])
