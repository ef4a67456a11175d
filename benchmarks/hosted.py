"""Hosted takes, many in flight, measured through `stitch render` end to end.

SIMULATED PROVIDER. No hosted service is reachable here, so the render talks to the
protocol fake of a real provider (``tests/fakes/<provider>.py``, real HTTP on
127.0.0.1) through that provider's real engine and client: submit, poll, download,
journal, file takes. Each job takes `--latency` seconds (optionally +-`--jitter`);
the videos it serves are 1280x720 (`--height`), 24 fps, made before the clock starts (a
real provider renders them on its own machines, not on this one).

The storyboard: 12 shots of 5 s at that size, 24 fps, 4 candidates each, two thirds of
them chained (cut, chain, chain, ...), so 48 takes, 16 at a time on each of 3 levels.
The plan's critical path is the longest chain of jobs that must wait for each other:
for each chain, the sum over its shots of the slowest of that shot's jobs (a chained
shot starts from the chosen take, known once all its candidates are in). The render's
wall time is printed against it, with where the time went.

Usage::

    python benchmarks/hosted.py [--provider runway] [--in-flight 16] [--latency 30]
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from fakes.service import FakeJob, FakeService  # noqa: E402

from stitchcraft.engines import engine_class  # noqa: E402
from stitchcraft.media import run_ffmpeg  # noqa: E402

KEY = "bench-key-0123456789abcdef"


def fake_class(provider: str) -> type[FakeService]:
    module = importlib.import_module(f"fakes.{provider}")
    found = [c for _, c in inspect.getmembers(module, inspect.isclass)
             if issubclass(c, FakeService) and c is not FakeService and c.__module__ == module.__name__]
    if not found:
        sys.exit(f"tests/fakes/{provider}.py has no FakeService")
    return found[0]


def pooled(cls: type[FakeService], pool: list[Path], latency: float, jitter: float) -> FakeService:
    """The provider's fake, serving copies of pre-made videos, each job taking its own
    latency (recorded for the critical path)."""

    class Pooled(cls):  # type: ignore[valid-type, misc]
        latencies: dict[str, float] = {}

        def new_job(self, params, **kwargs):  # type: ignore[no-untyped-def]
            job = super().new_job(params, **kwargs)
            self.latencies[job.id] = latency * random.uniform(1 - jitter, 1 + jitter)
            return job

        def state(self, job: FakeJob) -> str:
            if not job.cancelled and time.monotonic() - job.created < self.latencies.get(job.id, latency):
                return "running"
            return super().state(job)

        def make_video(self, job: FakeJob) -> Path:
            path = self.root / f"{job.id}.mp4"
            shutil.copyfile(pool[hash(job.id) % len(pool)], path)
            job.video = path
            return path

    return Pooled


def make_pool(folder: Path, count: int, seconds: float, size: str) -> list[Path]:
    pool = []
    for i in range(count):
        path = folder / f"pool{i}.mp4"
        run_ffmpeg(["-f", "lavfi", "-i", f"testsrc2=size={size}:rate=24,hue=h={i * 70}",
                    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
                    "-t", f"{seconds:g}", "-c:v", "libx264", "-preset", "veryfast", "-crf", "20",
                    "-c:a", "aac", "-shortest", str(path)], what="benchmark video")
        pool.append(path)
    return pool


def storyboard(provider: str, base_url: str, shots: int, candidates: int, in_flight: int,
               poll: float, size: str, anchor: bool = True) -> str:
    lines = ["version: 1", f"title: hosted benchmark (simulated {provider})",
             f"output: {{fps: 24, size: {size}, path: out/cut.mp4, preset: veryfast, crf: 20}}",
             f"defaults: {{engine: {provider}, candidates: {candidates}, seed: 1, "
             "transition: {type: dissolve, duration: 0.5}"
             + ("" if anchor else ", colour_anchor: false") + "}",
             f"engines: {{{provider}: {{base_url: '{base_url}', max_concurrent: {in_flight}, "
             f"poll_interval: {poll:g}}}}}",
             "audio: {take_audio: false}", "shots:"]
    for i in range(shots):
        lines.append(f"  - id: s{i:02d}")
        lines.append(f"    prompt: simulated shot {i}")
        lines.append("    duration: 5")
        if i % 3:
            lines.append("    continuity: chain")
            lines.append("    transition: {type: cut}")
        elif i == 0:
            lines.append("    transition: {type: cut}")
    return "\n".join(lines) + "\n"


def critical_path(service: FakeService, shots: int) -> float:
    """The longest chain of jobs that wait for each other, from the jobs' own latencies:
    for each chain, the sum over its shots of the slowest job of that shot (each job is
    told by the shot number in its prompt)."""
    import re

    slowest: dict[int, float] = {}
    for job in service.jobs.values():
        found = re.search(r"simulated shot (\d+)", json.dumps(job.params))
        if found:
            shot = int(found.group(1))
            slowest[shot] = max(slowest.get(shot, 0.0), service.latencies[job.id])  # type: ignore[attr-defined]
    chains: dict[int, float] = {}
    for shot, latency in slowest.items():
        chains[shot // 3] = chains.get(shot // 3, 0.0) + latency
    if len(slowest) != shots:
        sys.exit(f"found the jobs of {len(slowest)} shots, expected {shots}")
    return max(chains.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--provider", default="runway")
    parser.add_argument("--in-flight", type=int, default=16)
    parser.add_argument("--latency", type=float, default=30.0)
    parser.add_argument("--jitter", type=float, default=0.0, help="fraction, e.g. 0.2")
    parser.add_argument("--shots", type=int, default=12)
    parser.add_argument("--candidates", type=int, default=4)
    parser.add_argument("--poll", type=float, default=1.0, help="poll interval, seconds")
    parser.add_argument("--height", type=int, default=720,
                        help="of the 16:9 videos and the cut; the local work per take grows with it")
    parser.add_argument("--no-anchor", action="store_true",
                        help="colour_anchor: false (chained takes used as made, not re-encoded)")
    args = parser.parse_args()
    cls = engine_class(args.provider)
    env = {**os.environ, **{name: KEY for name in cls.KEY_VARS}}
    with tempfile.TemporaryDirectory(prefix="stitchcraft-hosted-") as tmp:
        folder = Path(tmp)
        # What the provider makes for these shots: the model's duration that holds a
        # 5 s shot (and the frame a chained one starts from).
        seconds = cls.fit_duration(cls.DEFAULT_MODEL, 5.0 + 1 / 24)
        if args.height % 2:
            sys.exit("--height must be even (4:2:0 video)")
        size = f"{int(round(args.height * 16 / 9 / 2)) * 2}x{args.height}"  # as the fake sizes 16:9
        pool = make_pool(folder, 4, seconds, size)
        service = pooled(fake_class(args.provider), pool, args.latency, args.jitter)(
            folder / "service", keys=(KEY,), queued=0.0, running=0.0, height=args.height)
        with service:
            (folder / "board.yaml").write_text(storyboard(args.provider, service.base_url, args.shots,
                                                          args.candidates, args.in_flight, args.poll,
                                                          size, anchor=not args.no_anchor))
            began = time.time()
            done = subprocess.run([sys.executable, "-m", "stitchcraft", "render", "board.yaml", "--json",
                                   "--no-variants"], cwd=folder, capture_output=True, text=True,
                                  env=env, check=False)
            wall = time.time() - began
            if done.returncode != 0:
                sys.exit(f"render failed ({done.returncode}):\n{done.stderr[-3000:]}")
            result = json.loads(done.stdout)
            path = critical_path(service, args.shots)
            if os.environ.get("STITCHCRAFT_BENCH_TIMELINE"):
                jobs = sorted(service.jobs.values(), key=lambda j: j.created)
                origin = jobs[0].created
                for job in jobs:
                    print(f"  job submitted at {job.created - origin:7.2f} s: {json.dumps(job.params)[:60]}")
                print("the render's log:\n" + done.stderr[-6000:])
            submitted = service.submissions
    print(f"SIMULATED {args.provider} (protocol fake over HTTP), {args.shots} shots x {args.candidates} "
          f"candidates, {size}, {args.latency:g} s per job (+-{100 * args.jitter:g} %), "
          f"{args.in_flight} in flight, polled every {args.poll:g} s")
    print(f"jobs submitted: {submitted} (render says {result['takes_generated']} takes made)")
    print(f"wall time of `stitch render`: {wall:.1f} s")
    print(f"plan's critical path: {path:.1f} s")
    print(f"wall / critical path: {wall / path:.3f} (target <= 1.15)")
    print("where the wall time went (stages in turn; busy seconds overlap):")
    for stage, value in result.get("timings", {}).items():
        print(f"  {stage:<20} {value:8.1f} s")


if __name__ == "__main__":
    main()
