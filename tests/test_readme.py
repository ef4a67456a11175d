"""Every storyboard the README and the docs show validates, with the files it names made
at test time; so does the character template in storyboards/, and the reference routes
the README prints are the ones `stitch validate` prints."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from lavfi import make_image, make_tone, make_video

ROOT = Path(__file__).parent.parent
README = ROOT / "README.md"
HOSTED = ROOT / "docs" / "hosted.md"
CHARACTERS = ROOT / "storyboards" / "characters.yaml"


def storyboards(document: Path = README) -> list[str]:
    blocks = re.findall(r"```yaml\n(.*?)```", document.read_text(), re.S)
    return [b for b in blocks if b.lstrip().startswith("version:")]


def make_stand_ins(text: str, folder: Path) -> None:
    """Makes every ``assets/`` and ``footage/`` file a storyboard names, under `folder`."""
    (folder / "assets").mkdir(parents=True, exist_ok=True)
    (folder / "footage").mkdir(exist_ok=True)
    for name in sorted(set(re.findall(r"(?:assets|footage)/[\w.-]+", text))):
        path = folder / name
        if path.suffix in (".png", ".jpg"):
            make_image(path, size="320x180")
        elif path.suffix in (".mp3", ".wav"):
            make_tone(path, seconds=1)
        elif path.suffix == ".srt":
            path.write_text("1\n00:00:00,000 --> 00:00:01,000\nHello\n")
        elif path.suffix in (".mp4", ".mov"):
            make_video(path, seconds=4, size="320x180")


def validate(board: Path, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stitchcraft", "validate", str(board), *options],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("document", "least"), [(README, 1), (HOSTED, 8)],
                         ids=["README", "docs/hosted"])
def test_documented_storyboards_validate(document: Path, least: int, tmp_path: Path):
    found = storyboards(document)
    assert len(found) >= least, f"{document.name} shows {len(found)} storyboards, expected {least}"
    for index, text in enumerate(found):
        folder = tmp_path / f"board{index}"
        make_stand_ins(text, folder)
        board = folder / "board.yaml"
        board.write_text(text)
        done = validate(board)
        assert done.returncode == 0, f"{document.name} storyboard {index}:\n{done.stderr}"


def test_the_readme_prints_the_routes_validate_prints(tmp_path: Path):
    main = storyboards()[0]
    assert "cast:" in main and "keyframe:" in main, "the README's main example is cast-driven"
    make_stand_ins(main, tmp_path)
    board = tmp_path / "board.yaml"
    board.write_text(main)
    done = validate(board, "--json")
    assert done.returncode == 0, done.stderr
    routes = json.loads(done.stdout)["routes"]
    fenced = re.findall(r"^```(\w*)\n(.*?)^```$", README.read_text(), re.S | re.M)
    shown = [line for language, block in fenced if not language  # output, not YAML
             for line in block.splitlines() if line.startswith("shot ")]
    assert routes and shown == routes


def test_the_character_template_validates_with_its_pictures(tmp_path: Path):
    text = CHARACTERS.read_text()
    make_stand_ins(text, tmp_path)
    board = tmp_path / CHARACTERS.name
    shutil.copy(CHARACTERS, board)
    done = validate(board, "--json")
    assert done.returncode == 0, done.stderr
    routes = {line.split(":")[0]: line for line in json.loads(done.stdout)["routes"]}
    # Two characters and a style reach the keyframes of the shots that start from one.
    for shot in ("arrival", "door", "portrait"):
        assert "condition the keyframe (runway-image takes 3)" in routes[f"shot {shot}"], shot
    assert "not sent" in routes["shot stairs"]  # chained: its first frame carries the look

    from stitchcraft.storyboard.load import load_storyboard

    loaded = load_storyboard(board)
    cast, style = loaded.storyboard.cast, loaded.storyboard.style
    assert set(cast) == {"mara", "theo"} and style is not None
    assert loaded.keyframe_prompt("door") == (
        f"{cast['mara'].description} in the open doorway holding a lamp, "
        f"{cast['theo'].description} in front of her, seen over his shoulder, {style.description}")

    # A missing picture is named, with its place.
    (tmp_path / "assets" / "theo.png").unlink()
    missing = validate(board)
    assert missing.returncode == 2 and "cast.theo.images[0]" in missing.stderr
