"""The identity scorer against footage drawn at test time: a face the Haar cascade
finds, kept or changed across candidate takes."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from drawn_faces import backdrop, draw_face, footage
from lavfi import make_image

from stitchcraft.media import read_image, write_video
from stitchcraft.scoring import FrameSource, ScoreBook
from stitchcraft.scoring.faces import IdentityScorer, describe, descriptor_similarity, find_faces
from stitchcraft.storyboard import Scoring

FPS = Fraction(24)
# Only the identity scorer judges takes here, so nothing else can decide the ranking.
ONLY_IDENTITY = {"stability": 0, "still": 0, "prompt": 0, "reference": 0, "flicker": 0}


@pytest.fixture(autouse=True)
def no_clip(tmp_path, monkeypatch):
    """No CLIP weights are found: the colour-and-texture descriptor compares."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("STITCHCRAFT_CLIP_MODEL", raising=False)


def save_png(frame: np.ndarray, path: Path) -> Path:
    from PIL import Image

    Image.fromarray(frame).save(path)
    return path


def encoded(tmp_path: Path, name: str, frames: np.ndarray, cast: dict[str, list[Path]]) -> FrameSource:
    path = write_video(frames, tmp_path / f"{name}.mp4", FPS, crf=16)
    return FrameSource(name, path, len(frames), FPS, cast=cast)


def test_the_drawn_face_is_found_where_it_was_drawn():
    frame = draw_face(backdrop(640, 360), (300, 170), 90)
    boxes = find_faces(frame)
    assert len(boxes) == 1
    x, y, w, h = boxes[0]
    # The cascade's box is centred on the eyes-to-mouth region of the oval.
    assert abs(x + w / 2 - 300) < 15 and abs(y + h / 2 - 170) < 25
    assert 0.8 * 90 < w < 2.6 * 90
    assert find_faces(backdrop(640, 360)) == []  # no face in the bare ground
    assert find_faces(np.zeros((10, 10, 3), np.uint8)) == []


def test_consistent_face_ranks_first(tmp_path):
    cast_image = save_png(draw_face(backdrop(400, 400, seed=5), (200, 200), 120), tmp_path / "courier.png")
    cast = {"courier": [cast_image]}
    kept = encoded(tmp_path, "kept", footage(24), cast)
    changed = encoded(tmp_path, "changed", footage(24, change=True), cast)
    book = ScoreBook(Scoring(weights=ONLY_IDENTITY))
    assert "identity" in book.scorers and not any("identity" in w for w in book.warnings)
    scores = {name: book.take_scores(take) for name, take in (("kept", kept), ("changed", changed))}
    assert all(set(s) == {"identity"} for s in scores.values())
    same, other = scores["kept"]["identity"], scores["changed"]["identity"]
    # Compared face to face in every sampled frame, not by the whole-frame fallback.
    assert same.parts["courier:faces"] == 1.0
    assert "courier: faces in 4/4 frames" in same.note and "colour and texture" in same.note
    assert same.parts["courier"] > 0.8 and same.value == pytest.approx(same.parts["courier"])
    assert other.parts["courier"] < same.parts["courier"] - 0.3
    ranked = sorted(scores, key=lambda name: book.combine(scores[name]), reverse=True)
    assert ranked == ["kept", "changed"]
    assert book.stats()["scorers"]["identity"]["calls"] == 2


def test_keyframe_candidates_are_judged_by_face(tmp_path):
    cast = {"courier": [save_png(draw_face(backdrop(300, 360, seed=2), (150, 170), 100),
                                 tmp_path / "courier.png")]}
    ground = backdrop(640, 360, seed=9)
    faithful = draw_face(ground, (330, 180), 85)
    stranger = draw_face(ground, (330, 180), 85, skin=(90, 120, 200), width=0.6, eyes=0.45)
    book = ScoreBook(Scoring(weights=ONLY_IDENTITY))
    keyframes = {name: FrameSource(name, Path(f"{name}.png"), 1, FPS, pixels=frame[None], cast=cast)
                 for name, frame in (("faithful", faithful), ("stranger", stranger))}
    scores = {name: book.take_scores(take)["identity"] for name, take in keyframes.items()}
    assert scores["faithful"].parts["courier:faces"] == 1.0  # one frame, one face
    assert scores["faithful"].value > scores["stranger"].value + 0.2


def test_without_faces_whole_frames_are_compared(tmp_path):
    # A "character" whose image shows no face (a creature, a vehicle): the take's frames
    # are compared whole with the image.
    picture = read_image(make_image(tmp_path / "rover.png", size="320x180", source="testsrc2"))
    cast = {"rover": [tmp_path / "rover.png"]}
    pan = np.stack([np.roll(picture, 3 * t, axis=1) for t in range(12)])
    recoloured = pan[..., ::-1].copy()  # the same scene with red and blue swapped
    book = ScoreBook(Scoring(weights=ONLY_IDENTITY))
    alike = book.take_scores(encoded(tmp_path, "alike", pan, cast))["identity"]
    unlike = book.take_scores(encoded(tmp_path, "unlike", recoloured, cast))["identity"]
    assert alike.parts["rover:faces"] == 0.0 and unlike.parts["rover:faces"] == 0.0
    assert "rover: no face in the take, whole frames compared" in alike.note
    assert alike.value > unlike.value + 0.2
    # The whole-frame reading is the descriptor's, against a numpy-side reference.
    frames = FrameSource("alike", tmp_path / "alike.mp4", 12, FPS).sample(4)
    expected = descriptor_similarity(np.stack([describe(f, 64) for f in frames]),
                                     describe(picture, 64)[None]).max(axis=1).mean()
    assert alike.parts["rover"] == pytest.approx(min(1.0, (expected - 0.55) / 0.4), abs=0.02)


def test_identity_says_nothing_without_a_cast_and_keys_on_the_images(tmp_path):
    scorer = IdentityScorer()
    take = FrameSource("t", tmp_path / "t.mp4", 24, FPS)
    assert scorer.score(take) is None and scorer.inputs_key(take) == ""
    image = save_png(draw_face(backdrop(200, 200), (100, 100), 60), tmp_path / "a.png")
    cast_take = FrameSource("t", tmp_path / "t.mp4", 24, FPS, cast={"a": [image]})
    renamed = FrameSource("t", tmp_path / "t.mp4", 24, FPS, cast={"b": [image]})
    key = scorer.inputs_key(cast_take)
    assert key and key != scorer.inputs_key(renamed)
    save_png(draw_face(backdrop(200, 200), (100, 100), 50), image)  # replaced in place
    assert scorer.inputs_key(cast_take) != key
    assert scorer.identity() == "descriptor@1"


@pytest.mark.models
def test_identity_compares_with_clip_when_its_weights_are_found(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("open_clip")
    from tiny_clip import make_tiny_clip

    tiny = make_tiny_clip(tmp_path / "clip")
    cast = {"courier": [save_png(draw_face(backdrop(400, 400), (200, 200), 120), tmp_path / "c.png")]}
    book = ScoreBook(Scoring(clip_model=tiny["file"], weights=ONLY_IDENTITY))
    assert book.scorers["identity"].identity().startswith("clip|")
    score = book.take_scores(encoded(tmp_path, "kept", footage(12), cast))["identity"]
    assert score.parts["courier:faces"] == 1.0 and "by CLIP" in score.note
    assert 0.0 <= score.value <= 1.0


@pytest.mark.parametrize("shape", [(1, 1), (5, 7), (23, 41)])
def test_identity_never_raises_on_tiny_frames(tmp_path, shape):
    image = save_png(draw_face(backdrop(200, 200), (100, 100), 60), tmp_path / "a.png")
    frame = np.full((*shape, 3), 90, np.uint8)
    score = IdentityScorer().score(FrameSource("t", tmp_path / "t.png", 1, FPS, pixels=frame[None],
                                               cast={"a": [image]}))
    assert score.parts["a:faces"] == 0.0 and 0.0 <= score.value <= 1.0
