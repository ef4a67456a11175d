"""Engines: the sources of candidate takes, registered by name.

Importing this package is cheap: engine modules keep torch and diffusers imports
inside their methods.
"""

from __future__ import annotations

import importlib
from functools import cache

from ..errors import ConfigError
from .base import Availability, Capabilities, Engine, FrameRule, SegmentRequest, Take

# name -> "module:Class", imported on first use.
_ENGINES = {
    "footage": "stitchcraft.engines.footage:FootageEngine",
    "stills": "stitchcraft.engines.stills:StillsEngine",
    "title": "stitchcraft.engines.title:TitleEngine",
    "ltx-video": "stitchcraft.engines.diffusion:LTXVideoEngine",
    "wan": "stitchcraft.engines.diffusion:WanEngine",
    "svd": "stitchcraft.engines.diffusion:StableVideoDiffusionEngine",
    "cogvideox": "stitchcraft.engines.diffusion:CogVideoXEngine",
}

# The engine that serves a shot kind when the storyboard names none.
KIND_ENGINES = {"source": "footage", "image": "stills", "title": "title"}

__all__ = [
    "Availability", "Capabilities", "Engine", "FrameRule", "SegmentRequest", "Take",
    "engine_class", "engine_names",
]


def engine_names() -> list[str]:
    return list(_ENGINES)


@cache
def engine_class(name: str) -> type[Engine]:
    """The engine class registered under `name`.

    Raises:
        ConfigError: no engine has that name.
    """
    try:
        target = _ENGINES[name]
    except KeyError:
        raise ConfigError(f"unknown engine '{name}'; known engines: {', '.join(_ENGINES)}") from None
    module_name, _, class_name = target.partition(":")
    module = importlib.import_module(module_name)
    cls = getattr(module, class_name)
    assert cls.NAME == name, f"{target} registers as {cls.NAME!r}, not {name!r}"
    return cls
