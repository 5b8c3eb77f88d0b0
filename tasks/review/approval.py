"""The human gate (issue 15 §4): which runs need a person before a release, what the person is
shown, what they decided, and which videos a release may take.

* A run **needs review** when its QA flags number more than ``review.gate_max_flags`` of its own
  configuration (None: no gate).
* The nightly DAG puts such a run in front of a person (a deferrable ``ApprovalOperator``) with
  :func:`gate_request`: the checker's summary and comments, and links to the review package and to
  a CVAT task exported into the store (``reviews/{video_id}/{run}/cvat/``).
* **Approve** records ``reviews/{video_id}/{run}/decision.json`` (who, when); **reject** records
  nothing there: the video waits for corrections (``review import``, or the ``leader360v_revise``
  DAG), whose revised run is human-reviewed by construction.
* :func:`release_filter` is what the release calls: it keeps a video when its run needs no review,
  was approved, or is a revision made from a person's corrections, and says which were reviewed.
"""

from __future__ import annotations

import datetime as _dt
import logging
import tempfile
from datetime import timedelta
from pathlib import Path

from tasks import layout
from tasks.errors import ObjectNotFound
from tasks.stages import runner

log = logging.getLogger(__name__)

REVIEWS = "reviews/"
_MAX_COMMENTS_IN_BODY = 25


def review_prefix(video_id: str, run: str) -> str:
    return f"{REVIEWS}{layout.check_video_id(video_id)}/{layout.check_run_id(run)}/"


def flag_count(store, video_id: str, run: str) -> int:
    qa = runner.load_manifest(store, video_id, run, "qa")
    return sum((qa or {}).get("stats", {}).get("flags", {}).values())


def needs_review(store, video_id: str, run: str, config=None) -> bool:
    cfg = config or runner.load_run_config(store, video_id, run)
    limit = cfg.review.gate_max_flags
    if limit is None or cfg.review.revision_of:
        return False      # no gate configured, or the labels already are a person's corrections
    return flag_count(store, video_id, run) > limit


def decision(store, video_id: str, run: str) -> dict | None:
    try:
        return store.get_json(review_prefix(video_id, run) + "decision.json")
    except ObjectNotFound:
        return None


def record_decision(store, video_id: str, run: str, *, approved: bool, by: str | None, at: str | None = None,
                    note: str | None = None) -> dict:
    rec = {"video_id": video_id, "run": run, "decision": "approved" if approved else "rejected", "by": by or "unknown",
           "at": at or _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"), "note": note}
    store.put_json(review_prefix(video_id, run) + "decision.json", rec)
    return rec


def human_review(store, video_id: str, run: str) -> tuple[bool, str | None]:
    """``(releasable, how a person reviewed it or None)``."""
    cfg = runner.load_run_config(store, video_id, run)
    if cfg.review.revision_of:
        n = len(cfg.review.corrections)
        return True, f"corrected by a person ({n} correction{'s' if n != 1 else ''} re-followed from run {cfg.review.revision_of})"
    d = decision(store, video_id, run)
    if d is not None and d.get("decision") == "approved":
        return True, f"approved by {d.get('by')} at {d.get('at')}"
    if needs_review(store, video_id, run, cfg):
        return False, None
    return True, None


def release_filter(store, rows: list[dict]) -> list[dict]:
    """The release's rows without the videos that wait at the human gate; each kept row gets
    ``human_review`` (None or how) and its ``why`` says so, so the dataset card shows it."""
    out = []
    for r in rows:
        ok, how = human_review(store, r["video_id"], r["run"])
        if not ok:
            log.warning("video %s run %s left out of the release: %d QA flags wait for a person's approval or "
                        "corrections (python -m tasks review show --video-id %s)", r["video_id"], r["run"],
                        flag_count(store, r["video_id"], r["run"]), r["video_id"])
            continue
        row = dict(r, human_review=how)
        if how:
            row["why"] = f"{r.get('why') or 'newest validated configuration'}; human-reviewed: {how}"
        out.append(row)
    return out


def human_reviewed_count(rows: list[dict]) -> int:
    return sum(1 for r in rows if r.get("human_review"))


def _link(store, key: str, hours: float) -> str:
    presign = getattr(store, "presigned_get", None)
    if callable(presign):
        return presign(key, timedelta(hours=hours))
    path = getattr(store, "path", None)
    return str(path(key)) if callable(path) else store.uri(key)


def gate_request(store, video_id: str, run: str, *, expires_hours: float = 168.0) -> dict:
    """What the human gate shows for one run: subject and Markdown body (the checker's summary and
    comments, links to the preview, labels, crops and a CVAT task exported into the store)."""
    from tasks.review.checker import check_run
    from tasks.review.export import export_cvat

    cfg = runner.load_run_config(store, video_id, run)
    comments = check_run(store, video_id, run, cfg)
    prefix = review_prefix(video_id, run) + "cvat/"
    with tempfile.TemporaryDirectory(prefix="l360-gate-") as tmp:
        export_cvat(store, video_id, run, Path(tmp), config=cfg, comments=comments)
        for name in ("annotations.xml", "release.json", "comments.json"):
            store.put_file(prefix + name, Path(tmp) / name)
    qa = runner.load_manifest(store, video_id, run, "qa")
    n = flag_count(store, video_id, run)
    lines = [f"**{comments['summary']}** (more than the {cfg.review.gate_max_flags} flag(s) this configuration lets "
             "through without a person).", "",
             "Approve: the video goes into the next release as labeled. Reject: it waits for corrections "
             f"(`python -m tasks review import FILE --video-id {video_id} --run {run}`, or drop the file under "
             f"`corrections/inbox/{video_id}/` for the `leader360v_revise` DAG).", "",
             "### Links",
             f"- preview: {_link(store, runner.output_key(store, qa, 'preview'), expires_hours)}",
             f"- labels (release JSON): {_link(store, runner.output_key(store, qa, 'annotations'), expires_hours)}",
             f"- CVAT task (annotations.xml, CVAT for video 1.1): {_link(store, prefix + 'annotations.xml', expires_hours)}",
             f"- the frames: `{runner.output_key(store, qa, 'frames')}` (or `python -m tasks review export "
             f"--video-id {video_id} --run {run} --format cvat --out DIR` for a folder with images/)",
             f"- review package: `python -m tasks review show --video-id {video_id} --run {run}`", "",
             "### Comments"]
    for c in comments["comments"][:_MAX_COMMENTS_IN_BODY]:
        crop = f" ([crop]({_link(store, c['crop'], expires_hours)}))" if c.get("crop") else ""
        lines.append(f"- {c['text']}{crop}")
    if len(comments["comments"]) > _MAX_COMMENTS_IN_BODY:
        lines.append(f"- … and {len(comments['comments']) - _MAX_COMMENTS_IN_BODY} more in comments.json")
    return {"video_id": video_id, "run": run, "flags": n,
            "subject": f"Review video {video_id} (run {run}): {n} QA flags", "body": "\n".join(lines),
            "cvat": prefix + "annotations.xml"}
