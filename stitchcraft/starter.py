"""The storyboard `stitch init` writes."""

STARTER = """\
# A stitchcraft storyboard (format version 1). Validate with `stitch validate`,
# inspect with `stitch plan`, render with `stitch render`.
version: 1
title: My first cut
output: {fps: 24, size: 1280x720, path: out/first-cut.mp4, codec: h264, preset: veryfast, crf: 20}
defaults:
  engine: ltx-video             # for prompt shots; see `stitch engines`
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
