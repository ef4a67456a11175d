"""The ``still`` scorer: a keyframe candidate (a take of one frame) judged as a picture.

A keyframe is generated first and a shot's motion is made from it, so a soft, blown-out
or badly placed keyframe spoils every take made from it. Three measures, no weights:

- `blur_effect`: how much detail a further blur would remove (after Crete-Roffet et al.,
  "The blur effect", 2007), 0..1, 0 = crisp. Unlike the variance of the Laplacian it
  does not grow with contrast or with the amount of texture, so candidates of different
  content compare fairly. Crisp pictures read about 0.2-0.4, a 2-pixel Gaussian blur
  about 0.6, a heavy one 0.8 and more; a flat frame 1.
- `exposure_parts`: the share of clipped highlights and crushed shadows and the mean
  level.
- `composition_parts`: where the picture's visual weight sits (a frequency-tuned
  saliency map: each pixel's Lab distance from the frame's mean colour, after
  Achanta et al. 2009) against the rule-of-thirds points and the centre, and how much
  of it the frame edges cut.

All measures read the frame scaled so its short side is at most `ANALYSIS_SHORT_SIDE`
(never up), so a candidate's size does not change its numbers much.
"""

from __future__ import annotations

import math

import numpy as np

from .base import FrameSource, Score, Scorer
from .classical import rgb_to_lab

ANALYSIS_SHORT_SIDE = 512
SALIENCY_WIDTH = 96
# Where a subject reads as placed: the four rule-of-thirds points and the centre.
POWER_POINTS = [(x, y) for x in (1 / 3, 2 / 3) for y in (1 / 3, 2 / 3)] + [(0.5, 0.5)]
# The band along each edge, as a share of that side, whose weight counts as cut off.
EDGE_BAND = 0.05
# Too small to say where anything sits: composition is left at no opinion (0.5).
MIN_COMPOSITION_SIDE = 8
# The value: a weighted mean of the three measures.
WEIGHTS = {"sharpness": 0.4, "exposure": 0.35, "composition": 0.25}


def _scaled(frame: np.ndarray, short_side: int) -> np.ndarray:
    import cv2

    height, width = frame.shape[:2]
    scale = short_side / min(height, width)
    if scale >= 1:
        return np.ascontiguousarray(frame)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(np.ascontiguousarray(frame), size, interpolation=cv2.INTER_AREA)


def gray_frame(frame: np.ndarray) -> np.ndarray:
    """uint8 H x W x 3 RGB -> float32 luma (BT.601, 0..255) at analysis size."""
    import cv2

    return cv2.cvtColor(_scaled(frame, ANALYSIS_SHORT_SIDE), cv2.COLOR_RGB2GRAY).astype(np.float32)


def blur_effect(gray: np.ndarray, *, span: int = 9) -> float:
    """How blurred a gray frame looks, 0 (crisp) .. 1 (no detail at all).

    Blurring a crisp picture along a direction removes much of its pixel-to-pixel
    variation there; blurring a blurred one removes little. Per direction: the share of
    the frame's neighbour differences that a `span`-tap box blur leaves in place; the
    blurrier direction counts (motion blur runs one way). A frame with no variation at
    all (flat, or a single pixel) reads 1.
    """
    import cv2

    readings = []
    for axis, kernel in ((0, (1, span)), (1, (span, 1))):
        if gray.shape[axis] < 2:
            continue
        blurred = cv2.blur(gray, kernel, borderType=cv2.BORDER_REFLECT)
        original = np.abs(np.diff(gray, axis=axis))
        kept = np.abs(np.diff(blurred, axis=axis))
        total = float(original.sum())
        if total <= 1e-6:
            continue
        removed = float(np.maximum(0.0, original - kept).sum())
        readings.append((total - removed) / total)
    return max(readings) if readings else 1.0


def sharpness_value(blur: float) -> float:
    """`blur_effect` -> 0..1: 1 at 0.35 and below (crisp), 0 at 0.85 and above."""
    return float(min(1.0, max(0.0, (0.85 - blur) / 0.5)))


def exposure_parts(gray: np.ndarray) -> dict[str, float]:
    """``highlights`` and ``shadows``: shares of pixels at 250 and above and at 5 and
    below (0..1; a well exposed picture under 0.02 each); ``level``: mean luma,
    0..255 (mid grey about 118; low-key scenes 50-80 are fine)."""
    return {
        "highlights": float((gray >= 250).mean()) if gray.size else 0.0,
        "shadows": float((gray <= 5).mean()) if gray.size else 0.0,
        "level": float(gray.mean()) if gray.size else 0.0,
    }


def exposure_value(parts: dict[str, float]) -> float:
    """`exposure_parts` -> 0..1, the product of three factors: highlights clipped past
    2 % of the picture cost up to all of it by 32 %; crushed shadows past 5 % cost up
    to all of it by 45 % (deep shadows are a choice more often than blown skies);
    a mean level inside 60..180 costs nothing, and falls linearly to 0 at 0 or 255.
    """
    highlights = 1.0 - min(1.0, max(0.0, parts["highlights"] - 0.02) / 0.3)
    shadows = 1.0 - min(1.0, max(0.0, parts["shadows"] - 0.05) / 0.4)
    level = parts["level"]
    if level < 60:
        balance = level / 60
    elif level > 180:
        balance = (255 - level) / 75
    else:
        balance = 1.0
    return float(highlights * shadows * min(1.0, max(0.0, balance)))


def saliency_map(frame: np.ndarray) -> np.ndarray:
    """Visual weight per pixel of a `SALIENCY_WIDTH`-wide thumbnail: the Lab distance
    of the lightly blurred picture from its mean colour (frequency-tuned saliency),
    less its median, so the ground a subject stands on (most of the frame, a little
    away from the mean colour that the subject pulls towards itself) weighs nothing."""
    import cv2

    height, width = frame.shape[:2]
    size = (min(width, SALIENCY_WIDTH), max(1, round(height * min(width, SALIENCY_WIDTH) / width)))
    thumb = cv2.resize(np.ascontiguousarray(frame), size, interpolation=cv2.INTER_AREA)
    thumb = cv2.GaussianBlur(thumb, (3, 3), 0)
    lab = rgb_to_lab(thumb)
    distance = np.linalg.norm(lab - lab.reshape(-1, 3).mean(axis=0), axis=-1)
    return np.maximum(0.0, distance - float(np.median(distance)))


def composition_parts(frame: np.ndarray) -> dict[str, float]:
    """Where the picture's visual weight (`saliency_map`) sits.

    Returns parts: ``weight_x`` and ``weight_y`` (its centre of mass, 0..1 of the width
    and height from the top left); ``placement`` (its distance to the nearest
    rule-of-thirds point or the centre, in those units: 0 on a point, 0.24 from the centre
    to a thirds point, at most 0.47 in a corner);
    ``edge_weight`` (the share of the weight inside the `EDGE_BAND` along the four
    edges, 0..1; weight spread evenly puts about 0.19 there, a subject cut by the
    frame much more). Empty for a frame too small (`MIN_COMPOSITION_SIDE`) or with no
    visual weight anywhere (flat).
    """
    if min(frame.shape[:2]) < MIN_COMPOSITION_SIDE:
        return {}
    weight = saliency_map(frame)
    total = float(weight.sum())
    if total <= 1e-6:
        return {}
    height, width = weight.shape
    ys = (np.arange(height) + 0.5) / height
    xs = (np.arange(width) + 0.5) / width
    centre_x = float((weight.sum(axis=0) * xs).sum() / total)
    centre_y = float((weight.sum(axis=1) * ys).sum() / total)
    placement = min(math.hypot(centre_x - x, centre_y - y) for x, y in POWER_POINTS)
    band_x = max(1, round(EDGE_BAND * width))
    band_y = max(1, round(EDGE_BAND * height))
    inner = weight[band_y:height - band_y, band_x:width - band_x]
    edge_weight = 1.0 - float(inner.sum()) / total
    return {"weight_x": centre_x, "weight_y": centre_y, "placement": placement,
            "edge_weight": edge_weight}


def composition_value(parts: dict[str, float]) -> float:
    """`composition_parts` -> 0..1: the mean of placement (1 within 0.05 of a thirds
    point or the centre, 0 at 0.3 away) and edges (1 up to 0.25 of the weight in the
    edge band, 0 at 0.6: the subject runs off the frame). 0.5 (no opinion) without
    parts."""
    if not parts:
        return 0.5
    placement = 1.0 - min(1.0, max(0.0, parts["placement"] - 0.05) / 0.25)
    edges = 1.0 - min(1.0, max(0.0, parts["edge_weight"] - 0.25) / 0.35)
    return float((placement + edges) / 2)


class StillScorer(Scorer):
    """A still (a one-frame take, a keyframe candidate) judged as a picture.

    ``value`` = 0.4 sharpness + 0.35 exposure + 0.25 composition (each 0..1, see
    `sharpness_value`, `exposure_value`, `composition_value`).

    Parts, with their ranges: ``sharpness``, ``exposure``, ``composition`` (the three
    factors, 0..1); ``blur`` (`blur_effect`, 0..1, crisp 0.2-0.4); ``highlights`` and
    ``shadows`` (clipped shares, 0..1) and ``level`` (mean luma, 0..255); and, when the
    frame is large enough and not flat, ``weight_x``, ``weight_y``, ``placement`` and
    ``edge_weight`` (`composition_parts`). Moving takes are not judged here.
    """

    NAME = "still"
    SHAPE = "take"
    DEFAULT_WEIGHT = 1.0
    DESCRIPTION = "a keyframe as a picture: sharpness, exposure, composition"
    VERSION = "1"
    APPLIES_TO = frozenset({"still"})

    def score(self, take: FrameSource, previous: FrameSource | None = None) -> Score | None:
        frame = take.head(1)[0]
        gray = gray_frame(frame)
        blur = blur_effect(gray)
        exposure = exposure_parts(gray)
        composition = composition_parts(_scaled(frame, ANALYSIS_SHORT_SIDE))
        factors = {"sharpness": sharpness_value(blur), "exposure": exposure_value(exposure),
                   "composition": composition_value(composition)}
        value = sum(WEIGHTS[name] * factor for name, factor in factors.items())
        notes = []
        if factors["sharpness"] < 0.5:
            notes.append(f"soft (blur {blur:.2f})")
        if exposure["highlights"] > 0.1:
            notes.append(f"{exposure['highlights']:.0%} blown highlights")
        if exposure["shadows"] > 0.2:
            notes.append(f"{exposure['shadows']:.0%} crushed shadows")
        if composition.get("edge_weight", 0.0) > 0.45:
            notes.append("subject cut by the frame edge")
        if not composition:
            notes.append("composition not judged (too small or flat)")
        return Score(float(min(1.0, max(0.0, value))),
                     {**factors, "blur": blur, **exposure, **composition}, "; ".join(notes))
