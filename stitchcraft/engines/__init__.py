"""Engines: the sources of candidate takes, registered by name.

Three places name engines; where two name the same one, the earlier wins:

1. `register_engine`, in this process (tests, benchmarks, embedding applications);
2. the built-in engines (`BUILTIN_ENGINES`);
3. installed packages, through the entry-point group ``stitchcraft.engines``. A package
   adds an engine with, in its ``pyproject.toml``::

       [project.entry-points."stitchcraft.engines"]
       my-engine = "my_package.engine:MyEngine"

   where the name is the class's ``NAME``.

Importing this package is cheap: an engine's module is imported when the engine is
first used (engine modules keep torch and diffusers inside their methods), and the
entry points are read, not loaded, once per process. A plug-in that cannot be loaded
is a `ConfigError` naming it, raised only where that engine is used.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

from ..errors import ConfigError
from .base import Availability, Capabilities, Engine, FrameRule, SegmentRequest, Take

if TYPE_CHECKING:
    from ..storyboard import EngineSettings

ENTRY_POINT_GROUP = "stitchcraft.engines"

# name -> "module:Class", imported on first use.
BUILTIN_ENGINES = {
    "footage": "stitchcraft.engines.footage:FootageEngine",
    "stills": "stitchcraft.engines.stills:StillsEngine",
    "title": "stitchcraft.engines.title:TitleEngine",
    "ltx-video": "stitchcraft.engines.diffusion:LTXVideoEngine",
    "wan": "stitchcraft.engines.diffusion:WanEngine",
    "svd": "stitchcraft.engines.diffusion:StableVideoDiffusionEngine",
    "cogvideox": "stitchcraft.engines.diffusion:CogVideoXEngine",
    "flux": "stitchcraft.engines.diffusion:FluxEngine",
    "sdxl": "stitchcraft.engines.diffusion:SDXLEngine",
    "sd3": "stitchcraft.engines.diffusion:SD3Engine",
    "veo": "stitchcraft.engines.hosted.veo:VeoEngine",
    "runway": "stitchcraft.engines.hosted.runway:RunwayEngine",
    "luma": "stitchcraft.engines.hosted.luma:LumaEngine",
    "kling": "stitchcraft.engines.hosted.kling:KlingEngine",
    "fal": "stitchcraft.engines.hosted.fal:FalEngine",
    "replicate": "stitchcraft.engines.hosted.replicate:ReplicateEngine",
    "imagen": "stitchcraft.engines.hosted.imagen:ImagenEngine",
    "runway-image": "stitchcraft.engines.hosted.runway_image:RunwayImageEngine",
    "luma-image": "stitchcraft.engines.hosted.luma_image:LumaImageEngine",
    "fal-image": "stitchcraft.engines.hosted.fal_image:FalImageEngine",
    "replicate-image": "stitchcraft.engines.hosted.replicate_image:ReplicateImageEngine",
}

# The engine that serves a shot kind when the storyboard names none.
KIND_ENGINES = {"source": "footage", "image": "stills", "title": "title"}

__all__ = [
    "Availability", "Capabilities", "Engine", "FrameRule", "InstalledEngine", "SegmentRequest",
    "Take", "engine_class", "engine_names", "engine_origin", "engine_problems", "has_engine",
    "installed_engines", "register_engine", "settings_model", "unknown_engine",
]


# Engines registered at run time (tests, benchmarks, embedding applications).
_REGISTERED: dict[str, type[Engine]] = {}


@dataclass(frozen=True)
class InstalledEngine:
    """An engine an installed package declares in the ``stitchcraft.engines`` group.

    Attributes:
        name: The engine's name (the entry point's).
        target: Where its class is, ``module:Class``.
        package: The distribution that declares it, with its version.
    """

    name: str
    target: str
    package: str


def register_engine(cls: type[Engine]) -> None:
    """Makes an engine class known under its NAME, in this process."""
    if not cls.NAME:
        raise ConfigError(f"{cls.__qualname__} has no NAME")
    _REGISTERED[cls.NAME] = cls
    engine_class.cache_clear()


@cache
def _discovered() -> tuple[dict[str, InstalledEngine], tuple[str, ...]]:
    """The installed plug-ins by name, and why any others are left out."""
    from importlib.metadata import entry_points

    found: dict[str, InstalledEngine] = {}
    problems: list[str] = []
    for point in entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(point, "dist", None)
        package = f"{dist.name} {dist.version}" if dist is not None else "an unnamed package"
        plugin = InstalledEngine(point.name, point.value, package)
        if point.name in BUILTIN_ENGINES:
            problems.append(f"engine plug-in '{point.name}' from {package} is ignored: a built-in "
                            "engine has that name")
        elif point.name in found:
            problems.append(f"engine plug-in '{point.name}' from {package} is ignored: "
                            f"{found[point.name].package} also declares it")
        else:
            found[point.name] = plugin
    return found, tuple(problems)


def installed_engines() -> dict[str, InstalledEngine]:
    """The engines installed packages add, by name (read once per process)."""
    return _discovered()[0]


def engine_problems() -> list[str]:
    """Plug-ins left out because another engine has their name, one line each."""
    return list(_discovered()[1])


def engine_names() -> list[str]:
    """Every engine's name: built-in, then registered in this process, then installed."""
    names = [*BUILTIN_ENGINES, *_REGISTERED, *installed_engines()]
    return list(dict.fromkeys(names))


def has_engine(name: str) -> bool:
    """Whether some engine is called `name` (installed plug-ins are read only if needed)."""
    return name in _REGISTERED or name in BUILTIN_ENGINES or name in installed_engines()


def engine_origin(name: str) -> str:
    """Where engine `name` comes from, in words (``built-in``, ``package foo 1.0``)."""
    if name in _REGISTERED:
        return "registered in this process"
    if name in BUILTIN_ENGINES:
        return "built-in"
    plugin = installed_engines().get(name)
    return f"plug-in from {plugin.package}" if plugin else "unknown"


def unknown_engine(name: str) -> str:
    """The message for an engine name nobody registers, with the closest known name."""
    from ..yamlsource import shown

    known = engine_names()
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
    hint = f"did you mean '{close[0]}'?" if close else f"known engines: {', '.join(known)}"
    return f"unknown engine '{shown(name)}'; {hint} (see `stitch engines`)"


@cache
def engine_class(name: str) -> type[Engine]:
    """The engine class registered under `name`, imported on first use.

    Raises:
        ConfigError: no engine has that name, or its plug-in cannot be loaded (the
            message names the plug-in, its package and the cause).
    """
    if name in _REGISTERED:
        return _REGISTERED[name]
    if name in BUILTIN_ENGINES:
        return _load(name, BUILTIN_ENGINES[name], "stitchcraft")
    plugin = installed_engines().get(name)
    if plugin is None:
        raise ConfigError(unknown_engine(name))
    return _load(name, plugin.target, plugin.package)


def settings_model(name: str) -> type[EngineSettings]:
    """The settings model of engine `name` (what its ``engines.<name>:`` block takes).

    Raises:
        ConfigError: as `engine_class`.
    """
    return engine_class(name).settings_model()


def _load(name: str, target: str, package: str) -> type[Engine]:
    """Imports ``module:Class`` and checks that it is the engine called `name`."""
    where = f"engine '{name}' ({target} from {package})"
    module_name, _, class_name = target.partition(":")
    if not module_name.strip() or not class_name.strip():
        raise ConfigError(f"{where} cannot be loaded: the entry point must read 'module:Class'")
    try:
        module = importlib.import_module(module_name.strip())
        cls = module
        for part in class_name.strip().split("."):
            cls = getattr(cls, part)
    except Exception as exc:  # whatever a plug-in's import raises, said in one line
        raise ConfigError(f"{where} cannot be loaded: {type(exc).__name__}: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, Engine)):
        raise ConfigError(f"{where} cannot be loaded: it is not a stitchcraft Engine class")
    if cls.NAME != name:
        raise ConfigError(f"{where} cannot be loaded: the class is named '{cls.NAME}', "
                          f"not '{name}'")
    return cls
