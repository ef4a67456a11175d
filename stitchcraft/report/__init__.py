"""The render report: ``report.html``, a contact sheet of every shot's candidates.

One self-contained file that opens from disk with no server and no network:
thumbnails are inlined as base64 JPEG, the styles are inline CSS, the drift curve is
inline SVG, and nothing needs JavaScript.

`write_report` reads the same data as ``manifest.json``::

    {
      "title": str, "output": str,
      "cache": str,                                 # optional: the take store, where
                                                    # candidates' frames are read from
      "seam_threshold": float,                      # optional, default 0.35
      "shots": {shot_id: {                          # or a list of {"id": shot_id, ...}
          "chosen": take_id,
          "continuity": "cut" | "chain" | "bridge" | "match",  # optional
          "segments": [{"index": int, "chosen": take_id, "candidates": [candidate],
                        "failed": [failed],                  # optional
                        "set_aside": [take_id]}],            # optional: a pin's others
          # or, for a one-segment shot, "candidates" (and "failed") directly
          "seam": {"value": float, "parts": {...}},  # optional; else read from the chosen
      }},                                             # candidate's "seams"/"components"
      "weak_seams": [{"shot", "after", "score"}],   # optional
      "drift": [{"shot": str, "delta_e": float, "chain": str}],  # optional; else read
      "warnings": [str],                            # from the chosen candidates' details
      "scoring": {"frames_decoded", "seconds", "scorers": {...}},  # ScoreBook.stats()
      "cost": {"offered": usd, "made": usd, "billed_seconds": s},  # optional: hosted takes
      "fallbacks": [{"shot", "from", "to", "reason"}],  # optional; "to" empty when that
    }                                                   # fallback could not run either

    candidate = {"id", "engine", "seed", "label", "path", "score",
                 "components" (or "parts"): {scorer: value 0..1},
                 "details": {scorer: {part: number}},      # optional raw parts
                 "seams": {"previous": value, "next": value},  # optional
                 "thumbs": [jpeg bytes or file paths],      # optional; else made from the
                                                            # take in "cache", or "path"
                 "provider", "job", "billed_seconds", "cost", "cached"}  # hosted takes

    failed = {"seed", "engine", "reason", "job"}   # a candidate the provider failed or refused

Every field past the first few is optional, so a manifest of an older render (without
the hosted fields) reads as it did. Text from providers and storyboards is escaped.

Thumbnails of a take in the store show what the cut shows: the first and last frames come
from its lossless head and tail, the middle one is read from its span (footage begins
at its in-point, not at the top of the file).

Every join whose seam was judged (a chained, bridged or matched one: the chosen
candidate's ``seams.previous``, or the bridge's ``seams.next`` before it) shows, above
the shot, the last frames of the take before beside the first frames of the chosen take,
from the store's lossless tails and heads, with the seam's value and each scorer's part.
"""

from __future__ import annotations

import base64
import html
import io
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..ui import plural

if TYPE_CHECKING:
    from ..store import StoredTake, TakeStore

THUMB_WIDTH = 240
SEAM_FRAMES = 2         # frames shown on each side of a join
SEAM_THUMB_WIDTH = 160
DEFAULT_SEAM_THRESHOLD = 0.35
VISIBLE_DRIFT = 10.0  # delta E beyond which a colour shift is plain to see


def make_thumbnails(path: str | os.PathLike[str], frames: int | None = None, *,
                    width: int = THUMB_WIDTH) -> list[bytes]:
    """The first, middle and last frames of a video as small JPEGs.

    Args:
        path: The video.
        frames: Its frame count, if known (saves a probe).
        width: Thumbnail width in pixels.

    Raises:
        MediaError: the video is unreadable.
    """
    from ..media import probe, read_frames

    info = probe(path)
    count = frames or info.frames
    height = max(2, round(info.height * width / info.width / 2) * 2)
    picks = sorted({0, (count - 1) // 2, count - 1})
    images = [read_frames(path, index, 1, size=(width, height))[0] for index in picks]
    while len(images) < 3:
        images.append(images[-1])
    return [encode_jpeg(image) for image in images]


def take_thumbnails(take: StoredTake, *, width: int = THUMB_WIDTH) -> list[bytes]:
    """The first, middle and last frames of a stored take as small JPEGs, from the
    lossless frames the store keeps (an older entry's middle is read from its span), or
    for a take that keeps none, picked from its file (`TakeSpan.pick`: one decoder at a
    time, never more than one pass; the job may run beside the assembly's encoders).

    Raises:
        MediaError: the take's file is unreadable.
        RenderError: its head or tail is damaged.
    """
    from PIL import Image

    height = max(2, round(take.height * width / take.width / 2) * 2)

    def small(frame: np.ndarray) -> np.ndarray:
        return np.asarray(Image.fromarray(frame).resize((width, height), Image.Resampling.BILINEAR))

    if not take.ends_kept:  # three frames from the file, not its ends whole
        picks = sorted({0, (take.frames - 1) // 2, take.frames - 1})
        found = dict(zip(picks, take.pick(picks, size=(width, height)), strict=True))
        return [encode_jpeg(found[index]) for index in (0, (take.frames - 1) // 2, take.frames - 1)]
    kept = take.middle()
    middle = (small(kept[0]) if kept is not None
              else take.read((take.frames - 1) // 2, 1, size=(width, height))[0])
    ends = small(take.head(1, mapped=True)[0]), small(take.tail(1, mapped=True)[-1])
    return [encode_jpeg(image) for image in (ends[0], middle, ends[1])]


class ThumbnailJob:
    """Thumbnails of stored takes, made on one background thread while the render goes on
    (generation waits on engines, and the assembly's encoders rarely keep every core
    busy), for `write_report`'s `thumbnails`; takes are added as they are stored.

    Use it as a context manager: leaving the block on an exception drops the takes not
    yet started. A take whose thumbnails cannot be made here is left out of `result`, so
    the report makes them itself afterwards (and deals with a damaged take there; this
    job never moves anything in the store).
    """

    def __init__(self, takes: Iterable[StoredTake] = (), *, width: int = THUMB_WIDTH):
        self._width = width
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="thumbnails")
        self._made: dict[str, Future[list[bytes]]] = {}
        self._lock = threading.Lock()
        self.add(takes)

    def add(self, takes: Iterable[StoredTake]) -> None:
        """Queues the thumbnails of more takes (each take's once)."""
        from dataclasses import replace

        with self._lock:
            for take in takes:
                if take.id not in self._made:
                    self._made[take.id] = self._pool.submit(_quiet_take_thumbnails,
                                                            replace(take, store=None), self._width)

    def __enter__(self) -> ThumbnailJob:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        self._pool.shutdown(wait=True, cancel_futures=kind is not None)

    def result(self) -> dict[str, list[bytes]]:
        """JPEG bytes (first, middle, last) by take id, waiting for any still being made."""
        with self._lock:
            queued = dict(self._made)
        made = {take_id: future.result() for take_id, future in queued.items()}
        return {take_id: thumbs for take_id, thumbs in made.items() if thumbs}


def _quiet_take_thumbnails(take: StoredTake, width: int) -> list[bytes]:
    from ..errors import StitchError

    try:
        return take_thumbnails(take, width=width)
    except (StitchError, OSError, ValueError):
        return []


def encode_jpeg(image: np.ndarray, quality: int = 82) -> bytes:
    """uint8 RGB H x W x 3 -> JPEG bytes."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def write_report(data: Mapping[str, Any], path: str | os.PathLike[str],
                 thumbnails: Mapping[str, Sequence[bytes]] | None = None) -> Path:
    """Writes the HTML contact sheet, atomically.

    Args:
        data: The render's manifest data (shape in the module docstring).
        path: Where ``report.html`` goes.
        thumbnails: JPEG bytes (first, middle, last) by candidate id; candidates not in
            it use their own ``thumbs`` or are read from their video ``path``.

    Returns:
        The written path.
    """
    from ..media import atomic_output

    path = Path(path)
    page = render_report(data, thumbnails)
    with atomic_output(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------
# Reading the data


def _shots(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Normalises ``shots`` into a list of rows: one per shot segment."""
    raw = data.get("shots") or []
    items = list(raw.items()) if isinstance(raw, Mapping) else [(s.get("id", "?"), s) for s in raw]
    rows = []
    previous_id = None
    for shot_id, shot in items:
        keyframe = shot.get("keyframe")
        if isinstance(keyframe, Mapping):  # the still the shot animates: a row of its own
            rows.append({"shot": str(shot_id), "label": f"{shot_id} · keyframe", "chosen": keyframe.get("chosen"),
                         "candidates": keyframe.get("candidates", []), "after": None,
                         "set_aside": _ids(keyframe.get("set_aside")),
                         "failed": [f for f in keyframe.get("failed") or [] if isinstance(f, Mapping)],
                         "seam": None, "continuity": "keyframe"})
        segments = shot.get("segments") or [{"index": 0, "chosen": shot.get("chosen"),
                                             "candidates": shot.get("candidates", []),
                                             "failed": shot.get("failed", [])}]
        for segment in segments:
            label = str(shot_id) if len(segments) == 1 else f"{shot_id} · part {segment.get('index', 0) + 1}"
            chosen = segment.get("chosen") or shot.get("chosen")
            rows.append({"shot": str(shot_id), "label": label, "chosen": chosen,
                         "candidates": segment.get("candidates", []), "after": previous_id,
                         "set_aside": _ids(segment.get("set_aside")),
                         "failed": [f for f in segment.get("failed") or [] if isinstance(f, Mapping)],
                         "seam": shot.get("seam") if segment is segments[0] else None,
                         "continuity": shot.get("continuity") if segment is segments[0] else "chain"})
            previous_id = str(shot_id)
    return rows


def _ids(value: Any) -> set[str]:
    """The take ids a pin set aside (a manifest's ``set_aside``; none where it is missing)."""
    return {str(v) for v in value} if isinstance(value, list) else set()


def _chosen(row: Mapping[str, Any]) -> Mapping[str, Any] | None:
    return next((c for c in row["candidates"] if c.get("id") == row["chosen"]), None)


def _components(candidate: Mapping[str, Any]) -> dict[str, float]:
    values = candidate.get("components") or candidate.get("parts") or {}
    return {str(k): float(v) for k, v in values.items() if isinstance(v, int | float)}


def _seam_of(row: Mapping[str, Any], before: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The seam into this row from the row `before` it: value, per-scorer values and the
    kind of join (chain, bridge, match; None when the manifest does not say). None at a
    cut, where no seam was judged."""
    if row.get("seam"):
        seam = dict(row["seam"])
        return seam if seam.get("value") is not None else None
    if before is None:
        return None
    side, judged = "previous", _chosen(row)
    value = ((judged or {}).get("seams") or {}).get("previous")
    if value is None:  # a bridge ends on this row's first frame: judged from its side
        side, judged = "next", _chosen(before)
        value = ((judged or {}).get("seams") or {}).get("next")
    if judged is None or not isinstance(value, int | float):
        return None
    parts = {k.split(":")[0]: v for k, v in _components(judged).items() if k.endswith(f":{side}")}
    kind = "bridge" if side == "next" else {"chain": "chain", "bridge": "chain", "match": "match"}.get(
        str(row.get("continuity")))
    return {"value": float(value), "parts": parts, "kind": kind}


def _seam_frames(before: Mapping[str, Any], row: Mapping[str, Any], store: TakeStore | None,
                 thumbs: Mapping[str, Sequence[bytes]]) -> tuple[list[bytes], list[bytes]]:
    """JPEGs of the last frames of the take before a join and the first frames of the
    chosen take after it, from the store's lossless tail and head; else the takes' last
    and first thumbnails; empty where neither is there."""
    ends: list[list[bytes]] = []
    for take_id, end in ((before.get("chosen"), "tail"), (row.get("chosen"), "head")):
        frames = _stored_ends(store, str(take_id or ""), end)
        if frames:
            ends.append(frames)
            continue
        kept = list(thumbs.get(str(take_id or ""), []))
        ends.append([kept[-1 if end == "tail" else 0]] if kept else [])
    return ends[0], ends[1]


def _stored_ends(store: TakeStore | None, take_id: str, end: str) -> list[bytes]:
    """`SEAM_FRAMES` frames at one end of a stored take ("head": its first, "tail": its
    last) as small JPEGs; none when the store does not hold it intact."""
    from PIL import Image

    from ..errors import StitchError

    if store is None or not take_id:
        return []
    try:
        take = store.get(take_id)
        if take is None:
            return []
        frames = (take.head(SEAM_FRAMES, mapped=True) if end == "head"
                  else take.tail(SEAM_FRAMES, mapped=True))
    except (StitchError, OSError, ValueError):
        return []
    height = max(2, round(take.height * SEAM_THUMB_WIDTH / take.width / 2) * 2)
    return [encode_jpeg(np.asarray(Image.fromarray(np.ascontiguousarray(frame)).resize(
        (SEAM_THUMB_WIDTH, height), Image.Resampling.BILINEAR))) for frame in frames]


def _drift(data: Mapping[str, Any], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if data.get("drift"):
        return [dict(point) for point in data["drift"]]
    points = []
    for row in rows:
        chosen = _chosen(row)
        details = (chosen or {}).get("details") or {}
        drift = details.get("drift")
        if drift and "delta_e" in drift:
            points.append({"shot": row["label"], "delta_e": float(drift["delta_e"]),
                           "chain": row["shot"]})
    return points


def _thumbs(candidate: Mapping[str, Any], given: Mapping[str, Sequence[bytes]] | None,
            made: Mapping[str, list[bytes]]) -> list[bytes]:
    take_id = str(candidate.get("id", ""))
    if given and take_id in given:
        return list(given[take_id])
    thumbs = candidate.get("thumbs")
    if thumbs:
        return [bytes(t) if isinstance(t, bytes | bytearray) else Path(t).read_bytes() for t in thumbs]
    return made.get(take_id, [])


def _make_all_thumbs(data: Mapping[str, Any], rows: list[dict[str, Any]],
                     given: Mapping[str, Sequence[bytes]] | None) -> dict[str, list[bytes]]:
    """Thumbnails of every candidate that has none given, by take id, made two at a time
    (decoding and JPEG encoding leave the interpreter free)."""
    wanted: dict[str, Mapping[str, Any]] = {}
    for row in rows:
        for candidate in row["candidates"]:
            take_id = str(candidate.get("id", ""))
            if not (given and take_id in given) and not candidate.get("thumbs"):
                wanted.setdefault(take_id, candidate)
    if not wanted:
        return {}
    store = _store(data)
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 2)) as pool:
        made = list(pool.map(lambda c: _candidate_thumbs(c, store), wanted.values()))
    return dict(zip(wanted, made, strict=True))


def _store(data: Mapping[str, Any]) -> TakeStore | None:
    cache = data.get("cache")
    if not cache or not Path(str(cache)).is_dir():
        return None
    from ..store import TakeStore

    return TakeStore(str(cache))


def _candidate_thumbs(candidate: Mapping[str, Any], store: TakeStore | None) -> list[bytes]:
    """A candidate's thumbnails from its take in the store, else from its video file; none
    when neither can be read."""
    from ..errors import StitchError

    try:
        stored = store.get(str(candidate.get("id", ""))) if store is not None else None
        if stored is not None:
            return take_thumbnails(stored)
        video = candidate.get("path")
        return make_thumbnails(video, candidate.get("frames")) if video else []
    except (StitchError, OSError, ValueError):
        return []


# ---------------------------------------------------------------------------------------
# Writing the page


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _number(value: Any) -> float | None:
    """A manifest number, None where the field is missing or not a number."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _usd(value: float) -> str:
    return "<$0.01" if 0 < value < 0.005 else f"${value:,.2f}"


def _img(jpeg: bytes, alt: str) -> str:
    encoded = base64.b64encode(jpeg).decode("ascii")
    return f'<img src="data:image/jpeg;base64,{encoded}" alt="{_e(alt)}">'


def _tone(value: float, threshold: float) -> str:
    if value < threshold:
        return "bad"
    return "good" if value >= max(0.7, threshold + 0.2) else "fair"


def _bars(values: Mapping[str, float]) -> str:
    rows = []
    for name, value in sorted(values.items()):
        clamped = min(1.0, max(0.0, value))
        rows.append(f'<div class="bar"><span class="name">{_e(name)}</span>'
                    f'<span class="track"><span class="fill" style="width:{clamped * 100:.0f}%"></span></span>'
                    f'<span class="num">{value:.2f}</span></div>')
    return "".join(rows)


def _card(candidate: Mapping[str, Any], index: int, chosen: bool, thumbs: list[bytes], *,
          set_aside: set[str]) -> str:
    """One candidate, numbered as `stitch takes` and `stitch pick` number it. Where a pin
    chose the take, the others it set aside are shown unscored."""
    name = f"#{index}"
    strip = "".join(_img(t, f"{name} {where}") for t, where in zip(thumbs, ("first", "middle", "last"), strict=False))
    if not strip:
        strip = '<div class="nothumb">no preview</div>'
    score = candidate.get("score")
    pinned = chosen and bool(set_aside)
    if candidate.get("id") in set_aside:
        score_text = "set aside by the pin"
    elif candidate.get("scored") is False:  # the only candidate, no seam to judge
        score_text = "not scored"
    else:
        score_text = f"{float(score):.3f}" if isinstance(score, int | float) else "–"
    meta = " · ".join(_e(x) for x in (candidate.get("engine"), f"seed {candidate['seed']}"
                                      if candidate.get("seed") is not None else None,
                                      candidate.get("label")) if x)
    badge = f'<span class="badge">✓ {"pinned" if pinned else "chosen"}</span>' if chosen else ""
    short = candidate.get("short_by_frames") or 0
    if short:
        badge += (f'<span class="badge warn">last frame held {int(short)} of '
                  f'{_e(candidate.get("frames", "?"))} frames</span>')
    details = candidate.get("details") or {}
    notes = "".join(f"<li><b>{_e(k)}</b> {_e(', '.join(f'{p} {v:.3g}' for p, v in parts.items() if isinstance(v, int | float)))}</li>"
                    for k, parts in sorted(details.items()) if isinstance(parts, Mapping) and parts)
    raw = f'<details><summary>raw measures</summary><ul>{notes}</ul></details>' if notes else ""
    return (f'<article class="card{" chosen" if chosen else ""}">'
            f'<div class="strip">{strip}</div>'
            f'<header><span class="idx">{name}</span>{badge}<span class="score">{score_text}</span></header>'
            f'<p class="meta">{meta}</p>{_hosted_line(candidate)}'
            f'<div class="bars">{_bars(_components(candidate))}</div>{raw}'
            f'<p class="id">{_e(str(candidate.get("id", ""))[:12])}</p></article>')


def _hosted_line(candidate: Mapping[str, Any]) -> str:
    """A hosted take's provider, job id, billed seconds and estimated price (nothing for
    a take made on this machine)."""
    provider = candidate.get("provider")
    if not provider:
        return ""
    parts = [f"<b>{_e(provider)}</b>"]
    if candidate.get("job"):
        parts.append(f'job <code>{_e(candidate["job"])}</code>')
    billed, cost = _number(candidate.get("billed_seconds")), _number(candidate.get("cost"))
    if billed is not None:
        parts.append(f"{billed:g} s billed")
    if cost is not None:
        parts.append(f"~{_e(_usd(cost))}")
    if candidate.get("cached"):
        parts.append("from the cache, not billed again")
    return f'<p class="hosted">{" · ".join(parts)}</p>'


def _failure_kind(reason: str) -> str:
    """"refused" where the provider's words say it would not make the take (moderation,
    an invalid request), else "failed"; only the badge depends on it."""
    lowered = reason.lower()
    return "refused" if any(word in lowered for word in ("refused", "moderation", "safety",
                                                         "content policy", "content_policy")) else "failed"


def _failed_list(failed: Sequence[Mapping[str, Any]]) -> str:
    """A segment's candidates that were never made, each with the provider's reason."""
    if not failed:
        return ""
    items = []
    for entry in failed:
        reason = str(entry.get("reason") or "no reason given")
        kind = _failure_kind(reason)
        meta = " · ".join(_e(x) for x in (entry.get("engine"), f"seed {entry['seed']}"
                                          if entry.get("seed") is not None else None) if x)
        job = f' · job <code>{_e(entry["job"])}</code>' if entry.get("job") else ""
        items.append(f'<li><span class="badge bad">✗ {kind}</span> <span class="meta">{meta}{job}</span>'
                     f'<span class="reason">{_e(reason)}</span></li>')
    return (f'<div class="failed"><h3>{plural(len(failed), "candidate")} not made</h3>'
            f'<ul>{"".join(items)}</ul></div>')


def _cost_panel(data: Mapping[str, Any], rows: list[dict[str, Any]]) -> str:
    """The render's hosted totals: what it paid for, and what its cuts offered."""
    cost = data.get("cost") if isinstance(data.get("cost"), Mapping) else {}
    made, offered = _number(cost.get("made")), _number(cost.get("offered"))
    billed = _number(cost.get("billed_seconds"))
    hosted = [c for r in rows for c in r["candidates"] if c.get("provider")]
    failed = sum(len(r["failed"]) for r in rows)
    if not (hosted or failed or made or offered or billed):
        return ""  # nothing hosted in this render (or a render older than hosted engines)
    lines = []
    if made is not None:
        lines.append(f'<li>made by this render: <b class="usd">~{_e(_usd(made))}</b>'
                     + (f" for {billed:g} s billed" if billed is not None else "") + "</li>")
    if offered is not None:
        lines.append(f'<li>offered by its cuts, cached takes included: <b class="usd">~{_e(_usd(offered))}</b></li>')
    providers = sorted({str(c["provider"]) for c in hosted})
    if providers:
        lines.append(f"<li>{plural(len(hosted), 'hosted candidate')} from {_e(', '.join(providers))}</li>")
    if failed:
        lines.append(f'<li class="weak">{plural(failed, "candidate")} failed or refused by the provider</li>')
    return (f'<aside class="panel"><h3>Hosted takes</h3><ul>{"".join(lines)}</ul>'
            "<p class=\"muted\">Estimates from each engine's price per second; the provider's "
            "invoice is what counts.</p></aside>")


def _identity_panel(rows: list[dict[str, Any]]) -> str:
    """Per character, its likeness to the cast's images in each shot it appears in (the
    chosen take's `identity` parts), so a face that wanders shows where."""
    table: dict[str, dict[str, float]] = {}
    for row in rows:
        parts = ((_chosen(row) or {}).get("details") or {}).get("identity") or {}
        for name, value in parts.items():
            if ":" not in name and isinstance(value, int | float):
                table.setdefault(name, {})[row["label"]] = float(value)
    if not table:
        return ""
    labels = [r["label"] for r in rows if any(r["label"] in shots for shots in table.values())]
    head = "".join(f"<th>{_e(label)}</th>" for label in labels)
    body = "".join(
        f"<tr><th>{_e(name)}</th>" + "".join(
            f'<td class="{_tone(shots[label], 0.6)}">{shots[label]:.2f}</td>' if label in shots else "<td></td>"
            for label in labels) + "</tr>"
        for name, shots in sorted(table.items()))
    return (f'<aside class="panel identity"><h3>Characters across shots</h3><table><tr><th></th>{head}</tr>'
            f"{body}</table><p class=\"muted\">Likeness of each character to its cast images in the chosen "
            "take, 0 to 1 (faces compared where found).</p></aside>")


def _fallback_panel(data: Mapping[str, Any]) -> str:
    """Shots moved from their engine to a fallback engine, and why."""
    items = []
    for entry in data.get("fallbacks") or []:
        if not isinstance(entry, Mapping):
            continue
        shot, moved_from, moved_to = (_e(entry.get(k, "")) for k in ("shot", "from", "to"))
        reason = _e(entry.get("reason") or "no reason given")
        if moved_to:
            items.append(f"<li>shot <b>{shot}</b>: <b>{moved_from}</b> → <b>{moved_to}</b>"
                         f'<span class="reason">{reason}</span></li>')
        else:
            items.append(f"<li>shot <b>{shot}</b>: fallback <b>{moved_from}</b> could not run either"
                         f'<span class="reason">{reason}</span></li>')
    if not items:
        return ""
    return f'<aside class="panel"><h3>Fallbacks</h3><ul>{"".join(items)}</ul></aside>'


def _seam_banner(row: Mapping[str, Any], seam: Mapping[str, Any], threshold: float, weak: bool,
                 frames: tuple[list[bytes], list[bytes]] = ([], [])) -> str:
    """The join into a row: its seam's value and parts, and the frames either side."""
    value = float(seam["value"])
    tone = "bad" if weak or value < threshold else _tone(value, threshold)
    parts = " ".join(f'<span class="chip">{_e(k)} {float(v):.2f}</span>'
                     for k, v in sorted((seam.get("parts") or {}).items()) if isinstance(v, int | float))
    warning = f' <b class="weak">below threshold {threshold:.2f}</b>' if tone == "bad" else ""
    kind = f'<span class="kind">{_e(seam["kind"])}</span> ' if seam.get("kind") else ""
    last, first = frames
    strip = ""
    if last or first:
        before = "".join(_img(j, f"{row['after']} last frame") for j in last) or '<span class="nothumb">–</span>'
        after = "".join(_img(j, f"{row['shot']} first frame") for j in first) or '<span class="nothumb">–</span>'
        strip = (f'<div class="seamframes"><figure>{before}<figcaption>last frames of '
                 f'<b>{_e(row["after"])}</b></figcaption></figure><span class="arrow">→</span>'
                 f'<figure>{after}<figcaption>first frames of <b>{_e(row["label"])}</b> (chosen)'
                 '</figcaption></figure></div>')
    return (f'<div class="seam {tone}"><span class="arrow">⟶</span> {kind}seam '
            f'<b>{_e(row["after"])}</b> → <b>{_e(row["shot"])}</b> '
            f'<span class="seamvalue">{value:.3f}</span>{warning} {parts}{strip}</div>')


def _drift_svg(points: list[dict[str, Any]]) -> str:
    if not points:
        return '<p class="muted">No chained shots: nothing to drift.</p>'
    width, height, left, right, top, bottom = 900, 260, 56, 20, 20, 64
    step = 5.0
    top_value = step * np.ceil(max(VISIBLE_DRIFT * 1.5, max(p["delta_e"] for p in points) * 1.1) / step)
    if top_value / step > 8:
        step = top_value / 8
    count = len(points)

    def x(i: int) -> float:
        return left + (width - left - right) * (0.5 if count == 1 else i / (count - 1))

    def y(value: float) -> float:
        return top + (height - top - bottom) * (1 - value / top_value)

    grid = []
    for tick in np.arange(0, top_value + step / 2, step):
        grid.append(f'<line x1="{left}" x2="{width - right}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" class="grid"/>'
                    f'<text x="{left - 8}" y="{y(tick) + 4:.1f}" class="tick" text-anchor="end">{tick:.0f}</text>')
    grid.append(f'<line x1="{left}" x2="{width - right}" y1="{y(VISIBLE_DRIFT):.1f}" y2="{y(VISIBLE_DRIFT):.1f}" class="limit"/>'
                f'<text x="{width - right}" y="{y(VISIBLE_DRIFT) - 6:.1f}" class="tick" text-anchor="end">visible (ΔE {VISIBLE_DRIFT:.0f})</text>')
    lines, dots = [], []
    chains: dict[str, list[int]] = {}
    for i, point in enumerate(points):
        chains.setdefault(str(point.get("chain", "")), []).append(i)
    for members in chains.values():
        coords = " ".join(f"{x(i):.1f},{y(points[i]['delta_e']):.1f}" for i in members)
        lines.append(f'<polyline points="{coords}" class="curve"/>')
    for i, point in enumerate(points):
        tone = "bad" if point["delta_e"] >= VISIBLE_DRIFT else "good"
        dots.append(f'<circle cx="{x(i):.1f}" cy="{y(point["delta_e"]):.1f}" r="5" class="dot {tone}">'
                    f'<title>{_e(point["shot"])}: ΔE {point["delta_e"]:.2f}</title></circle>'
                    f'<text x="{x(i):.1f}" y="{height - bottom + 18}" class="tick" text-anchor="middle">{_e(point["shot"])}</text>')
    axis = (f'<text x="14" y="{(height - bottom) / 2:.0f}" class="tick" transform="rotate(-90 14 {(height - bottom) / 2:.0f})" '
            f'text-anchor="middle">ΔE vs chain start</text>')
    return (f'<svg viewBox="0 0 {width} {height}" width="100%" role="img" aria-label="drift curve">'
            f'{"".join(grid)}{"".join(lines)}{"".join(dots)}{axis}</svg>')


def render_report(data: Mapping[str, Any], thumbnails: Mapping[str, Sequence[bytes]] | None = None) -> str:
    """The report's HTML as a string (see `write_report`)."""
    threshold = float(data.get("seam_threshold", DEFAULT_SEAM_THRESHOLD))
    rows = _shots(data)
    weak = {(str(w.get("after")), str(w.get("shot"))) for w in data.get("weak_seams", [])}
    made = _make_all_thumbs(data, rows, thumbnails)
    store = _store(data)
    sections = []
    before: dict[str, Any] | None = None  # the row on the timeline before (keyframes are on none)
    for row in rows:
        seam = _seam_of(row, before) if row["continuity"] != "keyframe" else None
        banner = ""
        if seam and before is not None:
            frames = _seam_frames(before, row, store, {**made, **(thumbnails or {})})
            banner = _seam_banner(row, seam, threshold, (str(row["after"]), row["shot"]) in weak, frames)
        elif seam:
            banner = _seam_banner(row, seam, threshold, (str(row["after"]), row["shot"]) in weak)
        cards = "".join(_card(c, i, c.get("id") == row["chosen"], _thumbs(c, thumbnails, made),
                              set_aside=row["set_aside"])
                        for i, c in enumerate(row["candidates"]))
        count = plural(len(row["candidates"]), "candidate")
        if row["failed"]:
            count += f' · <span class="weak">{len(row["failed"])} not made</span>'
        if row["continuity"] != "keyframe":
            before = row
        sections.append(f'{banner}<section class="shot"><h2>{_e(row["label"])}'
                        f'<span class="count">{count}</span></h2>'
                        f'<div class="cards">{cards}</div>{_failed_list(row["failed"])}</section>')
    warnings = "".join(f"<li>{_e(w)}</li>" for w in data.get("warnings", []))
    stats = data.get("scoring") or {}
    candidates = sum(len(r["candidates"]) for r in rows)
    summary = [plural(len(rows), "shot"), plural(candidates, "candidate")]
    if stats.get("frames_decoded") is not None:
        summary.append(f"{stats['frames_decoded']} frames decoded for scoring in {float(stats.get('seconds', 0)):.1f} s")
    if weak:
        summary.append(plural(len(weak), "weak seam"))
    title = data.get("title") or "stitchcraft render"
    output = data.get("output", "")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)} · stitchcraft report</title>
<style>{_CSS}</style></head>
<body>
<header class="top"><h1>{_e(title)}</h1>
<p class="muted">{_e(output)}</p>
<p class="summary">{" · ".join(_e(s) for s in summary)}</p></header>
{f'<aside class="warnings"><h3>Warnings</h3><ul>{warnings}</ul></aside>' if warnings else ""}
{_cost_panel(data, rows)}{_fallback_panel(data)}{_identity_panel(rows)}
<main>{"".join(sections)}</main>
<section class="drift"><h2>Drift across chains</h2>{_drift_svg(_drift(data, rows))}</section>
<footer class="muted">Scores run 0 to 1, higher is better; the chosen take of each shot is
outlined in green. Seams under {threshold:.2f} are marked red. Takes are numbered as
<code>stitch pick</code> numbers them. Made by stitchcraft.</footer>
</body></html>
"""


_CSS = """
:root { --bg:#f4f3ef; --ink:#1d1f24; --muted:#6b6f78; --card:#fff; --line:#dedbd2;
  --good:#1f8a4c; --fair:#b7791f; --bad:#c53030; --accent:#2b59c3; }
* { box-sizing:border-box; }
body { margin:0; padding:28px 36px 48px; background:var(--bg); color:var(--ink);
  font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif; }
h1 { margin:0 0 4px; font-size:26px; letter-spacing:-0.01em; }
h2 { margin:0 0 12px; font-size:18px; display:flex; align-items:baseline; gap:12px; }
.muted, .count { color:var(--muted); font-weight:normal; font-size:13px; }
.summary { margin:6px 0 0; font-weight:600; }
.top { margin-bottom:20px; }
.warnings { background:#fff8e6; border:1px solid #f0d48a; border-radius:8px; padding:10px 16px; margin-bottom:20px; }
.warnings h3 { margin:0 0 4px; font-size:14px; color:#8a5a00; }
.warnings ul { margin:0; padding-left:18px; }
.panel { background:#fff; border:1px solid var(--line); border-radius:8px; padding:10px 16px; margin-bottom:20px; }
.panel h3 { margin:0 0 4px; font-size:14px; }
.panel ul, .failed ul { margin:0; padding-left:18px; }
.panel .muted { margin:6px 0 0; font-size:12px; }
.usd { font-variant-numeric:tabular-nums; }
.reason { display:block; color:var(--ink); font-size:12px; overflow-wrap:anywhere; }
.hosted { margin:0 0 6px; font-size:12px; overflow-wrap:anywhere; }
code { font:11px ui-monospace,Menlo,monospace; }
.failed { margin-top:12px; padding:8px 12px; border-left:4px solid var(--bad); background:#fdecec; border-radius:4px; }
.failed h3 { margin:0 0 4px; font-size:13px; color:var(--bad); }
.failed li { margin:4px 0; list-style:none; } .failed ul { padding-left:0; }
.badge.bad { background:var(--bad); }
.shot { background:#fbfaf7; border:1px solid var(--line); border-radius:10px; padding:16px; margin:0 0 14px; }
.cards { display:flex; flex-wrap:wrap; gap:14px; }
.card { background:var(--card); border:2px solid var(--line); border-radius:10px; padding:10px; width:392px; }
.card.chosen { border:3px solid var(--good); box-shadow:0 0 0 4px rgba(31,138,76,.15); }
.strip { display:flex; gap:4px; }
.strip img { width:120px; height:auto; border-radius:4px; display:block; background:#000; }
.nothumb { width:100%; height:68px; display:flex; align-items:center; justify-content:center; background:#eee; color:var(--muted); border-radius:4px; }
.card header { display:flex; align-items:center; gap:8px; margin-top:8px; }
.idx { font-weight:700; }
.badge { background:var(--good); color:#fff; border-radius:999px; padding:1px 9px; font-size:12px; font-weight:700; }
.badge.warn { background:var(--bad); margin-left:4px; }
.score { margin-left:auto; font-size:20px; font-weight:700; font-variant-numeric:tabular-nums; }
.meta { margin:2px 0 6px; color:var(--muted); font-size:12px; }
.bar { display:flex; align-items:center; gap:6px; font-size:12px; }
.bar .name { width:130px; overflow:hidden; text-overflow:ellipsis; white-space:nowrap; }
.bar .track { flex:1; height:7px; background:#ecebe6; border-radius:4px; overflow:hidden; }
.bar .fill { display:block; height:100%; background:var(--accent); }
.bar .num { width:36px; text-align:right; font-variant-numeric:tabular-nums; }
.id { margin:6px 0 0; color:var(--muted); font:11px ui-monospace,Menlo,monospace; }
details { margin-top:6px; font-size:12px; } details ul { margin:4px 0 0; padding-left:16px; }
.seam { margin:0 0 10px 18px; padding:6px 12px; border-left:4px solid var(--line); font-size:13px; }
.seam.good { border-color:var(--good); } .seam.fair { border-color:var(--fair); }
.seam.bad { border-color:var(--bad); background:#fdecec; }
.seamvalue { font-weight:700; font-variant-numeric:tabular-nums; margin:0 6px; }
.seam .kind { text-transform:uppercase; font-size:11px; font-weight:700; letter-spacing:.04em; color:var(--muted); }
.seamframes { display:flex; align-items:center; gap:10px; margin-top:6px; }
.seamframes figure { margin:0; display:flex; flex-wrap:wrap; gap:3px; max-width:340px; }
.seamframes figure img { width:160px; height:auto; border-radius:3px; display:block; background:#000; }
.seamframes figcaption { width:100%; font-size:12px; color:var(--muted); }
.weak { color:var(--bad); }
.chip { display:inline-block; background:#fff; border:1px solid var(--line); border-radius:999px; padding:0 8px; margin:0 2px; font-size:12px; }
.drift { background:#fff; border:1px solid var(--line); border-radius:10px; padding:16px; margin-top:20px; }
svg .grid { stroke:#e6e3db; } svg .limit { stroke:var(--bad); stroke-dasharray:6 5; }
svg .tick { fill:var(--muted); font-size:12px; }
svg .curve { fill:none; stroke:var(--accent); stroke-width:2.5; }
svg .dot.good { fill:var(--accent); } svg .dot.bad { fill:var(--bad); }
footer { margin-top:24px; }
.identity table { border-collapse:collapse; font-variant-numeric:tabular-nums; }
.identity th, .identity td { padding:2px 10px; text-align:left; font-size:13px; }
.identity td.good { color:var(--good); } .identity td.fair { color:var(--fair); } .identity td.bad { color:var(--bad); }
"""
