"""Time on one grid: integer frames and an exact `Fraction` frame rate.

Seconds appear only at the edges (YAML in, ffmpeg arguments out) and are rounded to
frames exactly once, here.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

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
    ``29.97`` and ``59.94``, which mean 24000/1001, 30000/1001 and 60000/1001.

    Raises:
        ValueError: not a positive rate.
    """
    if isinstance(value, bool):
        raise ValueError("expected a frame rate such as 24, 25, 29.97 or 30000/1001")
    if isinstance(value, Fraction):
        fps = value
    elif isinstance(value, int):
        fps = Fraction(value)
    elif isinstance(value, float):
        fps = Fraction(Decimal(repr(value)))
    elif isinstance(value, str) and "/" in value:
        num, _, den = value.partition("/")
        try:
            fps = Fraction(int(num.strip()), int(den.strip()))
        except (ValueError, ZeroDivisionError):
            raise ValueError(f"'{value}' is not a frame rate such as 30000/1001") from None
    elif isinstance(value, str):
        try:
            fps = Fraction(Decimal(value.strip()))
        except Exception:
            raise ValueError(f"'{value}' is not a frame rate such as 24 or 29.97") from None
    else:
        raise ValueError("expected a frame rate such as 24, 25, 29.97 or 30000/1001")
    fps = _NTSC.get(fps, fps)
    if fps <= 0 or fps > 240:
        raise ValueError(f"frame rate {float(fps):g} is outside 0-240 fps")
    return fps


def seconds_to_frames(seconds: float | Fraction | int, fps: Fraction) -> int:
    """Rounds a duration in seconds to whole frames, halves away from zero."""
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
