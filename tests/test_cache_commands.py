"""`stitch cache`: show/check/clean (as before), ls, du and prune."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stitchcraft.cache import parse_age
from stitchcraft.errors import InputError

BOARD = """
version: 1
title: {name}
output: {{fps: 24, size: 160x90, path: out/{name}.mp4, preset: ultrafast}}
defaults: {{candidates: 2}}
shots:
  - id: one
    image: {name}.png
    duration: 0.5
"""


def stitch(*args: str, cwd: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    done = subprocess.run([sys.executable, "-m", "stitchcraft", *args, "--json"], cwd=cwd,
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def takes_of(project: Path, name: str) -> set[str]:
    manifest = json.loads((project / "out" / f"{name}.manifest.json").read_text())
    return {c["id"] for c in manifest["shots"]["one"]["segments"][0]["candidates"]}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    project = tmp_path_factory.mktemp("cache")
    for name, value in (("a", 60), ("b", 200)):
        Image.fromarray(np.full((90, 160, 3), value, np.uint8)).save(project / f"{name}.png")
        (project / f"{name}.yaml").write_text(BOARD.format(name=name))
    stitch("batch", "a.yaml", "b.yaml", cwd=project)
    return project


def test_show_check_ls_and_du_agree(rendered):
    shown = stitch("cache", "a.yaml", "--check", cwd=rendered)  # as before subcommands
    assert shown["takes"] == 4 and shown["problems"] == []
    listed = stitch("cache", "ls", "--cache", ".stitchcraft/cache", cwd=rendered)
    assert {t["id"] for t in listed} == takes_of(rendered, "a") | takes_of(rendered, "b")
    assert all(t["engine"] == "stills" and t["frames"] == 12 and t["size"] == "160x90" for t in listed)
    usage = stitch("cache", "du", "a.yaml", cwd=rendered)
    assert usage["bytes"]["takes"] == sum(t["bytes"] for t in listed) == shown["bytes"] - usage["bytes"]["pairs"]
    assert usage["total"] == sum(usage["bytes"].values())
    # In the storyboards' folder, the cache there is the one meant.
    assert stitch("cache", cwd=rendered) == shown | {"problems": []}
    assert stitch("cache", "du", cwd=rendered) == usage


def test_cache_without_a_storyboard_outside_a_project_says_what_to_give(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "STITCHCRAFT_CACHE")}
    done = subprocess.run([sys.executable, "-m", "stitchcraft", "cache", "ls"], cwd=tmp_path,
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip() == ("error: no take store in this folder (.stitchcraft/cache): "
                                   "give a storyboard or --cache DIR")


def test_ls_says_which_take_a_grade_is_made_from(tmp_path):
    from fractions import Fraction

    from stitchcraft.engines.base import Take
    from stitchcraft.store import TakeStore

    store = TakeStore(tmp_path / "cache")
    frames = np.full((6, 36, 64, 3), 90, np.uint8)
    made = store.put("ab" * 32, Take(frames, seed=1, label="made"), fps=Fraction(24), engine="title",
                     request={})
    grade = np.zeros((6, 3, 4), np.float32)
    grade[:, :, :3] = np.eye(3)
    store.put_graded("cd" * 32, made, grade, label="made, colour anchored", meta={}, request={})
    listed = {t["id"]: t for t in stitch("cache", "ls", "--cache", "cache", cwd=tmp_path)}
    assert listed["cd" * 32]["grade_of"] == made.id and listed[made.id]["grade_of"] is None
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    text = subprocess.run([sys.executable, "-m", "stitchcraft", "cache", "ls", "--cache", "cache"], cwd=tmp_path,
                          capture_output=True, text=True, env=env, timeout=300, check=True).stdout
    graded_line, = [line for line in text.splitlines() if line.startswith("cdcdcdcdcdcd")]
    assert graded_line.endswith(f"(a grade of {made.id[:12]})")
    assert "grade of" not in next(line for line in text.splitlines() if line.startswith("abababababab"))

def test_prune_unused_keeps_what_listed_storyboards_use_and_running_jobs(rendered):
    cache = rendered / ".stitchcraft" / "cache"
    a, b = takes_of(rendered, "a"), takes_of(rendered, "b")
    running, other = sorted(b)
    jobs = cache / "jobs"
    jobs.mkdir(exist_ok=True)
    (jobs / f"{running}.json").write_text(json.dumps({"take": running, "state": "submitted",
                                                      "updated_at": time.time()}))
    (jobs / "f00d.json").write_text(json.dumps({"take": "f00d", "state": "failed", "reason": "refused",
                                                "updated_at": time.time()}))
    would = stitch("cache", "prune", "--unused", "a.yaml", "--dry-run", cwd=rendered)
    assert would["takes"] == [other] and len(list((cache / "takes").glob("*/*"))) == 4
    pruned = stitch("cache", "prune", "--unused", "a.yaml", cwd=rendered)
    assert pruned["takes"] == [other] and pruned["kept_running"] == [running]
    assert pruned["jobs"] == ["f00d"] and (jobs / f"{running}.json").is_file()
    left = {p.name for p in (cache / "takes").glob("*/*")}
    assert left == a | {running}
    again = stitch("render", "a.yaml", cwd=rendered)
    assert again["takes_generated"] == 0 and again["takes_reused"] == 2


def test_prune_older_than_goes_by_last_use(rendered):
    cache = rendered / ".stitchcraft" / "cache"
    assert stitch("cache", "prune", "--older-than", "30d", "--cache", str(cache), cwd=rendered)["takes"] == []
    old = sorted(takes_of(rendered, "a"))
    month_ago = time.time() - 40 * 86400
    for take_id in old:
        os.utime(cache / "takes" / take_id[:2] / take_id, (month_ago, month_ago))
    # A render that uses them makes them young again.
    stitch("render", "a.yaml", cwd=rendered)
    assert stitch("cache", "prune", "--older-than", "30d", "a.yaml", cwd=rendered)["takes"] == []
    for take_id in old:
        os.utime(cache / "takes" / take_id[:2] / take_id, (month_ago, month_ago))
    pruned = stitch("cache", "prune", "--older-than", "30d", "a.yaml", cwd=rendered)
    assert sorted(pruned["takes"]) == old and pruned["bytes"] > 0
    assert not any((cache / "takes" / t[:2] / t).exists() for t in old)


def test_parse_age():
    assert parse_age("30d") == 30 * 86400 and parse_age("12h") == 43200 and parse_age("1.5m") == 90
    with pytest.raises(InputError, match="30d"):
        parse_age("30 days")
