"""The soundtrack: exact length, crossfades in step with the picture, music, ducking,
loudness."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from lavfi import make_tone, make_video

from stitchcraft.assemble import CutClip, CutSpec, CutTransition, assemble
from stitchcraft.assemble.audio import ClipSound, Soundtrack, render_soundtrack
from stitchcraft.errors import MediaError
from stitchcraft.media import measure_loudness, probe, probe_audio

CUT = CutTransition("cut", 0)


def decode_audio(path: Path) -> np.ndarray:
    """Mono float samples at the file's rate."""
    import av

    chunks = []
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            chunks.append(frame.to_ndarray().astype(np.float64).mean(axis=0))
    return np.concatenate(chunks)


def rms_db(samples: np.ndarray) -> float:
    return 20 * np.log10(np.sqrt(np.mean(samples**2)) + 1e-12)


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("audio")
    return {
        "stereo": make_video(folder / "stereo.mp4", seconds=1.5, size="160x90"),
        "mono44": make_video(folder / "mono.mkv", seconds=1.0, size="160x90", audio="mono",
                             audio_rate=44100),
        "mute": make_video(folder / "mute.mp4", seconds=1.5, size="160x90", audio=None),
        "music": make_tone(folder / "music.wav", seconds=0.7, frequency=220),
        "voice": make_tone(folder / "voice.wav", seconds=1.0, frequency=880, volume_db=-10),
    }


@pytest.mark.parametrize("target", [-14.0, -23.0])
def test_take_audio_is_exact_and_normalised(media, tmp_path, target):
    clips = [CutClip("a", media["stereo"], 30, CUT),
             CutClip("b", media["mono44"], 30, CutTransition("dissolve", 6)),  # 24 frames of sound
             CutClip("c", media["mute"], 20, CutTransition("cut", 0))]
    spec = CutSpec(clips, Fraction(24), 160, 90, loudness=target)
    result = assemble(spec, tmp_path / "out.mp4", workdir=tmp_path / "work")
    info = probe(result.path)
    assert (info.audio_rate, info.audio_channels) == (48000, 2)
    assert abs(info.audio_duration - 74 / 24) < 0.05
    assert result.loudness is not None and abs(result.loudness - target) < 1.0
    samples = decode_audio(result.path)
    # The last clip has no sound: its 20 frames are silent.
    tail = samples[int(48000 * (54 / 24 + 0.05)):int(48000 * (74 / 24 - 0.05))]
    assert rms_db(tail) < -80
    assert rms_db(samples[: 48000]) > -40


def test_music_loops_fades_and_ducks_under_the_voice(media, tmp_path):
    total = 72  # 3 s
    track = Soundtrack(fps=Fraction(24), total_frames=total, music=media["music"],
                       voiceover=media["voice"], duck_db=-18.0, music_fade=0.3, loudness=-16)
    out = tmp_path / "mix.m4a"
    measured = render_soundtrack(track, out, workdir=tmp_path)
    assert measured is not None
    rate, channels, seconds = probe_audio(out)
    assert (rate, channels) == (48000, 2) and abs(seconds - 3.0) < 0.05
    # Without the voice, the same music: compare the 220 Hz bed during the voice (0-1 s)
    # with after it (1.5-2.5 s) using a narrow band around 220 Hz.
    samples = decode_audio(out)

    def band(start: float, end: float) -> float:
        chunk = samples[int(start * 48000):int(end * 48000)]
        spectrum = np.abs(np.fft.rfft(chunk * np.hanning(len(chunk))))
        freqs = np.fft.rfftfreq(len(chunk), 1 / 48000)
        return 20 * np.log10(spectrum[(freqs > 200) & (freqs < 240)].max())

    ducked, open_ = band(0.35, 0.75), band(1.6, 2.4)
    assert open_ - ducked > 12
    # Looped past its 0.7 s and faded out at the end.
    assert rms_db(samples[int(2.0 * 48000):int(2.5 * 48000)]) > -50
    assert rms_db(samples[-200:]) < rms_db(samples[int(2.0 * 48000):int(2.5 * 48000)]) - 10


def test_crossfade_sums_to_one_across_a_transition(media, tmp_path):
    # The same tone on both sides: a linear crossfade keeps the level steady.
    tone = make_tone(tmp_path / "tone.wav", seconds=2, frequency=440, volume_db=-12)
    clip = make_video(tmp_path / "clip.mp4", seconds=1.5, size="160x90", audio=None)
    muxed = tmp_path / "toned.mp4"
    from stitchcraft.media import run_ffmpeg

    run_ffmpeg(["-i", str(clip), "-i", str(tone), "-map", "0:v", "-map", "1:a", "-c:v", "copy",
                "-c:a", "aac", "-shortest", str(muxed)], what="mux a tone")
    track = Soundtrack(fps=Fraction(24), total_frames=60, clips=(
        ClipSound(muxed, 0, 36, fade_out=12), ClipSound(muxed, 24, 36, fade_in=12)),
        loudness=-20)
    out = tmp_path / "x.m4a"
    render_soundtrack(track, out, workdir=tmp_path)
    samples = decode_audio(out)
    levels = [rms_db(samples[int(t * 48000):int((t + 0.1) * 48000)]) for t in (0.5, 1.05, 1.8)]
    assert max(levels) - min(levels) < 1.0


def test_unreadable_music_is_named(media, tmp_path):
    bad = tmp_path / "bed.mp3"
    bad.write_bytes(b"nope" * 10)
    spec = CutSpec([CutClip("a", media["mute"], 12, CUT)], Fraction(24), 160, 90, music=bad)
    with pytest.raises(MediaError, match="bed.mp3"):
        assemble(spec, tmp_path / "o.mp4", workdir=tmp_path / "w")


def test_measure_loudness_of_silence_is_none(tmp_path):
    from stitchcraft.media import run_ffmpeg

    silent = tmp_path / "silence.wav"
    run_ffmpeg(["-f", "lavfi", "-i", "anullsrc=r=48000:cl=stereo", "-t", "1", str(silent)],
               what="make silence")
    assert measure_loudness(silent) is None


def _meter(path: Path) -> tuple[float, float]:
    """(integrated LUFS, true peak dBTP) of a file, by ffmpeg's ebur128."""
    from stitchcraft.media import parse_ebur128, run_ffmpeg

    stderr = run_ffmpeg(["-nostats", "-i", str(path), "-af", "ebur128=peak=true:framelog=quiet",
                         "-f", "null", "-"], what="meter")
    measured = parse_ebur128(stderr)
    assert measured is not None
    return measured.integrated, measured.true_peak


def test_a_mix_gets_one_gain_unless_its_peaks_would_pass_the_ceiling(tmp_path):
    from stitchcraft.media import run_ffmpeg

    def source(name: str, expression: str) -> Path:
        path = tmp_path / f"{name}.wav"
        run_ffmpeg(["-f", "lavfi", "-i", f"aevalsrc='{expression}':s=48000:c=stereo", "-t", "3",
                    str(path)], what=f"make {name}")
        return path

    # A steady tone at -30 dBFS: one gain brings it to -16 LUFS, its peak far below the
    # ceiling.
    steady = source("steady", "0.0316*sin(2*PI*440*t)")
    # The same tone under clicks peaking at -9 dBTP: the same gain would drive them 3 dB
    # past -1 dBTP, so loudnorm's dynamic mode holds them at the ceiling instead.
    clicks = source("clicks", "0.0316*sin(2*PI*440*t)+if(lt(mod(t,0.5),0.002),0.3,0)")
    for path in (steady, clicks):
        out = tmp_path / f"{path.stem}.m4a"
        measured = render_soundtrack(Soundtrack(fps=Fraction(24), total_frames=72, music=path,
                                                music_fade=0.0, loudness=-16), out,
                                     workdir=tmp_path)
        assert measured is not None and abs(measured.integrated - _meter(path)[0]) < 0.2
        loudness, peak = _meter(out)
        assert abs(loudness - -16) < 0.5, (path.stem, loudness)
        assert peak < -0.5, (path.stem, peak)  # -1 dBTP, give or take AAC's overshoot
    assert _meter(tmp_path / "clicks.m4a")[1] > -1.5  # limited to the ceiling, not below it
    # One gain: the steady tone comes out scaled by exactly what it lacked, level from
    # end to end.
    gain = -16 - _meter(steady)[0]
    after = decode_audio(tmp_path / "steady.m4a")
    levels = [rms_db(after[int(t * 48000):int((t + 0.5) * 48000)]) for t in (0.25, 1.25, 2.25)]
    assert max(levels) - min(levels) < 0.1
    assert abs(levels[0] - (20 * np.log10(0.0316 / np.sqrt(2)) + gain)) < 0.3
