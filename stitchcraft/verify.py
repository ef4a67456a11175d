"""Verification of a rendered cut before it is published.

ffmpeg is treated as untrusted: whatever it reported, the file it wrote is probed and
compared with the plan. Frame count, size and frame rate must match exactly; the audio
must last the programme's length within `AUDIO_TOLERANCE` seconds; and when the
programme has sound, its integrated loudness must lie within `LOUDNESS_TOLERANCE` LU of
the target (one ``ebur128`` pass over the written file).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from .errors import MediaError, VerificationError
from .media import integrated_loudness, probe
from .timeline import format_fps

AUDIO_TOLERANCE = 0.05
LOUDNESS_TOLERANCE = 1.0


@dataclass(frozen=True)
class Expected:
    """What a render must be.

    Attributes:
        frames, width, height, fps: The video, exactly.
        audio: True when the file must carry sound as long as the video.
        loudness: Target integrated loudness (LUFS), or None to skip the check.
    """

    frames: int
    width: int
    height: int
    fps: Fraction
    audio: bool
    loudness: float | None = None


@dataclass(frozen=True)
class Measured:
    """What verification found."""

    frames: int
    duration: float
    loudness: float | None


def verify_render(path: Path, expected: Expected) -> Measured:
    """Probes `path` and checks it against `expected`.

    Raises:
        VerificationError: every mismatch found, in one message.
    """
    try:
        info = probe(path, count_frames=True)
    except MediaError as exc:
        raise VerificationError(f"the render cannot be read back: {exc.reason}") from None
    problems: list[str] = []
    if info.frames != expected.frames:
        problems.append(f"{info.frames} frames, planned {expected.frames}")
    if (info.width, info.height) != (expected.width, expected.height):
        problems.append(f"size {info.width}x{info.height}, planned "
                        f"{expected.width}x{expected.height}")
    if info.fps != expected.fps:
        problems.append(f"{format_fps(info.fps)} fps, planned {format_fps(expected.fps)}")
    seconds = float(Fraction(expected.frames) / expected.fps)
    loudness = None
    if expected.audio:
        if not info.has_audio:
            problems.append("no audio stream")
        else:
            if abs(info.audio_duration - seconds) > AUDIO_TOLERANCE:
                problems.append(f"audio lasts {info.audio_duration:.3f} s, the picture "
                                f"{seconds:.3f} s")
            if expected.loudness is not None:
                loudness = integrated_loudness(path)
                if loudness is None:
                    problems.append("the audio is silent")
                elif abs(loudness - expected.loudness) > LOUDNESS_TOLERANCE:
                    problems.append(f"loudness {loudness:.1f} LUFS, target "
                                    f"{expected.loudness:.1f} LUFS")
    elif info.has_audio:
        problems.append("an audio stream where none was planned")
    if problems:
        raise VerificationError(f"{path.name} failed verification: " + "; ".join(problems))
    return Measured(frames=info.frames, duration=seconds, loudness=loudness)
