"""A variant matrix: 8 cuts in one render against 8 separate renders, side by side.

The storyboard: a 2 x 2 x 2 ``matrix:`` (lang, offer, region) over five shots at
640x360, 24 fps: footage chosen from 3 clips, two stills with camera moves, footage
again, and a still; 0.5 s dissolves, h264 veryfast. Only the captions differ between the
variants (each axis fills one caption), which is the case the matrix is for: one
language or market's words over the same pictures. Media are made with lavfi first.

- matrix: ``stitch render`` of the 2 x 2 x 2 storyboard, in a fresh take store: eight
  cuts, their takes made and scored once.
- separate: the same storyboard with each axis cut down to the one value of a variant
  (so each renders exactly that variant's cut under the same name), eight renders one
  after another, each in its own folder with a fresh take store.

Prints each wall time and matrix / separate (target: under 0.4), and checks that both
ways wrote the same eight files with the same frame counts.

Usage::

    python benchmarks/variants.py [--repeat 1]
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

AXES = {"lang": ["en", "de"], "offer": ["spring", "summer"], "region": ["eu", "us"]}
WORDS = {"en": "Made for mornings", "de": "Gemacht für Morgen", "spring": "Spring sale",
         "summer": "Summer sale", "eu": "From 19 EUR", "us": "From 19 USD"}

STORYBOARD = """\
version: 1
title: Matrix benchmark
matrix:
{axes}
output: {{fps: 24, size: 640x360, path: "out/ad-{{matrix.name}}.mp4", preset: veryfast}}
defaults: {{candidates: 3, transition: {{type: dissolve, duration: 0.5}}}}
audio: {{take_audio: false}}
shots:
  - id: open
    source: clips
    duration: 3
    text: {{content: "{{matrix.lang.words}}", position: center}}
  - id: hero
    image: still.png
    camera: push-in
    duration: 3
  - id: offer
    image: still.png
    camera: pan-right
    duration: 3
    text: {{content: "{{matrix.offer.words}}", position: bottom, box: true}}
  - id: mood
    source: clips
    duration: 3
    continuity: match
  - id: close
    image: still.png
    camera: pull-out
    duration: 2
    text: {{content: "{{matrix.region.words}}", position: top}}
"""


def storyboard(axes: dict[str, list[str]]) -> str:
    lines = []
    for axis, values in axes.items():
        lines.append(f"  {axis}:")
        lines += [f"    {value}: {{words: \"{WORDS[value]}\"}}" for value in values]
    return STORYBOARD.format(axes="\n".join(lines))


def make_media(folder: Path) -> None:
    from stitchcraft.media import run_ffmpeg

    (folder / "clips").mkdir(parents=True)
    for index, source in enumerate(("testsrc2", "smptebars", "mandelbrot")):
        run_ffmpeg(["-f", "lavfi", "-i", f"{source}=size=640x360:rate=24", "-t", "4", "-c:v", "libx264",
                    "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(folder / "clips" / f"c{index}.mp4")],
                   what="make clip")
    run_ffmpeg(["-f", "lavfi", "-i", "testsrc=size=960x540:rate=1", "-frames:v", "1",
                str(folder / "still.png")], what="make still")


def render(folder: Path) -> tuple[float, dict[str, int]]:
    began = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "stitchcraft", "render", "board.yaml", "--json"],
                          cwd=folder, capture_output=True, text=True)
    wall = time.monotonic() - began
    if done.returncode != 0:
        raise SystemExit(f"render in {folder} failed:\n{done.stderr}")
    result = json.loads(done.stdout)
    return wall, {Path(o["path"]).name: o["frames"] for o in result["outputs"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=1, help="runs of each; the best of each is compared")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="stitch-variants-") as scratch:
        media = Path(scratch) / "media"
        make_media(media)

        def project(name: str, axes: dict[str, list[str]]) -> Path:
            folder = Path(scratch) / name
            shutil.rmtree(folder, ignore_errors=True)
            shutil.copytree(media, folder)
            (folder / "board.yaml").write_text(storyboard(axes))
            return folder

        matrix_times, separate_times = [], []
        for _ in range(args.repeat):
            wall, matrix_cuts = render(project("matrix", AXES))
            matrix_times.append(wall)
            print(f"matrix: 8 cuts in one render {wall:6.2f} s")
            total, separate_cuts = 0.0, {}
            for values in itertools.product(*AXES.values()):
                one = dict(zip(AXES, ([v] for v in values), strict=True))
                wall, cuts = render(project("-".join(values), one))
                total += wall
                separate_cuts.update(cuts)
            separate_times.append(total)
            print(f"separate: 8 renders          {total:6.2f} s")
            if matrix_cuts != separate_cuts:
                raise SystemExit(f"the two ways wrote different cuts: {matrix_cuts} != {separate_cuts}")
        ratio = min(matrix_times) / min(separate_times)
        print(f"matrix / separate: {ratio:.2f} (target < 0.4; best of {args.repeat})")


if __name__ == "__main__":
    main()
