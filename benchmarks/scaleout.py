"""Take throughput of the Ray executor with 1 and 2 workers, against the local executor.

SIMULATION. No model runs: the engine is `pipeline.SimulatedEngine` (benchmarks/
pipeline.py) declared as needing a GPU, so each executor gives it one worker per GPU.
For each take it sleeps a fixed "GPU time", then returns moving test frames. The Ray
runs start a local Ray instance declaring 1, then 2 GPUs (Ray only counts them: the
sleeps need none), so the executor starts 1, then 2 workers.

The storyboard is GPU-bound and has no chains: independent shots of small frames, so
every take could run at once and storing and scoring (on the driver) stay well below
the GPU time. Throughput is takes per second of the generate window (from the first
take's start to the last take's end, as the engine logs them), and the render's wall
time is shown beside it. Target: 2 workers >= 1.7x the throughput of 1.

Usage::

    python benchmarks/scaleout.py [--gpu-seconds 1] [--shots 8] [--candidates 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from pipeline import BUSY_LOG, SECONDS_ENV, SimulatedEngine  # noqa: E402

from stitchcraft.engines import register_engine  # noqa: E402


class SimulatedGPUEngine(SimulatedEngine):
    """`SimulatedEngine`, declared as needing a GPU (one take at a time per device)."""

    NAME = "simulated-gpu"
    CAPABILITIES = dataclasses.replace(SimulatedEngine.CAPABILITIES, needs_gpu=True)


def storyboard(shots: int, candidates: int) -> str:
    lines = ["version: 1", "title: scale-out benchmark (simulated engine)",
             "output: {fps: 12, size: 320x180, path: out/cut.mp4, preset: ultrafast}",
             f"defaults: {{engine: simulated-gpu, candidates: {candidates}, seed: 1, "
             "transition: {type: cut}}", "audio: {take_audio: false}", "shots:"]
    lines += [f"  - {{id: s{i:02d}, prompt: simulated shot {i}, duration: 2}}" for i in range(shots)]
    return "\n".join(lines) + "\n"


def run(folder: Path, executor: str, gpus: int, seconds: float) -> tuple[int, float, float]:
    """Renders once; returns (takes, generate window in seconds, render wall time)."""
    from stitchcraft.render import RenderOptions, render
    from stitchcraft.storyboard.load import load_storyboard

    busy = folder / f"busy-{executor}-{gpus}.log"
    busy.write_text("")
    os.environ.update({BUSY_LOG: str(busy), SECONDS_ENV: str(seconds)})
    ray = None
    if executor == "ray":
        import ray

        ray.init(num_cpus=2, num_gpus=gpus, include_dashboard=False, logging_level="warning",
                 log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": str(HERE), BUSY_LOG: str(busy),
                                           SECONDS_ENV: str(seconds)}})
    try:
        began = time.monotonic()
        render(load_storyboard(folder / "board.yaml"),
               RenderOptions(cache=folder / f"cache-{executor}-{gpus}", variants=[], executor=executor))
        wall = time.monotonic() - began
    finally:
        if ray is not None:
            ray.shutdown()
    spans = [tuple(map(float, line.split())) for line in busy.read_text().splitlines() if line]
    window = max(end for _, end in spans) - min(start for start, _ in spans)
    return len(spans), window, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gpu-seconds", type=float, default=1.0)
    parser.add_argument("--shots", type=int, default=8)
    parser.add_argument("--candidates", type=int, default=2)
    args = parser.parse_args()
    try:
        import ray  # noqa: F401
    except ImportError:
        sys.exit("this benchmark needs Ray: pip install -e '.[ray]'")
    register_engine(SimulatedGPUEngine)
    print(f"SIMULATED engine, {args.shots} independent shots x {args.candidates} candidates, "
          f"320x180, {args.gpu_seconds:g} s of 'GPU time' per take")
    results = {}
    with tempfile.TemporaryDirectory(prefix="stitchcraft-scaleout-") as tmp:
        folder = Path(tmp)
        (folder / "board.yaml").write_text(storyboard(args.shots, args.candidates))
        for label, executor, gpus in (("local executor", "local", 1), ("ray, 1 worker", "ray", 1),
                                      ("ray, 2 workers", "ray", 2)):
            takes, window, wall = run(folder, executor, gpus, args.gpu_seconds)
            results[label] = takes / window
            print(f"{label:<16} {takes} takes in {window:6.1f} s: {takes / window:5.2f} takes/s "
                  f"(render wall time {wall:5.1f} s)")
    local, one, two = results.values()
    print(f"ray 1 worker / local: {one / local:.2f}x")
    print(f"ray 2 workers / ray 1 worker: {two / one:.2f}x (target >= 1.7)")
    print(f"ray 2 workers / local: {two / local:.2f}x")


if __name__ == "__main__":
    main()
