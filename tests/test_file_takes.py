"""Takes that are already files stay files: footage spans in the store, the cut and the report.

A footage take is its clip and an in-point: the store keeps only its lossless head and
tail (and, for a download, a byte-identical copy of the file), and the assembly makes
the span's pixels with its own normalisation. These tests hold that path to the pixels
the engine used to decode itself (`decode_span`), on awkward lavfi media.

The footage is testsrc2 without colour: fine detail and motion, so a frame or a pixel
out of place costs 20 dB, but no saturated chroma edges, whose 4:2:0 subsampling now
happens at the output size (as the cut carries it) rather than after the old decode.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from lavfi import make_video, set_rotation

import stitchcraft.engines.footage as footage
from stitchcraft.assemble import CutClip, CutSpec, CutTransition, assemble
from stitchcraft.engines.base import SegmentRequest, Take
from stitchcraft.engines.footage import FootageEngine, decode_span
from stitchcraft.media import encode_graph, keyframe_seconds, probe, read_frames, run_ffmpeg
from stitchcraft.report import make_thumbnails, render_report, take_thumbnails
from stitchcraft.scoring.base import FrameSource
from stitchcraft.select.join import join_takes
from stitchcraft.store import HEAD_FRAMES, TAIL_FRAMES, TakeStore

FPS = Fraction(24)
SIZE = (160, 90)
CUT = CutTransition("cut", 0)
TAKE_ID = "f0" * 32


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def old_decode(path: Path, start: float, frames: int, size=SIZE) -> np.ndarray:
    """What the footage engine used to decode into memory (and re-encode) for a span."""
    return decode_span(path, probe(path), start, frames, FPS, size)


def grey(size: str, rate: str = "24") -> str:
    return f"testsrc2=size={size}:rate={rate},hue=s=0"


ENCODE = ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "12"]


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("footage")
    return {
        # 4:3 into 16:9: cropped, by an odd number of rows at 160x90
        "plain": make_video(folder / "plain.mp4", seconds=3, size="320x240", source=grey("320x240")),
        # a phone held upright, then turned: shown 640x360
        "rotated": set_rotation(make_video(folder / "portrait-src.mp4", seconds=2, size="360x640",
                                           source=grey("360x640"), audio=None),
                                folder / "rotated.mp4", 90),
        # shown 640x480 (4:3): rotated and cropped
        "rotated-4x3": set_rotation(make_video(folder / "portrait-4x3.mp4", seconds=2,
                                               size="480x640", source=grey("480x640"), audio=None),
                                    folder / "rotated-4x3.mp4", 90),
        "vfr": make_video(folder / "vfr.mp4", seconds=2, size="640x360", audio=None,
                          source=grey("640x360"), video_args=[
                              "-vf", "setpts=(N+0.45*mod(N\\,2))/24/TB", "-fps_mode", "vfr",
                              "-enc_time_base", "1/1000", *ENCODE]),
        # 480x360 pixels 4:3 wide: shown 640x360
        "anamorphic": make_video(folder / "anamorphic.mov", seconds=2, size="480x360",
                                 source=grey("480x360"), video_args=["-vf", "setsar=4/3", *ENCODE]),
        "30fps": make_video(folder / "thirty.mp4", seconds=2, size="640x360", rate="30",
                            source=grey("640x360", "30"), video_args=ENCODE),
    }


def put_span(store: TakeStore, path: Path, *, start: float = 0.5, frames: int = 24,
             take_id: str = TAKE_ID, **options) -> object:
    take = Take.from_file(path, start=start, frames=frames, size=SIZE, seed=0, label="span")
    return store.put(take_id, take, fps=FPS, engine="footage", request={}, **options)


# --- the store --------------------------------------------------------------------------

def test_footage_span_is_stored_by_reference_with_lossless_ends(tmp_path, media):
    clip = media["plain"]
    stored = put_span(TakeStore(tmp_path / "cache"), clip)
    # nothing re-encoded, nothing copied, nothing decoded: the entry refers to the clip,
    # whose ends are read when asked for (a scan, read for scoring, keeps them: below)
    assert sorted(p.name for p in stored.dir.iterdir()) == ["meta.json"]
    assert not stored.ends_kept
    span = stored.span
    assert (span.path, span.start, span.frames, span.width, span.height) == (clip.absolute(), 0.5, 24, 160, 90)
    assert stored.video == clip.absolute() and stored.has_audio
    source = stored.meta["source"]
    assert source["sha256"] == hashlib.sha256(clip.read_bytes()).hexdigest()
    assert source["bytes"] == clip.stat().st_size and not source["copied"]
    # head and tail are the span's own first and last frames, decoded from the in-point
    frames = span.read()
    assert frames.shape == (24, 90, 160, 3)
    assert np.array_equal(stored.head(), frames[:HEAD_FRAMES])
    assert np.array_equal(stored.tail(), frames[-TAIL_FRAMES:])
    assert np.array_equal(stored.middle()[0], frames[(24 - 1) // 2])  # the report's thumbnail
    # ... which are the frames the engine used to decode itself, near enough
    assert psnr(frames, old_decode(clip, 0.5, 24)) > 35
    # and not the top of the file: the clip moves
    assert psnr(frames[0], old_decode(clip, 0.0, 1)[0]) < 30
    assert TakeStore(tmp_path / "cache").get(TAKE_ID) == stored


def test_scan_is_read_with_the_ends_in_one_pass_and_matches_a_decode(tmp_path, media):
    # What scoring reads of a file take comes from the same decode as its head and tail,
    # and is exactly what a separate decode at that size gives.
    scans: list = []
    stored = put_span(TakeStore(tmp_path / "cache"), media["plain"], scan_size=(64, 36),
                      on_scan=scans.append)
    assert stored.ends_kept and (stored.dir / "tail.npy").is_file()
    span = stored.span
    assert len(scans) == 1 and scans[0].shape == (24, 36, 64, 3)
    assert np.array_equal(scans[0], span.read(size=(64, 36)))
    whole = span.read()
    assert np.array_equal(stored.head(), whole[:HEAD_FRAMES])
    assert np.array_equal(stored.tail(), whole[-TAIL_FRAMES:])
    assert np.array_equal(stored.middle()[0], whole[(24 - 1) // 2])
    # The digests recorded as the ends were written are those of the files written.
    recorded = json.loads((stored.dir / "meta.json").read_text())["files"]
    for name in ("head.npy", "tail.npy", "middle.npy"):
        assert recorded[name]["sha256"] == hashlib.sha256((stored.dir / name).read_bytes()).hexdigest()
    assert TakeStore(tmp_path / "cache").check_all(deep=True) == []


def test_download_is_copied_into_the_entry_byte_for_byte(tmp_path, media):
    download = tmp_path / "download.mp4"
    download.write_bytes(media["plain"].read_bytes())
    stored = put_span(TakeStore(tmp_path / "cache"), download, copy_source=True, scan_size=(64, 36),
                      on_scan=lambda scan: None)
    copy = stored.dir / "source.mp4"
    assert stored.span.path == copy and copy.read_bytes() == download.read_bytes()
    assert not (stored.dir / "take.mp4").exists()
    download.unlink()  # the address expired: the take does not need it
    again = TakeStore(tmp_path / "cache")
    kept = again.get(TAKE_ID)
    assert kept is not None and kept.span.path == copy
    assert np.array_equal(kept.head(), kept.span.read(0, HEAD_FRAMES))
    assert again.check_all(deep=True) == []


def _edit(path: Path, how: str) -> None:
    if how == "re-encoded":
        make_video(path, seconds=3, size="320x240", source="smptebars")
    elif how == "deleted":
        path.unlink()
    else:  # same size, one byte changed, modification time put back
        stat = path.stat()
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


@pytest.mark.parametrize("how", ["re-encoded", "deleted", "same size and time"])
def test_edited_source_sets_its_take_aside_to_be_made_again(tmp_path, media, how):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(media["plain"].read_bytes())
    put_span(TakeStore(tmp_path / "cache"), clip)
    _edit(clip, how)
    warnings: list[str] = []
    store = TakeStore(tmp_path / "cache", on_warning=warnings.append)
    if how == "same size and time":
        # a cheap read cannot tell; a deep check reads every byte and can
        assert store.get(TAKE_ID) is not None
        assert len(store.check_all(deep=True)) == 1
    else:
        assert store.get(TAKE_ID) is None
    [warning] = warnings
    assert TAKE_ID[:12] in warning and str(clip) in warning
    assert ("is gone" if how == "deleted" else "changed since the take was stored") in warning
    assert len(list((tmp_path / "cache" / "damaged").glob(f"{TAKE_ID}.*"))) == 1
    if how != "deleted":  # made again, from the file as it is now
        remade = put_span(store, clip)
        assert np.array_equal(remade.head(), remade.span.read(0, HEAD_FRAMES))
        assert store.get(TAKE_ID) is not None and len(warnings) == 1


def test_joined_segments_read_file_backed_takes_from_their_in_points(tmp_path, media):
    store = TakeStore(tmp_path / "cache")
    first = put_span(store, media["plain"], start=0.5, frames=12, take_id="a1" * 32)
    second = put_span(store, media["30fps"], start=1.0, frames=12, take_id="a2" * 32)
    joined = join_takes(store, "s", "footage", [first, second], [None, None])
    expected = np.concatenate([old_decode(media["plain"], 0.5, 12), old_decode(media["30fps"], 1.0, 12)])
    assert joined.frames == 24 and joined.span.start is None
    assert psnr(joined.span.read(), expected) > 35


# --- the engine -------------------------------------------------------------------------

def request(path: Path, frames: int = 24, **fields) -> SegmentRequest:
    fields.setdefault("seeds", [])
    return SegmentRequest(shot_id="s", segment=0, kind="source", frames=frames, width=SIZE[0],
                          height=SIZE[1], fps=FPS, sources=[path], **fields)


def test_footage_engine_cuts_file_backed_takes_and_detects_scenes_only_when_useful(
        tmp_path, media, monkeypatch):
    detected: list[Path] = []
    real_detect = footage._detect
    monkeypatch.setattr(footage, "_detect", lambda path: detected.append(path) or real_detect(path))
    engine = FootageEngine()
    # 3 s of clip for a 2 s shot: one candidate at most, so no scene detection
    req = request(media["plain"], frames=48)
    req.seeds = engine.candidate_seeds(req, 3, 0)
    [take] = engine.generate(req)
    assert detected == []
    assert take.frames is None and take.source == media["plain"] and take.frame_count == 48
    assert take.start == pytest.approx(0.5) and take.span_size == SIZE  # the middle 2 s
    assert take.audio == media["plain"] and take.audio_start == take.start
    # 2 s + 2 s with a hard cut, for a 1 s shot: two scenes can each carry it
    cut = tmp_path / "cut.mp4"
    run_ffmpeg(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=24:duration=2",
                "-f", "lavfi", "-i", "smptebars=size=320x240:rate=24:duration=2",
                "-filter_complex", "[0:v][1:v]concat=n=2:v=1[v]", "-map", "[v]",
                "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(cut)],
               what="make a clip with a cut")
    assert len(engine.candidates(request(cut))) == 2 and detected == [cut]
    # footage shorter than the shot, held (`short_source: hold`), is still decoded
    short = request(make_video(tmp_path / "short.mp4", seconds=0.5, audio=None), frames=30,
                    hold_short=True, seeds=[0])
    [held] = engine.generate(short)
    assert held.source is None and held.frames.shape == (30, 90, 160, 3)


# --- the cut ----------------------------------------------------------------------------

@pytest.mark.parametrize(("kind", "start", "size"), [
    ("plain", 0.5, (160, 90)), ("plain", 0.52, (160, 90)), ("rotated", 0.25, (320, 180)),
    ("rotated-4x3", 0.5, (320, 180)), ("vfr", 0.5, (320, 180)), ("anamorphic", 0.5, (320, 180)),
    ("30fps", 0.5, (320, 180))])
def test_cut_from_an_in_point_matches_the_old_decode(tmp_path, media, kind, start, size):
    path = media[kind]
    spec = CutSpec(clips=[CutClip(kind, path, 30, CUT, start=start)], fps=FPS, width=size[0],
                   height=size[1], crf=8, preset="ultrafast")
    result = assemble(spec, tmp_path / "out.mp4", workdir=tmp_path / "work")
    out = read_frames(result.path)
    assert result.frames == len(out) == 30 and result.warnings == []
    expected = old_decode(path, start, 30, size)
    assert min(psnr(a, b) for a, b in zip(out, expected, strict=True)) > 35
    assert psnr(out[1:], expected[:-1]) < 30  # a frame late would show


def test_matching_footage_is_copied_from_its_in_point(tmp_path):
    """Footage encoded as the output is (keyframe every 12 frames) is stream-copied from
    its in-point, bit for bit; an in-point between frames is re-encoded instead."""
    source = tmp_path / "matching.mp4"
    graph = ("testsrc2=size=160x90:rate=24,hue=s=0,format=yuv420p,setparams=range=tv:color_primaries="
             "unknown:color_trc=unknown:colorspace=unknown,trim=end_frame=48[v]")
    encode_graph([], graph, tmp_path / "first.mp4", label="v", frames=48, codec="h264", crf=20,
                 preset="veryfast", what="make footage")
    run_ffmpeg(["-i", str(tmp_path / "first.mp4"), "-c:v", "libx264", "-pix_fmt", "yuv420p",
                "-profile:v", "high", "-preset", "veryfast", "-crf", "20", "-g", "12",
                "-keyint_min", "12", "-sc_threshold", "0", str(source)], what="re-GOP footage")
    spec = CutSpec(clips=[CutClip("a", source, 24, CUT, start=0.5)], fps=FPS, width=160, height=90)
    result = assemble(spec, tmp_path / "copied.mp4", workdir=tmp_path / "work")
    assert result.copied_segments == result.segments == 1
    assert np.array_equal(read_frames(result.path), read_frames(source, 12, 24))
    between = CutSpec(clips=[CutClip("a", source, 24, CUT, start=0.53)], fps=FPS, width=160, height=90)
    encoded = assemble(between, tmp_path / "encoded.mp4", workdir=tmp_path / "work")
    assert encoded.copied_segments == 0 and encoded.frames == 24
    assert psnr(read_frames(encoded.path), old_decode(source, 0.53, 24)) > 35


def _rms(path: Path, seconds: float) -> float:
    import av

    with av.open(str(path)) as container:
        samples = [frame.to_ndarray().ravel() for frame in container.decode(audio=0)]
    sound = np.concatenate(samples)
    rate = 48000 * 2  # stereo, interleaved or planar: the first `seconds` of both
    return float(np.sqrt(np.mean(sound[:int(seconds * rate)] ** 2)))


def test_take_sound_starts_at_the_in_point(tmp_path):
    """One silent second, then a tone: from an in-point at 1 s the cut is loud at once."""
    clip = tmp_path / "late-tone.mp4"
    run_ffmpeg(["-f", "lavfi", "-i", "testsrc2=size=160x90:rate=24:duration=2",
                "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=2",
                "-af", "volume='if(lt(t,1),0,1)':eval=frame", "-c:v", "libx264",
                "-pix_fmt", "yuv420p", "-c:a", "aac", str(clip)], what="make a late tone")
    loud = assemble(CutSpec(clips=[CutClip("a", clip, 12, CUT, start=1.0)], fps=FPS, width=160,
                            height=90), tmp_path / "late.mp4", workdir=tmp_path / "work")
    quiet = assemble(CutSpec(clips=[CutClip("a", clip, 12, CUT, start=0.25)], fps=FPS, width=160,
                             height=90), tmp_path / "early.mp4", workdir=tmp_path / "work")
    assert _rms(loud.path, 0.4) > 0.05
    assert _rms(quiet.path, 0.4) < 0.005


# --- readers: scoring and the report ----------------------------------------------------

def _red_then_blue(path: Path) -> Path:
    run_ffmpeg(["-f", "lavfi", "-i", "color=c=red:size=320x180:rate=24:duration=1",
                "-f", "lavfi", "-i", "color=c=blue:size=320x180:rate=24:duration=1",
                "-filter_complex", "[0:v][1:v]concat=n=2:v=1[v]", "-map", "[v]",
                "-c:v", "libx264", "-pix_fmt", "yuv420p", str(path)], what="make red then blue")
    return path


def _blue(image: np.ndarray) -> bool:
    red, _, blue = image.reshape(-1, 3).mean(axis=0)
    return bool(blue > 150 and red < 80)


def test_scoring_and_report_read_from_the_in_point(tmp_path):
    from PIL import Image

    clip = _red_then_blue(tmp_path / "red-blue.mp4")
    store = TakeStore(tmp_path / "cache")
    stored = put_span(store, clip, start=1.0, frames=12)
    scanned = FrameSource(stored.id, stored.video, stored.frames, stored.fps,
                          head=stored.head(), tail=stored.tail(), start=stored.span.start)
    assert scanned.scan().shape[0] == 12 and all(_blue(frame) for frame in scanned.scan())
    assert scanned.all().shape == (12, 90, 160, 3) and all(_blue(f) for f in scanned.all())
    thumbs = take_thumbnails(stored)
    assert len(thumbs) == 3 and all(_blue(np.asarray(Image.open(io.BytesIO(t)))) for t in thumbs)
    assert not _blue(np.asarray(Image.open(io.BytesIO(make_thumbnails(clip)[0]))))  # top: red
    page = render_report({"cache": str(store.root), "shots": {"s": {"chosen": stored.id, "candidates": [
        {"id": stored.id, "path": str(clip), "frames": 12, "score": 0.5}]}}})
    images = re.findall(r"data:image/jpeg;base64,([A-Za-z0-9+/=]+)", page)
    assert len(images) == 3
    assert all(_blue(np.asarray(Image.open(io.BytesIO(base64.b64decode(i))))) for i in images)


def test_thumbnails_made_beside_the_render_match_the_reports_own(tmp_path):
    from stitchcraft.report import ThumbnailJob

    clip = _red_then_blue(tmp_path / "red-blue.mp4")
    store = TakeStore(tmp_path / "cache")
    good = put_span(store, clip, start=1.0, frames=12)
    damaged = put_span(store, clip, start=0.0, frames=12, take_id="d0" * 32, scan_size=(16, 10),
                       on_scan=lambda scan: None)  # a scan keeps the ends in the entry
    (damaged.dir / "head.npy").write_bytes(b"not an array")
    with ThumbnailJob([good, damaged, good]) as job:
        made = job.result()
    assert list(made) == [good.id] and made[good.id] == take_thumbnails(good)
    # The damaged take is left for the report to handle; the job moved nothing aside.
    assert (damaged.dir / "head.npy").exists() and not store.damaged.exists()


def test_frames_picked_in_one_decode_are_the_frames_read_one_by_one(tmp_path):
    # A download's GOP is often the whole clip: three reads would decode it from the top
    # three times. Picked, it is decoded once, to the last frame asked for.
    from stitchcraft.generate.colour import apply_grade

    clip = make_video(tmp_path / "long-gop.mp4", seconds=3, size="320x180", audio=None,
                      video_args=["-c:v", "libx264", "-preset", "ultrafast", "-g", "250", "-pix_fmt", "yuv420p"])
    store = TakeStore(tmp_path / "cache")
    span_take = put_span(store, clip, start=0.5, frames=48)
    whole = store.put("a1" * 32, Take(read_frames(clip, 0, 40), seed=1), fps=FPS, engine="title", request={})
    grade = np.zeros((40, 3, 4), np.float32)
    grade[:, :, :3] = np.eye(3) * 0.9
    grade[:, :, 3] = np.linspace(0, 30, 40)[:, None]
    graded = store.put_graded("a2" * 32, whole, grade, label="graded", meta={}, request={})
    for take, picks in ((span_take, [0, 23, 47]), (whole, [0, 19, 39]), (graded, [3, 39])):
        for size in (None, (96, 54)):
            one_by_one = np.stack([take.read(index, 1, size=size)[0] for index in picks])
            np.testing.assert_array_equal(take.pick(picks, size=size), one_by_one)
    assert not graded.encoded  # read graded, never encoded to be looked at
    np.testing.assert_array_equal(graded.pick([5])[0], apply_grade(whole.read(5, 1), grade, 5)[0])
    with pytest.raises(ValueError):
        span_take.span.pick([23, 0])
    with pytest.raises(ValueError):
        span_take.span.pick([48])
    assert not span_take.ends_kept  # so its thumbnails are picked from its file
    first, middle, last = take_thumbnails(span_take, width=96)
    assert first != middle != last


def test_frames_far_apart_in_a_short_gop_are_picked_from_seeks_of_their_own(tmp_path):
    # A camera's GOP is often half a second: decoding the whole take to reach its last
    # frame would decode pictures a seek to the keyframe before each frame skips. The
    # frames are the same either way.
    short = make_video(tmp_path / "short-gop.mp4", seconds=4, size="320x180", audio=None,
                       video_args=["-c:v", "libx264", "-preset", "ultrafast", "-g", "12", "-pix_fmt", "yuv420p"])
    long = make_video(tmp_path / "long-gop.mp4", seconds=4, size="320x180", audio=None,
                      video_args=["-c:v", "libx264", "-preset", "ultrafast", "-g", "250", "-pix_fmt", "yuv420p"])
    assert keyframe_seconds(short, 1.0, 2.0) == pytest.approx([1.0, 1.5, 2.0])
    store = TakeStore(tmp_path / "cache")
    picks = [0, 2, 40, 71]
    for clip, runs in ((short, [[0, 2], [40], [71]]), (long, [picks])):
        take = put_span(store, clip, start=0.3, frames=72, take_id=hashlib.sha256(clip.name.encode()).hexdigest())
        assert take.span._runs(picks) == runs
        for size in (None, (96, 54)):
            one_by_one = np.stack([take.read(index, 1, size=size)[0] for index in picks])
            np.testing.assert_array_equal(take.pick(picks, size=size), one_by_one)


# --- the render -------------------------------------------------------------------------

STORYBOARD = """
version: 1
title: Footage
output: {fps: 24, size: 160x90, path: out/cut.mp4, preset: ultrafast, crf: 10}
defaults: {transition: {type: dissolve, duration: 0.25}}
audio: {take_audio: true}
shots:
  - {id: first, source: plain.mp4, duration: 1}
  - {id: second, source: thirty.mp4, duration: 1}
  - {id: third, source: rotated.mp4, duration: 1}
"""


def test_render_of_footage_shots_keeps_takes_as_files(tmp_path, media):
    name_of = {"plain": "plain.mp4", "30fps": "thirty.mp4", "rotated": "rotated.mp4"}
    for key, name in name_of.items():
        (tmp_path / name).symlink_to(media[key])
    (tmp_path / "board.yaml").write_text(STORYBOARD)
    command = [sys.executable, "-m", "stitchcraft", "render", "board.yaml", "--json"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["takes_generated"] == 3
    out = read_frames(tmp_path / "out" / "cut.mp4")
    assert len(out) == result["outputs"][0]["frames"] == 3 * 24 - 2 * 6
    cache = tmp_path / ".stitchcraft" / "cache"
    assert not list(cache.rglob("take.mp4")) and not list(cache.rglob("source.*"))
    manifest = json.loads((tmp_path / "out" / "cut.manifest.json").read_text())
    store = TakeStore(cache)
    # outside the dissolves, each shot shows its span as the engine used to decode it
    programme = 0
    for index, (shot, key) in enumerate((("first", "plain"), ("second", "30fps"), ("third", "rotated"))):
        take = store.get(manifest["shots"][shot]["chosen"])
        assert take is not None and take.span.path == tmp_path / name_of[key]
        expected = old_decode(media[key], take.span.start, 24)
        inside = slice(6 if index else 0, 18 if index < 2 else 24)
        assert psnr(out[programme:programme + 24][inside], expected[inside]) > 35
        programme += 24 - 6
    again = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and json.loads(again.stdout)["takes_generated"] == 0
