"""The `stills` engine: a still image brought to motion by a camera move.

Each frame is a crop rectangle of the still, placed with float precision and resampled
with bicubic interpolation (OpenCV's warpAffine, 1/32-pixel accuracy), so motion is
sub-pixel smooth: no integer-rounded crops, hence none of ffmpeg zoompan's stair-step
jitter. The rectangle's centre moves at constant speed and its size shrinks or grows at
a constant *rate* (geometrically, which looks like a steady dolly). There is no easing:
a camera that neither starts nor stops inside the shot shows no stall at a cut or
dissolve into the next moving shot, and the per-frame displacement of a push-in grows
monotonically.

Moves are given in units of the *base rectangle*, the largest rectangle of the output's
aspect that fits the still, centred. Variation keys (seeds): with `camera:` set, seeds
vary that move's speed; without, seed 0 is a push-in and later seeds cycle through the
other moves, then through other speeds. `static` has one variation only.

For text-to-image-then-animate, and for chaining, the still may come from
`request.condition_frames[-1]`; then every move starts on that frame, and the take's
first frame is the move's first step past it (a pull-out becomes a push-in, since a
still cannot show more than itself).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import EngineError
from .base import Capabilities, Engine, SegmentRequest, Take

if TYPE_CHECKING:
    from ..storyboard import Shot

MOVES = ("push-in", "pull-out", "pan-left", "pan-right", "tilt-up", "tilt-down", "drift")
SPEEDS = (1.0, 0.6, 1.6)
# How far a move travels per second at speed 1, as a fraction of the base rectangle,
# and the limits on one shot's travel.
_TRAVEL_PER_SECOND = 0.035
_MIN_TRAVEL, _MAX_TRAVEL = 0.03, 0.4


@dataclass(frozen=True)
class View:
    """A crop rectangle in base-rectangle units: centre (0.5, 0.5) and scale 1 is the
    whole base rectangle; scale 0.8 is a rectangle 80% as wide and high."""

    cx: float
    cy: float
    scale: float


@dataclass(frozen=True)
class Move:
    """A camera move: the view at the first frame and at the last."""

    name: str
    speed: float
    start: View
    end: View

    @property
    def label(self) -> str:
        pace = {1.0: "", 0.6: ", slow", 1.6: ", fast"}.get(self.speed, f", x{self.speed:g}")
        return f"{self.name}{pace}"


def variation(seed: int, camera: str | None) -> tuple[str, float]:
    """The (move, speed) a variation key picks.

    Raises:
        EngineError: a negative seed.
    """
    if seed < 0:
        raise EngineError(f"stills: variation key {seed} is negative")
    if camera == "static":
        return "static", 1.0
    if camera:
        return camera, SPEEDS[seed % len(SPEEDS)] * (1 + 0.1 * (seed // len(SPEEDS)))
    move = MOVES[seed % len(MOVES)]
    speed = SPEEDS[(seed // len(MOVES)) % len(SPEEDS)]
    return move, speed * (1 + 0.1 * (seed // (len(MOVES) * len(SPEEDS))))


def plan_move(name: str, speed: float, seconds: float, *, from_full: bool = False) -> Move:
    """The start and end views of a move lasting `seconds`.

    Args:
        name: One of the storyboard's camera moves.
        speed: 1 for the normal pace.
        seconds: The shot's length; travel grows with it, within limits.
        from_full: Start on the whole base rectangle (continuing from a given frame).
    """
    travel = min(max(_TRAVEL_PER_SECOND * speed * seconds, _MIN_TRAVEL), _MAX_TRAVEL)
    tight = 1 / (1 + travel)
    margin = (1 - tight) / 2  # how far the centre of a tight view can move off-centre
    whole = View(0.5, 0.5, 1.0)
    if name == "static":
        start = end = whole
    elif name in ("push-in", "pull-out"):
        start, end = whole, View(0.5, 0.5, tight)
        if name == "pull-out" and not from_full:
            start, end = end, start
    elif name in ("pan-left", "pan-right"):
        # Panning left shows what lies to the left: the view's centre moves leftwards.
        sign = -1 if name == "pan-left" else 1
        start, end = View(0.5 - sign * margin, 0.5, tight), View(0.5 + sign * margin, 0.5, tight)
    elif name in ("tilt-up", "tilt-down"):
        sign = -1 if name == "tilt-up" else 1
        start, end = View(0.5, 0.5 - sign * margin, tight), View(0.5, 0.5 + sign * margin, tight)
    elif name == "drift":
        # A slow diagonal float with a slight push, inside the margin of the tighter view.
        loose = 1 / (1 + travel / 2)
        start = View(0.5 + margin * 0.5, 0.5 + margin * 0.3, loose)
        end = View(0.5 - margin * 0.5, 0.5 - margin * 0.3, tight)
    else:
        raise EngineError(f"stills: unknown camera move '{name}'")
    if from_full:
        start = whole
        if end == whole:
            end = View(0.5, 0.5, tight) if name != "static" else whole
    return Move(name, speed, start, end)


def views(move: Move, frames: int, *, continuing: bool = False) -> np.ndarray:
    """The view of every frame, frames x 3 (cx, cy, scale), float64.

    Args:
        continuing: The frame before the first is the move's start (the previous take's
            last frame), so the first frame is already one step along.
    """
    if continuing:
        p = np.arange(1, frames + 1) / frames
    else:
        p = np.linspace(0.0, 1.0, frames) if frames > 1 else np.zeros(1)
    cx = move.start.cx + (move.end.cx - move.start.cx) * p
    cy = move.start.cy + (move.end.cy - move.start.cy) * p
    scale = move.start.scale * (move.end.scale / move.start.scale) ** p
    return np.stack([cx, cy, scale], axis=1)


def render(image: np.ndarray, move: Move, frames: int, width: int, height: int, *,
           continuing: bool = False) -> np.ndarray:
    """Renders a move over a still as uint8 RGB, frames x height x width x 3.

    The still is first resampled once (area filter down, Lanczos up) so that the
    tightest view of the move is at least the output's size, then every frame is one
    bicubic affine warp of that working image with float coordinates.
    """
    import cv2

    track = views(move, frames, continuing=continuing)
    tightest = float(track[:, 2].min())
    src_h, src_w = image.shape[:2]
    aspect = width / height
    base_w, base_h = (src_h * aspect, src_h) if src_w / src_h > aspect else (src_w, src_w / aspect)
    # Working scale: base rectangle pixels per output pixel at the tightest view >= 1.
    factor = (width / tightest) / base_w
    work_w = max(1, round(src_w * factor))
    work_h = max(1, round(src_h * factor))
    if (work_w, work_h) != (src_w, src_h):
        interpolation = cv2.INTER_AREA if factor < 1 else cv2.INTER_LANCZOS4
        work = cv2.resize(image, (work_w, work_h), interpolation=interpolation)
    else:
        work = np.ascontiguousarray(image)
    # Exact working-image coordinates of the base rectangle (resizing rounds the size).
    sx, sy = work_w / src_w, work_h / src_h
    base_w, base_h = base_w * sx, base_h * sy
    origin_x, origin_y = (work_w - base_w) / 2, (work_h - base_h) / 2
    out = np.empty((frames, height, width, 3), dtype=np.uint8)
    for i, (cx, cy, scale) in enumerate(track):
        view_w, view_h = base_w * scale, base_h * scale
        left = origin_x + cx * base_w - view_w / 2
        top = origin_y + cy * base_h - view_h / 2
        zoom_x, zoom_y = view_w / width, view_h / height
        # Output pixel centre (x + 0.5) maps to source point left + (x + 0.5) * zoom;
        # OpenCV samples pixel centres at integers, hence the -0.5 on both sides.
        matrix = np.array([[zoom_x, 0.0, left + 0.5 * zoom_x - 0.5],
                           [0.0, zoom_y, top + 0.5 * zoom_y - 0.5]])
        cv2.warpAffine(work, matrix, (width, height), dst=out[i],
                       flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                       borderMode=cv2.BORDER_REFLECT101)
    return out


class StillsEngine(Engine):
    """Brings a still to motion with push, pull, pan, tilt and drift moves."""

    NAME = "stills"
    DESCRIPTION = "a still brought to motion with smooth camera moves"
    CAPABILITIES = Capabilities(kinds=frozenset({"image"}), image_to_video=True,
                                condition_frames=1)
    VERSION = 1

    @classmethod
    def offered(cls, shot: Shot, wanted: int) -> int:
        return _moves(shot.camera, wanted)

    def candidate_seeds(self, request: SegmentRequest, wanted: int, base_seed: int) -> list[int]:
        """Variation keys 0..wanted-1 (the still has no randomness for a base seed to
        change); one only for a static camera."""
        return list(range(_moves(request.camera, wanted)))

    def generate(self, request: SegmentRequest) -> Iterator[Take]:
        """One take per seed: the still under that seed's move.

        Raises:
            MediaError: the image is unreadable.
            EngineError: no image was given.
        """
        from_full = request.condition_frames is not None and len(request.condition_frames) > 0
        if from_full:
            still = np.ascontiguousarray(request.condition_frames[-1])
            source = "previous frame"
        elif request.image is not None:
            from ..media import read_image

            still = read_image(request.image)
            source = str(request.image)
        else:
            raise EngineError(f"shot '{request.shot_id}': the stills engine needs an image")
        seconds = request.frames / float(request.fps)
        for seed in request.seeds:
            name, speed = variation(seed, request.camera)
            move = plan_move(name, speed, seconds, from_full=from_full)
            frames = render(still, move, request.frames, request.width, request.height,
                            continuing=from_full)
            yield Take(frames=frames, seed=seed, label=move.label,
                       meta={"image": source, "camera": name, "speed": speed,
                             "start_view": [move.start.cx, move.start.cy, move.start.scale],
                             "end_view": [move.end.cx, move.end.cy, move.end.scale]})


def _moves(camera: str | None, wanted: int) -> int:
    """How many camera moves a still offers: one when it is `static`, else as wanted."""
    return 1 if camera == "static" else max(wanted, 1)
