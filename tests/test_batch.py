"""`stitch batch`: many storyboards in one process, going on past a broken one."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from stitchcraft.batch import find_storyboards
from stitchcraft.errors import InputError
from stitchcraft.media import probe, read_frames

BOARD = """
version: 1
title: {name}
output: {{fps: 24, size: 160x90, path: out/{name}.mp4, preset: ultrafast}}
defaults: {{candidates: 1}}
shots:
  - id: one
    image: {image}
    duration: 0.5
"""


def stitch(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "CI"}
    return subprocess.run([sys.executable, "-m", "stitchcraft", *args], cwd=cwd, capture_output=True,
                          text=True, env={**environment, **(env or {})}, timeout=300)


def folder_of_boards(root: Path) -> Path:
    boards = root / "boards"
    boards.mkdir()
    for name, channel in (("red", 0), ("blue", 2)):
        pixels = np.zeros((90, 160, 3), np.uint8)
        pixels[..., channel] = 255
        Image.fromarray(pixels).save(boards / f"{name}.png")
    (boards / "a.yaml").write_text(BOARD.format(name="a", image="red.png"))
    (boards / "c.yml").write_text(BOARD.format(name="c", image="blue.png"))
    (boards / "broken.yaml").write_text("version: 1\ntitle: broken\nshots:\n  - id: x\n"
                                        "    image: red.png\n    duration: -1\n")
    return boards


def test_batch_renders_the_others_reports_the_broken_one_and_exits_2(tmp_path):
    boards = folder_of_boards(tmp_path)
    done = stitch("batch", "boards", "--json", "--jobs", "1", "--summary", "sum.json", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    result = json.loads(done.stdout)
    assert json.loads((tmp_path / "sum.json").read_text()) == result
    by_name = {Path(e["storyboard"]).name: e for e in result["storyboards"]}
    assert [by_name[n]["status"] for n in ("a.yaml", "broken.yaml", "c.yml")] == ["ok", "invalid", "ok"]
    assert (result["rendered"], result["failed"], result["invalid"]) == (2, 0, 1)
    broken = by_name["broken.yaml"]
    assert broken["exit_code"] == 2
    assert broken["issues"] and "broken.yaml:6" in broken["issues"][0] and "duration" in broken["issues"][0]
    assert "broken.yaml" in done.stderr and "duration" in done.stderr
    # Both good storyboards are whole videos of their own picture.
    for name, channel in (("a", 0), ("c", 2)):
        video = boards / "out" / f"{name}.mp4"
        assert probe(video, count_frames=True).frames == 12
        frame = read_frames(video, 6, 1)[0].astype(int)
        assert frame[..., channel].mean() > 200 and frame[..., 1].mean() < 40


def test_a_storyboard_whose_still_is_gone_is_reported_and_the_batch_goes_on(tmp_path):
    boards = folder_of_boards(tmp_path)
    (boards / "broken.yaml").unlink()
    (boards / "red.png").unlink()  # a.yaml's still is gone: its render fails, c.yml's does not
    done = stitch("batch", str(boards / "*.y*ml"), "--json", cwd=tmp_path)
    result = json.loads(done.stdout)
    statuses = {Path(e["storyboard"]).name: e["status"] for e in result["storyboards"]}
    assert done.returncode in (1, 2) and statuses["c.yml"] == "ok"
    assert statuses["a.yaml"] in ("failed", "invalid") and result["exit_code"] == done.returncode
    assert (boards / "out" / "c.mp4").is_file() and not (boards / "out" / "a.mp4").exists()


def test_dry_run_plans_every_storyboard_and_generates_nothing(tmp_path):
    boards = folder_of_boards(tmp_path)
    (boards / "broken.yaml").unlink()
    done = stitch("batch", "boards", "--dry-run", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert [e["result"]["total_frames"] for e in result["storyboards"]] == [12, 12]
    assert not (boards / "out").exists() and not (boards / ".stitchcraft" / "cache" / "takes").exists()


def test_find_storyboards_takes_files_folders_and_globs_once_each(tmp_path):
    for name in ("a.yaml", "b.yml", "notes.txt", ".hidden.yaml"):
        (tmp_path / name).write_text("")
    found = find_storyboards([tmp_path, tmp_path / "a.yaml", str(tmp_path / "*.yml")])
    assert [p.name for p in found] == ["a.yaml", "b.yml"]
    for missing in (tmp_path / "nope.yaml", str(tmp_path / "*.json")):
        try:
            find_storyboards([missing])
        except InputError as exc:
            assert "nope.yaml" in str(exc) or "matches no file" in str(exc)
        else:
            raise AssertionError(f"{missing} was accepted")


def test_a_broken_storyboards_problems_are_said_a_line_each_and_counted_in_the_table(tmp_path):
    """They were one line of ';'-joined problems on stderr, "1 problem(s)", and again in
    the table's narrow message column, broken every few words."""
    boards = folder_of_boards(tmp_path)
    (boards / "broken.yaml").write_text("version: 1\ntitle: broken\nshots:\n  - id: x\n"
                                        "    image: red.png\n    duration: -1\n    camera: zoom\n")
    done = stitch("batch", "boards/broken.yaml", cwd=tmp_path, env={"COLUMNS": "80"})
    assert done.returncode == 2
    said = done.stderr.splitlines()
    head = next(i for i, line in enumerate(said) if line.endswith(("invalid: 2 problems (0.0 s)",
                                                                    "invalid: 2 problems (0.1 s)")))
    assert said[head + 1].startswith("  ") and "broken.yaml:6:" in said[head + 1] and "duration" in said[head + 1]
    assert said[head + 2].startswith("  ") and "broken.yaml:7:" in said[head + 2] and "camera" in said[head + 2]
    # Its row, at 80 columns: the path from the working folder whole, the count wrapped.
    assert re.search(r"^boards/broken\.yaml +invalid +\d\.\d +2 problems,\s+listed above\s*$",
                     done.stdout.split("────\n")[-1].split("summary:")[0], re.M | re.S), done.stdout
