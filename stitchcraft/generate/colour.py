"""Colour anchoring: a chained take's look held to its chain's, smoothly in time.

Chained extensions drift: hue, saturation and contrast creep a little in every take and
the creep adds up along a chain. A take's *grade* (`grade_for`, applied by `apply_grade`)
moves its colours toward an anchor look (the chain's first take, or a reference image)
without a visible step at the seam and without flicker. numpy, and OpenCV to apply the per-frame transform.

How:

- A look is the mean and standard deviation of Y, Cb and Cr (BT.601, full range, on the
  gamma-encoded values), measured on a subsample of each frame (`look_of`, `measure`).
- The take's own per-frame looks are fitted with a straight line over its frames (least
  squares), so one odd frame (a flash, a dark object passing) moves nothing and the
  correction changes smoothly from frame to frame.
- The target starts, at the take's first frame, at the look of the frames shown just
  before it (the previous take's last frames, themselves anchored) and moves in a
  straight line to the anchor's look at its last frame: the seam shows no step, and the
  take ends on the chain's look.
- Each frame's channels are shifted and scaled from the fitted look to the target (scale
  kept within 0.5-2x); in RGB that is one 3x3 matrix and offset per frame, the take's
  *grade* (`grade_for`). It is the same per pixel at any size, so a take that is a file
  is measured on its scan (its frames scaled down, read anyway for scoring) and graded
  at full size only if it is chosen (`apply_grade`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# RGB -> Y, Cb, Cr (BT.601, full range), chroma centred on 0.
_TO_YCC = np.array([[0.299, 0.587, 0.114],
                    [-0.168736, -0.331264, 0.5],
                    [0.5, -0.418688, -0.081312]])
_FROM_YCC = np.linalg.inv(_TO_YCC)
_SCALE_LIMITS = (0.5, 2.0)
_STD_FLOOR = 1.0       # a flat channel is not stretched from nothing
_SAMPLE_WIDTH = 96     # columns a frame is measured at
START_FRAMES = 4       # the previous take's last frames whose look a chained take starts from
METHOD = "ycbcr-ramp-2"  # recorded with anchored takes; change it when the transfer changes


@dataclass(frozen=True)
class Look:
    """Mean and standard deviation of Y, Cb, Cr over some frames (0-255 scale)."""

    mean: np.ndarray
    std: np.ndarray

    def to_json(self) -> dict[str, list[float]]:
        return {"mean": [round(float(v), 2) for v in self.mean],
                "std": [round(float(v), 2) for v in self.std]}


def measure(frames: np.ndarray) -> np.ndarray:
    """Per-frame looks of uint8 RGB frames (F x H x W x 3): F x 2 x 3 (mean, std)."""
    step = max(1, frames.shape[2] // _SAMPLE_WIDTH)
    sample = frames[:, ::step, ::step].reshape(len(frames), -1, 3).astype(np.float32)
    ycc = sample @ _TO_YCC.T.astype(np.float32)
    return np.stack([ycc.mean(axis=1), ycc.std(axis=1)], axis=1).astype(np.float64)


def look_of(frames: np.ndarray) -> Look:
    """The pooled look of frames (or of one image, H x W x 3)."""
    if frames.ndim == 3:
        frames = frames[None]
    looks = measure(frames)
    mean = looks[:, 0].mean(axis=0)
    second = (looks[:, 1] ** 2 + looks[:, 0] ** 2).mean(axis=0)
    return Look(mean=mean, std=np.sqrt(np.maximum(second - mean ** 2, 0.0)))


def start_look(tail: np.ndarray) -> Look:
    """The look a chained take starts from: the previous take's last frames'."""
    return look_of(tail[-START_FRAMES:])


def take_look(head: np.ndarray, middle: np.ndarray | None, tail: np.ndarray) -> Look:
    """A whole take's look (an anchor's), from its first, middle and last frames."""
    return look_of(np.concatenate([head, *([middle] if middle is not None else []), tail]))


def grade_for(looks: np.ndarray, *, start: Look, anchor: Look) -> np.ndarray:
    """The per-frame transform that anchors a take whose frames measure `looks`
    (`measure`, F x 2 x 3): F x 3 x 4 float32, each frame's RGB matrix and offset.

    It depends on the frames only through their looks, so it can be worked out from a
    take's scan (its frames scaled down) and applied to the full frames later
    (`apply_grade`): the transform is the same per pixel at any size.
    """
    count = len(looks)
    fitted = _line_fit(looks)
    ramp = np.linspace(0.0, 1.0, count) if count > 1 else np.ones(1)
    start_stats = np.stack([start.mean, start.std])
    target = start_stats + (np.stack([anchor.mean, anchor.std]) - start_stats) * ramp[:, None, None]
    grade = np.empty((count, 3, 4), np.float32)
    for index in range(count):
        matrix, offset = _transfer(fitted[index], target[index])
        grade[index, :, :3], grade[index, :, 3] = matrix, offset
    return grade


def apply_grade(frames: np.ndarray, grade: np.ndarray, first: int = 0) -> np.ndarray:
    """Frames ``first, first+1, ...`` of a take through their transforms (`grade_for`),
    rounded and clipped to uint8 (by OpenCV's `transform`: 2-3x faster than numpy's
    matmul at 720p)."""
    import cv2

    if first < 0 or first + len(frames) > len(grade):
        raise ValueError(f"frames {first}-{first + len(frames)} are outside a grade of {len(grade)} frames")
    graded = np.empty(frames.shape, np.uint8)  # C order, whatever `frames` is a view of
    for index, frame in enumerate(frames):
        cv2.transform(np.ascontiguousarray(frame), np.ascontiguousarray(grade[first + index]), dst=graded[index])
    return graded


def _line_fit(looks: np.ndarray) -> np.ndarray:
    """Each statistic fitted with a straight line over the frames (least squares)."""
    count = len(looks)
    if count < 3:
        return np.repeat(looks.mean(axis=0, keepdims=True), count, axis=0)
    t = np.arange(count, dtype=np.float64)
    flat = looks.reshape(count, -1)
    slope, intercept = np.polyfit(t, flat, 1)
    return (intercept + slope * t[:, None]).reshape(looks.shape)


def _transfer(source: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The RGB matrix and offset that take look `source` (2 x 3) to look `target`."""
    scale = np.clip(np.maximum(target[1], _STD_FLOOR) / np.maximum(source[1], _STD_FLOOR),
                    *_SCALE_LIMITS)
    matrix = _FROM_YCC @ np.diag(scale) @ _TO_YCC
    offset = _FROM_YCC @ (target[0] - scale * source[0])
    return matrix.astype(np.float32), offset.astype(np.float32)
