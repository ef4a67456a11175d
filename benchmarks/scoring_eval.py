"""Does seam scoring find the true continuation? And what does scoring cost?

Evaluation: longer footage (the demo's own clips plus lavfi scenes with motion) is split
into 2 s clips at known points. For every split, the clip that really follows is offered
as a candidate beside every other clip of the set (same footage elsewhere, and every
other scene) as distractors; the seam scorers must rank the true continuation first.
Splits within two frames of a cut already in the footage are skipped (the demo's city
clip cuts at 4 s): nothing can judge continuity across them.

Timing: five-second 720p takes, scored the way a render scores a candidate (take
scores, the seam from the previous chosen take, drift against the chain start), from a
fresh book with nothing cached: frames decoded and seconds per candidate.

Run:

    python benchmarks/scoring_eval.py                  # classical scorers, no weights
    python benchmarks/scoring_eval.py --timing-models random
        # also times CLIP ViT-B-32 and LPIPS at full size with random weights (the cost
        # is the real cost; the scores mean nothing, so no hit rate is printed for them)
    python benchmarks/scoring_eval.py --clip-model ViT-B-32:openai \\
        --lpips ~/.cache/torch/hub/checkpoints/alexnet-owt-7be5be79.pth
        # real weights, found on disk only: an open_clip ARCH:TAG in the Hugging Face or
        # open_clip cache, ARCH:/path/weights.safetensors or local-dir:/folder; the LPIPS
        # value is torchvision's AlexNet file (or a folder holding it). Fetch them once
        # where there is network:
        #   python -c "import open_clip; open_clip.create_model_and_transforms('ViT-B-32', pretrained='openai')"
        #   python -c "import torchvision; torchvision.models.alexnet(weights='DEFAULT')"
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

from stitchcraft import media
from stitchcraft.scoring import SCORERS, FrameSource, ScoreBook
from stitchcraft.scoring.classical import find_cuts, to_gray
from stitchcraft.storyboard import Scoring

FPS = Fraction(24)
CLIP_SECONDS = 2
FOOTAGE_SECONDS = 8
SIZE = "640x360"

# Scenes with motion of different kinds: zooms, scrolls, evolving patterns, pans.
LAVFI_SCENES = {
    "testsrc2": f"testsrc2=size={SIZE}:rate=24",
    "mandelbrot": f"mandelbrot=size={SIZE}:rate=24",
    "mandelbrot-hue": f"mandelbrot=size={SIZE}:rate=24:start_x=-0.743643887:start_y=0.131825904,hue=h=t*30",
    "cellauto": f"cellauto=size={SIZE}:rate=24:rule=110",
    "life": f"life=size={SIZE}:rate=24:mold=10:ratio=0.1:life_color=#e0c040:death_color=#203060",
    "gradients": f"gradients=size={SIZE}:rate=24:speed=0.03:seed=7",
    "bars-scroll": f"smptehdbars=size={SIZE}:rate=24,scroll=h=0.004,noise=alls=6:allf=t",
    "testsrc-rotate": f"testsrc=size={SIZE}:rate=24,rotate=a=t*0.25:fillcolor=navy",
    "rgb-zoom": f"rgbtestsrc=size={SIZE}:rate=24,zoompan=z='1+0.004*on':d=1:s={SIZE}:fps=24",
}


def make_footage(folder: Path) -> dict[str, Path]:
    """The footage set: the demo's clips (when stitchcraft.demo exists) and lavfi scenes."""
    footage: dict[str, Path] = {}
    try:
        from stitchcraft.demo import make_demo_media

        for path in make_demo_media(folder / "demo"):
            if path.suffix == ".mp4":
                footage[f"demo-{path.stem}"] = path
    except ImportError:
        pass
    for name, expr in LAVFI_SCENES.items():
        path = folder / f"{name}.mp4"
        if not path.exists():
            media.run_ffmpeg(["-f", "lavfi", "-i", expr, "-t", str(FOOTAGE_SECONDS), "-an",
                              *media.encoder_args("h264", crf=16), str(path)],
                             what=f"make footage {name}")
        footage[name] = path
    return footage


def split(footage: dict[str, Path]) -> tuple[list[FrameSource], list[tuple[int, int]]]:
    """Clips cut from the footage at every CLIP_SECONDS, as the store would hold them
    (lossless heads and tails), and the (clip, true next clip) pairs to test."""
    clips: list[FrameSource] = []
    seams: list[tuple[int, int]] = []
    length = int(CLIP_SECONDS * FPS)
    for name, path in footage.items():
        frames = media.read_frames(path, size=(640, 360))
        cuts = set(find_cuts(to_gray(frames)))
        first = len(clips)
        for start in range(0, len(frames) - length + 1, length):
            piece = frames[start:start + length]
            clips.append(FrameSource(f"{name}@{start}", path, length, FPS,
                                     head=piece[:8].copy(), tail=piece[-16:].copy()))
            boundary = start + length
            if start > 0 and not any(abs(boundary - length - c) <= 2 for c in cuts):
                seams.append((len(clips) - 2, len(clips) - 1))
        del frames
        if len(clips) - first < 2:
            raise SystemExit(f"footage {name} is too short to split")
    return clips, seams


def evaluate(book: ScoreBook, clips: list[FrameSource], seams: list[tuple[int, int]]) -> dict[str, float]:
    """Hit rate of the combined seam value and of each seam scorer alone."""
    names = [n for n, s in book.scorers.items() if s.SHAPE == "seam"]
    hits = dict.fromkeys(["combined", *names], 0)
    for before, truth in seams:
        best: dict[str, tuple[float, int]] = {}
        for index, candidate in enumerate(clips):
            if index == before:
                continue
            scores = book.seam_scores(clips[before], candidate)
            values = {"combined": book.seam_value(scores), **{n: scores[n].value for n in names if n in scores}}
            for key, value in values.items():
                if key not in best or value > best[key][0]:
                    best[key] = (value, index)
        for key in hits:
            hits[key] += best.get(key, (0, -1))[1] == truth
    return {key: count / len(seams) for key, count in hits.items()}


def timing(folder: Path, settings: Scoring, candidates: int = 3) -> dict[str, float]:
    """Scores `candidates` 5 s 720p takes after a chosen take, as a render does."""
    sources = {"testsrc2": "testsrc2=size=1280x720:rate=24",
               "mandelbrot": "mandelbrot=size=1280x720:rate=24",
               "life": "life=size=1280x720:rate=24:mold=10:ratio=0.1",
               "gradients": "gradients=size=1280x720:rate=24:speed=0.03"}
    takes = []
    for name, expr in list(sources.items())[:candidates + 1]:
        path = folder / f"take-{name}.mp4"
        if not path.exists():
            media.run_ffmpeg(["-f", "lavfi", "-i", expr, "-t", "5", "-an",
                              *media.encoder_args("h264", crf=14), str(path)], what=f"make take {name}")
        # The store keeps lossless heads and tails beside each take; read them outside
        # the timed part, as the render reads them from .npy files.
        head = media.read_frames(path, 0, 8)
        tail = media.read_frames(path, 120 - 16, 16)
        takes.append((path, head, tail))
    book = ScoreBook(settings)
    sources_ = [FrameSource(p.stem, p, 120, FPS, prompt="a colourful abstract pattern", head=h, tail=t)
                for p, h, t in takes]
    previous = sources_[0]
    book.take_scores(previous)  # the chosen take before was scored in its own turn
    warm = book.stats()
    started = time.perf_counter()
    for candidate in sources_[1:]:
        book.take_scores(candidate)
        book.seam_scores(previous, candidate)
        book.drift_scores(previous, candidate)
    seconds = time.perf_counter() - started
    stats = book.stats()
    per_scorer = {name: round((values["seconds"] - warm["scorers"].get(name, {}).get("seconds", 0)) / candidates, 3)
                  for name, values in stats["scorers"].items()}
    return {"candidates": candidates,
            "frames_decoded_per_candidate": (stats["frames_decoded"] - warm["frames_decoded"]) / candidates,
            "frames_per_take": 120,
            "seconds_per_candidate": round(seconds / candidates, 3),
            "seconds_per_scorer": per_scorer,
            "scorers": sorted(book.scorers)}


def random_models(folder: Path) -> Scoring:
    """Full-size CLIP ViT-B-32 and LPIPS AlexNet with random weights, saved to disk
    and loaded like real ones: their cost is real, their scores are not."""
    import open_clip
    import torch
    import torchvision
    from safetensors.torch import save_file

    clip_file = folder / "random-vit-b-32.safetensors"
    if not clip_file.exists():
        model = open_clip.create_model("ViT-B-32", pretrained=None)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(clip_file))
    alex = folder / "random-alexnet.pth"
    if not alex.exists():
        torch.save(torchvision.models.alexnet(weights=None).state_dict(), alex)
    return Scoring(clip_model=f"ViT-B-32:{clip_file}", lpips_weights=str(alex))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clip-model", help="scoring.clip_model for real CLIP weights")
    parser.add_argument("--lpips", help="scoring.lpips_weights: torchvision AlexNet file")
    parser.add_argument("--timing-models", choices=["none", "random"], default="none",
                        help="also time full-size CLIP/LPIPS with random weights")
    parser.add_argument("--work", type=Path, help="keep footage here (default: a temp folder)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--skip-eval", action="store_true", help="only the timing section")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="stitchcraft-eval-") as scratch:
        work = args.work or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        figures: dict[str, object] = {}

        if not args.skip_eval:
            footage = make_footage(work)
            clips, seams = split(footage)
            classical = Scoring(weights={n: 0.0 for n in SCORERS if n != "seam"})
            started = time.perf_counter()
            figures["classical"] = evaluate(ScoreBook(classical), clips, seams)
            figures["eval"] = {"footage": len(footage), "clips": len(clips), "seams": len(seams),
                               "candidates_per_seam": len(clips) - 1,
                               "seconds": round(time.perf_counter() - started, 2)}
            if args.clip_model or args.lpips:
                real = Scoring(clip_model=args.clip_model, lpips_weights=args.lpips)
                book = ScoreBook(real)
                figures["models"] = evaluate(book, clips, seams)
                figures["model_warnings"] = book.warnings

        figures["timing_classical"] = timing(work, Scoring(weights={"prompt": 0, "reference": 0,
                                                                    "seam_clip": 0, "seam_lpips": 0,
                                                                    "flicker": 0}))
        if args.timing_models == "random":
            figures["timing_random_models"] = timing(work, random_models(work))

        if args.json:
            print(json.dumps(figures, indent=2))
        else:
            report(figures)
    return 0


def report(figures: dict) -> None:
    if "eval" in figures:
        ev = figures["eval"]
        print(f"Seam selection: {ev['seams']} splits across {ev['footage']} pieces of footage, "
              f"{ev['candidates_per_seam']} candidates each (1 true continuation); {ev['seconds']} s")
    for group in ("classical", "models"):
        if group in figures:
            for name, rate in figures[group].items():
                print(f"  {group:9s} {name:12s} hit rate {rate:6.1%}")
    for warning in figures.get("model_warnings", []):
        print(f"  warning: {warning}")
    for key in ("timing_classical", "timing_random_models"):
        if key in figures:
            t = figures[key]
            print(f"Scoring cost, 5 s 720p takes ({', '.join(t['scorers'])}):")
            print(f"  {t['seconds_per_candidate']:.2f} s and {t['frames_decoded_per_candidate']:.0f} "
                  f"of {t['frames_per_take']} frames decoded per candidate")
            print("  per scorer (s/candidate): " + ", ".join(f"{k} {v}" for k, v in t["seconds_per_scorer"].items()))


if __name__ == "__main__":
    sys.exit(main())
