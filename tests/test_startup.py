"""A render that needs no model must not pay for one: torch and open_clip stay unimported."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HEAVY = ("torch", "open_clip", "lpips", "torchvision", "diffusers", "transformers")


def test_title_render_without_weights_never_imports_torch(tmp_path: Path):
    board = tmp_path / "t.yaml"
    board.write_text("version: 1\noutput: {fps: 24, size: 320x180, path: out/t.mp4, preset: ultrafast}\n"
                     "shots:\n  - {id: t, title: Hello, duration: 1}\n")
    home = tmp_path / "home"  # no CLIP or LPIPS weights in its caches
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache")}
    env.pop("HF_HOME", None), env.pop("HF_HUB_CACHE", None), env.pop("TORCH_HOME", None)
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "stitchcraft", "render", str(board)],
                          cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()
                if line.startswith("import time:")}
    assert "stitchcraft.render" in imported  # the measurement works
    assert not imported & set(HEAVY), sorted(imported & set(HEAVY))
    assert "CLIP scorers prompt, reference, seam_clip are off" in done.stderr  # decided from files
    assert (tmp_path / "out" / "t.mp4").is_file()
