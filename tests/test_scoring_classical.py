"""Classical scorers and detectors against media with known answers, made at test time."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from stitchcraft.media import read_frames, write_video
from stitchcraft.scoring import DEFAULT_WEIGHTS, SCORERS, FrameSource, Score, ScoreBook
from stitchcraft.scoring.classical import (
    DriftScorer,
    SeamScorer,
    StabilityScorer,
    colour_stats,
    delta_e,
    find_backsteps,
    find_cuts,
    find_flashes,
    find_frozen,
    frame_differences,
    histogram_distance,
    rgb_to_lab,
    ssim,
    to_gray,
)
from stitchcraft.store import TakeStore
from stitchcraft.storyboard import Scoring

FPS = Fraction(24)


def texture(seed: int, width: int = 480, height: int = 96) -> np.ndarray:
    """A smooth random colour texture, wide enough to pan across."""
    import cv2

    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8)
    return cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC)


def pan(seed: int, count: int, *, start: int = 0, speed: int = 1, width: int = 160) -> np.ndarray:
    """`count` frames panning across texture `seed` at `speed` pixels a frame."""
    base = texture(seed)
    return np.stack([base[:, (start + t) * speed:(start + t) * speed + width] for t in range(count)])


def encode(frames: np.ndarray, path: Path, take_id: str | None = None) -> FrameSource:
    write_video(frames, path, FPS, crf=14)
    return FrameSource(take_id or path.stem, path, len(frames), FPS)


# -- measures -------------------------------------------------------------------------


def test_lab_matches_published_values():
    lab = rgb_to_lab(np.array([[255, 0, 0], [128, 128, 128], [255, 255, 255], [0, 0, 0]], dtype=np.uint8))
    np.testing.assert_allclose(lab[0], [53.24, 80.09, 67.20], atol=0.05)
    np.testing.assert_allclose(lab[1], [53.59, 0, 0], atol=0.05)
    np.testing.assert_allclose(lab[2], [100, 0, 0], atol=0.05)
    np.testing.assert_allclose(lab[3], [0, 0, 0], atol=0.05)
    assert delta_e(lab[1], lab[2]) == pytest.approx(46.41, abs=0.05)


def test_ssim_and_histogram_bounds():
    frame = pan(1, 1)[0]
    other = pan(2, 1)[0]
    gray, gray_other = to_gray(frame[None])[0], to_gray(other[None])[0]
    assert ssim(gray, gray) == pytest.approx(1.0, abs=1e-5)
    assert ssim(gray, gray_other) < 0.3
    assert ssim(gray, 255 - gray) < 0
    assert histogram_distance(frame, frame) == pytest.approx(0.0, abs=1e-6)
    assert 0.2 < histogram_distance(frame, np.full_like(frame, 30)) <= 1.0


def test_detectors_on_arrays():
    frames = pan(3, 48)
    frames[20] = 255                      # a one-frame white flash
    frames[30:32] = 0                     # a two-frame black flash
    frames[40:] = pan(4, 8)               # a hard cut at frame 40
    gray = to_gray(frames)
    flashes = find_flashes(gray)
    assert flashes == [20, 30]
    assert find_cuts(gray, flashes=flashes) == [40]
    spans, duplicates = find_frozen(gray, 24.0)
    assert spans == [] and duplicates == [31]  # the second black frame repeats the first


def test_frame_by_frame_measures_are_the_whole_stack_formulas():
    # to_gray, frame_differences and find_backsteps work a frame at a time in reused
    # buffers (a stack's temporaries fault in tens of MB each); they must give exactly
    # what the plain numpy formulas over the whole stack give.
    import cv2

    base = texture(6, width=700, height=120)
    frames = np.stack([base[:, 2 * t:2 * t + 640] for t in range(30)])
    frames[12] = frames[11] // 2 + 60     # a step back in tone, and some jitter
    frames[20], frames[21] = frames[21].copy(), frames[20].copy()
    gray = to_gray(frames)
    luma = cv2.cvtColor(frames.reshape(-1, 640, 3), cv2.COLOR_RGB2GRAY).reshape(30, 120, 640)
    reference = np.stack([cv2.resize(f.astype(np.float32), (256, 48), interpolation=cv2.INTER_AREA)
                          for f in luma])
    np.testing.assert_array_equal(gray, reference)
    np.testing.assert_array_equal(frame_differences(gray), np.abs(np.diff(gray, axis=0)).mean(axis=(1, 2)))
    centred = gray - gray.mean(axis=(1, 2), keepdims=True)
    step = np.abs(np.diff(centred, axis=0)).mean(axis=(1, 2))
    across = np.abs(centred[2:] - centred[:-2]).mean(axis=(1, 2))
    larger = np.maximum(step[:-1], step[1:])
    expected = float(np.maximum(0.0, 1.0 - across / larger).mean())
    assert find_backsteps(gray) == expected > 0.0
    skipped = [i for i in range(28) if {i, i + 1, i + 2} & {20, 21}]
    kept = np.setdiff1d(np.arange(28), skipped)
    assert find_backsteps(gray, {20, 21}) == float(np.maximum(0.0, 1.0 - across[kept] / larger[kept]).mean())


# -- scorers on encoded media ------------------------------------------------------------


def test_stability_finds_flash(tmp_path):
    frames = pan(5, 48)
    frames[30] = np.clip(frames[30].astype(int) + 150, 0, 255).astype(np.uint8)
    flashed = StabilityScorer().score(encode(frames, tmp_path / "flash.mp4"))
    clean = StabilityScorer().score(encode(pan(5, 48), tmp_path / "clean.mp4"))
    assert flashed.parts["flashes"] == 1 and "flash at frame 30" in flashed.note
    assert clean.parts["flashes"] == 0 and clean.parts["cuts"] == 0
    assert clean.parts["frozen_seconds"] == 0 and clean.parts["duplicates"] == 0
    assert clean.value > 0.9 and flashed.value < clean.value - 0.3
    assert 0.0 <= flashed.value <= 1.0


def test_stability_finds_frozen_second_and_duplicate(tmp_path):
    moving = pan(6, 72)
    # The picture pauses on frame 24 for a second (frames 24..47), then moves on from
    # where it stopped; frame 60 doubles frame 59.
    frames = np.concatenate([moving[:25], np.repeat(moving[24:25], 23, axis=0), moving[25:49]])
    frames[60] = frames[59]
    score = StabilityScorer().score(encode(frames, tmp_path / "frozen.mp4"))
    assert score.parts["frozen_seconds"] == pytest.approx(1.0, abs=1 / 24)
    assert score.parts["duplicates"] == 1
    assert "frozen 24-47" in score.note
    # 1.5 x the frozen share of the take, then 3 x the duplicated share.
    assert score.value == pytest.approx((1 - 1.5 * 24 / 72) * (1 - 3 / 72), abs=0.05)


def test_stability_finds_hard_cut(tmp_path):
    frames = np.concatenate([pan(7, 24), pan(8, 24)])
    score = StabilityScorer().score(encode(frames, tmp_path / "cut.mp4"))
    assert score.parts["cuts"] == 1 and "cut at frame 24" in score.note
    assert score.value <= 0.5


def glide(seed: int, count: int, *, speed: float, width: int = 160, soft: float = 0) -> np.ndarray:
    """`count` frames panning across texture `seed` at `speed` pixels a frame, sub-pixel
    smooth (bilinear), as slow camera moves and push-ins on stills look; `soft` blurs
    the texture first (Gaussian sigma, pixels), like a soft-gradient still."""
    import cv2

    base = cv2.GaussianBlur(texture(seed), (0, 0), soft).astype(np.float32) if soft else \
        texture(seed).astype(np.float32)
    frames = []
    for t in range(count):
        shift = np.float32([[1, 0, -t * speed], [0, 1, 0]])
        moved = cv2.warpAffine(base, shift, (base.shape[1], base.shape[0]), flags=cv2.INTER_LINEAR)
        frames.append(np.clip(moved[:, :width] + 0.5, 0, 255).astype(np.uint8))
    return np.stack(frames)


def stability(frames: np.ndarray) -> Score:
    return StabilityScorer().score(FrameSource("take", Path("take.mp4"), len(frames), FPS, pixels=frames))


def test_slow_smooth_pan_is_motion_not_a_freeze():
    frames = glide(15, 48, speed=0.2, soft=8)
    gray = to_gray(frames)
    # So slow that consecutive frames differ by well under the old freeze threshold ...
    assert np.abs(np.diff(gray, axis=0)).mean() < 0.35
    # ... yet it moves: no frozen span, no duplicate, full marks.
    assert find_frozen(gray, 24.0) == ([], [])
    score = stability(frames)
    assert score.parts["frozen_seconds"] == 0 and score.parts["duplicates"] == 0
    assert score.parts["jitter"] < 0.03 and score.parts["colour_drift"] < 0.75  # dead zones
    assert score.value > 0.95


def test_repeated_frames_are_frozen():
    moving = glide(16, 48, speed=0.5)
    held = np.concatenate([moving[:12], np.repeat(moving[11:12], 18, axis=0), moving[12:30]])
    # Near-exact repeats, as an encoder re-codes a held frame: a few pixels off by 1.
    rng = np.random.default_rng(0)
    for index in range(12, 30):
        spots = rng.integers(0, held[index].size, 20)
        held[index].reshape(-1)[spots] = np.clip(held[index].reshape(-1)[spots].astype(int) + 1, 0, 255)
    spans, duplicates = find_frozen(to_gray(held), 24.0)
    assert spans == [(11, 29)] and duplicates == []
    score = stability(held)
    assert score.parts["frozen_seconds"] == pytest.approx(19 / 24)
    assert score.value < 0.7
    # A whole take with no motion at all is one frozen span.
    assert find_frozen(to_gray(np.repeat(moving[:1], 24, axis=0)), 24.0) == ([(0, 23)], [])


def _defect(name: str, frames: np.ndarray) -> np.ndarray:
    damaged = frames.copy()
    count = len(frames)
    if name == "flash":
        damaged[20:22] = 255
    elif name == "cut":
        damaged[24:] = glide(18, count - 24, speed=0.3)
    elif name == "flicker":
        wobble = 8 * np.sin(2.3 * np.arange(count))
        damaged = np.clip(frames.astype(float) + wobble[:, None, None, None], 0, 255).astype(np.uint8)
    elif name == "jitter":
        order = np.arange(count).reshape(-1, 4)[:, [0, 2, 1, 3]].reshape(-1)
        damaged = frames[order]
    elif name == "drift":
        ramp = np.linspace(0, 1, count)[:, None, None, None]
        cast = np.array([18.0, 0.0, -18.0])
        damaged = np.clip(frames.astype(float) + ramp * cast, 0, 255).astype(np.uint8)
    return damaged


@pytest.mark.parametrize(("defect", "part", "least"), [
    ("flash", "flashes", 1), ("cut", "cuts", 1), ("flicker", "luma_flicker", 3.0),
    ("jitter", "jitter", 0.06), ("drift", "colour_drift", 5.0),
])
def test_each_defect_lowers_stability(defect, part, least):
    clean_frames = glide(17, 48, speed=0.3)
    clean = stability(clean_frames)
    damaged = stability(_defect(defect, clean_frames))
    assert clean.value > 0.95 and clean.parts[part] < least / 3
    assert damaged.parts[part] >= least
    assert damaged.value < clean.value - 0.1
    # Only the defect's own part fires.
    others = {"flashes": 0, "cuts": 0, "frozen_seconds": 0}
    assert all(damaged.parts[k] == v for k, v in others.items() if k != part)


def test_stability_is_deterministic():
    frames = _defect("jitter", glide(19, 48, speed=0.4))
    first, second = stability(frames), stability(frames.copy())
    assert first.value == second.value and first.parts == second.parts


def test_seam_scores_continuation_above_cut(tmp_path):
    continuous = pan(9, 48)
    before = encode(continuous[:24], tmp_path / "before.mp4")
    after = encode(continuous[24:], tmp_path / "after.mp4")
    elsewhere = encode(pan(9, 24, start=70), tmp_path / "elsewhere.mp4")
    unrelated = encode(pan(10, 24), tmp_path / "unrelated.mp4")
    scorer = SeamScorer()
    true = scorer.score(after, before)
    same_footage = scorer.score(elsewhere, before)
    cut = scorer.score(unrelated, before)
    assert true.value > 0.8 and true.parts["jump_ratio"] < 1.6
    assert cut.value < Scoring().seam_threshold
    assert cut.parts["jump_ratio"] > 4 and cut.parts["ssim"] < 0.3
    assert true.value > same_footage.value > cut.value
    assert scorer.score(after) is None


def test_seam_luma_jump_is_measured(tmp_path):
    frames = pan(11, 16)
    brighter = np.clip(frames.astype(int) + 40, 0, 255).astype(np.uint8)
    before = encode(frames[:8], tmp_path / "a.mp4")
    after = encode(brighter[8:], tmp_path / "b.mp4")
    parts = SeamScorer().score(after, before).parts
    # +40 levels of RGB is +40 levels of luma, less what clipping at 255 removes.
    expected = to_gray(brighter[8:9]).mean() - to_gray(frames[7:8]).mean()
    assert parts["luma_jump"] == pytest.approx(expected, abs=1.5)
    assert parts["luma_jump"] > 30


def test_drift_measures_known_colour_shift(tmp_path):
    frames = pan(12, 24)
    shift = np.array([30, 0, -30])
    shifted = np.clip(frames.astype(int) + shift, 0, 255).astype(np.uint8)
    root = encode(frames, tmp_path / "root.mp4")
    drifted = encode(shifted, tmp_path / "drifted.mp4")
    expected = delta_e(colour_stats(frames).lab, colour_stats(shifted).lab)
    assert expected > 15  # the shift is plainly visible
    score = DriftScorer().score(drifted, root)
    assert score.parts["delta_e"] == pytest.approx(expected, abs=1.5)
    same = DriftScorer().score(encode(frames, tmp_path / "again.mp4"), root)
    assert same.parts["delta_e"] < 1.0 and same.value > 0.9
    assert score.value < 0.4


def test_drift_flat_grey_delta_e(tmp_path):
    # Flat greys 100 and 160: published L* 42.37 and 66.05, so delta E 23.68.
    root = encode(np.full((12, 64, 96, 3), 100, np.uint8), tmp_path / "g100.mp4")
    lighter = encode(np.full((12, 64, 96, 3), 160, np.uint8), tmp_path / "g160.mp4")
    assert DriftScorer().score(lighter, root).parts["delta_e"] == pytest.approx(23.68, abs=1.0)


# -- the score book ------------------------------------------------------------------------


def test_registry_and_defaults():
    assert set(SCORERS) == {"prompt", "reference", "stability", "flicker", "seam", "seam_clip",
                            "seam_lpips", "drift", "still", "identity"}
    assert all(0 < w <= 1 for w in DEFAULT_WEIGHTS.values())
    assert {cls.SHAPE for cls in SCORERS.values()} == {"take", "seam", "drift"}


@pytest.mark.models  # names the missing weights, which needs open_clip and lpips installed
def test_scorebook_without_models_warns_once_per_model(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("STITCHCRAFT_CLIP_MODEL", raising=False)
    monkeypatch.delenv("STITCHCRAFT_LPIPS_WEIGHTS", raising=False)
    book = ScoreBook(Scoring())
    assert set(book.scorers) == {"stability", "seam", "drift", "still", "identity"}
    assert len(book.warnings) == 2
    clip_line = next(w for w in book.warnings if w.startswith("CLIP"))
    lpips_line = next(w for w in book.warnings if w.startswith("LPIPS"))
    assert "prompt, reference, seam_clip" in clip_line and "ViT-B-32:openai" in clip_line
    assert "scoring.clip_model" in clip_line
    assert "alexnet-owt-7be5be79.pth" in lpips_line and str(tmp_path / "torch") in lpips_line


def test_scorebook_caches_with_the_take(tmp_path, monkeypatch):
    from stitchcraft.engines.base import Take

    store = TakeStore(tmp_path / "cache")
    frames = pan(13, 48)
    first = store.put("a" * 40, Take(frames=frames[:24], seed=1, label="a"), fps=FPS, engine="test", request={})
    second = store.put("b" * 40, Take(frames=frames[24:], seed=2, label="b"), fps=FPS, engine="test", request={})

    def source(stored):
        return FrameSource(stored.id, stored.video, stored.frames, stored.fps, head=stored.head(),
                           tail=stored.tail())

    settings = Scoring(weights={"prompt": 0, "reference": 0, "seam_clip": 0, "seam_lpips": 0, "flicker": 0})
    book = ScoreBook(settings, store)
    assert book.warnings == []
    take = source(second)
    scores = book.take_scores(take)
    seam = book.seam_scores(source(first), take)
    drift = book.drift_scores(source(first), take)
    assert set(scores) == {"stability"} and set(seam) == {"seam"} and set(drift) == {"drift"}
    assert book.seam_value(seam) == pytest.approx(seam["seam"].value)
    assert book.seam_value(seam) > 0.8
    stats = book.stats()
    # One scan of the take (stability) and one of the root (drift); the seam reads the
    # store's lossless head and tail and decodes nothing.
    assert stats["frames_decoded"] == 48
    assert stats["scorers"]["seam"]["frames_decoded"] == 0
    assert stats["scorers"]["stability"]["calls"] == 1

    # A fresh book (a re-render) reads everything back from the store.
    again = ScoreBook(settings, store)
    fresh = source(second)
    assert again.take_scores(fresh)["stability"].value == pytest.approx(scores["stability"].value)
    assert again.seam_scores(source(first), fresh)["seam"].parts == pytest.approx(seam["seam"].parts)
    assert again.stats()["frames_decoded"] == 0 and fresh.decoded == 0

    # A new scorer version invalidates the cached value.
    monkeypatch.setattr(StabilityScorer, "VERSION", "test-2")
    third = ScoreBook(settings, store)
    third.take_scores(source(second))
    assert third.stats()["scorers"]["stability"]["calls"] == 1


def test_combine_is_weighted_mean():
    book = ScoreBook(Scoring(weights={"stability": 3, "drift": 1, "seam": 1, "prompt": 0,
                                      "reference": 0, "seam_clip": 0, "seam_lpips": 0, "flicker": 0}))
    value = book.combine({"stability": Score(1.0), "drift": Score(0.0)})
    assert value == pytest.approx(0.75)
    assert book.combine({}) == 0.5
    assert book.seam_value({"stability": Score(0.0)}) == 1.0
    # Names qualified by the side of the seam take their scorer's weight.
    assert book.combine({"stability": Score(1.0), "seam:previous": Score(0.0)}) == pytest.approx(0.75)
    assert book.seam_value({"seam:previous": Score(0.2), "stability": Score(1.0)}) == pytest.approx(0.2)


def test_scan_reads_every_frame_small(tmp_path):
    frames = pan(14, 10, width=320)
    source = encode(frames, tmp_path / "scan.mp4")
    scanned = source.scan()
    assert scanned.shape == (10, 96, 320, 3)  # short side 96 < 224: never scaled up
    assert source.sample(3).shape[0] == 3 and source.decoded == 10
    np.testing.assert_allclose(scanned.astype(float).mean(), read_frames(source.path).astype(float).mean(), atol=0.01)


def test_a_scan_of_frames_that_are_views_is_the_scan_of_their_copy():
    # An engine may hand over views (a crop, windows on one wide picture): they are
    # scaled where they lie, and must scale exactly as a contiguous copy does.
    from stitchcraft.scoring.base import scanned

    strip = np.random.default_rng(5).integers(0, 256, (540, 1200, 3), dtype=np.uint8)
    views = np.lib.stride_tricks.as_strided(strip, shape=(6, 540, 960, 3),
                                            strides=(3 * 40, *strip.strides), writeable=False)
    assert not views[0].flags["C_CONTIGUOUS"]
    found = scanned(views)
    assert found.shape == (6, 224, 398, 3)
    np.testing.assert_array_equal(found, scanned(np.ascontiguousarray(views)))
    np.testing.assert_array_equal(scanned(views[:, 10:-10, 7:-9])[1],
                                  scanned(np.ascontiguousarray(views[:, 10:-10, 7:-9]))[1])

def test_a_source_keeps_no_more_of_the_stored_ends_than_pair_scores_read():
    # A render keeps a source per take for seams and drift; the store's whole head and
    # tail (24 full frames) per take added up to most of a hosted render's memory.
    from stitchcraft.scoring.base import ENDS_KEPT

    stored = np.random.default_rng(1).integers(0, 255, (16, 36, 64, 3), dtype=np.uint8)
    source = FrameSource("take", Path("take.mp4"), 40, FPS, head=lambda: stored[:8], tail=lambda: stored)
    np.testing.assert_array_equal(source.tail(2), stored[-2:])
    np.testing.assert_array_equal(source.tail(ENDS_KEPT), stored[-ENDS_KEPT:])
    np.testing.assert_array_equal(source.head(3), stored[:3])
    for kept in (source._tail, source._head):
        assert kept is not None and len(kept) == ENDS_KEPT and not np.shares_memory(kept, stored)
