"""Time on one grid: integer frames and an exact `Fraction` frame rate.

Seconds appear only at the edges (YAML in, ffmpeg arguments out) and are rounded to
frames exactly once, here.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from fractions import Fraction

from .yamlsource import shown, spelled

MIN_FPS, MAX_FPS = 1, 240
# Plain decimals and ratios of whole numbers, short enough that the exact value is cheap.
_DECIMAL = re.compile(r"\s*\d{1,6}(\.\d{1,9})?\s*")
_RATIO = re.compile(r"\s*(\d{1,9})\s*/\s*(\d{1,9})\s*")

# Rates people type as decimals but mean as NTSC fractions.
_NTSC = {
    Fraction(23976, 1000): Fraction(24000, 1001),
    Fraction(2997, 100): Fraction(30000, 1001),
    Fraction(5994, 100): Fraction(60000, 1001),
    Fraction(47952, 1000): Fraction(48000, 1001),
    Fraction(11988, 100): Fraction(120000, 1001),
}


def parse_fps(value: int | float | str | Fraction) -> Fraction:
    """Reads a frame rate as an exact fraction.

    Accepts ``24``, ``"25"``, ``"30000/1001"`` and the NTSC decimals ``23.976``,
    ``29.97`` and ``59.94``, which mean 24000/1001, 30000/1001 and 60000/1001. Text is
    matched against short patterns before any arithmetic, so no spelling of a number
    (``"1e99999999"``, ``.inf``) can make this slow or overflow.

    Raises:
        ValueError: not a rate from `MIN_FPS` to `MAX_FPS`.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a frame rate such as 24, 25, 29.97 or 30000/1001, got {spelled(value)}")
    if isinstance(value, Fraction):
        fps = value
    elif isinstance(value, int):
        if not MIN_FPS <= value <= MAX_FPS:
            raise ValueError(f"frame rate {shown(value)} is outside {MIN_FPS}-{MAX_FPS} fps")
        fps = Fraction(value)
    elif isinstance(value, float):
        if not (math.isfinite(value) and MIN_FPS <= value <= MAX_FPS):
            raise ValueError(f"frame rate {shown(value)} is outside {MIN_FPS}-{MAX_FPS} fps")
        fps = Fraction(Decimal(repr(value)))
    elif isinstance(value, str) and (ratio := _RATIO.fullmatch(value)):
        if int(ratio[2]) == 0:
            raise ValueError(f"'{value}' divides by zero; write a rate such as 30000/1001")
        fps = Fraction(int(ratio[1]), int(ratio[2]))
    elif isinstance(value, str) and _DECIMAL.fullmatch(value):
        fps = Fraction(Decimal(value.strip()))
    elif isinstance(value, str):
        raise ValueError(f"'{shown(value)}' is not a frame rate such as 24, 29.97 or 30000/1001")
    else:
        raise ValueError("expected a frame rate such as 24, 25, 29.97 or 30000/1001")
    fps = _NTSC.get(fps, fps)
    if not MIN_FPS <= fps <= MAX_FPS:
        shown_rate = f"{float(fps):g}" if abs(fps) < 10**9 else "over a billion"
        raise ValueError(f"frame rate {shown_rate} is outside {MIN_FPS}-{MAX_FPS} fps")
    return fps


def seconds_to_frames(seconds: float | Fraction | int, fps: Fraction) -> int:
    """Rounds a duration in seconds to whole frames, halves away from zero.

    Raises:
        ValueError: `seconds` is not finite (the storyboard's checks keep it so).
    """
    if isinstance(seconds, float) and not math.isfinite(seconds):
        raise ValueError(f"a duration of {seconds} seconds is not a time")
    exact = Fraction(Decimal(repr(seconds))) if isinstance(seconds, float) else Fraction(seconds)
    frames = exact * fps
    return int(frames + Fraction(1, 2)) if frames >= 0 else -int(-frames + Fraction(1, 2))


def frames_to_seconds(frames: int, fps: Fraction) -> Fraction:
    """The exact time of a frame boundary."""
    return Fraction(frames) / fps


def format_fps(fps: Fraction) -> str:
    """Renders a rate as ffmpeg and people read it: ``24`` or ``30000/1001``."""
    return str(fps.numerator) if fps.denominator == 1 else f"{fps.numerator}/{fps.denominator}"


def timecode(frames: int, fps: Fraction) -> str:
    """``HH:MM:SS.mmm`` of a frame boundary, for messages and reports."""
    ms = int(frames_to_seconds(frames, fps) * 1000)
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    return f"{hours:02d}:{minutes:02d}:{rest / 1000:06.3f}"
