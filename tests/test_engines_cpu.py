"""The engines that need no weights: footage, stills and title."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from lavfi import make_image, make_video

from stitchcraft.engines import engine_class
from stitchcraft.engines.base import SegmentRequest
from stitchcraft.engines.footage import FootageEngine, analyse_clip, stable_start
from stitchcraft.engines.stills import StillsEngine, plan_move, render, variation, views
from stitchcraft.engines.title import TitleEngine, layout_layer
from stitchcraft.errors import EngineError, MediaError
from stitchcraft.media import run_ffmpeg, write_video
from stitchcraft.store import read_span
from stitchcraft.storyboard import CAMERA_MOVES, Title


def request(kind: str, frames: int = 24, size: tuple[int, int] = (160, 90), fps: int = 24,
            seeds: list[int] | None = None, **fields) -> SegmentRequest:
    return SegmentRequest(shot_id="s", segment=0, kind=kind, frames=frames, width=size[0],
                          height=size[1], fps=Fraction(fps), seeds=seeds or [], **fields)


def takes(engine, req: SegmentRequest, wanted: int = 3) -> list:
    """The takes an engine makes, a file-backed one's span decoded into its `frames` as
    the assembly would show it (see tests/test_file_takes.py for the span itself)."""
    req.seeds = engine.candidate_seeds(req, wanted, 0)
    made = list(engine.generate(req))
    for take in made:
        if take.frames is None:
            take.frames = read_span(take.source, take.start, 0, take.frame_count, fps=req.fps,
                                    size=take.span_size)
    return made


def test_registry_resolves_the_cpu_engines():
    for name in ("footage", "stills", "title"):
        cls = engine_class(name)
        assert cls.NAME == name and cls.availability()
        assert cls.CAPABILITIES.max_frames is None and str(cls.CAPABILITIES.frame_rule) == "any"


# --- stills -----------------------------------------------------------------------------

# Dots at continuous coordinates (pixel i spans [i, i+1)), symmetric about the centre.
BLOBS = [(160.0, 90.0), (480.0, 90.0), (160.0, 270.0), (480.0, 270.0)]


@pytest.fixture(scope="module")
def blob_still() -> np.ndarray:
    """Four soft bright dots on grey at known places: their centroids track to ~0.02 px."""
    yy, xx = np.mgrid[0:360, 0:640].astype(np.float64) + 0.5
    image = np.full((360, 640), 20.0)
    for bx, by in BLOBS:
        image += 200 * np.exp(-((xx - bx) ** 2 + (yy - by) ** 2) / (2 * 6.0 ** 2))
    return np.repeat(np.clip(image, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def centroid(frame: np.ndarray, guess: tuple[float, float], radius: int = 16
             ) -> tuple[float, float]:
    """A dot's centre in continuous coordinates, found near `guess`."""
    x, y = guess
    for _ in range(3):  # re-centre the window on the estimate
        x0, y0 = int(x) - radius, int(y) - radius
        patch = np.clip(frame[y0:y0 + 2 * radius, x0:x0 + 2 * radius, 1].astype(float) - 24, 0, None)
        ys, xs = np.mgrid[y0:y0 + 2 * radius, x0:x0 + 2 * radius] + 0.5
        x, y = (patch * xs).sum() / patch.sum(), (patch * ys).sum() / patch.sum()
    return x, y


def track(frames: np.ndarray, start: tuple[float, float]) -> np.ndarray:
    """A dot's position in every frame, following it from `start`."""
    out = [centroid(frames[0], start)]
    for frame in frames[1:]:
        out.append(centroid(frame, out[-1]))
    return np.asarray(out)


def planned(views_: np.ndarray, point: tuple[float, float], source=(640, 360), out=(320, 180)
            ) -> np.ndarray:
    """Where a still's point should appear in each frame: an independent reference for
    the view maths (the still and output share an aspect, so the base is the whole still)."""
    cx, cy, scale = views_.T
    zoom = source[0] * scale / out[0]
    left = cx * source[0] - source[0] * scale / 2
    top = cy * source[1] - source[1] * scale / 2
    return np.stack([(point[0] - left) / zoom, (point[1] - top) / zoom], axis=1)


def jitter(measured: np.ndarray, expected: np.ndarray) -> float:
    """Largest frame-to-frame change of the tracking error, in pixels.

    Whole-pixel crops (ffmpeg's zoompan) score about half a pixel or more; OpenCV's
    bicubic warp, which places samples to 1/32 of a pixel, stays under a tenth.
    """
    return float(np.abs(np.diff(measured - expected, axis=0)).max())


def test_push_in_motion_is_monotonic_and_free_of_jitter(blob_still):
    move = plan_move("push-in", 1.0, 4.0)
    frames = render(blob_still, move, 96, 320, 180)
    assert frames.shape == (96, 180, 320, 3) and frames.dtype == np.uint8
    plan = views(move, 96)
    for blob in BLOBS:
        expected = planned(plan, blob)
        measured = track(frames, tuple(expected[0]))
        centre = np.array([160.0, 90.0])
        outward = np.linalg.norm(measured - centre, axis=1)
        outward_plan = np.linalg.norm(expected - centre, axis=1)
        # the dot moves away from the centre on every frame, never back
        assert (np.diff(outward) > 0).all()
        # the planned per-frame displacement grows monotonically (a constant zoom rate)
        assert (np.diff(np.diff(outward_plan)) > 0).all()
        # and the picture follows the plan with no stair-steps
        assert np.abs(measured - expected).max() < 0.1
        assert jitter(measured, expected) < 0.12

    # The measure does catch stair-stepping: the same move with the crop rounded to
    # whole pixels (as ffmpeg's zoompan does) jitters far beyond the threshold.
    import cv2

    stepped = []
    for cx, cy, scale in plan:
        w, h = 640 * scale, 360 * scale
        left, top = int(round(cx * 640 - w / 2)), int(round(cy * 360 - h / 2))
        crop = blob_still[top:top + int(round(h)), left:left + int(round(w))]
        stepped.append(cv2.resize(crop, (320, 180), interpolation=cv2.INTER_AREA))
    expected = planned(plan, BLOBS[0])
    assert jitter(track(np.stack(stepped), tuple(expected[0])), expected) > 0.3


@pytest.mark.parametrize("name", ["pan-left", "pan-right", "tilt-up", "tilt-down", "drift",
                                  "pull-out"])
def test_every_move_follows_its_plan_smoothly(blob_still, name):
    move = plan_move(name, 1.0, 2.0)
    frames = render(blob_still, move, 48, 320, 180)
    expected = planned(views(move, 48), BLOBS[3])
    measured = track(frames, tuple(expected[0]))
    assert np.abs(measured - expected).max() < 0.1
    assert jitter(measured, expected) < 0.12
    moved = measured[-1] - measured[0]
    if name == "pan-left":  # the camera turns left: the picture slides right
        assert moved[0] > 5 and abs(moved[1]) < 0.1
    if name == "tilt-up":
        assert moved[1] > 5 and abs(moved[0]) < 0.1


def test_stills_engine_frames_seeds_and_labels(tmp_path):
    image = make_image(tmp_path / "still.png", size="641x359")  # odd size on purpose
    engine = StillsEngine()
    made = takes(engine, request("image", frames=37, size=(176, 100), image=image), wanted=4)
    assert [t.seed for t in made] == [0, 1, 2, 3]
    assert all(t.frames.shape == (37, 100, 176, 3) and t.frames.dtype == np.uint8 for t in made)
    assert made[0].label == "push-in" and made[0].meta["camera"] == "push-in"
    assert len({t.meta["camera"] for t in made}) == 4
    again = next(engine.generate(request("image", frames=37, size=(176, 100), image=image,
                                         seeds=[2])))
    assert np.array_equal(again.frames, made[2].frames)


def test_stills_variation_keys():
    assert variation(0, None) == ("push-in", 1.0)
    assert {variation(s, None)[0] for s in range(7)} == set(CAMERA_MOVES) - {"static"}
    assert [variation(s, "pan-left") for s in range(3)] == [("pan-left", 1.0), ("pan-left", 0.6),
                                                            ("pan-left", 1.6)]
    assert StillsEngine().candidate_seeds(request("image", camera="static"), 3, 5) == [0]


def test_stills_continue_from_condition_frames(blob_still):
    last = np.ascontiguousarray(blob_still[::2, ::2])  # 320x180, the request's size
    req = request("image", frames=12, size=(320, 180), camera="pull-out",
                  condition_frames=last[None], seeds=[0])
    take = next(StillsEngine().generate(req))
    # one step past the given frame: nearly the same picture, already moving
    assert np.abs(take.frames[0].astype(int) - last).mean() < 2
    path = track(np.concatenate([last[None], take.frames]), (240.0, 135.0))
    steps = np.linalg.norm(np.diff(path, axis=0), axis=1)
    assert (steps > 0.05).all() and steps[0] == pytest.approx(steps[1], abs=0.05)


def test_stills_errors_name_the_file(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(MediaError, match="broken.png"):
        list(StillsEngine().generate(request("image", image=bad, seeds=[0])))
    with pytest.raises(EngineError):
        list(StillsEngine().generate(request("image", seeds=[0])))


# --- footage ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cut_clip(tmp_path_factory) -> Path:
    """2 s of testsrc2, a hard cut, 2 s of colour bars; with sound."""
    path = tmp_path_factory.mktemp("footage") / "cut.mp4"
    run_ffmpeg(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=24:duration=2",
                "-f", "lavfi", "-i", "smptebars=size=320x240:rate=24:duration=2",
                "-f", "lavfi", "-i", "sine=frequency=330:sample_rate=48000:duration=4",
                "-filter_complex", "[0:v][1:v]concat=n=2:v=1[v]", "-map", "[v]", "-map", "2:a",
                "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
                "-c:a", "aac", str(path)], what="make cut clip")
    return path


def test_long_clip_splits_into_scene_candidates(cut_clip):
    engine = FootageEngine()
    made = takes(engine, request("source", frames=24, sources=[cut_clip]), wanted=1)
    assert [t.seed for t in made] == [0, 1]  # `wanted` does not limit footage
    first, second = made
    assert first.frames.shape == second.frames.shape == (24, 90, 160, 3)
    assert first.meta["scene"] == 1 and second.meta["scene"] == 2
    assert 0 <= first.meta["start"] and first.meta["end"] <= 2.0 + 1e-6
    assert second.meta["start"] >= 2.0 - 1e-6
    # the bars are still, so the calmest span is anywhere: the middle of the scene wins
    assert second.meta["start"] == pytest.approx(2.5, abs=0.05)
    assert second.label == f"cut.mp4 scene 2 @ {second.meta['start']:.1f} s"
    assert first.audio == cut_clip and first.audio_start == first.meta["start"]
    # bars: no frame of the first scene leaks in
    assert np.abs(second.frames.astype(int) - second.frames[0].astype(int)).max() < 12
    assert len(analyse_clip(cut_clip).scenes) == 2


def test_short_clip_is_refused_unless_holding_is_asked_for(tmp_path):
    clip = make_video(tmp_path / "short.mp4", seconds=0.5, audio=None)
    with pytest.raises(MediaError, match=r"short.mp4: shot 's' lasts 1.25 s .*short.mp4 has 0.50 s"):
        takes(FootageEngine(), request("source", frames=30, sources=[clip]))
    [take] = takes(FootageEngine(), request("source", frames=30, sources=[clip], hold_short=True))
    assert take.frames.shape[0] == 30
    assert take.meta["short_by_frames"] == 18
    assert np.array_equal(take.frames[-1], take.frames[12])
    assert take.audio is None


def test_calmest_span_avoids_motion(tmp_path):
    """48 frames of fast-moving stripes, then 48 still ones: a 1 s span starts in the calm."""
    x = np.arange(160)
    frames = []
    for i in range(96):
        shift = 6 * i if i < 48 else 6 * 48
        row = 128 + 60 * np.sin((x + shift) / 9)
        frames.append(np.repeat(np.repeat(row[None, :, None], 90, 0), 3, 2).astype(np.uint8))
    clip = write_video(frames, tmp_path / "calm.mp4", Fraction(24))
    [take] = takes(FootageEngine(), request("source", frames=24, sources=[clip]))
    assert take.meta["start"] >= 2.0 - 1e-6


def test_stable_start_criterion():
    times = np.arange(100) / 10
    energy = np.ones(100)
    energy[30:35] = 50  # a flash
    # clean spans end by 3.0 s or start from 3.4 s; the one nearest the middle wins
    assert stable_start(times, energy, (0.0, 10.0), 2.0) == pytest.approx(4.0)
    energy[60:] = 0.2  # calm from the join into frame 60 (at 6.0 s) on
    assert stable_start(times, energy, (0.0, 10.0), 2.0) == pytest.approx(5.9)
    assert stable_start(times, energy, (4.0, 5.0), 2.0) == 4.0  # scene shorter than span


def test_rotated_input_lands_upright(tmp_path):
    plain = make_video(tmp_path / "plain.mp4", seconds=1.0, size="320x240", rate="30", audio=None)
    clip = tmp_path / "rot.mp4"
    run_ffmpeg(["-display_rotation", "90", "-i", str(plain), "-c", "copy", str(clip)],
               what="tag rotation")
    # shown upright the clip is 240x320 (portrait): a portrait request needs no crop
    [take] = takes(FootageEngine(), request("source", frames=12, size=(120, 160), sources=[clip]))
    assert take.frames.shape == (12, 160, 120, 3)
    [upright] = takes(FootageEngine(), request("source", frames=12, size=(160, 120),
                                               sources=[plain]))
    turned = np.rot90(upright.frames[0], k=1)  # rotation 90 = counter-clockwise display
    assert take.frames[0].shape == turned.shape
    assert min(np.abs(take.frames[0].astype(int) - t.astype(int)).mean()
               for t in (turned, np.rot90(upright.frames[0], k=-1))) < 12


def test_variable_frame_rate_is_decoded_by_timestamp(tmp_path):
    """12 fps for a second, then 48 fps; each frame's brightness encodes its time."""
    clip = tmp_path / "vfr.mp4"
    run_ffmpeg(["-f", "lavfi", "-i",
                "color=c=black:s=64x64:r=48:d=2,format=yuv420p,"
                "geq=lum='16+100*T':cb=128:cr=128,select='lt(mod(n\\,4)\\,1)+gte(t\\,1)'",
                "-fps_mode", "vfr", "-c:v", "libx264", "-preset", "ultrafast", "-qp", "0",
                str(clip)], what="make vfr clip")
    [take] = takes(FootageEngine(), request("source", frames=40, size=(64, 64), sources=[clip]))
    luma = take.frames[:, 32, 32].astype(float).mean(axis=1)
    times = take.meta["start"] + np.arange(40) / 24
    expected = 100 * 255 / 219 * times  # limited-range luma 16+100 t, seen as RGB
    # within one source frame (1/12 s = 9.7 levels) plus rounding; reading frames by
    # index instead would run the first second at double speed (errors up to 50)
    assert np.abs(luma - expected).max() < 12


def test_library_folder_adds_candidates(tmp_path, cut_clip):
    library = tmp_path / "library"
    library.mkdir()
    make_video(library / "b.mp4", seconds=1.0, audio=None)
    make_video(library / "a.mkv", seconds=1.0, audio=None)
    (library / "notes.txt").write_text("not a clip")
    from stitchcraft.engines.footage import FootageSettings

    engine = FootageEngine(FootageSettings(library=str(library)))
    found = engine.candidates(request("source", frames=24, sources=[cut_clip]))
    assert [c.path.name for c in found] == ["cut.mp4", "cut.mp4", "a.mkv", "b.mp4"]


def test_footage_errors(tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00" * 1000)
    with pytest.raises(MediaError, match="broken.mp4"):
        FootageEngine().candidate_seeds(request("source", sources=[bad]), 3, 0)
    clip = make_video(tmp_path / "ok.mp4", seconds=1.5, audio=None)
    with pytest.raises(EngineError, match="no candidate 5"):
        list(FootageEngine().generate(request("source", sources=[clip], seeds=[5])))


# --- title ------------------------------------------------------------------------------

def test_title_card_frames_and_colours():
    card = Title(text="Hello", subtitle="world", background="#204060", color="white",
                 animation="fade")
    engine = TitleEngine()
    req = request("title", frames=30, size=(320, 180), title=card)
    assert engine.candidate_seeds(req, 3, 42) == [42]
    [take] = takes(engine, req)
    assert take.frames.shape == (30, 180, 320, 3)
    assert tuple(take.frames[-1, 2, 2]) == (0x20, 0x40, 0x60)
    assert take.frames[0].max() < 0x61  # faded out: background only
    assert take.frames[-1].max() > 240  # white text by the end
    lit = [(take.frames[i].astype(int).sum(axis=2) > 500).sum() for i in range(0, 30, 5)]
    assert lit == sorted(lit)


@pytest.mark.parametrize("animation", ["none", "rise", "zoom"])
def test_title_animations_end_on_the_same_card(animation):
    card = Title(text="Same card", animation=animation)
    [take] = takes(TitleEngine(), request("title", frames=48, size=(320, 180), title=card))
    still = layout_layer(Title(text="Same card"), 320, 180)[0]
    text_rows = np.flatnonzero(still[..., 3].max(axis=1) > 128)
    lit_rows = np.flatnonzero(take.frames[-1].max(axis=(1, 2)) > 128)
    if animation != "zoom":
        assert abs(lit_rows.min() - text_rows.min()) <= 1
    if animation == "none":
        assert np.array_equal(take.frames[0], take.frames[-1])
    else:
        assert not np.array_equal(take.frames[0], take.frames[-1])


@pytest.mark.parametrize("size", [(320, 180), (180, 320)])
def test_long_title_never_overflows(size):
    card = Title(text="An extraordinarily long title " * 12 + "Pneumonoultramicroscopic",
                 subtitle="and a subtitle that goes on and on " * 4, animation="none")
    [take] = takes(TitleEngine(), request("title", frames=2, size=size, title=card))
    width, height = size
    lit = take.frames[0].max(axis=2) > 128
    cols, rows = np.flatnonzero(lit.any(axis=0)), np.flatnonzero(lit.any(axis=1))
    assert cols.size and cols.min() >= width * 0.07 and cols.max() <= width * 0.93
    assert rows.min() >= height * 0.09 and rows.max() <= height * 0.91


def test_title_font_errors(tmp_path):
    bad = tmp_path / "font.ttf"
    bad.write_text("nope")
    card = Title(text="x", font=str(bad))
    with pytest.raises(MediaError, match="font.ttf"):
        takes(TitleEngine(), request("title", title=card))
