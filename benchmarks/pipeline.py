"""The generate stage's scheduling, measured through `stitch render` end to end.

SIMULATION. No model runs here: the engine this benchmark registers, ``simulated``,
stands in for a GPU (or a hosted API). For each take it sleeps a configured time, the
"GPU time", then returns moving pictures that continue from its conditioning frames
(each frame is the previous one shifted a few pixels, so chained takes really continue
and seams score as seams). It is registered only inside the render this benchmark
starts; stitchcraft itself knows no such engine.

Two modes:

- ``--gpu-seconds S`` (default 2): one device, one take at a time. Prints the fraction
  of the render's wall time the "GPU" was busy, and where the wall time went.
- ``--remote N --latency L``: a hosted engine with N jobs in flight, each taking L
  seconds. Prints the render's wall time against the plan's critical path (the longest
  chain of segments that must wait for each other, times L).

The storyboard: 12 shots of 5 s at 1280x720, 24 fps, 4 candidates each, two thirds of
them chained (cut, chain, chain, cut, ...), 0.5 s dissolves into the cut shots.

Usage::

    python benchmarks/pipeline.py [--gpu-seconds 2] [--shots 12] [--candidates 4]
    python benchmarks/pipeline.py --remote 16 --latency 30
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from stitchcraft.engines.base import Capabilities, Engine, SegmentRequest, Take

BUSY_LOG = "STITCHCRAFT_BENCH_BUSY_LOG"
SECONDS_ENV = "STITCHCRAFT_BENCH_TAKE_SECONDS"
FLIGHT_ENV = "STITCHCRAFT_BENCH_IN_FLIGHT"


class SimulatedEngine(Engine):
    """A stand-in for a video model: sleeps, then returns frames that continue from the
    conditioning frames (a simulation, for measuring scheduling only)."""

    NAME = "simulated"
    DESCRIPTION = "benchmark stand-in for a GPU model (sleeps, returns moving test frames)"
    CAPABILITIES = Capabilities(kinds=frozenset({"prompt"}), text_to_video=True, image_to_video=True,
                                condition_frames=1)
    CONCURRENCY = int(os.environ.get(FLIGHT_ENV, "1"))

    def generate(self, request: SegmentRequest) -> Iterator[Take]:
        seconds = float(os.environ.get(SECONDS_ENV, "2"))
        for seed in request.seeds:
            started = time.time()
            time.sleep(seconds)
            ended = time.time()
            with open(os.environ[BUSY_LOG], "a") as log:
                log.write(f"{started} {ended}\n")
            yield Take(frames=self._frames(request, seed), seed=seed, label=f"simulated seed {seed}")

    @staticmethod
    def _frames(request: SegmentRequest, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        if request.condition_frames is not None:
            start = request.condition_frames[-1]
        else:  # smooth colour waves, made from two 1-D profiles (cheap at any size)
            hue = rng.uniform(0, 2 * np.pi)
            x, y = np.arange(request.width), np.arange(request.height)
            start = np.stack([np.add.outer(60 * np.cos(y / 53 - k), 127 + 60 * np.sin(x / 37 + hue + k))
                              for k in (0, 2, 4)], axis=-1).astype(np.uint8)
        # A pan: frame i is the start moved i + 1 steps left, wrapping. Every frame is a
        # window on one strip, so a take costs a few MB, not a copy per frame (a real
        # model's frames come off the GPU; the simulation should cost no CPU).
        step = int(rng.integers(2, 6))
        height, width = start.shape[:2]
        repeats = -(-(width + (request.frames + 1) * step) // width)
        strip = np.ascontiguousarray(np.tile(start, (1, repeats, 1)))
        return np.lib.stride_tricks.as_strided(
            strip[:, step:], shape=(request.frames, height, width, 3),
            strides=(step * strip.strides[1], *strip.strides), writeable=False)


def storyboard(shots: int, candidates: int) -> str:
    lines = ["version: 1", "title: pipeline benchmark (simulated engine)",
             "output: {fps: 24, size: 1280x720, path: out/cut.mp4, preset: veryfast, crf: 20}",
             f"defaults: {{engine: simulated, candidates: {candidates}, seed: 1, "
             "transition: {type: dissolve, duration: 0.5}}",
             "audio: {take_audio: false}", "shots:"]
    for i in range(shots):
        chained = i % 3 != 0
        lines.append(f"  - id: s{i:02d}")
        lines.append(f"    prompt: simulated shot {i}")
        lines.append("    duration: 5")
        if chained:
            lines.append("    continuity: chain")
            lines.append("    transition: {type: cut}")
        elif i == 0:
            lines.append("    transition: {type: cut}")
    return "\n".join(lines) + "\n"


def critical_path(shots: int) -> int:
    """Segments on the longest chain: a cut shot and the chained shots after it."""
    longest = run = 0
    for i in range(shots):
        run = run + 1 if i % 3 != 0 else 1
        longest = max(longest, run)
    return longest


def union_seconds(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, -1e18
    for start, stop in sorted(intervals):
        if stop <= end:
            continue
        total += stop - max(start, end)
        end = stop
    return total


def run_render(folder: Path, seconds: float, in_flight: int) -> tuple[float, dict, list[tuple[float, float]]]:
    busy = folder / "busy.log"
    busy.write_text("")
    env = {**os.environ, BUSY_LOG: str(busy), SECONDS_ENV: str(seconds), FLIGHT_ENV: str(in_flight)}
    began = time.time()
    done = subprocess.run([sys.executable, __file__, "--child", "render", str(folder / "board.yaml"),
                           "--json", "--no-variants"], cwd=folder, capture_output=True, text=True,
                          env=env, check=False)
    wall = time.time() - began
    if done.returncode != 0:
        sys.exit(f"render failed ({done.returncode}):\n{done.stderr[-3000:]}")
    intervals = [tuple(map(float, line.split())) for line in busy.read_text().splitlines() if line]
    return wall, json.loads(done.stdout), intervals  # type: ignore[return-value]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gpu-seconds", type=float, default=2.0)
    parser.add_argument("--remote", type=int, default=0, help="jobs in flight (hosted mode)")
    parser.add_argument("--latency", type=float, default=30.0, help="seconds per hosted job")
    parser.add_argument("--shots", type=int, default=12)
    parser.add_argument("--candidates", type=int, default=4)
    args = parser.parse_args()
    remote = args.remote > 0
    seconds = args.latency if remote else args.gpu_seconds
    with tempfile.TemporaryDirectory(prefix="stitchcraft-pipeline-") as tmp:
        folder = Path(tmp)
        (folder / "board.yaml").write_text(storyboard(args.shots, args.candidates))
        wall, result, intervals = run_render(folder, seconds, args.remote if remote else 1)
    takes = len(intervals)
    busy = union_seconds(intervals)
    if os.environ.get("STITCHCRAFT_BENCH_GAPS"):
        ordered = sorted(intervals)
        origin = ordered[0][0]
        for (_, end), (start, _) in zip(ordered, ordered[1:], strict=False):
            if start - end > 0.3:
                print(f"  engine idle {start - end:.1f} s at {end - origin:.1f} s")
    timings = result.get("timings", {})
    print(f"SIMULATED engine, {args.shots} shots x {args.candidates} candidates, 1280x720, "
          f"{seconds:g} s per take, {f'{args.remote} in flight' if remote else 'one device'}")
    print(f"takes generated: {takes} (render says {result['takes_generated']})")
    print(f"wall time of `stitch render`: {wall:.1f} s")
    if remote:
        path = critical_path(args.shots) * seconds
        floor = max(path, takes * seconds / args.remote)
        print(f"plan's critical path: {path:.1f} s ({critical_path(args.shots)} chained segments x {seconds:g} s); "
              f"lower bound with {args.remote} in flight: {floor:.1f} s")
        print(f"wall / critical path: {wall / path:.3f} (target <= 1.15)")
    else:
        print(f"GPU busy: {busy:.1f} s of {wall:.1f} s = {100 * busy / wall:.1f} % (target >= 85 %)")
    if timings:
        print("where the wall time went (plan .. report: wall seconds of each stage in turn;"
              " engine, store & score, scoring: busy seconds, which overlap):")
        for stage, value in timings.items():
            print(f"  {stage:<20} {value:8.1f} s")
        if takes:
            print(f"scoring per take (take, seam and drift scores): {timings.get('scoring', 0) / takes:.3f} s "
                  "(target <= 0.3 s)")


def child() -> None:
    """Runs `stitch render` with the simulated engine registered (in this process only)."""
    from stitchcraft.engines import register_engine

    register_engine(SimulatedEngine)
    from stitchcraft.cli import main as stitch

    sys.argv = ["stitch", *sys.argv[2:]]
    stitch()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child()
    else:
        main()
