"""The soundtrack: one continuous pass over the resolved timeline, then loudness.

Sound is never cut per video segment (joined AAC frames click and drift). Instead one
filtergraph lays every source on the programme's own clock, in samples at 48 kHz:

- each take's audio is resampled to 48 kHz stereo, padded with silence or trimmed to
  exactly its clip's video length, and delayed to the clip's first frame; across a
  transition of T frames the outgoing clip fades out and the incoming one fades in over
  the same T frames, linearly (the two gains sum to one, like the picture's blend);
- a music bed is looped or trimmed to the programme, with fades in and out;
- a voice-over runs from the start; the music is ducked by ``duck_db`` wherever the
  voice is not silent, with short ramps;
- the mix is measured (EBU R128, first pass) and normalised to the target loudness and
  true peak with a linear gain (second pass), then resampled to 48 kHz and encoded as
  AAC, cut to exactly the programme's length.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from ..errors import MediaError
from ..housekeeping import owner_tag
from ..media import (
    Input,
    Loudness,
    detect_silence,
    filter_value,
    measure_loudness,
    parse_ebur128,
    probe_audio,
    run_audio_graph,
)

SAMPLE_RATE = 48000
_FORMAT = f"aresample={SAMPLE_RATE},aformat=sample_fmts=fltp:channel_layouts=stereo"
# Seconds the music takes to duck under the voice and come back.
_DUCK_RAMP = 0.25


@dataclass(frozen=True)
class ClipSound:
    """One take's own audio, placed on the programme.

    Attributes:
        path: The take's file.
        start: Programme frame the clip begins at.
        frames: Video frames of the clip (its audio is padded or cut to this length).
        fade_in, fade_out: Frames of crossfade with the neighbours.
        volume_db: Gain for this take.
        seek: Seconds into `path` where the take's sound begins (its in-point).
    """

    path: Path
    start: int
    frames: int
    fade_in: int = 0
    fade_out: int = 0
    volume_db: float = 0.0
    seek: float = 0.0


@dataclass(frozen=True)
class Soundtrack:
    """Everything heard in a programme."""

    fps: Fraction
    total_frames: int
    clips: tuple[ClipSound, ...] = ()
    music: Path | None = None
    voiceover: Path | None = None
    music_volume_db: float = 0.0
    duck_db: float = -12.0
    music_fade: float = 1.0
    loudness: float = -14.0
    true_peak: float = -1.0
    warnings: list[str] = field(default_factory=list, compare=False)

    @property
    def samples(self) -> int:
        return round(Fraction(self.total_frames) / self.fps * SAMPLE_RATE)

    def to_samples(self, frames: int) -> int:
        return round(Fraction(frames) / self.fps * SAMPLE_RATE)

    @property
    def has_sources(self) -> bool:
        return bool(self.clips or self.music or self.voiceover)


def mix_graph(track: Soundtrack, voice: list[tuple[float, float]] | None = None
              ) -> tuple[list[Input], str, str]:
    """The filtergraph that mixes a soundtrack (before loudness normalisation).

    Args:
        track: What to mix.
        voice: Programme seconds where the voice-over speaks (the music ducks there);
            None ducks under the whole voice-over.

    Returns:
        (inputs, graph, output label).
    """
    total = track.samples
    inputs: list[Input] = []
    chains: list[str] = []
    labels: list[str] = []
    for clip in track.clips:
        index = len(inputs)
        inputs.append(Input(clip.path, clip.seek))
        length = track.to_samples(clip.frames)
        chain = (f"[{index}:a:0]{_FORMAT},apad,atrim=end_sample={length},asetpts=N/SR/TB,"
                 f"volume={clip.volume_db:.3f}dB")
        if clip.fade_in:
            chain += f",afade=t=in:ss=0:ns={track.to_samples(clip.fade_in)}:curve=tri"
        if clip.fade_out:
            fade = track.to_samples(clip.fade_out)
            chain += f",afade=t=out:ss={length - fade}:ns={fade}:curve=tri"
        delay = track.to_samples(clip.start)
        if delay:
            chain += f",adelay=delays={delay}S:all=1"
        chains.append(f"{chain}[c{index}]")
        labels.append(f"c{index}")
    if track.voiceover is not None:
        index = len(inputs)
        inputs.append(Input(track.voiceover))
        chains.append(f"[{index}:a:0]{_FORMAT},apad,atrim=end_sample={total},"
                      f"asetpts=N/SR/TB[vo]")
        labels.append("vo")
    if track.music is not None:
        index = len(inputs)
        inputs.append(Input(track.music, loop=True))
        seconds = total / SAMPLE_RATE
        fade = min(track.music_fade, seconds / 2)
        chain = (f"[{index}:a:0]{_FORMAT},atrim=end_sample={total},asetpts=N/SR/TB,"
                 f"volume={track.music_volume_db:.3f}dB")
        if fade > 0:
            chain += (f",afade=t=in:st=0:d={fade:.6f},"
                      f"afade=t=out:st={seconds - fade:.6f}:d={fade:.6f}")
        if track.voiceover is not None and track.duck_db < 0:
            spans = voice if voice is not None else [(0.0, seconds)]
            if spans:
                chain += f",volume={filter_value(_duck_expression(spans, track.duck_db))}:eval=frame"
        chains.append(f"{chain}[music]")
        labels.append("music")
    if not labels:
        raise ValueError("a soundtrack needs at least one source")
    if len(labels) == 1:
        mix = f"[{labels[0]}]"
    else:
        mix = "".join(f"[{label}]" for label in labels) + (
            f"amix=inputs={len(labels)}:normalize=0:duration=longest:dropout_transition=0")
    chains.append(f"{mix}{',' if len(labels) > 1 else ''}"
                  f"apad=whole_len={total},atrim=end_sample={total}[mix]")
    return inputs, ";".join(chains), "mix"


def _duck_expression(spans: list[tuple[float, float]], duck_db: float) -> str:
    """A volume expression: 0 dB, falling to `duck_db` inside each voiced span."""
    ramp = _DUCK_RAMP
    parts = [f"clip(min((t-{start - ramp:.4f})/{ramp},({end + ramp:.4f}-t)/{ramp}),0,1)"
             for start, end in spans]
    return f"pow(10,{duck_db:.3f}*min(1,{'+'.join(parts)})/20)"


def voice_spans(voiceover: Path, seconds: float) -> list[tuple[float, float]]:
    """Where a voice-over is not silent, merged across short pauses, in seconds (within
    the first `seconds` of the programme)."""
    seconds = min(seconds, probe_audio(voiceover)[2] or seconds)
    silences = detect_silence(voiceover, noise_db=-40.0, min_seconds=0.6)
    spans: list[tuple[float, float]] = []
    cursor = 0.0
    for start, end in silences:
        if start > cursor:
            spans.append((cursor, min(start, seconds)))
        cursor = max(cursor, end)
    if cursor < seconds:
        spans.append((cursor, seconds))
    return [(a, b) for a, b in spans if b > a and a < seconds]


def render_soundtrack(track: Soundtrack, output: Path, *, workdir: Path) -> Loudness | None:
    """Mixes, loudness-normalises and encodes a soundtrack to `output` (AAC, 48 kHz
    stereo, exactly the programme's length).

    Returns:
        The first-pass measurement of the mix, or None when it is silent (then it is
        encoded without normalisation).

    Raises:
        FFmpegError: ffmpeg failed.
        MediaError: a voice-over or music file is unreadable.
    """
    if track.voiceover is not None:
        _check_source(track.voiceover, track, "voice-over")
    if track.music is not None:
        _check_source(track.music, track, "music")
    voice = None
    if track.voiceover is not None and track.music is not None:
        voice = voice_spans(track.voiceover, track.total_frames / float(track.fps))
    inputs, graph, label = mix_graph(track, voice)
    mixed = workdir / f"{output.stem}.mix.{owner_tag()}.wav"
    # The EBU R128 meter with its true peak (4x oversampled): a seventh of the CPU of
    # loudnorm's measuring pass, which also runs its limiter over the whole mix.
    graph += f";[{label}]asplit=2[keep][measure];[measure]ebur128=peak=true:framelog=quiet[measured]"
    stderr = run_audio_graph(inputs, graph, [
        ("keep", ["-c:a", "pcm_f32le", str(mixed)]),
        ("measured", ["-f", "null", "-"]),
    ], what="mix the soundtrack")
    measured = parse_ebur128(stderr)
    total = track.samples
    try:
        normalise = "" if measured is None else _normalise(track, measured, mixed)
        run_audio_graph([Input(mixed)], f"[0:a:0]{normalise}aresample={SAMPLE_RATE},"
                        f"apad=whole_len={total},atrim=end_sample={total}[out]",
                        [("out", ["-c:a", "aac", "-b:a", "192k", "-ar", str(SAMPLE_RATE),
                                  "-ac", "2", str(output)])],
                        what="normalise and encode the soundtrack")
    finally:
        mixed.unlink(missing_ok=True)
    return measured


def _normalise(track: Soundtrack, measured: Loudness, mixed: Path) -> str:
    """The filter (ending in a comma) that brings the mix to the track's loudness: one
    gain for all of it where its true peak stays under the ceiling (what loudnorm's
    linear mode does), else loudnorm's dynamic mode, told the first pass of its own
    meter (with the target offset it corrects by)."""
    gain = track.loudness - measured.integrated
    if measured.true_peak + gain <= track.true_peak:
        return f"volume={gain:.2f}dB,"
    measured = measure_loudness(mixed, loudness=track.loudness, true_peak=track.true_peak) or measured
    lra = min(50.0, max(11.0, measured.lra + 1.0))
    return (f"loudnorm=I={track.loudness}:TP={track.true_peak}:LRA={lra:.1f}:"
            f"measured_I={measured.integrated}:measured_TP={measured.true_peak}:"
            f"measured_LRA={measured.lra}:measured_thresh={measured.threshold}:"
            f"offset={measured.offset}:linear=true,")


def _check_source(path: Path, track: Soundtrack, role: str) -> None:
    """Checks a music or voice-over file has sound; notes a voice-over that runs long."""
    try:
        _, _, seconds = probe_audio(path)
    except MediaError as exc:
        raise MediaError(path, f"cannot use it as the {role}: {exc.reason}") from None
    programme = track.total_frames / float(track.fps)
    if role == "voice-over" and seconds > programme + 0.05:
        track.warnings.append(f"{path.name}: the voice-over runs {seconds - programme:.2f} s "
                              "past the end and is cut")
