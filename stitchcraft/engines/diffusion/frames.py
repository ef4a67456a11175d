"""Frame bookkeeping for diffusion calls: which frames to generate and which to keep.

A conditioned call generates the conditioning frames again at its start (they are
already on screen at the end of the previous take) and must obey the model's frame
rule, so it usually makes more frames than the take needs. `Window` says how many the
pipeline makes and which of them become the take. Pure numpy; no torch here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..base import FrameRule


@dataclass(frozen=True)
class Window:
    """The frames one pipeline call makes, and those a take keeps.

    Attributes:
        total: Frames the pipeline generates (obeys the model's frame rule).
        lead: Frames at the start that repeat the conditioning; never kept.
        frames: Frames the take keeps.
        ends_on_last: The last generated frame is a target (bridge) and must stay the
            take's last frame; surplus frames are then dropped evenly from the middle.
    """

    total: int
    lead: int
    frames: int
    ends_on_last: bool = False

    def kept(self) -> np.ndarray:
        """Indices, into the generated frames, of the frames the take keeps."""
        if not self.ends_on_last:
            return np.arange(self.lead, self.lead + self.frames)
        available = self.total - self.lead
        if available == self.frames:
            return np.arange(self.lead, self.total)
        # Keep both ends, spread the drops: at most step-1 frames of a clip of many.
        picks = np.round(np.linspace(0, available - 1, self.frames)).astype(int)
        return self.lead + picks

    @property
    def dropped_inside(self) -> int:
        return self.total - self.lead - self.frames if self.ends_on_last else 0


def plan_window(rule: FrameRule, frames: int, lead: int = 0, *, ends_on_last: bool = False
                ) -> Window:
    """The smallest call that holds `lead` conditioning frames plus `frames` new ones."""
    return Window(total=rule.fit(lead + frames), lead=lead, frames=frames,
                  ends_on_last=ends_on_last)


def tail_count(rule: FrameRule, available: int, most: int) -> int:
    """How many tail frames to condition on: the largest count the rule allows that is
    at most `available` and `most` (at least 1)."""
    limit = max(1, min(available, most))
    if rule.step == 1:
        return limit
    best = 1
    for count in range(1, limit + 1):
        if (count - rule.offset) % rule.step == 0:
            best = count
    return best


def to_uint8(video: np.ndarray) -> np.ndarray:
    """Float frames in [0, 1] (F x H x W x 3) -> uint8, rounded."""
    return np.clip(np.rint(np.asarray(video, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)


def cover(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Scales an H x W x 3 uint8 image to cover width x height and crops the centre."""
    from PIL import Image

    if image.shape[1] == width and image.shape[0] == height:
        return image
    scale = max(width / image.shape[1], height / image.shape[0])
    size = (max(width, round(image.shape[1] * scale)), max(height, round(image.shape[0] * scale)))
    resized = Image.fromarray(image).resize(size, Image.Resampling.LANCZOS)
    left, top = (size[0] - width) // 2, (size[1] - height) // 2
    return np.asarray(resized.crop((left, top, left + width, top + height)))


def to_pil(frame: np.ndarray, width: int, height: int):
    """A uint8 frame as a PIL image of exactly width x height (lossless when it fits)."""
    from PIL import Image

    return Image.fromarray(np.ascontiguousarray(cover(frame, width, height)))
