"""What the ``identity`` scorer costs per take, beside ``stability`` as the baseline.

Five-second 720p takes (120 frames at 24 fps) held in memory, as a render scores a
take the engine just returned: the shared low-resolution scan is read once (timed on
its own: every scorer of a moving take reads it, and stability always does), then
stability and identity each score the take from it. Scenes: a drawn face drifting
over a soft colour backdrop (hard for the cascade: blob texture everywhere), the same
face over lavfi's testsrc2, and testsrc2 with no face at all (two full searches, then
the whole-frame comparison). The cast image is described once per scorer, as in a
render; the first take pays for it and is not counted.

Run (with the machine otherwise idle; CPU seconds are less sensitive to other load
than wall seconds)::

    python benchmarks/identity_cost.py [--takes 5]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from drawn_faces import backdrop, draw_face  # noqa: E402

from stitchcraft.media import read_frames, run_ffmpeg  # noqa: E402
from stitchcraft.scoring import FrameSource  # noqa: E402
from stitchcraft.scoring.classical import StabilityScorer  # noqa: E402
from stitchcraft.scoring.faces import IdentityScorer  # noqa: E402

FPS = Fraction(24)
SIZE = (1280, 720)
FRAMES = 120


def testsrc(folder: Path) -> np.ndarray:
    path = folder / "testsrc2.mkv"
    run_ffmpeg(["-f", "lavfi", "-i", f"testsrc2=size={SIZE[0]}x{SIZE[1]}:rate=24", "-frames:v",
                str(FRAMES), "-c:v", "ffv1", str(path)], what="benchmark footage")
    return read_frames(path)


def scenes(folder: Path) -> dict[str, np.ndarray]:
    width, height = SIZE
    ground = backdrop(width, height, seed=1)
    card = testsrc(folder)

    def drifting(grounds: np.ndarray) -> np.ndarray:
        return np.stack([draw_face(grounds[t], (width // 2 + 2 * t, height // 2), 150)
                         for t in range(FRAMES)])

    return {"face on backdrop": drifting(np.repeat(ground[None], FRAMES, axis=0)),
            "face on testsrc2": drifting(card), "testsrc2, no face": card}


def seconds(work) -> tuple[float, float]:
    """(wall, CPU) seconds of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--takes", type=int, default=5, help="takes timed per scene")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        cast_image = Path(folder) / "cast.png"
        from PIL import Image

        Image.fromarray(draw_face(backdrop(512, 512, seed=7), (256, 256), 160)).save(cast_image)
        cast = {"courier": [cast_image]}
        identity, stability = IdentityScorer(), StabilityScorer()
        results = {}
        for name, frames in scenes(Path(folder)).items():
            rows = []
            for index in range(args.takes + 1):
                take = FrameSource(f"{name}-{index}", Path("take.mp4"), FRAMES, FPS, pixels=frames,
                                   cast=cast)
                scan = seconds(take.scan)
                base = seconds(lambda take=take: stability.score(take))
                cost = seconds(lambda take=take: identity.score(take))
                if index:  # the first take also describes the cast image
                    rows.append((scan, base, cost))
            mean = np.mean([[v for pair in row for v in pair] for row in rows], axis=0)
            found = identity.score(take)
            results[name] = {
                "scan_wall_s": round(mean[0], 4), "scan_cpu_s": round(mean[1], 4),
                "stability_wall_s": round(mean[2], 4), "stability_cpu_s": round(mean[3], 4),
                "identity_wall_s": round(mean[4], 4), "identity_cpu_s": round(mean[5], 4),
                "identity_over_stability": round(mean[4] / mean[2], 3),
                "faces_share": found.parts["courier:faces"], "note": found.note,
            }
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
