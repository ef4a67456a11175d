"""Fonts made at test time with fontTools: a few glyphs of a script the system's fonts
lack, each drawn as a plain shape, so a test can tell which font drew a character."""

from __future__ import annotations

from pathlib import Path

KANA_A, KANA_I = "\u3042", "\u3044"  # あ and い


def make_kana_font(path: Path, *, bold: bool = False) -> Path:
    """A TrueType font with glyphs for あ (a square, wider when bold), い (a triangle) and
    the space, named "Stitch Test Kana" Regular or Bold."""
    from fontTools.fontBuilder import FontBuilder
    from fontTools.pens.ttGlyphPen import TTGlyphPen

    def square(inset: int):
        pen = TTGlyphPen(None)
        pen.moveTo((inset, 0))
        pen.lineTo((inset, 700))
        pen.lineTo((600 - inset, 700))
        pen.lineTo((600 - inset, 0))
        pen.closePath()
        return pen.glyph()

    triangle = TTGlyphPen(None)
    triangle.moveTo((0, 0))
    triangle.lineTo((300, 700))
    triangle.lineTo((600, 0))
    triangle.closePath()
    order = [".notdef", "space", "kana_a", "kana_i"]
    builder = FontBuilder(1000, isTTF=True)
    builder.setupGlyphOrder(order)
    builder.setupCharacterMap({0x20: "space", ord(KANA_A): "kana_a", ord(KANA_I): "kana_i"})
    builder.setupGlyf({".notdef": square(250), "space": TTGlyphPen(None).glyph(),
                       "kana_a": square(20 if bold else 150), "kana_i": triangle.glyph()})
    builder.setupHorizontalMetrics({name: (600, 0) for name in order})
    builder.setupHorizontalHeader(ascent=800, descent=-200)
    builder.setupNameTable({"familyName": "Stitch Test Kana", "styleName": "Bold" if bold else "Regular"})
    builder.setupOS2(sTypoAscender=800, usWinAscent=800, usWinDescent=200,
                     usWeightClass=700 if bold else 400, fsSelection=0x20 if bold else 0x40)
    builder.setupPost()
    path.parent.mkdir(parents=True, exist_ok=True)
    builder.save(str(path))
    return path


def fontconfig_with(folder: Path) -> Path:
    """A fontconfig file that adds `folder` to the system's fonts (set FONTCONFIG_FILE to
    it: fc-list then lists the fonts there too)."""
    conf = folder.parent / f"{folder.name}-fonts.conf"
    conf.write_text(f"""<?xml version="1.0"?>
<!DOCTYPE fontconfig SYSTEM "fonts.dtd">
<fontconfig>
  <include ignore_missing="yes">/etc/fonts/fonts.conf</include>
  <dir>{folder}</dir>
  <cachedir>{folder.parent / (folder.name + "-cache")}</cachedir>
</fontconfig>
""")
    return conf
