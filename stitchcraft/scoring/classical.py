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
  flashes, hard cuts, and runs of repeated frames (held frames, not slow motion).
- `luma_flicker` (levels), `find_backsteps` (frame-order jitter, 0..1) and
  `colour_drift` (a cast creeping in within a take, delta E).

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

# A frame repeats another (`find_frozen`) when they differ by less than STILL_MEAN
# levels on average and fewer than STILL_CHANGED of the pixels differ by more than
# STILL_LEVELS. Measured on lavfi scenes and the demo's footage, encoded with libx264:
# a held frame re-coded by the encoder stays within 0.13 levels and 0.2 % of pixels
# of the frame it repeats however long it holds, while even the slowest smooth motion
# (a parallax pan of 0.05 levels a frame) moves 1.2 % of pixels or more in two frames.
STILL_MEAN = 0.25
STILL_LEVELS = 2.0
STILL_CHANGED = 0.005
# A short repeat is a duplicate only where the take around it moves this many times
# more (zoompan's stair-stepping pauses come to about 0.3).
DUPLICATE_RATIO = 0.15


# ----------------------------------------------------------------------------------
# Measures


def to_gray(frames: np.ndarray, width: int = ANALYSIS_WIDTH) -> np.ndarray:
    """uint8 N x H x W x 3 RGB -> float32 N x h x `width` luma (BT.601, 0..255),
    area-averaged down (never up)."""
    import cv2

    count, height, original_width = frames.shape[:3]
    if not count:
        return np.zeros((0, height, original_width), np.float32)
    # One conversion for the whole stack (the same per-pixel arithmetic as frame by frame).
    gray = cv2.cvtColor(np.ascontiguousarray(frames).reshape(count * height, original_width, 3),
                        cv2.COLOR_RGB2GRAY).reshape(count, height, original_width)
    if original_width <= width:
        return gray.astype(np.float32)
    size = (width, max(1, round(height * width / original_width)))
    # Frame by frame through one float buffer into the result: the stack's temporaries
    # are tens of MB, and each fresh one faults in its pages again.
    scaled = np.empty((count, size[1], size[0]), np.float32)
    wide = np.empty((height, original_width), np.float32)
    for frame, out in zip(gray, scaled, strict=True):
        np.copyto(wide, frame)
        cv2.resize(wide, size, dst=out, interpolation=cv2.INTER_AREA)
    return scaled


def ssim(first: np.ndarray, second: np.ndarray) -> float:
    """Mean structural similarity of two gray float frames (0..255), in -1..1."""
    import cv2

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    a = first.astype(np.float32, copy=False)
    b = second.astype(np.float32, copy=False)

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
    diffs = np.empty(len(gray) - 1, np.float32)
    work = np.empty(gray.shape[1:], np.float32)  # one frame's worth, not a stack's (see `to_gray`)
    for index in range(len(diffs)):
        diffs[index] = _mean_abs_difference(gray[index + 1], gray[index], work)
    return diffs


def _mean_abs_difference(first: np.ndarray, second: np.ndarray, work: np.ndarray) -> np.floating:
    """Mean of |first - second| over a frame, computed in `work` (same shape, float32)."""
    np.subtract(first, second, out=work)
    np.abs(work, out=work)
    return work.mean()


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


def find_flashes(gray: np.ndarray, *, floor: float = 12.0, diffs: np.ndarray | None = None) -> list[int]:
    """Frames that jump away from their neighbours and straight back: one- or two-frame
    flashes, black frames and glitches. Returns the first index of each flash.

    A flash at i means frames i (and maybe i+1) differ from both i-1 and the frame after
    the flash by more than max(`floor`, 4 x the median frame difference) levels, while
    the frames either side of it are closer to each other than half the smaller jump;
    or its mean luma jumps that way (by more than max(`floor`, 4 x the median luma
    change) into and out of the flash, and back within half of that), which finds a
    white or black frame in footage whose every frame differs a lot in pixels.
    `diffs`: `frame_differences(gray)`, when the caller has them.
    """
    diffs = frame_differences(gray) if diffs is None else diffs
    threshold = _spike_threshold(diffs, floor, 4.0)
    luma = gray.mean(axis=(1, 2))
    luma_threshold = _spike_threshold(np.abs(np.diff(luma)), floor, 4.0)
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
            luma_into = abs(luma[i] - luma[i - 1])
            luma_out = abs(luma[after - 1] - luma[after])
            by_luma = (min(luma_into, luma_out) > luma_threshold
                       and abs(luma[after] - luma[i - 1]) < min(luma_into, luma_out) / 2)
            if into > threshold and out_of > threshold or by_luma:
                across = float(np.abs(gray[after] - gray[i - 1]).mean())
                if across < min(into, out_of) / 2 or by_luma:
                    found.append(i)
                    i = after
                    hit = True
                    break
        if not hit:
            i += 1
    return found


def find_cuts(gray: np.ndarray, *, floor: float = 20.0, flashes: list[int] | None = None,
              histograms: np.ndarray | None = None, diffs: np.ndarray | None = None) -> list[int]:
    """Hard cuts: frames i whose difference from i-1 exceeds max(`floor`, 3 x the median
    frame difference) and 2.5 x the differences just before and after it (so speeding
    motion is no cut), and that are not part of a flash. With `histograms` (one
    normalised colour histogram per frame, `colour_histograms`), a frame whose colour
    distribution jumps (Bhattacharyya distance above max(0.3, 4 x the median) and 2.5 x
    the distances either side) while its pixels jump too (over `floor` / 2 levels and
    1.5 x the difference on its calmer side) is a cut too: that finds cuts into or out of
    busy footage whose every frame differs a lot in pixels. Returns the first frame
    after each cut. `diffs`: `frame_differences(gray)`, when the caller has them.
    """
    diffs = frame_differences(gray) if diffs is None else diffs
    threshold = _spike_threshold(diffs, floor, 3.0)
    flashes = find_flashes(gray, diffs=diffs) if flashes is None else flashes
    inside = {j for f in flashes for j in (f, f + 1, f + 2)}
    jumps = _histogram_jumps(histograms) if histograms is not None else np.zeros(len(diffs))
    jump_threshold = _spike_threshold(jumps, 0.3, 4.0)
    cuts = []
    for i, jump in enumerate(diffs):
        around = max(diffs[i - 1] if i > 0 else 0.0, diffs[i + 1] if i + 1 < len(diffs) else 0.0)
        by_pixels = jump > threshold and jump > 2.5 * around
        colour_around = max(jumps[i - 1] if i > 0 else 0.0, jumps[i + 1] if i + 1 < len(jumps) else 0.0)
        calmer_side = min(diffs[i - 1] if i > 0 else jump, diffs[i + 1] if i + 1 < len(diffs) else jump)
        by_colour = (jumps[i] > jump_threshold and jumps[i] > 2.5 * colour_around
                     and jump > floor / 2 and jump > 1.5 * calmer_side)
        if (by_pixels or by_colour) and i + 1 not in inside:
            cuts.append(i + 1)
    return cuts


def colour_histograms(frames: np.ndarray, size: tuple[int, int] = (64, 36)) -> np.ndarray:
    """One normalised 8x8x8 RGB histogram (512 values) per frame, from a `size`
    thumbnail."""
    import cv2

    out = []
    for frame in frames:
        thumb = cv2.resize(np.ascontiguousarray(frame), size, interpolation=cv2.INTER_AREA)
        hist = cv2.calcHist([thumb], [0, 1, 2], None, [8, 8, 8], [0, 256, 0, 256, 0, 256]).flatten()
        out.append(hist / max(1.0, float(hist.sum())))
    return np.stack(out) if out else np.zeros((0, 512), np.float32)


def _histogram_jumps(histograms: np.ndarray) -> np.ndarray:
    """Bhattacharyya distance between consecutive frames' histograms, 0..1."""
    if len(histograms) < 2:
        return np.zeros(0)
    overlap = np.sqrt(histograms[:-1] * histograms[1:]).sum(axis=1)
    return np.sqrt(np.clip(1.0 - overlap, 0.0, 1.0))


def _still(first: np.ndarray, second: np.ndarray) -> bool:
    delta = np.abs(second - first)
    return bool(delta.mean() < STILL_MEAN and (delta > STILL_LEVELS).mean() < STILL_CHANGED)


def find_frozen(gray: np.ndarray, fps: float, *, min_seconds: float = 0.25,
                diffs: np.ndarray | None = None) -> tuple[list[tuple[int, int]], list[int]]:
    """Repeated frames: the picture holding exactly still, not slow motion.

    A frame repeats frame a when it is `_still` against it: a mean difference under
    `STILL_MEAN` levels with fewer than `STILL_CHANGED` of its pixels more than
    `STILL_LEVELS` levels away. Runs grow from an anchor frame and every frame of a
    run is compared with the anchor, not with its neighbour, so slow smooth motion
    (a push-in moving 0.05-0.3 levels a frame) breaks a run within a few frames as
    its changes add up, while a held frame (a decoder's repeats, an encoder's
    re-coded copies) never drifts from the anchor.

    Returns:
        (spans, duplicates): `spans` are (first, last) frame indices of runs that hold
        still for at least `min_seconds` (and 3 frames); `duplicates` are frames that
        repeat their predecessor in shorter runs (dropped or doubled frames) where the
        take around them moves at least 1/`DUPLICATE_RATIO` times as much.

    `diffs`: `frame_differences(gray)`, when the caller has them.
    """
    count = len(gray)
    if count < 2:
        return [], []
    diffs = frame_differences(gray) if diffs is None else diffs
    min_run = max(3, math.ceil(min_seconds * fps))
    spans: list[tuple[int, int]] = []
    duplicates: list[int] = []
    anchor = 0
    while anchor < count - 1:
        last = anchor
        # The next frame is further from the anchor than twice what a repeat may be
        # (whatever order the sums were taken in): no run starts here, as in most of a
        # moving take.
        if diffs[anchor] > 2 * STILL_MEAN:
            anchor += 1
            continue
        while last + 1 < count and _still(gray[anchor], gray[last + 1]):
            last += 1
        if last - anchor + 1 >= min_run:
            spans.append((anchor, last))
        else:
            for frame in range(anchor + 1, last + 1):
                pair = frame - 1
                around = np.concatenate([diffs[max(0, pair - 4):pair], diffs[pair + 1:pair + 5]])
                if len(around) and diffs[pair] < DUPLICATE_RATIO * float(np.median(around)):
                    duplicates.append(frame)
        anchor = last + 1
    return spans, duplicates


def find_backsteps(gray: np.ndarray, skip: set[int] | frozenset[int] = frozenset()) -> float:
    """Frame-order jitter: how much the picture steps back in time, 0..1.

    For every three consecutive frames i, i+1, i+2 (their mean luma removed, so
    flicker does not count), r = |f(i+2) - f(i)| / max(|f(i+1) - f(i)|,
    |f(i+2) - f(i+1)|), with |.| the mean absolute difference. Footage that moves
    forward, smoothly or not, changes more over two frames than over one (r about 1-2;
    even chaotic content keeps r >= 1); frames shown out of order (0 2 1 3, a field or
    pulldown error, a sampler that wobbles in time) come back towards where they were
    (r about 0.5-0.8). Returns the mean of max(0, 1 - r) over the triples that move
    (more than 0.02 levels) and touch no frame in `skip` (flashes, cuts, repeats): 0
    for forward motion, about 0.06-0.25 for every fourth frame swapped.
    """
    count = len(gray)
    if count < 3:
        return 0.0
    means = gray.mean(axis=(1, 2))
    step = np.empty(count - 1, np.float32)
    across = np.empty(count - 2, np.float32)
    # The last three frames centred, and a frame to work in (see `frame_differences`).
    centred = [np.empty(gray.shape[1:], np.float32) for _ in range(3)]
    work = np.empty(gray.shape[1:], np.float32)
    for index in range(count):
        frame = centred[index % 3]
        np.subtract(gray[index], means[index], out=frame)
        if index >= 1:
            step[index - 1] = _mean_abs_difference(frame, centred[(index - 1) % 3], work)
        if index >= 2:
            across[index - 2] = _mean_abs_difference(frame, centred[(index - 2) % 3], work)
    larger = np.maximum(step[:-1], step[1:])
    moving = larger > 0.02
    clean = np.array([not ({i, i + 1, i + 2} & skip) for i in range(len(across))])
    use = moving & clean
    if not use.any():
        return 0.0
    ratio = across[use] / larger[use]
    return float(np.maximum(0.0, 1.0 - ratio).mean())


def luma_flicker(gray: np.ndarray, skip: set[int] | frozenset[int] = frozenset()) -> float:
    """Mean absolute second difference of per-frame mean luma, levels, over the triples
    of frames that touch no frame in `skip` (flashes and cuts, judged on their own).
    A steady or smoothly changing exposure gives about 0-0.3; a visible flicker 3 and
    more."""
    luma = gray.mean(axis=(1, 2))
    if len(luma) < 3:
        return 0.0
    second = np.abs(np.diff(luma, n=2))
    keep = [i for i in range(len(second)) if not ({i, i + 1, i + 2} & skip)]
    return float(second[keep].mean()) if keep else 0.0


def colour_drift(frames: np.ndarray, fps: float) -> float:
    """Colour drift inside a take, CIE76 delta E: how far a colour cast moves (a*, b*)
    from the take's first quarter second to its last (each averaged, on a 64x36
    thumbnail).

    A cast moves every colour the same way, so two readings must both see it, and the
    smaller is returned: the median over pixels of each pixel's (a*, b*) change (motion
    changes some pixels and leaves most), and the mean, over bands of 10 L*, of the
    change in each band's median (a*, b*) (content whose colours come and go, like an
    animated palette or a zoom, keeps the colour each lightness has). 0 for a steady
    look, about 1 for a just-noticeable cast, 10 for a plain one.
    """
    import cv2

    count = len(frames)
    if count < 2:
        return 0.0
    span = max(1, min(count // 4, math.ceil(0.25 * fps)))

    def look(part: np.ndarray) -> np.ndarray:
        thumbs = [cv2.resize(np.ascontiguousarray(f), (64, 36), interpolation=cv2.INTER_AREA)
                  for f in part]
        return rgb_to_lab(np.mean(thumbs, axis=0)).reshape(-1, 3)

    first, last = look(frames[:span]), look(frames[-span:])
    per_pixel = float(np.linalg.norm(np.median((last - first)[:, 1:], axis=0)))
    shifts, weights = [], []
    for band in range(10):
        in_first = (first[:, 0] >= 10 * band) & (first[:, 0] < 10 * band + 10)
        in_last = (last[:, 0] >= 10 * band) & (last[:, 0] < 10 * band + 10)
        weight = min(int(in_first.sum()), int(in_last.sum()))
        if weight >= 20:
            shifts.append(np.median(last[in_last, 1:], axis=0) - np.median(first[in_first, 1:], axis=0))
            weights.append(weight)
    if not weights:
        return per_pixel
    by_lightness = float(np.linalg.norm(np.average(shifts, axis=0, weights=weights)))
    return min(per_pixel, by_lightness)


def _fps(source: FrameSource) -> float:
    return float(source.fps) if source.fps else 24.0


# ----------------------------------------------------------------------------------
# Scorers


class StabilityScorer(Scorer):
    """Temporal stability inside one take, from every frame of its scan at analysis size.

    It tells defects from motion: slow smooth motion (a push-in, a drifting camera)
    scores like a locked-off shot, while these lower the value, each by its own factor
    (``value`` is the product of the factors, 0..1, 1 = no defect found):

    - flashes (`find_flashes`): 0.35 each, at most 0.7;
    - hard cuts inside the take (`find_cuts`, pixels or colour): 0.5 each, at most 0.8;
    - frozen spans (`find_frozen`): 1.5 x the fraction of the take held still, at most
      1 (a take frozen for two thirds or more scores 0);
    - duplicated frames: 3 x their share of the take, at most 0.3;
    - luma flicker (`luma_flicker`): (flicker - 0.5) / 10, at most 0.5;
    - jitter (`find_backsteps`, frames out of order): 2 x (backstep - 0.03), at most
      0.5 (ffmpeg zoompan's stair-stepping reads about 0.02-0.07);
    - colour drift (`colour_drift`): (drift - 0.75) / 15, at most 0.5.

    Parts, with their ranges: ``motion`` (mean frame difference, levels 0..255; slow
    smooth motion about 0.05-0.5, busy footage 2-60), ``flashes``, ``cuts`` and
    ``duplicates`` (counts), ``frozen_seconds`` (0..take length), ``luma_flicker``
    (levels, 0..255; steady 0-0.3, visible flicker 3+), ``jitter`` (0..1; forward
    motion 0-0.02, swapped frames 0.06+), ``colour_drift`` (CIE76 delta E; steady 0-1,
    a plain cast 5+), and ``ssim_min`` (the least SSIM of consecutive frames, -1..1,
    over every fourth pair: a reading, not part of the value).
    """

    NAME = "stability"
    SHAPE = "take"
    DEFAULT_WEIGHT = 1.0
    DESCRIPTION = "temporal stability: flashes, cuts, freezes, flicker, jitter, colour drift"
    VERSION = "2"
    APPLIES_TO = frozenset({"moving"})  # a still is no frozen take

    def score(self, take: FrameSource, previous: FrameSource | None = None) -> Score:
        scan = take.scan()
        gray = to_gray(scan)
        count = len(gray)
        if count < 3:
            return Score(1.0, {"frames": float(count)}, note="too short to judge")
        fps = _fps(take)
        diffs = frame_differences(gray)
        flashes = find_flashes(gray, diffs=diffs)
        cuts = find_cuts(gray, flashes=flashes, histograms=colour_histograms(scan), diffs=diffs)
        spans, duplicates = find_frozen(gray, fps, diffs=diffs)
        frozen_frames = sum(last - first + 1 for first, last in spans)
        events = {j for f in flashes for j in (f, f + 1, f + 2)} | set(cuts)
        held = {j for first, last in spans for j in range(first + 1, last + 1)} | set(duplicates)
        flicker = luma_flicker(gray, events)
        jitter = find_backsteps(gray, events | held)
        drift = colour_drift(scan, fps)
        penalties = [
            min(0.7, 0.35 * len(flashes)),
            min(0.8, 0.5 * len(cuts)),
            min(1.0, 1.5 * frozen_frames / count),
            min(0.3, 3 * len(duplicates) / count),
            min(0.5, max(0.0, flicker - 0.5) / 10),
            min(0.5, 2 * max(0.0, jitter - 0.03)),
            min(0.5, max(0.0, drift - 0.75) / 15),
        ]
        value = float(np.prod([1.0 - p for p in penalties]))
        notes = []
        if flashes:
            notes.append(f"flash at frame {', '.join(map(str, flashes))}")
        if cuts:
            notes.append(f"cut at frame {', '.join(map(str, cuts))}")
        if spans:
            notes.append("frozen " + ", ".join(f"{a}-{b}" for a, b in spans))
        if flicker > 2:
            notes.append(f"luma flicker {flicker:.1f}")
        if jitter > 0.05:
            notes.append(f"jitter {jitter:.2f}")
        if drift > 3:
            notes.append(f"colour drift {drift:.1f} delta E")
        similarity = [ssim(gray[i], gray[i + 1]) for i in range(0, count - 1, 4)]
        return Score(
            value=min(1.0, max(0.0, value)),
            parts={
                "motion": float(diffs.mean()),
                "flashes": float(len(flashes)), "cuts": float(len(cuts)),
                "duplicates": float(len(duplicates)), "frozen_seconds": frozen_frames / fps,
                "luma_flicker": flicker, "jitter": jitter, "colour_drift": drift,
                "ssim_min": float(np.min(similarity)),
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
