"""What a render will cost at hosted providers, before it starts.

A hosted take is billed by the seconds the provider generates: the shortest duration
the model offers that holds the segment (and the frame it starts from, for a chained
one). The estimate counts every take the render may submit:

- each segment's candidates;
- a chained segment once per partial cut the beam keeps (up to ``beam`` times its
  candidates), since each continues from a different take;
- less the takes the take store already holds (independent segments, by take id), and
  the chained segments whose every candidate of the last render is still stored.

Rerolls (``--reroll``) ask for more and are not counted: the estimate says so. The
figures are estimates from each engine's `price_per_second` (its published price, or
the storyboard's ``price_per_second``) and typical job time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .load import LoadedStoryboard
    from .plan import Plan
    from .store import TakeStore


@dataclass
class EngineCost:
    """One hosted engine's share of a render.

    Attributes:
        engine, model: Which model.
        takes: Takes to submit (cached ones left out).
        cached: Takes the store already holds.
        seconds: Generated (billed) seconds of the takes to submit.
        usd: Their estimated price.
        minutes: Estimated wall time of its jobs, `max_concurrent` at once.
        price_per_second: The price used.
    """

    engine: str
    model: str
    takes: int = 0
    cached: int = 0
    seconds: float = 0.0
    usd: float = 0.0
    minutes: float = 0.0
    price_per_second: float = 0.0


@dataclass
class CostEstimate:
    engines: list[EngineCost] = field(default_factory=list)
    beam: int = 1

    @property
    def usd(self) -> float:
        return round(sum(e.usd for e in self.engines), 2)

    def to_json(self) -> dict[str, Any]:
        import dataclasses

        return {"usd": self.usd, "beam": self.beam, "rerolls_not_counted": True,
                "engines": [dataclasses.asdict(e) for e in self.engines]}

    def lines(self) -> list[str]:
        """One line per hosted engine, then the total."""
        out = [f"{e.engine} ({e.model}): {e.takes} takes to make, {e.seconds:g} s generated, "
               f"~${e.usd:.2f} at ${e.price_per_second:g}/s, ~{e.minutes:.0f} min"
               + (f" ({e.cached} already in the cache)" if e.cached else "") for e in self.engines]
        if self.engines:
            out.append(f"estimated hosted cost: ${self.usd:.2f} (rerolls not counted)")
        return out


def estimate(loaded: LoadedStoryboard, plan: Plan, *, beam: int | None = None,
             store: TakeStore | None = None, previous: dict[str, list[str]] | None = None) -> CostEstimate:
    """The hosted takes a render of `plan` may submit, and their price.

    Args:
        beam: The beam width (default: the storyboard's).
        store: The take store, to leave out the takes it holds.
        previous: Segment hash -> take ids the last render offered (from its manifest),
            to leave out chained segments whose takes are all stored.
    """
    from .engines import engine_class
    from .engines.hosted.base import HostedEngine
    from .generate import candidate_seeds
    from .plan import take_id

    width = beam or loaded.storyboard.scoring.beam
    fps = float(plan.fps)
    costs: dict[str, EngineCost] = {}
    for shot in plan.shots:
        cls = engine_class(shot.engine)
        if not issubclass(cls, HostedEngine):
            continue
        settings = loaded.engine_settings(shot.engine)
        model = cls.model_for(settings)
        price = cls.price_per_second(settings)
        cost = costs.setdefault(shot.engine, EngineCost(shot.engine, model, price_per_second=price))
        for segment in shot.segments:
            per_take = cls.billed_seconds(segment.frames, fps, model, segment.condition)
            seeds = candidate_seeds(shot, segment)
            if segment.chained:
                wanted = len(seeds) * width
                known = (previous or {}).get(segment.hash, [])
                stored = bool(known) and store is not None and all(store.get(t) for t in known)
                cached = wanted if stored else 0
            else:
                wanted = len(seeds)
                cached = sum(1 for seed in seeds
                             if store is not None and store.get(take_id(segment.hash, seed)))
            cost.takes += wanted - cached
            cost.cached += cached
            cost.seconds += (wanted - cached) * per_take
    for engine, cost in costs.items():
        cls = engine_class(engine)
        assert issubclass(cls, HostedEngine)
        settings = loaded.engine_settings(engine)
        concurrent = settings.max_concurrent if hasattr(settings, "max_concurrent") else 1
        cost.usd = round(cost.seconds * cost.price_per_second, 2)
        cost.minutes = math.ceil(cost.takes / max(1, concurrent)) * cls.TYPICAL_SECONDS / 60
    return CostEstimate(list(costs.values()), width)


def previous_takes(manifest: Any) -> dict[str, list[str]]:
    """Segment hash -> the take ids a render's manifest offered for it."""
    found: dict[str, list[str]] = {}
    cuts = [manifest.shots, *(v.shots for v in manifest.variants)]
    for shots in cuts:
        for shot in shots.values():
            for segment in shot.segments:
                found.setdefault(segment.hash, []).extend(c.id for c in segment.candidates)
    return found
