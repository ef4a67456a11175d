"""Assembly: the chosen takes, joined into the final cut.

The timeline
------------
Everything is counted in frames of the output rate. Clip ``k`` fills ``frames_k`` frames
of the programme, *including* the frames it shares with its neighbours. A transition of
``T_k`` frames into clip ``k`` overlaps the last ``T_k`` frames of clip ``k-1`` with the
first ``T_k`` frames of clip ``k``, so the programme has::

    total = sum(frames_k) - sum(T_k for k >= 1)

frames, and clip ``k`` starts at programme frame::

    start_k = sum(frames_j for j < k) - sum(T_j for 1 <= j <= k)

A cut is a transition of 0 frames. Frame ``i`` (0-based) of a T-frame transition shows
frame ``frames_{k-1} - T + i`` of the outgoing clip and frame ``i`` of the incoming one,
the incoming one at weight ``(i + 1) / (T + 1)``: neither end of a dissolve is a pure
copy of either clip, and a dissolve of T frames is symmetric. Wipes, slides and fades
through a colour use the same progress. A fade in at the start (the first clip's
``fade``) and a fade out at the end (`CutSpec.ending`) darken frames of the programme;
they never lengthen or shorten it. Captions (times relative to their clip's first
frame), the take audio (each clip's sound crossfades over the same ``T_k`` frames), the
music and the voice-over all use these same programme frames.

Each clip takes ``frames_k`` frames of its file on the output grid, from its in-point
(`CutClip.start`: a take that is a span of a longer file, such as footage, begins inside
it; picture and sound are both read from there); a file that runs short holds its last
frame, and the result says so in `AssembledCut.warnings`.

Rendering
---------
The cut is rendered in segments, never as one giant filtergraph: one segment per clip
body (its frames outside any overlap) followed by the transition into the next clip, so
each render decodes one clip and the head of the next, and memory stays flat however
long the cut. All segments use identical encoder settings and are joined by stream copy.
A stretch of a body with no transition, text, fade, logo or burned subtitle, whose take
already matches the output exactly (codec and its parameter sets, size, frame rate,
pixel format, square pixels, no rotation) is not decoded at all: its packets are copied
from keyframe to keyframe (smart rendering), and only the frames around it are encoded.
Segments are cached in the work folder by the hash of everything that makes them, so a
re-render redoes only what changed; a cached segment is reused only while it still holds
its planned frames (a damaged one is deleted and rendered again, with a warning). The
soundtrack is one separate continuous pass (`stitchcraft.assemble.audio`), made while the segments
render. The joined file is verified (`stitchcraft.verify`) under a temporary name and
renamed into place only if it passes.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import FFmpegError, MediaError
from ..fonts import fit_text, sans_font_file
from ..housekeeping import owner_tag
from ..media import (
    SEGMENT_SUFFIX,
    Input,
    MediaInfo,
    PacketIndex,
    StreamSignature,
    atomic_output,
    copy_video_span,
    encode_graph,
    encoder_args,
    ffmpeg_version,
    index_packets,
    mux,
    video_packet_count,
)
from ..timeline import format_fps
from ..verify import Expected, verify_render
from .audio import ClipSound, Soundtrack, render_soundtrack
from .captions import Caption, drawtext_filter, logo_chain, subtitles_filter, write_text_file
from .normalize import Grid, clip_chain, grid_frames, inspect_clip, seek_seconds

if TYPE_CHECKING:
    from ..storyboard import Text

__all__ = ["AssembledCut", "CutClip", "CutSpec", "CutTransition", "XFADE", "assemble",
           "prerender", "scratch_folders"]

# Transition names and the xfade transition that draws each ('fade' picks by colour).
XFADE = {
    "dissolve": "fade", "fadeblack": "fadeblack", "fadewhite": "fadewhite",
    "wipeleft": "wipeleft", "wiperight": "wiperight", "wipeup": "wipeup",
    "wipedown": "wipedown", "slideleft": "slideleft", "slideright": "slideright",
    "slideup": "slideup", "slidedown": "slidedown", "circleopen": "circleopen",
    "circleclose": "circleclose", "radial": "radial", "smoothleft": "smoothleft",
    "smoothright": "smoothright", "pixelize": "pixelize", "zoomin": "zoomin",
}
_FADES = ("fade", "fadeblack", "fadewhite")
# Stream-copy only stretches at least this long (seconds): shorter ones are not worth
# the extra segment.
_MIN_COPY_SECONDS = 0.5


@dataclass(frozen=True)
class CutTransition:
    """How a clip begins: the join from the previous clip (see the module docstring).

    Attributes:
        type: ``cut``, ``dissolve``, ``fade`` (through `color`), or an xfade wipe/slide.
        frames: Overlap length in output frames (0 for a cut).
        color: ``black`` or ``white``, for ``fade``.
    """

    type: str
    frames: int
    color: str = "black"

    @property
    def xfade(self) -> str:
        if self.type == "fade":
            return "fadewhite" if self.color == "white" else "fadeblack"
        return XFADE[self.type]

    @property
    def fade_color(self) -> str:
        return {"fadeblack": "black", "fadewhite": "white"}.get(self.type, self.color)


@dataclass(frozen=True)
class CutClip:
    """One clip of the cut.

    Attributes:
        shot_id: The shot it fills (for messages).
        path: The chosen take (any size, rate and container: it is normalised).
        frames: Programme frames it fills, overlaps included; `frames` frames of the file
            from `start` are used, the last held if the file is short.
        transition: How it begins. On the first clip only a cut or a fade in from a
            colour (which does not shorten the programme).
        fit: ``cover``, ``contain`` or ``blur-pad``.
        text: A caption over this clip (times relative to the clip's first frame).
        use_audio: Mix the take's own audio, if it has any.
        volume_db: Gain for that audio.
        start: The in-point: seconds into `path` where the clip's first frame is shown
            (best on a frame of the file); None or 0 from the top.
    """

    shot_id: str
    path: Path
    frames: int
    transition: CutTransition
    fit: str = "cover"
    text: Text | None = None
    use_audio: bool = True
    volume_db: float = 0.0
    start: float | None = None

    @property
    def in_point(self) -> float:
        """Seconds into the file where the clip begins."""
        return self.start or 0.0


@dataclass(frozen=True)
class CutSpec:
    """A whole cut: clips, output grid, encoder, sound and overlays.

    Attributes:
        smart: Stream-copy stretches whose takes already match the output.
        jobs: Segments (and the soundtrack) rendered at once (0: two, which keeps both
            cores of a small machine busy through each segment's start and end; memory
            grows with it).
    """

    clips: list[CutClip]
    fps: Fraction
    width: int
    height: int
    codec: str = "h264"
    preset: str = "veryfast"
    crf: int = 20
    ending: CutTransition | None = None
    music: Path | None = None
    voiceover: Path | None = None
    loudness: float = -14.0
    true_peak: float = -1.0
    music_volume_db: float = 0.0
    duck_db: float = -12.0
    music_fade: float = 1.0
    subtitles: Path | None = None
    subtitles_mode: str = "track"
    logo: Path | None = None
    smart: bool = True
    jobs: int = 0

    @property
    def total_frames(self) -> int:
        """Programme frames: clip frames less every overlap (a cut has none)."""
        return (sum(clip.frames for clip in self.clips)
                - sum(clip.transition.frames for clip in self.clips[1:]
                      if clip.transition.type != "cut"))

    @property
    def grid(self) -> Grid:
        return Grid(self.width, self.height, self.fps)


@dataclass(frozen=True)
class AssembledCut:
    """A rendered, verified cut.

    Attributes:
        segments: Segments joined; copied_segments of them were stream-copied.
        loudness: Integrated loudness of the output (LUFS), None without sound.
        warnings: Things the user should know (short takes held, long voice-over cut).
    """

    path: Path
    frames: int
    duration: float
    width: int
    height: int
    fps: Fraction
    loudness: float | None
    warnings: list[str]
    segments: int
    copied_segments: int


@dataclass(frozen=True)
class _Placed:
    """A clip resolved onto the programme."""

    clip: CutClip
    info: MediaInfo
    start: int  # programme frame of its first frame
    head: int  # frames shared with the previous clip
    tail: int  # frames shared with the next clip

    @property
    def body(self) -> tuple[int, int]:
        return self.head, self.clip.frames - self.tail


@dataclass(frozen=True)
class _Piece:
    """One piece of the programme, rendered by one ffmpeg run or copied ("segment" in the
    plan means an engine call; the functions and cache files here still say segment).

    A piece shows clip `clip`'s frames ``local_start .. local_end`` (none when they are
    equal) and, when `join` is set, then the transition into the next clip.
    """

    clip: int
    local_start: int
    local_end: int
    join: bool
    copy: bool
    start: int  # programme frame
    frames: int


@dataclass
class _Overlays:
    """Programme-time effects, and the frames they touch."""

    fade_in: tuple[int, str] | None = None
    fade_out: tuple[int, str] | None = None
    captions: list[tuple[Caption, Path]] = field(default_factory=list)
    subtitles: Path | None = None
    logo: Path | None = None

    def busy(self, total: int) -> list[tuple[int, int]]:
        """Programme frame ranges no stream copy may cover."""
        if self.subtitles is not None or self.logo is not None:
            return [(0, total)]
        ranges = []
        if self.fade_in:
            ranges.append((0, self.fade_in[0]))
        if self.fade_out:
            ranges.append((total - self.fade_out[0] - 1, total))
        return ranges


def assemble(cut: CutSpec, output: Path, *, workdir: Path,
             progress: Callable[[str, float], None] | None = None,
             tags: Mapping[str, str] | None = None,
             seal: Callable[[Path], None] | None = None) -> AssembledCut:
    """Renders the cut to `output` (written under a temporary name, verified, renamed).

    Args:
        cut: What to render.
        output: The final file (.mp4, .mov or .mkv).
        workdir: Where segments are cached and intermediate files live.
        progress: Called with (stage, fraction done).
        tags: Container metadata tags (`stitchcraft.provenance`).
        seal: Called with the verified temporary file before it is renamed into place
            (signs its content credentials); if it raises, nothing is published.

    Raises:
        MediaError: an input is unusable (names the file and the reason).
        FFmpegError: ffmpeg failed.
        VerificationError: the output did not match the plan; nothing is left at `output`.
        ValueError: the cut itself is inconsistent (overlaps longer than clips).
    """
    output = Path(output)
    work = Path(workdir) / "assemble"
    work.mkdir(parents=True, exist_ok=True)
    report = progress or (lambda stage, fraction: None)
    warnings: list[str] = []
    placed = _place(cut, warnings)
    total = cut.total_frames
    overlays = _overlays(cut, placed, total, work)
    segments = _plan_segments(cut, placed, overlays, total, work, warnings)
    track = _soundtrack(cut, placed, total)
    audio_path = work / f"{output.stem}.{owner_tag()}.audio.m4a" if track.has_sources else None
    loudness_target = None
    report("segments", 0.0)
    try:
        # The soundtrack is one ffmpeg run independent of the picture: it is rendered by
        # the segments' workers, first since it is the longest, so that the machine never
        # runs more ffmpeg processes (and holds more memory) than `CutSpec.jobs` allows.
        with ThreadPoolExecutor(max_workers=cut.jobs or 2) as workers:
            sound = (workers.submit(render_soundtrack, track, audio_path, workdir=work)
                     if audio_path is not None else None)
            try:
                files = _render_segments(cut, placed, overlays, segments, work, report,
                                         warnings, workers)
            except BaseException:
                workers.shutdown(cancel_futures=True)  # start nothing more for a failed cut
                raise
            if sound is not None:
                measured = sound.result()
                warnings += track.warnings
                loudness_target = cut.loudness if measured is not None else None
                report("audio", 1.0)
        subtitles_track = cut.subtitles if cut.subtitles and cut.subtitles_mode == "track" else None
        report("verify", 0.0)
        with atomic_output(output) as partial:
            mux(files, partial, workdir=work, audio=audio_path, subtitles=subtitles_track,
                fps=cut.fps, final_suffix=output.suffix, tags=tags)
            measured_out = verify_render(partial, Expected(
                frames=total, width=cut.width, height=cut.height, fps=cut.fps,
                audio=audio_path is not None, loudness=loudness_target))
            if seal is not None:
                seal(partial)
    finally:
        if audio_path is not None:
            audio_path.unlink(missing_ok=True)
    report("verify", 1.0)
    return AssembledCut(
        path=output, frames=total, duration=measured_out.duration, width=cut.width,
        height=cut.height, fps=cut.fps, loudness=measured_out.loudness, warnings=warnings,
        segments=len(segments), copied_segments=sum(s.copy for s in segments))


def _place(cut: CutSpec, warnings: list[str], known: Sequence[bool] | None = None) -> list[_Placed]:
    """Checks the clips and resolves each onto the programme (only the `known` ones are
    read: placing needs frame counts, not files)."""
    if not cut.clips:
        raise ValueError("a cut needs at least one clip")
    if cut.width % 2 or cut.height % 2 or cut.width < 16 or cut.height < 16:
        raise ValueError(f"output size {cut.width}x{cut.height}: both sides must be even, >= 16")
    if cut.codec not in SEGMENT_SUFFIX:
        raise ValueError(f"unknown codec '{cut.codec}'")
    placed: list[_Placed] = []
    start = 0
    infos: dict[Path, MediaInfo] = {}
    for index, clip in enumerate(cut.clips):
        head = clip.transition.frames if index and clip.transition.type != "cut" else 0
        nxt = cut.clips[index + 1] if index + 1 < len(cut.clips) else None
        tail = nxt.transition.frames if nxt and nxt.transition.type != "cut" else 0
        where = f"clip {index + 1} ({clip.shot_id})"
        if clip.frames <= 0:
            raise ValueError(f"{where}: needs at least one frame, has {clip.frames}")
        if head < 0 or tail < 0:
            raise ValueError(f"{where}: a transition cannot have negative length")
        if head + tail > clip.frames:
            raise ValueError(f"{where}: its transitions ({head} + {tail} frames) are longer "
                             f"than the clip ({clip.frames} frames)")
        if index and clip.transition.type not in ("cut", "fade", *XFADE):
            raise ValueError(f"{where}: unknown transition '{clip.transition.type}'")
        if index == 0 and clip.transition.type not in ("cut", *_FADES) and clip.transition.frames:
            warnings.append(f"{where}: the first clip can only fade in; "
                            f"'{clip.transition.type}' becomes a fade from black")
        if known is not None and not known[index]:
            start -= head
            placed.append(_Placed(clip, _UNKNOWN, start, head, tail))
            start += clip.frames
            continue
        key = Path(clip.path).resolve()
        if key not in infos:
            infos[key] = inspect_clip(Path(clip.path))
        info = infos[key]
        if clip.in_point < 0:
            raise ValueError(f"{where}: its in-point {clip.in_point} s is before the file's start")
        available = grid_frames(info, cut.fps) - round(clip.in_point * cut.fps)
        if available < clip.frames:
            warnings.append(f"{where}: {Path(clip.path).name} has {max(available, 0)} frames at "
                            f"{format_fps(cut.fps)} fps, {clip.frames} needed; its last frame "
                            f"is held for {clip.frames - available}")
        start -= head
        placed.append(_Placed(clip, info, start, head, tail))
        start += clip.frames
    return placed


def prerender(cut: CutSpec, known: Sequence[bool], *, workdir: Path,
              submit: Callable[[Callable[[], Path]], Future[Path]],
              started: set[tuple[int, int, int, bool]], warnings: list[str]) -> list[Future[Path]]:
    """Renders ahead of `assemble`, into the same cache, the pieces of `cut` whose clips
    are all `known` (a piece ending in a transition needs the next clip too), so that
    the cut's assembly finds them done.

    Called while the other clips are still being chosen: `cut` holds every clip, the
    unknown ones with any path (they are not read). The pieces are exactly the ones
    `assemble` will plan, with the same cache keys, as long as the known clips are the
    ones the cut ends up with; if not, they are never used.

    Args:
        submit: Runs a piece's render (on a worker), returning its future.
        started: Pieces submitted by earlier calls (updated): none is submitted twice.
        warnings: Gets what the pieces' renders met, as `assemble` would say it (a damaged
            cached piece, rendered again: the assembly then finds it whole and says nothing).

    Returns:
        The futures of the pieces submitted by this call.
    """
    work = Path(workdir) / "assemble"
    work.mkdir(parents=True, exist_ok=True)
    said_again: list[str] = []  # the cut's own problems: `assemble` says them
    placed = _place(cut, said_again, known)
    total = cut.total_frames
    overlays = _overlays(cut, placed, total, work)
    folder = work / "segments"
    folder.mkdir(parents=True, exist_ok=True)
    busy = overlays.busy(total) + [_caption_frames(c, cut.fps) for c, _ in overlays.captions]
    reference = _reference_signature(cut, work, warnings) if cut.smart else None
    futures = []
    for piece in _pieces(cut, placed, busy, reference, known):
        ready = known[piece.clip] and (not piece.join or known[piece.clip + 1])
        key = (piece.clip, piece.local_start, piece.local_end, piece.join)
        if ready and key not in started:
            started.add(key)
            futures.append(submit(functools.partial(_render_segment, cut, placed, overlays, piece,
                                                    folder, warnings)))
    return futures


# Stands for the probe of a clip not chosen yet: `prerender` never reads it (an
# instance without fields, so a read would fail loudly).
_UNKNOWN = MediaInfo.__new__(MediaInfo)


def _overlays(cut: CutSpec, placed: list[_Placed], total: int, work: Path) -> _Overlays:
    overlays = _Overlays()
    first = cut.clips[0].transition
    if first.type != "cut" and first.frames > 0:
        overlays.fade_in = (min(first.frames, total), first.fade_color
                            if first.type in _FADES else "black")
    if cut.ending is not None and cut.ending.type != "cut" and cut.ending.frames > 0:
        overlays.fade_out = (min(cut.ending.frames, total), cut.ending.fade_color)
    for spot in placed:
        text = spot.clip.text
        if text is None:
            continue
        begin = float(Fraction(spot.start) / cut.fps) + text.start
        clip_end = float(Fraction(spot.start + spot.clip.frames) / cut.fps)
        end = min(clip_end, begin + text.duration) if text.duration else clip_end
        if end <= begin:
            continue
        if text.font and not Path(text.font).expanduser().is_file():
            raise MediaError(Path(text.font), "font file not found")
        text = _fit_caption(text, cut.width, cut.height)
        overlays.captions.append((Caption(text, begin, end),
                                  write_text_file(text.content, work / "text")))
    if cut.subtitles is not None:
        if not Path(cut.subtitles).is_file():
            raise MediaError(cut.subtitles, "subtitle file not found")
        if cut.subtitles_mode not in ("burn", "track"):
            raise ValueError(f"subtitles_mode must be 'burn' or 'track', not '{cut.subtitles_mode}'")
        if cut.subtitles_mode == "burn":
            overlays.subtitles = Path(cut.subtitles)
    if cut.logo is not None:
        if not cut.logo.is_file():
            raise MediaError(cut.logo, "logo file not found")
        overlays.logo = cut.logo
    return overlays


def _caption_frames(caption: Caption, fps: Fraction) -> tuple[int, int]:
    return int(caption.start * fps), int(caption.end * fps) + 1


def _plan_segments(cut: CutSpec, placed: list[_Placed], overlays: _Overlays, total: int,
                   work: Path, warnings: list[str]) -> list[_Piece]:
    """Splits the programme into segments, choosing which stretches to stream-copy."""
    busy = overlays.busy(total) + [_caption_frames(c, cut.fps) for c, _ in overlays.captions]
    reference = _reference_signature(cut, work, warnings) if cut.smart else None
    segments = _pieces(cut, placed, busy, reference)
    planned = sum(s.frames for s in segments)
    if planned != total:
        raise AssertionError(f"segments cover {planned} frames, the programme {total}")
    return segments


def _pieces(cut: CutSpec, placed: list[_Placed], busy: list[tuple[int, int]],
            reference: StreamSignature | None, known: Sequence[bool] | None = None) -> list[_Piece]:
    """The programme's pieces, clip by clip (a clip not `known` yet is not read: its
    body is planned as one encoded piece, which only `prerender` sees)."""
    segments: list[_Piece] = []
    for index, spot in enumerate(placed):
        body_start, body_end = spot.body
        readable = known is None or known[index]
        copies = _copy_spans(cut, spot, busy, reference) if reference and readable else []
        cursor = body_start
        for copy_start, copy_end in copies:
            if copy_start > cursor:
                segments.append(_Piece(index, cursor, copy_start, False, False,
                                         spot.start + cursor, copy_start - cursor))
            segments.append(_Piece(index, copy_start, copy_end, False, True,
                                     spot.start + copy_start, copy_end - copy_start))
            cursor = copy_end
        joins = spot.tail > 0
        if cursor < body_end or joins:
            segments.append(_Piece(index, cursor, body_end, joins, False,
                                     spot.start + cursor, body_end - cursor + spot.tail))
    return segments


def _copy_spans(cut: CutSpec, spot: _Placed, busy: list[tuple[int, int]],
                reference: StreamSignature) -> list[tuple[int, int]]:
    """Stretches of a clip's body (clip frames) whose packets can be copied as they are."""
    info = spot.info
    if (info.vfr or info.rotation or info.fps != cut.fps
            or (info.width, info.height) != (cut.width, cut.height)
            or info.sar not in (0, 1)):
        return []
    offset = _frame_offset(spot.clip, cut.fps)
    if offset is None or StreamSignature.of(spot.clip.path) != reference:
        return []
    packets: PacketIndex = index_packets(spot.clip.path, cut.fps)
    if not packets.exact:
        return []
    body_start, body_end = spot.body
    body_end = min(body_end, packets.frames - offset)
    # Free stretches of the body, in frames of the file.
    free = [(body_start + offset, body_end + offset)]
    for busy_start, busy_end in busy:
        local_start, local_end = busy_start - spot.start + offset, busy_end - spot.start + offset
        free = [piece for a, b in free for piece in
                ((a, min(b, local_start)), (max(a, local_end), b)) if piece[1] > piece[0]]
    boundaries = sorted(set(packets.keyframes) | {packets.frames})
    minimum = max(1, int(_MIN_COPY_SECONDS * cut.fps))
    spans = []
    for a, b in free:
        inside = [k for k in boundaries if a <= k <= b]
        starts = [k for k in inside if k in packets.keyframes]
        if not starts:
            continue
        copy_start, copy_end = starts[0], inside[-1]
        if copy_end - copy_start >= minimum:
            spans.append((copy_start - offset, copy_end - offset))
    return spans


def _frame_offset(clip: CutClip, fps: Fraction) -> int | None:
    """The clip's in-point in frames of a file on the output grid; None when it falls
    between frames (its packets cannot then be copied as they are)."""
    frames = clip.in_point * fps
    offset = round(frames)
    return offset if abs(frames - offset) < 0.01 else None


def _reference_signature(cut: CutSpec, work: Path, warnings: list[str]) -> StreamSignature:
    """The parameter sets this cut's encoder writes (what a copied take must match)."""
    key = _hash(["reference", ffmpeg_version(), cut.codec, str(cut.crf), cut.preset,
                 str(cut.width), str(cut.height), format_fps(cut.fps)])
    path = work / "segments" / f"ref-{key}{SEGMENT_SUFFIX[cut.codec]}"
    if not _reusable(path, 2, warnings):
        path.parent.mkdir(parents=True, exist_ok=True)
        graph = (f"color=c=black:s={cut.width}x{cut.height}:r={format_fps(cut.fps)},"
                 "format=yuv420p,setparams=range=tv:color_primaries=unknown:"
                 "color_trc=unknown:colorspace=unknown,trim=end_frame=2[v]")
        with atomic_output(path) as partial:
            encode_graph([], graph, partial, label="v", frames=2, codec=cut.codec,
                         crf=cut.crf, preset=cut.preset, what="encode a reference frame",
                         fps=cut.fps)
    return StreamSignature.of(path)


def _render_segments(cut: CutSpec, placed: list[_Placed], overlays: _Overlays,
                     segments: list[_Piece], work: Path,
                     report: Callable[[str, float], None], warnings: list[str],
                     workers: ThreadPoolExecutor) -> list[Path]:
    folder = work / "segments"
    folder.mkdir(parents=True, exist_ok=True)
    done = 0
    lock = threading.Lock()

    def render(segment: _Piece) -> Path:
        nonlocal done
        path = _render_segment(cut, placed, overlays, segment, folder, warnings)
        with lock:
            done += 1
            report("segments", done / len(segments))
        return path

    files = list(workers.map(render, segments))
    signatures = {StreamSignature.of(f) for f in files}
    if len(signatures) > 1:
        raise FFmpegError("segments came out with different codec parameters and cannot be "
                          "joined by stream copy")
    return files


def _render_segment(cut: CutSpec, placed: list[_Placed], overlays: _Overlays,
                    segment: _Piece, folder: Path, warnings: list[str]) -> Path:
    spot = placed[segment.clip]
    suffix = SEGMENT_SUFFIX[cut.codec]
    if segment.copy:
        offset = _frame_offset(spot.clip, cut.fps) or 0
        first, end = segment.local_start + offset, segment.local_end + offset
        key = _hash(["copy", _identity(spot.clip.path), str(first), str(end), format_fps(cut.fps)])
        path = folder / f"copy-{key}{suffix}"
        with _rendering(path):
            if not _reusable(path, segment.frames, warnings):
                with atomic_output(path) as partial:
                    copy_video_span(spot.clip.path, partial, first, end, cut.fps)
        return path
    inputs, graph, files = _segment_graph(cut, placed, overlays, segment)
    encoder = encoder_args(cut.codec, crf=cut.crf, preset=cut.preset)
    key = _hash(["encode", ffmpeg_version(), graph, str(segment.frames), *encoder,
                 *(f"{i.seek}" for i in inputs), *(_identity(f) for f in files)])
    path = folder / f"seg-{key}{suffix}"
    what = (f"render {spot.clip.shot_id} frames {segment.local_start}-{segment.local_end}"
            + (" and the transition after it" if segment.join else ""))
    with _rendering(path):
        if _reusable(path, segment.frames, warnings):
            return path
        with atomic_output(path) as partial:
            encode_graph(inputs, graph, partial, label="out", frames=segment.frames,
                         codec=cut.codec, crf=cut.crf, preset=cut.preset, what=what, fps=cut.fps,
                         threads=_encoder_threads(cut))
            made = video_packet_count(partial)
            if made != segment.frames:
                raise FFmpegError(f"ffmpeg wrote {made} frames, {segment.frames} planned, "
                                  f"to {what}")
    return path


# Segments being rendered in this process, by path, and how many threads want each: a
# piece rendered ahead (`prerender`) that the assembly reaches while it is still being
# made is waited for, not made twice.
_RENDERING: dict[Path, tuple[threading.Lock, int]] = {}
_RENDERING_LOCK = threading.Lock()


@contextlib.contextmanager
def _rendering(path: Path) -> Iterator[None]:
    """Holds the segment at `path` for this thread while it is checked and rendered."""
    with _RENDERING_LOCK:
        lock, users = _RENDERING.get(path, (threading.Lock(), 0))
        _RENDERING[path] = (lock, users + 1)
    try:
        with lock:
            yield
    finally:
        with _RENDERING_LOCK:
            users = _RENDERING[path][1] - 1
            if users:
                _RENDERING[path] = (lock, users)
            else:
                del _RENDERING[path]  # a long batch keeps no lock per segment it ever made


def _reusable(path: Path, frames: int, warnings: list[str]) -> bool:
    """Whether a cached segment exists and still holds its `frames` frames (counted from
    its packets, no decoding). A damaged one is deleted, with a warning, so that the
    caller renders it again."""
    if not path.exists():
        return False
    try:
        found = video_packet_count(path)
    except MediaError as exc:
        problem = f"unreadable: {exc.reason}"
    else:
        if found == frames:
            return True
        problem = f"{found} frames, {frames} planned"
    path.unlink(missing_ok=True)
    warnings.append(f"cached segment {path} was damaged ({problem}); rendering it again")
    return False


def scratch_folders(workdir: Path) -> list[Path]:
    """The folders under a work folder where assembly writes temporary names (for
    `stitchcraft.housekeeping.sweep`)."""
    work = Path(workdir) / "assemble"
    return [work, work / "segments"]


def _segment_graph(cut: CutSpec, placed: list[_Placed], overlays: _Overlays,
                   segment: _Piece) -> tuple[list[Input], str, list[Path]]:
    """The inputs and filtergraph (output label ``out``) for one encoded segment."""
    grid = cut.grid
    spot = placed[segment.clip]
    clip = spot.clip
    span = segment.local_end - segment.local_start
    chains: list[str] = []
    inputs: list[Input] = []
    files: list[Path] = []
    end = clip.frames if segment.join else segment.local_end
    # A transition of T frames is drawn by xfade over T + 1 frames whose first is pure
    # outgoing picture (the frame before the overlap, or a clone of the overlap's first
    # frame when there is none) and then dropped: this gives the (i + 1) / (T + 1) weights.
    before = end - spot.tail - 1
    first = segment.local_start if span else max(0, before)
    seek = seek_seconds(spot.info, first, cut.fps)
    # The chain counts time from the in-point: the input is opened that much further in.
    # One decoder thread: pieces render side by side, and the encoder is the slow part
    # (frame threads would only hold more frames in memory).
    inputs.append(Input(Path(clip.path), clip.in_point + seek, threads=1))
    files.append(Path(clip.path))
    chains.append(clip_chain("0:v:0", "a", spot.info, grid, clip.fit,
                             start=first, end=end, seek=seek))
    picture = "a"
    if segment.join:
        after = placed[segment.clip + 1]
        inputs.append(Input(Path(after.clip.path), after.clip.in_point, threads=1))
        files.append(Path(after.clip.path))
        chains.append(clip_chain("1:v:0", "b", after.info, grid, after.clip.fit,
                                 start=0, end=spot.tail, seek=0.0))
        duration = float(Fraction(spot.tail + 1) / cut.fps)
        # xfade works in 4:4:4 here; nearest-neighbour chroma up and down is lossless.
        to444, to420 = "scale=flags=neighbor,format=yuv444p", "scale=flags=neighbor,format=yuv420p"
        if span:
            chains.append(f"[a]split=2[body0][tail0];[body0]trim=end_pts={span}[body];"
                          f"[tail0]trim=start_pts={span - 1},setpts=PTS-STARTPTS,{to444}[out0]")
        elif before >= 0:
            chains.append(f"[a]{to444}[out0]")
        else:
            chains.append(f"[a]tpad=start=1:start_mode=clone,{to444}[out0]")
        chains.append(f"[b]tpad=start=1:start_mode=clone,{to444}[in0];"
                      f"[out0][in0]xfade=transition={after.clip.transition.xfade}:"
                      f"duration={duration:.6f}:offset=0,trim=start_pts=1,"
                      f"setpts=PTS-STARTPTS,{to420}[join]")
        if span:
            chains.append("[body][join]concat=n=2:v=1:a=0[x]")
            picture = "x"
        else:
            picture = "join"
    effects = _effects(cut, overlays, segment)
    files += [p for _, p in overlays.captions] + [
        p for p in (overlays.subtitles, overlays.logo) if p is not None]
    files += [Path(c.text.font) for c, _ in overlays.captions if c.text.font]
    timebase = f"{cut.fps.denominator}/{cut.fps.numerator}"
    tail = f"trim=end_frame={segment.frames},setpts=PTS-STARTPTS"
    if effects:
        # Effects read programme time: stamp each frame with its programme frame number.
        tail = (f"settb={timebase},setpts=N+{segment.start},{','.join(effects)},"
                f"settb={timebase},setpts=N,{tail}")
    if overlays.logo is not None:
        inputs.append(Input(overlays.logo))
        chains.append(f"[{picture}]{tail}[main]")
        chains.append(logo_chain(f"{len(inputs) - 1}:v:0", "main", "out", cut.width))
    else:
        chains.append(f"[{picture}]{tail}[out]")
    return inputs, ";".join(chains), files


def _effects(cut: CutSpec, overlays: _Overlays, segment: _Piece) -> list[str]:
    """Programme-time filters that touch this segment's frames."""
    first, last = segment.start, segment.start + segment.frames
    frame = Fraction(1) / cut.fps
    total = cut.total_frames
    effects = []
    if overlays.fade_in and first < overlays.fade_in[0]:
        length, color = overlays.fade_in
        effects.append(f"fade=t=in:st=0:d={float(length * frame):.6f}:color={color}")
    if overlays.fade_out and last > total - overlays.fade_out[0] - 1:
        length, color = overlays.fade_out
        effects.append(f"fade=t=out:st={float((total - length - 1) * frame):.6f}:"
                       f"d={float(length * frame):.6f}:color={color}")
    for caption, text_file in overlays.captions:
        begin, end = _caption_frames(caption, cut.fps)
        if begin < last and end > first:
            effects.append(drawtext_filter(caption, text_file, cut.height))
    if overlays.subtitles is not None:
        effects.append(subtitles_filter(overlays.subtitles))
    return effects


def _encoder_threads(cut: CutSpec) -> int:
    """Encoder threads per segment: the cores shared among the segments rendered at once
    (each x264 thread holds its own frames, so this also bounds memory: on two cores a
    thread more per segment added about 20 MB each and no speed, benchmarks/footage.py)."""
    return max(1, (os.cpu_count() or 2) // (cut.jobs or 2))


def _soundtrack(cut: CutSpec, placed: list[_Placed], total: int) -> Soundtrack:
    sounds = tuple(
        ClipSound(Path(spot.clip.path), spot.start, spot.clip.frames, fade_in=spot.head,
                  fade_out=spot.tail, volume_db=spot.clip.volume_db, seek=spot.clip.in_point)
        for spot in placed if spot.clip.use_audio and spot.info.has_audio)
    return Soundtrack(
        fps=cut.fps, total_frames=total, clips=sounds, music=cut.music,
        voiceover=cut.voiceover, music_volume_db=cut.music_volume_db, duck_db=cut.duck_db,
        music_fade=cut.music_fade, loudness=cut.loudness, true_peak=cut.true_peak)


def _identity(path: Path) -> str:
    """A file's identity for cache keys: where it is, how big, when it last changed."""
    resolved = Path(path).resolve()
    try:
        stat = resolved.stat()
    except OSError:
        return f"{resolved}:missing"
    return f"{resolved}:{stat.st_size}:{stat.st_mtime_ns}"


def _hash(parts: list[str]) -> str:
    return hashlib.sha256("\x00".join(parts).encode("utf-8")).hexdigest()[:24]


def _fit_caption(text: Text, width: int, height: int) -> Text:
    """The caption wrapped (and if need be shrunk) to fit inside the frame's margins,
    measured with the very font drawtext will use."""
    font = Path(text.font).expanduser() if text.font else sans_font_file()
    size = max(8, round(text.size * height))
    margin = round(0.05 * height)
    room = width - 2 * margin - (2 * max(2, size // 3) if text.box else 0)
    content, fitted = fit_text(text.content, font, size, max(room, 16))
    update: dict[str, object] = {"content": content, "size": fitted / height}
    if font is not None:
        update["font"] = str(font)
    return text.model_copy(update=update)
