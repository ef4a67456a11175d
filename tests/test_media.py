"""The media layer: finding ffmpeg, running it, probing, copying packets."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from lavfi import make_video

from stitchcraft import media
from stitchcraft.errors import ConfigError, FFmpegError, MediaError


def test_ffmpeg_is_found_and_configurable(monkeypatch):
    assert Path(media.ffmpeg_exe()).exists()
    assert "ffmpeg version" in media.ffmpeg_version()
    media.ffmpeg_exe.cache_clear()
    monkeypatch.setenv("STITCHCRAFT_FFMPEG", "/no/such/ffmpeg")
    try:
        with pytest.raises(ConfigError, match="no such ffmpeg"):
            media.ffmpeg_exe()
    finally:
        media.ffmpeg_exe.cache_clear()


def test_run_ffmpeg_reports_failure_with_stderr(tmp_path):
    with pytest.raises(FFmpegError, match="probe nothing") as caught:
        media.run_ffmpeg(["-i", str(tmp_path / "absent.mp4"), "-f", "null", "-"],
                         what="probe nothing")
    assert "absent.mp4" in caught.value.stderr


def test_probe_reads_awkward_files(tmp_path):
    clip = make_video(tmp_path / "c.mov", seconds=1, size="121x67", rate="30000/1001", source="testsrc",
                      audio="mono", audio_rate=44100,
                      video_args=["-c:v", "libx264", "-pix_fmt", "yuv444p"])
    info = media.probe(clip)
    assert (info.width, info.height, info.fps) == (121, 67, Fraction(30000, 1001))
    assert info.frames == info.packets == 30 and not info.vfr
    assert (info.audio_rate, info.audio_channels) == (44100, 1)
    with pytest.raises(MediaError, match="missing.mp4"):
        media.probe(tmp_path / "missing.mp4")


def test_copy_video_span_copies_whole_gops_exactly(tmp_path):
    clip = make_video(tmp_path / "g.mp4", seconds=2, size="160x90", audio=None, video_args=[
        "-c:v", "libx264", "-g", "12", "-keyint_min", "12", "-sc_threshold", "0"])
    index = media.index_packets(clip, Fraction(24))
    assert index.exact and index.frames == 48 and index.keyframes == (0, 12, 24, 36)
    out = tmp_path / "part.mp4"
    media.copy_video_span(clip, out, 12, 36, Fraction(24))
    assert np.array_equal(media.read_frames(out), media.read_frames(clip, 12, 24))
    with pytest.raises(MediaError, match="cannot be copied"):
        media.copy_video_span(clip, tmp_path / "bad.mp4", 12, 30, Fraction(24))


def test_atomic_output_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "final.mp4"
    with pytest.raises(RuntimeError), media.atomic_output(target) as partial:
        partial.write_bytes(b"half")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_ebur128s_summary_agrees_with_loudnorms_first_pass(tmp_path):
    from lavfi import make_tone

    def summary(path):
        return media.parse_ebur128(media.run_ffmpeg(
            ["-nostats", "-i", str(path), "-af", "ebur128=peak=true:framelog=quiet", "-f", "null", "-"],
            what="meter"))

    tone = make_tone(tmp_path / "tone.wav", seconds=3.0, volume_db=-18.0)
    metered, measured = summary(tone), media.measure_loudness(tone)
    assert metered is not None and measured is not None
    assert abs(metered.integrated - measured.integrated) <= 0.15
    assert abs(metered.true_peak - measured.true_peak) <= 0.15
    assert abs(metered.threshold - measured.threshold) <= 0.15 and metered.offset == 0.0
    silent = tmp_path / "silence.wav"
    media.run_ffmpeg(["-f", "lavfi", "-i", "anullsrc=r=48000:cl=stereo", "-t", "1", str(silent)],
                     what="make silence")
    assert summary(silent) is None
    with pytest.raises(FFmpegError, match="no measurement"):
        media.parse_ebur128("[Parsed_ebur128_0 @ 0x1] Summary:\n  Integrated loudness:\n")


def test_integrated_loudness_agrees_with_loudnorm(tmp_path):
    from lavfi import make_tone

    tone = make_tone(tmp_path / "tone.wav", seconds=3.0, volume_db=-18.0)
    one_pass = media.integrated_loudness(tone)
    measured = media.measure_loudness(tone)
    assert one_pass is not None and measured is not None
    assert abs(one_pass - measured.integrated) <= 0.15
    # Shorter than one 400 ms gating block: no integrated loudness, by either measure.
    short = make_tone(tmp_path / "short.wav", seconds=0.3, volume_db=-18.0)
    assert media.integrated_loudness(short) is None and media.measure_loudness(short) is None
    silent = tmp_path / "silence.wav"
    media.run_ffmpeg(["-f", "lavfi", "-i", "anullsrc=r=48000:cl=stereo", "-t", "1", str(silent)],
                     what="make silence")
    assert media.integrated_loudness(silent) is None


def test_a_published_file_is_not_probed_again(tmp_path, monkeypatch):
    source = make_video(tmp_path / "c.mp4", seconds=0.5, size="64x48")
    final = tmp_path / "published.mp4"
    with media.atomic_output(final) as partial:
        partial.write_bytes(source.read_bytes())
        before = media.probe(partial, count_frames=True)
    calls: list[Path] = []
    real = media._probe
    monkeypatch.setattr(media, "_probe", lambda path: calls.append(path) or real(path))
    after = media.probe(final, count_frames=True)
    assert calls == [] and after.path == final and after.frames == before.frames == 12
    final.write_bytes(source.read_bytes() + b"\0")  # changed since: read again
    media.probe(final)
    assert calls == [final]


def test_a_graphs_frames_are_read_from_ffmpeg_as_it_decodes(tmp_path):
    # The same pixels whole or one at a time, and as PyAV decodes them; nothing left
    # running, nothing written beside the clip.
    clip = make_video(tmp_path / "c.mp4", seconds=1, size="64x48", audio=None,
                      video_args=["-c:v", "libx264", "-crf", "30"])
    inputs = [media.Input(clip, threads=1)]
    whole = media.decode_graph(inputs, "[0:v:0]null[out]", label="out", size=(64, 48), frames=20,
                               what="read the clip")
    assert whole.shape == (20, 48, 64, 3)
    np.testing.assert_array_equal(whole, media.read_frames(clip, 0, 20))
    streamed = list(media.iter_graph(inputs, "[0:v:0]null[out]", label="out", size=(64, 48),
                                     frames=20, what="read the clip"))
    np.testing.assert_array_equal(np.stack(streamed), whole)
    assert len({id(frame) for frame in streamed}) == 20  # each frame its own array
    assert not media._CHILDREN and sorted(p.name for p in tmp_path.iterdir()) == ["c.mp4"]


def test_a_graph_that_falls_short_or_fails_says_so_and_an_early_close_ends_ffmpeg(tmp_path):
    clip = make_video(tmp_path / "c.mp4", seconds=1, size="64x48", audio=None)
    inputs = [media.Input(clip)]
    with pytest.raises(MediaError, match=r"gave 24 of the 30 frames asked for \(read too much\)"):
        media.decode_graph(inputs, "[0:v:0]null[out]", label="out", size=(64, 48), frames=30,
                           what="read too much")
    with pytest.raises(FFmpegError, match="read nonsense"):
        list(media.iter_graph(inputs, "[0:v:0]nosuchfilter[out]", label="out", size=(64, 48),
                              frames=2, what="read nonsense"))
    frames = media.iter_graph(inputs, "[0:v:0]null[out]", label="out", size=(64, 48), frames=24,
                              what="read one")
    next(frames)
    (child,) = media._CHILDREN
    frames.close()
    assert child.returncode is not None and not media._CHILDREN
