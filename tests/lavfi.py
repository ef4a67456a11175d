"""Test media made at test time with ffmpeg's lavfi sources (nothing committed)."""

from __future__ import annotations

from pathlib import Path

from stitchcraft.media import run_ffmpeg


def make_video(path: Path, *, seconds: float = 2.0, size: str = "320x240", rate: str = "24",
               source: str = "testsrc2", audio: str | None = "stereo",
               video_args: list[str] | None = None, audio_rate: int = 48000) -> Path:
    """Writes a test clip.

    Args:
        path: Output file; its extension picks the container.
        seconds: Length.
        size: Frame size, e.g. ``"320x240"`` (odd sizes allowed).
        rate: Frame rate as ffmpeg reads it (``"24"``, ``"30000/1001"``).
        source: A lavfi video source name (testsrc2, smptebars, mandelbrot, ...) or a
            full lavfi source expression containing ``=``.
        audio: None for no audio, ``"stereo"`` or ``"mono"`` for a sine tone.
        video_args: Extra output arguments (codec, metadata, filters).
        audio_rate: Audio sample rate.
    """
    expr = source if "=" in source else f"{source}=size={size}:rate={rate}"
    args: list[str] = ["-f", "lavfi", "-i", expr]
    if audio:
        layout = "mono" if audio == "mono" else "stereo"
        args += ["-f", "lavfi", "-i",
                 f"sine=frequency=440:sample_rate={audio_rate}",
                 "-filter:a", f"aformat=channel_layouts={layout}"]
    args += ["-t", str(seconds)]
    args += video_args if video_args is not None else ["-c:v", "libx264", "-pix_fmt", "yuv420p",
                                                       "-preset", "ultrafast"]
    if audio:
        args += ["-c:a", "aac" if path.suffix in (".mp4", ".mov", ".mkv") else "libopus"]
    args.append(str(path))
    run_ffmpeg(args, what=f"make test clip {path.name}")
    return path


def make_image(path: Path, *, size: str = "640x360", source: str = "testsrc2") -> Path:
    """Writes a single test still (png or jpg by extension)."""
    run_ffmpeg(["-f", "lavfi", "-i", f"{source}=size={size}:rate=1", "-frames:v", "1", str(path)],
               what=f"make test image {path.name}")
    return path


def make_halves(path: Path, *, size: str = "160x90", rate: str = "24", seconds: float = 1.0,
                split: str = "vertical", video_args: list[str] | None = None,
                audio: str | None = None) -> Path:
    """Writes a clip whose left (or top) half is red and right (or bottom) half blue, for
    checking geometry: rotation, pixel aspect and fitting."""
    width, height = (int(side) for side in size.split("x"))
    box = (f"x={width // 2}:y=0:w={width - width // 2}:h={height}" if split == "vertical"
           else f"x=0:y={height // 2}:w={width}:h={height - height // 2}")
    source = f"color=c=red:size={size}:rate={rate},drawbox={box}:color=blue:t=fill"
    args = video_args if video_args is not None else ["-c:v", "libx264", "-pix_fmt", "yuv420p",
                                                      "-preset", "ultrafast"]
    return make_video(path, seconds=seconds, source=source, audio=audio, video_args=args)


def set_rotation(source: Path, path: Path, degrees: int) -> Path:
    """Copies a clip, adding display-rotation metadata (as phones write it)."""
    run_ffmpeg(["-display_rotation:v:0", str(degrees), "-i", str(source), "-c", "copy",
                str(path)], what=f"rotate {source.name}")
    return path


def make_tone(path: Path, *, seconds: float = 2.0, frequency: int = 440, rate: int = 48000,
              volume_db: float = -20.0) -> Path:
    """Writes an audio-only sine tone (music beds, voice-overs)."""
    run_ffmpeg(["-f", "lavfi", "-i", f"sine=frequency={frequency}:sample_rate={rate}",
                "-t", str(seconds), "-af", f"volume={volume_db}dB", str(path)],
               what=f"make test tone {path.name}")
    return path
