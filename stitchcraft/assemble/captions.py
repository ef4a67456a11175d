"""Text and overlays burned into the picture: captions, burned subtitles, a logo.

Filters here work on programme time: each segment's frames carry timestamps that count
from the start of the whole cut, so a caption that crosses a segment boundary is drawn
the same on both sides.

Escaping. A user's text never enters a filtergraph: it is written to a UTF-8 file and
drawn with ``textfile=`` and ``expansion=none``, so quotes, colons, backslashes, percent
signs and any script are drawn as typed. What does enter the graph (font and subtitle
paths, colours, expressions) goes through `filter_value`, ffmpeg's two levels of
escaping: quoting for the filter's option parser, then backslashes for the graph parser.
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..media import filter_value

if TYPE_CHECKING:
    from ..storyboard import Text

__all__ = ["Caption", "drawtext_filter", "filter_value", "logo_chain", "subtitles_filter",
           "write_text_file"]

# Margin from the frame's edge, as a fraction of its height.
_MARGIN = 0.05
# Logo width as a fraction of the frame's width.
_LOGO_WIDTH = 0.12


def ffmpeg_color(color: str) -> str:
    """``#1a2b3c`` -> ``0x1a2b3c``; colour names pass through."""
    return "0x" + color[1:] if color.startswith("#") else color


@dataclass(frozen=True)
class Caption:
    """A text drawn over a stretch of programme time.

    Attributes:
        text: The storyboard's text settings.
        start, end: Programme seconds the text is visible between.
    """

    text: Text
    start: float
    end: float


def write_text_file(content: str, folder: Path) -> Path:
    """Stores caption text where drawtext can read it verbatim (named by its content)."""
    folder.mkdir(parents=True, exist_ok=True)
    body = content.replace("\r\n", "\n").encode("utf-8")
    path = folder / f"text-{hashlib.sha256(body).hexdigest()[:16]}.txt"
    if not path.exists():  # written whole under another name: renders may run side by side
        partial = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.partial")
        partial.write_bytes(body)
        os.replace(partial, path)
    return path


def drawtext_filter(caption: Caption, text_file: Path, height: int) -> str:
    """A drawtext filter (no labels) showing `caption` during its time, with fades."""
    text = caption.text
    size = max(8, round(text.size * height))
    margin = round(_MARGIN * height)
    x_center, y_center = "(w-text_w)/2", "(h-text_h)/2"
    x_right, y_bottom = f"w-text_w-{margin}", f"h-text_h-{margin}"
    x, y = {
        "top": (x_center, str(margin)), "center": (x_center, y_center),
        "bottom": (x_center, y_bottom), "top-left": (str(margin), str(margin)),
        "top-right": (x_right, str(margin)), "bottom-left": (str(margin), y_bottom),
        "bottom-right": (x_right, y_bottom),
    }[text.position]
    start, end = caption.start, caption.end
    fade = min(text.fade, (end - start) / 2)
    if fade > 0:
        alpha = (f"if(lt(t,{start + fade:.6f}),(t-{start:.6f})/{fade:.6f},"
                 f"if(gt(t,{end - fade:.6f}),({end:.6f}-t)/{fade:.6f},1))")
    else:
        alpha = "1"
    options = [
        f"textfile={filter_value(str(text_file))}",
        "expansion=none",
        f"fontsize={size}",
        f"fontcolor={filter_value(ffmpeg_color(text.color))}",
        f"x={filter_value(x)}",
        f"y={filter_value(y)}",
        f"alpha={filter_value(alpha)}",
        # Half a frame's slack would be ambiguous; frames at t in [start, end) show it.
        f"enable={filter_value(f'gte(t,{start - 1e-4:.6f})*lt(t,{end - 1e-4:.6f})')}",
        f"line_spacing={max(1, size // 5)}",
        # Lines of a wrapped caption line up the way the caption is placed.
        "text_align=" + ("L" if text.position.endswith("left") else
                         "R" if text.position.endswith("right") else "C"),
        "fix_bounds=1",
    ]
    if text.font:
        options.append(f"fontfile={filter_value(str(Path(text.font).expanduser()))}")
    else:
        options.append("font=Sans")
    if text.box:
        options += ["box=1", "boxcolor=black@0.55", f"boxborderw={max(2, size // 3)}"]
    else:
        options += ["borderw=" + str(max(1, size // 16)), "bordercolor=black@0.6"]
    return "drawtext=" + ":".join(options)


def subtitles_filter(path: Path) -> str:
    """Burns an SRT or ASS file, timed on programme time."""
    return f"subtitles=filename={filter_value(str(path))}"


def logo_chain(logo_label: str, main_label: str, output_label: str, width: int) -> str:
    """Overlays a logo (an image input) in the top-right corner of every frame."""
    logo_width = max(2, round(width * _LOGO_WIDTH) // 2 * 2)
    margin = round(width * 0.025)
    return (f"[{logo_label}]scale={logo_width}:-1,format=rgba[{output_label}logo];"
            f"[{main_label}][{output_label}logo]overlay=W-w-{margin}:{margin}:"
            f"eof_action=repeat:format=auto[{output_label}]")
