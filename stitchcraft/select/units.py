"""Units: the storyboard's segments in generation order, linked to their neighbours.

Pure code: the select stage walks units in this order, and each unit knows which units
it continues from (chain), must end on (bridge), is chosen to continue without being
made from it (match), and which chain it belongs to (drift).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..plan import Plan, SegmentPlan, ShotPlan


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
    match: int | None = None  # unit whose chosen take its first frames should continue

    @property
    def joined(self) -> int | None:
        """The unit before whose chosen take this one's seam is judged against (a chain
        or a match), None at a cut."""
        return self.condition if self.condition is not None else self.match


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
        match = None
        if seg.matches:
            if previous is None or previous >= len(units) or timeline[t - 1][0].id != seg.matches:
                raise ValueError(f"segment {key} matches shot '{seg.matches}', which is not "
                                 "placed just before it and walked first")
            match = previous
        units.append(Unit(shot, seg, previous, following, condition, bridge, None, match))
    for unit in units:
        root = unit
        while root.condition is not None:
            root = units[root.condition]
        unit.chain_root = units.index(root) if root is not unit else None
    return units
