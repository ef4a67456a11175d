"""The manifest: what a render made and chose, as typed records.

The render builds a `Manifest` and writes it as JSON beside the cut; the report, `stitch
takes` and `stitch pick` read it back through `Manifest.read`, never as loose dicts, so
a field means one thing everywhere. The JSON layout::

    {"stitchcraft": 1, "storyboard": ..., "output": ..., "shots": {id: ShotRecord},
     "variants": [CutRecord], "warnings": [...], ...}
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from ..errors import InputError

MANIFEST_VERSION = 1

R = TypeVar("R")


@dataclass
class CandidateRecord:
    """One take made for a segment (offered, or set aside by a pin), and how it scored.

    Attributes:
        id: The take's content hash.
        engine, seed, label: What made it.
        path: Its video file; empty for a colour-anchored take kept as a grade of the
            take its engine made and not encoded (a runner-up: it is encoded if picked).
        frames: Its frame count.
        cached: Found in the take store rather than made by this render.
        source: The footage file it was cut from, if any.
        short_by_frames: Frames its footage ran short by (its last frame held).
        scored: False when it was the only candidate and had no seam to judge.
        score: Its combined score, 0..1.
        components: Each scorer's value, 0..1.
        details: Each scorer's raw parts, in their own units.
        seams: Combined seam value by side: ``previous`` (the join from the take before,
            for a chained or matched segment), ``next`` (a bridge's join into the next
            shot); its per-scorer values are in `components` as ``name:side``.
        provider, job: The hosted provider and its job id, for a hosted take.
        billed_seconds, cost: Seconds the provider bills for it and their estimated
            price in USD (0 for a take made on this machine).
    """

    id: str
    engine: str
    seed: int
    label: str = ""
    path: str = ""
    frames: int = 0
    cached: bool = False
    source: str | None = None
    short_by_frames: int = 0
    scored: bool = True
    score: float = 0.5
    components: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    seams: dict[str, float] = field(default_factory=dict)
    provider: str | None = None
    job: str | None = None
    billed_seconds: float = 0.0
    cost: float = 0.0


@dataclass
class FailedRecord:
    """A candidate that could not be made (a provider's refusal, a failed job)."""

    seed: int
    engine: str
    reason: str
    job: str | None = None


@dataclass
class SegmentRecord:
    """One engine call's worth of a shot: its candidates, the chosen one, and the
    candidates that failed."""

    index: int
    hash: str
    chosen: str
    candidates: list[CandidateRecord]
    failed: list[FailedRecord] = field(default_factory=list)
    set_aside: list[str] = field(default_factory=list)  # takes made for it that a pin left out


@dataclass
class ShotRecord:
    """A shot of the cut: where it sits, its segments, the take that fills it, and how it
    joins the shot before (``continuity``: cut, chain, bridge or match; a chained, bridged
    or matched join's seam is in its first segment's chosen candidate's ``seams``)."""

    engine: str
    kind: str
    start: int
    frames: int
    transition_in: int
    chosen: str
    take: str
    segments: list[SegmentRecord]
    continuity: str = "cut"
    keyframe: SegmentRecord | None = None  # the still its first segment animates


@dataclass
class CutRecord:
    """One cut (the main one or a variant's) as written."""

    variant: str | None
    output: str
    frames: int
    duration: float
    size: str
    shots: dict[str, ShotRecord]
    weak_seams: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Manifest:
    """Everything a render made and chose.

    Attributes:
        storyboard: The storyboard file rendered.
        output: The main cut.
        shots, weak_seams: The main cut's (as in its `CutRecord`).
        variants: The variants' cuts.
        drift: Colour drift of chained takes against their chain's first take.
        scoring: What scoring cost (frames decoded, seconds).
        timings: Wall and busy seconds per stage.
        cost: Estimated USD of the hosted takes this render made (``made``) and of all
            the hosted takes its cuts use or list (``offered``: cached ones, and those a pin
            set aside, included).
        fallbacks: Shots moved to a fallback engine: ``shot``, ``from``, ``to`` (empty
            when that fallback could not run either) and ``reason``.
    """

    storyboard: str
    title: str
    quality: str
    fps: str
    output: str
    cache: str
    shots: dict[str, ShotRecord]
    weak_seams: list[dict[str, Any]]
    seam_threshold: float
    drift: list[dict[str, Any]]
    variants: list[CutRecord]
    warnings: list[str]
    scoring: dict[str, Any]
    takes_generated: int
    takes_reused: int
    timings: dict[str, float] = field(default_factory=dict)
    cost: dict[str, float] = field(default_factory=dict)
    fallbacks: list[dict[str, str]] = field(default_factory=list)
    stitchcraft: int = MANIFEST_VERSION

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def cut(self, variant: str | None) -> CutRecord:
        """The main cut (None) or a variant's.

        Raises:
            InputError: the render has no such variant.
        """
        if variant is None:
            return CutRecord(None, self.output, 0, 0.0, "", self.shots, self.weak_seams)
        for entry in self.variants:
            if entry.variant == variant:
                return entry
        raise InputError(f"the last render has no variant '{variant}'")

    def write(self, path: Path) -> None:
        """Writes the manifest atomically."""
        from ..media import atomic_output

        with atomic_output(path) as tmp:
            tmp.write_text(json.dumps(self.to_json(), indent=2, default=str))

    @classmethod
    def read(cls, path: Path) -> Manifest:
        """Reads a manifest a render wrote.

        Raises:
            InputError: missing, unreadable, or not a stitchcraft manifest.
        """
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise InputError(f"{path} is missing") from None
        except (OSError, ValueError) as exc:
            raise InputError(f"{path} cannot be read ({exc}); render again to rewrite it") from None
        try:
            return cls.from_json(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{path} is not a manifest this stitchcraft can read ({exc}); "
                             "render again to rewrite it") from None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        if not isinstance(data, dict) or data.get("stitchcraft") != MANIFEST_VERSION:
            raise ValueError("no stitchcraft manifest version 1")
        fields = _known(cls, data)
        fields["shots"] = _shots(data["shots"])
        fields["variants"] = [_cut(v) for v in data.get("variants", [])]
        return cls(**fields)


def _known(cls: type[R], data: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return {k: v for k, v in data.items() if k in names}


def _shots(data: dict[str, Any]) -> dict[str, ShotRecord]:
    shots = {}
    for shot_id, entry in data.items():
        fields = _known(ShotRecord, entry)
        fields["segments"] = [_segment(s) for s in entry["segments"]]
        fields["keyframe"] = _segment(entry["keyframe"]) if entry.get("keyframe") else None
        shots[str(shot_id)] = ShotRecord(**fields)
    return shots


def _segment(data: dict[str, Any]) -> SegmentRecord:
    return SegmentRecord(**{**_known(SegmentRecord, data),
                            "candidates": [CandidateRecord(**_known(CandidateRecord, c)) for c in data["candidates"]],
                            "failed": [FailedRecord(**_known(FailedRecord, f)) for f in data.get("failed", [])]})


def _cut(data: dict[str, Any]) -> CutRecord:
    fields = _known(CutRecord, data)
    fields["shots"] = _shots(data["shots"])
    return CutRecord(**fields)
