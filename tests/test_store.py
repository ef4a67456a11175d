"""The take store: content-addressed, atomic, lossless heads and tails."""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from stitchcraft.engines.base import Take
from stitchcraft.media import read_frames
from stitchcraft.store import HEAD_FRAMES, TAIL_FRAMES, TakeStore


def gradient_frames(count=20, height=64, width=96):
    y, x = np.mgrid[0:height, 0:width]
    frames = [np.stack([(x * 2 + t * 5) % 256, (y * 3) % 256, np.full_like(x, t * 10)], -1)
              for t in range(count)]
    return np.asarray(frames, dtype=np.uint8)


def test_put_get_round_trip(tmp_path):
    store = TakeStore(tmp_path)
    frames = gradient_frames()
    stored = store.put("ab" * 32, Take(frames, seed=3, label="x"), fps=Fraction(24), engine="title",
                       request={"k": 1})
    again = TakeStore(tmp_path).get("ab" * 32)
    assert again == stored
    assert (stored.frames, stored.width, stored.height, stored.seed) == (20, 96, 64, 3)
    # heads and tails are lossless copies of the engine's frames
    assert np.array_equal(stored.tail(), frames[-TAIL_FRAMES:])
    assert np.array_equal(stored.head(), frames[:HEAD_FRAMES])
    # the video is a faithful (visually lossless) encode
    decoded = read_frames(stored.video, 0, 20)
    assert decoded.shape == frames.shape
    assert np.abs(decoded.astype(int) - frames.astype(int)).mean() < 3
    assert not list((tmp_path / "tmp").iterdir())  # no leftovers


def test_a_take_made_as_pixels_is_kept_close_to_them(tmp_path):
    # Every later read of such a take (its scan, the cut's pieces, a join) decodes the
    # store's encode of it. On testsrc2 at 320x180 the encode keeps 38.5 dB PSNR
    # through the RGB round trip (x264's veryfast at the same crf kept 36.9).
    from stitchcraft.media import run_ffmpeg

    run_ffmpeg(["-f", "lavfi", "-i", "testsrc2=size=320x180:rate=24", "-t", "1", "-pix_fmt", "rgb24",
                "-f", "rawvideo", str(tmp_path / "frames.rgb")], what="make test frames")
    frames = np.fromfile(tmp_path / "frames.rgb", np.uint8).reshape(-1, 180, 320, 3)
    stored = TakeStore(tmp_path / "cache").put("ab" * 32, Take(frames, seed=1), fps=Fraction(24),
                                               engine="title", request={})
    decoded = read_frames(stored.video, 0, len(frames)).astype(np.float64)
    psnr = 10 * np.log10(255 ** 2 / ((decoded - frames) ** 2).mean())
    assert psnr > 38.0


def test_conditioning_frames_hold_no_more_than_themselves(tmp_path):
    # A chained request keeps its conditioning frames for as long as it is pending: a
    # view of the whole stored tail would keep all of it (16 frames: 44 MB at 720p).
    frames = gradient_frames()
    stored = TakeStore(tmp_path).put("ab" * 32, Take(frames, seed=3), fps=Fraction(24), engine="title",
                                     request={})
    last = stored.last_frames(1)
    assert last.base is None and last.nbytes == frames[0].nbytes
    np.testing.assert_array_equal(last, frames[-1:])


def test_a_grade_grades_only_the_ends_asked_for(tmp_path, monkeypatch):
    # Thumbnails want one frame of each end, a frame source four, a chained request one.
    from stitchcraft.generate import colour

    store = TakeStore(tmp_path)
    frames = gradient_frames()
    made = store.put("ab" * 32, Take(frames, seed=3), fps=Fraction(24), engine="title", request={})
    grade = np.zeros((len(frames), 3, 4), np.float32)
    grade[:, :, :3] = np.eye(3) * 0.8
    grade[:, :, 3] = np.linspace(0, 40, len(frames))[:, None]  # a lift that grows frame by frame
    graded = store.put_graded("cd" * 32, made, grade, label="graded", meta={}, request={})
    tail, head = colour.apply_grade(made.tail(), grade, len(frames) - TAIL_FRAMES), colour.apply_grade(
        made.head(), grade, 0)
    graded_frames: list[int] = []
    real = colour.apply_grade

    def counting(frames: np.ndarray, grade: np.ndarray, first: int = 0) -> np.ndarray:
        graded_frames.append(len(frames))
        return real(frames, grade, first)

    monkeypatch.setattr(colour, "apply_grade", counting)
    np.testing.assert_array_equal(graded.tail(3), tail[-3:])
    np.testing.assert_array_equal(graded.head(2, mapped=True), head[:2])
    np.testing.assert_array_equal(graded.last_frames(1), tail[-1:])
    assert graded_frames == [3, 2, 1]
    np.testing.assert_array_equal(graded.tail(), tail)  # and all of it by default
    # A take's own ends, a part of them: a copy unless a map was asked for.
    part = made.tail(2)
    assert part.base is None and np.array_equal(part, frames[-2:])
    np.testing.assert_array_equal(made.head(3, mapped=True), frames[:3])


def test_put_is_idempotent_and_scores_persist(tmp_path):
    store = TakeStore(tmp_path)
    take = Take(gradient_frames(4), seed=1)
    first = store.put("cd" * 32, take, fps=Fraction(25), engine="e", request={})
    mtime = (first.dir / "take.mp4").stat().st_mtime_ns
    second = store.put("cd" * 32, take, fps=Fraction(25), engine="e", request={})
    assert (second.dir / "take.mp4").stat().st_mtime_ns == mtime
    store.save_scores("cd" * 32, {"stability": 0.5})
    assert store.load_scores("cd" * 32) == {"stability": 0.5}
    store.save_pair("ef" * 32, {"seam": 0.1})
    assert store.load_pair("ef" * 32) == {"seam": 0.1}


def test_half_written_take_is_invisible(tmp_path):
    store = TakeStore(tmp_path)
    directory = tmp_path / "takes" / "12" / ("12" * 32)
    directory.mkdir(parents=True)
    (directory / "take.mp4").write_bytes(b"partial")
    assert store.get("12" * 32) is None  # no meta.json: never finished


def test_a_grade_encoded_with_pauses_is_the_grade_encoded_at_once(tmp_path):
    # Early assembly encodes a chosen grade pausing between frames while takes are being
    # stored; the file must be the one an encode without pauses writes.
    from stitchcraft.generate.colour import apply_grade

    frames = gradient_frames(count=20)
    grade = np.zeros((20, 3, 4), np.float32)
    grade[:, :, :3] = np.eye(3) * 0.85
    grade[:, :, 3] = np.linspace(0, 25, 20)[:, None]
    pauses: list[int] = []
    encoded = {}
    for name, between in (("at once", None), ("paused", lambda: pauses.append(1))):
        store = TakeStore(tmp_path / name)
        made = store.put("ab" * 32, Take(frames, seed=3), fps=Fraction(24), engine="title", request={})
        graded = store.put_graded("cd" * 32, made, grade, label="graded", meta={}, request={})
        done = store.encode(graded, between_frames=between)
        assert done.encoded
        encoded[name] = (done.dir / "take.mp4").read_bytes()
        expected = apply_grade(made.read(), grade).astype(float)
        assert np.abs(done.read().astype(float) - expected).mean() < 1.5
    assert len(pauses) == 20  # once before each frame
    assert encoded["paused"] == encoded["at once"]
