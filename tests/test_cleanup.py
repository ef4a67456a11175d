"""Cleaning up after killed renders: owner-tagged scratch, orphaned and live children.

A render killed outright leaves scratch files and ffmpeg children behind; the next start
removes what belongs to a dead owner and never touches what belongs to a live one.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from stitchcraft import housekeeping, media
from stitchcraft.assemble import scratch_folders
from stitchcraft.errors import FFmpegError
from stitchcraft.housekeeping import OWNER_ENV, owner_of, owner_tag, sweep
from stitchcraft.store import TakeStore

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")

# Seconds of nothing, read in real time: a child that runs until it is killed.
LONG_RUN = ["-nostats", "-loglevel", "error", "-re", "-f", "lavfi", "-i",
            "nullsrc=s=16x16:r=10", "-t", "120", "-f", "null", "-"]

# A stand-in for a render in the middle of its work: a partial output, a take being
# stored, audio scratch, and an ffmpeg child; it prints what it made and waits.
RENDER_IN_PROGRESS = f"""
import json, sys, threading, time
from pathlib import Path
from stitchcraft import housekeeping, media
from stitchcraft.assemble import scratch_folders
from stitchcraft.housekeeping import owner_tag
from stitchcraft.store import TakeStore

root, machine = Path(sys.argv[1]), sys.argv[2]
housekeeping._machine = lambda: machine  # the test's machine, see a_machine_of_its_own
writing = media.atomic_output(root / "out" / "cut.mp4")  # held open: never finished
partial = writing.__enter__()
take_work = TakeStore(root / "cache")._tmp_dir()
audio = scratch_folders(root / "work")[0] / f"cut.{{owner_tag()}}.audio.m4a"
audio.parent.mkdir(parents=True, exist_ok=True)
audio.write_bytes(b"aac")
threading.Thread(target=media.run_ffmpeg, args=({LONG_RUN!r},),
                 kwargs={{"what": "wait"}}, daemon=True).start()
while not media._CHILDREN:
    time.sleep(0.01)
child = next(iter(media._CHILDREN)).pid
print(json.dumps({{"files": [str(partial), str(take_work), str(audio)], "child": child}}),
      flush=True)
time.sleep(600)
"""


@pytest.fixture(autouse=True)
def a_machine_of_its_own(monkeypatch, request) -> str:
    """Each test here poses as a machine of its own, a tag no other process shares.

    A render's sweep ends dead owners' orphans machine-wide, and under xdist other tests'
    renders run beside these: their sweeps ended the orphans made here before these tests
    could look, and one test's sweep ended another's. Owners on another machine are never
    touched, so now no sweep elsewhere reaches what a test here makes, nor its sweeps
    what belongs to anyone else.
    """
    machine = hashlib.sha256(f"{os.getpid()} {request.node.nodeid}".encode()).hexdigest()[:8]
    monkeypatch.setattr(housekeeping, "_machine", lambda: machine)
    monkeypatch.setattr(housekeeping, "_OWN", [])
    return machine


def running(pid: int) -> bool:
    """Whether a process exists and is not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"


def wait_ended(pid: int, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while running(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def folders(root: Path) -> list[Path]:
    return [root / "out", *scratch_folders(root / "work")]


@pytest.fixture
def render_in_progress(tmp_path, a_machine_of_its_own):
    """A process mid-render under tmp_path: (process, its scratch files, its ffmpeg pid)."""
    proc = subprocess.Popen([sys.executable, "-c", RENDER_IN_PROGRESS, str(tmp_path),
                             a_machine_of_its_own],
                            stdout=subprocess.PIPE, text=True)
    made = json.loads(proc.stdout.readline())
    yield proc, [Path(p) for p in made["files"]], made["child"]
    proc.kill()
    proc.wait()
    if running(made["child"]):
        os.kill(made["child"], signal.SIGKILL)


def test_a_live_renders_scratch_and_children_are_kept(tmp_path, render_in_progress):
    proc, files, child = render_in_progress
    assert [owner_of(f.name).pid for f in files] == [proc.pid] * 3

    swept = sweep(folders(tmp_path))
    removed = TakeStore(tmp_path / "cache").clean_tmp()

    assert (swept.removed, swept.killed, removed) == ([], [], [])
    assert all(f.exists() for f in files) and running(child)


def test_a_killed_renders_scratch_and_orphaned_ffmpeg_are_cleared(tmp_path, render_in_progress):
    proc, files, child = render_in_progress
    user_files = [tmp_path / "out" / name for name in (
        "cut.mp4", ".cut.mp4.swp", "notes.stitchtmp.txt", ".cut.k3j4h5g6.partial.mp4")]
    for path in user_files:
        path.write_bytes(b"mine")
    proc.kill()
    proc.wait()
    assert running(child)  # the orphan runs on after its render died

    swept = sweep(folders(tmp_path))
    removed = TakeStore(tmp_path / "cache").clean_tmp()

    assert sorted(swept.removed + removed) == sorted(files)
    assert not any(f.exists() for f in files)
    assert swept.killed == [child] and wait_ended(child)
    assert all(p.read_bytes() == b"mine" for p in user_files)  # untagged: never ours to judge


def dead_pid() -> int:
    done = subprocess.Popen(["true"])
    done.wait()
    return done.pid


def tag(pid: int, start: int, machine: str | None = None) -> str:
    return f"stitchtmp-{machine or housekeeping._own().machine}-{pid}-{start}"


def test_kill_orphans_ends_only_children_of_dead_owners(tmp_path):
    machine, own_pid, own_start = housekeeping._own()
    parent = os.getppid()
    owners = {
        "orphan": f"{machine}:{dead_pid()}:12345",
        "pid reused": f"{machine}:{own_pid}:{own_start + 1}",
        "live owner": f"{machine}:{parent}:{housekeeping._start_time(parent)}",
        "other machine": f"0badf00d:{dead_pid()}:12345",
        "no owner": None,
    }
    base = {k: v for k, v in os.environ.items() if k != OWNER_ENV}
    envs = {name: {**base, **({OWNER_ENV: owner} if owner else {})}
            for name, owner in owners.items()}
    children = {name: subprocess.Popen([media.ffmpeg_exe(), *LONG_RUN], env=env,
                                       stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                for name, env in envs.items()}
    try:
        time.sleep(0.3)
        killed = housekeeping.kill_orphans()
        ended = {name for name, child in children.items() if wait_ended(child.pid, 3)}
    finally:
        for child in children.values():
            child.kill()
            child.wait()
    assert sorted(killed) == sorted(children[n].pid for n in ("orphan", "pid reused"))
    assert ended == {"orphan", "pid reused"}


def test_stale_scratch_of_dead_owners_goes_live_and_untagged_stays(tmp_path):
    dead = tag(dead_pid(), 999)
    out, work, segments = folders(tmp_path)
    for folder in (out, work, segments):
        folder.mkdir(parents=True, exist_ok=True)
    stale = [out / f".cut.{dead}.a1b2c3d4.partial.mp4", work / f"cut.{dead}.audio.m4a",
             work / f"cut.{dead}.audio.mix.{dead}.wav", work / f"concat.{dead}.1234.txt",
             segments / f".seg-ab.{dead}.zz9_x8y7.partial.mp4"]
    live = [out / f".cut.{owner_tag()}.a1b2c3d4.partial.mp4", work / f"cut.{owner_tag()}.audio.m4a"]
    untagged = [out / "cut.mp4", segments / "seg-ab.mp4", work / "cut.12345.audio.m4a",
                work / f"cut.{tag(dead_pid(), 999, '0badf00d')}.audio.m4a"]
    for path in stale + live + untagged:
        path.write_bytes(b"x")

    swept = sweep([out, work, segments])

    assert sorted(swept.removed) == sorted(stale)
    assert all(p.exists() for p in live + untagged)


def test_clean_tmp_keeps_live_work_and_fresh_untagged_scratch(tmp_path):
    store = TakeStore(tmp_path)
    mine = store._tmp_dir()
    assert owner_of(mine.name) == housekeeping._own()
    dead = store.tmp / f"{tag(dead_pid(), 77)}.abcd"
    dead.mkdir()
    (dead / "take.mp4").write_bytes(b"half")
    elsewhere = f"{tag(dead_pid(), 77, '0badf00d')}.abcd"
    old, fresh = store.tmp / "1a2b3c4d.old", store.tmp / "1a2b3c4d.fresh"
    old_elsewhere, fresh_elsewhere = store.tmp / f"old.{elsewhere}", store.tmp / f"new.{elsewhere}"
    for folder in (old, fresh, old_elsewhere, fresh_elsewhere):
        folder.mkdir()
    for folder in (old, old_elsewhere):
        os.utime(folder, (time.time() - 3 * 86400,) * 2)

    assert sorted(store.clean_tmp()) == sorted([dead, old, old_elsewhere])
    assert mine.is_dir() and fresh.is_dir() and fresh_elsewhere.is_dir()
    assert store.stats().scratch == 3


def test_temporary_names_carry_the_owner(tmp_path):
    with media.atomic_output(tmp_path / "cut.mp4") as partial:
        assert owner_of(partial.name) == housekeeping._own()
        assert partial.name.startswith(".cut.") and partial.name.endswith(".partial.mp4")


def test_kill_children_ends_a_running_child():
    failures: list[Exception] = []

    def run() -> None:
        try:
            media.run_ffmpeg(LONG_RUN, what="wait for a long time")
        except FFmpegError as exc:
            failures.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 10
    while not media._CHILDREN and time.monotonic() < deadline:
        time.sleep(0.01)
    child = next(iter(media._CHILDREN))
    assert child.pid and running(child.pid)

    assert media.kill_children() == 1
    thread.join(10)

    assert not thread.is_alive() and wait_ended(child.pid, 1)
    assert len(failures) == 1 and "was killed" in str(failures[0])
    assert not media._CHILDREN


def test_after_kill_children_with_refuse_new_no_child_starts(monkeypatch):
    monkeypatch.setattr(media, "_REFUSING", threading.Event())
    media.kill_children(refuse_new=True)
    with pytest.raises(FFmpegError, match="shutting down"):
        media.run_ffmpeg(["-version"], what="print its version")
