"""Choosing the cut: candidates asked for early, scored as they arrive, searched by beam.

The stage, in order:

1. Every unit whose inputs are already known (it continues from nothing) is asked for
   at once, so the engines work through them while the search waits on others.
2. The beam search walks the units in generation order. Before extending its partial
   cuts with a unit it asks for that unit's candidates under every partial cut's
   conditioning (chained units are on the critical path, so they jump the queue; they
   extend only the best ``scoring.beam_generate`` partial cuts when it is set),
   then scores each candidate: take scores were mostly made on a CPU worker while the
   frames were still in memory; seams and drift need the chosen neighbours.
3. Weak chained seams are rerolled (more candidates) up to ``--reroll`` rounds.
4. Pins (`pick:` and `stitch pick`) narrow a shot to one take.

The choice depends only on the candidates and their scores, never on the order in
which engines finished, so the same storyboard and seeds give the same cut.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ..engines.base import TakeFailure
from ..errors import ConfigError
from ..generate import Candidate, Conditioning, Generator
from ..plan import Plan, SegmentPlan
from ..store import StoredTake
from .beam import Partial, beam_search
from .join import shot_takes
from .units import Unit, build_units

if TYPE_CHECKING:
    from ..scoring import ScoreBook
    from ..scoring.base import FrameSource
    from ..storyboard.load import LoadedStoryboard

# Lowest first: chained units (the critical path), then independent ones, by position.
CHAINED, INDEPENDENT = 0, 1


class Log(Protocol):
    def log(self, message: str) -> None: ...
    def warn(self, message: str) -> None: ...


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
    failed: list[list[TakeFailure]] = field(default_factory=list)
    set_aside: list[list[str]] = field(default_factory=list)  # per unit: takes made, not offered (a pin)
    # Per unit a pin narrowed: every take made for it, in the engine's order (the order a
    # pin's number counts in); empty for the others, whose takes are all offered.
    made: list[list[Candidate]] = field(default_factory=list)

    def listed(self, unit: int) -> list[Candidate]:
        """Every take made for a unit, in the engine's order: those offered, and those a
        pin set aside (what the manifest lists)."""
        return self.made[unit] if self.made and self.made[unit] else self.offered[unit]


@dataclass
class CutChooser:
    """Chooses the takes of one storyboard's cut.

    Attributes:
        loaded: The storyboard (main or a variant's).
        plan: Its plan.
        generator: Makes and finds candidates.
        book: Scores them.
        width: Beam width.
        reroll: Rounds of new candidates for weak chained seams.
        picks: Shot id -> pinned take (index or take id prefix).
        log: Where rerolls and weak seams are reported.
        on_decided: Called (on a chain's thread) with each unit's index and candidate as
            soon as a walk ahead knows it will be chosen (beam 1, no rerolls: the choice
            the search then makes), so that work downstream (assembling its pieces) can
            start before the whole cut is chosen.
    """

    loaded: LoadedStoryboard
    plan: Plan
    generator: Generator
    book: ScoreBook
    width: int
    reroll: int
    picks: dict[str, str | int]
    log: Log
    on_decided: Callable[[int, Candidate], None] | None = None
    units: list[Unit] = field(init=False)
    _sources: dict[str, FrameSource] = field(default_factory=dict)
    _candidates: dict[str, Candidate] = field(default_factory=dict)
    _pinned_from: dict[int, list[Candidate]] = field(default_factory=dict)
    _details: dict[tuple[tuple[str, ...], str], dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.units = build_units(self.plan)
        self._specs = {s.id: s for s in self.loaded.storyboard.shots}
        self._by_key = {u.segment.key: u for u in self.units}
        self.generator.on_stored = self._score_in_memory
        self.generator.scored = lambda segment, offered: not self._alone(self._by_key[segment.key],
                                                                         offered)

    def choose(self) -> Selection:
        """Runs the stage (see the module docstring) and returns the chosen cut."""
        sb = self.loaded.storyboard
        self._ask_independent()
        rounds = 0
        while True:
            best = beam_search(len(self.units), self._options, self.width, self._ask_for_beams,
                               extended=self._extended())
            chosen = [self._candidates[t] for t in best.takes]
            gains = [self._details[(best.takes[:i], t)] for i, t in enumerate(best.takes)]
            weak = self._weak_seams(gains)
            if not weak or rounds >= self.reroll:
                break
            rounds += 1
            for seam in weak:
                key = f"{seam['shot']}#{seam['segment']}"
                shot = self.plan.shot(seam["shot"])
                self.generator.extra_seeds[key] = self.generator.extra_seeds.get(key, 0) + shot.candidates
                self.log.log(f"reroll {rounds}/{self.reroll}: seam {seam['after']} -> {seam['shot']} "
                             f"scored {seam['score']}, making {shot.candidates} more candidates")
        offered = [self._offered(Partial(best.takes[:i]), i) for i in range(len(self.units))]
        scored = [[self._details[(best.takes[:i], c.take.id)] for c in cands]
                  for i, cands in enumerate(offered)]
        for seam in weak:
            self.log.warn(f"weak seam {seam['after']} -> {seam['shot']}: {seam['score']} "
                          f"(threshold {sb.scoring.seam_threshold}); try --reroll 2 or pin a take")
        shown = shot_takes(self.generator.store, self.plan, self.units, [c.take for c in chosen],
                           self.loaded.blend)
        failed = [sorted(self.generator.failures.get(u.segment.key, {}).values(), key=lambda f: f.seed)
                  for u in self.units]
        made = [self._pinned_from.get(i, []) for i in range(len(self.units))]
        set_aside = [[c.take.id for c in everything if c.take.id not in {o.take.id for o in offered[i]}]
                     for i, everything in enumerate(made)]
        return Selection(self.plan, self.units, chosen, offered, scored, gains, shown, weak, failed,
                         set_aside, made)

    # -- asking for candidates -----------------------------------------------------------

    def _ask_independent(self) -> None:
        """Queues every unit that continues from nothing: its inputs are known now. With
        a beam of 1, each chain is also walked ahead on its own (see `_walk_chain`)."""
        roots = []
        for index, unit in enumerate(self.units):
            if not unit.made_from_choice:
                self.generator.request(unit.shot, unit.segment, Conditioning(), (INDEPENDENT, index))
                roots.append(index)
        if self.width == 1 and not self.generator.extra_seeds:
            continued = {u.joined for u in self.units if u.joined is not None and u.bridge is None}
            continued |= {u.keyframe for u in self.units if u.keyframe is not None and u.bridge is None}
            for index in roots:
                if self.units[index].match is not None:
                    continue  # its choice waits on the take it matches: that one's walk goes on to it
                if index in continued or self.on_decided is not None:
                    threading.Thread(target=self._walk_chain, args=(index,), daemon=True,
                                     name=f"chain-{self.units[index].shot.id}").start()

    def _walk_chain(self, root: int) -> None:
        """Asks for a chain's segments as soon as the take each continues from is known,
        instead of when the search, walking the whole timeline in order, reaches them.

        With a beam of 1 the search keeps, at every unit, its best candidate given the
        takes chosen before; a chain's first unit judges no seam, and each later one only
        its chain's, so the chain's choices are known from its own candidates: the same
        choices the search makes (it then finds these requests already made). A unit
        that matches the one just walked (``continuity: match``) judges only that seam, so
        the walk goes on into it and the chain after it. Stops at a pin, a bridge, or any
        failure, which the search meets and reports itself.
        """
        chosen: dict[int, Candidate] = {}
        index = root
        try:
            while True:
                unit = self.units[index]
                candidates = self._offered_under(chosen, index)
                gains = []
                for candidate in candidates:
                    scores, _ = self._score(chosen, unit, candidate, alone=len(candidates) == 1)
                    gains.append(self.book.combine(scores))
                chosen[index] = candidates[gains.index(max(gains))]
                if self.on_decided is not None and self.reroll == 0:
                    self.on_decided(index, chosen[index])
                following = unit.following
                if following is None or not self._walks_into(self.units[following], index, chosen):
                    return
                index = following
        except Exception:  # the search asks again, and reports it
            return

    @staticmethod
    def _walks_into(unit: Unit, index: int, chosen: dict[int, Candidate]) -> bool:
        """Whether a walk that just chose unit `index` goes on into `unit`: it continues
        that unit (chain, match, keyframe), ends on nothing ahead, and everything else it
        is judged or made from is chosen on this walk, so its choice is the search's."""
        inputs = [n for n in (unit.joined, unit.keyframe, unit.chain_root) if n is not None]
        return (index in (unit.joined, unit.keyframe) and unit.bridge is None
                and all(n in chosen for n in inputs))

    def _offered_under(self, chosen: dict[int, Candidate], index: int) -> list[Candidate]:
        unit = self.units[index]
        previous = chosen[unit.condition].take if unit.condition is not None else None
        root = chosen[unit.chain_root].take if unit.chain_root is not None else None
        still = chosen[unit.keyframe].take if unit.keyframe is not None else None
        candidates = self.generator.candidates(unit.shot, unit.segment,
                                               Conditioning(previous=previous, anchor=root, keyframe=still),
                                               self._priority(unit, index))
        for candidate in candidates:
            self._candidates[candidate.take.id] = candidate
        pick = self.picks.get(unit.pick_key)
        return apply_pick(candidates, pick, unit) if pick is not None else candidates

    def _extended(self) -> list[int | None]:
        """Per unit, how many of the beam's best partial cuts it extends: a unit whose
        takes depend on the cut so far (chained, bridged) is made from at most
        ``scoring.beam_generate`` of them; the rest are not extended by it."""
        most = self.loaded.storyboard.scoring.beam_generate
        return [most if unit.made_from_choice else None
                for unit in self.units]

    def _ask_for_beams(self, beams: Sequence[Partial], index: int) -> None:
        """Queues a unit's candidates under every partial cut it extends (the beam
        search passes only those) before waiting for any."""
        unit = self.units[index]
        for partial in beams:
            self.generator.request(unit.shot, unit.segment, self._conditioning(partial, unit),
                                   self._priority(unit, index))

    def _offered(self, partial: Partial, index: int) -> list[Candidate]:
        unit = self.units[index]
        candidates = self.generator.candidates(unit.shot, unit.segment,
                                               self._conditioning(partial, unit), self._priority(unit, index))
        pick = self.picks.get(unit.pick_key)
        if pick is None:
            return candidates
        self._pinned_from[index] = candidates
        return apply_pick(candidates, pick, unit)

    def _conditioning(self, partial: Partial, unit: Unit) -> Conditioning:
        def chosen(index: int | None) -> StoredTake | None:
            return self._candidates[partial.takes[index]].take if index is not None else None

        return Conditioning(previous=chosen(unit.condition), bridge=chosen(unit.bridge),
                            anchor=chosen(unit.chain_root), keyframe=chosen(unit.keyframe))

    @staticmethod
    def _priority(unit: Unit, index: int) -> tuple[int, int]:
        return (CHAINED if unit.made_from_choice else INDEPENDENT, index)

    # -- scoring ---------------------------------------------------------------------------

    def _options(self, partial: Partial, index: int) -> list[tuple[str, float]]:
        """Each candidate of unit `index` after `partial`, with the score it adds."""
        unit = self.units[index]
        candidates = self._offered(partial, index)
        result = []
        for candidate in candidates:
            self._candidates[candidate.take.id] = candidate
            chosen = {i: self._candidates[take] for i, take in enumerate(partial.takes)}
            scores, seams = self._score(chosen, unit, candidate, alone=len(candidates) == 1)
            gain = self.book.combine(scores)
            self._details[(partial.takes, candidate.take.id)] = {
                "score": gain, "parts": {k: round(v.value, 4) for k, v in scores.items()},
                "raw": {k: v.parts for k, v in scores.items()},
                "seams": {side: self.book.seam_value(pair) for side, pair in seams.items()},
            }
            result.append((candidate.take.id, gain))
        return result

    def _score(self, chosen: dict[int, Candidate], unit: Unit, candidate: Candidate,
               alone: bool) -> tuple[dict[str, Any], dict[str, Any]]:
        """A candidate's scores given the takes chosen for other units (by unit index)."""
        judged = [(n, ahead) for n, ahead in ((unit.joined, False), (unit.bridge, True)) if n in chosen]
        drift = unit.chain_root is not None and unit.chain_root in chosen
        if alone and not judged and not drift:
            return {}, {}  # nothing to choose between and no seam to judge: not scored
        current = self._source(unit, candidate.take)
        scores = dict(self.book.take_scores(current))
        seams: dict[str, Any] = {}
        # Seams are judged only where the picture is meant to continue: a chained or
        # matched start, or a bridge's end. A cut to other content is supposed to differ.
        for neighbour, ahead in judged:
            assert neighbour is not None
            other = self._source(self.units[neighbour], chosen[neighbour].take)
            pair = self.book.seam_scores(current, other) if ahead else self.book.seam_scores(other, current)
            side = "next" if ahead else "previous"
            seams[side] = pair
            for name, score in pair.items():
                scores[f"{name}:{side}"] = score
        if drift:
            assert unit.chain_root is not None
            root = self._source(self.units[unit.chain_root], chosen[unit.chain_root].take)
            scores.update(self.book.drift_scores(root, current))
        return scores, seams

    def _source(self, unit: Unit, take: StoredTake) -> FrameSource:
        """The one frame source kept per take: made from the store when the take was
        not scored from memory."""
        if take.id not in self._sources:
            self._sources[take.id] = self._frame_source(unit, take)
        return self._sources[take.id]

    def _frame_source(self, unit: Unit, take: StoredTake, pixels: np.ndarray | None = None,
                      scan: np.ndarray | None = None) -> FrameSource:
        # The lossless ends load from the store only if a seam asks for them.
        from ..scoring.base import FrameSource

        spec = self._specs[unit.shot.id]
        head, tail = _kept_ends(take) if pixels is None else (None, None)
        prompt = (self.loaded.keyframe_prompt(spec.id, quality=self.plan.quality) if unit.is_keyframe
                  else self.loaded.prompt(spec.id))
        return FrameSource(take.id, take.dir, take.frames, take.fps, prompt=prompt,
                           reference=self.loaded.resolve(spec.reference) if spec.reference else None,
                           cast=self.loaded.cast_images(spec.id), style=self.loaded.style_images(),
                           head=head, tail=tail,
                           size=(take.width, take.height), pixels=pixels, scan=scan,
                           reader=take.read)

    @staticmethod
    def _alone(unit: Unit, offered: int) -> bool:
        """A unit offered one candidate that judges no seam: never scored."""
        return offered == 1 and unit.joined is None and unit.bridge is None

    def _score_in_memory(self, segment: SegmentPlan, take: StoredTake, frames: np.ndarray | None,
                         scan: np.ndarray | None, conditioning: Conditioning) -> None:
        """On a CPU worker, right after a new take is stored: its take scores, from the
        frames the engine returned (no decode), or from what scoring reads of them
        (`scan`, with the store's lossless ends): for a take that is a file (footage,
        a download) the low-resolution pass read with its head and tail, for a colour
        grade its made take's scan, graded; here rather than on the selection's thread, so takes arriving together are
        scored side by side. A chained take's seam with the take it continues and its
        drift from its chain's first take are scored here too (`_score` finds them in
        the book). (The generator calls it only for a unit with something to choose or
        judge: `_alone`.)"""
        unit = self._by_key[segment.key]
        source = self._frame_source(unit, take, pixels=frames, scan=scan)
        self.book.take_scores(source)
        previous, root = conditioning.previous, conditioning.anchor
        if previous is not None and unit.joined is not None and unit.joined == unit.condition \
                and unit.bridge is None:
            self.book.seam_scores(self._source(self.units[unit.joined], previous), source)
        if root is not None and unit.chain_root is not None:
            self.book.drift_scores(self._source(self.units[unit.chain_root], root), source)
        # Kept for seams and drift: a few sampled frames, the lossless ends from the store.
        head, tail = _kept_ends(take)
        source.slim(self.book.pair_samples(), head=head, tail=tail)
        self._sources[take.id] = source

    def _weak_seams(self, gains: list[dict[str, Any]]) -> list[dict[str, Any]]:
        threshold = self.loaded.storyboard.scoring.seam_threshold
        weak = []
        for i, unit in enumerate(self.units):
            seam = gains[i]["seams"].get("previous")
            if seam is not None and seam < threshold and unit.condition is not None:
                weak.append({"shot": unit.shot.id, "segment": unit.segment.index,
                             "after": self.units[unit.condition].shot.id, "score": round(seam, 4)})
        return weak


def apply_pick(candidates: list[Candidate], pick: str | int, unit: Unit) -> list[Candidate]:
    """The one candidate a pin names (a number, or a take id prefix).

    Raises:
        ConfigError: the pin names no candidate, or several.
    """
    if isinstance(pick, int) or (isinstance(pick, str) and pick.isdigit()):
        index = int(pick)
        if not 0 <= index < len(candidates):
            raise ConfigError(f"shot '{unit.pick_key}': pick {index} is out of range "
                              f"(takes 0-{len(candidates) - 1})")
        return [candidates[index]]
    matches = [c for c in candidates if c.take.id.startswith(str(pick))]
    if len(matches) != 1:
        ids = ", ".join(c.take.id[:10] for c in candidates)
        what = "matches no take" if not matches else "matches several takes"
        raise ConfigError(f"shot '{unit.pick_key}': pick '{pick}' {what} (takes: {ids})")
    return matches


def _kept_ends(take: StoredTake) -> tuple[Callable[[], np.ndarray], Callable[[], np.ndarray]]:
    """Loaders of as much of a stored take's lossless head and tail as a frame source
    keeps (`scoring.base.ENDS_KEPT`): a grade grades no more of them."""
    from ..scoring.base import ENDS_KEPT

    return (lambda: take.head(ENDS_KEPT)), (lambda: take.tail(ENDS_KEPT))
