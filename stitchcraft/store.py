"""The take store: every finished take, kept by content hash, written atomically.

Layout under the cache root::

    takes/ab/abcdef.../take.mp4     the take (visually lossless h264, with its own audio)
                      head.npy      first frames, lossless (seams, scoring)
                      tail.npy      last frames, lossless (chaining, seams)
                      meta.json     engine, seed, label, frames, size, fps, request
                      scores.json   cached per-take scores
    pairs/ab/<key>.json             cached seam and drift scores between two takes
    tmp/                            work in progress; anything here is garbage

A take directory appears by one `os.rename` of a complete temporary directory, so a
render killed at any instant leaves either a whole take or none.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from .engines.base import Take
from .errors import VerificationError

HEAD_FRAMES = 8
TAIL_FRAMES = 16
TAKE_CRF = 14


@dataclass(frozen=True)
class StoredTake:
    """A take as kept in the store."""

    id: str
    dir: Path
    frames: int
    width: int
    height: int
    fps: Fraction
    seed: int
    engine: str
    label: str
    meta: dict[str, Any]

    @property
    def video(self) -> Path:
        return self.dir / "take.mp4"

    @property
    def has_audio(self) -> bool:
        return bool(self.meta.get("audio"))

    def head(self) -> np.ndarray:
        """First frames, lossless."""
        return np.load(self.dir / "head.npy")

    def tail(self) -> np.ndarray:
        """Last frames, lossless."""
        return np.load(self.dir / "tail.npy")

    def last_frames(self, count: int) -> np.ndarray:
        tail = self.tail()
        return tail[-count:]


class TakeStore:
    """Content-addressed storage of takes and their scores."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root).absolute()

    def _take_dir(self, take_id: str) -> Path:
        return self.root / "takes" / take_id[:2] / take_id

    def get(self, take_id: str) -> StoredTake | None:
        """The stored take, or None if it was never finished."""
        directory = self._take_dir(take_id)
        try:
            meta = json.loads((directory / "meta.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        if not (directory / "take.mp4").is_file():
            return None
        return _stored(take_id, directory, meta)

    def put(self, take_id: str, take: Take, *, fps: Fraction, engine: str,
            request: dict[str, Any]) -> StoredTake:
        """Encodes and stores a take; a no-op returning the existing one if present.

        Raises:
            VerificationError: the encoded file does not hold the take's frames.
        """
        existing = self.get(take_id)
        if existing is not None:
            return existing
        from . import media

        frames = take.frames
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or not len(frames):
            raise VerificationError(f"engine {engine} returned frames of shape {frames.shape} "
                                    f"{frames.dtype}; expected N x H x W x 3 uint8")
        count, height, width = frames.shape[:3]
        work = self._tmp_dir()
        try:
            audio = None
            if take.audio is not None:
                audio = (take.audio, take.audio_start)
            media.write_video(frames, work / "take.mp4", fps, crf=TAKE_CRF, audio=audio)
            info = media.probe(work / "take.mp4")
            if info.frames != count or (info.width, info.height) != (width, height):
                raise VerificationError(
                    f"take {take_id[:12]} encoded to {info.frames} frames {info.width}x{info.height}, "
                    f"expected {count} frames {width}x{height}")
            np.save(work / "head.npy", frames[:HEAD_FRAMES])
            np.save(work / "tail.npy", frames[-TAIL_FRAMES:])
            meta = {
                "id": take_id, "frames": count, "width": width, "height": height,
                "fps": str(fps), "seed": take.seed, "engine": engine, "label": take.label,
                "audio": info.has_audio, "meta": take.meta, "request": request,
            }
            _write_json(work / "meta.json", meta)
            os.chmod(work, 0o755)
            target = self._take_dir(take_id)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(work, target)
            except OSError:
                if self.get(take_id) is None:
                    raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
        stored = self.get(take_id)
        assert stored is not None
        return stored

    def load_scores(self, take_id: str) -> dict[str, Any] | None:
        return _read_json(self._take_dir(take_id) / "scores.json")

    def save_scores(self, take_id: str, scores: dict[str, Any]) -> None:
        directory = self._take_dir(take_id)
        if directory.is_dir():
            _write_json_atomic(directory / "scores.json", scores)

    def load_pair(self, key: str) -> dict[str, Any] | None:
        return _read_json(self.root / "pairs" / key[:2] / f"{key}.json")

    def save_pair(self, key: str, scores: dict[str, Any]) -> None:
        _write_json_atomic(self.root / "pairs" / key[:2] / f"{key}.json", scores)

    def _tmp_dir(self) -> Path:
        tmp = self.root / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f"{uuid.uuid4().hex[:8]}.", dir=tmp))


def _stored(take_id: str, directory: Path, meta: dict[str, Any]) -> StoredTake:
    return StoredTake(
        id=take_id, dir=directory, frames=int(meta["frames"]), width=int(meta["width"]),
        height=int(meta["height"]), fps=Fraction(meta["fps"]), seed=int(meta["seed"]),
        engine=str(meta["engine"]), label=str(meta.get("label", "")), meta=meta,
    )


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, sort_keys=True, default=str))


def _write_json_atomic(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(value, handle, indent=2, sort_keys=True, default=str)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
