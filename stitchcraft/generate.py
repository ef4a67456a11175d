"""The generate stage: candidate takes for one segment, through the take store.

A take's id is the hash of its segment, its seed and the takes it conditions on, so a
take that was ever finished is found again and never regenerated. Engines are
created once per render and reused across shots (a diffusion pipeline loads once).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .engines import Engine, SegmentRequest, engine_class
from .errors import EngineError, EngineUnavailable, MediaError
from .load import LoadedStoryboard
from .plan import Plan, SegmentPlan, ShotPlan, take_id
from .store import StoredTake, TakeStore


@dataclass
class Candidate:
    """A take offered for a segment, as the selection sees it."""

    take: StoredTake
    seed: int
    reused: bool


@dataclass
class Conditioning:
    """What a segment's takes start from and end on, by take."""

    previous: StoredTake | None = None
    bridge: StoredTake | None = None

    @property
    def key(self) -> tuple[str | None, str | None]:
        return (self.previous.id if self.previous else None, self.bridge.id if self.bridge else None)


@dataclass
class Generator:
    """Makes and caches candidate takes for a render.

    Attributes:
        loaded: The storyboard.
        plan: Its plan.
        store: The take store.
        on_take: Called with (segment, take, reused) as each take becomes available.
        extra_seeds: Segment key -> extra candidates asked for by rerolls.
    """

    loaded: LoadedStoryboard
    plan: Plan
    store: TakeStore
    on_take: Callable[[SegmentPlan, StoredTake, bool], None] | None = None
    extra_seeds: dict[str, int] = field(default_factory=dict)
    generated: int = 0
    reused: int = 0
    seen: set[str] = field(default_factory=set)  # takes met in this render already
    _engines: dict[str, Engine] = field(default_factory=dict)
    _memo: dict[tuple[Any, ...], list[Candidate]] = field(default_factory=dict)

    def engine(self, name: str) -> Engine:
        if name not in self._engines:
            self._engines[name] = engine_class(name)(self._settings(name))
        return self._engines[name]

    def check_engines(self) -> None:
        """Raises EngineUnavailable naming every engine this plan needs that cannot run."""
        problems = []
        for name in sorted({s.engine for s in self.plan.shots}):
            cls = engine_class(name)
            available = cls.availability(self._settings(name))
            if not available:
                shots = ", ".join(s.id for s in self.plan.shots if s.engine == name)
                problems.append(f"engine '{name}' (shots {shots}) cannot run here: {available.reason}")
        if problems:
            raise EngineUnavailable("\n".join(problems))

    def preflight(self) -> None:
        """Probes every referenced clip and image before anything is generated, so a
        broken file fails the render at once, named, not halfway through.

        Raises:
            MediaError: a file is unreadable, truncated or has no video.
        """
        from .media import probe, read_image

        for files in self.loaded.sources.values():
            for path in files:
                info = probe(path)
                if info.frames < 1:
                    raise MediaError(path, "holds no video frames")
        for shot in self.loaded.storyboard.shots:
            for value in (shot.image, shot.reference):
                if value:
                    read_image(self.loaded.resolve(value))

    def close(self) -> None:
        for engine in self._engines.values():
            engine.close()
        self._engines.clear()

    def candidates(self, shot: ShotPlan, segment: SegmentPlan,
                   conditioning: Conditioning) -> list[Candidate]:
        """Every candidate take of a segment under given conditioning; generates the
        missing ones (in one engine call, so engines can batch) and stores each as it
        finishes.
        """
        memo_key = (segment.key, conditioning.key, self.extra_seeds.get(segment.key, 0))
        if memo_key in self._memo:
            return self._memo[memo_key]
        engine = self.engine(shot.engine)
        request = self._request(shot, segment, conditioning, engine)
        wanted = shot.candidates + self.extra_seeds.get(segment.key, 0)
        seeds = engine.candidate_seeds(request, wanted, shot.seed + 7919 * segment.index)
        ids = {seed: take_id(segment.hash, seed, condition=conditioning.key[0],
                             bridge=conditioning.key[1]) for seed in seeds}
        found: dict[int, Candidate] = {}
        for seed, tid in ids.items():
            stored = self.store.get(tid)
            if stored is not None:
                found[seed] = Candidate(stored, seed, reused=True)
                if tid not in self.seen:  # a take a variant shares is not a cache hit
                    self.reused += 1
                    self.seen.add(tid)
                if self.on_take:
                    self.on_take(segment, stored, True)
        missing = [seed for seed in seeds if seed not in found]
        if missing:
            request.seeds = missing
            produced = 0
            try:
                for take in engine.generate(request):
                    if take.seed not in ids or take.seed in found:
                        raise EngineError(f"engine '{shot.engine}' returned a take for seed {take.seed}, "
                                          f"which was not asked for")
                    if take.frames.shape[0] != segment.frames:
                        raise EngineError(f"engine '{shot.engine}' returned {take.frames.shape[0]} frames "
                                          f"for shot '{shot.id}', expected {segment.frames}")
                    stored = self.store.put(ids[take.seed], take, fps=self.plan.fps, engine=shot.engine,
                                            request=_describe(request, take.seed, segment))
                    found[take.seed] = Candidate(stored, take.seed, reused=False)
                    self.generated += 1
                    self.seen.add(stored.id)
                    produced += 1
                    if self.on_take:
                        self.on_take(segment, stored, False)
            except MemoryError as exc:
                raise EngineError(f"engine '{shot.engine}' ran out of memory on shot '{shot.id}': {exc}") from exc
            if produced != len(missing):
                raise EngineError(f"engine '{shot.engine}' made {produced} of {len(missing)} takes "
                                  f"for shot '{shot.id}'")
        result = [found[seed] for seed in seeds]
        self._memo[memo_key] = result
        return result

    def _request(self, shot: ShotPlan, segment: SegmentPlan, conditioning: Conditioning,
                 engine: Engine) -> SegmentRequest:
        sb = self.loaded.storyboard
        spec = next(s for s in sb.shots if s.id == shot.id)
        condition_frames = None
        if conditioning.previous is not None and segment.condition:
            condition_frames = conditioning.previous.last_frames(segment.condition)
        last_frame = conditioning.bridge.head()[0] if conditioning.bridge is not None else None
        steps = spec.steps or sb.defaults.steps
        if self.plan.quality == "draft" and shot.kind == "prompt":
            steps = sb.draft_steps
        return SegmentRequest(
            shot_id=shot.id, segment=segment.index, kind=shot.kind, frames=segment.frames,
            width=shot.width, height=shot.height, fps=self.plan.fps, seeds=[],
            prompt=spec.prompt, negative_prompt=spec.negative_prompt,
            sources=list(self.loaded.sources.get(shot.id, [])),
            image=self.loaded.resolve(spec.image) if spec.image else None,
            title=self.loaded.with_font_resolved(spec.title_card), camera=spec.camera,
            condition_frames=condition_frames, last_frame=last_frame,
            reference=self.loaded.resolve(spec.reference) if spec.reference else None,
            steps=steps, settings=self._settings(shot.engine),
        )

    def _settings(self, engine: str) -> Any:
        """The engine's settings with storyboard-relative paths made absolute."""
        settings = self.loaded.storyboard.engine_settings(engine)
        if settings.library:
            settings = settings.model_copy(update={"library": str(self.loaded.resolve(settings.library))})
        return settings


def _describe(request: SegmentRequest, seed: int, segment: SegmentPlan) -> dict[str, Any]:
    return {
        "shot": request.shot_id, "segment": segment.index, "segment_hash": segment.hash,
        "kind": request.kind, "prompt": request.prompt, "seed": seed, "frames": request.frames,
        "size": [request.width, request.height], "steps": request.steps,
        "sources": [str(p) for p in request.sources], "image": str(request.image) if request.image else None,
    }


_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes, memoised by path, size and modification time."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]


def storyboard_digests(loaded: LoadedStoryboard) -> dict[Path, str]:
    """Digests of every file whose content decides a take's pixels."""
    sb = loaded.storyboard
    paths: set[Path] = set()
    for shot in sb.shots:
        for value in (shot.image, shot.reference):
            if value:
                paths.add(loaded.resolve(value))
    for files in loaded.sources.values():
        paths.update(files)
    for variant in sb.variants:
        for override in variant.shots.values():
            if override.image:
                paths.add(loaded.resolve(override.image))
    return {p: file_digest(p) for p in sorted(paths) if p.is_file()}


def engine_fingerprints(loaded: LoadedStoryboard) -> dict[str, dict[str, Any]]:
    """What beyond a request decides each engine's pixels: its settings, and for an
    engine drawing on a library folder, the digests of the clips in it.
    """
    from .load import expand_source
    from .plan import settings_fingerprint

    sb = loaded.storyboard
    fingerprints = {}
    for name, settings in sb.engines.items():
        fingerprint = settings_fingerprint(sb, name)
        if settings.library:
            clips = expand_source(loaded.base_dir, settings.library)
            fingerprint["library"] = [file_digest(p) for p in clips]
        fingerprints[name] = fingerprint
    return fingerprints


def concatenate_segments(store: TakeStore, shot: ShotPlan, takes: list[StoredTake]) -> StoredTake:
    """One take for a shot made of several chained segments (stored like any take)."""
    from .engines.base import Take
    from .media import read_frames
    from .plan import content_hash

    if len(takes) == 1:
        return takes[0]
    joined_id = content_hash({"joined": [t.id for t in takes]})
    existing = store.get(joined_id)
    if existing is not None:
        return existing
    frames = np.concatenate([read_frames(t.video, 0, t.frames) for t in takes])
    take = Take(frames=frames, seed=takes[0].seed, label=" + ".join(t.label or t.id[:8] for t in takes),
                meta={"segments": [t.id for t in takes]})
    return store.put(joined_id, take, fps=takes[0].fps, engine=shot.engine,
                     request={"shot": shot.id, "segments": [t.id for t in takes]})


def default_cache(loaded: LoadedStoryboard) -> Path:
    return Path(os.environ.get("STITCHCRAFT_CACHE") or loaded.base_dir / ".stitchcraft" / "cache")
