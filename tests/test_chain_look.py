"""Chained takes through a render: colours anchored to the chain's start, and the
frames an engine re-makes at a chained start cross-faded with the take before.

The test engine continues whatever frames it is given, moving the picture one pixel a
frame and letting its colours drift by a known step each frame (a warm cast, more
saturation, less contrast): the creep that chains of real image-to-video models show.
"""

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from stitchcraft.engines import register_engine
from stitchcraft.engines.base import Capabilities, Engine, FrameRule, SegmentRequest, Take
from stitchcraft.generate.colour import apply_grade, grade_for, look_of, measure
from stitchcraft.media import read_frames
from stitchcraft.render import RenderOptions, render
from stitchcraft.scoring.classical import colour_stats, delta_e
from stitchcraft.select.join import blend_overlap
from stitchcraft.storyboard.load import load_storyboard

CONDITION = 3


def scene(height: int, width: int) -> np.ndarray:
    """A colourful, textured first frame."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    rng = np.random.default_rng(7)
    noise = rng.normal(0, 3, (height, width, 3))
    red = 140 + 70 * np.sin(x / 9.0) + noise[..., 0]
    green = 120 + 60 * np.cos(y / 7.0 + x / 23.0) + noise[..., 1]
    blue = 110 + 50 * np.sin((x + y) / 13.0) + noise[..., 2]
    return np.clip(np.stack([red, green, blue], axis=-1), 0, 255).astype(np.uint8)


def drift(frame: np.ndarray, steps: int) -> np.ndarray:
    """`steps` frames of the engine's colour creep applied to a frame."""
    out = frame.astype(np.float64)
    for _ in range(steps):
        luma = out @ np.array([0.299, 0.587, 0.114])
        out = luma[..., None] + (out - luma[..., None]) * 1.012   # saturation creeps up
        out = 128 + (out - 128) * 0.994                            # contrast creeps down
        out += np.array([0.7, 0.1, -0.6])                          # a warm cast creeps in
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


class Drifter(Engine):
    """Continues the frames it is given (or a fixed scene), one pixel a frame, with a
    colour creep of one `drift` step a frame; re-makes the conditioning frames (drifted
    once) as its lead. Every seed makes the same take."""

    NAME = "drifter"
    CAPABILITIES = Capabilities(kinds=frozenset({"prompt"}), text_to_video=True, image_to_video=True,
                                keeps_lead=True,
                                condition_frames=CONDITION, max_frames=12, frame_rule=FrameRule())

    def generate(self, request: SegmentRequest) -> Iterator[Take]:
        given = request.condition_frames
        start = given[-1] if given is not None else scene(request.height, request.width)
        for seed in request.seeds:
            frames = np.stack([drift(np.roll(start, j + 1, axis=1), j + 1)
                               for j in range(request.frames)])
            take = Take(frames=frames, seed=seed, label=f"drift {seed}")
            if given is not None:
                take.lead = np.stack([drift(frame, 1) for frame in given])
            yield take


BOARD = """
version: 1
output: {{fps: 12, size: 96x64, path: out/cut.mp4, preset: ultrafast}}
defaults: {{engine: drifter, candidates: 1, seed: 0, transition: {{type: cut}}, {defaults}}}
scoring: {{weights: {{prompt: 0, reference: 0, seam_clip: 0, seam_lpips: 0}}}}
shots:
  - {{id: a, prompt: a street, duration: 1}}
  - {{id: b, prompt: the street goes on, duration: 5, continuity: chain}}
"""


@pytest.fixture
def board(tmp_path: Path):
    register_engine(Drifter)

    def write(name: str, defaults: str) -> Path:
        path = tmp_path / name / "board.yaml"
        path.parent.mkdir()
        path.write_text(BOARD.format(defaults=defaults))
        return path

    return write


def rendered(path: Path) -> tuple[np.ndarray, dict]:
    result = render(load_storyboard(path), RenderOptions(cache=path.parent / "cache", variants=[]))
    return read_frames(result.outputs[0].path), json.loads(result.manifest.read_text())


def chain_seams(manifest: dict) -> list[float]:
    """The seam score of every chained join, as the render judged it (lossless ends)."""
    return [next(c["seams"]["previous"] for c in segment["candidates"] if c["id"] == segment["chosen"])
            for segment in manifest["shots"]["b"]["segments"]]


def test_anchoring_holds_a_chain_to_its_first_takes_colours(board):
    plain, plain_manifest = rendered(board("plain", "colour_anchor: false, blend: 0"))
    held, held_manifest = rendered(board("held", "blend: 0"))
    assert len(plain) == len(held) == 72  # the timeline's frames, exactly
    first = colour_stats(plain[:12]).lab
    assert np.allclose(colour_stats(held[:12]).lab, first, atol=0.5)  # the chain's first take is as made
    before = delta_e(first, colour_stats(plain[-12:]).lab)
    after = delta_e(colour_stats(held[:12]).lab, colour_stats(held[-12:]).lab)
    assert before > 15 and after * 4 <= before, (before, after)
    # every join of the chain continues as smoothly as it did unanchored
    plain_seams, held_seams = chain_seams(plain_manifest), chain_seams(held_manifest)
    assert len(held_seams) == 7
    assert min(h - p for h, p in zip(held_seams, plain_seams, strict=True)) > -0.01, (plain_seams, held_seams)
    # the anchored takes are recorded as such, beside the takes as the engine made them
    segments = held_manifest["shots"]["b"]["segments"]
    assert all("colour anchored" in c["label"] for s in segments for c in s["candidates"])


def test_anchoring_is_smooth_in_time():
    frames = np.stack([drift(np.roll(scene(64, 96), j, axis=1), j) for j in range(24)])
    start = look_of(frames[:1])
    anchored = apply_grade(frames, grade_for(measure(frames), start=start, anchor=start))
    means = np.array([colour_stats(f[None]).lab for f in anchored])
    steps = np.linalg.norm(np.diff(means, axis=0), axis=1)
    # no frame jumps: the correction moves by a small, steady amount per frame
    assert steps.max() < 1.0 and steps.max() < 3 * np.median(steps) + 0.2, steps


@pytest.mark.parametrize("blend", [None, 2, 0])
def test_overlap_is_cross_faded_at_each_chained_join(board, blend):
    defaults = "colour_anchor: false" + ("" if blend is None else f", blend: {blend}")
    video, manifest = rendered(board(f"blend{blend}", defaults))
    assert len(video) == 72
    cache = Path(manifest["shots"]["a"]["take"]).parent
    shown = np.load(cache / "tail.npy")             # shot a as shown, lossless
    take_a = manifest["shots"]["a"]["segments"][0]["chosen"]
    take_b = manifest["shots"]["b"]["segments"][0]["chosen"]
    made = np.load(_take_dir(cache, take_a) / "tail.npy")
    lead = np.load(_take_dir(cache, take_b) / "lead.npy")
    assert lead.shape[0] == CONDITION
    expected = blend_overlap(made[-CONDITION:], lead, blend)
    assert np.array_equal(shown[-CONDITION:], expected)
    assert np.array_equal(shown[:-CONDITION], made[:-CONDITION])
    if blend == 0:
        assert np.array_equal(shown, made)
    else:
        assert not np.array_equal(shown[-1], made[-1])


def _take_dir(near: Path, take_id: str) -> Path:
    return near.parent.parent / take_id[:2] / take_id


def test_an_anchored_take_is_graded_where_scoring_reads_it(board, monkeypatch):
    # Scoring reads a take at scan size and a few lossless frames of each end: an
    # anchored take is graded at that size, not frame after frame at full size.
    from stitchcraft.generate import colour
    from stitchcraft.scoring.base import ENDS_KEPT, scan_size

    graded: list[tuple[int, int]] = []  # (frames, height) of each grading
    real = colour.apply_grade

    def spy(frames: np.ndarray, grade: np.ndarray, first: int = 0) -> np.ndarray:
        graded.append((len(frames), frames.shape[1]))
        return real(frames, grade, first)

    monkeypatch.setattr(colour, "apply_grade", spy)
    path = board("large", "blend: 0")
    path.write_text(path.read_text().replace("96x64", "448x256").replace("duration: 5", "duration: 2"))
    frames, manifest = rendered(path)
    assert frames.shape == (36, 256, 448, 3)
    assert all("colour anchored" in c["label"] for s in manifest["shots"]["b"]["segments"]
               for c in s["candidates"])
    # Each chained take's scan (three segments of 8 frames), graded whole at scan size;
    # at full size never more than a frame source's ends, but for the whole takes the
    # shot's segments are joined from.
    scan_height = scan_size(448, 256)[1]
    assert [count for count, height in graded if height == scan_height] == [8, 8, 8]
    joined = 3
    assert sorted(count for count, height in graded if height == 256)[-joined - 1] <= ENDS_KEPT
