"""The storyboard `stitch init` writes, and what to change where its engine cannot run."""

from __future__ import annotations

# The engine of the starter's prompt shots.
STARTER_ENGINE = "ltx-video"

STARTER = """\
# A stitchcraft storyboard (format version 1). Validate with `stitch validate`,
# inspect with `stitch plan`, render with `stitch render`.
version: 1
title: My first cut
output: {fps: 24, size: 1280x720, path: out/first-cut.mp4, codec: h264, preset: veryfast, crf: 20}
defaults:
  engine: {engine}             # for prompt shots; see `stitch engines`
  candidates: 3                 # takes generated per shot; the best is kept
  transition: {type: dissolve, duration: 0.5}
  seed: 7
audio: {loudness: -14}          # add music: path/to/bed.mp3
ending: {type: fade, duration: 1}
shots:
  - id: opening
    title: {text: My first cut, subtitle: made with stitchcraft, animation: rise}
    duration: 3
    transition: {type: fade, duration: 1}   # the first shot fades in from black
  - id: scene
    prompt: A slow aerial shot over misty pine forest at dawn, cinematic light
    duration: 5
  - id: closer
    prompt: The sun breaks through the mist over the treetops
    duration: 4
    continuity: chain           # starts from the last frames of the previous take
    text: {content: Thanks for watching, position: bottom}
variants:
  - name: vertical
    output: {size: 1080x1920}
"""


def starter() -> str:
    return STARTER.replace("{engine}", STARTER_ENGINE)


def engine_advice() -> str | None:
    """What to change for the starter's prompt shots to render on this machine, when its
    engine cannot run here (None when it can). Another engine is only named, never
    chosen for the user: a hosted one costs money."""
    from .engines import engine_class, engine_names
    from .errors import ConfigError

    available = engine_class(STARTER_ENGINE).availability(None)
    if available.ok:
        return None
    ready = []
    for name in engine_names():
        try:
            cls = engine_class(name)
        except ConfigError:  # a plug-in that cannot be loaded
            continue
        if name != STARTER_ENGINE and cls.capabilities_for(None).text_to_video and cls.availability(None).ok:
            ready.append(name)
    why = f"{STARTER_ENGINE} cannot run here ({available.reason.split('; ')[0]})"
    if ready:
        return (f"{why}; these engines can make its prompt shots: {', '.join(ready)} (set "
                "defaults.engine to one; `stitch plan` shows what a hosted one costs)")
    return (f"{why}, nor can any other engine that makes video from a prompt: set a hosted "
            "engine's key (`stitch engines` lists them), or make the prompt shots footage "
            "(source:) or stills (image:)")
