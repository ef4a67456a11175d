"""Every storyboard the README shows validates, with the files it names made at test time."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from lavfi import make_image, make_tone, make_video

README = Path(__file__).parent.parent / "README.md"


def storyboards() -> list[str]:
    blocks = re.findall(r"```yaml\n(.*?)```", README.read_text(), re.S)
    return [b for b in blocks if b.lstrip().startswith("version:")]


def test_readme_storyboards_validate(tmp_path: Path):
    found = storyboards()
    assert found, "the README shows no storyboard"
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
        assert done.returncode == 0, f"README storyboard {index}:\n{done.stderr}"
