"""Footage renders: `stitch render` against one hand-written ffmpeg graph, side by side.

N clips of 5 s at 1280x720, 24 fps, each with its own picture and its own tone, are made
with ffmpeg's lavfi sources and encoded as a camera would (libx264 at another preset and
GOP than the output's, AAC sound), so no stretch of them can be stream-copied into the
output. Then, in this one run:

- stitch (cold): ``stitch render`` of a storyboard with one ``source:`` shot per clip,
  5 s each, 0.5 s dissolves, h264 veryfast crf 20, no music, the clips' own sound on, in
  a fresh take store and work folder;
- stitch (warm): the same command again over the same cache (nothing left to make);
- graph: one hand-written ffmpeg command over the same clips: an xfade chain for the
  picture and, to be fair, an acrossfade chain for the sound (each clip's audio padded or
  cut to 5 s first) with a one-pass loudnorm to the same -14 LUFS, encoded with the same
  video settings and AAC 192k at 48 kHz.

Each runs in its own process while this one samples the resident memory of that process
and all its children (ffmpeg included) with psutil. With ``--repeat N`` the cold render
and the graph take turns N times and each one's best time is compared (the fairest
reading on a machine other work shares); every run is printed.

Usage::

    python benchmarks/footage.py [--clips 12] [--quick] [--repeat 1]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from process_tree import run_sampled

FPS = 24
SECONDS = 5
DISSOLVE = 0.5
SAMPLE_RATE = 48000
# Different pictures per clip: lavfi sources, each tinted its own way.
_SOURCES = ("testsrc2", "smptehdbars", "mandelbrot", "rgbtestsrc", "testsrc", "cellauto",
            "life", "yuvtestsrc", "pal100bars", "gradients")


def make_clips(folder: Path, count: int, size: tuple[int, int]) -> list[Path]:
    """Footage as a camera might write it: h264 (not the output's settings) with sound."""
    from stitchcraft.media import run_ffmpeg

    folder.mkdir(parents=True, exist_ok=True)
    width, height = size
    clips = []
    for index in range(count):
        path = folder / f"clip{index:03d}-{width}x{height}.mp4"
        if not path.exists():
            source = _SOURCES[index % len(_SOURCES)]
            extra = ":mold=10:ratio=0.1" if source == "life" else ""
            picture = (f"{source}=size={width}x{height}:rate={FPS}{extra},"
                       f"hue=h={index * 37 % 360},format=yuv420p")
            tone = f"sine=frequency={220 + 55 * index}:sample_rate={SAMPLE_RATE}"
            partial = path.with_suffix(".partial.mp4")
            run_ffmpeg(["-f", "lavfi", "-i", picture, "-f", "lavfi", "-i", tone,
                        "-t", str(SECONDS), "-c:v", "libx264", "-preset", "faster", "-crf", "18",
                        "-g", "30", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k",
                        "-ac", "2", str(partial)], what=f"make clip {path.name}")
            partial.rename(path)
        clips.append(path)
    return clips


def write_storyboard(folder: Path, clips: list[Path], size: tuple[int, int]) -> Path:
    shots = "\n".join(f"  - {{id: shot{i:02d}, source: {json.dumps(str(p))}, duration: {SECONDS}}}"
                      for i, p in enumerate(clips))
    board = folder / "footage.yaml"
    board.write_text(f"""version: 1
title: footage benchmark
output: {{fps: {FPS}, size: {size[0]}x{size[1]}, path: out/cut.mp4, codec: h264,
         preset: veryfast, crf: 20}}
defaults: {{transition: {{type: dissolve, duration: {DISSOLVE}}}}}
audio: {{take_audio: true}}
shots:
{shots}
""")
    return board


def graph_command(clips: list[Path], output: Path) -> list[str]:
    """One hand-written ffmpeg command: xfade over the pictures, acrossfade over the sound."""
    from stitchcraft.media import ffmpeg_exe

    args = [ffmpeg_exe(), "-y", "-nostdin", "-loglevel", "error"]
    for path in clips:
        args += ["-i", str(path)]
    chains = []
    picture, sound = "0:v", "a0"
    samples = SECONDS * SAMPLE_RATE
    for index in range(len(clips)):
        chains.append(f"[{index}:a]aresample={SAMPLE_RATE},apad,atrim=end_sample={samples}[a{index}]")
    offset = 0.0
    for index in range(1, len(clips)):
        offset += SECONDS - DISSOLVE
        chains.append(f"[{picture}][{index}:v]xfade=transition=fade:duration={DISSOLVE}:"
                      f"offset={offset:.6f}[v{index}]")
        chains.append(f"[{sound}][a{index}]acrossfade=d={DISSOLVE}:c1=tri:c2=tri[x{index}]")
        picture, sound = f"v{index}", f"x{index}"
    chains.append(f"[{picture}]fps={FPS}[out]")
    chains.append(f"[{sound}]loudnorm=I=-14:TP=-1,aresample={SAMPLE_RATE}[sound]")
    total = len(clips) * SECONDS * FPS - (len(clips) - 1) * round(DISSOLVE * FPS)
    return [*args, "-filter_complex", ";".join(chains), "-map", "[out]", "-map", "[sound]",
            "-frames:v", str(total), "-c:v", "libx264", "-preset", "veryfast", "-crf", "20",
            "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "192k", "-ar", str(SAMPLE_RATE),
            "-movflags", "+faststart", str(output)]


def measure(name: str, command: list[str], cwd: Path) -> dict:
    """Runs a command; its wall time and the peak memory of its whole process tree."""
    run = run_sampled(command, cwd=cwd)
    if run.returncode != 0:
        raise SystemExit(f"{name} failed ({run.returncode}):\n{run.stdout[-2000:]}\n{run.stderr[-3000:]}")
    return {"name": name, "seconds": run.seconds, "peak_mb": run.peak_rss / 2**20, "stdout": run.stdout}


def frames_of(path: Path) -> int:
    from stitchcraft.media import video_packet_count

    return video_packet_count(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=12)
    parser.add_argument("--quick", action="store_true", help="640x360 clips: a fast smoke run")
    parser.add_argument("--repeat", type=int, default=1,
                        help="cold renders and graphs, taking turns; the best of each counts")
    parser.add_argument("--folder", type=Path, default=Path("/tmp/stitchcraft-bench-footage"))
    args = parser.parse_args()
    size = (640, 360) if args.quick else (1280, 720)
    folder = args.folder
    print(f"making {args.clips} clips of {SECONDS} s at {size[0]}x{size[1]}, {FPS} fps, "
          "with sound ...", flush=True)
    clips = make_clips(folder / "clips", args.clips, size)
    run = folder / f"run-{size[0]}x{size[1]}-{args.clips}"
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir(parents=True)
    board = write_storyboard(run, clips, size)
    stitch = [sys.executable, "-m", "stitchcraft", "render", str(board), "--cache",
              str(run / "state" / "cache"), "--json"]
    graph_out = run / "graph.mp4"
    cold: list[dict] = []
    graphs: list[dict] = []
    for turn in range(1, args.repeat + 1):
        shutil.rmtree(run / "state", ignore_errors=True)
        print(f"  [{turn}/{args.repeat}] stitch render (fresh cache) ...", flush=True)
        cold.append(measure("stitch (cold)", stitch, run))
        print(f"  [{turn}/{args.repeat}] hand-written ffmpeg graph ...", flush=True)
        graphs.append(measure("graph", graph_command(clips, graph_out), run))
        print(f"      stitch {cold[-1]['seconds']:.2f} s, {cold[-1]['peak_mb']:.0f} MB; "
              f"graph {graphs[-1]['seconds']:.2f} s, {graphs[-1]['peak_mb']:.0f} MB", flush=True)
    print("  stitch render (warm cache) ...", flush=True)
    warm = measure("stitch (warm)", stitch, run)
    best = min(cold, key=lambda r: r["seconds"])
    rows = [{**best, "peak_mb": max(r["peak_mb"] for r in cold)}, warm,
            {**min(graphs, key=lambda r: r["seconds"]), "peak_mb": max(r["peak_mb"] for r in graphs)}]

    result = json.loads(cold[-1]["stdout"])
    cut = Path(result["outputs"][0]["path"])
    expected = args.clips * SECONDS * FPS - (args.clips - 1) * round(DISSOLVE * FPS)
    frames = {"stitch (cold)": frames_of(cut), "stitch (warm)": frames_of(cut),
              "graph": frames_of(graph_out)}
    base = rows[-1]["seconds"]
    print()
    if args.repeat > 1:
        print(f"best of {args.repeat} turns for the cold render and the graph; peak RSS is the "
              "highest of any turn")
    print(f"{args.clips} footage clips x {SECONDS} s, {size[0]}x{size[1]} {FPS} fps, "
          f"{DISSOLVE} s dissolves, libx264 veryfast crf 20, clip sound crossfaded and "
          f"loudness-normalised in both; {expected} frames expected")
    print(f"{'method':<16}{'frames':>8}{'seconds':>10}{'vs graph':>10}{'peak RSS MB':>13}")
    for row in rows:
        print(f"{row['name']:<16}{frames[row['name']]:>8}{row['seconds']:>10.2f}"
              f"{row['seconds'] / base:>9.2f}x{row['peak_mb']:>13.0f}")
    print(f"takes made {result['takes_generated']}, reused {result['takes_reused']} "
          f"(cold run)")


if __name__ == "__main__":
    main()
