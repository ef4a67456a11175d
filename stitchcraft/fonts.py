"""Fonts for text drawn into pictures, and fitting text to a frame's width."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Collection
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .storyboard.load import LoadedStoryboard

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
    "/System/Library/Fonts/Supplemental/Arial Bold.ttf",
    "/Library/Fonts/Arial Bold.ttf",
    "C:/Windows/Fonts/arialbd.ttf",
)


@cache
def sans_font_file(bold: bool = False) -> Path | None:
    """A sans-serif TrueType font found on this system, or None."""
    return next((Path(f) for f in (_SANS_BOLD if bold else _SANS) if Path(f).is_file()), None)


def default_font_file(styled: Any) -> Path | None:
    """The font a title card (`title_font_file`) or a caption (`caption_font_file`)
    without a `font` of its own is drawn in, unless its text needs another (`font_for`)."""
    from .storyboard import Title

    return title_font_file() if isinstance(styled, Title) else caption_font_file()


def title_font_file() -> Path | None:
    """The font a title card without its own is drawn in (None: Pillow's own), unless its
    text needs another (`font_for`)."""
    return sans_font_file(bold=True)


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


@cache
def caption_font_file() -> Path | None:
    """The file ffmpeg's drawtext draws a caption without a `font` in: what fontconfig
    matches for "Sans" (as ffmpeg asks it), else the first sans-serif font found."""
    import shutil
    import subprocess

    matcher = shutil.which("fc-match")
    if matcher:
        try:
            found = subprocess.run([matcher, "-f", "%{file}", "Sans"], capture_output=True,
                                   text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            found = ""
        if found and Path(found).is_file():
            return Path(found)
    return sans_font_file()


# A code point no font maps (the last of plane 16's private use): what a font draws for
# a character it has no glyph for (its .notdef box).
_UNMAPPED = "\U0010fffd"


def missing_glyphs(text: str, font_file: Path | None) -> str:
    """The characters of `text` that `font_file` has no glyph for, each once, in order;
    they are drawn as the font's box. Spaces, controls, format characters and variation
    selectors draw nothing and are never counted. `font_file` None is Pillow's own font
    (what a title card is drawn in on a system without a sans-serif font). An unreadable
    font file counts nothing: drawing reports it."""
    drawn = _drawing(font_file)
    if drawn is None:
        return ""
    box = drawn(_UNMAPPED)
    missing: list[str] = []
    for character in dict.fromkeys(text):
        if not _draws_nothing(character) and drawn(character) == box:
            missing.append(character)
    return "".join(missing)


@cache
def _drawing(font_file: Path | None) -> Callable[[str], tuple[tuple[int, int], bytes]] | None:
    """What a font draws for one character (size and pixels), each character's drawing
    kept: a storyboard's shots and variants ask the same few fonts again and again. None
    for a file that is not a readable font."""
    from PIL import ImageFont

    try:
        font = (ImageFont.truetype(str(font_file), 24, layout_engine=ImageFont.Layout.BASIC)
                if font_file is not None else ImageFont.load_default(size=24))
    except OSError:
        return None

    @cache
    def drawn(character: str) -> tuple[tuple[int, int], bytes]:
        mask = font.getmask(character)
        return mask.size, bytes(mask)

    return drawn


# Where fonts are kept on systems without fontconfig (macOS, Windows), and by users.
_FONT_FOLDERS = ("/System/Library/Fonts", "/Library/Fonts", "~/Library/Fonts", "C:/Windows/Fonts",
                 "~/AppData/Local/Microsoft/Windows/Fonts", "/usr/share/fonts", "/usr/local/share/fonts",
                 "~/.local/share/fonts", "~/.fonts")
_FONT_SUFFIXES = (".ttf", ".otf", ".ttc", ".otc")


def font_for(text: str, font: Path | None, *, bold: bool = False) -> Path | None:
    """The font to draw `text` in when its font would be `font` (None: Pillow's own):
    `font` when it has a glyph for every character; else a font on this system that has
    them all (a Japanese caption on a system whose sans-serif font is Latin-only), the
    upright sans-serif one nearest to bold or regular first; else `font`, whose boxes
    `undrawable_text` warns of. Fonts are found through fontconfig (`fc-list`, as ffmpeg
    finds them), or where there is none, in the usual font folders."""
    if not missing_glyphs(text, font):
        return font
    wanted = "".join(c for c in dict.fromkeys(text) if not _draws_nothing(c))
    return _covering(wanted, bold) or font


@cache
def _covering(characters: str, bold: bool) -> Path | None:
    """The best font for `font_for` that has a glyph for each of `characters`, or None."""
    listed = _fontconfig_fonts(characters)
    found = listed if listed is not None else _folder_fonts()
    ranked = sorted(found, key=lambda f: (f.slanted, f.mono, abs(f.weight - (200 if bold else 80)),
                                          "sans" not in f.family.lower(), str(f.file)))
    # Checked on the face Pillow and ffmpeg open (a collection's first); a font Pillow
    # cannot open at any size (a colour emoji font's fixed bitmaps) draws nothing here.
    return next((f.file for f in ranked if _drawing(f.file) is not None
                 and not missing_glyphs(characters, f.file)), None)


@dataclass(frozen=True)
class _Face:
    file: Path
    family: str
    weight: float  # fontconfig's scale: 80 regular, 200 bold
    slanted: bool
    mono: bool


def _fontconfig_fonts(characters: str) -> list[_Face] | None:
    """The first faces of the fonts fontconfig knows with all of `characters`; None
    without fontconfig."""
    import shutil
    import subprocess

    lister = shutil.which("fc-list")
    if lister is None:
        return None
    charset = " ".join(f"{ord(c):x}" for c in characters)
    try:
        listed = subprocess.run([lister, "--format", "%{file}\t%{index}\t%{family[0]}\t%{weight}\t"
                                 "%{slant}\t%{spacing}\n", f":charset={charset}"],
                                capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    faces = []
    for line in listed.splitlines():
        fields = line.split("\t")
        if len(fields) != 6 or fields[1] != "0" or Path(fields[0]).suffix.lower() not in _FONT_SUFFIXES:
            continue
        file, _, family, weight, slant, spacing = fields
        faces.append(_Face(Path(file), family, _number(weight, 80), _number(slant, 0) > 0,
                           _number(spacing, 0) >= 100))  # 90 is "dual" (CJK), not mono
    return faces


def _number(text: str, default: float) -> float:
    try:
        return float(text.split()[0].strip("[]"))
    except (ValueError, IndexError):  # a variable font's range, or nothing
        return default


def _folder_fonts() -> list[_Face]:
    """Every font file in the usual font folders, by what Pillow reads of its name."""
    from PIL import ImageFont

    faces = []
    for folder in _FONT_FOLDERS:
        root = Path(folder).expanduser()
        if not root.is_dir():
            continue
        for file in sorted(root.rglob("*")):
            if file.suffix.lower() not in _FONT_SUFFIXES:
                continue
            try:
                family, style = ImageFont.truetype(str(file), 12).getname()
            except OSError:
                continue
            style = (style or "").lower()
            faces.append(_Face(file, family or "", 200 if "bold" in style else 80,
                               "italic" in style or "oblique" in style, "mono" in (family or "").lower()))
    return faces


def _draws_nothing(character: str) -> bool:
    """Spaces, controls, format characters and variation selectors: no font draws them,
    so no font is judged by them."""
    point = ord(character)
    return (unicodedata.category(character)[0] in "ZC"
            or 0xFE00 <= point <= 0xFE0F or 0xE0100 <= point <= 0xE01EF)


def undrawable_text(loaded: LoadedStoryboard, variants: Collection[str] | None = None) -> list[str]:
    """A warning for each title or caption holding characters its font has no glyph for
    (drawn as boxes: a language its font does not cover), in the main cut and in each
    variant named (every variant for None); a variant says only what the main cut does
    not already say."""
    said: dict[tuple[str, str, str, Path | None], str] = {}
    boards = [("", loaded)] + [(f"variant '{v.name}': ", loaded.for_variant(v))
                               for v in loaded.storyboard.variants if variants is None or v.name in variants]
    for prefix, board in boards:
        for shot in board.storyboard.shots:
            texts: list[tuple[str, str | None, Path | None]] = []
            title, caption = board.with_font_resolved(shot.title_card), board.with_font_resolved(shot.caption)
            if title is not None:
                font = Path(title.font) if title.font else default_font_file(title)
                texts += [("title", title.text, font), ("subtitle", title.subtitle, font)]
            if caption is not None:
                font = Path(caption.font) if caption.font else default_font_file(caption)
                if font is not None:  # else fontconfig's choice, which cannot be read here
                    texts.append(("text", caption.content, font))
            for where, text, font in texts:
                missing = missing_glyphs(text or "", font)
                if not missing:
                    continue
                shown = missing if len(missing) <= 12 else missing[:12] + "…"
                codes = " ".join(f"U+{ord(c):04X}" for c in missing[:4]) + (" …" if len(missing) > 4 else "")
                named = font.name if font else "Pillow's built-in font"
                said.setdefault((shot.id, where, missing, font), (
                    f"{prefix}shot '{shot.id}': {named} has no glyph for {shown} ({codes}) in its "
                    f"{where}, so they show as boxes; give the {'title' if where == 'subtitle' else where} "
                    "a font: file that has them"))
    return list(said.values())
