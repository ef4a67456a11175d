"""Joining chained takes: a shot's segments into one take, overlaps cross-faded.

A chained take's engine conditions on the previous take's last k frames and makes them
again at its start (the take's `lead`, kept in the store beside it): the same k instants
twice. Where a chained take joins the take before it (a segment joining the segment
before within a shot, or a chained shot joining the shot before), the earlier take's
last frames are replaced by a cross-fade from them into the lead (`blend_overlap`), over
a length the storyboard sets (``blend:`` frames, default the whole lead, 0 for a hard
join). The fade adds no frame: the timeline keeps the plan's frame count. Takes whose
engine kept no lead (hosted engines, footage) join hard.

What each shot shows is one stored take (`shot_takes`); a joined or cross-faded take is
stored like any other, its id made of the ids and blend lengths it was made from.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ..plan import Plan
    from ..store import StoredTake, TakeStore
    from .units import Unit


def blend_overlap(tail: np.ndarray, lead: np.ndarray, length: int | None = None) -> np.ndarray:
    """Cross-fades the end of a take into the lead of the chained take after it.

    Shown in place of the earlier take's last k frames (`tail`), the result hands over
    from one take to the other without a hard join. Frame j of the fade (0-based,
    `length` frames, ending on the seam) is
    ``(tail * (length + 1 - (j + 1)) + lead * (j + 1)) / (length + 1)``, rounded half up
    in integers (exact, the same on every machine): weights 1/(L+1) .. L/(L+1), so the
    last frame shown purely from the earlier take comes just before the fade and the
    first shown purely from the later one just after it. Frames of `tail` before the
    fade are returned as they are.

    Args:
        tail: The earlier take's last k frames, k x H x W x 3 uint8.
        lead: The later take's first k frames, which re-create those instants.
        length: Frames the fade spans, at most k (default: k); 0 returns `tail`.

    Returns:
        k frames (uint8) to show in place of `tail`.

    Raises:
        ValueError: the shapes differ, or `length` is outside 0..k.
    """
    if tail.shape != lead.shape or tail.ndim != 4:
        raise ValueError(f"a blend needs two k x H x W x 3 runs of frames of one shape, "
                         f"got {tail.shape} and {lead.shape}")
    count = len(tail)
    length = count if length is None else length
    if not 0 <= length <= count:
        raise ValueError(f"a blend of {length} frames does not fit the {count} that overlap")
    blended = tail.copy()
    if length == 0:
        return blended
    steps = length + 1
    later = np.arange(1, steps, dtype=np.uint32)[:, None, None, None]  # j + 1
    fade = (tail[-length:].astype(np.uint32) * (steps - later) + lead[-length:].astype(np.uint32) * later
            + steps // 2) // steps
    blended[-length:] = fade.astype(np.uint8)
    return blended


def blend_length(later: StoredTake, setting: int | None, earlier_frames: int) -> int:
    """Frames cross-faded where `later` joins the take before it: the storyboard's
    ``blend:`` (None: the whole lead), never more than the lead or the earlier take."""
    from ..store import TAIL_FRAMES

    lead = min(later.lead_frames, earlier_frames, TAIL_FRAMES)  # the fade reads the lossless tail
    return lead if setting is None else min(setting, lead)


def shot_takes(store: TakeStore, plan: Plan, units: Sequence[Unit], chosen: Sequence[StoredTake],
               blend: Callable[[str], int | None]) -> dict[str, StoredTake]:
    """The take each shot shows: its segments' chosen takes joined, each chained join
    cross-faded, and its end cross-faded into the lead of a chained shot after it.

    Args:
        store: Where joined and cross-faded takes are kept.
        plan: The plan the units were built from.
        units: The units, in generation order (`select.units.build_units`).
        chosen: The chosen take of each unit.
        blend: Shot id -> its ``blend:`` setting (None: the whole lead).
    """
    into: dict[int, tuple[StoredTake, int]] = {}  # unit -> (the chained take after it, fade)
    for index, unit in enumerate(units):
        if unit.condition is not None:
            earlier = chosen[unit.condition]
            length = blend_length(chosen[index], blend(unit.shot.id), earlier.frames)
            if length:
                into[unit.condition] = (chosen[index], length)
    result = {}
    for shot in plan.shots:
        indices = [i for i, u in enumerate(units)  # in segment order
                   if u.shot.id == shot.id and not u.is_keyframe]
        result[shot.id] = join_takes(store, shot.id, shot.engine, [chosen[i] for i in indices],
                                     [into.get(i) for i in indices])
    return result


def join_takes(store: TakeStore, shot_id: str, engine: str, takes: list[StoredTake],
               fades: list[tuple[StoredTake, int] | None]) -> StoredTake:
    """`takes` one after another, each followed by its cross-fade into the lead of the
    take after it (`fades`, None for a hard join or none), stored as one take."""
    from ..engines.base import Take
    from ..plan import content_hash

    if len(takes) == 1 and fades[0] is None:
        return takes[0]
    identity: dict[str, Any] = {"joined": [t.id for t in takes]}
    if any(fades):
        identity["fades"] = [[f[0].id, f[1]] if f else None for f in fades]
    joined_id = content_hash(identity)
    existing = store.get(joined_id)
    if existing is not None:
        return existing
    pieces = []
    for take, fade in zip(takes, fades, strict=True):
        frames = take.read()
        if fade is not None:
            later, length = fade
            lead = later.lead()
            assert lead is not None
            tail = take.tail()  # lossless: the fade starts from the frames as made
            frames[-len(tail):] = tail
            count = min(len(lead), len(tail))
            frames[-count:] = blend_overlap(tail[-count:], lead[-count:], min(length, count))
        pieces.append(frames)
    label = " + ".join(t.label or t.id[:8] for t in takes)
    meta: dict[str, Any] = {"segments": [t.id for t in takes]}
    if any(fades):
        meta["cross_faded"] = [f[1] if f else 0 for f in fades]
        label += ", cross-faded"
    first = takes[0]
    take = Take(frames=np.concatenate(pieces) if len(pieces) > 1 else pieces[0], seed=first.seed,
                label=label, meta=meta)
    if len(takes) == 1 and first.sound is not None:  # a take with its own sound keeps it
        take.audio, take.audio_start = first.sound
    return store.put(joined_id, take, fps=first.fps, engine=engine,
                     request={"shot": shot_id, **identity})
