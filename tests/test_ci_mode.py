"""CI mode (`stitch --ci`, or CI=true): no colour or bars, logs on stderr, JSON on stdout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stitchcraft.media import probe

BOARD = """
version: 1
title: CI
output: {fps: 24, size: 160x90, path: out/ci.mp4, preset: ultrafast}
defaults: {candidates: 1}
shots:
  - id: one
    image: still.png
    duration: 0.5
"""


def stitch(*args: str, cwd: Path, ci: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "NO_COLOR")}
    if ci is not None:
        env["CI"] = ci
    # A terminal-like setting where rich would colour: CI mode must still not.
    env["FORCE_COLOR"] = "1"
    return subprocess.run([sys.executable, "-m", "stitchcraft", *args], cwd=cwd, capture_output=True,
                          text=True, env=env, timeout=300)


@pytest.fixture
def board(tmp_path: Path) -> Path:
    Image.fromarray(np.full((90, 160, 3), 128, np.uint8)).save(tmp_path / "still.png")
    path = tmp_path / "board.yaml"
    path.write_text(BOARD)
    return path


@pytest.mark.parametrize("how", ["env", "flag"])
def test_ci_render_prints_json_on_stdout_and_plain_logs_on_stderr(board, how):
    args = ("render", "board.yaml") if how == "env" else ("--ci", "render", "board.yaml")
    done = stitch(*args, cwd=board.parent, ci="true" if how == "env" else None)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)  # nothing but the result on stdout
    assert result["ok"] and probe(result["outputs"][0]["path"], count_frames=True).frames == 12
    assert "\x1b[" not in done.stderr and "\x1b[" not in done.stdout
    assert "generate & score" in done.stderr  # the log lines went to stderr


def test_ci_errors_are_json_with_the_exit_code(board):
    board.write_text(BOARD.replace("duration: 0.5", "duration: nope"))
    done = stitch("validate", "board.yaml", cwd=board.parent, ci="1")
    assert done.returncode == 2
    result = json.loads(done.stdout)
    assert result["ok"] is False and result["exit_code"] == 2
    assert any("board.yaml:9" in issue and "duration" in issue for issue in result["issues"])


def test_ci_false_keeps_the_text_output(board):
    done = stitch("validate", "board.yaml", cwd=board.parent, ci="false")
    assert done.returncode == 0 and done.stdout.startswith("board.yaml: ok")


def test_dry_run_validates_plans_and_costs_without_generating(board):
    done = stitch("render", "board.yaml", "--dry-run", cwd=board.parent, ci="true")
    assert done.returncode == 0, done.stderr
    planned = json.loads(done.stdout)
    assert planned["dry_run"] and planned["total_frames"] == 12 and planned["hosted"]["usd"] == 0
    assert not (board.parent / "out").exists()
    assert not (board.parent / ".stitchcraft" / "cache" / "takes").exists()
    text = stitch("render", "board.yaml", "--dry-run", cwd=board.parent, ci=None)
    assert text.returncode == 0 and "nothing generated" in text.stdout
