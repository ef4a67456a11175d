"""The take store: every finished take, kept by content hash, written atomically.

Layout under the cache root::

    takes/ab/abcdef.../take.mp4     the take (visually lossless h264, with its own audio)
                      head.npy      first frames, lossless (seams, scoring)
                      tail.npy      last frames, lossless (chaining, seams)
                      lead.npy      a chained take's re-made conditioning frames, lossless
                                    (the overlap a join cross-fades), when its engine kept them
                      meta.json     engine, seed, label, frames, size, fps, request, and
                                    the size and sha256 of each file above
                      scores.json   cached per-take scores
    takes/cd/cdef.../source.mp4     a take that is a span of an encoded file it was
                      head.npy      given (`Take.from_file`): the file itself, copied
                      tail.npy      byte for byte when it must be kept (a download), or
                      meta.json     only referred to (a user's footage: no copy, its
                                    path, size, mtime and sha256 in meta.json), with
                                    the span's in-point; never re-encoded
    takes/ef/ef01.../grade.npy      a colour-anchored take kept as a grade of the take
                      meta.json     its engine made (`put_graded`): the per-frame
                                    transform; its head, tail and middle are the made
                                    take's, graded when read. take.mp4 appears only
                                    when something needs the take as a file (`encode`:
                                    the chosen take, for the assembly), so a runner-up
                                    never costs an encode
    pairs/ab/<key>.json             cached seam and drift scores between two takes
    tmp/                            work in progress, named for its owner process
    damaged/<id>.<time>/            entries that failed their check, kept for inspection

A take directory appears by one `os.rename` of a complete temporary directory, so a
render killed at any instant leaves either a whole take or none. An entry is checked
whenever it is read (`TakeStore.get`): its meta.json parses and has its fields, each
file has the size recorded when it was stored, and the head and tail arrays have the
take's shape; a file-backed entry's referred source still has its recorded size, and its
recorded sha256 when its modification time moved. An entry that fails (a source edited
or gone included) is moved to ``damaged/`` with a warning, and reads as absent, so the
take is made again. Score files are only a cache: an unreadable one
reads as empty and is rewritten. A graded entry also needs the entry it grades:
without it, it reads as absent.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import hashlib
import io
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .engines.base import Take
from .errors import MediaError, RenderError, StorageError, VerificationError, os_cause
from .housekeeping import owner_tag, remove_stale

if TYPE_CHECKING:
    from .media import Input, MediaInfo

HEAD_FRAMES = 8
TAIL_FRAMES = 16
# A take made as pixels is kept encoded at crf 14 with x264's ultrafast preset. At the
# same crf it keeps more of the picture than veryfast (PSNR against the frames: 60 dB
# against 51 for testsrc2, 51 against 47 for mandelbrot, at 720p), for a third to a fifth
# of the encoder's CPU and half the decoder's, in a file 1.2-2x larger (the take's
# lossless ends, kept beside it, are larger still). The file is what every later read of
# the take decodes: the scan, the cut's pieces, a join.
TAKE_CRF = 14
TAKE_PRESET = "ultrafast"
# Scratch whose owner cannot be judged (no tag, or another machine's) goes after this long.
_UNKNOWN_SCRATCH_SECONDS = 24 * 3600
_FILES = ("take.mp4", "head.npy", "tail.npy", "middle.npy")


@dataclass(frozen=True)
class StoredTake:
    """A take as kept in the store.

    Attributes:
        store: The store it was read from; a head or tail that turns out damaged when
            read is moved aside there.
    """

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
    store: TakeStore | None = field(default=None, compare=False, repr=False)

    @property
    def graded_from(self) -> str | None:
        """The id of the take this one is a colour grade of (`TakeStore.put_graded`),
        None for a take kept as its own pictures."""
        graded = self.meta.get("graded")
        return str(graded["made"]) if isinstance(graded, dict) else None

    @property
    def encoded(self) -> bool:
        """Whether the take's pictures are a video file: False only for a graded take
        not encoded yet (reading its `span` encodes it)."""
        return self.graded_from is None or "take.mp4" in self.meta.get("files", {})

    @property
    def span(self) -> TakeSpan:
        """Where the take's pictures are: the file the assembly and export hand to
        ffmpeg. A graded take not encoded yet is encoded first (`TakeStore.encode`);
        to look at its frames without that, `read` them.

        Raises:
            RenderError: a graded take's made take is gone from the cache.
        """
        if not self.encoded:
            assert self.store is not None, "a graded take is read through its store"
            return self.store.encode(self).span
        source = self.meta.get("source")
        if isinstance(source, dict):
            path = self.dir / source["name"] if source.get("copied") else Path(source["path"])
            return TakeSpan(path, float(source["start"]), self.frames, self.fps, self.width,
                            self.height)
        return TakeSpan(self.dir / "take.mp4", None, self.frames, self.fps, self.width, self.height)

    def read(self, first: int = 0, count: int | None = None, *,
             size: tuple[int, int] | None = None) -> np.ndarray:
        """The take's frames ``first .. first+count`` (to the end when None) as uint8 RGB,
        scaled to `size` (width, height) if given. A graded take not encoded yet is read
        as the frames of the take it grades, graded (scaled first, then graded: the same
        per pixel).

        Raises:
            MediaError: the file is unreadable or ends early.
            RenderError: a graded take's made take is gone from the cache.
        """
        if self.encoded:
            return self.span.read(first, count, size=size)
        from .generate.colour import apply_grade

        frames = self.made().read(first, count, size=size)
        return apply_grade(frames, self.grade(), first)

    def pick(self, indices: Sequence[int], *, size: tuple[int, int] | None = None) -> np.ndarray:
        """The frames at `indices` (ascending, distinct), as `read` gives them, in one
        decode (`TakeSpan.pick`).

        Raises:
            As `read`.
        """
        if self.encoded:
            return self.span.pick(indices, size=size)
        from .generate.colour import apply_grade

        frames, grade = self.made().span.pick(indices, size=size), self.grade()
        return np.stack([apply_grade(frame[None], grade, index)[0] for frame, index in zip(frames, indices,
                                                                                             strict=True)])

    def stream(self) -> Generator[np.ndarray, None, None]:
        """Every frame of the take, one at a time, as `read` gives them (memory stays
        flat whatever the length): a graded take not encoded yet is the frames of the
        take it grades, graded.

        Raises:
            As `read`.
        """
        if self.encoded:
            yield from self.span.stream()
            return
        from .generate.colour import apply_grade

        grade = self.grade()
        for index, frame in enumerate(self.made().stream()):
            yield apply_grade(frame[None], grade, index)[0]

    def grade(self) -> np.ndarray:
        """A graded take's per-frame transform (`colour.grade_for`), F x 3 x 4 float32.

        Raises:
            RenderError: as `head`.
        """
        return self._frames("grade.npy")

    @property
    def video(self) -> Path:
        """The file holding the take's pictures (read it through `span`: a file-backed
        take begins inside it)."""
        return self.span.path

    @property
    def has_audio(self) -> bool:
        return bool(self.meta.get("audio"))

    @property
    def sound(self) -> tuple[Path, float] | None:
        """Where the take's own sound is (a file and the seconds into it where the take
        begins), None when it has none. A graded take's is the take's it grades, so
        reading it never encodes anything."""
        if not self.has_audio:
            return None
        if not self.encoded:
            return self.made().sound
        span = self.span
        return span.path, span.start or 0.0

    def head(self, count: int | None = None, *, mapped: bool = False) -> np.ndarray:
        """First frames (the first `count` of those kept, all by default), lossless; a
        grade's are graded, only those asked for.

        Args:
            mapped: Map the file rather than read it (for a frame or two of a large take).

        Raises:
            RenderError: the file was damaged after the take was read (it is moved
                aside, so the next render makes the take again).
        """
        return self._frames("head.npy", mapped, slice(None) if count is None else slice(0, count))

    def tail(self, count: int | None = None, *, mapped: bool = False) -> np.ndarray:
        """Last frames (the last `count` of those kept, all by default), lossless; a
        grade's are graded, only those asked for.

        Raises:
            RenderError: as `head`.
        """
        return self._frames("tail.npy", mapped, slice(-count, None) if count else slice(None))

    def middle(self) -> np.ndarray | None:
        """The middle frame (1 x H x W x 3, lossless), None for an entry stored before
        middles were kept (read it from `span`).

        Raises:
            RenderError: as `head`.
        """
        if self.graded_from is not None:
            return self._graded_end("middle.npy")
        if not self.ends_kept:
            return self._read_end("middle.npy")
        if not (self.dir / "middle.npy").exists():
            return None
        return self._frames("middle.npy", True)

    @property
    def lead_frames(self) -> int:
        """How many frames the engine made again before the take's first (see `lead`)."""
        return int(self.meta.get("lead_frames", 0))

    def lead(self) -> np.ndarray | None:
        """A chained take's re-made conditioning frames (lossless), the overlap its join
        cross-fades; None when its engine kept none.

        Raises:
            RenderError: as `head`.
        """
        return self._frames("lead.npy") if self.lead_frames else None

    def last_frames(self, count: int) -> np.ndarray:
        """The last `count` frames, a copy (a view would hold the whole tail in memory
        for as long as a request keeps it)."""
        return self.tail(count, mapped=True).copy()

    @property
    def ends_kept(self) -> bool:
        """Whether the take's head, tail and middle frames are kept in the store: all but
        a take that is a file, stored without a scan (its ends are read from the file
        when asked for). A grade's are its made take's, graded.

        Raises:
            RenderError: a graded take's made take is gone from the cache.
        """
        if self.graded_from is not None:
            return self.made().ends_kept
        source = self.meta.get("source")
        return not (isinstance(source, dict) and source.get("ends") == "read")

    def _read_end(self, name: str) -> np.ndarray:
        """A head, tail or middle the entry does not keep, read from the file (as
        `_save_ends` would have kept it), remembered for the next few asks."""
        # The file's facts are in the key: a take made again from an edited file is new.
        key = (self.id, name, json.dumps([self.meta.get("source"), self.meta.get("files")], sort_keys=True))
        with _ENDS_LOCK:
            if key in _ENDS:
                _ENDS.move_to_end(key)
                return _ENDS[key]
        count = self.frames
        first, frames = {"head.npy": (0, min(HEAD_FRAMES, count)),
                         "tail.npy": (count - min(TAIL_FRAMES, count), min(TAIL_FRAMES, count)),
                         "middle.npy": ((count - 1) // 2, 1)}[name]
        read = self.span.read(first, frames)
        read.flags.writeable = False  # shared by every reader of the take
        with _ENDS_LOCK:
            _ENDS[key] = read
            while len(_ENDS) > _ENDS_KEPT:
                _ENDS.popitem(last=False)
        return read

    def made(self) -> StoredTake:
        """The take a graded take grades (see `TakeStore.made_of`). Without a store (a
        take read for a background job) it is checked but never moved aside.

        Raises:
            RenderError: it is gone or damaged.
        """
        if self.store is not None:
            return self.store.made_of(self)
        made_id = self.graded_from
        assert made_id is not None, f"take {self.id[:12]} is not a grade"
        directory = self.dir.parent.parent / made_id[:2] / made_id
        meta, problem = _check_entry(made_id, directory) if directory.is_dir() else (None, "it is gone")
        if problem is not None or meta is None:
            raise RenderError(f"take {self.id[:12]} is a colour grade of take {made_id[:12]}, "
                              f"which cannot be read ({problem}); render again to make it anew")
        return _stored_take(made_id, directory, meta, None)

    def _graded_end(self, name: str, part: slice = slice(None)) -> np.ndarray | None:
        """A graded take's head, tail or middle: the made take's (lossless), graded;
        of a head or tail only the `part` asked for."""
        from .generate.colour import apply_grade

        made = self.made()
        if name == "middle.npy":
            frames = made.middle()
            if frames is None:
                return None
            first = (self.frames - 1) // 2
        else:
            frames = made._frames(name, mapped=True)
            first = 0 if name == "head.npy" else self.frames - len(frames)
            first += part.indices(len(frames))[0]
            frames = frames[part]
        return apply_grade(frames, self.grade(), first)

    def _frames(self, name: str, mapped: bool = False, part: slice = slice(None)) -> np.ndarray:
        """A file of the entry, checked; of a head or tail only the `part` asked for
        (read from a map of the file, unless it is all of it)."""
        if self.graded_from is not None and name in ("head.npy", "tail.npy"):
            graded = self._graded_end(name, part)
            assert graded is not None
            return graded
        if name in ("head.npy", "tail.npy", "middle.npy") and self.graded_from is None \
                and not self.ends_kept:
            return self._read_end(name)[part]
        whole = part == slice(None)
        if not whole and not mapped:
            return np.array(self._frames(name, True, part))
        path = self.dir / name
        try:
            frames = np.load(path, allow_pickle=False, mmap_mode="r" if mapped else None)
        except FileNotFoundError:
            problem = f"{name} is missing"
        except (ValueError, EOFError) as exc:
            problem = f"{name} cannot be read ({exc})"
        else:
            expected = _frames_shape(name, self.frames, self.height, self.width, self.lead_frames)
            dtype = _dtype(name)
            if frames.shape == expected and frames.dtype == dtype:
                return frames if whole else frames[part]
            problem = f"{name} holds {frames.shape} {frames.dtype}, expected {expected} {dtype}"
        moved = self.store._set_aside(self.id, self.dir, problem) if self.store else None
        where = f"; it was moved to {moved}" if moved else ""
        raise RenderError(f"take {self.id[:12]} in the cache is damaged: {problem}{where}; "
                          "render again to make it anew")


@dataclass(frozen=True)
class TakeSpan:
    """A take's pictures as a file and an in-point.

    Attributes:
        path: The file.
        start: Seconds into `path` where the take's first frame is shown, for a take that
            is a span of an encoded file (footage, a download): its frames are that span
            put on the take's grid and fitted (cover) to its size, exactly as the
            assembly normalises it. None when `path` is the store's own take.mp4, which
            holds the take's frames as they are.
        frames, fps, width, height: The take's frame count, rate and size.
    """

    path: Path
    start: float | None
    frames: int
    fps: Fraction
    width: int
    height: int

    def read(self, first: int = 0, count: int | None = None, *,
             size: tuple[int, int] | None = None) -> np.ndarray:
        """The take's frames ``first .. first+count`` (to the end when None) as uint8 RGB,
        scaled to `size` (width, height) if given.

        Raises:
            MediaError: the file is unreadable or ends early.
        """
        count = self.frames - first if count is None else count
        if self.start is None:
            from .media import read_frames

            return read_frames(self.path, first, count, size=size)
        return read_span(self.path, self.start, first, count, fps=self.fps,
                         size=size or (self.width, self.height))

    def pick(self, indices: Sequence[int], *, size: tuple[int, int] | None = None) -> np.ndarray:
        """The frames at `indices` (ascending, distinct), as `read` gives them, each
        decoded once: frames whose reads would start from the same stretch of the file
        come from one decode through the last of them (a download's GOP is often the
        whole clip), and a frame past a keyframe that a seek reaches comes from a decode
        of its own (`_runs`: a camera's GOP is often a second).

        Raises:
            MediaError: as `read`.
        """
        wanted = list(indices)
        if wanted != sorted(set(wanted)) or not wanted or wanted[0] < 0 or wanted[-1] >= self.frames:
            raise ValueError(f"frames {wanted} are not ascending within the take's {self.frames}")
        if self.start is None:
            from .media import iter_frames

            wanted_set = set(wanted)
            frames = iter_frames(self.path, 0, wanted[-1] + 1, size=size)
            return np.stack([frame for index, frame in enumerate(frames) if index in wanted_set])
        from .media import decode_graph

        size = size or (self.width, self.height)
        picked = []
        for run in self._runs(wanted):
            # Frames run[0] .. run[-1], exactly as `read` gives them, and of those the wanted.
            source, chain = _span_chain(self.path, self.start, run[0], run[-1] - run[0] + 1, self.fps, size,
                                        index=0, label="span")
            chosen = "+".join(f"eq(n\\,{index - run[0]})" for index in run)
            picked.append(decode_graph([source], f"{chain};[span]select={chosen}[out]", label="out", size=size,
                                       frames=len(run), what=f"read frames {run} of {self.path.name} "
                                                           f"from {self.start:.3f} s"))
        return np.concatenate(picked)

    def _runs(self, wanted: list[int]) -> list[list[int]]:
        """`wanted` split where a decode of its own, from the keyframe before its seek,
        skips at least `_RESEEK_SECONDS` of pictures the one decode through would decode
        (a short GOP, as most cameras write); one run for a file whose GOP is long."""
        from .assemble.normalize import seek_seconds
        from .media import keyframe_seconds, probe

        assert self.start is not None
        if len(wanted) < 2:
            return [wanted]
        info = probe(self.path)
        times = [self.start + float(Fraction(index) / self.fps) for index in wanted]
        keys = keyframe_seconds(self.path, self.start, times[-1])
        runs = [[wanted[0]]]
        for index, before in zip(wanted[1:], times, strict=False):  # `before`: the previous wanted's time
            seek = self.start + seek_seconds(info, index, self.fps)
            restart = max((k for k in keys if k <= seek + 1e-6), default=0.0)
            if restart - before >= _RESEEK_SECONDS:
                runs.append([index])
            else:
                runs[-1].append(index)
        return runs

    def stream(self) -> Iterator[np.ndarray]:
        """Every frame, one at a time, as `read` gives them (the same decode)."""
        if self.start is None:
            from .media import iter_frames

            return iter_frames(self.path, 0, self.frames)
        from .media import iter_graph

        size = (self.width, self.height)
        source, chain = _span_chain(self.path, self.start, 0, self.frames, self.fps, size, index=0,
                                    label="out")
        return iter_graph([source], chain, label="out", size=size, frames=self.frames,
                          what=f"read {self.path.name} from {self.start:.3f} s")


def read_span(path: Path, start: float, first: int, count: int, *, fps: Fraction,
              size: tuple[int, int]) -> np.ndarray:
    """Frames ``first .. first+count`` of the span of `path` that begins `start` seconds
    in, on the grid of `fps` and fitted (cover) to `size`, through the assembly's own
    normalisation (`normalize.clip_chain`): upright, square pixels, variable frame rates
    re-gridded, uint8 RGB.

    Raises:
        MediaError: the file is unreadable, or gave fewer frames.
    """
    from .media import decode_graph

    source, chain = _span_chain(path, start, first, count, fps, size, index=0, label="out")
    return decode_graph([source], chain, label="out", size=size, frames=count,
                        what=f"read frames {first}-{first + count} of {Path(path).name} "
                             f"from {start:.3f} s")


# A pick (`TakeSpan.pick`) decodes from a seek of its own when that skips this much of
# the file (a new ffmpeg run costs about as much as decoding a few frames).
_RESEEK_SECONDS = 0.5

# Ends read from takes' files (`StoredTake._read_end`), the last few kept.
_ENDS: collections.OrderedDict[tuple[str, str, str], np.ndarray] = collections.OrderedDict()
_ENDS_LOCK = threading.Lock()
_ENDS_KEPT = 8


def _save_ends(folder: Path, path: Path, start: float, count: int, *, fps: Fraction,
               size: tuple[int, int], info: MediaInfo,
               scan_size: tuple[int, int] | None = None) -> tuple[np.ndarray | None, dict[str, str]]:
    """The span's head, tail and middle frame (`read_span`) saved to ``head.npy``,
    ``tail.npy`` and ``middle.npy`` in `folder` by one ffmpeg run, and never held in
    memory (a render's footage takes would otherwise leave them in the heap).

    Args:
        info: The file's probe (a copy's is its source's).
        scan_size: Also read the whole span at this size in the same run, and return
            it (what scoring reads of a take: `FrameSource.scan`).

    Returns:
        The scan (None without `scan_size`), and each file's sha256 by name, taken as
        it was written (the entry's meta records them).
    """
    from .assemble.normalize import Grid, clip_chain
    from .media import Input, write_raw_frames

    ends = [("head", 0, min(HEAD_FRAMES, count), size),
            ("tail", count - min(TAIL_FRAMES, count), min(TAIL_FRAMES, count), size),
            ("middle", (count - 1) // 2, 1, size)]
    inputs, chains = [], []
    if scan_size is None:  # each read from its own seek: three short decodes
        for index, (label, first, frames, at) in enumerate(ends):
            source, chain = _span_chain(path, start, first, frames, fps, at, index=index,
                                        label=label, info=info)
            inputs.append(replace(source, threads=1))
            chains.append(chain)
    else:  # the whole span is decoded anyway: one decode, split four ways
        ends.append(("scan", 0, count, scan_size))
        inputs.append(Input(Path(path), start, threads=1))
        chains.append(f"[0:v:0]split={len(ends)}" + "".join(f"[in{i}]" for i in range(len(ends))))
        for index, (label, first, frames, at) in enumerate(ends):
            chains.append(clip_chain(f"in{index}", label, info, Grid(at[0], at[1], fps), "cover",
                                     start=first, end=first + frames, seek=0.0))
    outputs = [(label, folder / f"{label}.rgb", frames, at) for label, _, frames, at in ends]
    write_raw_frames(inputs, ";".join(chains), outputs, size=size,
                     what=f"read the head and tail of {Path(path).name} from {start:.3f} s")
    scan = None
    if scan_size is not None:
        raw = folder / "scan.rgb"
        scan = np.fromfile(raw, dtype=np.uint8)[:count * scan_size[1] * scan_size[0] * 3].reshape(
            count, scan_size[1], scan_size[0], 3)
        raw.unlink()
        outputs.pop()
    width, height = size
    digests = {}
    for label, raw, frames, _ in outputs:
        remaining = frames * height * width * 3
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False,
                                                      "shape": (frames, height, width, 3)})
        digest = hashlib.sha256(header.getvalue())
        with open(folder / f"{label}.npy", "wb") as out, open(raw, "rb") as pixels:
            out.write(header.getvalue())
            while remaining:
                block = pixels.read(min(remaining, 1 << 20))
                if not block:
                    raise MediaError(path, f"gave fewer than the {frames} frames of its {label}")
                digest.update(block)
                out.write(block)
                remaining -= len(block)
        raw.unlink()
        digests[f"{label}.npy"] = digest.hexdigest()
    return scan, digests


def _span_chain(path: Path, start: float, first: int, count: int, fps: Fraction,
                size: tuple[int, int], *, index: int, label: str,
                info: MediaInfo | None = None) -> tuple[Input, str]:
    """The ffmpeg input and filter chain (input `index`, output `label`) of `read_span`
    (`info`: the file's probe, when the caller has it)."""
    from .assemble.normalize import Grid, clip_chain, seek_seconds
    from .media import Input, probe

    info = info or probe(path)
    seek = seek_seconds(info, first, fps)
    chain = clip_chain(f"{index}:v:0", label, info, Grid(size[0], size[1], fps), "cover",
                       start=first, end=first + count, seek=seek)
    # The chain counts time from the in-point: the input is opened that much further in.
    return Input(Path(path), start + seek), chain


@dataclass(frozen=True)
class StoreStats:
    """What a take store holds.

    Attributes:
        takes: Take entries (not checked; see `TakeStore.check_all`).
        bytes: Bytes of takes and cached scores.
        damaged: Entries moved aside as damaged, and their bytes.
        scratch: Entries in ``tmp/`` (live renders' work, or leftovers).
    """

    takes: int
    bytes: int
    damaged: int
    damaged_bytes: int
    scratch: int


class TakeStore:
    """Content-addressed storage of takes and their scores.

    Attributes:
        root: The cache folder.
        warnings: One line per damaged entry found and moved aside, in order.
    """

    def __init__(self, root: str | os.PathLike[str], *,
                 on_warning: Callable[[str], None] | None = None):
        """
        Args:
            root: The cache folder (made when first written).
            on_warning: Also called with each warning as it happens.
        """
        self.root = Path(root).absolute()
        self.warnings: list[str] = []
        self._on_warning = on_warning
        self._encoding: dict[str, threading.Lock] = {}
        self._encoding_lock = threading.Lock()

    @property
    def tmp(self) -> Path:
        """Work in progress: every name carries its owner's tag (`housekeeping`)."""
        return self.root / "tmp"

    @property
    def damaged(self) -> Path:
        """Entries that failed their check, kept for inspection."""
        return self.root / "damaged"

    def _take_dir(self, take_id: str) -> Path:
        return self.root / "takes" / take_id[:2] / take_id

    def get(self, take_id: str) -> StoredTake | None:
        """The stored take, or None if it was never finished or was found damaged (then
        it is moved to `damaged` with a warning, and the caller makes it again).

        Raises:
            OSError: the entry cannot be read at all (permissions); names the file.
        """
        directory = self._take_dir(take_id)
        if not os.path.lexists(directory):
            return None
        meta, problem = _check_entry(take_id, directory)
        if problem is not None:
            self._set_aside(take_id, directory, problem)
            return None
        assert meta is not None
        return self._stored(take_id, directory, meta)

    def put(self, take_id: str, take: Take, *, fps: Fraction, engine: str,
            request: dict[str, Any], copy_source: bool | None = None,
            scan_size: tuple[int, int] | None = None,
            on_scan: Callable[[np.ndarray], None] | None = None) -> StoredTake:
        """Stores a take; a no-op returning the existing one if present.

        A take of pixels is encoded (visually lossless). A take that is a span of an
        encoded file (`Take.source`) is never re-encoded: the entry refers to the file,
        or holds a byte-identical copy of it, and keeps the span's head and tail frames
        losslessly, decoded as the assembly will show them.

        A damaged entry in the way is moved aside first. Nothing is left behind when
        storing fails.

        Args:
            copy_source: For a file-backed take, copy the file into the entry (a download
                whose address expires) or refer to it where it is (a user's footage);
                None follows `Take.copy_source`.
            scan_size, on_scan: For a file-backed take, also read its whole span at
                `scan_size` in the same decode as its head and tail, and hand it to
                `on_scan` (scoring reads it; it is not kept).

        Raises:
            VerificationError: the encoded file does not hold the take's frames.
            FFmpegError: encoding or decoding failed.
            MediaError: a file-backed take's file is unreadable or changed while stored.
            StorageError: the cache cannot be written (disk full, permissions); names
                the path and the cause.
        """
        existing = self.get(take_id)
        if existing is not None:
            return existing
        if take.source is not None:
            copy = take.copy_source if copy_source is None else copy_source
            return self._put_span(take_id, take, fps=fps, engine=engine, request=request, copy=copy,
                                  scan_size=scan_size if on_scan is not None else None,
                                  on_scan=on_scan)
        from . import media

        frames = take.frames
        if frames is None or frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or not len(frames):
            found = "no frames" if frames is None else f"frames of shape {frames.shape} {frames.dtype}"
            raise VerificationError(f"engine {engine} returned {found}; "
                                    "expected N x H x W x 3 uint8")
        count, height, width = frames.shape[:3]
        try:
            work = self._tmp_dir()
        except OSError as exc:
            raise self._storage_error(exc, f"take {take_id[:12]}") from exc
        try:
            audio = None
            if take.audio is not None:
                audio = (take.audio, take.audio_start)
            media.write_video(frames, work / "take.mp4", fps, crf=TAKE_CRF, preset=TAKE_PRESET,
                              audio=audio)
            info = media.probe(work / "take.mp4")
            if info.frames != count or (info.width, info.height) != (width, height):
                raise VerificationError(
                    f"take {take_id[:12]} encoded to {info.frames} frames {info.width}x{info.height}, "
                    f"expected {count} frames {width}x{height}")
            # Contiguous first: numpy writes a strided view element by element (100x slower).
            np.save(work / "head.npy", np.ascontiguousarray(frames[:HEAD_FRAMES]))
            np.save(work / "tail.npy", np.ascontiguousarray(frames[-TAIL_FRAMES:]))
            middle = (count - 1) // 2
            np.save(work / "middle.npy", np.ascontiguousarray(frames[middle:middle + 1]))
            self._finish(work, take_id, take, frames=count, size=(width, height), fps=fps,
                         engine=engine, audio=info.has_audio, request=request,
                         files=_FILES + _save_lead(work, take, engine, (width, height)))
        except OSError as exc:
            raise self._storage_error(exc, f"take {take_id[:12]}") from exc
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return self._stored_now(take_id)

    def _put_span(self, take_id: str, take: Take, *, fps: Fraction, engine: str,
                  request: dict[str, Any], copy: bool, scan_size: tuple[int, int] | None = None,
                  on_scan: Callable[[np.ndarray], None] | None = None) -> StoredTake:
        """Stores a take that is a span of an encoded file (see `put`)."""
        from . import media

        assert take.source is not None
        source = Path(take.source).absolute()
        count = take.span_frames
        width, height = take.span_size
        if count < 1 or width < 2 or height < 2 or width % 2 or height % 2 or take.start < 0:
            raise VerificationError(f"engine {engine} returned a span of {source.name} of {count} "
                                    f"frames {width}x{height} from {take.start} s; expected at least "
                                    "one frame, an even size and a start not before the file's")
        if take.audio is not None and (Path(take.audio).absolute() != source
                                       or abs(take.audio_start - take.start) > 1e-6):
            raise VerificationError(f"engine {engine} returned a span of {source.name} whose sound "
                                    "comes from elsewhere; a file-backed take plays its own file's sound")
        # Whole microseconds, rounded down, so a seek to it never skips the frame it names.
        start = int(take.start * 1_000_000 + 1e-3) / 1_000_000
        info = media.probe(source)
        before = _file_facts(source)
        try:
            work = self._tmp_dir()
        except OSError as exc:
            raise self._storage_error(exc, f"take {take_id[:12]}") from exc
        try:
            # Without a scan to read, the ends are read from the file when asked for (it
            # is the lossless copy): storing them would decode and write 25 full frames.
            files = ["head.npy", "tail.npy", "middle.npy"] if scan_size is not None else []
            facts: dict[str, Any] = {"start": start, "copied": copy}
            if scan_size is None:
                facts["ends"] = "read"
            path = source
            digests: dict[str, str] = {}  # of the files written here, as they were written
            if copy:
                name = "source" + (source.suffix.lower() if source.suffix.lower()
                                   in media.VIDEO_EXTENSIONS else ".mp4")
                path = work / name
                shutil.copyfile(source, path)
                files.append(name)
                facts["name"] = name
                digests[name] = sha256_file(path)
                if digests[name] != before["sha256"]:
                    raise MediaError(source, "changed while it was being copied into the cache")
            else:
                facts.update(path=str(source), **before)
            scan = None
            if scan_size is not None:
                scan, written = _save_ends(work, path, start, count, fps=fps, size=(width, height),
                                           info=info, scan_size=scan_size)
                digests.update(written)
            if not copy and _file_facts(source) != before:
                raise MediaError(source, "changed while its take was being stored")
            self._finish(work, take_id, take, frames=count, size=(width, height), fps=fps,
                         engine=engine, audio=take.audio is not None and info.has_audio,
                         request=request, files=[*files, *_save_lead(work, take, engine, (width, height))],
                         source=facts, digests=digests)
        except OSError as exc:
            raise self._storage_error(exc, f"take {take_id[:12]}") from exc
        finally:
            shutil.rmtree(work, ignore_errors=True)
        if scan is not None and on_scan is not None:
            on_scan(scan)
        return self._stored_now(take_id)

    def put_graded(self, take_id: str, made: StoredTake, grade: np.ndarray, *, label: str,
                   meta: dict[str, Any], request: dict[str, Any],
                   lead: np.ndarray | None = None) -> StoredTake:
        """Stores a take that is `made` through a per-frame colour transform (`grade`,
        F x 3 x 4, see `colour.grade_for`) without encoding it: the entry keeps the grade
        and refers to `made` for the rest; its head, tail and middle are made's lossless
        ones, graded when read. It is encoded when something needs it as a file
        (`encode`). A no-op returning the existing take if present.

        Args:
            lead: The graded take's lead frames (`Take.lead`), if it has some.

        Raises:
            VerificationError: the grade does not have one transform per frame.
            RenderError: `made` is damaged.
            StorageError: the cache cannot be written.
        """
        existing = self.get(take_id)
        if existing is not None:
            return existing
        if grade.shape != (made.frames, 3, 4):
            raise VerificationError(f"a grade of {grade.shape} for a take of {made.frames} frames")
        count = made.frames
        try:
            work = self._tmp_dir()
        except OSError as exc:
            raise self._storage_error(exc, f"take {take_id[:12]}") from exc
        try:
            np.save(work / "grade.npy", np.ascontiguousarray(grade, dtype=np.float32))
            take = Take(frames=None, seed=made.seed, label=label, meta=meta, lead=lead)
            files = ["grade.npy", *_save_lead(work, take, made.engine, (made.width, made.height))]
            self._finish(work, take_id, take, frames=count, size=(made.width, made.height),
                         fps=made.fps, engine=made.engine, audio=made.has_audio, request=request,
                         files=files, graded={"made": made.id})
        except OSError as exc:
            raise self._storage_error(exc, f"take {take_id[:12]}") from exc
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return self._stored_now(take_id)

    def made_of(self, take: StoredTake) -> StoredTake:
        """The take a graded take grades.

        Raises:
            RenderError: it is gone from the cache (pruned, or damaged and moved aside).
        """
        made_id = take.graded_from
        made = self.get(made_id) if made_id else None
        if made is None:
            raise RenderError(f"take {take.id[:12]} is a colour grade of take {str(made_id)[:12]}, "
                              "which is no longer in the cache; render again to make it anew")
        return made

    def encode(self, take: StoredTake, *, between_frames: Callable[[], None] | None = None) -> StoredTake:
        """A graded take with its pictures encoded into its entry (``take.mp4``, visually
        lossless, with the made take's sound), once: a take encoded already, here or by
        another render, is returned as it is.

        `between_frames` is called before each frame goes to the encoder: work that can
        wait may wait there (its decoder and encoder block on their pipes).

        Raises:
            RenderError: the take or the take it grades is gone from the cache.
            VerificationError, FFmpegError: encoding failed.
            StorageError: the cache cannot be written.
        """
        from . import media

        with self._encoding_lock:
            lock = self._encoding.setdefault(take.id, threading.Lock())
        with lock:
            current = self.get(take.id)
            if current is None:
                raise RenderError(f"take {take.id[:12]} is no longer in the cache; render again")
            if current.encoded:
                return current
            try:
                work = self._tmp_dir()
            except OSError as exc:
                raise self._storage_error(exc, f"take {take.id[:12]}") from exc
            try:
                # Streamed: a whole take in memory, twice (as made, graded), is 0.7 GB
                # at 720p for five seconds.
                with contextlib.closing(current.stream()) as frames:  # its scratch, at once
                    media.write_video(_paced(frames, between_frames), work / "take.mp4", current.fps, crf=TAKE_CRF,
                                      preset=TAKE_PRESET, audio=current.sound,
                                      frame_count=current.frames)
                info = media.probe(work / "take.mp4")
                if info.frames != current.frames or (info.width, info.height) != (current.width, current.height):
                    raise VerificationError(
                        f"take {take.id[:12]} encoded to {info.frames} frames {info.width}x{info.height}, "
                        f"expected {current.frames} frames {current.width}x{current.height}")
                target = current.dir / "take.mp4"
                # Linked, never renamed over: a render beside this one may have put it there
                # (the same bytes: the encoder's threads are pinned) and recorded it.
                with contextlib.suppress(FileExistsError):
                    os.link(work / "take.mp4", target)
                if _check_video(target, current.frames) is not None:
                    os.replace(work / "take.mp4", target)  # a leftover of a failed encode
                meta = dict(current.meta)
                meta["files"] = {**meta.get("files", {}),
                                 "take.mp4": {"bytes": target.stat().st_size, "sha256": sha256_file(target)}}
                self._write_json_atomic(current.dir / "meta.json", meta, f"take {take.id[:12]}")
            except OSError as exc:
                raise self._storage_error(exc, f"take {take.id[:12]}") from exc
            finally:
                shutil.rmtree(work, ignore_errors=True)
            return self._stored_now(take.id)

    def _finish(self, work: Path, take_id: str, take: Take, *, frames: int, size: tuple[int, int],
                fps: Fraction, engine: str, audio: bool, request: dict[str, Any],
                files: Sequence[str], source: dict[str, Any] | None = None,
                graded: dict[str, Any] | None = None, digests: Mapping[str, str] | None = None) -> None:
        """Writes a complete entry's meta.json (with its files' sizes and digests: those
        in `digests` were taken as the files were written) and renames the entry into
        place."""
        digests = digests or {}
        meta: dict[str, Any] = {
            "id": take_id, "frames": frames, "width": size[0], "height": size[1],
            "fps": str(fps), "seed": take.seed, "engine": engine, "label": take.label,
            "audio": audio, "meta": take.meta, "request": request,
            "files": {name: {"bytes": (work / name).stat().st_size,
                             "sha256": digests.get(name) or sha256_file(work / name)}
                      for name in files},
        }
        if source is not None:
            meta["source"] = source
        if graded is not None:
            meta["graded"] = graded
        if "lead.npy" in files:
            assert take.lead is not None
            meta["lead_frames"] = len(take.lead)
        _write_json(work / "meta.json", meta)
        os.chmod(work, 0o755)
        self._publish(take_id, work)

    def _stored_now(self, take_id: str) -> StoredTake:
        stored = self.get(take_id)
        if stored is None:
            raise RenderError(f"take {take_id[:12]} failed its check right after it was stored "
                              f"in {self.root}")
        return stored

    def _publish(self, take_id: str, work: Path) -> None:
        """Renames a complete temporary entry into place, moving aside what is in the
        way unless it is a whole take."""
        target = self._take_dir(take_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                os.rename(work, target)
                return
            except OSError as exc:
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
                    raise
            # get() keeps a whole take (stored meanwhile by a render beside this one) and
            # moves a damaged or unfinished one aside.
            if self.get(take_id) is not None:
                return
        raise StorageError(target, f"in the way of take {take_id[:12]} and cannot be moved "
                                   f"to {self.damaged}")

    def load_scores(self, take_id: str) -> dict[str, Any] | None:
        """Cached scores of a take; None when absent or unreadable (it is rewritten)."""
        return _read_json(self._take_dir(take_id) / "scores.json")

    def save_scores(self, take_id: str, scores: dict[str, Any]) -> None:
        """Replaces a take's cached scores (atomically).

        Raises:
            StorageError: the cache cannot be written.
        """
        directory = self._take_dir(take_id)
        if directory.is_dir():
            self._write_json_atomic(directory / "scores.json", scores,
                                    f"the scores of take {take_id[:12]}")

    def load_pair(self, key: str) -> dict[str, Any] | None:
        """Cached scores between two takes; None when absent or unreadable."""
        return _read_json(self.root / "pairs" / key[:2] / f"{key}.json")

    def save_pair(self, key: str, scores: dict[str, Any]) -> None:
        """Replaces cached scores between two takes (atomically).

        Raises:
            StorageError: the cache cannot be written.
        """
        self._write_json_atomic(self.root / "pairs" / key[:2] / f"{key}.json", scores,
                                "scores between two takes")

    def stats(self) -> StoreStats:
        """Counts and sizes of what the store holds (nothing is checked or changed)."""
        takes = list((self.root / "takes").glob("*/*"))
        damaged = list(self.damaged.glob("*")) if self.damaged.is_dir() else []
        scratch = list(self.tmp.glob("*")) if self.tmp.is_dir() else []
        return StoreStats(
            takes=len(takes),
            bytes=_bytes(self.root / "takes") + _bytes(self.root / "pairs"),
            damaged=len(damaged), damaged_bytes=_bytes(self.damaged), scratch=len(scratch))

    def check_all(self, *, deep: bool = False) -> list[str]:
        """Checks every entry as `get` does, moving the damaged ones aside.

        Args:
            deep: Also compare each file's sha256 with the one recorded when it was
                stored (reads every byte; catches damage that keeps the size).

        Returns:
            A warning per entry moved aside.
        """
        before = len(self.warnings)
        for directory in sorted((self.root / "takes").glob("*/*")):
            _, problem = _check_entry(directory.name, directory, deep=deep)
            if problem is not None:
                self._set_aside(directory.name, directory, problem)
        return self.warnings[before:]

    def clean_tmp(self) -> list[Path]:
        """Deletes scratch in ``tmp/`` left by renders that no longer run (a live
        render's work is kept; scratch whose owner cannot be judged from here, with no
        tag or another machine's, goes after a day).

        Returns:
            What was deleted.
        """
        return remove_stale(self.tmp, unknown_older_than=_UNKNOWN_SCRATCH_SECONDS)

    def remove_damaged(self) -> list[Path]:
        """Deletes every entry moved aside as damaged.

        Returns:
            What was deleted.
        """
        removed = []
        for entry in sorted(self.damaged.glob("*")) if self.damaged.is_dir() else []:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
        return removed

    # -- internals -----------------------------------------------------------------------

    def _stored(self, take_id: str, directory: Path, meta: dict[str, Any]) -> StoredTake:
        return _stored_take(take_id, directory, meta, self)

    def _set_aside(self, take_id: str, directory: Path, problem: str) -> Path | None:
        """Moves a damaged entry to ``damaged/<id>.<time>`` and warns; None when it was
        gone already (another render moved it) or cannot be moved."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        try:
            self.damaged.mkdir(parents=True, exist_ok=True)
            target = self.damaged / f"{take_id}.{stamp}"
            suffix = 1
            while os.path.lexists(target):
                suffix += 1
                target = self.damaged / f"{take_id}.{stamp}.{suffix}"
            os.rename(directory, target)
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._warn(f"cache: take {take_id[:12]} is damaged ({problem}) and cannot be moved "
                       f"aside ({os_cause(exc)}); delete {directory}")
            return None
        if target.is_dir():
            with contextlib.suppress(OSError):
                (target / "damage.txt").write_text(problem + "\n")
        self._warn(f"cache: take {take_id[:12]} was damaged ({problem}); moved it to {target} "
                   "and it will be made again")
        return target

    def _warn(self, message: str) -> None:
        self.warnings.append(message)
        if self._on_warning is not None:
            self._on_warning(message)

    def _tmp_dir(self) -> Path:
        self.tmp.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f"{owner_tag()}.", dir=self.tmp))

    def _write_json_atomic(self, path: Path, value: Any, what: str) -> None:
        """Writes JSON under a scratch name in ``tmp/`` and renames it into place."""
        tmp: str | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.tmp.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f"{owner_tag()}.", suffix=".json", dir=self.tmp)
            with os.fdopen(fd, "w") as handle:
                json.dump(value, handle, indent=2, sort_keys=True, default=str)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except OSError as exc:
            if exc.filename is None:
                exc.filename = tmp or str(path)
            raise self._storage_error(exc, what) from exc
        finally:
            if tmp is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)

    def _storage_error(self, exc: OSError, what: str) -> StorageError:
        """A failed cache write as one line: the path, the cause, and what was stored."""
        return StorageError(exc.filename or self.root,
                            f"{os_cause(exc, self.root)} (storing {what} in the cache {self.root})")


def _paced(frames: Iterator[np.ndarray], between: Callable[[], None] | None) -> Iterator[np.ndarray]:
    """`frames`, with `between` called before each (as is, without)."""
    if between is None:
        yield from frames
        return
    for frame in frames:
        between()
        yield frame


def _stored_take(take_id: str, directory: Path, meta: dict[str, Any],
                 store: TakeStore | None) -> StoredTake:
    return StoredTake(
        id=take_id, dir=directory, frames=int(meta["frames"]), width=int(meta["width"]),
        height=int(meta["height"]), fps=Fraction(meta["fps"]), seed=int(meta["seed"]),
        engine=str(meta["engine"]), label=str(meta.get("label", "")), meta=meta, store=store,
    )


def _save_lead(work: Path, take: Take, engine: str, size: tuple[int, int]) -> tuple[str, ...]:
    """Saves a take's lead frames (``lead.npy``) when it has some; the names saved."""
    lead = take.lead
    if lead is None or not len(lead):
        return ()
    if lead.ndim != 4 or lead.shape[1:] != (size[1], size[0], 3) or lead.dtype != np.uint8:
        raise VerificationError(f"engine {engine} returned lead frames of shape {lead.shape} "
                                f"{lead.dtype}; expected k x {size[1]} x {size[0]} x 3 uint8")
    np.save(work / "lead.npy", np.ascontiguousarray(lead))
    return ("lead.npy",)


def _frames_shape(name: str, frames: int, height: int, width: int, lead: int = 0
                  ) -> tuple[int, ...]:
    """The shape a take's head.npy, tail.npy, middle.npy or lead.npy must have."""
    if name == "middle.npy":
        return (1, height, width, 3)
    if name == "lead.npy":
        return (lead, height, width, 3)
    if name == "grade.npy":
        return (frames, 3, 4)
    kept = HEAD_FRAMES if name == "head.npy" else TAIL_FRAMES
    return (min(kept, frames), height, width, 3)


def _dtype(name: str) -> type:
    """The element type of an entry's array `name`."""
    return np.float32 if name == "grade.npy" else np.uint8


def _check_entry(take_id: str, directory: Path, *, deep: bool = False
                 ) -> tuple[dict[str, Any] | None, str | None]:
    """Checks a take entry: (meta, None) when whole, (None or meta, problem) when not.

    Cheap: reads meta.json and the .npy headers, and stats the files. Entries stored
    before sizes were recorded have their take.mp4 packets counted instead.

    Raises:
        OSError: a file exists but cannot be read (permissions).
    """
    if not directory.is_dir():
        return None, "not a folder"
    try:
        meta = json.loads((directory / "meta.json").read_bytes())
    except FileNotFoundError:
        return None, "meta.json is missing"
    except ValueError:
        return None, "meta.json is not valid JSON"
    problem = _check_meta(take_id, meta)
    if problem is not None:
        return None, problem
    source = meta.get("source")
    graded = meta.get("graded")
    recorded = meta.get("files")
    recorded = recorded if isinstance(recorded, dict) else {}
    names: tuple[str, ...] = _FILES
    if source is not None:
        problem = _check_source_meta(source)
        if problem is not None:
            return None, problem
        kept = () if source.get("ends") == "read" else ("head.npy", "tail.npy")
        names = (*kept, *((source["name"],) if source["copied"] else ()))
    elif graded is not None:
        made = graded.get("made") if isinstance(graded, dict) else None
        if not isinstance(made, str) or len(made) < 3 or "/" in made or made.startswith("."):
            return None, "meta.json has no valid 'graded.made'"
        names = ("grade.npy", *(("take.mp4",) if "take.mp4" in recorded else ()))
        if not (directory.parent.parent / made[:2] / made).is_dir():
            return meta, f"the take it is a colour grade of ({made[:12]}) is gone"
    # Entries stored before middles were kept have none; one that records it must have it.
    names = tuple(n for n in (*names, "middle.npy", "lead.npy")
                  if n not in ("middle.npy", "lead.npy") or n in recorded)
    for name in names:
        path = directory / name
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return meta, f"{name} is missing"
        facts = recorded.get(name)
        if isinstance(facts, dict) and facts.get("bytes") != size:
            return meta, f"{name} holds {size} bytes, {facts.get('bytes')} were stored"
        if deep and isinstance(facts, dict) and facts.get("sha256") != sha256_file(path):
            return meta, f"{name} does not match its recorded sha256"
        if name.endswith(".npy"):
            problem = _check_array(path, size, _frames_shape(name, meta["frames"], meta["height"],
                                                              meta["width"], meta.get("lead_frames", 0)),
                                   _dtype(name))
        elif not isinstance(facts, dict):
            problem = _check_video(path, meta["frames"])
        if problem is not None:
            return meta, problem
    if source is not None and not source["copied"]:
        return meta, _check_source(source, deep=deep)
    return meta, None


def _check_source_meta(source: Any) -> str | None:
    """Whether a file-backed entry's ``source`` record is whole."""
    if not isinstance(source, dict) or not isinstance(source.get("copied"), bool):
        return "meta.json has no valid 'source'"
    start = source.get("start")
    if isinstance(start, bool) or not isinstance(start, int | float) or not start >= 0:
        return "meta.json has no valid 'source.start'"
    if source["copied"]:
        name = source.get("name")
        if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
            return "meta.json has no valid 'source.name'"
        return None
    if not isinstance(source.get("path"), str) or not Path(source["path"]).is_absolute():
        return "meta.json has no valid 'source.path'"
    for key in ("bytes", "mtime_ns"):
        if not isinstance(source.get(key), int) or isinstance(source.get(key), bool):
            return f"meta.json has no valid 'source.{key}'"
    if not isinstance(source.get("sha256"), str):
        return "meta.json has no valid 'source.sha256'"
    return None


def _check_source(source: dict[str, Any], *, deep: bool) -> str | None:
    """Whether the file a take refers to is still the one it was cut from: the same size,
    and the same sha256 when its modification time moved (or always, when `deep`)."""
    path = Path(source["path"])
    try:
        stat = path.stat()
    except FileNotFoundError:
        return f"its source {path} is gone"
    except OSError as exc:
        return f"its source {path} cannot be read ({os_cause(exc)})"
    if stat.st_size != source["bytes"]:
        return (f"its source {path} changed since the take was stored ({stat.st_size} bytes, "
                f"{source['bytes']} were stored)")
    if deep:
        digest = sha256_file(path)
    elif stat.st_mtime_ns != source["mtime_ns"]:
        digest = file_digest(path, stat)
    else:
        return None
    if digest != source["sha256"]:
        return f"its source {path} changed since the take was stored (its sha256 differs)"
    return None


def _file_facts(path: Path) -> dict[str, Any]:
    """Size, modification time and sha256 of a file a take refers to.

    Raises:
        MediaError: it cannot be read.
    """
    try:
        stat = path.stat()
        digest = file_digest(path, stat)
    except OSError as exc:
        raise MediaError(path, f"cannot be read ({os_cause(exc)})") from None
    return {"bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest}


def _check_meta(take_id: str, meta: Any) -> str | None:
    if not isinstance(meta, dict):
        return "meta.json does not hold an object"
    if meta.get("id", take_id) != take_id:
        return f"meta.json belongs to take {str(meta.get('id'))[:12]}"
    for name in ("frames", "width", "height", "seed"):
        value = meta.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or (name != "seed" and value < 1):
            return f"meta.json has no valid '{name}'"
    if not isinstance(meta.get("engine"), str):
        return "meta.json has no valid 'engine'"
    try:
        fps = Fraction(str(meta.get("fps")))
    except (ValueError, ZeroDivisionError):
        return "meta.json has no valid 'fps'"
    if fps <= 0:
        return "meta.json has no valid 'fps'"
    return None


def _check_array(path: Path, size: int, shape: tuple[int, ...], dtype: type = np.uint8) -> str | None:
    """Whether an .npy file holds a whole array of `shape` and `dtype` (header and size
    only)."""
    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            if version == (1, 0):
                found, _, found_dtype = np.lib.format.read_array_header_1_0(handle)
            else:
                found, _, found_dtype = np.lib.format.read_array_header_2_0(handle)
            offset = handle.tell()
    except (ValueError, EOFError):
        return f"{path.name} has no valid array header"
    if tuple(found) != shape or found_dtype != dtype:
        return f"{path.name} holds {tuple(found)} {found_dtype}, expected {shape} {np.dtype(dtype)}"
    expected = offset + int(np.prod(shape)) * np.dtype(dtype).itemsize
    if size != expected:
        return f"{path.name} holds {size} bytes, {expected} expected"
    return None


def _check_video(path: Path, frames: int) -> str | None:
    """Whether take.mp4 holds all the take's frames (for entries without recorded sizes)."""
    from .media import video_packet_count

    try:
        found = video_packet_count(path)
    except MediaError as exc:
        return f"take.mp4 cannot be read ({exc.reason})"
    return None if found == frames else f"take.mp4 holds {found} frames, {frames} were stored"


def sha256_file(path: Path) -> str:
    """sha256 of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_digest(path: Path, stat: os.stat_result | None = None) -> str:
    """sha256 of a file, remembered per version (path, size, modification time): a
    referred source is checked whenever its take is read, and the storyboard's files
    are hashed for every plan."""
    stat = path.stat() if stat is None else stat
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        if len(_DIGESTS) > 4096:
            _DIGESTS.clear()
        _DIGESTS[key] = sha256_file(path)
    return _DIGESTS[key]


_DIGESTS: dict[tuple[str, int, int], str] = {}


def _bytes(folder: Path) -> int:
    total = 0
    for path in folder.rglob("*") if folder.is_dir() else []:
        with contextlib.suppress(OSError):
            if path.is_file() and not path.is_symlink():
                total += path.stat().st_size
    return total


def _read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from a cache file; None when it is absent, unreadable or not an
    object (a cache file is rewritten, never trusted)."""
    try:
        value = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, sort_keys=True, default=str))
