"""The scorer interface: how a take, or a seam between two takes, is judged.

Scorers come in three shapes, by what they look at:

- ``take``: one take alone (prompt alignment, temporal stability, reference likeness);
  the result depends only on the take and its shot, so it is cached with the take.
- ``seam``: the previous chosen take's tail against this take's head (continuity);
  cached per pair.
- ``drift``: a chained take against the first take of its chain.

Every scorer returns a `Score` whose ``value`` lies in [0, 1], higher is better, plus
its parts in their own documented units for the report.

A take of one frame is a still (a keyframe candidate): scorers that judge motion
(freezes, flicker) do not apply to it, and each scorer says which takes it judges in
`Scorer.APPLIES_TO`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal, Union

if TYPE_CHECKING:
    import numpy as np

    from ..engines.base import Availability
    from ..storyboard import Scoring


@dataclass
class Score:
    """A scorer's verdict: ``value`` in [0, 1] (higher is better) and its parts."""

    value: float
    parts: dict[str, float] = field(default_factory=dict)
    note: str = ""


def scan_size(width: int, height: int) -> tuple[int, int]:
    """The size `FrameSource.scan` reads a take of `width` x `height` at: the short side
    `FrameSource.SCAN_SHORT_SIDE` pixels (never scaled up), both sides even."""
    scale = min(1.0, FrameSource.SCAN_SHORT_SIDE / min(width, height))
    if scale == 1.0:
        return (width, height)
    return (max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2))


class FrameSource:
    """A take's frames as scorers read them: only what is asked for is decoded.

    Heads and tails come from the store's lossless copies when given, else by seeking.
    Everything that needs frames from across the take (sampling, stability) reads one
    shared low-resolution pass (`scan`), decoded once per source, so keep one
    `FrameSource` per take for as long as its scores are wanted.

    Attributes:
        take_id: The take's content hash.
        path: Its video file.
        start: The take's in-point in `path`, seconds, when the take is a span of a
            longer file (`store.TakeSpan`): frames are then read as the assembly shows
            them, from there, at the take's size (given by `size` or `head`). None when
            `path` holds exactly the take's frames.
        frames: Its frame count.
        fps: Its frame rate.
        prompt: The shot's prompt, if generated.
        reference: The shot's reference image, if any.
        cast: The characters who appear in the shot, each by name with their reference
            images (any number; the likeness the ``identity`` scorer judges). Empty
            when the shot names none.
        style: Style reference images for the shot (the look, not a character), which
            the ``reference`` scorer compares the take with besides `reference`; kept
            apart from `cast` so no face in a style frame is taken for a character.
        decoded: Frames decoded so far through this source (for cost reports).
        reader: Reads frames ``(first, count, size=...)`` in place of `path` and `start`
            (a stored take's `StoredTake.read`: a graded take is read without encoding it).
    """

    SCAN_SHORT_SIDE: ClassVar[int] = 224

    def __init__(self, take_id: str, path: Path, frames: int, fps: Fraction, *,
                 prompt: str | None = None, reference: Path | None = None,
                 head: Frames | None = None, tail: Frames | None = None,
                 size: tuple[int, int] | None = None, pixels: np.ndarray | None = None,
                 start: float | None = None, scan: np.ndarray | None = None,
                 cast: Mapping[str, Sequence[Path]] | None = None, style: Sequence[Path] = (),
                 reader: Callable[..., np.ndarray] | None = None):
        self.take_id = take_id
        self._reader = reader
        self.path = path
        self.start = start
        self.frames = frames
        self.fps = fps
        self.prompt = prompt
        self.reference = reference
        self.cast: dict[str, list[Path]] = {name: list(images)
                                            for name, images in (cast or {}).items()}
        self.style: list[Path] = list(style)
        self.decoded = 0
        if pixels is not None:  # the take's frames, still in memory: nothing to decode
            head = pixels if head is None else head
            tail = pixels if tail is None else tail
            size = (pixels.shape[2], pixels.shape[1])
        self._pixels = pixels
        self._head = head
        self._tail = tail
        self._size = size
        self._cache: dict[tuple[str, int], np.ndarray] = {}
        self._samples: dict[int, np.ndarray] = {}
        if scan is not None:  # read already, with the store's head and tail (`scan_size`)
            self._cache[("scan", 0)] = scan

    @property
    def is_still(self) -> bool:
        """Whether the take is a still: one frame (a keyframe candidate), no motion."""
        return self.frames == 1

    def head(self, count: int) -> np.ndarray:
        """The first `count` frames, uint8 count x H x W x 3."""
        self._head = _loaded(self._head, slice(0, ENDS_KEPT))
        if self._head is not None and len(self._head) >= count:
            return self._head[:count]
        count = min(count, self.frames)
        return self._read("head", 0, count)

    def tail(self, count: int) -> np.ndarray:
        """The last `count` frames (lossless when the store holds them)."""
        self._tail = _loaded(self._tail, slice(-ENDS_KEPT, None))
        if self._tail is not None and len(self._tail) >= count:
            return self._tail[-count:]
        count = min(count, self.frames)
        return self._read("tail", self.frames - count, count)

    def slim(self, sample_counts: Iterable[int], *, head: Frames | None = None,
             tail: Frames | None = None) -> None:
        """Lets go of the take's full frames and its scan, keeping what later pair scores
        read: `sample(n)` for each n in `sample_counts`, and the head and tail (given
        here, typically as loaders of the store's lossless copies)."""
        for count in sample_counts:
            self._samples[count] = self.sample(count)
        self._pixels = None
        self._cache.clear()
        self._head = head
        self._tail = tail

    def scan(self) -> np.ndarray:
        """Every frame, scaled so the short side is `SCAN_SHORT_SIDE` pixels (never
        up), decoded in one pass and kept: what stability, sampling and drift read.
        """
        key = ("scan", 0)
        if key not in self._cache:
            width, height = self._dimensions()
            size = scan_size(width, height)
            whole = size == (width, height)
            if self._pixels is not None:
                frames = scanned(self._pixels)
            else:
                frames = self._decode(0, self.frames, None if whole else size)
            self._cache[key] = frames
        return self._cache[key]

    def sample(self, count: int) -> np.ndarray:
        """`count` frames spread evenly across the take, ends included, at scan size."""
        import numpy as np

        if count in self._samples:
            return self._samples[count]
        scanned = self.scan()
        indices = np.linspace(0, len(scanned) - 1, num=min(count, len(scanned))).round().astype(int)
        return scanned[indices]

    def all(self) -> np.ndarray:
        """Every frame at full size (for scorers that truly need it; costly in memory)."""
        return self._read("all", 0, self.frames)

    def _dimensions(self) -> tuple[int, int]:
        if self._size is None:
            self._head = _loaded(self._head, slice(0, ENDS_KEPT))
            if self._head is not None and len(self._head):
                self._size = (self._head.shape[2], self._head.shape[1])
            elif self.start is not None:
                raise ValueError(f"take {self.take_id[:12]} is a span of {self.path.name}: "
                                 "its size must be given")
            else:
                from ..media import probe

                info = probe(self.path)
                self._size = (info.width, info.height)
        return self._size

    def _read(self, name: str, start: int, count: int) -> np.ndarray:
        if self._pixels is not None:
            return self._pixels[start:start + count]
        key = (name, count)
        if key not in self._cache:
            self._cache[key] = self._decode(start, count, None)
        return self._cache[key]

    def _decode(self, first: int, count: int, size: tuple[int, int] | None) -> np.ndarray:
        """Frames ``first .. first+count`` of the take from its file, at `size` (else the
        take's own)."""
        if self._reader is not None:
            frames = self._reader(first, count, size=size)
        elif self.start is None:
            from ..media import read_frames

            frames = read_frames(self.path, first, count, size=size)
        else:
            from ..store import read_span

            frames = read_span(self.path, self.start, first, count, fps=self.fps,
                               size=size or self._dimensions())
        self.decoded += len(frames)
        return frames


# Frames, or a loader of them called on first use (the store's lossless head or tail).
Frames = Union["np.ndarray", Callable[[], "np.ndarray"]]


# The most frames of a take's head or tail that a pair scorer reads (seams: 4); a
# source keeps no more of the store's ends than this once it has loaded them.
ENDS_KEPT = 4


def _loaded(frames: Frames | None, kept: slice | None = None) -> np.ndarray | None:
    """Frames, loaded if given as a loader; of loaded ones only the `kept` part, copied
    (a render keeps a source per take: 24 full frames each at 720p is 66 MB)."""
    if not callable(frames):
        return frames
    loaded = frames()
    return loaded if kept is None else loaded[kept].copy()


def file_stamp(paths: Iterable[Path]) -> str:
    """A short hash naming files by path, size and modification time, for cache keys
    of scores that read them (a reference image replaced in place changes it)."""
    import hashlib

    stamps = []
    for path in paths:
        path = Path(path)
        stat = path.stat() if path.is_file() else None
        stamps.append(f"{path}:{stat.st_size}:{int(stat.st_mtime)}" if stat else str(path))
    return hashlib.sha1("|".join(stamps).encode()).hexdigest()[:16]


def scanned(frames: np.ndarray) -> np.ndarray:
    """Frames in memory as `FrameSource.scan` reads them: at `scan_size` (they are
    themselves when that is their size)."""
    size = scan_size(frames.shape[2], frames.shape[1])
    return frames if size == (frames.shape[2], frames.shape[1]) else _resized(frames, size)


def _resized(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Frames scaled to `size` (width, height) by area averaging, as a scan reads them."""
    import cv2
    import numpy as np

    def scaled(frame: np.ndarray) -> np.ndarray:
        # Exact halvings average blocks cheaply (INTER_AREA's fast path); the last,
        # smaller than 2x, step interpolates. Area averaging all the way is 10x slower.
        while frame.shape[1] >= 2 * size[0] and frame.shape[0] >= 2 * size[1]:
            frame = cv2.resize(frame, (frame.shape[1] // 2, frame.shape[0] // 2), interpolation=cv2.INTER_AREA)
        return cv2.resize(frame, size, interpolation=cv2.INTER_LINEAR)

    # OpenCV reads a frame whose rows lie apart (a view: cropped, or a window on a
    # wider picture) where it is, as numpy's copy would give it: no copy per frame.
    return np.stack([scaled(frame) for frame in frames])


class Scorer:
    """Base class of every scorer; subclasses set NAME, SHAPE and DEFAULT_WEIGHT.

    VERSION changes whenever a scorer's numbers would change for the same frames; it is
    part of every cached result's key (with `identity`), so stale scores are recomputed.
    """

    NAME: ClassVar[str] = ""
    SHAPE: ClassVar[Literal["take", "seam", "drift"]] = "take"
    DEFAULT_WEIGHT: ClassVar[float] = 1.0
    DESCRIPTION: ClassVar[str] = ""
    VERSION: ClassVar[str] = "1"
    # How many frames sampled across a take a pair-shape scorer reads of it (its
    # `FrameSource.sample` count), so a source can keep just those; 0 for none.
    PAIR_SAMPLES: ClassVar[int] = 0
    # Which takes it judges: "still" (one frame, `FrameSource.is_still`) and "moving"
    # (the rest). Measures of motion leave stills out: one frame is no freeze.
    APPLIES_TO: ClassVar[frozenset[Literal["still", "moving"]]] = frozenset({"still", "moving"})

    def __init__(self, settings: Scoring | None = None):
        from ..storyboard import Scoring

        self.settings = settings or Scoring()

    @classmethod
    def availability(cls, settings: Scoring | None = None) -> Availability:
        """Whether this scorer can run here (weights found, packages installed)."""
        from ..engines.base import Availability

        return Availability(True)

    def applies(self, take: FrameSource) -> bool:
        """Whether this scorer judges `take` at all (see `APPLIES_TO`)."""
        return ("still" if take.is_still else "moving") in self.APPLIES_TO

    def identity(self) -> str:
        """What besides VERSION decides this scorer's numbers (a weights file, a
        model name), for cache keys. Empty for scorers without weights.
        """
        return ""

    def inputs_key(self, take: FrameSource, previous: FrameSource | None = None) -> str:
        """What besides the frames decides this score (the prompt, the reference
        image), hashed for cache keys. Empty when only the frames matter.
        """
        return ""

    def score(self, take: FrameSource, previous: FrameSource | None = None) -> Score | None:
        """Scores a take (``take`` shape) or a pair (``seam``/``drift``: `previous` is
        the earlier take). Returns None when the scorer has nothing to say (no prompt,
        no reference image).
        """
        raise NotImplementedError
