"""Scorers that need no model weights: structure, colour and motion measured directly.

Measures (each documented with its units):

- `ssim`: structural similarity of two gray frames, -1..1 (1 = identical), computed
  with an 11-tap Gaussian window (sigma 1.5) on frames scaled to `ANALYSIS_WIDTH`.
- `histogram_distance`: Bhattacharyya distance of 8x8x8 RGB histograms, 0..1
  (0 = same colour distribution).
- `frame_differences`: mean absolute gray difference of consecutive frames, in 8-bit
  levels 0..255 (the frame-difference energy).
- `delta_e`: CIE76 colour difference of two CIE Lab colours (D65); 1 is about a
  just-noticeable difference, above 10 a plainly different colour.
- `find_flashes`, `find_cuts`, `find_frozen`: frame indices of one- or two-frame
  flashes, hard cuts, and runs of repeated frames.

Scorers built on them: ``stability`` (a take on its own), ``seam`` (the join between
the previous chosen take and this one) and ``drift`` (a chained take against its
chain's first take).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .base import FrameSource, Score, Scorer

ANALYSIS_WIDTH = 256
SEAM_FRAMES = 4
DRIFT_SAMPLES = 8

# A pair of frames is "still" (a repeat) when they differ by less than this on
# average and almost nowhere by more than a few levels: decoded repeats of the same
# source frame are identical or nearly so, while even slow real motion is not.
STILL_MEAN = 0.35
STILL_P99 = 3.0


# ----------------------------------------------------------------------------------
# Measures


def to_gray(frames: np.ndarray, width: int = ANALYSIS_WIDTH) -> np.ndarray:
    """uint8 N x H x W x 3 RGB -> float32 N x h x `width` luma (BT.601, 0..255),
    area-averaged down (never up)."""
    import cv2

    height, original_width = frames.shape[1:3]
    size = None
    if original_width > width:
        size = (width, max(1, round(height * width / original_width)))
    out = []
    for frame in frames:
        gray = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY).astype(np.float32)
        out.append(cv2.resize(gray, size, interpolation=cv2.INTER_AREA) if size else gray)
    return np.stack(out) if out else np.zeros((0, height, original_width), np.float32)


def ssim(first: np.ndarray, second: np.ndarray) -> float:
    """Mean structural similarity of two gray float frames (0..255), in -1..1."""
    import cv2

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    a = first.astype(np.float32)
    b = second.astype(np.float32)

    def blur(image: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(image, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a * mu_a
    var_b = blur(b * b) - mu_b * mu_b
    cov = blur(a * b) - mu_a * mu_b
    index = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return float(index.mean())


def histogram_distance(first: np.ndarray, second: np.ndarray) -> float:
    """Bhattacharyya distance between two RGB frames' 8x8x8 colour histograms, 0..1."""
    import cv2

    def histogram(frame: np.ndarray) -> np.ndarray:
        hist = cv2.calcHist([np.ascontiguousarray(frame)], [0, 1, 2], None, [8, 8, 8],
                            [0, 256, 0, 256, 0, 256])
        return cv2.normalize(hist, hist).flatten()

    distance = cv2.compareHist(histogram(first), histogram(second), cv2.HISTCMP_BHATTACHARYYA)
    return float(min(1.0, max(0.0, distance)))


def frame_differences(gray: np.ndarray) -> np.ndarray:
    """Mean absolute difference of each consecutive pair of gray frames (N-1 values)."""
    if len(gray) < 2:
        return np.zeros(0, dtype=np.float32)
    return np.abs(np.diff(gray, axis=0)).mean(axis=(1, 2))


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """uint8 sRGB (any shape ... x 3) -> CIE L*a*b* (D65 white), float64."""
    c = rgb.astype(np.float64) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    matrix = np.array([[0.4124564, 0.3575761, 0.1804375],
                       [0.2126729, 0.7151522, 0.0721750],
                       [0.0193339, 0.1191920, 0.9503041]])
    xyz = linear @ matrix.T / np.array([0.95047, 1.0, 1.08883])
    eps, kappa = 216 / 24389, 24389 / 27
    f = np.where(xyz > eps, np.cbrt(xyz), (kappa * xyz + 16) / 116)
    lightness = 116 * f[..., 1] - 16
    a = 500 * (f[..., 0] - f[..., 1])
    b = 200 * (f[..., 1] - f[..., 2])
    return np.stack([lightness, a, b], axis=-1)


def delta_e(first: np.ndarray, second: np.ndarray) -> float:
    """CIE76 difference of two Lab colours."""
    return float(np.linalg.norm(np.asarray(first, dtype=np.float64) - np.asarray(second, dtype=np.float64)))


@dataclass(frozen=True)
class ColourStats:
    """A set of frames' overall look.

    Attributes:
        lab: Mean CIE Lab colour.
        chroma: Mean chroma C* (saturation), 0 for gray, about 30-60 for vivid scenes.
        contrast: Standard deviation of L*, 0 for a flat frame.
    """

    lab: np.ndarray
    chroma: float
    contrast: float


def colour_stats(frames: np.ndarray, width: int = 128) -> ColourStats:
    """Mean Lab colour, chroma and L* contrast of uint8 RGB frames (scaled down first)."""
    import cv2

    height, original_width = frames.shape[1:3]
    if original_width > width:
        size = (width, max(1, round(height * width / original_width)))
        frames = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames])
    lab = rgb_to_lab(frames).reshape(-1, 3)
    chroma = np.hypot(lab[:, 1], lab[:, 2])
    return ColourStats(lab=lab.mean(axis=0), chroma=float(chroma.mean()), contrast=float(lab[:, 0].std()))


def _spike_threshold(diffs: np.ndarray, floor: float, factor: float) -> float:
    typical = float(np.median(diffs)) if len(diffs) else 0.0
    return max(floor, factor * typical)


def find_flashes(gray: np.ndarray, *, floor: float = 12.0) -> list[int]:
    """Frames that jump away from their neighbours and straight back: one- or two-frame
    flashes, black frames and glitches. Returns the first index of each flash.

    A flash at i means frames i (and maybe i+1) differ from both i-1 and the frame after
    the flash by more than max(`floor`, 4 x the median frame difference) levels, while
    the frames either side of it are closer to each other than half the smaller jump.
    """
    diffs = frame_differences(gray)
    threshold = _spike_threshold(diffs, floor, 4.0)
    found: list[int] = []
    count = len(gray)
    i = 1
    while i < count - 1:
        hit = False
        for length in (1, 2):
            after = i + length
            if after >= count:
                break
            into = diffs[i - 1]
            out_of = diffs[after - 1]
            if into > threshold and out_of > threshold:
                across = float(np.abs(gray[after] - gray[i - 1]).mean())
                if across < min(into, out_of) / 2:
                    found.append(i)
                    i = after
                    hit = True
                    break
        if not hit:
            i += 1
    return found


def find_cuts(gray: np.ndarray, *, floor: float = 20.0, flashes: list[int] | None = None) -> list[int]:
    """Hard cuts: frames i whose difference from i-1 exceeds max(`floor`, 3 x the median
    frame difference) and 2.5 x the differences just before and after it (so speeding
    motion is no cut), and that are not part of a flash. Returns the first frame after
    each cut.
    """
    diffs = frame_differences(gray)
    threshold = _spike_threshold(diffs, floor, 3.0)
    flashes = find_flashes(gray) if flashes is None else flashes
    inside = {j for f in flashes for j in (f, f + 1, f + 2)}
    cuts = []
    for i, jump in enumerate(diffs):
        around = max(diffs[i - 1] if i > 0 else 0.0, diffs[i + 1] if i + 1 < len(diffs) else 0.0)
        if jump > threshold and jump > 2.5 * around and i + 1 not in inside:
            cuts.append(i + 1)
    return cuts


def find_frozen(gray: np.ndarray, fps: float, *, min_seconds: float = 0.25
                ) -> tuple[list[tuple[int, int]], list[int]]:
    """Repeated frames.

    Returns:
        (spans, duplicates): `spans` are (first, last) frame indices of runs that hold
        still for at least `min_seconds` (and 3 frames); `duplicates` are frames that
        repeat their predecessor in shorter runs (dropped or doubled frames).
    """
    if len(gray) < 2:
        return [], []
    deltas = np.abs(np.diff(gray, axis=0)).reshape(len(gray) - 1, -1)
    # "Under STILL_P99 at the 99th percentile": fewer than 1 % of pixels move that much.
    still = (deltas.mean(axis=1) < STILL_MEAN) & ((deltas >= STILL_P99).mean(axis=1) < 0.01)
    min_run = max(3, math.ceil(min_seconds * fps))
    spans: list[tuple[int, int]] = []
    duplicates: list[int] = []
    i = 0
    while i < len(still):
        if not still[i]:
            i += 1
            continue
        j = i
        while j + 1 < len(still) and still[j + 1]:
            j += 1
        repeats = j - i + 1  # frames i+1 .. j+1 repeat frame i
        if repeats + 1 >= min_run:
            spans.append((i, j + 1))
        else:
            duplicates.extend(range(i + 1, j + 2))
        i = j + 1
    return spans, duplicates


def _fps(source: FrameSource) -> float:
    return float(source.fps) if source.fps else 24.0


# ----------------------------------------------------------------------------------
# Scorers


class StabilityScorer(Scorer):
    """Temporal stability inside one take, from every frame at analysis size.

    ``value`` is 1 minus penalties, clamped to 0..1: 0.35 per flash, 0.5 per hard cut,
    the fraction of the take spent frozen, up to 0.3 for duplicated frames and up to
    0.3 for luma flicker. Parts: ``ssim_mean`` / ``ssim_min`` (consecutive frames,
    -1..1), ``motion`` (mean frame difference, levels), ``flashes``, ``cuts``,
    ``duplicates`` (counts), ``frozen_seconds``, ``luma_flicker`` (mean absolute second
    difference of per-frame mean luma, levels).
    """

    NAME = "stability"
    SHAPE = "take"
    DEFAULT_WEIGHT = 1.0
    DESCRIPTION = "temporal stability: flashes, cuts, frozen spans, duplicated frames, flicker"
    VERSION = "1"

    def score(self, take: FrameSource, previous: FrameSource | None = None) -> Score:
        gray = to_gray(take.scan())
        count = len(gray)
        if count < 3:
            return Score(1.0, {"frames": float(count)}, note="too short to judge")
        fps = _fps(take)
        flashes = find_flashes(gray)
        cuts = find_cuts(gray, flashes=flashes)
        spans, duplicates = find_frozen(gray, fps)
        frozen_frames = sum(last - first + 1 for first, last in spans)
        similarity = [ssim(gray[i], gray[i + 1]) for i in range(count - 1)]
        luma = gray.mean(axis=(1, 2))
        flicker = float(np.abs(np.diff(luma, n=2)).mean()) if count > 2 else 0.0
        penalty = (0.35 * len(flashes) + 0.5 * len(cuts) + frozen_frames / count
                   + min(0.3, 3 * len(duplicates) / count) + min(0.3, flicker / 20))
        notes = []
        if flashes:
            notes.append(f"flash at frame {', '.join(map(str, flashes))}")
        if cuts:
            notes.append(f"cut at frame {', '.join(map(str, cuts))}")
        if spans:
            notes.append("frozen " + ", ".join(f"{a}-{b}" for a, b in spans))
        return Score(
            value=float(min(1.0, max(0.0, 1.0 - penalty))),
            parts={
                "ssim_mean": float(np.mean(similarity)), "ssim_min": float(np.min(similarity)),
                "motion": float(frame_differences(gray).mean()),
                "flashes": float(len(flashes)), "cuts": float(len(cuts)),
                "duplicates": float(len(duplicates)), "frozen_seconds": frozen_frames / fps,
                "luma_flicker": flicker,
            },
            note="; ".join(notes),
        )


def seam_parts(tail: np.ndarray, head: np.ndarray) -> dict[str, float]:
    """Classical continuity measures across a join: the previous take's last frames
    `tail` against the next take's first frames `head` (uint8 RGB, any sizes).

    Returns parts: ``ssim`` (last vs first frame, -1..1), ``histogram`` (Bhattacharyya,
    0..1), ``delta_e`` (CIE76 of the mean Lab colours of the two frames either side),
    ``luma_jump`` (absolute mean-luma change, levels), ``jump_ratio`` (the frame
    difference across the join over the typical difference between consecutive frames
    on either side; about 1 for a seamless continuation, large for a cut).
    """
    tail_gray, head_gray = to_gray(tail), to_gray(head)
    if tail_gray.shape[1:] != head_gray.shape[1:]:
        import cv2

        size = (tail_gray.shape[2], tail_gray.shape[1])
        head_gray = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in head_gray])
        head = np.stack([cv2.resize(f, (tail.shape[2], tail.shape[1]), interpolation=cv2.INTER_AREA)
                         for f in head])
    last, first = tail_gray[-1], head_gray[0]
    across = float(np.abs(first - last).mean())
    inside = np.concatenate([frame_differences(tail_gray), frame_differences(head_gray)])
    typical = float(np.median(inside)) if len(inside) else 0.0
    either_side = min(2, len(tail), len(head))
    return {
        "ssim": ssim(last, first),
        "histogram": histogram_distance(tail[-1], head[0]),
        "delta_e": delta_e(colour_stats(tail[-either_side:]).lab, colour_stats(head[:either_side]).lab),
        "luma_jump": abs(float(first.mean() - last.mean())),
        "jump_ratio": across / max(1.0, typical),
    }


def seam_value(parts: dict[str, float]) -> float:
    """Maps `seam_parts` to 0..1: 0.4 structure (SSIM 0.1..0.9), 0.1 histogram, 0.15
    colour (exp(-delta_e / 12)) and 0.35 motion continuity (1 / (1 + jump_ratio - 1.3)).
    A seamless continuation scores about 0.8-1, a hard cut between unrelated shots
    under 0.35.
    """
    structure = min(1.0, max(0.0, (parts["ssim"] - 0.1) / 0.8))
    histogram = 1.0 - parts["histogram"]
    colour = math.exp(-parts["delta_e"] / 12.0)
    motion = 1.0 / (1.0 + max(0.0, parts["jump_ratio"] - 1.3))
    return float(0.4 * structure + 0.1 * histogram + 0.15 * colour + 0.35 * motion)


class SeamScorer(Scorer):
    """Continuity across the join from the previous chosen take into this one, from
    lossless heads and tails. See `seam_parts` for the parts and `seam_value` for the
    0..1 value.
    """

    NAME = "seam"
    SHAPE = "seam"
    DEFAULT_WEIGHT = 1.0
    DESCRIPTION = "seam continuity: SSIM, histogram, colour and luma jump, motion jump"
    VERSION = "1"

    def score(self, take: FrameSource, previous: FrameSource | None = None) -> Score | None:
        if previous is None:
            return None
        parts = seam_parts(previous.tail(SEAM_FRAMES), take.head(SEAM_FRAMES))
        return Score(seam_value(parts), parts)


def drift_parts(root: ColourStats, current: ColourStats) -> dict[str, float]:
    """Look change of a chained take against its chain's first take: ``delta_e`` (CIE76
    of mean Lab), ``saturation_change`` and ``contrast_change`` (relative change of
    mean chroma and of L* spread; 0.2 = 20 % more, -0.2 = 20 % less).
    """
    return {
        "delta_e": delta_e(root.lab, current.lab),
        "saturation_change": (current.chroma - root.chroma) / max(root.chroma, 5.0),
        "contrast_change": (current.contrast - root.contrast) / max(root.contrast, 5.0),
    }


class DriftScorer(Scorer):
    """Drift of a chained take from its chain's first take (the `previous` argument).

    ``value`` = exp(-(delta_e / 15 + 1.5 |saturation_change| + 1.5 |contrast_change|)):
    1 for no drift, about 0.5 for a 10 delta E shift, 0.37 for 15.
    """

    NAME = "drift"
    SHAPE = "drift"
    DEFAULT_WEIGHT = 0.5
    DESCRIPTION = "colour drift along a chain: delta E, saturation and contrast change"
    VERSION = "1"
    PAIR_SAMPLES = DRIFT_SAMPLES

    def score(self, take: FrameSource, previous: FrameSource | None = None) -> Score | None:
        if previous is None:
            return None
        parts = drift_parts(colour_stats(previous.sample(DRIFT_SAMPLES)),
                            colour_stats(take.sample(DRIFT_SAMPLES)))
        exponent = (parts["delta_e"] / 15.0 + 1.5 * abs(parts["saturation_change"])
                    + 1.5 * abs(parts["contrast_change"]))
        return Score(float(math.exp(-exponent)), parts)
