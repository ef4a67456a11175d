"""Faces drawn at test time that OpenCV's frontal-face Haar cascade finds: shaded ovals
with eye sockets, brows, a nose shadow and a mouth, on a soft colour backdrop."""

from __future__ import annotations

import cv2
import numpy as np

SKIN = (200, 160, 130)


def backdrop(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A soft, muted colour texture behind the face."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(40, 110, (max(1, height // 24), max(1, width // 24), 3), dtype=np.uint8)
    return cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)


def draw_face(frame: np.ndarray, centre: tuple[int, int], size: int, *, skin=SKIN,
              width: float = 0.75, eyes: float = 0.33) -> np.ndarray:
    """Draws a face the frontal-face cascade finds: a shaded oval (`size` its half
    height, `width` its width over height) with dark eye sockets (`eyes` apart, as a
    share of `size`), brows, a nose shadow and a mouth, softened like a render."""
    cx, cy = centre
    out = frame.copy()
    dark = tuple(int(c * 0.35) for c in skin)
    shade = tuple(int(c * 0.7) for c in skin)
    cv2.ellipse(out, (cx, cy), (int(size * width), size), 0, 0, 360, skin, -1)
    for side in (-1, 1):
        ex, ey = cx + side * int(size * eyes), cy - int(size * 0.2)
        cv2.ellipse(out, (ex, ey), (int(size * 0.2), int(size * 0.11)), 0, 0, 360, dark, -1)
        cv2.ellipse(out, (ex, ey - int(size * 0.2)), (int(size * 0.22), int(size * 0.05)), 0, 0, 360, dark, -1)
    cv2.ellipse(out, (cx, cy + int(size * 0.15)), (int(size * 0.1), int(size * 0.2)), 0, 0, 360, shade, -1)
    cv2.ellipse(out, (cx, cy + int(size * 0.5)), (int(size * 0.28), int(size * 0.08)), 0, 0, 360, dark, -1)
    return cv2.GaussianBlur(out, (0, 0), 1.5)


def footage(count: int, size=(480, 270), *, change: bool = False, seed: int = 0) -> np.ndarray:
    """`count` frames of the face drifting right and down a pixel a frame; with
    `change` it turns from skin to green, narrower, eyes wider apart, as it goes."""
    width, height = size
    ground = backdrop(width, height, seed)
    frames = []
    for t in range(count):
        share = t / max(1, count - 1) if change else 0.0
        skin = tuple(int(a + (b - a) * share) for a, b in zip(SKIN, (70, 170, 80), strict=True))
        frames.append(draw_face(ground, (width // 2 - 10 + t, height // 2 - 5 + t // 2), 80, skin=skin,
                                width=0.75 - 0.15 * share, eyes=0.33 + 0.1 * share))
    return np.stack(frames)
