"""Renders are deterministic: one storyboard rendered twice, each time into a fresh cache
and output folder, gives the same takes, the same choices and bit-identical streams.

The second render runs pinned to one CPU where the machine has several: encoders that
take one thread per core by default (x264 does) would otherwise encode other bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import av
from lavfi import make_image, make_tone, make_video

BOARD = """
version: 1
title: Same twice
output: {fps: 24, size: 320x180, path: out/cut.mp4, preset: ultrafast}
defaults: {candidates: 2, transition: {type: dissolve, duration: 0.25}, seed: 5}
audio: {take_audio: true, music: bed.wav}
subtitles: subs.srt
shots:
  - id: opening
    title: {text: "Same twice", animation: rise}
    duration: 1
  - id: still
    image: still.png
    camera: push-in
    duration: 1
    text: {content: "A caption", position: bottom}
  - id: real
    source: clips
    duration: 1
"""


def _one_cpu() -> None:
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


def render(project: Path, *, one_cpu: bool) -> dict:
    pin = one_cpu and hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > 1
    done = subprocess.run([sys.executable, "-m", "stitchcraft", "render", "board.yaml", "--json"],
                          cwd=project, capture_output=True, text=True, timeout=300,
                          preexec_fn=_one_cpu if pin else None)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def stream_digests(path: Path) -> dict[str, str]:
    """sha256 of each stream's packets (payload, pts, dts, flags), by stream type."""
    digests = {}
    with av.open(str(path)) as container:
        for stream in container.streams:
            digest = hashlib.sha256()
            count = 0
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue
                digest.update(bytes(packet))
                digest.update(f"{packet.pts} {packet.dts} {packet.is_keyframe}".encode())
                count += 1
            container.seek(0)
            digests[f"{stream.type}:{stream.index}"] = f"{count}:{digest.hexdigest()}"
    return digests


def comparable(manifest: dict, root: Path) -> dict:
    """A manifest with its times and this project's paths taken out."""
    text = json.dumps(manifest).replace(str(root), "<project>")
    value = json.loads(text)

    def strip(node):
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k not in ("timings", "seconds")}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    return strip(value)


def test_two_fresh_renders_make_identical_takes_choices_and_streams(tmp_path):
    first = tmp_path / "first"
    first.mkdir()
    make_image(first / "still.png", size="480x270", source="mandelbrot")
    (first / "clips").mkdir()
    make_video(first / "clips" / "a.mp4", seconds=2, size="320x180")
    make_tone(first / "bed.wav", seconds=4)
    (first / "subs.srt").write_text("1\n00:00:00,000 --> 00:00:01,000\nHello\n")
    (first / "board.yaml").write_text(BOARD)
    second = tmp_path / "second"
    shutil.copytree(first, second)

    results = [render(first, one_cpu=False), render(second, one_cpu=True)]
    outputs = [Path(r["outputs"][0]["path"]) for r in results]
    manifests = [json.loads(Path(r["manifest"]).read_text()) for r in results]

    assert comparable(manifests[0], first) == comparable(manifests[1], second)
    chosen = {shot: record["chosen"] for shot, record in manifests[0]["shots"].items()}
    assert set(chosen) == {"opening", "still", "real"}
    # The video, its sound and its subtitles, packet for packet.
    streams = [stream_digests(p) for p in outputs]
    assert streams[0] == streams[1]
    assert {key.split(":")[0] for key in streams[0]} >= {"video", "audio", "subtitle"}
    assert streams[0]["video:0"].startswith(f"{results[0]['outputs'][0]['frames']}:")
    # Every take the renders made is the same bytes in both caches.
    takes = [sorted((root / ".stitchcraft" / "cache" / "takes").glob("*/*/take.mp4"))
             for root in (first, second)]
    assert [p.parent.name for p in takes[0]] == [p.parent.name for p in takes[1]] and takes[0]
    for one, other in zip(*takes, strict=True):
        assert hashlib.sha256(one.read_bytes()).digest() == hashlib.sha256(other.read_bytes()).digest()
