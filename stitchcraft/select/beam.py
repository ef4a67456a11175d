"""Choosing the cut: beam search over the storyboard's units (segments in order).

Pure code. Chained shots make choices depend on each other: the candidates of a
chained unit are generated from the take chosen before it, and every unit's score
includes the seam with the unit before. So we keep the best `width` partial cuts,
extend each with its own candidates, and keep the best totals. Width 1 is greedy.
A chained unit may extend only the best few (``scoring.beam_generate``), since each
partial cut it extends costs a generation of its candidates (`conditionings` counts them).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .units import Unit


@dataclass(frozen=True)
class Partial:
    """A partial cut: one chosen take per unit so far, and its total score."""

    takes: tuple[str, ...] = ()
    score: float = 0.0

    @property
    def last(self) -> str | None:
        return self.takes[-1] if self.takes else None


# options(partial, unit_index) -> [(take_id, score gained by appending it)]
Options = Callable[[Partial, int], Sequence[tuple[str, float]]]


def extend(beams: Sequence[Partial], unit: int, options: Options, width: int) -> list[Partial]:
    """Extends every partial cut with every candidate of `unit`; keeps the best `width`.

    Equal totals rank by the candidate's own gain, then keep the earlier beam and
    candidate, so results are deterministic. Ranking by gain first matters where two
    gains differ by less than the rounding of the sum: from one beam, the best
    extension is then the candidate with the best gain (the first of equal ones), the
    choice a chain's walk ahead makes from the gains alone (`CutChooser._walk_chain`).
    """
    grown: list[tuple[float, float, int, Partial]] = []
    order = 0
    for beam in beams:
        for take, gain in options(beam, unit):
            grown.append((-(beam.score + gain), -gain, order, Partial(beam.takes + (take,), beam.score + gain)))
            order += 1
    grown.sort(key=lambda item: item[:3])
    return [partial for *_, partial in grown[:width]]


# prepare(beams, unit): told which partial cuts are about to be extended with `unit`,
# so the caller can ask for all their candidates at once before `options` waits for one.
Prepare = Callable[[Sequence[Partial], int], None]


def beam_search(units: int, options: Options, width: int, prepare: Prepare | None = None,
                extended: Sequence[int | None] | None = None) -> Partial:
    """The best complete cut found with beam `width` (greedy when 1).

    Args:
        extended: Per unit, how many of the best partial cuts it extends (None: all);
            the others end there. A chained unit's candidates are made once per partial
            cut it extends, so this bounds what it costs (``scoring.beam_generate``).
            The partial cuts are kept best first, ties in a fixed order, so the choice
            stays deterministic, and the best one is always extended.

    Raises:
        ValueError: a unit offers no candidate.
    """
    beams = [Partial()]
    for unit in range(units):
        most = extended[unit] if extended is not None else None
        if most is not None:
            beams = beams[:max(1, most)]
        if prepare is not None:
            prepare(beams, unit)
        beams = extend(beams, unit, options, width)
        if not beams:
            raise ValueError(f"unit {unit} has no candidate")
    return beams[0]


def brute_force(units: int, options: Options) -> Partial:
    """The best cut by trying every combination (for tests on small cases)."""
    best: Partial | None = None

    def walk(partial: Partial, unit: int) -> None:
        nonlocal best
        if unit == units:
            if best is None or partial.score > best.score:
                best = partial
            return
        for take, gain in options(partial, unit):
            walk(Partial(partial.takes + (take,), partial.score + gain), unit + 1)

    walk(Partial(), 0)
    if best is None:
        raise ValueError("no complete cut")
    return best


def conditionings(units: Sequence[Unit], width: int, generate: int | None = None) -> list[int]:
    """How many different conditionings each unit's candidates are made under: 1 for a
    unit that continues from nothing; for a chained, bridged or keyframed unit, one per partial cut
    it extends (at most `generate`, and no more than the distinct takes it can continue
    from or end on). The count the search reaches when candidates are all offered and
    made; fewer when partial cuts share a take, a pin narrows a unit, or a take fails.
    Rerolls are not counted.

    Args:
        units: In generation order (`build_units`).
        width: The beam width.
        generate: ``scoring.beam_generate`` (None: every partial cut).
    """
    held = 1          # partial cuts the beam holds before a unit
    made: list[int] = []  # distinct takes of each unit, at most
    counts = []
    for unit in units:
        candidates = max(1, unit.shot.takes_made)
        depends = [n for n in (unit.condition, unit.bridge, unit.keyframe) if n is not None]
        if not depends:
            extended, under = held, 1
        else:
            extended = min(held, generate) if generate is not None else held
            distinct = 1
            for neighbour in depends:
                distinct *= made[neighbour]
            under = min(extended, distinct)
        counts.append(under)
        made.append(under * candidates)
        held = min(width, extended * candidates)
    return counts
