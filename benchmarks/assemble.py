"""Assembly speed and memory: stitchcraft against a hand-written graph and MoviePy.

The same cut (N clips of 5 s at 1280x720, 24 fps, 0.5 s dissolves, libx264 veryfast
crf 20) is rendered three ways, each in its own process while this one samples the
resident memory of that process and all its children (ffmpeg included):

- stitchcraft: `stitchcraft.assemble.assemble` (segments joined by stream copy);
- graph: one hand-written ffmpeg command, an xfade chain over every input;
- moviepy: ``concatenate_videoclips`` with ``CrossFadeIn``, written by MoviePy.

Then the hard-cut case: the same clips joined by cuts, assembled with smart rendering
(the takes already match the output, so their packets are copied) against the same
assembly forced to re-encode, and the copied frames are checked bit for bit.

Usage::

    python benchmarks/assemble.py [--clips 12] [--memory-clips 48] [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from fractions import Fraction
from pathlib import Path

from process_tree import run_sampled

FPS = 24
SECONDS = 5
DISSOLVE = 0.5
CODEC = {"codec": "h264", "preset": "veryfast", "crf": 20}


def make_clips(folder: Path, count: int, size: tuple[int, int], seconds: float) -> list[Path]:
    """Test clips encoded exactly as stitchcraft encodes (so cuts can be copied)."""
    from stitchcraft.media import encode_graph

    folder.mkdir(parents=True, exist_ok=True)
    width, height = size
    frames = round(seconds * FPS)
    clips = []
    for index in range(count):
        path = folder / f"clip{index:03d}-{width}x{height}-{frames}.mp4"
        if not path.exists():
            graph = (f"testsrc2=size={width}x{height}:rate={FPS},hue=h={index * 29 % 360},"
                     "format=yuv420p,setparams=range=tv:color_primaries=unknown:"
                     f"color_trc=unknown:colorspace=unknown,trim=end_frame={frames}[v]")
            partial = path.with_suffix(".partial.mp4")
            encode_graph([], graph, partial, label="v", frames=frames, what="make a clip",
                         **CODEC)
            partial.rename(path)
        clips.append(path)
    return clips


# ---- the three ways, each run in a child process -----------------------------------

def run_stitchcraft(clips: list[Path], output: Path, work: Path, *, dissolve: bool,
                    smart: bool = True) -> dict:
    from stitchcraft.assemble import CutClip, CutSpec, CutTransition, assemble
    from stitchcraft.media import probe

    frames = SECONDS * FPS
    overlap = round(DISSOLVE * FPS) if dissolve else 0
    info = probe(clips[0])
    cut = CutSpec(
        clips=[CutClip(f"s{i}", path, frames,
                       CutTransition("dissolve" if i and dissolve else "cut", overlap if i else 0))
               for i, path in enumerate(clips)],
        fps=Fraction(FPS), width=info.width, height=info.height, smart=smart, **CODEC)
    result = assemble(cut, output, workdir=work)
    return {"frames": result.frames, "segments": result.segments,
            "copied": result.copied_segments}


def run_graph(clips: list[Path], output: Path) -> dict:
    from stitchcraft.media import run_ffmpeg

    args: list[str] = ["-nostats"]
    for path in clips:
        args += ["-i", str(path)]
    chains = []
    previous = "0:v"
    offset = 0.0
    for index in range(1, len(clips)):
        offset += SECONDS - DISSOLVE
        label = f"v{index}"
        chains.append(f"[{previous}][{index}:v]xfade=transition=fade:duration={DISSOLVE}:"
                      f"offset={offset:.6f}[{label}]")
        previous = label
    chains.append(f"[{previous}]fps={FPS}[out]")
    total = len(clips) * SECONDS * FPS - (len(clips) - 1) * round(DISSOLVE * FPS)
    run_ffmpeg([*args, "-filter_complex", ";".join(chains), "-map", "[out]",
                "-frames:v", str(total), "-c:v", "libx264", "-preset", "veryfast", "-crf", "20",
                "-pix_fmt", "yuv420p", "-movflags", "+faststart", str(output)],
               what="render the hand-written graph")
    return {"frames": total}


def run_moviepy(clips: list[Path], output: Path) -> dict:
    from moviepy import VideoFileClip, concatenate_videoclips, vfx

    videos = [VideoFileClip(str(path), audio=False) for path in clips]
    faded = [videos[0]] + [v.with_effects([vfx.CrossFadeIn(DISSOLVE)]) for v in videos[1:]]
    final = concatenate_videoclips(faded, method="compose", padding=-DISSOLVE)
    final.write_videofile(str(output), fps=FPS, codec="libx264", preset="veryfast",
                          ffmpeg_params=["-crf", "20", "-pix_fmt", "yuv420p"], audio=False,
                          logger=None)
    for video in videos:
        video.close()
    return {"frames": round(final.duration * FPS)}


def child(method: str, clips: list[Path], output: Path, work: Path) -> None:
    if method == "stitchcraft":
        result = run_stitchcraft(clips, output, work, dissolve=True)
    elif method == "graph":
        result = run_graph(clips, output)
    elif method == "moviepy":
        result = run_moviepy(clips, output)
    elif method == "cuts-smart":
        result = run_stitchcraft(clips, output, work, dissolve=False, smart=True)
    elif method == "cuts-reencode":
        result = run_stitchcraft(clips, output, work, dissolve=False, smart=False)
    else:
        raise SystemExit(f"unknown method {method}")
    print(json.dumps(result))


def measure(method: str, clips: list[Path], folder: Path) -> dict:
    """Runs one method in a fresh process; wall time and peak memory of its process tree."""
    output = folder / f"out-{method}-{len(clips)}.mp4"
    output.unlink(missing_ok=True)
    work = folder / f"work-{method}-{len(clips)}-{time.time_ns()}"
    listing = folder / f"clips-{method}.json"
    listing.write_text(json.dumps([str(p) for p in clips]))
    run = run_sampled([sys.executable, __file__, "--child", method, "--list", str(listing),
                       "--output", str(output), "--work", str(work)], pss=True)
    if run.returncode != 0:
        raise SystemExit(f"{method} failed:\n{run.stderr[-3000:]}")
    result = json.loads(run.stdout.strip().splitlines()[-1])
    result.update(method=method, seconds=run.seconds, peak_mb=run.peak_rss / 2**20,
                  peak_pss_mb=run.peak_pss / 2**20, clips=len(clips))
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    return result


def identical_frames(clips: list[Path], output: Path) -> bool:
    """The output of a hard-cut assembly decodes to exactly the takes' frames."""
    from stitchcraft.media import read_frames

    start = 0
    for path in clips:
        take = read_frames(path)
        joined = read_frames(output, start, len(take))
        if not (take.shape == joined.shape and (take == joined).all()):
            return False
        start += len(take)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=12)
    parser.add_argument("--memory-clips", type=int, default=48)
    parser.add_argument("--quick", action="store_true",
                        help="640x360 clips, 24 for the memory run: a fast smoke run")
    parser.add_argument("--skip-moviepy", action="store_true")
    parser.add_argument("--folder", type=Path, default=Path("/tmp/stitchcraft-bench"))
    parser.add_argument("--child")
    parser.add_argument("--list", type=Path)
    parser.add_argument("--output", type=Path)
    parser.add_argument("--work", type=Path)
    args = parser.parse_args()
    if args.child:
        clips = [Path(p) for p in json.loads(args.list.read_text())]
        child(args.child, clips, args.output, args.work)
        return
    size = (640, 360) if args.quick else (1280, 720)
    memory_clips = min(args.memory_clips, 24) if args.quick else args.memory_clips
    folder = args.folder
    print(f"making {max(args.clips, memory_clips)} clips of {SECONDS} s at "
          f"{size[0]}x{size[1]}, {FPS} fps ...", flush=True)
    clips = make_clips(folder / "clips", max(args.clips, memory_clips), size, SECONDS)
    cut = clips[:args.clips]

    rows = []
    methods = ["stitchcraft", "graph"] + ([] if args.skip_moviepy else ["moviepy"])
    for method in methods:
        print(f"  {method} ({len(cut)} clips) ...", flush=True)
        rows.append(measure(method, cut, folder))
    if memory_clips > args.clips:
        for method in ("stitchcraft", "graph"):
            print(f"  {method} ({memory_clips} clips) ...", flush=True)
            rows.append(measure(method, clips[:memory_clips], folder))
    print(f"  hard cuts ({len(cut)} clips) ...", flush=True)
    smart = measure("cuts-smart", cut, folder)
    reencode = measure("cuts-reencode", cut, folder)
    same = identical_frames(cut, folder / f"out-cuts-smart-{len(cut)}.mp4")

    base = {r["clips"]: r["seconds"] for r in rows if r["method"] == "graph"}
    print()
    print(f"{len(cut)} clips x {SECONDS} s, {size[0]}x{size[1]} {FPS} fps, "
          f"{DISSOLVE} s dissolves, libx264 veryfast crf 20")
    print(f"{'method':<14}{'clips':>6}{'frames':>8}{'seconds':>10}{'vs graph':>10}"
          f"{'peak RSS MB':>13}{'peak PSS MB':>13}")
    for row in rows:
        ratio = row["seconds"] / base[row["clips"]] if row["clips"] in base else float("nan")
        print(f"{row['method']:<14}{row['clips']:>6}{row['frames']:>8}{row['seconds']:>10.2f}"
              f"{ratio:>9.2f}x{row['peak_mb']:>13.0f}{row['peak_pss_mb']:>13.0f}")
    by = {(r["method"], r["clips"]): r for r in rows}
    if ("moviepy", len(cut)) in by:
        speedup = by[("moviepy", len(cut))]["seconds"] / by[("stitchcraft", len(cut))]["seconds"]
        print(f"stitchcraft is {speedup:.2f}x faster than MoviePy")
    print()
    print(f"hard cuts, {len(cut)} matching clips:")
    print(f"  smart (stream copy): {smart['seconds']:.2f} s, {smart['copied']} of "
          f"{smart['segments']} segments copied, peak {smart['peak_mb']:.0f} MB")
    print(f"  full re-encode:      {reencode['seconds']:.2f} s, peak {reencode['peak_mb']:.0f} MB")
    print(f"  speed-up {reencode['seconds'] / smart['seconds']:.1f}x; copied frames bit-identical "
          f"to the takes: {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
