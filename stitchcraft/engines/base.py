"""The engine interface: what a source of candidate takes promises and receives.

An engine turns one planned segment into N candidate takes. Engines declare what they
can do (`Capabilities`) so the validator and planner can check a storyboard before
anything runs, and say whether they can run on this machine (`Availability`) without
importing their heavy dependencies.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import numpy as np

    from ..generate.jobs import JobBook
    from ..storyboard import EngineSettings, Shot, Title


@dataclass(frozen=True)
class FrameRule:
    """Frame counts an engine can produce in one call: ``step * k + offset``, k >= 1."""

    step: int = 1
    offset: int = 0

    def fit(self, frames: int) -> int:
        """The smallest allowed count that holds at least `frames`."""
        if self.step == 1:
            return max(frames, 1 + self.offset)
        k = max(1, -(-(frames - self.offset) // self.step))
        return self.step * k + self.offset

    def floor(self, frames: int) -> int:
        """The largest allowed count not above `frames` (at least one step)."""
        if self.step == 1:
            return frames
        k = max(1, (frames - self.offset) // self.step)
        return self.step * k + self.offset

    def allows(self, frames: int) -> bool:
        return frames >= self.step + self.offset and (frames - self.offset) % self.step == 0

    def __str__(self) -> str:
        return "any" if self.step == 1 else f"{self.step}k+{self.offset}"


@dataclass(frozen=True)
class Capabilities:
    """What an engine can be asked for.

    Attributes:
        kinds: Shot kinds it serves: ``prompt``, ``source``, ``image``, ``title``.
        text_to_video: Generates from a prompt alone.
        image_to_video: Starts from given first frame(s) (needed by ``chain``).
        first_last_frame: Also honours a last frame (needed by ``bridge``).
        condition_frames: How many tail frames of the previous take it can condition on.
        references: Most identity or style reference images it takes (0: none).
        frame_rule: Allowed frame counts per call.
        max_frames: Most frames in one call (longer shots are split), None for no limit.
        size_multiple: Width and height must be multiples of this.
        needs_gpu: Impractical without CUDA.
        batches: Makes several candidates in one call.
        seconds_per_frame: Rough GPU seconds per frame at 720p, for `stitch plan`.
        max_seconds: Most seconds in one call (a hosted model's longest duration);
            longer shots are split like `max_frames`, None for no limit.
        hosted: Makes its takes at a provider, billed per generated second.
        keeps_lead: A chained take may carry the conditioning frames it made again
            (`Take.lead`), which its join cross-fades.
    """

    kinds: frozenset[str]
    text_to_video: bool = False
    image_to_video: bool = False
    first_last_frame: bool = False
    condition_frames: int = 0
    references: int = 0
    frame_rule: FrameRule = FrameRule()
    max_frames: int | None = None
    size_multiple: int = 2
    needs_gpu: bool = False
    batches: bool = False
    seconds_per_frame: float = 0.0
    max_seconds: float | None = None
    hosted: bool = False
    keeps_lead: bool = False

    def frame_limit(self, fps: float) -> int | None:
        """Most timeline frames one call can make at `fps`."""
        limits = [self.max_frames] if self.max_frames else []
        if self.max_seconds:
            limits.append(max(1, int(self.max_seconds * fps + 1e-6)))
        return min(limits) if limits else None


@dataclass(frozen=True)
class Availability:
    """Whether an engine can run here, and if not, what to do about it."""

    ok: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.ok


@dataclass
class SegmentRequest:
    """Everything an engine needs to make the candidates of one segment.

    Frames are timeline frames: an engine makes `frames` frames at `fps`.

    Attributes:
        shot_id: The storyboard shot.
        segment: Index of this segment within the shot (long shots are split).
        kind: ``prompt``, ``source``, ``image`` or ``title``.
        frames: Frames to return per take, exactly.
        width, height: Size of the returned frames.
        fps: Timeline frame rate.
        seeds: One per wanted candidate; for engines without randomness the seed picks
            the variation (camera move, scene, ...).
        prompt, negative_prompt: For generated shots.
        sources: Footage files (already expanded from a folder or glob).
        image: The still of an ``image`` shot.
        title: The card of a ``title`` shot.
        camera: A requested camera move.
        condition_frames: Tail frames of the previous chosen take (uint8, k x H x W x 3),
            held losslessly; the take's first frame continues from the last of these.
        last_frame: A frame the take must end on (``bridge``), H x W x 3 uint8.
        references: Identity and style reference images, in order of priority, at
            most the engine's `Capabilities.references`.
        steps: Denoising steps, None for the engine's default.
        settings: The storyboard's settings for this engine.
        hold_short: Footage shorter than the shot may be used, its last frame held
            (``short_source: hold``); otherwise it is refused.
        jobs: The durable record of each seed's remote job (hosted engines): what was
            submitted, under which job id, and its download.
    """

    shot_id: str
    segment: int
    kind: str
    frames: int
    width: int
    height: int
    fps: Fraction
    seeds: list[int]
    prompt: str | None = None
    negative_prompt: str | None = None
    sources: list[Path] = field(default_factory=list)
    image: Path | None = None
    title: Title | None = None
    camera: str | None = None
    condition_frames: np.ndarray | None = None
    last_frame: np.ndarray | None = None
    references: list[Path] = field(default_factory=list)
    steps: int | None = None
    settings: EngineSettings | None = None
    hold_short: bool = False
    jobs: JobBook | None = None


@dataclass
class TakeFailure:
    """A candidate an engine could not make, while the others may still come.

    An engine yields one in place of a take when the failure is the candidate's own (a
    provider's moderation refusal, a failed job): the shot goes on with its other
    candidates, and the reason is recorded in the manifest and report.

    Attributes:
        seed: The candidate's seed.
        reason: Why, in words a user can act on (never holding a key).
        meta: What identifies the attempt (engine, the provider's job id).
    """

    seed: int
    reason: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Take:
    """One candidate an engine made: pixels in memory, or a span of an encoded file.

    An engine that makes pixels fills `frames`. An engine whose take already is a file
    (footage, a hosted engine's download) leaves `frames` None and names the file in
    `source`: the take is `span_frames` timeline frames from `start` seconds into it,
    fitted to `span_size` by the same normalisation the assembly applies, so it is
    never decoded whole nor re-encoded (`Take.from_file`).

    Attributes:
        frames: uint8 array, frames x height x width x 3 (RGB), exactly as requested;
            None for a take that is a span of `source`.
        seed: The seed (or variation key) that reproduces it.
        label: A short human description ("push-in, slow", "scene 2 of beach.mp4").
        audio: A file holding the take's own sound, with `audio_start` seconds skipped.
        meta: Anything else worth recording (model id, steps, source span).
        source: The encoded file the take is a span of.
        start: Seconds into `source` where the take's first frame is shown.
        span_frames: Timeline frames the span fills.
        span_size: (width, height) the span is fitted to (cover).
        copy_source: Keep a copy of `source` in the take store (a download whose address
            expires) rather than refer to it where it is (a user's footage).
        lead: For a chained take, the frames the engine made again before its first one,
            re-creating the conditioning frames (k x H x W x 3 uint8): the overlap the
            join cross-fades (`join.blend_overlap`). None when not kept.
    """

    frames: np.ndarray | None
    seed: int
    label: str = ""
    audio: Path | None = None
    audio_start: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)
    source: Path | None = None
    start: float = 0.0
    span_frames: int = 0
    span_size: tuple[int, int] = (0, 0)
    copy_source: bool = False
    lead: np.ndarray | None = None

    @classmethod
    def from_file(cls, source: Path, *, start: float, frames: int, size: tuple[int, int],
                  seed: int, label: str = "", audio: bool = True, copy: bool = False,
                  meta: dict[str, Any] | None = None) -> Take:
        """A take that is `frames` timeline frames of `source` from `start` seconds, its
        own sound (when `audio` and the file has some) from the same point."""
        return cls(frames=None, seed=seed, label=label, audio=source if audio else None,
                   audio_start=start if audio else 0.0, meta=dict(meta or {}), source=source,
                   start=start, span_frames=frames, span_size=size, copy_source=copy)

    @property
    def frame_count(self) -> int:
        """Timeline frames the take fills."""
        return len(self.frames) if self.frames is not None else self.span_frames


class Engine:
    """Base of every engine; subclasses set NAME and CAPABILITIES.

    Subclasses keep heavy imports (torch, diffusers) inside methods, so that listing,
    validating and fingerprinting engines stays instant.

    Attributes:
        NAME: The name storyboards use (``engine: NAME``, ``engines.NAME:``).
        VERSION: The version of the code that makes the engine's pixels: bump it when a
            change makes different pixels from the same request, and every take the
            engine made before is regenerated (`fingerprint`).
        SETTINGS: The model of the engine's ``engines.<NAME>:`` block, a subclass of
            `stitchcraft.storyboard.EngineSettings`; None for the shared fields only.
        LIBRARIES: Packages whose versions decide the engine's pixels, each with how many
            leading parts of its version count (None: all of them), read from the
            installed metadata, never by importing the package.
        CONCURRENCY: Engine calls that may run at once: 1 for a local pipeline on one
            device; a hosted API takes many jobs in flight, one take per call.
    """

    NAME: ClassVar[str] = ""
    DESCRIPTION: ClassVar[str] = ""
    CAPABILITIES: ClassVar[Capabilities]
    VERSION: ClassVar[int | str] = 1
    SETTINGS: ClassVar[type[EngineSettings] | None] = None
    LIBRARIES: ClassVar[Mapping[str, int | None]] = {}
    CONCURRENCY: ClassVar[int] = 1

    def __init__(self, settings: EngineSettings | None = None):
        self.settings = self.settings_for(settings)

    @classmethod
    def settings_model(cls) -> type[EngineSettings]:
        """The model of this engine's settings."""
        if cls.SETTINGS is not None:
            return cls.SETTINGS
        from ..storyboard import EngineSettings

        return EngineSettings

    @classmethod
    def settings_for(cls, settings: EngineSettings | Mapping[str, Any] | None = None) -> EngineSettings:
        """`settings` as this engine's own model: its defaults for None, and another
        model's (or a mapping's) fields validated again.

        Raises:
            ConfigError: the settings hold fields this engine does not take.
        """
        from pydantic import BaseModel, ValidationError

        from ..errors import ConfigError

        model = cls.settings_model()
        if settings is None:
            return model()
        if isinstance(settings, model):
            return settings
        fields = (settings.model_dump(exclude_unset=True) if isinstance(settings, BaseModel)
                  else dict(settings))
        try:
            return model.model_validate(fields)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ConfigError(f"engine '{cls.NAME}' settings: {problems}") from None

    @classmethod
    def capabilities_for(cls, settings: EngineSettings | None = None) -> Capabilities:
        """What the engine can make with these settings (a hosted engine's model decides
        its durations and what it conditions on); `CAPABILITIES` unless it depends."""
        return cls.CAPABILITIES

    @classmethod
    def availability(cls, settings: EngineSettings | None = None) -> Availability:
        """Whether this engine can run here with these settings; cheap to call."""
        return Availability(True)

    @classmethod
    def fingerprint(cls, settings: EngineSettings | None = None) -> dict[str, Any]:
        """What, besides the request, decides this engine's pixels: its code version,
        the settings that decide pixels, and the versions of the libraries that render.

        The planner puts it in every take's id, so a change to any of it regenerates
        this engine's takes and no others. Cheap: reads no weights and imports nothing
        heavy. Subclasses add what else decides their pixels (model weights, fonts).
        """
        return {"engine": cls.NAME, "version": cls.VERSION,
                "settings": cls.settings_for(settings).pixel_settings(),
                "libraries": {name: package_version(name, parts)
                              for name, parts in sorted(cls.LIBRARIES.items())}}

    @classmethod
    def input_files(cls, settings: EngineSettings | None = None) -> list[Path]:
        """Files, besides the request's, whose content decides this engine's pixels
        (a footage library's clips); the generate stage digests them into the take ids.
        Paths in `settings` are already absolute."""
        return []

    @classmethod
    def offered(cls, shot: Shot, wanted: int) -> int:
        """How many candidates `candidate_seeds` makes for a segment of `shot` when
        `wanted` are asked for, as the plan counts them: `wanted`, unless the engine has
        less to vary (a title card has nothing)."""
        return wanted

    def candidate_seeds(self, request: SegmentRequest, wanted: int, base_seed: int) -> list[int]:
        """The seeds (variation keys) of the candidates to make for a request."""
        return [base_seed + i for i in range(wanted)]

    def generate(self, request: SegmentRequest) -> Iterator[Take | TakeFailure]:
        """Makes one take per seed in `request.seeds`, yielding each when done (or a
        `TakeFailure` for a candidate that cannot be made while others can).

        Raises:
            EngineError: generation failed; EngineUnavailable when it cannot run here.
        """
        raise NotImplementedError

    def close(self) -> None:
        """Releases models and memory; called once at the end of a render."""


@functools.cache
def package_version(name: str, parts: int | None = None) -> str | None:
    """The installed version of distribution `name` (its first `parts` parts), or None
    when it is not installed; read from its metadata, without importing it."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version(name)
    except PackageNotFoundError:
        return None
    return found if parts is None else ".".join(found.split(".")[:parts])
