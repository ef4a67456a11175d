"""The `title` engine: title cards and end slates drawn with Pillow.

The text is laid out once: the title at about a ninth of the frame height and the
subtitle at about a twentieth, wrapped at word boundaries to 84% of the width, and
shrunk step by step until the block fits inside the safe area (84% x 80%), so text never
overflows whatever its length. Each frame then composites that layer over the
background with the card's animation:

    none   the card as is
    fade   the text fades in over the first 0.8 s (at most a third of the shot)
    rise   fades in while rising 6% of the height, easing out
    zoom   fades in while growing slowly from 92% to 100% over the whole shot

Fonts: the card's `font` file if given, else DejaVu Sans Bold when the system has it,
else Pillow's bundled scalable font. A card whose text that font cannot draw arrives with
the `font` of a system font that can (`LoadedStoryboard.with_font_resolved`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import EngineError, MediaError
from ..fonts import title_font_file
from .base import Capabilities, Engine, SegmentRequest, Take

if TYPE_CHECKING:
    from ..storyboard import EngineSettings, Shot

SAFE_WIDTH, SAFE_HEIGHT = 0.84, 0.80
TITLE_SIZE, SUBTITLE_SIZE = 0.11, 0.045


def _default_font_file() -> str | None:
    found = title_font_file()
    return str(found) if found else None


def load_font(path: str | None, size: int) -> Any:
    """A scalable font at `size` pixels.

    Raises:
        MediaError: `path` is given but is not a readable font file.
    """
    from PIL import ImageFont

    size = max(1, int(size))
    if path:
        try:
            return ImageFont.truetype(str(Path(path).expanduser()), size)
        except OSError as exc:
            raise MediaError(Path(path), f"not a readable font file ({exc})") from None
    system = _default_font_file()
    if system:
        return ImageFont.truetype(system, size)
    return ImageFont.load_default(size=size)


def parse_color(value: str, what: str) -> tuple[int, int, int]:
    """``"#ff8800"`` or a CSS colour name -> (r, g, b).

    Raises:
        EngineError: not a colour Pillow knows.
    """
    from PIL import ImageColor

    try:
        return ImageColor.getrgb(value)[:3]
    except ValueError:
        raise EngineError(f"title {what}: '{value}' is not a colour (use #rrggbb or a name "
                          "like white)") from None


def wrap(text: str, font: Any, max_width: float) -> list[str]:
    """Greedy word wrap; explicit newlines are kept. A word wider than `max_width`
    stays on its own line (the caller shrinks the font until it fits)."""
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        words = paragraph.split()
        line = ""
        for word in words:
            trial = f"{line} {word}" if line else word
            if not line or font.getlength(trial) <= max_width:
                line = trial
            else:
                lines.append(line)
                line = word
        lines.append(line)
    return lines


def _block(text: str, path: str | None, size: float, max_width: float
           ) -> tuple[Any, list[str], list[int], int]:
    """Font, wrapped lines, each line's width, and the line pitch at `size` pixels."""
    font = load_font(path, round(size))
    lines = wrap(text, font, max_width)
    widths = [int(np.ceil(font.getlength(line))) for line in lines]
    ascent, descent = font.getmetrics()
    return font, lines, widths, int(round((ascent + descent) * 1.15))


def layout_layer(title: Any, width: int, height: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Draws the card's text, centred, as a straight-alpha RGBA layer of the frame size.

    Returns:
        The layer and the (top, bottom) rows the text occupies.
    """
    from PIL import Image, ImageDraw

    max_w, max_h = width * SAFE_WIDTH, height * SAFE_HEIGHT
    scale = 1.0
    for _ in range(60):
        main = _block(title.text, title.font, height * TITLE_SIZE * scale, max_w)
        sub = (_block(title.subtitle, title.font, height * SUBTITLE_SIZE * scale, max_w)
               if title.subtitle else None)
        gap = int(round(height * 0.03 * scale)) if sub else 0
        total = main[3] * len(main[1]) + (gap + sub[3] * len(sub[1]) if sub else 0)
        widest = max(main[2] + (sub[2] if sub else []))
        if (widest <= max_w and total <= max_h) or main[0].size <= 6:
            break
        scale *= 0.92
    color = parse_color(title.color, "color")
    layer = Image.new("RGBA", (width, height), (*color, 0))
    draw = ImageDraw.Draw(layer)
    y = (height - total) / 2
    top = y
    blocks = [(main, 255)] + ([(sub, 210)] if sub else [])
    for n, ((font, lines, widths, pitch), alpha) in enumerate(blocks):
        if n:
            y += gap
        for line, line_w in zip(lines, widths, strict=True):
            draw.text(((width - line_w) / 2, y), line, font=font, fill=(*color, alpha))
            y += pitch
    return np.asarray(layer), (int(top), int(np.ceil(y)))


def _opacity_and_motion(animation: str, t: np.ndarray, seconds: float, height: int
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame text opacity (0-1), vertical offset (pixels) and scale."""
    count = len(t)
    ones = np.ones(count)
    if animation == "none":
        return ones, np.zeros(count), ones
    fade_s = min(0.8, seconds / 3)
    opacity = np.clip(t / fade_s, 0.0, 1.0) if fade_s > 0 else ones
    opacity = opacity * opacity * (3 - 2 * opacity)
    if animation == "rise":
        rise_s = min(1.2, seconds / 2)
        p = np.clip(t / rise_s, 0.0, 1.0) if rise_s > 0 else ones
        return opacity, 0.06 * height * (1 - p) ** 3, ones
    if animation == "zoom":
        p = t / seconds if seconds > 0 else ones
        return opacity, np.zeros(count), 0.92 + 0.08 * (1 - (1 - p) ** 2)
    return opacity, np.zeros(count), ones


def render_card(title: Any, frames: int, width: int, height: int, fps: float) -> np.ndarray:
    """Renders a title card as uint8 RGB, frames x height x width x 3."""
    import cv2

    background = np.array(parse_color(title.background, "background"), dtype=np.float32)
    layer, (text_top, text_bottom) = layout_layer(title, width, height)
    t = np.arange(frames) / fps
    opacity, offset, scale = _opacity_and_motion(title.animation, t, frames / fps, height)
    out = np.empty((frames, height, width, 3), dtype=np.uint8)
    plain = np.empty((height, width, 3), dtype=np.uint8)
    plain[:] = np.clip(background + 0.5, 0, 255).astype(np.uint8)
    out[:] = plain
    # Only the band the text can reach is composited; the rest is plain background.
    pad = int(np.ceil(float(offset.max()))) + 4
    band_top, band_bottom = max(0, text_top - pad), min(height, text_bottom + pad)
    if band_bottom <= band_top:
        return out
    band = layer[band_top:band_bottom]
    alpha = band[..., 3].astype(np.float32) / 255.0
    # Premultiplied, so that resampling the moving layer never drags in dark fringes.
    premultiplied = np.dstack([band[..., :3].astype(np.float32) * alpha[..., None], alpha])
    band_h = band_bottom - band_top
    cx, cy = width / 2, height / 2 - band_top
    previous: tuple[float, float, float] | None = None
    for i in range(frames):
        s = float(scale[i])
        state = (float(opacity[i]), float(offset[i]), s)
        if state == previous:  # held text: copy the frame before
            out[i, band_top:band_bottom] = out[i - 1, band_top:band_bottom]
            continue
        previous = state
        if offset[i] or s != 1:
            matrix = np.array([[s, 0, cx - s * cx], [0, s, cy - s * cy + float(offset[i])]])
            moved = cv2.warpAffine(premultiplied, matrix, (width, band_h),
                                   flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                                   borderValue=0)
        else:
            moved = premultiplied
        a = moved[..., 3:] * float(opacity[i])
        composite = moved[..., :3] * float(opacity[i]) + background * (1 - a)
        out[i, band_top:band_bottom] = np.clip(composite + 0.5, 0, 255).astype(np.uint8)
    return out


class TitleEngine(Engine):
    """Title cards and end slates: text on a colour, with a simple animation."""

    NAME = "title"
    DESCRIPTION = "title cards and end slates drawn with Pillow"
    CAPABILITIES = Capabilities(kinds=frozenset({"title"}))
    VERSION = 1

    @classmethod
    def offered(cls, shot: Shot, wanted: int) -> int:
        return 1

    def candidate_seeds(self, request: SegmentRequest, wanted: int, base_seed: int) -> list[int]:
        """One candidate: a card has nothing to vary."""
        return [base_seed]

    @classmethod
    def fingerprint(cls, settings: EngineSettings | None = None) -> dict[str, Any]:
        """Also the font a card without its own is drawn in."""
        return {**super().fingerprint(settings), "font": _default_font_file()}

    def generate(self, request: SegmentRequest) -> Iterator[Take]:
        """One take per seed, all alike.

        Raises:
            EngineError: the request has no title card, or a colour is unknown.
            MediaError: the card's font file is unreadable.
        """
        if request.title is None:
            raise EngineError(f"shot '{request.shot_id}': the title engine needs a title card")
        frames = render_card(request.title, request.frames, request.width, request.height,
                             float(request.fps))
        label = f"title: {request.title.text[:40]}"
        for i, seed in enumerate(request.seeds):
            yield Take(frames=frames if i == 0 else frames.copy(), seed=seed, label=label,
                       meta={"animation": request.title.animation})
