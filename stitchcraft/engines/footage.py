"""The `footage` engine: candidates cut from real clips.

Every clip in `source:` (and, as an extra pool, every clip in the engine's `library`
folder) offers candidates. A clip long enough to hold two spans of the shot's length is
analysed once per process: PySceneDetect's ContentDetector splits it into scenes, and
each scene long enough to carry the shot becomes a candidate. A shorter clip offers one
candidate whatever its scenes, so it is not analysed: its span is the middle of the
clip. Inside a scene the engine takes the *most stable span*: the window of the shot's
length with the least frame-difference energy, where

    energy(frame i) = mean |luma_i - luma_(i-1)| on a 64x36 thumbnail (0-255 scale)
    cost(window)    = mean(energy) + 0.5 * max(energy)    over the window's inner joins

so that steady footage wins and a single flash or jolt sinks a span. Among equally calm
spans the one nearest the scene's middle wins. Spans start on a frame of the clip.

A take is the clip itself and an in-point (`Take.from_file`): nothing is decoded whole or
re-encoded here. The assembly puts the span on the timeline grid (by timestamp, so
variable-frame-rate input lands on the right frames), upright, with square pixels,
fitted by the shot's ``fit`` (so ``contain`` letterboxes the footage), and the take
store keeps its first and last frames fitted to cover the take's size.

A shot is never padded silently. A clip (or scene) shorter than the shot, or a file that
ends before its header says (truncated), is by default no candidate at all, and a take
that still decodes short raises `MediaError` naming the file. With
``request.hold_short`` (the storyboard's ``short_source: hold``) such a span is offered,
decoded into frames with its last frame held, and ``meta["short_by_frames"]`` says by
how much, for the render to report.

Variation keys (seeds) are candidate indices 0..n-1 in a fixed order: sources as given,
then library clips sorted by path; within a clip, scenes in time order.
"""

from __future__ import annotations

import importlib.util
import math
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Self

import numpy as np
from pydantic import Field

from .. import media
from ..errors import ConfigError, EngineError, MediaError
from ..storyboard import EngineSettings, FilePath
from ..timeline import format_fps
from .base import Availability, Capabilities, Engine, SegmentRequest, Take

MAX_CANDIDATES = 32
ANALYSIS_VERSION = 1
_THUMB = (64, 36)
_MAX_WEIGHT = 0.5


@dataclass(frozen=True)
class ClipAnalysis:
    """What one pass over a clip found: its scenes and its per-frame motion energy.

    Attributes:
        scenes: (start, end) seconds of each scene, in order, covering the clip.
        times: Presentation time of every decoded frame, seconds.
        energy: Frame-difference energy of every frame against the one before (0 for the
            first), same length as `times`.
    """

    scenes: list[tuple[float, float]]
    times: np.ndarray
    energy: np.ndarray


@dataclass(frozen=True)
class Span:
    """One span a take can be cut from: a whole short clip or one scene of a long one."""

    path: Path
    info: media.MediaInfo
    scene: int  # 1-based
    scenes: int
    start: float
    end: float
    analysis: ClipAnalysis | None


_analysis_cache: dict[tuple[str, int, int], ClipAnalysis] = {}
_probe_cache: dict[tuple[str, int, int], media.MediaInfo] = {}
_cache_lock = threading.Lock()


def _file_key(path: Path) -> tuple[str, int, int]:
    try:
        stat = path.stat()
    except OSError:
        raise MediaError(path, "file not found") from None
    return (str(path.resolve()), stat.st_size, stat.st_mtime_ns)


def probe_clip(path: Path) -> media.MediaInfo:
    """`media.probe`, cached per file (path, size and modification time) in this process."""
    key = _file_key(path)
    with _cache_lock:
        if key in _probe_cache:
            return _probe_cache[key]
    info = media.probe(path)
    with _cache_lock:
        _probe_cache[key] = info
    return info


def analyse_clip(path: Path) -> ClipAnalysis:
    """Detects the scenes of a clip and measures its motion energy in one decode pass.

    Cached per file (path, size and modification time) in this process.

    Raises:
        MediaError: the clip cannot be opened or decoded.
    """
    key = _file_key(path)
    with _cache_lock:
        if key in _analysis_cache:
            return _analysis_cache[key]
    analysis = _detect(path)
    with _cache_lock:
        _analysis_cache[key] = analysis
    return analysis


def _detect(path: Path) -> ClipAnalysis:
    from scenedetect import ContentDetector, SceneManager, VideoOpenFailure, open_video

    try:
        video = open_video(str(path))
    except (VideoOpenFailure, OSError, ValueError) as exc:
        raise MediaError(path, f"cannot be opened for scene detection ({exc})") from None
    meter = _energy_meter()
    manager = SceneManager()
    manager.add_detector(ContentDetector())
    manager.add_detector(meter)
    try:
        manager.detect_scenes(video)
    except Exception as exc:  # the OpenCV backend raises assorted errors on corrupt data
        raise MediaError(path, f"decoding failed during scene detection ({exc})") from None
    if not meter.times:
        raise MediaError(path, "no video frames could be decoded")
    scene_list = manager.get_scene_list(start_in_scene=True)
    scenes = [(float(a.seconds), float(b.seconds)) for a, b in scene_list]
    return ClipAnalysis(scenes=scenes, times=np.asarray(meter.times),
                        energy=np.asarray(meter.energy))


def _energy_meter() -> Any:
    """A scene "detector" that finds no cuts but measures each frame's difference energy,
    so that scenes and energy come from the same single decode."""
    import cv2
    from scenedetect import SceneDetector

    class EnergyMeter(SceneDetector):
        def __init__(self) -> None:
            super().__init__()
            self.times: list[float] = []
            self.energy: list[float] = []
            self._previous: np.ndarray | None = None

        def process_frame(self, timecode: Any, frame_img: np.ndarray) -> list[Any]:
            gray = cv2.cvtColor(frame_img, cv2.COLOR_BGR2GRAY)
            thumb = cv2.resize(gray, _THUMB, interpolation=cv2.INTER_AREA).astype(np.float32)
            previous, self._previous = self._previous, thumb
            self.energy.append(0.0 if previous is None else float(np.abs(thumb - previous).mean()))
            self.times.append(float(timecode.seconds))
            return []

    return EnergyMeter()


def stable_start(times: np.ndarray, energy: np.ndarray, scene: tuple[float, float],
                 seconds: float) -> float:
    """The start of the calmest `seconds`-long span inside `scene` (see module docstring).

    Args:
        times: Frame presentation times, seconds, increasing.
        energy: Each frame's difference energy against the frame before it.
        scene: (start, end) seconds to search within.
        seconds: Length of the span.

    Returns:
        A frame time to start at; the scene's start when the scene is not longer.
    """
    first, end = scene
    eps = 1e-6
    inside = np.flatnonzero((times >= first - eps) & (times < end - eps))
    if inside.size == 0 or end - first <= seconds + eps:
        return first
    starts = inside[times[inside] <= end - seconds + eps]
    if starts.size == 0:
        return first
    # Frames whose join lies strictly inside each candidate window [t, t + seconds).
    lo = np.searchsorted(times, times[starts], side="right")
    hi = np.searchsorted(times, times[starts] + seconds - eps, side="left")
    csum = np.concatenate([[0.0], np.cumsum(energy, dtype=np.float64)])
    count = np.maximum(hi - lo, 1)
    mean = (csum[hi] - csum[lo]) / count
    peak = np.array([energy[a:b].max() if b > a else 0.0 for a, b in zip(lo, hi, strict=True)])
    middle = (first + end - seconds) / 2
    # The centre preference only breaks ties: it is small against any visible motion.
    off_centre = np.abs(times[starts] - middle) / max(end - first, eps)
    cost = mean + _MAX_WEIGHT * peak + 0.01 * off_centre
    return float(times[starts[int(np.argmin(cost))]])


class FootageSettings(EngineSettings):
    """``engines.footage:``: the shared settings and a library folder of clips."""

    library: FilePath | None = Field(default=None, description="a folder of clips to draw from")

    def with_paths_resolved(self, resolve: Callable[[str], Path]) -> Self:
        if self.library is None:
            return self
        return self.model_copy(update={"library": str(resolve(self.library))})

    def file_problems(self, resolve: Callable[[str], Path]) -> dict[str, str]:
        if self.library is None:
            return {}
        folder = resolve(self.library)
        try:
            found = folder.is_dir()
        except OSError as exc:  # e.g. a name too long for the file system
            return {"library": f"cannot look for library folder '{self.library}': {exc.strerror or exc}"}
        return {} if found else {"library": f"library folder '{self.library}' not found"}


def library_clips(folder: Path) -> list[Path]:
    """The clips of a library folder and its subfolders, sorted by path."""
    return [path for path in sorted(folder.rglob("*"))
            if path.suffix.lower() in media.VIDEO_EXTENSIONS and path.is_file()
            and not path.name.startswith(".")]


class FootageEngine(Engine):
    """Cuts candidates from real clips: one per clip, or per scene of a long clip."""

    NAME = "footage"
    DESCRIPTION = "real clips from source: or a library folder; long clips split into scenes"
    CAPABILITIES = Capabilities(kinds=frozenset({"source"}))
    VERSION = 1
    SETTINGS = FootageSettings
    LIBRARIES = {"scenedetect": None}

    @classmethod
    def availability(cls, settings=None) -> Availability:
        for module in ("scenedetect", "cv2", "av"):
            if importlib.util.find_spec(module) is None:
                return Availability(False, f"the '{module}' package is missing; "
                                           "reinstall stitchcraft to get it")
        return Availability(True)

    @classmethod
    def fingerprint(cls, settings: EngineSettings | None = None) -> dict[str, Any]:
        """Also the version of the scene analysis that picks the spans."""
        return {**super().fingerprint(settings), "analysis": ANALYSIS_VERSION}

    @classmethod
    def input_files(cls, settings: EngineSettings | None = None) -> list[Path]:
        """The library's clips: each offers candidates to every footage shot."""
        library = getattr(cls.settings_for(settings), "library", None)
        if library is None:
            return []
        folder = Path(library).expanduser()
        return library_clips(folder) if folder.is_dir() else []

    def candidate_seeds(self, request: SegmentRequest, wanted: int, base_seed: int) -> list[int]:
        """Every candidate the sources offer (up to 32), whatever `wanted` says."""
        return list(range(len(self.candidates(request))))

    def candidates(self, request: SegmentRequest) -> list[Span]:
        """The spans a take can be cut from, in variation-key order.

        Raises:
            MediaError: a clip is unreadable.
            ConfigError: the library folder does not exist.
        """
        seconds = request.frames / float(request.fps)
        needed = least_seconds(request.frames, request.fps)
        found: list[Span] = []
        short: list[tuple[Path, float]] = []
        for path in self._clips(request):
            info = probe_clip(path)
            usable = usable_seconds(info)
            if usable < needed and not request.hold_short:
                short.append((path, usable))
                continue
            least = seconds / 2 if request.hold_short else needed
            if usable < 2 * least:
                # No two scenes of this clip can both carry the shot: one candidate, found
                # without scene detection.
                found.append(Span(path, info, 1, 1, 0.0, usable, None))
            else:
                found.extend(_scene_candidates(path, info, seconds, least=least))
            if len(found) >= MAX_CANDIDATES:
                break
        if not found and short:
            raise MediaError(short[0][0], short_footage_reason(request.shot_id, seconds, short))
        return found[:MAX_CANDIDATES]

    def _clips(self, request: SegmentRequest) -> list[Path]:
        clips = [Path(p) for p in request.sources]
        settings = request.settings or self.settings
        if settings.library:
            folder = Path(settings.library).expanduser()
            if not folder.is_dir():
                raise ConfigError(f"engines.footage.library: '{folder}' is not a folder")
            known = {p.resolve() for p in clips}
            for path in sorted(folder.rglob("*")):
                if (path.suffix.lower() in media.VIDEO_EXTENSIONS and path.is_file()
                        and not path.name.startswith(".") and path.resolve() not in known):
                    clips.append(path)
        return clips

    def generate(self, request: SegmentRequest) -> Iterator[Take]:
        """One take per seed, each the most stable span of its candidate.

        Raises:
            EngineError: a seed names no candidate.
            MediaError: a clip cannot be decoded.
        """
        found = self.candidates(request)
        if not found:
            raise EngineError(f"shot '{request.shot_id}': footage has no clips to cut from")
        seconds = request.frames / float(request.fps)
        for seed in request.seeds:
            if not 0 <= seed < len(found):
                raise EngineError(f"shot '{request.shot_id}': footage has {len(found)} "
                                  f"candidates, so no candidate {seed}")
            candidate = found[seed]
            if candidate.analysis is not None:
                start = stable_start(candidate.analysis.times, candidate.analysis.energy,
                                     (candidate.start, candidate.end), seconds)
            else:
                start = middle_start(candidate, seconds)
            yield self._take(request, seed, candidate, start)

    def _take(self, request: SegmentRequest, seed: int, candidate: Span,
              start: float) -> Take:
        available = max(0.0, candidate.end - start)
        wanted = request.frames
        # Frames the span can fill on the timeline grid; the rest hold the last frame.
        fits = min(wanted, max(1, math.floor(available * float(request.fps) + 1e-6)))
        name = candidate.path.name
        label = (f"{name} scene {candidate.scene} @ {start:.1f} s" if candidate.scenes > 1
                 else f"{name} @ {start:.1f} s")
        meta: dict[str, Any] = {
            "source": str(candidate.path), "scene": candidate.scene,
            "scenes": candidate.scenes, "start": round(start, 6),
            "scene_start": round(candidate.start, 6), "scene_end": round(candidate.end, 6),
        }
        if fits == wanted:
            meta["end"] = round(start + wanted / float(request.fps), 6)
            return Take.from_file(candidate.path, start=start, frames=wanted,
                                  size=(request.width, request.height), seed=seed, label=label,
                                  audio=candidate.info.has_audio, meta=meta)
        frames = decode_span(candidate.path, candidate.info, start, fits, request.fps,
                             (request.width, request.height))
        short_by = wanted - len(frames)
        if short_by > 0 and not request.hold_short:
            raise MediaError(candidate.path, f"holds only {len(frames)} of the {wanted} frames shot "
                                             f"'{request.shot_id}' needs from {start:.2f} s (it ends "
                                             "early: shorter than the shot, or truncated); use a longer "
                                             "clip, or set `short_source: hold` to hold its last frame")
        if short_by > 0:
            frames = np.concatenate([frames, np.repeat(frames[-1:], short_by, axis=0)])
        meta["end"] = round(start + (wanted - short_by) / float(request.fps), 6)
        if short_by > 0:
            meta["short_by_frames"] = short_by
        audio = candidate.path if candidate.info.has_audio else None
        return Take(frames=frames, seed=seed, label=label, audio=audio,
                    audio_start=start if audio else 0.0, meta=meta)


def middle_start(candidate: Span, seconds: float) -> float:
    """The start of the `seconds`-long span in the middle of a candidate, on a frame of
    its clip (the candidate's start when it is not longer)."""
    spare = candidate.end - candidate.start - seconds
    if spare <= 0:
        return candidate.start
    middle = candidate.start + spare / 2
    if candidate.info.vfr or candidate.info.fps <= 0:
        return middle
    frame = math.floor(middle * candidate.info.fps)
    return max(candidate.start, float(frame / candidate.info.fps))


def short_footage_reason(shot_id: str, seconds: float, short: list[tuple[Path, float]]) -> str:
    """Why a shot's footage is refused: every clip is shorter than the shot."""
    clips = ", ".join(f"{path.name} has {usable:.2f} s" for path, usable in short)
    return (f"shot '{shot_id}' lasts {seconds:.2f} s but its footage is shorter ({clips}; a "
            "truncated file ends before its header says); use a longer clip, shorten the shot, "
            "or set `short_source: hold` to hold the last frame")


def least_seconds(frames: int, fps: Fraction) -> float:
    """Seconds a clip must hold to fill `frames` frames at `fps`. Half a frame of slack:
    a clip exactly as long as the shot fills it."""
    return (frames - 0.5) / float(fps)


def usable_seconds(info: media.MediaInfo) -> float:
    """Seconds of video a clip really holds: a truncated file ends before its header says,
    which the packets actually present and the end of its data reveal."""
    seconds = info.duration
    if info.packets and info.packets < info.frames:
        seconds = min(seconds, info.packets / float(info.fps))
    if info.data_end > 0:
        seconds = min(seconds, info.data_end)
    return seconds


def _scene_candidates(path: Path, info: media.MediaInfo, seconds: float, least: float) -> list[Span]:
    analysis = analyse_clip(path)
    end = usable_seconds(info)
    scenes = analysis.scenes or [(0.0, end)]
    # A scene shorter than `least` would end in held frames (or, when holding is
    # allowed, be mostly a frozen frame): drop it, unless nothing else is left, in which
    # case the whole clip, cuts and all, is the one candidate.
    usable = [(i, s) for i, s in enumerate(scenes, 1) if s[1] - s[0] >= least]
    if not usable:
        return [Span(path, info, 1, 1, 0.0, end, analysis)]
    return [Span(path, info, i, len(scenes), a, b, analysis) for i, (a, b) in usable]


def decode_span(path: Path, info: media.MediaInfo, start: float, frames: int, fps: Fraction,
                size: tuple[int, int]) -> np.ndarray:
    """Decodes up to `frames` frames from `start` seconds, on a CFR grid at `fps`, upright,
    scaled to cover `size` and centre-cropped, as uint8 RGB.

    ffmpeg does the work: it seeks by timestamp, its ``fps`` filter resamples variable
    frame rates onto the grid, and it applies the display rotation itself.

    Raises:
        MediaError: no frame could be decoded from `start`.
    """
    width, height = size
    chain = []
    if info.sar and info.sar != 1:
        chain.append("scale=trunc(iw*sar/2)*2:ih")
    # Crop to the target's aspect before scaling: scaling first to cover a much taller
    # or wider frame would resample many pixels that are then thrown away.
    chain += [f"fps={format_fps(fps)}",
              f"crop=w='min(iw,ih*{width}/{height})':h='min(ih,iw*{height}/{width})'",
              f"scale={width}:{height}:flags=bicubic", "setsar=1"]
    with tempfile.TemporaryDirectory(prefix="stitchcraft-footage-") as folder:
        raw = Path(folder) / "span.rgb"
        media.run_ffmpeg(["-loglevel", "error", "-ss", f"{start:.6f}", "-i", str(path),
                          "-map", "0:v:0", "-vf", ",".join(chain), "-frames:v", str(frames),
                          "-an", "-sn", "-pix_fmt", "rgb24", "-f", "rawvideo", str(raw)],
                         what=f"decode {path.name} from {start:.2f} s")
        pixels = np.fromfile(raw, dtype=np.uint8)
    frame_bytes = width * height * 3
    count = pixels.size // frame_bytes
    if count == 0:
        raise MediaError(path, f"no video frames could be decoded from {start:.2f} s")
    return pixels[:count * frame_bytes].reshape(count, height, width, 3)
