"""Keyframes (takes of one frame) are judged as pictures, never as frozen motion."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from lavfi import make_image

from stitchcraft.media import read_image, run_ffmpeg
from stitchcraft.scoring import SCORERS, FrameSource, ScoreBook
from stitchcraft.scoring.still import StillScorer, blur_effect, composition_parts, gray_frame
from stitchcraft.store import TakeStore
from stitchcraft.storyboard import Scoring

FPS = Fraction(24)
NO_MODELS = {"prompt": 0, "reference": 0, "seam_clip": 0, "seam_lpips": 0, "flicker": 0}


@pytest.fixture(autouse=True)
def no_real_caches(tmp_path, monkeypatch):
    """No CLIP or LPIPS weights are found unless a test brings its own."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("STITCHCRAFT_CLIP_MODEL", raising=False)
    monkeypatch.delenv("STITCHCRAFT_LPIPS_WEIGHTS", raising=False)


def still(frame: np.ndarray, name: str = "still", **kwargs) -> FrameSource:
    return FrameSource(name, Path(f"{name}.png"), 1, FPS, pixels=frame[None], **kwargs)


def lavfi_still(tmp_path: Path, name: str, source: str, filters: str = "") -> np.ndarray:
    """A 640x360 still from a lavfi source, optionally through ffmpeg filters."""
    path = make_image(tmp_path / f"{name}.png", source=source)
    if filters:
        run_ffmpeg(["-i", str(path), "-vf", filters, str(tmp_path / f"{name}-f.png")],
                   what="filter test still")
        path = tmp_path / f"{name}-f.png"
    return read_image(path)


@pytest.mark.parametrize("source", ["mandelbrot", "testsrc2"])
def test_blurred_copy_loses_to_the_sharp_one(tmp_path, source):
    sharp = lavfi_still(tmp_path, "sharp", source)
    soft = lavfi_still(tmp_path, "soft", source, "gblur=sigma=2.5")
    scorer = StillScorer()
    crisp, blurred = scorer.score(still(sharp)), scorer.score(still(soft))
    assert crisp.parts["blur"] < 0.45 < 0.65 < blurred.parts["blur"]
    assert crisp.parts["sharpness"] > blurred.parts["sharpness"] + 0.4
    # Blur moves neither the exposure nor the framing much: sharpness decides.
    assert blurred.parts["exposure"] == pytest.approx(crisp.parts["exposure"], abs=0.05)
    assert crisp.value > blurred.value + 0.15
    assert "soft" in blurred.note and "soft" not in crisp.note


def test_blur_effect_does_not_follow_contrast():
    rng = np.random.default_rng(3)
    import cv2

    texture = cv2.resize(rng.integers(0, 256, (100, 160), dtype=np.uint8), (320, 200),
                         interpolation=cv2.INTER_CUBIC).astype(np.float32)
    faint = 128 + (texture - 128) * 0.2  # the same detail at a fifth of the contrast
    assert blur_effect(faint) == pytest.approx(blur_effect(texture), abs=0.02)
    assert blur_effect(cv2.GaussianBlur(texture, (0, 0), 3)) > blur_effect(texture) + 0.2


def test_over_exposed_copy_loses(tmp_path):
    frame = lavfi_still(tmp_path, "normal", "mandelbrot")
    # About a stop and a half brighter, as an overexposed render looks: the bright half
    # of the picture clips to white.
    over = np.clip(frame.astype(np.float32) * 2.8, 0, 255).astype(np.uint8)
    scorer = StillScorer()
    good, blown = scorer.score(still(frame)), scorer.score(still(over))
    assert good.parts["highlights"] < 0.02 and blown.parts["highlights"] > 0.3
    assert blown.parts["level"] > good.parts["level"] + 40
    assert blown.parts["exposure"] < 0.3 < 0.9 < good.parts["exposure"]
    assert good.value > blown.value + 0.2
    assert "blown highlights" in blown.note
    # Crushed to black is as bad.
    dark = (frame.astype(np.float32) * 0.1).astype(np.uint8)
    assert scorer.score(still(dark)).parts["exposure"] < 0.3


def disc(centre: tuple[float, float], size: tuple[int, int] = (320, 180), radius: int = 30) -> np.ndarray:
    """A bright orange disc (the subject) on a dark blue ground, centred at `centre`
    (fractions of the width and height)."""
    import cv2

    width, height = size
    frame = np.zeros((height, width, 3), np.uint8)
    frame[:] = (20, 30, 70)
    cv2.circle(frame, (round(centre[0] * width), round(centre[1] * height)), radius, (240, 150, 40), -1)
    return frame


def test_composition_follows_the_subject():
    on_thirds = composition_parts(disc((1 / 3, 1 / 3)))
    # The disc's centre of mass, against the frame's own pixels.
    assert on_thirds["weight_x"] == pytest.approx(1 / 3, abs=0.03)
    assert on_thirds["weight_y"] == pytest.approx(1 / 3, abs=0.03)
    assert on_thirds["placement"] < 0.05 and on_thirds["edge_weight"] < 0.1
    cut = composition_parts(disc((0.02, 0.5)))  # half the subject off the left edge
    assert cut["edge_weight"] > 0.5
    scorer = StillScorer()
    placed, cut_off, stray = (scorer.score(still(disc(c))) for c in ((1 / 3, 1 / 3), (0.02, 0.5), (0.12, 0.85)))
    assert placed.parts["composition"] == pytest.approx(1.0)
    assert placed.value > stray.value > cut_off.value
    assert "cut by the frame edge" in cut_off.note


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (9, 1), (2, 3), (5, 7), (8, 8), (17, 31), (121, 77)])
@pytest.mark.parametrize("fill", ["black", "white", "grey", "noise"])
def test_still_never_raises_on_small_flat_or_odd_frames(shape, fill):
    rng = np.random.default_rng(sum(shape))
    frame = {"black": np.zeros((*shape, 3), np.uint8),
             "white": np.full((*shape, 3), 255, np.uint8),
             "grey": np.full((*shape, 3), 120, np.uint8),
             "noise": rng.integers(0, 256, (*shape, 3), dtype=np.uint8)}[fill]
    score = StillScorer().score(still(frame))
    assert 0.0 <= score.value <= 1.0
    assert all(np.isfinite(v) for v in score.parts.values())
    if fill != "noise":
        assert score.parts["sharpness"] == 0.0 and score.parts["blur"] == 1.0  # no detail
        assert "composition not judged" in score.note
    if fill in ("black", "white"):
        assert score.parts["exposure"] == 0.0


def test_gray_frame_keeps_small_frames_and_scales_large_ones():
    assert gray_frame(np.zeros((3, 5, 3), np.uint8)).shape == (3, 5)
    assert gray_frame(np.zeros((1080, 1920, 3), np.uint8)).shape == (512, 910)


def test_scorers_say_which_takes_they_judge():
    applies = {name: cls.APPLIES_TO for name, cls in SCORERS.items()}
    assert applies["stability"] == {"moving"} and applies["flicker"] == {"moving"}
    assert applies["still"] == {"still"}
    both = {"prompt", "reference", "identity", "seam", "seam_clip", "seam_lpips", "drift"}
    assert all(applies[name] == {"still", "moving"} for name in both)


def test_scorebook_judges_a_keyframe_as_a_still_and_a_take_as_motion(tmp_path):
    from stitchcraft.engines.base import Take

    store = TakeStore(tmp_path / "cache")
    frame = lavfi_still(tmp_path, "key", "mandelbrot")
    soft = lavfi_still(tmp_path, "key-soft", "mandelbrot", "gblur=sigma=3")
    keyframes = [store.put(name * 40, Take(frames=pixels[None], seed=i, label=name), fps=FPS,
                           engine="test", request={})
                 for i, (name, pixels) in enumerate((("a", frame), ("b", soft)))]
    moving = np.stack([np.roll(frame, 2 * t, axis=1) for t in range(12)])
    clip = store.put("c" * 40, Take(frames=moving, seed=3, label="c"), fps=FPS, engine="test", request={})

    def source(stored):
        return FrameSource(stored.id, stored.video, stored.frames, stored.fps, head=stored.head,
                           tail=stored.tail, size=(stored.width, stored.height))

    book = ScoreBook(Scoring(weights=NO_MODELS), store)
    assert {"still", "stability", "identity"} <= set(book.scorers)
    sharp_scores, soft_scores = (book.take_scores(source(k)) for k in keyframes)
    # One frame is no frozen take: stability does not judge it; the still measures do.
    assert set(sharp_scores) == {"still"} and set(soft_scores) == {"still"}
    assert book.combine(sharp_scores) > book.combine(soft_scores)
    # The still measures read the lossless frame the store keeps.
    assert sharp_scores["still"].parts["blur"] == pytest.approx(StillScorer().score(still(frame)).parts["blur"], abs=0.03)
    # A moving take is judged for motion, not as a still.
    assert set(book.take_scores(source(clip))) == {"stability"}
    # Cached with the take: a fresh book reads the still's score back, decoding nothing.
    again = ScoreBook(Scoring(weights=NO_MODELS), store)
    fresh = source(keyframes[0])
    assert again.take_scores(fresh)["still"].value == pytest.approx(sharp_scores["still"].value)
    assert again.stats()["scorers"]["still"]["cached"] == 1 and fresh.decoded == 0


@pytest.mark.models
def test_clip_scorers_judge_a_keyframe(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("open_clip")
    from PIL import Image
    from tiny_clip import make_tiny_clip

    tiny = make_tiny_clip(tmp_path / "clip")
    frame = lavfi_still(tmp_path, "key", "testsrc2")
    Image.fromarray(frame).save(tmp_path / "reference.png")
    book = ScoreBook(Scoring(clip_model=tiny["file"], weights={"flicker": 0, "seam_lpips": 0}))
    scores = book.take_scores(still(frame, prompt="a test card", reference=tmp_path / "reference.png"))
    assert {"prompt", "reference", "still"} <= set(scores) and "stability" not in scores
    for name in ("prompt", "reference"):
        assert 0.0 <= scores[name].value <= 1.0
    # The one frame against itself as the reference: as alike as CLIP can say.
    assert scores["reference"].parts["similarity"] == pytest.approx(1.0, abs=1e-4)
    # Style images join the reference: the mean over them, numpy against the model's
    # own embeddings.
    other = lavfi_still(tmp_path, "style", "mandelbrot")
    Image.fromarray(other).save(tmp_path / "style.png")
    styled = still(frame, "styled", reference=tmp_path / "reference.png", style=[tmp_path / "style.png"])
    similarity = book.take_scores(styled)["reference"].parts["similarity"]
    model = book.scorers["reference"].model
    embedded = model.encode_images([frame, other])
    assert similarity == pytest.approx((1.0 + float(embedded[0] @ embedded[1])) / 2, abs=1e-4)
