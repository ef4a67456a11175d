"""Property tests: whatever a storyboard field holds, loading and planning end quickly in
a located `StoryboardError` (or another `InputError`) or in a plan; never a hang, a
traceback or an error of another kind.

The fields covered are those whose values reach arithmetic (every number), ffmpeg or
Pillow (text, colours, fonts) or the file system (every path). Each example is written
as YAML and goes through `load_storyboard` (with file checks) and `plan_storyboard`.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from lavfi import make_image, make_tone, make_video

from stitchcraft.errors import InputError, StoryboardError
from stitchcraft.fonts import sans_font_file
from stitchcraft.plan import plan_storyboard
from stitchcraft.storyboard.load import load_storyboard
from stitchcraft.timeline import MAX_FPS, MIN_FPS, parse_fps

# Each example must finish in 2 s; a hang shows up as DeadlineExceeded.
FAST = settings(deadline=2000, max_examples=120, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
MEMORY = 32 * 2**30  # plan against a fixed machine, so a result never depends on this one
MARK = "__VALUE__"

BASE: dict[str, Any] = {
    "version": 1,
    "title": "Properties",
    "output": {"fps": 24, "size": "320x180", "path": "out/cut.mp4", "crf": 20},
    "defaults": {"candidates": 2, "seed": 1, "steps": 8,
                 "transition": {"type": "dissolve", "duration": 0.25}},
    "audio": {"music": "music.wav", "loudness": -14, "true_peak": -1, "music_volume": 0,
              "duck": -12, "music_fade": 1},
    "ending": {"type": "fade", "duration": 0.25},
    "scoring": {"weights": {"stability": 1.0}, "beam": 1, "seam_threshold": 0.3},
    "engines": {"ltx-video": {"steps": 8, "guidance": 3.0, "batch": 1}},
    "subtitles": "subs.srt",
    "logo": "logo.png",
    "shots": [
        {"id": "card", "duration": 1, "transition": {"type": "fade", "duration": 0.25},
         "title": {"text": "Hello", "subtitle": "there", "font": "font.ttf",
                   "background": "black", "color": "white"}},
        {"id": "still", "image": "still.png", "duration": 1, "volume": 0, "seed": 3,
         "text": {"content": "Hi", "start": 0, "duration": 0.5, "size": 0.06, "fade": 0.1,
                  "font": "font.ttf", "color": "white"}},
        {"id": "clip", "source": "clip.mp4", "duration": 1, "pick": 0},
        {"id": "gen", "prompt": "a boat at dawn", "duration": 1, "candidates": 1, "steps": 4,
         "continuity": "chain"},
    ],
    "variants": [{"name": "square", "output": {"size": "180x180", "fps": 24},
                  "shots": {"card": {"title": "Hallo"}, "still": {"text": "Hallo"}}}],
}

NUMBER_FIELDS = [
    ("version",), ("output", "fps"), ("output", "size"), ("output", "crf"),
    ("defaults", "candidates"), ("defaults", "seed"), ("defaults", "steps"),
    ("defaults", "transition", "duration"),
    ("audio", "loudness"), ("audio", "true_peak"), ("audio", "music_volume"), ("audio", "duck"),
    ("audio", "music_fade"), ("ending", "duration"),
    ("scoring", "weights", "stability"), ("scoring", "beam"), ("scoring", "seam_threshold"),
    ("engines", "ltx-video", "steps"), ("engines", "ltx-video", "guidance"),
    ("engines", "ltx-video", "batch"),
    ("shots", 0, "duration"), ("shots", 0, "transition", "duration"),
    ("shots", 1, "duration"), ("shots", 1, "text", "start"), ("shots", 1, "text", "duration"),
    ("shots", 1, "text", "size"), ("shots", 1, "text", "fade"), ("shots", 1, "volume"),
    ("shots", 1, "seed"), ("shots", 2, "pick"), ("shots", 2, "duration"),
    ("shots", 3, "candidates"), ("shots", 3, "steps"), ("shots", 3, "duration"),
    ("variants", 0, "output", "fps"), ("variants", 0, "output", "size"),
]
TEXT_FIELDS = [
    ("title",), ("shots", 0, "title"), ("shots", 0, "title", "text"),
    ("shots", 0, "title", "subtitle"), ("shots", 0, "title", "background"),
    ("shots", 0, "title", "color"), ("shots", 1, "text"), ("shots", 1, "text", "content"),
    ("shots", 1, "text", "color"), ("shots", 3, "prompt"), ("shots", 3, "negative_prompt"),
    ("shots", 1, "id"), ("shots", 2, "pick"), ("output", "preset"), ("defaults", "engine"),
    ("variants", 0, "shots", "card", "title"), ("variants", 0, "shots", "still", "text"),
]
PATH_FIELDS = [
    ("shots", 0, "title", "font"), ("shots", 1, "image"), ("shots", 1, "text", "font"),
    ("shots", 2, "source"), ("shots", 3, "reference"), ("logo",), ("subtitles",),
    ("audio", "music"), ("audio", "voiceover"), ("output", "path"),
    ("engines", "footage", "library"), ("scoring", "lpips_weights"),
    ("variants", 0, "output", "path"), ("variants", 0, "shots", "still", "image"),
    ("variants", 0, "shots", "clip", "source"),
]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A folder with every file the base storyboard names, and some impostors."""
    folder = tmp_path_factory.mktemp("properties")
    make_image(folder / "still.png", size="160x90")
    make_image(folder / "logo.png", size="32x32")
    make_video(folder / "clip.mp4", seconds=1.5, size="160x90", audio=None)
    make_tone(folder / "music.wav", seconds=1)
    font = sans_font_file()
    if font is None:
        pytest.skip("no system font to copy")
    (folder / "font.ttf").write_bytes(font.read_bytes())
    (folder / "subs.srt").write_text("1\n00:00:00,200 --> 00:00:00,800\nHi\n")
    (folder / "junk.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    (folder / "junk.ttf").write_bytes(b"OTTO" + b"\x00" * 40)
    (folder / "junk.srt").write_bytes(b"\xff\xfe\x00\x00" * 8)
    (folder / "folder.png").mkdir()
    (folder / "sub").mkdir()
    make_image(folder / "sub" / "deep.jpg", size="32x32")
    return folder


def with_value(path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    """A deep copy of BASE with `value` at `path` (missing mappings are made)."""
    board = yaml.safe_load(yaml.safe_dump(BASE))
    node = board
    for part in path[:-1]:
        node = node[part] if isinstance(part, int) else node.setdefault(part, {})
    node[path[-1]] = value
    return board


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Turns a hang into a failure (Hypothesis' deadline only judges examples that end)."""

    def hung(signum: int, frame: Any) -> None:
        raise AssertionError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def load_and_plan(folder: Path, text: str) -> None:
    """Writes, loads (checking files) and plans; only input errors may come out."""
    board = folder / "board.yaml"
    board.write_text(text, encoding="utf-8")
    try:
        with time_limit(5):
            loaded = load_storyboard(board)
            plan = plan_storyboard(loaded, memory_limit=MEMORY)
    except StoryboardError as exc:
        assert exc.issues and all(str(issue) for issue in exc.issues)
        return
    except InputError:
        return
    assert plan.total_frames > 0 and MIN_FPS <= plan.fps <= MAX_FPS


# --- numbers ------------------------------------------------------------------------------

huge_ints = st.integers(0, 1000).map(lambda e: 10**e) | st.integers(0, 1000).map(lambda e: -(10**e))
python_numbers = (st.integers() | huge_ints | st.floats() | st.booleans() | st.none()
                  | st.fractions().map(str) | st.decimals(allow_nan=True).map(str))
# Spellings that YAML or a decimal parser reads in surprising ways, written unquoted.
raw_numbers = (st.sampled_from([
    "1e99999999", "1e999999999", "1e400", "-1e400", ".inf", "-.inf", ".nan", ".NaN", "0x1F",
    "0o17", "0b101", "1_000", "1:30", "190:20:30", "1/0", "0/0", "30000/1001", "1/1000000000",
    "~", "''", "0", "-0", "0.0000001", "1.0e-400", "1.0e+400", "1" + "0" * 5000, "9" * 4300,
    "1e-99999999", "NaN", "Infinity", "24fps", "[24]", "{fps: 24}", "!!float 1", "&a 1",
]) | st.from_regex(r"-?\d{0,12}(\.\d{0,12})?([eE][+-]?\d{1,10})?", fullmatch=True))


@FAST
@given(field=st.sampled_from(NUMBER_FIELDS), value=python_numbers)
@example(field=("output", "fps"), value="1e99999999")
@example(field=("output", "fps"), value=float("inf"))
def test_any_number_in_any_numeric_field(project, field, value):
    load_and_plan(project, yaml.safe_dump(with_value(field, value), allow_unicode=True))


@FAST
@given(field=st.sampled_from(NUMBER_FIELDS), raw=raw_numbers, quoted=st.booleans())
def test_any_spelling_of_a_number_in_any_numeric_field(project, field, raw, quoted):
    text = yaml.safe_dump(with_value(field, MARK))
    load_and_plan(project, text.replace(MARK, yaml.safe_dump(raw).split("\n...")[0].strip()
                                        if quoted else raw, 1))


@settings(deadline=200, max_examples=300, derandomize=True)
@given(value=st.text(max_size=40) | raw_numbers | python_numbers)
def test_parse_fps_is_quick_and_bounded(value):
    try:
        with time_limit(5):
            fps = parse_fps(value)
    except ValueError:
        return
    assert isinstance(fps, Fraction) and MIN_FPS <= fps <= MAX_FPS


# --- strings ------------------------------------------------------------------------------

awkward_text = (
    st.text(max_size=60)
    | st.builds(lambda char, count: char * count, st.characters(), st.integers(0, 12_000))
    | st.sampled_from(["", " ", "\x00", "%{pts}", "'; rm -rf ~ #", "\\", "\n\n", "[/b]",
                       "notacolor", "#12345", "#1234567", "WHITE", "\u202e\u0301", "\U0001f600"])
)


@FAST
@given(field=st.sampled_from(TEXT_FIELDS), value=awkward_text)
def test_any_text_in_any_text_field(project, field, value):
    load_and_plan(project, yaml.safe_dump(with_value(field, value), allow_unicode=True))


# --- paths --------------------------------------------------------------------------------

awkward_paths = (
    st.sampled_from([
        "still.png", "clip.mp4", "font.ttf", "subs.srt", "logo.png", "music.wav", "junk.png",
        "junk.ttf", "junk.srt", "folder.png", "missing.png", ".", "..", "/", "~", "~/x.png",
        "/dev/null", "/dev/zero", "/proc/self/status", "*.mp4", "**/*", "sub/**/*.jpg", "[",
        "a\x00b.png", "x" * 300 + ".png", "/".join(["a"] * 600) + ".png", "C:\\\\clip.mp4",
        "file:///etc/passwd", "-i.mp4", "out/cut.mp4", "clip.MP4", "\u00e9t\u00e9.png",
    ])
    | st.lists(st.sampled_from(["a", "*", "**", "?", "sub", "still.png", "clip.mp4", "*.mp4",
                                "folder.png", "."]), min_size=1, max_size=6).map("/".join)
    | st.text(max_size=80)
)


@FAST
@given(field=st.sampled_from(PATH_FIELDS), value=awkward_paths)
@example(field=("shots", 1, "image"), value="x" * 300 + ".png")  # a name too long to stat
@example(field=("shots", 2, "source"), value="x" * 300 + "/*.mp4")
@example(field=("engines", "footage", "library"), value="x" * 300)
@example(field=("subtitles",), value="junk.srt")
def test_any_path_in_any_path_field(project, field, value):
    load_and_plan(project, yaml.safe_dump(with_value(field, value), allow_unicode=True))


def test_base_storyboard_plans(project):
    """The properties start from a storyboard that is valid, so a refusal is the value's."""
    loaded = load_storyboard(_written(project, yaml.safe_dump(BASE)))
    plan = plan_storyboard(loaded, memory_limit=MEMORY)
    assert [s.id for s in plan.shots] == ["card", "still", "clip", "gen"]


def _written(folder: Path, text: str) -> Path:
    board = folder / "board.yaml"
    board.write_text(text)
    return board


# --- whole documents ----------------------------------------------------------------------

@FAST
@given(text=st.text(max_size=200) | st.sampled_from([
    "[" * 3000, "{a: " * 3000, "&a [*a]", "a: &a\n  b: *a\n", "- " * 500 + "x", "!!python/object:os.system ''",
    "version: 1\n" * 3, "\ufeffversion: 1", "---\n---\n", "? [a]\n: b", "<<: {a: 1}",
]))
def test_any_document_is_refused_in_place_or_loads(project, text):
    load_and_plan(project, text)
