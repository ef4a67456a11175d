"""The final cut: exact frame counts, transitions against numpy, smart copies, failures."""

from __future__ import annotations

import re
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from lavfi import make_halves, make_video, set_rotation

from stitchcraft.assemble import AssembledCut, CutClip, CutSpec, CutTransition, assemble
from stitchcraft.errors import MediaError, VerificationError
from stitchcraft.media import encode_graph, probe, read_frames, run_ffmpeg
from stitchcraft.storyboard import Text
from stitchcraft.timeline import parse_fps

CUT = CutTransition("cut", 0)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def render(clips: list[CutClip], tmp: Path, name: str = "out.mp4", **options) -> AssembledCut:
    options.setdefault("fps", Fraction(24))
    options.setdefault("width", 160)
    options.setdefault("height", 90)
    return assemble(CutSpec(clips=clips, **options), tmp / name, workdir=tmp / "work")


def matching_take(path: Path, source: str, frames: int, *, size=(160, 90), fps="24",
                  crf: int = 20) -> Path:
    """A take encoded exactly as the cut's encoder would (so it may be copied)."""
    width, height = size
    graph = (f"{source}=size={width}x{height}:rate={fps},format=yuv420p,setparams=range=tv:"
             f"color_primaries=unknown:color_trc=unknown:colorspace=unknown,"
             f"trim=end_frame={frames}[v]")
    encode_graph([], graph, path, label="v", frames=frames, codec="h264", crf=crf,
                 preset="veryfast", what="make a matching take")
    return path


def _regop(path: Path, frames: int, gop: int, crf: int) -> Path:
    """The take re-encoded with the same settings but a keyframe every `gop` frames."""
    out = path.with_name(path.stem + f"-g{gop}.mp4")
    run_ffmpeg(["-i", str(path), "-c:v", "libx264", "-pix_fmt", "yuv420p", "-profile:v", "high",
                "-preset", "veryfast", "-crf", str(crf), "-g", str(gop), "-keyint_min", str(gop),
                "-sc_threshold", "0", "-an", str(out)], what="re-GOP a take")
    return out


@pytest.fixture(scope="module")
def takes(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("takes")
    return {
        "a": make_video(folder / "a.mp4", seconds=1.5, size="160x90", source="testsrc2"),
        "b": make_video(folder / "b.mp4", seconds=1.5, size="160x90", source="smptebars",
                        audio="mono"),
        "c": make_video(folder / "c.mp4", seconds=1.5, size="160x90", source="rgbtestsrc",
                        audio=None),
    }


def read_yuv(path: Path, count: int) -> np.ndarray:
    """The first `count` frames as decoded: Y, U and V planes of 4:2:0, flattened."""
    import av

    planes = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            planes.append(frame.to_ndarray(format="yuv420p").reshape(-1).astype(np.float64))
            if len(planes) == count:
                break
    return np.stack(planes)


def test_dissolve_frames_equal_a_numpy_blend(takes, tmp_path):
    # Compared in the video's own YUV domain: an RGB reference would add the clipping
    # of the RGB conversion, which is not part of the blend.
    frames, overlap = 30, 10
    clips = [CutClip("a", takes["a"], frames, CUT),
             CutClip("b", takes["b"], frames, CutTransition("dissolve", overlap))]
    result = render(clips, tmp_path, crf=4)
    assert result.frames == 2 * frames - overlap
    out = read_yuv(result.path, result.frames)
    assert out.shape[0] == 2 * frames - overlap
    a = read_yuv(takes["a"], frames)
    b = read_yuv(takes["b"], frames)
    weights = ((np.arange(overlap) + 1) / (overlap + 1))[:, None]
    blend = a[frames - overlap:] * (1 - weights) + b[:overlap] * weights
    expected = np.concatenate([a[:frames - overlap], blend, b[overlap:]])
    for index in range(frames - overlap, frames):
        assert psnr(out[index], expected[index]) > 40, f"transition frame {index}"
    assert psnr(out, expected) > 40
    # The blend really is one: mid-transition frames differ from both inputs.
    middle = frames - overlap // 2
    assert psnr(out[middle], a[middle]) < 30
    assert psnr(out[middle], b[middle - frames + overlap]) < 30


@pytest.mark.parametrize("rate", ["24", "25", "23.976", "29.97"])
def test_frame_counts_are_exact(takes, tmp_path, rate):
    fps = parse_fps(rate)
    clips = [CutClip("a", takes["a"], 31, CutTransition("fade", 5)),
             CutClip("b", takes["b"], 27, CutTransition("dissolve", 7)),
             CutClip("c", takes["c"], 19, CutTransition("cut", 0)),
             CutClip("a2", takes["a"], 33, CutTransition("wipeleft", 9)),
             CutClip("b2", takes["b"], 25, CutTransition("slideup", 4))]
    spec = CutSpec(clips=clips, fps=fps, width=160, height=90, ending=CutTransition("fade", 6))
    result = assemble(spec, tmp_path / "out.mp4", workdir=tmp_path / "work")
    assert spec.total_frames == 31 + 27 + 19 + 33 + 25 - 7 - 9 - 4
    assert result.frames == spec.total_frames
    info = probe(result.path, count_frames=True)
    assert info.frames == spec.total_frames
    assert info.fps == fps and not info.vfr
    assert abs(info.audio_duration - spec.total_frames / float(fps)) < 0.05


def test_awkward_inputs_render(tmp_path):
    vfr = make_video(tmp_path / "vfr.mp4", seconds=1.5, size="160x90", audio=None, video_args=[
        "-vf", "setpts=(N+0.45*mod(N\\,2))/24/TB", "-fps_mode", "vfr", "-enc_time_base", "1/1000",
        "-c:v", "libx264", "-pix_fmt", "yuv420p"])
    rotated = set_rotation(make_video(tmp_path / "portrait-src.mp4", seconds=1, size="90x160"),
                           tmp_path / "rotated.mp4", 90)
    anamorphic = make_video(tmp_path / "anamorphic.mov", seconds=1, size="120x90", video_args=[
        "-vf", "setsar=4/3", "-c:v", "libx264", "-pix_fmt", "yuv420p"])
    odd = make_video(tmp_path / "odd.mkv", seconds=1, size="161x91", rate="30", audio="mono", source="testsrc",
                     audio_rate=44100, video_args=["-c:v", "libx264", "-pix_fmt", "yuv444p"])
    silent = make_video(tmp_path / "silent.webm", seconds=1, size="200x100", rate="25", audio=None,
                        video_args=["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8"])
    assert probe(vfr).vfr and probe(rotated).rotation == 90 and probe(anamorphic).sar == Fraction(4, 3)
    assert (probe(odd).width, probe(odd).height) == (161, 91)
    clips = [CutClip("vfr", vfr, 30, CUT),
             CutClip("rot", rotated, 24, CutTransition("dissolve", 6), fit="contain"),
             CutClip("ana", anamorphic, 24, CutTransition("cut", 0)),
             CutClip("odd", odd, 24, CutTransition("dissolve", 4), fit="blur-pad"),
             CutClip("silent", silent, 24, CutTransition("wiperight", 4))]
    result = render(clips, tmp_path)
    info = probe(result.path, count_frames=True)
    assert info.frames == result.frames == 30 + 24 * 4 - 6 - 4 - 4
    assert (info.width, info.height, info.sar) == (160, 90, 1)
    assert (info.audio_rate, info.audio_channels) == (48000, 2)
    assert abs(info.audio_duration - result.frames / 24) < 0.05
    assert result.warnings == []


def test_rotation_and_pixel_aspect_are_applied(tmp_path):
    # Top red, bottom blue, then rotated 90 degrees for display: the halves become
    # left and right (which is which depends on the direction), never top and bottom.
    halves = make_halves(tmp_path / "halves.mp4", size="160x90", split="horizontal")
    rotated = set_rotation(halves, tmp_path / "rotated.mp4", 90)
    # 80x90 stored with 2:1 pixels shows as 160x90: red left, blue right, split at x=80.
    anamorphic = make_halves(tmp_path / "ana.mp4", size="80x90", video_args=[
        "-vf", "setsar=2", "-c:v", "libx264", "-pix_fmt", "yuv420p"])
    clips = [CutClip("rot", rotated, 12, CUT, fit="contain"),
             CutClip("ana", anamorphic, 12, CUT, fit="cover")]
    result = render(clips, tmp_path, crf=10)
    frames = read_frames(result.path).astype(int)
    rot = frames[5]
    # Contained 90x160 portrait in 160x90: a 50-pixel picture centred, black bars beside.
    assert rot[:, :50].max() < 30 and rot[:, 112:].max() < 30
    left, right = rot[40, 60], rot[40, 100]
    assert {_hue(left), _hue(right)} == {"red", "blue"}
    assert _hue(rot[10, 80]) == _hue(rot[80, 80])
    ana = frames[17]
    assert _hue(ana[45, 70]) == "red" and _hue(ana[45, 90]) == "blue"


def _hue(rgb: np.ndarray) -> str:
    r, g, b = (int(v) for v in rgb)
    return "red" if r > 150 and b < 90 else "blue" if b > 150 and r < 90 else f"other{r, g, b}"


def test_fade_in_and_out_keep_the_length(takes, tmp_path):
    clips = [CutClip("a", takes["a"], 24, CutTransition("fade", 6, "white")),
             CutClip("b", takes["b"], 24, CUT)]
    result = render(clips, tmp_path, ending=CutTransition("fade", 6, "black"))
    frames = read_frames(result.path)
    assert result.frames == len(frames) == 48
    assert frames[0].min() > 235  # from white
    assert frames[-1].max() < 20  # to black
    assert psnr(read_yuv(result.path, 21)[20], read_yuv(takes["a"], 21)[20]) > 35


def test_hard_cuts_copy_matching_takes_bit_identically(tmp_path):
    sources = ["testsrc2", "smptebars", "rgbtestsrc"]
    takes = [matching_take(tmp_path / f"t{i}.mp4", s, 24) for i, s in enumerate(sources)]
    clips = [CutClip(f"s{i}", path, 24, CUT) for i, path in enumerate(takes)]
    result = render(clips, tmp_path)
    assert result.copied_segments == result.segments == 3
    joined = read_frames(result.path)
    for index, path in enumerate(takes):
        assert np.array_equal(joined[index * 24:(index + 1) * 24], read_frames(path))
    # A take encoded differently (another crf) is re-encoded, not copied.
    other = matching_take(tmp_path / "other.mp4", "testsrc2", 24, crf=30)
    mixed = render([clips[0], CutClip("o", other, 24, CUT)], tmp_path, "mixed.mp4")
    assert (mixed.segments, mixed.copied_segments) == (2, 1)


def test_bodies_between_dissolves_copy_from_keyframe_to_keyframe(tmp_path):
    takes = [_regop(matching_take(tmp_path / f"t{i}.mp4", s, 48), 48, 12, 20)
             for i, s in enumerate(["testsrc2", "smptebars"])]
    text = Text(content="hello", start=0.0, duration=0.25)
    clips = [CutClip("a", takes[0], 48, CUT, text=text),
             CutClip("b", takes[1], 48, CutTransition("dissolve", 6))]
    result = render(clips, tmp_path)
    assert result.frames == 90
    assert result.copied_segments >= 2
    joined = read_frames(result.path)
    # Clip a: text over frames 0-6, so its copy starts at keyframe 12 and ends at the
    # keyframe (36) before the dissolve (frames 42-47).
    assert np.array_equal(joined[12:36], read_frames(takes[0], 12, 24))
    # Clip b starts at programme frame 42; its body from keyframe 12 to its end is copied.
    assert np.array_equal(joined[42 + 12:], read_frames(takes[1], 12, 36))


def test_short_take_holds_its_last_frame_and_says_so(takes, tmp_path):
    clips = [CutClip("a", takes["a"], 48, CUT)]  # the take has 36 frames
    result = render(clips, tmp_path)
    assert result.frames == 48
    assert any("held" in warning for warning in result.warnings)
    frames = read_frames(result.path)
    assert psnr(frames[47], frames[36]) > 45


def test_unusable_inputs_are_rejected_by_name(takes, tmp_path):
    data = takes["a"].read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[: len(data) // 2])
    junk = tmp_path / "junk.mov"
    junk.write_bytes(b"\x00not a video" * 100)
    for bad in (truncated, junk, tmp_path / "missing.mp4"):
        with pytest.raises(MediaError) as caught:
            render([CutClip("x", bad, 10, CUT)], tmp_path)
        assert caught.value.path == bad and bad.name in str(caught.value)


def test_a_failed_verification_leaves_no_file(takes, tmp_path, monkeypatch):
    import stitchcraft.assemble as assemble_module

    real = assemble_module.verify_render

    def strict(path, expected):
        return real(path, type(expected)(**{**expected.__dict__, "frames": expected.frames + 1}))

    monkeypatch.setattr(assemble_module, "verify_render", strict)
    output = tmp_path / "final.mp4"
    with pytest.raises(VerificationError, match="frames"):
        render([CutClip("a", takes["a"], 12, CUT)], tmp_path, "final.mp4")
    assert not output.exists()
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name]


def test_segments_are_reused_between_renders(takes, tmp_path):
    clips = [CutClip("a", takes["a"], 24, CUT), CutClip("b", takes["b"], 24,
                                                          CutTransition("dissolve", 4))]
    render(clips, tmp_path, "one.mp4")
    segments = set((tmp_path / "work" / "assemble" / "segments").iterdir())
    render(clips, tmp_path, "two.mp4")
    assert set((tmp_path / "work" / "assemble" / "segments").iterdir()) == segments
    assert (tmp_path / "one.mp4").read_bytes() == (tmp_path / "two.mp4").read_bytes()


def test_overlapping_transitions_longer_than_a_clip_are_refused(takes, tmp_path):
    clips = [CutClip("a", takes["a"], 10, CUT),
             CutClip("b", takes["b"], 10, CutTransition("dissolve", 8)),
             CutClip("c", takes["c"], 10, CutTransition("dissolve", 8))]
    with pytest.raises(ValueError, match="longer than the clip"):
        render(clips, tmp_path)


def test_a_damaged_piece_rendered_again_ahead_is_said(takes, tmp_path):
    """The early assembly rendered a damaged cached piece again without a word (its
    warnings went to a list nobody read), and the assembly, finding the piece whole,
    said nothing either: the render's warning depended on which got there first."""
    from concurrent.futures import ThreadPoolExecutor

    from stitchcraft.assemble import prerender

    clips = [CutClip("a", takes["a"], 30, CUT), CutClip("b", takes["b"], 30, CutTransition("dissolve", 6))]
    spec = CutSpec(clips=clips, fps=Fraction(24), width=160, height=90)
    assemble(spec, tmp_path / "out.mp4", workdir=tmp_path / "work")
    segment = max((tmp_path / "work" / "assemble" / "segments").glob("seg-*"), key=lambda p: p.stat().st_size)
    segment.write_bytes(segment.read_bytes()[: segment.stat().st_size // 2])
    warnings: list[str] = []
    with ThreadPoolExecutor(1) as pool:
        futures = prerender(spec, [True, True], workdir=tmp_path / "work", started=set(), warnings=warnings,
                            submit=lambda piece: pool.submit(piece))
        assert all(f.result() for f in futures)
    assert [w for w in warnings if segment.name in w and "damaged" in w], warnings
    assert assemble(spec, tmp_path / "again.mp4", workdir=tmp_path / "work").warnings == []  # whole again


def test_a_piece_still_being_rendered_ahead_is_waited_for_not_rendered_twice(takes, tmp_path, monkeypatch):
    # The early assembly may still be rendering a piece when the cut is chosen; the
    # assembly starts at once and, reaching that piece, waits for it.
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from stitchcraft import assemble as assembly
    from stitchcraft.assemble import prerender

    ahead_started, release, encoded = threading.Event(), threading.Event(), []
    original = assembly.encode_graph

    def recording(inputs, graph, output, **kwargs):
        ahead = threading.current_thread().name.startswith("ahead")
        found = re.search(r"seg-[0-9a-f]+", Path(output).name)  # written under a temporary name
        if found:
            encoded.append((ahead, found.group(0)))
        if ahead:
            ahead_started.set()
            assert release.wait(10)
        return original(inputs, graph, output, **kwargs)

    monkeypatch.setattr(assembly, "encode_graph", recording)
    clips = [CutClip("a", takes["a"], 30, CUT), CutClip("b", takes["b"], 30, CutTransition("dissolve", 6)),
             CutClip("c", takes["c"], 30, CUT)]
    spec = CutSpec(clips=clips, fps=Fraction(24), width=160, height=90)
    with ThreadPoolExecutor(1, thread_name_prefix="ahead") as pool:
        # The first piece (a, and the dissolve into b) is rendered ahead, and held.
        futures = prerender(spec, [True, True, False], workdir=tmp_path / "work", started=set(),
                            warnings=[], submit=lambda piece: pool.submit(piece))
        assert ahead_started.wait(10)
        with ThreadPoolExecutor(1) as main:
            cut = main.submit(assemble, spec, tmp_path / "out.mp4", workdir=tmp_path / "work")
            time.sleep(0.5)  # the assembly reaches the held piece meanwhile
            assert not cut.done()
            release.set()
            result = cut.result(timeout=60)
        assert all(f.result() for f in futures)
    assert result.frames == 30 + 30 - 6 + 30
    pieces = [name for _, name in encoded]
    assert len(pieces) == len(set(pieces)), encoded  # nothing encoded twice
    assert any(ahead for ahead, _ in encoded) and any(not ahead for ahead, _ in encoded)
    assert not assembly._RENDERING  # nothing held once every piece is made
