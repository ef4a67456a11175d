"""Does a render choose the clean take over damaged copies of it?

For each clean clip of a defect set, copies are made with one defect each, by ffmpeg
filters over the clean clip (then encoded as the clean clip was):

    flash    two white frames in the middle (frames 40 and 41)
    frozen   the picture pauses for one second (frame 24 held to frame 47), then moves on
             from where it stopped
    flicker  luma flicker: brightness wobbles by up to about +-9 levels frame to frame
    drift    a colour cast creeps in across the take (red up, blue down; about 10-20
             delta E from first frame to last)
    cut      a hard cut half way to another clip of the set
    jitter   frame-order jitter: every group of four frames is shown as 0 2 1 3, so the
             motion steps back once every four frames

Clean clips: lavfi scenes (testsrc2, mandelbrot, life, cellauto, a slow push-in over
animated gradients, a slow push-in on a textured still) and the demo's footage (hills,
ocean and the city's first scene) from ``examples/media`` (made here when absent), each
cut to 3 s at 1280x720, 24 fps, libx264 crf 18.

Each clean clip and its copies go in one folder, and a storyboard with one 3 s footage
shot whose ``source:`` is that folder is rendered by a real ``stitch render`` (a
subprocess, fresh take store). A clip holds exactly one shot's length, so the footage
engine offers each file whole as one candidate (no scene detection splits the ``cut``
copy) and every file is offered, whatever ``candidates:`` says. The chosen take is read
from the render's manifest. The clean file's name sorts last, so a tie (the selection
keeps the earlier candidate) counts against it.

Also: a push-in on a still (the demo's mountain, else a lavfi test pattern) at three
speeds by ffmpeg's zoompan, rendered the same way; each candidate's stability is read
from the manifest and should be high for all three.

Run::

    python benchmarks/defects.py [--folder /tmp/stitchcraft-bench-defects] [--only NAME]
    python benchmarks/defects.py --direct    # score the files directly, no render
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

FPS = 24
SECONDS = 3
FRAMES = FPS * SECONDS
SIZE = (1280, 720)
OUTPUT = (640, 360)
REPO = Path(__file__).resolve().parent.parent

_W, _H = SIZE
# Slow, smooth motion of the kind AI takes and stills show: a gentle push-in.
_PUSH = f"zoompan=z='1+0.0012*on':d=1:x='iw/2-iw/zoom/2':y='ih/2-ih/zoom/2':s={_W}x{_H}:fps={FPS}"
LAVFI_SCENES = {
    "testsrc2": f"testsrc2=size={_W}x{_H}:rate={FPS}",
    "mandelbrot": f"mandelbrot=size={_W}x{_H}:rate={FPS}",
    "life": (f"life=size=320x180:rate={FPS}:mold=10:ratio=0.1:life_color=#e0c040:death_color=#203060,"
             f"scale={_W}:{_H}:flags=neighbor"),
    "cellauto": f"cellauto=size=320x180:rate={FPS}:rule=110,scale={_W}:{_H}:flags=neighbor",
    "gradients-push": f"gradients=size={_W}x{_H}:rate={FPS}:speed=0.01:seed=7,{_PUSH}",
    "pattern-push": (f"testsrc=size={_W}x{_H}:rate=1,trim=end_frame=1,loop=-1:size=1,"
                     f"gblur=sigma=2,{_PUSH}"),
}
DEMO_CLIPS = {"hills": ("hills.mp4", 1.0), "ocean": ("ocean.mp4", 1.0), "city": ("city.mp4", 0.5)}
# zoom added per frame: slow, normal and fast push-ins (the stills engine's 0.6, 1 and 1.6)
PUSH_SPEEDS = {"slow": 0.0008, "normal": 0.0014, "fast": 0.0022}

DEFECTS = ("flash", "frozen", "flicker", "drift", "cut", "jitter")
_FILTERS = {
    "flash": "drawbox=x=0:y=0:w=iw:h=ih:color=white:t=fill:enable='between(n,40,41)'",
    "frozen": f"loop=loop=23:size=1:start=24,trim=end_frame={FRAMES},setpts=N/({FPS}*TB)",
    "flicker": "eq=brightness='0.022*sin(2.3*n)+0.013*sin(0.7*n+1)':eval=frame",
    "drift": "eq=gamma_r='1+0.09*t':gamma_b='1/(1+0.09*t)':gamma_g='1-0.02*t':eval=frame",
    "jitter": "shuffleframes=0 2 1 3",
}


def _encode_args(path: Path) -> list[str]:
    return ["-frames:v", str(FRAMES), "-an", "-c:v", "libx264", "-preset", "veryfast", "-crf", "18",
            "-g", "48", "-pix_fmt", "yuv420p", "-r", str(FPS), str(path)]


def _ffmpeg(args: list[str], what: str, path: Path) -> Path:
    from stitchcraft.media import run_ffmpeg

    if not path.exists():
        partial = path.with_name(f".{path.stem}.partial.mp4")
        run_ffmpeg(["-y", "-loglevel", "error", *args, *_encode_args(partial)], what=what)
        partial.rename(path)
    return path


def demo_media(folder: Path) -> Path | None:
    """The demo's media: ``examples/media`` when made (``make demo``), else made here."""
    shipped = REPO / "examples" / "media"
    if all((shipped / name).exists() for name, _ in DEMO_CLIPS.values()):
        return shipped
    try:
        from stitchcraft.demo import make_demo_media
    except ImportError:
        print("no stitchcraft.demo: the demo's footage is left out", flush=True)
        return None
    print(f"examples/media not made (`make demo` makes it): making the demo's media in {folder}",
          flush=True)
    make_demo_media(folder)
    return folder


def make_clean(folder: Path, with_demo: bool = True) -> dict[str, Path]:
    """The clean clips: 3 s at 1280x720 each, by name."""
    folder.mkdir(parents=True, exist_ok=True)
    clean: dict[str, Path] = {}
    for name, expr in LAVFI_SCENES.items():
        clean[name] = _ffmpeg(["-f", "lavfi", "-i", expr], f"make {name}", folder / f"{name}.mp4")
    media = demo_media(folder / "demo-media") if with_demo else None
    if media is not None:
        for name, (file, start) in DEMO_CLIPS.items():
            clean[f"demo-{name}"] = _ffmpeg(
                ["-ss", f"{start}", "-i", str(media / file), "-vf", f"scale={_W}:{_H},fps={FPS}"],
                f"cut demo {name}", folder / f"demo-{name}.mp4")
    return clean


def make_damaged(clean: Path, other: Path, folder: Path) -> dict[str, Path]:
    """One copy of `clean` per defect in `folder`; `other` is what the cut cuts to."""
    folder.mkdir(parents=True, exist_ok=True)
    copies: dict[str, Path] = {}
    for defect in DEFECTS:
        path = folder / f"{defect}.mp4"
        if defect == "cut":
            half = FRAMES // 2
            graph = (f"[0:v]trim=end_frame={half}[a];[1:v]trim=start_frame={half},"
                     f"setpts=PTS-STARTPTS[b];[a][b]concat=n=2:v=1:a=0,setpts=N/({FPS}*TB)[v]")
            args = ["-i", str(clean), "-i", str(other), "-filter_complex", graph, "-map", "[v]"]
        else:
            args = ["-i", str(clean), "-vf", _FILTERS[defect]]
        copies[defect] = _ffmpeg(args, f"make {defect} of {clean.stem}", path)
    # Sorts after every defect's name: a tie goes to the damaged copy.
    copies["clean"] = folder / "zz-clean.mp4"
    if not copies["clean"].exists():
        shutil.copyfile(clean, copies["clean"])
    return copies


def make_push_ins(folder: Path, media: Path | None) -> dict[str, Path]:
    """A still pushed in on by zoompan at three speeds."""
    folder.mkdir(parents=True, exist_ok=True)
    still = media / "mountain.png" if media is not None and (media / "mountain.png").exists() else None
    source = (["-loop", "1", "-i", str(still)] if still else
              ["-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=1,trim=end_frame=1,loop=-1:size=1"])
    made = {}
    for name, rate in PUSH_SPEEDS.items():
        # Scaled up first, the usual remedy for zoompan's whole-pixel stair-stepping.
        push = (f"scale=3840:2160,zoompan=z='1+{rate}*on':d=1:x='iw/2-iw/zoom/2':y='ih/2-ih/zoom/2':"
                f"s={_W}x{_H}:fps={FPS}")
        made[name] = _ffmpeg([*source, "-vf", push], f"push-in {name}", folder / f"push-{name}.mp4")
    return made


def write_storyboard(folder: Path, source: Path) -> Path:
    board = folder / "board.yaml"
    board.write_text(f"""version: 1
title: defect benchmark
output: {{fps: {FPS}, size: {OUTPUT[0]}x{OUTPUT[1]}, path: out/cut.mp4, codec: h264,
         preset: ultrafast, crf: 28}}
defaults: {{candidates: 16}}
shots:
  - {{id: take, source: {json.dumps(str(source))}, duration: {SECONDS}}}
""")
    return board


def render(folder: Path, source: Path) -> dict:
    """Renders a one-shot storyboard over `source` (a folder) and returns the shot's
    manifest record."""
    board = write_storyboard(folder, source)
    command = [sys.executable, "-m", "stitchcraft", "render", str(board), "--cache",
               str(folder / "state" / "cache"), "--json"]
    run = subprocess.run(command, cwd=folder, capture_output=True, text=True)
    if run.returncode != 0:
        raise SystemExit(f"render of {source} failed ({run.returncode}):\n{run.stdout[-2000:]}\n"
                         f"{run.stderr[-3000:]}")
    manifest = json.loads((folder / "out" / "cut.manifest.json").read_text())
    return manifest["shots"]["take"]


def candidates_of(shot: dict) -> tuple[str, list[dict]]:
    """The chosen take's id and every candidate offered, from a manifest shot record."""
    offered = [c for segment in shot["segments"] for c in segment["candidates"]]
    return shot["chosen"], offered


def score_directly(paths: dict[str, Path]) -> dict[str, tuple[float, dict[str, float]]]:
    """Stability of each file, scored as a render scores a take (scan at 640x360)."""
    from stitchcraft.media import read_frames
    from stitchcraft.scoring import FrameSource
    from stitchcraft.scoring.classical import StabilityScorer

    scorer = StabilityScorer()
    scores = {}
    for name, path in paths.items():
        frames = read_frames(path, size=OUTPUT)
        source = FrameSource(name, path, len(frames), Fraction(FPS), pixels=frames)
        score = scorer.score(source)
        scores[name] = (score.value, score.parts)
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--folder", type=Path, default=Path("/tmp/stitchcraft-bench-defects"))
    parser.add_argument("--only", action="append", help="clean clip name(s) to run")
    parser.add_argument("--no-demo", action="store_true", help="lavfi scenes only")
    parser.add_argument("--direct", action="store_true",
                        help="score the files with the stability scorer directly, no render")
    parser.add_argument("--verbose", "-v", action="store_true", help="print every candidate's parts")
    args = parser.parse_args()
    folder = args.folder
    started = time.perf_counter()
    print(f"making the defect set in {folder} ...", flush=True)
    clean = make_clean(folder / "clean", with_demo=not args.no_demo)
    names = [n for n in clean if not args.only or n in args.only]
    hits = {d: 0 for d in DEFECTS}
    wins = 0
    for index, name in enumerate(names):
        other = clean[names[(index + 1) % len(names)] if len(names) > 1 else "testsrc2"]
        if other == clean[name]:
            other = clean["mandelbrot" if name != "mandelbrot" else "testsrc2"]
        copies = make_damaged(clean[name], other, folder / "sets" / name)
        by_path = {str(p.resolve()): d for d, p in copies.items()}
        if args.direct:
            scores = score_directly(copies)
            values = {d: v for d, (v, _) in scores.items()}
            chosen = max(reversed(list(values)), key=lambda d: values[d])  # ties: not clean
            details = {d: p for d, (_, p) in scores.items()}
        else:
            run = folder / "runs" / name
            shutil.rmtree(run, ignore_errors=True)
            run.mkdir(parents=True)
            chosen_id, offered = candidates_of(render(run, copies["clean"].parent))
            if len(offered) != len(copies):
                raise SystemExit(f"{name}: {len(offered)} candidates offered, {len(copies)} files")
            values = {by_path[str(Path(c["source"]).resolve())]: c["components"].get("stability", c["score"])
                      for c in offered}
            details = {by_path[str(Path(c["source"]).resolve())]: c["details"].get("stability", {})
                       for c in offered}
            chosen = next(by_path[str(Path(c["source"]).resolve())] for c in offered if c["id"] == chosen_id)
        for defect in DEFECTS:
            hits[defect] += values["clean"] > values[defect]
        wins += chosen == "clean"
        line = "  ".join(f"{d} {values[d]:.3f}" for d in ("clean", *DEFECTS))
        print(f"{name:<16} chose {chosen:<8} {line}", flush=True)
        if args.verbose:
            for defect, parts in details.items():
                shown = ", ".join(f"{k} {v:.3g}" for k, v in parts.items())
                print(f"    {defect:<8} {shown}")

    print()
    print(f"clean clip chosen: {wins}/{len(names)}")
    print("per defect, clean clip scored above the damaged copy (hit rate):")
    for defect in DEFECTS:
        print(f"  {defect:<8} {hits[defect]}/{len(names)}")

    media = demo_media(folder / "clean" / "demo-media") if not args.no_demo else None
    pushes = make_push_ins(folder / "push", media)
    if args.direct:
        push_scores = {n: v for n, (v, _) in score_directly(pushes).items()}
    else:
        run = folder / "runs" / "push-in"
        shutil.rmtree(run, ignore_errors=True)
        run.mkdir(parents=True)
        _, offered = candidates_of(render(run, folder / "push"))
        named = {str(p.resolve()): n for n, p in pushes.items()}
        push_scores = {named[str(Path(c["source"]).resolve())]: c["components"].get("stability", c["score"])
                       for c in offered}
    print("push-in on a still (zoompan), stability: "
          + ", ".join(f"{n} {push_scores[n]:.3f}" for n in PUSH_SPEEDS))
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
