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
    "engine_class", "engine_names", "register_engine",
]


# Engines registered at run time (tests, benchmarks, embedding applications).
_REGISTERED: dict[str, type[Engine]] = {}


def register_engine(cls: type[Engine]) -> None:
    """Makes an engine class known under its NAME, in this process."""
    if not cls.NAME:
        raise ConfigError(f"{cls.__qualname__} has no NAME")
    _REGISTERED[cls.NAME] = cls
    engine_class.cache_clear()


def engine_names() -> list[str]:
    return [*_ENGINES, *(name for name in _REGISTERED if name not in _ENGINES)]


@cache
def engine_class(name: str) -> type[Engine]:
    """The engine class registered under `name`.

    Raises:
        ConfigError: no engine has that name.
    """
    if name in _REGISTERED:
        return _REGISTERED[name]
    try:
        target = _ENGINES[name]
    except KeyError:
        raise ConfigError(f"unknown engine '{name}'; known engines: {', '.join(engine_names())}") from None
    module_name, _, class_name = target.partition(":")
    module = importlib.import_module(module_name)
    cls = getattr(module, class_name)
    assert cls.NAME == name, f"{target} registers as {cls.NAME!r}, not {name!r}"
    return cls
