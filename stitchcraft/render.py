"""The render: plan -> generate -> score -> select -> assemble -> verify -> report.

This module wires the stages together; each stage lives in its own module. It never
prints: progress goes to a `Reporter` the caller provides.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .errors import ConfigError
from .generate import (
    Candidate,
    Conditioning,
    Generator,
    concatenate_segments,
    default_cache,
    engine_fingerprints,
    storyboard_digests,
)
from .load import LoadedStoryboard
from .plan import Plan, SegmentPlan, ShotPlan, plan_storyboard
from .select import Partial, beam_search
from .store import StoredTake, TakeStore
from .storyboard import Storyboard, Variant, parse_size


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
    """

    cache: Path | None = None
    quality: str = "final"
    variants: list[str] | None = None
    beam: int | None = None
    reroll: int = 0
    picks: dict[str, str | int] = field(default_factory=dict)


@dataclass
class Output:
    variant: str | None
    path: Path
    frames: int
    duration: float
    width: int
    height: int


@dataclass
class RenderResult:
    outputs: list[Output]
    manifest: Path
    report: Path
    generated: int
    reused: int
    warnings: list[str]
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": True,
            "outputs": [{"variant": o.variant, "path": str(o.path), "frames": o.frames,
                         "duration": o.duration, "size": f"{o.width}x{o.height}"} for o in self.outputs],
            "manifest": str(self.manifest), "report": str(self.report),
            "takes_generated": self.generated, "takes_reused": self.reused,
            "warnings": self.warnings, "seconds": round(self.seconds, 2),
        }


@dataclass
class Unit:
    """One segment in generation order, with the units it touches."""

    shot: ShotPlan
    segment: SegmentPlan
    previous: int | None      # unit just before on the timeline
    following: int | None     # unit just after on the timeline
    condition: int | None     # unit whose take it continues from
    bridge: int | None        # unit whose first frame it must end on
    chain_root: int | None    # first unit of the chain it belongs to


@dataclass
class Selection:
    """The chosen cut of one storyboard (main or variant)."""

    plan: Plan
    units: list[Unit]
    chosen: list[Candidate]
    offered: list[list[Candidate]]
    scored: list[list[dict[str, Any]]]
    gains: list[dict[str, Any]]
    shot_takes: dict[str, StoredTake]
    weak_seams: list[dict[str, Any]]


def render(loaded: LoadedStoryboard, options: RenderOptions | None = None,
           reporter: Reporter | None = None) -> RenderResult:
    """Renders a validated storyboard and its variants.

    Raises:
        StitchError: the subclasses say what failed (see `stitchcraft.errors`).
    """
    options = options or RenderOptions()
    reporter = reporter or SilentReporter()
    began = time.monotonic()
    sb = loaded.storyboard
    if options.quality not in ("final", "draft"):
        raise ConfigError(f"--quality must be final or draft, not '{options.quality}'")
    wanted = set(options.variants) if options.variants is not None else {v.name for v in sb.variants}
    unknown = wanted - {v.name for v in sb.variants}
    if unknown:
        names = ", ".join(v.name for v in sb.variants) or "none"
        raise ConfigError(f"no variant named {', '.join(sorted(unknown))} (variants: {names})")
    store = TakeStore(options.cache or default_cache(loaded))
    digests = storyboard_digests(loaded)
    reporter.stage("plan")
    plan = plan_storyboard(loaded, quality=options.quality, digests=digests,
                           fingerprints=engine_fingerprints(loaded))
    reporter.log(f"plan: {len(plan.shots)} shots, {plan.total_frames} frames "
                 f"({float(plan.total_frames / plan.fps):.2f} s) at {plan.fps} fps")
    generator = Generator(loaded, plan, store)
    # Fail fast, before loading any model: engines that cannot run, broken media.
    generator.check_engines()
    generator.preflight()
    from .scoring import ScoreBook

    book = ScoreBook(sb.scoring, store)
    warnings = list(book.warnings)
    for warning in warnings:
        reporter.warn(warning)
    # No total: footage offers every scene it finds, and rerolls add more.
    reporter.stage("generate & score")
    generator.on_take = lambda seg, take, reused: reporter.advance(
        f"{seg.shot_id}: {'cached' if reused else 'made'} {take.label or take.id[:10]}")
    try:
        main = _choose(loaded, plan, generator, book, options, reporter)
        cuts: list[tuple[Variant | None, Selection, LoadedStoryboard]] = [(None, main, loaded)]
        for variant in sb.variants:
            if variant.name not in wanted:
                continue
            derived = _variant_storyboard(loaded, variant)
            # Titles are redrawn for a frame of another size rather than cropped.
            size = parse_size(variant_output(sb, variant, loaded.base_dir, options.quality)["size"])
            title_size = size if size != sb.output.dimensions and any(
                s.kind == "title" for s in derived.storyboard.shots) else None
            if derived is loaded and title_size is None:
                cuts.append((variant, main, loaded))
                continue
            vplan = plan_storyboard(derived, quality=options.quality, digests=storyboard_digests(derived),
                                    fingerprints=engine_fingerprints(derived), title_size=title_size)
            vgen = Generator(derived, vplan, store, on_take=generator.on_take,
                             seen=generator.seen, _engines=generator._engines)
            selection = _choose(derived, vplan, vgen, book, options, reporter)
            generator.generated += vgen.generated
            generator.reused += vgen.reused
            cuts.append((variant, selection, derived))
    finally:
        generator.close()
    outputs = _assemble_all(loaded, cuts, options, reporter, warnings)
    reporter.stage("report")
    manifest_path, report_path = _write_manifest(loaded, cuts, outputs, store, book, options,
                                                 warnings, generator)
    return RenderResult(outputs=outputs, manifest=manifest_path, report=report_path,
                        generated=generator.generated, reused=generator.reused,
                        warnings=warnings, seconds=time.monotonic() - began)


# --- selection ------------------------------------------------------------------------

def build_units(plan: Plan) -> list[Unit]:
    """Segments in generation order, linked to their timeline and chain neighbours."""
    timeline = [(shot, seg) for shot in plan.shots for seg in shot.segments]
    by_key = {seg.key: i for i, (_, seg) in enumerate(timeline)}
    order = [seg.key for sid in plan.order for seg in plan.shot(sid).segments]
    index_of = {key: i for i, key in enumerate(order)}
    first_of = {shot.id: shot.segments[0].key for shot in plan.shots}
    units: list[Unit] = []
    for key in order:
        t = by_key[key]
        shot, seg = timeline[t]
        previous = index_of[timeline[t - 1][1].key] if t > 0 else None
        following = index_of[timeline[t + 1][1].key] if t + 1 < len(timeline) else None
        condition = previous if seg.chained else None
        bridge = index_of[first_of[seg.bridge_to]] if seg.bridge_to else None
        units.append(Unit(shot, seg, previous, following, condition, bridge, None))
    for unit in units:
        root = unit
        while root.condition is not None:
            root = units[root.condition]
        unit.chain_root = units.index(root) if root is not unit else None
    return units


def _choose(loaded: LoadedStoryboard, plan: Plan, generator: Generator, book: Any,
            options: RenderOptions, reporter: Reporter) -> Selection:
    sb = loaded.storyboard
    units = build_units(plan)
    width = options.beam or sb.scoring.beam
    picks = {s.id: s.pick for s in sb.shots if s.pick is not None}
    picks.update(options.picks)
    shots_by_id = {s.id: s for s in sb.shots}
    sources: dict[str, Any] = {}

    def source_of(unit: Unit, take: StoredTake) -> Any:
        from .scoring.base import FrameSource

        if take.id not in sources:
            spec = shots_by_id[unit.shot.id]
            sources[take.id] = FrameSource(
                take.id, take.video, take.frames, take.fps, prompt=spec.prompt,
                reference=loaded.resolve(spec.reference) if spec.reference else None,
                head=take.head(), tail=take.tail())
        return sources[take.id]

    def offered(partial: Partial, index: int) -> list[Candidate]:
        unit = units[index]
        chosen = _chosen_map(partial)
        conditioning = Conditioning(
            previous=chosen[unit.condition].take if unit.condition is not None else None,
            bridge=chosen[unit.bridge].take if unit.bridge is not None else None)
        candidates = generator.candidates(unit.shot, unit.segment, conditioning)
        pick = picks.get(unit.shot.id)
        return _apply_pick(candidates, pick, unit) if pick is not None else candidates

    def _chosen_map(partial: Partial) -> dict[int, Candidate]:
        return {i: cands_by_id[take] for i, take in enumerate(partial.takes)}

    cands_by_id: dict[str, Candidate] = {}
    details: dict[tuple[tuple[str, ...], str], dict[str, Any]] = {}

    def options_for(partial: Partial, index: int) -> list[tuple[str, float]]:
        unit = units[index]
        chosen = _chosen_map(partial)
        result = []
        for candidate in offered(partial, index):
            cands_by_id[candidate.take.id] = candidate
            current = source_of(unit, candidate.take)
            scores = dict(book.take_scores(current))
            seams: dict[str, Any] = {}
            # Seams are judged only where the picture is meant to continue: a chained
            # start, or a bridge's end. A cut to other content is supposed to differ.
            for neighbour, ahead in ((unit.condition, False), (unit.bridge, True)):
                if neighbour is not None and neighbour in chosen:
                    other = source_of(units[neighbour], chosen[neighbour].take)
                    pair = book.seam_scores(current, other) if ahead else book.seam_scores(other, current)
                    side = "next" if ahead else "previous"
                    seams[side] = pair
                    for name, score in pair.items():
                        scores[f"{name}:{side}"] = score
            if unit.chain_root is not None and unit.chain_root in chosen:
                root = source_of(units[unit.chain_root], chosen[unit.chain_root].take)
                scores.update(book.drift_scores(root, current))
            gain = book.combine(scores)
            details[(partial.takes, candidate.take.id)] = {
                "score": gain, "parts": {k: round(v.value, 4) for k, v in scores.items()},
                "raw": {k: v.parts for k, v in scores.items()},
                "seams": {side: book.seam_value(pair) for side, pair in seams.items()},
            }
            result.append((candidate.take.id, gain))
        return result

    rounds = 0
    while True:
        best = beam_search(len(units), options_for, width)
        chosen = [cands_by_id[t] for t in best.takes]
        gains = [details[(best.takes[:i], t)] for i, t in enumerate(best.takes)]
        weak = []
        for i, unit in enumerate(units):
            seam = gains[i]["seams"].get("previous")
            if seam is not None and seam < sb.scoring.seam_threshold and unit.condition is not None:
                weak.append({"shot": unit.shot.id, "segment": unit.segment.index,
                             "after": units[unit.condition].shot.id, "score": round(seam, 4)})
        if not weak or rounds >= options.reroll:
            break
        rounds += 1
        for seam in weak:
            key = f"{seam['shot']}#{seam['segment']}"
            shot = plan.shot(seam["shot"])
            generator.extra_seeds[key] = generator.extra_seeds.get(key, 0) + shot.candidates
            reporter.log(f"reroll {rounds}/{options.reroll}: seam {seam['after']} -> {seam['shot']} "
                         f"scored {seam['score']}, making {shot.candidates} more candidates")
    offered_final = [offered(Partial(best.takes[:i]), i) for i in range(len(units))]
    scored = [[details[(best.takes[:i], c.take.id)] for c in cands]
              for i, cands in enumerate(offered_final)]
    for seam in weak:
        reporter.warn(f"weak seam {seam['after']} -> {seam['shot']}: {seam['score']} "
                      f"(threshold {sb.scoring.seam_threshold}); try --reroll 2 or pin a take")
    shot_takes: dict[str, StoredTake] = {}
    for shot in plan.shots:
        # build_units keeps a shot's segments in order
        takes = [chosen[i].take for i, u in enumerate(units) if u.shot.id == shot.id]
        shot_takes[shot.id] = concatenate_segments(generator.store, shot, takes)
    return Selection(plan, units, chosen, offered_final, scored, gains, shot_takes, weak)


def _apply_pick(candidates: list[Candidate], pick: str | int, unit: Unit) -> list[Candidate]:
    if isinstance(pick, int) or (isinstance(pick, str) and pick.isdigit()):
        index = int(pick)
        if not 0 <= index < len(candidates):
            raise ConfigError(f"shot '{unit.shot.id}': pick {index} is out of range "
                              f"(takes 0-{len(candidates) - 1})")
        return [candidates[index]]
    matches = [c for c in candidates if c.take.id.startswith(str(pick))]
    if len(matches) != 1:
        ids = ", ".join(c.take.id[:10] for c in candidates)
        what = "matches no take" if not matches else "matches several takes"
        raise ConfigError(f"shot '{unit.shot.id}': pick '{pick}' {what} (takes: {ids})")
    return matches


# --- variants -------------------------------------------------------------------------

def _variant_storyboard(loaded: LoadedStoryboard, variant: Variant) -> LoadedStoryboard:
    """The storyboard a variant renders: shots with the variant's changes applied.

    Takes are made at the main output's size, so a variant that only reframes or
    re-captions shares every take with the main cut.
    """
    sb = loaded.storyboard
    if not variant.shots and variant.audio is None:
        return loaded
    content_keys = {"prompt", "source", "image", "title"}
    shots = []
    sources = dict(loaded.sources)
    for shot in sb.shots:
        override = variant.shots.get(shot.id)
        if override is None:
            shots.append(shot)
            continue
        fields = shot.model_dump(exclude_unset=True)
        changes = override.model_dump(include=override.model_fields_set)
        if content_keys & set(changes):
            fields = {k: v for k, v in fields.items() if k not in content_keys}
        fields.update(changes)
        if "source" in changes:
            sources[shot.id] = loaded.sources.get(f"{variant.name}/{shot.id}", [])
        shots.append(type(shot).model_validate(fields))
    update: dict[str, Any] = {"shots": shots}
    if variant.audio is not None:
        update["audio"] = variant.audio
    return LoadedStoryboard(loaded.path, sb.model_copy(update=update), loaded.located, sources)


def variant_output(sb: Storyboard, variant: Variant | None, base: Path, quality: str) -> dict[str, Any]:
    """The output settings a cut is assembled with, and its resolved path."""
    settings = sb.output.model_dump()
    if variant is not None:
        settings.update({k: v for k, v in variant.output.model_dump().items() if v is not None})
        if variant.output.path is None:
            main = Path(sb.output.path)
            settings["path"] = str(main.with_name(f"{main.stem}-{variant.name}{main.suffix}"))
    path = Path(settings["path"])
    path = path if path.is_absolute() else base / path
    if quality == "draft":
        path = path.with_name(f"{path.stem}.draft{path.suffix}")
    settings["resolved"] = path
    return settings


# --- assembly -------------------------------------------------------------------------

def _assemble_all(loaded: LoadedStoryboard, cuts: list[tuple[Variant | None, Selection, LoadedStoryboard]],
                  options: RenderOptions, reporter: Reporter, warnings: list[str]) -> list[Output]:
    from .assemble import CutClip, CutSpec, CutTransition, assemble
    from .storyboard import Output as OutputModel
    from .timeline import parse_fps

    outputs: list[Output] = []
    sb = loaded.storyboard
    work = (options.cache or default_cache(loaded)).parent / "work"
    for variant, selection, derived in cuts:
        settings = variant_output(sb, variant, loaded.base_dir, options.quality)
        out = OutputModel.model_validate({k: v for k, v in settings.items() if k != "resolved"})
        width, height = out.dimensions
        fps = parse_fps(out.fps)
        if fps != selection.plan.fps:
            raise ConfigError(f"variant '{variant.name if variant else ''}' changes the frame rate; "
                              "render a separate storyboard for another rate")
        dsb = derived.storyboard
        clips = []
        for index, shot in enumerate(selection.plan.shots):
            spec = dsb.shots[index]
            transition = spec.transition or dsb.defaults.transition
            frames = shot.fade_in if index == 0 else shot.transition_in
            kind = transition.type if frames else "cut"
            clips.append(CutClip(
                shot_id=shot.id, path=selection.shot_takes[shot.id].video, frames=shot.frames,
                transition=CutTransition(kind, frames, transition.color),
                fit=spec.fit or out.fit, text=derived.with_font_resolved(spec.caption),
                use_audio=dsb.audio.take_audio,
                volume_db=spec.volume))
        ending = None
        if dsb.ending and dsb.ending.type == "fade" and selection.plan.ending:
            ending = CutTransition("fade", selection.plan.ending, dsb.ending.color)
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
        name = variant.name if variant else "main"
        reporter.stage(f"assemble {name}", 100)
        last = [0]

        def progress(stage: str, fraction: float, _last: list[int] = last) -> None:
            step = int(fraction * 100)
            while _last[0] < step:
                _last[0] += 1
                reporter.advance(stage)

        result = assemble(cut, settings["resolved"], workdir=work, progress=progress)
        for warning in result.warnings:
            warnings.append(f"{name}: {warning}")
            reporter.warn(f"{name}: {warning}")
        reporter.log(f"wrote {result.path} ({result.frames} frames, {result.duration:.2f} s, "
                     f"{result.width}x{result.height})")
        outputs.append(Output(variant.name if variant else None, result.path, result.frames,
                              result.duration, result.width, result.height))
    return outputs


# --- manifest and report ----------------------------------------------------------------

def _write_manifest(loaded: LoadedStoryboard, cuts: list[tuple[Variant | None, Selection, LoadedStoryboard]],
                    outputs: list[Output], store: TakeStore, book: Any, options: RenderOptions,
                    warnings: list[str], generator: Generator) -> tuple[Path, Path]:
    from .media import atomic_output

    main_output = outputs[0].path
    cut_data = []
    for (variant, selection, _), output in zip(cuts, outputs, strict=True):
        cut_data.append({
            "variant": variant.name if variant else None,
            "output": str(output.path), "frames": output.frames, "duration": output.duration,
            "size": f"{output.width}x{output.height}",
            "shots": _shots_manifest(selection),
            "weak_seams": selection.weak_seams,
        })
    main = cut_data[0]
    data = {
        "stitchcraft": 1,
        "storyboard": str(loaded.path),
        "title": loaded.storyboard.title,
        "quality": options.quality,
        "fps": str(cuts[0][1].plan.fps),
        "output": str(main_output),
        "cache": str(store.root),
        "shots": main["shots"],
        "weak_seams": main["weak_seams"],
        "seam_threshold": loaded.storyboard.scoring.seam_threshold,
        "drift": _drift_curve(cuts[0][1]),
        "variants": cut_data[1:],
        "warnings": warnings,
        "scoring": book.stats() if hasattr(book, "stats") else {},
        "takes_generated": generator.generated,
        "takes_reused": generator.reused,
    }
    manifest = main_output.parent / "manifest.json"
    with atomic_output(manifest) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=str))
    from .report import write_report

    report_path = main_output.parent / "report.html"
    write_report(data, report_path)
    return manifest, report_path


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


def _shots_manifest(selection: Selection) -> dict[str, Any]:
    shots: dict[str, Any] = {}
    for i, unit in enumerate(selection.units):
        entry = shots.setdefault(unit.shot.id, {
            "engine": unit.shot.engine, "kind": unit.shot.kind, "start": unit.shot.start,
            "frames": unit.shot.frames, "transition_in": unit.shot.transition_in,
            "chosen": None, "take": str(selection.shot_takes[unit.shot.id].video),
            "segments": [],
        })
        chosen_id = selection.chosen[i].take.id
        candidates = []
        for candidate, score in zip(selection.offered[i], selection.scored[i], strict=True):
            take = candidate.take
            record = {
                "id": take.id, "engine": take.engine, "seed": candidate.seed, "label": take.label,
                "path": str(take.video), "frames": take.frames, "cached": candidate.reused,
                "source": take.meta.get("meta", {}).get("source"),
                "score": round(score["score"], 4), "components": score["parts"],
                "details": score["raw"], "seams": score["seams"],
            }
            candidates.append(record)
        entry["segments"].append({"index": unit.segment.index, "hash": unit.segment.hash,
                                  "chosen": chosen_id, "candidates": candidates})
        if unit.segment.index == 0:
            entry["chosen"] = chosen_id
    return shots

