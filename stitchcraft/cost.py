"""What a render will cost at hosted providers, before it starts.

A hosted take is billed as its engine's `HostedEngine.bill` says, the same answer the
render records in the manifest: usually the shortest duration the model offers that
holds the segment (and the frame it starts from, for a chained one) at the model's price
for its ``input:`` settings, but some models ask longer takes (Veo at 1080p or with
reference images makes 8 s) or bill a minimum. A keyframe made by a hosted image engine
(`ImageEngine.bill`) is billed per image, at the size the plan makes it. The estimate
counts every take the render may submit, in the units the select stage walks
(`select.units.build_units`: a shot's keyframe, then its segments):

- each segment's candidates, and each keyframe's stills;
- a segment made from a take chosen before it (chained, bridged, or animating the
  shot's keyframe) once per partial cut it is generated from (`plan.beam_takes`: up
  to ``beam`` times its candidates, ``scoring.beam_generate`` times when that is set,
  and never more than the distinct takes it can continue from), since each starts
  from a different take;
- less the takes the take store already holds (independent segments and keyframes, by
  take id), and the segments made from a choice whose every candidate of the last
  render is still stored;
- less the takes an earlier render already submitted (independent segments and
  keyframes with an entry in the job journal): a job still running is collected, not paid for again, and
  one that failed or was cut off while submitting is not submitted again, unless
  ``resubmit`` (``--resubmit``) says it will be.

Rerolls (``--reroll``) ask for more and are not counted: the estimate says so. The
figures are estimates from each engine's published prices (or the storyboard's
``price_per_second``) and typical job time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .engines.hosted.base import Bill, HostedEngine
    from .plan import Plan
    from .select.units import Unit
    from .store import TakeStore
    from .storyboard import EngineSettings
    from .storyboard.load import LoadedStoryboard


@dataclass
class EngineCost:
    """One hosted engine's share of a render.

    Attributes:
        engine, model: Which model.
        takes: Takes to submit (cached ones left out); for an image engine, stills.
        cached: Takes the store already holds.
        submitted: Takes an earlier render submitted (running, finished or refused):
            collected or left as they are, never paid for again.
        seconds: Generated (billed) seconds of the takes to submit (0 for images).
        usd: Their estimated price.
        minutes: Estimated wall time of its jobs, `max_concurrent` at once.
        price_per_second: USD per billed second (the mean over its takes to make).
        price_per_image: For an image engine, USD per still (the mean over its stills
            to make); None for a video engine.
    """

    engine: str
    model: str
    takes: int = 0
    cached: int = 0
    submitted: int = 0
    seconds: float = 0.0
    usd: float = 0.0
    minutes: float = 0.0
    price_per_second: float = 0.0
    price_per_image: float | None = None


@dataclass
class CostEstimate:
    engines: list[EngineCost] = field(default_factory=list)
    beam: int = 1
    beam_generate: int | None = None

    @property
    def usd(self) -> float:
        return round(sum(e.usd for e in self.engines), 2)

    def to_json(self) -> dict[str, Any]:
        import dataclasses

        return {"usd": self.usd, "beam": self.beam, "beam_generate": self.beam_generate,
                "rerolls_not_counted": True,
                "engines": [dataclasses.asdict(e) for e in self.engines]}

    def lines(self) -> list[str]:
        """One line per hosted engine, then the total."""
        out = [f"{e.engine} ({e.model}): "
               + (f"{e.takes} keyframe stills to make, ~${e.usd:.2f} at ${e.price_per_image:g}/image"
                  if e.price_per_image is not None else
                  f"{e.takes} takes to make, {e.seconds:g} s generated, ~${e.usd:.2f} at "
                  f"${e.price_per_second:g}/s")
               + (", <1 min" if 0 < e.minutes < 0.5 else f", ~{e.minutes:.0f} min")
               + (f" ({e.cached} already in the cache)" if e.cached else "")
               + (f" ({e.submitted} submitted by an earlier render, not paid for again)"
                  if e.submitted else "") for e in self.engines]
        if self.engines:
            out.append(f"estimated hosted cost: ${self.usd:.2f} (rerolls not counted)")
        return out


def estimate(loaded: LoadedStoryboard, plan: Plan, *, beam: int | None = None,
             store: TakeStore | None = None, previous: dict[str, list[str]] | None = None,
             resubmit: bool = False) -> CostEstimate:
    """The hosted takes a render of `plan` may submit, and their price.

    Args:
        beam: The beam width (default: the storyboard's).
        store: The take store, to leave out the takes it holds and those its job journal
            says were submitted already.
        previous: Segment hash -> take ids the last render offered (from its manifest),
            to leave out the segments made from a choice whose takes are all stored.
        resubmit: Count the journal's cut-off and failed submissions as takes to make.
    """
    from .engines import engine_class
    from .engines.hosted.base import HostedEngine
    from .engines.hosted.images import ImageEngine
    from .generate import candidate_seeds
    from .generate.jobs import JobJournal
    from .plan import beam_takes, take_id
    from .select.units import build_units

    width = beam or loaded.storyboard.scoring.beam
    made = beam_takes(plan, width, loaded.storyboard.scoring.beam_generate)
    journal = JobJournal(store.root / "jobs") if store is not None else None
    # Journal states whose take this render will not submit (nor pay for) again.
    settled = {"submitted", "downloaded"} | (set() if resubmit else {"submitting", "failed"})
    costs: dict[str, EngineCost] = {}
    for unit in build_units(plan):
        shot, segment = unit.shot, unit.segment
        cls = engine_class(shot.engine)
        if not issubclass(cls, HostedEngine):
            continue
        settings = loaded.engine_settings(shot.engine)
        cost = costs.setdefault(shot.engine, EngineCost(shot.engine, cls.model_for(settings)))
        bill = job_bill(loaded, plan, unit, cls, settings)
        seeds = candidate_seeds(shot, segment)
        submitted = 0
        if unit.made_from_choice:  # made per partial cut, from takes not chosen yet
            wanted = made[segment.key]
            known = (previous or {}).get(segment.hash, [])
            stored = bool(known) and store is not None and all(store.get(t) for t in known)
            cached = wanted if stored else 0
        else:
            wanted = len(seeds)
            takes = [take_id(segment.hash, seed) for seed in seeds]
            held = [t for t in takes if store is not None and store.get(t)]
            cached = len(held)
            submitted = sum(1 for t in takes if t not in held and journal is not None
                            and journal.read(t).get("state") in settled)
        cost.takes += wanted - cached - submitted
        cost.cached += cached
        cost.submitted += submitted
        cost.seconds += (wanted - cached - submitted) * bill.billed_seconds
        cost.usd += (wanted - cached - submitted) * bill.usd
        if issubclass(cls, ImageEngine) and cost.price_per_image is None:
            cost.price_per_image = bill.usd  # until the mean over the stills to make is known
    for engine, cost in costs.items():
        cls = engine_class(engine)
        assert issubclass(cls, HostedEngine)
        settings = loaded.engine_settings(engine)
        concurrent = settings.max_concurrent if hasattr(settings, "max_concurrent") else 1
        cost.price_per_second = round(cost.usd / cost.seconds, 4) if cost.seconds else \
            cls.price_per_second(settings)
        if cost.price_per_image is not None and cost.takes:
            cost.price_per_image = round(cost.usd / cost.takes, 4)
        cost.seconds = round(cost.seconds, 3)
        cost.usd = round(cost.usd, 2)
        cost.minutes = math.ceil(cost.takes / max(1, concurrent)) * cls.TYPICAL_SECONDS / 60
    return CostEstimate(list(costs.values()), width, loaded.storyboard.scoring.beam_generate)


def job_bill(loaded: LoadedStoryboard, plan: Plan, unit: Unit, cls: type[HostedEngine],
             settings: EngineSettings) -> Bill:
    """What one take of `unit` is billed: the bill the engine's job for it carries
    (`HostedEngine.job_for`, `ImageEngine.job_for`), asked of the same inputs.

    A keyframe's still is one image at the keyframe's size, with reference images when
    the shot's references condition it. A segment asks the seconds its frames need; it
    starts from an image when it continues a take, animates the shot's image or
    keyframe; it carries references when they go to its engine (`cast.route_references`).
    """
    from .engines.hosted.images import ImageEngine

    shot, segment = unit.shot, unit.segment
    route = loaded.reference_route(shot.id, quality=plan.quality)
    if unit.is_keyframe:
        conditioned = route.to == "keyframe"
        if issubclass(cls, ImageEngine):
            return cls.bill(settings, 0.0, references=conditioned, size=(shot.width, shot.height))
        return cls.bill(settings, 0.0, references=conditioned)  # a plug-in's own image engine
    seconds = cls.wanted_seconds(segment.frames, float(plan.fps), segment.condition)
    starts_from_image = bool(segment.condition) or shot.kind == "image" or unit.keyframe is not None
    return cls.bill(settings, seconds, image=starts_from_image, references=route.to == "engine")


def previous_render(cut: Path) -> dict[str, list[str]]:
    """Segment hash -> the take ids the last render of main cut `cut` offered, from the
    manifest beside it (empty when there is none or it cannot be read)."""
    from .errors import InputError
    from .outputs import manifest_path
    from .report.manifest import Manifest

    path = manifest_path(cut)
    if not path.is_file():
        return {}
    try:
        return previous_takes(Manifest.read(path))
    except InputError:
        return {}


def previous_takes(manifest: Any) -> dict[str, list[str]]:
    """Segment hash -> the take ids a render's manifest lists for it (a pin's set-aside ones too)."""
    found: dict[str, list[str]] = {}
    cuts = [manifest.shots, *(v.shots for v in manifest.variants)]
    for shots in cuts:
        for shot in shots.values():
            for segment in shot.segments:
                found.setdefault(segment.hash, []).extend(c.id for c in segment.candidates)
    return found
