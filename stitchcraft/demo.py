"""The demo's media, drawn by stitchcraft itself: nothing is downloaded.

`make_demo_media` paints three short clips, two stills and a music bed with numpy and
Pillow, and encodes the clips through `media.write_video`:

    hills.mp4     6 s   parallax hills at sunset, with wind           (sound)
    city.mp4      8 s   a city skyline at night, a hard cut at 4 s,   (silent)
                        then drifting bokeh lights
    ocean.mp4     6 s   moonlit waves, with surf                       (sound)
    mountain.png        layered mountains at dawn, 1920x1080
    product.png         a bottle on a studio backdrop, 1600x1600
    music.wav     20 s  a soft chord progression, 48 kHz stereo

Scenes are drawn at half size and scaled up (they are soft gradients and shapes, so
nothing is lost), which keeps the whole set under a few seconds per clip on two cores.
"""

from __future__ import annotations

import tempfile
import wave
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np

from . import media

FPS = Fraction(24)
SIZE = (1280, 720)
_DRAW = (640, 360)
RATE = 48000


def make_demo_media(folder: Path) -> list[Path]:
    """Creates the demo's media in `folder`, skipping files that already exist.

    Returns:
        Every demo file, in a fixed order (clips, stills, music).

    Raises:
        FFmpegError: encoding a clip failed.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    clips: list[tuple[str, float, Callable[[int], Iterator[np.ndarray]], Callable | None]] = [
        ("hills.mp4", 6.0, _hills, _wind),
        ("city.mp4", 8.0, _city, None),
        ("ocean.mp4", 6.0, _ocean, _surf),
    ]
    made: list[Path] = []
    for name, seconds, draw, ambience in clips:
        path = folder / name
        made.append(path)
        if path.exists():
            continue
        frames = round(seconds * FPS)
        if ambience is None:
            media.write_video(draw(frames), path, FPS, crf=20)
            continue
        with tempfile.TemporaryDirectory(prefix="stitchcraft-demo-") as scratch:
            sound = Path(scratch) / "ambience.wav"
            write_wav(sound, ambience(seconds))
            media.write_video(draw(frames), path, FPS, crf=20, audio=(sound, 0.0),
                              frame_count=frames)
    for name, paint in (("mountain.png", _mountain), ("product.png", _product)):
        path = folder / name
        made.append(path)
        if not path.exists():
            _save_png(paint(), path)
    path = folder / "music.wav"
    made.append(path)
    if not path.exists():
        write_wav(path, music_bed(20.0))
    return made


# --- helpers ----------------------------------------------------------------------------

def write_wav(path: Path, samples: np.ndarray) -> Path:
    """Writes float stereo samples (n x 2, -1..1) as 16-bit 48 kHz WAV, atomically."""
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    with media.atomic_output(path) as tmp:
        with wave.open(str(tmp), "wb") as out:
            out.setnchannels(2)
            out.setsampwidth(2)
            out.setframerate(RATE)
            out.writeframes(pcm.tobytes())
    return path


def _save_png(pixels: np.ndarray, path: Path) -> None:
    from PIL import Image

    with media.atomic_output(path) as tmp:
        Image.fromarray(pixels).save(tmp, format="PNG")


def _gradient(height: int, width: int, stops: list[tuple[float, tuple[int, int, int]]]
              ) -> np.ndarray:
    """A vertical gradient through colour stops (position 0-1 from the top), float32."""
    y = np.linspace(0, 1, height)
    positions = [p for p, _ in stops]
    column = np.stack([np.interp(y, positions, [c[k] for _, c in stops]) for k in range(3)], 1)
    return np.repeat(column[:, None, :], width, axis=1).astype(np.float32)


def _glow(height: int, width: int, cx: float, cy: float, radius: float, soft: float
          ) -> np.ndarray:
    """A disc of `radius` with a soft halo, 0-1, float32 (height x width)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    dist = np.hypot(xx - cx, yy - cy)
    disc = np.clip(radius - dist + 0.5, 0, 1)
    return np.maximum(disc, np.exp(-(dist / soft) ** 2) * 0.6)


def _blend(canvas: np.ndarray, alpha: np.ndarray, color: tuple[float, float, float]) -> None:
    canvas += (np.asarray(color, np.float32) - canvas) * alpha[..., None]


def _finish(canvas: np.ndarray) -> np.ndarray:
    import cv2

    if canvas.shape[1] != SIZE[0]:
        canvas = cv2.resize(canvas, SIZE, interpolation=cv2.INTER_CUBIC)
    return np.clip(canvas + 0.5, 0, 255).astype(np.uint8)


def _ridge(x: np.ndarray, base: float, amp: float, seed: int) -> np.ndarray:
    """A hill line: a few sines of random phase, heights in pixels from the top."""
    rng = np.random.default_rng(seed)
    h = np.zeros_like(x)
    for k, f in enumerate((0.004, 0.009, 0.021, 0.047)):
        h += np.sin(x * f + rng.uniform(0, 6.3)) * amp / (1.6 ** k)
    return base - h


# --- clips ------------------------------------------------------------------------------

def _hills(frames: int) -> Iterator[np.ndarray]:
    w, h = _DRAW
    sky = _gradient(h, w, [(0, (52, 38, 96)), (0.45, (214, 104, 110)), (0.7, (255, 188, 120))])
    sun = _glow(h, w, w * 0.68, h * 0.5, 30, 90)
    _blend(sky, sun, (255, 236, 190))
    yy = np.arange(h, dtype=np.float32)[:, None]
    x = np.arange(w, dtype=np.float32)
    # far to near: base line, amplitude, colour, pixels per frame
    layers = [(0.55, 18, (170, 96, 120), 0.15), (0.64, 22, (120, 66, 104), 0.35),
              (0.74, 26, (72, 42, 82), 0.7), (0.86, 24, (34, 22, 48), 1.4)]
    for i in range(frames):
        canvas = sky.copy()
        for k, (base, amp, color, speed) in enumerate(layers):
            line = _ridge(x + i * speed, base * h, amp, seed=k + 1)
            _blend(canvas, np.clip(yy - line[None, :] + 0.5, 0, 1), color)
        yield _finish(canvas)


def _city(frames: int) -> Iterator[np.ndarray]:
    cut = frames // 2
    yield from _skyline(cut)
    yield from _bokeh(frames - cut)


def _skyline(frames: int) -> Iterator[np.ndarray]:
    import cv2

    width, height = SIZE
    wide = width + 160
    rng = np.random.default_rng(7)
    canvas = _gradient(height, wide, [(0, (6, 8, 26)), (0.7, (22, 30, 70)), (1, (40, 44, 90))])
    stars = rng.integers(0, [wide, int(height * 0.6)], size=(220, 2))
    canvas[stars[:, 1], stars[:, 0]] = rng.uniform(120, 255, (220, 1))
    _blend(canvas, _glow(height, wide, wide * 0.2, height * 0.18, 34, 110), (236, 236, 210))
    windows: list[tuple[int, int]] = []
    for layer, (shade, lo, hi) in enumerate((((28, 32, 60), 0.35, 0.6), ((10, 10, 20), 0.5, 0.8))):
        x = -int(rng.integers(0, 40))
        while x < wide:
            bw = int(rng.integers(50, 130))
            top = int(height * (1 - rng.uniform(lo, hi)))
            canvas[top:, max(x, 0):x + bw] = shade
            if layer == 1:
                for wy in range(top + 14, height - 10, 22):
                    for wx in range(x + 10, x + bw - 14, 18):
                        if 0 <= wx < wide - 8:
                            windows.append((wy, wx))
            x += bw + int(rng.integers(2, 16))
    lit = rng.random(len(windows)) < 0.45
    warm = np.array([255, 206, 120], np.float32)
    dark = np.array([20, 20, 34], np.float32)
    for (wy, wx), on in zip(windows, lit, strict=True):
        canvas[wy:wy + 10, wx:wx + 8] = warm if on else dark
    for i in range(frames):
        for j in rng.integers(0, len(windows), 3):  # a few lights go on or off each frame
            lit[j] = not lit[j]
            wy, wx = windows[j]
            canvas[wy:wy + 10, wx:wx + 8] = warm if lit[j] else dark
        shift = 150.0 * i / max(frames - 1, 1)  # a slow, sub-pixel pan
        matrix = np.float32([[1, 0, shift], [0, 1, 0]])
        view = cv2.warpAffine(canvas, matrix, SIZE, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
        yield np.clip(view + 0.5, 0, 255).astype(np.uint8)


def _bokeh(frames: int) -> Iterator[np.ndarray]:
    w, h = 320, 180
    rng = np.random.default_rng(11)
    count = 46
    pos = rng.uniform([0, 0], [w, h], (count, 2))
    vel = rng.uniform([-0.25, -0.5], [0.25, -0.1], (count, 2))
    radius = rng.uniform(5, 20, count)
    palette = np.array([[255, 170, 80], [255, 90, 120], [90, 160, 255], [255, 220, 150]], np.float32)
    colors = palette[rng.integers(0, len(palette), count)]
    phase = rng.uniform(0, 6.3, count)
    base = _gradient(h, w, [(0, (14, 6, 24)), (1, (30, 10, 36))])
    for i in range(frames):
        canvas = base.copy()
        for k in range(count):
            cx, cy = (pos[k] + vel[k] * i) % [w + 40, h + 40] - 20
            r = radius[k]
            x0, x1 = int(max(cx - r - 2, 0)), int(min(cx + r + 3, w))
            y0, y1 = int(max(cy - r - 2, 0)), int(min(cy + r + 3, h))
            if x1 <= x0 or y1 <= y0:
                continue
            yy, xx = np.mgrid[y0:y1, x0:x1]
            disc = np.clip(r - np.hypot(xx - cx, yy - cy) + 0.5, 0, 1)
            strength = 0.25 + 0.15 * np.sin(phase[k] + i * 0.08)
            canvas[y0:y1, x0:x1] += colors[k] * (disc * strength)[..., None]
        yield _finish(canvas)


def _ocean(frames: int) -> Iterator[np.ndarray]:
    w, h = _DRAW
    horizon = int(h * 0.5)
    sky = _gradient(horizon, w, [(0, (10, 16, 44)), (1, (64, 82, 130))])
    _blend(sky, _glow(horizon, w, w * 0.62, horizon * 0.38, 16, 60), (240, 240, 220))
    rows = h - horizon
    p = (np.arange(rows, dtype=np.float32)[:, None] + 1) / rows  # 0 far .. 1 near
    depth = 30 / (p + 0.05)
    across = (np.arange(w, dtype=np.float32)[None, :] - w / 2) * depth / 400
    water = _gradient(rows, w, [(0, (40, 56, 96)), (1, (8, 18, 40))])
    spread = 4 + 60 * p  # the moon's path widens toward the viewer
    path = np.exp(-((np.arange(w)[None, :] - w * 0.62) / spread) ** 2)
    for i in range(frames):
        t = i / float(FPS)
        swell = (np.sin(0.9 * depth - 2.1 * t + 0.2 * across)
                 + 0.6 * np.sin(0.55 * depth + 0.45 * across - 1.4 * t)
                 + 0.35 * np.sin(1.9 * depth - 0.7 * across - 3.1 * t))
        crest = np.clip(swell - 0.6, 0, None)
        sea = water * (0.85 + 0.12 * swell[..., None])
        sea += (crest * path * 120)[..., None] + (crest * 10)[..., None]
        yield _finish(np.concatenate([sky, sea], axis=0))


# --- stills -----------------------------------------------------------------------------

def _mountain() -> np.ndarray:
    width, height = 1920, 1080
    canvas = _gradient(height, width, [(0, (30, 44, 92)), (0.4, (120, 120, 170)),
                                       (0.62, (250, 180, 150))])
    _blend(canvas, _glow(height, width, width * 0.35, height * 0.5, 60, 260), (255, 230, 200))
    rng = np.random.default_rng(3)
    stars = rng.integers(0, [width, int(height * 0.3)], size=(160, 2))
    canvas[stars[:, 1], stars[:, 0]] = np.maximum(canvas[stars[:, 1], stars[:, 0]], 200)
    yy = np.arange(height, dtype=np.float32)[:, None]
    x = np.arange(width, dtype=np.float32)
    ranges = [(0.52, 120, (150, 130, 170)), (0.6, 110, (104, 92, 140)), (0.7, 80, (70, 62, 108)),
              (0.8, 60, (44, 40, 76)), (0.92, 50, (22, 20, 44))]
    for k, (base, amp, color) in enumerate(ranges):
        line = _ridge(x * 0.5, base * height, amp, seed=20 + k)
        # sharpen the far ranges into peaks
        line -= np.abs(np.sin(x * (0.004 + 0.002 * k) + k)) * amp * 0.6
        _blend(canvas, np.clip(yy - line[None, :] + 0.5, 0, 1), color)
        mist = np.clip(1 - np.abs(yy - (line.mean() + 40)) / 90, 0, 1) * 0.18
        _blend(canvas, np.broadcast_to(mist, canvas.shape[:2]), (235, 200, 210))
    return np.clip(canvas + 0.5, 0, 255).astype(np.uint8)


def _product() -> np.ndarray:
    from PIL import Image, ImageDraw

    from .engines.title import load_font

    size = 1600
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    light = np.exp(-(((xx - size * 0.5) / 900) ** 2 + ((yy - size * 0.35) / 700) ** 2))
    canvas = np.stack([40 + 200 * light, 56 + 170 * light, 70 + 150 * light], -1)
    floor = np.clip((yy - size * 0.72) / 10, 0, 1)[..., None]
    canvas = canvas * (1 - 0.25 * floor)
    shadow = np.exp(-(((xx - size * 0.52) / 300) ** 2 + ((yy - size * 0.8) / 40) ** 2))
    canvas *= (1 - 0.55 * shadow)[..., None]
    # The bottle: a cylinder lit from the left, with a shoulder, neck and cap.
    left, right, top, bottom = size * 0.38, size * 0.62, size * 0.36, size * 0.8
    u = np.clip((xx - left) / (right - left), 0, 1)
    shade = 0.35 + 0.65 * np.clip(np.sin(np.pi * u), 0, 1) ** 0.6 * (1 - 0.5 * u) + 0.5 * np.exp(-((u - 0.28) / 0.05) ** 2)
    glass = np.array([30, 120, 110], np.float32)
    body = (xx > left) & (xx < right) & (yy > top) & (yy < bottom)
    shoulder = (np.hypot((xx - size / 2) / ((right - left) / 2), (yy - top) / 90) < 1) & (yy <= top)
    neck = (np.abs(xx - size / 2) < 60) & (yy > size * 0.22) & (yy <= top)
    cap = (np.abs(xx - size / 2) < 68) & (yy > size * 0.17) & (yy <= size * 0.23)
    for mask, color in ((body | shoulder | neck, glass), (cap, np.array([200, 170, 90], np.float32))):
        canvas[mask] = (color * shade[..., None])[mask]
    image = Image.fromarray(np.clip(canvas + 0.5, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    label = (int(left), int(size * 0.5), int(right), int(size * 0.66))
    draw.rectangle(label, fill=(236, 228, 210))
    font = load_font(None, 64)
    text_w = draw.textlength("AURORA", font=font)
    draw.text(((label[0] + label[2] - text_w) / 2, label[1] + 50), "AURORA", font=font,
              fill=(40, 52, 60))
    small = load_font(None, 28)
    sub_w = draw.textlength("sparkling tea", font=small)
    draw.text(((label[0] + label[2] - sub_w) / 2, label[1] + 140), "sparkling tea", font=small,
              fill=(90, 100, 100))
    return np.asarray(image)


# --- sound ------------------------------------------------------------------------------

def _noise(seconds: float, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((int(seconds * RATE), 2)).astype(np.float32)


def _smooth(signal: np.ndarray, width: int) -> np.ndarray:
    """A moving average along time: a cheap low-pass."""
    kernel = np.ones(width, np.float32) / width
    return np.stack([np.convolve(signal[:, c], kernel, mode="same") for c in range(2)], 1)


def _wind(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    gust = 0.5 + 0.5 * np.sin(2 * np.pi * 0.15 * t + np.array([[0.0, 1.3]]).T).T
    wind = _smooth(_noise(seconds, 5), 60) * gust
    return 0.5 * wind / np.abs(wind).max()


def _surf(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    waves = np.clip(np.sin(2 * np.pi * t / 3.2), 0, None) ** 2 + 0.15
    surf = (_smooth(_noise(seconds, 9), 12) * waves[:, None])
    return 0.6 * surf / np.abs(surf).max()


def music_bed(seconds: float) -> np.ndarray:
    """A calm progression (Cmaj7 Am7 Fmaj7 G6, twice) of pads, bass and a plucked
    arpeggio with a stereo echo, n x 2 float samples at 48 kHz."""
    chords = [(48, [60, 64, 67, 71]), (45, [60, 64, 67, 69]), (41, [60, 65, 69, 72]),
              (43, [59, 62, 67, 69]), (48, [60, 64, 67, 71]), (40, [59, 64, 67, 71]),
              (41, [60, 65, 69, 72]), (43, [59, 62, 65, 67])]
    total = int(seconds * RATE)
    out = np.zeros((total, 2), np.float32)
    bar = seconds / len(chords)
    hz = lambda note: 440.0 * 2 ** ((note - 69) / 12)  # noqa: E731

    def add(start: float, length: float, note: int, level: float, attack: float,
            decay: float | None, pan: float) -> None:
        a = int(start * RATE)
        n = min(int(length * RATE), total - a)
        if n <= 0:
            return
        t = np.arange(n) / RATE
        if decay is None:  # pad: slow swell and release, three detuned voices
            env = np.minimum(1, t / attack) * np.minimum(1, (length - t) / 0.6).clip(0)
            tone = sum(np.sin(2 * np.pi * hz(note) * d * t) for d in (0.997, 1.0, 1.003)) / 3
            tone += 0.2 * np.sin(4 * np.pi * hz(note) * t)
        else:  # pluck
            env = np.minimum(1, t / attack) * np.exp(-t / decay)
            tone = np.sin(2 * np.pi * hz(note) * t) + 0.3 * np.sin(6 * np.pi * hz(note) * t)
        signal = (level * env * tone).astype(np.float32)
        out[a:a + n, 0] += signal * (1 - pan)
        out[a:a + n, 1] += signal * (1 + pan)

    for k, (root, notes) in enumerate(chords):
        start = k * bar
        for j, note in enumerate(notes):
            add(start, bar + 0.4, note, 0.07, 0.8, None, (-0.4, 0.4)[j % 2])
        add(start, bar / 2, root, 0.22, 0.01, 0.6, 0.0)
        add(start + bar / 2, bar / 2, root, 0.16, 0.01, 0.5, 0.0)
        arpeggio = notes + [notes[1] + 12, notes[2] + 12, notes[3] + 12, notes[2] + 12]
        for j, note in enumerate(arpeggio):
            add(start + j * bar / 8, 0.9, note + 12, 0.06, 0.005, 0.25, (-0.6, 0.6)[j % 2])
    # a ping-pong echo: each repeat quieter and on the other side
    delay = int(0.375 * RATE)
    echo = out.copy()
    for k in range(1, 4):
        shifted = np.zeros_like(out)
        shifted[delay * k:] = echo[:-delay * k, ::-1] if k % 2 else echo[:-delay * k]
        out += shifted * (0.35 ** k)
    fade = np.minimum(1, np.minimum(np.arange(total) / (0.5 * RATE),
                                    (total - np.arange(total)) / (2.0 * RATE)))
    out *= fade[:, None]
    return 0.7 * out / np.abs(out).max()


if __name__ == "__main__":  # `python -m stitchcraft.demo [folder]`, as `make demo` runs it
    import sys

    make_demo_media(Path(sys.argv[1] if len(sys.argv) > 1 else "examples/media"))
