"""A render that needs no model must not pay for one: torch and open_clip stay unimported;
and the CLI's process gives freed frames back to the system."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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


FRAME_BLOCKS = """
import ctypes, sys
import numpy as np
from stitchcraft import cli
if sys.argv[1] == "stitch":
    cli._return_freed_frames()
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                               "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Info
big = np.ones(24 << 20, np.uint8)  # mapped; freed, by default it raises glibc's thresholds
del big
frames = np.ones(20 << 20, np.uint8)  # from the heap, then freed
del frames
print(libc.mallinfo2().arena >> 20)  # MB the heap still holds
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_the_cli_has_freed_frames_given_back_to_the_system():
    # Under `stitch` a heap gives freed blocks back (its trim threshold stays at 128 KB);
    # by default glibc would keep 20 MB of freed frames in it here.
    import ctypes

    if not hasattr(ctypes.CDLL(None), "mallinfo2"):
        pytest.skip("not glibc 2.33 or later")
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_MMAP_THRESHOLD_"}

    def held(how: str) -> int:
        done = subprocess.run([sys.executable, "-c", FRAME_BLOCKS, how], capture_output=True, text=True,
                              env=env, check=True)
        return int(done.stdout.strip())

    assert held("stitch") < 12
    assert held("default") >= 20


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_a_threshold_the_user_set_is_left_alone(monkeypatch):
    import ctypes

    from stitchcraft import cli

    calls = []

    class Libc:
        def mallopt(self, option: int, value: int) -> int:
            calls.append((option, value))
            return 1

    monkeypatch.setattr(ctypes, "CDLL", lambda name: Libc())
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.check=0:glibc.malloc.mmap_threshold=1048576")
    cli._return_freed_frames()
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "1048576")
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.check=0")
    cli._return_freed_frames()
    assert calls == []
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_")
    cli._return_freed_frames()
    assert calls == [(-3, 32 << 20)]
