"""Variant matrices: expansion, placeholders and their errors, and a 2 x 2 x 2 render
whose edits regenerate only what depends on them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from lavfi import make_image, make_video

from stitchcraft.errors import StoryboardError
from stitchcraft.media import probe, read_frames, run_ffmpeg
from stitchcraft.storyboard.load import load_storyboard
from stitchcraft.storyboard.matrix import AxisValue, Combination, aspect_size, fill

ROOT = Path(__file__).resolve().parent.parent

# Title cards only: nothing to find on disk.
BOARD = """\
version: 1
title: "Ad {matrix.lang}"
matrix:
  product: [shoe, bag]
  lang:
    en: {cta: Buy now}
    de: {cta: Jetzt kaufen}
  aspect: ["16:9", "9:16"]
output: {fps: 24, size: 640x360, path: out/ad.mp4}
shots:
  - id: intro
    duration: 1
    title: "The {matrix.product}"
  - id: outro
    duration: 1
    title: {text: Ad, subtitle: "{matrix.lang.cta}"}
    text: "{{matrix.lang}} stays"
"""


def load(tmp_path: Path, text: str):
    path = tmp_path / "board.yaml"
    path.write_text(text)
    return load_storyboard(path)


def issues(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(StoryboardError) as caught:
        load(tmp_path, text)
    return [str(issue) for issue in caught.value.issues]


def test_fill_replaces_values_fields_and_name_and_keeps_escapes():
    combo = Combination("shoe-de", {"product": AxisValue("shoe"), "lang": AxisValue("de", {"cta": "Kauf"})})
    assert fill("{matrix.product}: {matrix.lang.cta} ({matrix.name})", combo) == "shoe: Kauf (shoe-de)"
    assert fill("{{matrix.lang}} {courier}", combo) == "{{matrix.lang}} {courier}"
    assert fill("{matrix.n}", Combination("x", {"n": AxisValue(18)})) == 18  # typed when alone


def test_aspect_keeps_the_shorter_side():
    assert aspect_size((1920, 1080), "9:16") == (1080, 1920)
    assert aspect_size((1920, 1080), "1:1") == (1080, 1080)
    assert aspect_size((1280, 720), "4:5") == (720, 900)
    assert aspect_size((320, 180), "16:9") == (320, 180)


def test_expands_into_named_variants_with_overrides_sizes_and_paths(tmp_path):
    sb = load(tmp_path, BOARD).storyboard
    # the first combination is the main cut; the other seven are variants
    assert sb.title == "Ad en" and sb.shots[0].title == "The shoe"
    assert sb.output.path == "out/ad-shoe-en-16x9.mp4" and sb.output.dimensions == (640, 360)
    assert [v.name for v in sb.variants] == [
        "shoe-en-9x16", "shoe-de-16x9", "shoe-de-9x16", "bag-en-16x9", "bag-en-9x16",
        "bag-de-16x9", "bag-de-9x16"]
    by_name = {v.name: v for v in sb.variants}
    assert by_name["shoe-en-9x16"].shots == {}  # only the frame changes: every take is shared
    assert by_name["shoe-en-9x16"].output.size == "360x640"
    assert by_name["bag-de-9x16"].output.path == "out/ad-bag-de-9x16.mp4"
    bag_de = by_name["bag-de-16x9"].shots
    assert set(bag_de) == {"intro", "outro"} and bag_de["intro"].title == "The bag"
    assert bag_de["outro"].title.subtitle == "Jetzt kaufen"
    assert sb.shots[1].text == "{{matrix.lang}} stays"  # an escape is never filled


def test_output_pattern_and_typed_settings(tmp_path):
    board = BOARD.replace("path: out/ad.mp4", 'path: "out/{matrix.lang}/{matrix.product}-{matrix.aspect}-q{matrix.crf}.mp4"')
    board = board.replace("  aspect:", "  crf: [18, 24]\n  aspect:").replace(
        "output: {", 'output: {crf: "{matrix.crf}", ')
    sb = load(tmp_path, board).storyboard
    assert sb.output.path == "out/en/shoe-16:9-q18.mp4" and sb.output.crf == 18
    last = sb.variants[-1]
    assert last.name == "bag-de-24-9x16" and last.output.path == "out/de/bag-9:16-q24.mp4"
    assert last.output.crf == 24


@pytest.mark.parametrize(("change", "line", "words"), [
    (("The {matrix.product}", "The {matrix.prodcut}"), 13, "names no matrix axis; did you mean '{matrix.product}'"),
    (("{matrix.lang.cta}", "{matrix.lang.slogan}"), 16, "en' has no field 'slogan'"),
    (("  product: [shoe, bag]", "  product: []"), 4, "the axis has no values"),
    (('["16:9", "9:16"]', "[16:9, 9:16]"), 8, "quote it"),
    (("  product: [shoe, bag]", "  product: [red shoe, red/shoe]"), 4, "both name variants 'red_shoe'"),
    (("    duration: 1\n    title: \"The", "    duration: 1\n    engine: \"{matrix.lang}\"\n    title: \"The"),
     13, "cannot go in shots[0].engine"),
    (("text: \"{{matrix.lang}} stays\"", "text: \"{lang}\""), 17, "did you mean '{matrix.lang}'"),
    (("path: out/ad.mp4", "path: \"out/{matrix.lang}.mp4\""), 9, "would both be written to"),
    (("  product: [shoe, bag]", "  product: [" + ", ".join(f"p{i}" for i in range(70)) + "]"), 3,
     "makes 280 variants; at most 256"),
])
def test_mistakes_are_errors_at_their_line(tmp_path, change, line, words):
    board = BOARD.replace(*change)
    assert board != BOARD
    found = issues(tmp_path, board)
    assert any(f"board.yaml:{line}:" in issue and words in issue for issue in found), found


def test_a_problem_in_one_variant_names_it(tmp_path):
    board = BOARD.replace("de: {cta: Jetzt kaufen}", f"de: {{cta: {'x' * 600}}}")
    found = issues(tmp_path, board)
    assert len(found) == 1 and "board.yaml:16:" in found[0]
    assert "in variant 'shoe-de-16x9'" in found[0] and "at most 500" in found[0]


def test_placeholders_need_a_matrix_and_exclude_variants(tmp_path):
    plain = BOARD.split("matrix:")[0] + "output:" + BOARD.split("output:")[1]
    assert "board.yaml:2:" in issues(tmp_path, plain)[0] and "no `matrix:`" in issues(tmp_path, plain)[0]
    both = BOARD + "variants:\n  - name: extra\n"
    assert any(":18:" in i and "not both" in i for i in issues(tmp_path, both))


def test_cli_exits_2_and_names_the_line(tmp_path):
    (tmp_path / "board.yaml").write_text(BOARD.replace("{matrix.product}", "{matrix.colour}"))
    done = subprocess.run([sys.executable, "-m", "stitchcraft", "validate", "board.yaml"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "board.yaml:13:" in done.stderr + done.stdout and "{matrix.colour}" in done.stderr + done.stdout


# --- the example, rendered ------------------------------------------------------------

@pytest.fixture
def example(tmp_path: Path) -> Path:
    """storyboards/matrix.yaml in its layout, at 320x180, with lavfi media in place of
    the demo's."""
    media = tmp_path / "examples" / "media"
    media.mkdir(parents=True)
    make_video(media / "ocean.mp4", seconds=3, size="320x180", source="testsrc2", audio=None)
    make_video(media / "hills.mp4", seconds=3, size="320x180", source="smptebars", audio=None)
    make_image(media / "product.png", size="240x240", source="mandelbrot")
    make_image(media / "mountain.png", size="480x270", source="testsrc")
    run_ffmpeg(["-f", "lavfi", "-i", "sine=frequency=330:sample_rate=48000", "-t", "6", "-ac", "2",
                str(media / "music.wav")], what="make test music")
    board = tmp_path / "storyboards" / "matrix.yaml"
    board.parent.mkdir()
    text = (ROOT / "storyboards" / "matrix.yaml").read_text()
    assert "size: 1920x1080" in text
    board.write_text(text.replace("size: 1920x1080", "size: 320x180"))
    return board


def render(board: Path) -> dict:
    done = subprocess.run([sys.executable, "-m", "stitchcraft", "render", str(board), "--json"],
                          cwd=board.parent, capture_output=True, text=True, timeout=600,
                          env={**os.environ})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_example_renders_eight_cuts_and_edits_rebuild_only_what_they_touch(example):
    first = render(example)
    outputs = {Path(o["path"]).name: o for o in first["outputs"]}
    names = {f"aurora-{p}-{lang}-{a}.mp4" for p in ("tea", "coffee") for lang in ("en", "de")
             for a in ("16x9", "9x16")}
    assert set(outputs) == names
    for name in names:
        info = probe(example.parent / "out" / name, count_frames=True)
        # 2 + 2 + 1.5 s at 24 fps, less two 12-frame dissolves
        assert info.frames == 108
        assert (info.width, info.height) == ((320, 180) if "16x9" in name else (180, 320))
    # per product: its footage (one take), its still (two camera moves); per product,
    # language and size: its title card
    assert first["takes_generated"] == 2 * (1 + 2) + 8
    before = {name: read_frames(example.parent / "out" / name, 10, 1)[0] for name in names}

    # A language's call to action is on its title cards: those four are drawn again.
    text = example.read_text()
    example.write_text(text.replace('cta: "Jetzt erhältlich"', 'cta: "Ab sofort"'))
    second = render(example)
    assert second["takes_generated"] == 4 and second["takes_reused"] > 0

    # Its tagline is a caption burned in at assembly: nothing is generated, and only
    # the German cuts show it.
    example.write_text(example.read_text().replace("Gemacht für langsame Morgen", "Für ruhige Morgen"))
    third = render(example)
    assert third["takes_generated"] == 0
    for name in names:
        after = read_frames(example.parent / "out" / name, 10, 1)[0]
        changed = np.abs(after.astype(int) - before[name].astype(int)).mean() > 0.5
        assert changed == ("-de-" in name), name


def test_example_validates_with_demo_media_layout(example):
    shutil.copy(ROOT / "storyboards" / "matrix.yaml", example)  # as shipped, 1920x1080
    sb = load_storyboard(example).storyboard
    assert sb.output.dimensions == (1920, 1080)
    assert {v.output.size for v in sb.variants} == {"1920x1080", "1080x1920"}
