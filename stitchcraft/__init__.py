"""stitchcraft: turn a YAML storyboard into a finished multi-shot video.

The pipeline's stages, each in its own module: load (`load`) -> plan (`plan`) ->
generate (`generate`, `engines`) -> score (`scoring`) -> select (`select`) ->
assemble (`assemble`, `audio`, `captions`) -> verify -> report (`report`).
`render.render` runs them all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "LoadedStoryboard", "Plan", "RenderOptions", "RenderResult", "StitchError",
    "load_storyboard", "plan_storyboard", "render",
]

_EXPORTS = {
    "LoadedStoryboard": "stitchcraft.load", "load_storyboard": "stitchcraft.load",
    "Plan": "stitchcraft.plan", "plan_storyboard": "stitchcraft.plan",
    "RenderOptions": "stitchcraft.render", "RenderResult": "stitchcraft.render",
    "render": "stitchcraft.render", "StitchError": "stitchcraft.errors",
}

if TYPE_CHECKING:
    from .errors import StitchError
    from .load import LoadedStoryboard, load_storyboard
    from .plan import Plan, plan_storyboard
    from .render import RenderOptions, RenderResult, render


def __getattr__(name: str) -> Any:
    # Lazy, so `import stitchcraft` (and `stitch --help`) costs nothing.
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'stitchcraft' has no attribute {name!r}")
