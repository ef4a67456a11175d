"""A cache that heals itself: damaged entries are moved aside and made again.

Fault injection through `stitch render` on real files: each kind of cache file is
damaged in turn, and the next render must still give the same cut, remake only what was
damaged, say so in one warning line, and keep the damaged entry for inspection.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from lavfi import make_image

from stitchcraft.engines.base import Take
from stitchcraft.errors import RenderError, StorageError
from stitchcraft.media import read_frames
from stitchcraft.store import TakeStore

STORYBOARD = """
version: 1
title: Healing
output: {fps: 24, size: 160x90, path: out/cut.mp4, preset: ultrafast}
defaults: {candidates: 1, transition: {type: dissolve, duration: 0.25}, seed: 5}
scoring: {weights: {prompt: 0, reference: 0, seam_clip: 0, flicker: 0, seam_lpips: 0}}
shots:
  - id: opening
    title: {text: "Heal", animation: rise}
    duration: 1
  - id: still
    image: still.png
    camera: push-in
    duration: 1
"""


def stitch(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stitchcraft", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def render(project: Path) -> tuple[dict, str]:
    done = stitch("render", "board.yaml", "--json", cwd=project)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return json.loads(done.stdout), done.stderr


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project rendered once, cache and all."""
    make_image(tmp_path / "still.png", size="320x180", source="mandelbrot")
    (tmp_path / "board.yaml").write_text(STORYBOARD)
    result, _ = render(tmp_path)
    assert result["takes_generated"] == 2
    return tmp_path


def cache(project: Path) -> Path:
    return project / ".stitchcraft" / "cache"


def one_take(project: Path) -> Path:
    return sorted((cache(project) / "takes").glob("*/*"))[0]


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def damage_take(file: str, how: str):
    def damage(project: Path) -> Path:
        target = one_take(project) / file
        if how == "truncate":
            truncate(target)
        elif how == "delete":
            target.unlink()
        else:
            target.write_text(how)
        return target.parent
    return damage


TAKE_DAMAGE = {
    "truncated take.mp4": damage_take("take.mp4", "truncate"),
    "deleted take.mp4": damage_take("take.mp4", "delete"),
    "deleted meta.json": damage_take("meta.json", "delete"),
    "empty meta.json": damage_take("meta.json", "{}"),
    "meta.json not JSON": damage_take("meta.json", "\x00\xff garbage"),
    "truncated head.npy": damage_take("head.npy", "truncate"),
    "truncated tail.npy": damage_take("tail.npy", "truncate"),
    "deleted tail.npy": damage_take("tail.npy", "delete"),
}


@pytest.mark.parametrize("case", list(TAKE_DAMAGE))
def test_damaged_take_is_set_aside_and_made_again(project, case):
    expected = read_frames(project / "out" / "cut.mp4")
    damaged = TAKE_DAMAGE[case](project)
    take_id = damaged.name

    result, stderr = render(project)

    assert result["takes_generated"] == 1 and result["takes_reused"] == 1
    assert np.array_equal(read_frames(project / "out" / "cut.mp4"), expected)
    warnings = [line for line in stderr.splitlines()
                if "warning:" in line and take_id[:12] in line and "was damaged" in line]
    assert len(warnings) == 1, stderr
    kept = list((cache(project) / "damaged").glob(f"{take_id}.*"))
    assert len(kept) == 1 and (kept[0] / "damage.txt").is_file()
    # the entry was made again, whole, and the next render reuses it silently
    assert TakeStore(cache(project)).get(take_id) is not None
    again, stderr = render(project)
    assert again["takes_generated"] == 0 and "was damaged" not in stderr


def damage_segment(project: Path) -> Path:
    segments = cache(project).parent / "work" / "assemble" / "segments"
    target = sorted(segments.glob("seg-*"), key=lambda p: p.stat().st_size)[-1]
    truncate(target)
    return target


def test_damaged_assembly_segment_is_rendered_again(project):
    expected = read_frames(project / "out" / "cut.mp4")
    segment = damage_segment(project)
    size = segment.stat().st_size

    result, stderr = render(project)

    assert result["takes_generated"] == 0
    assert np.array_equal(read_frames(project / "out" / "cut.mp4"), expected)
    assert [w for w in result["warnings"] if segment.name in w and "damaged" in w]
    assert segment.name in stderr
    assert segment.stat().st_size > size  # rendered again in place


SCORE_DAMAGE = {
    "not JSON": "{\"scores\": ",
    "not an object": "[1, 2]",
    "wrong types": json.dumps({"scores": {"stability": {"key": "stability@1|", "value": "high",
                                                        "parts": 3}}}),
}


@pytest.mark.parametrize("case", list(SCORE_DAMAGE))
def test_damaged_scores_are_ignored_and_rewritten(project, case):
    # A shot with one candidate and no seam is never scored: offer the still two.
    board = project / "board.yaml"
    board.write_text(board.read_text().replace("camera: push-in", "camera: push-in\n    candidates: 2"))
    render(project)
    expected = read_frames(project / "out" / "cut.mp4")
    scores = next(p for p in sorted((cache(project) / "takes").glob("*/*/scores.json")))
    original = json.loads(scores.read_text())
    scores.write_text(SCORE_DAMAGE[case])

    result, _ = render(project)

    assert result["takes_generated"] == 0
    assert np.array_equal(read_frames(project / "out" / "cut.mp4"), expected)
    # Rescored from the stored file (the first scores came from the frames in memory,
    # before the lossy encode, so the numbers may differ a little); same scorers.
    rewritten = json.loads(scores.read_text())["scores"]
    assert set(rewritten) == set(original["scores"])
    assert all(0 <= entry["value"] <= 1 and entry["key"] == original["scores"][name]["key"]
               for name, entry in rewritten.items())


# --- the store on its own ---------------------------------------------------------------

def frames(count: int = 20, height: int = 32, width: int = 48) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.asarray([np.stack([(x * 4 + t * 9) % 256, (y * 5) % 256, np.full_like(x, t * 12)], -1)
                       for t in range(count)], dtype=np.uint8)


def put(store: TakeStore, take_id: str):
    return store.put(take_id, Take(frames(), seed=1), fps=Fraction(24), engine="e", request={})


def test_put_replaces_an_unfinished_entry_in_the_way(tmp_path):
    store = TakeStore(tmp_path)
    take_id = "ab" * 32
    in_the_way = tmp_path / "takes" / "ab" / take_id
    in_the_way.mkdir(parents=True)
    (in_the_way / "take.mp4").write_bytes(b"partial")

    stored = put(store, take_id)

    assert np.array_equal(stored.tail(), frames()[-16:])
    assert len(store.warnings) == 1 and "meta.json is missing" in store.warnings[0]
    assert [p.name.split(".")[0] for p in (tmp_path / "damaged").iterdir()] == [take_id]


def test_head_damaged_after_get_names_the_take_and_heals_next_time(tmp_path):
    heard: list[str] = []
    store = TakeStore(tmp_path, on_warning=heard.append)
    take_id = "cd" * 32
    stored = put(store, take_id)
    truncate(stored.dir / "head.npy")

    with pytest.raises(RenderError, match=f"take {take_id[:12]} .*head.npy.*render again"):
        stored.head()

    assert heard == store.warnings and len(heard) == 1
    assert store.get(take_id) is None  # moved aside: the next render makes it again
    assert put(store, take_id).head().shape == (8, 32, 48, 3)


def test_an_entry_from_before_sizes_were_recorded_is_checked_by_its_packets(tmp_path):
    store = TakeStore(tmp_path)
    stored = put(store, "ef" * 32)
    meta = json.loads((stored.dir / "meta.json").read_text())
    del meta["files"]
    (stored.dir / "meta.json").write_text(json.dumps(meta))
    assert store.get(stored.id) is not None and not store.warnings

    truncate(stored.video)
    assert store.get(stored.id) is None
    assert "take.mp4" in store.warnings[0]


def test_deep_check_finds_damage_that_keeps_the_size(tmp_path):
    store = TakeStore(tmp_path)
    stored = put(store, "12" * 32)
    video = bytearray(stored.video.read_bytes())
    video[len(video) // 2] ^= 0xFF
    stored.video.write_bytes(bytes(video))

    assert store.check_all() == []
    assert len(store.check_all(deep=True)) == 1
    assert store.get(stored.id) is None
    stats = store.stats()
    assert (stats.takes, stats.damaged) == (0, 1) and stats.damaged_bytes > 0
    assert len(store.remove_damaged()) == 1 and store.stats().damaged == 0


def test_disk_full_while_storing_leaves_nothing_and_names_the_path(tmp_path, monkeypatch):
    store = TakeStore(tmp_path)
    real_save = np.save

    def full_disk(path, array, *args, **kwargs):
        if str(path).endswith("tail.npy"):
            with open(path, "wb") as handle:
                handle.write(b"\x93NUMPY half")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as write() raises it
        return real_save(path, array, *args, **kwargs)

    monkeypatch.setattr(np, "save", full_disk)
    with pytest.raises(StorageError, match="no space left on the device") as caught:
        put(store, "34" * 32)

    # write() names no file: the error names the cache, the disk that is full
    assert caught.value.path == store.root and "storing take 343434343434" in str(caught.value)
    assert not list((tmp_path / "takes").glob("*/*"))
    assert not list(store.tmp.iterdir())
    monkeypatch.setattr(np, "save", real_save)
    assert put(store, "34" * 32).frames == 20


def test_unreadable_pair_and_score_files_read_as_absent(tmp_path):
    store = TakeStore(tmp_path)
    store.save_pair("ab" * 20, {"scores": {}})
    pair = tmp_path / "pairs" / "ab" / f"{'ab' * 20}.json"
    for junk in (b"{", b"\xff\xfe", b"[]", b'"text"'):
        pair.write_bytes(junk)
        assert store.load_pair("ab" * 20) is None
    store.save_pair("ab" * 20, {"scores": {"seam": 1}})
    assert store.load_pair("ab" * 20) == {"scores": {"seam": 1}}
    assert not list(store.tmp.iterdir())  # the scratch name was renamed into place
