"""The ``identity`` scorer: does a take show the shot's characters as their cast images
do? Faces are found and compared face crop to face crop.

- Faces: OpenCV's Haar cascade for frontal faces (``haarcascade_frontalface_default.xml``,
  shipped inside the opencv wheels under ``cv2.data.haarcascades``; CPU, nothing to
  download), run on frames scaled so the short side is `DETECT_SHORT_SIDE` pixels: a
  face under about a seventh of the short side (a wide shot's) is missed, one of a
  medium shot or closer is found. Frames after the first are searched only near the
  faces already seen (`track_faces`). OpenCV 5 dropped the cascades from its main
  wheels, hence the ``<5`` pin.
- Likeness of two crops: CLIP image embeddings (cosine) when the CLIP scorers' weights
  are found (`clip.resolve_clip`, same model and cache), else `describe`'s colour and
  texture descriptor. The backend is part of the scorer's cache identity.
- With no face in the take's sampled frames or in a character's images, whole frames
  are compared with whole cast images the same way (no face-to-face reading then).

Cost (``benchmarks/identity_cost.py``, 5 s 720p takes, these 2 cores shared with other
work at a load of about 7): 15 ms CPU per take with no face, 23 ms for a face over
testsrc2, 55 ms over a blob texture (the cascade's worst case), against 100-110 ms for
``stability``; wall time about twice that under that load. That is besides the shared
scan, which stability reads anyway; a character's images are read and described once
per scorer.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .base import FrameSource, Score, Scorer, file_stamp

if TYPE_CHECKING:
    from ..engines.base import Availability
    from ..storyboard import Scoring
    from .clip import ClipSpec

FACE_CASCADE = "haarcascade_frontalface_default.xml"
IDENTITY_SAMPLES = 4
DETECT_SHORT_SIDE = 224
MIN_FACE = 24  # pixels at detection size: the cascade's own window
# The cascade's step between scales: 1.2 finds the faces the usual 1.1 finds here at
# under half the cost (a full search: 5-40 ms CPU a frame at this size, by texture).
SCALE_STEP = 1.2
MAX_FACES = 3  # per frame: the largest, enough for a two- or three-hander
FULL_SEARCHES = 2  # per take (`track_faces`); the other frames are searched near faces seen
FACE_MARGIN = 0.1  # each side of a detected box, as a share of its size
CROP_SIZE = 48
FRAME_SIZE = 64
HUE_BINS, SATURATION_BINS, VALUE_BINS = 12, 4, 4
CELLS, ORIENTATIONS = 4, 8
COLOUR_LENGTH = HUE_BINS * SATURATION_BINS * VALUE_BINS
# Raw similarities mapped to 0..1. The descriptor reads 0.15-0.4 for unrelated pictures,
# 0.65-0.75 for drawn faces of one shape but other colours and proportions, about 0.83
# for the same face moved over another ground, 0.95 and above re-framed in one shot.
# CLIP as the `reference` scorer maps it.
DESCRIPTOR_RANGE = (0.55, 0.95)
CLIP_RANGE = (0.50, 0.95)

Box = tuple[int, int, int, int]  # x, y, width, height, in the frame's own pixels


class FacesUnavailable(Exception):
    """No Haar cascade in this OpenCV; the message says what to install."""


_LOCAL = threading.local()  # a cascade per thread: detectMultiScale is not re-entrant


def cascade_file() -> Path | None:
    """Where OpenCV's frontal-face cascade lies, found without importing OpenCV (about
    25 MB of memory a render that looks at no face need not hold); None where OpenCV or
    the file is missing (OpenCV 5 ships no cascades)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("cv2")
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "data" / FACE_CASCADE
        if path.is_file():
            return path
    return None


def face_cascade():
    """This thread's frontal-face Haar cascade, loaded on first use.

    Raises:
        FacesUnavailable: OpenCV without cascades (5.x) or without the data file.
    """
    cascade = getattr(_LOCAL, "cascade", None)
    if cascade is None:
        import cv2

        path = cascade_file()
        if path is None or not hasattr(cv2, "CascadeClassifier"):
            raise FacesUnavailable(f"OpenCV {cv2.__version__} has no Haar face cascade (OpenCV 5 "
                                   "moved them out): pip install 'opencv-python-headless<5'")
        cascade = cv2.CascadeClassifier(str(path))
        if cascade.empty():
            raise FacesUnavailable(f"cannot read {path}")
        _LOCAL.cascade = cascade
    return cascade


def find_faces(frame: np.ndarray, near: Sequence[Box] = ()) -> list[Box]:
    """Frontal faces in a uint8 RGB frame, largest first, at most `MAX_FACES`, as boxes
    in the frame's pixels (detected at `DETECT_SHORT_SIDE`, never scaled up).

    With `near` (faces found in another frame of the same take), only the picture
    around each of them is searched, for a face of about its size: a few percent of
    a full search's cost.
    """
    import cv2

    height, width = frame.shape[:2]
    if min(height, width) < MIN_FACE:
        return []
    scale = min(1.0, DETECT_SHORT_SIDE / min(height, width))
    small = np.ascontiguousarray(frame)
    if scale < 1:
        small = cv2.resize(small, (max(1, round(width * scale)), max(1, round(height * scale))),
                           interpolation=cv2.INTER_AREA)
    gray = cv2.equalizeHist(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY))
    if not near:
        boxes = _detect(gray, MIN_FACE)
    else:
        boxes = []
        for box in near:
            x, y, w, h = (round(v * scale) for v in box)
            left, top = max(0, x - w // 2), max(0, y - h // 2)
            region = gray[top:y + h + h // 2, left:x + w + w // 2]
            for fx, fy, fw, fh in _detect(region, max(MIN_FACE, int(0.7 * w)), int(1.45 * w) + 1):
                centre = (left + fx + fw / 2, top + fy + fh / 2)
                if not any(bx <= centre[0] <= bx + bw and by <= centre[1] <= by + bh
                           for bx, by, bw, bh in boxes):  # the same face seen from two boxes
                    boxes.append((left + fx, top + fy, fw, fh))
    boxes = sorted(boxes, key=lambda b: -b[2] * b[3])[:MAX_FACES]
    return [(round(x / scale), round(y / scale), round(w / scale), round(h / scale))
            for x, y, w, h in boxes]


def _detect(gray: np.ndarray, smallest: int, largest: int | None = None) -> list[Box]:
    """The cascade's faces in a gray picture, between `smallest` and `largest` pixels."""
    if min(gray.shape[:2]) < smallest:
        return []
    bounds = {"maxSize": (largest, largest)} if largest else {}
    found = face_cascade().detectMultiScale(gray, scaleFactor=SCALE_STEP, minNeighbors=4,
                                            minSize=(smallest, smallest), **bounds)
    return [(int(x), int(y), int(w), int(h)) for x, y, w, h in np.reshape(found, (-1, 4))]


def track_faces(frames: Sequence[np.ndarray]) -> list[list[Box]]:
    """Faces in frames sampled in order across one take, for little cost: each frame
    is searched near the faces last seen (`find_faces` with `near`), and in full only
    where that finds none, at most `FULL_SEARCHES` times a take (so a take with no
    face at all costs two full searches, not one per frame). A face that first shows
    after those searches, away from the faces already seen, is missed."""
    found: list[list[Box]] = []
    last: list[Box] = []
    full = 0
    for frame in frames:
        boxes = find_faces(frame, near=last) if last else []
        if not boxes and full < FULL_SEARCHES:
            boxes = find_faces(frame)
            full += 1
        found.append(boxes)
        last = boxes or last
    return found


def face_crop(frame: np.ndarray, box: Box) -> np.ndarray:
    """The face in `box` with `FACE_MARGIN` around it, clipped to the frame."""
    x, y, w, h = box
    margin_x, margin_y = round(w * FACE_MARGIN), round(h * FACE_MARGIN)
    top, left = max(0, y - margin_y), max(0, x - margin_x)
    return frame[top:y + h + margin_y, left:x + w + margin_x]


def describe(image: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """A colour-and-texture descriptor of a uint8 RGB picture (a face crop, or a whole
    frame) read at `size` x `size`: an HSV histogram (`HUE_BINS` x `SATURATION_BINS` x
    `VALUE_BINS`, summing to 1) then gradient-orientation histograms (`ORIENTATIONS`
    unsigned directions, magnitude-weighted, in a `CELLS` x `CELLS` grid; unit length).
    Compare two with `descriptor_similarity`."""
    import cv2

    picture = cv2.resize(np.ascontiguousarray(image), (size, size), interpolation=cv2.INTER_AREA)
    hsv = cv2.cvtColor(picture, cv2.COLOR_RGB2HSV)
    colour = cv2.calcHist([hsv], [0, 1, 2], None, [HUE_BINS, SATURATION_BINS, VALUE_BINS],
                          [0, 180, 0, 256, 0, 256]).flatten().astype(np.float32)
    colour = colour / max(1.0, float(colour.sum()))
    gray = cv2.cvtColor(picture, cv2.COLOR_RGB2GRAY).astype(np.float32)
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)
    magnitude = np.hypot(gx, gy)
    direction = (np.arctan2(gy, gx) % np.pi) / np.pi * ORIENTATIONS
    bins = np.minimum(direction.astype(int), ORIENTATIONS - 1)
    cell = (np.arange(size) * CELLS // size)
    index = (cell[:, None] * CELLS + cell[None, :]) * ORIENTATIONS + bins
    texture = np.bincount(index.ravel(), weights=magnitude.ravel(),
                          minlength=CELLS * CELLS * ORIENTATIONS).astype(np.float32)
    texture /= max(1e-6, float(np.linalg.norm(texture)))
    return np.concatenate([colour, texture])


def descriptor_similarity(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Pairwise likeness of two stacks of `describe` vectors (N x D, M x D) -> N x M,
    0..1: the mean of the colour histograms' intersection and the texture histograms'
    cosine. A flat picture has no texture and matches only on colour."""
    colour = np.minimum(first[:, None, :COLOUR_LENGTH], second[None, :, :COLOUR_LENGTH]).sum(axis=-1)
    texture = first[:, COLOUR_LENGTH:] @ second[:, COLOUR_LENGTH:].T
    return 0.5 * colour + 0.5 * np.clip(texture, 0.0, 1.0)


def _rescale(value: float, span: tuple[float, float]) -> float:
    low, high = span
    return float(min(1.0, max(0.0, (value - low) / (high - low))))


Embed = Callable[[list[np.ndarray]], np.ndarray]


@dataclass(frozen=True)
class _Likeness:
    """How pictures are compared: embedded (RGB pictures -> N x D, face crops and whole
    frames each their way), then `compare`d (N x D, M x D -> N x M raw similarity),
    whose `span` maps to 0..1."""

    name: str
    identity: str
    embed_faces: Embed
    embed_frames: Embed
    compare: Callable[[np.ndarray, np.ndarray], np.ndarray]
    span: tuple[float, float]


def _descriptor_likeness() -> _Likeness:
    def faces(images: list[np.ndarray]) -> np.ndarray:
        return np.stack([describe(image) for image in images])

    def frames(images: list[np.ndarray]) -> np.ndarray:
        return np.stack([describe(image, FRAME_SIZE) for image in images])

    return _Likeness("colour and texture", "descriptor@1", faces, frames, descriptor_similarity,
                     DESCRIPTOR_RANGE)


def _clip_likeness(spec: ClipSpec) -> _Likeness:
    from .clip import load_clip

    def embed(images: list[np.ndarray]) -> np.ndarray:
        return load_clip(spec).encode_images(images)

    return _Likeness("CLIP", f"clip|{spec.identity()}", embed, embed, lambda a, b: a @ b.T,
                     CLIP_RANGE)


@dataclass
class _CastImage:
    """One cast image as the scorer keeps it: its faces' and its whole picture's
    embeddings (faces empty when none was found)."""

    faces: np.ndarray
    whole: np.ndarray


class IdentityScorer(Scorer):
    """Character likeness: the faces in frames sampled across the take against the
    faces in each character's cast images (`FrameSource.cast`).

    Per character: for each of `IDENTITY_SAMPLES` sampled frames (one for a still) that
    shows a face, the best match of any of its faces with any of the character's image
    faces; the mean over those frames, mapped to 0..1 (`DESCRIPTOR_RANGE` or
    `CLIP_RANGE`). When the frames or the images show no face, whole frames against
    whole images instead. ``value`` is the mean over the characters.

    Parts: ``<name>`` (the character's likeness, 0..1) and ``<name>:faces`` (the share
    of sampled frames compared face to face, 0..1; 0 when whole frames were compared).
    None when the shot names no cast.
    """

    NAME = "identity"
    SHAPE = "take"
    DEFAULT_WEIGHT = 1.0
    DESCRIPTION = "character likeness to the cast images (faces; CLIP or colour/texture)"
    VERSION = "1"

    def __init__(self, settings: Scoring | None = None):
        super().__init__(settings)
        self._likeness: _Likeness | None = None
        self._cast_images: dict[str, _CastImage] = {}
        self._lock = threading.Lock()

    @classmethod
    def availability(cls, settings: Scoring | None = None) -> Availability:
        from ..engines.base import Availability

        if cascade_file() is None:
            return Availability(False, "OpenCV without its Haar face cascade (OpenCV 5 moved them out): "
                                       "pip install 'opencv-python-headless<5'")
        return Availability(True)

    @property
    def likeness(self) -> _Likeness:
        """CLIP when its weights are found, else the colour-and-texture descriptor."""
        if self._likeness is None:
            from .clip import ClipUnavailable, configured_spec, resolve_clip

            try:
                self._likeness = _clip_likeness(resolve_clip(configured_spec(self.settings)))
            except ClipUnavailable:
                self._likeness = _descriptor_likeness()
        return self._likeness

    def identity(self) -> str:
        return self.likeness.identity

    def applies(self, take: FrameSource) -> bool:
        """Only a take of a shot whose cast has images is judged for likeness."""
        return super().applies(take) and any(take.cast.values())

    def inputs_key(self, take: FrameSource, previous: FrameSource | None = None) -> str:
        if not take.cast:
            return ""
        named = "|".join(f"{name}={file_stamp(images)}" for name, images in sorted(take.cast.items()))
        return hashlib.sha1(named.encode()).hexdigest()[:16]

    def score(self, take: FrameSource, previous: FrameSource | None = None) -> Score | None:
        cast = {name: images for name, images in take.cast.items() if images}
        if not cast:
            return None
        likeness = self.likeness
        frames = list(take.sample(IDENTITY_SAMPLES))
        crops, owners = [], []  # face crops of the sampled frames, and the frame of each
        for index, (frame, boxes) in enumerate(zip(frames, track_faces(frames), strict=True)):
            for box in boxes:
                crops.append(face_crop(frame, box))
                owners.append(index)
        take_faces = likeness.embed_faces(crops) if crops else None
        take_frames: np.ndarray | None = None
        parts: dict[str, float] = {}
        notes = []
        for name, images in cast.items():
            known = [self._cast_image(path) for path in images]
            image_faces = [image.faces for image in known if len(image.faces)]
            if take_faces is not None and image_faces:
                best = likeness.compare(take_faces, np.concatenate(image_faces)).max(axis=1)
                per_frame = [float(best[np.equal(owners, i)].max()) for i in sorted(set(owners))]
                share = len(per_frame) / len(frames)
                notes.append(f"{name}: faces in {len(per_frame)}/{len(frames)} frames")
            else:
                if take_frames is None:
                    take_frames = likeness.embed_frames(frames)
                wholes = np.stack([image.whole for image in known])
                per_frame = list(likeness.compare(take_frames, wholes).max(axis=1))
                share = 0.0
                side = "the take" if take_faces is None else "the cast images"
                notes.append(f"{name}: no face in {side}, whole frames compared")
            parts[name] = _rescale(float(np.mean(per_frame)), likeness.span)
            parts[f"{name}:faces"] = share
        value = float(np.mean([parts[name] for name in cast]))
        return Score(value, parts, f"by {likeness.name}; " + "; ".join(notes))

    def _cast_image(self, path: Path) -> _CastImage:
        """A cast image's embeddings, computed once per file version."""
        from ..media import read_image

        key = file_stamp([path])
        with self._lock:
            known = self._cast_images.get(key)
        if known is None:
            picture = read_image(path)
            crops = [face_crop(picture, box) for box in find_faces(picture)[:1]]
            likeness = self.likeness
            faces = likeness.embed_faces(crops) if crops else np.zeros((0, 1), np.float32)
            known = _CastImage(faces=faces, whole=likeness.embed_frames([picture])[0])
            with self._lock:
                if len(self._cast_images) > 256:
                    self._cast_images.clear()
                self._cast_images[key] = known
        return known
