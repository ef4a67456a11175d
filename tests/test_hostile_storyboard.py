"""Hostile storyboards through the `stitch` command: every one is refused at validation.

Issue 8, items 6, 11 and 12: numbers that hang or overflow, short forms that skipped the
long forms' checks, files that are not what they claim, and smaller slips. Each case
runs `stitch validate` (and `stitch plan` / `stitch render` where it used to fail late)
on files made at test time and expects exit code 2, one located message
(``file:line:col: field: ...``), no traceback, no change to the user's files, and an
answer well inside its timeout.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from lavfi import make_image

from stitchcraft.fonts import sans_font_file

TIMEOUT = 60  # seconds per command: a hang fails the test instead of stalling the run

HEAD = """\
version: 1
output: {fps: 24, size: 320x180, path: out/cut.mp4}
shots:
"""


def stitch(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "STITCHCRAFT_CACHE": str(cwd / "cache")}
    return subprocess.run([sys.executable, "-m", "stitchcraft", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=TIMEOUT, env=env)


def digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def refused(folder: Path, yaml_text: str, line: int, field: str, *phrases: str,
            commands: tuple[str, ...] = ("validate",)) -> str:
    """Writes the storyboard, runs each command and checks the refusal; returns its message."""
    board = folder / "board.yaml"
    board.write_text(textwrap.dedent(yaml_text))
    before = digests(folder)
    message = ""
    for command in commands:
        done = stitch(command, board.name, cwd=folder)
        assert done.returncode == 2, f"stitch {command}: exit {done.returncode}\n{done.stderr}"
        assert "Traceback" not in done.stderr and "internal error" not in done.stderr, done.stderr
        where = re.search(rf"board\.yaml:{line}:\d+: {re.escape(field)}: (.*)", done.stderr)
        assert where, f"stitch {command}: no issue at line {line}, {field}:\n{done.stderr}"
        message = where.group(1)
        for phrase in phrases:
            assert phrase in message, f"{phrase!r} not in {message!r}"
        assert digests(folder) == before  # nothing written, nothing changed
    return message


# --- item 6: numbers are bounded before any arithmetic ----------------------------------

EVERY_COMMAND = ("validate", "plan", "render")


@pytest.mark.parametrize("fps, phrase, commands", [
    ('"1e99999999"', "is not a frame rate", EVERY_COMMAND),  # hung every command
    ('"1e999999999"', "is not a frame rate", ("validate",)),
    (".inf", "outside 1-240 fps", EVERY_COMMAND),  # OverflowError
    ("-.inf", "outside 1-240 fps", ("validate",)),
    (".nan", "outside 1-240 fps", ("validate",)),
    ('"1e400"', "is not a frame rate", ("validate", "plan")),  # OverflowError
    ("1" + "0" * 500, "outside 1-240 fps", ("validate",)),
    ('"1/0"', "divides by zero", ("validate",)),
])
def test_frame_rate_is_bounded_before_arithmetic(tmp_path, fps, phrase, commands):
    refused(tmp_path, f"""\
        version: 1
        output: {{fps: {fps}, size: 320x180}}
        shots:
          - {{id: card, title: Hello, duration: 1}}
        """, 2, "output.fps", phrase, commands=commands)


NUMBERS = """\
version: 1
shots:
  - id: card
    title: Hello
    duration: {shots[0].duration}
    transition: {{type: fade, duration: {shots[0].transition.duration}}}
    text: {{content: Hi, start: {shots[0].text.start},
            duration: {shots[0].text.duration},
            size: {shots[0].text.size}}}
    volume: {shots[0].volume}
    seed: {shots[0].seed}
audio: {{loudness: {audio.loudness}}}
scoring: {{weights: {{stability: {scoring.weights.stability}}}}}
ending: {{type: fade, duration: {ending.duration}}}
"""
SANE = {"shots[0].duration": "2", "shots[0].transition.duration": "0.5", "shots[0].text.start": "0",
        "shots[0].text.duration": "1", "shots[0].text.size": "0.1", "shots[0].volume": "0",
        "shots[0].seed": "1", "audio.loudness": "-14", "scoring.weights.stability": "1",
        "ending.duration": "0.5"}


@pytest.mark.parametrize("line, field, value, phrase", [
    (5, "shots[0].duration", ".nan", "expected a finite number"),
    (5, "shots[0].duration", "1.0e+400", "expected a finite number"),
    (5, "shots[0].duration", "1" + "0" * 400, "digit number"),
    (5, "shots[0].duration", "7200", "must be at most 3600"),
    (6, "shots[0].transition.duration", ".inf", "expected a finite number"),
    (7, "shots[0].text.start", ".inf", "expected a finite number"),
    (7, "shots[0].text.start", "1.0e+300", "must be at most 3600"),
    (8, "shots[0].text.duration", "-.inf", "expected a finite number"),
    (9, "shots[0].text.size", ".nan", "expected a finite number"),
    (10, "shots[0].volume", ".inf", "expected a finite number"),
    (11, "shots[0].seed", str(2**64), "must be less than 4294967296"),
    (12, "audio.loudness", ".nan", "expected a finite number"),
    (13, "scoring.weights.stability", ".inf", "expected a finite number"),
    (14, "ending.duration", "1.0e+20", "must be at most 60"),
])
def test_every_number_is_finite_and_bounded(tmp_path, line, field, value, phrase):
    values = {**SANE, field: value}
    text = NUMBERS
    for name, given in values.items():
        text = text.replace("{" + name + "}", given)
    refused(tmp_path, text.replace("{{", "{").replace("}}", "}"), line, field, phrase)


def test_sane_numbers_pass(tmp_path):
    text = NUMBERS
    for name, given in SANE.items():
        text = text.replace("{" + name + "}", given)
    (tmp_path / "board.yaml").write_text(text.replace("{{", "{").replace("}}", "}"))
    done = stitch("validate", "board.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stderr


# --- item 11: short forms get the long forms' checks; files are what they claim ----------

@pytest.mark.parametrize("shot, field, phrase", [
    ('title: ""', "shots[0].title", "must not be empty"),
    ("title: " + "x" * 600, "shots[0].title", "is 600 characters long; at most 500"),
    ('{title: Hi, text: ""}', "shots[0].text", "must not be empty"),
    ("{title: Hi, text: " + "y" * 10_000 + "}", "shots[0].text", "is 10000 characters long; at most 2000"),
])
def test_short_forms_are_checked_like_long_forms(tmp_path, shot, field, phrase):
    if shot.startswith("title"):
        shot = "{" + shot + "}"
    shot = shot[:-1] + ", id: card, duration: 1}"
    refused(tmp_path, HEAD + f"  - {shot}\n", 4, field, phrase,
            commands=("validate", "plan", "render"))


def test_variant_short_form_is_checked(tmp_path):
    refused(tmp_path, HEAD + """\
  - {id: card, title: Hello, duration: 1}
variants:
  - name: de
    shots: {card: {title: ""}}
""", 7, "variants[0].shots.card.title", "must not be empty")


@pytest.mark.parametrize("card, line, field, phrase", [
    ("{text: Hi, background: notacolor}", 4, "shots[0].title.background", "is not a colour"),
    ("{text: Hi, color: whit}", 4, "shots[0].title.color", "did you mean 'white'"),
])
def test_title_colours_are_names_ffmpeg_and_pillow_know(tmp_path, card, line, field, phrase):
    refused(tmp_path, HEAD + f"  - {{id: card, duration: 1, title: {card}}}\n", line, field, phrase,
            commands=("validate", "render"))


def test_caption_colour_is_a_name_ffmpeg_knows(tmp_path):
    refused(tmp_path, HEAD + "  - {id: card, duration: 1, title: Hi, text: {content: x, color: notacolor}}\n",
            4, "shots[0].text.color", "is not a colour", commands=("validate", "render"))


def test_colour_names_beyond_the_first_few_are_accepted(tmp_path):
    board = tmp_path / "board.yaml"
    board.write_text(HEAD + "  - {id: card, duration: 1, title: {text: Hi, background: PapayaWhip, "
                            "color: '#1A2b3c'}, text: {content: x, color: lightgoldenrodyellow}}\n")
    done = stitch("validate", board.name, cwd=tmp_path)
    assert done.returncode == 0, done.stderr


@pytest.fixture
def junk(tmp_path):
    """Files with the right names and the wrong insides."""
    (tmp_path / "junk.ttf").write_bytes(b"this is not a font\n" * 10)
    (tmp_path / "junk.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    (tmp_path / "binary.srt").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "words.srt").write_text("hello\nthere\n")
    (tmp_path / "badtime.srt").write_text("1\n00:00:01,000 --> 00:00:02,000\nok\n\n"
                                          "2\n00:00:03,000 --> 00:61:04,000\nbad\n")
    (tmp_path / "backwards.srt").write_text("1\n00:00:05,000 --> 00:00:02,000\nback\n")
    (tmp_path / "nohead.vtt").write_text("00:01.000 --> 00:02.000\nhi\n")
    (tmp_path / "noevents.ass").write_text("[Script Info]\nScriptType: v4.00+\n")
    (tmp_path / "badevent.ass").write_text(
        "[Script Info]\n\n[Events]\nFormat: Layer, Start, End, Style, Text\n"
        "Dialogue: 0,0:00:01.00,soon,Default,Hi\n")
    return tmp_path


@pytest.mark.parametrize("where, field, phrase", [
    ("title: {text: Hi, font: junk.ttf}", "shots[0].title.font", "is not a font FreeType can read"),
    ("title: Hi, text: {content: x, font: junk.ttf}", "shots[0].text.font", "is not a font FreeType can read"),
    ("image: junk.png", "shots[0].image", "is not an image Pillow can read"),
])
def test_fonts_and_images_are_opened_at_validation(junk, where, field, phrase):
    refused(junk, HEAD + f"  - {{id: card, duration: 1, {where}}}\n", 4, field, phrase,
            commands=("validate", "render"))


def test_logo_must_be_an_image(junk):
    refused(junk, HEAD + "  - {id: card, duration: 1, title: Hi}\nlogo: junk.png\n", 5, "logo",
            "logo 'junk.png' is not an image", commands=("validate", "render"))


@pytest.mark.parametrize("name, phrase", [
    ("binary.srt", "is not UTF-8 text"),
    ("words.srt", "holds no cue"),
    ("badtime.srt", "line 6: '00:00:03,000 --> 00:61:04,000' is not a cue timing"),
    ("backwards.srt", "line 2: the cue ends before it starts"),
    ("nohead.vtt", "line 1: a WebVTT file starts with 'WEBVTT'"),
    ("noevents.ass", "holds no Dialogue event"),
    ("badevent.ass", "line 5: the Dialogue has no Start and End times"),
])
def test_junk_subtitles_exit_2_naming_the_line(junk, name, phrase):
    refused(junk, HEAD + f"  - {{id: card, duration: 1, title: Hi}}\nsubtitles: {name}\n", 5,
            "subtitles", f"subtitle '{name}'", phrase, commands=("validate", "render"))


def test_good_fonts_images_and_subtitles_pass(tmp_path):
    font = sans_font_file()
    if font is None:
        pytest.skip("no system font to copy")
    (tmp_path / "caption.ttf").write_bytes(font.read_bytes())
    make_image(tmp_path / "logo.png", size="64x64")
    (tmp_path / "subs.srt").write_text("1\n00:00:00,500 --> 00:00:01,000\nHi\n")
    (tmp_path / "subs.vtt").write_text("WEBVTT\n\n00:00.500 --> 00:01.000 align:start\nHi\n")
    (tmp_path / "subs.ass").write_text(
        "[Script Info]\nScriptType: v4.00+\n\n[Events]\n"
        "Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text\n"
        "Dialogue: 0,0:00:00.50,0:00:01.00,Default,,0,0,0,,Hi, there\n")
    for subs in ("subs.srt", "subs.vtt", "subs.ass"):
        board = tmp_path / "board.yaml"
        board.write_text(HEAD + "  - {id: card, duration: 1, title: {text: Hi, font: caption.ttf},\n"
                                "     text: {content: x, font: caption.ttf}}\n"
                                f"logo: logo.png\nsubtitles: {subs}\n")
        done = stitch("validate", board.name, cwd=tmp_path)
        assert done.returncode == 0, done.stderr


# --- item 12: smaller slips --------------------------------------------------------------

def test_fps_true_is_refused(tmp_path):
    refused(tmp_path, HEAD.replace("fps: 24", "fps: true") + "  - {id: card, title: Hi, duration: 1}\n",
            2, "output.fps", "expected a frame rate")


def test_quoted_number_is_not_coerced(tmp_path):
    refused(tmp_path, HEAD + '  - {id: card, title: Hi, duration: 1}\ndefaults: {candidates: "3"}\n',
            5, "defaults.candidates", "expected a whole number, got '3'")


def test_quoted_version_says_it_must_be_the_number_1(tmp_path):
    message = refused(tmp_path, HEAD.replace("version: 1", 'version: "1"')
                      + "  - {id: card, title: Hi, duration: 1}\n", 1, "version", "must be the number 1")
    assert "did you mean" not in message


def test_size_as_a_bare_number_says_what_a_size_looks_like(tmp_path):
    refused(tmp_path, HEAD.replace("size: 320x180", "size: 320") + "  - {id: card, title: Hi, duration: 1}\n",
            2, "output.size", "expected a size like 1280x720")


@pytest.mark.parametrize("depth", [70, 5000])
def test_nesting_limit_gives_a_line(tmp_path, depth):
    board = tmp_path / "board.yaml"
    board.write_text(HEAD + "  - {id: card, title: Hi, duration: 1}\nextra: " + "[" * depth + "]" * depth + "\n")
    done = stitch("validate", board.name, cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert re.search(r"board\.yaml:5:\d+: .*nests more than 64 levels deep", done.stderr), done.stderr


def test_hour_long_shot_is_refused_by_plan_with_the_figure(tmp_path):
    """One title card an hour long: its frames cannot be held (it used to run out of memory)."""
    refused(tmp_path, HEAD.replace("320x180", "1280x720") + "  - id: card\n    title: Hello\n"
                                                           "    duration: 3600\n",
            6, "shots[0].duration", "86400 frames of 1280x720", "GiB in memory",
            "split it into shots of at most", commands=("plan", "render"))


def test_hour_of_many_shots_is_planned(tmp_path):
    """An hour of ten-second shots: each take fits in memory, so the hour plans."""
    shots = "".join(f"  - {{id: s{i}, title: Shot {i}, duration: 10}}\n" for i in range(360))
    board = tmp_path / "board.yaml"
    board.write_text(HEAD.replace("320x180", "1280x720") + shots)
    done = stitch("plan", "--json", board.name, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert '"total_frames": 86400' in done.stdout


def test_memory_limit_refuses_exactly_the_shots_that_cannot_be_held(tmp_path):
    """In process, against a fixed limit: 48 frames of 320x180 take 2 x 8.3 MB to make."""
    from stitchcraft.errors import StoryboardError
    from stitchcraft.plan import plan_storyboard
    from stitchcraft.storyboard.load import load_storyboard

    board = tmp_path / "board.yaml"
    board.write_text(HEAD + "  - {id: card, title: Hi, duration: 1}\n"
                            "  - {id: long, title: Hi, duration: 2}\n")
    loaded = load_storyboard(board)
    needed = 2 * 48 * 320 * 180 * 3
    assert plan_storyboard(loaded, memory_limit=needed).total_frames == 72
    with pytest.raises(StoryboardError) as caught:
        plan_storyboard(loaded, memory_limit=needed - 1)
    [issue] = caught.value.issues
    assert (issue.line, issue.field) == (5, "shots[1].duration")
    assert "shot 'long' is 48 frames of 320x180" in issue.message
    assert "15.8 MiB" in issue.message and "at most 1.9 s" in issue.message
