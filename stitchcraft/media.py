"""The one module that owns ffmpeg and media probing.

Every ffmpeg command in stitchcraft is built and run here, as an argument list (never a
shell string), with its exit status and stderr checked. Media is probed and decoded
with PyAV. Other modules describe *what* they want; this module knows *how*.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import cache
from pathlib import Path

import numpy as np

from .errors import ConfigError, FFmpegError, MediaError, StitchError, StorageError, os_cause

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".ts", ".mxf")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


@cache
def ffmpeg_exe() -> str:
    """The ffmpeg binary: ``$STITCHCRAFT_FFMPEG`` if set ("system" means the one on
    PATH), else the binary shipped in the imageio-ffmpeg wheel.

    Raises:
        ConfigError: the configured binary does not exist.
    """
    configured = os.environ.get("STITCHCRAFT_FFMPEG", "").strip()
    if configured:
        found = shutil.which("ffmpeg") if configured == "system" else shutil.which(configured)
        if not found:
            raise ConfigError(f"STITCHCRAFT_FFMPEG={configured!r}: no such ffmpeg binary")
        return found
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError) as exc:
        found = shutil.which("ffmpeg")
        if found:
            return found
        raise ConfigError(
            f"no ffmpeg found ({exc}); reinstall stitchcraft (it ships ffmpeg through "
            "imageio-ffmpeg) or set STITCHCRAFT_FFMPEG to an ffmpeg binary"
        ) from None


# Every ffmpeg child this process runs, so that an interrupted render can end them all.
_CHILDREN: set[subprocess.Popen[bytes]] = set()
# Re-entrant: kill_children may run in a signal handler on a thread that holds it.
_CHILDREN_LOCK = threading.RLock()
_REFUSING = threading.Event()


@contextlib.contextmanager
def _child(command: Sequence[str], *, what: str, stdin: bool = False,
           stdout: bool = False) -> Iterator[subprocess.Popen[bytes]]:
    """Starts a child process, registered (see `kill_children`) while the block runs.

    The child's environment names this process as its owner (`housekeeping.owner_env`),
    so that a later start can find it if this process dies without ending it.

    Raises:
        FFmpegError: it could not start, or children are refused (shutting down).
    """
    from .housekeeping import owner_env

    pipe = subprocess.PIPE
    with _CHILDREN_LOCK:
        if _REFUSING.is_set():
            raise FFmpegError(f"not starting ffmpeg to {what}: stitchcraft is shutting down")
        try:
            proc = subprocess.Popen(list(command), stdin=pipe if stdin else subprocess.DEVNULL,
                                    stdout=pipe if stdout else subprocess.DEVNULL, stderr=pipe,
                                    env=owner_env())
        except OSError as exc:
            raise FFmpegError(f"cannot start ffmpeg to {what}: {exc}") from None
        _CHILDREN.add(proc)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        with _CHILDREN_LOCK:
            _CHILDREN.discard(proc)


def kill_children(*, refuse_new: bool = False) -> int:
    """Sends SIGKILL to every ffmpeg child of this process that is still running.

    Safe to call from a signal handler: it signals and returns, and never waits (the
    threads that started the children reap them and raise `FFmpegError`).

    Args:
        refuse_new: Also refuse to start any child from now on, so that work queued on
            other threads stops at once (for a process that is about to exit).

    Returns:
        How many children were signalled.
    """
    if refuse_new:
        _REFUSING.set()
    with _CHILDREN_LOCK:
        running = list(_CHILDREN)
    signalled = 0
    for proc in running:
        with contextlib.suppress(OSError):
            proc.kill()  # does nothing to a child that has exited already
            if proc.returncode is None:
                signalled += 1
    return signalled


def run_ffmpeg(args: Sequence[str | os.PathLike[str]], *, what: str,
               stdin: bytes | None = None, timeout: float | None = None) -> str:
    """Runs ffmpeg with `args` (everything after the binary) and returns its stderr.

    Args:
        args: Arguments, one per list item; paths are passed as-is, never through a shell.
        what: A short description for error messages ("encode take street#3").
        stdin: Bytes fed to ffmpeg's standard input.
        timeout: Seconds before ffmpeg is killed.

    Raises:
        FFmpegError: ffmpeg exited non-zero, timed out, was killed, or could not start.
    """
    command = [ffmpeg_exe(), "-hide_banner", "-y", *(["-nostdin"] if stdin is None else []),
               *map(str, args)]
    with _child(command, what=what, stdin=stdin is not None) as proc:
        try:
            _, err = proc.communicate(stdin, timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
            raise FFmpegError(f"ffmpeg timed out after {timeout:.0f} s: {what}",
                              err.decode("utf-8", "replace")) from None
    stderr = err.decode("utf-8", "replace")
    if proc.returncode != 0:
        raise _failure(proc.returncode, what, stderr, Path(str(args[-1])) if args else None)
    return stderr


_DISK_FULL = ("No space left on device", "Disk quota exceeded")


def _failure(code: int, what: str, stderr: str, output: Path | None) -> StitchError:
    """The error for an ffmpeg run that failed: a full disk is said in one line, naming
    the folder; anything else carries ffmpeg's own words."""
    if output is not None and any(sign in stderr for sign in _DISK_FULL):
        return StorageError(output.parent, f"no space left on the device (ffmpeg could not {what})")
    how = "was killed" if code < 0 else f"failed ({code})"
    return FFmpegError(f"ffmpeg {how} to {what}", stderr)


@dataclass(frozen=True)
class MediaInfo:
    """What a media file holds, as PyAV reads it.

    Attributes:
        path: The file.
        width, height: Coded size of the video stream (before rotation and SAR).
        fps: Average frame rate, exact.
        frames: Video frames (counted when the container does not say).
        duration: Seconds of video.
        codec: Video codec name (``h264``, ``ffv1``, ...).
        pix_fmt: Pixel format.
        sar: Sample (pixel) aspect ratio, 1 for square pixels.
        rotation: Display rotation in degrees (0, 90, 180, 270).
        vfr: Frame timestamps are not evenly spaced.
        audio_rate, audio_channels: 0 when there is no audio.
        audio_duration: Seconds of audio.
        profile: Codec profile name, when known.
        packets: Video packets actually present in the file (fewer than `frames`
            when a file is truncated).
    """

    path: Path
    width: int
    height: int
    fps: Fraction
    frames: int
    duration: float
    codec: str
    pix_fmt: str
    sar: Fraction
    rotation: int
    vfr: bool
    audio_rate: int
    audio_channels: int
    audio_duration: float
    profile: str = ""
    packets: int = 0
    data_end: float = 0.0
    extradata: bytes = b""

    @property
    def has_audio(self) -> bool:
        return self.audio_rate > 0

    @property
    def display_size(self) -> tuple[int, int]:
        """Width and height as shown: square pixels, rotation applied."""
        width = round(self.width * self.sar) if self.sar and self.sar != 1 else self.width
        height = self.height
        return (height, width) if self.rotation % 180 == 90 else (width, height)


def _open(path: Path):
    import av

    if not path.exists():
        raise MediaError(path, "file not found")
    if path.is_dir():
        raise MediaError(path, "is a folder, not a media file")
    if path.stat().st_size == 0:
        raise MediaError(path, "is empty (0 bytes): a copy or download that never finished?")
    try:
        return av.open(str(path))
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise MediaError(path, f"not a readable media file ({_reason(exc)})") from None


def _reason(exc: Exception) -> str:
    """What went wrong, said once: a PyAV error's str() leads with an errno number and
    repeats the path the message already names. An OSError (PyAV's PermissionError among
    them) reads as any OS error does (`os_cause`); PyAV's other errors (InvalidDataError
    is a ValueError) by their strerror; then FFmpeg's last logged line when there is one."""
    if isinstance(exc, OSError):
        reason = os_cause(exc)
    else:
        reason = getattr(exc, "strerror", None) or str(exc)
    log = getattr(exc, "log", None)
    if isinstance(log, tuple) and len(log) == 3 and str(log[2]).strip():
        return f"{reason}: {str(log[2]).strip()}"
    return reason


def probe(path: str | os.PathLike[str], *, count_frames: bool = False) -> MediaInfo:
    """Reads a media file's streams with PyAV.

    Results are remembered per file version (path, size, modification time), since
    planning, normalising and verifying ask about the same files again and again.

    Args:
        path: The file.
        count_frames: Decode-free packet count even when the container states a count.

    Raises:
        MediaError: the file is missing, unreadable, or has no video stream.
    """
    path = Path(path)
    try:
        stat = path.stat()
    except OSError:
        return _probe(path)  # raises the right MediaError
    key = (str(path.absolute()), stat.st_size, stat.st_mtime_ns)
    info = _PROBED.get(key)
    if info is None:
        info = _probe(path)
        if len(_PROBED) > 4096:
            _PROBED.clear()
        _PROBED[key] = info
    if count_frames and info.frames != info.packets:
        return dataclasses.replace(info, frames=info.packets)
    return info


_PROBED: dict[tuple[str, int, int], MediaInfo] = {}


def _carry_probe(old: Path, new: Path) -> None:
    """Keeps what was probed of a file under its temporary name for its final one (a
    rename changes neither size nor modification time), so that what was checked before
    publishing is not read again."""
    try:
        stat = new.stat()
    except OSError:
        return
    info = _PROBED.get((str(old.absolute()), stat.st_size, stat.st_mtime_ns))
    if info is not None:
        _PROBED[(str(new.absolute()), stat.st_size, stat.st_mtime_ns)] = dataclasses.replace(info, path=new)


def _probe(path: Path) -> MediaInfo:
    import av

    with _open(path) as container:
        if not container.streams.video:
            raise MediaError(path, "has no video stream")
        video = container.streams.video[0]
        ctx = video.codec_context
        fps = Fraction(video.average_rate or video.guessed_rate or 0)
        audio = container.streams.audio[0] if container.streams.audio else None
        rotation = 0
        try:
            for frame in container.decode(video=0):
                rotation = int(round(getattr(frame, "rotation", 0) or 0)) % 360
                break
        except av.error.FFmpegError as exc:
            raise MediaError(path, f"video cannot be decoded ({_reason(exc)})") from None
        # Demuxing without decoding is cheap; the packet timestamps give the true frame
        # count (mkv and webm state none) and reveal variable frame rate.
        frames = video.frames
        vfr = False
        pts: list[int] = []
        untimed = 0
        end = 0.0
        origin = (container.start_time or 0) / 1_000_000
        with contextlib.ExitStack() as again:
            demuxed = container
            try:
                container.seek(0)
            except av.error.FFmpegError:  # a stream that cannot seek (a raw one): open it again
                demuxed = again.enter_context(_open(path))
            try:
                for packet in demuxed.demux():
                    if packet.pts is None:
                        untimed += packet.stream.index == video.index and bool(packet.size)
                        continue
                    if packet.stream.index == video.index and packet.size:
                        pts.append(packet.pts)
                    if packet.time_base:
                        end = max(end, float((packet.pts + (packet.duration or 0)) * packet.time_base)
                                  - origin)
            except av.error.FFmpegError as exc:
                raise MediaError(path, f"cannot read its packets ({_reason(exc)})") from None
        if frames == 0 and not pts and untimed:
            rate = f"{float(video.guessed_rate or fps):g}"
            raise MediaError(path, f"is a bare {ctx.name} stream: its pictures carry no timestamps. "
                                   f"Put it in a container at its frame rate first, e.g. ffmpeg "
                                   f"-framerate {rate} -i {shlex.quote(path.name)} -c copy "
                                   f"{shlex.quote(path.stem + '.mp4')}")
        if frames == 0:
            frames = len(pts)
        if len(pts) > 2:
            deltas = np.diff(np.sort(np.asarray(pts, dtype=np.int64)))
            deltas = deltas[deltas > 0]
            if deltas.size:
                vfr = bool(deltas.max() - deltas.min() > max(1, 0.02 * np.median(deltas)))
        if fps <= 0:
            raise MediaError(path, "video stream has no frame rate")
        tb = video.time_base
        if video.duration is not None and tb:
            duration = float(video.duration * tb)
        elif container.duration:
            duration = container.duration / 1_000_000
        else:
            duration = frames / float(fps)
        sar = Fraction(ctx.sample_aspect_ratio) if ctx.sample_aspect_ratio else Fraction(1)
        audio_duration = 0.0
        if audio is not None and audio.duration is not None and audio.time_base:
            audio_duration = float(audio.duration * audio.time_base)
        elif audio is not None and container.duration:
            audio_duration = container.duration / 1_000_000
        return MediaInfo(
            path=path, width=ctx.width, height=ctx.height, fps=fps, frames=frames,
            duration=duration, codec=ctx.name, pix_fmt=ctx.pix_fmt or "", sar=sar,
            rotation=rotation, vfr=vfr,
            audio_rate=audio.codec_context.sample_rate if audio else 0,
            audio_channels=audio.codec_context.channels if audio else 0,
            audio_duration=audio_duration, profile=ctx.profile or "", packets=len(pts),
            data_end=end, extradata=bytes(ctx.extradata or b""),
        )


def read_frames(path: str | os.PathLike[str], start: int = 0, count: int | None = None,
                *, size: tuple[int, int] | None = None) -> np.ndarray:
    """Decodes frames ``start .. start+count`` as uint8 RGB, count x H x W x 3.

    Seeks to the nearest keyframe before `start` instead of decoding from the top.

    Args:
        path: A video file.
        start: First frame index (0-based, in decode order of a CFR file).
        count: Frames wanted; None for all to the end.
        size: (width, height) to scale to while decoding.

    Raises:
        MediaError: unreadable, or fewer frames than asked for.
    """
    out = list(iter_frames(path, start, count, size=size))
    if not out:
        return np.zeros((0, 0, 0, 3), dtype=np.uint8)
    return np.stack(out)


def iter_frames(path: str | os.PathLike[str], start: int = 0, count: int | None = None,
                *, size: tuple[int, int] | None = None) -> Iterator[np.ndarray]:
    """`read_frames`, one H x W x 3 frame at a time (memory stays flat whatever the
    length); the same decode, so the same pixels.

    Raises:
        MediaError: as `read_frames` (fewer frames: once the last one is yielded).
    """
    import av

    path = Path(path)
    given = 0
    with _open(path) as container:
        if not container.streams.video:
            raise MediaError(path, "has no video stream")
        video = container.streams.video[0]
        video.thread_type = "AUTO"
        fps = Fraction(video.average_rate or video.guessed_rate or 1)
        tb = video.time_base
        first_pts = video.start_time or 0
        if start > 0 and tb:
            target = first_pts + int(Fraction(start) / fps / tb)
            container.seek(max(first_pts, target - 1), stream=video, backward=True)
        index = None
        try:
            for frame in container.decode(video):
                if frame.pts is not None and tb:
                    index = round((frame.pts - first_pts) * tb * fps)
                else:
                    index = 0 if index is None else index + 1
                if index < start:
                    continue
                if size is not None:
                    frame = frame.reformat(width=size[0], height=size[1])
                given += 1
                yield frame.to_ndarray(format="rgb24")
                if count is not None and given >= count:
                    break
        except av.error.FFmpegError as exc:
            raise MediaError(path, f"decoding failed at frame {index} ({_reason(exc)})") from None
    if count is not None and given < count:
        raise MediaError(path, f"has {start + given} frames, needed {start + count}")


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Reads a still as uint8 RGB, honouring EXIF orientation.

    Raises:
        MediaError: missing or not an image.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise MediaError(path, "file not found")
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise MediaError(path, f"not a readable image ({exc})") from None


ENCODERS = {
    "h264": ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-profile:v", "high"],
    "h265": ["-c:v", "libx265", "-pix_fmt", "yuv420p", "-tag:v", "hvc1", "-x265-params", "log-level=error"],
    "av1": ["-c:v", "libsvtav1", "-pix_fmt", "yuv420p"],
    "prores": ["-c:v", "prores_ks", "-profile:v", "3", "-pix_fmt", "yuv422p10le"],
    "ffv1": ["-c:v", "ffv1", "-level", "3", "-pix_fmt", "yuv444p"],
}


# x264 and x265 make a different stream for each number of frame threads (x264 also
# writes the count into the stream), and by default take one per core: pinned, the same
# storyboard encodes to the same bytes on any machine. ffv1, prores_ks and SVT-AV1 make
# the same stream whatever their thread count (measured with ffmpeg 9), so theirs is free.
PINNED_THREADS = 4
_THREAD_DEPENDENT = ("h264", "h265")


def encoder_args(codec: str, *, crf: int = 20, preset: str = "veryfast") -> list[str]:
    """The ffmpeg video-encoder arguments for one of stitchcraft's codecs: the same
    frames and arguments give a bit-identical stream on any machine."""
    args = list(ENCODERS[codec])
    if codec in _THREAD_DEPENDENT:
        args += ["-preset", preset, "-crf", str(crf), "-threads", str(PINNED_THREADS)]
    elif codec == "av1":
        svt_preset = {"ultrafast": 12, "superfast": 11, "veryfast": 10, "faster": 9, "fast": 8,
                      "medium": 6, "slow": 4, "slower": 3, "veryslow": 2}.get(preset, 8)
        args += ["-preset", str(svt_preset), "-crf", str(min(crf + 10, 63))]
    return args


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yields a temporary path beside `path`; renames it into place only if the block
    finishes without raising, else deletes it. No half-written file ever sits at `path`.

    The temporary name is ``.<stem>.<owner tag>.<random>.partial<suffix>``
    (`stitchcraft.housekeeping`).
    """
    from .housekeeping import owner_tag

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The owner's tag lets a later start delete it if this process is killed.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.{owner_tag()}.",
                                    suffix=f".partial{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp makes the file private; a published output gets the usual mode.
        if tmp.exists():
            os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
        _carry_probe(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def write_video(frames: Iterable[np.ndarray] | np.ndarray, path: str | os.PathLike[str],
                fps: Fraction, *, codec: str = "h264", crf: int = 16,
                preset: str = "veryfast",
                audio: tuple[Path, float] | None = None,
                frame_count: int | None = None) -> Path:
    """Encodes uint8 RGB frames to a video file, atomically.

    Frames stream into ffmpeg's stdin, so memory stays flat whatever the length.

    Args:
        frame_count: How many frames an iterator will yield, so the audio can be cut
            to the exact length (an array says so itself).
        audio: (file, start seconds): sound muxed beside the frames, cut or padded with
            silence to exactly the video's length, 48 kHz stereo AAC.

    Raises:
        FFmpegError: encoding failed.
        ValueError: no frames, or frames of mixed sizes.
    """
    path = Path(path)
    iterator = iter(frames)
    try:
        first = next(iterator)
    except StopIteration:
        raise ValueError(f"no frames to write to {path}") from None
    height, width = first.shape[:2]
    from .timeline import format_fps

    args = ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}",
            "-r", format_fps(fps), "-i", "pipe:0"]
    if audio is not None:
        # Pad the audio with silence, then cut it at the video's exact length when the
        # frame count is known; otherwise let the video end the file (-shortest, which
        # can overshoot by a few audio packets).
        sound = "aresample=48000,aformat=sample_fmts=fltp:channel_layouts=stereo,apad"
        ending = ["-shortest"]
        if isinstance(frames, np.ndarray):
            frame_count = len(frames)
        if frame_count:
            seconds = Fraction(frame_count) / fps
            sound += f",atrim=end={float(seconds):.6f}"
            ending = []
        args += ["-ss", f"{audio[1]:.6f}", "-i", str(audio[0]), "-map", "0:v:0", "-map", "1:a:0",
                 "-af", sound, "-c:a", "aac", "-b:a", "192k", *ending]
    else:
        args += ["-an"]
    args += encoder_args(codec, crf=crf, preset=preset)
    if codec in ("h264", "h265"):
        args += ["-movflags", "+faststart"]
    what = f"encode {path.name}"
    with atomic_output(path) as tmp, _child(
            [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *args, str(tmp)],
            what=what, stdin=True) as proc:
        assert proc.stdin is not None
        ended = _stderr_aside(proc)
        written = 0
        try:
            for frame in _chain(first, iterator):
                if frame.shape != first.shape or frame.dtype != np.uint8:
                    raise ValueError(f"frame {written} is {frame.shape} {frame.dtype}, "
                                     f"expected {first.shape} uint8")
                proc.stdin.write(memoryview(np.ascontiguousarray(frame)).cast("B"))
                written += 1
            proc.stdin.close()
        except BrokenPipeError:
            pass
        code, stderr = ended()
        if code != 0:
            raise _failure(code, what, stderr, path)
    return path


def _stderr_aside(proc: subprocess.Popen[bytes]) -> Callable[[], tuple[int, str]]:
    """Reads a child's stderr on a thread of its own, so that a full stderr pipe never
    stalls a child whose other pipe this thread is serving; the call returned waits for
    the child and gives its exit code and what it wrote to stderr."""
    assert proc.stderr is not None
    errors = proc.stderr
    chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: chunks.append(errors.read()), daemon=True)
    reader.start()

    def ended() -> tuple[int, str]:
        code = proc.wait()
        reader.join()
        return code, b"".join(chunks).decode("utf-8", "replace")

    return ended


def _chain(first: np.ndarray, rest: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    yield first
    yield from rest


# ---------------------------------------------------------------------------------------
# Rendering primitives for the final cut. Callers describe filtergraphs; the command lines
# are built here.

def filter_value(value: str) -> str:
    """Escapes a string to stand as one option value inside a filtergraph: quoted for
    the filter's option parser, then backslash-escaped for the graph parser."""
    quoted = "'" + value.replace("'", "'\\''") + "'"
    return re.sub(r"([\\'\[\],;])", r"\\\1", quoted)


# Containers each codec is written to for intermediate segments.
SEGMENT_SUFFIX = {"h264": ".mp4", "h265": ".mp4", "av1": ".mp4", "prores": ".mov", "ffv1": ".mkv"}


@cache
def ffmpeg_version() -> str:
    """The first line of ``ffmpeg -version`` (part of every render cache key)."""
    with _child([ffmpeg_exe(), "-version"], what="read its version", stdout=True) as proc:
        out, _ = proc.communicate()
    return out.decode("utf-8", "replace").strip().splitlines()[0] if out else ""


@dataclass(frozen=True)
class Input:
    """One ffmpeg input of a render.

    Attributes:
        path: The file.
        seek: Seconds to seek to before decoding (frames before it are dropped, and the
            stream's timestamps then start at 0 at this point).
        loop: Loop the input forever (music beds); the graph decides the length.
        threads: Decoder threads, None for ffmpeg's choice (one is cheapest for a few
            frames: frame threads decode ahead of what is wanted).
    """

    path: Path
    seek: float = 0.0
    loop: bool = False
    threads: int | None = None

    def args(self) -> list[str]:
        args: list[str] = []
        if self.loop:
            args += ["-stream_loop", "-1"]
        if self.threads:
            args += ["-threads", str(self.threads)]
        if self.seek > 0:
            args += ["-ss", f"{self.seek:.6f}"]
        return [*args, "-i", str(self.path)]


def timescale_args(fps: Fraction | None, suffix: str) -> list[str]:
    """mp4/mov options that make every frame boundary and edit list exact.

    The muxer writes edit lists (B-frame delay) in the movie time scale, 1000 by default:
    at 24 fps that rounds a segment's length by a few ticks, and joined segments drift.
    Track and movie share one time scale here, a multiple of the frame rate's numerator.
    """
    if fps is None or suffix.lower() not in (".mp4", ".mov", ".m4v"):
        return []
    scale = fps.numerator * max(1, -(-10000 // fps.numerator))
    return ["-video_track_timescale", str(scale), "-movie_timescale", str(scale)]


def encode_graph(inputs: Sequence[Input], graph: str, output: Path, *, label: str,
                 frames: int, codec: str, crf: int, preset: str, what: str,
                 fps: Fraction | None = None, threads: int | None = None) -> str:
    """Runs a video filtergraph and encodes exactly `frames` frames of its `label` output,
    video only, with stitchcraft's encoder settings for `codec` (`fps` makes mp4/mov
    timestamps exact, see `timescale_args`; `threads` caps the encoder's threads where
    the stream does not depend on them: x264 and x265 keep `PINNED_THREADS`).

    Raises:
        FFmpegError: ffmpeg failed.
    """
    args = ["-nostats"]
    for source in inputs:
        args += source.args()
    args += ["-filter_complex", graph, "-map", f"[{label}]", "-frames:v", str(frames),
             "-an", "-sn", "-dn", "-fps_mode", "passthrough",
             *encoder_args(codec, crf=crf, preset=preset), "-map_metadata", "-1",
             *(["-threads", str(threads)] if threads and codec not in _THREAD_DEPENDENT else []),
             *timescale_args(fps, Path(output).suffix), str(output)]
    return run_ffmpeg(args, what=what)


def decode_graph(inputs: Sequence[Input], graph: str, *, label: str, size: tuple[int, int],
                 frames: int, what: str) -> np.ndarray:
    """Runs a video filtergraph and returns the first `frames` frames of its `label`
    output as uint8 RGB, frames x height x width x 3 (`size` is (width, height), the
    size the graph makes), read from ffmpeg's output as it decodes.

    Raises:
        FFmpegError: ffmpeg failed.
        MediaError: the graph gave fewer frames than asked for.
    """
    width, height = size
    pixels = np.empty((frames, height, width, 3), np.uint8)
    for _ in _graph_frames(inputs, graph, label=label, frames=frames, what=what, into=pixels):
        pass
    return pixels


def iter_graph(inputs: Sequence[Input], graph: str, *, label: str, size: tuple[int, int],
               frames: int, what: str) -> Iterator[np.ndarray]:
    """`decode_graph`, one frame at a time (the same run, so the same pixels), so memory
    stays flat whatever the length. Closing the iterator early ends ffmpeg."""
    yield from _graph_frames(inputs, graph, label=label, frames=frames, what=what, size=size)


def _graph_frames(inputs: Sequence[Input], graph: str, *, label: str, frames: int, what: str,
                  into: np.ndarray | None = None, size: tuple[int, int] | None = None
                  ) -> Iterator[np.ndarray]:
    """The frames of a filtergraph's `label` output as ffmpeg writes them to a pipe,
    each read into ``into[index]`` (or a new array of `size`), never through a file (a
    5 s take at 720p is 330 MB of raw frames).

    Raises:
        FFmpegError: ffmpeg failed.
        MediaError: it gave fewer frames than asked for.
    """
    if into is None:
        assert size is not None, "a size, or arrays to read into"
        shape = (size[1], size[0], 3)
    args = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error"]
    for source in inputs:
        args += source.args()
    args += ["-filter_complex", graph, "-map", f"[{label}]", "-frames:v", str(frames),
             "-an", "-sn", "-dn", "-fps_mode", "passthrough", "-pix_fmt", "rgb24", "-f", "rawvideo",
             "pipe:1"]
    with _child(args, what=what, stdout=True) as proc:
        assert proc.stdout is not None
        pixels, ended = proc.stdout, _stderr_aside(proc)

        def failed() -> StitchError | None:
            code, stderr = ended()
            return None if code == 0 else _failure(code, what, stderr, None)

        for index in range(frames):
            frame = np.empty(shape, np.uint8) if into is None else into[index]
            view, filled = memoryview(frame).cast("B"), 0
            while filled < len(view):
                got = pixels.readinto(view[filled:])
                if not got:
                    break
                filled += got
            if filled != len(view):
                error = failed()
                if error is not None:
                    raise error
                path = inputs[0].path if inputs else Path("-")
                raise MediaError(path, f"gave {index} of the {frames} frames asked for ({what})")
            yield frame
        error = failed()
        if error is not None:
            raise error


def write_raw_frames(inputs: Sequence[Input], graph: str,
                     outputs: Sequence[tuple[str, Path, int] | tuple[str, Path, int, tuple[int, int]]],
                     *, size: tuple[int, int], what: str) -> None:
    """Runs a video filtergraph and writes exactly the frames asked for of each of its
    outputs, given as (graph label, file, frames) or (graph label, file, frames, size),
    to the file as raw uint8 RGB frames of that output's size (default `size`, as
    width, height), frame after frame: nothing is held in memory here.

    Raises:
        FFmpegError: ffmpeg failed.
        MediaError: an output got fewer frames than asked for.
    """
    args = ["-nostats", "-loglevel", "error"]
    for source in inputs:
        args += source.args()
    args += ["-filter_complex", graph]
    for label, output, frames, *_ in outputs:
        args += ["-map", f"[{label}]", "-frames:v", str(frames), "-an", "-sn", "-dn",
                 "-fps_mode", "passthrough", "-pix_fmt", "rgb24", "-f", "rawvideo", str(output)]
    run_ffmpeg(args, what=what)
    for _, output, frames, *own in outputs:
        width, height = own[0] if own else size
        count = output.stat().st_size // (width * height * 3)
        if count < frames:
            path = inputs[0].path if inputs else Path("-")
            raise MediaError(path, f"gave {count} of the {frames} frames asked for ({what})")


def run_audio_graph(inputs: Sequence[Input], graph: str, outputs: Sequence[tuple[str, list[str]]],
                    *, what: str) -> str:
    """Runs an audio filtergraph; each of `outputs` is (graph label, output arguments
    ending in the file name or ``-f null -``). Returns ffmpeg's stderr."""
    args = ["-nostats"]
    for source in inputs:
        args += source.args()
    args += ["-filter_complex", graph]
    for label, output_args in outputs:
        args += ["-map", f"[{label}]", *output_args]
    return run_ffmpeg(args, what=what)


@dataclass(frozen=True)
class Loudness:
    """EBU R128 measurements: loudnorm's first pass (`parse_loudnorm`), or ebur128's
    summary (`parse_ebur128`), which has no target offset (0)."""

    integrated: float
    true_peak: float
    lra: float
    threshold: float
    offset: float = 0.0


def parse_loudnorm(stderr: str) -> Loudness | None:
    """Reads the JSON block loudnorm prints; None if the signal is silent."""
    blocks = re.findall(r"\{[^{}]*\"input_i\"[^{}]*\}", stderr)
    if not blocks:
        raise FFmpegError("loudnorm printed no measurement", stderr)
    values = json.loads(blocks[-1])
    try:
        loudness = Loudness(
            integrated=float(values["input_i"]), true_peak=float(values["input_tp"]),
            lra=float(values["input_lra"]), threshold=float(values["input_thresh"]),
            offset=float(values["target_offset"]))
    except (KeyError, ValueError):
        return None
    if not np.isfinite(loudness.integrated) or loudness.integrated < -70:
        return None
    return loudness


def parse_ebur128(stderr: str) -> Loudness | None:
    """Reads the summary ebur128 prints when it ends (with ``peak=true`` for the true
    peak); None if the signal is silent (no block above the -70 LUFS gate).

    Raises:
        FFmpegError: there is no summary with a true peak in `stderr`.
    """
    summaries = stderr.split("Summary:")
    found = re.search(r"Integrated loudness:\s*I:\s*(\S+) LUFS\s*Threshold:\s*(\S+) LUFS"
                      r".*?Loudness range:\s*LRA:\s*(\S+) LU"
                      r".*?True peak:\s*Peak:\s*(\S+) dBFS", summaries[-1], re.S)
    if len(summaries) < 2 or found is None:
        raise FFmpegError("ebur128 printed no measurement", stderr)
    try:
        integrated, threshold, lra, peak = map(float, found.groups())
    except ValueError:
        return None
    if not np.isfinite(integrated) or integrated <= -70:
        return None
    return Loudness(integrated=integrated, true_peak=peak, lra=lra, threshold=threshold)


def measure_loudness(path: Path, *, stream: str = "a:0", loudness: float | None = None,
                     true_peak: float | None = None) -> Loudness | None:
    """Integrated loudness, true peak and range of a file's audio; None when silent.

    Args:
        loudness, true_peak: The targets loudnorm's second pass will be given (its
            target offset depends on them); loudnorm's defaults when None.

    Raises:
        FFmpegError: ffmpeg failed (no audio stream, unreadable file).
    """
    targets = "".join(f"{name}={value}:" for name, value in (("I", loudness), ("TP", true_peak))
                      if value is not None)
    stderr = run_ffmpeg(["-nostats", "-i", str(path), "-map", f"0:{stream}", "-af",
                         f"loudnorm={targets}print_format=json", "-f", "null", "-"],
                        what=f"measure the loudness of {Path(path).name}")
    return parse_loudnorm(stderr)


def integrated_loudness(path: Path, *, stream: str = "a:0") -> float | None:
    """Integrated loudness (LUFS) of a file's audio; None when silent (or shorter than
    one 400 ms gating block, as `measure_loudness` says too).

    One ``ebur128`` pass: the same EBU R128 measure as `measure_loudness` (within 0.1
    LU; loudnorm runs the same meter) at a fifth of its cost, since it does not
    upsample to find the true peak.

    Raises:
        FFmpegError: ffmpeg failed (no audio stream, unreadable file), or printed no
            measurement.
    """
    stderr = run_ffmpeg(["-nostats", "-i", str(path), "-map", f"0:{stream}", "-af",
                         "ebur128=framelog=quiet", "-f", "null", "-"],
                        what=f"measure the loudness of {Path(path).name}")
    found = re.findall(r"Integrated loudness:\s*I:\s*(\S+) LUFS", stderr)
    if not found:
        raise FFmpegError("ebur128 printed no measurement", stderr)
    try:
        integrated = float(found[-1])
    except ValueError:
        return None
    # ebur128 reports its -70 LUFS gate when no block is loud enough to count.
    return integrated if np.isfinite(integrated) and integrated > -70 else None


def detect_silence(path: Path, *, noise_db: float = -35.0, min_seconds: float = 0.4
                   ) -> list[tuple[float, float]]:
    """Silent stretches of a file's audio as (start, end) seconds (end may be inf)."""
    stderr = run_ffmpeg(["-nostats", "-i", str(path), "-map", "0:a:0", "-af",
                         f"silencedetect=noise={noise_db}dB:d={min_seconds}", "-f", "null", "-"],
                        what=f"find silence in {Path(path).name}")
    starts = [float(m) for m in re.findall(r"silence_start: (-?[\d.]+)", stderr)]
    ends = [float(m) for m in re.findall(r"silence_end: (-?[\d.]+)", stderr)]
    ends += [float("inf")] * (len(starts) - len(ends))
    return list(zip(starts, ends, strict=True))


def mux(video_segments: Sequence[Path], output: Path, *, workdir: Path,
        audio: Path | None = None, subtitles: Path | None = None, faststart: bool = True,
        fps: Fraction | None = None, final_suffix: str | None = None,
        tags: Mapping[str, str] | None = None) -> None:
    """Joins video segments by stream copy (concat demuxer) and muxes audio and a
    subtitle track beside them. Segments must share codec parameters exactly. The
    container carries no metadata but `tags` (``comment``, ``description``, ...).

    Raises:
        FFmpegError: ffmpeg failed.
    """
    from .housekeeping import owner_tag

    listing = workdir / f"concat.{owner_tag()}.{threading.get_ident()}.txt"
    lines = ["ffconcat version 1.0"]
    for segment in video_segments:
        escaped = str(Path(segment).resolve()).replace("'", "'\\''")
        lines.append(f"file '{escaped}'")
    listing.write_text("\n".join(lines) + "\n", encoding="utf-8")
    args = ["-nostats", "-f", "concat", "-safe", "0", "-i", str(listing)]
    maps = ["-map", "0:v:0"]
    if audio is not None:
        args += ["-i", str(audio)]
        maps += ["-map", "1:a:0"]
    if subtitles is not None:
        args += ["-i", str(subtitles)]
        maps += ["-map", f"{1 + (audio is not None)}:s:0"]
    subtitle_codec = "mov_text" if (final_suffix or output.suffix).lower() in (
        ".mp4", ".mov", ".m4v") else (
        "ass" if subtitles is not None and subtitles.suffix.lower() == ".ass" else "srt")
    args += [*maps, "-c:v", "copy", "-c:a", "copy", "-c:s", subtitle_codec,
             "-map_metadata", "-1", "-map_chapters", "-1"]
    for name, value in (tags or {}).items():
        args += ["-metadata", f"{name}={value}"]
    # The container is picked from the final name, not the temporary one.
    suffix = (final_suffix or output.suffix).lower()
    if faststart and suffix in (".mp4", ".mov", ".m4v"):
        args += ["-movflags", "+faststart"]
    args += timescale_args(fps, suffix)
    container = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}.get(suffix)
    if container:
        args += ["-f", container]
    try:
        run_ffmpeg([*args, str(output)], what=f"join {len(video_segments)} segments into "
                                              f"{output.name}")
    finally:
        with contextlib.suppress(FileNotFoundError):
            listing.unlink()


@dataclass(frozen=True)
class StreamSignature:
    """What must match for two video streams to be joined by stream copy."""

    codec: str
    width: int
    height: int
    pix_fmt: str
    profile: str
    extradata: bytes

    @classmethod
    def of(cls, path: Path) -> StreamSignature:
        info = probe(path)
        return cls(info.codec, info.width, info.height, info.pix_fmt, info.profile, info.extradata)


@dataclass(frozen=True)
class PacketIndex:
    """Display-order frame indices of a CFR video's packets.

    Attributes:
        keyframes: Display indices of keyframes, ascending.
        frames: Number of frames.
        exact: Every packet sits exactly on the frame grid of `fps` and the time base
            can express that grid (a precondition for copying spans).
    """

    keyframes: tuple[int, ...]
    frames: int
    exact: bool


def index_packets(path: Path, fps: Fraction) -> PacketIndex:
    """Reads a video's packet timestamps (no decoding) and places them on the grid."""
    path = Path(path)
    with _open(path) as container:
        video = container.streams.video[0]
        tb = video.time_base
        step = Fraction(1) / fps / tb if tb else Fraction(0)
        first = video.start_time or 0
        keyframes: list[int] = []
        seen: set[int] = set()
        exact = bool(tb) and step.denominator == 1 and step > 0
        for packet in container.demux(video):
            if packet.pts is None or not packet.size:
                continue
            offset = Fraction(packet.pts - first)
            index = round(offset / step) if step else 0
            if offset != index * step or index in seen:
                exact = False
            seen.add(index)
            if packet.is_keyframe:
                keyframes.append(index)
        frames = len(seen)
        if seen and (min(seen) != 0 or max(seen) != frames - 1):
            exact = False
    return PacketIndex(tuple(sorted(keyframes)), frames, exact)


def keyframe_seconds(path: Path, start: float, end: float) -> list[float]:
    """The display times (seconds from the video's first frame) of a video's keyframes
    from the last one at or before `start` through `end`, read from its packets without
    decoding, and only around that stretch of a long file.

    Raises:
        MediaError: the file is unreadable or has no video.
    """
    import av

    path = Path(path)
    with _open(path) as container:
        if not container.streams.video:
            raise MediaError(path, "has no video stream")
        video = container.streams.video[0]
        tb = video.time_base
        if not tb:
            return []
        first = video.start_time or 0
        found: list[float] = []
        try:
            if start > 0:
                container.seek(first + int(start / tb), stream=video, backward=True)
            for packet in container.demux(video):
                if packet.pts is None:
                    continue
                if packet.dts is not None and float((packet.dts - first) * tb) > end:
                    break
                if packet.is_keyframe:
                    found.append(float((packet.pts - first) * tb))
        except av.error.FFmpegError as exc:
            raise MediaError(path, f"cannot read its packets ({_reason(exc)})") from None
    return sorted(found)


def copy_video_span(source: Path, output: Path, start: int, end: int, fps: Fraction) -> None:
    """Copies display frames ``start .. end`` of `source` into `output` without decoding.

    `start` must be a keyframe and `end` a keyframe or the end of the stream, in a file
    whose GOPs are closed (no frame of the span may depend on a frame outside it).

    Raises:
        MediaError: the span cannot be copied exactly (the caller re-encodes it instead).
    """
    import av

    source = Path(source)
    flags = timescale_args(fps, Path(output).suffix)
    options = {flag.lstrip("-"): value for flag, value in zip(flags[::2], flags[1::2], strict=True)}
    with _open(source) as container, av.open(str(output), "w", options=options) as out:
        video = container.streams.video[0]
        stream = out.add_stream_from_template(video)
        tb = video.time_base
        step = Fraction(1) / fps / tb
        first = video.start_time or 0
        shift = first + int(start * step)
        copying = False
        copied: list[int] = []
        for packet in container.demux(video):
            if packet.pts is None or not packet.size:
                continue
            index = round(Fraction(packet.pts - first) / step)
            if packet.is_keyframe and index == start:
                copying = True
            elif packet.is_keyframe and index == end and copying:
                break
            if not copying:
                continue
            copied.append(index)
            packet.pts -= shift
            if packet.dts is not None:
                packet.dts -= shift
            packet.stream = stream
            out.mux(packet)
    if sorted(copied) != list(range(start, end)):
        output.unlink(missing_ok=True)
        raise MediaError(source, f"frames {start}-{end} cannot be copied exactly "
                                 "(open GOP or irregular timestamps)")


def video_packet_count(path: Path) -> int:
    """Video frames in a file, counted from its packets (exact, no decoding)."""
    return probe(path, count_frames=True).frames


def container_tags(path: str | os.PathLike[str]) -> dict[str, str]:
    """The container's metadata tags (``comment``, ``description``, ...), names in lower
    case (Matroska writes them in upper case).

    Raises:
        MediaError: missing or unreadable.
    """
    import av

    try:
        with av.open(str(path)) as container:
            return {str(k).lower(): str(v) for k, v in container.metadata.items()}
    except (av.error.FFmpegError, OSError) as exc:
        raise MediaError(path, f"cannot be read ({_reason(exc)})") from None


def probe_audio(path: str | os.PathLike[str]) -> tuple[int, int, float]:
    """(sample rate, channels, seconds) of a file's first audio stream.

    Raises:
        MediaError: missing, unreadable, or without audio.
    """
    path = Path(path)
    with _open(path) as container:
        if not container.streams.audio:
            raise MediaError(path, "has no audio stream")
        audio = container.streams.audio[0]
        if audio.duration is not None and audio.time_base:
            seconds = float(audio.duration * audio.time_base)
        elif container.duration:
            seconds = container.duration / 1_000_000
        else:
            seconds = 0.0
        return audio.codec_context.sample_rate, audio.codec_context.channels, seconds


def data_end(path: str | os.PathLike[str]) -> float:
    """Seconds from the file's start to the end of its last packet, over all streams
    (demuxed, not decoded): less than the stated duration when a file is cut short."""
    return probe(path).data_end
