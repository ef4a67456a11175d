"""Every storyboard the README and the docs show validates, with the files it names made
at test time."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from lavfi import make_image, make_tone, make_video

ROOT = Path(__file__).parent.parent
README = ROOT / "README.md"
HOSTED = ROOT / "docs" / "hosted.md"


def storyboards(document: Path = README) -> list[str]:
    blocks = re.findall(r"```yaml\n(.*?)```", document.read_text(), re.S)
    return [b for b in blocks if b.lstrip().startswith("version:")]


@pytest.mark.parametrize(("document", "least"), [(README, 1), (HOSTED, 8)],
                         ids=["README", "docs/hosted"])
def test_documented_storyboards_validate(document: Path, least: int, tmp_path: Path):
    found = storyboards(document)
    assert len(found) >= least, f"{document.name} shows {len(found)} storyboards, expected {least}"
    for index, text in enumerate(found):
        folder = tmp_path / f"board{index}"
        (folder / "assets").mkdir(parents=True)
        (folder / "footage").mkdir()
        for name in re.findall(r"(?:assets|footage)/[\w.-]+", text):
            path = folder / name
            if path.suffix in (".png", ".jpg"):
                make_image(path, size="320x180")
            elif path.suffix in (".mp3", ".wav"):
                make_tone(path, seconds=1)
            elif path.suffix == ".srt":
                path.write_text("1\n00:00:00,000 --> 00:00:01,000\nHello\n")
            elif path.suffix in (".mp4", ".mov"):
                make_video(path, seconds=4, size="320x180")
        board = folder / "board.yaml"
        board.write_text(text)
        done = subprocess.run([sys.executable, "-m", "stitchcraft", "validate", str(board)],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{document.name} storyboard {index}:\n{done.stderr}"
