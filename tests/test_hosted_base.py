"""The job loop every hosted engine shares (`HostedEngine`), driven by a scripted
provider: what the journal says after each way a candidate is given up, the timeout's
cancel (or not), billing through one hook, and closing the clients.

The provider adapters themselves are tested against protocol fakes over real HTTP in
the other ``test_hosted_*`` files; here the provider is a script, so each path of the
loop is taken exactly once.
"""

from __future__ import annotations

import shutil
import threading
import time
from fractions import Fraction
from pathlib import Path
from typing import Any, ClassVar

import pytest
from lavfi import make_image, make_video

from stitchcraft.engines.base import Capabilities, SegmentRequest, Take, TakeFailure
from stitchcraft.engines.hosted import base as hosted_base
from stitchcraft.engines.hosted.base import (
    HostedEngine,
    HostedSettings,
    Job,
    JobStatus,
    RateLimited,
    ResultExpired,
    Transient,
)
from stitchcraft.generate.jobs import JobBook, JobJournal

RUNNING = JobStatus("running")


class Scripted(HostedEngine):
    """A provider whose answers are a script: each `status` call takes the next item (a
    `JobStatus`, or an exception to raise), repeating the last; `fetch` likewise."""

    NAME = "scripted"
    PROVIDER = "Acme"
    DURATIONS = (2.0, 4.0)
    PRICE_PER_SECOND = (0.10, "test")
    CAPABILITIES = Capabilities(kinds=frozenset({"prompt"}), text_to_video=True)
    CAN_CANCEL: ClassVar[bool] = False

    def __init__(self, video: Path, polls: list[Any], fetches: list[Any] | None = None,
                 **settings: Any):
        super().__init__(HostedSettings(poll_interval=0.01, **settings))
        self.video = video
        self.polls, self.fetches = list(polls), list(fetches or [None])
        self.submitted: list[str] = []
        self.polled = 0
        self.cancels: list[str] = []

    def submit(self, job: Job) -> str:
        self.submitted.append(f"job-{len(self.submitted)}")
        return self.submitted[-1]

    def status(self, job_id: str) -> JobStatus:
        self.polled += 1
        answer = self.polls.pop(0) if len(self.polls) > 1 else self.polls[0]
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[no-any-return]

    def fetch(self, status: JobStatus, path: Path) -> None:
        answer = self.fetches.pop(0) if len(self.fetches) > 1 else self.fetches[0]
        if isinstance(answer, Exception):
            raise answer
        shutil.copy(self.video, path)


class Cancellable(Scripted):
    CAN_CANCEL = True

    def cancel(self, job_id: str) -> bool:
        self.cancels.append(job_id)
        return True


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_video(tmp_path_factory.mktemp("video") / "made.mp4", seconds=2.0,
                      size="320x180", audio=None)


@pytest.fixture(autouse=True)
def few_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hosted_base, "RETRIES", 2)


def make(engine: HostedEngine, journal: JobJournal) -> Take | TakeFailure:
    book = JobBook(journal, {0: "take-0"}, "scripted")
    request = SegmentRequest(shot_id="a", segment=0, kind="prompt", frames=24, width=320,
                             height=180, fps=Fraction(24), seeds=[0], prompt="a pier", jobs=book)
    [made] = list(engine.generate(request))
    return made


def succeeded() -> JobStatus:
    return JobStatus("succeeded", video="https://example.invalid/v.mp4")


# -- 1. what the journal says when a candidate is given up -------------------------------------


def test_an_expired_result_is_failed_in_the_journal_and_resubmit_clears_it(video, tmp_path):
    journal = JobJournal(tmp_path / "jobs")
    gone = ResultExpired("the video's address answered 410 (expired or removed)")
    engine = Scripted(video, [succeeded()], fetches=[gone])
    failure = make(engine, journal)
    assert isinstance(failure, TakeFailure)
    assert "410" in failure.reason and "billed" in failure.reason and "--resubmit" in failure.reason
    entry = journal.read("take-0")
    assert entry["state"] == "failed" and "410" in entry["reason"] and entry["job"] == "job-0"

    # The next render neither polls nor submits it again ...
    again = Scripted(video, [succeeded()])
    failure = make(again, journal)
    assert isinstance(failure, TakeFailure) and "--resubmit" in failure.reason
    assert again.polled == 0 and again.submitted == []
    # ... and --resubmit clears it, so it is made anew.
    assert journal.clear_unfinished() == 1
    assert isinstance(make(again, journal), Take) and again.submitted == ["job-0"]


@pytest.mark.parametrize("error", [Transient("poll: HTTP 502"), RateLimited("poll: 429", 0.0)])
def test_polling_given_up_on_transient_errors_stays_submitted_and_is_polled_again(
        video, tmp_path, error):
    journal = JobJournal(tmp_path / "jobs")
    engine = Scripted(video, [RUNNING, error])
    failure = make(engine, journal)
    assert isinstance(failure, TakeFailure)
    assert "may still be running" in failure.reason and "polls it again" in failure.reason
    assert journal.read("take-0")["state"] == "submitted"

    later = Scripted(video, [succeeded()])
    take = make(later, journal)
    assert isinstance(take, Take), take
    assert later.submitted == [] and later.polled == 1  # collected, not paid for again


def test_a_download_given_up_on_transient_errors_is_fetched_by_the_next_render(video, tmp_path):
    journal = JobJournal(tmp_path / "jobs")
    engine = Scripted(video, [succeeded()], fetches=[Transient("downloading: ReadError")])
    failure = make(engine, journal)
    assert isinstance(failure, TakeFailure) and "polls it again" in failure.reason
    assert journal.read("take-0")["state"] == "submitted"
    later = Scripted(video, [succeeded()])
    assert isinstance(make(later, journal), Take) and later.submitted == []


def test_a_submission_that_never_reached_the_provider_leaves_no_entry(video, tmp_path):
    class Down(Scripted):
        def submit(self, job: Job) -> str:
            raise Transient("submitting: ConnectError (not sent)")

    journal = JobJournal(tmp_path / "jobs")
    failure = make(Down(video, [succeeded()]), journal)
    assert isinstance(failure, TakeFailure) and "polls it again" not in failure.reason
    assert journal.read("take-0") == {}


# -- 2. a job past its timeout -------------------------------------------------------------------


def test_a_timeout_is_cancelled_where_the_provider_can(video, tmp_path):
    journal = JobJournal(tmp_path / "jobs")
    engine = Cancellable(video, [RUNNING], timeout=1)
    journal.root.mkdir(parents=True)
    JobBook(journal, {0: "take-0"}, "scripted").submitted(0, "job-x")
    journal.update("take-0", submitted_at=0.0)  # long ago
    failure = make(engine, journal)
    assert isinstance(failure, TakeFailure)
    assert "did not finish within 1 s" in failure.reason and failure.reason.endswith("cancelled")
    assert engine.cancels == ["job-x"]
    entry = journal.read("take-0")
    assert entry["state"] == "failed" and not entry["left_running"]


def test_a_timeout_without_a_cancel_says_so_and_is_checked_once_later(video, tmp_path):
    journal = JobJournal(tmp_path / "jobs")
    JobBook(journal, {0: "take-0"}, "scripted").submitted(0, "job-x")
    journal.update("take-0", submitted_at=0.0)
    engine = Scripted(video, [RUNNING], timeout=1)
    failure = make(engine, journal)
    assert isinstance(failure, TakeFailure)
    assert "Acme has no cancel" in failure.reason
    assert "may still finish and be billed" in failure.reason
    assert "cancelled" not in failure.reason
    entry = journal.read("take-0")
    assert entry["state"] == "failed" and entry["left_running"]  # not polled forever

    # The next render asks once: still running, so it fails at once, without waiting.
    still = Scripted(video, [RUNNING], timeout=1)
    failure = make(still, journal)
    assert isinstance(failure, TakeFailure) and "--resubmit" in failure.reason
    assert still.polled == 1 and still.submitted == []
    # Finished since: its video (already paid for) is collected, nothing submitted.
    done = Scripted(video, [succeeded()], timeout=1)
    assert isinstance(make(done, journal), Take)
    assert done.polled == 1 and done.submitted == []


def test_a_cancel_the_provider_refuses_is_reported_as_not_cancelled(video, tmp_path):
    class Refusing(Scripted):
        CAN_CANCEL = True

        def cancel(self, job_id: str) -> bool:
            raise Transient("cancelling: HTTP 502")

    journal = JobJournal(tmp_path / "jobs")
    JobBook(journal, {0: "take-0"}, "scripted").submitted(0, "job-x")
    journal.update("take-0", submitted_at=0.0)
    failure = make(Refusing(video, [RUNNING], timeout=1), journal)
    assert isinstance(failure, TakeFailure)
    assert "did not accept the cancel (cancelling: HTTP 502)" in failure.reason
    assert "may still finish and be billed" in failure.reason


# -- 3. billing through one hook -----------------------------------------------------------------


def test_the_manifest_bills_what_the_hook_says(video, tmp_path):
    class Minimum(Scripted):
        @classmethod
        def tariff(cls, model, settings, seconds, *, image, references):
            asked = cls.fit_duration(model, seconds)
            return hosted_base.Bill(asked, max(asked, 3.0), 0.25 + max(asked, 3.0) * 0.1)

    take = make(Minimum(video, [succeeded()]), JobJournal(tmp_path / "jobs"))
    assert isinstance(take, Take)
    assert take.meta["billed_seconds"] == 3.0 and take.meta["cost"] == pytest.approx(0.55)
    priced = make(Minimum(video, [succeeded()], price_per_second=0.5),
                  JobJournal(tmp_path / "priced"))
    assert isinstance(priced, Take) and priced.meta["cost"] == pytest.approx(1.5)


ESTIMATES = [
    # Veo makes 1080p (and reference-guided) videos only at 8 s, billed as such.
    ("veo", "{model: veo-3.1-generate-preview, input: {resolution: 1080p}}", "", 8.0, 8 * 0.40),
    ("veo", "{}", "reference: still.png", 8.0, 8 * 0.40),
    ("veo", "{}", "", 4.0, 4 * 0.40),
    # Kling 2.1 on Replicate costs $0.09/s in pro mode, $0.05/s in standard.
    ("replicate", "{input: {mode: pro}}", "image: still.png", 5.0, 5 * 0.09),
    ("replicate", "{input: {mode: standard}}", "image: still.png", 5.0, 5 * 0.05),
    # Veo 3.1 through Runway costs half without sound.
    ("runway", "{model: veo3.1, input: {audio: false}}", "", 4.0, 4 * 0.20),
    ("runway", "{model: veo3.1}", "", 4.0, 4 * 0.40),
    # Luma by resolution.
    ("luma", "{model: ray-flash-2, input: {resolution: 1080p}}", "", 5.0, 5 * 0.110),
    # fal's Kling 2.1 is billed per 5 s first, then per second.
    ("fal", "{}", "image: still.png", 5.0, 0.28),
    ("fal", "{model: fal-ai/minimax/hailuo-02/standard/image-to-video, input: {resolution: 512P}}",
     "image: still.png", 6.0, 6 * 0.017),
]


@pytest.mark.parametrize(("engine", "settings", "extra", "seconds", "usd"), ESTIMATES)
def test_the_estimate_and_the_job_bill_alike(write_storyboard, tmp_path, engine, settings, extra,
                                             seconds, usd):
    from stitchcraft.cost import estimate
    from stitchcraft.engines import engine_class
    from stitchcraft.plan import plan_storyboard
    from stitchcraft.storyboard.load import load_storyboard

    make_image(tmp_path / "still.png", size="320x180")
    shot = f"{{id: a, prompt: a pier, duration: 1.5, engine: {engine}, candidates: 2"
    shot += f", {extra}}}" if extra else "}"
    board = write_storyboard(f"""
        version: 1
        output: {{path: out/cut.mp4, size: 320x180, fps: 24}}
        engines:
          {engine}: {settings}
        shots:
          - {shot}
        """)
    loaded = load_storyboard(board)
    found = estimate(loaded, plan_storyboard(loaded))
    [cost] = found.engines
    assert cost.takes == 2
    assert cost.seconds == pytest.approx(2 * seconds)
    assert cost.usd == pytest.approx(round(2 * usd, 2))

    # What the render records for a take of that shot: the same bill, from job_for.
    cls = engine_class(engine)
    assert issubclass(cls, HostedEngine)
    made = cls(loaded.engine_settings(engine))
    book = JobBook(JobJournal(tmp_path / "jobs"), {0: "t"}, engine)
    spec = loaded.storyboard.shots[0]
    request = SegmentRequest(
        shot_id="a", segment=0, kind="image" if spec.image else "prompt", frames=36, width=320,
        height=180, fps=Fraction(24), seeds=[0], prompt="a pier", jobs=book,
        image=loaded.resolve(spec.image) if spec.image else None,
        references=[loaded.resolve(spec.reference)] if spec.reference else [])
    job = made.job_for(request, 0)
    assert job.seconds == seconds and job.bill is not None
    assert job.bill.billed_seconds == seconds and job.bill.usd == pytest.approx(usd)


def test_the_candidates_of_a_chained_shot_share_one_png_of_its_first_frame(video, monkeypatch):
    # Each candidate is a job on a thread of its own, all asking at once.
    import numpy as np

    encoded: list[int] = []
    real_png = hosted_base.png

    def slow_png(frame: Any) -> bytes:
        encoded.append(1)
        time.sleep(0.3)  # the other threads ask meanwhile
        return real_png(frame)

    monkeypatch.setattr(hosted_base, "png", slow_png)
    engine = Scripted(video, [succeeded()])
    frames = np.random.default_rng(3).integers(0, 256, (2, 16, 24, 3), dtype=np.uint8)
    started = threading.Barrier(4)
    sent: list[bytes] = []

    def ask() -> None:
        started.wait(5)
        sent.append(engine._first_frame_png(frames))

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(encoded) == 1 and len(set(sent)) == 1 and len(sent) == 4
    assert sent[0] == real_png(frames[-1])


# -- 5. closing the clients ----------------------------------------------------------------------


def test_close_closes_every_threads_client_and_the_shared_one(video):
    class Client:
        def __init__(self) -> None:
            self.closed = False

        def close(self) -> None:
            self.closed = True

    engine = Scripted(video, [succeeded()])
    made: list[Client] = []

    def client() -> None:
        made.append(engine._thread_client(Client))
        assert engine._thread_client(Client) is made[-1]  # one per thread

    threads = [threading.Thread(target=client) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    shared = engine._shared_client(Client)
    assert engine._shared_client(Client) is shared
    assert len({id(c) for c in made}) == 3
    engine.close()
    assert all(c.closed for c in made) and shared.closed
    assert engine._shared_client(Client) is not shared  # a later call makes a new one
    engine.close()


def test_every_hosted_engine_closes_its_sdk_client(monkeypatch):
    """Each adapter makes its client through the base's helpers, so `close` reaches it."""
    from stitchcraft.engines.hosted.fal import FalEngine
    from stitchcraft.engines.hosted.kling import KlingEngine
    from stitchcraft.engines.hosted.luma import LumaEngine
    from stitchcraft.engines.hosted.replicate import ReplicateEngine
    from stitchcraft.engines.hosted.runway import RunwayEngine
    from stitchcraft.engines.hosted.veo import VeoEngine

    for name in ("GEMINI_API_KEY", "RUNWAYML_API_SECRET", "LUMAAI_API_KEY", "FAL_KEY",
                 "REPLICATE_API_TOKEN", "KLING_ACCESS_KEY", "KLING_SECRET_KEY"):
        monkeypatch.setenv(name, "test-key-0123456789")
    makers = {VeoEngine: lambda e: e._client()._api_client._httpx_client,
              RunwayEngine: lambda e: e._client()._client,
              LumaEngine: lambda e: e.client()._client,
              KlingEngine: lambda e: e.client(),
              FalEngine: lambda e: e.http,
              ReplicateEngine: lambda e: e.client._client}
    for cls, transport in makers.items():
        engine = cls()
        http = transport(engine)
        assert not http.is_closed, cls.NAME
        engine.close()
        assert http.is_closed, cls.NAME


# -- 7. `stitch engines` -------------------------------------------------------------------------


def test_stitch_engines_shows_what_each_hosted_model_makes_and_costs(write_storyboard, monkeypatch):
    import json

    from typer.testing import CliRunner

    from stitchcraft.cli import app

    monkeypatch.setenv("KLING_ACCESS_KEY", "ak-0123456789")
    monkeypatch.setenv("KLING_SECRET_KEY", "sk-0123456789")
    monkeypatch.delenv("LUMAAI_API_KEY", raising=False)
    board = write_storyboard("""
        version: 1
        output: {path: out/cut.mp4, size: 320x180, fps: 24}
        engines:
          runway: {model: veo3.1, input: {audio: false}}
        shots:
          - {id: a, prompt: a pier, duration: 2}
        """)
    done = CliRunner().invoke(app, ["engines", str(board), "--json"])
    assert done.exit_code == 0, done.output
    rows = {row["name"]: row for row in json.loads(done.stdout)}
    # Luma takes images only as addresses: without an image_host, text-to-video only.
    assert rows["luma"]["can"] == ["text-to-video"] and rows["luma"]["kinds"] == ["prompt"]
    assert rows["luma"]["durations"] == [5.0, 9.0] and rows["luma"]["price_per_second"] == 0.142
    assert not rows["luma"]["key_set"] and "LUMAAI_API_KEY" in rows["luma"]["reason"]
    assert rows["kling"]["key_set"] and rows["kling"]["durations"] == [5.0, 10.0]
    # The storyboard's settings decide: Veo 3.1 at Runway, silent, half price.
    assert rows["runway"]["model"] == "veo3.1" and rows["runway"]["price_per_second"] == 0.2
    assert "first+last frame" in rows["runway"]["can"]

    table = CliRunner().invoke(app, ["engines"], env={"COLUMNS": "250"})
    assert table.exit_code == 0, table.output
    line = next(li for li in table.stdout.splitlines() if li.startswith("kling "))
    assert "5/10 s, $0.07/s" in line and "frames: any" not in line
    assert "KLING_ACCESS_KEY and KLING_SECRET_KEY set" in line
