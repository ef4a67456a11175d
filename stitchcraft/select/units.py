"""Units: the storyboard's segments in generation order, linked to their neighbours.

Pure code: the select stage walks units in this order, and each unit knows which units
it continues from (chain), must end on (bridge), is chosen to continue without being
made from it (match), animates (keyframe), and which chain it belongs to (drift). A
shot's keyframe is a unit of its own, just before the shot's first segment; it is on no
timeline (its `shot` is the keyframe's plan, of kind ``keyframe``).
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
    keyframe: int | None = None  # unit whose chosen still it animates

    @property
    def is_keyframe(self) -> bool:
        return self.shot.kind == "keyframe"

    @property
    def made_from_choice(self) -> bool:
        """Whether its takes are made from takes chosen before (chain, bridge, keyframe),
        so that they are made per partial cut."""
        return self.condition is not None or self.bridge is not None or self.keyframe is not None

    @property
    def pick_key(self) -> str:
        """Where a pin for it is kept: the shot's id, or ``<shot>#keyframe``."""
        return self.segment.key if self.is_keyframe else self.shot.id

    @property
    def joined(self) -> int | None:
        """The unit before whose chosen take this one's seam is judged against (a chain
        or a match), None at a cut."""
        return self.condition if self.condition is not None else self.match


def build_units(plan: Plan) -> list[Unit]:
    """Segments in generation order, linked to their timeline and chain neighbours."""
    timeline = [(shot, seg) for shot in plan.shots for seg in shot.segments]
    by_key = {seg.key: i for i, (_, seg) in enumerate(timeline)}
    keyframes = {shot.keyframe.segments[0].key: shot.keyframe for shot in plan.shots if shot.keyframe}
    order: list[str] = []
    for shot_id in plan.order:
        planned = plan.shot(shot_id)
        if planned.keyframe is not None:
            order.append(planned.keyframe.segments[0].key)
        order += [seg.key for seg in planned.segments]
    index_of = {key: i for i, key in enumerate(order)}
    first_of = {shot.id: shot.segments[0].key for shot in plan.shots}
    units: list[Unit] = []
    for key in order:
        if key in keyframes:
            still = keyframes[key]
            units.append(Unit(still, still.segments[0], None, index_of[first_of[still.id]], None, None, None))
            continue
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
        keyframe = index_of.get(shot.keyframe.segments[0].key) if shot.keyframe and seg.index == 0 else None
        units.append(Unit(shot, seg, previous, following, condition, bridge, None, match, keyframe))
    for unit in units:
        root = unit
        while root.condition is not None:
            root = units[root.condition]
        unit.chain_root = units.index(root) if root is not unit else None
    return units
