"""stitchcraft: turn a YAML storyboard into a finished multi-shot video.

The pipeline's stages, each in its own module: load (`load`) -> plan (`plan`) ->
generate (`generate`, `engines`, run by an `executor`) -> score (`scoring`) -> select
(`select`) -> assemble (`assemble`, `audio`, `captions`) -> verify -> report (`report`,
`manifest`). `render.render` runs them all; `outputs` names what it writes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "Engine", "Executor", "LoadedStoryboard", "LocalExecutor", "Manifest", "Plan",
    "RenderOptions", "RenderResult", "StitchError", "load_storyboard", "plan_storyboard",
    "register_engine", "render", "resolve_sources",
]

_EXPORTS = {
    "LoadedStoryboard": "stitchcraft.storyboard.load", "load_storyboard": "stitchcraft.storyboard.load",
    "Plan": "stitchcraft.plan", "plan_storyboard": "stitchcraft.plan",
    "RenderOptions": "stitchcraft.render", "RenderResult": "stitchcraft.render",
    "render": "stitchcraft.render", "StitchError": "stitchcraft.errors",
    "resolve_sources": "stitchcraft.storyboard.load", "Engine": "stitchcraft.engines",
    "register_engine": "stitchcraft.engines", "Executor": "stitchcraft.generate.executor",
    "LocalExecutor": "stitchcraft.generate.executor", "Manifest": "stitchcraft.report.manifest",
}

if TYPE_CHECKING:
    from .engines import Engine, register_engine
    from .errors import StitchError
    from .generate.executor import Executor, LocalExecutor
    from .plan import Plan, plan_storyboard
    from .render import RenderOptions, RenderResult, render
    from .report.manifest import Manifest
    from .storyboard.load import LoadedStoryboard, load_storyboard, resolve_sources


def __getattr__(name: str) -> Any:
    # Lazy, so `import stitchcraft` (and `stitch --help`) costs nothing.
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'stitchcraft' has no attribute {name!r}")
