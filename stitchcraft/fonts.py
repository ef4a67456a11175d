"""Fonts for text drawn into pictures, and fitting text to a frame's width."""

from __future__ import annotations

from functools import cache
from pathlib import Path

_SANS = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "/Library/Fonts/Arial.ttf",
    "C:/Windows/Fonts/arial.ttf",
)


_SANS_BOLD = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/TTF/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Bold.ttf",
    "/Library/Fonts/Arial Bold.ttf",
    "C:/Windows/Fonts/arialbd.ttf",
)


@cache
def sans_font_file(bold: bool = False) -> Path | None:
    """A sans-serif TrueType font found on this system, or None."""
    return next((Path(f) for f in (_SANS_BOLD if bold else _SANS) if Path(f).is_file()), None)


def fit_text(content: str, font_file: Path | None, size: int, max_width: int) -> tuple[str, int]:
    """Wraps `content` at spaces so every line fits `max_width` pixels at `size`;
    shrinks the size when a single word is wider than that.

    Returns:
        The text with line breaks, and the font size to draw it at.
    """
    from PIL import ImageFont

    def font_at(px: int):
        if font_file is not None:
            return ImageFont.truetype(str(font_file), px)
        return ImageFont.load_default(size=px)

    while True:
        font = font_at(size)
        lines: list[str] = []
        too_wide = False
        for paragraph in content.replace("\r\n", "\n").split("\n"):
            line = ""
            for word in paragraph.split(" "):
                trial = f"{line} {word}" if line else word
                if font.getlength(trial) <= max_width or not line:
                    line = trial
                else:
                    lines.append(line)
                    line = word
                too_wide = too_wide or font.getlength(line) > max_width
            lines.append(line)
        if not too_wide or size <= 8:
            return "\n".join(lines), size
        size = max(8, int(size * 0.9))
