from fractions import Fraction

import pytest

from stitchcraft.timeline import format_fps, parse_fps, seconds_to_frames, timecode


@pytest.mark.parametrize("value, expected", [
    (24, Fraction(24)), ("25", Fraction(25)), (23.976, Fraction(24000, 1001)),
    ("29.97", Fraction(30000, 1001)), ("30000/1001", Fraction(30000, 1001)),
    (59.94, Fraction(60000, 1001)), (12.5, Fraction(25, 2)),
])
def test_parse_fps(value, expected):
    assert parse_fps(value) == expected


@pytest.mark.parametrize("value", [0, -24, "abc", "1/0", True, None, [24], 1000])
def test_parse_fps_rejects(value):
    with pytest.raises(ValueError):
        parse_fps(value)


def test_seconds_to_frames_rounds_once_exactly():
    ntsc = Fraction(24000, 1001)
    assert seconds_to_frames(5, ntsc) == 120  # 119.88 -> 120
    assert seconds_to_frames(0.5, Fraction(30000, 1001)) == 15  # 14.985 -> 15
    assert seconds_to_frames(Fraction(1, 48), Fraction(24)) == 1  # exactly half a frame rounds up
    assert seconds_to_frames(0.1, Fraction(25)) == 3  # 2.5 -> 3, no float drift
    assert seconds_to_frames(60, Fraction(30000, 1001)) == 1798


def test_format_and_timecode():
    assert format_fps(Fraction(24)) == "24"
    assert format_fps(Fraction(30000, 1001)) == "30000/1001"
    assert timecode(24 * 61 + 12, Fraction(24)) == "00:01:01.500"
