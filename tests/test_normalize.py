"""Normalisation onto the output grid: fitting, seeking, validation."""

from __future__ import annotations

import shlex
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from lavfi import make_halves, make_video

from stitchcraft.assemble.normalize import (
    Grid,
    clip_chain,
    fit_chain,
    grid_frames,
    inspect_clip,
    seek_seconds,
)
from stitchcraft.errors import MediaError
from stitchcraft.media import Input, encode_graph, ffmpeg_exe, probe, read_frames


def normalise(path: Path, out: Path, grid: Grid, fit: str, start: int, end: int) -> np.ndarray:
    info = inspect_clip(path)
    seek = seek_seconds(info, start, grid.fps)
    chain = clip_chain("0:v:0", "out", info, grid, fit, start=start, end=end, seek=seek)
    encode_graph([Input(path, seek)], chain, out, label="out", frames=end - start,
                 codec="h264", crf=1, preset="ultrafast", what="normalise", fps=grid.fps)
    assert probe(out, count_frames=True).frames == end - start
    return read_frames(out)


@pytest.mark.parametrize("fit", ["cover", "contain", "blur-pad"])
def test_fit_modes_fill_the_frame_as_named(tmp_path, fit):
    # A 4:3 red/blue picture into 16:9.
    source = make_halves(tmp_path / "src.mp4", size="120x90")
    frame = normalise(source, tmp_path / f"{fit}.mp4", Grid(160, 90, Fraction(24)), fit, 0, 4)[2]
    edge = frame[45, 5].astype(int)
    if fit == "cover":
        assert edge[0] > 180 and edge[2] < 80  # red reaches the edge
    elif fit == "contain":
        assert edge.max() < 20  # black bar
    else:
        assert edge[0] > 100  # a blurred copy of the picture, not a black bar
    centre = frame[45, 60].astype(int)
    assert centre[0] > 180 and centre[2] < 80


def test_a_seeked_span_equals_the_same_span_decoded_from_the_top(tmp_path):
    source = make_video(tmp_path / "src.mkv", seconds=3, size="160x90", rate="30", audio=None)
    grid = Grid(160, 90, Fraction(24000, 1001))
    whole = normalise(source, tmp_path / "whole.mp4", grid, "cover", 0, 60)
    part = normalise(source, tmp_path / "part.mp4", grid, "cover", 40, 60)
    assert seek_seconds(inspect_clip(source), 40, grid.fps) > 0
    assert np.abs(whole[40:].astype(int) - part.astype(int)).mean() < 1.0


def test_grid_frames_and_rate_conversion(tmp_path):
    source = make_video(tmp_path / "src.mp4", seconds=2, size="160x90", rate="30", audio=None)
    info = inspect_clip(source)
    assert grid_frames(info, Fraction(24)) == 48
    assert grid_frames(info, Fraction(30000, 1001)) == 60


def test_fit_chain_uses_the_display_size(tmp_path):
    source = make_video(tmp_path / "ana.mp4", seconds=0.5, size="120x90", audio=None,
                        video_args=["-vf", "setsar=4/3", "-c:v", "libx264"])
    chain = fit_chain(probe(source), Grid(160, 90, Fraction(24)), "contain", tag="t")
    assert chain.startswith("scale=160:90")  # 120x90 at 4:3 pixels is 160x90


def test_a_bare_stream_is_refused_with_the_command_that_wraps_it(tmp_path):
    """A raw H.264 stream cannot seek and its pictures carry no timestamps: probing it
    raised PyAV's PermissionError ("operation not permitted", naming no file)."""
    bare = make_video(tmp_path / "phone clip.h264", seconds=2, size="160x90", rate="30", audio=None,
                      video_args=["-c:v", "libx264", "-preset", "ultrafast", "-f", "h264"])
    with pytest.raises(MediaError) as refused:
        inspect_clip(bare)
    said = str(refused.value)
    assert said.startswith(f"{bare}: is a bare h264 stream") and "-framerate 30 " in said

    command = shlex.split(said[said.index("ffmpeg "):])  # what the message says to run
    subprocess.run([ffmpeg_exe(), "-v", "error", *command[1:]], cwd=tmp_path, check=True)
    wrapped = probe(tmp_path / "phone clip.mp4")
    assert wrapped.frames == 60 and abs(wrapped.duration - 2.0) < 0.01


def test_truncated_and_empty_files_are_rejected(tmp_path):
    good = make_video(tmp_path / "good.mp4", seconds=1, size="160x90",
                      video_args=["-c:v", "libx264", "-movflags", "+faststart"])
    data = good.read_bytes()
    cut_short = tmp_path / "short.mp4"
    cut_short.write_bytes(data[: int(len(data) * 0.6)])
    with pytest.raises(MediaError, match="truncated"):
        inspect_clip(cut_short)
    webm = make_video(tmp_path / "good.webm", seconds=2, size="160x90", audio=None,
                      video_args=["-c:v", "libvpx", "-deadline", "realtime"])
    truncated = tmp_path / "short.webm"
    truncated.write_bytes(webm.read_bytes()[: len(webm.read_bytes()) // 2])
    with pytest.raises(MediaError, match="short.webm.*truncated"):
        inspect_clip(truncated)
    assert inspect_clip(good).frames == 24
    empty = tmp_path / "empty.mp4"
    empty.touch()
    with pytest.raises(MediaError, match=r"empty.mp4: is empty \(0 bytes\)"):
        inspect_clip(empty)
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n" * 100)
    with pytest.raises(MediaError) as refused:
        inspect_clip(text)
    assert str(refused.value) == f"{text}: not a readable media file (Invalid data found when processing input)"
