"""What keyframes and reference images cost before a render (`cost.estimate`), and what
`stitch engines` says an image engine charges.

The estimate must agree with the bill the render's own job carries (`job_for`), so each
price is checked against the job the engine would send for the same shot.
"""

from __future__ import annotations

import itertools
import json
import re
from fractions import Fraction
from pathlib import Path

import pytest
from lavfi import make_image
from typer.testing import CliRunner

from stitchcraft.cli import app
from stitchcraft.cost import estimate
from stitchcraft.engines import engine_class
from stitchcraft.engines.base import SegmentRequest
from stitchcraft.engines.hosted.images import ImageEngine
from stitchcraft.generate import candidate_seeds
from stitchcraft.generate.jobs import JobJournal
from stitchcraft.plan import Plan, plan_storyboard, take_id
from stitchcraft.store import TakeStore
from stitchcraft.storyboard.load import LoadedStoryboard, load_storyboard


def keyframed(write_storyboard, tmp_path: Path, engine: str, size: str, *, cast_images: bool,
              settings: str = "{}") -> LoadedStoryboard:
    """A storyboard whose one shot (on the local ltx-video, never billed) starts from a
    keyframe made by `engine`, three candidates of it, with Mara's picture as a
    reference when `cast_images`."""
    make_image(tmp_path / "mara.png", size="320x180")
    images = ", images: [mara.png]" if cast_images else ""
    return load_storyboard(write_storyboard(f"""
        version: 1
        output: {{path: out/cut.mp4, size: {size}, fps: 24}}
        defaults: {{engine: ltx-video, keyframe_engine: {engine}, candidates: 2}}
        cast:
          mara: {{description: a tall woman in a red coat{images}}}
        engines:
          {engine}: {settings}
        shots:
          - id: pier
            prompt: "{{mara}} walks along a pier"
            keyframe: {{prompt: "{{mara}} at the end of the pier", candidates: 3}}
            duration: 2
        """))


def job_bill_of_keyframe(loaded: LoadedStoryboard, plan: Plan, shot_id: str):
    """The bill on the job the keyframe's image engine sends for its first still."""
    still = plan.shot(shot_id).keyframe
    spec = loaded.keyframe(shot_id)
    assert still is not None and spec is not None
    cls = engine_class(spec.engine)
    assert issubclass(cls, ImageEngine)
    request = SegmentRequest(
        shot_id=shot_id, segment=still.segments[0].index, kind="keyframe", frames=1,
        width=still.width, height=still.height, fps=Fraction(24), seeds=[0], prompt=spec.prompt,
        references=list(spec.references), settings=loaded.engine_settings(spec.engine))
    return cls(loaded.engine_settings(spec.engine)).job_for(request, 0).bill


# Engine, output size, the shot's reference images go to the keyframe, USD per still.
STILLS = [
    ("runway-image", "1280x720", True, 0.05),     # gen4_image at 720p: 5 credits
    ("runway-image", "1920x1080", True, 0.08),    # at 1080p: 8 credits
    ("fal-image", "640x360", False, 0.003),       # FLUX schnell: at least one megapixel
    ("fal-image", "1920x1080", False, 0.009),     # 1920x1088 asked: 2.09 Mpx, billed as 3
    ("imagen", "1280x720", False, 0.04),
]


@pytest.mark.parametrize(("engine", "size", "cast_images", "usd"), STILLS)
def test_a_keyframe_is_billed_per_still_at_the_shot_size(write_storyboard, tmp_path, engine, size,
                                                        cast_images, usd):
    loaded = keyframed(write_storyboard, tmp_path, engine, size, cast_images=cast_images)
    assert (loaded.reference_route("pier").to == "keyframe") == cast_images
    plan = plan_storyboard(loaded)
    found = estimate(loaded, plan)
    [cost] = found.engines  # ltx-video is local: only the stills are paid for
    assert (cost.engine, cost.takes, cost.seconds) == (engine, 3, 0.0)
    assert cost.price_per_image == pytest.approx(usd)
    assert cost.usd == pytest.approx(round(3 * usd, 2)) and found.usd == cost.usd
    # The render's job for one still carries the same bill.
    bill = job_bill_of_keyframe(loaded, plan, "pier")
    assert bill is not None and bill.usd == pytest.approx(usd) and bill.billed_seconds == 0
    line = found.lines()[0]
    assert f"{engine} (" in line and "3 keyframe stills to make" in line
    assert f"at ${usd:g}/image" in line and " s generated" not in line


def test_the_storyboards_price_per_image_wins(write_storyboard, tmp_path):
    loaded = keyframed(write_storyboard, tmp_path, "runway-image", "1280x720", cast_images=True,
                       settings="{price_per_image: 0.5}")
    [cost] = estimate(loaded, plan_storyboard(loaded)).engines
    assert cost.price_per_image == 0.5 and cost.usd == 1.5


def test_stills_already_submitted_are_not_paid_again(write_storyboard, tmp_path):
    loaded = keyframed(write_storyboard, tmp_path, "runway-image", "1280x720", cast_images=True)
    plan = plan_storyboard(loaded)
    still = plan.shot("pier").keyframe
    assert still is not None
    segment = still.segments[0]
    # An earlier render submitted two of the three stills (the ids the render gives them).
    store = TakeStore(tmp_path / "cache")
    journal = JobJournal(store.root / "jobs")
    for seed in candidate_seeds(still, segment)[:2]:
        journal.update(take_id(segment.hash, seed), state="submitted", job="job-1")
    [cost] = estimate(loaded, plan, store=store).engines
    assert (cost.takes, cost.submitted, cost.cached) == (1, 2, 0)
    assert cost.usd == 0.05 and cost.price_per_image == 0.05


CAST_ON_VEO = """
    version: 1
    output: {path: out/cut.mp4, size: 1280x720, fps: 24}
    defaults: {engine: veo, keyframe_engine: runway-image, candidates: 2}
    cast:
      mara: {description: a tall woman in a red coat, images: [mara.png]}
    shots:
      - {id: walk, prompt: "{mara} walks along a pier", duration: 4}
      - {id: turn, prompt: "{mara} turns around", duration: 4, continuity: chain}
      - id: rail
        prompt: "{mara} looks out to sea"
        engine: runway
        keyframe: "{mara} at the rail"
        duration: 4
    """


def test_reference_images_are_billed_where_the_route_sends_them(write_storyboard, tmp_path):
    make_image(tmp_path / "mara.png", size="320x180")
    loaded = load_storyboard(write_storyboard(CAST_ON_VEO))
    assert [loaded.reference_route(s).to for s in ("walk", "turn", "rail")] == \
        ["engine", None, "keyframe"]
    costs = {e.engine: e for e in estimate(loaded, plan_storyboard(loaded)).engines}
    assert list(costs) == ["veo", "runway-image", "runway"]
    # Veo 3.1 with reference images makes 8 s takes: `walk` gets Mara's picture (from the
    # cast, no `reference:` of its own); the chained `turn` starts from a take and gets none.
    veo = costs["veo"]
    assert veo.takes == 4 and veo.seconds == 2 * 8 + 2 * 4
    assert veo.usd == pytest.approx(24 * 0.4)
    # `rail`: Runway animates a still that runway-image made from Mara's picture.
    assert costs["runway-image"].takes == 2 and costs["runway-image"].usd == 0.1
    assert costs["runway"].takes == 2 and costs["runway"].seconds == 8


def test_a_shot_animating_a_keyframe_is_made_per_still_the_beam_keeps(write_storyboard, tmp_path):
    make_image(tmp_path / "mara.png", size="320x180")
    loaded = load_storyboard(write_storyboard(CAST_ON_VEO))
    plan = plan_storyboard(loaded)
    narrow = {e.engine: e for e in estimate(loaded, plan, beam=1).engines}
    wide = {e.engine: e for e in estimate(loaded, plan, beam=2).engines}
    assert narrow["runway"].takes == 2
    # Two stills kept, two takes animating each: the stills themselves are made once.
    assert wide["runway"].takes == 4 and wide["runway"].seconds == 16
    assert wide["runway-image"].takes == narrow["runway-image"].takes == 2


def test_stitch_engines_prices_image_engines_per_image(write_storyboard):
    board = write_storyboard("""
        version: 1
        output: {path: out/cut.mp4, size: 320x180, fps: 24}
        engines:
          luma-image: {price_per_image: 0.25}
        shots:
          - {id: a, title: Hello, duration: 1}
        """)
    done = CliRunner().invoke(app, ["engines", str(board), "--json"])
    assert done.exit_code == 0, done.output
    rows = {row["name"]: row for row in json.loads(done.stdout)}
    for name in ("imagen", "runway-image", "luma-image", "fal-image", "replicate-image"):
        assert rows[name]["kinds"] == ["keyframe"] and "durations" not in rows[name], name
        assert "price_per_second" not in rows[name], name
    assert rows["luma-image"]["price_per_image"] == 0.25  # the storyboard's price
    assert rows["imagen"]["price_per_image"] == 0.04
    # Without a size, Runway's dearer (1080p) price: 8 credits.
    assert rows["runway-image"]["price_per_image"] == 0.08
    assert rows["runway-image"]["references"] == 3 and rows["flux"]["references"] == 0
    assert rows["veo"]["durations"] == [4.0, 6.0, 8.0] and "price_per_image" not in rows["veo"]

    table = CliRunner().invoke(app, ["engines"], env={"COLUMNS": "250"})
    assert table.exit_code == 0, table.output
    lines = table.stdout.splitlines()
    runway = next(li for li in lines if li.startswith("runway-image "))
    assert "keyframe (up to 3 reference images)" in runway and "$0.08/image (gen4_image)" in runway
    assert "/s" not in runway
    flux = next(li for li in lines if li.startswith("flux "))
    assert flux.split()[2:4] == ["keyframe", "one"] and "one still" in flux


def test_the_documented_keyframe_estimate(tmp_path):
    docs = (Path(__file__).parent.parent / "docs" / "hosted.md").read_text()
    [board] = [b for b in re.findall(r"```yaml\n(.*?)```", docs, re.S) if "Pier (keyframes" in b]
    (tmp_path / "assets").mkdir()
    make_image(tmp_path / "assets" / "mara.png", size="320x180")
    (tmp_path / "pier.yaml").write_text(board)
    loaded = load_storyboard(tmp_path / "pier.yaml")
    lines = estimate(loaded, plan_storyboard(loaded)).lines()
    after = docs[docs.index(board) + len(board):].split("```\n", 1)[1]  # past the YAML's fence
    output = re.search(r"^```\n(.*?)^```$", after, re.S | re.M)  # the next block: `stitch plan`
    assert output is not None and output.group(1).splitlines() == lines and len(lines) == 3


def test_engines_at_80_columns_keep_their_rows_short_and_say_every_reason_below():
    """At 80 columns a reason (how to get weights, which key to set) folded into a dozen
    lines of its column; the row keeps its first clause, and the reason is said whole
    under the table, where a footnote number points."""
    env = {"COLUMNS": "80", "STITCHCRAFT_ALLOW_CPU": "", "RUNWAYML_API_SECRET": ""}
    done = CliRunner().invoke(app, ["engines", "--json"], env=env)
    reasons = {row["name"]: row["reason"] for row in json.loads(done.stdout) if not row["available"]}
    assert "runway" in reasons and len(reasons["runway"]) > 48
    table = CliRunner().invoke(app, ["engines"], env=env)
    assert table.exit_code == 0, table.output
    lines = table.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines)
    below = " ".join(line.strip() for line in lines[next(i for i, li in enumerate(lines) if li.startswith("[1] ")):])
    notes = dict(re.findall(r"\[(\d+)\] ([\w-]+): ", below))
    assert set(notes.values()) == {name for name, reason in reasons.items() if len(reason) > 48}
    for number, name in notes.items():
        row = next(li for li in lines if li.startswith(f"{name} "))
        assert row.split()[1] == "no"
        start = lines.index(row)  # the row's note ends in its number, within a few lines
        assert any(f"[{number}]" in li for li in lines[start:start + 6]), name
        said = below.split(f"[{number}] {name}: ", 1)[1]
        assert said.startswith(" ".join(reasons[name].split())[:40]), name
    # ltx-video's row was 25 lines high, most of them its reason
    ltx = lines.index(next(li for li in lines if li.startswith("ltx-video ")))
    assert sum(1 for _ in itertools.takewhile(lambda li: li.startswith(" "), lines[ltx + 1:])) <= 2
