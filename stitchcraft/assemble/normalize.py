"""Input normalisation: any clip onto the output's pixel and time grid.

Every clip of a cut, generated or real footage, reaches the transitions and overlays in
the same shape: the output size (fitted by ``cover``, ``contain`` or ``blur-pad``), square
pixels, constant frame rate on the output grid, ``yuv420p`` in limited range, time base
``1/fps`` and timestamps that count frames from 0. The work is a filter chain per input,
run inside each segment's render, so a clip is decoded once and never re-encoded twice.

How the chain maps time: the decoder's timestamps are put back onto the file's own clock
(undoing any seek), ``fps`` re-grids them (variable frame rate becomes constant, other
rates are converted by nearest frame), ``tpad`` holds the last frame for clips shorter
than asked, and ``trim`` keeps exactly the grid frames wanted. Rotation metadata is
applied by ffmpeg's decoder side before the chain (autorotate), and the scale below uses
the display size (sample aspect ratio and rotation applied), so anamorphic and portrait
phone footage are fitted by what a viewer sees.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from ..errors import MediaError
from ..media import MediaInfo, data_end, probe
from ..timeline import format_fps

FITS = ("cover", "contain", "blur-pad")

# Seconds decoded before a segment's first frame after a seek, so that frame-rate
# conversion picks the same source frame as a decode from the top would.
_SEEK_MARGIN = 0.5


@dataclass(frozen=True)
class Grid:
    """The output's pixel and time grid."""

    width: int
    height: int
    fps: Fraction


def inspect_clip(path: Path) -> MediaInfo:
    """Probes a clip and proves it decodes to its end.

    Raises:
        MediaError: missing, truncated, undecodable, or without video; names the file.
    """
    info = probe(path)
    if info.frames <= 0:
        raise MediaError(path, "has no video frames")
    if info.width <= 0 or info.height <= 0:
        raise MediaError(path, f"has no usable frame size ({info.width}x{info.height})")
    # A truncated file often opens fine (its index sits at the front) and fails only
    # where the data stops: compare the packets really there with what the index or the
    # stated duration promises. Demuxing is cheap; no decoding needed.
    if info.frames != info.packets:
        if info.packets < info.frames - max(2, info.frames // 50):
            raise MediaError(path, f"truncated or damaged: {info.packets} of {info.frames} "
                                   "video frames are present")
    elif info.duration > 0:
        # No frame count in the index (mkv, webm): the data must reach the stated length.
        reached = data_end(path)
        if reached < info.duration - max(0.25, 0.02 * info.duration):
            raise MediaError(path, f"truncated or damaged: data stops at {reached:.2f} s of "
                                   f"{info.duration:.2f} s")
    return info


def grid_frames(info: MediaInfo, fps: Fraction) -> int:
    """How many frames of the output grid the clip covers before it runs out."""
    if not info.vfr and info.fps > 0:
        return max(1, math.floor(Fraction(info.frames) * fps / info.fps + Fraction(1, 2)))
    return max(1, math.floor(info.duration * fps + 0.5))


def seek_seconds(info: MediaInfo, start: int, fps: Fraction) -> float:
    """Where to seek before decoding grid frame `start` (0 decodes from the top).

    The value is a whole number of grid frames, written to the microsecond, so the
    chain's clock restores exactly.
    """
    if info.vfr or start <= 0:
        return 0.0
    margin = math.ceil(_SEEK_MARGIN * fps)
    first = start - margin
    if first <= 0:
        return 0.0
    return round(float(Fraction(first) / fps), 6)


def fit_chain(info: MediaInfo, grid: Grid, fit: str, *, tag: str) -> str:
    """The filters that fit a clip's picture into the grid's size.

    Args:
        info: The clip (its display size decides the scale).
        grid: The output size.
        fit: ``cover`` (fill, crop the overflow), ``contain`` (fit inside, black bars) or
            ``blur-pad`` (fit inside over a blurred, filled copy of itself).
        tag: A unique prefix for the internal labels ``blur-pad`` needs.

    Returns:
        A filter chain with one input and one output (may contain labelled branches).
    """
    if fit not in FITS:
        raise ValueError(f"fit must be one of {', '.join(FITS)}, not '{fit}'")
    width, height = grid.width, grid.height
    display_w, display_h = info.display_size
    cover_w, cover_h = _scaled(display_w, display_h, width, height, cover=True)
    contain_w, contain_h = _scaled(display_w, display_h, width, height, cover=False)
    # exact=1: an odd offset is kept (by default crop rounds it down to the chroma grid,
    # and the picture lands a pixel off centre).
    cover = (f"scale={cover_w}:{cover_h}:out_range=tv,"
             f"crop={width}:{height}:{(cover_w - width) // 2}:{(cover_h - height) // 2}:exact=1")
    if fit == "cover" or (contain_w, contain_h) == (width, height):
        return cover
    contain = f"scale={contain_w}:{contain_h}:out_range=tv"
    x, y = (width - contain_w) // 2 // 2 * 2, (height - contain_h) // 2 // 2 * 2
    if fit == "contain":
        return f"{contain},pad={width}:{height}:{x}:{y}:color=black"
    # blur-pad: blur a small copy (cheap) and scale it back up under the picture.
    small_w, small_h = max(2, width // 8 // 2 * 2), max(2, height // 8 // 2 * 2)
    radius = max(1, min(small_w, small_h) // 12)
    return (f"split=2[{tag}bg][{tag}fg];"
            f"[{tag}bg]scale={small_w}:{small_h}:force_original_aspect_ratio=increase,"
            f"crop={small_w}:{small_h},boxblur={radius}:2,scale={width}:{height},"
            f"format=yuv420p[{tag}bgb];"
            f"[{tag}fg]{contain},format=yuv420p[{tag}fgs];"
            f"[{tag}bgb][{tag}fgs]overlay={x}:{y}")


def _scaled(src_w: int, src_h: int, width: int, height: int, *, cover: bool) -> tuple[int, int]:
    """The even size of a `src_w` x `src_h` picture scaled to cover or fit in the box."""
    pick = max if cover else min
    scale = pick(Fraction(width, src_w), Fraction(height, src_h))
    out_w = _even(src_w * scale, up=cover)
    out_h = _even(src_h * scale, up=cover)
    if cover:
        return max(width, out_w), max(height, out_h)
    return min(width, out_w), min(height, out_h)


def _even(value: Fraction, *, up: bool) -> int:
    whole = math.ceil(value) if up else math.floor(value)
    if abs(value - round(value)) < Fraction(1, 100):
        whole = round(value)
    whole += whole % 2 if up else -(whole % 2)
    return max(2, whole)


def clip_chain(input_label: str, output_label: str, info: MediaInfo, grid: Grid, fit: str,
               *, start: int, end: int, seek: float) -> str:
    """Grid frames ``start .. end`` of a clip, normalised, as one filtergraph chain.

    Args:
        input_label: The decoded stream, e.g. ``0:v:0``.
        output_label: The label the normalised frames leave under.
        info: The clip's probe.
        grid: Output size and frame rate.
        fit: How the picture fills the frame.
        start, end: Grid frames of the clip to keep (``end`` may pass the clip's last
            frame: the last frame is held).
        seek: The seek the input was opened with (`seek_seconds`).
    """
    if end <= start:
        raise ValueError(f"empty span {start}..{end}")
    rate = format_fps(grid.fps)
    tag = output_label.replace(":", "_")
    time = (f"setpts=PTS+{seek:.6f}/TB," if seek > 0 else "") + (
        f"fps=fps={rate}:start_time={seek:.6f},tpad=stop=-1:stop_mode=clone,"
        f"trim=start_pts={start}:end_pts={end},setpts=PTS-STARTPTS")
    picture = fit_chain(info, grid, fit, tag=tag)
    return (f"[{input_label}]{time},{picture},setsar=1,format=yuv420p,"
            "setparams=range=tv:color_primaries=unknown:color_trc=unknown:colorspace=unknown"
            f"[{output_label}]")
