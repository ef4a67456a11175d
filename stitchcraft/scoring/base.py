"""The scorer interface: how a take, or a seam between two takes, is judged.

Scorers come in three shapes, by what they look at:

- ``take``: one take alone (prompt alignment, temporal stability, reference likeness);
  the result depends only on the take and its shot, so it is cached with the take.
- ``seam``: the previous chosen take's tail against this take's head (continuity);
  cached per pair.
- ``drift``: a chained take against the first take of its chain.

Every scorer returns a `Score` whose ``value`` lies in [0, 1], higher is better, plus
its parts in their own documented units for the report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal

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


class FrameSource:
    """A take's frames as scorers read them: only what is asked for is decoded.

    Heads and tails come from the store's lossless copies when given, else by seeking.
    Everything that needs frames from across the take (sampling, stability) reads one
    shared low-resolution pass (`scan`), decoded once per source, so keep one
    `FrameSource` per take for as long as its scores are wanted.

    Attributes:
        take_id: The take's content hash.
        path: Its video file.
        frames: Its frame count.
        fps: Its frame rate.
        prompt: The shot's prompt, if generated.
        reference: The shot's reference image, if any.
        decoded: Frames decoded so far through this source (for cost reports).
    """

    SCAN_SHORT_SIDE: ClassVar[int] = 224

    def __init__(self, take_id: str, path: Path, frames: int, fps: Fraction, *,
                 prompt: str | None = None, reference: Path | None = None,
                 head: np.ndarray | None = None, tail: np.ndarray | None = None,
                 size: tuple[int, int] | None = None):
        self.take_id = take_id
        self.path = path
        self.frames = frames
        self.fps = fps
        self.prompt = prompt
        self.reference = reference
        self.decoded = 0
        self._head = head
        self._tail = tail
        self._size = size
        self._cache: dict[tuple[str, int], np.ndarray] = {}

    def head(self, count: int) -> np.ndarray:
        """The first `count` frames, uint8 count x H x W x 3."""
        if self._head is not None and len(self._head) >= count:
            return self._head[:count]
        count = min(count, self.frames)
        return self._read("head", 0, count)

    def tail(self, count: int) -> np.ndarray:
        """The last `count` frames (lossless when the store holds them)."""
        if self._tail is not None and len(self._tail) >= count:
            return self._tail[-count:]
        count = min(count, self.frames)
        return self._read("tail", self.frames - count, count)

    def scan(self) -> np.ndarray:
        """Every frame, scaled so the short side is `SCAN_SHORT_SIDE` pixels (never
        up), decoded in one pass and kept: what stability, sampling and drift read.
        """
        key = ("scan", 0)
        if key not in self._cache:
            from ..media import read_frames

            width, height = self._dimensions()
            scale = min(1.0, self.SCAN_SHORT_SIDE / min(width, height))
            size = (max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2))
            frames = read_frames(self.path, 0, self.frames, size=None if scale == 1.0 else size)
            self.decoded += len(frames)
            self._cache[key] = frames
        return self._cache[key]

    def sample(self, count: int) -> np.ndarray:
        """`count` frames spread evenly across the take, ends included, at scan size."""
        import numpy as np

        scanned = self.scan()
        indices = np.linspace(0, len(scanned) - 1, num=min(count, len(scanned))).round().astype(int)
        return scanned[indices]

    def all(self) -> np.ndarray:
        """Every frame at full size (for scorers that truly need it; costly in memory)."""
        return self._read("all", 0, self.frames)

    def _dimensions(self) -> tuple[int, int]:
        if self._size is None:
            if self._head is not None and len(self._head):
                self._size = (self._head.shape[2], self._head.shape[1])
            else:
                from ..media import probe

                info = probe(self.path)
                self._size = (info.width, info.height)
        return self._size

    def _read(self, name: str, start: int, count: int) -> np.ndarray:
        key = (name, count)
        if key not in self._cache:
            from ..media import read_frames

            frames = read_frames(self.path, start, count)
            self.decoded += len(frames)
            self._cache[key] = frames
        return self._cache[key]


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

    def __init__(self, settings: Scoring | None = None):
        from ..storyboard import Scoring

        self.settings = settings or Scoring()

    @classmethod
    def availability(cls, settings: Scoring | None = None) -> Availability:
        """Whether this scorer can run here (weights found, packages installed)."""
        from ..engines.base import Availability

        return Availability(True)

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
