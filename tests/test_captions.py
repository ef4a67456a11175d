"""Burned text: any characters a user types, fonts at awkward paths, subtitles, a logo."""

from __future__ import annotations

import json
import shutil
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from lavfi import make_video

from stitchcraft.assemble import CutClip, CutSpec, CutTransition, assemble
from stitchcraft.assemble.captions import filter_value
from stitchcraft.media import probe, read_frames, run_ffmpeg
from stitchcraft.storyboard import Text

CUT = CutTransition("cut", 0)
NASTY = "It's \"quoted\": 100% C:\\path\\n [a,b]; {x} %{pts} ü日本語 Ελληνικά — done\\"
FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")


@pytest.fixture(scope="module")
def plain(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("captions")
    return make_video(folder / "plain.mp4", seconds=1, size="320x180",
                      source="color=c=0x336699:size=320x180:rate=24", audio=None)


def cut(clip_path: Path, tmp: Path, name: str, **options):
    text = options.pop("text", None)
    spec = CutSpec([CutClip("s", clip_path, 24, CUT, text=text)], Fraction(24), 320, 180,
                   **options)
    return assemble(spec, tmp / name, workdir=tmp / "work")


@pytest.mark.parametrize("value", ["plain", "a:b", "it's", "back\\slash", "[x],y;z", "'", "%{n}"])
def test_filter_value_survives_the_graph_parser(tmp_path, value):
    # A drawtext whose textfile path holds the awkward characters must find the file.
    folder = tmp_path / value.replace("/", "_")
    folder.mkdir()
    text_file = folder / "t.txt"
    text_file.write_text("x", encoding="utf-8")
    run_ffmpeg(["-f", "lavfi", "-i", "color=size=32x32:rate=1", "-frames:v", "1", "-vf",
                f"drawtext=textfile={filter_value(str(text_file))}:fontfile="
                f"{filter_value(str(FONT))}", "-f", "null", "-"], what="escape test")


def test_text_with_any_characters_renders(plain, tmp_path):
    if not FONT.exists():
        pytest.skip("DejaVu font not installed")
    weird_font = tmp_path / "fonts: it's [odd], really; 100%" / "Sans.ttf"
    weird_font.parent.mkdir()
    shutil.copy(FONT, weird_font)
    text = Text(content=NASTY + "\nsecond line", position="bottom", size=0.1, color="#ffcc00",
                font=str(weird_font), box=True, fade=0.0)
    result = cut(plain, tmp_path, "text.mp4", text=text)
    with_text = read_frames(result.path, 12, 1)[0].astype(int)
    without = read_frames(plain, 12, 1)[0].astype(int)
    changed = np.abs(with_text - without).sum(axis=2) > 60
    assert changed[90:].sum() > 500  # drawn in the lower half
    assert changed[:40].sum() == 0  # nothing at the top


def test_text_timing_and_fades_follow_the_clip(plain, tmp_path):
    text = Text(content="timed", position="center", size=0.2, start=0.5, duration=0.25, fade=0.0)
    result = cut(plain, tmp_path, "timed.mp4", text=text)
    frames = read_frames(result.path).astype(int)
    base = read_frames(plain).astype(int)
    drawn = [int((np.abs(frames[i] - base[i]).sum(axis=2) > 60).sum() > 50) for i in range(24)]
    assert drawn == [0] * 12 + [1] * 6 + [0] * 6, drawn


def test_subtitles_burned_or_muxed(plain, tmp_path):
    srt = tmp_path / "subs: it's.srt"
    srt.write_text("1\n00:00:00,000 --> 00:00:00,900\nHello, world: 100%\n", encoding="utf-8")
    burned = cut(plain, tmp_path, "burned.mp4", subtitles=srt, subtitles_mode="burn")
    frames = read_frames(burned.path, 6, 1)[0].astype(int)
    assert (np.abs(frames - read_frames(plain, 6, 1)[0].astype(int)).sum(axis=2) > 60).sum() > 100
    tracked = cut(plain, tmp_path, "tracked.mp4", subtitles=srt, subtitles_mode="track")
    import av

    with av.open(str(tracked.path)) as container:
        assert len(container.streams.subtitles) == 1
    assert probe(tracked.path, count_frames=True).frames == 24


def test_logo_is_overlaid_top_right(plain, tmp_path):
    logo = tmp_path / "logo.png"
    run_ffmpeg(["-f", "lavfi", "-i", "color=c=red:size=64x32", "-frames:v", "1", str(logo)],
               what="make a logo")
    result = cut(plain, tmp_path, "logo.mp4", logo=logo)
    frame = read_frames(result.path, 3, 1)[0].astype(int)
    assert frame[12, 300, 0] > 180 and frame[12, 300, 2] < 90  # red logo
    assert abs(frame[150, 20] - read_frames(plain, 3, 1)[0][150, 20].astype(int)).max() < 12


def test_missing_glyphs_are_what_a_font_draws_as_its_box():
    from stitchcraft.fonts import missing_glyphs, sans_font_file

    font = sans_font_file(bold=True)  # a title card's font here (None: Pillow's own)
    assert missing_glyphs("Tokyo 東京 Tokyo\u200d\ufe0f 🎬\n東", font) == "東京🎬"
    assert missing_glyphs("Tokyo", font) == ""


def test_text_its_font_cannot_draw_is_warned_of_once_per_cut_that_shows_it(tmp_path, monkeypatch):
    """Boxes instead of letters are easy to miss in a batch of language variants."""
    from stitchcraft import fonts
    from stitchcraft.fonts import caption_font_file

    # A system with no font for Japanese (this one, but not every developer's).
    monkeypatch.setattr(fonts, "_fontconfig_fonts", lambda characters: [])
    monkeypatch.setattr(fonts, "_folder_fonts", list)
    monkeypatch.setattr(fonts, "_covering", fonts._covering.__wrapped__)  # nothing found before
    from stitchcraft.render import RenderOptions, render
    from stitchcraft.storyboard.load import load_storyboard

    board = tmp_path / "lang.yaml"
    board.write_text(
        "version: 1\ntitle: lang\noutput: {path: out/lang.mp4, size: 160x90, fps: 12}\n"
        "shots:\n"
        "  - {id: card, title: \"Tokyo 東京\", duration: 1}\n"
        "  - {id: logo, title: Stitchcraft, duration: 1, text: {content: Out now, position: bottom}}\n"
        "variants:\n"
        "  - {name: ja, shots: {logo: {text: 今すぐ}}}\n"
        "  - {name: de, shots: {logo: {text: Jetzt}}}\n", encoding="utf-8")
    result = render(load_storyboard(board), RenderOptions(cache=tmp_path / "cache"))

    said = [w for w in result.warnings if "no glyph" in w]
    assert len(said) == 1 + (caption_font_file() is not None), said
    assert said[0].startswith("shot 'card': ") and "no glyph for 東京 (U+6771 U+4EAC) in its title" in said[0]
    if len(said) == 2:
        assert said[1].startswith(f"variant 'ja': shot 'logo': {caption_font_file().name} has no glyph "
                                  "for 今すぐ (U+4ECA U+3059 U+3050) in its text, so they show as boxes")
    manifest = json.loads(result.manifest.read_text())
    assert [w for w in manifest["warnings"] if "no glyph" in w] == said
    assert len(result.outputs) == 3  # warned of, and rendered all the same

    from typer.testing import CliRunner

    from stitchcraft.cli import app

    checked = CliRunner().invoke(app, ["validate", str(board), "--json"])
    assert checked.exit_code == 0 and json.loads(checked.stdout)["warnings"] == said  # said before rendering


@pytest.fixture
def kana_fonts(tmp_path, monkeypatch):
    """Two fonts with あ and い (Regular and Bold) that fontconfig finds, as a system with
    a Japanese font installed would; the system's own fonts have neither."""
    pytest.importorskip("fontTools")
    if shutil.which("fc-list") is None:
        pytest.skip("fontconfig's fc-list is not installed here")
    from made_fonts import fontconfig_with, make_kana_font

    from stitchcraft import fonts

    folder = tmp_path / "fonts"
    regular, bold = make_kana_font(folder / "kana.ttf"), make_kana_font(folder / "kana-bold.ttf", bold=True)
    monkeypatch.setenv("FONTCONFIG_FILE", str(fontconfig_with(folder)))
    # Of what fc-list finds, these alone: a system with a Japanese font of its own (Noto
    # Sans CJK) would otherwise win the choice.
    listed = fonts._fontconfig_fonts
    monkeypatch.setattr(fonts, "_fontconfig_fonts", lambda characters: [
        face for face in listed(characters) or [] if face.file.parent == folder])
    fonts._covering.cache_clear()
    yield regular, bold
    fonts._covering.cache_clear()


KANA_BOARD = """version: 1
title: kana
output: {{path: out/{name}.mp4, size: 160x90, fps: 12, preset: ultrafast}}
shots:
  - id: card
    title: {{text: "\u3042\u3044", subtitle: "\u3044", animation: none{title_font}}}
    duration: 1
    text: {{content: "\u3044 \u3042", position: top, size: 0.2{text_font}}}
"""


def test_text_its_font_cannot_draw_is_drawn_in_a_font_that_can(tmp_path, kana_fonts, monkeypatch):
    """A Japanese title and caption drew boxes in DejaVu Sans, with a warning, on a
    system with a Japanese font installed: they are drawn in that font now (bold for the
    title), exactly as when the storyboard names it, and without a warning."""
    from stitchcraft import fonts
    from stitchcraft.render import RenderOptions, render
    from stitchcraft.storyboard.load import load_storyboard

    regular, bold = kana_fonts

    def rendered(name: str, **fonts_given: str):
        board = tmp_path / f"{name}.yaml"
        board.write_text(KANA_BOARD.format(name=name, title_font=fonts_given.get("title", ""),
                                           text_font=fonts_given.get("text", "")), encoding="utf-8")
        result = render(load_storyboard(board), RenderOptions(cache=tmp_path / "cache", variants=[]))
        return result, read_frames(result.outputs[0].path, 0, 12)

    found, frames = rendered("found")
    assert not [w for w in found.warnings if "no glyph" in w]
    named, named_frames = rendered("named", title=f", font: {bold}", text=f", font: {regular}")
    assert np.array_equal(frames, named_frames)
    # The other way round differs (the fonts' あ are not alike), so the choice above is seen.
    swapped, swapped_frames = rendered("swapped", title=f", font: {regular}", text=f", font: {bold}")
    assert not np.array_equal(frames, swapped_frames)

    monkeypatch.setattr(fonts, "_fontconfig_fonts", lambda characters: [])  # none installed
    fonts._covering.cache_clear()
    boxed, boxed_frames = rendered("boxed")
    assert len([w for w in boxed.warnings if "no glyph" in w]) == 3  # title, subtitle, text
    assert not np.array_equal(frames, boxed_frames)
    # A title drawn in boxes is not the title drawn in the font found: a take of its own.
    assert boxed.generated == 1 and found.generated == 1


def test_fonts_are_found_in_the_font_folders_without_fontconfig(tmp_path, monkeypatch):
    """macOS and Windows have no fc-list: the usual font folders are read instead."""
    pytest.importorskip("fontTools")
    from made_fonts import KANA_A, KANA_I, make_kana_font

    from stitchcraft import fonts

    regular = make_kana_font(tmp_path / "Fonts" / "kana.ttf")
    (tmp_path / "Fonts" / "broken.ttf").write_bytes(b"not a font")  # read past, never chosen
    bold = make_kana_font(tmp_path / "Fonts" / "sub" / "kana-bold.ttf", bold=True)
    which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name: None if name == "fc-list" else which(name))
    monkeypatch.setattr(fonts, "_FONT_FOLDERS", (str(tmp_path / "Fonts"), str(tmp_path / "absent")))
    fonts._covering.cache_clear()
    try:
        assert fonts.font_for(f"{KANA_A} {KANA_I}", FONT, bold=True) == bold
        assert fonts.font_for(f"{KANA_A} {KANA_I}", FONT) == regular
        assert fonts.font_for("Tokyo", FONT) == FONT  # its own font draws it
        # No font here has both the kana and the Latin letters: the default, and its boxes.
        assert fonts.font_for(f"Hi {KANA_A}", FONT) == FONT
        # A font listed for the characters that Pillow cannot open draws nothing: passed over.
        broken = fonts._Face(tmp_path / "Fonts" / "broken.ttf", "Broken Sans", 200, False, False)
        monkeypatch.setattr(fonts, "_fontconfig_fonts", lambda characters: [
            broken, fonts._Face(regular, "Stitch Test Kana", 80, False, False)])
        fonts._covering.cache_clear()
        assert fonts.font_for(KANA_A, FONT, bold=True) == regular
    finally:
        fonts._covering.cache_clear()
